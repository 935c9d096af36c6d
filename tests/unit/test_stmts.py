"""Statements and program structure without the kernel: loops over maps and ranges (their
subprograms, linking and BTF), len(), typed let, block expressions, config variables, macros,
imports and the stdlib — exact error messages and what the compiler produces."""
from __future__ import annotations

import os
import struct

import pytest

from ptrace_lang import config
from ptrace_lang.bpf import funcbtf
from ptrace_lang.bpf import opcodes as op
from ptrace_lang.bpf.insn import Instruction
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast
from ptrace_lang.frontend.macros import expand_macros, resolve_imports, unmangle
from ptrace_lang.frontend.parser import parse


def compile_(src: str, **kw):
    return compile_script(src, "stdin", Options(**kw))


def error_of(src: str, filename: str = "stdin", **kw) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, filename, Options(**kw))
    return info.value.render(SOURCES)


def decode(ps) -> list[Instruction]:
    out = []
    for i in range(0, len(ps.insns), 8):
        code, regs, off, imm = struct.unpack_from("<BBhi", ps.insns, i)
        out.append(Instruction(code, regs & 0xF, regs >> 4, off, imm))
    return out


# ------------------------------------------------------------------------------------ loops


def test_for_map_is_a_callback_linked_after_the_probe():
    c = compile_("BEGIN { @m[1] = 2; for ($kv : @m) { printf(\"%d\\n\", $kv.1); } }",
                 stages=("asm",))
    ps = c.spec.programs[0]
    assert len(ps.functions) == 1
    start, name, nargs = ps.functions[0]
    assert name.startswith("for_each") and nargs == 4
    insns = decode(ps)
    # the ld_imm64 of the callback's address points at the function's first instruction
    lds = [i for i, ins in enumerate(insns) if ins.opcode == 0x18 and ins.src == op.BPF_PSEUDO_FUNC]
    assert len(lds) == 1 and lds[0] + 1 + insns[lds[0]].imm == start
    assert any(ins.opcode == 0x85 and ins.imm == 164 for ins in insns)   # for_each_map_elem
    # the probe's code ends before the callback starts; both end in exit
    assert insns[start - 1].opcode == 0x95 and insns[-1].opcode == 0x95
    # -d asm names the function and the callback address
    assert f"\n{name}:\n" in c.dumps["asm"]
    assert f"= func {name}" in c.dumps["asm"]


def test_range_loop_uses_bpf_loop_and_nested_loops_chain_functions():
    c = compile_("BEGIN { for ($i : 0..3) { for ($j : 1..$i) { printf(\"%d\\n\", $j); } } }")
    ps = c.spec.programs[0]
    assert [n.split("_")[0] for _, n, _ in ps.functions] == ["loop", "loop"]
    helpers = [ins.imm for ins in decode(ps) if ins.opcode == 0x85]
    assert helpers.count(181) == 2                                        # bpf_loop


def test_len_counts_with_one_shared_callback():
    c = compile_("BEGIN { @m[1] = 1; @n[2] = 2; @a = len(@m); @b = len(@n); }")
    ps = c.spec.programs[0]
    assert [n for _, n, _ in ps.functions] == ["count_elems"]


def test_stack_of_a_loop_body_adds_to_the_probe_frame():
    long = '"' + "a" * 60 + '"'
    src = ("BEGIN { $a = " + long + "; $b = " + long + "; $c = " + long + "; @m[1] = 1; "
           "for ($kv : @m) { $x = " + long + "; $y = " + long + "; $z = " + long
           + "; $w = " + long + "; printf(\"%s%s%s%s%s%s%s\\n\", $a, $b, $c, $x, $y, $z, $w); } }")
    assert "needs" in error_of(src) and "more than BPF's 512" in error_of(src)


