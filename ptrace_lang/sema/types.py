"""Types of values in scripts. Frozen dataclasses; ``str()`` gives bpftrace's spelling."""
from __future__ import annotations

from ptrace_lang.records import dataclass


class Type:
    def size(self) -> int:
        """Bytes this value occupies in a key, record or map value (ints always take 8)."""
        raise NotImplementedError

    @property
    def is_int(self) -> bool:
        return False


class _Word(Type):
    """A value held in one 8-byte word that takes part in integer arithmetic."""

    def size(self) -> int:
        return 8

    @property
    def is_int(self) -> bool:
        return True


@dataclass(frozen=True)
class IntT(_Word):
    bits: int = 64
    signed: bool = True

    def __str__(self) -> str:
        return f"{'' if self.signed else 'u'}int{self.bits}"


@dataclass(frozen=True)
class BoolT(Type):
    def size(self) -> int:
        return 8

    @property
    def is_int(self) -> bool:  # bools take part in arithmetic and conditions like ints
        return True

    def __str__(self) -> str:
        return "bool"


@dataclass(frozen=True)
class StrT(Type):
    """A NUL-terminated string in a buffer of ``length`` bytes (bpftrace's string[N])."""

    length: int
    trunc: bool = False     # read from memory: may have been cut at length - 1 (printed with a trailer)

    def size(self) -> int:
        return (self.length + 7) // 8 * 8

    def __str__(self) -> str:
        return f"string[{self.length}]"


@dataclass(frozen=True)
class TupleT(Type):
    """A tuple ``(1, "a")``, or with ``names`` a record ``(x = 1, y = "a")`` (one name per element)."""

    elems: tuple
    names: tuple = ()

    def size(self) -> int:
        return sum(e.size() for e in self.elems)

    def offsets(self) -> list[int]:
        out, off = [], 0
        for e in self.elems:
            out.append(off)
            off += e.size()
        return out

    def index_of(self, name: str) -> int | None:
        return self.names.index(name) if name in self.names else None

    def __str__(self) -> str:
        if self.names:
            return "record { " + ", ".join(f"{e} {n}" for n, e in zip(self.names, self.elems)) + " }"
        return "(" + ",".join(str(e) for e in self.elems) + ")"


@dataclass(frozen=True)
class ProbeT(Type):
    """The ``probe`` builtin: a probe id, printed as the probe's name."""

    def size(self) -> int:
        return 8

    def __str__(self) -> str:
        return "probe"


@dataclass(frozen=True)
class FuncT(Type):
    """The ``func`` builtin: a probe id, printed as the traced function's name."""

    def size(self) -> int:
        return 8

    def __str__(self) -> str:
        return "func"


@dataclass(frozen=True)
class VoidT(Type):
    def size(self) -> int:
        return 0

    def __str__(self) -> str:
        return "none"


@dataclass(frozen=True)
class ArgsT(Type):
    """The tracepoint ``args`` struct: ``fields`` maps name -> TpField (offset, size, signed...)."""

    name: str
    fields: tuple  # tuple of (name, TpField)

    def field(self, name: str):
        for fname, f in self.fields:
            if fname == name:
                return f
        return None

    def size(self) -> int:
        return 8

    def __str__(self) -> str:
        return f"struct {self.name}_args"


@dataclass(frozen=True)
class AggT(Type):
    """A map value produced by an aggregation function."""

    kind: str                 # count sum min max avg stats hist lhist tseries
    signed: bool = True
    hist_k: int = 0
    lhist: tuple | None = None
    tseries: tuple | None = None   # (interval_ns, num_intervals, aggregator or "" for the last value)

    def size(self) -> int:
        return 8

    def __str__(self) -> str:
        return {"count": "count_t", "sum": "sum_t", "min": "min_t", "max": "max_t",
                "avg": "avg_t", "stats": "stats_t", "hist": "hist_t", "lhist": "lhist_t",
                "tseries": "tseries_t"}[self.kind]


@dataclass(frozen=True)
class UsdtArgsT(Type):
    """The arguments of a USDT probe site: ``args`` is a tuple of ``usdtargs.UsdtArg`` (size,
    signedness and where the value is: a register, memory at a register plus offset, or a
    constant). The probe's ``argN`` builtins read them."""

    args: tuple

    def size(self) -> int:
        return 0


