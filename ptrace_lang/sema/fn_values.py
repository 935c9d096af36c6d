"""Semantic analysis of values: records, ``buf()``, integer and integer-array casts, the size
limit of map keys, and comparisons of strings, tuples and buffers.

A mixin of ``analyze._Analyzer`` (which calls these methods from small hooks).
"""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.records import dataclass
from ptrace_lang.sema.arith import is_signed, signed_pair
from ptrace_lang.sema.types import (
    BOOL, INT64, INT_TYPE_NAMES, VOID, AggT, ArgsT, ArrayT, BoolT, BufT, IntArrayT, IntT, StrT, TupleT, Type,
)

# A key bigger than the stack is built in the per-CPU scratch value, whose size the kernel caps
# at 32 KiB (and instruction offsets are 16-bit); hash maps take keys of any size since Linux 5.9.
MAX_KEY_BYTES = 32768


@dataclass
class ProbeName(ast.Expr):
    """``probe`` where a string is wanted (strcontains(probe, ..), probe == $s): the name of
    the probe that fired, written from the program's probe names at run time. Made by sema."""

    operand: ast.Expr


class ValuesSema:
    """Methods the analyzer mixes in (``self`` is an ``analyze._Analyzer``)."""

    # ------------------------------------------------------------------ probe as a string
    def probe_string(self, x: ast.Expr) -> ProbeName:
        """``x`` (of type probe) wrapped where a string is wanted."""
        if isinstance(x, ProbeName):
            return x
        w = ProbeName(x, span=x.span)
        self.expr(w)
        return w

    def expr_ProbeName(self, e: ProbeName) -> Type:
        self.expr(e.operand)
        return StrT(self.max_strlen)

    # ------------------------------------------------------------------ records
    def record_expr(self, e: ast.RecordExpr) -> Type:
        names, types, seen = [], [], set()
        for name, value in e.fields:
            t = self.expr(value)
            if name in seen:
                self.error(f"Duplicate field '{name}' in record", value.span)
            seen.add(name)
            if t == VOID or isinstance(t, (AggT, ArgsT)):
                self.error(f"Invalid record field of type '{t}'", value.span)
            names.append(name)
            types.append(t)
        return TupleT(tuple(types), tuple(names))

    def record_field(self, e: ast.FieldAccess, base: TupleT) -> Type:
        i = base.index_of(e.field_name)
        if i is None:
            if base.names:
                self.error(f"Record does not contain a field named '{e.field_name}'", e.span)
            else:
                self.error(f"Can not access field '{e.field_name}' on a tuple; use .0, .1, ...",
                           e.span)
            return INT64
        e.__class__ = ast.TupleIndex     # lowered as t.N (the node keeps its span and base)
        e.index = i
        return base.elems[i]

    def tuple_subscript(self, e: ast.Index) -> Type | None:
        """``t[1]`` on a tuple (a constant index) is ``t.1``: the node becomes a TupleIndex."""
        t = self.expr(e.base)
        if isinstance(t, IntArrayT):
            return self.intarray_subscript(e, t)
        if isinstance(t, StrT):
            return self.string_subscript(e, t)
        if not isinstance(t, TupleT):
            return None
        n = self.const_expr(e.index)
        if n is None:
            self.error("The index of a tuple must be an integer constant", e.index.span)
            return INT64
        e.__class__ = ast.TupleIndex     # same fields (base, index); lowered as t.N
        e.index = n
        return self.expr(e)

    def const_expr(self, e: ast.Expr) -> int | None:
        """The value of an integer expression made of literals (``1 - 1``), else None."""
        v = self.const_int(e)
        if v is not None or not isinstance(e, ast.Binary):
            return v
        a, b = self.const_expr(e.left), self.const_expr(e.right)
        if a is None or b is None:
            return None
        ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b,
               "/": lambda: int(a / b) if b else None, "%": lambda: a % b if b else None,
               "<<": lambda: a << b, ">>": lambda: a >> b, "&": lambda: a & b,
               "|": lambda: a | b, "^": lambda: a ^ b}
        return ops[e.op]() if e.op in ops else None

    def string_subscript(self, e: ast.Index, t: StrT) -> Type:
        INT8 = IntT(8, True)
        """``$s[i]``: the string's byte i (an int8, as C's char), ``i`` a constant within the
        string's size (a byte past its end is 0)."""
        self.expr(e.index)
        n = self.const_expr(e.index)
        if n is None:
            self.error("The index of a string must be an integer constant", e.index.span)
            return INT8
        if not 0 <= n < t.length:
            self.error(f"Index {n} is out of bounds for '{t}'", e.index.span)
            return INT8
        e.array_index = n       # lowered by lower_values.intarray_element
        return INT8

    def intarray_subscript(self, e: ast.Index, t: IntArrayT) -> Type:
        """``a[i]`` of an integer array, ``i`` a constant in range."""
        self.expr(e.index)
        n = self.const_expr(e.index)
        if n is None:
            self.error("The index of an integer array must be an integer constant", e.index.span)
            return INT64
        if not 0 <= n < t.count:
            self.error(f"Index {n} is out of bounds for '{t}'", e.index.span)
            return INT64
        e.array_index = n       # lowered by lower_values.intarray_element
        return BOOL if t.boolean else t.elem

    # ------------------------------------------------------------------ buf()
    def fn_buf(self, e: ast.Call) -> Type:
        sig = "buf(void *data, [int64 length])"
        if not self.nargs(e, 1, 2, sig):
            for a in e.args:
                self.expr(a)
            return BufT(self.max_strlen)
        t = self.expr(e.args[0])
        size = self.max_strlen
        if len(e.args) == 2:
            lt = self.expr(e.args[1])
            if not lt.is_int:
                self.error(f"buf() expects an integer length, got '{lt}'", e.args[1].span, [sig])
            n = self.const_int(e.args[1])
            if n is not None:
                if n <= 0:
                    self.error("buf() length must be positive", e.args[1].span, [sig])
                else:
                    size = min(n, self.max_strlen)
            elif isinstance(t, StrT):
                self.error("buf() of a string value needs a constant length", e.args[1].span,
                           [sig])
        elif isinstance(t, StrT):
            size = min(t.length, self.max_strlen)
        elif isinstance(t, IntArrayT):
            size = min(t.elem.bits // 8 * t.count, self.max_strlen)
        else:
            self.error("buf() needs a length when its first argument is a pointer",
                       e.span, [sig])
        if not (t.is_int or isinstance(t, (StrT, IntArrayT))):
            self.error(f"buf() expects a pointer, an integer address or a string, got '{t}'",
                       e.args[0].span, [sig])
        return BufT(size)

    # ------------------------------------------------------------------ casts
    def value_cast(self, e: ast.Cast) -> Type | None:
        tn = e.to
        base = INT_TYPE_NAMES.get(tn.name)
        if tn.pointer_depth or base is None:
            return None     # not a value cast this module handles
        t = self.expr(e.operand)
        is_bool = isinstance(base, BoolT)
        if tn.array_len is not None or tn.array_auto:
            if is_bool:
                base = IntT(8, False)
            # (uint8[4])x: the bytes of an integer seen as an array, and back
            if not (t.is_int or isinstance(t, (IntArrayT, StrT))):
                self.error(f'Cannot cast from "{t}" to "{tn.name}[]"', e.span)
                return IntArrayT(base, 1)
            if isinstance(t, StrT):       # (int8[])"abc": the string's bytes, its NUL included
                src_bytes = t.length
            else:
                src_bytes = 8 if t.is_int else t.elem.bits // 8 * t.count
            if t.is_int and isinstance(t, IntT):
                src_bytes = t.bits // 8
            if isinstance(e.operand, ast.IntLit) and e.operand.value >= 0:
                # a literal takes the smallest type that holds it (bpftrace 0.26): uint32 for
                # (uint8[4])0x01020304
                # (an int64 when the array takes 8 bytes, as bpftrace 0.17 had it)
                want = base.bits // 8 * tn.array_len if tn.array_len is not None else 0
                if want != 8:
                    src_bytes = next(n for n in (1, 2, 4, 8) if e.operand.value < 1 << (8 * n))
                    t = IntT(8 * src_bytes, False)
            count = tn.array_len if tn.array_len is not None else src_bytes // (base.bits // 8)
            arr = IntArrayT(base, count, is_bool)
            if base.bits // 8 * count != src_bytes:
                self.error(f'Cannot cast from "{t}" to "{arr}": the sizes differ '
                           f"({src_bytes} and {base.bits // 8 * count} bytes)", e.span)
            return arr
        if isinstance(t, IntArrayT):
            nbytes = t.elem.bits // 8 * t.count
            if not isinstance(base, IntT) or base.bits // 8 != nbytes:
                self.error(f'Cannot cast from "{t}" to "{tn.name}": the sizes differ', e.span)
            return base
        if isinstance(base, (IntT, BoolT)) and t.is_int:
            return base
        if is_bool and isinstance(t, StrT):      # (bool)"": false, (bool)"a": true
            return base
        self.error(f'Cannot cast from "{t}" to "{tn.name}"', e.span)
        return base

    # ------------------------------------------------------------------ signedness
    def sign_warning(self, e: ast.Binary, a: Type, b: Type) -> None:
        """bpftrace's warning for a uint64 meeting a signed operand (the operation is then
        unsigned), unless the signed side is a constant >= 0."""
        if e.op in ("&&", "||", "&", "|", "^", "<<", ">>") or not (a.is_int and b.is_int):
            return
        if is_signed(a) == is_signed(b) or signed_pair(a, b, e.left, e.right):
            return
        signed_side = e.left if is_signed(a) else e.right
        v = self.const_expr(signed_side)
        if v is not None and v >= 0:
            return
        if (isinstance(signed_side, ast.Var) and signed_side.name in self.flex_vars
                or isinstance(signed_side, ast.MapRef) and "@" + signed_side.name in self.flex_maps):
            return          # typed from literals >= 0 only: as good as unsigned (0.26)
        what = "comparison of" if e.op in ("==", "!=", "<", "<=", ">", ">=") else "arithmetic on"
        self.warn(f"{what} integers of different signs: '{a}' and '{b}' can lead to "
                  "undefined behavior", e.span)

    def warn(self, message: str, span) -> None:
        if not self.final:
            return
        from ptrace_lang.errors import Diagnostic

        warnings = self.__dict__.setdefault("warnings", [])
        d = Diagnostic(message, span, [], "WARNING")
        if all((w.message, w.span) != (message, span) for w in warnings):
            warnings.append(d)

    # ------------------------------------------------------------------ map keys
    def check_key_size(self, t: Type, ref: ast.MapRef) -> None:
        if t is not None and t.size() > MAX_KEY_BYTES:
            self.error(f"Map key of @{ref.name} is too big: '{t}' takes {t.size()} bytes, "
                       f"the kernel allows {MAX_KEY_BYTES}", ref.span,
                       ["use a shorter string as the key: str(ptr, len) or config max_strlen"])

    # ------------------------------------------------------------------ == and != on memory values
    def binary_mismatch(self, e: ast.Binary, a: Type, b: Type) -> None:
        """bpftrace 0.26's error for operands of ``e`` that do not go together: under the
        operator alone, the types unquoted, then each side with its type."""
        from ptrace_lang.errors import Diagnostic
        from ptrace_lang.messages import say

        if not self.final:
            return
        self.errors.append(Diagnostic(
            say("binop_mismatch", op=e.op, left=a, right=b), operator_span(e),
            context=[(say("binop_left", type=a), e.left.span),
                     (say("binop_right", type=b), e.right.span)]))

    def memory_compare(self, e: ast.Binary, a: Type, b: Type) -> Type | None:
        """``==``/``!=`` of two tuples, buffers or integer arrays (compared byte by byte)."""
        kinds = (TupleT, BufT, IntArrayT, ArrayT)       # ArrayT: C arrays (BTF, script structs)
        if not (isinstance(a, kinds) or isinstance(b, kinds)):
            return None
        if isinstance(a, ArrayT) and isinstance(b, ArrayT):
            msg = _array_compare_error(e.op, a, b)
            if msg:
                self.error(msg, e.span)
            return BOOL
        if e.op not in ("==", "!=") or type(a) is not type(b) or not _same_shape(a, b):
            self.binary_mismatch(e, a, b)
        return BOOL


def _array_compare_error(op: str, a: ArrayT, b: ArrayT) -> str:
    """bpftrace's refusal of ``op`` between two C arrays: only ``==``/``!=`` of arrays of the
    same integer type and length (an array of arrays does not compare)."""
    if op not in ("==", "!="):
        return f"The {op} operator cannot be used on arrays."
    if a.n != b.n:
        return "Only arrays of same size support comparison operators."
    if not isinstance(a.elem, IntT) or a != b:
        return "Only arrays of same sized integer support comparison operators."
    return ""


def _same_shape(a: Type, b: Type) -> bool:
    if isinstance(a, TupleT) and isinstance(b, TupleT):
        return (len(a.elems) == len(b.elems) and a.names == b.names
                and all(_same_shape(x, y) for x, y in zip(a.elems, b.elems)))
    if a.is_int and b.is_int:
        return True
    if isinstance(a, StrT) and isinstance(b, StrT):
        return True
    if isinstance(a, BufT) and isinstance(b, BufT):
        return True
    return a == b


def operator_span(e: ast.Binary):
    """Where the operator of ``e`` is written: between its operands on their line (past any
    closing parentheses of the left one), else the whole expression."""
    from ptrace_lang.errors import SOURCES, Span

    left, right = e.left.span, e.right.span
    if left.file != right.file or left.end_line != right.line or left.end_col > right.col:
        return e.span
    text = SOURCES.line(left.file, left.end_line)
    if text is None:
        return e.span
    at = text.find(e.op, left.end_col - 1, right.col - 1)
    if at < 0:
        return e.span
    return Span(left.file, left.end_line, at + 1, left.end_line, at + 1 + len(e.op),
                origin=e.span.origin)
