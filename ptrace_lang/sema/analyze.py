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
from ptrace_lang.sema import builtins
from ptrace_lang.sema.arith import is_signed, signed_pair  # noqa: F401  (codegen.lower's names)
from ptrace_lang.sema.fn_funcs import FuncsMixin
from ptrace_lang.sema.fn_symbols import SymbolsAnalyzer
from ptrace_lang.sema.fn_types import TypesMixin
from ptrace_lang.sema.stmts import StmtsAnalysis
from ptrace_lang.sema.fn_values import ValuesSema
from ptrace_lang.sema.scope import Scope
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
# the aggregations' argument counts (the names and signatures: sema.builtins)
AGGREGATIONS = {"count": 0, "sum": 1, "avg": 1, "min": 1, "max": 1, "stats": 1, "hist": (1, 2),
                "lhist": 4, "tseries": (3, 4)}
# tseries(): the aggregators it takes ("" keeps the last value of each interval) and its limits
TSERIES_AGGS = ("avg", "max", "min", "sum")
TSERIES_MAX_INTERVALS = 1_000_000
_DURATION_UNITS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000, "d": 86_400_000_000_000}


def parse_duration(text: str) -> int | None:
    """``"100ms"`` -> 100000000 (nanoseconds); a bare number is nanoseconds; None if malformed."""
    num = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = text[len(num):] or "ns"
    if not num.isdigit() or unit not in _DURATION_UNITS:
        return None
    return int(num) * _DURATION_UNITS[unit]
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

    def retype(self, probe: ast.Probe, ctx: "ProbeContext") -> dict[str, Type]:
        """Annotate ``probe`` again for one of its contexts (before lowering that context)."""
        self.analyzer.var_spans = {}
        return self.analyzer.probe(probe, ctx)

    @property
    def var_spans(self) -> dict[str, Span]:
        return self.analyzer.var_spans


