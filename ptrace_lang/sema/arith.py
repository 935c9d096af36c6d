"""Signedness of integer arithmetic, shared by sema (types, warnings) and codegen (the
operations chosen): bpftrace's rules as the newest bpftrace applies them."""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import IntT, Type


def signed_pair(a: Type, b: Type, left=None, right=None) -> bool:
    """Whether an operation on ``a`` and ``b`` (the expressions ``left``, ``right`` when known)
    is signed. A literal >= 0 takes the other side's signedness (the newest bpftrace types it
    as the smallest unsigned type that holds it): ``(uint32)5 - 10`` is unsigned, ``$m / 2``
    signed. Otherwise: both signed, or one signed and the other an unsigned narrower than 64
    bits (its values all fit int64, as the newest bpftrace promotes it): signed; a uint64 with
    a signed operand: unsigned."""
    if _nonneg_literal(right):
        return is_signed(a)
    if _nonneg_literal(left):
        return is_signed(b)
    sa, sb = is_signed(a), is_signed(b)
    if sa and sb:
        return True
    if sa != sb:
        u = b if sa else a
        return not isinstance(u, IntT) or u.bits < 64
    return False


def _nonneg_literal(e) -> bool:
    return isinstance(e, ast.IntLit) and e.value >= 0


def is_signed(t: Type) -> bool:
    """Signedness in arithmetic and comparisons; results of comparisons and ``!`` are unsigned
    (bpftrace types them 'unsigned int64')."""
    return isinstance(t, IntT) and t.signed


def literal_type(e) -> IntT | None:
    """The type bpftrace 0.26 gives an integer literal: the smallest unsigned type that holds
    it (``1`` is uint8, ``256`` uint16), a negated literal the smallest signed type (``-1`` is
    int8, ``-1000`` int16), ``~`` of a literal its 64-bit complement, typed the same way
    (``~1`` is 18446744073709551614, a uint64). None for any other expression."""
    if isinstance(e, ast.IntLit) and e.value >= 0 and not _enum(e):
        return _smallest(e.value, False)
    if isinstance(e, ast.Unary) and isinstance(e.operand, ast.IntLit) and not _enum(e.operand):
        v = e.operand.value
        if e.op == "-":
            return _smallest(-v, True) if v else _smallest(0, False)
        if e.op == "~" and v >= 0:
            return _smallest(~v & ((1 << 64) - 1), False)
    return None


def _enum(e) -> bool:
    return e.type is not None and not isinstance(e.type, IntT)


def _smallest(v: int, signed: bool) -> IntT:
    for bits in (8, 16, 32):
        if (-(1 << (bits - 1)) <= v < (1 << (bits - 1))) if signed else v < (1 << bits):
            return IntT(bits, signed)
    return IntT(64, signed)
