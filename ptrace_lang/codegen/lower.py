"""Lowering: one typed probe body (for one group of attach points) -> IR.

Values are either scalars in virtual registers, or byte strings in memory (strings, tuples)
written straight to where they are needed: a map key slot, a ring buffer record, a variable's
stack slot (``expr_into``). Conditions lower to branches (``cond``), not to 0/1 values.

Kernel maps used by every object: ``ringbuf`` (events), ``counters`` (u64s:
spec.COUNTER_*, one u64 each in the single value of an array), ``globals`` (array of one value:
the start time for ``elapsed``, read without a helper call).

``Lowering`` keeps the core (statements, variables, scalars, conditions, values into memory);
its mixins lower the rest: map access and aggregations (``lower_maps``), ring buffer records
(``lower_events``), strings (``lower_strings``), context arguments (``lower_args``), C types
(``lower_types``), functions (``lower_funcs``), stacks and symbols (``lower_symbols``), loops
(``lower_loops``), big values and scratch memory (``lower_values``).
"""
from __future__ import annotations

from ptrace_lang.target import Target

from ptrace_lang import spec as S
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import FP, R0, R1, VReg
from ptrace_lang.codegen.lower_args import ArgsLowering
from ptrace_lang.codegen.lower_events import EventsLowering, value_field  # noqa: F401
from ptrace_lang.codegen.lower_funcs import FuncsLowering
from ptrace_lang.codegen.lower_loops import LoopsLowering
from ptrace_lang.codegen.lower_builtins import BuiltinsLowering
from ptrace_lang.codegen.lower_flow import FlowLowering
from ptrace_lang.codegen.lower_maps import MapLayout, MapsLowering, map_layout  # noqa: F401
from ptrace_lang.codegen.lower_strings import StringsLowering
from ptrace_lang.codegen.lower_symbols import SymbolsLowering
from ptrace_lang.codegen.lower_tuples import TuplesLowering
from ptrace_lang.codegen.lower_types import TypesLowering, pointer_step
from ptrace_lang.codegen.lower_values import (  # noqa: F401
    SCRATCH_LIMIT, SCRATCH_MAP, Frames, ValuesLowering,
)
from ptrace_lang.codegen.emit import TOO_LARGE_HINT
from ptrace_lang.errors import NO_SPAN, CompileError, NotSupportedYet, Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema.analyze import signed_pair
from ptrace_lang.sema.types import (
    PROBE, VOID, ArgsT, ArrayT, BoolT, BufT, IntArrayT, IntT, PtrT, StrT, TupleT, Type, UsdtArgsT, UserT, is_scalar,
)

# IR instructions of one program (or loop body) at most: BPF's jumps span 32767, and a larger
# program would only spend seconds in register allocation before failing
MAX_PROGRAM_INSNS = 32768
from ptrace_lang.spec import GLOBALS_START_NS  # noqa: E402,F401  (read by elapsed)

CMP_OPS = {"==": "jeq", "!=": "jne", ">": "jgt", ">=": "jge", "<": "jlt", "<=": "jle"}
SIGNED_CMP = {"jgt": "jsgt", "jge": "jsge", "jlt": "jslt", "jle": "jsle"}
NEGATE = {"jeq": "jne", "jne": "jeq", "jgt": "jle", "jge": "jlt", "jlt": "jge", "jle": "jgt",
          "jsgt": "jsle", "jsge": "jslt", "jslt": "jsge", "jsle": "jsgt"}
ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "and", "|": "or",
         "^": "xor", "<<": "lsh", ">>": "rsh"}


