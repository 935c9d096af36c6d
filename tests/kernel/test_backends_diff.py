"""Differential tier: scripts of examples/ and tools/, and one script per construct the llvm
backend lowers, run with the direct backend and with the llvm backend (llvmbackend/) against
the same workload, and their outputs must be the same.

The workload is a small static C program (its comm is ``ptdiffwl``) run with ``-c``: a fixed
number of getppid calls, reads of /dev/zero and writes to /dev/null of fixed sizes, openat of
existing and missing files, then exit; the run ends when it does. Every tracepoint probe of a
script gets the predicate ``comm == "ptdiffwl"`` (added to its own), so the counts are the
workload's alone and exact; opensnoop's pid column is the only value that differs from run to
run, and is replaced before comparing. Other workloads: ``env true alpha beta`` (execve's argv)
and a program spreading its getppid calls over two CPUs (per-CPU aggregations).

Needs root, tracefs, gcc (for the workload) and llvmlite + pyelftools (the llvm backend);
without them the tier skips and says why.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("llvmlite", reason="llvmlite is not installed (pip install "
                                        "'ptrace-lang[llvm]'): the llvm backend cannot be compared")
pytest.importorskip("elftools", reason="pyelftools is not installed: the llvm backend reads "
                                       "its ELF objects with it")

ROOT = Path(__file__).resolve().parents[2]
COMM = "ptdiffwl"
WORKLOAD_C = r"""
#include <fcntl.h>
#include <unistd.h>
static char buf[8192];
int main(void) {
    for (int i = 0; i < 37; i++) getppid();
    int z = open("/dev/zero", O_RDONLY), n = open("/dev/null", O_WRONLY);
    static const int sizes[] = {1, 7, 100, 512, 1000, 4096, 5000, 8192};
    for (int k = 0; k < 3; k++)
        for (unsigned i = 0; i < sizeof sizes / sizeof *sizes; i++) {
            read(z, buf, sizes[i] + k);
            write(n, buf, sizes[i] * (k + 1) > 8192 ? 8192 : sizes[i] * (k + 1));
        }
    for (int i = 0; i < 4; i++) {
        int fd = open(i % 2 ? "/nonexistent/ptdiffwl" : "/etc/hostname", O_RDONLY);
        if (fd >= 0) close(fd);
    }
    write(n, buf, 3);
    return 0;
}
"""
# examples and tools whose output is deterministic under the workload
SCRIPTS = [f"examples/{n}" for n in (
    "hello.bt", "syscount.bt", "rwcount.bt", "readsize.bt", "writesize.bt", "writestats.bt",
    "opensnoop.bt", "cgroupbytes.bt")] + [
    f"tools/{n}" for n in ("opensnoop.bt", "opensnoop26.bt", "syscount.bt")]


def build(tmp_path_factory, name: str, source: str) -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) for the workload")
    d = tmp_path_factory.mktemp("wl")
    (d / "wl.c").write_text(source)
    exe = d / name
    p = subprocess.run([cc, "-O1", "-static", "-o", str(exe), str(d / "wl.c")],
                       capture_output=True, text=True)
    if p.returncode != 0:       # no static libc: a dynamic one is deterministic enough
        p = subprocess.run([cc, "-O1", "-o", str(exe), str(d / "wl.c")], capture_output=True,
                           text=True)
    assert p.returncode == 0, p.stderr
    return str(exe)


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    return build(tmp_path_factory, COMM, WORKLOAD_C)


# 40 getppid calls alternating between CPU 0 and CPU 1 (each CPU's slot of a per-CPU
# aggregation gets some), then exit_group on CPU 0
SPREAD_C = r"""
#define _GNU_SOURCE
#include <sched.h>
#include <unistd.h>
int main(void) {
    cpu_set_t s;
    for (int i = 0; i < 40; i++) {
        CPU_ZERO(&s); CPU_SET(i % 2, &s); sched_setaffinity(0, sizeof s, &s); getppid();
    }
    return 0;
}
"""


def only_workload(text: str) -> str:
    """Every tracepoint probe of ``text`` filtered to the workload's comm."""
    out, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if not line.startswith("tracepoint:") or line.rstrip().endswith(","):
            continue
        nxt = lines[i].strip() if i < len(lines) else ""
        if nxt.startswith("/") and nxt.endswith("/"):
            out.append(f'/comm == "{COMM}" && ({nxt[1:-1]})/')
            i += 1
        else:
            out.append(f'/comm == "{COMM}"/')
    return "\n".join(out) + "\n"