@dataclass(frozen=True)
class UserT(Type):
    """A value the kernel stores as ``nbytes`` raw bytes (an address, a stack id, an errno, an
    address family and address...) and user space turns into text when it prints it: ``kind``
    names its formatter in ``runtime.uvalues.FORMATTERS``, ``aux`` is plain data for it (a pid,
    a format string...), ``name`` is bpftrace's spelling of the type in messages."""

    kind: str
    nbytes: int = 8
    aux: tuple = ()
    name: str = ""

    def size(self) -> int:
        return (self.nbytes + 7) // 8 * 8

    def __str__(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class PtrT(_Word):
    """A pointer: a 64-bit address of a ``target`` value. ``user`` is its address space: True
    for user memory (uprobe/usdt arguments, ``uptr()``), False for kernel memory; reads through
    it use bpf_probe_read_user or bpf_probe_read_kernel accordingly. Pointers take part in
    arithmetic and comparisons like unsigned integers and print in hex."""

    target: Type
    user: bool = False

    def __str__(self) -> str:
        return f"{self.target} *" if not isinstance(self.target, PtrT) else f"{self.target}*"


@dataclass(frozen=True)
class StructT(Type):
    """A struct or union (``kind``) of ``nbytes`` bytes. Its fields are resolved lazily, one by
    one, by ``sema.btftypes.field(t, name)``: ``src`` says where they come from, ("btf", type
    id) for the kernel's BTF or ("c", name) for a definition written in the script."""

    kind: str
    name: str
    nbytes: int
    src: tuple = ()

    def size(self) -> int:
        return (self.nbytes + 7) // 8 * 8

    def __str__(self) -> str:
        return f"{self.kind} {self.name}" if self.name else f"{self.kind} {{...}}"


@dataclass(frozen=True)
class ArrayT(Type):
    """``n`` elements of ``elem`` (arrays of char are StrT instead)."""

    elem: Type
    n: int

    def size(self) -> int:
        return (c_sizeof(self) + 7) // 8 * 8

    def __str__(self) -> str:
        return f"{self.elem}[{self.n}]"


@dataclass(frozen=True)
class EnumT(Type):
    """An enum: an integer of ``bits`` whose values have names (``values``: (name, value)
    pairs). Printed with ``%s`` or print(), a value shows as its enumerator's name."""

    name: str
    bits: int = 32
    signed: bool = False
    values: tuple = ()

    def size(self) -> int:
        return 8

    @property
    def is_int(self) -> bool:
        return True

    def __str__(self) -> str:
        return f"enum {self.name}" if self.name else "enum {...}"


def c_sizeof(t: Type) -> int:
    """The size of ``t`` as C lays it out in memory (not the 8-byte slot a value takes)."""
    if isinstance(t, (IntT, EnumT)):
        return t.bits // 8
    if isinstance(t, BoolT):
        return 1
    if isinstance(t, PtrT):
        return 8
    if isinstance(t, StructT):
        return t.nbytes
    if isinstance(t, ArrayT):
        return c_sizeof(t.elem) * t.n
    if isinstance(t, StrT):
        return t.length
    if isinstance(t, TupleT):
        return t.size()
    return t.size()


INT64 = IntT(64, True)
UINT64 = IntT(64, False)
UINT32 = IntT(32, False)
INT32 = IntT(32, True)
BOOL = BoolT()
VOID = VoidT()
PROBE = ProbeT()
FUNC = FuncT()
COMM = StrT(16)

INT_TYPE_NAMES = {
    "int8": IntT(8, True), "int16": IntT(16, True), "int32": IntT(32, True), "int64": IntT(64, True),
    "uint8": IntT(8, False), "uint16": IntT(16, False), "uint32": IntT(32, False),
    "uint64": IntT(64, False), "bool": BOOL,
    "char": IntT(8, True), "short": IntT(16, True), "int": IntT(32, True), "long": IntT(64, True),
    "unsigned char": IntT(8, False), "unsigned short": IntT(16, False),
    "unsigned int": IntT(32, False), "unsigned long": IntT(64, False),
    "u8": IntT(8, False), "u16": IntT(16, False), "u32": IntT(32, False), "u64": IntT(64, False),
    "s8": IntT(8, True), "s16": IntT(16, True), "s32": IntT(32, True), "s64": IntT(64, True),
    "size_t": IntT(64, False), "pid_t": IntT(32, True), "uid_t": IntT(32, False),
}


@dataclass(frozen=True)
class BufT(Type):
    """``buf(ptr, n)``: up to ``length`` raw bytes, kept as a u64 count then the bytes (bpftrace's
    buffer[N]); printed with non-printable bytes as ``\\xNN``."""

    length: int

    def size(self) -> int:
        return 8 + (self.length + 7) // 8 * 8

    def __str__(self) -> str:
        return f"buffer[{self.length}]"


@dataclass(frozen=True)
class IntArrayT(Type):
    """An array of integers (``(uint8[4])$x``): ``count`` elements of ``elem`` packed as in C."""

    elem: IntT
    count: int
    boolean: bool = False    # bool[N]: one byte per element, printed true/false

    def size(self) -> int:
        return (self.elem.bits // 8 * self.count + 7) // 8 * 8

    def __str__(self) -> str:
        return f"{'bool' if self.boolean else self.elem}[{self.count}]"


def compatible(a: Type, b: Type) -> bool:
    """Can a value of type ``b`` be stored where ``a`` is stored (map values, variables)?"""
    if a.is_int and b.is_int:
        return True
    if isinstance(a, StrT) and isinstance(b, StrT):
        return True
    if isinstance(a, BufT) and isinstance(b, BufT):
        return True
    if isinstance(a, TupleT) and isinstance(b, TupleT):
        if a.names != b.names and sorted(a.names) != sorted(b.names):
            return False
        if a.names and a.names != b.names:      # a record written with its fields in another order
            b = TupleT(tuple(b.elems[b.names.index(n)] for n in a.names), a.names)
        return len(a.elems) == len(b.elems) and all(compatible(x, y) for x, y in zip(a.elems, b.elems))
    return a == b


def widen(a: Type, b: Type) -> Type:
    """The type that holds values of both ``a`` and ``b`` (for compatible types)."""
    if isinstance(a, StrT) and isinstance(b, StrT):
        return StrT(max(a.length, b.length), a.trunc or b.trunc)
    if isinstance(a, BufT) and isinstance(b, BufT):
        return a if a.length >= b.length else b
    if isinstance(a, TupleT) and isinstance(b, TupleT):
        if a.names and a.names != b.names:
            b = TupleT(tuple(b.elems[b.names.index(n)] for n in a.names), a.names)
        return TupleT(tuple(widen(x, y) for x, y in zip(a.elems, b.elems)), a.names)
    if isinstance(a, IntT) and isinstance(b, IntT):
        return IntT(max(a.bits, b.bits), a.signed or b.signed)
    return a


def is_scalar(t: Type) -> bool:
    """Held in a register (an 8-byte value), not in memory."""
    return t.is_int or t in (PROBE, FUNC) or (isinstance(t, UserT) and t.nbytes <= 8)
