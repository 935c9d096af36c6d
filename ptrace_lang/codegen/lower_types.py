"""Lowering of kernel/C-typed values: reads through pointers (``p->f``, ``s.f``, ``*p``,
``p[i]``, ``a[i]``), pointer arithmetic, ``curtask``, ``ppid``, ``sizeof``/``offsetof``
constants.

A chain of members is an address computation: ``$t->real_parent->tgid`` reads the 8 bytes of
``real_parent`` (one probe_read), then the 4 bytes of ``tgid`` (a second one); members of
embedded structs and array elements only add to the offset, and only the final field's bytes
are read. Reads through user pointers use bpf_probe_read_user, through kernel pointers
bpf_probe_read_kernel; a failed read is counted (``count_error``) and gives zeros.
"""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import (
    FN_GET_CURRENT_TASK, FN_GET_SOCKET_COOKIE, FN_PROBE_READ_KERNEL, FN_PROBE_READ_KERNEL_STR,
    FN_PROBE_READ_USER,
    FN_PROBE_READ_USER_STR,
)
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import FP, R0, VReg
from ptrace_lang.errors import NotSupportedYet
from ptrace_lang.frontend import ast
from ptrace_lang.sema import btftypes
from ptrace_lang.sema.types import (
    ArrayT, BoolT, EnumT, IntT, PtrT, StrT, StructT, Type, c_sizeof,
)



def read_helper(user: bool) -> int:
    return FN_PROBE_READ_USER if user else FN_PROBE_READ_KERNEL


def str_helper(t: Type) -> int | None:
    """The string-reading helper for a pointer of type ``t`` (None: not a typed pointer)."""
    if isinstance(t, PtrT):
        return FN_PROBE_READ_USER_STR if t.user else FN_PROBE_READ_KERNEL_STR
    return None


def in_memory(e: ast.Expr) -> bool:
    """A member or element of a struct/array value held in a variable (on the stack), or
    read whole from a map into a temporary (``@b[0][1]``)."""
    if isinstance(e, (ast.Var, ast.MapRef)):
        return isinstance(e.type, (StructT, ArrayT))
    if isinstance(e, ast.FieldAccess) and e.c_field is not None and not e.arrow:
        return in_memory(e.base)
    if isinstance(e, ast.Index) and e.c_user is not None and isinstance(e.base.type, ArrayT):
        return in_memory(e.base)
    return False


def pointer_step(t) -> int | None:
    """The bytes ``p++`` / ``p += 1`` move a pointer of type ``t`` by (its element's size, 1 for
    void and incomplete types); None when ``t`` is not a pointer."""
    if not isinstance(t, PtrT):
        return None
    target = btftypes.complete(t).target
    return (c_sizeof(target) if target.size() else 0) or 1


def is_located(e: ast.Expr) -> bool:
    """An expression whose value is read from memory at a computed address."""
    if isinstance(e, ast.FieldAccess):
        return e.c_field is not None
    if isinstance(e, ast.Unary):
        return e.op == "*" and e.c_user is not None
    if isinstance(e, ast.Index):
        return e.c_user is not None
    return False



def scalar_read(e):
    """(C field or None, its bitfield or None, bytes to read) of an integer, enum or pointer
    member/element ``e`` (both backends read it so)."""
    f = getattr(e, "c_field", None)
    bitfield = f.bitfield if f is not None else None
    size = f.type.bits // 8 if bitfield else c_sizeof(e.type)
    return f, bitfield, size if size in (1, 2, 4, 8) else 8

