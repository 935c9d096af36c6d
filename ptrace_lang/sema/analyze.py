"""Semantic analysis: resolve names, infer and check types, collect maps.

``analyze(program, probes, opts)`` annotates every expression's ``type`` in place and returns
the map table. It runs the probes twice: the first pass learns map types from assignments
anywhere in the script (a map may be read in a probe declared before the one assigning it),
the second reports errors.
"""
from __future__ import annotations

from ptrace_lang.target import Host
from ptrace_lang.records import dataclass, field

from ptrace_lang.errors import CompileError, Diagnostic, NotSupportedYet, Span
from ptrace_lang.frontend import ast
from ptrace_lang.messages import say
from ptrace_lang.sema import builtins
from ptrace_lang.sema.arith import (  # noqa: F401  (is_signed, signed_pair: codegen.lower.s names)
    flexible_literal, is_signed, literal_type, merge_ints, signed_pair)
from ptrace_lang.sema.fn_funcs import FuncsMixin
from ptrace_lang.sema.fn_symbols import SymbolsAnalyzer
from ptrace_lang.sema.fn_types import TypesMixin
from ptrace_lang.sema.stmts import StmtsAnalysis
from ptrace_lang.sema.fn_values import ValuesSema
from ptrace_lang.sema.scope import Scope
from ptrace_lang.sema.sema_aggs import AGGREGATIONS, AggregationsSema  # noqa: F401 (re-exported)
from ptrace_lang.sema.sema_output import OutputCalls
from ptrace_lang.sema.types import (
    BoolT, EnumT, PtrT, BOOL, COMM, FUNC, INT64, INT_TYPE_NAMES, PROBE, UINT32, UINT64, VOID, AggT, ArgsT,
    BufT, IntArrayT, IntT, StrT, TupleT, Type, UsdtArgsT, UserT, compatible, widen,
)

# the types of the builtin variables available in every probe (the names: sema.builtins)
COMMON_BUILTINS: dict[str, Type] = {
    "pid": UINT32, "tid": UINT32, "uid": UINT32, "gid": UINT32, "nsecs": UINT64,
    "elapsed": UINT64, "cpu": UINT32, "comm": COMM, "probe": PROBE, "rand": UINT32,
    "cgroup": UINT64,
}

# builtins and functions of the dialect that later work brings (refused with "not supported yet")
LATER_BUILTINS = frozenset(b.name for b in builtins.BUILTINS.values()
                           if b.later and b.kind != "function")
LATER_FUNCTIONS = frozenset(b.name for b in builtins.BUILTINS.values()
                            if b.later and b.kind == "function")
MAX_STRLEN_DEFAULT = 64
# a string literal is held whole in a record, a map value or a scratch slot: 32 KiB at most
# (codegen's SCRATCH_LIMIT; a store's offset is 16 bits)
STRLIT_LIMIT = 32768
# unroll(N) copies its body N times (N <= 100, as bpftrace); nested unrolls multiply: the whole
# expansion of an outermost unroll is bounded, in AST nodes, before anything is expanded
UNROLL_LIMIT = 2500


@dataclass
class MapInfo:
    name: str
    key_type: Type | None
    value_type: Type
    span: Span
    keyed: bool = False


@dataclass
class ProbeContext:
    """What a probe body can see: the builtins of its provider and its ``args`` type; the
    provider's facts that decide what is allowed (sema does not import providers): ``pt_regs``,
    the context starts with the task's struct pt_regs (reg(), usermode); ``user_space``, the
    probed code is a process's (uaddr(), user pointers)."""

    provider: str
    builtins: frozenset
    args: ArgsT | None = None
    pt_regs: bool = False
    user_space: bool = False


@dataclass
class SemaResult:
    maps: dict[str, MapInfo]
    var_types: dict[int, dict[str, Type]] = field(default_factory=dict)
    analyzer: object = None
    # id(probe) -> (its one context, its variables' types, their spans) from the last pass of
    # analyze, when that pass changed nothing the probes share (the maps' types): analysing
    # such a probe again would annotate it as it is now, so retype takes these instead
    kept: dict = field(default_factory=dict)

    def retype(self, probe: ast.Probe, ctx: "ProbeContext") -> dict[str, Type]:
        """Annotate ``probe`` again for one of its contexts (before lowering that context)."""
        kept = self.kept.pop(id(probe), None)
        if kept is not None and kept[0] is ctx:
            self.analyzer.var_spans = kept[2]
            return dict(kept[1])
        self.analyzer.var_spans = {}
        return self.analyzer.probe(probe, ctx)

    @property
    def var_spans(self) -> dict[str, Span]:
        return self.analyzer.var_spans


