"""Semantic analysis of loops over maps and ranges, ``len``, typed ``let`` and ``return``
(a mixin of ``sema.analyze._Analyzer``)."""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.messages import map_call_error
from ptrace_lang.sema.arith import flexible_literal
from ptrace_lang.sema.scope import Scope
from ptrace_lang.sema.types import INT64, UINT64, AggT, IntT, Type, TupleT


class StmtsAnalysis:
    """``stmt_<Node>`` handlers dispatched by ``_Analyzer.stmt``; ``fn_len``."""

    def _loop_var(self, var: ast.Var, typ: Type, span) -> None:
        if self.lookup_var(var.name) is not None:
            self.error(f"Loop declaration shadows existing variable: ${var.name}", var.span)
        var.type = typ
        self.scopes.append(Scope({var.name: typ}))

    def _loop_body(self, body: ast.Block, loop=None) -> None:
        """The body of a for loop, in the scope _loop_var opened. As in the newest bpftrace, a
        variable first assigned in the body belongs to it: a use after the loop is refused
        (Undefined or undeclared variable), and each iteration starts it afresh (zero). Its
        slot still lives all probe (block_locals), one per name: ``loop.body_locals`` tells
        the lowering not to write it back (lower_loops._pass_vars). Blocks of if/else keep
        bpftrace 0.17's probe-wide variables."""
        self.loop_depth += 1
        home = self.var_home
        self.var_home = len(self.scopes) - 1
        try:
            self.block(body, new_scope=False)
        finally:
            self.var_home = home
            self.loop_depth -= 1
            scope = self.scopes.pop()
        if loop is not None:
            mine = {n for n in scope.vars if n != loop.var.name}
            loop.body_locals = frozenset(mine)
            for n in mine:
                self.block_locals[n] = scope.vars[n]

    def loop_local_type(self, name: str, typ: Type, span) -> Type:
        """The type of a variable first assigned in a loop body: its slot is shared with the
        variables of that name elsewhere in the probe (other loops, a later probe-wide one),
        so their types must agree (the slot gets the wider)."""
        from ptrace_lang.sema.types import compatible, widen

        old = self.block_locals.get(name)
        if old is None:
            return typ
        if not compatible(old, typ):
            self.error(f"Type mismatch for ${name}: trying to assign value of type '{typ}' "
                       f"when variable already has a type '{old}'", span)
            return old
        typ = widen(old, typ)
        self.block_locals[name] = typ
        return typ

    def map_element_type(self, ref: ast.MapRef, info) -> Type:
        """The type a script sees for a value of map ``info`` (aggregations as integers)."""
        vt = info.value_type
        if isinstance(vt, AggT):
            if vt.kind in ("hist", "lhist", "stats"):
                self.error(f"Loop over map {info.name} of type {vt.kind}() is not supported: "
                           "its values are not integers", ref.span)
                return INT64
            return UINT64 if vt.kind == "count" else IntT(64, vt.signed)
        return vt

    def stmt_ForMap(self, s: ast.ForMap) -> None:
        ref = s.map
        if ref.keys is not None:
            self.error("Loop expression must be a map without a key: "
                       f"for (${s.var.name} : @{ref.name})", ref.span)
        info = self.maps.get("@" + ref.name)
        kv: Type = TupleT((INT64, INT64))
        if info is None and not self.final:
            # the map is assigned in a later probe: learn the rest of this one in the second
            # pass, when the types of $kv are known (analyze() skips the probe for now)
            from ptrace_lang.errors import NotSupportedYet

            raise NotSupportedYet("a loop over a map assigned later", ref.span)
        if info is None:
            self.error(f"Undefined map: @{ref.name}", ref.span)
        elif info.key_type is None:
            self.error(f"Loop over a map without keys is not allowed: @{ref.name} is a scalar "
                       "map", ref.span)
        else:
            kv = TupleT((info.key_type, self.map_element_type(ref, info)))
        ref.type = kv
        self._loop_var(s.var, kv, s.span)
        self._loop_body(s.body, s)

    def stmt_ForRange(self, s: ast.ForRange) -> None:
        for e, what in ((s.start, "start"), (s.end, "end")):
            t = self.expr(e)
            if not t.is_int:
                self.error(f"Loop range requires an integer for the {what} value, got '{t}'",
                           e.span)
        self._loop_var(s.var, INT64, s.span)
        self._loop_body(s.body, s)

    def stmt_Return(self, s: ast.Return) -> None:
        if s.value is not None:
            t = self.expr(s.value)
            if not t.is_int:
                self.error(f"return value must be an integer, got '{t}'", s.value.span)

    def fn_len(self, e: ast.Call) -> Type:
        if (len(e.args) == 1 and isinstance(e.args[0], (ast.Builtin, ast.Call))
                and e.args[0].name in ("kstack", "ustack")):
            self.expr(e.args[0])      # len(ustack): the number of frames (bpftrace 0.26)
            return INT64
        if (len(e.args) != 1 or not isinstance(e.args[0], ast.MapRef)
                or e.args[0].keys is not None):
            self.error(*map_call_error("len", e.args, e.span, 1), ["len(@map)", "len(ustack)"])
            for a in e.args:
                if not isinstance(a, ast.MapRef):
                    self.expr(a)
            return INT64
        ref = e.args[0]
        info = self.maps.get("@" + ref.name)
        if info is None:
            self.error(f"Undefined map: @{ref.name}", ref.span)
            return INT64
        if info.key_type is None:
            self.error("len() expects a map with keys; "
                       f"@{ref.name} is a scalar map", ref.span, ["len(@map)"])
        ref.type = info.value_type
        return INT64

    # ------------------------------------------------------------------ let
    def let(self, s: ast.Let) -> None:
        """``let $x [: type] [= value];``: declared in the current block. A declared type is
        kept (values are converted to it when assigned, never widened); a constant that does
        not fit it is an error. ``let $x;`` alone takes its type from the first assignment."""
        from ptrace_lang.sema.types import compatible

        name = s.var.name
        declared = self.type_name(s.declared) if s.declared is not None else None
        vt = self.stored_type(s.value) if s.value is not None else None
        if self.lookup_var(name) is not None:
            self.error(f"Variable ${name} was already declared. Variable shadowing is not "
                       "allowed.", s.span)
        if declared is not None and vt is not None:
            if not compatible(declared, vt):
                self.error(f"Type mismatch for ${name}: trying to assign value of type '{vt}' "
                           f"when variable already has a type '{declared}'", s.span)
            elif isinstance(declared, IntT):
                c = self.const_int(s.value)
                if c is not None and not int_fits(c, declared):
                    self.error(f"Type mismatch for ${name}: trying to assign value '{c}' which "
                               f"does not fit into the variable of type '{declared}'", s.span)
        typ = declared or vt
        if typ is None:
            s.var.type = None            # typed by its first assignment
            return
        if declared is not None:
            self.typed_vars.add(name)
        if declared is None and flexible_literal(s.value):
            self.flex_vars.add(name)       # let $n = 0: sign-flexible, as $n = 0
        else:
            self.flex_vars.discard(name)
        self.scopes[-1].vars[name] = typ
        if len(self.scopes) > 1:
            self.block_locals.setdefault(name, typ)
        self.var_spans.setdefault(name, s.span)
        s.var.type = typ

    # ------------------------------------------------------------------ block expressions
    def expr_BlockExpr(self, e: ast.BlockExpr) -> Type:
        self.scopes.append(Scope())
        for st in e.stmts:
            self.stmt(st)
        t = self.expr(e.value)
        self.scopes.pop()
        return t


def int_fits(v: int, t: IntT) -> bool:
    if t.signed:
        return -(1 << (t.bits - 1)) <= v < (1 << (t.bits - 1))
    return 0 <= v < (1 << t.bits)
