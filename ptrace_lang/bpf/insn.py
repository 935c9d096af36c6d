"""Machine-level BPF instructions and their wire encoding (``struct bpf_insn``).

    struct bpf_insn {
        __u8  code;          /* opcode */
        __u8  dst_reg:4;     /* low nibble of byte 1 (little-endian bitfield order) */
        __u8  src_reg:4;     /* high nibble of byte 1 */
        __s16 off;
        __s32 imm;
    };

A ``ld_imm64`` (``BPF_LD | BPF_IMM | BPF_DW``) takes two slots; it is represented as two
``Instruction`` objects (the second has opcode 0 and carries the high 32 bits in ``imm``), so
list indexes are the kernel's instruction indexes.
"""
from __future__ import annotations

import struct
from ptrace_lang.records import dataclass

from ptrace_lang.bpf import opcodes as op

_INSN = struct.Struct("<BBhi")
INSN_SIZE = _INSN.size  # 8

LD_IMM64 = op.BPF_LD | op.BPF_IMM | op.BPF_DW  # 0x18


def _s32(v: int) -> int:
    """Wrap an integer in [-2**31, 2**32) to a signed 32-bit value."""
    if not -(1 << 31) <= v < (1 << 32):
        raise ValueError(f"immediate {v} does not fit in 32 bits")
    return v - (1 << 32) if v >= (1 << 31) else v


@dataclass
class Instruction:
    opcode: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    # by hand: thousands are made per program, the records' generic __init__ is 10x slower
    def __init__(self, opcode: int, dst: int = 0, src: int = 0, off: int = 0,
                 imm: int = 0) -> None:
        self.opcode = opcode
        self.dst = dst
        self.src = src
        self.off = off
        self.imm = imm

    @property
    def is_ld_imm64(self) -> bool:
        return self.opcode == LD_IMM64

    @property
    def cls(self) -> int:
        return self.opcode & 0x07


def ld_imm64(dst: int, value: int, src: int = 0) -> list[Instruction]:
    """The two slots of ``dst = value ll`` (``src`` e.g. BPF_PSEUDO_MAP_FD)."""
    value &= (1 << 64) - 1
    return [Instruction(LD_IMM64, dst, src, 0, _s32(value & 0xFFFFFFFF)),
            Instruction(0, 0, 0, 0, _s32(value >> 32))]


def encode(insns: list[Instruction]) -> bytes:
    """Serialise instructions to the kernel's ``struct bpf_insn`` array."""
    pack = _INSN.pack
    parts = []
    for i, ins in enumerate(insns):
        dst, src, off, imm = ins.dst, ins.src, ins.off, ins.imm
        if not (0 <= dst <= 15 and 0 <= src <= 15):
            raise ValueError(f"insn {i}: register out of range: {ins}")
        if not -32768 <= off <= 32767:
            raise ValueError(f"insn {i}: offset {ins.off} does not fit in 16 bits")
        if not -2147483648 <= imm <= 2147483647:     # (2**31 .. 2**32-1 wrap, as _s32 says)
            try:
                imm = _s32(imm)
            except ValueError as e:
                raise ValueError(f"insn {i}: {e}") from None
        parts.append(pack(ins.opcode & 0xFF, (src << 4) | dst, off, imm))
    return b"".join(parts)


def decode(data: bytes) -> list[Instruction]:
    """Parse a ``struct bpf_insn`` array (length must be a multiple of 8)."""
    if len(data) % INSN_SIZE:
        raise ValueError(f"BPF program length {len(data)} is not a multiple of {INSN_SIZE}")
    out = []
    for code, regs, off, imm in _INSN.iter_unpack(data):
        out.append(Instruction(code, regs & 0x0F, regs >> 4, off, imm))
    return out


def ld_imm64_value(insns: list[Instruction], i: int) -> int:
    """The full 64-bit (unsigned) immediate of the ld_imm64 at index ``i``."""
    lo = insns[i].imm & 0xFFFFFFFF
    hi = insns[i + 1].imm & 0xFFFFFFFF if i + 1 < len(insns) else 0
    return (hi << 32) | lo
