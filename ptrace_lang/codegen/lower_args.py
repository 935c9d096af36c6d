"""Lowering of probe arguments read from the context: tracepoint ``args.f`` fields (integers,
``__data_loc`` and array strings), USDT arguments as their notes describe them (x86-64), and
BTF-typed pointers that may be NULL.

A mixin of ``lower.Lowering``.
"""
from __future__ import annotations

from ptrace_lang.bpf.uapi import FN_PROBE_READ_KERNEL, FN_PROBE_READ_KERNEL_STR, FN_PROBE_READ_USER
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import FP, VReg
from ptrace_lang.errors import NotSupportedYet, Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema.analyze import field_type

# struct pt_regs (x86-64) offsets of every register name a USDT note may use
X86_PT_REGS: dict[str, int] = {}
for _off, _names in ((0, "r15"), (8, "r14"), (16, "r13"), (24, "r12"), (48, "r11"), (56, "r10"),
                     (64, "r9"), (72, "r8")):
    X86_PT_REGS.update({_names: _off, _names + "d": _off, _names + "w": _off, _names + "b": _off})
for _off, _names in ((32, "rbp ebp bp bpl"), (40, "rbx ebx bx bl"), (80, "rax eax ax al"),
                     (88, "rcx ecx cx cl"), (96, "rdx edx dx dl"), (104, "rsi esi si sil"),
                     (112, "rdi edi di dil"), (128, "rip eip"), (152, "rsp esp sp spl")):
    X86_PT_REGS.update({n: _off for n in _names.split()})


class ArgsLowering:
    """Methods mixed into ``Lowering`` (``self`` is a ``Lowering``)."""

    def args_field(self, e: ast.FieldAccess) -> VReg:
        f = e.base.type.field(e.field_name)
        t = field_type(f, self.max_strlen)
        if not (t.is_int):
            raise NotSupportedYet(f"using args.{e.field_name} ({f.type_text}) as an integer", e.span)
        size = f.size if f.size in (1, 2, 4, 8) else 8
        out = self.vreg()
        self.emit(ir.Load(out, self.ctx, f.offset, size))
        if f.signed and size < 8:
            shift = 64 - size * 8
            self.emit(ir.Alu("lsh", out, shift))
            self.emit(ir.Alu("arsh", out, shift))
        if getattr(f, "ctype", None) is not None and f.is_pointer:
            self.null_checked(out)
        return out

    def null_checked(self, out: VReg) -> None:
        """A BTF-typed pointer read from the context (fentry, fexit, tp_btf, iter) may be one
        the verifier calls "or null": comparing it with 0 makes it usable in arithmetic."""
        null, done = self.label("null"), self.label("nonnull")
        self.emit(ir.CondJump("jeq", out, 0, null))
        self.emit(ir.Jump(done))
        self.emit(ir.Label(null))
        self.mov(out, 0)
        self.emit(ir.Label(done))

    def data_loc_address(self, f) -> VReg:
        """The address of a tracepoint's ``__data_loc`` string: the context plus the low 16
        bits of the field (its offset in the record; the high 16 are its length)."""
        loc = self.vreg()
        self.emit(ir.Load(loc, self.ctx, f.offset, 4))
        self.emit(ir.Alu("and", loc, 0xFFFF))
        src = self.vreg()
        self.mov(src, self.ctx)
        self.emit(ir.Alu("add", src, loc))
        return src

    def args_string_into(self, e: ast.FieldAccess, base, off: int, size: int, zero: bool) -> None:
        f = e.base.type.field(e.field_name)
        if zero:
            self.zero_mem(base, off, size)
        if f.data_loc:
            self.checked_read(FN_PROBE_READ_KERNEL_STR, base, off, size, self.data_loc_address(f))
        else:
            src = self.vreg()
            self.mov(src, self.ctx)
            self.emit(ir.Alu("add", src, f.offset))
            n = min(size, f.size)
            self.checked_read(FN_PROBE_READ_KERNEL, base, off, n, src)

    def usdt_arg(self, a, span: Span) -> VReg:
        """A USDT argument as its note describes it (x86-64): a register of pt_regs, memory at
        base + index * scale + displacement (read with probe_read_user), or a constant;
        then cut to its size and sign- or zero-extended to 64 bits."""
        if a.kind == "const":
            return self.const(usdt_const(a))
        if a.kind == "reg" and a.reg in X86_PT_REGS:
            v = self.vreg()
            self.emit(ir.Load(v, self.ctx, X86_PT_REGS[a.reg], 8))
        elif (a.kind == "mem" and a.symbol is None and a.base_reg in X86_PT_REGS
              and a.base_reg not in ("rip", "eip") and (a.index_reg is None or a.index_reg in X86_PT_REGS)):
            addr = self.vreg()
            self.emit(ir.Load(addr, self.ctx, X86_PT_REGS[a.base_reg], 8))
            if a.offset:
                self.emit(ir.Alu("add", addr, a.offset))
            if a.index_reg is not None:
                idx = self.vreg()
                self.emit(ir.Load(idx, self.ctx, X86_PT_REGS[a.index_reg], 8))
                if a.scale != 1:
                    self.emit(ir.Alu("mul", idx, a.scale))
                self.emit(ir.Alu("add", addr, idx))
            slot = self.frame.alloc(8, span)
            self.emit(ir.Store(FP, slot, 0, 8))
            self.checked_read(FN_PROBE_READ_USER, FP, slot, a.size, addr)
            v = self.vreg()
            self.emit(ir.Load(v, FP, slot, 8))
        else:
            raise NotSupportedYet(f"the USDT argument '{a.text}'", span)
        if a.size < 8:
            bits = 64 - 8 * a.size
            if a.signed:
                self.emit(ir.Alu("lsh", v, bits))
                self.emit(ir.Alu("arsh", v, bits))
            elif a.size == 4:
                self.emit(ir.Alu("mov", v, v, 32))    # a 32-bit move clears the upper half
            else:
                self.emit(ir.Alu("and", v, (1 << (8 * a.size)) - 1))
        return v


def usdt_const(a) -> int:
    """A constant USDT argument cut to its declared size (``1@$300`` is 44, ``-1@$255`` is -1),
    as a register of that size would hold it."""
    v = a.value
    if 0 < a.size < 8:
        bits = 8 * a.size
        v &= (1 << bits) - 1
        if a.signed and v >> (bits - 1):
            v -= 1 << bits
    return v
