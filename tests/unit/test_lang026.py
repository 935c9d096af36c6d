"""bpftrace 0.24-0.26 syntax and typing (issue 12): `if`/`while` without parentheses, `a ?: b`,
`_ = expr;`, `typeof(expr)` in declarations, ternaries with void arms, bools through `?:`."""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import BOOL, IntT, StrT

from test_types import printed_types, typed  # (the same helpers)


def test_if_and_while_without_parentheses():
    prog = typed("begin { $x = 1; if $x > 0 { print(1); } else if $x { print(2); } "
                 "if ($x) { print(3); } while $x < 3 { $x++; } }")
    kinds = [type(s).__name__ for s in prog.probes[0].body.stmts]
    assert kinds == ["Assign", "If", "If", "While"]
    first = prog.probes[0].body.stmts[1]
    assert isinstance(first.cond, ast.Binary) and first.orelse is not None


def test_elvis_is_a_ternary_on_its_own_condition():
    prog = typed('BEGIN { $a = 0; print($a ?: 5); }')
    t = next(n for n in ast.walk(prog) if isinstance(n, ast.Ternary))
    assert t.cond is t.then and isinstance(t.orelse, ast.IntLit)


def test_elvis_evaluates_an_expression_once():
    prog = typed('BEGIN { $i = 0; print($i++ ?: 9); }')
    b = next(n for n in ast.walk(prog) if isinstance(n, ast.BlockExpr))
    assert isinstance(b.stmts[0], ast.Let) and isinstance(b.stmts[0].value, ast.IncDec)
    assert isinstance(b.value, ast.Ternary) and isinstance(b.value.cond, ast.Var)


def test_underscore_assignment_discards_the_value():
    prog = typed('BEGIN { _ = 5; _ = strlen("ab"); }')
    assert [type(s).__name__ for s in prog.probes[0].body.stmts] == ["ExprStmt", "ExprStmt"]


def test_typeof_in_let():
    t = printed_types('BEGIN { $y = (uint16)3; let $x: typeof($y) = 4; print($x); '
                      'let $s: typeof("abcd"); $s = "x"; print($s); }')
    assert t == [IntT(16, False), StrT(5)]


def test_ternary_with_void_arms_and_bools_kept():
    t = printed_types('BEGIN { $x = 1; $x ? print(1) : print(2); print($x ? true : false); }')
    assert t[2] == BOOL


def test_sizeof_of_tuples_and_records_uses_natural_alignment():
    prog = typed('BEGIN { print(sizeof((1, (uint8)2))); print(sizeof(((uint8)1, "abc", (uint16)3))); '
                 'print(sizeof((a = (int32)1, b = (uint8)2))); }')
    assert [n.value for n in ast.walk(prog) if isinstance(n, ast.Sizeof)] == [16, 8, 8]


def test_tracepoint_char_pointer_fields_are_typed_user_pointers():
    import os

    import pytest
    if not os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_execve/format"):
        pytest.skip("no syscalls:sys_enter_execve tracepoint")
    from ptrace_lang.sema.types import PtrT
    t = printed_types("tracepoint:syscalls:sys_enter_execve { print(args.filename); "
                      "print(args.argv); print(args.argv[0]); print(str(args.argv[1])); }")
    assert t[0] == PtrT(IntT(8, True), True)
    assert t[1] == PtrT(PtrT(IntT(8, True), True), True)
    assert t[2] == t[0] and isinstance(t[3], StrT)


def test_structs_and_c_arrays_are_map_keys_and_compare():
    typed("struct S { int a; long b; }; BEGIN { $p = (struct S *)0; @[*$p] = 1; "
          "@b[curtask.cpus_mask.bits] = count(); print(curtask.cpus_mask.bits == "
          "curtask.cpus_mask.bits); }")


def test_strings_cast_to_integer_arrays():
    from ptrace_lang.sema.types import IntArrayT
    t = printed_types('BEGIN { print((int8[])"abc"); print((uint8[4])"abc"); '
                      '$c = (uint8[4])"abc"; print((uint16[2])$c); }')
    assert t == [IntArrayT(IntT(8, True), 4), IntArrayT(IntT(8, False), 4),
                 IntArrayT(IntT(16, False), 2)]


def test_probe_equals_a_string_literal_is_a_bool():
    t = printed_types('BEGIN { print(probe == "begin"); print("x" != probe); }')
    assert t == [BOOL, BOOL]


