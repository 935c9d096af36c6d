"""Expressions bpftrace 0.26 has: the value of @x++, aggregation maps read as integers,
string indexing, struct names without ``struct``, nsecs(sw_tai), len(ustack)."""
from __future__ import annotations

import os

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import IntT, PtrT, StructT

needs_btf = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                               reason="no kernel BTF at /sys/kernel/btf/vmlinux")


def printed(src: str) -> list:
    prog = compile_script(src, "stdin", Options(stages=("asm",))).program
    return [n.args[0] for n in ast.walk(prog.probes[0])
            if isinstance(n, ast.Call) and n.name == "print"]


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options())
    return info.value.render(SOURCES)


def test_value_of_map_increments():
    p = printed("BEGIN { @x = 1; print(@x++); print(--@x); $v = @y++; }")
    assert p[0].type == IntT(64, True) and p[1].type == IntT(64, True)


def test_aggregations_read_as_integers():
    p = printed("BEGIN { @c = count(); @s = sum(-1); @u = sum((uint32)1); @m = max(2); "
                "@a[1] = avg(3); $c = @c; $s = @s; $u = @u; print($c); print($s); print($u); "
                "print(@m + 1); print((bool)@c); print(@a[1] * 1); }")
    assert p[0].type == IntT(64, False)
    assert p[1].type == IntT(64, True) and p[2].type == IntT(64, False)
    assert p[3].type.is_int and p[5].type == IntT(64, True)
    assert "cannot be used in an expression" in error_of(
        "BEGIN { @h = hist(1); print(@h + 1); }")


def test_string_indexing():
    p = printed('BEGIN { $s = "hello"; print($s[1]); print("ab"[0]); }')
    assert p[0].type == IntT(8, True) and p[0].array_index == 1
    assert "Index 6 is out of bounds for 'string[6]'" in error_of(
        'BEGIN { $s = "hello"; print($s[6]); }')
    assert "The index of a string must be an integer constant" in error_of(
        'BEGIN { $s = "hello"; $i = 1; print($s[$i]); }')


@needs_btf
def test_struct_names_without_the_keyword():
    p = printed("BEGIN { print((task_struct *)curtask); print(sizeof(task_struct)); }")
    assert isinstance(p[0].type, PtrT) and isinstance(p[0].type.target, StructT)
    assert p[0].type.target.name == "task_struct"
    p = printed("struct Foo { int a; long b; } BEGIN { print(sizeof(Foo)); }")
    assert isinstance(p[0], ast.Sizeof)


def test_sw_tai_and_stack_lengths():
    printed("BEGIN { print(nsecs(sw_tai)); }")
    p = printed("profile:hz:99 { print(len(ustack)); print(len(kstack(3))); }")
    assert p[0].type == IntT(64, True) and p[1].type == IntT(64, True)
    assert "len() expects a map argument" in error_of("BEGIN { print(len(pid)); }")
