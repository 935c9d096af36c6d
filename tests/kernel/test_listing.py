"""``ptrace -l [pattern]`` / ``-lv``: probe listing, compared with bpftrace where it is installed."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from runner import ROOT, ptrace_cmd, run

BPFTRACE = shutil.which("bpftrace")
HAS_BTF = os.path.exists("/sys/kernel/btf/vmlinux")


def _need_bpftrace():
    if BPFTRACE is None:
        print("bpftrace is not installed: the comparison is skipped")
        pytest.skip("bpftrace is not installed")


def _need_btf():
    if not HAS_BTF:
        print("no /sys/kernel/btf/vmlinux: BTF-based listing is skipped")
        pytest.skip("no kernel BTF")


def _bpftrace_lines(*args: str) -> list[str]:
    p = subprocess.run([BPFTRACE, *args], capture_output=True, text=True, timeout=60)
    return p.stdout.splitlines()


def _lines(*args: str) -> list[str]:
    r = run(*args)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    return r.out.splitlines()


def _gcc(tmp_path, name: str, source: str) -> str:
    if shutil.which("gcc") is None:
        print("gcc is not installed: the binary listing test is skipped")
        pytest.skip("no gcc")
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    out = tmp_path / name
    p = subprocess.run(["gcc", "-O1", "-o", str(out), str(src)], capture_output=True, text=True)
    if p.returncode != 0:
        return ""
    return str(out)


@pytest.mark.parametrize("pattern", ["tracepoint:*", "tracepoint:syscalls:sys_enter_open*",
                                     "sys_enter_open*", "t:sched:*", "*sched_switch"])
def test_tracepoints_are_bpftraces(pattern):
    ours = [x for x in _lines("-l", pattern) if x.startswith("tracepoint:")]
    assert ours == sorted(ours) and len(set(ours)) == len(ours)
    if "open" in pattern:
        assert "tracepoint:syscalls:sys_enter_openat" in ours
    assert not any(x.startswith("tracepoint:ftrace:") for x in ours)   # not attachable
    _need_bpftrace()
    theirs = {x for x in _bpftrace_lines("-l", pattern) if x.startswith("tracepoint:")}
    assert set(ours) == theirs


def test_lv_tracepoint_fields():
    out = _lines("-lv", "tracepoint:syscalls:sys_enter_openat")
    assert out == ["tracepoint:syscalls:sys_enter_openat", "    int __syscall_nr", "    int dfd",
                   "    const char * filename", "    int flags", "    umode_t mode"]
    # `-l PATTERN -v` (bpftrace's getopt takes options after the pattern too)
    assert _lines("-l", "tracepoint:syscalls:sys_enter_openat", "-v") == out
    if BPFTRACE:
        assert out == _bpftrace_lines("-lv", "tracepoint:syscalls:sys_enter_openat")


def test_software_and_hardware_events():
    from ptrace_lang.providers.perf_events import HARDWARE, SOFTWARE

    sw = _lines("-l", "software:*")
    assert sw == sorted(f"software:{n}:" for n in SOFTWARE)     # bpftrace sorts whole lines
    assert "software:cs:" in sw and "software:context-switches:" in sw       # aliases too
    assert _lines("-l", "s:page*") == ["software:page-faults:"]
    assert _lines("-l", "h:*cycles") == ["hardware:bus-cycles:", "hardware:cpu-cycles:",
                                         "hardware:cycles:", "hardware:ref-cycles:"]
    assert set(_lines("-l", "hardware:*")) == {f"hardware:{n}:" for n in HARDWARE}


def test_kprobe_targets():
    out = _lines("-l", "kprobe:vfs_*")
    assert out and all(x.startswith("kprobe:vfs_") for x in out)
    assert "kprobe:vfs_read" in out
    assert _lines("-l", "k:vfs_read") == ["kprobe:vfs_read"]
    assert _lines("-l", "kprobe:vmlinux:vfs_rea?") == ["kprobe:vmlinux:vfs_read"]
    assert _lines("-l", "kretprobe:vfs_read") == ["kretprobe:vfs_read"]
    if HAS_BTF:
        assert _lines("-lv", "kprobe:vfs_read")[1:3] == ["    struct file * arg0", "    char * arg1"]
        assert _lines("-lv", "kretprobe:vfs_read") == ["kretprobe:vfs_read", "    ssize_t retval"]


def test_fentry_targets():
    _need_btf()
    # bpftrace >= 0.20 spelling: the module (vmlinux for the core kernel) is part of the line
    assert _lines("-l", "fentry:vfs_read") == ["fentry:vmlinux:vfs_read"]
    assert _lines("-l", "kfunc:vmlinux:vfs_read") == ["fentry:vmlinux:vfs_read"]
    out = _lines("-l", "f:vfs_*")
    assert "fentry:vmlinux:vfs_read" in out and "fentry:vmlinux:vfs_write" in out
    assert _lines("-lv", "fexit:vfs_read") == [
        "fexit:vmlinux:vfs_read", "    struct file * file", "    char * buf", "    size_t count",
        "    loff_t * pos", "    ssize_t retval"]


def test_rawtracepoints_and_iters():
    _need_btf()
    assert _lines("-l", "rawtracepoint:sched_switch") == ["rawtracepoint:vmlinux:sched_switch"]
    lv = _lines("-lv", "rt:vmlinux:sched_switch")
    assert lv[0] == "rawtracepoint:vmlinux:sched_switch"
    assert "    struct task_struct * prev" in lv and "    struct task_struct * next" in lv
    raw = _lines("-l", "rawtracepoint:*")
    assert "rawtracepoint:vmlinux:sys_enter" in raw
    assert not any(":sys_enter_openat" in x for x in raw)    # syscalls:* events are not raw
    assert "iter:task" in _lines("-l", "iter:*")


def test_everything_without_a_pattern():
    out = _lines("-l")
    assert "tracepoint:syscalls:sys_enter_openat" in out and "software:cpu-clock:" in out
    assert not any(x.startswith(("interval:", "profile:", "uprobe:", "usdt:")) for x in out)
    assert "kprobe:vfs_read" in out
    assert "tracepoint:syscalls:sys_enter_openat" in _lines("-l", "tracepoint:*")


def test_uprobe_symbols_of_a_binary(tmp_path):
    path = _gcc(tmp_path, "funcs", """
        #include <stdio.h>
        __attribute__((noinline)) int alpha_func(int x) { return x + 1; }
        __attribute__((noinline)) static int beta_func(int x) { return x * 2; }
        int main(int argc, char **argv) { printf("%d\\n", beta_func(alpha_func(argc))); return 0; }
    """)
    assert path, "gcc failed"
    out = _lines("-l", f"uprobe:{path}:*")
    for fn in ("alpha_func", "beta_func", "main"):
        assert f"uprobe:{path}:{fn}" in out
    assert out == sorted(out)
    assert _lines("-l", f"u:{path}:alpha*") == [f"uprobe:{path}:alpha_func"]
    assert _lines("-l", f"uretprobe:{path}:main") == [f"uretprobe:{path}:main"]
    if BPFTRACE:
        assert out == _bpftrace_lines("-l", f"uprobe:{path}:*")


def test_usdt_notes_of_a_binary(tmp_path):
    path = _gcc(tmp_path, "sdt", """
        #include <sys/sdt.h>
        __attribute__((noinline)) int f(int x) { DTRACE_PROBE1(myprov, first, x); return x + 1; }
        int main(int argc, char **argv) {
            DTRACE_PROBE(myprov, second);
            DTRACE_PROBE(other, third);
            return f(argc);
        }
    """)
    if not path:
        print("cannot compile with <sys/sdt.h> (apt-get install systemtap-sdt-dev): skipped")
        pytest.skip("no sys/sdt.h")
    out = _lines("-l", f"usdt:{path}:*")
    assert out == [f"usdt:{path}:myprov:first", f"usdt:{path}:myprov:second",
                   f"usdt:{path}:other:third"]
    assert _lines("-l", f"U:{path}:other:*") == [f"usdt:{path}:other:third"]
    assert _lines("-l", f"usdt:{path}:second") == [f"usdt:{path}:myprov:second"]
    if BPFTRACE:
        assert out == _bpftrace_lines("-l", f"usdt:{path}:*")


def test_a_pipe_closed_early_ends_quietly():
    p = subprocess.Popen(ptrace_cmd("-l"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         cwd=ROOT)
    first = p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(60) == 0, err
    assert first and "Traceback" not in err and "Exception" not in err


def test_bad_binaries_and_patterns_are_errors(tmp_path):
    for args in (("-l", "uprobe:/nonexistent/bin:*"), ("-l", "usdt:/nonexistent/bin:*"),
                 ("-l", f"uprobe:{ROOT / 'README.md'}:*"), ("-l", "uprobe:*"),
                 ("-l", "nosuchprovider:foo"), ("-l", "a", "b")):
        r = run(*args)
        assert r.rc == 1, (args, r.out, r.err)
        assert r.err.startswith(("ERROR: ", "WARNING: ")) and "ERROR: " in r.err, r.err
        assert "Traceback" not in r.err and r.out == ""


def test_no_match_is_empty_and_successful():
    for pattern in ("tracepoint:nosuch:nosuch*", "kprobe:no_such_function_xyz", "iter:nope*"):
        r = run("-l", pattern)
        assert (r.rc, r.out) == (0, ""), (pattern, r.err)
    if BPFTRACE:     # bpftrace says nothing either
        assert _bpftrace_lines("-l", "tracepoint:nosuch:nosuch*") == []


def test_a_program_files_probes(tmp_path):
    # `-l script.bt`: the probes the program would attach, wildcards expanded
    f = tmp_path / "s.bt"
    f.write_text("tracepoint:syscalls:sys_enter_openat,tracepoint:syscalls:sys_exit_openat* "
                 "{ } BEGIN { }\n")
    r = run("-l", str(f))
    assert r.rc == 0, r.err
    assert r.out.split() == ["tracepoint:syscalls:sys_enter_openat",
                             "tracepoint:syscalls:sys_exit_openat",
                             "tracepoint:syscalls:sys_exit_openat2", "begin"], r.out


def test_a_processes_probes_with_p():
    import subprocess
    import sys
    app = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        r = run("-p", str(app.pid), "-l")
        pattern = run("-p", str(app.pid), "-l", "uprobe:*:getpid")
    finally:
        app.kill()
        app.wait()
    assert r.rc == 0, r.err
    assert any("libc.so" in x and x.endswith(":getpid") for x in r.out.split()), r.out[:500]
    assert all(x.startswith(("uprobe:", "usdt:")) for x in r.out.split())
    assert pattern.rc == 0 and any(x.endswith("libc.so.6:getpid") for x in pattern.out.split())
    bad = run("-p", "99999999", "-l")      # past bpftrace's bound of 4194304
    assert (bad.rc, bad.err) == (1, "ERROR: Pid out of range: 99999999\n")
    gone = run("-p", "4194303", "-l")
    if not os.path.exists("/proc/4194303"):
        assert (gone.rc, gone.err) == (1, "ERROR: no process with pid 4194303\n")


def test_a_struct_from_btf():
    # members with plain and pointer types print as bpftrace prints them (nested anonymous
    # unions and typedef names are not kept: our types spell them resolved)
    for name in ("struct path", "struct list_head"):
        r = run("-lv", name)
        assert r.rc == 0, r.err
        if BPFTRACE:
            assert r.out.splitlines() == _bpftrace_lines("-lv", name), r.out
    assert r.out.startswith("struct list_head {\n\tstruct list_head *next;\n")
    bad = run("-lv", "struct no_such_struct_xyz")
    assert (bad.rc, bad.err) == (1, "ERROR: struct no_such_struct_xyz not found in the "
                                    "kernel's BTF\n")
