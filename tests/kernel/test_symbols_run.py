"""Stacks and symbols for real: kstack/ustack in their three modes, ksym/usym of registers,
kaddr/uaddr against /proc/kallsyms and the binary's symbol table."""
from __future__ import annotations

import re
import subprocess
import time

import pytest

from runner import run

FRAME = re.compile(r"^        ([A-Za-z_][\w.]*)\+(\d+)$")


def busy(seconds: float) -> subprocess.Popen:
    """A process keeping a CPU busy, half in the kernel (reads of /dev/zero), half in user space."""
    code = ("import os, time\nend = time.time() + %f\nfd = os.open('/dev/zero', os.O_RDONLY)\n"
            "while time.time() < end:\n    os.read(fd, 65536)\n    sum(range(2000))\n" % seconds)
    return subprocess.Popen(["python3", "-c", code])


def kallsyms() -> dict[str, int]:
    out = {}
    with open("/proc/kallsyms") as f:
        for line in f:
            a, _t, name = line.split()[:3]
            out.setdefault(name, int(a, 16))
    return out


def stack_entries(out: str, name: str = "@") -> list[tuple[list[str], int]]:
    """The ``@name[<stack>]: N`` entries of bpftrace-mode output: (frame lines, count)."""
    entries = []
    for m in re.finditer(re.escape(name) + r"\[\n((?:.*\n)*?)\]: (\d+)\n", out):
        entries.append((m.group(1).splitlines(), int(m.group(2))))
    return entries


def test_profile_kstack_map_keys_in_bpftraces_layout():
    load = busy(4)
    try:
        r = run("-e", "profile:hz:99 { @[kstack] = count(); } interval:ms:1200 { exit(); }",
                timeout=30)
    finally:
        load.kill()
        load.wait()
    assert r.rc == 0, r.err
    entries = stack_entries(r.out)
    assert entries, r.out
    names = kallsyms()
    resolved = 0
    for frames, count in entries:
        assert count >= 1
        for line in frames:
            m = FRAME.match(line)
            assert m, f"frame not 8 spaces + func+off: {line!r}\n{r.out}"
            if m.group(1) in names:
                resolved += 1
    assert resolved >= 3, r.out
    # a syscall path appears: the busy loop reads /dev/zero
    assert "entry_SYSCALL_64" in r.out or "do_syscall_64" in r.out, r.out


def test_kstack_perf_and_raw_modes_and_limits():
    load = busy(4)
    try:
        r = run("-e", "profile:hz:199 { @p[kstack(perf, 3)] = count(); @r[kstack(raw, 2)] = count();"
                " @b[kstack(1)] = count(); } interval:ms:1000 { exit(); }", timeout=30)
    finally:
        load.kill()
        load.wait()
    assert r.rc == 0, r.err
    names = kallsyms()
    addrs = set(names.values())
    perf = stack_entries(r.out, "@p")
    assert perf, r.out
    for frames, _ in perf:
        assert 1 <= len(frames) <= 3
        for line in frames:
            m = re.fullmatch(r"\t([0-9a-f]+) ([\w.]+)\+(\d+)", line)
            assert m, repr(line)
            # the address and func+off agree with kallsyms
            assert int(m.group(1), 16) == names[m.group(2)] + int(m.group(3)) or \
                m.group(2) not in names, line
    raw = stack_entries(r.out, "@r")
    assert raw, r.out
    for frames, _ in raw:
        assert 1 <= len(frames) <= 2
        for line in frames:
            assert re.fullmatch(r"[0-9a-f]{16}", line), repr(line)
            assert int(line, 16) >= 0xffff800000000000
    one = stack_entries(r.out, "@b")
    assert one and all(len(frames) == 1 for frames, _ in one), r.out
    assert addrs


def test_ksym_of_reg_ip_in_profile_prints_kernel_functions():
    load = busy(4)
    try:
        r = run("-e", 'profile:hz:199 /reg("ip") > 0xffff000000000000/ { @[ksym(reg("ip"))] = count(); }'
                " interval:ms:1000 { exit(); }", timeout=30)
    finally:
        load.kill()
        load.wait()
    assert r.rc == 0, r.err
    keys = re.findall(r"^@\[([^\]\n]+)\]: \d+$", r.out, re.M)
    assert keys, r.out
    names = kallsyms()
    assert all(k in names for k in keys), r.out       # kernel addresses only: all resolved