class _Analyzer(OutputCalls, AggregationsSema, TypesMixin, FuncsMixin, SymbolsAnalyzer,
                StmtsAnalysis, ValuesSema):
    def __init__(self, positional: list[str], max_strlen: int, cpid: int | None = None) -> None:
        self.positional = positional
        self.max_strlen = max_strlen
        self.cpid = cpid
        self.unsafe = False
        self.maps: dict[str, MapInfo] = {}
        self.final = False
        self.errors: list[Diagnostic] = []
        self.scopes: list[Scope] = []
        self.ctx: ProbeContext | None = None
        self.loop_depth = 0
        self.unroll_depth = 0
        self.var_spans: dict[str, Span] = {}   # where each $var is first assigned
        self.typed_vars: set[str] = set()       # declared with a type (let $x: T): never widened
        self.block_locals: dict[str, Type] = {}  # let in an inner block: its slot lives all probe
        self.var_home = 0    # the scope a new $var goes to: 0 (the probe), or a for loop body's
        self.flex_vars: set[str] = set()    # typed from integer literals >= 0 only (sign-flexible)
        self.flex_maps: set[str] = set()    # map values likewise

    # ------------------------------------------------------------------ errors
    def error(self, message: str, span: Span, hints: list[str] | None = None) -> None:
        if self.final:
            if ast.HYGIENE_MARK in message:   # a variable local to a macro body (frontend.macros)
                message = ast.unmangle(message)
            self.errors.append(Diagnostic(message, span, list(hints or [])))

    # ------------------------------------------------------------------ scopes
    def lookup_var(self, name: str) -> Type | None:
        for scope in reversed(self.scopes):
            if name in scope.vars:
                return scope.vars[name]
        return None

    def bind_var(self, name: str, typ: Type, span: Span, declare_here: bool = False,
                 flexible: bool = False) -> None:
        """``flexible``: ``typ`` is a literal's (>= 0), which an unsigned variable keeps."""
        for scope in reversed(self.scopes):
            if name in scope.vars:
                old = scope.vars[name]
                if not compatible(old, typ):
                    self.error(f"Type mismatch for ${name}: trying to assign value of type '{typ}' "
                               f"when variable already has a type '{old}'", span)
                elif name not in self.typed_vars:
                    scope.vars[name] = self.merged(old, typ, name in self.flex_vars, flexible)
                if not flexible:
                    self.flex_vars.discard(name)
                return
        if flexible:
            self.flex_vars.add(name)
        else:
            self.flex_vars.discard(name)
        if not declare_here:
            # in a for loop body (var_home), visible in that body only; its slot is shared
            # with the other variables of that name (sema/stmts.py)
            typ = self.loop_local_type(name, typ, span)
        (self.scopes[-1] if declare_here else self.scopes[self.var_home]).vars[name] = typ
        self.var_spans.setdefault(name, span)

    @staticmethod
    def merged(old: Type, new: Type, old_flexible: bool, new_flexible: bool) -> Type:
        if isinstance(old, IntT) and isinstance(new, IntT):
            return merge_ints(old, new, old_flexible, new_flexible)
        return widen(old, new)

    # ------------------------------------------------------------------ maps
    def assign_map(self, ref: ast.MapRef, value_type: Type, span: Span,
                   flexible: bool = False) -> None:
        key_type = self.key_type(ref)
        name = "@" + ref.name
        info = self.maps.get(name)
        old_flexible = name in self.flex_maps
        if not flexible:
            self.flex_maps.discard(name)
        if info is None:
            self.maps[name] = MapInfo(name, key_type, value_type, ref.span, keyed=ref.keys is not None)
            if flexible:
                self.flex_maps.add(name)
            return
        if isinstance(info.value_type, AggT) or isinstance(value_type, AggT):
            if info.value_type != value_type and not (
                    isinstance(info.value_type, AggT) and isinstance(value_type, AggT)
                    and info.value_type.kind == value_type.kind
                    and info.value_type.kind not in ("hist", "lhist", "tseries")):
                self.error(f"Type mismatch for {name}: trying to assign value of type '{value_type}' "
                           f"when map already has a type '{info.value_type}'", span)
        elif not compatible(info.value_type, value_type):
            self.error(f"Type mismatch for {name}: trying to assign value of type '{value_type}' "
                       f"when map already has a type '{info.value_type}'", span)
        else:
            info.value_type = self.merged(info.value_type, value_type, old_flexible, flexible)
        self.check_key(info, ref, key_type)

    def check_key(self, info: MapInfo, ref: ast.MapRef, key_type: Type | None) -> None:
        if (info.key_type is None) != (key_type is None):
            if key_type is None:
                self.error(f"{info.name} used as a map without an explicit key (scalar map), "
                           "previously used with a key", ref.span)
            else:
                self.error(f"{info.name} used as a map with an explicit key (non-scalar map), "
                           "previously used without a key", ref.span)
        elif key_type is not None and info.key_type is not None:
            if not compatible(info.key_type, key_type):
                self.error(f"Argument mismatch for {info.name}: trying to access with arguments: "
                           f"'{key_type}' when map expects arguments: '{info.key_type}'", ref.span)
            else:
                info.key_type = widen(info.key_type, key_type)

    def key_type(self, ref: ast.MapRef) -> Type | None:
        if ref.keys is None:
            return None
        types = [self.expr(k) for k in ref.keys]
        for k, t in zip(ref.keys, types):
            if not (t.is_int or isinstance(t, (StrT, TupleT, UserT, BufT, IntArrayT))
                    or t in (PROBE, FUNC) or self.c_value_key(t)):
                self.error(f"{t} cannot be used as a map key", k.span)
        t = types[0] if len(types) == 1 else TupleT(tuple(types))
        self.check_key_size(t, ref)
        return t

    def read_map(self, ref: ast.MapRef) -> Type:
        name = "@" + ref.name
        key_type = self.key_type(ref)
        info = self.maps.get(name)
        if info is None:
            self.error(f"Undefined map: {name}", ref.span)
            return INT64
        self.check_key(info, ref, key_type)
        if isinstance(info.value_type, AggT):
            if info.value_type.kind in ("count", "sum", "min", "max", "avg"):
                # read as an integer: the CPUs' slots combined (codegen: _agg_value)
                return UINT64 if info.value_type.kind == "count" else IntT(64, info.value_type.signed)
            self.error(f"The value of {name} ({info.value_type.kind}) cannot be used in an expression",
                       ref.span)
            return INT64
        return info.value_type

    # ------------------------------------------------------------------ probes
    def probe(self, probe: ast.Probe, ctx: ProbeContext) -> dict[str, Type]:
        self.ctx = ctx
        self.cur_probe = probe
        self.scopes = [Scope()]
        self.typed_vars = set()
        self.flex_vars = set()
        self.block_locals = {}
        self.var_home = 0
        if probe.predicate is not None:
            t = self.expr(probe.predicate)
            if not t.is_int:
                self.error(f"Invalid type for predicate: {t}", probe.predicate.span)
        self.block(probe.body, new_scope=False)
        final = {**self.block_locals, **self.scopes[0].vars}
        self.widen_early_reads(probe, final)
        return final

    def widen_early_reads(self, probe: ast.Probe, final: dict[str, Type]) -> None:
        """A variable widened by a later assignment (``$x = 1; ... $x = 1000;``: int8, then
        int16) is read as its final type everywhere, as bpftrace types a variable once
        (``sizeof($x)`` before the widening included)."""
        nodes = list(ast.walk(probe.body))
        for n in nodes:
            if isinstance(n, ast.Var) and isinstance(n.type, IntT):
                t = final.get(n.name)
                if isinstance(t, IntT) and t != n.type and t.bits >= n.type.bits:
                    n.type = t
        for n in nodes:
            if (isinstance(n, ast.Sizeof) and isinstance(n.of_expr, ast.Var)
                    and isinstance(n.of_expr.type, IntT)):
                n.value = n.of_expr.type.bits // 8

    def block(self, block: ast.Block, new_scope: bool = True) -> None:
        if new_scope:
            self.scopes.append(Scope())
        ended = False
        for s in block.stmts:
            if ended:      # after exit() or return (bpftrace's warning; the code is still checked)
                self.warn("Unreachable statement", s.span)
                ended = False
            self.stmt(s)
            ended = isinstance(s, ast.Return) or (
                isinstance(s, ast.ExprStmt) and isinstance(s.expr, ast.Call)
                and s.expr.name == "exit")
        if new_scope:
            self.scopes.pop()

    def stmt(self, s: ast.Stmt) -> None:
        if isinstance(s, ast.ExprStmt):
            self.expr(s.expr, statement=True)
        elif isinstance(s, ast.Assign):
            self.assign(s)
        elif isinstance(s, ast.Let):
            self.let(s)
        elif isinstance(s, ast.Block):
            self.block(s)
        elif isinstance(s, ast.If):
            t = self.expr(s.cond)
            if not t.is_int:
                self.error(f"Invalid condition in if(): {t}", s.cond.span)
            self.block(s.then)
            if s.orelse is not None:
                self.block(s.orelse)
        elif isinstance(s, ast.While):
            t = self.expr(s.cond)
            if not t.is_int:
                self.error(f"Invalid condition in while(): {t}", s.cond.span)
            self.loop_depth += 1
            self.block(s.body)
            self.loop_depth -= 1
        elif isinstance(s, ast.Unroll):
            # bpftrace's words, under "unroll(N)" (messages.py)
            at = Span(s.span.file, s.span.line, s.span.col, s.count.span.end_line, s.count.span.end_col + 1)
            n = self.const_int(s.count) if isinstance(s.count, (ast.IntLit, ast.PositionalParam)) else None
            if n is None or not 1 <= n <= 100:
                self.error(say("unroll_invalid" if n is None else "unroll_max" if n > 100 else "unroll_min"), at)
            if self.unroll_depth == 0:      # the whole expansion, nested unrolls multiplied
                size, copies = self.unroll_size(s)
                if size > UNROLL_LIMIT:
                    self.error(f"unroll() expands to {size} nodes of code ({copies} copies of "
                               f"its innermost body), more than the limit of {UNROLL_LIMIT} for "
                               "a whole expansion", s.span,
                               ["nested unrolls multiply: use a while loop or for ($i : 0..N)"])
            self.unroll_depth += 1
            self.block(s.body)
            self.unroll_depth -= 1
        elif isinstance(s, (ast.Break, ast.Continue)):
            if self.loop_depth == 0:
                self.error(f"'{'break' if isinstance(s, ast.Break) else 'continue'}' "
                           "outside of a loop", s.span)
        else:
            handler = getattr(self, "stmt_" + type(s).__name__, None)
            if handler is None:
                raise NotSupportedYet(type(s).__name__, s.span)
            handler(s)

    def assign(self, s: ast.Assign) -> None:
        target = s.target
        if isinstance(target, ast.MapRef):
            if s.op is None and isinstance(s.value, ast.Call) and s.value.name in AGGREGATIONS:
                self.assign_map(target, self.aggregation(s.value), s.span)
                return
            if s.op is not None:
                info = self.maps.get("@" + target.name)
                vt = self.expr(s.value)
                if not vt.is_int:
                    self.error(f"Compound assignment needs an integer, got '{vt}'", s.value.span)
                if info is not None and isinstance(info.value_type, PtrT) and s.op in ("+", "-"):
                    target.type = info.value_type      # @p += n moves by whole elements
                    return
                self.assign_map(target, INT64, s.span)   # an aggregation map: a type mismatch
                target.type = INT64
                return
            vt = self.stored_type(s.value)
            if vt == VOID:
                self.error("Cannot assign a value of type 'none'", s.value.span)
                return
            self.assign_map(target, vt, s.span, flexible_literal(s.value))
            target.type = self.maps["@" + target.name].value_type
        elif isinstance(target, ast.Var):
            vt = self.expr(s.value) if s.op is not None else self.stored_type(s.value)
            if isinstance(s.value, ast.Call) and s.value.name in AGGREGATIONS:
                return  # reported: aggregations are assigned to maps only
            if s.op is not None:
                old = self.lookup_var(target.name)
                if old is None:
                    self.error(f"Undefined or undeclared variable: ${target.name}", target.span)
                    return
                if not (old.is_int and vt.is_int):
                    self.error(f"Compound assignment needs integers, got '{old}' and '{vt}'", s.span)
                elif isinstance(old, IntT) and isinstance(vt, IntT):
                    # $x op= v is $x = $x op v: a 64-bit result, the variable widened to hold
                    # it ($s = 0; $s += 1000 is 1000, not 232); a declared type is kept
                    self.bind_var(target.name, IntT(64, signed_pair(old, vt, None, s.value)),
                                  s.span)
                    old = self.lookup_var(target.name)
                target.type = old
                return
            if vt == VOID:
                self.error("Cannot assign a value of type 'none'", s.value.span)
                return
            if isinstance(vt, AggT):
                self.error("aggregations can only be assigned to maps", s.value.span)
                return
            self.bind_var(target.name, vt, s.span, flexible=flexible_literal(s.value))
            target.type = self.lookup_var(target.name)
        else:
            self.error("Can only assign to variables and maps", target.span)

    def stored_type(self, e: ast.Expr) -> Type:
        """The type a value takes in a variable or a map value: an integer literal's smallest
        type (0.26: ``$x = 1`` is a uint8, widened by a later wider value), else its own."""
        t = self.expr(e)
        lt = literal_type(e)
        return lt if lt is not None and isinstance(t, IntT) else t

    def const_int(self, e: ast.Expr) -> int | None:
        if isinstance(e, ast.IntLit):
            return e.value
        if isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            return v if isinstance(v, int) else None
        if isinstance(e, ast.Unary) and e.op == "-":
            v = self.const_int(e.operand)
            return -v if v is not None else None
        return None

    def positional_value(self, n: int) -> int | str:
        if n < 1 or n > len(self.positional):
            return 0
        text = self.positional[n - 1]
        try:
            return int(text, 0)
        except ValueError:
            return text

    def type_name(self, tn: ast.TypeName) -> Type:
        if tn.of_expr is not None:                  # typeof(expr)
            return self.stored_type(tn.of_expr)
        if (tn.pointer_depth or tn.name.startswith(("struct ", "union ", "enum "))
                or (tn.name not in INT_TYPE_NAMES and tn.name != "string")):
            return self.c_type(tn)
        if tn.name == "string":
            base: Type = StrT(tn.array_len or self.max_strlen)
            return base
        base = INT_TYPE_NAMES.get(tn.name)
        if base is None:
            if tn.name.startswith(("struct ", "union ", "enum ")):
                raise NotSupportedYet(f"type '{tn.name}'", tn.span)
            self.error(f"Unknown type: '{tn.name}'", tn.span)
            return INT64
        if tn.array_len is not None:
            raise NotSupportedYet("array types", tn.span)
        return base

    # ------------------------------------------------------------------ expressions
    def expr(self, e: ast.Expr, statement: bool = False) -> Type:
        t = self._expr(e, statement)
        e.type = t
        return t

    def _expr(self, e: ast.Expr, statement: bool) -> Type:
        if isinstance(e, ast.IntLit):
            if isinstance(e.type, EnumT):      # an enumerator (sema.cdefs.enum_literal)
                return e.type
            return INT64 if e.value < (1 << 63) else UINT64
        if isinstance(e, ast.BoolLit):
            return BOOL
        if isinstance(e, ast.StrLit):
            n = len(e.value.encode("utf-8", "surrogateescape"))
            if n >= STRLIT_LIMIT:     # no record, map value or scratch slot holds more
                self.error(f"String literal is too long ({n} bytes, at most {STRLIT_LIMIT - 1})",
                           e.span)
            return StrT(n + 1)
        if isinstance(e, ast.PositionalParam):
            v = self.positional_value(e.index)
            return INT64 if isinstance(v, int) else StrT(len(v.encode()) + 1)
        if isinstance(e, ast.ParamCount):
            return INT64
        if isinstance(e, ast.Var):
            t = self.lookup_var(e.name)
            if t is None:
                self.error(f"Undefined or undeclared variable: ${e.name}", e.span)
                return INT64
            return t
        if isinstance(e, ast.Builtin):
            return self.builtin(e.name, e.span)
        if isinstance(e, ast.MapRef):
            return self.read_map(e)
        if isinstance(e, ast.Binary):
            return self.binary(e)
        if isinstance(e, ast.Unary):
            if e.op == "*":
                return self.deref(e)
            if e.op == "&":
                return self.address_of(e)
            t = self.expr(e.operand)
            if not t.is_int:
                self.error(f"Invalid type for unary operator '{e.op}': {t}", e.span)
            if e.op == "!":
                return BOOL            # the newest bpftrace: print(!0) is true (0.17: 1)
            if e.op == "-":
                if isinstance(e.operand, ast.IntLit) and e.operand.value == 1 << 63:
                    return INT64       # -9223372036854775808: INT64_MIN, not 2**63 unsigned
                # negation keeps the operand's width and sign: -(uint8)3 is 253, as in bpftrace
                return t if isinstance(t, IntT) else INT64
            if literal_type(e) is not None:
                return UINT64          # ~1: a 64-bit complement, unsigned (0.26)
            # ~ keeps the operand's width too: ~(uint8)0 is 255, as in bpftrace
            return t if isinstance(t, IntT) else IntT(64, False)
        if isinstance(e, ast.IncDec):
            if isinstance(e.target, ast.Var):
                t = self.lookup_var(e.target.name)
                if t is None:
                    self.error(f"Undefined or undeclared variable: ${e.target.name}", e.target.span)
                    return INT64
                if not t.is_int:
                    self.error(f"The {e.op} operator needs an integer variable", e.span)
                e.target.type = t
                return t
            if isinstance(e.target, ast.MapRef):
                info = self.maps.get("@" + e.target.name)
                if info is not None and isinstance(info.value_type, AggT):
                    self.error(f"The {e.op} operator can not be used on expressions of type "
                               f"'{info.value_type}'", e.span)
                    return INT64
                if info is not None and isinstance(info.value_type, PtrT):
                    e.target.type = info.value_type    # @p++ moves by one element
                    return info.value_type
                self.assign_map(e.target, INT64, e.span)
                e.target.type = INT64
                return INT64
            self.error(f"The {e.op} operator needs a variable or a map", e.span)
            return INT64
        if isinstance(e, ast.Ternary):
            c = self.expr(e.cond)
            if not c.is_int:
                self.error(f"Invalid condition in ternary: {c}", e.cond.span)
            a, b = self.expr(e.then), self.expr(e.orelse)
            if not compatible(a, b):
                self.error(f"Ternary operator must return the same type: have '{a}' and '{b}'", e.span)
                return a
            if a == b and isinstance(a, (PtrT, EnumT, BoolT)):   # pointers, bools keep their type
                return a
            if a.is_int and b.is_int:
                return IntT(64, (not isinstance(a, IntT) or a.signed) and (not isinstance(b, IntT) or b.signed))
            return widen(a, b)
        if isinstance(e, ast.FieldAccess):
            return self.field_access(e)
        if isinstance(e, ast.TupleExpr):
            types = [self.expr(x) for x in e.elems]
            for x, t in zip(e.elems, types):
                if t == VOID or isinstance(t, (AggT, ArgsT)):
                    self.error(f"Invalid tuple element of type '{t}'", x.span)
            return TupleT(tuple(types))
        if isinstance(e, ast.TupleIndex):
            t = self.expr(e.base)
            if not isinstance(t, TupleT):
                self.error(f"Can not access index '{e.index}' on expression of type '{t}'", e.span)
                return INT64
            if not 0 <= e.index < len(t.elems):
                self.error(f"Invalid tuple index: {e.index}. Found {len(t.elems)} elements in tuple.",
                           e.span)
                return INT64
            return t.elems[e.index]
        if isinstance(e, ast.RecordExpr):
            return self.record_expr(e)
        if isinstance(e, ast.Cast):
            vt = self.value_cast(e)        # integer, bool and integer-array casts (fn_values)
            if vt is not None:
                return vt
            return self.cast_expr(e)
        if isinstance(e, ast.Sizeof):
            return self.sizeof_expr(e)
        if isinstance(e, ast.Offsetof):
            return self.offsetof_expr(e)
        if isinstance(e, ast.Call):
            return self.call(e, statement)
        if isinstance(e, ast.Index):
            t = self.tuple_subscript(e)    # tuples and integer arrays (fn_values)
            if t is not None:
                return t
            return self.index_expr(e)
        handler = getattr(self, "expr_" + type(e).__name__, None)
        if handler is not None:
            return handler(e)
        raise NotSupportedYet(f"the expression '{type(e).__name__}'", e.span)

    def builtin(self, name: str, span: Span) -> Type:
        if name in COMMON_BUILTINS:
            return COMMON_BUILTINS[name]
        if name == "cpid":
            if self.cpid is None:       # (bpftrace's words)
                self.error("cpid cannot be used without child command", span)
            return UINT64
        c = self.c_builtin(name, span)
        if c is not None:
            return c
        if name == "ctx" and self.ctx is not None and "ctx" in self.ctx.builtins:
            return self.ctx.args      # iter: the iterator's context struct, read like args
        if name == "args":
            if self.ctx is None or "args" not in self.ctx.builtins:
                self.error(f"The args builtin can not be used with '{self.ctx.provider}' probes", span)
                return INT64
            return self.ctx.args
        if self.ctx is not None and name in self.ctx.builtins:
            if name == "func":
                return FUNC
            if name == "retval":
                # fexit: the function's return type (BTF); otherwise a 64-bit register
                return getattr(self.ctx.args, "ret", None) or INT64
            if isinstance(self.ctx.args, UsdtArgsT):
                n = int(name[3:])
                if n >= len(self.ctx.args.args):
                    self.error(f"{name}: the USDT probe has {len(self.ctx.args.args)} "
                               f"argument{'s' if len(self.ctx.args.args) != 1 else ''}", span)
                    return INT64
                return INT64 if self.ctx.args.args[n].signed else UINT64
            return UINT64      # argN: raw tracepoint arguments, or argument registers
        if (name.startswith("arg") and name[3:].isdigit() and self.ctx is not None
                and "arg0" in self.ctx.builtins):   # a probe with argument registers: too high
            n = sum(1 for b in self.ctx.builtins if b.startswith("arg") and b[3:].isdigit())
            msg = f"x86_64 doesn't support {name}" if n == 6 else f"{name} is out of range"
            self.error(msg, span, [f"'{self.ctx.provider}' probes have arg0 to arg{n - 1}"])
            return UINT64
        if (name.startswith("arg") and name[3:].isdigit()) or name in ("retval", "func"):
            self.error(f"The {name} builtin can not be used with '{self.ctx.provider}' probes", span)
            return UINT64
        fn = getattr(self, "builtin_" + name, None)
        if fn is not None:          # builtins of mixins (kstack, ustack, username...)
            return fn(span)
        b = builtins.lookup(name)
        if b is not None and b.later:
            raise NotSupportedYet(f"the builtin '{name}'", span)
        self.error(f"Unknown identifier: '{name}'", span)
        return INT64

    def field_access(self, e: ast.FieldAccess) -> Type:
        base = self.expr(e.base)
        if isinstance(base, ArgsT):
            f = base.field(e.field_name)
            if f is None:
                self.error(f"Struct/union of type '{base}' does not contain a field named "
                           f"'{e.field_name}'", e.span)
                return INT64
            return self.tp_pointer_type(base, f) or field_type(f, self.max_strlen)
        c = self.member_access(e, base)
        if c is not None:
            return c
        if isinstance(base, TupleT):
            return self.record_field(e, base)
        if isinstance(e.base, ast.Builtin) and e.base.name == "args":
            return INT64   # the misuse of args itself was reported
        if base.is_int or isinstance(base, StrT):
            self.error(f"Can not access field '{e.field_name}' on expression of type '{base}'", e.span)
            return INT64
        raise NotSupportedYet(f"field access on '{base}'", e.span)

    def binary(self, e: ast.Binary) -> Type:
        a, b = self.expr(e.left), self.expr(e.right)
        if e.op in ("&&", "||"):
            for side, t in ((e.left, a), (e.right, b)):
                if not t.is_int:
                    self.error(f"Invalid type for logical operator '{e.op}': {t}", side.span)
            return BOOL
        mt = self.memory_compare(e, a, b)
        if mt is not None:
            return mt
        if isinstance(a, StrT) or isinstance(b, StrT):
            if e.op in ("==", "!=") and isinstance(a, StrT) and isinstance(b, StrT):
                return BOOL
            if e.op in ("==", "!=") and (a == PROBE and isinstance(e.right, ast.StrLit)
                                         or b == PROBE and isinstance(e.left, ast.StrLit)):
                return BOOL         # probe == "tracepoint:x:y": the probe's name (0.26)
            if e.op in ("==", "!=") and PROBE in (a, b):     # probe == $s: compared as strings
                if a == PROBE:
                    e.left = self.probe_string(e.left)
                else:
                    e.right = self.probe_string(e.right)
                return BOOL
            self.binary_mismatch(e, a, b)
            return BOOL if e.op in ("==", "!=", "<", "<=", ">", ">=") else INT64
        if a == b == PROBE and e.op in ("==", "!="):
            return BOOL             # two probe values: the same probe, the same name
        if not (a.is_int and b.is_int):
            self.binary_mismatch(e, a, b)
            return INT64
        self.sign_warning(e, a, b)
        if e.op in ("==", "!=", "<", "<=", ">", ">="):
            return BOOL
        p = self.pointer_binary(e, a, b)
        if p is not None:
            return p
        signed = signed_pair(a, b, e.left, e.right)
        return IntT(64, signed)

    def call(self, e: ast.Call, statement: bool) -> Type:
        name = e.name
        if name in AGGREGATIONS:
            self.error(f"{name}() should be directly assigned to a map", e.span)
            for a in e.args:
                self.expr(a)
            return VOID
        if name in COMMON_BUILTINS and not e.args:
            return COMMON_BUILTINS[name]
        fn = getattr(self, "fn_" + name, None)
        if fn is not None:
            return fn(e)
        if not e.args and is_builtin_name(name):     # every builtin is callable: comm()
            return self.builtin(name, e.span)
        b = builtins.lookup(name)
        if b is not None and b.later and b.kind == "function":
            raise NotSupportedYet(f"the function '{name}'", e.span)
        if b is not None and (b.later or b.needs == "builtins"):
            raise NotSupportedYet(f"the builtin '{name}'", e.span)
        self.error(f"Unknown function: '{name}'", e.span)
        return VOID

    def nargs(self, e: ast.Call, lo: int, hi: int, signature: str) -> bool:
        n = len(e.args)
        if lo <= n <= hi:
            return True
        if lo == hi:
            want = f"{lo} argument{'s' if lo != 1 else ''}"
        else:
            want = f"between {lo} and {hi} arguments"
        self.error(f"{e.name}() requires {want} ({n} provided)", e.span, [signature])
        return False

