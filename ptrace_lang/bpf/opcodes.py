"""eBPF opcode constants (values from linux/bpf_common.h and linux/bpf.h).

An opcode byte is ``class | size | mode`` for loads/stores and ``class | op | source`` for
ALU and jump instructions.
"""
from __future__ import annotations

# --- instruction classes (low 3 bits) ---
BPF_LD = 0x00
BPF_LDX = 0x01
BPF_ST = 0x02
BPF_STX = 0x03
BPF_ALU = 0x04
BPF_JMP = 0x05
BPF_JMP32 = 0x06
BPF_ALU64 = 0x07

# --- load/store size ---
BPF_W = 0x00    # 32-bit
BPF_H = 0x08    # 16-bit
BPF_B = 0x10    # 8-bit
BPF_DW = 0x18   # 64-bit

# --- load/store mode ---
BPF_IMM = 0x00
BPF_ABS = 0x20
BPF_IND = 0x40
BPF_MEM = 0x60
BPF_MEMSX = 0x80    # sign-extending load (cpu v4)
BPF_ATOMIC = 0xc0
BPF_XADD = 0xc0     # legacy name of BPF_ATOMIC

# --- ALU operations ---
BPF_ADD = 0x00
BPF_SUB = 0x10
BPF_MUL = 0x20
BPF_DIV = 0x30
BPF_OR = 0x40
BPF_AND = 0x50
BPF_LSH = 0x60
BPF_RSH = 0x70
BPF_NEG = 0x80
BPF_MOD = 0x90
BPF_XOR = 0xa0
BPF_MOV = 0xb0
BPF_ARSH = 0xc0
BPF_END = 0xd0

# --- jump operations ---
BPF_JA = 0x00
BPF_JEQ = 0x10
BPF_JGT = 0x20
BPF_JGE = 0x30
BPF_JSET = 0x40
BPF_JNE = 0x50
BPF_JSGT = 0x60
BPF_JSGE = 0x70
BPF_CALL = 0x80
BPF_EXIT = 0x90
BPF_JLT = 0xa0
BPF_JLE = 0xb0
BPF_JSLT = 0xc0
BPF_JSLE = 0xd0

# --- operand source ---
BPF_K = 0x00    # immediate
BPF_X = 0x08    # register

# --- byte swap direction (in the BPF_SRC bit of BPF_END) ---
BPF_TO_LE = 0x00
BPF_TO_BE = 0x08
BPF_FROM_LE = BPF_TO_LE
BPF_FROM_BE = BPF_TO_BE

# --- atomic operation (in imm of BPF_STX | BPF_ATOMIC) ---
BPF_FETCH = 0x01
BPF_XCHG = 0xe0 | BPF_FETCH
BPF_CMPXCHG = 0xf0 | BPF_FETCH

# --- src_reg values of ld_imm64 ---
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6

# --- src_reg values of BPF_CALL ---
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

# --- registers ---
BPF_REG_0, BPF_REG_1, BPF_REG_2, BPF_REG_3, BPF_REG_4, BPF_REG_5 = range(6)
BPF_REG_6, BPF_REG_7, BPF_REG_8, BPF_REG_9, BPF_REG_10 = range(6, 11)
BPF_REG_FP = BPF_REG_10
MAX_BPF_REG = 11

BPF_MAXINSNS = 4096
MAX_BPF_STACK = 512


def BPF_CLASS(code: int) -> int:
    return code & 0x07


def BPF_SIZE(code: int) -> int:
    return code & 0x18


def BPF_MODE(code: int) -> int:
    return code & 0xe0


def BPF_OP(code: int) -> int:
    return code & 0xf0


def BPF_SRC(code: int) -> int:
    return code & 0x08


# --- name <-> value tables used by the encoder (codegen/emit.py) and the disassembler ---

#: IR ALU op name -> (BPF op, insn.off). sdiv/smod are BPF_DIV/BPF_MOD with off=1 (cpu v4).
ALU_OP_CODES: dict[str, tuple[int, int]] = {
    "add": (BPF_ADD, 0), "sub": (BPF_SUB, 0), "mul": (BPF_MUL, 0), "div": (BPF_DIV, 0),
    "sdiv": (BPF_DIV, 1), "mod": (BPF_MOD, 0), "smod": (BPF_MOD, 1), "or": (BPF_OR, 0),
    "and": (BPF_AND, 0), "lsh": (BPF_LSH, 0), "rsh": (BPF_RSH, 0), "neg": (BPF_NEG, 0),
    "xor": (BPF_XOR, 0), "mov": (BPF_MOV, 0), "arsh": (BPF_ARSH, 0),
}

#: IR conditional jump name -> BPF op
JMP_OP_CODES: dict[str, int] = {
    "jeq": BPF_JEQ, "jne": BPF_JNE, "jgt": BPF_JGT, "jge": BPF_JGE, "jlt": BPF_JLT,
    "jle": BPF_JLE, "jsgt": BPF_JSGT, "jsge": BPF_JSGE, "jslt": BPF_JSLT, "jsle": BPF_JSLE,
    "jset": BPF_JSET,
}

#: access size in bytes -> BPF size field
SIZE_CODES: dict[int, int] = {1: BPF_B, 2: BPF_H, 4: BPF_W, 8: BPF_DW}
SIZE_BYTES: dict[int, int] = {v: k for k, v in SIZE_CODES.items()}
