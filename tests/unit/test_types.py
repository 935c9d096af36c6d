"""Kernel and C types: the type model, BTF-derived types, script definitions, errors with
bpftrace's wording and locations (no root; BTF is read from /sys/kernel/btf/vmlinux)."""
from __future__ import annotations

import os

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.frontend import ast
from ptrace_lang.sema import btftypes, cdefs
from ptrace_lang.sema.types import ArrayT, EnumT, IntT, PtrT, StrT, StructT

needs_btf = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                               reason="no kernel BTF at /sys/kernel/btf/vmlinux")


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options())
    return info.value.render(SOURCES)


def typed(src: str) -> ast.Program:
    """Compile ``src`` (to IR only: no kernel needed) and return its typed AST."""
    return compile_script(src, "stdin", Options()).program


def printed_types(src: str) -> list:
    """The types of the arguments of every print() in the first probe."""
    prog = typed(src)
    return [n.args[0].type for n in ast.walk(prog.probes[0])
            if isinstance(n, ast.Call) and n.name == "print"]


# ---------------------------------------------------------------------------- the model

def test_type_spellings_and_sizes():
    from ptrace_lang.sema.types import c_sizeof
    st = StructT("struct", "foo", 12, ("c", "struct foo"))
    assert str(PtrT(st)) == "struct foo *"
    assert str(PtrT(PtrT(st))) == "struct foo **"
    assert str(ArrayT(IntT(32, True), 4)) == "int32[4]"
    assert c_sizeof(ArrayT(IntT(16, False), 3)) == 6
    assert ArrayT(IntT(16, False), 3).size() == 8
    assert st.size() == 16 and c_sizeof(st) == 12
    assert PtrT(st).is_int and EnumT("e").is_int and not st.is_int


def test_plain_encoding_round_trips():
    ts = [IntT(16, False), PtrT(StructT("struct", "task_struct", 3264, ("btf", 7)), True),
          ArrayT(IntT(64, True), 4), StrT(16), EnumT("x", 32, False, (("A", 0), ("B", 3)))]
    for t in ts:
        assert btftypes.from_plain(btftypes.to_plain(t)) == t


@needs_btf
def test_btf_types_of_task_struct():
    st = btftypes.struct_type("task_struct")
    assert isinstance(st, StructT) and st.nbytes > 1000
    rp = btftypes.field(st, "real_parent")
    assert rp.type == PtrT(st, False)
    comm = btftypes.field(st, "comm")
    assert comm.type == StrT(16)
    assert btftypes.field(st, "no_such_field") is None
    assert btftypes.lookup_type("u32") == IntT(32, False)
    assert btftypes.lookup_type("struct no_such_struct_xyz") is None


@needs_btf
def test_btf_function_and_raw_tracepoint_parameters():
    params = btftypes.func_params("vfs_read")
    assert [n for n, _ in params] == ["file", "buf", "count", "pos"]
    assert params[0][1] == PtrT(btftypes.struct_type("file"))
    assert btftypes.func_return("vfs_read") == IntT(64, True)
    rt = btftypes.raw_tracepoint_params("sched_switch")
    names = [n for n, _ in rt]
    assert "prev" in names and "next" in names and rt[0][0] != "__data"
    assert btftypes.func_params("no_such_function_xyz") is None


@needs_btf
def test_bitfield_member_loads_its_unit():
    f = btftypes.field(btftypes.struct_type("sk_buff"), "pkt_type")
    assert f.bitfield is not None and f.bitfield[1] == 3
    assert f.type.bits in (8, 16, 32, 64)


# ---------------------------------------------------------------------------- typing

@needs_btf
def test_member_chains_are_typed():
    t = printed_types("BEGIN { $t = (struct task_struct *)curtask; print($t->tgid); "
                      "print($t->real_parent->tgid); print($t->comm); print($t->real_parent); "
                      "print($t->cpus_mask.bits); print(*$t->real_parent); print(ppid); "
                      "print(curtask); print($t->se.load.weight); }")
    st = btftypes.struct_type("task_struct")
    assert t[0] == IntT(32, True) and t[1] == IntT(32, True)
    assert t[2] == StrT(16)
    assert t[3] == PtrT(st)
    assert isinstance(t[4], ArrayT)
    assert t[5] == st
    assert t[6] == IntT(32, False)
    assert t[7] == PtrT(st)
    assert t[8] == IntT(64, False)


