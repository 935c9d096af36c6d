"""software:, hardware: and rawtracepoint: probes, attached for real."""
from __future__ import annotations

import os
import platform
import re
import subprocess

import pytest

from runner import Tracer, named_workload, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

GETPPID_NR = {"x86_64": 110, "aarch64": 173}.get(platform.machine())


def traced_workload(program: str, code: str) -> tuple[str, str]:
    """Start a held workload, trace it with ``program`` ($1 = its pid), let it run, stop."""
    wl = subprocess.Popen(named_workload("ptr_prov", "import sys, os, time\nsys.stdin.readline()\n" + code),
                          stdin=subprocess.PIPE, text=True)
    try:
        t = Tracer("-e", program, str(wl.pid))
        t.wait_attached()
        wl.stdin.write("go\n")
        wl.stdin.flush()
        wl.wait(60)
        r = t.stop()
    finally:
        if wl.poll() is None:
            wl.kill()
    assert r.rc == 0, r.err
    return r.out, r.err


@pytest.mark.skipif(GETPPID_NR is None, reason="syscall number of getppid unknown on this machine")
def test_rawtracepoint_raw_arguments():
    out, err = traced_workload(f"rawtracepoint:sys_enter /pid == $1 && arg1 == {GETPPID_NR}/ {{ @calls = count(); }}",
                               "for _ in range(50): os.getppid()")
    assert err.startswith("Attached 1 probe")
    assert int(re.search(r"^@calls: (\d+)$", out, re.M).group(1)) == 50


def test_software_page_faults_every_event():
    out, _ = traced_workload("software:page-faults:1 /pid == $1/ { @faults = count(); }",
                             "b = bytearray(8 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1")
    assert int(re.search(r"^@faults: (\d+)$", out, re.M).group(1)) >= 1000   # 2048 fresh pages


def test_software_context_switches_alias_and_probe_name():
    out, _ = traced_workload("s:cs:1 /pid == $1/ { @[probe] = count(); }",
                             "for _ in range(20): time.sleep(0.001)")
    assert int(re.search(r"^@\[software:cs:1\]: (\d+)$", out, re.M).group(1)) >= 20


def test_hardware_counts_or_says_why_not():
    r = run("-e", "hardware:cycles:1000000 { @ = count(); } interval:ms:200 { exit(); }")
    if r.rc == 0:
        assert "Attached 2 probes" in r.err
    else:
        assert "no hardware performance counter for 'hardware:cycles:1000000'" in r.err
        assert "Traceback" not in r.err


@pytest.mark.parametrize("src,message", [
    ("software:bogus { }", "stdin:1:1-15: ERROR: Unknown software event: bogus"),
    ("software:faults:0 { }", "ERROR: The count of a software probe must be positive"),
    ("rawtracepoint:no_such_event_xyz { }", "ERROR: raw tracepoint not found: no_such_event_xyz"),
    ("BEGIN { @ = arg0; }", "ERROR: The arg0 builtin can not be used with 'begin' probes"),
])
def test_provider_errors(src, message):
    r = run("--dry-run", "-e", src)
    assert r.rc == 1
    assert message in r.err, r.err


def test_uprobe_and_uretprobe_on_a_library_function():
    out, err = traced_workload(
        "uprobe:libc:getpid /pid == $1/ { @calls[func] = count(); } "
        "uretprobe:libc:getpid /pid == $1/ { @same = count(); if (retval == pid) { @ok = count(); } }",
        "for _ in range(10): os.getpid()")
    assert err.startswith("Attached 2 probes")
    assert int(re.search(r"^@calls\[getpid\]: (\d+)$", out, re.M).group(1)) >= 10
    same = int(re.search(r"^@same: (\d+)$", out, re.M).group(1))
    assert same >= 10 and f"@ok: {same}\n" in out


def test_uprobe_arguments_and_wildcards():
    out, _ = traced_workload(
        "uprobe:libc:write /pid == $1/ { @len = max(arg2); @calls = count(); } "
        "uprobe:libc:getpp* /pid == $1/ { @[probe] = count(); }",
        "fd = os.open('/dev/null', os.O_WRONLY)\nfor n in (3, 123, 7): os.write(fd, b'x' * n)\nos.getppid()")
    assert "@len: 123\n" in out
    assert re.search(r"^@\[uprobe:/\S+libc\.so\.6:getppid\]: 1$", out, re.M), out


@pytest.mark.parametrize("src,message", [
    ("uprobe:libc:no_such_function_xyz { }", "ERROR: uprobe: "),
    ("uprobe:/no/such/binary:main { }", "ERROR: uprobe: "),
    ("uretprobe:libc:getpid { @ = arg0; }", "ERROR: The arg0 builtin can not be used with 'uretprobe' probes"),
    ("uprobe:libc:getpid { @ = retval; }", "ERROR: The retval builtin can not be used with 'uprobe' probes"),
])
def test_uprobe_errors(src, message):
    r = run("--dry-run", "-e", src)
    assert r.rc == 1
    assert message in r.err and "Traceback" not in r.err, r.err
