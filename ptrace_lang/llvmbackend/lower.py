"""Typed AST -> LLVM IR: one probe body (for one group of attach points) as one function.

The layouts are the direct backend's (codegen/lower.py), so that the runtime reads both alike:
integers are 8 bytes in keys, values and records; strings take their size rounded up to 8,
zero padded; aggregations are the per-CPU values of ``spec.UserMapSpec``; a ring buffer record
starts with the u32 ``kind | id << 8``. Scalars are i64 SSA values, variables allocas (LLVM
promotes the scalar ones to registers), values in memory (strings, tuples) are written through
a pointer to where they go (a key, a map value, a record, a variable).

Maps are globals in section ``.maps`` named ``map.<kernel name>``; an address inside an array
map's value (the counters, the start time) is a global ``mapval.<map>.<offset>`` in section
``.ptrace.mapvalue``. Both become ld_imm64 with an R_BPF_64_64 relocation, which compile.py
turns into the loader's map relocations. Helpers are calls through ``inttoptr`` of their id.
"""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang import spec as S
from ptrace_lang.bpf import uapi as U
from ptrace_lang.codegen.lower import is_scalar, value_field
from ptrace_lang.codegen.lower_types import pointer_step
from ptrace_lang.errors import NO_SPAN, CompileError, Diagnostic, Span, render
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.sema.analyze import field_type, signed_pair
from ptrace_lang.sema.types import ArgsT, BoolT, BufT, IntT, StrT, TupleT, Type, UserT
from ptrace_lang.llvmbackend.irbase import (
    ARITH, BPF_ANY, BPF_NOEXIST, CMP, DIV_ZERO_MESSAGE, FUNCTION, I1, I8, I64,
    MAPS_SECTION, MAPVAL_SECTION, PTR, SECTION, SIMPLE_BUILTINS, c64,
)
from ptrace_lang.llvmbackend.aggs import AggsLowering
from ptrace_lang.llvmbackend.cvalues import CValuesLowering
from ptrace_lang.llvmbackend.debug import DebugInfo
from ptrace_lang.llvmbackend.flow import FlowLowering
from ptrace_lang.llvmbackend.funcs import FuncsLowering
from ptrace_lang.llvmbackend.loops import LoopsLowering
from ptrace_lang.llvmbackend.strings import StringsLowering
from ptrace_lang.llvmbackend.symbols import SymbolsLowering
from ptrace_lang.llvmbackend.tuples import TuplesLowering
from ptrace_lang.spec import GLOBALS_START_NS


