"""``TuplesLowering``, a mixin of ``llvmbackend.lower.Lowering``: tuples laid out as the main
backend lays them out (``codegen.lower_tuples``: C-aligned elements, each followed by its
padding, a scalar stored as wide as its span allows). Strings and other values written in
whole words are built in place where they start at a multiple of 8, otherwise in an aligned
temporary copied over in aligned pieces."""
from __future__ import annotations

from ptrace_lang.codegen.lower_tuples import elem_width, pieces, store_width
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.sema.types import EnumT, IntT, TupleT, Type, c_layout, is_scalar


class TuplesLowering:
    def pad_exact(self, base, off: int, size: int) -> None:
        for o, w in pieces(off, off, size):
            self.store(base, off + o, 0, w)

    def copy_exact(self, dst, doff: int, src, soff: int, size: int) -> None:
        """``size`` bytes copied in accesses aligned at both ends (no byte past them written)."""
        for o, w in pieces(doff, soff, size):
            self.store(dst, doff + o, self.load(src, soff + o, w), w)

    def elem_store(self, v, base, off: int, t: Type, span: int) -> None:
        wide = store_width(t, off, span)
        self.store(base, off, v, wide)
        self.pad_exact(base, off + wide, span - wide)

    def elem_load(self, base, off: int, t: Type):
        signed = isinstance(t, (IntT, EnumT)) and t.signed
        return self.load(base, off, elem_width(t), signed)

    def elems_into(self, elems: list, base, off: int, dst: TupleT, end: int,
                   in_record: bool = False) -> None:
        """Write the expressions ``elems`` as the elements of ``dst`` at ``base + off``."""
        for x, dt, (o, span) in zip(elems, dst.elems, dst.spans(end)):
            if is_scalar(dt):
                self.elem_store(self.scalar(x), base, off + o, dt, span)
            elif isinstance(dt, TupleT) and isinstance(x, ast.TupleExpr) and not x.type.names:
                self.elems_into(x.elems, base, off + o, dt, span, in_record)
            else:
                n = c_layout(dt)[0]          # its bytes in the C layout (a string's length)
                if n > span:
                    raise unsupported(f"a tuple element of type '{dt}' at offset {o} of '{dst}'",
                                      x.span)
                if (off + o) % 8 == 0 and dt.size() <= span:
                    self.into(x, base, off + o, dt, in_record)
                    n = dt.size()
                else:
                    # written in whole words: built in an aligned temporary, copied byte-exact
                    tmp = self.alloca(dt.size())
                    self.into(x, tmp, 0, dt, in_record)
                    self.copy_exact(base, off + o, tmp, 0, n)
                self.pad_exact(base, off + o + n, span - n)
