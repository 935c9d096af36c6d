"""A tiny hand-encoder of struct bpf_insn, for the kernel-layer tests only.

Not the project's assembler (that lives in ptrace_lang/bpf/); just enough to
write a handful of test programs by hand.

struct bpf_insn { u8 code; u8 dst_reg:4, src_reg:4; s16 off; s32 imm; }
"""

from __future__ import annotations

import struct

# registers
R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = range(11)

# classes
LD, LDX, ST, STX, ALU, JMP, JMP32, ALU64 = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
# sizes
W, H, B, DW = 0x00, 0x08, 0x10, 0x18
# modes
IMM, MEM = 0x00, 0x60
# sources
K, X = 0x00, 0x08
# alu ops
ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, NEG, MOD, XOR, MOV = (
    0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x60, 0x70, 0x80, 0x90, 0xA0, 0xB0)
# jmp ops
JA, JEQ, JGT, JGE, JSET, JNE, CALL, EXIT = 0x00, 0x10, 0x20, 0x30, 0x40, 0x50, 0x80, 0x90

_INSN = struct.Struct("<BBhi")

PSEUDO_MAP_FD = 1

# helper ids
FN_map_lookup_elem = 1
FN_map_update_elem = 2
FN_get_current_pid_tgid = 14
FN_get_smp_processor_id = 8
FN_ringbuf_output = 130
FN_get_attach_cookie = 174


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return _INSN.pack(code, (src << 4) | dst, off, imm)


def mov64_imm(dst: int, imm: int) -> bytes:
    return insn(ALU64 | MOV | K, dst, 0, 0, imm)


def mov64_reg(dst: int, src: int) -> bytes:
    return insn(ALU64 | MOV | X, dst, src)


def alu64_imm(op: int, dst: int, imm: int) -> bytes:
    return insn(ALU64 | op | K, dst, 0, 0, imm)


def ld_imm64(dst: int, imm: int, src: int = 0) -> bytes:
    imm &= 0xFFFFFFFFFFFFFFFF
    lo = imm & 0xFFFFFFFF
    hi = imm >> 32
    if lo >= 1 << 31:
        lo -= 1 << 32
    if hi >= 1 << 31:
        hi -= 1 << 32
    return insn(LD | DW | IMM, dst, src, 0, lo) + insn(0, 0, 0, 0, hi)


def ld_map_fd(dst: int, map_fd: int) -> bytes:
    return ld_imm64(dst, map_fd, PSEUDO_MAP_FD)


def ldx(size: int, dst: int, src: int, off: int) -> bytes:
    return insn(LDX | MEM | size, dst, src, off)


def stx(size: int, dst: int, src: int, off: int) -> bytes:
    return insn(STX | MEM | size, dst, src, off)


def st_imm(size: int, dst: int, off: int, imm: int) -> bytes:
    return insn(ST | MEM | size, dst, 0, off, imm)


def call(helper: int) -> bytes:
    return insn(JMP | CALL, 0, 0, 0, helper)


def jmp_imm(op: int, dst: int, imm: int, off: int) -> bytes:
    return insn(JMP | op | K, dst, 0, off, imm)


def ja(off: int) -> bytes:
    return insn(JMP | JA, 0, 0, off)


def exit_() -> bytes:
    return insn(JMP | EXIT)


def ret(imm: int = 0) -> bytes:
    return mov64_imm(R0, imm) + exit_()


def prog(*parts: bytes) -> bytes:
    return b"".join(parts)


def n_insns(code: bytes) -> int:
    return len(code) // 8


ATOMIC = 0xC0


def atomic_add64(dst: int, src: int, off: int) -> bytes:
    """lock *(u64 *)(dst + off) += src"""
    return insn(STX | ATOMIC | DW, dst, src, off, ADD)


class Label(str):
    """A jump target: put Label("x") in the program, jump with jmp_to(..., "x")."""


def jmp_to(op: int, dst: int, imm: int, label: str) -> tuple:
    return ("jmp", op, dst, imm, label)


def assemble(*items) -> bytes:
    """Concatenate bytes items, resolving jmp_to() targets to Label()s."""
    pos = 0
    labels: dict[str, int] = {}
    for it in items:
        if isinstance(it, Label):
            labels[str(it)] = pos
        elif isinstance(it, tuple):
            pos += 1
        else:
            pos += len(it) // 8
    out = []
    pos = 0
    for it in items:
        if isinstance(it, Label):
            continue
        if isinstance(it, tuple):
            _, op, dst, imm, label = it
            out.append(jmp_imm(op, dst, imm, labels[label] - pos - 1))
            pos += 1
        else:
            out.append(it)
            pos += len(it) // 8
    return b"".join(out)
