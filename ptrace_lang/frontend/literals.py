"""Literal text -> values: integer and duration literals, string escapes, attach points' quoted parts."""
from __future__ import annotations

import re


_DURATIONS = {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9,
              "d": 86400 * 10**9}
_INT_SUFFIX = re.compile(r"(?:[uU](?:l|L|ll|LL)?|(?:l|L|ll|LL)[uU]?)?")
_HEX = re.compile(r"0[xX]([0-9a-fA-F](?:_?[0-9a-fA-F])*)([A-Za-z]*)")
_DEC = re.compile(r"([0-9](?:_?[0-9])*)(?:[eE]([0-9]+))?([A-Za-z]*)")
_BIN = re.compile(r"0[bB]([01](?:_?[01])*)([A-Za-z]*)")
_U64_MAX = 2**64 - 1


def decode_int(text: str) -> int:
    """Value of an integer or duration literal (durations in nanoseconds). Raises ValueError."""
    m = _HEX.fullmatch(text)
    if m and len(m.group(1)) > 40:
        raise OverflowError(text)
    if m:
        if not _INT_SUFFIX.fullmatch(m.group(2)):
            raise ValueError(text)
        value = int(m.group(1).replace("_", ""), 16)
    elif _BIN.fullmatch(text):
        m = _BIN.fullmatch(text)
        if not _INT_SUFFIX.fullmatch(m.group(2)):
            raise ValueError(text)
        if len(m.group(1)) > 130:
            raise OverflowError(text)
        value = int(m.group(1).replace("_", ""), 2)
    else:
        m = _DEC.fullmatch(text)
        if not m:
            raise ValueError(text)
        digits, exp, suffix = m.group(1).replace("_", ""), m.group(2), m.group(3)
        if len(digits.lstrip("0")) > 30:
            raise OverflowError(text)
        scale = 1
        if suffix in _DURATIONS:
            scale = _DURATIONS[suffix]
        elif not _INT_SUFFIX.fullmatch(suffix):
            raise ValueError(text)
        if exp is None and not suffix in _DURATIONS and len(digits) > 1 and digits[0] == "0":
            if any(c in "89" for c in digits):
                raise ValueError(text)
            value = int(digits, 8)
        else:
            value = int(digits, 10)
        if exp is not None:
            if len(exp) > 3:
                raise OverflowError(text)
            value *= 10 ** int(exp)
        value *= scale
    if value > _U64_MAX:
        raise OverflowError(text)
    return value


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}


def _byte_char(b: int) -> str:
    # Bytes >= 0x80 written as escapes become lone surrogates, so value.encode("utf-8", "surrogateescape")
    # gives back exactly the bytes the script asked for.
    return chr(b) if b < 0x80 else chr(0xDC00 + b)


def decode_string(body: str) -> str:
    """Decode the escapes of a string literal's body (without quotes). Raises ValueError(escape, offset)."""
    if "\\" not in body:
        return body
    out = []
    i = 0
    n = len(body)
    while i < n:
        c = body[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < n else ""
        if nxt in _SIMPLE_ESCAPES and nxt:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt and nxt in "01234567":
            j = i + 1
            while j < n and j < i + 4 and body[j] in "01234567":
                j += 1
            value = int(body[i + 1:j], 8)
            if value > 0xFF:
                raise ValueError(body[i:j], j)
            out.append(_byte_char(value))
            i = j
        elif nxt == "x":
            j = i + 2
            while j < n and j < i + 4 and body[j] in "0123456789abcdefABCDEF":
                j += 1
            if j == i + 2:
                raise ValueError(body[i:i + 2], i + 2)
            out.append(_byte_char(int(body[i + 2:j], 16)))
            i = j
        else:
            raise ValueError(body[i:i + 2], i + 2)
    return "".join(out)


def split_attach_point(raw: str) -> tuple[str, list[str]]:
    """``uprobe:/bin/x:cpp:"ns::f(int)"`` -> ("uprobe", ["/bin/x", "cpp", "ns::f(int)"])."""
    parts: list[str] = []
    cur: list[str] = []
    quoted = False
    i = 0
    while i < len(raw):
        c = raw[i]
        if quoted:
            if c == "\\" and i + 1 < len(raw):
                cur.append(raw[i + 1])
                i += 2
                continue
            if c == '"':
                quoted = False
            else:
                cur.append(c)
        elif c == '"':
            quoted = True
        elif c == ":":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    parts.append("".join(cur))
    return parts[0], parts[1:]


def substitute_attach_point(raw: str, positional: list[str], span) -> str:
    """``$N`` in an attach point's text replaced by the N-th positional parameter, as bpftrace
    does before it parses the attach point (``BEG$1`` with ``IN`` is ``BEGIN``)."""
    out, i = [], 0
    while i < len(raw):
        j = i + 1
        if raw[i] == "$" and j < len(raw) and raw[j].isdigit():
            while j < len(raw) and raw[j].isdigit():
                j += 1
            n = int(raw[i + 1:j])
            if n < 1 or n > len(positional):
                from ptrace_lang.errors import CompileError

                raise CompileError(f"Positional parameter ${n} is not set", span)
            out.append(positional[n - 1])
            i = j
        else:
            out.append(raw[i])
            i += 1
    return "".join(out)
