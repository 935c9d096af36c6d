"""Turning kernel bytes (ring buffer records, map keys and values) into Python values.

Decoders are built once per ``Field`` layout and reused for every record / entry.
"""
from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

from ptrace_lang import spec as S

_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")


def cstr(b: bytes) -> str:
    i = b.find(b"\0")
    if i >= 0:
        b = b[:i]
    return b.decode("utf-8", "backslashreplace")


class ProbeName(str):
    """A decoded ``probe`` value: prints as the probe's name."""


def field_decoder(f: S.Field, probe_names: list[str], base: int = 0) -> Callable[[bytes], object]:
    """A function decoding the value described by ``f`` from a buffer (at ``base + f.offset``)."""
    off = base + f.offset
    if f.kind == "int":
        st = _I64 if f.signed else _U64
        if f.size != 8:         # an element of a tuple: its own width
            st = struct.Struct("<" + {1: "b", 2: "h", 4: "i"}[f.size])
            if not f.signed:
                st = struct.Struct(st.format.upper())
        return lambda buf, st=st, off=off: st.unpack_from(buf, off)[0]
    if f.kind == "bool":
        end = off + f.size
        return lambda buf, off=off, end=end: any(buf[off:end])
    if f.kind == "probe":
        def probe(buf, off=off):
            i = _U64.unpack_from(buf, off)[0]
            return ProbeName(probe_names[i] if i < len(probe_names) else f"probe#{i}")
        return probe
    if f.kind == "func":
        def func(buf, off=off):
            i = _U64.unpack_from(buf, off)[0]
            name = probe_names[i] if i < len(probe_names) else f"probe#{i}"
            # the function of kprobe:vfs_read+5 is vfs_read
            return ProbeName(name.rsplit(":", 1)[-1].split("+", 1)[0])
        return func
    if f.kind == "str":
        end = off + f.size
        if f.aux:               # a string read from memory: a trailer when it filled its buffer
            from ptrace_lang.runtime.values import truncating_str
            return truncating_str(off, f.aux)
        return lambda buf, off=off, end=end: cstr(bytes(buf[off:end]))
    if f.kind == "user":
        from ptrace_lang.runtime.formatters import FORMATTERS
        fmt, aux, end = FORMATTERS[f.fmt], f.aux, off + f.size
        return lambda buf, off=off, end=end: fmt(bytes(buf[off:end]), aux)
    if f.kind == "tuple":
        subs = [field_decoder(x, probe_names, off) for x in f.fields]
        return lambda buf, subs=subs: tuple(d(buf) for d in subs)
    if f.kind in ("record", "buf", "intarray"):
        from ptrace_lang.runtime.values import value_decoder
        return value_decoder(f, probe_names, off, field_decoder)
    raise ValueError(f"cannot decode field kind {f.kind}")


def record_decoder(ev: S.EventSpec, probe_names: list[str]) -> Callable[[bytes], list]:
    """Decode the arguments of one ring buffer record of ``ev``; fast path for all-int records."""
    if ev.args and all(a.kind == "int" for a in ev.args):
        offs = [a.offset for a in ev.args]
        contiguous = offs == list(range(S.RECORD_HEADER, S.RECORD_HEADER + 8 * len(offs), 8))
        if contiguous:
            st = struct.Struct("<" + "".join("q" if a.signed else "Q" for a in ev.args))
            return lambda buf, st=st: st.unpack_from(buf, S.RECORD_HEADER)
    decs = [field_decoder(a, probe_names) for a in ev.args]
    return lambda buf, decs=decs: [d(buf) for d in decs]
