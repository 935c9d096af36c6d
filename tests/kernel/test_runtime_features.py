"""Maps, aggregations, builtins and probe types of the core, run for real."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

import time

from runner import Tracer, named_workload, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


def out_of(src: str, *args: str) -> str:
    r = run("-e", src, *args)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    return r.out


def test_aggregations_and_their_output():
    out = out_of("BEGIN { @c = count(); @c = count(); @s = sum(5); @s = sum(-2); @mn = min(7); @mn = min(-3); "
                 "@mx = max(7); @mx = max(2); @a = avg(10); @a = avg(21); @st = stats(2); @st = stats(4); "
                 "@h = hist(0); @h = hist(1); @h = hist(3); @h = hist(1000); @h = hist(-1); "
                 "@l = lhist(5, 0, 10, 2); @l = lhist(11, 0, 10, 2); @l = lhist(-1, 0, 10, 2); exit(); }")
    assert "@c: 2\n" in out
    assert "@s: 3\n" in out
    assert "@mn: -3\n" in out
    assert "@mx: 7\n" in out
    assert "@a: 15\n" in out
    assert "@st: { .count = 2, .average = 3, .total = 6 }\n" in out
    hist = out[out.index("@h:\n"):].split("\n\n")[0].split("\n")[1:]
    labels = [row[:16].strip() for row in hist]
    assert labels[:4] == ["(..., 0)", "[0]", "[1]", "[2, 4)"]
    assert labels[-1] == "[512, 1K)"
    counts = {row[:16].strip(): int(row[16:24]) for row in hist}
    assert counts["[512, 1K)"] == 1 and counts["[2, 4)"] == 1 and counts["(..., 0)"] == 1
    lh = out[out.index("@l:\n"):].split("\n\n")[0].split("\n")[1:]
    lcounts = {row[:16].strip(): int(row[16:24]) for row in lh}
    assert lcounts["(..., 0)"] == 1 and lcounts["[4, 6)"] == 1 and lcounts["[10, ...)"] == 1


def test_hist_with_sub_buckets_matches_the_formatter():
    from ptrace_lang.runtime.format import hist_index
    vals = [0, 1, 2, 3, 5, 9, 17, 100, 1000, 123456]
    body = " ".join(f"@h[{v}] = hist({v}, 2);" for v in vals)
    out = out_of("BEGIN { " + body + " exit(); }")
    # every value lands in exactly one row, whose bounds contain it
    for v in vals:
        block = out[out.index(f"@h[{v}]:\n"):].split("\n\n")[0].split("\n")[1:]
        rows = [r for r in block if int(r[16:24]) == 1]
        assert len(rows) == 1, block
    assert hist_index(5, 2) == 6


def test_keyed_maps_tuples_strings_and_ordering():
    out = out_of('BEGIN { @m[1, "b"] = 3; @m[2, "a"] = 1; @m[3, "c"] = 2; @v["x"] = "hello"; '
                 '@t = (1, "two"); exit(); }')
    lines = [l for l in out.split("\n") if l.startswith("@m[")]
    assert lines == ["@m[2, a]: 1", "@m[3, c]: 2", "@m[1, b]: 3"]
    assert "@v[x]: hello\n" in out
    assert "@t: (1, two)\n" in out


def test_print_top_and_div_clear_zero_delete():
    out = out_of("BEGIN { @a[1] = count(); @a[2] = count(); @a[2] = count(); @a[3] = count(); "
                 "@a[3] = count(); @a[3] = count(); print(@a, 2); print(@a, 0, 2); "
                 "@d[1] = 1; @d[2] = 2; delete(@d, 1); @z[1] = count(); zero(@z); "
                 "@c[1] = 5; clear(@c); exit(); }")
    # print(@a, 2) keeps the 2 largest; print(@a, 0, 2) divides by 2; each print() of a keyed
    # map ends with an empty line (bpftrace 0.26)
    assert out.startswith("@a[2]: 2\n@a[3]: 3\n\n@a[1]: 0\n@a[2]: 1\n@a[3]: 1\n\n")
    assert "@d[2]: 2" in out and "@d[1]" not in out
    assert "@z[1]: 0" in out
    assert "@c[" not in out


def test_full_map_is_counted_and_reported():
    r = run("-e", "config = { max_map_keys = 4 } BEGIN { $i = 0; while ($i < 10) { @m[$i] = 1; $i++; } exit(); }")
    assert r.rc == 0, r.err
    assert len(re.findall(r"^@m\[\d\]: 1$", r.out, re.M)) == 4
    assert "WARNING: 6 map updates failed: a map is full" in r.err


def test_builtins_in_begin_describe_the_tracer_itself():
    r = run("-e", 'BEGIN { printf("%d %d %d %d %s %d %s\\n", pid, tid, uid, gid, comm, cgroup, probe); '
                  '@e = elapsed; @n = nsecs; @c = cpu; @r = rand; exit(); }')
    assert r.rc == 0, r.err
    pid, tid, uid, gid, comm, cg, probe = r.out.split("\n")[0].split(" ")
    assert pid == tid and int(uid) == os.geteuid() and int(gid) == os.getegid()
    assert comm in ("python3", "ptrace", os.path.basename(sys.executable)[:15])
    assert probe == "BEGIN" or probe == "begin"
    with open("/proc/self/cgroup") as f:
        path = f.read().strip().split("::")[-1]
    assert int(cg) == os.stat("/sys/fs/cgroup" + path).st_ino
    assert int(re.search(r"^@c: (\d+)$", r.out, re.M).group(1)) < os.cpu_count()
    assert 0 <= int(re.search(r"^@e: (\d+)$", r.out, re.M).group(1)) < 60 * 10**9


def test_time_and_printf_specifiers():
    out = out_of('BEGIN { time("%Y\\n"); printf("%5d|%-5s|%x|%c|%u|%05d\\n", 42, "ab", 255, 65, 7, -3); exit(); }')
    lines = out.split("\n")
    assert re.fullmatch(r"\d{4}", lines[0])
    assert lines[1] == "   42|ab   |ff|A|7|-0003"


def test_tracepoint_wildcards_in_both_parts_and_data_loc_strings():
    t = Tracer("-e", "tracepoint:sys*:sys_enter_getpp* { @[probe] = count(); } "
                     "tracepoint:sched:sched_process_exec { @exec[str(args.filename)] = count(); }")
    t.wait_attached()
    subprocess.run(["/bin/true"], check=True)
    subprocess.run([sys.executable, "-c", "import os; os.getppid()"], check=True)
    r = t.stop()
    assert r.rc == 0, r.err
    assert re.search(r"^@\[tracepoint:syscalls:sys_enter_getppid\]: \d+$", r.out, re.M), r.out
    assert re.search(r"^@exec\[/bin/true\]: 1$", r.out, re.M), r.out


def test_profile_fires_on_every_cpu_and_interval_counts():
    # a busy process on each CPU: an idle CPU takes no cpu-clock samples (bpftrace sees the same)
    spin = "import os, sys, time\nos.sched_setaffinity(0, {int(sys.argv[1])})\nt = time.time()\n" \
           "while time.time() - t < 3: pass"
    spinners = [subprocess.Popen([sys.executable, "-c", spin, str(c)]) for c in range(os.cpu_count())]
    try:
        out = out_of("profile:hz:200 { @[cpu] = count(); } interval:ms:100 { @ticks = count(); } "
                     "interval:s:1 { exit(); }")
    finally:
        for p in spinners:
            p.kill()
            p.wait()
    cpus = {int(c) for c in re.findall(r"^@\[(\d+)\]: \d+$", out, re.M)}
    assert cpus == set(range(os.cpu_count()))
    assert 8 <= int(re.search(r"^@ticks: (\d+)$", out, re.M).group(1)) <= 11


def test_debug_stages_and_version_and_help():
    r = run("--dry-run", "-d", "ast,ir", "-e", "BEGIN { @x = 1 + 2; }")
    assert r.rc == 0, r.err
    assert "Program" in r.out and "Binary" in r.out     # the AST
    assert "= map[m_x]" in r.out                         # the IR
    assert run("-V").out.startswith("ptrace v")
    assert "USAGE" in run("-h").out


def test_sigterm_runs_end_probes_before_maps():
    t = Tracer("-e", 'interval:ms:50 { @n = count(); } END { printf("end %d\\n", 1); }')
    t.wait_attached()
    import time
    time.sleep(0.3)
    r = t.stop(signal.SIGTERM)
    assert r.rc == 0, r.err
    assert r.out.index("end 1") < r.out.index("@n:")


def test_integer_semantics():
    # widths and signs as bpftrace types them; division and modulo of signed values as in C;
    # !0 is a bool (the newest bpftrace), which meets a signed value signed: 1 <= -7 is false
    # (0.17 typed !0 'unsigned int64' and printed 1 here); see docs/values.md
    out = out_of('BEGIN { $m = -7; $z = 0; printf("%d %d %d %d %d %d %d %d %d\\n", -(uint8)3, !0 <= $m, '
                 '(uint32)5 - 10 < 0, $m / 2, $m % 3, (int8)200, (uint16)70000, $m >> 1, 1 << 40); exit(); }')
    assert out.split("\n")[0] == "253 0 0 -3 -1 -56 4464 -4 1099511627776"


def test_print_of_a_value_map_and_of_values():
    out = out_of('BEGIN { @x = 5; print(@x); $t = (1, "b"); print($t); print(7); exit(); }')
    assert out.startswith("@x: 5\n(1, b)\n7\n")


@pytest.fixture
def getppid_flood():
    """A process calling getppid as fast as it can, for as long as the test runs."""
    p = subprocess.Popen(named_workload("flood", "import os\nwhile True: os.getppid()\n"))
    yield p
    p.kill()
    p.wait()


def test_exit_ends_the_run_while_events_flood_in(getppid_flood):
    # probes keep firing after exit(): the run must still end (it once kept formatting the
    # flood and never returned), printing what came before exit() only
    t = Tracer("-e", 'tracepoint:syscalls:sys_enter_getppid /comm == "flood"/ '
                     '{ printf("first\\n"); exit(); }')
    res = t.wait(timeout=60)
    assert res.rc == 0, res
    lines = res.out.split("\n")
    assert lines[0] == "first" and set(lines) <= {"first", ""}, res.out[:200]


def test_ctrl_c_ends_the_run_while_events_flood_in(getppid_flood):
    t = Tracer("-e", 'tracepoint:syscalls:sys_enter_getppid /comm == "flood"/ { printf("e %d\\n", pid); }')
    t.wait_attached()
    time.sleep(0.5)
    res = t.stop(timeout=60)
    assert res.rc == 0, res
    lines = res.out.splitlines()
    assert len(lines) > 100 and {l for l in lines if l} == {f"e {getppid_flood.pid}"}
