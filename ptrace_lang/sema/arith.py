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
    """The type bpftrace 0.26 gives an integer literal: the smallest SIGNED type that holds it
    (``1`` is int8, ``200`` int16, ``-1000`` int16), unsigned only past int64 (a uint64);
    ``~`` of a literal is its 64-bit complement typed the same way (``~1`` is
    18446744073709551614, a uint64). None for any other expression. A literal >= 0 is
    sign-flexible (``flexible_literal``): it fits an unsigned type it meets as well."""
    v = literal_value(e)
    return None if v is None else _smallest(v)


def literal_value(e) -> int | None:
    """The value of an integer literal, a negated one or ``~`` of one; else None."""
    if isinstance(e, ast.IntLit) and e.value >= 0 and not _enum(e):
        return e.value
    if isinstance(e, ast.Unary) and isinstance(e.operand, ast.IntLit) and not _enum(e.operand):
        v = e.operand.value
        if e.op == "-":
            return -v
        if e.op == "~" and v >= 0:
            return ~v & ((1 << 64) - 1)
    return None


def flexible_literal(e) -> bool:
    """A literal >= 0 that fits int64: typed signed, but as good as unsigned where it meets an
    unsigned type (0.26's sign-flexible literals: ``$x = (uint32)5; $x = 1;`` stays uint32)."""
    v = literal_value(e)
    return v is not None and 0 <= v < 1 << 63


def merge_ints(old: IntT, new: IntT, old_flexible: bool, new_flexible: bool) -> IntT:
    """The type of a variable or map value of type ``old`` assigned a ``new``: the wider, signed
    when either is signed, except that a sign-flexible side (typed from literals >= 0) takes
    the other side's unsigned type."""
    if new_flexible and not old.signed or old_flexible and not new.signed:
        return IntT(max(old.bits, new.bits), False)
    if old.signed != new.signed:     # signed, wide enough for the unsigned side: uint8, int8 -> int16
        u, s = (new, old) if old.signed else (old, new)
        return IntT(min(64, max(s.bits, 2 * u.bits)), True)
    return IntT(max(old.bits, new.bits), old.signed)


def _enum(e) -> bool:
    return e.type is not None and not isinstance(e.type, IntT)


def _smallest(v: int) -> IntT:
    for bits in (8, 16, 32, 64):
        if -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
            return IntT(bits, True)
    return IntT(64, False)