def test_kaddr_is_the_kallsyms_address():
    names = kallsyms()
    r = run("-e", 'BEGIN { printf("%x %x\\n", kaddr("vfs_read"), kaddr("do_sys_openat2")); exit(); }')
    assert r.rc == 0, r.err
    a, b = r.out.split()
    assert int(a, 16) == names["vfs_read"]
    assert int(b, 16) == names["do_sys_openat2"]


def test_kaddr_of_jiffies_64_when_kallsyms_lists_data_symbols():
    names = kallsyms()
    r = run("-e", 'BEGIN { printf("%x\\n", kaddr("jiffies_64")); exit(); }')
    if "jiffies_64" in names:             # CONFIG_KALLSYMS_ALL
        assert r.rc == 0, r.err
        assert int(r.out.split()[0], 16) == names["jiffies_64"]
    else:                                 # this kernel lists functions only
        assert r.rc == 1
        assert "ERROR: Failed to resolve kernel symbol: jiffies_64" in r.err


def test_failed_stack_ids_are_counted_and_reported():
    # one bucket in the stack map: every stack but the first collides (-EEXIST)
    load = busy(4)
    try:
        r = run("-e", "config = { max_map_keys = 1 } profile:hz:499 { $k = kstack; }"
                " interval:ms:600 { exit(); }", timeout=30)
    finally:
        load.kill()
        load.wait()
    assert r.rc == 0, r.err
    m = re.search(r"WARNING: (\d+) stack traces could not be recorded", r.err)
    assert m and int(m.group(1)) > 0, r.err


def test_kaddr_of_a_missing_symbol_is_a_located_error():
    r = run("-e", 'BEGIN { print(kaddr("no_such_symbol_here")); }')
    assert r.rc == 1
    assert r.err.startswith("stdin:1:21-42: ERROR: Failed to resolve kernel symbol: no_such_symbol_here")


def test_kstack_in_printf_print_and_tuples():
    r = run("-e", 'BEGIN { printf("<%s>\\n", kstack(3)); print(kstack(perf, 2)); '
            '@t[kstack(2), 7] = count(); exit(); }')
    assert r.rc == 0, r.err
    m = re.search(r"<\n((?:        \S+\n){1,3})>\n", r.out)
    assert m, r.out
    assert re.search(r"\n\n\t[0-9a-f]+ \S+\n\t[0-9a-f]+ \S+\n\n", r.out), r.out
    assert re.search(r"@t\[\n        \S+\n        \S+\n, 7\]: 1\n", r.out), r.out


# ------------------------------------------------------------------------------ user space

SOURCE = r"""
#include <stdlib.h>
#include <unistd.h>
__attribute__((noinline, optimize("O0"))) int leaf(int x) { volatile int y = x; return y * 3 + 1; }
__attribute__((noinline, optimize("O0"))) int middle(int x) { volatile int r = leaf(x) + 1; return r; }
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 3, s = 0;
    for (int i = 0; i < n; i++) { s += middle(i); usleep(2000); }
    return s == 12345;
}
"""


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    d = tmp_path_factory.mktemp("symapp")
    (d / "app.c").write_text(SOURCE)
    p = subprocess.run(["gcc", "-O1", "-fno-omit-frame-pointer", "-o", str(d / "app"),
                        str(d / "app.c")], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"gcc failed: {p.stderr}")
    return str(d / "app")


def after_prologue(path: str, func: str) -> int:
    """The offset in ``func`` just after ``push %rbp; mov %rsp,%rbp`` (after an endbr64): from
    there the frame-pointer unwinder sees the caller's frame."""
    from ptrace_lang import elfsyms

    off = elfsyms.symbol_offset(path, func)
    with open(path, "rb") as f:
        f.seek(off)
        code = f.read(16)
    skip = 4 if code.startswith(b"\xf3\x0f\x1e\xfa") else 0
    assert code[skip:skip + 4] == b"\x55\x48\x89\xe5", code.hex()
    return skip + 4


def running(app: str) -> subprocess.Popen:
    p = subprocess.Popen([app, "100000"])
    time.sleep(0.2)
    return p


