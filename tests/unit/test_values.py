"""Values: types sema gives records, tuples, buffers, integer arrays, casts and long strings, the
exact errors of their misuse, and the code shapes (scratch memory, division check) they lower to.
No kernel needed."""
from __future__ import annotations

import pytest

from ptrace_lang import spec as S
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast


def compiled(src: str, **opts):
    return compile_script(src, "stdin", Options(**opts))


def var_types(src: str) -> dict[str, str]:
    """The type of every ``$var`` assigned in the script, as bpftrace spells it."""
    prog = compiled(src).program
    out = {}
    for node in ast.walk(prog):
        if isinstance(node, ast.Assign) and isinstance(node.target, ast.Var):
            out[node.target.name] = str(node.target.type)
    return out


def error_of(src: str, **opts) -> str:
    with pytest.raises(PtraceError) as info:
        compiled(src, **opts)
    return info.value.render(SOURCES)


def test_types_of_values():
    t = var_types('BEGIN { $r = (x = 1, y = "ab"); $x = $r.x; $y = $r.y; $t = (1, "a", (2, 3)); '
                  '$i = $t[2]; $j = (1, 2)[1 - 1]; $one = (7,); $b = buf("abcd", 3); '
                  '$a = (uint8[4])(uint32)7; $n = (uint32)$a; $c = (int8)300; $u = (uint16)-1; '
                  '$s = (int8[2])(int16)5; $bb = true; $cmp = (1, "a") == (1, "b"); '
                  '$inv = ~(uint8)0; $neg = -(int16)1; $not = !5; $sb = (bool)"a"; '
                  '$ba = (bool[2])(uint16)1; $auto = (int16[])(uint64)1; $el = $auto[3]; '
                  '$bel = $ba[1]; }')
    assert t["r"] == "record { int64 x, string[3] y }"
    assert t["x"] == "int64" and t["y"] == "string[3]"
    assert t["t"] == "(int64,string[2],(int64,int64))"
    assert t["i"] == "(int64,int64)" and t["j"] == "int64"
    assert t["one"] == "(int64)"
    assert t["b"] == "buffer[3]"
    assert t["a"] == "uint8[4]" and t["n"] == "uint32"
    assert t["c"] == "int8" and t["u"] == "uint16"
    assert t["s"] == "int8[2]"
    assert t["bb"] == "bool" and t["cmp"] == "bool"
    assert t["inv"] == "uint8" and t["neg"] == "int16"
    assert t["not"] == "bool" and t["sb"] == "bool" and t["ba"] == "bool[2]"
    assert t["auto"] == "int16[4]" and t["el"] == "int16" and t["bel"] == "bool"


def test_records_with_fields_in_another_order_are_the_same_type():
    t = var_types("BEGIN { $r = (x = 1, y = 2); $r = (y = 3, x = 4); }")
    assert t["r"] == "record { int64 x, int64 y }"


def test_buf_sizes_follow_length_and_max_strlen():
    t = var_types('BEGIN { $a = buf(0, 100); $b = buf(0, 2000); $c = buf("xyz"); }')
    assert t["a"] == "buffer[64]"          # capped at max_strlen (64 by default)
    assert t["b"] == "buffer[64]"
    assert t["c"] == "buffer[4]"           # a string's own size
    t = var_types('config = { max_strlen = 1024 } BEGIN { $a = buf(0, 1000); $s = str(0); }')
    assert t["a"] == "buffer[1000]" and t["s"] == "string[1025]"   # str(): max_strlen + NUL


