"""Lowering of strings into memory: literals, positional parameters, ``comm``, variables, map
values, ``str()`` of pointers (a fixed or a run-time length) and of strings, tracepoint string
fields. Strings are zeroed before a helper writes them where their bytes past the NUL matter
(map keys, comparisons), not in ring buffer records.

A mixin of ``lower.Lowering``.
"""
from __future__ import annotations

from ptrace_lang.bpf.uapi import FN_GET_CURRENT_COMM, FN_PROBE_READ_KERNEL_STR, FN_PROBE_READ_STR
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import FP
from ptrace_lang.codegen.lower_types import str_helper
from ptrace_lang.errors import NotSupportedYet
from ptrace_lang.frontend import ast
from ptrace_lang.sema.fn_values import ProbeName
from ptrace_lang.sema.types import ArgsT, StrT


class StringsLowering:
    """Methods mixed into ``Lowering`` (``self`` is a ``Lowering``)."""

    def string_into(self, e: ast.Expr, base, off: int, size: int) -> None:
        et = e.type
        if isinstance(e, ast.StrLit):
            self.store_bytes(base, off, e.value.encode("utf-8", "surrogateescape") + b"\0", size)
        elif isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            self.store_bytes(base, off, str(v).encode() + b"\0", size)
        elif isinstance(e, ast.Builtin) and e.name == "comm" or (
                isinstance(e, ast.Call) and e.name == "comm"):
            n = min(16, size)
            if not self.target.comm_padded:
                # before Linux 6.4 the helper leaves the bytes after the NUL as they were, and
                # strings compare (and key maps) byte for byte
                self.zero_mem(base, off, n)
            self.call(FN_GET_CURRENT_COMM, ("ptr", base, off) if base != FP else ("fp", off), n)
            if size > 16:
                self.zero_mem(base, off + 16, size - 16)
        elif isinstance(e, ast.Var):
            src_base, src_off = self.vars[e.name]
            self.copy_value(base, off, StrT(size), src_base, src_off, et)
        elif isinstance(e, ast.MapRef):
            layout = self.maps["@" + e.name]
            self.map_read_into(e, layout, base, off, StrT(size))
        elif isinstance(e, ast.Call) and e.name == "str":
            self.str_call_into(e, base, off, size)
        elif isinstance(e, ProbeName):
            self.probe_name_into(e.operand, base, off, size)
        elif isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
            self.args_string_into(e, base, off, size, zero=True)
        elif isinstance(e, ast.TupleIndex):
            self.elem_copy_out(e, base, off, StrT(size))
        elif isinstance(e, ast.Ternary):
            self.ternary(e, lambda x: self.string_into(x, base, off, size))
        elif isinstance(e, ast.BlockExpr):          # { ...; "s" }, an arm of an if expression
            self._block_stmts(e.stmts)
            self.string_into(e.value, base, off, size)
        elif not self.c_into(e, base, off, StrT(size)):
            raise NotSupportedYet(f"string expression '{type(e).__name__}'", e.span)

    def probe_name_into(self, e: ast.Expr, base, off: int, size: int) -> None:
        """The name of the probe that fired as a string: the probe id (``e``) against the ids
        of this program's probes, each writing its own name."""
        names = getattr(self, "probe_id_names", None) or []
        v = self.scalar(e)
        done = self.label("probestr")
        for pid in self.probe_ids:
            other = self.label("probestr_next")
            self.emit(ir.CondJump("jne", v, pid, other))
            name = names[pid] if pid < len(names) else ""
            self.store_bytes(base, off, name.encode("utf-8", "surrogateescape") + b"\0", size)
            self.emit(ir.Jump(done))
            self.emit(ir.Label(other))
        self.zero_mem(base, off, size)
        self.emit(ir.Label(done))

    def str_call_into(self, e: ast.Call, base, off: int, size: int) -> None:
        arg = e.args[0]
        if len(e.args) == 2 and self.const_len(e) is None:
            self.str_runtime_len_into(e, base, off, size)
            return
        if isinstance(arg.type, StrT):
            self.string_into(arg, base, off, size)
            keep = e.type.length - 1     # str(s, n) of a string: cut after n characters
            if keep < arg.type.length - 1 and keep < size:
                word = min(size, (keep + 7) // 8 * 8)
                self.zero_mem_bytes(base, off + keep, word - keep)
                self.zero_mem(base, off + word, size - word)
            return
        n = e.type.length
        # zero first: the helper leaves bytes after the NUL as they were, and strings are
        # compared byte for byte as map keys (not in a ring buffer record: user space stops at
        # the NUL, and a failed read zeroes the buffer)
        if base is not self.record_base:
            self.zero_mem(base, off, size)
        if isinstance(arg, ast.FieldAccess) and isinstance(arg.base.type, ArgsT):
            f = arg.base.type.field(arg.field_name)
            if f.data_loc:
                self.args_string_into(arg, base, off, min(n, size), zero=False)
                return
        ptr = self.scalar(arg)
        self.checked_read(str_helper(arg.type) or FN_PROBE_READ_STR, base, off, min(n, size), ptr)

    def str_runtime_len_into(self, e: ast.Call, base, off: int, size: int) -> None:
        """str(src, len) with a length known at run time: at most len characters (and at most
        the buffer's size - 1), NUL-terminated; len <= 0 gives the empty string. The size given
        to the read is clamped so that the verifier sees it bounded."""
        arg = e.args[0]
        cap = min(e.type.length, size)
        if base is not self.record_base:
            self.zero_mem(base, off, size)
        if isinstance(arg.type, StrT):      # a string value: cut it while copying it
            sb, so = self.mem_of(arg)
            src = self.vreg()
            if sb == FP:
                self.mov(src, FP)
            else:
                self.mov(src, sb)
            if so:
                self.emit(ir.Alu("add", src, so))
            helper = FN_PROBE_READ_KERNEL_STR
        elif (isinstance(arg, ast.FieldAccess) and isinstance(arg.base.type, ArgsT)
              and arg.base.type.field(arg.field_name).data_loc):
            src = self.data_loc_address(arg.base.type.field(arg.field_name))
            helper = FN_PROBE_READ_KERNEL_STR
        else:
            src = self.scalar(arg)
            helper = str_helper(arg.type) or FN_PROBE_READ_STR
        n = self.vreg()
        self.mov(n, self.scalar(e.args[1]))
        empty, fits, done = self.label("strempty"), self.label("strfits"), self.label("strdone")
        self.emit(ir.CondJump("jsle", n, 0, empty))
        self.emit(ir.CondJump("jle", n, cap - 1, fits))
        self.mov(n, cap - 1)
        self.emit(ir.Label(fits))
        self.emit(ir.Alu("add", n, 1))       # room for the NUL
        self.checked_read(helper, base, off, n, src)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(empty))
        self.emit(ir.Store(base, off, 0, 1))
        self.emit(ir.Label(done))