class TypesLowering:
    # ------------------------------------------------------------------ addresses
    def addr_of(self, e: ast.Expr) -> tuple[VReg, int, bool]:
        """(register, constant offset, user) of the memory holding the value of ``e``."""
        if isinstance(e, ast.FieldAccess):
            f = e.c_field
            if e.arrow:
                return self.scalar(e.base), f.offset, e.c_user
            if not is_located(e.base):
                raise NotSupportedYet("a member of a struct value that is not in memory", e.span)
            a, o, u = self.addr_of(e.base)
            return a, o + f.offset, u
        if isinstance(e, ast.Unary) and e.op == "*":
            return self.scalar(e.operand), 0, e.c_user
        if isinstance(e, ast.Index):
            bt = e.base.type
            if isinstance(bt, PtrT):
                a, o = self.scalar(e.base), 0
                esz = c_sizeof(bt.target)
            else:
                if not is_located(e.base):
                    raise NotSupportedYet("indexing an array that is not in memory", e.span)
                a, o, _ = self.addr_of(e.base)
                esz = c_sizeof(bt.elem)
            n = self.const_index(e.index)
            if n is not None:
                return a, o + n * esz, e.c_user
            i = self.scalar(e.index)
            r = self.vreg()
            self.mov(r, i)
            if esz != 1:
                self.emit(ir.Alu("mul", r, esz))
            self.emit(ir.Alu("add", r, a))
            return r, o, e.c_user
        raise NotSupportedYet(f"the address of '{type(e).__name__}'", e.span)

    def stack_place(self, e: ast.Expr) -> tuple:
        """(base, offset) of a member/element of a struct or array held in a variable (or in
        a temporary holding a map's value)."""
        if isinstance(e, (ast.Var, ast.MapRef)):
            return self.mem_of(e)
        if isinstance(e, ast.FieldAccess):
            b, o = self.stack_place(e.base)
            return b, o + e.c_field.offset
        n = self.const_index(e.index)
        if n is None or not 0 <= n < e.base.type.n:
            raise NotSupportedYet("a variable index into an array held in a variable", e.span)
        b, o = self.stack_place(e.base)
        return b, o + n * c_sizeof(e.base.type.elem)

    def const_index(self, e: ast.Expr) -> int | None:
        if isinstance(e, ast.IntLit) and -(1 << 28) < e.value < (1 << 28):
            return e.value
        return None

    def source(self, a: VReg, o: int) -> VReg:
        src = self.vreg()
        self.mov(src, a)
        if o:
            self.emit(ir.Alu("add", src, o))
        return src

    # ------------------------------------------------------------------ reads
    def read_scalar(self, e: ast.Expr) -> VReg:
        """An integer, enum or pointer member/element: read its bytes, then sign-extend or cut
        out the bitfield."""
        f, bitfield, size = scalar_read(e)
        t = e.type
        v = self.vreg()
        if in_memory(e):
            b, o = self.stack_place(e)
            self.emit(ir.Load(v, b, o, size))
        else:
            a, o, user = self.addr_of(e)
            slot = self.frame.alloc(8, e.span)
            self.checked_read(read_helper(user), FP, slot, size, self.source(a, o))
            self.emit(ir.Load(v, FP, slot, size))
        if bitfield:
            shift, bits = bitfield
            if shift:
                self.emit(ir.Alu("rsh", v, shift))
            if bits < 64:
                if bits >= 32:
                    m = self.const((1 << bits) - 1)
                    self.emit(ir.Alu("and", v, m))
                else:
                    self.emit(ir.Alu("and", v, (1 << bits) - 1))
        elif size < 8 and (isinstance(t, IntT) and t.signed or isinstance(t, EnumT) and t.signed):
            shift = 64 - 8 * size
            self.emit(ir.Alu("lsh", v, shift))
            self.emit(ir.Alu("arsh", v, shift))
        elif isinstance(t, BoolT) and size > 1:
            pass
        return v

    def read_into(self, e: ast.Expr, base, off: int, typ: Type) -> None:
        """A string (char array), array or struct member: its bytes copied to ``base + off``,
        the rest of the destination zeroed."""
        n = c_sizeof(e.type)
        dst = typ.size() if typ is not None else e.type.size()
        n = min(n, dst)
        if in_memory(e):
            b, o = self.stack_place(e)
            self.zero_mem(base, off, dst)
            t = self.vreg()
            for i in range(n):          # byte by byte: members need not be 8-byte aligned
                self.emit(ir.Load(t, b, o + i, 1))
                self.emit(ir.Store(base, off + i, t, 1))
            return
        a, o, user = self.addr_of(e)
        if n < dst:
            self.zero_mem(base, off, dst)
        if n > 0:
            self.checked_read(read_helper(user), base, off, n, self.source(a, o))

    # ------------------------------------------------------------------ hooks from Lowering
    def c_scalar(self, e: ast.Expr) -> VReg | None:
        """The value of ``e`` if it is one of the C-typed forms, else None."""
        if (is_located(e) or in_memory(e)) and not isinstance(e.type, (StructT, ArrayT, StrT)):
            return self.read_scalar(e)
        if isinstance(e, ast.Unary) and e.op == "&":
            if isinstance(e.operand, ast.Var):
                return self.var_address(e)
            a, o, _ = self.addr_of(e.operand)
            return self.source(a, o)
        if isinstance(e, (ast.Sizeof, ast.Offsetof)):
            return self.const(e.value)
        if isinstance(e, ast.Binary) and e.op in ("+", "-"):
            lt, rt = e.left.type, e.right.type
            if isinstance(e.type, PtrT):
                ptr, num = (e.left, e.right) if isinstance(lt, PtrT) else (e.right, e.left)
                esz = c_sizeof(ptr.type.target) if ptr.type.target.size() else 1
                esz = esz or 1
                p = self.scalar(ptr)
                n = self.scalar(num)
                out = self.vreg()
                self.mov(out, n)
                if esz != 1:
                    self.emit(ir.Alu("mul", out, esz))
                if e.op == "-":
                    self.emit(ir.Alu("neg", out))
                self.emit(ir.Alu("add", out, p))
                return out
            if isinstance(lt, PtrT) and isinstance(rt, PtrT):
                a = self.scalar(e.left)
                return self.binop("-", a, e.right, False)
        if isinstance(e, ast.Index) and e.tuple_index is not None:
            return self.elem_value(e.base, e.tuple_index)
        return None

    def c_into(self, e: ast.Expr, base, off: int, typ: Type) -> bool:
        """Write a located string/array/struct value; False when ``e`` is not one."""
        if isinstance(e.type, (StructT, ArrayT)) and self.map_or_ternary_into(e, base, off, typ):
            return True
        if (is_located(e) or in_memory(e) and not isinstance(e, ast.Var)) and \
                isinstance(e.type, (StructT, ArrayT, StrT)):
            self.read_into(e, base, off, typ)
            return True
        if isinstance(e, ast.Var) and isinstance(e.type, (StructT, ArrayT)):
            b, o = self.mem_of(e)
            self.copy_value(base, off, typ or e.type, b, o, e.type)
            return True
        return False

    def c_builtin(self, name: str, e: ast.Expr) -> VReg | None:
        if name == "curtask":
            self.call(FN_GET_CURRENT_TASK)
            return self.result()
        if name == "ppid":
            return self.parent_tgid(e)
        return None

    def call_socket_cookie(self, e: ast.Call) -> VReg:
        """bpf_get_socket_cookie(sk): the tracing programs' variant takes the BTF-typed socket
        pointer as it came from the context (the verifier checks its type); 0 for a NULL
        socket without the call (before 6.x the helper refuses a pointer that may be NULL)."""
        sk = self.scalar(e.args[0])
        out = self.const(0)
        done = self.label("cookie")
        self.emit(ir.CondJump("jeq", sk, 0, done))
        self.call(FN_GET_SOCKET_COOKIE, sk)
        self.mov(out, R0)
        self.emit(ir.Label(done))
        return out

    def call_kptr(self, e: ast.Call) -> VReg:
        return self.scalar(e.args[0])

    call_uptr = call_kptr

    def call_curtask(self, e: ast.Call) -> VReg:
        return self.c_builtin("curtask", e)

    def call_ppid(self, e: ast.Call) -> VReg:
        if e.args:          # ppid(task): task->real_parent->tgid
            return self.parent_tgid(e, self.scalar(e.args[0]))
        return self.c_builtin("ppid", e)

    def parent_tgid(self, e: ast.Expr, task: VReg | None = None) -> VReg:
        """curtask->real_parent->tgid (or task's): two reads."""
        st = btftypes.struct_type("task_struct")
        if st is None:
            raise NotSupportedYet("ppid without kernel BTF", e.span)
        rp = btftypes.field(st, "real_parent")
        tg = btftypes.field(st, "tgid")
        if task is None:
            self.call(FN_GET_CURRENT_TASK)
            task = self.result()
        slot = self.frame.alloc(8, e.span)
        self.checked_read(FN_PROBE_READ_KERNEL, FP, slot, 8, self.source(task, rp.offset))
        parent = self.vreg()
        self.emit(ir.Load(parent, FP, slot, 8))
        self.checked_read(FN_PROBE_READ_KERNEL, FP, slot, 4, self.source(parent, tg.offset))
        out = self.vreg()
        self.emit(ir.Load(out, FP, slot, 4))
        return out