LOOP_ERRORS = [
    ("BEGIN { for ($kv : @nope) { } }", "stdin:1:20-25: ERROR: Undefined map: @nope"),
    ("BEGIN { @s = 1; for ($kv : @s) { } }",
     "stdin:1:28-30: ERROR: Loop over a map without keys is not allowed: @s is a scalar map"),
    ("BEGIN { @h[1] = hist(3); for ($kv : @h) { } }",
     "stdin:1:37-39: ERROR: Loop over map @h of type hist() is not supported: its values are "
     "not integers"),
    ("BEGIN { $kv = 1; @m[1] = 1; for ($kv : @m) { } }",
     "stdin:1:34-37: ERROR: Loop declaration shadows existing variable: $kv"),
    ('BEGIN { for ($i : 0.."a") { } }',
     "stdin:1:22-25: ERROR: Loop range requires an integer for the end value, got 'string[2]'"),
    ("BEGIN { break; }", "stdin:1:9-14: ERROR: 'break' outside of a loop"),
    ("BEGIN { len(1); }", "stdin:1:13-14: ERROR: len() expects a map argument\n"
                          "BEGIN { len(1); }\n            ~\nHINT: len(@map)"),
    ("BEGIN { @m[1] = 1; len(@m, 1); }", "stdin:1:20-30: ERROR: len() requires one argument "
                                         "(2 provided)\n"),
    ("BEGIN { @s = 1; $n = len(@s); }",
     "stdin:1:26-28: ERROR: len() expects a map with keys; @s is a scalar map"),
    ('BEGIN { return "x"; }', "stdin:1:16-19: ERROR: return value must be an integer, got 'string[2]'"),
]


@pytest.mark.parametrize("src,expected", LOOP_ERRORS, ids=[c[0] for c in LOOP_ERRORS])
def test_loop_errors(src, expected):
    assert error_of(src).startswith(expected)


def test_loop_variables_types():
    c = compile_('BEGIN { @m[1, "a"] = (1, "x"); @c[2] = count(); '
                 'for ($kv : @m) { $k = $kv.0.1; $v = $kv.1.1; } for ($kv : @c) { $n = $kv.1; } }',
                 stages=("types",))
    types = c.dumps["types"]
    assert "((int64,string[2]),(int64,string[2]))" in types
    assert "(int64,uint64)" in types


def test_func_btf_blob_and_records():
    blob, ids = funcbtf.func_btf([("main", 1), ("cb", 4), ("loop", 2)])
    magic, version, flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
        "<HBBIIIII", blob)
    assert (magic, version, hdr_len, type_off) == (0xEB9F, 1, 24, 0)
    assert len(blob) == 24 + type_len + str_len and str_off == type_len
    assert blob[24 + str_off] == 0          # the string section starts with ""
    assert struct.unpack("<3I", ids) == (5, 6, 7)     # long, 3 protos (1, 2, 4 args), funcs
    recs = funcbtf.func_info([0, 40, 90], ids)
    assert struct.unpack("<6I", recs) == (0, 5, 40, 6, 90, 7)


# ------------------------------------------------------------------------------------ let


LET_ERRORS = [
    ("BEGIN { let $x: uint8 = 300; }",
     "stdin:1:9-28: ERROR: Type mismatch for $x: trying to assign value '300' which does not "
     "fit into the variable of type 'uint8'"),
    ("BEGIN { let $x: int8 = -129; }",
     "stdin:1:9-28: ERROR: Type mismatch for $x: trying to assign value '-129' which does not "
     "fit into the variable of type 'int8'"),
    ('BEGIN { let $x: uint8 = "a"; }',
     "stdin:1:9-28: ERROR: Type mismatch for $x: trying to assign value of type 'string[2]' when "
     "variable already has a type 'uint8'"),
    ("BEGIN { let $x: uint8; $x = \"a\"; }",
     "stdin:1:24-32: ERROR: Type mismatch for $x: trying to assign value of type 'string[2]' "
     "when variable already has a type 'uint8'"),
    ("BEGIN { let $x: foo_t = 1; }", "stdin:1:17-22: ERROR: Unknown type: 'foo_t'"),
    ("BEGIN { let $x = 1; { let $x = 2; } }",
     "stdin:1:23-33: ERROR: Variable $x was already declared. Variable shadowing is not allowed."),
    ("BEGIN { $x = 1; let $x = 2; }",
     "stdin:1:17-27: ERROR: Variable $x was already declared. Variable shadowing is not allowed."),
    ("BEGIN { for ($x : 1..10) { let $x = 1; } }",
     "stdin:1:28-38: ERROR: Variable $x was already declared. Variable shadowing is not allowed."),
]


@pytest.mark.parametrize("src,expected", LET_ERRORS, ids=[c[0] for c in LET_ERRORS])
def test_let_errors(src, expected):
    assert error_of(src).startswith(expected)


