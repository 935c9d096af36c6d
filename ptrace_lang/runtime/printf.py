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
    if conv == "gr":                   # GFP flags by name (runtime/gfp.py)
        from ptrace_lang.runtime.gfp import gfp_text

        env["_gfp"] = gfp_text
        return _padding_spec(spec), f"_gfp({arg})"
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


# --------------------------------------------------------------------------- runs of records

_M64 = (1 << 64) - 1
_S64 = 1 << 63
# a conversion reading the low 32 bits of a sign-extended 8-byte field: its struct code
_LOW_HALF = {f"(((a & {(1 << 32) - 1}) ^ {1 << 31}) - {1 << 31})": "i",
             f"(a & {(1 << 32) - 1})": "I"}
_BLOCK = 512           # records unpacked by one struct call (its format compiled once per size)


class _CStrCache(dict):
    """Raw string fields (NUL-padded bytes) -> their text, as ``decode.cstr`` makes it; a flood
    prints the same few strings (comm) over and over. Bounded: emptied when it grows big."""

    nonascii = False

    def __missing__(self, raw: bytes) -> str:
        from ptrace_lang.runtime.decode import cstr

        text = cstr(raw)
        if len(self) >= 4096:
            self.clear()
        if not text.isascii():
            self.nonascii = True
        self[raw] = text
        return text