@needs_btf
def test_uprobe_casts_are_user_pointers():
    prog = typed("struct p { int x; struct p *next; }; "
                 "uprobe:libc:malloc { $p = (struct p *)arg0; print($p->next->x); }")
    casts = [n for n in ast.walk(prog.probes[0]) if isinstance(n, ast.Cast)]
    assert casts[0].type.user is True
    field = [n for n in ast.walk(prog.probes[0]) if isinstance(n, ast.FieldAccess)][0]
    assert field.c_user is True and field.base.type.user is True


@needs_btf
def test_sizeof_and_offsetof_are_constants():
    from ptrace_lang.btf import BTF
    b = BTF.vmlinux()
    tid = b.find("task_struct", "struct")
    prog = typed("BEGIN { @a = sizeof(struct task_struct); @b = offsetof(struct task_struct, comm); "
                 "@c = sizeof(int32); @d = sizeof(curtask); @e = offsetof(struct task_struct, se.load); }")
    values = {n.target.name: n.value.value for n in ast.walk(prog.probes[0])
              if isinstance(n, ast.Assign)}
    assert values == {"a": b.size_of(tid), "b": b.offsetof(tid, "comm"), "c": 4, "d": 8,
                      "e": b.offsetof(tid, "se.load")}


# ---------------------------------------------------------------------------- script C

def test_script_struct_layout_matches_c():
    prog = typed("struct Foo { int a; char b[3]; long c : 3; int d:5; }; "
                 "union U { int i; char c[8]; }; "
                 "struct Node { struct Node *next; unsigned short v[4]; struct Foo f; }; "
                 "BEGIN { @a = sizeof(struct Foo); @b = sizeof(union U); @c = sizeof(struct Node); "
                 "@d = offsetof(struct Node, f.b); @e = offsetof(struct Node, v); }")
    values = {n.target.name: n.value.value for n in ast.walk(prog.probes[0])
              if isinstance(n, ast.Assign)}
    assert values == {"a": 8, "b": 8, "c": 24, "d": 20, "e": 8}
    foo = btftypes.struct_type("Foo")
    assert btftypes.field(foo, "c").bitfield == (0, 3)      # bits 56..58 of the long
    assert btftypes.field(foo, "c").offset == 7
    assert btftypes.field(foo, "d").offset == 7 and btftypes.field(foo, "d").bitfield[1] == 5


def test_defines_enums_and_ifdef():
    src = ("#include <linux/sched.h>\n#define ANSWER 40\n#define TWO (1 + 1)\n"
           "#ifdef BPFTRACE_HAVE_BTF\n#define HAVE 1\n#else\n#define HAVE 0\n#endif\n"
           "#ifndef BPFTRACE_HAVE_BTF\nstruct skipped { int x; }\n#endif\n"
           "enum Color { RED, GREEN = 5, BLUE };\n"
           "BEGIN { @a = ANSWER + TWO; @h = HAVE; @b = BLUE; $c = (enum Color)5; @c = $c; }")
    prog = typed(src)
    assigns = {n.target.name: n for n in ast.walk(prog.probes[0]) if isinstance(n, ast.Assign)}
    assert isinstance(assigns["a"].value.right, ast.Binary)
    assert assigns["h"].value.value == 1
    assert assigns["b"].value.value == 6
    assert isinstance(assigns["c"].value.type, EnumT)
    assert btftypes.struct_type("skipped") is None


def test_preprocess_keeps_line_numbers():
    text = "#ifdef NOPE\nBEGIN { x }\n#endif\nBEGIN { }"
    out = cdefs.preprocess(text)
    assert out.split("\n") == ["", "", "", "BEGIN { }"]


