"""``StringsLowering``, a mixin of ``llvmbackend.lower.Lowering``: strings written into memory,
``str()`` calls, and string equality."""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang.bpf import uapi as U
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.llvmbackend.irbase import I8, I64, PTR, c64
from ptrace_lang.sema.types import ArgsT, StrT


class StringsLowering:
    def string_equal(self, e: ast.Binary) -> ir.Value:
        """Equal when the words agree up to the shorter buffer's end (both zero padded)."""
        sides = []
        for x in (e.left, e.right):
            if isinstance(x, ast.StrLit):
                data = x.value.encode("utf-8", "surrogateescape") + b"\0"
                data = data.ljust((len(data) + 7) // 8 * 8, b"\0")
                sides.append([c64(int.from_bytes(data[o:o + 8], "little"))
                              for o in range(0, len(data), 8)])
            else:
                m = self.mem_of(x)
                sides.append([m] * (x.type.size() // 8))
        n = min(len(sides[0]), len(sides[1]))
        diff = c64(0)
        for i in range(n):
            words = [s[i] if isinstance(s[i], ir.Constant) else self.load(s[i], 8 * i)
                     for s in sides]
            diff = self.b.or_(diff, self.b.xor(*words))
        return self.b.icmp_unsigned("==" if e.op == "==" else "!=", diff, c64(0))

    # ------------------------------------------------------------------ values in memory
    def string_into(self, e: ast.Expr, base, off: int, size: int, in_record: bool) -> None:
        if isinstance(e, ast.StrLit):
            self.store_bytes(base, off, e.value.encode("utf-8", "surrogateescape") + b"\0", size)
        elif isinstance(e, ast.PositionalParam):
            self.store_bytes(base, off, str(self.positional_value(e.index)).encode() + b"\0", size)
        elif (isinstance(e, (ast.Builtin, ast.Call)) and e.name == "comm"
              and not getattr(e, "args", None)):
            n = min(16, size)
            if not self.target.comm_padded:
                self.zero(base, off, n)
            self.call(U.FN_GET_CURRENT_COMM, I64, self.gep(base, off), c64(n))
            if size > 16:
                self.zero(base, off + 16, size - 16)
        elif isinstance(e, (ast.Var, ast.TupleIndex)):
            n = min(size, e.type.size())
            self.copy(base, off, self.mem_of(e), 0, n)
            if size > n:
                self.zero(base, off + n, size - n)
        elif isinstance(e, ast.Call) and e.name == "str":
            self.str_call_into(e, base, off, size, in_record)
        elif isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
            self.args_string_into(e, base, off, size, zero=True)
        elif isinstance(e, ast.MapRef):
            self.map_read_into(e, self.maps["@" + e.name], base, off, StrT(size))
        elif isinstance(e, ast.Ternary):
            self.branch(self.cond(e.cond),
                        lambda: self.string_into(e.then, base, off, size, in_record),
                        lambda: self.string_into(e.orelse, base, off, size, in_record))
        else:
            raise unsupported(f"the string expression {self.construct(e)}", e.span)

    def str_call_into(self, e: ast.Call, base, off: int, size: int, in_record: bool) -> None:
        arg = e.args[0]
        runtime_len = len(e.args) == 2 and not isinstance(e.args[1], (ast.IntLit,
                                                                       ast.PositionalParam))
        n = e.type.length
        if isinstance(arg.type, StrT) and not runtime_len:
            self.string_into(arg, base, off, size, in_record)
            keep = n - 1            # str(s, n) of a string: cut after n characters
            if keep < arg.type.length - 1 and keep < size:
                for i in range(keep, min(size, (keep + 7) // 8 * 8)):
                    self.store(base, off + i, 0, 1)
                word = min(size, (keep + 7) // 8 * 8)
                self.zero(base, off + word, size - word)
            return
        if not in_record:
            self.zero(base, off, size)
        src, helper = self.str_source(arg, e)
        if arg is not None and src is None:      # a data_loc string of a tracepoint
            if not runtime_len:
                self.args_string_into(arg, base, off, min(n, size), zero=False)
                return
            src = self.data_loc_address(arg)
        if not runtime_len:
            self.checked_read(helper, self.gep(base, off), min(n, size), src)
            return
        # str(src, len) with len known at run time: at most len characters and the buffer's
        # size - 1, NUL-terminated; len <= 0 gives the empty string
        cap = min(n, size)
        ln = self.scalar(e.args[1])

        def read():
            m = self.b.select(self.b.icmp_unsigned("<=", ln, c64(cap - 1)), ln, c64(cap - 1))
            self.checked_read(helper, self.gep(base, off), self.b.add(m, c64(1)), src)

        self.branch(self.b.icmp_signed(">", ln, c64(0)), read,
                    lambda: self.store(base, off, 0, 1))

    def str_source(self, arg: ast.Expr, e: ast.Call):
        """(address as a pointer, helper) of the string str() reads; (None, helper) for a
        tracepoint's data_loc field."""
        if isinstance(arg.type, StrT):
            return self.mem_of(arg), U.FN_PROBE_READ_KERNEL_STR
        if isinstance(arg, ast.FieldAccess) and isinstance(arg.base.type, ArgsT):
            if arg.base.type.field(arg.field_name).data_loc:
                return None, U.FN_PROBE_READ_KERNEL_STR
        if type(arg.type).__name__ == "PtrT":
            # a char * (a tracepoint's field, kept in a map...): user memory for syscalls
            helper = U.FN_PROBE_READ_USER_STR if arg.type.user else U.FN_PROBE_READ_KERNEL_STR
        elif arg.type.is_int:
            helper = U.FN_PROBE_READ_STR
        else:
            raise unsupported(f"str() of a value of type '{arg.type}'", e.span)
        return self.b.inttoptr(self.scalar(arg), PTR), helper

    def data_loc_address(self, arg: ast.FieldAccess):
        f = arg.base.type.field(arg.field_name)
        loc = self.b.and_(self.load(self.ctx, f.offset, 4), c64(0xFFFF))
        return self.b.gep(self.ctx, [loc], source_etype=I8)

    def args_string_into(self, e: ast.FieldAccess, base, off: int, size: int, zero: bool) -> None:
        f = e.base.type.field(e.field_name)
        if zero:
            self.zero(base, off, size)
        if f.data_loc:
            self.checked_read(U.FN_PROBE_READ_KERNEL_STR, self.gep(base, off), size,
                              self.data_loc_address(e))
        else:
            self.checked_read(U.FN_PROBE_READ_KERNEL, self.gep(base, off), min(size, f.size),
                              self.gep(self.ctx, f.offset))