ERRORS = [
    ("BEGIN { $r = (x = 1); print($r.y); }",
     "stdin:1:29-33: ERROR: Record does not contain a field named 'y'\n"
     "BEGIN { $r = (x = 1); print($r.y); }\n                            ~~~~"),
    ("BEGIN { $t = (1, 2); print($t.x); }",
     "stdin:1:28-32: ERROR: Can not access field 'x' on a tuple; use .0, .1, ..."),
    ("BEGIN { $r = (x = 1, x = 2); }", "stdin:1:26-27: ERROR: Duplicate field 'x' in record"),
    ('BEGIN { printf("%r\\n", 1); }',
     "stdin:1:24-25: ERROR: printf: %r specifier expects a value of type buffer ('int64' supplied)\n"
     'BEGIN { printf("%r\\n", 1); }\n                       ~\nHINT: buf(void *data, [int64 length])'),
    ('BEGIN { printf("%rx\\n", "a"); }',
     "stdin:1:25-28: ERROR: printf: %rx specifier expects a value of type buffer ('string[2]' supplied)"),
    ("BEGIN { $b = buf(1); }",
     "stdin:1:14-20: ERROR: buf() needs a length when its first argument is a pointer\n"
     "BEGIN { $b = buf(1); }\n             ~~~~~~\nHINT: buf(void *data, [int64 length])"),
    ("BEGIN { $b = buf(1, 2, 3); }",
     "stdin:1:14-26: ERROR: buf() requires between 1 and 2 arguments (3 provided)\n"
     "BEGIN { $b = buf(1, 2, 3); }\n             ~~~~~~~~~~~~\nHINT: buf(void *data, [int64 length])"),
    ("BEGIN { $b = buf(1, 0); }", "stdin:1:21-22: ERROR: buf() length must be positive"),
    ('BEGIN { $b = buf(1, "a"); }', "stdin:1:21-24: ERROR: buf() expects an integer length, got 'string[2]'"),
    ('BEGIN { $b = buf("ab", $x); }', "stdin:1:24-26: ERROR: Undefined or undeclared variable: $x"),
    ("BEGIN { $a = (uint8[4])1; }",
     "stdin:1:14-25: ERROR: Cannot cast from \"uint8\" to \"uint8[4]\": the sizes differ (1 and 4 bytes)"),
    ("BEGIN { $a = (uint8[8])1; $b = (uint32)$a; }",
     "stdin:1:32-42: ERROR: Cannot cast from \"uint8[8]\" to \"uint32\": the sizes differ"),
    ('BEGIN { $a = (uint8[8])"abc"; }', "stdin:1:14-29: ERROR: Cannot cast from \"string[4]\" to \"uint8[8]\": the sizes differ (4 and 8 bytes)"),
    ('BEGIN { $a = (int32)"abc"; }', "stdin:1:14-26: ERROR: Cannot cast from \"string[4]\" to \"int32\""),
    ('BEGIN { if ((1, 2) == (1, "a")) {} }',
     "stdin:1:20-22: ERROR: Type mismatch for '==': comparing (int64,int64) with (int64,string[2])"),
    ("BEGIN { if ((1, 2) < (1, 2)) {} }",
     "stdin:1:20-21: ERROR: Type mismatch for '<': comparing (int64,int64) with (int64,int64)"),
    ('BEGIN { if (buf("a", 1) == "a") {} }',
     "stdin:1:25-27: ERROR: Type mismatch for '==': comparing buffer[1] with string[2]"),
    ("BEGIN { $t = (1, 2); $i = 1; print($t[$i]); }",
     "stdin:1:39-41: ERROR: The index of a tuple must be an integer constant"),
    ("BEGIN { $a = (int8[8])12345; print($a[8]); }",
     "stdin:1:39-40: ERROR: Index 8 is out of bounds for 'int8[8]'"),
    ("BEGIN { $a = (int8[8])12345; $i = 1; print($a[$i]); }",
     "stdin:1:47-49: ERROR: The index of an integer array must be an integer constant"),
    ("BEGIN { $t = (1, 2); print($t[5]); }",
     "stdin:1:28-33: ERROR: Invalid tuple index: 5. Found 2 elements in tuple."),
    ("BEGIN { $r = (x = 1, y = 2); $r = (y = 3, z = 4); }",
     "stdin:1:30-49: ERROR: Type mismatch for $r: trying to assign value of type "
     "'record { int64 y, int64 z }' when variable already has a type 'record { int64 x, int64 y }'"),
    ("BEGIN { $r = (x = 1); $r = (1); }",
     "stdin:1:23-31: ERROR: Type mismatch for $r: trying to assign value of type 'int8' when "
     "variable already has a type 'record { int64 x }'"),
    ("config = { max_strlen = 40000 } BEGIN { @[str(0)] = 1; exit(); }",
     "stdin:1:41-50: ERROR: Map key of @ is too big: 'string[40001]' takes 40008 bytes, the kernel "
     "allows 32768\n"
     "config = { max_strlen = 40000 } BEGIN { @[str(0)] = 1; exit(); }\n"
     "                                        ~~~~~~~~~\n"
     "HINT: use a shorter string as the key: str(ptr, len) or config max_strlen"),
    ("config = { max_strlen = 20000 } BEGIN { $s = str(0); $t = str(1); }",
     "stdin:1:33-68: ERROR: The probe needs 40016 bytes of scratch memory for its values, more "
     "than the 32768 a per-CPU map value holds"),
]