def test_if_expressions_are_ternaries_of_block_values():
    prog = typed('BEGIN { $c = 1; $v = if $c > 0 { $t = 5; $t + 1 } else { 0 }; '
                 '$w = if ($c == 0) { "a" } else if $c == 1 { "bb" } else { "c" }; '
                 'if $c { print(3) } else { print(4) } }')
    stmts = prog.probes[0].body.stmts
    assert isinstance(stmts[1].value, ast.Ternary) and isinstance(stmts[1].value.then, ast.BlockExpr)
    assert isinstance(stmts[2].value.orelse, ast.Ternary)
    assert isinstance(stmts[3], ast.If)


def test_integer_literal_cast_to_an_array_takes_its_smallest_type():
    from ptrace_lang.sema.types import IntArrayT
    t = printed_types('BEGIN { print((uint8[4])0x01020304); print((int8[])0x0102); '
                      'print((uint8[8])1); }')
    assert t == [IntArrayT(IntT(8, False), 4), IntArrayT(IntT(8, True), 2),
                 IntArrayT(IntT(8, False), 8)]


def test_multi_dimensional_arrays_are_typed_indexed_and_formatted():
    from ptrace_lang.codegen.lower_types import c_value_field
    from ptrace_lang.runtime.cvalues import fmt_array
    from ptrace_lang.sema.types import ArrayT
    src = ("struct G { int tag; int y[2][3]; short z[2][2]; }; BEGIN { $g = (struct G *)0; "
           "print($g->y); print($g->y[1]); print($g->y[1][2]); print(sizeof($g->y)); "
           "print(sizeof(struct G)); @m[0] = $g->y; print(@m[0][1][0]); }")
    t = printed_types(src)
    y = ArrayT(ArrayT(IntT(32, True), 3), 2)
    assert t[:3] == [y, ArrayT(IntT(32, True), 3), IntT(32, True)] and str(y) == "int32[3][2]"
    assert [n.value for n in ast.walk(typed(src)) if isinstance(n, ast.Sizeof)] == [24, 36]
    assert t[5] == IntT(32, True)
    f = c_value_field(y, 0)
    raw = b"".join(v.to_bytes(4, "little", signed=True) for v in (1, 2, 3, 4, -5, 6))
    assert fmt_array(raw, f.aux) == [[1, 2, 3], [4, -5, 6]]
    assert hash(fmt_array(raw, f.aux)) == hash(fmt_array(raw, f.aux))    # a map key


def test_arrays_of_arrays_do_not_compare_as_bpftrace():
    from test_types import error_of
    err = error_of("struct G { int y[2][3]; }; BEGIN { $g = (struct G *)0; print($g->y == $g->y); }")
    assert "Only arrays of same sized integer support comparison operators." in err
    err = error_of("struct G { int a[2]; int b[3]; }; BEGIN { $g = (struct G *)0; "
                   "print($g->a == $g->b); }")
    assert "Only arrays of same size support comparison operators." in err
    err = error_of("struct G { int a[2]; }; BEGIN { $g = (struct G *)0; print($g->a < $g->a); }")
    assert "The < operator cannot be used on arrays." in err
    typed("struct G { int a[2]; int b[2]; }; BEGIN { $g = (struct G *)0; print($g->a != $g->b); }")


def _percpu_machine():
    from recorded_machine import recorded_machine
    m = recorded_machine()
    m.host.kernel_symbols["runqueues"] = 0x34f00
    return m


def test_percpu_kaddr_loads_the_btf_variable_and_calls_the_per_cpu_helpers():
    import pytest

    from ptrace_lang.bpf import opcodes as op
    from ptrace_lang.bpf.insn import decode
    from ptrace_lang.bpf.uapi import FN_PER_CPU_PTR, FN_THIS_CPU_PTR
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.sema import btftypes
    var = btftypes.percpu_var("runqueues")
    if var is None:
        pytest.skip("the kernel's BTF has no per-CPU variable runqueues")
    assert str(var[1]) == "struct rq" and btftypes.percpu_var("jiffies") is None
    c = compile_script('BEGIN { $r = (struct rq *)percpu_kaddr("runqueues"); print($r->cpu); '
                       '$q = (struct rq *)percpu_kaddr("runqueues", 1); print($q->nr_running); }',
                       "stdin", Options(), machine=_percpu_machine())
    insns = decode(c.spec.programs[0].insns)
    btf_loads = [i for i in insns if i.opcode == op.BPF_LD | op.BPF_IMM | op.BPF_DW
                 and i.src == op.BPF_PSEUDO_BTF_ID]
    assert [i.imm for i in btf_loads] == [var[0], var[0]]
    calls = [i.imm for i in insns if i.opcode == op.BPF_JMP | op.BPF_CALL]
    assert FN_THIS_CPU_PTR in calls and FN_PER_CPU_PTR in calls


