"""Lowering: one typed probe body (for one group of attach points) -> IR.

Values are either scalars in virtual registers, or byte strings in memory (strings, tuples)
written straight to where they are needed: a map key slot, a ring buffer record, a variable's
stack slot (``expr_into``). Conditions lower to branches (``cond``), not to 0/1 values.

Kernel maps used by every object: ``ringbuf`` (events), ``counters`` (u64s:
spec.COUNTER_*, one u64 each in the single value of an array), ``globals`` (array of one value: the start time for ``elapsed``, read without a helper call).
"""
from __future__ import annotations

from ptrace_lang.records import dataclass
from ptrace_lang.target import Target

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import (
    BPF_ANY, BPF_NOEXIST, FN_GET_ATTACH_COOKIE, FN_GET_CURRENT_CGROUP_ID, FN_GET_CURRENT_COMM,
    FN_GET_CURRENT_PID_TGID, FN_GET_CURRENT_UID_GID, FN_GET_PRANDOM_U32,
    FN_GET_SMP_PROCESSOR_ID, FN_KTIME_GET_NS, FN_MAP_DELETE_ELEM, FN_MAP_LOOKUP_ELEM,
    FN_MAP_UPDATE_ELEM, FN_PROBE_READ_KERNEL, FN_PROBE_READ_KERNEL_STR, FN_PROBE_READ_STR,
    FN_PROBE_READ_USER, FN_PROBE_READ_USER_STR, FN_RINGBUF_RESERVE, FN_RINGBUF_SUBMIT,
)
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.lower_funcs import FuncsLowering
from ptrace_lang.codegen.lower_values import (  # noqa: F401
    SCRATCH_LIMIT, SCRATCH_MAP, Frames, ValuesLowering, str_field,
)
from ptrace_lang.codegen.ir import FP, R0, R1, VReg
from ptrace_lang.codegen.lower_types import TypesLowering, c_value_field, str_helper
from ptrace_lang.codegen.lower_loops import LoopsLowering
from ptrace_lang.codegen.lower_symbols import SymbolsLowering
from ptrace_lang.errors import NO_SPAN, CompileError, NotSupportedYet, Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema.analyze import MapInfo, field_type, is_signed, signed_pair
from ptrace_lang.sema.types import (
    FUNC, PROBE, AggT, ArgsT, BoolT, BufT, IntArrayT, IntT, PtrT, StrT, TupleT, Type, UsdtArgsT,
    UserT, is_scalar,
)

# struct pt_regs (x86-64) offsets of every register name a USDT note may use
X86_PT_REGS: dict[str, int] = {}
for _off, _names in ((0, "r15"), (8, "r14"), (16, "r13"), (24, "r12"), (48, "r11"), (56, "r10"),
                     (64, "r9"), (72, "r8")):
    X86_PT_REGS.update({_names: _off, _names + "d": _off, _names + "w": _off, _names + "b": _off})
for _off, _names in ((32, "rbp ebp bp bpl"), (40, "rbx ebx bx bl"), (80, "rax eax ax al"),
                     (88, "rcx ecx cx cl"), (96, "rdx edx dx dl"), (104, "rsi esi si sil"),
                     (112, "rdi edi di dil"), (128, "rip eip"), (152, "rsp esp sp spl")):
    X86_PT_REGS.update({n: _off for n in _names.split()})

GLOBALS_START_NS = 0   # offset in the value of the ``globals`` array

CMP_OPS = {"==": "jeq", "!=": "jne", ">": "jgt", ">=": "jge", "<": "jlt", "<=": "jle"}
SIGNED_CMP = {"jgt": "jsgt", "jge": "jsge", "jlt": "jslt", "jle": "jsle"}
NEGATE = {"jeq": "jne", "jne": "jeq", "jgt": "jle", "jge": "jlt", "jlt": "jge", "jle": "jgt",
          "jsgt": "jsle", "jsge": "jslt", "jslt": "jsge", "jsle": "jsgt"}
ARITH = {"+": "add", "-": "sub", "*": "mul", "/": "div", "%": "mod", "&": "and", "|": "or",
         "^": "xor", "<<": "lsh", ">>": "rsh"}


def kernel_map_name(user_name: str) -> str:
    """``@`` -> ``m_``, ``@x`` -> ``m_x`` (kernel names: 15 chars, [A-Za-z0-9_.])."""
    return "m_" + user_name[1:]


@dataclass
class MapLayout:
    """How a script map is kept in the kernel."""

    info: MapInfo
    kernel_name: str
    key_size: int        # script key bytes (8 for scalar maps), before any hist bucket
    value_size: int
    percpu: bool

    @property
    def agg(self) -> AggT | None:
        vt = self.info.value_type
        return vt if isinstance(vt, AggT) else None

    @property
    def kernel_key_size(self) -> int:
        a = self.agg
        return self.key_size + (8 if a is not None and a.kind in ("hist", "lhist") else 0)