@pytest.mark.parametrize("src,expected", ERRORS)
def test_value_errors(src, expected):
    assert error_of(src).startswith(expected)


def test_long_strings_use_scratch_memory_not_the_stack():
    src = ('config = { max_strlen = 1024 } tracepoint:syscalls:sys_enter_openat { '
           '$s = str(args.filename); @[$s] = count(); @v[pid] = $s; printf("%s\\n", $s); '
           'if ($s == "/etc/passwd") { print(($s, 1)); } @b = buf(args.filename, 1000); }')
    spec = compiled(src).spec
    scratch = [m for m in spec.maps if m.name == "scratch"]
    assert len(scratch) == 1
    assert scratch[0].map_type == 6 and scratch[0].max_entries == 1     # per-CPU array
    assert scratch[0].value_size == 32768        # one size: REPL entries share the map
    assert any(name == "scratch" for p in spec.programs for _, name in p.map_relocs)
    key = next(um for um in spec.user_maps if um.name == "@")
    assert key.key.kind == "str" and key.key.size == 1032     # string[1025], 8-byte aligned
    # short values stay on the stack: no scratch map at all
    spec = compiled('BEGIN { $s = "abc"; @[$s, 1] = 2; print((1, $s)); }').spec
    assert not any(m.name == "scratch" for m in spec.maps)


def test_division_by_a_value_is_checked_and_warns_where_it_is():
    spec = compiled("BEGIN { $x = 0; @ = 10 / $x; @m = 10 % 3; }").spec
    warnings = [ev for ev in spec.events if ev.kind == S.EV_WARNING]
    assert len(warnings) == 1          # the constant divisor needs no check
    assert warnings[0].fmt == (
        "stdin:1:21-28: WARNING: Divide or modulo by 0 detected. This can lead to unexpected "
        "results. 1 is being used as the result.\n"
        "BEGIN { $x = 0; @ = 10 / $x; @m = 10 % 3; }\n"
        "                    ~~~~~~~\n")


def test_signed_division_without_sdiv_is_the_portable_sequence(monkeypatch):
    from recorded_machine import recorded_machine

    from ptrace_lang.driver import Options, compile_script

    src = "BEGIN { $a = -7; $b = 2; @q = $a / $b; @r = $a % $b; }"
    with_sdiv, without = (compile_script(src, "stdin", Options(stages=("ir",)),
                                         machine=recorded_machine(release)).dumps["ir"]
                          for release in ("6.6.0", "6.5.0"))
    assert "s/=" in with_sdiv and "s%=" in with_sdiv
    assert "s/=" not in without and "s%=" not in without
    assert " /= " in without and " %= " in without


def test_records_tuples_buffers_and_arrays_decode_as_printed():
    from ptrace_lang.runtime import decode
    from ptrace_lang.runtime.format import format_value, json_value

    spec = compiled('BEGIN { print((a = 1, b = "xy", c = (2, 3), d = (e = true))); '
                    'print(buf("a\\x01b", 3)); print((int8[4])(int32)-2); }').spec
    evs = [ev for ev in spec.events if ev.kind == S.EV_PRINT_VALUE]
    rec = bytearray(8 + 8 + 8 + 16 + 8)
    rec[8:16] = (1).to_bytes(8, "little")
    rec[16:18] = b"xy"
    rec[24:32] = (2).to_bytes(8, "little")
    rec[32:40] = (3).to_bytes(8, "little")
    rec[40:48] = (1).to_bytes(8, "little")
    v = decode.record_decoder(evs[0], [])(bytes(rec))[0]
    assert format_value(v) == "{ .a = 1, .b = xy, .c = (2, 3), .d = { .e = true } }\n"
    assert json_value(v) == '{"a": 1, "b": "xy", "c": [2,3], "d": {"e": true}}'
    buf = bytearray(8 + 16)
    buf[8:16] = (3).to_bytes(8, "little")
    buf[16:19] = b"a\x01b"
    b = decode.record_decoder(evs[1], [])(bytes(buf))[0]
    assert b == b"a\x01b" and format_value(b) == "a\\x01b\n"
    arr = bytearray(16)
    arr[8:12] = (-2).to_bytes(4, "little", signed=True)
    a = decode.record_decoder(evs[2], [])(bytes(arr))[0]
    assert a == [-2, -1, -1, -1] and format_value(a) == "[-2,-1,-1,-1]\n"
    assert hash(a) == hash((-2, -1, -1, -1))     # usable in a map key


