"""Statements and program structure run for real: loops over maps and ranges (BPF callbacks
through bpf_for_each_map_elem and bpf_loop, accepted by this kernel's verifier), len(), typed
let, macros, imports of the stdlib, and config variables that change what a run does."""
from __future__ import annotations

import os
import subprocess

import pytest

from runner import Tracer, bpf_prog_names, cmd_line, named_workload, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


def out_of(src: str, *args: str, env: dict | None = None) -> str:
    r = run("-e", src, *args, env=env)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    return r.out


def traced(src: str, workload: list[str]):
    t = Tracer("-e", src)
    t.wait_attached()
    subprocess.run(workload, check=True, timeout=30)
    r = t.stop()
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    return r


def test_for_over_a_map_filled_by_a_tracepoint_with_args_in_the_body():
    # the loop runs in the tracepoint's own program (its body reads args and comm through the
    # context pointer passed to the callback) and in end over the maps it filled
    src = ('tracepoint:syscalls:sys_enter_kill /comm == "stmtkill"/ {\n'
           '  @kills[args.sig] = count();\n'
           '  @m[1] = 10; @m[2] = 20;\n'
           '  for ($kv : @m) { @seen[comm, $kv.0, args.sig] = $kv.1; }\n'
           '}\n'
           'end {\n'
           '  $total = 0;\n'
           '  for ($kv : @kills) { printf("sig %d: %d calls\\n", $kv.0, $kv.1); $total += $kv.1; }\n'
           '  printf("total %d\\n", $total);\n'
           '  for ($kv : @seen) { printf("seen %s %d %d = %d\\n", $kv.0.0, $kv.0.1, $kv.0.2, $kv.1); }\n'
           '  clear(@kills); clear(@seen); clear(@m);\n'
           '}')
    r = traced(src, named_workload(
        "stmtkill", "import os\nfor s in (0, 0, 0, 18):\n    os.kill(os.getpid(), s)"))
    lines = r.out.splitlines()
    assert "sig 0: 3 calls" in lines and "sig 18: 1 calls" in lines
    assert "total 4" in lines
    for key in (1, 2):
        for sig in (0, 18):
            assert f"seen stmtkill {key} {sig} = {key * 10}" in lines
    assert "@kills" not in r.out


def test_loop_body_variables_break_continue_return():
    out = out_of(
        'BEGIN {\n'
        '  @m[1] = 1; @m[2] = 2; @m[3] = 3; @m[4] = 4;\n'
        '  $sum = 0; $n = 0; $last = "none";\n'
        '  for ($kv : @m) { $n++; if ($kv.0 == 2) { continue; } $sum += $kv.1; $last = "set"; }\n'
        '  printf("sum %d n %d last %s\\n", $sum, $n, $last);\n'
        '  $visits = 0;\n'
        '  for ($kv : @m) { $visits++; break; }\n'
        '  printf("visits %d\\n", $visits);\n'
        '  for ($i : 0..100) { if ($i == 3) { printf("leaving at %d\\n", $i); return; } }\n'
        '  printf("not reached\\n");\n'
        '}\n'
        'BEGIN { clear(@m); exit(); }')
    assert "sum 8 n 4 last set\n" in out
    assert "visits 1\n" in out
    assert "leaving at 3\n" in out
    assert "not reached" not in out


def test_range_loops_sums_nesting_and_empty_ranges():
    out = out_of(
        'BEGIN {\n'
        '  $s = 0; for ($i : 1..11) { $s += $i; } printf("sum %d\\n", $s);\n'
        '  $pairs = 0;\n'
        '  for ($i : 0..4) { for ($j : 0..$i) { if ($j == 1) { continue; } $pairs++; } }\n'
        '  printf("pairs %d\\n", $pairs);\n'
        '  $e = 0; for ($i : 5..5) { $e++; } for ($i : 5..2) { $e++; } printf("empty %d\\n", $e);\n'
        '  $lo = -3; $hi = 2; $neg = 0; for ($i : $lo..$hi) { $neg += $i; } printf("neg %d\\n", $neg);\n'
        '  exit();\n'
        '}')
    assert "sum 55\n" in out
    # i=0: j in {}; i=1: j=0; i=2: j=0 (1 skipped); i=3: j=0,2 -> 4
    assert "pairs 4\n" in out
    assert "empty 0\n" in out
    assert "neg -5\n" in out


def test_len_of_maps():
    out = out_of('BEGIN { @a[1] = 1; @a[2] = 2; @a[3] = 3; @c["x"] = count(); @c["y"] = count(); '
                 '@e[1] = 1; delete(@e, 1); '
                 'printf("%d %d %d\\n", len(@a), len(@c), len(@e)); clear(@a); clear(@c); exit(); }')
    assert out.startswith("3 2 0\n")


def test_loop_over_aggregations_reads_merged_values():
    out = out_of('BEGIN { @c[1] = count(); @c[1] = count(); @s[1] = sum(5); @s[1] = sum(7); '
                 '@mx[1] = max(3); @mx[1] = max(9); @av[1] = avg(4); @av[1] = avg(8); '
                 'for ($kv : @c) { printf("count %d\\n", $kv.1); } '
                 'for ($kv : @s) { printf("sum %d\\n", $kv.1); } '
                 'for ($kv : @mx) { printf("max %d\\n", $kv.1); } '
                 'for ($kv : @av) { printf("avg %d\\n", $kv.1); } exit(); }')
    for line in ("count 2", "sum 12", "max 9", "avg 6"):
        assert line + "\n" in out