class _Analyzer(TypesMixin, FuncsMixin, SymbolsAnalyzer, StmtsAnalysis, ValuesSema):
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

    def bind_var(self, name: str, typ: Type, span: Span, declare_here: bool = False) -> None:
        for scope in reversed(self.scopes):
            if name in scope.vars:
                old = scope.vars[name]
                if not compatible(old, typ):
                    self.error(f"Type mismatch for ${name}: trying to assign value of type '{typ}' "
                               f"when variable already has a type '{old}'", span)
                elif name not in self.typed_vars:
                    scope.vars[name] = widen(old, typ)
                return
        if not declare_here:
            # in a for loop body (var_home), visible in that body only; its slot is shared
            # with the other variables of that name (sema/stmts.py)
            typ = self.loop_local_type(name, typ, span)
        (self.scopes[-1] if declare_here else self.scopes[self.var_home]).vars[name] = typ
        self.var_spans.setdefault(name, span)

    # ------------------------------------------------------------------ maps
    def assign_map(self, ref: ast.MapRef, value_type: Type, span: Span) -> None:
        key_type = self.key_type(ref)
        name = "@" + ref.name
        info = self.maps.get(name)
        if info is None:
            self.maps[name] = MapInfo(name, key_type, value_type, ref.span, keyed=ref.keys is not None)
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
            info.value_type = widen(info.value_type, value_type)
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
        self.block_locals = {}
        self.var_home = 0
        if probe.predicate is not None:
            t = self.expr(probe.predicate)
            if not t.is_int:
                self.error(f"Invalid type for predicate: {t}", probe.predicate.span)
        self.block(probe.body, new_scope=False)
        return {**self.block_locals, **self.scopes[0].vars}

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
            if not isinstance(s.count, ast.IntLit) and not isinstance(s.count, ast.PositionalParam):
                self.error("unroll() count must be an integer literal", s.count.span)
            else:
                n = self.const_int(s.count)
                if n is None or not 1 <= n <= 100:
                    self.error("unroll() count must be between 1 and 100", s.count.span)
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
            vt = self.expr(s.value)
            if vt == VOID:
                self.error("Cannot assign a value of type 'none'", s.value.span)
                return
            self.assign_map(target, vt, s.span)
            target.type = self.maps["@" + target.name].value_type
        elif isinstance(target, ast.Var):
            vt = self.expr(s.value)
            if isinstance(s.value, ast.Call) and s.value.name in AGGREGATIONS:
                return  # reported: aggregations are assigned to maps only
            if s.op is not None:
                old = self.lookup_var(target.name)
                if old is None:
                    self.error(f"Undefined or undeclared variable: ${target.name}", target.span)
                    return
                if not (old.is_int and vt.is_int):
                    self.error(f"Compound assignment needs integers, got '{old}' and '{vt}'", s.span)
                target.type = old
                return
            if vt == VOID:
                self.error("Cannot assign a value of type 'none'", s.value.span)
                return
            if isinstance(vt, AggT):
                self.error("aggregations can only be assigned to maps", s.value.span)
                return
            self.bind_var(target.name, vt, s.span)
            target.type = self.lookup_var(target.name)
        else:
            self.error("Can only assign to variables and maps", target.span)

    def aggregation(self, call: ast.Call) -> AggT:
        want = AGGREGATIONS[call.name]
        n = len(call.args)
        ok = n in want if isinstance(want, tuple) else n == want
        if not ok:
            sig = builtins.signature(call.name)
            self.error(f"{call.name}() takes "
                       f"{want if not isinstance(want, tuple) else ' or '.join(map(str, want))} "
                       f"argument{'s' if want != 1 else ''} ({n} provided)", call.span, [sig])
        if call.name == "tseries":
            return self.tseries(call, n)
        types = [self.expr(a) for a in call.args]
        for a, t in zip(call.args, types):
            if not t.is_int:
                self.error(f"{call.name}() expects an integer argument, got '{t}'", a.span)
        signed = bool(types) and isinstance(types[0], IntT) and types[0].signed
        call.type = VOID
        if call.name == "hist":
            k = 0
            if n == 2:
                kv = self.const_int(call.args[1])
                if kv is None or not 0 <= kv <= 5:
                    self.error("hist() second argument must be a literal between 0 and 5",
                               call.args[1].span)
                else:
                    k = kv
            return AggT("hist", signed, hist_k=k)
        if call.name == "lhist":
            vals = [self.const_int(a) for a in call.args[1:]] if n == 4 else []
            if n == 4:
                if any(v is None for v in vals):
                    self.error("lhist() min, max and step must be integer literals", call.span)
                    return AggT("lhist", signed, lhist=(0, 1, 1))
                lo, hi, step = vals
                if lo < 0:
                    self.error("lhist() min must be non-negative", call.args[1].span)
                elif hi <= lo:
                    self.error("lhist() max must be greater than min", call.args[2].span)
                elif step <= 0:
                    self.error("lhist() step must be >= 1", call.args[3].span)
                elif step > hi - lo:
                    self.error(f"lhist() step is too large for the given range (provided step "
                               f"{step} for range {hi - lo})", call.span)
                elif (hi - lo) // step > 1000:
                    self.error("lhist() too many buckets, maximum is 1000", call.span)
                return AggT("lhist", signed, lhist=(lo, hi, step))
            return AggT("lhist", signed, lhist=(0, 1, 1))
        return AggT(call.name, signed if call.name != "count" else False)

    def unroll_size(self, top: ast.Unroll) -> tuple[int, int]:
        """The number of nodes ``top`` expands to (nested unrolls multiplied, a count out of
        range taken as 1) and the number of copies of its innermost body, counted on the AST
        before anything is expanded (an iterative walk: the body may be nested deeply)."""
        def count(u: ast.Unroll) -> int:
            n = self.const_int(u.count)
            return n if n is not None and 1 <= n <= 100 else 1

        sizes: dict[int, int] = {}
        copies: dict[int, int] = {}
        stack: list = [(top, False)]
        while stack:
            node, done = stack.pop()
            kids = list(ast.children(node))
            if not done:
                stack.append((node, True))
                stack.extend((k, False) for k in kids)
                continue
            if isinstance(node, ast.Unroll):
                n = count(node)
                sizes[id(node)] = 1 + n * sizes[id(node.body)]
                copies[id(node)] = n * max([copies.get(id(k), 1) for k in ast.walk(node.body)
                                            if isinstance(k, ast.Unroll)] or [1])
            else:
                sizes[id(node)] = 1 + sum(sizes[id(k)] for k in kids)
        return sizes[id(top)], copies[id(top)]

    def tseries(self, call: ast.Call, n: int) -> AggT:
        """``tseries(value, interval, num_intervals[, "avg"|"max"|"min"|"sum"])``: the interval a
        duration string ("100ms", "1s") or nanoseconds; without an aggregator each interval keeps
        its last value."""
        bad = AggT("tseries", True, tseries=(1_000_000_000, 1, ""))
        if n not in (3, 4):
            for a in call.args:
                self.expr(a)
            return bad
        t = self.expr(call.args[0])
        for a in call.args[1:]:
            self.expr(a)
        if not t.is_int:
            self.error(f"tseries() expects an integer value, got '{t}'", call.args[0].span)
        signed = not isinstance(t, IntT) or t.signed
        iv = call.args[1]
        interval = None
        if isinstance(iv, ast.StrLit):
            interval = parse_duration(iv.value)
        else:
            interval = self.const_int(iv)
        if interval is None or interval <= 0:
            self.error('tseries() interval must be a positive duration: a literal like "1s", '
                       '"100ms" or a number of nanoseconds', iv.span)
            return bad
        num = self.const_int(call.args[2])
        if num is None or not 1 <= num <= TSERIES_MAX_INTERVALS:
            self.error(f"tseries() num_intervals must be an integer literal between 1 and "
                       f"{TSERIES_MAX_INTERVALS}", call.args[2].span)
            return bad
        agg = ""
        if n == 4:
            a = call.args[3]
            if not isinstance(a, ast.StrLit) or a.value not in TSERIES_AGGS:
                self.error("tseries() aggregator must be one of " +
                           ", ".join(f'"{x}"' for x in TSERIES_AGGS), a.span)
                return bad
            agg = a.value
        call.type = VOID
        return AggT("tseries", signed, tseries=(interval, num, agg))

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
            return self.expr(tn.of_expr)
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
            self.error(f"Type mismatch for '{e.op}': comparing '{a}' with '{b}'", e.span)
            return BOOL if e.op in ("==", "!=", "<", "<=", ">", ">=") else INT64
        if not (a.is_int and b.is_int):
            self.error(f"Type mismatch for '{e.op}': comparing '{a}' with '{b}'", e.span)
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

    def fn_printf(self, e: ast.Call) -> Type:
        return self.format_call(e, "printf(const char *fmt, ...)")

    def fn_cat(self, e: ast.Call) -> Type:
        """cat(fmt, ...): the file named by the formatted string, printed from user space."""
        return self.format_call(e, "cat(const char *filename, ...)")

    def format_call(self, e: ast.Call, signature: str) -> Type:
        """A call whose arguments are a format string literal and its values (printf, cat,
        system): the values are checked against the format."""
        if not e.args or not isinstance(e.args[0], ast.StrLit):
            self.error(f"{e.name}() requires a string literal as its first argument", e.span,
                       [signature])
            for a in e.args:
                self.expr(a)
            return VOID
        self.expr(e.args[0])
        types = [self.expr(a) for a in e.args[1:]]
        check_format(self, e.name, e.args[0], e.args[1:], types)
        return VOID

    def fn_system(self, e: ast.Call) -> Type:
        """system(fmt, ...): the formatted command run by the shell in user space (--unsafe)."""
        if not self.unsafe:
            self.error("system() is an unsafe function being used in safe mode", e.span,
                       ["run with --unsafe to allow it"])
        return self.format_call(e, "system(const char *fmt, ...)")

    def fn_join(self, e: ast.Call) -> Type:
        """join(char *arr[][, char *delim]): the strings of a NULL-terminated user array."""
        if not self.nargs(e, 1, 2, "join(char *arr[][, char *delim])"):
            for a in e.args:
                self.expr(a)
            return VOID
        t = self.expr(e.args[0])
        if not t.is_int:
            self.error(f"join() expects an array of strings (a pointer), got '{t}'", e.args[0].span,
                       ["join(char *arr[][, char *delim])"])
        if len(e.args) == 2:
            if not isinstance(e.args[1], ast.StrLit):
                self.error("join() requires a string literal as its delimiter", e.args[1].span)
            self.expr(e.args[1])
        return VOID

    def fn_print(self, e: ast.Call) -> Type:
        if not e.args:
            self.error("print() requires at least 1 argument (0 provided)", e.span,
                       ["print(@map[, top[, div]]) or print(value)"])
            return VOID
        first = e.args[0]
        if isinstance(first, ast.MapRef) and first.keys is None and "@" + first.name in self.maps:
            first.type = self.maps["@" + first.name].value_type
            self.nargs(e, 1, 3, "print(@map[, top[, div]])")
            for a in e.args[1:]:
                if self.const_int(a) is None:
                    self.error("print(): top and div must be integer literals", a.span)
                a.type = INT64
            return VOID
        if len(e.args) > 1:
            self.error("print() with a value takes 1 argument", e.span,
                       ["print(@map[, top[, div]]) or print(value)"])
        t = self.expr(first)
        if t == VOID or isinstance(t, ArgsT):
            self.error(f"print() can not print a value of type '{t}'", first.span)
        return VOID

    def fn_time(self, e: ast.Call) -> Type:
        if self.nargs(e, 0, 1, "time([const char *fmt])") and e.args:
            if not isinstance(e.args[0], ast.StrLit):
                self.error("time() requires a string literal", e.args[0].span)
            self.expr(e.args[0])
        return VOID

    def fn_exit(self, e: ast.Call) -> Type:
        if self.nargs(e, 0, 1, "exit([int code])") and e.args:
            t = self.expr(e.args[0])
            if not t.is_int:
                self.error(f"exit() expects an integer exit code, got '{t}'", e.args[0].span)
        return VOID

    def fn_str(self, e: ast.Call) -> Type:
        if not self.nargs(e, 1, 2, "str(char *s[, int length])"):
            return StrT(self.max_strlen)
        a = e.args[0]
        if isinstance(a, ast.PositionalParam):     # str($1): the argument's text ("" when absent,
            n = a.index                            # "5" when numeric), as bpftrace does
            text = self.positional[n - 1] if 1 <= n <= len(self.positional) else ""
            e.args[0] = ast.StrLit(text, span=a.span)
        elif (isinstance(a, ast.Binary) and a.op == "+" and isinstance(a.left, ast.PositionalParam)
              and isinstance(self.positional_value(a.left.index), str)):
            # str($1 + 2): the parameter's text from its third character (bpftrace: a pointer
            # into the string literal, moved by a constant no greater than its length)
            text = self.positional_value(a.left.index)
            k = self.const_int(a.right)
            if k is None or not 0 <= k <= len(text.encode()):
                self.error(f"Only addition of a single constant less or equal to the length of "
                           f"${a.left.index} (which is {len(text.encode())}) is allowed inside "
                           f"str()", a.span)
                return StrT(self.max_strlen)
            e.args[0] = ast.StrLit(text.encode()[k:].decode(errors="surrogateescape"), span=a.span)
        t = self.expr(e.args[0])
        size = self.max_strlen
        if len(e.args) == 2:
            n = self.const_int(e.args[1])
            lt = self.expr(e.args[1])
            if n is None:
                # a length known at run time: at most max_strlen - 1 characters, the read
                # bounded in the program (lower.str_call_into)
                if not lt.is_int:
                    self.error(f"str() expects an integer length, got '{lt}'", e.args[1].span,
                               ["str(char *s[, int length])"])
            elif n <= 0:
                self.error("str() length must be positive", e.args[1].span)
            else:
                size = min(n + 1, self.max_strlen) if n < self.max_strlen else self.max_strlen
        if isinstance(t, StrT):
            return StrT(min(t.length, size), t.trunc)
        if not t.is_int:
            self.error(f"str() expects a pointer or an integer address, got '{t}'", e.args[0].span)
        return StrT(size, trunc=True)

    def fn_delete(self, e: ast.Call) -> Type:
        if len(e.args) == 1 and isinstance(e.args[0], ast.MapRef) and e.args[0].keys is not None:
            ref = e.args[0]
        elif len(e.args) == 2 and isinstance(e.args[0], ast.MapRef) and e.args[0].keys is None:
            ref = ast.MapRef(e.args[0].name, [e.args[1]], span=e.args[0].span.join(e.args[1].span))
            e.args = [ref]
        elif len(e.args) == 1 and isinstance(e.args[0], ast.MapRef):
            ref = e.args[0]
        else:
            self.error("delete() expects a map and a key", e.span, ["delete(@map, key) or delete(@map[key])"])
            return VOID
        info = self.maps.get("@" + ref.name)
        if info is None:
            self.error(f"Undefined map: @{ref.name}", ref.span)
            return VOID
        self.check_key(info, ref, self.key_type(ref))
        ref.type = info.value_type
        return BOOL       # (bpftrace 0.26) whether the key was there

    def _whole_map(self, e: ast.Call) -> Type:
        if len(e.args) != 1 or not isinstance(e.args[0], ast.MapRef) or e.args[0].keys is not None:
            self.error(f"{e.name}() expects a map argument", e.span, [f"{e.name}(@map)"])
            return VOID
        ref = e.args[0]
        info = self.maps.get("@" + ref.name)
        if info is None:
            self.error(f"Undefined map: @{ref.name}", ref.span)
            return VOID
        ref.type = info.value_type
        return VOID

    fn_clear = _whole_map
    fn_zero = _whole_map


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
        return StrT(max_strlen, trunc=True) if "char" in text else UINT64
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