def is_builtin_name(name: str) -> bool:
    """A builtin variable, callable as a function (``pid()``), except the struct-valued ones
    (``args``, ``ctx``)."""
    return builtins.is_variable(name) and name not in ("args", "ctx")


def field_type(f, max_strlen: int) -> Type:
    """The script type of a tracepoint format field."""
    ctype = getattr(f, "ctype", None)     # BTF-typed arguments (fentry, tp_btf, iter)
    if ctype is not None:
        return ctype
    text = f.type_text
    if f.data_loc:
        return StrT(max_strlen + 1, trunc=True) if "char" in text else UINT64
    if (text.startswith("enum ") and not f.is_pointer and f.array_len is None
            and f.size in (1, 2, 4, 8)):
        from ptrace_lang.sema import btftypes

        et = btftypes.enum_type(text[5:].strip())     # printed by its enumerators' names
        if et is not None and et.name:
            return EnumT(et.name, f.size * 8, bool(f.signed), et.values)
    if f.array_len is not None and "char" in text:
        return StrT(f.array_len)
    if f.array_len is not None:
        raise_later = UINT64
        return raise_later
    if f.is_pointer:
        return UINT64
    if f.size in (1, 2, 4, 8):
        return IntT(f.size * 8, bool(f.signed))
    return UINT64


