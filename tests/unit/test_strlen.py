"""str(ptr, len) with a length known only at run time: its type, its misuse, and the bounded read
it lowers to (the verifier needs the size register clamped). No kernel needed; the kernel test is
tests/kernel/test_strlen_run.py."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast


def compiled(src: str, **opts):
    return compile_script(src, "stdin", Options(**opts))


def var_types(src: str) -> dict[str, str]:
    prog = compiled(src).program
    return {n.target.name: str(n.target.type) for n in ast.walk(prog)
            if isinstance(n, ast.Assign) and isinstance(n.target, ast.Var)}


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compiled(src)
    return info.value.render(SOURCES)


def test_run_time_length_gives_a_max_strlen_string():
    t = var_types("tracepoint:syscalls:sys_enter_write { $n = 3; $a = str(args.buf, args.count); "
                  "$b = str(args.buf, $n); $c = str(\"hello\", $n); $d = str(args.buf, 5); }")
    # max_strlen characters, then the NUL (0.26)
    assert t["a"] == "string[65]" and t["b"] == "string[65]"
    assert t["c"] == "string[6]"      # a string value keeps its own size
    assert t["d"] == "string[6]"      # a constant length still sizes the string
    t = var_types("config = { max_strlen = 1024 } BEGIN { $n = 1; $s = str(0, $n); }")
    assert t["s"] == "string[1025]"


@pytest.mark.parametrize("src, expected", [
    ('BEGIN { print(str(0, "a")); }',
     "stdin:1:22-25: ERROR: str() expects an integer length, got 'string[2]'\n"
     'BEGIN { print(str(0, "a")); }\n                     ~~~\n'
     "HINT: str(char *s[, int length])"),
    ("BEGIN { $x = (1, 2); print(str(0, $x)); }",
     "stdin:1:35-37: ERROR: str() expects an integer length, got '(int64,int64)'"),
])
def test_run_time_length_errors(src, expected):
    assert error_of(src).startswith(expected)


def _ir(src: str) -> str:
    return compiled(src, stages=("ir",)).dumps["ir"]


def test_size_register_is_clamped_and_empty_when_not_positive():
    ir = _ir('tracepoint:syscalls:sys_enter_write { printf("%s", str(args.buf, args.count)); }')
    lines = [ln.strip() for ln in ir.splitlines()]
    i = next(k for k, ln in enumerate(lines) if "jsle 0 goto strempty" in ln)
    reg = lines[i].split()[1]
    assert lines[i + 1] == f"if {reg} jle 64 goto " + lines[i + 1].split()[-1]
    assert lines[i + 2] == f"{reg} = 64"           # at most max_strlen characters
    assert lines[i + 4] == f"{reg} += 1"           # plus the NUL
    assert f"r2 = {reg}" in lines[i + 5:i + 9]     # the size given to the string read
    assert any(ln.startswith("*(u8 *)") and ln.endswith("= 0") for ln in lines)  # empty string


def test_clamp_follows_the_buffer_size():
    ir = _ir("config = { max_strlen = 200 } tracepoint:syscalls:sys_enter_write "
             "{ @[str(args.buf, args.count)] = count(); }")
    assert "jle 200 goto strfits" in ir and "= 200" in ir


def test_constant_length_keeps_the_fixed_read():
    ir = _ir('tracepoint:syscalls:sys_enter_write { printf("%s", str(args.buf, 5)); }')
    assert "strempty" not in ir and "r2 = 6" in ir
