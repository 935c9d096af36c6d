"""printf format strings: parsing (for compile-time checks) and fast rendering with C semantics.

    specs = parse_format("%-16s %5d\\n")        # -> [FormatSpec(conv='s', ...), FormatSpec(conv='d', ...)]
    arg_class(specs[1])                         # -> "int"
    render = compile_format("%-16s %5d\\n")     # once, at load time
    render(("bash", 42))                        # -> "bash                42\\n"

Rendering follows C's printf on the value's bits, with one deliberate difference in the default
style ("new", the newest bpftrace): a conversion without a length modifier reads 64 bits, so
``%d``/``%x``/``%u`` of any integer print the whole 64-bit value (``%x`` of -1 is
``ffffffffffffffff``, like C's ``%lx``). ``style="old"`` reads 32 bits there, as bpftrace 0.17's
snprintf did (``%x`` of -1 is ``ffffffff``). ``hh``/``h`` read 8/16 bits, ``l``/``ll``/``j``/``z``/``t``
64 bits, in both styles.

Values: ints (signedness already decided by the caller; the conversion reinterprets the bits),
str (decoded with errors="surrogateescape"; widths count bytes as C does), bytes for ``%r``,
``%rx``, ``%rh``. ``%s`` prints any value as ``print()`` would (numbers, tuples ``(1, a)``, ...).
``%c`` of an int prints the byte ``v & 0xff`` (a 0 byte prints nothing, as in bpftrace 0.17);
``%p`` prints ``0x`` and lowercase hex, ``(nil)`` for 0 (glibc). ``%%`` prints ``%``.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass

TYPE_CHECKING = False      # (collections.abc costs start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from .format import escape_buffer, value_text

__all__ = ["FormatSpec", "parse_format", "arg_class", "compile_format", "check_arg_count"]


@dataclass
class FormatSpec:
    """One conversion of a format string.

    conv:      d i u x X o c s p e E f F g G r rx rh
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
    ``%[-+ #0]*(\\d+|\\*)?(\\.(\\d+|\\*)?)?(hh|h|ll|l|L|j|z|t|q)?(r[xh]?|[A-Za-z%])?`` would
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
        elif c == "%" or (c.isascii() and c.isalpha()):
            conv = c
        if conv is not None:
            i += len(conv)
    return flags, width, dot, prec, length, conv, i


_ARG_CLASS = {
    "d": "int", "i": "int", "u": "int", "x": "int", "X": "int", "o": "int",
    "c": "char", "s": "str", "p": "ptr",
    "e": "float", "E": "float", "f": "float", "F": "float", "g": "float", "G": "float",
    "r": "buf", "rx": "buf", "rh": "buf",
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


# --------------------------------------------------------------------------- rendering helpers

# %c: one byte, as the surrogateescape'd str that writes back to that byte. NUL prints nothing.
_CHARS = tuple([""] + [bytes([b]).decode("utf-8", "surrogateescape") for b in range(1, 256)])


def _bits(spec: FormatSpec, style: str) -> int:
    length = spec.length
    if length == "hh":
        return 8
    if length == "h":
        return 16
    if length == "":
        return 32 if style == "old" else 64
    return 64


def _c_int(value: int, spec: FormatSpec, signed: bool) -> str:
    """C's integer conversion for the cases Python's % does differently (precision, ``#``)."""
    flags = spec.flags
    conv = spec.conv
    negative = signed and value < 0
    magnitude = -value if negative else value
    radix = {"x": "x", "X": "X", "o": "o"}.get(conv, "d")
    digits = format(magnitude, radix)
    if spec.has_precision:
        p = int(spec.precision)
        digits = "" if p == 0 and magnitude == 0 else digits.zfill(p)
    prefix = ""
    if signed:
        prefix = "-" if negative else "+" if "+" in flags else " " if " " in flags else ""
    if "#" in flags:
        if conv in "xX" and magnitude != 0:
            prefix = "0x" if conv == "x" else "0X"
        elif conv == "o" and not digits.startswith("0"):
            digits = "0" + digits
    body = prefix + digits
    width = int(spec.width or 0)
    if len(body) >= width:
        return body
    if "-" in flags:
        return body.ljust(width)
    if "0" in flags and not spec.has_precision:
        return prefix + digits.rjust(width - len(prefix), "0")
    return body.rjust(width)


def _c_str(text: str, spec: FormatSpec) -> str:
    """``%s`` with a width or precision: C counts bytes, not characters."""
    if text.isascii():
        data_len = None
        if spec.has_precision:
            text = text[: int(spec.precision)]
    else:
        data = text.encode("utf-8", "surrogateescape")
        if spec.has_precision:
            data = data[: int(spec.precision)]
        text = data.decode("utf-8", "surrogateescape")
        data_len = len(data)
    width = int(spec.width or 0)
    length = len(text) if data_len is None else data_len
    if length >= width:
        return text
    pad = " " * (width - length)
    return text + pad if "-" in spec.flags else pad + text


def _as_text(v: object) -> str:
    return v if v.__class__ is str else value_text(v)  # type: ignore[return-value]


def _ptr(v: int) -> str:
    v &= (1 << 64) - 1
    return f"0x{v:x}" if v else "(nil)"


def _buf_r(v) -> str:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return escape_buffer(bytes(v))
    return _as_text(v)


def _buf_rx(v) -> str:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "".join(f"\\x{b:02x}" for b in bytes(v))
    return _as_text(v)


def _buf_rh(v) -> str:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return " ".join(f"{b:02x}" for b in bytes(v))
    return _as_text(v)


def _padding_spec(spec: FormatSpec) -> str:
    """Python ``%s`` carrying only the width and left alignment of a conversion."""
    return "%" + ("-" if "-" in spec.flags else "") + spec.width + "s"


# --------------------------------------------------------------------------- compilation

def _compile_spec(spec: FormatSpec, arg: str, style: str, env: dict) -> tuple[str, str]:
    """(Python %-spec, expression producing its argument) for one conversion."""
    conv = spec.conv
    n = len(env)
    if conv in ("d", "i", "u", "x", "X", "o"):
        bits = _bits(spec, style)
        mask = (1 << bits) - 1
        signed = conv in ("d", "i")
        if signed:
            sign = 1 << (bits - 1)
            expr = f"((({arg} & {mask}) ^ {sign}) - {sign})"
        else:
            expr = f"({arg} & {mask})"
        if "#" in spec.flags or spec.has_precision:
            env[f"_spec{n}"] = spec
            return "%s", f"_c_int({expr}, _spec{n}, {signed})"
        flags = spec.flags if signed else spec.flags.replace("+", "").replace(" ", "")
        return "%" + flags + spec.width + ("d" if conv in ("i", "u") else conv), expr
    if conv == "s":
        if spec.width or spec.has_precision:
            env[f"_spec{n}"] = spec
            return "%s", f"_c_str(({arg} if {arg}.__class__ is str else _text({arg})), _spec{n})"
        return "%s", f"({arg} if {arg}.__class__ is str else _text({arg}))"
    if conv == "c":
        return _padding_spec(spec), f"_CHARS[{arg} & 255]"
    if conv == "p":
        return _padding_spec(spec), f"_ptr({arg})"
    if conv in ("r", "rx", "rh"):
        fn = {"r": "_buf_r", "rx": "_buf_rx", "rh": "_buf_rh"}[conv]
        return _padding_spec(spec), f"{fn}({arg})"
    # Floating point: Python's % is C's here.
    dot = "." + spec.precision if spec.has_precision else ""
    return "%" + spec.flags + spec.width + dot + conv, arg


def compile_format(fmt: str, style: str = "new") -> Callable[[Sequence[object]], str]:
    """Compile ``fmt`` once into ``render(args) -> str``; ``args`` must have one value per conversion.

    The result is a generated function doing one Python ``%`` formatting over inline
    conversions, so a two-argument format renders in well under a microsecond.
    """
    tokens = _tokens(fmt)
    env: dict = {}
    pieces: list[str] = []
    exprs: list[str] = []
    for token in tokens:
        if isinstance(token, str):
            pieces.append(token.replace("%", "%%"))
            continue
        py_spec, expr = _compile_spec(token, f"a{len(exprs)}", style, env)
        pieces.append(py_spec)
        exprs.append(expr)
    if not exprs:
        constant = "".join(t for t in tokens if isinstance(t, str))

        def render_constant(args: Sequence[object] = ()) -> str:
            if args:
                raise ValueError(f"format string takes no arguments, {len(args)} given")
            return constant

        return render_constant
    names = ", ".join(f"a{i}" for i in range(len(exprs)))
    source = (
        "def render(args):\n"
        f"    {names}, = args\n"
        f"    return _FMT % ({', '.join(exprs)},)\n"
    )
    namespace = {
        "_FMT": "".join(pieces), "_text": value_text, "_c_int": _c_int, "_c_str": _c_str,
        "_CHARS": _CHARS, "_ptr": _ptr, "_buf_r": _buf_r, "_buf_rx": _buf_rx, "_buf_rh": _buf_rh,
        **env,
    }
    exec(compile(source, f"<printf {fmt!r}>", "exec"), namespace)
    render = namespace["render"]
    render.__doc__ = f"Render {fmt!r}."
    return render