def c_value_field(t: Type, off: int, name: str = "") -> S.Field | None:
    """How a C-typed value is laid out in a record or map (formatted in user space)."""
    if isinstance(t, PtrT):
        return S.Field("user", off, 8, name=name, fmt="ptr")
    if isinstance(t, EnumT):
        return S.Field("user", off, 8, signed=t.signed, name=name, fmt="enum",
                       aux=(t.name, t.values))
    if isinstance(t, ArrayT):
        aux = array_aux(t)
        if aux is None:
            raise NotSupportedYet(f"values of type '{t}' in events or maps")
        return S.Field("user", off, t.size(), name=name, fmt="array", aux=aux)
    if isinstance(t, StructT):
        return S.Field("user", off, t.size(), name=name, fmt="struct", aux=struct_layout(t))
    return None


def struct_layout(t: StructT, depth: int = 0) -> tuple:
    """Plain description of a struct's fields for printing: ((name, kind, offset, size,
    signed, sub), ...) where kind is "int", "ptr", "str", "array", "struct" or "enum"."""
    if depth > 6:
        return ()
    names = btftypes.member_names(t)
    out = []
    for n in names:
        f = btftypes.field(t, n)
        if f is None:
            continue
        ft = f.type
        if f.bitfield is not None:
            out.append((n, "bits", f.offset, ft.bits // 8, False, f.bitfield))
        elif isinstance(ft, PtrT):
            out.append((n, "int", f.offset, 8, True, ()))
        elif isinstance(ft, (IntT, EnumT)):
            out.append((n, "int", f.offset, ft.bits // 8, ft.signed, ()))
        elif isinstance(ft, BoolT):
            out.append((n, "int", f.offset, 1, False, ()))
        elif isinstance(ft, StrT):
            out.append((n, "str", f.offset, ft.length, False, ()))
        elif isinstance(ft, StructT):
            out.append((n, "struct", f.offset, ft.nbytes, False, struct_layout(ft, depth + 1)))
        elif isinstance(ft, ArrayT) and array_aux(ft) is not None:
            out.append((n, "array", f.offset, c_sizeof(ft), False, array_aux(ft)))
    return tuple(out)


def array_aux(t: ArrayT) -> tuple | None:
    """How the runtime's "array" formatter reads a C array: (element size, signed, count,
    pointers, inner) where ``inner`` is the same for an array of arrays (``int a[2][3]``
    prints ``[[1,2,3],[4,5,6]]``) and () for integers; None for other elements."""
    elem = t.elem
    if isinstance(elem, ArrayT):
        inner = array_aux(elem)
        return None if inner is None else (c_sizeof(elem), False, t.n, False, inner)
    if isinstance(elem, (IntT, EnumT, PtrT, BoolT)):
        return (c_sizeof(elem), isinstance(elem, IntT) and elem.signed, t.n,
                isinstance(elem, PtrT), ())
    return None
