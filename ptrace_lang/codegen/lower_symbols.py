"""Lowering of stacks and symbols (types in ``sema.fn_symbols``).

``kstack``: ``bpf_get_stackid(ctx, kstack_<limit>, 0)``, the id in a register. ``ustack``: the
same with BPF_F_USER_STACK, written with the pid (user symbols are looked up in that process).
A failed id other than -EFAULT (no stack of that kind here: a kernel stack sampled in user mode)
is counted in ``COUNTER_STACK_FAILED``; a negative id prints as an empty stack. The stack maps
the program uses are listed in ``stack_maps`` (name -> value size) for the driver to create.
"""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import (
    BPF_F_USER_STACK, FN_GET_STACK, FN_GET_STACKID, FN_PER_CPU_PTR, FN_THIS_CPU_PTR,
)
from ptrace_lang.codegen import ir
from ptrace_lang.frontend import ast
from ptrace_lang.sema.fn_symbols import PT_REGS

EFAULT = 14


class SymbolsLowering:
    """Mixin of ``codegen.lower.Lowering``."""

    def stack_id(self, e: ast.Expr, user: bool):
        _mode, limit, map_name = e.type.aux
        self.__dict__.setdefault("stack_maps", {})[map_name] = 8 * limit
        self.call(FN_GET_STACKID, self.ctx, ("map", map_name), BPF_F_USER_STACK if user else 0)
        sid = self.result()
        ok = self.label("stack")
        self.emit(ir.CondJump("jsge", sid, 0, ok))
        self.emit(ir.CondJump("jeq", sid, -EFAULT, ok))
        self.count_error(S.COUNTER_STACK_FAILED)
        self.emit(ir.Label(ok))
        return sid

    def stack_len(self, e: ast.Expr):
        """len(kstack) / len(ustack): the frames bpf_get_stack writes (up to the stack's
        limit) into scratch memory, counted; 0 when there is no such stack here."""
        limit = e.type.aux[1]
        base, off = self.alloc_mem(8 * limit, e.span)
        user = e.type.kind == "ustack"
        self.call(FN_GET_STACK, self.ctx, self.ptr_arg(base, off), 8 * limit,
                  BPF_F_USER_STACK if user else 0)
        n = self.vreg()
        self.mov(n, self.result())
        ok = self.label("stacklen")
        self.emit(ir.CondJump("jsge", n, 0, ok))
        self.mov(n, 0)
        self.emit(ir.Label(ok))
        self.emit(ir.Alu("rsh", n, 3))
        return n

    def call_kstack(self, e):
        return self.stack_id(e, False)

    builtin_kstack = call_kstack

    def into_ustack(self, e, base, off: int, typ) -> None:
        sid = self.stack_id(e, True)
        self.emit(ir.Store(base, off, sid, 8))
        self.emit(ir.Store(base, off + 8, self.builtin("pid", e), 8))

    def call_ksym(self, e: ast.Call):
        return self.scalar(e.args[0])

    def into_usym(self, e: ast.Call, base, off: int, typ) -> None:
        self.emit(ir.Store(base, off, self.scalar(e.args[0]), 8))
        self.emit(ir.Store(base, off + 8, self.builtin("pid", e), 8))

    def call_kaddr(self, e: ast.Call):
        return self.const(e.address)

    call_uaddr = call_kaddr

    def call_percpu_kaddr(self, e: ast.Call):
        """bpf_this_cpu_ptr / bpf_per_cpu_ptr on the variable's ld_imm64 (BPF_PSEUDO_BTF_ID).
        bpf_per_cpu_ptr may return NULL (cpu out of range): the value is 0 then, and a
        non-NULL one is known so to the verifier, so the address may take arithmetic."""
        var = self.vreg()
        self.emit(ir.LoadBtfId(var, e.address))
        if len(e.args) == 1:
            self.call(FN_THIS_CPU_PTR, var)
            return self.result()
        self.call(FN_PER_CPU_PTR, var, self.scalar(e.args[1]))
        got = self.result()
        out = self.const(0)
        done = self.label("percpu")
        self.emit(ir.CondJump("jeq", got, 0, done))
        self.mov(out, got)
        self.emit(ir.Label(done))
        return out

    def call_reg(self, e: ast.Call):
        out = self.vreg()
        self.emit(ir.Load(out, self.ctx, PT_REGS[e.args[0].value], 8))
        return out