def test_typed_variable_keeps_its_type():
    c = compile_("BEGIN { let $x: uint8 = 1; $x = 1000; $y = $x; }")
    an = c.program.probes[0].body.stmts
    assert an[2].value.type.bits == 8 and not an[2].value.type.signed   # $y = $x reads a uint8


def test_sibling_blocks_may_declare_the_same_name():
    assert compile_("BEGIN { if (1) { let $x = 1; } else { let $x = 2; } }").spec.programs


def test_block_expression_value_and_scope():
    c = compile_("BEGIN { $a = { let $b = 2; $b + 1 }; @x = $a; }")
    assert c.spec.programs
    assert "Undefined or undeclared variable: $b" in error_of(
        "BEGIN { $a = { let $b = 2; $b }; @x = $b; }")


# ------------------------------------------------------------------------------------ config


def test_config_block_values_and_environment_override(monkeypatch):
    prog = parse('config = { max_map_keys = 7; BPFTRACE_STACK_MODE = perf; '
                 'print_maps_on_exit = false; str_trunc_trailer = "~"; missing_probes = warn } '
                 'BEGIN { }')
    vals = config.from_script(prog)
    assert vals == {"max_map_keys": 7, "stack_mode": "perf", "print_maps_on_exit": False,
                    "str_trunc_trailer": "~", "missing_probes": "warn"}
    env = {"BPFTRACE_MAX_MAP_KEYS": "9", "BPFTRACE_STRLEN": "100", "BPFTRACE_NO_CPP_DEMANGLE": "1",
           "BPFTRACE_VMLINUX": "/x", "BPFTRACE_PRINT_MAPS_ON_EXIT": "true", "HOME": "/root"}
    assert config.settings(prog, env) == {
        "max_map_keys": 9, "stack_mode": "perf", "print_maps_on_exit": True,
        "str_trunc_trailer": "~", "missing_probes": "warn", "max_strlen": 100,
        "cpp_demangle": False}


def test_config_reaches_the_spec(monkeypatch):
    monkeypatch.delenv("BPFTRACE_MAX_MAP_KEYS", raising=False)
    c = compile_("config = { max_map_keys = 3; print_maps_on_exit = 0; max_cat_bytes = 5; "
                 "license = \"Dual MIT/GPL\" } BEGIN { @x[1] = 1; }")
    assert c.spec.maps[0].max_entries == 3
    assert c.spec.config["print_maps_on_exit"] is False
    assert c.spec.config["max_cat_bytes"] == 5
    assert c.spec.config["license"] == "Dual MIT/GPL"


def test_every_documented_key_is_known():
    doc = open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "statements.md")).read()
    for key in config.KEYS:
        assert f"`{key}`" in doc, key


CONFIG_ERRORS = [
    ("config = { foo = 1 } BEGIN { }", "stdin:1:12-19: ERROR: Unrecognized config variable: foo"),
    ('config = { max_strlen = "x" } BEGIN { }',
     "stdin:1:25-28: ERROR: Invalid type for max_strlen. Type: string. Expected Type: integer"),
    ("config = { max_map_keys = 0 } BEGIN { }",
     "stdin:1:27-28: ERROR: Invalid value for max_map_keys: 0: expected a positive integer"),
    ("config = { stack_mode = fancy } BEGIN { }",
     "stdin:1:25-30: ERROR: Invalid value for stack_mode: fancy. Valid values: bpftrace, perf, raw"),
    ("config = { print_maps_on_exit = 2 } BEGIN { }",
     "stdin:1:33-34: ERROR: Invalid value for print_maps_on_exit. Needs to be 0 or 1. Value: 2"),
    ('config = { print_maps_on_exit = "yes" } BEGIN { }',
     "stdin:1:33-38: ERROR: Invalid type for print_maps_on_exit. Type: string. "
     "Expected Type: boolean"),
    ('config = { BPFTRACE_VMLINUX = "/x" } BEGIN { }',
     "stdin:1:12-35: ERROR: vmlinux can only be set as an environment variable"),
    ('config = { btf = "/x" } BEGIN { }',
     "stdin:1:12-22: ERROR: btf can only be set as an environment variable"),
    ("config = { max_probes = 1 } BEGIN { } END { }",       # located at a probe
     "stdin:1:29-34: ERROR: Can't attach to 2 probes because it exceeds the current limit of 1 probes."),
    ("config = { max_bpf_progs = 1 } BEGIN { } END { }",    # bpftrace names the count
     "stdin:1:32-37: ERROR: Your program is trying to generate more than 2 BPF programs, which exceeds the "
     "current limit of 1."),
]


