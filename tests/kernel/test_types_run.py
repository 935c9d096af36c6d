"""Kernel types for real: casts, member chains through kernel and user pointers, curtask,
ppid, sizeof against BTF, enums by name, script structs read through a uprobe argument of a
gcc-built program, bitfields, arrays, failed reads counted."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from runner import Tracer, named_workload, needs_btf, out_of, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


@needs_btf
def test_task_struct_chain_curtask_and_ppid_match_the_process():
    script = ('tracepoint:syscalls:sys_enter_getppid /comm == "typeswork"/ { '
              '$t = (struct task_struct *)curtask; '
              'printf("%d %d %s %d %d\\n", $t->tgid, $t->real_parent->tgid, $t->comm, ppid, '
              '$t->cpus_mask.bits[0]); print($t->cpus_mask.bits); exit(); }')
    t = Tracer("-e", script)
    t.wait_attached()
    w = subprocess.run(named_workload(
        "typeswork", "import os, time\n"
        "for _ in range(50):\n    os.getppid(); time.sleep(0.05)\n"
        "print(os.getpid(), os.getppid(), sum(1 << c for c in os.sched_getaffinity(0)))"),
        capture_output=True, text=True, timeout=30)
    r = t.wait(30)
    assert r.rc == 0, r.err
    pid, ppid, mask = w.stdout.split()
    first, second = r.out.split("\n")[:2]
    assert first == f"{pid} {ppid} typeswork {ppid} {mask}"
    bits = [int(x) for x in second.strip("[]").split(",")]
    assert bits[0] == int(mask) and len(bits) >= 1


@needs_btf
def test_sizeof_offsetof_against_btf_and_enum_by_name():
    from ptrace_lang.btf import BTF

    b = BTF.vmlinux()
    tid = b.find("task_struct", "struct")
    out = out_of('enum Color { RED, GREEN = 5, BLUE }; '
                 'BEGIN { print(sizeof(struct task_struct)); '
                 'print(offsetof(struct task_struct, comm)); '
                 '$c = (enum Color)5; $k = (enum pid_type)1; printf("%s %d %s %d\\n", $c, $c, $k, $k); '
                 'exit(); }')
    lines = out.split("\n")
    assert lines[0] == str(b.size_of(tid))
    assert lines[1] == str(b.offsetof(tid, "comm"))
    pid_type = b.get(b.find("pid_type", "enum")).values
    name_of_1 = next(n for n, v in pid_type.items() if v == 1)
    assert lines[2] == f"GREEN 5 {name_of_1} 1"


@needs_btf
def test_pointers_print_in_hex_and_structs_print_as_bpftrace():
    out = out_of('BEGIN { $t = curtask; print($t->real_parent); @p[$t] = 1; '
                 'print($t->se.load); printf("%p\\n", $t); exit(); }')
    lines = out.split("\n")
    assert lines[0].startswith("0xffff")
    assert lines[1].startswith("{ .weight = ") and ", .inv_weight = " in lines[1]
    assert lines[2].startswith("0xffff")
    assert f"@p[{lines[2]}]: 1" in out


def test_failed_reads_are_counted_and_read_as_zero():
    r = run("-e", 'struct s { int a; long b; }; BEGIN { $p = (struct s *)8; '
                  'printf("%d %d\\n", $p->a, $p->b); exit(); }')
    assert r.rc == 0, r.err
    assert r.out.split("\n")[0] == "0 0"
    assert "2 memory reads failed" in r.err or "memory reads failed" in r.err, r.err


TARGET_C = r"""
#include <unistd.h>
struct point { int x; int y; char name[16]; unsigned flags : 3; unsigned mode : 5;
               long vals[3]; struct point *next; };
