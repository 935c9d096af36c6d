"""Lowering of event records: ``printf``, ``cat``, ``system``, ``join``, ``print``, ``time``,
``exit``, ``clear``/``zero``, each a record in the ``ringbuf`` map (header, then its values laid
out as ``value_field`` describes them for user space). A record that finds the ring buffer
full is counted in ``COUNTER_LOST_EVENTS``.

A mixin of ``lower.Lowering``.
"""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import (
    FN_PROBE_READ_USER, FN_PROBE_READ_USER_STR, FN_RINGBUF_OUTPUT, FN_RINGBUF_RESERVE,
    FN_RINGBUF_SUBMIT,
)
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.lower_tuples import elem_width
from ptrace_lang.codegen.ir import FP, R0, VReg

# a record of integers only, up to this size, is written on the stack and copied out
STACK_RECORD_MAX = 128
from ptrace_lang.codegen.lower_types import c_value_field
from ptrace_lang.codegen.lower_values import str_field
from ptrace_lang.errors import NO_SPAN, CompileError, NotSupportedYet, Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import (
    FUNC, PROBE, BoolT, BufT, IntArrayT, IntT, StrT, TupleT, Type, UserT, is_scalar,
)



def join_event(e, size: int) -> S.EventSpec:
    """The record of ``join(arr[, delim])``: the count of strings read, then JOIN_MAX strings
    of ``size`` bytes (both backends write it)."""
    delim = e.args[1].value if len(e.args) > 1 else " "
    fields = [S.Field("int", 8, 8)] + [S.Field("str", 16 + i * size, size)
                                       for i in range(S.JOIN_MAX)]
    return S.EventSpec(S.EV_JOIN, delim, fields, e.span)

class EventsLowering:
    """Methods mixed into ``Lowering`` (``self`` is a ``Lowering``)."""

    @property
    def _outer(self) -> list:
        """The labels of the records open around the one being written."""
        stack = self.__dict__.get("_outer_records")
        if stack is None:
            stack = self.__dict__["_outer_records"] = []
        return stack

    def stmt_printf(self, e: ast.Call) -> None:
        args = e.args[1:]
        self.record(S.EV_PRINTF, e.args[0].value, args, e.span)

    def stmt_cat(self, e: ast.Call) -> None:
        self.record(S.EV_CAT, e.args[0].value, e.args[1:], e.span)

    def stmt_system(self, e: ast.Call) -> None:
        self.record(S.EV_SYSTEM, e.args[0].value, e.args[1:], e.span)

    def stmt_join(self, e: ast.Call) -> None:
        """join(arr[, delim]): up to JOIN_MAX pointers read from the user array, each string
        read straight into the record; the count of strings read goes first."""
        size = self.max_strlen
        ev_id = len(self.events)
        self.events.append(join_event(e, size))
        arr = self.scalar(e.args[0])
        slot = self.frame.alloc(8, e.span)
        rec = self.reserve(16 + S.JOIN_MAX * size)
        self.header(rec, S.EV_JOIN, ev_id)
        count = self.vreg()
        self.mov(count, 0)
        end = self.label("joined")
        for i in range(S.JOIN_MAX):
            src = self.vreg()
            self.mov(src, arr)
            self.emit(ir.Alu("add", src, 8 * i))
            self.call(FN_PROBE_READ_USER, ("fp", slot), 8, src)
            self.emit(ir.CondJump("jne", R0, 0, end))
            p = self.vreg()
            self.emit(ir.Load(p, FP, slot, 8))
            self.emit(ir.CondJump("jeq", p, 0, end))
            self.call(FN_PROBE_READ_USER_STR, ("ptr", rec, 16 + i * size), size, p)
            self.emit(ir.Alu("add", count, 1))
        self.emit(ir.Label(end))
        self.emit(ir.Store(rec, 8, count, 8))
        self.submit(rec)

    def stmt_print(self, e: ast.Call) -> None:
        first = e.args[0]
        if isinstance(first, ast.MapRef) and first.keys is None:
            top = self.const_value(e.args[1]) if len(e.args) > 1 else 0
            div = self.const_value(e.args[2]) if len(e.args) > 2 else 1
            idx = self.user_map_index["@" + first.name]
            self.stack_record(S.EV_PRINT_MAP, idx, [self.const(top), self.const(div)], e.span)
            return
        self.record(S.EV_PRINT_VALUE, "", [first], e.span)

    def stmt_time(self, e: ast.Call) -> None:
        fmt = e.args[0].value if e.args else "%H:%M:%S\n"
        self.record(S.EV_TIME, fmt, [], e.span)

    def stmt_exit(self, e: ast.Call) -> None:
        code = self.scalar(e.args[0]) if e.args else self.const(0)
        self.stack_record(S.EV_EXIT, 0, [code], e.span)
        self.emit(ir.Jump(self.exit_label))

    def _map_event(self, kind: int, e: ast.Call) -> None:
        self.stack_record(kind, self.user_map_index["@" + e.args[0].name], [], e.span)

    def stmt_clear(self, e: ast.Call) -> None:
        self._map_event(S.EV_CLEAR_MAP, e)

    def stmt_zero(self, e: ast.Call) -> None:
        self._map_event(S.EV_ZERO_MAP, e)

    # ------------------------------------------------------------------ ring buffer records
    def reserve(self, size: int) -> VReg | None:
        """Reserve a record; on failure count a lost event and skip to ``self._skip``."""
        self.call(FN_RINGBUF_RESERVE, ("map", "ringbuf"), size, 0)
        rec = self.result()
        # a record written while another is open (a division's warning record inside a value
        # of printf): the outer record's labels come back at the inner one's submit
        self._outer.append((getattr(self, "_skip", None), getattr(self, "_done", None)))
        self._skip = self.label("lost")
        self._done = self.label("sent")
        self.emit(ir.CondJump("jeq", rec, 0, self._skip))
        return rec

    def header(self, rec, kind: int, ident: int, off: int = 0, size: int = 4) -> None:
        """The record header (spec.py): kind and id in one 32-bit store (a u64 on the stack,
        which must be written whole)."""
        if not 0 <= ident <= S.MAX_RECORD_ID:
            raise CompileError(f"too many output statements (more than {S.MAX_RECORD_ID})",
                               NO_SPAN)
        self.emit(ir.Store(rec, off, kind | ident << 8, size))

    def stack_record(self, kind: int, ident: int, values: list, span: Span) -> None:
        """A record of u64 values (registers or constants) after its header, written on the
        stack and copied into the ring buffer by one helper call (bpf_ringbuf_output: one call
        where reserve and submit are two, and no open record with its null test around the
        writes); a full ring counted as a lost event, on a branch of its own."""
        size = S.RECORD_HEADER + 8 * len(values)
        slot = self.frame.alloc(size, span)
        self.header(FP, kind, ident, slot, 8)
        for i, v in enumerate(values):
            self.emit(ir.Store(FP, slot + S.RECORD_HEADER + 8 * i, v, 8))
        self.call(FN_RINGBUF_OUTPUT, ("map", "ringbuf"), ("fp", slot), size, 0)
        sent = self.label("sent")
        self.emit(ir.CondJump("jsge", R0, 0, sent))
        self.count_error(S.COUNTER_LOST_EVENTS)
        self.emit(ir.Label(sent))

    def submit(self, rec: VReg) -> None:
        skip, done = self._skip, self._done
        self.call(FN_RINGBUF_SUBMIT, rec, 0)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(skip))
        self.count_error(S.COUNTER_LOST_EVENTS)
        self.emit(ir.Label(done))
        if self._outer:
            self._skip, self._done = self._outer.pop()

    def record(self, kind: int, fmt: str, args: list[ast.Expr], span: Span) -> None:
        fields, off = [], S.RECORD_HEADER
        for a in args:
            f = value_field(a.type, off, trailer=self.str_trunc_trailer)
            fields.append(f)
            off += a.type.size()
        ev_id = len(self.events)
        self.events.append(S.EventSpec(kind, fmt, fields, span,
                                       arg_bits=tuple(_arg_bits(a.type) for a in args)))
        # scalars are computed before reserving (an expression may hold statements that write
        # records of their own), but for builtins: computed into the open record, their helper's
        # result is stored from r0 as it is (no copy kept across the reserve call)
        if all(is_scalar(a.type) for a in args) and off <= STACK_RECORD_MAX:
            self.stack_record(kind, ev_id, [self.scalar(a) for a in args], span)
            return
        scalars = [self.scalar(a) if is_scalar(a.type) and not isinstance(a, ast.Builtin) else None
                   for a in args]
        rec = self.reserve(off)
        self.header(rec, kind, ev_id)
        for a, f, v in zip(args, fields, scalars):
            if v is None and is_scalar(a.type):
                v = self.scalar(a)
            if v is not None:
                self.emit(ir.Store(rec, f.offset, v, 8))
            else:
                self.record_base = rec   # user space reads up to the NUL: no padding needed
                self.expr_into(a, rec, f.offset, a.type)
                self.record_base = None
        self.submit(rec)