def test_enum_prints_by_name_and_pointer_in_hex():
    from ptrace_lang.runtime.format import value_text
    from ptrace_lang.runtime.printf import compile_format
    from ptrace_lang.runtime.formatters import FORMATTERS
    e = FORMATTERS["enum"]((5).to_bytes(8, "little"), ("Color", (("RED", 0), ("GREEN", 5))))
    assert value_text(e) == "GREEN" and e == 5
    assert compile_format("%s %d\n")([e, e]) == "GREEN 5\n"
    p = FORMATTERS["ptr"]((0xffff888100000000).to_bytes(8, "little"), ())
    assert value_text(p) == "0xffff888100000000"
    assert compile_format("%p %x\n")([p, p]) == "0xffff888100000000 ffff888100000000\n"
    a = FORMATTERS["array"](b"\x03\0\0\0\xff\xff\xff\xff", (4, True, 2, False))
    assert value_text(a) == "[3,-1]"


# ---------------------------------------------------------------------------- errors (bpftrace 0.17's words)

ERRORS = [
    ("BEGIN { $t = (struct foo *)curtask; }",
     "stdin:1:14-28: ERROR: Unknown struct/union: 'struct foo'\n"
     "BEGIN { $t = (struct foo *)curtask; }\n             ~~~~~~~~~~~~~~"),
    ("BEGIN { $t = (struct task_struct *)curtask; print($t->foo); }",
     "stdin:1:51-58: ERROR: Struct/union of type 'struct task_struct' does not contain a field "
     "named 'foo'\n"
     "BEGIN { $t = (struct task_struct *)curtask; print($t->foo); }\n"
     "                                                  ~~~~~~~"),
    ("BEGIN { $t = (uint64 *)curtask; print($t.pid); }",
     "stdin:1:39-45: ERROR: Can not access field 'pid' on type 'uint64 *'. "
     "Try dereferencing it first, or using '->'"),
    ("BEGIN { $t = (struct task_struct *)curtask; print($t->se->load); }",
     "stdin:1:51-63: ERROR: Can not dereference struct/union of type 'struct sched_entity'. "
     "It is not a pointer."),
    ('BEGIN { $x = "abc"; print(*$x); }',
     "stdin:1:27-30: ERROR: The dereference operator can not be used on expressions of type "
     "'string[4]'"),
    ("BEGIN { $x = 1; print($x[1]); }",
     "stdin:1:23-28: ERROR: The array index operator [] can only be used on arrays and pointers, "
     "found integer."),
    ("BEGIN { $x = 1; print($x->foo); }",
     "stdin:1:23-30: ERROR: Can not access field 'foo' on expression of type 'int8'"),
    ("BEGIN { print(sizeof(struct nope_xyz)); }",
     "stdin:1:15-38: ERROR: Unknown identifier: 'struct nope_xyz'"),
    ("BEGIN { print(offsetof(struct task_struct, nope)); }",
     "ERROR: Struct/union of type 'struct task_struct' does not contain a field named 'nope'"),
    ("struct a { int x; }; BEGIN { $p = (struct a *)0; print($p->y); }",
     "ERROR: Struct/union of type 'struct a' does not contain a field named 'y'"),
    ("struct a { int x y; }; BEGIN { }",
     "ERROR: Invalid C definition"),
]


@needs_btf
@pytest.mark.parametrize("src,expected", ERRORS, ids=[c[0] for c in ERRORS])
def test_error_messages(src, expected):
    text = error_of(src)
    assert expected in text, text


@needs_btf
def test_dot_on_a_struct_pointer_is_an_arrow():
    """bpftrace 0.25+: `.` dereferences a pointer to a struct; chains mix `.` and `->`."""
    t = printed_types("begin { print(curtask.pid); print(curtask.real_parent->pid); "
                      "print(curtask->real_parent.tgid); $t = curtask; print((*$t).pid); "
                      "print(curtask.se.load.weight); }")
    assert [str(x) for x in t] == ["int32", "int32", "int32", "int32", "uint64"]


def test_kptr_uptr_set_the_address_space():
    t = printed_types("BEGIN { print(uptr(1)); print(kptr((uint8 *)1)); print(uptr((uint8 *)1)); }")
    assert t[0] == IntT(64, True) and t[1].user is False and t[2].user is True


@needs_btf
def test_kernel_enumerators_and_header_macros_by_name():
    prog = typed("#include <linux/sched.h>\n#include <linux/socket.h>\n"
                 "BEGIN { @a = TCP_CLOSE; @b = TASK_RUNNING; @c = AF_INET6; @d = PIDTYPE_TGID; }")
    values = {n.target.name: n.value.value for n in ast.walk(prog.probes[0])
              if isinstance(n, ast.Assign)}
    assert values == {"a": 7, "b": 0, "c": 10, "d": 1}


