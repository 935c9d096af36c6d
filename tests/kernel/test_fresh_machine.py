"""The README's first command as a newcomer meets it: tracefs and debugfs not mounted (a private
mount namespace, as on a fresh VM, a container or a new boot), an empty cache and HOME; and a
user without the capabilities a run needs, who gets one clear message."""
from __future__ import annotations

import shutil
import subprocess
import tempfile

import pytest

from runner import ROOT, ptrace_cmd

README_ONE_LINER = ("tracepoint:syscalls:sys_enter_getppid { @n = count(); } "
                    "interval:ms:300 { exit(); }")

pytestmark = pytest.mark.skipif(shutil.which("unshare") is None or shutil.which("setpriv") is None,
                                reason="needs unshare(1) and setpriv(1) from util-linux")

# in the new namespace: every tracefs/debugfs mount is taken away before ptrace starts
_UNMOUNT = ("mount --make-rprivate / && "
            "for m in /sys/kernel/debug/tracing /sys/kernel/debug /sys/kernel/tracing; do "
            "umount \"$m\" 2>/dev/null; done; "
            "grep -qE ' (tracefs|debugfs) ' /proc/mounts && { echo 'still mounted' >&2; exit 99; }; "
            "exec \"$@\"")


def _fresh(*args: str, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory() as d:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": f"{d}/home",
               "XDG_CACHE_HOME": f"{d}/cache", "PYTHONPATH": str(ROOT)}
        return subprocess.run(["unshare", "-m", "sh", "-c", _UNMOUNT, "sh", *prefix,
                               *ptrace_cmd(*args)],
                               capture_output=True, text=True, timeout=60, cwd=d, env=env)


def _clean(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    assert p.returncode != 99, "the namespace still had tracefs mounted"


def test_readme_one_liner_mounts_tracefs_itself():
    p = _fresh("-e", README_ONE_LINER)
    _clean(p)
    assert p.returncode == 0, p.stderr
    assert "Attached 2 probes" in p.stderr


def test_tracepoint_events_counted_without_tracefs_mounted():
    # the workload is ptrace's own -c command: its one clock_nanosleep is certain to be seen
    p = _fresh("-c", "/bin/sleep 0.05", "-e",
               "tracepoint:syscalls:sys_enter_clock_nanosleep /pid == cpid/ { @s = count(); }")
    _clean(p)
    assert p.returncode == 0, p.stderr
    assert "@s: 1" in p.stdout, p.stdout


def test_listing_tracepoints_without_tracefs_mounted():
    p = _fresh("-l", "tracepoint:syscalls:sys_enter_getpp*")
    _clean(p)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["tracepoint:syscalls:sys_enter_getppid"]


# no capabilities: root's uid kept (so the interpreter stays readable), every capability dropped
_NO_CAPS = ("setpriv", "--inh-caps=-all", "--bounding-set=-all")


@pytest.mark.parametrize("args", [
    ("-e", README_ONE_LINER),
    ("-l", "tracepoint:syscalls:*"),
    ("-l",),
    ("--dry-run", "-e", "BEGIN { exit(); }"),
])
def test_without_capabilities_one_clear_message(args):
    p = _fresh(*args, prefix=_NO_CAPS)
    _clean(p)
    assert p.returncode == 1
    assert p.stderr.startswith("ERROR: ptrace needs root"), p.stderr
    assert p.stderr.count("ERROR") == 1 and "WARNING" not in p.stderr, p.stderr
    assert p.stdout == ""


def test_without_capabilities_a_binary_is_still_listed():
    # a binary's symbols need no kernel: bpftrace's -l of a uprobe pattern reads the file
    p = _fresh("-l", "uprobe:/bin/bash:echo_b*", prefix=_NO_CAPS)
    _clean(p)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["uprobe:/bin/bash:echo_builtin"]