__attribute__((noipa)) int visit(struct point *p) { return p->x + p->y; }
int main(void) {
  struct point q = { -5, 6, "second", 2, 17, {7, 8, 9}, 0 };
  struct point p = { 3, 4, "first", 5, 9, {1, -2, 3}, &q };
  usleep(300000);
  return visit(&p) > 100;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build the uprobe target")
def test_script_struct_through_a_uprobe_argument(tmp_path):
    src = tmp_path / "target.c"
    src.write_text(TARGET_C)
    binary = tmp_path / "target"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    script = tmp_path / "u.bt"
    script.write_text(
        "#define IDX 1\n"
        "struct point { int x; int y; char name[16]; unsigned flags : 3; unsigned mode : 5;\n"
        "               long vals[3]; struct point *next; };\n"
        f"uprobe:{binary}:visit {{ $p = (struct point *)arg0;\n"
        '  printf("%d %d %s %d %d %d\\n", $p->x, $p->y, $p->name, $p->flags, $p->mode, $p->vals[IDX]);\n'
        '  printf("%d %s %d %d %s\\n", $p->next->x, $p->next->name, $p->next->mode, (*$p).y, '
        'str($p->next->name));\n'
        "  print($p->vals); print(*$p->next); exit(); }\n")
    r = run("-c", str(binary), str(script))
    assert r.rc == 0, r.err
    assert "memory reads failed" not in r.err, r.err
    assert r.out.split("\n")[:4] == [
        "3 4 first 5 9 -2",
        "-5 second 17 4 second",
        "[1,-2,3]",
        "{ .x = -5, .y = 6, .name = second, .flags = 2, .mode = 17, .vals = [7,8,9], .next = 0 }",
    ]


STRING_C = r"""
#include <string.h>
#include <unistd.h>
__attribute__((noipa)) int greet(const char *s, int *n) { return s[0] + *n; }
int main(void) { int n = 41; char buf[32]; strcpy(buf, "hello there"); usleep(300000);
                 return greet(buf, &n) > 1000; }
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build the uprobe target")
def test_user_pointers_from_casts_and_uptr(tmp_path):
    src = tmp_path / "s.c"
    src.write_text(STRING_C)
    binary = tmp_path / "s"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    r = run("-c", str(binary), "-e",
            f'uprobe:{binary}:greet {{ printf("%s %d %d %d\\n", str(uptr(arg0)), *(int32 *)arg1, '
            '*uptr((int32 *)arg1), *kptr((int32 *)arg1)); exit(); }')
    assert r.rc == 0, r.err
    # read as a kernel pointer, the user address fails: counted, and zero
    assert r.out.split("\n")[0] == "hello there 41 41 0"
    assert "1 memory reads failed" in r.err or "memory read" in r.err, r.err


@needs_btf
def test_tracepoint_struct_pointer_argument_naptime_style():
    script = ('#include <linux/time.h>\n#include <linux/sched.h>\n'
              'tracepoint:syscalls:sys_enter_nanosleep /comm == "typesnap"/ { '
              '$task = (struct task_struct *)curtask; '
              'printf("%d %d %d %s\\n", args->rqtp->tv_sec, args->rqtp->tv_nsec, '
              '$task->real_parent->pid, $task->real_parent->comm); exit(); }')
    t = Tracer("-e", script)
    t.wait_attached()
    w = subprocess.run(named_workload(
        "typesnap", "import ctypes, os\n"
        "class TS(ctypes.Structure):\n    _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "for _ in range(40):\n    libc.syscall(35, ctypes.byref(TS(0, 12345678)), None)  # SYS_nanosleep (x86-64)\n"
        "print(os.getppid(), open('/proc/%d/comm' % os.getppid()).read().strip())"),
        capture_output=True, text=True, timeout=30)
    r = t.wait(30)
    assert r.rc == 0, r.err
    ppid, pcomm = w.stdout.split()
    assert r.out.split("\n")[0] == f"0 12345678 {ppid} {pcomm}"


NTOP_C = r"""
#include <unistd.h>
struct a { unsigned char ip[4]; unsigned char ip6[16]; };
__attribute__((noipa)) int f(struct a *p) { return p->ip[0]; }
int main(void) {
  struct a x = { {127, 0, 0, 1}, {0x20, 0x01, 0x0d, 0xb8, 0,0,0,0, 0,0,0,0, 0,0,0,1} };
  usleep(300000);
  return f(&x) > 200;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is needed to build the uprobe target")
def test_unsigned_char_arrays_are_bytes_for_ntop(tmp_path):
    src = tmp_path / "n.c"
    src.write_text(NTOP_C)
    binary = tmp_path / "n"
    subprocess.run(["gcc", "-O1", "-o", str(binary), str(src)], check=True)
    r = run("-c", str(binary), "-e",
            "struct a { unsigned char ip[4]; unsigned char ip6[16]; }; "
            f'uprobe:{binary}:f {{ $p = (struct a *)arg0; '
            'printf("%s %s\\n", ntop($p->ip), ntop($p->ip6)); print($p->ip); exit(); }')
    assert r.rc == 0, r.err
    assert r.out.split("\n")[:2] == ["127.0.0.1 2001:db8::1", "[127,0,0,1]"]


@needs_btf
def test_enumerators_print_by_name():
    out = out_of('enum E { A = 1, B }; BEGIN { printf("%s %d %s\\n", A, A, PIDTYPE_TGID); '
                 '@m[B] = A; @t = (A, 2); exit(); }')
    lines = out.split("\n")
    assert lines[0] == "A 1 PIDTYPE_TGID"
    assert "@m[B]: A" in out and "@t: (A, 2)" in out