def test_percpu_kaddr_errors():
    from test_types import error_of
    err = error_of('BEGIN { $x = percpu_kaddr("no_such_percpu_var_x"); }')
    assert "ERROR: Could not resolve per-CPU kernel variable: no_such_percpu_var_x" in err
    assert "percpu_kaddr() expects a string literal (integer provided)" in \
        error_of("BEGIN { $x = percpu_kaddr(1); }")
    assert "percpu_kaddr() expects an integer cpu (string provided)" in \
        error_of('BEGIN { $x = percpu_kaddr("runqueues", "a"); }')
    assert "requires between 1 and 2 arguments (0 provided)" in error_of("BEGIN { percpu_kaddr(); }")


def test_socket_cookie_needs_a_struct_sock_pointer_in_a_tracing_program():
    import os

    import pytest

    from test_types import error_of
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        pytest.skip("no kernel BTF at /sys/kernel/btf/vmlinux")
    t = printed_types("rawtracepoint:inet_sock_set_state { print(socket_cookie(args.sk)); }")
    assert t == [IntT(64, False)]
    err = error_of("tracepoint:sock:inet_sock_set_state { print(socket_cookie((struct sock *)"
                   "args.skaddr)); }")
    assert 'ERROR: socket_cookie can not be used with "tracepoint" probes' in err
    assert "socket_cookie(" in err.split("\n")[1] and "~" in err.split("\n")[2]
    err = error_of("rawtracepoint:inet_sock_set_state { print(socket_cookie(args.oldstate)); }")
    assert "socket_cookie() only supports 'struct sock *' as the argument (integer provided)" in err
    err = error_of("rawtracepoint:inet_sock_set_state { print(socket_cookie(curtask)); }")
    assert ("socket_cookie() only supports 'struct sock *' as the argument "
            "('struct task_struct *' provided)") in err
    assert "socket_cookie can not be used with \"rawtracepoint\" probes" in \
        error_of("rawtracepoint:inet_sock_set_state { print(socket_cookie((struct sock *)arg0)); }")


def test_tuples_are_laid_out_as_c_structs():
    from ptrace_lang.sema.types import TupleT
    i8, i16, i32, i64 = IntT(8, True), IntT(16, True), IntT(32, True), IntT(64, True)
    t = TupleT((i8, StrT(4), i16, i32, StrT(2)))
    assert t.offsets() == [0, 1, 6, 8, 12] and t.size() == 16
    assert t.spans() == [(0, 1), (1, 5), (6, 2), (8, 4), (12, 4)]
    nested = TupleT((i8, TupleT((i8, StrT(2), i32)), i16))
    assert nested.offsets() == [0, 4, 12] and nested.size() == 16
    assert TupleT((i64, i8)).size() == 16 and TupleT((i8, i8)).size() == 8
    prog = typed('BEGIN { print(sizeof(((int8)1, "abc", (int16)-7, (int32)2, "z"))); }')
    assert [n.value for n in ast.walk(prog) if isinstance(n, ast.Sizeof)] == [16]


def test_tuple_map_keys_and_values_decode_bpftraces_bytes():
    """The kernel key of @q[(int8)1, "abc", (int16)-7] and a tuple value are the bytes of the
    C structs bpftrace makes of them (packed here with struct), decoded back."""
    import struct

    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.runtime.decode import field_decoder
    c = compile_script('BEGIN { @q[(int8)1, "abc", (int16)-7] = ((int8)-1, (uint32)7, "xy", '
                       '((uint8)200, (int16)-2)); @k[(int8)1, (int32)2] = 1; }', "stdin", Options())
    maps = {m.name: m for m in c.spec.maps}
    q = next(u for u in c.spec.user_maps if u.name == "@q")
    k = next(u for u in c.spec.user_maps if u.name == "@k")
    assert maps[q.kernel_map].key_size == 8 and maps[k.kernel_map].key_size == 8
    assert maps[q.kernel_map].value_size == 16
    key = struct.pack("<b4sxh", 1, b"abc\0", -7)                 # int8, char[4], pad, int16
    value = struct.pack("<b3xI3sxBxh", -1, 7, b"xy", 200, -2)   # int8, pad, u32, char[3]...
    assert field_decoder(q.key, []) (key) == (1, "abc", -7)
    assert len(value) == 16 and field_decoder(q.value, [])(value) == (-1, 7, "xy", (200, -2))