def value_field(t: Type, off: int, name: str = "", trailer: str = "..") -> S.Field:
    """How a value of type ``t`` at ``off`` is laid out, for the runtime to decode (``trailer``:
    config str_trunc_trailer, printed after a string that filled its buffer)."""
    c = c_value_field(t, off, name)
    if c is not None:
        return c
    if isinstance(t, BoolT):
        return S.Field("bool", off, 8, name=name)
    if isinstance(t, IntT):
        return S.Field("int", off, 8, signed=t.signed, name=name)
    if t == PROBE:
        return S.Field("probe", off, 8, name=name)
    if t == FUNC:
        return S.Field("func", off, 8, name=name)
    if isinstance(t, StrT):
        return str_field(t, off, name, trailer)
    if isinstance(t, TupleT):
        names = t.names or ("",) * len(t.elems)
        subs = [value_field(et, o, n, trailer) for et, o, n in zip(t.elems, t.offsets(), names)]
        for sub, et in zip(subs, t.elems):
            if is_scalar(et):       # (an int8 element takes 1 byte, lower_tuples)
                sub.size = elem_width(et)
        return S.Field("record" if t.names else "tuple", off, t.size(), fields=subs, name=name)
    if isinstance(t, BufT):
        return S.Field("buf", off, t.size(), name=name)
    if isinstance(t, IntArrayT):
        return S.Field("intarray", off, t.size(), signed=t.elem.signed, name=name,
                       aux=(t.elem.bits // 8, t.count, t.boolean))
    if isinstance(t, UserT):
        return S.Field("user", off, t.size(), name=name, fmt=t.kind, aux=t.aux)
    raise NotSupportedYet(f"values of type '{t}' in events or maps")


def _arg_bits(t) -> int:
    """32 for a signed integer type of at most 32 bits (``int32``, ``int8``; its value is
    sign-extended, so ``%x``/``%u`` read 32 bits of it as C's promotion to int would), else 64
    (an unsigned one is zero-extended: read whole, ``%d`` of a ``uint32`` stays positive)."""
    bits = getattr(t, "bits", None)
    signed = getattr(t, "signed", False)
    return 32 if t.is_int and signed and isinstance(bits, int) and bits <= 32 else 64