class Lowering(StringsLowering, TuplesLowering, CValuesLowering, FuncsLowering, FlowLowering,
               SymbolsLowering, AggsLowering, LoopsLowering):
    """Builds the LLVM module of one program."""

    def __init__(self, *, maps: dict, events: list, user_map_index: dict, args, probe_ids: list,
                 positional: list, var_types: dict, max_strlen: int, uses_cookie: bool,
                 cpid, target, str_trunc_trailer: str, arg_offsets=None, retval_offset: int = 0,
                 extra_options: dict | None = None) -> None:
        self.maps = maps
        self.events = events
        self.user_map_index = user_map_index
        self.args = args
        self.probe_ids = probe_ids
        self.positional = positional
        self.var_types = var_types
        self.max_strlen = max_strlen
        self.uses_cookie = uses_cookie
        self.cpid = cpid
        self.target = target
        self.trailer = str_trunc_trailer
        self.arg_offsets = arg_offsets
        self.retval_offset = retval_offset
        self.extra_options = extra_options or {}
        self.module = ir.Module("ptrace")
        self.module.triple = "bpfel"
        self.fn = ir.Function(self.module, ir.FunctionType(I64, [PTR]), FUNCTION)
        self.fn.section = SECTION
        self.ctx = self.fn.args[0]
        self.allocas = self.fn.append_basic_block("allocas")
        self.ab = ir.IRBuilder(self.allocas)
        self.b = ir.IRBuilder(self.fn.append_basic_block("entry"))
        self.exit_block = self.fn.append_basic_block("exit")
        self.vars: dict[str, ir.Value] = {}
        self.free_slots: dict[int, list] = {}     # temporaries' allocas free for reuse, by size
        self.live_slots: list = []                # (size, alloca) of the temporaries in use
        self.stack_maps: dict[str, int] = {}      # kstack/ustack maps: name -> value size
        self.loops: list = []          # (continue block, break block) of the loops open
        self.callers: dict = {}        # callback name -> (the function calling it, span)
        self.globals: dict[str, ir.GlobalVariable] = {}
        self.span = NO_SPAN

    # ------------------------------------------------------------------ building blocks
    def alloca(self, size: int, permanent: bool = False) -> ir.Value:
        """``size`` bytes of stack, 8-aligned. A temporary (not ``permanent``: a variable's slot)
        lives until the statement that made it ends (``block``), then its slot is handed to the
        next temporary of that size: LLVM, given no lifetime markers, would keep every alloca
        apart, and 41 map stores of a string in one probe then need 3 KiB of stack."""
        n = max((size + 7) // 8 * 8, 8)
        free = self.free_slots.setdefault(n, [])
        if free and not permanent:
            a = free.pop()
        else:
            a = self.ab.alloca(ir.ArrayType(I8, n))
            a.align = 8
            a.type = PTR          # an opaque pointer, as LLVM itself has them
        if not permanent:
            self.live_slots.append((n, a))
        return a

    def gep(self, base, off: int):
        return base if not off else self.b.gep(base, [ir.Constant(I64, off)], inbounds=True,
                                               source_etype=I8)

    def store(self, base, off: int, value, size: int = 8) -> None:
        ty = ir.IntType(size * 8)
        if isinstance(value, int):
            value = ir.Constant(ty, value)
        elif value.type != ty:
            value = self.b.trunc(value, ty)
        st = self.b.store(value, self.gep(base, off))
        st.align = size

    def load(self, base, off: int, size: int = 8, signed: bool = False) -> ir.Value:
        ld = self.b.load(self.gep(base, off), typ=ir.IntType(size * 8))
        ld.align = size
        if size == 8:
            return ld
        return self.b.sext(ld, I64) if signed else self.b.zext(ld, I64)

    def zero(self, base, off: int, size: int) -> None:
        for o in range(0, size, 8):
            self.store(base, off + o, 0, 8 if size - o >= 8 else 1)

    def copy(self, dst, doff: int, src, soff: int, size: int) -> None:
        for o in range(0, size, 8):
            self.store(dst, doff + o, self.load(src, soff + o, 8))

    def store_bytes(self, base, off: int, data: bytes, size: int) -> None:
        data = data[:size].ljust((size + 7) // 8 * 8, b"\0")
        for o in range(0, len(data), 8):
            self.store(base, off + o, c64(int.from_bytes(data[o:o + 8], "little")))

    def global_(self, name: str, section: str) -> ir.GlobalVariable:
        g = self.globals.get(name)
        if g is None:
            g = self.globals[name] = ir.GlobalVariable(self.module, I64, name)
            g.section = section
            g.initializer = ir.Constant(I64, 0)
            g.align = 8
            g.type = PTR
        return g

    def map_ref(self, kernel_name: str):
        return self.global_("map." + kernel_name, MAPS_SECTION)

    def map_value(self, kernel_name: str, off: int):
        """The address of element 0's value + ``off`` of an array map (no helper call)."""
        return self.global_(f"mapval.{kernel_name}.{off}", MAPVAL_SECTION)

    def call(self, helper: int, ret, *args) -> ir.Value:
        """A helper call as clang emits it: through a pointer made of the helper's id."""
        ft = ir.FunctionType(ret, [a.type for a in args])
        return self.b.call(self.b.inttoptr(ir.Constant(I64, helper), ir.PointerType(ft)), list(args))

    def branch(self, cond, then_fn, else_fn=None) -> None:
        """if cond: then_fn() [else: else_fn()] ; a body may end its block (return/exit)."""
        then_b = self.fn.append_basic_block("then")
        else_b = self.fn.append_basic_block("else") if else_fn is not None else None
        end_b = self.fn.append_basic_block("endif")
        self.b.cbranch(cond, then_b, else_b or end_b)
        for blk, body in ((then_b, then_fn), (else_b, else_fn)):
            if blk is None:
                continue
            self.b.position_at_end(blk)
            body()
            if not self.b.block.is_terminated:
                self.b.branch(end_b)
        self.b.position_at_end(end_b)

    def select_value(self, cond, then_fn, else_fn) -> ir.Value:
        """An i64 computed by ``then_fn`` or ``else_fn`` (each may add blocks)."""
        out = self.alloca(8)
        self.branch(cond, lambda: self.store(out, 0, then_fn()), lambda: self.store(out, 0, else_fn()))
        return self.load(out, 0)

    def count_error(self, which: int) -> None:
        """counters[which] += 1: an atomic add straight into the array's value."""
        self.b.atomic_rmw("add", self.map_value("counters", which * 8), c64(1), "monotonic")

    def positional_value(self, n: int):
        if n < 1 or n > len(self.positional):
            return 0
        try:
            return int(self.positional[n - 1], 0)
        except ValueError:
            return self.positional[n - 1]

    # ------------------------------------------------------------------ program
    def lower_probe(self, probe: ast.Probe) -> ir.Module:
        self.span = probe.span
        self.debug = DebugInfo(self.module, probe.span.file)
        self.scope = self.debug.subprogram(self.fn)
        for name, typ in self.var_types.items():
            if is_scalar(typ):
                self.vars[name] = self.alloca(8, permanent=True)
                self.store(self.vars[name], 0, 0)
            elif isinstance(typ, (StrT, TupleT, UserT, BufT)):
                self.vars[name] = self.alloca(typ.size(), permanent=True)
                self.zero(self.vars[name], 0, typ.size())
            else:
                raise unsupported(f"a variable of type '{typ}' (${name.lstrip('$')})", probe.span)
        if probe.predicate is not None:
            body = self.fn.append_basic_block("body")
            self.b.debug_metadata = self.debug.location(self.scope, probe.predicate.span)
            self.b.cbranch(self.cond(probe.predicate), body, self.exit_block)
            self.b.position_at_end(body)
        self.block(probe.body)
        if not self.b.block.is_terminated:
            self.b.branch(self.exit_block)
        self.ab.branch(self.fn.basic_blocks[1])
        self.b.position_at_end(self.exit_block)
        self.b.ret(ir.Constant(I64, 0))
        return self.module

    def block(self, block: ast.Block) -> None:
        for s in block.stmts:
            if self.b.block.is_terminated:     # after return/exit: unreachable
                self.b.position_at_end(self.fn.append_basic_block("dead"))
            mark = len(self.live_slots)
            outer = self.b.debug_metadata
            self.b.debug_metadata = self.debug.location(self.scope, s.span)
            self.stmt(s)
            self.b.debug_metadata = outer
            for n, a in self.live_slots[mark:]:       # the statement's temporaries are free
                self.free_slots[n].append(a)
            del self.live_slots[mark:]

    def stmt(self, s: ast.Stmt) -> None:
        if isinstance(s, ast.ExprStmt):
            self.expr_stmt(s.expr)
        elif isinstance(s, ast.Assign):
            self.assign(s)
        elif isinstance(s, ast.Block):
            self.block(s)
        elif isinstance(s, ast.If):
            self.branch(self.cond(s.cond), lambda: self.block(s.then),
                        (lambda: self.block(s.orelse)) if s.orelse is not None else None)
        elif isinstance(s, ast.Unroll):
            n = self.const_value(s.count)
            for _ in range(n):
                self.block(s.body)
        elif isinstance(s, ast.Return):
            if s.value is not None:
                self.scalar(s.value)
            self.b.branch(self.exit_block)
        elif hasattr(self, "lower_" + type(s).__name__):
            getattr(self, "lower_" + type(s).__name__)(s)
        else:
            raise unsupported(f"the statement '{type(s).__name__}'", s.span)

    def const_value(self, e: ast.Expr) -> int:
        if isinstance(e, ast.IntLit):
            return e.value
        if isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            return v if isinstance(v, int) else 0
        if isinstance(e, ast.Unary) and e.op == "-":
            return -self.const_value(e.operand)
        raise CompileError("expected a constant", e.span)

    # ------------------------------------------------------------------ variables, assignments
    def assign_var(self, var: ast.Var, value: ast.Expr) -> None:
        typ = self.var_types.get(var.name, var.type)
        slot = self.var_slot(var.name, typ)
        if is_scalar(typ):
            v = self.scalar(value)
            vt = value.type
            if isinstance(typ, IntT) and isinstance(vt, IntT) and vt.bits > typ.bits:
                v = self.truncate(v, typ)
            self.store(slot, 0, v)
        else:
            self.into(value, slot, 0, typ)

    def assign(self, s: ast.Assign) -> None:
        t = s.target
        if isinstance(t, ast.Var):
            if s.op is None:
                self.assign_var(t, s.value)
                return
            slot = self.vars[t.name]
            step = pointer_step(t.type)
            if step and s.op in ("+", "-"):           # $p += n: by whole elements
                n = self.b.mul(self.scalar(s.value), c64(step))
                old = self.load(slot, 0)
                v = self.b.add(old, n) if s.op == "+" else self.b.sub(old, n)
            else:
                v = self.binop(s.op, self.load(slot, 0), s.value,
                               signed_pair(t.type, s.value.type, None, s.value))
            if isinstance(t.type, IntT) and t.type.bits < 64:
                v = self.truncate(v, t.type)
            self.store(slot, 0, v)
            return
        if not isinstance(t, ast.MapRef):
            raise unsupported(f"assigning to '{type(t).__name__}'", s.span)
        layout = self.maps["@" + t.name]
        if s.op is None and isinstance(s.value, ast.Call) and layout.agg is not None:
            self.aggregate(t, layout, s.value)
        elif s.op is not None:
            if s.op in ("+", "-"):
                v = self.scalar(s.value)
                if pointer_step(t.type):
                    v = self.b.mul(v, c64(pointer_step(t.type)))
                self.map_add(t, layout, v if s.op == "+" else self.b.neg(v))
            else:
                v = self.binop(s.op, self.map_read_scalar(t, layout), s.value, True)
                self.map_store(t, layout, lambda base: self.store(base, 0, v))
        else:
            vt = layout.info.value_type
            if is_scalar(vt):
                v = self.scalar(s.value)
                self.map_store(t, layout, lambda base: self.store(base, 0, v))
            else:
                self.map_store(t, layout, lambda base: self.into(s.value, base, 0, vt))

    # ------------------------------------------------------------------ statements that are calls
    def expr_stmt(self, e: ast.Expr) -> None:
        if isinstance(e, ast.Call):
            handler = getattr(self, "stmt_" + e.name, None)
            if handler is not None:
                handler(e)
                return
        if isinstance(e, ast.IncDec) and isinstance(e.target, ast.MapRef):
            layout = self.maps["@" + e.target.name]
            step = pointer_step(e.target.type) or 1
            self.map_add(e.target, layout, c64(step if e.op == "++" else -step))
            return
        if e.type is not None and is_scalar(e.type):
            self.scalar(e)
            return
        if e.type is not None and isinstance(e.type, (StrT, TupleT)):
            self.into(e, self.alloca(e.type.size()), 0, e.type)
            return
        raise unsupported(self.construct(e), e.span)

    def stmt_printf(self, e: ast.Call) -> None:
        self.record(S.EV_PRINTF, e.args[0].value, e.args[1:], e.span)

    def stmt_print(self, e: ast.Call) -> None:
        first = e.args[0]
        if isinstance(first, ast.MapRef) and first.keys is None:
            top = self.const_value(e.args[1]) if len(e.args) > 1 else 0
            div = self.const_value(e.args[2]) if len(e.args) > 2 else 1
            idx = self.user_map_index["@" + first.name]
            self.send(S.EV_PRINT_MAP, idx, 16,
                      lambda rec: (self.store(rec, 8, c64(top)), self.store(rec, 16, c64(div))))
            return
        self.record(S.EV_PRINT_VALUE, "", [first], e.span)

    def stmt_time(self, e: ast.Call) -> None:
        self.record(S.EV_TIME, e.args[0].value if e.args else "%H:%M:%S\n", [], e.span)

    def stmt_exit(self, e: ast.Call) -> None:
        code = self.scalar(e.args[0]) if e.args else c64(0)
        self.send(S.EV_EXIT, 0, 8, lambda rec: self.store(rec, 8, code))
        self.b.branch(self.exit_block)

    def stmt_delete(self, e: ast.Call) -> None:
        ref = e.args[0]
        layout = self.maps["@" + ref.name]
        if layout.agg is not None and layout.agg.kind in ("hist", "lhist"):
            raise unsupported("delete() on a hist/lhist map", e.span)
        key = self.build_key(ref, layout)
        self.call(U.FN_MAP_DELETE_ELEM, I64, self.map_ref(layout.kernel_name), key)

    def stmt_clear(self, e: ast.Call) -> None:
        self.send(S.EV_CLEAR_MAP, self.user_map_index["@" + e.args[0].name], 0, lambda rec: None)

    def stmt_zero(self, e: ast.Call) -> None:
        self.send(S.EV_ZERO_MAP, self.user_map_index["@" + e.args[0].name], 0, lambda rec: None)

    # ------------------------------------------------------------------ ring buffer records
    def send(self, kind: int, ident: int, payload: int, write) -> None:
        """Reserve a record of header + ``payload`` bytes, write its header and ``write(rec)``,
        submit it; a failed reserve is counted as a lost event."""
        if not 0 <= ident <= S.MAX_RECORD_ID:
            raise CompileError(f"too many output statements (more than {S.MAX_RECORD_ID})", NO_SPAN)
        rec = self.call(U.FN_RINGBUF_RESERVE, PTR, self.map_ref("ringbuf"),
                        c64(S.RECORD_HEADER + payload), c64(0))

        def sent():
            self.store(rec, 0, kind | ident << 8, 4)
            write(rec)
            self.call(U.FN_RINGBUF_SUBMIT, ir.VoidType(), rec, c64(0))

        self.branch(self.b.icmp_unsigned("!=", rec, ir.Constant(PTR, None)), sent,
                    lambda: self.count_error(S.COUNTER_LOST_EVENTS))

    def record(self, kind: int, fmt: str, args: list, span: Span) -> None:
        fields, off = [], S.RECORD_HEADER
        for a in args:
            fields.append(value_field(a.type, off, trailer=self.trailer))
            off += a.type.size()
        ev_id = len(self.events)
        self.events.append(S.EventSpec(kind, fmt, fields, span))
        scalars = [self.scalar(a) if is_scalar(a.type) else None for a in args]

        def write(rec):
            for a, f, v in zip(args, fields, scalars):
                if v is not None:
                    self.store(rec, f.offset, v)
                else:
                    self.into(a, rec, f.offset, a.type, in_record=True)

        self.send(kind, ev_id, off - S.RECORD_HEADER, write)

    def warning(self, message: str, span: Span) -> None:
        text = render(Diagnostic(message, span or NO_SPAN, [], "WARNING")) + "\n"
        ev_id = len(self.events)
        self.events.append(S.EventSpec(S.EV_WARNING, text, [], span or NO_SPAN))
        self.send(S.EV_WARNING, ev_id, 0, lambda rec: None)

    # ------------------------------------------------------------------ maps
    def build_key(self, ref: ast.MapRef, layout, extra: int = 0):
        key = self.alloca(layout.key_size + extra)
        if ref.keys is None:
            self.store(key, 0, 0)
            return key
        kt = layout.info.key_type
        if len(ref.keys) == 1:
            self.into(ref.keys[0], key, 0, kt)
        else:
            self.elems_into(ref.keys, key, 0, kt, kt.size())
        return key

    def lookup(self, layout, key) -> ir.Value:
        return self.call(U.FN_MAP_LOOKUP_ELEM, PTR, self.map_ref(layout.kernel_name), key)

    def found(self, v) -> ir.Value:
        return self.b.icmp_unsigned("!=", v, ir.Constant(PTR, None))

    def update(self, layout, key, val, flags: int = BPF_ANY) -> None:
        r = self.call(U.FN_MAP_UPDATE_ELEM, I64, self.map_ref(layout.kernel_name), key, val,
                      c64(flags))
        # counters[MAP_FULL] += (r0 < 0), branchless
        self.b.atomic_rmw("add", self.map_value("counters", S.COUNTER_MAP_FULL * 8),
                          self.b.lshr(r, c64(63)), "monotonic")

    def map_store(self, ref: ast.MapRef, layout, write_value) -> None:
        key = self.build_key(ref, layout)
        val = self.alloca(layout.value_size)
        if layout.value_size > layout.info.value_type.size():
            self.zero(val, 0, layout.value_size)
        write_value(val)
        self.update(layout, key, val)

    def map_add(self, ref: ast.MapRef, layout, delta) -> None:
        """Atomically add ``delta`` to an integer map entry, creating it if missing."""
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)

        def insert():
            val = self.alloca(8)
            self.store(val, 0, 0)
            self.call(U.FN_MAP_UPDATE_ELEM, I64, self.map_ref(layout.kernel_name), key, val,
                      c64(BPF_NOEXIST))
            v2 = self.lookup(layout, key)
            self.branch(self.found(v2), lambda: self.b.atomic_rmw("add", v2, delta, "monotonic"),
                        lambda: self.count_error(S.COUNTER_MAP_FULL))

        self.branch(self.found(v), lambda: self.b.atomic_rmw("add", v, delta, "monotonic"), insert)

    def map_read_scalar(self, ref: ast.MapRef, layout) -> ir.Value:
        key = self.build_key(ref, layout)
        if layout.agg is not None:        # count/sum/min/max/avg read as an integer
            return self.agg_value(layout, key)
        v = self.lookup(layout, key)
        return self.select_value(self.found(v), lambda: self.load(v, 0), lambda: c64(0))

    def map_read_into(self, ref: ast.MapRef, layout, base, off: int, typ: Type) -> None:
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)
        src_size = layout.info.value_type.size()
        vt = layout.info.value_type
        if isinstance(vt, TupleT) and isinstance(typ, TupleT) and vt != typ:
            raise unsupported(f"a tuple converted from '{vt}' to '{typ}'", ref.span)

        def hit():
            self.copy(base, off, v, 0, min(src_size, typ.size()))
            if typ.size() > src_size:
                self.zero(base, off + src_size, typ.size() - src_size)

        self.branch(self.found(v), hit, lambda: self.zero(base, off, typ.size()))

    # ------------------------------------------------------------------ scalars
    @staticmethod
    def construct(e: ast.Expr) -> str:
        if isinstance(e, ast.Call):
            return f"the function {e.name}()"
        if isinstance(e, ast.Builtin):
            return f"the builtin '{e.name}'"
        if isinstance(e, ast.Cast):
            return f"the cast to '{e.type}'"
        if isinstance(e, ast.FieldAccess):
            return f"the member access '{'->' if e.arrow else '.'}{e.field_name}' (of '{e.base.type}')"
        return f"the expression '{type(e).__name__}'"

    def scalar(self, e: ast.Expr) -> ir.Value:
        if isinstance(e, (ast.FieldAccess, ast.Unary, ast.Index, ast.Binary, ast.Sizeof,
                          ast.Offsetof)):
            got = self.c_scalar(e)
            if got is not None:
                return got
        if isinstance(e, ast.Call) and hasattr(self, "call_" + e.name):
            return getattr(self, "call_" + e.name)(e)
        if isinstance(e, ast.IntLit):
            return c64(e.value)
        if isinstance(e, ast.BoolLit):
            return c64(int(e.value))
        if isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            return c64(v if isinstance(v, int) else 0)
        if isinstance(e, ast.ParamCount):
            return c64(len(self.positional))
        if isinstance(e, ast.Var) and is_scalar(self.var_types.get(e.name, e.type)):
            return self.load(self.vars[e.name], 0)
        if isinstance(e, ast.Builtin):
            return self.builtin(e.name, e)
        if isinstance(e, ast.Call) and not e.args and e.type is not None and is_scalar(e.type) \
                and e.name in SIMPLE_BUILTINS:
            return self.builtin(e.name, e)
        if isinstance(e, ast.MapRef) and is_scalar(e.type):
            return self.map_read_scalar(e, self.maps["@" + e.name])
        if isinstance(e, ast.Binary) and isinstance(e.left.type, (IntT, BoolT)) \
                and isinstance(e.right.type, (IntT, BoolT)):
            if e.op in CMP or e.op in ("&&", "||"):
                return self.b.zext(self.cond(e), I64)
            return self.binop(e.op, self.scalar(e.left), e.right,
                              signed_pair(e.left.type, e.right.type, e.left, e.right))
        if isinstance(e, ast.Binary) and e.op in ("==", "!="):
            return self.b.zext(self.cond(e), I64)
        if isinstance(e, ast.Unary) and e.op in ("-", "~", "!") and isinstance(e.operand.type, (IntT, BoolT)):
            if e.op == "!":
                return self.b.zext(self.cond(e), I64)
            v = self.scalar(e.operand)
            v = self.b.neg(v) if e.op == "-" else self.b.xor(v, c64(-1))
            return self.truncate(v, e.type)
        if isinstance(e, ast.IncDec):
            if isinstance(e.target, ast.Var):
                slot = self.vars[e.target.name]
                old = self.load(slot, 0)
                step = pointer_step(e.target.type) or 1
                new = self.b.add(old, c64(step if e.op == "++" else -step))
                self.store(slot, 0, new)
                return new if e.prefix else old
            layout = self.maps["@" + e.target.name]
            step = pointer_step(e.target.type) or 1
            self.map_add(e.target, layout, c64(step if e.op == "++" else -step))
            return c64(0)
        if isinstance(e, ast.Ternary) and is_scalar(e.type):
            return self.select_value(self.cond(e.cond), lambda: self.scalar(e.then),
                                     lambda: self.scalar(e.orelse))
        if isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
            return self.args_field(e)
        if hasattr(self, "scalar_" + type(e).__name__):
            return getattr(self, "scalar_" + type(e).__name__)(e)
        if isinstance(e, ast.TupleIndex) and is_scalar(e.type):
            return self.elem_load(self.mem_of(e.base), e.base.type.offsets()[e.index],
                                  e.base.type.elems[e.index])
        if isinstance(e, ast.Cast) and is_scalar(e.operand.type) and is_scalar(e.type):
            return self.truncate(self.scalar(e.operand), e.type)
        raise unsupported(self.construct(e), e.span)

    def truncate(self, v, t: Type) -> ir.Value:
        if isinstance(t, BoolT):
            return self.b.zext(self.b.icmp_unsigned("!=", v, c64(0)), I64)
        if not isinstance(t, IntT) or t.bits == 64:
            return v
        shift = 64 - t.bits
        if t.signed:
            return self.b.ashr(self.b.shl(v, c64(shift)), c64(shift))
        return self.b.and_(v, c64((1 << t.bits) - 1))

    def binop(self, op: str, a, right: ast.Expr, signed: bool) -> ir.Value:
        b = self.b
        if op in ARITH:
            return getattr(b, ARITH[op])(a, self.scalar(right))
        if op in ("<<", ">>"):
            if isinstance(right, ast.IntLit):
                n = c64(right.value & 63)
            else:
                n = b.and_(self.scalar(right), c64(63))
            return b.shl(a, n) if op == "<<" else (b.ashr(a, n) if signed else b.lshr(a, n))
        if op in ("/", "%"):
            if signed and not self.target.sdiv:
                raise unsupported("signed division on a kernel without sdiv (before 6.6)",
                                  right.span)
            fn = {("/", False): b.udiv, ("/", True): b.sdiv,
                  ("%", False): b.urem, ("%", True): b.srem}[op, signed]
            if isinstance(right, ast.IntLit) and right.value != 0:
                return fn(a, c64(right.value))
            d = self.scalar(right)
            span = self.span
            return self.select_value(b.icmp_unsigned("!=", d, c64(0)), lambda: fn(a, d),
                                     lambda: (self.warning(DIV_ZERO_MESSAGE, right.span or span),
                                              c64(1))[1])
        raise unsupported(f"the operator '{op}'", right.span)

    def builtin(self, name: str, e: ast.Expr) -> ir.Value:
        if hasattr(self, "builtin_" + name):
            return getattr(self, "builtin_" + name)(e)
        if name == "cpid":
            return c64(self.cpid or 0)
        if name in ("pid", "tid"):
            v = self.call(U.FN_GET_CURRENT_PID_TGID, I64)
            return self.b.lshr(v, c64(32)) if name == "pid" else self.b.and_(v, c64(0xFFFFFFFF))
        if name in ("uid", "gid"):
            v = self.call(U.FN_GET_CURRENT_UID_GID, I64)
            return self.b.lshr(v, c64(32)) if name == "gid" else self.b.and_(v, c64(0xFFFFFFFF))
        if name == "nsecs":
            return self.call(U.FN_KTIME_GET_NS, I64)
        if name == "elapsed":
            now = self.call(U.FN_KTIME_GET_NS, I64)
            start = self.b.load(self.map_value("globals", GLOBALS_START_NS), typ=I64)
            start.align = 8
            return self.b.sub(now, start)
        if name == "cpu":
            return self.call(U.FN_GET_SMP_PROCESSOR_ID, I64)
        if name == "rand":
            return self.call(U.FN_GET_PRANDOM_U32, I64)
        if name == "cgroup":
            return self.call(U.FN_GET_CURRENT_CGROUP_ID, I64)
        if name in ("probe", "func"):      # a probe id: the cookie, or a constant
            if self.uses_cookie:
                return self.call(U.FN_GET_ATTACH_COOKIE, I64, self.ctx)
            return c64(self.probe_ids[0])
        if name.startswith("arg") and name[3:].isdigit() and type(self.args).__name__ != "UsdtArgsT":
            n = int(name[3:])
            off = self.arg_offsets[n] if self.arg_offsets is not None else 8 * n
            return self.load(self.ctx, off)
        if name == "retval" and getattr(self.args, "ret", None) is None:
            return self.load(self.ctx, self.retval_offset)
        raise unsupported(f"the builtin '{name}'", e.span)

    def args_field(self, e: ast.FieldAccess) -> ir.Value:
        f = e.base.type.field(e.field_name)
        if getattr(f, "ctype", None) is not None:
            raise unsupported(f"the BTF-typed argument args.{e.field_name}", e.span)
        t = field_type(f, self.max_strlen)
        if not t.is_int:
            raise unsupported(f"using args.{e.field_name} ({f.type_text}) as an integer", e.span)
        size = f.size if f.size in (1, 2, 4, 8) else 8
        return self.load(self.ctx, f.offset, size, signed=bool(f.signed))

    # ------------------------------------------------------------------ conditions
    def cond(self, e: ast.Expr) -> ir.Value:
        """An i1 that is true when ``e`` is (``&&``/``||`` short-circuit)."""
        b = self.b
        if isinstance(e, ast.Unary) and e.op == "!":
            return b.not_(self.cond(e.operand))
        if isinstance(e, ast.Binary) and e.op in ("&&", "||"):
            left = self.cond(e.left)
            out = self.alloca(8)
            self.store(out, 0, b.zext(left, I64))
            rhs = lambda: self.store(out, 0, b.zext(self.cond(e.right), I64))  # noqa: E731
            if e.op == "&&":
                self.branch(left, rhs)
            else:
                self.branch(left, lambda: None, rhs)
            return b.icmp_unsigned("!=", self.load(out, 0), c64(0))
        if isinstance(e, ast.Binary) and e.op in CMP:
            if isinstance(e.left.type, StrT) and isinstance(e.right.type, StrT) \
                    and e.op in ("==", "!="):
                return self.string_equal(e)
            if not (e.left.type is not None and e.left.type.is_int
                    and e.right.type is not None and e.right.type.is_int):
                raise unsupported(f"comparing values of type '{e.left.type}'", e.span)
            l, r = self.scalar(e.left), self.scalar(e.right)
            if signed_pair(e.left.type, e.right.type, e.left, e.right):
                return b.icmp_signed(CMP[e.op], l, r)
            return b.icmp_unsigned(CMP[e.op], l, r)
        if isinstance(e, ast.BoolLit):
            return ir.Constant(I1, int(e.value))
        return b.icmp_unsigned("!=", self.scalar(e), c64(0))

    def mem_of(self, e: ast.Expr):
        """A pointer to memory holding the value of ``e``."""
        if isinstance(e, ast.Var) and e.name in self.vars and not is_scalar(self.var_types[e.name]):
            return self.vars[e.name]
        if isinstance(e, ast.TupleIndex):
            return self.gep(self.mem_of(e.base), e.base.type.offsets()[e.index])
        m = self.alloca(e.type.size())
        self.into(e, m, 0, e.type)
        return m

    def into(self, e: ast.Expr, base, off: int, typ: Type, in_record: bool = False) -> None:
        """Write the value of ``e`` at ``base + off`` laid out as ``typ``."""
        et = e.type
        if hasattr(self, "into_node_" + type(e).__name__):
            getattr(self, "into_node_" + type(e).__name__)(e, base, off, typ, in_record)
            return
        if is_scalar(et):
            self.store(base, off, self.scalar(e))
            return
        if isinstance(e, ast.MapRef):
            self.map_read_into(e, self.maps["@" + e.name], base, off, typ)
            return
        if isinstance(e, (ast.Call, ast.Builtin)) and hasattr(self, "into_" + e.name):
            getattr(self, "into_" + e.name)(e, base, off, typ, in_record)
            return
        if isinstance(e, ast.Var) and isinstance(et, (UserT, BufT)):
            n = min(et.size(), typ.size())
            self.copy(base, off, self.mem_of(e), 0, n)
            if typ.size() > n:
                self.zero(base, off + n, typ.size() - n)
            return
        if isinstance(e, ast.Ternary):
            self.branch(self.cond(e.cond), lambda: self.into(e.then, base, off, typ, in_record),
                        lambda: self.into(e.orelse, base, off, typ, in_record))
            return
        if isinstance(et, TupleT):
            dst = typ if isinstance(typ, TupleT) else et
            if isinstance(e, ast.TupleExpr):
                self.elems_into(e.elems, base, off, dst, dst.size(), in_record)
                return
            if isinstance(e, (ast.Var, ast.TupleIndex)):
                held = self.var_types.get(e.name, et) if isinstance(e, ast.Var) else et
                self.tuple_copy(base, off, dst, self.mem_of(e), 0, held)
                return
            raise unsupported(f"a tuple from '{type(e).__name__}'", e.span)
        if self.c_into(e, base, off, typ):
            return
        if isinstance(et, StrT):
            self.string_into(e, base, off, typ.size() if isinstance(typ, StrT) else et.size(),
                             in_record)
            return
        raise unsupported(f"values of type '{et}'", e.span)

    def checked_read(self, helper: int, dst, size, src) -> None:
        r = self.call(helper, I64, dst, size if not isinstance(size, int) else c64(size), src)
        self.branch(self.b.icmp_signed("<", r, c64(0)),
                    lambda: self.count_error(S.COUNTER_READ_FAILED))
