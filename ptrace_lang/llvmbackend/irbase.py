"""The LLVM types, sections and small constants the llvm backend's lowering shares."""
from __future__ import annotations

from llvmlite import ir

I1, I8, I16, I32, I64 = (ir.IntType(n) for n in (1, 8, 16, 32, 64))
PTR = ir.PointerType()
SECTION = "ptrace/prog"
FUNCTION = "prog"
MAPS_SECTION = ".maps"
MAPVAL_SECTION = ".ptrace.mapvalue"

BPF_ANY, BPF_NOEXIST = 0, 1
DIV_ZERO_MESSAGE = ("Divide or modulo by 0 detected. This can lead to unexpected results. "
                    "1 is being used as the result.")
ARITH = {"+": "add", "-": "sub", "*": "mul", "&": "and_", "|": "or_", "^": "xor"}
CMP = {"==": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}
SIMPLE_BUILTINS = ("pid", "tid", "uid", "gid", "nsecs", "elapsed", "cpu", "rand", "cgroup",
                   "cpid", "probe", "func", "retval")


def c64(v: int) -> ir.Constant:
    v &= (1 << 64) - 1
    return ir.Constant(I64, v - (1 << 64) if v >= 1 << 63 else v)
