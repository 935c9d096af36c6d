"""Defects found by using ptrace-lang as a bpftrace user would (one-liners, misuse, odd input):
each test pins the fixed behaviour. No kernel needed."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError


def compiled(src: str, **opts):
    return compile_script(src, "stdin", Options(**opts))


def error_of(src: str, **opts) -> str:
    with pytest.raises(PtraceError) as info:
        compiled(src, **opts)
    return info.value.render(SOURCES)


def test_literal_shift_of_64_or_more_is_masked_as_a_register_shift_is():
    # `1 << 64` reached the verifier as an immediate shift of 64 ("invalid shift 64")
    ir = compiled("BEGIN { $y = 1 << 64; print($y); $z = -8; $z >>= 65; print($z); }",
                  stages=("ir",)).dumps["ir"]
    assert "<<= 0" in ir and "s>>= 1" in ir
    assert "<<= 64" not in ir and ">>= 65" not in ir


def test_unknown_printf_conversion_shows_control_characters_escaped():
    # "%z\n": the newline was printed raw inside the message, breaking the located layout
    msg = error_of('BEGIN { printf("%z\\n", 1); }')
    assert msg.splitlines()[0] == "stdin:1:16-22: ERROR: printf: unsupported format specifier: %z\\n"
    assert msg.splitlines()[1] == 'BEGIN { printf("%z\\n", 1); }'


def test_map_declarations_set_the_kernel_map_kind_and_size():
    # `let @m = hash(N);` (dialect §4) was refused: "MapDecl is not supported yet"
    from ptrace_lang.driver import MAP_TYPES

    spec = compiled("let @a = hash(2); let @b = lruhash(3); let @c = percpuhash(4); "
                    "let @d = percpulruhash(5); "
                    "BEGIN { @a[1] = 1; @b[1] = 1; @c[1] = count(); @d[1] = sum(1); @e[1] = 1; }").spec
    maps = {um.name: next(m for m in spec.maps if m.name == um.kernel_map) for um in spec.user_maps}
    got = {n: (m.map_type, m.max_entries) for n, m in maps.items()}
    assert got["@a"] == (MAP_TYPES["hash"], 2)
    assert got["@b"] == (MAP_TYPES["lru_hash"], 3)
    assert got["@c"] == (MAP_TYPES["percpu_hash"], 4)
    assert got["@d"] == (MAP_TYPES["lru_percpu_hash"], 5)
    assert got["@e"] == (MAP_TYPES["hash"], 4096)
    assert maps["@b"].flags == 0 and maps["@d"].flags == 0     # LRU maps cannot skip prealloc


@pytest.mark.parametrize("src, msg", [
    ("let @m = nope(2); BEGIN { @m[1] = 1; }", "stdin:1:1-18: ERROR: Invalid map kind: nope"),
    ("let @m = hash(0); BEGIN { @m[1] = 1; }", "stdin:1:1-18: ERROR: @m: a map holds 1 to 4294967295 entries (0 given)"),
    ("let @m = hash(2); let @m = hash(3); BEGIN { @m[1] = 1; }", "stdin:1:19-36: ERROR: @m is declared twice"),
    ("let @m = percpuhash(2); BEGIN { @m[1] = 1; }",
     "stdin:1:1-24: ERROR: @m is declared percpuhash() but holds a value that is not an aggregation"),
])
def test_map_declaration_errors_are_located(src, msg):
    assert error_of(src).startswith(msg)


def test_an_unused_declared_map_is_a_warning():
    spec = compiled("let @q = hash(2); BEGIN { @m[1] = 1; }").spec
    assert spec.config["warnings"][0].startswith("stdin:1:1-18: WARNING: Unused map: @q")
    assert all(um.name != "@q" for um in spec.user_maps)


def test_str_of_a_positional_parameter_is_its_text():
    # str($1) read memory at address $1 (0 when absent: a failed read; 42 when numeric)
    from ptrace_lang.frontend import ast

    def str_args(src, *pos):
        prog = compiled(src, positional=list(pos)).program
        return [c.args[0] for c in ast.walk(prog) if isinstance(c, ast.Call) and c.name == "str"]

    got = str_args('BEGIN { printf("%s %s\\n", str($1), str($2)); }', "42")
    assert [(type(a).__name__, a.value) for a in got] == [("StrLit", "42"), ("StrLit", "")]


def test_int64_min_literal_is_signed():
    # -9223372036854775808 printed 9223372036854775808: the negated literal stayed uint64
    from ptrace_lang.frontend import ast

    prog = compiled("BEGIN { $x = -9223372036854775808; $y = -5; }").program
    types = {n.target.name: str(n.target.type) for n in ast.walk(prog)
             if isinstance(n, ast.Assign) and isinstance(n.target, ast.Var)}
    # 0.26: a negated literal takes the smallest signed type (-5 is an int8)
    assert types == {"x": "int64", "y": "int8"}


def test_argument_register_out_of_range_says_so():
    # arg6 in a kprobe said "The arg6 builtin can not be used with 'kprobe' probes"
    msg = error_of("kprobe:vfs_read { print(arg6); }")
    assert msg.splitlines()[0] == "stdin:1:25-29: ERROR: x86_64 doesn't support arg6"
    assert msg.splitlines()[-1] == "HINT: 'kprobe' probes have arg0 to arg5"
    assert "can not be used with 'begin'" in error_of("BEGIN { print(arg0); }")


def test_bytes_that_are_not_utf8_are_shown_as_bytes(tmp_path):
    # '\udcff' (Python's surrogate escape) was shown for a 0xff byte, in the message and the line
    import subprocess
    import sys

    script = tmp_path / "bin.bt"
    script.write_bytes(b"\xff BEGIN { }\n")
    p = subprocess.run([sys.executable, "-m", "ptrace_lang", str(script)], capture_output=True)
    assert p.returncode == 1
    lines = p.stderr.split(b"\n")
    assert lines[0] == f"{script}:1:1-2: ERROR: invalid character '\\xff'".encode()
    assert lines[1] == b"\xff BEGIN { }"


@pytest.mark.parametrize("src, msg", [
    # both said "... is not supported yet", though bpftrace refuses them as type errors
    ("BEGIN { @x = count(); @x++; }",
     "stdin:1:23-27: ERROR: The ++ operator can not be used on expressions of type 'count_t'"),
    ("BEGIN { @x = sum(1); @x += 2; }",
     "stdin:1:22-29: ERROR: Type mismatch for @x: trying to assign value of type 'int64' when map "
     "already has a type 'sum_t'"),
])
def test_increments_of_aggregation_maps_are_type_errors(src, msg):
    assert error_of(src).splitlines()[0] == msg


def test_ring_buffer_holds_the_biggest_record():
    # BPFTRACE_MAX_STRLEN=9000000: a printf record bigger than the 8 MiB ring buffer could never
    # be reserved, and every event was reported as lost
    spec = compiled('tracepoint:syscalls:sys_enter_execve { printf("%s\\n", str(args.filename)); }',
                    max_strlen=9_000_000).spec
    rb = next(m for m in spec.maps if m.name == "ringbuf")
    assert rb.max_entries >= 2 * 9_000_000
    assert rb.max_entries & (rb.max_entries - 1) == 0       # a power of two, as the kernel wants
    small = compiled('tracepoint:syscalls:sys_enter_execve { printf("%s\\n", comm); }').spec
    assert next(m for m in small.maps if m.name == "ringbuf").max_entries == 8 << 20