def run(script: Path, backend: str, workload: str) -> str:
    cmd = [sys.executable, "-m", "ptrace_lang", "--backend", backend, "-q", "-c", workload,
           str(script)]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, f"{backend}: {p.stderr}"
    assert "internal error" not in p.stderr and "Traceback" not in p.stderr, p.stderr
    return re.sub(r"(?m)^\d+(\s+" + COMM + ")", r"PID\1", p.stdout)


@pytest.mark.parametrize("name", SCRIPTS)
def test_same_output_on_both_backends(name, workload, tmp_path):
    script = tmp_path / Path(name).name
    script.write_text(only_workload((ROOT / name).read_text()))
    direct = run(script, "direct", workload)
    llvm = run(script, "llvm", workload)
    assert llvm == direct
    if not name.endswith("hello.bt"):
        assert COMM in direct or "@" in direct, direct    # the workload was seen


FUNCTIONS = r"""
BEGIN {
  $a = ntop(2, 0x0100007f);
  $s = "hello world";
  printf("%s %s %x %x\n", $a, ntop(pton("::1")), bswap((uint32)0x11223344), bswap((uint16)0x1234));
  printf("%d %d %d\n", strncmp($s, "hello", 5), strncmp($s, "help", 4), strncmp("ab", "ab", 9));
  $n = 3;
  printf("[%s] [%s] [%s]\n", str($s, 5), str($s, $n), str($s, $n - 5));
  @[ntop(2, 0x0100007f), str($s, 2)] = count();
  printf("%r %s\n", buf($s, 4), strftime("%Y", nsecs));
  cat("/proc/sys/kernel/ostype");
  exit();
}
"""


def test_functions_same_on_both_backends(workload, tmp_path):
    """ntop (inet values in variables and keys), pton, bswap, strncmp, str() of a string and
    with a length known at run time, buf, strftime and cat, as the llvm backend lowers them."""
    script = tmp_path / "funcs.bt"
    script.write_text(FUNCTIONS)
    direct = run(script, "direct", workload)
    assert "127.0.0.1 ::1 44332211 3412\n0 1 0\n[hello] [hel] []\nhell " in direct, direct
    assert "@[127.0.0.1, he]: 1" in direct and "Linux" in direct, direct
    assert run(script, "llvm", workload) == direct


def test_kernel_struct_members_same_on_both_backends(workload, tmp_path):
    """Casts to kernel struct pointers, ``->`` chains (two pointer hops), a char array member,
    ppid and curtask, read in the workload's 37 getppid calls."""
    script = tmp_path / "members.bt"
    script.write_text("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ {\n"
                      "  $t = (struct task_struct *)curtask;\n"
                      "  @[$t->tgid == pid, ppid == curtask->real_parent->tgid, $t->comm,\n"
                      "    curtask->mm != 0] = count();\n}\n")
    direct = run(script, "direct", workload)
    assert f"@[true, true, {COMM}, true]: 37" in direct, direct
    assert run(script, "llvm", workload) == direct


def test_join_same_on_both_backends(tmp_path):
    script = tmp_path / "join.bt"
    script.write_text('tracepoint:syscalls:sys_enter_execve /pid == cpid/ { join(args.argv); '
                      'join(args.argv, ","); }\n')
    cmd = "/usr/bin/env /usr/bin/true alpha beta"
    direct = run(script, "direct", cmd)
    assert "/usr/bin/true,alpha,beta\n" in direct, direct
    assert run(script, "llvm", cmd) == direct


FLOW = r"""
BEGIN {
  $i = 0;
  unroll(2) { $i = $i + 1; }
  while ($i < 10) {
    $i++;
    if ($i == 7) { break; }
    if ($i == 3) { continue; }
    printf("w %d\n", $i);
  }
  $sum = 0;
  for ($j : 0..5) { let $sq = $j * $j; $sum += $sq; printf("f %d %d\n", $j, $sq); }
  for ($j : $i..$i + 3) { if ($j == $i + 1) { continue; } printf("g %d\n", $j); }
  for ($j : 5..1) { printf("never\n"); }
  $x = { let $a = 1; $a + $sum };
  $s = { $t = 2; { $t > 1 ? "big" : "small" } };
  printf("%d %d %s %d\n", $sum, $x, $s, { let $q = 4; $q * 2 });
  $r = (x = 1, y = "str", z = (a = 2, b = "in"));
  $tt = (1, "two", (3, 4));
  printf("%d %s %d %s %d %s %d\n", $r.x, $r.y, $r.z.a, $r.z.b, $tt.0, $tt.1, $tt.2.1);
  @m[1, "a"] = (pid > 0, "v");
  @rec = $r;
  print($r); print(((1, 2), "x"));
  exit();
}
"""