def compile_run(fmt: str, fields: list, stride: int, style: str = "new",
                arg_bits: Sequence[int] = ()):
    """``render_run(buf, off, n) -> str``: the text of ``n`` consecutive ring buffer records of one
    printf, each ``stride`` bytes long (the ring's 8-byte header included) from ``buf[off]``
    (``len(buf)`` a multiple of 8), in a few calls: the records unpacked by one ``struct``
    call per block of records and the block rendered by one ``%`` over a repeated format.
    Strings the same in every record of a block (the comm of a flood) are checked at C speed
    and written into the block's format instead of being decoded record by record. The text
    is what ``compile_format``'s ``render`` makes of each record's values, byte for byte.
    None when a conversion needs more than Python's ``%`` (a ``#`` or a precision, 32-bit
    ``%d`` of the old style, ``%c``, ``%p``, buffers, strings read from memory, values that
    are not plain integers or strings): those records are rendered one by one. ``arg_bits``:
    as for ``compile_format`` (a 32-bit signed argument's low half read as C's int)."""
    tokens = _tokens(fmt)
    convs = [t for t in tokens if not isinstance(t, str)]
    if len(convs) != len(fields) or stride % 8:
        return None
    pieces: list = []           # literal text, or the index of a conversion
    specs: list[str] = []       # the Python %-spec of each conversion
    layout: list[tuple[int, int, str]] = []     # (offset in the ring record, size, struct code)
    strs: list[int] = []        # the conversions of strings
    widened: list[bool] = []    # (of each: a width, which C counts in bytes)
    for token in tokens:
        if isinstance(token, str):
            pieces.append(token.replace("%", "%%"))
            continue
        f = fields[len(layout)]
        bits = arg_bits[len(layout)] if len(layout) < len(arg_bits) else 64
        py_spec, expr = _compile_spec(token, "a", style, {}, bits)
        if f.kind == "int" and f.size == 8 and expr in _LOW_HALF:
            code, size = _LOW_HALF[expr], 4       # (little-endian: the low half comes first)
        elif f.kind == "int" and f.size == 8:
            size = 8
            if expr == f"(((a & {_M64}) ^ {_S64}) - {_S64})":
                code = "q"
            elif expr == f"(a & {_M64})":
                code = "Q"
            elif expr == "a" or expr == "(a if a.__class__ is str else _text(a))":
                code = "q" if f.signed else "Q"      # floats, %s: the value as decoded
            else:
                return None
        elif (f.kind == "str" and not f.aux and token.conv == "s" and not token.has_precision
              and f.offset % 8 == 0 and f.size % 8 == 0):
            code, size = f"{f.size}s", f.size
            if token.width:
                py_spec = _padding_spec(token)       # (right for ASCII: widths count bytes)
            strs.append(len(layout))
            widened.append(bool(token.width))
        else:
            return None
        pieces.append(len(layout))
        specs.append(py_spec)
        layout.append((8 + f.offset, size, code))
    at = 0
    for off, size, _ in layout:
        if off < at:
            return None                              # not in order: one by one
        at = off + size
    if at > stride:
        return None
    m = len(layout)
    if not m:
        one = "".join(pieces)
        return lambda buf, off, n: one * n

    def record_format(skip: frozenset) -> str:
        """The struct format of one record, the conversions in ``skip`` not unpacked."""
        out, at = "", 0
        for j, (off, size, code) in enumerate(layout):
            out += "x" * (off - at) + (f"{size}x" if j in skip else code)
            at = off + size
        return out + "x" * (stride - at)

    import struct

    render = compile_format(fmt, style, arg_bits)
    caches = [_CStrCache() for _ in strs]
    maps = [(j, c.__getitem__) for j, c in zip(strs, caches)]
    ascii_needed = [c for c, w in zip(caches, widened) if w]
    full = record_format(frozenset())
    generic = "".join(p if isinstance(p, str) else specs[p] for p in pieces)
    blocks: dict = {}
    # the strings of a block the same in every record: their words (8 bytes) in the record
    words_of = [((layout[j][0] >> 3), layout[j][1] >> 3) for j in strs]
    spec_of = [convs[j] for j in strs]
    inline_skip = frozenset(strs)
    inline_rec = record_format(inline_skip)
    inlined: dict = {}
    step = stride >> 3
    checks = [0]       # blocks to go before the strings are checked again (they varied)

    def block(k: int):
        got = blocks[k] = (struct.Struct("<" + full * k).unpack_from, generic * k)
        return got

    def inline_block(k: int, raws: tuple):
        """The format of ``k`` records whose strings are ``raws``, written in."""
        texts = {}
        for j, raw, c, sp, w in zip(strs, raws, caches, spec_of, widened):
            text = c[raw]
            texts[j] = (_c_str(text, sp) if w else text).replace("%", "%%")
        one = "".join(p if isinstance(p, str) else texts.get(p, specs[p]) for p in pieces)
        if len(inlined) >= 64:
            inlined.clear()
        got = inlined[k, raws] = (struct.Struct("<" + inline_rec * k).unpack_from, one * k)
        return got

    def same_strings(words, i: int, k: int):
        """The raw strings of the block of ``k`` records at word ``i`` when they are the same
        in every record (else None)."""
        raws = []
        for w0, nw in words_of:
            first = i + w0
            for w in range(first, first + nw):
                if words[w:w + (k - 1) * step + 1:step].tobytes() != words[w:w + 1].tobytes() * k:
                    return None
            raws.append(words[first:first + nw].tobytes())
        return tuple(raws)

    def render_run(buf, off: int, n: int) -> str:
        out = []
        words = memoryview(buf).cast("Q") if strs else None
        while n:
            k = _BLOCK if n >= _BLOCK else 1 << (n.bit_length() - 1)
            if strs:
                raws = None
                if k > 1 and checks[0] <= 0:
                    raws = same_strings(words, off >> 3, k)
                    if raws is None:
                        checks[0] = 16
                else:
                    checks[0] -= 1
                if raws is not None:
                    unpack, many = inlined.get((k, raws)) or inline_block(k, raws)
                    out.append(many % unpack(buf, off))
                    off += k * stride
                    n -= k
                    continue
            unpack, many = blocks.get(k) or block(k)
            vals = unpack(buf, off)
            off += k * stride
            n -= k
            if maps:
                vals = list(vals)
                for j, get in maps:
                    vals[j::m] = map(get, vals[j::m])
                if ascii_needed and any(c.nonascii for c in ascii_needed):
                    # a width counts bytes in C: what is not ASCII goes the slow way
                    out.append("".join([render(vals[i:i + m]) for i in range(0, len(vals), m)]))
                    continue
                vals = tuple(vals)
            out.append(many % vals)
        return out[0] if len(out) == 1 else "".join(out)

    return render_run
