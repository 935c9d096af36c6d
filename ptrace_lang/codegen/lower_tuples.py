"""Lowering of tuples and records in memory, laid out as bpftrace lays them out: each element
at its C alignment (``TupleT.offsets``: an int8 takes one byte, an int32 after it starts at
offset 4, a string at any byte), the whole rounded up to 8 bytes (``TupleT.size``).

Every byte of a tuple is written: an element writes its own bytes, then the padding up to the
next element (its span, ``TupleT.spans``), so equal tuples are equal byte for byte as map keys
and in ``==``. A scalar element is stored as wide as its span allows (an int32 followed by 4
bytes of padding is one 8-byte store: the padding then holds the value's extension, the same
for equal values); other padding is zeroed. Accesses stay aligned to their size, as the
verifier requires on the stack: copies and zeroing at odd offsets go in 4-, 2- and 1-byte
pieces.
"""
from __future__ import annotations

from ptrace_lang.codegen import ir
from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import EnumT, IntT, StrT, TupleT, Type, c_layout, is_scalar

WIDTHS = (8, 4, 2, 1)


def elem_width(t: Type) -> int:
    """The bytes a scalar takes inside a tuple (an int its width, a bool 1, others 8)."""
    n = c_layout(t)[0]
    return n if n in WIDTHS else 8


def store_width(t: Type, off: int, span: int) -> int:
    """How wide a store of a scalar element of type ``t`` at ``off`` can be: its own width, or
    more where the padding after it lets a wider aligned store cover that too."""
    w = elem_width(t)
    return next((s for s in WIDTHS if w <= s <= span and off % s == 0), w)


def pieces(dst_off: int, src_off: int, size: int) -> list[tuple[int, int]]:
    """(offset, width) steps covering ``size`` bytes, each access aligned to its width at both
    ends of a copy (``src_off`` equal to ``dst_off`` for a store)."""
    out, o = [], 0
    while o < size:
        w = next(w for w in WIDTHS if w <= size - o and (dst_off + o) % w == 0
                 and (src_off + o) % w == 0)
        out.append((o, w))
        o += w
    return out


