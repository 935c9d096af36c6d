"""The VM tier for kprobe_multi and watchpoints (docs/probes-more.md).

One boot running only the ``probes2_*`` checks of guest_batch.py. On Debian 12's 6.1 kernel
(no CONFIG_FPROBE) the wildcard attaches function by function and kprobe_multi must be seen
as absent; with ``PTRACE_VM_CACHE`` pointing at a cache set up from a 6.12 kernel package
(``tests/vm/run_vm.py --setup --deb linux-image-6.12...deb``, CONFIG_FPROBE=y) the same
checks run on one kprobe_multi link. Skips, saying why, where the tier cannot run.
"""
from __future__ import annotations

import os
import re
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vmboot import boot_or_skip  # noqa: E402


@pytest.fixture(scope="module")
def vm():
    return boot_or_skip(["-k", "probes2"], " (probes2)")


def check(vm, name):
    c = vm["results"]["checks"].get(name)
    assert c is not None, f"the guest did not run {name}"
    return c


def shown(c):
    return f"exit status {c['rc']}\n--- stdout ---\n{c['out']}--- stderr ---\n{c['err']}"


def num(pattern, text):
    m = re.search(pattern, text, re.M)
    return int(m.group(1)) if m else -1


def test_kprobe_multi_detection_matches_the_kernel(vm):
    res = vm["results"]
    release = res["kernel"]
    major, minor = (int(x) for x in release.split(".")[:2])
    if (major, minor) == (6, 1):       # Debian 12's 6.1: CONFIG_FPROBE is not set
        assert res["kprobe_multi"] is False, res["kprobe_multi"]
    elif (major, minor) >= (6, 12):    # Debian's 6.12: CONFIG_FPROBE=y
        assert res["kprobe_multi"] is True, res["kprobe_multi"]


@pytest.mark.parametrize("name", ["probes2_kprobe_multi", "probes2_kprobe_perf"])
def test_wildcard_probe_and_func_are_right_on_either_path(vm, name):
    if name == "probes2_kprobe_perf" and vm["results"]["kprobe_multi"] is not True:
        pytest.skip("this guest kernel has no kprobe_multi: probes2_kprobe_multi already ran the "
                    "per-function path (a 6.12 kernel in PTRACE_VM_CACHE runs both)")
    c = check(vm, name)
    assert c["rc"] == 0, shown(c)
    attached = num(r"^Attached (\d+) probes$", c["err"])
    assert attached >= 100, shown(c)              # vfs_* + vfs_read* returns + tcp_*
    # the cookie of each function gives its own probe and func: dd's 7 reads and 7 writes
    assert num(r"^@\[kprobe:vfs_read\]: (\d+)$", c["out"]) >= 7, shown(c)
    assert num(r"^@\[kprobe:vfs_write\]: (\d+)$", c["out"]) >= 7, shown(c)
    assert num(r"^@f\[vfs_read\]: (\d+)$", c["out"]) == num(r"^@\[kprobe:vfs_read\]: (\d+)$", c["out"])
    assert "@r[kretprobe:vfs_read, 4567]: 7\n" in c["out"], shown(c)
    for line in re.findall(r"^@\[(.*)\]: \d+$", c["out"], re.M):
        assert line.startswith("kprobe:vfs_"), shown(c)


def test_multi_and_perf_paths_print_the_same(vm):
    if vm["results"]["kprobe_multi"] is not True:
        pytest.skip("this guest kernel has no kprobe_multi (Debian 12's 6.1: no CONFIG_FPROBE); "
                    "a 6.12 kernel in PTRACE_VM_CACHE compares the two paths")
    a, b = check(vm, "probes2_kprobe_multi"), check(vm, "probes2_kprobe_perf")
    assert num(r"^Attached (\d+) probes$", a["err"]) == num(r"^Attached (\d+) probes$", b["err"])
    keys = lambda c: sorted(re.findall(r"^@\[(kprobe:vfs_(?:read|write))\]", c["out"], re.M))  # noqa: E731
    assert keys(a) == keys(b) == ["kprobe:vfs_read", "kprobe:vfs_write"]


def test_watchpoint_under_tcg(vm):
    c = check(vm, "probes2_watchpoint")
    if "no hardware breakpoints" in c["err"]:
        pytest.skip("qemu's TCG offers no hardware breakpoints: " + c["err"].strip())
    assert c["rc"] == 0, shown(c)
    n = num(r"^@w: (\d+)$", c["out"])
    assert 20 <= n <= 40, shown(c)       # 20 stores (+ the kernel clearing .bss at exec)
