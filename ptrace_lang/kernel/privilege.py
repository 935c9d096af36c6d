"""Whether this process may trace: root, or the capabilities a run needs."""

from __future__ import annotations

import os

NEEDS_ROOT = ("ERROR: ptrace needs root: loading programs takes CAP_BPF and CAP_PERFMON, and "
              "mounting tracefs CAP_SYS_ADMIN (run it as root, e.g. with sudo)\n")

_CAP_SYS_ADMIN = 21
_CAP_PERFMON = 38
_CAP_BPF = 39


def privileged() -> bool:
    """CAP_SYS_ADMIN, or CAP_BPF with CAP_PERFMON, in the effective set (root has them all,
    unless a container or ``setpriv`` took them away)."""
    try:
        with open("/proc/self/status") as f:
            eff = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    except OSError:
        return os.geteuid() == 0
    return bool(eff >> _CAP_SYS_ADMIN & 1) or bool(eff >> _CAP_PERFMON & eff >> _CAP_BPF & 1)