def map_layout(info: MapInfo) -> MapLayout:
    key_size = info.key_type.size() if info.key_type is not None else 8
    vt = info.value_type
    if isinstance(vt, AggT):
        value_size = {"count": 8, "sum": 8, "min": 16, "max": 16, "avg": 16, "stats": 16,
                      "hist": 8, "lhist": 8}[vt.kind]
        return MapLayout(info, kernel_map_name(info.name), key_size, value_size, True)
    return MapLayout(info, kernel_map_name(info.name), key_size, max(vt.size(), 8), False)


class Lowering(TypesLowering, FuncsLowering, SymbolsLowering, LoopsLowering, ValuesLowering):
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
        self.insns.append(insn)

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
                self.mov(preg, FP)
                self.emit(ir.Alu("add", preg, a[1]))
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
        else:
            self.expr_into(value, *self.vars[var.name], typ)

    def assign(self, s: ast.Assign) -> None:
        t = s.target
        if isinstance(t, ast.Var):
            if s.op is None:
                self.assign_var(t, s.value)
            else:
                reg = self.var_reg(t.name)
                v = self.binop(s.op, reg, s.value, signed_pair(t.type, s.value.type, None, s.value))
                if isinstance(t.type, IntT) and t.type.bits < 64:
                    v = self.truncate(v, t.type)    # the variable keeps its width
                self.mov(reg, v)
            return
        assert isinstance(t, ast.MapRef)
        layout = self.maps["@" + t.name]
        if s.op is None and isinstance(s.value, ast.Call) and layout.agg is not None:
            self.aggregate(t, layout, s.value)
        elif s.op is not None:
            if s.op in ("+", "-"):
                v = self.scalar(s.value)
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
        if isinstance(e, ast.Call):
            handler = getattr(self, "stmt_" + e.name, None)
            if handler is not None:
                handler(e)
                return
        if isinstance(e, ast.IncDec):
            if isinstance(e.target, ast.MapRef):
                layout = self.maps["@" + e.target.name]
                self.map_add(e.target, layout, self.const(1 if e.op == "++" else -1))
                return
        if e.type is not None and is_scalar(e.type):
            self.scalar(e)
        elif isinstance(e, ast.Call):
            self.scalar_or_discard(e)
        else:
            mark = self.frame.mark()
            self.expr_into(e, *self.alloc_mem(e.type.size(), e.span), e.type)
            self.frame.release(mark)

    def scalar_or_discard(self, e: ast.Expr) -> None:
        self.scalar(e)

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
        delim = e.args[1].value if len(e.args) > 1 else " "
        fields = [S.Field("int", 8, 8)] + [S.Field("str", 16 + i * size, size)
                                           for i in range(S.JOIN_MAX)]
        ev_id = len(self.events)
        self.events.append(S.EventSpec(S.EV_JOIN, delim, fields, e.span))
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
            rec = self.reserve(S.RECORD_HEADER + 16)
            self.header(rec, S.EV_PRINT_MAP, idx)
            self.emit(ir.Store(rec, 8, self.const(top), 8))
            self.emit(ir.Store(rec, 16, self.const(div), 8))
            self.submit(rec)
            return
        self.record(S.EV_PRINT_VALUE, "", [first], e.span)

    def stmt_time(self, e: ast.Call) -> None:
        fmt = e.args[0].value if e.args else "%H:%M:%S\n"
        self.record(S.EV_TIME, fmt, [], e.span)

    def stmt_exit(self, e: ast.Call) -> None:
        code = self.scalar(e.args[0]) if e.args else None
        rec = self.reserve(S.RECORD_HEADER + 8)
        self.header(rec, S.EV_EXIT, 0)
        self.emit(ir.Store(rec, 8, code if code is not None else 0, 8))
        self.submit(rec)
        self.emit(ir.Jump(self.exit_label))

    def stmt_delete(self, e: ast.Call) -> None:
        ref = e.args[0]
        layout = self.maps["@" + ref.name]
        if layout.agg is not None and layout.agg.kind in ("hist", "lhist"):
            raise NotSupportedYet("delete() on a hist/lhist map", e.span)
        key = self.build_key(ref, layout)
        self.call(FN_MAP_DELETE_ELEM, ("map", layout.kernel_name), self.key_arg(key))

    def _map_event(self, kind: int, e: ast.Call) -> None:
        idx = self.user_map_index["@" + e.args[0].name]
        rec = self.reserve(S.RECORD_HEADER)
        self.header(rec, kind, idx)
        self.submit(rec)

    def stmt_clear(self, e: ast.Call) -> None:
        self._map_event(S.EV_CLEAR_MAP, e)

    def stmt_zero(self, e: ast.Call) -> None:
        self._map_event(S.EV_ZERO_MAP, e)

    # ------------------------------------------------------------------ ring buffer records
    def reserve(self, size: int) -> VReg | None:
        """Reserve a record; on failure count a lost event and skip to ``self._skip``."""
        self.call(FN_RINGBUF_RESERVE, ("map", "ringbuf"), size, 0)
        rec = self.result()
        self._skip = self.label("lost")
        self._done = self.label("sent")
        self.emit(ir.CondJump("jeq", rec, 0, self._skip))
        return rec

    def header(self, rec: VReg, kind: int, ident: int) -> None:
        """The record header (spec.py): kind and id in one 32-bit store."""
        if not 0 <= ident <= S.MAX_RECORD_ID:
            raise CompileError(f"too many output statements (more than {S.MAX_RECORD_ID})",
                               NO_SPAN)
        self.emit(ir.Store(rec, 0, kind | ident << 8, 4))

    def submit(self, rec: VReg) -> None:
        skip, done = self._skip, self._done
        self.call(FN_RINGBUF_SUBMIT, rec, 0)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(skip))
        self.count_error(S.COUNTER_LOST_EVENTS)
        self.emit(ir.Label(done))

    def record(self, kind: int, fmt: str, args: list[ast.Expr], span: Span) -> None:
        fields, off = [], S.RECORD_HEADER
        for a in args:
            f = value_field(a.type, off, trailer=self.str_trunc_trailer)
            fields.append(f)
            off += a.type.size()
        ev_id = len(self.events)
        self.events.append(S.EventSpec(kind, fmt, fields, span))
        # scalars are computed before reserving (an expression may hold statements that write
        # records of their own), but for builtins: computed into the open record, their helper's
        # result is stored from r0 as it is (no copy kept across the reserve call)
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

    def count_error(self, which: int) -> None:
        """counters[which] += 1: an atomic add straight into the array's value (cold path)."""
        ptr, one = self.vreg(), self.vreg()
        self.emit(ir.LoadMapFd(ptr, "counters", which * 8))
        self.mov(one, 1)
        self.emit(ir.AtomicAdd(ptr, 0, one, 8))

    # ------------------------------------------------------------------ maps
    def build_key(self, ref: ast.MapRef, layout: MapLayout, extra: int = 0, base=None) -> int:
        """Write the key of ``ref`` into a fresh stack slot (plus ``extra`` bytes); return its offset.
        With ``base`` (a register holding the slot's address) the key is written through it."""
        off = 0
        if base is None and not extra:
            in_place = self.var_as_key(ref, layout)
            if in_place is not None:
                return in_place
        if base is None:
            base, off = self.alloc_mem(layout.key_size + extra, ref.span)
            if base != FP:      # a key in scratch memory: passed by its address
                base, off = self.address_of(base, off), 0
                self._build_key_into(ref, layout, base, off)
                return base
        self._build_key_into(ref, layout, base, off)
        return off

    def _build_key_into(self, ref: ast.MapRef, layout: MapLayout, base, off: int) -> None:
        if ref.keys is None:
            self.emit(ir.Store(base, off, 0, 8))
            return
        kt = layout.info.key_type
        if len(ref.keys) == 1:
            self.expr_into(ref.keys[0], base, off, kt)
        else:
            tup = ast.TupleExpr(ref.keys, span=ref.span, type=TupleT(tuple(k.type for k in ref.keys)))
            self.expr_into(tup, base, off, kt)

    @staticmethod
    def key_arg(key):
        """A key given as a stack offset or as a register holding its address, as a call argument."""
        return ("fp", key) if isinstance(key, int) else ("ptr", key, 0)

    def lookup(self, layout: MapLayout, key) -> VReg:
        self.call(FN_MAP_LOOKUP_ELEM, ("map", layout.kernel_name), self.key_arg(key))
        return self.result()

    def update(self, layout: MapLayout, key, val, flags: int = BPF_ANY) -> None:
        """``val``: a stack offset, or a (base, offset) pair from ``alloc_mem``."""
        val_arg = ("fp", val) if isinstance(val, int) else self.ptr_arg(*val)
        self.call(FN_MAP_UPDATE_ELEM, ("map", layout.kernel_name), self.key_arg(key), val_arg, flags)
        # counters[MAP_FULL] += (r0 < 0): branchless, one instruction fewer than a test
        failed, ptr = self.vreg(), self.vreg()
        self.mov(failed, R0)
        self.emit(ir.Alu("rsh", failed, 63))
        self.emit(ir.LoadMapFd(ptr, "counters", S.COUNTER_MAP_FULL * 8))
        self.emit(ir.AtomicAdd(ptr, 0, failed, 8))

    def map_store(self, ref: ast.MapRef, layout: MapLayout, write_value) -> None:
        key = self.build_key(ref, layout)
        val = self.alloc_mem(layout.value_size, ref.span)
        write_value(*val)
        self.update(layout, key, val)

    def map_add(self, ref: ast.MapRef, layout: MapLayout, delta: VReg) -> None:
        """Atomically add ``delta`` to an integer value map entry, creating it if missing."""
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)
        hit, done = self.label("hit"), self.label("added")
        self.emit(ir.CondJump("jne", v, 0, hit))
        val = self.frame.alloc(8, ref.span)
        self.emit(ir.Store(FP, val, 0, 8))
        self.call(FN_MAP_UPDATE_ELEM, ("map", layout.kernel_name), self.key_arg(key), ("fp", val), BPF_NOEXIST)
        v2 = self.lookup(layout, key)
        self.emit(ir.CondJump("jne", v2, 0, hit + "_2"))
        self.count_error(S.COUNTER_MAP_FULL)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(hit + "_2"))
        self.emit(ir.AtomicAdd(v2, 0, delta, 8))
        self.emit(ir.Jump(done))
        self.emit(ir.Label(hit))
        self.emit(ir.AtomicAdd(v, 0, delta, 8))
        self.emit(ir.Label(done))

    def map_read_scalar(self, ref: ast.MapRef, layout: MapLayout) -> VReg:
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)
        out = self.vreg()
        miss, done = self.label("miss"), self.label("read")
        self.emit(ir.CondJump("jeq", v, 0, miss))
        self.emit(ir.Load(out, v, 0, 8))
        self.emit(ir.Jump(done))
        self.emit(ir.Label(miss))
        self.mov(out, 0)
        self.emit(ir.Label(done))
        return out

    def map_read_into(self, ref: ast.MapRef, layout: MapLayout, base, off: int, typ: Type) -> None:
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)
        miss, done = self.label("miss"), self.label("read")
        self.emit(ir.CondJump("jeq", v, 0, miss))
        src_size = layout.info.value_type.size()
        self.copy_mem(base, off, v, 0, min(src_size, typ.size()))
        if typ.size() > src_size:
            self.zero_mem(base, off + src_size, typ.size() - src_size)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(miss))
        self.zero_mem(base, off, typ.size())
        self.emit(ir.Label(done))

    def aggregate(self, ref: ast.MapRef, layout: MapLayout, call: ast.Call) -> None:
        agg = layout.agg
        kind = agg.kind
        value = self.scalar(call.args[0]) if call.args else None
        extra = 8 if kind in ("hist", "lhist") else 0
        if kind == "hist":
            bucket = self.hist_bucket(value, agg.hist_k)
        elif kind == "lhist":
            bucket = self.lhist_bucket(value, *agg.lhist)
        # the key's address is computed once and kept: the key is written through it and it is
        # passed to the lookup and, on a miss, to the update
        key = self.var_as_key(ref, layout) if not extra else None
        if key is None:
            key = self.address_of(*self.alloc_mem(layout.key_size + extra, ref.span))
            self.build_key(ref, layout, extra, base=key)
        elif isinstance(key, int):
            key = self.address_of(FP, key)
        if extra:
            self.emit(ir.Store(key, layout.key_size, bucket, 8))
        v = self.lookup(layout, key)
        miss, done = self.label("miss"), self.label("agg")
        self.emit(ir.CondJump("jeq", v, 0, miss))
        t = self.vreg()
        if kind in ("count", "hist", "lhist"):
            self.mov(t, 1)
            self.emit(ir.AtomicAdd(v, 0, t, 8))
        elif kind == "sum":
            self.emit(ir.Load(t, v, 0, 8))
            self.emit(ir.Alu("add", t, value))
            self.emit(ir.Store(v, 0, t, 8))
        elif kind in ("avg", "stats"):
            self.emit(ir.Load(t, v, 0, 8))
            self.emit(ir.Alu("add", t, 1))
            self.emit(ir.Store(v, 0, t, 8))
            t2 = self.vreg()
            self.emit(ir.Load(t2, v, 8, 8))
            self.emit(ir.Alu("add", t2, value))
            self.emit(ir.Store(v, 8, t2, 8))
        elif kind in ("min", "max"):
            store = self.label("set")
            self.emit(ir.Load(t, v, 8, 8))
            self.emit(ir.CondJump("jeq", t, 0, store))
            cur = self.vreg()
            self.emit(ir.Load(cur, v, 0, 8))
            op = ("jsle" if agg.signed else "jle") if kind == "min" else ("jsge" if agg.signed else "jge")
            # keep the current value when it is already <= (min) / >= (max) the new one
            self.emit(ir.CondJump(op, cur, value, done))
            self.emit(ir.Label(store))
            self.emit(ir.Store(v, 0, value, 8))
            self.emit(ir.Store(v, 8, 1, 8))
        self.emit(ir.Jump(done))
        self.emit(ir.Label(miss))
        val = self.frame.alloc(layout.value_size, call.span)
        if kind in ("count", "hist", "lhist"):
            self.emit(ir.Store(FP, val, 1, 8))
        elif kind == "sum":
            self.emit(ir.Store(FP, val, value, 8))
        elif kind in ("avg", "stats"):
            self.emit(ir.Store(FP, val, 1, 8))
            self.emit(ir.Store(FP, val + 8, value, 8))
        else:
            self.emit(ir.Store(FP, val, value, 8))
            self.emit(ir.Store(FP, val + 8, 1, 8))
        self.update(layout, key, val)
        self.emit(ir.Label(done))

    def hist_bucket(self, value: VReg, k: int) -> VReg:
        """Bucket index exactly as runtime.format.hist_index defines it (N = 2^k):
        v < 0 -> 0; v < N -> v + 1; else with p = floor(log2 v), s = p - k:
        (s << k) + (v >> s) + 1, which is p + 2 when k = 0."""
        out = self.vreg()
        done = self.label("bucket")
        self.mov(out, 0)
        self.emit(ir.CondJump("jslt", value, 0, done))
        self.mov(out, value)
        self.emit(ir.Alu("add", out, 1))
        self.emit(ir.CondJump("jlt", value, 1 << k, done))
        v = self.vreg()
        self.mov(v, value)
        lg = self.vreg()
        self.mov(lg, 0)
        for shift in (32, 16, 8, 4, 2, 1):
            skip = self.label("lg")
            if shift == 32:
                lim = self.const((1 << 32) - 1)
                self.emit(ir.CondJump("jle", v, lim, skip))
            else:
                self.emit(ir.CondJump("jle", v, (1 << shift) - 1, skip))
            self.emit(ir.Alu("rsh", v, shift))
            self.emit(ir.Alu("add", lg, shift))
            self.emit(ir.Label(skip))
        if k == 0:
            self.mov(out, lg)
            self.emit(ir.Alu("add", out, 2))
        else:
            s = lg
            self.emit(ir.Alu("sub", s, k))
            self.mov(out, value)
            self.emit(ir.Alu("rsh", out, s))
            self.emit(ir.Alu("add", out, 1))
            t = self.vreg()
            self.mov(t, s)
            self.emit(ir.Alu("lsh", t, k))
            self.emit(ir.Alu("add", out, t))
        self.emit(ir.Label(done))
        return out

    def lhist_bucket(self, value: VReg, lo: int, hi: int, step: int) -> VReg:
        """Bucket index as runtime.format.lhist_index: v < lo -> 0, v > hi -> n + 1,
        else (v - lo) / step + 1, with n = (hi - lo) / step."""
        out = self.vreg()
        done = self.label("bucket")
        n = (hi - lo) // step
        self.mov(out, 0)
        self.emit(ir.CondJump("jslt", value, lo, done))
        self.mov(out, n + 1)
        self.emit(ir.CondJump("jsgt", value, hi, done))
        self.mov(out, value)
        if lo:
            self.emit(ir.Alu("sub", out, lo))
        if step != 1:
            self.emit(ir.Alu("div", out, step))
        self.emit(ir.Alu("add", out, 1))
        self.emit(ir.Label(done))
        return out

    # ------------------------------------------------------------------ memory helpers
    def zero_mem(self, base, off: int, size: int) -> None:
        for o in range(0, size, 8):
            self.emit(ir.Store(base, off + o, 0, 8 if size - o >= 8 else 1))

    def copy_mem(self, dst, dst_off: int, src, src_off: int, size: int) -> None:
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
        if isinstance(e, ast.RecordExpr):
            self.record_into(e, base, off, typ)
            return
        if isinstance(et, TupleT):
            dst_elems = typ.elems if isinstance(typ, TupleT) else et.elems
            offs = TupleT(tuple(dst_elems)).offsets()
            if isinstance(e, ast.TupleExpr):
                for x, dt, o in zip(e.elems, dst_elems, offs):
                    self.expr_into(x, base, off + o, dt)
                return
            if self.map_or_ternary_into(e, base, off, typ):
                return
            if not isinstance(e, (ast.Var, ast.TupleIndex)):
                raise NotSupportedYet(f"a tuple from '{type(e).__name__}'", e.span)
            src_base, src_off = self.mem_of(e)
            self.tuple_copy(base, off, typ if isinstance(typ, TupleT) else et, src_base, src_off, et)
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

    def mem_of(self, e: ast.Expr) -> tuple[object, int]:
        """Memory holding the (non-scalar) value of ``e``: a variable's slot, a member of a tuple
        held in memory, or a new temporary."""
        if isinstance(e, ast.Var) and isinstance(self.vars.get(e.name), tuple):
            return self.vars[e.name]
        if isinstance(e, ast.TupleIndex):
            b, o = self.mem_of(e.base)
            return b, o + e.base.type.offsets()[e.index]
        base, off = self.alloc_mem(e.type.size(), e.span)
        self.expr_into(e, base, off, e.type)
        return base, off

    def string_into(self, e: ast.Expr, base, off: int, size: int) -> None:
        et = e.type
        if isinstance(e, ast.StrLit):
            self.store_bytes(base, off, e.value.encode("utf-8", "surrogateescape") + b"\0", size)
        elif isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            self.store_bytes(base, off, str(v).encode() + b"\0", size)
        elif isinstance(e, ast.Builtin) and e.name == "comm" or (
                isinstance(e, ast.Call) and e.name == "comm"):
            n = min(16, size)
            if not self.target.comm_padded:
                # before Linux 6.4 the helper leaves the bytes after the NUL as they were, and
                # strings compare (and key maps) byte for byte
                self.zero_mem(base, off, n)
            self.call(FN_GET_CURRENT_COMM, ("ptr", base, off) if base != FP else ("fp", off), n)
            if size > 16:
                self.zero_mem(base, off + 16, size - 16)
        elif isinstance(e, ast.Var):
            src_base, src_off = self.vars[e.name]
            self.copy_value(base, off, StrT(size), src_base, src_off, et)
        elif isinstance(e, ast.MapRef):
            layout = self.maps["@" + e.name]
            self.map_read_into(e, layout, base, off, StrT(size))
        elif isinstance(e, ast.Call) and e.name == "str":
            self.str_call_into(e, base, off, size)
        elif isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
            self.args_string_into(e, base, off, size, zero=True)
        elif isinstance(e, ast.TupleIndex):
            src_base, src_off = self.mem_of(e.base)
            o = e.base.type.offsets()[e.index]
            self.copy_value(base, off, StrT(size), src_base, src_off + o, et)
        elif isinstance(e, ast.Ternary):
            self.ternary(e, lambda x: self.string_into(x, base, off, size))
        elif not self.c_into(e, base, off, StrT(size)):
            raise NotSupportedYet(f"string expression '{type(e).__name__}'", e.span)

    def ptr_arg(self, base, off):
        return ("fp", off) if base == FP else ("ptr", base, off)

    def checked_read(self, helper: int, base, off: int, size: int, src) -> None:
        self.call(helper, self.ptr_arg(base, off), size, src)
        ok = self.label("readok")
        self.emit(ir.CondJump("jsge", R0, 0, ok))
        self.count_error(S.COUNTER_READ_FAILED)
        self.emit(ir.Label(ok))

    def str_call_into(self, e: ast.Call, base, off: int, size: int) -> None:
        arg = e.args[0]
        if len(e.args) == 2 and self.const_len(e) is None:
            self.str_runtime_len_into(e, base, off, size)
            return
        if isinstance(arg.type, StrT):
            self.string_into(arg, base, off, size)
            keep = e.type.length - 1     # str(s, n) of a string: cut after n characters
            if keep < arg.type.length - 1 and keep < size:
                word = min(size, (keep + 7) // 8 * 8)
                self.zero_mem_bytes(base, off + keep, word - keep)
                self.zero_mem(base, off + word, size - word)
            return
        n = e.type.length
        # zero first: the helper leaves bytes after the NUL as they were, and strings are
        # compared byte for byte as map keys (not in a ring buffer record: user space stops at
        # the NUL, and a failed read zeroes the buffer)
        if base is not self.record_base:
            self.zero_mem(base, off, size)
        if isinstance(arg, ast.FieldAccess) and isinstance(arg.base.type, ArgsT):
            f = arg.base.type.field(arg.field_name)
            if f.data_loc:
                self.args_string_into(arg, base, off, min(n, size), zero=False)
                return
        ptr = self.scalar(arg)
        self.checked_read(str_helper(arg.type) or FN_PROBE_READ_STR, base, off, min(n, size), ptr)

    def str_runtime_len_into(self, e: ast.Call, base, off: int, size: int) -> None:
        """str(src, len) with a length known at run time: at most len characters (and at most
        the buffer's size - 1), NUL-terminated; len <= 0 gives the empty string. The size given
        to the read is clamped so that the verifier sees it bounded."""
        arg = e.args[0]
        cap = min(e.type.length, size)
        if base is not self.record_base:
            self.zero_mem(base, off, size)
        if isinstance(arg.type, StrT):      # a string value: cut it while copying it
            sb, so = self.mem_of(arg)
            src = self.vreg()
            if sb == FP:
                self.mov(src, FP)
            else:
                self.mov(src, sb)
            if so:
                self.emit(ir.Alu("add", src, so))
            helper = FN_PROBE_READ_KERNEL_STR
        elif (isinstance(arg, ast.FieldAccess) and isinstance(arg.base.type, ArgsT)
              and arg.base.type.field(arg.field_name).data_loc):
            src = self.data_loc_address(arg.base.type.field(arg.field_name))
            helper = FN_PROBE_READ_KERNEL_STR
        else:
            src = self.scalar(arg)
            helper = str_helper(arg.type) or FN_PROBE_READ_STR
        n = self.vreg()
        self.mov(n, self.scalar(e.args[1]))
        empty, fits, done = self.label("strempty"), self.label("strfits"), self.label("strdone")
        self.emit(ir.CondJump("jsle", n, 0, empty))
        self.emit(ir.CondJump("jle", n, cap - 1, fits))
        self.mov(n, cap - 1)
        self.emit(ir.Label(fits))
        self.emit(ir.Alu("add", n, 1))       # room for the NUL
        self.checked_read(helper, base, off, n, src)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(empty))
        self.emit(ir.Store(base, off, 0, 1))
        self.emit(ir.Label(done))

    def data_loc_address(self, f) -> VReg:
        """The address of a tracepoint's ``__data_loc`` string: the context plus the low 16
        bits of the field (its offset in the record; the high 16 are its length)."""
        loc = self.vreg()
        self.emit(ir.Load(loc, self.ctx, f.offset, 4))
        self.emit(ir.Alu("and", loc, 0xFFFF))
        src = self.vreg()
        self.mov(src, self.ctx)
        self.emit(ir.Alu("add", src, loc))
        return src

    def args_string_into(self, e: ast.FieldAccess, base, off: int, size: int, zero: bool) -> None:
        f = e.base.type.field(e.field_name)
        if zero:
            self.zero_mem(base, off, size)
        if f.data_loc:
            self.checked_read(FN_PROBE_READ_KERNEL_STR, base, off, size, self.data_loc_address(f))
        else:
            src = self.vreg()
            self.mov(src, self.ctx)
            self.emit(ir.Alu("add", src, f.offset))
            n = min(size, f.size)
            self.checked_read(FN_PROBE_READ_KERNEL, base, off, n, src)

    def usdt_arg(self, a, span: Span) -> VReg:
        """A USDT argument as its note describes it (x86-64): a register of pt_regs, memory at
        base + index * scale + displacement (read with probe_read_user), or a constant;
        then cut to its size and sign- or zero-extended to 64 bits."""
        if a.kind == "const":
            return self.const(a.value)
        if a.kind == "reg" and a.reg in X86_PT_REGS:
            v = self.vreg()
            self.emit(ir.Load(v, self.ctx, X86_PT_REGS[a.reg], 8))
        elif (a.kind == "mem" and a.symbol is None and a.base_reg in X86_PT_REGS
              and a.base_reg not in ("rip", "eip") and (a.index_reg is None or a.index_reg in X86_PT_REGS)):
            addr = self.vreg()
            self.emit(ir.Load(addr, self.ctx, X86_PT_REGS[a.base_reg], 8))
            if a.offset:
                self.emit(ir.Alu("add", addr, a.offset))
            if a.index_reg is not None:
                idx = self.vreg()
                self.emit(ir.Load(idx, self.ctx, X86_PT_REGS[a.index_reg], 8))
                if a.scale != 1:
                    self.emit(ir.Alu("mul", idx, a.scale))
                self.emit(ir.Alu("add", addr, idx))
            slot = self.frame.alloc(8, span)
            self.emit(ir.Store(FP, slot, 0, 8))
            self.checked_read(FN_PROBE_READ_USER, FP, slot, a.size, addr)
            v = self.vreg()
            self.emit(ir.Load(v, FP, slot, 8))
        else:
            raise NotSupportedYet(f"the USDT argument '{a.text}'", span)
        if a.size < 8:
            bits = 64 - 8 * a.size
            if a.signed:
                self.emit(ir.Alu("lsh", v, bits))
                self.emit(ir.Alu("arsh", v, bits))
            elif a.size == 4:
                self.emit(ir.Alu("mov", v, v, 32))    # a 32-bit move clears the upper half
            else:
                self.emit(ir.Alu("and", v, (1 << (8 * a.size)) - 1))
        return v

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
            self.expr_stmt(e)
            return self.const(0)
        if isinstance(e, ast.MapRef):
            return self.map_read_scalar(e, self.maps["@" + e.name])
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
                self.emit(ir.Alu("add" if e.op == "++" else "sub", reg, 1))
                return reg if e.prefix else old
            layout = self.maps["@" + e.target.name]
            self.map_add(e.target, layout, self.const(1 if e.op == "++" else -1))
            return self.const(0)
        if isinstance(e, ast.Ternary):
            out = self.vreg()
            self.ternary(e, lambda x: self.mov(out, self.scalar(x)))
            return out
        if isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
            return self.args_field(e)
        if isinstance(e, ast.TupleIndex):
            src_base, src_off = self.mem_of(e.base)
            out = self.vreg()
            self.emit(ir.Load(out, src_base, src_off + e.base.type.offsets()[e.index], 8))
            return out
        if isinstance(e, ast.Index) and getattr(e, "array_index", None) is not None:
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

    def builtin(self, name: str, e: ast.Expr) -> VReg:
        handler = getattr(self, "builtin_" + name, None)
        if handler is not None:            # builtins of mixins (kstack...)
            return handler(e)
        if name == "cpid":
            return self.const(self.cpid or 0)
        if name in ("pid", "tid"):
            self.call(FN_GET_CURRENT_PID_TGID)
            out = self.result()
            if name == "pid":
                self.emit(ir.Alu("rsh", out, 32))
            else:
                self.mov(out, out, 32)
            return out
        if name in ("uid", "gid"):
            self.call(FN_GET_CURRENT_UID_GID)
            out = self.result()
            if name == "gid":
                self.emit(ir.Alu("rsh", out, 32))
            else:
                self.mov(out, out, 32)
            return out
        if name == "nsecs":
            self.call(FN_KTIME_GET_NS)
            return self.result()
        if name == "elapsed":
            self.call(FN_KTIME_GET_NS)
            out = self.result()
            g = self.vreg()
            self.emit(ir.LoadMapFd(g, "globals", GLOBALS_START_NS))
            self.emit(ir.Load(g, g, 0, 8))
            self.emit(ir.Alu("sub", out, g))
            return out
        if name == "cpu":
            self.call(FN_GET_SMP_PROCESSOR_ID)
            return self.result()
        if name == "rand":
            self.call(FN_GET_PRANDOM_U32)
            return self.result()
        if name == "cgroup":
            self.call(FN_GET_CURRENT_CGROUP_ID)
            return self.result()
        if name in ("probe", "func"):
            if self.uses_cookie:
                self.call(FN_GET_ATTACH_COOKIE, self.ctx)
                return self.result()
            return self.const(self.probe_ids[0])
        if name.startswith("arg") and name[3:].isdigit() and isinstance(self.args, UsdtArgsT):
            return self.usdt_arg(self.args.args[int(name[3:])], e.span)
        if name.startswith("arg") and name[3:].isdigit():
            # raw tracepoints: an array of u64; kprobe-type programs: argument registers in pt_regs
            n = int(name[3:])
            off = self.arg_offsets[n] if self.arg_offsets is not None else 8 * n
            out = self.vreg()
            self.emit(ir.Load(out, self.ctx, off, 8))
            return out
        if name == "retval":
            out = self.vreg()
            self.emit(ir.Load(out, self.ctx, self.retval_offset, 8))
            rt = getattr(self.args, "ret", None)    # fexit: an int's upper half is not set
            if rt is not None and not rt.is_int:
                return out
            if isinstance(rt, PtrT):
                self.null_checked(out)              # a returned pointer may be NULL
                return out
            return self.truncate(out, rt) if rt is not None else out
        got = self.c_builtin(name, e)
        if got is not None:
            return got
        raise NotSupportedYet(f"the builtin '{name}' as a value", e.span)

    def args_field(self, e: ast.FieldAccess) -> VReg:
        f = e.base.type.field(e.field_name)
        t = field_type(f, self.max_strlen)
        if not (t.is_int):
            raise NotSupportedYet(f"using args.{e.field_name} ({f.type_text}) as an integer", e.span)
        size = f.size if f.size in (1, 2, 4, 8) else 8
        out = self.vreg()
        self.emit(ir.Load(out, self.ctx, f.offset, size))
        if f.signed and size < 8:
            shift = 64 - size * 8
            self.emit(ir.Alu("lsh", out, shift))
            self.emit(ir.Alu("arsh", out, shift))
        if getattr(f, "ctype", None) is not None and f.is_pointer:
            self.null_checked(out)
        return out

    def null_checked(self, out: VReg) -> None:
        """A BTF-typed pointer read from the context (fentry, fexit, tp_btf, iter) may be one
        the verifier calls "or null": comparing it with 0 makes it usable in arithmetic."""
        null, done = self.label("null"), self.label("nonnull")
        self.emit(ir.CondJump("jeq", out, 0, null))
        self.emit(ir.Jump(done))
        self.emit(ir.Label(null))
        self.mov(out, 0)
        self.emit(ir.Label(done))

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
            if isinstance(e.left.type, (StrT, TupleT, BufT, IntArrayT)):
                self.memory_compare(e, false_label)
                return
            op = CMP_OPS[e.op]
            if op in SIGNED_CMP and signed_pair(e.left.type, e.right.type, e.left, e.right):
                op = SIGNED_CMP[op]
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
        v = self.scalar(e)
        self.emit(ir.CondJump("jeq", v, 0, false_label))


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
        return S.Field("record" if t.names else "tuple", off, t.size(), fields=subs, name=name)
    if isinstance(t, BufT):
        return S.Field("buf", off, t.size(), name=name)
    if isinstance(t, IntArrayT):
        return S.Field("intarray", off, t.size(), signed=t.elem.signed, name=name,
                       aux=(t.elem.bits // 8, t.count, t.boolean))
    if isinstance(t, UserT):
        return S.Field("user", off, t.size(), name=name, fmt=t.kind, aux=t.aux)
    raise NotSupportedYet(f"values of type '{t}' in events or maps")