class TuplesLowering:
    """Mixin of ``codegen.lower.Lowering``."""

    # ------------------------------------------------------------------ bytes
    def pad_exact(self, base, off: int, size: int) -> None:
        """Zero exactly ``size`` bytes at ``base + off`` (aligned pieces)."""
        for o, w in pieces(off, off, size):
            self.emit(ir.Store(base, off + o, 0, w))

    def copy_exact(self, dst, dst_off: int, src, src_off: int, size: int) -> None:
        """Copy exactly ``size`` bytes (aligned pieces at both ends)."""
        t = self.vreg()
        for o, w in pieces(dst_off, src_off, size):
            self.emit(ir.Load(t, src, src_off + o, w))
            self.emit(ir.Store(dst, dst_off + o, t, w))

    # ------------------------------------------------------------------ scalar elements
    def elem_store(self, v, base, off: int, t: Type, span: int) -> None:
        """Store the scalar ``v`` as an element of type ``t`` with ``span`` bytes up to the
        next element: one store as wide as the span allows, the rest zeroed."""
        wide = store_width(t, off, span)
        self.emit(ir.Store(base, off, v, wide))
        if span > wide:
            self.pad_exact(base, off + wide, span - wide)

    def elem_load(self, base, off: int, t: Type):
        """A scalar element of type ``t`` as a 64-bit value (signed ones sign-extended)."""
        w = elem_width(t)
        out = self.vreg()
        self.emit(ir.Load(out, base, off, w))
        if w < 8 and isinstance(t, (IntT, EnumT)) and t.signed:
            self.emit(ir.Alu("lsh", out, 64 - 8 * w))
            self.emit(ir.Alu("arsh", out, 64 - 8 * w))
        return out

    # ------------------------------------------------------------------ whole tuples
    def tuple_into(self, e: ast.Expr, base, off: int, typ: Type, end: int | None = None) -> None:
        """Write the tuple value of ``e`` at ``base + off`` laid out as ``typ`` (``end``: the
        bytes it may take, its size by default: its padding up to there is written too)."""
        dst = typ if isinstance(typ, TupleT) else e.type
        end = dst.size() if end is None else end
        if isinstance(e, ast.RecordExpr):
            self.record_into(e, base, off, dst, end)
        elif isinstance(e, ast.TupleExpr):
            for x, dt, (o, span) in zip(e.elems, dst.elems, dst.spans(end)):
                self.elem_into(x, base, off + o, dt, span)
        elif isinstance(e, (ast.Var, ast.TupleIndex)):
            src_base, src_off = self.mem_of(e)
            src = self.held_type(e)
            self.tuple_copy(base, off, dst, src_base, src_off, src if isinstance(src, TupleT)
                            else e.type, end)
        elif end >= dst.size() and off % 8 == 0 and self.map_or_ternary_into(e, base, off, dst):
            return
        else:
            self.via_temporary(e, base, off, dst, end)

    def record_into(self, e: ast.RecordExpr, base, off: int, typ: Type, end: int | None = None) -> None:
        dst = typ if isinstance(typ, TupleT) and typ.names else e.type
        spans = dst.spans(dst.size() if end is None else end)
        for name, value in e.fields:        # in source order: values have side effects
            i = dst.names.index(name)
            self.elem_into(value, base, off + spans[i][0], dst.elems[i], spans[i][1])

    def elem_into(self, x: ast.Expr, base, off: int, dt: Type, span: int) -> None:
        """One element: the value of ``x`` as type ``dt``, then padding up to ``span``."""
        if is_scalar(dt) and is_scalar(x.type):
            self.elem_store(self.scalar(x), base, off, dt, span)
        elif isinstance(dt, TupleT) and isinstance(x.type, TupleT):
            self.tuple_into(x, base, off, dt, span)
        elif off % 8 == 0 and dt.size() <= span:
            # (written in whole words: strings and the rest are zero-padded to their size)
            self.expr_into(x, base, off, dt)
            if span > dt.size():
                self.pad_exact(base, off + dt.size(), span - dt.size())
        else:
            self.via_temporary(x, base, off, dt, span)

    def via_temporary(self, x: ast.Expr, base, off: int, dt: Type, span: int) -> None:
        """A value written in whole words, to an odd offset or into less room than its size:
        into a temporary first, then its C-sized bytes copied, the rest of the span zeroed."""
        tb, to = self.alloc_mem(dt.size(), x.span)
        self.expr_into(x, tb, to, dt)
        n = min(c_layout(dt)[0], span)
        self.copy_exact(base, off, tb, to, n)
        self.pad_exact(base, off + n, span - n)

    def tuple_copy(self, base, off: int, dst: TupleT, src_base, src_off: int, src: TupleT,
                   end: int | None = None) -> None:
        """Copy a tuple/record held in memory into the layout ``dst`` (records by field name;
        elements widened where ``dst`` is a wider type)."""
        soffs = src.offsets()
        for i, (dt, (do, span)) in enumerate(zip(dst.elems, dst.spans(end))):
            j = src.names.index(dst.names[i]) if dst.names and src.names else i
            st, so = src.elems[j], soffs[j]
            if is_scalar(dt) and is_scalar(st):
                self.elem_store(self.elem_load(src_base, src_off + so, st), base, off + do, dt, span)
            elif isinstance(dt, TupleT) and isinstance(st, TupleT):
                self.tuple_copy(base, off + do, dt, src_base, src_off + so, st, span)
            else:
                n = min(c_layout(dt)[0], c_layout(st)[0], span)
                self.copy_exact(base, off + do, src_base, src_off + so, n)
                self.pad_exact(base, off + do + n, span - n)

    def elem_copy_out(self, e: ast.TupleIndex, base, off: int, typ: Type) -> None:
        """A non-scalar element of a tuple in memory as a value of its own (``typ.size()``
        bytes): its C-sized bytes, then zeros (not the bytes of the elements after it)."""
        src_base, src_off = self.mem_of(e.base)
        held = self.held_type(e.base)
        st = held.elems[e.index] if isinstance(held, TupleT) else e.type
        so = src_off + (held.offsets()[e.index] if isinstance(held, TupleT) else 0)
        if isinstance(st, TupleT) and isinstance(typ, TupleT):
            self.tuple_copy(base, off, typ, src_base, so, st)
            return
        size = typ.size() if typ is not None else e.type.size()
        n = min(c_layout(st)[0], size)
        if isinstance(st, StrT) and isinstance(typ, StrT):
            n = min(n, typ.length)
        self.copy_exact(base, off, src_base, so, n)
        self.pad_exact(base, off + n, size - n)

    def stored_into_elem(self, base, off: int, t: Type, span: int, src) -> None:
        """A map's key or value at the address ``src`` (stored as such: a scalar in 8 bytes)
        as the element of type ``t`` of a tuple (``for ($kv : @m)``)."""
        if is_scalar(t):
            v = self.vreg()
            self.emit(ir.Load(v, src, 0, 8))
            self.elem_store(v, base, off, t, span)
            return
        n = min(c_layout(t)[0], span)
        self.copy_exact(base, off, src, 0, n)
        self.pad_exact(base, off + n, span - n)

    def elem_value(self, tup: ast.Expr, index: int):
        """A scalar element of a tuple in memory (``$t.1``, ``$t[1]``)."""
        src_base, src_off = self.mem_of(tup)
        held = self.held_type(tup)
        return self.elem_load(src_base, src_off + held.offsets()[index], held.elems[index])