def analyze(program: ast.Program, probe_contexts: list[list[ProbeContext]], positional: list[str],
            max_strlen: int = MAX_STRLEN_DEFAULT, cpid: int | None = None,
            unsafe: bool = False, host: Host | None = None,
            stack_mode: str | None = None, program_opts: tuple = ()) -> SemaResult:
    """Type-check ``program``. ``probe_contexts[i]`` lists the distinct contexts of probe i
    (one per group of attach points whose ``args`` layouts differ); ``cpid`` is the pid of
    the -c child (None without -c); ``host`` answers kaddr() and cgroupid() (target.Host);
    ``stack_mode`` is config stack_mode (kstack/ustack's default mode)."""
    an = _Analyzer(positional, max_strlen, cpid)
    an.unsafe = unsafe
    an.host = host if host is not None else Host()
    an.stack_mode = stack_mode
    an.program_opts = parse_program_opts(program_opts)
    result = SemaResult(an.maps, analyzer=an)
    kept = {}
    for final in (False, True):
        an.final = final
        shared = _shared_state(an)
        for i, probe in enumerate(program.probes):
            for ctx in probe_contexts[i]:
                if final:
                    an.var_spans = {}     # (only lowering reads them: one probe's at a time)
                try:
                    result.var_types[id(probe)] = an.probe(probe, ctx)
                except NotSupportedYet:
                    if final and not an.errors:
                        raise
                    break
                if final and len(probe_contexts[i]) == 1:
                    kept[id(probe)] = (ctx, result.var_types[id(probe)], an.var_spans)
    if _shared_state(an) == shared:
        result.kept = kept
    if an.errors:
        raise CompileError(an.errors[0].message, diagnostics=an.errors)
    unknown = [n for n in an.program_opts if n not in an.__dict__.get("getopt_names", ())]
    if unknown:
        raise CompileError("unexpected program command line option" +
                           ("s" if len(unknown) > 1 else "") + ": " +
                           " ".join("--" + n for n in unknown),
                           hints=["a program reads its options with getopt(\"name\", default)"])
    return result


def _shared_state(an: _Analyzer) -> tuple:
    """What one probe's analysis leaves for the others' (to tell whether a pass changed it)."""
    return ([(n, m.key_type, m.value_type, m.keyed) for n, m in an.maps.items()],
            set(an.flex_maps))


def parse_program_opts(raw) -> dict:
    """``["--n=5", "--verbose"]`` -> ``{"n": "5", "verbose": None}`` (the program's options)."""
    out: dict = {}
    for a in raw:
        name, eq, val = a[2:].partition("=")
        if not name:
            raise CompileError(f"invalid program command line option: {a}")
        out[name] = val if eq else None
    return out
