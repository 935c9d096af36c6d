"""Variables first assigned in a for loop body belong to the body (the newest bpftrace's rule);
if/else and while blocks keep bpftrace 0.17's probe-wide variables. No kernel needed; the kernel
run is in tests/kernel/test_strlen_run.py (BEGIN of its script)."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast


def compiled(src: str):
    return compile_script(src, "stdin", Options())


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compiled(src)
    return info.value.render(SOURCES)


def loops(src: str) -> list:
    prog = compiled(src).program
    return [n for n in ast.walk(prog) if isinstance(n, (ast.ForRange, ast.ForMap))]


def test_use_after_the_loop_is_refused():
    src = 'BEGIN { for ($i : 0..3) { $y = $i * 10; printf("%d ", $y); } print($y); exit(); }'
    assert error_of(src) == (
        "stdin:1:68-70: ERROR: Undefined or undeclared variable: $y\n" + src + "\n"
        + " " * 67 + "~~")


def test_map_loop_body_too_and_nested_loops():
    assert "Undefined or undeclared variable: $v" in error_of(
        "BEGIN { @m[1] = 1; for ($kv : @m) { $v = $kv.1; } @x = $v; }")
    # an inner loop sees the outer body's variables; its own end with it
    assert "Undefined or undeclared variable: $w" in error_of(
        "BEGIN { for ($i : 0..2) { $v = 1; for ($j : 0..2) { $w = $v + $j; } $v = $w; } }")


def test_body_locals_are_recorded_for_the_lowering():
    (outer, inner) = loops("BEGIN { $t = 0; for ($i : 0..2) { $v = 1; $t += $v; "
                           "for ($j : 0..2) { $w = $v + $j; $v = $w; } } print($t); }")
    assert outer.body_locals == {"v"}          # not $t (the probe's), not $i (the loop's)
    assert inner.body_locals == {"w"}          # $v is the outer body's: written back


def test_variables_outside_stay_visible_and_if_blocks_stay_probe_wide():
    compiled("BEGIN { $t = 0; for ($i : 0..2) { $t += $i; } print($t); }")
    compiled("BEGIN { if (1) { $q = 1; } else { $q = 2; } print($q); }")
    compiled("BEGIN { $n = 0; while ($n < 2) { $k = $n; $n++; } print($k); }")
    # the same name in sibling loops (one slot: compatible types, widened)
    compiled('BEGIN { for ($i : 0..2) { $s = "ab"; } for ($i : 0..2) { $s = "abcdef"; } }')


def test_a_shared_slot_needs_compatible_types():
    assert ("Type mismatch for $y: trying to assign value of type 'string[2]' when variable "
            "already has a type 'int64'") in error_of(
        'BEGIN { for ($i : 0..3) { $y = $i; } $y = "s"; }')
    assert "Type mismatch for $y" in error_of(
        'BEGIN { for ($i : 0..3) { $y = $i; } for ($i : 0..3) { $y = "s"; } }')