@needs_btf
def test_syscall_tracepoint_struct_pointers_are_typed_user_pointers():
    if not os.path.exists("/sys/kernel/tracing/events/syscalls/sys_enter_nanosleep/format"):
        pytest.skip("no syscalls:sys_enter_nanosleep tracepoint")
    prog = typed("tracepoint:syscalls:sys_enter_nanosleep { print(args->rqtp->tv_nsec); "
                 "print(args.rqtp); }")
    t = printed_types("tracepoint:syscalls:sys_enter_nanosleep { print(args->rqtp->tv_nsec); "
                      "print(args.rqtp); }")
    assert t[0] == IntT(64, True)
    assert t[1] == PtrT(btftypes.struct_type("__kernel_timespec"), True)
    assert prog.probes


@needs_btf
def test_char_arrays_are_strings_unsigned_char_arrays_are_bytes():
    st = btftypes.struct_type("in6_addr")
    u8 = btftypes.field(btftypes.field(st, "in6_u").type, "u6_addr8").type
    assert u8 == ArrayT(IntT(8, False), 16)
    prog = typed("struct a { char s[4]; unsigned char b[4]; }; BEGIN { $p = (struct a *)0; "
                 "print($p->s); print($p->b); }")
    t = [n.args[0].type for n in ast.walk(prog.probes[0]) if isinstance(n, ast.Call) and n.name == "print"]
    assert t == [StrT(4), ArrayT(IntT(8, False), 4)]


def test_enumerators_have_their_enum_type():
    t = printed_types("enum Color { RED, GREEN = 5, BLUE }; enum { ANON = 3 }; "
                      "BEGIN { print(GREEN); print(BLUE + 1); print(ANON); @m[RED] = BLUE; }")
    assert isinstance(t[0], EnumT) and t[0].name == "Color"
    assert not isinstance(t[1], EnumT) and t[1].is_int
    assert t[2] == IntT(64, True)            # an anonymous enum's members stay plain integers
    obj = compile_script("enum Color { RED, GREEN = 5 }; BEGIN { printf(\"%s %d\\n\", GREEN, GREEN); "
                         "@m[RED] = GREEN; }", "stdin", Options()).spec
    fields = [f for ev in obj.events for f in ev.args]
    assert [f.fmt for f in fields][:1] == ["enum"]
    um = obj.user_maps[0]
    assert um.key.fmt == "enum" and um.value.fmt == "enum"


@needs_btf
def test_kernel_enum_members_and_tracepoint_enum_fields_are_enums():
    t = printed_types("BEGIN { print(PIDTYPE_TGID); }")
    assert isinstance(t[0], EnumT) and t[0].name == "pid_type"
    if os.path.exists("/sys/kernel/tracing/events/timer/hrtimer_start/format"):
        t = printed_types("tracepoint:timer:hrtimer_start { print(args.mode); }")
        assert isinstance(t[0], EnumT) and t[0].name == "hrtimer_mode" and t[0].bits == 32


def test_c_definitions_as_lenient_as_clang():
    def size(defn: str, name: str = "struct Foo") -> int:
        prog = typed(f"{defn} BEGIN {{ @s = sizeof({name}); }}")
        return next(n.value.value for n in ast.walk(prog.probes[0]) if isinstance(n, ast.Assign))
    assert size("struct Foo { int a; int b }") == 8                  # no ';' after the last member
    assert size("struct Foo { float f; double d; int a; };") == 24   # floating point members
    assert size("struct Foo { char c; int a; } __attribute__((packed));") == 5
    assert size("struct __attribute__((__packed__)) Foo { char c; long a; };") == 9
    assert size("struct Foo { char c; int a; } __attribute__((aligned(8)));") == 8


@needs_btf
def test_c_definition_members_typed_from_btf():
    prog = typed("struct Foo { u64 x; struct list_head l; pid_t p; }; BEGIN { @s = sizeof(struct Foo); }")
    assert next(n.value.value for n in ast.walk(prog.probes[0]) if isinstance(n, ast.Assign)) == 32
