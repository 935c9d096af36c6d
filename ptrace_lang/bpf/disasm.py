"""Disassembler printing the kernel verifier's / bpftool's syntax.

    ; @x = count();   [line 3]
       0: r1 = map[x] ll
       2: r2 = r10
       3: r2 += -8
       4: call bpf_map_lookup_elem#1
       5: if r0 == 0x0 goto pc+3
       6: lock *(u64 *)(r0 +0) += r1
       ...
"""
from __future__ import annotations

from collections.abc import Callable

from ptrace_lang.bpf import opcodes as op
from ptrace_lang.bpf.helpers import helper_name
from ptrace_lang.bpf.insn import Instruction, ld_imm64_value
from ptrace_lang.errors import Span

_ALU_SYM = {
    op.BPF_ADD: "+=", op.BPF_SUB: "-=", op.BPF_MUL: "*=", op.BPF_DIV: "/=", op.BPF_OR: "|=",
    op.BPF_AND: "&=", op.BPF_LSH: "<<=", op.BPF_RSH: ">>=", op.BPF_MOD: "%=",
    op.BPF_XOR: "^=", op.BPF_MOV: "=", op.BPF_ARSH: "s>>=",
}
_JMP_SYM = {
    op.BPF_JEQ: "==", op.BPF_JGT: ">", op.BPF_JGE: ">=", op.BPF_JSET: "&", op.BPF_JNE: "!=",
    op.BPF_JSGT: "s>", op.BPF_JSGE: "s>=", op.BPF_JLT: "<", op.BPF_JLE: "<=",
    op.BPF_JSLT: "s<", op.BPF_JSLE: "s<=",
}
_ATOMIC_SYM = {op.BPF_ADD: "+=", op.BPF_AND: "&=", op.BPF_OR: "|=", op.BPF_XOR: "^="}
_ATOMIC_NAME = {op.BPF_ADD: "add", op.BPF_AND: "and", op.BPF_OR: "or", op.BPF_XOR: "xor"}


def _size_name(code: int, signed: bool = False) -> str:
    return ("s" if signed else "u") + str(op.SIZE_BYTES[op.BPF_SIZE(code)] * 8)


def _mem(base: int, off: int) -> str:
    return f"(r{base} {off:+d})"