def test_strings_read_from_memory_get_the_trailer_when_cut():
    from ptrace_lang.runtime import decode

    ev = next(ev for ev in compiled('BEGIN { printf("%s %s\\n", str(0, 4), "abcd"); }').spec.events
              if ev.kind == S.EV_PRINTF)
    read, literal = ev.args
    assert read.aux == (5, "..") and literal.aux == ()
    dec = decode.field_decoder(read, [], 0)
    assert dec(bytes(read.offset) + b"abcd\0\0\0\0") == "abcd.."     # filled: cut
    assert dec(bytes(read.offset) + b"abc\0\0\0\0\0") == "abc"
    ev = next(ev for ev in compiled('config = { str_trunc_trailer = "" } BEGIN { printf("%s", str(0)); }'
                                    ).spec.events if ev.kind == S.EV_PRINTF)
    assert ev.args[0].aux == ()


def test_mixed_signedness_warns_as_bpftrace_unless_provably_safe():
    spec = compiled("BEGIN { $a = -1; $b = (uint64)1; if ($a < $b) { } $c = $a + $b; "
                    "$d = $b > 0; $e = pid > -1; $f = (uint32)1 * $a; $g = $b - 5; }").spec
    assert spec.config["warnings"] == [
        "stdin:1:38-45: WARNING: comparison of integers of different signs: 'int8' and 'uint64' "
        "can lead to undefined behavior\n"
        "BEGIN { $a = -1; $b = (uint64)1; if ($a < $b) { } $c = $a + $b; $d = $b > 0; "
        "$e = pid > -1; $f = (uint32)1 * $a; $g = $b - 5; }\n"
        "                                     ~~~~~~~",
        "stdin:1:56-63: WARNING: arithmetic on integers of different signs: 'int8' and 'uint64' "
        "can lead to undefined behavior\n"
        "BEGIN { $a = -1; $b = (uint64)1; if ($a < $b) { } $c = $a + $b; $d = $b > 0; "
        "$e = pid > -1; $f = (uint32)1 * $a; $g = $b - 5; }\n"
        "                                                       ~~~~~~~",
    ]
    t = var_types("BEGIN { $a = -1; $b = (uint64)1; $c = $a + $b; $f = (uint32)1 * $a; "
                  "$g = pid - 100; $h = (uint32)1 + (uint8)2; }")
    # a narrower unsigned meets a signed operand as an int64 (all its values fit); a literal
    # >= 0 takes the other side's signedness
    assert t["c"] == "uint64" and t["f"] == "int64" and t["g"] == "uint64" and t["h"] == "uint64"
    t = var_types("BEGIN { $m = -7; $a = $m / 2; $b = (uint32)5 - 10; $c = 5 - 10; $d = pid + -1; }")
    assert t["a"] == "int64" and t["b"] == "uint64" and t["c"] == "int64" and t["d"] == "int64"


def test_long_string_code_stays_small():
    """No copies or padding where none is needed: a str() read straight into a printf record,
    a variable used in place as a key and compared in place with a literal."""
    def size(src):
        spec = compiled("config = { max_strlen = 1024 } " + src).spec
        return sum(len(p.insns) for p in spec.programs) // 8

    assert size('tracepoint:syscalls:sys_enter_openat { printf("%s\\n", str(args.filename)); }') < 60
    keyed = size("tracepoint:syscalls:sys_enter_openat { $s = str(args.filename); @[$s] = count(); "
                 'if ($s == "/etc/passwd") { @p = count(); } }')
    # one zeroing of the 1024-byte buffer (128 stores) before the read, no other copy
    assert keyed < 128 + 120
