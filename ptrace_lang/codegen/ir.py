"""The IR: real BPF instructions over virtual registers, plus labels.

Lowering (codegen/lower.py) emits a flat list of these per program. Operands are either a
``VReg`` (allocated later by codegen/regalloc.py) or a ``PReg`` (a fixed machine register,
used for helper arguments r1-r5, the return value r0 and the frame pointer r10).

Stack memory used by lowering is addressed as ``PReg(10)`` plus a concrete negative offset
handed out by ``Frame`` (codegen/frame.py); the register allocator places its spill slots
below ``Frame.depth``.

Every instruction carries the source span of the script construct it came from, so the
disassembler and verifier error mapping can name the script line.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

from ptrace_lang.errors import NO_SPAN, Span


# registers are compared and hashed all through register allocation: by hand, not through
# the generic field-tuple comparison of records (two thirds of compiling a one-liner otherwise)
@dataclass(frozen=True)
class VReg:
    id: int

    def __init__(self, id: int) -> None:        # (frozen: set past __setattr__)
        self.__dict__["id"] = id

    def __str__(self) -> str:
        return f"%{self.id}"

    def __eq__(self, other) -> bool:
        return other.__class__ is VReg and other.id == self.id

    def __hash__(self) -> int:
        return self.id


@dataclass(frozen=True)
class PReg:
    n: int

    def __init__(self, n: int) -> None:
        self.__dict__["n"] = n

    def __str__(self) -> str:
        return f"r{self.n}"

    def __eq__(self, other) -> bool:
        return other.__class__ is PReg and other.n == self.n

    def __hash__(self) -> int:
        return -16 - self.n


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = (PReg(i) for i in range(11))
ARG_REGS = (R1, R2, R3, R4, R5)
CALLER_SAVED = (R0, R1, R2, R3, R4, R5)   # clobbered by every helper call
CALLEE_SAVED = (R6, R7, R8, R9)           # preserved across helper calls
FP = R10

Reg = VReg | PReg
Operand = VReg | PReg | int

# ALU operation names (BPF_ALU/BPF_ALU64 op codes)
ALU_OPS = ("add", "sub", "mul", "div", "sdiv", "mod", "smod", "or", "and", "lsh", "rsh",
           "neg", "xor", "mov", "arsh")
# Conditional jump names (BPF_JMP op codes)
JMP_OPS = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset")


@dataclass
class Insn:
    span: Span = field(default=NO_SPAN, kw_only=True, compare=False)


@dataclass
class Alu(Insn):
    """dst = dst <op> src   (op "mov": dst = src; op "neg": dst = -dst, src ignored).

    width 64 -> BPF_ALU64, width 32 -> BPF_ALU (zero-extends the result).
    ``src`` is a register or a signed 32-bit immediate.
    """

    op: str
    dst: Reg
    src: Operand = 0
    width: int = 64

    # the records made most in a compile get their __init__ by hand, not the records'
    # generic one (~3x slower)
    def __init__(self, op: str, dst: Reg, src: Operand = 0, width: int = 64, *,
                 span: Span = NO_SPAN) -> None:
        self.span = span
        self.op = op
        self.dst = dst
        self.src = src
        self.width = width


@dataclass
class LoadImm64(Insn):
    """dst = 64-bit immediate (BPF_LD | BPF_IMM | BPF_DW, two instruction slots)."""

    dst: Reg
    value: int

    def __init__(self, dst: Reg, value: int, *, span: Span = NO_SPAN) -> None:
        self.span = span
        self.dst = dst
        self.value = value


@dataclass
class LoadFuncAddr(LoadImm64):
    """dst = address of the subprogram ``func`` (ld_imm64 with src=BPF_PSEUDO_FUNC), a callback
    for bpf_loop / bpf_for_each_map_elem; the offset is filled in when functions are linked
    (codegen/subprogs.py)."""

    func: str = ""

    def __init__(self, dst: Reg, value: int, func: str = "", *, span: Span = NO_SPAN) -> None:
        self.span = span
        self.dst = dst
        self.value = value
        self.func = func


@dataclass
class LoadBtfId(LoadImm64):
    """dst = the kernel variable whose BTF VAR id is ``value`` in vmlinux (ld_imm64 with
    src=BPF_PSEUDO_BTF_ID): for a per-CPU variable, the per-CPU pointer that
    bpf_this_cpu_ptr / bpf_per_cpu_ptr take (``percpu_kaddr``)."""


@dataclass
class LoadMapFd(Insn):
    """dst = address of map ``map_name`` (ld_imm64 with src=BPF_PSEUDO_MAP_FD).

    The map fd is filled in at load time: the encoder records a relocation. With
    ``value_offset`` (array maps only) dst is the address of element 0's value plus the offset,
    read with plain loads and no helper call.
    """

    dst: Reg
    map_name: str
    value_offset: int | None = None   # set: address of the map's value + offset (BPF_PSEUDO_MAP_VALUE)

    def __init__(self, dst: Reg, map_name: str, value_offset: int | None = None, *,
                 span: Span = NO_SPAN) -> None:
        self.span = span
        self.dst = dst
        self.map_name = map_name
        self.value_offset = value_offset


@dataclass
class Load(Insn):
    """dst = *(u<size*8> *)(base + off)   (BPF_LDX | BPF_MEM); size in bytes 1/2/4/8."""

    dst: Reg
    base: Reg
    off: int
    size: int = 8

    def __init__(self, dst: Reg, base: Reg, off: int, size: int = 8, *,
                 span: Span = NO_SPAN) -> None:
        self.span = span
        self.dst = dst
        self.base = base
        self.off = off
        self.size = size


@dataclass
class Store(Insn):
    """*(u<size*8> *)(base + off) = src   (BPF_STX if src is a register, BPF_ST if immediate)."""

    base: Reg
    off: int
    src: Operand
    size: int = 8

    def __init__(self, base: Reg, off: int, src: Operand, size: int = 8, *,
                 span: Span = NO_SPAN) -> None:
        self.span = span
        self.base = base
        self.off = off
        self.src = src
        self.size = size


@dataclass
class AtomicAdd(Insn):
    """lock *(u<size*8> *)(base + off) += src   (BPF_STX | BPF_ATOMIC, BPF_ADD); size 4 or 8."""

    base: Reg
    off: int
    src: Reg
    size: int = 8

    def __init__(self, base: Reg, off: int, src: Reg, size: int = 8, *,
                 span: Span = NO_SPAN) -> None:
        self.span = span
        self.base = base
        self.off = off
        self.src = src
        self.size = size


@dataclass
class Endian(Insn):
    """dst = byte-swap(dst) to ``bits`` (16/32/64): to_be True -> BPF_TO_BE, else BPF_TO_LE."""

    dst: Reg
    bits: int
    to_be: bool = True


@dataclass
class Label(Insn):
    name: str

    def __init__(self, name: str, *, span: Span = NO_SPAN) -> None:
        self.span = span
        self.name = name


@dataclass
class Jump(Insn):
    """goto label."""

    target: str

    def __init__(self, target: str, *, span: Span = NO_SPAN) -> None:
        self.span = span
        self.target = target


@dataclass
class CondJump(Insn):
    """if (a <op> b) goto target. width 64 -> BPF_JMP, 32 -> BPF_JMP32; b register or imm32."""

    op: str
    a: Reg
    b: Operand
    target: str
    width: int = 64

    def __init__(self, op: str, a: Reg, b: Operand, target: str, width: int = 64, *,
                 span: Span = NO_SPAN) -> None:
        self.span = span
        self.op = op
        self.a = a
        self.b = b
        self.target = target
        self.width = width


@dataclass
class Call(Insn):
    """Call BPF helper ``helper`` (its number). Reads r1..r<nargs>, writes r0, clobbers r1-r5."""

    helper: int
    nargs: int

    def __init__(self, helper: int, nargs: int, *, span: Span = NO_SPAN) -> None:
        self.span = span
        self.helper = helper
        self.nargs = nargs


@dataclass
class Exit(Insn):
    """return r0."""


@dataclass
class Comment(Insn):
    """No code; kept for ``-d ir`` readability."""

    text: str


# How each instruction class reads and writes registers, as one code per class (a subclass
# has its base's): uses(), defs() and the register allocator's analysis dispatch on it.
(KIND_NONE, KIND_ALU, KIND_LOAD, KIND_STORE, KIND_ATOMIC, KIND_ENDIAN, KIND_CONDJUMP, KIND_CALL,
 KIND_EXIT, KIND_DEF) = range(10)
_KIND_BASES = ((Alu, KIND_ALU), (Load, KIND_LOAD), (Store, KIND_STORE), (AtomicAdd, KIND_ATOMIC),
               (Endian, KIND_ENDIAN), (CondJump, KIND_CONDJUMP), (Call, KIND_CALL),
               (Exit, KIND_EXIT), ((LoadImm64, LoadMapFd), KIND_DEF))
KIND_OF: dict[type, int] = {}       # filled on first sight of a class (kind_of)


def class_kind(cache: dict, bases: tuple, cls: type, default: int) -> int:
    """The kind of the first of ``bases`` (``(class or classes, kind)`` pairs) that ``cls``
    derives from, ``default`` if none; remembered in ``cache`` by class."""
    k = cache.get(cls)
    if k is None:
        k = cache[cls] = next((k for base, k in bases if issubclass(cls, base)), default)
    return k


def kind_of(cls: type) -> int:
    """The operand kind (``KIND_*``) of an instruction class."""
    return class_kind(KIND_OF, _KIND_BASES, cls, KIND_NONE)


def _uses_alu(insn) -> list[Reg]:
    op = insn.op
    out = [] if op == "mov" else [insn.dst]
    src = insn.src
    if op != "neg" and (src.__class__ is VReg or src.__class__ is PReg):
        out.append(src)
    return out


def _uses_store(insn) -> list[Reg]:
    src = insn.src
    return [insn.base, src] if src.__class__ is VReg or src.__class__ is PReg else [insn.base]


def _uses_condjump(insn) -> list[Reg]:
    b = insn.b
    return [insn.a, b] if b.__class__ is VReg or b.__class__ is PReg else [insn.a]


def _no_regs(insn) -> list[Reg]:
    return []


def _def_dst(insn) -> list[Reg]:
    return [insn.dst]


_USES_BY_KIND = (
    _no_regs,                                   # KIND_NONE
    _uses_alu,                                  # KIND_ALU
    lambda insn: [insn.base],                   # KIND_LOAD
    _uses_store,                                # KIND_STORE
    lambda insn: [insn.base, insn.src],         # KIND_ATOMIC
    lambda insn: [insn.dst],                    # KIND_ENDIAN
    _uses_condjump,                             # KIND_CONDJUMP
    lambda insn: list(ARG_REGS[: insn.nargs]),  # KIND_CALL
    lambda insn: [R0],                          # KIND_EXIT
    _no_regs,                                   # KIND_DEF
)
_DEFS_BY_KIND = (_no_regs, _def_dst, _def_dst, _no_regs, _no_regs, _def_dst, _no_regs,
                 lambda insn: list(CALLER_SAVED), _no_regs, _def_dst)


def uses(insn: Insn) -> list[Reg]:
    """Registers read by ``insn``."""
    k = KIND_OF.get(insn.__class__)
    return _USES_BY_KIND[kind_of(insn.__class__) if k is None else k](insn)


def defs(insn: Insn) -> list[Reg]:
    """Registers written by ``insn`` (a call writes r0 and clobbers r1-r5)."""
    k = KIND_OF.get(insn.__class__)
    return _DEFS_BY_KIND[kind_of(insn.__class__) if k is None else k](insn)


def _fmt(o: Operand) -> str:
    return str(o) if not isinstance(o, int) else str(o)


def format_insn(insn: Insn) -> str:
    """One line of ``-d ir`` output."""
    if isinstance(insn, Alu):
        if insn.op == "neg":
            return f"{insn.dst} = -{insn.dst}" + (" (32)" if insn.width == 32 else "")
        sym = {"add": "+=", "sub": "-=", "mul": "*=", "div": "/=", "sdiv": "s/=", "mod": "%=",
               "smod": "s%=", "or": "|=", "and": "&=", "lsh": "<<=", "rsh": ">>=", "xor": "^=",
               "mov": "=", "arsh": "s>>="}[insn.op]
        return f"{insn.dst} {sym} {_fmt(insn.src)}" + (" (32)" if insn.width == 32 else "")
    if isinstance(insn, LoadFuncAddr):
        return f"{insn.dst} = func {insn.func}"
    if isinstance(insn, LoadImm64):
        return f"{insn.dst} = {insn.value:#x} ll"
    if isinstance(insn, LoadMapFd):
        if insn.value_offset is not None:
            return f"{insn.dst} = &map[{insn.map_name}][0] + {insn.value_offset}"
        return f"{insn.dst} = map[{insn.map_name}]"
    if isinstance(insn, Load):
        return f"{insn.dst} = *(u{insn.size * 8} *)({insn.base} {insn.off:+d})"
    if isinstance(insn, Store):
        return f"*(u{insn.size * 8} *)({insn.base} {insn.off:+d}) = {_fmt(insn.src)}"
    if isinstance(insn, AtomicAdd):
        return f"lock *(u{insn.size * 8} *)({insn.base} {insn.off:+d}) += {insn.src}"
    if isinstance(insn, Endian):
        return f"{insn.dst} = {'be' if insn.to_be else 'le'}{insn.bits} {insn.dst}"
    if isinstance(insn, Label):
        return f"{insn.name}:"
    if isinstance(insn, Jump):
        return f"goto {insn.target}"
    if isinstance(insn, CondJump):
        return f"if {insn.a} {insn.op} {_fmt(insn.b)} goto {insn.target}" + (
            " (32)" if insn.width == 32 else "")
    if isinstance(insn, Call):
        return f"call {insn.helper} ({insn.nargs} args)"
    if isinstance(insn, Exit):
        return "exit"
    if isinstance(insn, Comment):
        return f"; {insn.text}"
    return repr(insn)
