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
    try:      # (raw bytes: the text layer costs more than the read, on every start)
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            data = os.read(fd, 8192)
        finally:
            os.close(fd)
        at = data.index(b"\nCapEff:") + 8
        eff = int(data[at:data.index(b"\n", at)].strip(), 16)
    except (OSError, ValueError):
        return os.geteuid() == 0
    return bool(eff >> _CAP_SYS_ADMIN & 1) or bool(eff >> _CAP_PERFMON & eff >> _CAP_BPF & 1)
