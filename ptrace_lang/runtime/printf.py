"""printf format strings: fast rendering with C semantics (parsing: ptrace_lang.fmtspec).

    specs = parse_format("%-16s %5d\\n")        # -> [FormatSpec(conv='s', ...), FormatSpec(conv='d', ...)]
    arg_class(specs[1])                         # -> "int"
    render = compile_format("%-16s %5d\\n")     # once, at load time
    render(("bash", 42))                        # -> "bash                42\\n"

Rendering follows C's printf on the value's bits, with one deliberate difference in the default
style ("new", the newest bpftrace): a conversion without a length modifier reads the argument's
width: 64 bits for a 64-bit integer, so ``%x`` of -1 is ``ffffffffffffffff`` (like C's ``%lx``),
32 bits for a signed integer of 32 bits or fewer (``arg_bits``: C's promotion to int, ``%x`` of an
``int32`` -1 is ``ffffffff``). ``style="old"`` reads 32 bits there, as bpftrace 0.17's
snprintf did (``%x`` of -1 is ``ffffffff``). ``hh``/``h`` read 8/16 bits, ``l``/``ll``/``j``/``z``/``t``
64 bits, in both styles.

Values: ints (signedness already decided by the caller; the conversion reinterprets the bits),
str (decoded with errors="surrogateescape"; widths count bytes as C does), bytes for ``%r``,
``%rx``, ``%rh``. ``%s`` prints any value as ``print()`` would (numbers, tuples ``(1, a)``, ...).
``%c`` of an int prints the byte ``v & 0xff`` (a 0 byte prints nothing, as in bpftrace 0.17);
``%p`` prints ``0x`` and lowercase hex, ``(nil)`` for 0 (glibc). ``%%`` prints ``%``.
"""
from __future__ import annotations

from ptrace_lang.fmtspec import (  # noqa: F401 (re-exported)
    FormatSpec, _tokens, arg_class, check_arg_count, parse_format)

TYPE_CHECKING = False      # (collections.abc costs start-up time)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

from .format import escape_buffer, value_text

__all__ = ["FormatSpec", "parse_format", "arg_class", "compile_format", "check_arg_count"]


# --------------------------------------------------------------------------- rendering helpers

# %c: one byte, as the surrogateescape'd str that writes back to that byte. NUL prints nothing.
_CHARS = tuple([""] + [bytes([b]).decode("utf-8", "surrogateescape") for b in range(1, 256)])


def _bits(spec: FormatSpec, style: str, arg_bits: int = 64) -> int:
    length = spec.length
    if length == "hh":
        return 8
    if length == "h":
        return 16
    if length == "":
        return 32 if style == "old" else arg_bits
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

def _compile_spec(spec: FormatSpec, arg: str, style: str, env: dict,
                  arg_bits: int = 64) -> tuple[str, str]:
    """(Python %-spec, expression producing its argument) for one conversion."""
    conv = spec.conv
    n = len(env)
    if conv in ("d", "i", "u", "x", "X", "o"):
        bits = _bits(spec, style, arg_bits)
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


def compile_format(fmt: str, style: str = "new",
                   arg_bits: Sequence[int] = ()) -> Callable[[Sequence[object]], str]:
    """Compile ``fmt`` once into ``render(args) -> str``; ``args`` must have one value per conversion.
    ``arg_bits``: per argument, 32 when its type has at most 32 bits: a conversion without a
    length modifier then reads 32 bits (``%x`` of an ``int32`` -1 is ``ffffffff``, as C's).

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
        i = len(exprs)
        py_spec, expr = _compile_spec(token, f"a{i}", style, env,
                                      arg_bits[i] if i < len(arg_bits) else 64)
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