def format_instruction(insns: list[Instruction], i: int,
                       map_names: dict[int, str] | None = None) -> str:
    """Text of instruction ``i`` (an ld_imm64 consumes ``insns[i + 1]`` too)."""
    ins = insns[i]
    code = ins.opcode
    cls = op.BPF_CLASS(code)
    d, s = ins.dst, ins.src

    if cls in (op.BPF_ALU, op.BPF_ALU64):
        r = "w" if cls == op.BPF_ALU else "r"
        aop = op.BPF_OP(code)
        if aop == op.BPF_END:
            if cls == op.BPF_ALU64:
                return f"r{d} = bswap{ins.imm} r{d}"
            kind = "be" if op.BPF_SRC(code) == op.BPF_TO_BE else "le"
            return f"r{d} = {kind}{ins.imm} r{d}"
        if aop == op.BPF_NEG:
            return f"{r}{d} = -{r}{d}"
        sym = _ALU_SYM.get(aop)
        if sym is None:
            return f"invalid alu opcode {code:#04x}"
        if ins.off == 1 and aop in (op.BPF_DIV, op.BPF_MOD):
            sym = "s" + sym
        if op.BPF_SRC(code) == op.BPF_X:
            if aop == op.BPF_MOV and ins.off in (8, 16, 32):
                return f"{r}{d} = (s{ins.off}){r}{s}"
            return f"{r}{d} {sym} {r}{s}"
        return f"{r}{d} {sym} {ins.imm}"

    if cls == op.BPF_STX:
        mode = op.BPF_MODE(code)
        size = _size_name(code)
        if mode == op.BPF_MEM:
            return f"*({size} *){_mem(d, ins.off)} = r{s}"
        if mode == op.BPF_ATOMIC:
            width = "64" if op.BPF_SIZE(code) == op.BPF_DW else ""
            a = ins.imm
            if a in _ATOMIC_SYM:
                return f"lock *({size} *){_mem(d, ins.off)} {_ATOMIC_SYM[a]} r{s}"
            if a & op.BPF_FETCH and (a & ~op.BPF_FETCH) in _ATOMIC_NAME:
                name = _ATOMIC_NAME[a & ~op.BPF_FETCH]
                return f"r{s} = atomic{width}_fetch_{name}(({size} *){_mem(d, ins.off)}, r{s})"
            if a == op.BPF_XCHG:
                return f"r{s} = atomic{width}_xchg(({size} *){_mem(d, ins.off)}, r{s})"
            if a == op.BPF_CMPXCHG:
                return f"r0 = atomic{width}_cmpxchg(({size} *){_mem(d, ins.off)}, r0, r{s})"
            return f"invalid atomic operation {a:#x}"
        return f"invalid stx opcode {code:#04x}"

    if cls == op.BPF_ST:
        if op.BPF_MODE(code) == op.BPF_MEM:
            return f"*({_size_name(code)} *){_mem(d, ins.off)} = {ins.imm}"
        return f"invalid st opcode {code:#04x}"

    if cls == op.BPF_LDX:
        mode = op.BPF_MODE(code)
        if mode in (op.BPF_MEM, op.BPF_MEMSX):
            return f"r{d} = *({_size_name(code, mode == op.BPF_MEMSX)} *){_mem(s, ins.off)}"
        return f"invalid ldx opcode {code:#04x}"

    if cls == op.BPF_LD:
        mode = op.BPF_MODE(code)
        if mode == op.BPF_IMM and op.BPF_SIZE(code) == op.BPF_DW:
            value = ld_imm64_value(insns, i)
            known = map_names.get(i) if map_names else None
            if s in (op.BPF_PSEUDO_MAP_FD, op.BPF_PSEUDO_MAP_VALUE) or known:
                where = known or f"fd:{ins.imm}"
                if s == op.BPF_PSEUDO_MAP_VALUE:
                    return f"r{d} = map[{where}][0]+{insns[i + 1].imm} ll"
                return f"r{d} = map[{where}] ll"
            if s == op.BPF_PSEUDO_MAP_IDX:
                return f"r{d} = map[idx:{ins.imm}] ll"
            if s == op.BPF_PSEUDO_BTF_ID:
                return f"r{d} = btf_id:{ins.imm} ll"
            return f"r{d} = {value:#x} ll"
        if mode == op.BPF_ABS:
            return f"r0 = *({_size_name(code)} *)skb[{ins.imm}]"
        if mode == op.BPF_IND:
            return f"r0 = *({_size_name(code)} *)skb[r{s} + {ins.imm}]"
        return f"invalid ld opcode {code:#04x}"

    if cls in (op.BPF_JMP, op.BPF_JMP32):
        jop = op.BPF_OP(code)
        if cls == op.BPF_JMP:
            if jop == op.BPF_CALL:
                if s == op.BPF_PSEUDO_CALL:
                    return f"call pc{ins.imm:+d}"
                if s == op.BPF_PSEUDO_KFUNC_CALL:
                    return f"call kernel-function#{ins.imm}"
                name = helper_name(ins.imm)
                return f"call bpf_{name}#{ins.imm}" if name else f"call unknown#{ins.imm}"
            if jop == op.BPF_EXIT:
                return "exit"
            if jop == op.BPF_JA:
                return f"goto pc{ins.off:+d}"
        elif jop == op.BPF_JA:
            return f"gotol pc{ins.imm:+d}"
        sym = _JMP_SYM.get(jop)
        if sym is None:
            return f"invalid jmp opcode {code:#04x}"
        r = "w" if cls == op.BPF_JMP32 else "r"
        if op.BPF_SRC(code) == op.BPF_X:
            return f"if {r}{d} {sym} {r}{s} goto pc{ins.off:+d}"
        return f"if {r}{d} {sym} {ins.imm & 0xFFFFFFFF:#x} goto pc{ins.off:+d}"

    return f"invalid opcode {code:#04x}"


def disassemble(insns: list[Instruction], spans: list[Span] | None = None,
                source_line: Callable[[str, int], str | None] | None = None,
                map_names: dict[int, str] | None = None, *, opcodes: bool = False,
                functions: dict[int, str] | None = None) -> str:
    """Disassemble a program, one instruction per line, ``   4: r1 = r10``.

    ``spans`` (one per instruction slot) plus ``source_line(file, lineno)`` add a
    ``; <source text>   [line N]`` line whenever the source line changes. ``map_names``
    maps the index of a map ld_imm64 to the map's name. ``opcodes=True`` adds the
    ``(bf)`` opcode column as the verifier log does. ``functions`` maps the first
    instruction of each subprogram to its name: a ``name:`` line opens it, and a callback
    address (ld_imm64 with BPF_PSEUDO_FUNC) names it.
    """
    lines: list[str] = []
    last_key: tuple[str, int] | None = None
    i = 0
    while i < len(insns):
        ins = insns[i]
        if spans is not None and i < len(spans):
            sp = spans[i]
            if sp is not None and sp.line > 0 and (sp.file, sp.line) != last_key:
                last_key = (sp.file, sp.line)
                text = source_line(sp.file, sp.line) if source_line else None
                if text is not None and text.strip():
                    lines.append(f"; {text.strip()}   [line {sp.line}]")
                else:
                    lines.append(f"; [line {sp.line}]")
        if functions and i in functions:
            lines.append(f"{functions[i]}:")
            last_key = None
        body = format_instruction(insns, i, map_names)
        if functions and ins.is_ld_imm64 and ins.src == op.BPF_PSEUDO_FUNC:
            target = i + 1 + ins.imm
            body = f"r{ins.dst} = func {functions.get(target, f'pc{ins.imm:+d}')}"
        prefix = f"{i:4d}: "
        if opcodes:
            prefix += f"({ins.opcode:02x}) "
        lines.append(prefix + body)
        i += 2 if ins.is_ld_imm64 else 1
    return "\n".join(lines) + ("\n" if lines else "")
