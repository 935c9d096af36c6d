"""Decoders of the value kinds of ``codegen.lower_values``: records, buffers, integer arrays."""
from __future__ import annotations

import struct

_U64 = struct.Struct("<Q")


def value_decoder(f, probe_names, off: int, field_decoder):
    """A function ``buf -> value`` for the field ``f`` at ``off`` (``field_decoder`` decodes
    the members of a record)."""
    if f.kind == "record":
        from ptrace_lang.runtime.format import Record

        subs = [(x.name, field_decoder(x, probe_names, off)) for x in f.fields]
        return lambda buf: Record([(n, d(buf)) for n, d in subs])
    if f.kind == "buf":
        cap = f.size - 8

        def buffer(buf, off=off, cap=cap):
            n = min(_U64.unpack_from(buf, off)[0], cap)
            return bytes(buf[off + 8:off + 8 + n])
        return buffer
    if f.kind == "intarray":
        width, count, boolean = f.aux
        code = {1: "b", 2: "h", 4: "i", 8: "q"}[width]
        st = struct.Struct("<" + str(count) + (code if f.signed else code.upper()))
        if boolean:
            return lambda buf, off=off: IntArray(bool(x) for x in st.unpack_from(buf, off))
        return lambda buf, off=off: IntArray(st.unpack_from(buf, off))
    raise ValueError(f"cannot decode field kind {f.kind}")


def truncating_str(off: int, aux: tuple):
    """A str() value: the text up to its NUL, plus ``trailer`` when it has ``length - 1`` bytes
    (the most a read into its buffer keeps: the string was probably cut)."""
    length, trailer = aux
    end = off + length

    def text(buf):
        raw = bytes(buf[off:end])
        i = raw.find(b"\0")
        if i >= 0:
            raw = raw[:i]
        s = raw.decode("utf-8", "backslashreplace")
        return s + trailer if len(raw) >= length - 1 else s
    return text


class IntArray(list):
    """An integer array value: printed ``[1,2,3]``, usable as (part of) a map key."""

    def __hash__(self):
        return hash(tuple(self))
