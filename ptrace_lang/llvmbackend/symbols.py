"""``SymbolsLowering``, a mixin of ``llvmbackend.lower.Lowering``: stacks and symbols with the
direct backend's layouts (codegen/lower_symbols.py): ``kstack`` the id bpf_get_stackid gives
(8 bytes), ``ustack`` the id and the pid (16), ``usym`` the address and the pid; a failed id
other than -EFAULT is counted. The stack maps used are listed in ``stack_maps`` (name -> value
size) for backend.py to add to the ObjectSpec.
"""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang import spec as S
from ptrace_lang.bpf import uapi as U
from ptrace_lang.codegen.lower_symbols import EFAULT
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend.irbase import I64, c64
from ptrace_lang.sema.fn_symbols import PT_REGS


class SymbolsLowering:
    def stack_id(self, e: ast.Expr, user: bool) -> ir.Value:
        _mode, limit, map_name = e.type.aux
        self.stack_maps[map_name] = 8 * limit
        sid = self.call(U.FN_GET_STACKID, I64, self.ctx, self.map_ref(map_name),
                        c64(U.BPF_F_USER_STACK if user else 0))
        bad = self.b.and_(self.b.icmp_signed("<", sid, c64(0)),
                          self.b.icmp_unsigned("!=", sid, c64(-EFAULT)))
        self.branch(bad, lambda: self.count_error(S.COUNTER_STACK_FAILED))
        return sid

    def call_kstack(self, e) -> ir.Value:
        return self.stack_id(e, False)

    builtin_kstack = call_kstack

    def into_ustack(self, e, base, off: int, typ, in_record: bool = False) -> None:
        self.store(base, off, self.stack_id(e, True))
        self.store(base, off + 8, self.builtin("pid", e))

    def call_ksym(self, e: ast.Call) -> ir.Value:
        return self.scalar(e.args[0])

    def into_usym(self, e: ast.Call, base, off: int, typ, in_record: bool = False) -> None:
        self.store(base, off, self.scalar(e.args[0]))
        self.store(base, off + 8, self.builtin("pid", e))

    def call_kaddr(self, e: ast.Call) -> ir.Value:
        return c64(e.address)

    call_uaddr = call_kaddr

    def call_reg(self, e: ast.Call) -> ir.Value:
        return self.load(self.ctx, PT_REGS[e.args[0].value])