def test_loops_blocks_and_records_same_on_both_backends(workload, tmp_path):
    """while with break/continue, for over ranges (a body's own variable, an empty range),
    block expressions, records and nested tuples in variables, maps and print()."""
    script = tmp_path / "flow.bt"
    script.write_text(FLOW)
    direct = run(script, "direct", workload)
    assert "w 4\nw 5\nw 6\nf 0 0\n" in direct and "g 7\ng 9\n30 31 big 8\n" in direct, direct
    assert "{ .x = 1, .y = str, .z = { .a = 2, .b = in } }" in direct, direct
    assert run(script, "llvm", workload) == direct


def test_while_over_argv_same_on_both_backends(tmp_path):
    """A while loop walking execve's argv through a user pointer (``*$argv``, ``$argv++``)."""
    script = tmp_path / "argv.bt"
    script.write_text("tracepoint:syscalls:sys_enter_execve /pid == cpid/ {\n"
                      "  $argv = args.argv; $i = 0;\n"
                      "  while $i < 16 { if *$argv == 0 { break; }\n"
                      "    printf(\"%s|\", str(*$argv)); $argv++; $i++; }\n"
                      "  printf(\"%d\\n\", $i);\n}\n")
    cmd = "/usr/bin/env /usr/bin/true alpha beta"
    direct = run(script, "direct", cmd)
    assert "/usr/bin/true|alpha|beta|3\n" in direct, direct
    assert run(script, "llvm", cmd) == direct


def test_variables_survive_reused_temporaries(workload, tmp_path):
    """The llvm backend hands a statement's stack temporaries to the next statements; the
    variables' own slots are never among them (a string variable is read after statements whose
    keys and values are strings of its size)."""
    script = tmp_path / "slots.bt"
    script.write_text('BEGIN { $s = "keep"; $t = (1, "tt"); @a["x"] = "y"; @b["zz"] = "w";\n'
                      '  @c[$s] = $t; printf("%s %d %s\\n", $s, $t.0, $t.1); exit(); }\n')
    direct = run(script, "direct", workload)
    assert "keep 1 tt\n" in direct and "@c[keep]: (1, tt)" in direct, direct
    assert run(script, "llvm", workload) == direct


def test_stacks_and_symbols_same_on_both_backends(workload, tmp_path):
    """kstack (default and limited), ustack(1), usym of a uprobe's ip and ksym: the stack maps
    the llvm backend adds, the ids and addresses as the direct backend lays them out."""
    script = tmp_path / "stacks.bt"
    script.write_text("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @k[kstack] = count();"
                      " @u[ustack(1)] = count(); @n[kstack(3)] = count(); }\n"
                      f"uprobe:{workload}:main {{ @s[usym(reg(\"ip\")), ksym(0)] = count(); }}\n")
    direct = run(script, "direct", workload)
    assert direct.count("]: 37\n") == 3 and "do_syscall_64" in direct, direct
    assert re.search(r"@s\[0x[0-9a-f]+, 0x0\]: 1\n", direct), direct
    assert run(script, "llvm", workload) == direct


