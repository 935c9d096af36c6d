"""Formatters of C-typed values (``uvalues`` kinds "ptr", "enum", "array", "struct").

Pointers and enums stay integers (so ``%d``, ``%x`` and arithmetic in user space see numbers)
but print as bpftrace prints them: a pointer in hex, an enum as its enumerator's name (its
number when no enumerator has it); ``value_text`` asks an int subclass for ``text()``.
"""
from __future__ import annotations

import struct

from ptrace_lang.runtime.uvalues import formatter
from ptrace_lang.runtime.values import IntArray

_INT = {(1, False): "<B", (2, False): "<H", (4, False): "<I", (8, False): "<Q",
        (1, True): "<b", (2, True): "<h", (4, True): "<i", (8, True): "<q"}


class Pointer(int):
    """An address: an int that prints as 0x..."""

    __slots__ = ()

    def text(self) -> str:
        return f"0x{int(self) & 0xFFFFFFFFFFFFFFFF:x}"

    __str__ = text


class EnumValue(int):
    label = ""

    def text(self) -> str:
        return self.label

    __str__ = text


@formatter("ptr")
def fmt_ptr(raw: bytes, aux: tuple) -> Pointer:
    return Pointer(struct.unpack_from("<Q", raw)[0])


@formatter("enum")
def fmt_enum(raw: bytes, aux: tuple) -> EnumValue:
    name, values = aux
    v = int.from_bytes(raw[:8], "little", signed=True)    # (1, 2 or 4 bytes in a tuple)
    label = None
    for n, val in values:
        if val == v or val == v & 0xFFFFFFFF:
            label = n
            break
    out = EnumValue(v)
    out.label = label if label is not None else str(v)
    return out


def _ints(raw: bytes, off: int, esz: int, signed: bool, n: int) -> list:
    fmt = _INT.get((esz, signed), "<Q")
    return IntArray(struct.unpack_from(fmt, raw, off + i * esz)[0] for i in range(n)
                    if off + (i + 1) * esz <= len(raw))     # hashable: arrays are map keys


def _array(raw: bytes, off: int, aux: tuple) -> list:
    """A C array at ``off``: aux (element size, signed, count, pointers, inner); an array of
    arrays has the inner array's aux as ``inner`` and becomes a list of lists."""
    esz, signed, n, is_ptr = aux[:4]
    inner = aux[4] if len(aux) > 4 else ()
    if inner:
        return IntArray(_array(raw, off + i * esz, inner) for i in range(n))
    vals = _ints(raw, off, esz, signed, n)
    return IntArray(Pointer(v) for v in vals) if is_ptr else vals


@formatter("array")
def fmt_array(raw: bytes, aux: tuple) -> list:
    return _array(raw, 0, aux)


def _struct(raw: bytes, layout: tuple, base: int):
    from ptrace_lang.runtime.format import Record

    fields = []
    for name, kind, off, size, signed, sub in layout:
        o = base + off
        if kind == "int":
            v = struct.unpack_from(_INT.get((size, signed), "<Q"), raw, o)[0]
        elif kind == "bits":
            v = struct.unpack_from(_INT.get((size, False), "<Q"), raw, o)[0]
            shift, bits = sub
            v = (v >> shift) & ((1 << bits) - 1)
        elif kind == "str":
            b = raw[o:o + size]
            i = b.find(b"\0")
            v = (b[:i] if i >= 0 else b).decode("utf-8", "backslashreplace")
        elif kind == "struct":
            v = _struct(raw, sub, o)
        else:
            v = _array(raw, o, sub)
        fields.append((name, v))
    return Record(fields)


@formatter("struct")
def fmt_struct(raw: bytes, aux: tuple):
    return _struct(raw, aux, 0)
