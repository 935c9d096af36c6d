"""printf format strings parsed into conversion specs: what the compiler checks a format's
arguments against and the runtime renders from (runtime/printf.py). Pure: no I/O.

    specs = parse_format("%-16s %5d\\n")        # -> [FormatSpec(conv='s', ...), FormatSpec(conv='d', ...)]
    arg_class(specs[1])                         # -> "int"
"""
from __future__ import annotations

from ptrace_lang.records import dataclass

TYPE_CHECKING = False      # (collections.abc costs start-up time)
if TYPE_CHECKING:
    from collections.abc import Sequence


@dataclass
class FormatSpec:
    """One conversion of a format string.

    conv:      d i u x X o c s p e E f F g G r rx rh gr
    flags:     any of ``-+ #0`` as written
    width:     digits as written, "" if none
    precision: digits after ".", "" if there is no "."; a lone "." is "0" (C's rule)
    length:    hh h l ll j z t L q, or ""
    start/end: the conversion's slice of the format string (end exclusive)
    """

    conv: str
    flags: str
    width: str
    precision: str
    length: str
    start: int
    end: int

    @property
    def has_precision(self) -> bool:
        return self.precision != ""

    @property
    def text(self) -> str:
        dot = "." + self.precision if self.precision else ""
        return f"%{self.flags}{self.width}{dot}{self.length}{self.conv}"


def _scan_spec(fmt: str, at: int) -> tuple[str, str, bool, str, str, str | None, int]:
    """Scan the conversion at ``fmt[at] == "%"``, as the pattern
    ``%[-+ #0]*(\\d+|\\*)?(\\.(\\d+|\\*)?)?(hh|h|ll|l|L|j|z|t|q)?(r[xh]?|gr|[A-Za-z%])?`` would
    (written out by hand: a run that prints needs no ``re``, whose import costs ~8 ms).
    Returns (flags, width, dot, precision, length, conversion or None, end)."""
    n = len(fmt)
    i = at + 1

    def run(i: int, chars: str) -> int:
        while i < n and fmt[i] in chars:
            i += 1
        return i

    j = run(i, "-+ #0")
    flags, i = fmt[i:j], j

    def number(i: int) -> tuple[str, int]:
        if i < n and fmt[i] == "*":
            return "*", i + 1
        j = run(i, "0123456789")
        return fmt[i:j], j

    width, i = number(i)
    dot, prec = False, ""
    if i < n and fmt[i] == ".":
        dot = True
        prec, i = number(i + 1)
    length = ""
    for cand in ("hh", "h", "ll", "l", "L", "j", "z", "t", "q"):
        if fmt.startswith(cand, i):
            length, i = cand, i + len(cand)
            break
    conv = None
    if i < n:
        c = fmt[i]
        if c == "r":
            conv = fmt[i:i + 2] if i + 1 < n and fmt[i + 1] in "xh" else "r"
        elif c == "g" and i + 1 < n and fmt[i + 1] == "r":
            conv = "gr"             # GFP flags as their names (0.26)
        elif c == "%" or (c.isascii() and c.isalpha()):
            conv = c
        if conv is not None:
            i += len(conv)
    return flags, width, dot, prec, length, conv, i


_ARG_CLASS = {
    "d": "int", "i": "int", "u": "int", "x": "int", "X": "int", "o": "int",
    "c": "char", "s": "str", "p": "ptr",
    "e": "float", "E": "float", "f": "float", "F": "float", "g": "float", "G": "float",
    "r": "buf", "rx": "buf", "rh": "buf", "gr": "int",
}


def _tokens(fmt: str) -> list[str | FormatSpec]:
    """The format string as literal text pieces and conversions (``%%`` becomes text ``%``)."""
    out: list[str | FormatSpec] = []
    literal: list[str] = []
    pos = 0
    while True:
        at = fmt.find("%", pos)
        if at < 0:
            literal.append(fmt[pos:])
            break
        literal.append(fmt[pos:at])
        flags, width, dot, prec, length, conv, end = _scan_spec(fmt, at)
        text = fmt[at:end]
        if conv is None:
            if end >= len(fmt):
                raise ValueError(f"incomplete format specifier at end of format string: {text}")
            bad = "".join(ch if ch.isprintable() else repr(ch)[1:-1]      # "%z\n" shown as written
                          for ch in fmt[at:end + 1])
            raise ValueError(f"unsupported format specifier: {bad}")
        if conv == "%":
            literal.append("%")
            pos = end
            continue
        if conv not in _ARG_CLASS:
            raise ValueError(f"unsupported format specifier: {conv}")
        if width == "*" or prec == "*":
            raise ValueError(f"unsupported format specifier: {text} (a '*' width or precision is not supported)")
        precision = ""
        if dot:
            precision = prec or "0"
        if literal:
            out.append("".join(literal))
            literal = []
        out.append(FormatSpec(conv, flags, width, precision, length, at, end))
        pos = end
    tail = "".join(literal)
    if tail:
        out.append(tail)
    return out


def parse_format(fmt: str) -> list[FormatSpec]:
    """The conversions that take an argument, in order (``%%`` takes none and is not listed).

    Raises ValueError("unsupported format specifier: y") for an unknown conversion and for a
    ``%`` with nothing after it.
    """
    return [t for t in _tokens(fmt) if isinstance(t, FormatSpec)]


def arg_class(spec: FormatSpec) -> str:
    """What the argument must be: "int", "str", "char", "ptr", "buf" or "float".

    bpftrace accepts integers, booleans and pointers for int/char/ptr, a buffer (``buf()``) for
    buf, and -- in its newest version -- any value for ``%s`` (which is rendered like print()).
    bpftrace has no floating point values: its newest version rejects ``%f %e %g``.
    """
    return _ARG_CLASS[spec.conv]


def check_arg_count(specs: Sequence[FormatSpec], nargs: int) -> str | None:
    """bpftrace's message for a wrong number of arguments, or None."""
    if nargs < len(specs):
        return f"not enough arguments for format string ({nargs} supplied, {len(specs)} expected)"
    if nargs > len(specs):
        return f"too many arguments for format string ({nargs} supplied, {len(specs)} expected)"
    return None