def check_format(an: _Analyzer, fname: str, fmt_node: ast.StrLit, args: list[ast.Expr],
                 types: list[Type]) -> None:
    from ptrace_lang.fmtspec import arg_class, parse_format

    try:
        specs = parse_format(fmt_node.value)
    except ValueError as err:
        an.error(f"{fname}: {err}", fmt_node.span)
        return
    from ptrace_lang.fmtspec import check_arg_count

    problem = check_arg_count(specs, len(args))
    if problem is not None:
        span = fmt_node.span.join(args[-1].span) if args else fmt_node.span
        an.error(f"{fname}: {problem}", span)
        return
    for spec, arg, t in zip(specs, args, types):
        cls = arg_class(spec)
        if t == VOID or isinstance(t, (AggT, ArgsT)):
            an.error(f"{fname}: can not print a value of type '{t}'", arg.span)
        elif cls in ("int", "char", "ptr") and not t.is_int:
            an.error(f"{fname}: %{spec.conv} specifier expects a value of type integer "
                     f"('{t}' supplied)", arg.span)
        elif cls == "buf" and not isinstance(t, BufT):
            an.error(f"{fname}: %{spec.conv} specifier expects a value of type buffer "
                     f"('{t}' supplied)", arg.span, ["buf(void *data, [int64 length])"])
        elif cls == "float":
            an.error(f"{fname}: %{spec.conv} is not supported: there are no floating point values",
                     fmt_node.span)


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
    for final in (False, True):
        an.final = final
        for i, probe in enumerate(program.probes):
            for ctx in probe_contexts[i]:
                try:
                    result.var_types[id(probe)] = an.probe(probe, ctx)
                except NotSupportedYet:
                    if final and not an.errors:
                        raise
                    break
    if an.errors:
        raise CompileError(an.errors[0].message, diagnostics=an.errors)
    unknown = [n for n in an.program_opts if n not in an.__dict__.get("getopt_names", ())]
    if unknown:
        raise CompileError("unexpected program command line option" +
                           ("s" if len(unknown) > 1 else "") + ": " +
                           " ".join("--" + n for n in unknown),
                           hints=["a program reads its options with getopt(\"name\", default)"])
    return result


def parse_program_opts(raw) -> dict:
    """``["--n=5", "--verbose"]`` -> ``{"n": "5", "verbose": None}`` (the program's options)."""
    out: dict = {}
    for a in raw:
        name, eq, val = a[2:].partition("=")
        if not name:
            raise CompileError(f"invalid program command line option: {a}")
        out[name] = val if eq else None
    return out