def test_integer_literals_take_their_smallest_signed_type_in_variables_and_maps():
    from test_values import var_types
    # 0.26 (bpftrace #5138): the smallest SIGNED type, unsigned only past int64
    t = var_types("BEGIN { $a = 1; $b = 127; $c = 128; $d = 40000; $e = 0x100000000; "
                  "$f = -1; $g = -129; $h = -40000; $i = 0; $j = 0xffffffffffffffff; }")
    assert t == {"a": "int8", "b": "int8", "c": "int16", "d": "int32", "e": "int64",
                 "f": "int8", "g": "int16", "h": "int32", "i": "int8", "j": "uint64"}
    prog = typed("BEGIN { @m = 1; @n = -1; @w = 1; @w = 300; @u = (uint32)1; @u = 5; }")
    types = {n.target.name: str(n.target.type) for n in ast.walk(prog)
             if isinstance(n, ast.Assign) and isinstance(n.target, ast.MapRef)}
    assert types == {"m": "int8", "n": "int8", "w": "int16", "u": "uint32"}
    sizes = typed("BEGIN { $x = 1; print(sizeof($x)); print(sizeof(1)); print(sizeof(-1000)); "
                  "let $t: typeof(70000); print(sizeof($t)); print(sizeof(200)); }")
    assert [n.value for n in ast.walk(sizes) if isinstance(n, ast.Sizeof)] == [1, 1, 2, 4, 2]


def test_a_later_wider_value_widens_the_variable_and_literals_are_sign_flexible():
    from test_values import var_types
    # int8 then int16: int16; a literal >= 0 meeting an unsigned type takes it (uint32 stays
    # uint32, int8-from-1 then uint16: uint16); an unsigned value meeting a negative one: a
    # signed type holding both; arithmetic on a literal-typed variable is 64-bit
    t = var_types("BEGIN { $a = 1; $a = -1000; $u = (uint32)5; $u = 1; $f = 1; $f = (uint16)7; "
                  "$m = (uint8)200; $m = -1; $c = 300; $c = 70000; $d = 1; $e = $d + 1; "
                  "$p = -1; $g = $p * 2; }")
    assert t == {"a": "int16", "u": "uint32", "f": "uint16", "m": "int16", "c": "int32",
                 "d": "int8", "e": "int64", "p": "int8", "g": "int64"}
    # every read of the variable has its final type, also one before the widening assignment
    prog = typed("BEGIN { $x = 1; print($x); print(sizeof($x)); $x = 1000; }")
    reads = [n.type for n in ast.walk(prog) if isinstance(n, ast.Var)]
    assert reads == [IntT(16, True)] * 4
    assert [n.value for n in ast.walk(prog) if isinstance(n, ast.Sizeof)] == [2]
    # a declared type is kept: the literal is checked against it, not widened
    assert var_types("BEGIN { let $y: uint32 = 1; $y = 2; }") == {"y": "uint32"}
    # a variable typed from literals >= 0 compared with a uint64: no sign warning
    from test_values import compiled
    spec = compiled("BEGIN { $n = 5; $b = (uint64)1; if ($n < $b) { } $s = -5; "
                    "if ($s < $b) { } }").spec
    assert len(spec.config["warnings"]) == 1 and "'int8' and 'uint64'" in spec.config["warnings"][0]


def test_bitwise_not_of_a_literal_is_a_64_bit_unsigned_complement():
    t = printed_types("BEGIN { print(~1); print(~0); print(~(uint32)0); print(~(uint8)1); "
                      "$u = (uint16)5; print(~$u); print(~0xffffffffffffff00); }")
    assert t == [IntT(64, False), IntT(64, False), IntT(32, False), IntT(8, False),
                 IntT(16, False), IntT(64, False)]
    from test_values import var_types
    assert var_types("BEGIN { $a = ~1; $b = ~0xffffffffffffff00; }") == {"a": "uint64",
                                                                          "b": "int16"}


def test_address_of_a_scratch_variable_is_a_pointer_to_its_type():
    from ptrace_lang.sema.types import PtrT
    t = printed_types('BEGIN { $x = 5; print(&$x); $y = (uint16)300; $q = &$y; print(*$q); '
                      '$s = "hello"; print(&$s); print(*&$x); }')
    assert t == [PtrT(IntT(8, True)), IntT(16, False), PtrT(StrT(6)), IntT(8, True)]