@pytest.mark.parametrize("src,expected", CONFIG_ERRORS, ids=[c[0] for c in CONFIG_ERRORS])
def test_config_errors(src, expected):
    assert error_of(src).startswith(expected)


@pytest.mark.parametrize("var,value,expected", [
    ("BPFTRACE_MAX_STRLEN", "x",
     "ERROR: Env var 'BPFTRACE_MAX_STRLEN' did not contain a valid uint64_t, or was zero-valued."),
    ("BPFTRACE_STRLEN", "0",
     "ERROR: Env var 'BPFTRACE_STRLEN' did not contain a valid uint64_t, or was zero-valued."),
    ("BPFTRACE_PRINT_MAPS_ON_EXIT", "maybe",
     "ERROR: Env var 'BPFTRACE_PRINT_MAPS_ON_EXIT' did not contain a valid boolean value: maybe"),
    ("BPFTRACE_STACK_MODE", "x", "ERROR: Env var 'BPFTRACE_STACK_MODE' has an invalid value: x."),
])
def test_environment_errors(monkeypatch, var, value, expected):
    monkeypatch.setenv(var, value)
    assert error_of("BEGIN { }").startswith(expected)


def test_missing_probes_ignore_drops_the_warning():
    c = compile_("config = { missing_probes = ignore } BEGIN { } "
                 "tracepoint:nosuchsys:nosuchevent { }")
    assert "warnings" not in c.spec.config
    assert len(c.spec.programs) == 1


# ------------------------------------------------------------------------------------ macros


def expanded(src: str) -> ast.Program:
    prog = parse(src)
    expand_macros(prog)
    return prog


def test_macro_expansion_hygiene_and_parameters():
    prog = expanded("macro inc($v, @m, e) { let $t = e; $v += $t; @m[$v] = 1; $t }\n"
                    "BEGIN { $t = 5; $x = inc($t, @hits, 2 + 3); }")
    assign = prog.probes[0].body.stmts[1]
    assert isinstance(assign.value, ast.BlockExpr)
    names = {n.name for n in ast.walk(assign) if isinstance(n, ast.Var)}
    local = [n for n in names if n.startswith("t`")]
    assert len(local) == 1 and "t" in names          # the caller's $t and the macro's own
    maps = {n.name for n in ast.walk(assign) if isinstance(n, ast.MapRef)}
    assert maps == {"hits"}
    assert unmangle(f"Undefined or undeclared variable: ${local[0]}") == \
        "Undefined or undeclared variable: $t"


def test_macro_with_one_expression_is_the_expression():
    prog = expanded("macro one() { 1 } BEGIN { @x = one + one(); }")
    value = prog.probes[0].body.stmts[0].value
    assert isinstance(value.left, ast.IntLit) and isinstance(value.right, ast.IntLit)


def test_macro_as_a_statement_is_a_block():
    prog = expanded('macro hi() { printf("hi\\n"); } BEGIN { hi(); }')
    assert isinstance(prog.probes[0].body.stmts[0], ast.Block)


MACRO_ERRORS = [
    ("macro f($a) { $a } BEGIN { f(1); }",
     "stdin:1:30-31: ERROR: Macro 'f' expects a scratch variable for parameter $a\n"
     "macro f($a) { $a } BEGIN { f(1); }\n                             ~\nHINT: f($a)"),
    ("macro f(@a) { 1 } BEGIN { f(@b[1]); }",
     "stdin:1:29-34: ERROR: Macro 'f' expects a map for parameter @a"),
    ("macro f(a, b) { a } BEGIN { print(f(1)); }",
     "stdin:1:35-39: ERROR: Macro 'f' takes 2 arguments (1 provided)"),
    ("macro f(a) { @x = a; } BEGIN { f(1); }",
     "stdin:1:14-16: ERROR: Macro 'f' uses the map @x, which is not one of its parameters"),
    ("macro f(a) { g(a) } macro g(b) { f(b) } BEGIN { print(f(1)); }",
     "stdin:1:34-38: ERROR: Recursive macro call: f -> g -> f"),
    ("macro f() { $zz } BEGIN { $zz = 1; print(f()); }",
     "stdin:1:13-16: ERROR: Undefined or undeclared variable: $zz"),
    ("macro f() { 1 } macro f() { 2 } BEGIN { }", "stdin:1:17-32: ERROR: Redefinition of macro: f"),
    ("macro f() { @x = 1; } BEGIN { $y = f(); }",
     "stdin:1:13-15: ERROR: Macro 'f' uses the map @x, which is not one of its parameters"),
    ("macro f() { $q = 1; } BEGIN { $y = f(); }",
     "stdin:1:36-39: ERROR: Macro 'f' has no value: its body does not end in an expression "
     "without ';'"),
]


