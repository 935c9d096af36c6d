"""software:, hardware:, rawtracepoint:, uprobe: and usdt: probes, attached for real."""
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
    ("software:bogus { }", "stdin:1:1-15: ERROR: bogus is not a software probe"),
    ("software:faults:0 { }", "ERROR: software count should be a positive integer"),
    ("rawtracepoint:no_such_event_xyz { }", "ERROR: No matches for rawtracepoint no_such_event_xyz."),
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
    ("uprobe:libc:no_such_function_xyz { }", "ERROR: No matches for uprobe /"),
    ("uprobe:/no/such/binary:main { }",
     "ERROR: uprobe target file '/no/such/binary' does not exist or is not executable"),
    ("uretprobe:libc:getpid { @ = arg0; }", "ERROR: The arg0 builtin can not be used with 'uretprobe' probes"),
    ("uprobe:libc:getpid { @ = retval; }", "ERROR: The retval builtin can not be used with 'uprobe' probes"),
])
def test_uprobe_errors(src, message):
    r = run("--dry-run", "-e", src)
    assert r.rc == 1
    assert message in r.err and "Traceback" not in r.err, r.err


USDT_C = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((section(".probes"))) volatile unsigned short
    app_tick_semaphore, app_mem_semaphore, app_guarded_semaphore;
struct s { long a; int b; };
int main(int argc, char **argv) {
    int n = atoi(argv[1]);
    long big = 5000000000L;
    struct s st = { 7, -9 };
    char buf[8] = "hey";
    int enabled = 0;
    getchar();                                   /* held until the tracer is attached */
    for (int i = 0; i < n; i++) {
        short neg = -i - 1;
        DTRACE_PROBE4(app, tick, i, big + i, neg, buf);
        DTRACE_PROBE2(app, mem, st.a, st.b);
        if (app_guarded_semaphore) { enabled++; DTRACE_PROBE1(app, guarded, i * 10); }
    }
    printf("enabled %d\n", enabled);
    return 0;
}
"""


@pytest.fixture(scope="module")
def usdt_binary(tmp_path_factory):
    d = tmp_path_factory.mktemp("usdt")
    (d / "app.c").write_text(USDT_C)
    p = subprocess.run(["gcc", "-O1", "-o", str(d / "app"), str(d / "app.c")], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot build a USDT target (sys/sdt.h from systemtap-sdt-dev?): {p.stderr[:200]}")
    return str(d / "app")


def test_usdt_arguments_semaphores_and_wildcards(usdt_binary):
    prog = (f'usdt:{usdt_binary}:app:tick {{ printf("%d %d %d %s\\n", arg0, arg1, arg2, str(arg3)); }} '
            f'usdt:{usdt_binary}:mem {{ @mem[arg0, arg1] = count(); }} '
            f'U:{usdt_binary}:app:gua* {{ @g = count(); @v = sum(arg0); @p[probe] = count(); }}')
    app = subprocess.Popen([usdt_binary, "3"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        t = Tracer("-e", prog)
        t.wait_attached()
        app.stdin.write("\n")
        app.stdin.flush()
        app_out, _ = app.communicate(timeout=60)
        import time
        time.sleep(0.2)
        r = t.stop()
    finally:
        if app.poll() is None:
            app.kill()
    assert r.rc == 0 and r.err.startswith("Attached 3 probes"), r.err
    # the semaphore was raised by the kernel while attached: the guarded probe fired
    assert app_out == "enabled 3\n"
    lines = [l for l in r.out.splitlines() if l and not l.startswith("@")]
    assert lines == ["0 5000000000 -1 hey", "1 5000000001 -2 hey", "2 5000000002 -3 hey"]
    assert "@mem[7, -9]: 3\n" in r.out and "@g: 3\n" in r.out and "@v: 30\n" in r.out
    assert f"@p[usdt:{usdt_binary}:app:guarded]: 3\n" in r.out
    # once the uprobes are gone (their perf events are closed in the background after the
    # tracer exits), the kernel has put the semaphore back to 0
    import time
    deadline = time.monotonic() + 30
    while True:
        again = subprocess.run([usdt_binary, "1"], input="\n", capture_output=True, text=True, timeout=30)
        if again.stdout == "enabled 0\n" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert again.stdout == "enabled 0\n"


@pytest.mark.parametrize("probe,message", [
    ("usdt:{bin}:app:nosuch", "ERROR: No matches for usdt {bin}:nosuch."),
    ("usdt:{bin}:tick { @ = arg5; }", "arg5: the USDT probe has 4 arguments"),
    ("usdt:/no/such/binary:x",
     "ERROR: usdt target file '/no/such/binary' does not exist or is not executable"),
    ("usdt:{bin}", "usdt probe must be written"),
])
def test_usdt_errors(usdt_binary, probe, message):
    src = probe.replace("{bin}", usdt_binary)
    if "{ " not in src:
        src += " { @ = count(); }"
    r = run("--dry-run", "-e", src)
    assert r.rc == 1 and message.replace("{bin}", usdt_binary) in r.err and "Traceback" not in r.err, r.err


def test_missing_probes_warn_skips_the_block_and_says_so_every_run(tmp_path):
    prog = ('config = { missing_probes = "warn" } tracepoint:nosuch:ev { @a = count(); } '
            'uprobe:libc:no_such_fn_* { @u = count(); } '
            'BEGIN { @b = 1; exit(); }')
    warned = ["stdin:1:38-58: WARNING: No matches for tracepoint nosuch:ev. Skipping.",
              "WARNING: No matches for uprobe /"]
    env = {"XDG_CACHE_HOME": str(tmp_path), "PTRACE_NO_CACHE": ""}
    for _ in range(2):                      # compiled, then from the compile cache
        r = run("-e", prog, env=env)
        assert r.rc == 0 and "@b: 1\n" in r.out and "@a" not in r.out, r
        assert all(w in r.err for w in warned) and r.err.count("WARNING") == 2, r.err
        assert r.err.index("WARNING") < r.err.index("Attached 1 probe")
    assert len(list((tmp_path / "ptrace-lang" / "specs").iterdir())) == 1
    # without "warn" the first missing one is an error, as before
    r = run("-e", prog.replace('config = { missing_probes = "warn" } ', ""))
    assert r.rc == 1 and "ERROR: No matches for tracepoint nosuch:ev." in r.err