def test_typed_let_and_block_expressions():
    out = out_of('BEGIN { let $b: uint8 = 255; $b += 1; let $s: int8 = 0; $s = 200; '
                 'let $w: uint16; $w = 70000; $x = { let $t = 6; $t * 7 }; '
                 'if (1) { let $in = "inner"; printf("%s\\n", $in); } '
                 'printf("%d %d %d %d\\n", $b, $s, $w, $x); exit(); }')
    assert "inner\n" in out
    assert "0 -56 4464 42\n" in out


def test_macros_with_variable_map_and_expression_parameters():
    out = out_of('macro add_one(x) { x + 1 }\n'
                 'macro bump($v, @m) { $v += 1; @m[$v] = add_one($v); }\n'
                 'macro twice(e) { e; e; }\n'
                 'macro tmp() { let $t = 100; $t }\n'
                 'BEGIN { $a = 10; $t = 5; bump($a, @h); twice({ printf("hi\\n") }); '
                 'printf("%d %d %d %d\\n", $a, add_one(1 + 1), tmp, $t); exit(); }')
    assert out.count("hi\n") == 2
    assert "11 3 100 5\n" in out
    assert "@h[11]: 12\n" in out


def test_import_of_stdlib_modules(tmp_path):
    script = tmp_path / "s.bt"
    (tmp_path / "mine.bt").write_text('import "tcp";\nmacro state(s) { tcp_state_name(s) }\n')
    script.write_text('import "errno";\nimport "mine";\n'
                      'BEGIN { printf("%s %s %s %d\\n", errno_name(-2), errno_name(EACCES), '
                      'state(TCP_LISTEN), EINVAL); printf("%s\\n", signal_name(9)); exit(); }\n')
    r = run(str(script))
    assert r.rc == 0, r.err
    assert "ENOENT EACCES LISTEN 22\n" in r.out
    assert "Killed\n" in r.out


def test_config_max_map_keys_and_its_environment_variable():
    src = "BEGIN { @m[1] = 1; @m[2] = 2; @m[3] = 3; exit(); }"
    r = run("-e", "config = { max_map_keys = 2 } " + src)
    assert r.rc == 0, r.err
    assert r.out.count("@m[") == 2
    assert "map updates failed: a map is full (raise max_map_keys, now 2)" in r.err
    # the environment wins over the config block
    r = run("-e", "config = { max_map_keys = 2 } " + src, env={"BPFTRACE_MAX_MAP_KEYS": "8"})
    assert r.out.count("@m[") == 3 and "map is full" not in r.err


def test_config_print_maps_on_exit_and_max_cat_bytes(tmp_path):
    f = tmp_path / "data.txt"
    f.write_text("0123456789abcdef\n")
    out = out_of(f'config = {{ print_maps_on_exit = false; max_cat_bytes = 6 }} '
                 f'BEGIN {{ @x = 1; cat("{f}"); printf("|\\n"); exit(); }}')
    assert out.startswith("012345|\n")
    assert "@x" not in out
    out = out_of("BEGIN { @x = 1; exit(); }", env={"BPFTRACE_PRINT_MAPS_ON_EXIT": "0"})
    assert "@x" not in out
    assert "@x: 1" in out_of("BEGIN { @x = 1; exit(); }")


def test_config_missing_probes_ignore_and_license():
    r = run("-e", 'config = { missing_probes = ignore; license = "Dual MIT/GPL" } '
                  'tracepoint:nosuchsys:nosuchevent { } BEGIN { printf("ran\\n"); exit(); }')
    assert r.rc == 0, r.err
    assert "ran\n" in r.out
    assert "WARNING" not in r.err
    r = run("-e", 'config = { missing_probes = warn } '
                  'tracepoint:nosuchsys:nosuchevent { } BEGIN { exit(); }')
    assert r.rc == 0 and "WARNING" in r.err


def test_nothing_stays_loaded_after_loops():
    out_of("BEGIN { @m[1] = 1; for ($kv : @m) { for ($i : 0..2) { @n[$i] = $kv.1; } } exit(); }")
    assert not [n for n in bpf_prog_names() if n.startswith("p0_0_")]


def test_while_unroll_string_values_and_exit_in_a_loop():
    out = out_of('BEGIN { @s["a"] = "x1"; @s["b"] = "y22"; $i = 0; $t = 0; '
                 'while ($i < 10) { $i++; if ($i == 3) { continue; } if ($i == 6) { break; } '
                 '$t += $i; } unroll(3) { $t++; } printf("t=%d\\n", $t); '
                 'for ($kv : @s) { printf("%s=%s\\n", $kv.0, $kv.1); } '
                 'for ($j : 0..5) { if ($j == 2) { exit(); } printf("e%d\\n", $j); } '
                 'printf("after\\n"); }')
    assert "t=15\n" in out
    assert "a=x1\n" in out and "b=y22\n" in out
    assert "e0\ne1\n" in out and "e2" not in out and "after" not in out


def test_probe_builtin_inside_a_loop_body_reads_the_cookie():
    # two tracepoints share one program: `probe` comes from the attach cookie, read through
    # the probe's context pointer that the loop body gets from its caller
    r = run("-c", cmd_line(named_workload("stmtcookie", "import os; os.getppid(); os.getpid()")),
            "-e", 'tracepoint:syscalls:sys_enter_getppid, tracepoint:syscalls:sys_enter_getpid '
                  '/comm == "stmtcookie"/ { for ($i : 0..2) { @[probe, $i] = count(); } }')
    assert r.rc == 0, r.err
    for tp in ("getpid", "getppid"):
        for i in (0, 1):
            assert f"@[tracepoint:syscalls:sys_enter_{tp}, {i}]: 1\n" in r.out


def test_config_stats_style_old():
    out = out_of('config = { stats_style = old } BEGIN { @s = stats(2); @s = stats(4); exit(); }')
    assert "@s: count 2, average 3, total 6\n" in out