def test_probe_is_a_string_where_a_string_is_wanted():
    prog = typed('BEGIN { print(strcontains(probe, "eg")); $s = "begin"; print(probe == $s); '
                 'print($s != probe); $p = probe; print(strlen($p)); print(probe == $p); }')
    from ptrace_lang.sema.fn_values import ProbeName
    wrapped = [n for n in ast.walk(prog) if isinstance(n, ProbeName)]
    assert len(wrapped) == 4 and all(isinstance(w.type, StrT) for w in wrapped)
    assert printed_types('BEGIN { $p = probe; print(probe == $p); }') == [BOOL]


def test_compound_assignment_widens_a_literal_typed_variable():
    from test_values import var_types
    prog = typed("BEGIN { $n = 0; $n += -3; $s = 0; $s += 1000; $b = 1; $b <<= 10; "
                 "let $t: uint8 = 200; $t += 100; $u = 1; $u++; }")
    final = {}
    for n in ast.walk(prog):
        if isinstance(n, ast.Var):
            final[n.name] = str(n.type)
    assert final == {"n": "int64", "s": "int64", "b": "int64", "t": "uint8", "u": "int8"}
    assert var_types("BEGIN { $x = 1; $x += 1; }") == {"x": "int64"}


def test_max_strlen_counts_characters_without_the_nul():
    from test_values import var_types
    t = var_types("config = { max_strlen = 4 } BEGIN { $a = str(0); $b = str(\"abcdefgh\"); "
                  "$c = str(\"abcd\"); $d = str(0, 2); $e = str(0, 9); $f = str(\"abcdefgh\", 2); }")
    assert t == {"a": "string[5]", "b": "string[5]", "c": "string[5]", "d": "string[3]",
                 "e": "string[5]", "f": "string[3]"}
    prog = typed("config = { max_strlen = 4 } BEGIN { print(str(\"abcdefgh\")); "
                 "print(str(\"abcdefgh\", 2)); print(str(\"abc\")); }")
    trunc = [n.args[0].type.trunc for n in ast.walk(prog)
             if isinstance(n, ast.Call) and n.name == "print"]
    assert trunc == [True, False, False]   # the trailer only where max_strlen cut the string


def test_printf_gr_formats_gfp_flags_by_name():
    from ptrace_lang.fmtspec import arg_class, parse_format
    from ptrace_lang.runtime import gfp
    from ptrace_lang.runtime.printf import compile_format

    specs = parse_format("%gr|%-30gr|%g")
    assert [s.conv for s in specs] == ["gr", "gr", "g"]
    assert [arg_class(s) for s in specs] == ["int", "int", "float"]
    t = printed_types('BEGIN { printf("%gr\\n", 0xcc0); }')      # accepted: an integer argument
    assert t == []
    table = gfp._default_table()
    assert gfp.gfp_text(0, table) == "0"
    assert gfp.gfp_text(0xcc0, table) == "GFP_KERNEL"                    # reclaim | IO | FS
    assert gfp.gfp_text(0x820 | 0x2, table) == "GFP_ATOMIC|__GFP_HIGHMEM"
    assert gfp.gfp_text(0x4c0, table) == "__GFP_IO|__GFP_FS|__GFP_DIRECT_RECLAIM"
    assert gfp.gfp_text(0xcc0 | 0x100000, table) == "GFP_USER"          # the widest name first
    assert gfp.gfp_text(0xcc0 | 0x80000000, table) == "GFP_KERNEL|0x80000000"
    # the kernel's own table, read from a kmem tracepoint's print format
    fmt = ('print fmt: "f=%s", (REC->gfp_flags) ? __print_flags(REC->gfp_flags, "|", '
           '{( unsigned long)((( gfp_t)(((((1UL))) << (10))|((((1UL))) << (11)))) | '
           '(( gfp_t)((((1UL))) << (6)))), "GFP_NOFS"}, {( unsigned long)(( gfp_t)((((1UL))) '
           '<< (6))), "__GFP_IO"}, {( unsigned long)(( gfp_t)(((((1UL))) << (10))|((((1UL))) '
           '<< (11))) & ~(( gfp_t)((((1UL))) << (11)))), "__GFP_DIRECT_RECLAIM"}, '
           '{ 0, ((void *)0) } ) : "none", REC->node')
    parsed = gfp.parse_print_flags(fmt)
    assert parsed == [(0xc40, "GFP_NOFS"), (0x40, "__GFP_IO"), (0x400, "__GFP_DIRECT_RECLAIM")]
    assert gfp.gfp_text(0xc40 | 0x400, parsed) == "GFP_NOFS"
    assert gfp.gfp_text(0x440, parsed) == "__GFP_IO|__GFP_DIRECT_RECLAIM"
    render = compile_format("[%-12gr]")
    assert render((0,)) == "[0           ]"