@pytest.mark.parametrize("src,expected", MACRO_ERRORS, ids=[c[0] for c in MACRO_ERRORS])
def test_macro_errors(src, expected):
    assert error_of(src).startswith(expected)


# ------------------------------------------------------------------------------------ imports


def test_imports_once_relative_then_stdlib(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.bt").write_text('import "b"; macro a() { b() + 1 }\n')
    (tmp_path / "lib" / "b.bt").write_text('import "a.bt"; macro b() { 41 }\n')
    main = tmp_path / "main.bt"
    main.write_text('import "lib/a.bt"; import "lib/a"; import "errno";\n'
                    "BEGIN { @x = a(); @e = ENOENT; }\n")
    prog = parse(main.read_text(), str(main))
    files = resolve_imports(prog, str(main))
    assert [os.path.basename(f) for f in files] == ["a.bt", "errno.bt", "b.bt"]
    c = compile_script(main.read_text(), str(main), Options())
    assert set(files) <= set(c.deps)


def test_import_errors(tmp_path):
    assert error_of('import "nope_nothing"; BEGIN { }').startswith(
        "stdin:1:1-23: ERROR: Could not find the imported file 'nope_nothing'")
    (tmp_path / "c.bt").write_text("config = { max_strlen = 8 }\n")
    main = tmp_path / "m.bt"
    main.write_text('import "c"; BEGIN { }\n')
    assert "ERROR: A config block is only allowed in the main script" in error_of(
        main.read_text(), str(main))


def test_stdlib_modules_compile_and_name_macros_are_balanced():
    src = ('import "errno"; import "signal"; import "socket"; import "tcp"; import "fcntl";\n'
           "BEGIN { @a[errno_name(-ENOENT)] = 1; @b = SIGKILL; "
           "@c[af_name(AF_INET6)] = 1; @d[tcp_state_name(TCP_LISTEN)] = 1; "
           "@e[ipproto_name(IPPROTO_UDP)] = 1; @f[sock_type_name(SOCK_STREAM)] = 1; "
           "@g[open_accmode_name(O_WRONLY | O_CREAT)] = 1; }")
    c = compile_(src)
    insns = decode(c.spec.programs[0])
    assert len(insns) < 8000
    from ptrace_lang.resources import stdlib_dir

    names = sorted(f for f in os.listdir(stdlib_dir()) if f.endswith(".bt"))
    assert names == ["base.bt", "errno.bt", "fcntl.bt", "signal.bt", "socket.bt", "tcp.bt"]


def test_stdlib_names_need_no_import():
    c = compile_("BEGIN { @x[errno_name(-ENOENT)] = 1; @y = O_CREAT; }")
    assert sorted(os.path.basename(d) for d in c.deps) == ["errno.bt", "fcntl.bt"]
    # a builtin of the compiler wins: signal_name is the compiler's (a string of the program)
    c = compile_("BEGIN { @x[signal_name(15)] = 1; }")
    assert c.deps == []
    # so does a macro of the script
    c = compile_("macro ENOENT() { 99 } BEGIN { @x = ENOENT; }")
    assert c.deps == []
    assert "Unknown identifier: 'ENOENTX'" in error_of("BEGIN { @x = ENOENTX; }")


def test_loop_over_a_map_assigned_in_a_later_probe():
    c = compile_('END { for ($kv : @m) { @y[$kv.0] = $kv.1; } } BEGIN { @m["a"] = "b"; }')
    um = {u.name: u for u in c.spec.user_maps}
    assert um["@y"].key.kind == "str" and um["@y"].value.kind == "str"
