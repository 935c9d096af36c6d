"""``AggregationsSema``, a mixin of ``sema.analyze._Analyzer``: what an aggregation assigned
to a map is (count, sum, avg, min, max, stats, hist, lhist, tseries) and its checks, and the
size an ``unroll`` expands to (bounded before anything is expanded)."""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.sema import builtins
from ptrace_lang.sema.types import VOID, AggT, IntT

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


class AggregationsSema:
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