def test_aggregations_read_over_every_cpu(tmp_path_factory, tmp_path):
    """An aggregation read as an integer is every CPU's slot combined (the llvm backend read
    only the current CPU's slot, and avg's count: 20/40 and 1 where the direct backend
    printed 40/80 and the mean)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: the per-CPU slots cannot differ")
    spread = build(tmp_path_factory, "ptspread", SPREAD_C)
    script = tmp_path / "aggs.bt"
    script.write_text("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @c = count(); "
                      "@s = sum(2); @a = avg(-3); @m = max(cpu); @n = min(cpu); }\n"
                      "tracepoint:syscalls:sys_enter_exit_group /pid == cpid/ { printf(\"%d %d "
                      "%d %d %d\\n\", @c, @s, @a, @m, @n); clear(@c); clear(@s); clear(@a); "
                      "clear(@m); clear(@n); }\n")
    direct = run(script, "direct", spread)
    assert "40 80 -3 1 0\n" in direct, direct
    assert run(script, "llvm", spread) == direct


MAP_LOOPS = r"""
BEGIN {
  @m[1] = 2; @m[3] = 4; @c["a"] = count(); @c["a"] = count(); $t = 0; $n = 0; $s = "x";
  for ($kv : @m) { $t += $kv.1 * $kv.0; $loc = $kv.1 * 10; $n += $loc; if ($kv.0 == 99) { break; } }
  for ($kv : @c) { printf("%s %d %s\n", $kv.0, $kv.1, $s); $s = "y"; }
  for ($kv : @m) { $n++; break; }
  printf("%d %d %s\n", $t, $n, $s);
  for ($kv : @c) { for ($i : 0..2) { printf("in %d\n", $i); } printf("leaving\n"); exit(); }
  printf("not reached\n");
}
"""


def test_map_loops_same_on_both_backends(workload, tmp_path):
    """for ($kv : @map) over a map and a count() map (callbacks of bpf_for_each_map_elem): the
    probe's variables written in the body seen after it, a body's own variable, break, a
    range loop inside, exit() from the body leaving the probe."""
    script = tmp_path / "maploops.bt"
    script.write_text(MAP_LOOPS)
    direct = run(script, "direct", workload)
    assert direct.startswith("a 2 x\n14 61 y\nin 0\nin 1\nleaving\n"), direct
    assert "not reached" not in direct
    assert run(script, "llvm", workload) == direct


def test_len_and_tseries_same_on_both_backends(workload, tmp_path):
    """len(@map) (bpf_for_each_map_elem with a callback that only counts, inside a map loop
    too) and tseries() of each kind, in the workload's getppid calls (the intervals' clock
    times are replaced before comparing)."""
    script = tmp_path / "lents.bt"
    script.write_text("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ {\n"
                      "  @x[1] = 1; @x[7] = 1; @s = tseries(2, 1000s, 3, \"sum\");\n"
                      "  @a = tseries(4, 1000s, 3, \"avg\"); @m = tseries(3, 1000s, 2, \"max\");\n"
                      "  @l = tseries(5, 1000s, 2); @n = max(len(@x));\n"
                      "  for ($kv : @x) { @in = max(len(@x)); break; } }\n")
    direct = re.sub(r"(?m)^\d\d:\d\d:\d\d ", "TIME ", run(script, "direct", workload))
    assert "@n: 2\n" in direct and "@in: 2\n" in direct, direct
    assert re.search(r"TIME +74 \|", direct) and re.search(r"TIME +4 \|", direct), direct
    llvm = re.sub(r"(?m)^\d\d:\d\d:\d\d ", "TIME ", run(script, "llvm", workload))
    assert llvm == direct


def test_hist_buckets_same_on_both_backends(workload, tmp_path):
    """hist() buckets at their edges (negative, 0, 1, powers of two, the largest value; with
    k = 2 too): the llvm backend's log2 is 63 - ctlz, the direct backend's its own."""
    script = tmp_path / "hist.bt"
    script.write_text("BEGIN { @h = hist(-5); @h = hist(0); "
                      "@h = hist(1); @h = hist(3); @h = hist(4); @h = hist(1000); "
                      "@h = hist(1 << 40); @h = hist(0x7fffffffffffffff); @k = hist(3, 2); "
                      "@k = hist(4, 2); @k = hist(5, 2); @k = hist(1000, 2); "
                      "@k = hist(77777, 2); exit(); }\n")
    direct = run(script, "direct", workload)
    assert "(..., 0)               1 |" in direct and "[2, 4)                 1 |" in direct
    assert run(script, "llvm", workload) == direct


def test_getppid_count_is_exact(workload, tmp_path):
    script = tmp_path / "getppid.bt"
    script.write_text("tracepoint:syscalls:sys_enter_getppid /pid == cpid/ { @n = count(); "
                      "@s = sum(2); @h = hist(3); }\n")
    for backend in ("direct", "llvm"):
        out = run(script, backend, workload)
        assert "@n: 37\n" in out and "@s: 74\n" in out, (backend, out)


def test_compare_backends_prints_both_counts(tmp_path):
    p = subprocess.run([sys.executable, "-m", "ptrace_lang", "--compare-backends", "-e",
                        "tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    row = next(ln for ln in p.stdout.splitlines() if ln.startswith("p0_0_tracepoint"))
    direct, llvm = row.split()[1:]
    assert all(int(x) > 0 for x in direct.split("/") + llvm.split("/")), p.stdout
    assert "summary:" in p.stdout
