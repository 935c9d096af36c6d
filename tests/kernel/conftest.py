"""Kernel-layer tests need root and a working bpf(); skip them all otherwise."""

from __future__ import annotations

import fcntl
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "kernel tests need Linux"
    if os.geteuid() != 0:
        return "kernel tests need root (bpf() and perf_event_open() on tracepoints)"
    try:
        from ptrace_lang.kernel import sys as ksys
        attr = ksys.MapCreateAttr(map_type=ksys.BPF_MAP_TYPE_ARRAY, key_size=4,
                                  value_size=8, max_entries=1)
        os.close(ksys.bpf(ksys.BPF_MAP_CREATE, attr))
    except OSError as e:
        return f"bpf() is unavailable here: {e}"
    # on a fresh machine (CI runs the suite as the README's command, tracefs not mounted) the
    # tests that look at tracefs themselves find it where ptrace mounts it on its first run
    from ptrace_lang.kernel.tracefs import tracefs_root
    try:
        tracefs_root()
    except OSError as e:
        return f"tracefs cannot be mounted here: {e}"
    return None


SKIP_REASON = _skip_reason()
if SKIP_REASON:
    print(f"\ntests/kernel skipped: {SKIP_REASON}", file=sys.stderr)


@pytest.fixture(autouse=True)
def _require_bpf():
    if SKIP_REASON:
        pytest.skip(SKIP_REASON)


# Kernel tests check that nothing of theirs stays loaded, which a second test run on the same
# machine (another checkout, a benchmark) would upset: each test holds this lock while it runs.
_LOCK_PATH = "/tmp/ptrace-kernel-tests.lock"


@pytest.fixture(autouse=True)
def _one_kernel_test_at_a_time():
    fd = os.open(_LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