class Lowering(FlowLowering, BuiltinsLowering, MapsLowering, EventsLowering, StringsLowering,
               ArgsLowering, TypesLowering, FuncsLowering, SymbolsLowering, LoopsLowering,
               ValuesLowering, TuplesLowering):
    """Builds the IR of one program."""

    def __init__(self, *, maps: dict[str, MapLayout], events: list[S.EventSpec],
                 user_map_index: dict[str, int], args: ArgsT | None, probe_ids: list[int],
                 positional: list[str], var_types: dict[str, Type], max_strlen: int,
                 uses_cookie: bool, var_spans: dict | None = None,
                 arg_offsets: tuple | None = None, retval_offset: int = 0,
                 cpid: int | None = None, ctx_guard: int | None = None,
                 target: Target | None = None, str_trunc_trailer: str = "..") -> None:
        self.target = target if target is not None else Target()
        self.str_trunc_trailer = str_trunc_trailer   # config str_trunc_trailer
        self.maps = maps
        self.events = events
        self.user_map_index = user_map_index
        self.args = args
        self.probe_ids = probe_ids
        self.positional = positional
        self.max_strlen = max_strlen
        self.uses_cookie = uses_cookie
        self.insns: list[ir.Insn] = []
        self.frame = Frames()
        self.next_vreg = 0
        self.next_label = 0
        self.span: Span | None = None
        self.vars: dict[str, object] = {}   # name -> VReg (scalars) or int stack offset
        self.var_types = var_types
        self.var_spans = var_spans or {}
        self.arg_offsets = arg_offsets
        self.retval_offset = retval_offset
        self.cpid = cpid                 # -c: the child's pid, a constant
        # iter: the ctx slot of the object iterated over; the program ends at once when it is
        # NULL (the iterator's last call)
        self.ctx_guard = ctx_guard
        self.loops: list[tuple[str, str]] = []   # (continue label, break label)
        self.ctx = self.vreg()
        self.exit_label = self.label("exit")

    # ------------------------------------------------------------------ emission helpers
    def vreg(self) -> VReg:
        self.next_vreg += 1
        return VReg(self.next_vreg)

    def label(self, hint: str = "L") -> str:
        self.next_label += 1
        return f"{hint}_{self.next_label}"

    def emit(self, insn: ir.Insn) -> None:
        if self.span is not None:
            insn.span = self.span
        if isinstance(insn, (ir.Load, ir.Store, ir.AtomicAdd)) and isinstance(insn.base, VReg) \
                and not -(1 << 15) <= insn.off < (1 << 15):
            # past the 16-bit offset of an instruction (a big record): through an address
            addr = self.vreg()
            self.insns += [ir.Alu("mov", addr, insn.base, span=insn.span),
                           ir.Alu("add", addr, insn.off, span=insn.span)]
            insn.base, insn.off = addr, 0
        cls = insn.__class__
        if cls is ir.Label or cls is ir.Jump or cls is ir.CondJump:
            self._track_flow(insn)
        self.insns.append(insn)
        if len(self.insns) > MAX_PROGRAM_INSNS:     # stop before allocating a runaway
            raise CompileError(f"The probe's program is too large: more than {MAX_PROGRAM_INSNS}"
                               " instructions", self.span or NO_SPAN, hints=[TOO_LARGE_HINT])

    def mov(self, dst, src, width: int = 64) -> None:
        self.emit(ir.Alu("mov", dst, src, width))

    def const(self, value: int) -> VReg:
        r = self.vreg()
        if -(1 << 31) <= value < (1 << 31):
            self.mov(r, value)
        else:
            self.emit(ir.LoadImm64(r, value & ((1 << 64) - 1)))
        return r

    def call(self, helper: int, *args) -> None:
        """Call a helper with ``args`` (VReg, int, ("fp", off), ("map", name), ("ptr", reg, off))."""
        for preg, a in zip(ir.ARG_REGS, args):
            if isinstance(a, tuple) and a[0] == "fp":
                # a stack address: computed once and kept where it dominates (a statement
                # after statement passing the same slots to helpers, as LLVM keeps them)
                r = self.kept_value(("fp", a[1]))
                if r is None:
                    r = self.vreg()
                    self.mov(r, FP)
                    self.emit(ir.Alu("add", r, a[1]))
                    self.remember(("fp", a[1]), r)
                self.mov(preg, r)
            elif isinstance(a, tuple) and a[0] == "map":
                self.emit(ir.LoadMapFd(preg, a[1]))
            elif isinstance(a, tuple) and a[0] == "ptr":
                self.mov(preg, a[1])
                if a[2]:
                    self.emit(ir.Alu("add", preg, a[2]))
            elif isinstance(a, int):
                if -(1 << 31) <= a < (1 << 31):
                    self.mov(preg, a)
                else:
                    self.emit(ir.LoadImm64(preg, a))
            else:
                self.mov(preg, a)
        self.emit(ir.Call(helper, len(args)))

    def result(self) -> VReg:
        r = self.vreg()
        self.mov(r, R0)
        return r

    def at(self, node: ast.Node):
        """Context manager-free span setter: returns the previous span to restore."""
        prev = self.span
        if node.span.line:
            self.span = node.span
        return prev

    # ------------------------------------------------------------------ program
    def lower_probe(self, probe: ast.Probe) -> list[ir.Insn]:
        self.span = probe.span
        self.mov(self.ctx, R1)
        if self.ctx_guard is not None:
            obj = self.vreg()
            self.emit(ir.Load(obj, self.ctx, self.ctx_guard, 8))
            self.emit(ir.CondJump("jeq", obj, 0, self.exit_label))
        # variables start as zero (bpftrace's semantics, and the verifier's rule: nothing is read
        # before it is written); a zeroing that every path overwrites is dropped by the allocator
        for name, typ in self.var_types.items():
            if not is_scalar(typ):
                self.vars[name] = self.alloc_mem(typ.size(), self.var_spans.get(name, probe.span))
                if not self.assigned_first(name, probe):
                    self.zero_mem(*self.vars[name], typ.size())
            else:
                self.mov(self.var_reg(name), 0)
        self.addr_slots_for(probe)
        if probe.predicate is not None:
            prev = self.at(probe.predicate)
            self.cond(probe.predicate, self.exit_label)
            self.span = prev
        self.block(probe.body)
        self.span = probe.span
        self.emit(ir.Label(self.exit_label))
        self.mov(R0, 0)
        self.emit(ir.Exit())
        self.finish_scratch()
        return self.insns

    def block(self, block: ast.Block) -> None:
        for s in block.stmts:
            mark = self.frame.mark()
            prev = self.at(s)
            self.stmt(s)
            self.span = prev
            self.frame.release(mark)

    def stmt(self, s: ast.Stmt) -> None:
        if isinstance(s, ast.ExprStmt):
            self.expr_stmt(s.expr)
        elif isinstance(s, ast.Assign):
            self.assign(s)
        elif isinstance(s, ast.Let):
            self.lower_let(s)
        elif isinstance(s, ast.Block):
            self.block(s)
        elif isinstance(s, ast.If):
            orelse = self.label("else")
            end = self.label("endif")
            self.cond(s.cond, orelse)
            self.block(s.then)
            if s.orelse is not None:
                self.emit(ir.Jump(end))
            self.emit(ir.Label(orelse))
            if s.orelse is not None:
                self.block(s.orelse)
                self.emit(ir.Label(end))
        elif isinstance(s, ast.While):
            top, end = self.label("while"), self.label("endwhile")
            self.emit(ir.Label(top))
            self.cond(s.cond, end)
            self.loops.append((top, end))
            self.block(s.body)
            self.loops.pop()
            self.emit(ir.Jump(top))
            self.emit(ir.Label(end))
        elif isinstance(s, ast.Unroll):
            n = self.const_value(s.count)
            for _ in range(n):
                self.block(s.body)
        elif isinstance(s, ast.Break):
            self.emit(ir.Jump(self.loops[-1][1]))
        elif isinstance(s, ast.Continue):
            self.emit(ir.Jump(self.loops[-1][0]))
        elif isinstance(s, ast.Return):
            if s.value is not None:
                self.scalar(s.value)    # evaluated for its effects; a probe returns 0
            self.emit(ir.Jump(self.exit_label))
        else:
            handler = getattr(self, "lower_" + type(s).__name__, None)
            if handler is None:
                raise NotSupportedYet(type(s).__name__, s.span)
            handler(s)

    def const_value(self, e: ast.Expr) -> int:
        if isinstance(e, ast.IntLit):
            return e.value
        if isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            return v if isinstance(v, int) else 0
        if isinstance(e, ast.Unary) and e.op == "-":
            return -self.const_value(e.operand)
        raise CompileError("expected a constant", e.span)

    def positional_value(self, n: int) -> int | str:
        if n < 1 or n > len(self.positional):
            return 0
        try:
            return int(self.positional[n - 1], 0)
        except ValueError:
            return self.positional[n - 1]

    # ------------------------------------------------------------------ variables
    def var_reg(self, name: str) -> VReg:
        r = self.vars.get(name)
        if r is None:
            r = self.vars[name] = self.vreg()
        return r

    def assign_var(self, var: ast.Var, value: ast.Expr) -> None:
        typ = self.var_types.get(var.name, var.type)
        if typ is not None and is_scalar(typ):
            v = self.scalar(value)
            vt = value.type
            if isinstance(typ, IntT) and isinstance(vt, IntT) and vt.bits > typ.bits:
                v = self.truncate(v, typ)     # into a variable declared narrower (let $x: uint8)
            self.mov(self.var_reg(var.name), v)
            self.sync_var_slot(var.name)
        else:
            self.expr_into(value, *self.vars[var.name], typ)

    def assign(self, s: ast.Assign) -> None:
        t = s.target
        if isinstance(t, ast.Var):
            if s.op is None:
                self.assign_var(t, s.value)
            else:
                reg = self.var_reg(t.name)
                step = pointer_step(t.type)
                if step and s.op in ("+", "-"):           # $p += n: by whole elements
                    v = self.vreg()
                    self.mov(v, reg)
                    self.emit(ir.Alu("add" if s.op == "+" else "sub", v, self.scaled(s.value, step)))
                else:
                    v = self.binop(s.op, reg, s.value, signed_pair(t.type, s.value.type, None, s.value))
                if isinstance(t.type, IntT) and t.type.bits < 64:
                    v = self.truncate(v, t.type)    # the variable keeps its width
                self.mov(reg, v)
                self.sync_var_slot(t.name)
            return
        assert isinstance(t, ast.MapRef)
        layout = self.maps["@" + t.name]
        if s.op is None and isinstance(s.value, ast.Call) and layout.agg is not None:
            self.aggregate(t, layout, s.value)
        elif s.op is not None:
            if s.op in ("+", "-"):
                v = self.scaled(s.value, pointer_step(t.type) or 1)
                if s.op == "-":
                    n = self.vreg()
                    self.mov(n, v)
                    self.emit(ir.Alu("neg", n))
                    v = n
                self.map_add(t, layout, v)
            else:
                cur = self.map_read_scalar(t, layout)
                v = self.binop(s.op, cur, s.value, True)
                self.map_store(t, layout, lambda base, off: self.emit(ir.Store(base, off, v, 8)))
        else:
            vt = layout.info.value_type
            if is_scalar(vt):
                v = self.scalar(s.value)
                self.map_store(t, layout, lambda base, off: self.emit(ir.Store(base, off, v, 8)))
            else:
                self.map_store(t, layout, lambda base, off: self.expr_into(s.value, base, off, vt))

    # ------------------------------------------------------------------ statements that are calls
    def expr_stmt(self, e: ast.Expr) -> None:
        if isinstance(e, ast.BlockExpr):          # its value is discarded
            self._block_stmts(e.stmts)
            self.expr_stmt(e.value)
            return
        if isinstance(e, ast.Ternary) and e.type == VOID:   # c ? print(1) : exit()
            self.ternary(e, self.expr_stmt)
            return
        if isinstance(e, ast.Call):
            handler = getattr(self, "stmt_" + e.name, None)
            if handler is not None:
                handler(e)
                return
        if isinstance(e, ast.IncDec):
            if isinstance(e.target, ast.MapRef):
                layout = self.maps["@" + e.target.name]
                step = pointer_step(e.target.type) or 1
                self.map_add(e.target, layout, self.const(step if e.op == "++" else -step))
                return
        if e.type is not None and is_scalar(e.type):
            self.scalar(e)
        elif isinstance(e, ast.Call) and (e.type is None or e.type.size() == 0):
            self.scalar_or_discard(e)
        else:
            # a value held in memory (ustack(), str(...)) computed and dropped
            self.discard_into_mem(e)

    def discard_into_mem(self, e: ast.Expr) -> None:
        mark = self.frame.mark()
        self.expr_into(e, *self.alloc_mem(e.type.size(), e.span), e.type)
        self.frame.release(mark)

    def scalar_or_discard(self, e: ast.Expr) -> None:
        self.scalar(e)

    # ------------------------------------------------------------------ memory helpers
    def zero_mem(self, base, off: int, size: int) -> None:
        if off % 8:            # (inside a tuple: aligned pieces, as the verifier wants)
            self.pad_exact(base, off, size)
            return
        for o in range(0, size, 8):
            self.emit(ir.Store(base, off + o, 0, 8 if size - o >= 8 else 1))

    def copy_mem(self, dst, dst_off: int, src, src_off: int, size: int) -> None:
        if dst_off % 8 or src_off % 8:
            self.copy_exact(dst, dst_off, src, src_off, size)
            return
        t = self.vreg()
        for o in range(0, size, 8):
            self.emit(ir.Load(t, src, src_off + o, 8))
            self.emit(ir.Store(dst, dst_off + o, t, 8))

    def store_bytes(self, base, off: int, data: bytes, size: int) -> None:
        data = data[:size].ljust((size + 7) // 8 * 8, b"\0")
        for o in range(0, len(data), 8):
            chunk = data[o:o + 8]
            if chunk == b"\0" * 8:
                self.emit(ir.Store(base, off + o, 0, 8))
                continue
            lo = int.from_bytes(chunk[:4], "little", signed=True)
            hi = int.from_bytes(chunk[4:], "little", signed=True)
            self.emit(ir.Store(base, off + o, lo, 4))
            self.emit(ir.Store(base, off + o + 4, hi, 4))

    # ------------------------------------------------------------------ values into memory
    def expr_into(self, e: ast.Expr, base, off: int, typ: Type) -> None:
        """Write the value of ``e`` at ``base + off`` laid out as ``typ`` (typ.size() bytes)."""
        prev = self.at(e)
        try:
            self._expr_into(e, base, off, typ)
        finally:
            self.span = prev

    def _expr_into(self, e: ast.Expr, base, off: int, typ: Type) -> None:
        et = e.type
        handler = getattr(self, "into_node_" + type(e).__name__, None)
        if handler is not None:
            handler(e, base, off, typ)
            return
        if is_scalar(et):
            self.emit(ir.Store(base, off, self.scalar(e), 8))
            return
        if isinstance(et, TupleT):
            if not isinstance(e, (ast.TupleExpr, ast.RecordExpr, ast.Var, ast.TupleIndex,
                                  ast.MapRef, ast.Ternary)):
                raise NotSupportedYet(f"a tuple from '{type(e).__name__}'", e.span)
            self.tuple_into(e, base, off, typ)
            return
        if isinstance(e, ast.TupleIndex):      # a string, buffer... element of a tuple
            self.elem_copy_out(e, base, off, typ)
            return
        if isinstance(e, (ast.Call, ast.Builtin)):
            handler = getattr(self, "into_" + e.name, None)
            if handler is not None:        # a function whose value is bytes in memory
                handler(e, base, off, typ)
                return
            if isinstance(e, ast.Call) and not e.args and e.name not in ("comm", "str"):
                # a builtin called as a function
                self._expr_into(ast.Builtin(e.name, span=e.span, type=et), base, off, typ)
                return
        if self.c_into(e, base, off, typ):
            return
        if isinstance(et, UserT):
            if self.map_or_ternary_into(e, base, off, typ):
                return
            src_base, src_off = self.mem_of(e)
            self.copy_value(base, off, typ, src_base, src_off, et)
            return
        if isinstance(et, StrT):
            size = typ.size() if isinstance(typ, StrT) else et.size()
            self.string_into(e, base, off, size)
            return
        if isinstance(e, ast.Cast) and isinstance(et, IntArrayT):
            self.intarray_into(e, base, off, typ)
            return
        if isinstance(et, (BufT, IntArrayT)):
            if self.map_or_ternary_into(e, base, off, typ):
                return
            if isinstance(e, (ast.Var, ast.TupleIndex)):
                src_base, src_off = self.mem_of(e)
                self.copy_value(base, off, typ, src_base, src_off, et)
                return
        raise NotSupportedYet(f"values of type '{et}' here", e.span)

    def map_or_ternary_into(self, e: ast.Expr, base, off: int, typ: Type) -> bool:
        """A value held in memory that comes from a map read or a ternary: written at
        ``base + off``; False for other expressions."""
        if isinstance(e, ast.MapRef):
            self.map_read_into(e, self.maps["@" + e.name], base, off, typ)
            return True
        if isinstance(e, ast.Ternary):
            self.ternary(e, lambda x: self.expr_into(x, base, off, typ))
            return True
        return False

    def copy_value(self, dst, dst_off, dt: Type, src, src_off, st: Type) -> None:
        n = min(dt.size(), st.size())
        self.copy_mem(dst, dst_off, src, src_off, n)
        if dt.size() > n:
            self.zero_mem(dst, dst_off + n, dt.size() - n)

    def held_type(self, e: ast.Expr) -> Type:
        """The layout of the memory ``mem_of(e)`` gives: a variable's slot is laid out as its
        final (widest) type, which a read before a widening assignment does not have."""
        if isinstance(e, ast.Var) and isinstance(self.vars.get(e.name), tuple):
            return self.var_types.get(e.name) or e.type
        if isinstance(e, ast.TupleIndex):
            bt = self.held_type(e.base)
            if isinstance(bt, TupleT):
                return bt.elems[e.index]
        return e.type

    def mem_of(self, e: ast.Expr) -> tuple[object, int]:
        """Memory holding the (non-scalar) value of ``e``: a variable's slot, a member of a tuple
        held in memory, or a new temporary."""
        if isinstance(e, ast.Var) and isinstance(self.vars.get(e.name), tuple):
            return self.vars[e.name]
        if isinstance(e, ast.TupleIndex):
            b, o = self.mem_of(e.base)
            return b, o + self.held_type(e.base).offsets()[e.index]
        base, off = self.alloc_mem(e.type.size(), e.span)
        self.expr_into(e, base, off, e.type)
        return base, off

    def ptr_arg(self, base, off):
        return ("fp", off) if base == FP else ("ptr", base, off)

    helper_checks = 0        # -k: a failed read also reports itself, located, per event

    def checked_read(self, helper: int, base, off: int, size: int, src) -> None:
        self.call(helper, self.ptr_arg(base, off), size, src)
        ok = self.label("readok")
        self.emit(ir.CondJump("jsge", R0, 0, ok))
        self.count_error(S.COUNTER_READ_FAILED)
        if self.helper_checks:
            from ptrace_lang.bpf.helpers import HELPER_NAMES

            # (a record of its own, possibly while another is reserved: keep that one's labels)
            outer = self.__dict__.get("_skip"), self.__dict__.get("_done")
            self.warning(f"Failed to {HELPER_NAMES[helper]}: the memory could not be read "
                         "(an invalid or unmapped address)", self.span)
            self._skip, self._done = outer
        self.emit(ir.Label(ok))

    def count_error(self, which: int) -> None:
        """counters[which] += 1: an atomic add straight into the array's value (cold path)."""
        one = self.vreg()
        ptr = self.counters_address()
        self.mov(one, 1)
        self.emit(ir.AtomicAdd(ptr, which * 8, one, 8))

    # ------------------------------------------------------------------ scalars
    def scalar(self, e: ast.Expr) -> VReg:
        prev = self.at(e)
        try:
            return self._scalar(e)
        finally:
            self.span = prev

    def _scalar(self, e: ast.Expr) -> VReg:
        if isinstance(e, (ast.FieldAccess, ast.Unary, ast.Index, ast.Binary, ast.Sizeof,
                          ast.Offsetof)):
            got = self.c_scalar(e)
            if got is not None:
                return got
        if isinstance(e, ast.IntLit):
            return self.const(e.value)
        if isinstance(e, ast.BoolLit):
            return self.const(int(e.value))
        if isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            return self.const(v if isinstance(v, int) else 0)
        if isinstance(e, ast.ParamCount):
            return self.const(len(self.positional))
        if isinstance(e, ast.Var):
            return self.var_reg(e.name)
        if isinstance(e, ast.Builtin):
            return self.builtin(e.name, e)
        if isinstance(e, ast.Call):
            handler = getattr(self, "call_" + e.name, None)
            if handler is not None:        # a function whose value is a scalar
                return handler(e)
            if not e.args and e.type is not None and is_scalar(e.type):
                return self.builtin(e.name, e)      # a builtin called as a function: pid()
            if e.type is not None and is_scalar(e.type):
                raise NotSupportedYet(f"the function '{e.name}' as a value", e.span)
            if e.type is None or e.type.size() == 0 or hasattr(self, "stmt_" + e.name):
                # (expr_stmt would come back here: a call with neither handler)
                if not hasattr(self, "stmt_" + e.name):
                    raise NotSupportedYet(f"the function '{e.name}' here", e.span)
                self.expr_stmt(e)
            else:
                self.discard_into_mem(e)
            return self.const(0)
        if isinstance(e, ast.MapRef):
            layout = self.maps["@" + e.name]
            if layout.agg is not None:     # count/sum/min/max/avg read as an integer
                return self._agg_value(layout, self.key_arg(self.build_key(e, layout)), None)
            return self.map_read_scalar(e, layout)
        if isinstance(e, ast.Binary):
            if e.op in ("==", "!=", "<", "<=", ">", ">=", "&&", "||"):
                return self.cond_value(e)
            a = self.scalar(e.left)
            return self.binop(e.op, a, e.right, signed_pair(e.left.type, e.right.type, e.left, e.right))
        if isinstance(e, ast.Unary):
            if e.op == "!":
                return self.cond_value(e)
            v = self.scalar(e.operand)
            out = self.vreg()
            self.mov(out, v)
            if e.op == "-":
                self.emit(ir.Alu("neg", out))
                return self.truncate(out, e.type)
            self.emit(ir.Alu("xor", out, -1))
            return self.truncate(out, e.type)
        if isinstance(e, ast.IncDec):
            if isinstance(e.target, ast.Var):
                reg = self.var_reg(e.target.name)
                old = None
                if not e.prefix:
                    old = self.vreg()
                    self.mov(old, reg)
                step = pointer_step(e.target.type) or 1      # $p++: one element on
                self.emit(ir.Alu("add" if e.op == "++" else "sub", reg, step))
                self.sync_var_slot(e.target.name)
                return reg if e.prefix else old
            layout = self.maps["@" + e.target.name]
            step = pointer_step(e.target.type) or 1
            self.map_add(e.target, layout, self.const(step if e.op == "++" else -step))
            # the value: the entry read again (as bpftrace, not one atomic step with the add)
            out = self.map_read_scalar(e.target, layout)
            if not e.prefix:
                self.emit(ir.Alu("sub" if e.op == "++" else "add", out, step))
            return out
        if isinstance(e, ast.Ternary):
            out = self.vreg()
            self.ternary(e, lambda x: self.mov(out, self.scalar(x)))
            return out
        if isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
            return self.args_field(e)
        if isinstance(e, ast.TupleIndex):
            return self.elem_value(e.base, e.index)
        if isinstance(e, ast.Index) and e.array_index is not None:
            return self.intarray_element(e)
        if isinstance(e, ast.Cast):
            if isinstance(e.operand.type, (IntArrayT, StrT)):
                return self.intarray_to_int(e)
            v = self.scalar(e.operand)
            return self.truncate(v, e.type)
        handler = getattr(self, "scalar_" + type(e).__name__, None)
        if handler is not None:
            return handler(e)
        raise NotSupportedYet(f"the expression '{type(e).__name__}' as a value", e.span)

    def truncate(self, v: VReg, t: Type) -> VReg:
        if not isinstance(t, IntT) or t.bits == 64:
            if isinstance(t, BoolT):
                out = self.vreg()
                skip = self.label("bool")
                self.mov(out, 0)
                self.emit(ir.CondJump("jeq", v, 0, skip))
                self.mov(out, 1)
                self.emit(ir.Label(skip))
                return out
            return v
        out = self.vreg()
        self.mov(out, v)
        shift = 64 - t.bits
        if t.signed:
            self.emit(ir.Alu("lsh", out, shift))
            self.emit(ir.Alu("arsh", out, shift))
        elif t.bits == 32:
            self.mov(out, out, 32)
        else:
            self.emit(ir.Alu("and", out, (1 << t.bits) - 1))
        return out

    def scaled(self, e: ast.Expr, step: int) -> VReg:
        """The value of ``e`` times ``step`` (a pointer's element size), in a new register."""
        v = self.vreg()
        self.mov(v, self.scalar(e))
        if step != 1:
            self.emit(ir.Alu("mul", v, step))
        return v

    def binop(self, op: str, a: VReg, right: ast.Expr, signed: bool) -> VReg:
        out = self.vreg()
        self.mov(out, a)
        if isinstance(right, ast.IntLit) and -(1 << 31) <= right.value < (1 << 31):
            b = right.value
        else:
            b = self.scalar(right)
        name = ARITH[op]
        if name in ("div", "mod"):
            if isinstance(b, int) and b == 0:
                b = self.const(0)    # a literal zero divides through the run-time check too
            self.divide(name, out, b, signed, self.span)
            return out
        if signed and name == "rsh":
            name = "arsh"
        if isinstance(b, int) and name in ("lsh", "rsh", "arsh"):
            b &= 63      # as a shift by a register does (the verifier refuses a literal >= 64)
        self.emit(ir.Alu(name, out, b))
        return out

    # ------------------------------------------------------------------ conditions
    def ternary(self, e: ast.Ternary, lower_arm) -> None:
        """``cond ? then : orelse``, lowering each arm with ``lower_arm(expr)``."""
        orelse, end = self.label("telse"), self.label("tend")
        self.cond(e.cond, orelse)
        lower_arm(e.then)
        self.emit(ir.Jump(end))
        self.emit(ir.Label(orelse))
        lower_arm(e.orelse)
        self.emit(ir.Label(end))

    def cond_value(self, e: ast.Expr) -> VReg:
        out = self.vreg()
        false = self.label("false")
        self.mov(out, 0)
        self.cond(e, false)
        self.mov(out, 1)
        self.emit(ir.Label(false))
        return out

    def cond(self, e: ast.Expr, false_label: str) -> None:
        """Fall through when ``e`` is true, jump to ``false_label`` when it is false."""
        prev = self.at(e)
        try:
            self._cond(e, false_label)
        finally:
            self.span = prev

    def _cond(self, e: ast.Expr, false_label: str) -> None:
        if isinstance(e, ast.Unary) and e.op == "!":
            true = self.label("not")
            self.cond(e.operand, true)
            self.emit(ir.Jump(false_label))
            self.emit(ir.Label(true))
            return
        if isinstance(e, ast.Binary) and e.op == "&&":
            self.cond(e.left, false_label)
            self.cond(e.right, false_label)
            return
        if isinstance(e, ast.Binary) and e.op == "||":
            right, true = self.label("or"), self.label("ortrue")
            self.cond(e.left, right)
            self.emit(ir.Jump(true))
            self.emit(ir.Label(right))
            self.cond(e.right, false_label)
            self.emit(ir.Label(true))
            return
        if isinstance(e, ast.Binary) and e.op in CMP_OPS:
            if PROBE in (e.left.type, e.right.type) and isinstance(e.left.type, StrT) != \
                    isinstance(e.right.type, StrT):
                self.probe_name_compare(e, false_label)
                return
            if isinstance(e.left.type, (StrT, TupleT, BufT, IntArrayT, ArrayT)):
                self.memory_compare(e, false_label)
                return
            op = CMP_OPS[e.op]
            if op in SIGNED_CMP and signed_pair(e.left.type, e.right.type, e.left, e.right):
                op = SIGNED_CMP[op]
            if self.map_scalar_ref(e.left) and isinstance(e.right, ast.IntLit) \
                    and -(1 << 31) <= e.right.value < (1 << 31):
                self.map_compare(e.left, op, e.right.value, false_label)
                return
            a = self.scalar(e.left)
            if isinstance(e.right, ast.IntLit) and -(1 << 31) <= e.right.value < (1 << 31):
                b = e.right.value
            else:
                b = self.scalar(e.right)
            self.emit(ir.CondJump(NEGATE[op], a, b, false_label))
            return
        if isinstance(e, ast.BoolLit):
            if not e.value:
                self.emit(ir.Jump(false_label))
            return
        if self.map_scalar_ref(e):
            self.map_compare(e, "jne", 0, false_label)
            return
        v = self.scalar(e)
        self.emit(ir.CondJump("jeq", v, 0, false_label))
