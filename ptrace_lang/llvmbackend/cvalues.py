"""``CValuesLowering``, a mixin of ``llvmbackend.lower.Lowering``: kernel/C-typed values as the
direct backend reads them (codegen/lower_types.py): a member chain is an address computation,
only pointer hops and the final field are read (bpf_probe_read_kernel, or _user for user
pointers), a failed read is counted and gives zeros. Also ``&x``, pointer arithmetic by whole
elements, ``sizeof``/``offsetof``, ``curtask``, ``ppid`` and ``kptr``/``uptr``.

Struct and array values held in variables are not lowered here (a located "not supported").
"""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang.bpf import uapi as U
from ptrace_lang.codegen.lower_types import in_memory, is_located, read_helper, scalar_read
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.llvmbackend.irbase import I64, PTR, c64
from ptrace_lang.sema import btftypes
from ptrace_lang.sema.types import ArrayT, EnumT, IntT, PtrT, StrT, StructT, Type, c_sizeof


class CValuesLowering:
    def addr_of(self, e: ast.Expr) -> tuple[ir.Value, int, bool]:
        """(address as an i64, constant offset, user) of the memory holding ``e``'s value."""
        if in_memory(e):
            raise unsupported("a struct or array value held in a variable", e.span)
        if isinstance(e, ast.FieldAccess) and e.c_field is not None:
            if e.arrow:
                return self.scalar(e.base), e.c_field.offset, e.c_user
            if not is_located(e.base):
                raise unsupported("a member of a struct value that is not in memory", e.span)
            a, o, u = self.addr_of(e.base)
            return a, o + e.c_field.offset, u
        if isinstance(e, ast.Unary) and e.op == "*":
            return self.scalar(e.operand), 0, e.c_user
        if isinstance(e, ast.Index) and e.c_user is not None:
            bt = e.base.type
            if isinstance(bt, PtrT):
                a, o, esz = self.scalar(e.base), 0, c_sizeof(bt.target)
            else:
                if not is_located(e.base):
                    raise unsupported("indexing an array that is not in memory", e.span)
                a, o, _ = self.addr_of(e.base)
                esz = c_sizeof(bt.elem)
            if isinstance(e.index, ast.IntLit):
                return a, o + e.index.value * esz, e.c_user
            return self.b.add(a, self.b.mul(self.scalar(e.index), c64(esz))), o, e.c_user
        raise unsupported(f"the address of '{type(e).__name__}'", e.span)

    def read_at(self, a: ir.Value, o: int, user: bool, dst, size: int) -> None:
        src = self.b.inttoptr(self.b.add(a, c64(o)) if o else a, PTR)
        self.checked_read(read_helper(user), dst, size, src)

    def c_read_scalar(self, e: ast.Expr) -> ir.Value:
        f, bitfield, size = scalar_read(e)
        t = e.type
        a, o, user = self.addr_of(e)
        slot = self.alloca(8)
        self.store(slot, 0, 0)
        self.read_at(a, o, user, slot, size)
        signed = not bitfield and isinstance(t, (IntT, EnumT)) and t.signed
        v = self.load(slot, 0, size, signed=signed)
        if bitfield:
            shift, bits = bitfield
            if shift:
                v = self.b.lshr(v, c64(shift))
            if bits < 64:
                v = self.b.and_(v, c64((1 << bits) - 1))
        return v

    def c_read_into(self, e: ast.Expr, base, off: int, typ: Type) -> None:
        """A char array, array or struct member: its bytes at base + off, the rest zeroed."""
        dst = typ.size() if typ is not None else e.type.size()
        n = min(c_sizeof(e.type), dst)
        a, o, user = self.addr_of(e)
        if n < dst:
            self.zero(base, off, dst)
        if n > 0:
            self.read_at(a, o, user, self.gep(base, off), n)

    # ------------------------------------------------------------------ hooks of Lowering
    def c_scalar(self, e: ast.Expr) -> ir.Value | None:
        """The value of ``e`` when it is one of the C-typed forms, else None."""
        if (is_located(e) or in_memory(e)) and not isinstance(e.type, (StructT, ArrayT, StrT)):
            return self.c_read_scalar(e)
        if isinstance(e, ast.Unary) and e.op == "&":
            a, o, _ = self.addr_of(e.operand)
            return self.b.add(a, c64(o)) if o else a
        if isinstance(e, (ast.Sizeof, ast.Offsetof)):
            return c64(e.value)
        if isinstance(e, ast.Binary) and e.op in ("+", "-"):
            lt, rt = e.left.type, e.right.type
            if isinstance(e.type, PtrT):
                ptr, num = (e.left, e.right) if isinstance(lt, PtrT) else (e.right, e.left)
                esz = (c_sizeof(ptr.type.target) if ptr.type.target.size() else 1) or 1
                n = self.b.mul(self.scalar(num), c64(esz))
                p = self.scalar(ptr)
                return self.b.sub(p, n) if e.op == "-" else self.b.add(p, n)
            if isinstance(lt, PtrT) and isinstance(rt, PtrT):
                return self.b.sub(self.scalar(e.left), self.scalar(e.right))
        return None

    def c_into(self, e: ast.Expr, base, off: int, typ: Type) -> bool:
        if is_located(e) and isinstance(e.type, (StructT, ArrayT, StrT)):
            self.c_read_into(e, base, off, typ)
            return True
        return False

    def builtin_curtask(self, e: ast.Expr) -> ir.Value:
        return self.call(U.FN_GET_CURRENT_TASK, I64)

    def builtin_ppid(self, e: ast.Expr) -> ir.Value:
        return self.parent_tgid(e, self.builtin_curtask(e))

    def call_kptr(self, e: ast.Call) -> ir.Value:
        return self.scalar(e.args[0])

    call_uptr = call_kptr

    def call_ppid(self, e: ast.Call) -> ir.Value:
        task = self.scalar(e.args[0]) if e.args else self.builtin_curtask(e)
        return self.parent_tgid(e, task)

    def parent_tgid(self, e: ast.Expr, task: ir.Value) -> ir.Value:
        """task->real_parent->tgid: two reads."""
        st = btftypes.struct_type("task_struct")
        if st is None:
            raise unsupported("ppid without kernel BTF", e.span)
        rp, tg = btftypes.field(st, "real_parent"), btftypes.field(st, "tgid")
        slot = self.alloca(8)
        self.store(slot, 0, 0)
        self.read_at(task, rp.offset, False, slot, 8)
        parent = self.load(slot, 0)
        self.read_at(parent, tg.offset, False, slot, 4)
        return self.load(slot, 0, 4)
