"""bpftrace 0.26's standard-library layer: __builtin_ names, probetype, macro overloading by
arity, assert and pcomm (stdlib/base.bt), delete() as a bool, ppid(task), usermode in
begin/end, getopt() with the program's options after "--"."""
from __future__ import annotations

import pytest

from ptrace_lang.cli import parse_args
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast
from ptrace_lang.sema import builtins
from ptrace_lang.sema.types import BOOL, StrT


def compile_(src: str, **kw):
    return compile_script(src, "stdin", Options(**kw))


def error_of(src: str, **kw) -> str:
    with pytest.raises(PtraceError) as info:
        compile_(src, **kw)
    return info.value.render(SOURCES)


def printed(src: str, **kw) -> list:
    prog = compile_(src, **kw).program
    return [n.args[0] for n in ast.walk(prog.probes[0])
            if isinstance(n, ast.Call) and n.name == "print"]


def test_builtin_aliases():
    assert builtins.canonical("__builtin_pid") == "pid"
    assert builtins.canonical("__builtin_arg3") == "arg3"
    assert builtins.canonical("__builtin_nope") == "__builtin_nope"
    assert builtins.lookup("__builtin_count").name == "count"
    assert builtins.is_variable("__builtin_comm")
    p = printed("BEGIN { print(__builtin_pid); print(__builtin_strlen(\"ab\")); "
                "@c = __builtin_count(); }")
    assert isinstance(p[0], ast.Builtin) and p[0].name == "pid"
    assert p[1].name == "strlen"


def test_probetype_and_usermode_in_begin():
    p = printed("BEGIN { print(probetype); print(usermode); }")
    assert p[0].type == StrT(16)
    c = compile_("BEGIN { printf(\"%s\\n\", probetype); } END { @u = usermode; }")
    assert c.spec.events


def test_macro_overloading_by_arity():
    c = compile_("macro f(a) { a } macro f(a, b) { f(a) + b } BEGIN { @x = f(1); @y = f(1, 2); }")
    assert c.spec.user_maps
    assert "Macro 'f' takes 1 or 2 arguments (3 provided)" in error_of(
        "macro f(a) { a } macro f(a, b) { a } BEGIN { @x = f(1, 2, 3); }")
    assert "Redefinition of macro: f" in error_of("macro f(a) { a } macro f(b) { b } BEGIN { }")
    # a script macro of another arity hides no standard-library one
    c = compile_("macro tcp_state_name(a, b) { a + b } "
                 "BEGIN { @s[tcp_state_name(1)] = 1; @n = tcp_state_name(1, 2); }")
    assert any(d.endswith("tcp.bt") for d in c.deps)
    # one of the same arity does
    c = compile_("macro tcp_state_name(a) { \"x\" } BEGIN { @s[tcp_state_name(1)] = 1; }")
    assert c.deps == []


def test_assert_and_pcomm_come_from_the_stdlib():
    c = compile_('BEGIN { assert(pid > 0, "no pid"); @p[pcomm] = 1; }')
    assert any(d.endswith("base.bt") for d in c.deps)


def test_delete_is_a_bool_and_ppid_of_a_task():
    p = printed("BEGIN { @a[1] = 1; print(delete(@a[1])); print(delete(@a, 2)); }")
    assert p[0].type == BOOL and p[1].type == BOOL
    compile_("BEGIN { @a[1] = 1; delete(@a, 1); if (delete(@a[1])) { exit(); } }")
    compile_("BEGIN { @p = ppid(curtask); @q = ppid(curtask->real_parent); @r = ppid(); }")
    assert "ppid() expects a 'struct task_struct *' argument" in error_of(
        'BEGIN { @p = ppid("x"); }')


def test_getopt():
    p = printed('BEGIN { print(getopt("n", 3)); print(getopt("s", "a")); print(getopt("v")); '
                'print(getopt("neg", -1)); }', program_opts=("--n=7", "--s=bob", "--v"))
    assert [x.value for x in p[0].args[1:]] == [7]
    assert p[1].args[1].value == "bob" and p[2].args[1].value is True
    assert p[3].args[1].value == -1
    p = printed('BEGIN { print(getopt("n", 3)); print(getopt("v")); }')
    assert p[0].args[1].value == 3 and p[1].args[1].value is False
    assert "--n takes an integer, got 'x'" in error_of('BEGIN { print(getopt("n", 3)); }',
                                                      program_opts=("--n=x",))
    assert "unexpected program command line option: --other" in error_of(
        'BEGIN { print(getopt("n", 3)); }', program_opts=("--other=1",))
    assert "getopt() expects a literal default" in error_of('BEGIN { print(getopt("n", pid)); }')


def test_program_options_after_the_double_dash():
    o = parse_args(["script.bt", "--", "--name=5", "1", "--flag", "-2"])
    assert o["file"] == "script.bt"
    assert o["program_opts"] == ["--name=5", "--flag"]
    assert o["positional"] == ["1", "-2"]