def test_ustack_in_a_uprobe_shows_leaf_middle_main(app):
    off = after_prologue(app, "leaf")
    target = running(app)
    try:
        r = run("-e", f"uprobe:{app}:leaf+{off} {{ @[ustack] = count(); @p[ustack(perf, 3)] = count(); }}"
                " interval:ms:600 { exit(); }", timeout=30)
    finally:
        target.kill()
        target.wait()
    assert r.rc == 0, r.err
    entries = stack_entries(r.out)
    assert entries, r.out
    frames, count = max(entries, key=lambda e: e[1])
    assert count > 10
    assert frames[0] == f"        leaf+{off}", r.out
    assert re.fullmatch(r"        middle\+\d+", frames[1]), r.out
    assert re.fullmatch(r"        main\+\d+", frames[2]), r.out
    perf = stack_entries(r.out, "@p")
    frames, _ = max(perf, key=lambda e: e[1])
    assert re.fullmatch(rf"\t[0-9a-f]+ leaf\+{off} \({re.escape(app)}\)", frames[0]), r.out
    assert re.fullmatch(rf"\t[0-9a-f]+ middle\+\d+ \({re.escape(app)}\)", frames[1]), r.out


def test_usym_of_reg_ip_and_uaddr_in_a_uprobe(app):
    from ptrace_lang import elfsyms

    target = running(app)
    try:
        r = run("-e", f'uprobe:{app}:leaf {{ printf("%s %x\\n", usym(reg("ip")), uaddr("leaf")); '
                '@[usym(reg("ip"))] = count(); exit(); }', timeout=30)
    finally:
        target.kill()
        target.wait()
    assert r.rc == 0, r.err
    first = r.out.splitlines()[0]
    name, addr = first.split()
    assert name == "leaf"
    assert int(addr, 16) == elfsyms.symbol_address(app, "leaf")
    assert re.search(r"^@\[leaf\]: \d+$", r.out, re.M), r.out


def test_user_symbols_of_a_process_gone_print_as_hex(app):
    # as bpftrace: user symbols are looked up when printed; the -c command has exited by then
    r = run("-c", f"{app} 3", "-e", f'uprobe:{app}:leaf {{ @[usym(reg("ip"))] = count(); }}',
            timeout=30)
    assert r.rc == 0, r.err
    assert re.search(r"^@\[0x[0-9a-f]+\]: 3$", r.out, re.M), r.out


def test_reg_outside_pt_regs_probes_is_an_error():
    r = run("-e", 'tracepoint:syscalls:sys_enter_read { @ = reg("ip"); }')
    assert r.rc == 1
    assert 'ERROR: reg can not be used with "tracepoint" probes' in r.err


def test_kstack_in_the_repl(tmp_path):
    # the REPL creates its maps itself: its stack maps must be where stacks are read from
    from test_repl import COMM, _getppid, _start

    t = _start(tmp_path, "--repl")
    try:
        t.expect(r"ptrace>")
        t.send(f'tracepoint:syscalls:sys_enter_getppid /comm == "{COMM}"/ '
               '{ @s[kstack(2)] = count(); }\r')
        t.expect(r"Attached 1 probe \(#0\)")
        _getppid(4)
        t.send("print @s\r")
        t.expect(r"@s\[\n        [\w.]+\+\d+\n        [\w.]+\+\d+\n\]: 4\n")
        t.send("quit\r")
        assert t.wait() == 0
    finally:
        t.close()


def test_stacks_in_tracepoint_and_raw_tracepoint_programs():
    # bpf_get_stackid has its own variant per program type; the user stack's top frame is
    # libc's getppid, named from libc's symbols (or its separate debug file)
    from runner import Tracer, named_workload

    t = Tracer("-e", 'tracepoint:syscalls:sys_enter_getppid /comm == "symwork"/ '
               "{ @t[kstack(3)] = count(); @u[ustack(1)] = count(); }"
               ' rawtracepoint:sys_enter /comm == "symwork" && arg1 == 110/ { @r[kstack(2)] = count(); }')
    t.wait_attached()
    # the workload lives on while the maps print: its user addresses are resolved then
    w = subprocess.Popen(named_workload("symwork", "import time; [os.getppid() for _ in range(5)];"
                                                   " time.sleep(10)"))
    try:
        time.sleep(1.5)
    finally:
        r = t.stop()
        w.kill()
        w.wait()
    assert r.rc == 0, r.err
    tp = stack_entries(r.out, "@t")
    assert any(count >= 5 and any("syscall" in f for f in frames) for frames, count in tp), r.out
    assert stack_entries(r.out, "@r"), r.out
    user = stack_entries(r.out, "@u")
    assert any(re.fullmatch(r"        (__GI___)?getppid\+\d+", frames[0]) for frames, _ in user), r.out
