"""``AggsLowering``, a mixin of ``llvmbackend.lower.Lowering``: aggregations (count, sum, min,
max, avg, stats, hist, lhist) updated in their per-CPU hash maps as the direct backend does
(codegen/lower_maps.py), and read back as an integer (``agg_value``: every CPU's slot combined
with bpf_map_lookup_percpu_elem, as codegen/lower_loops.py's ``_agg_value``).
"""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang.bpf import uapi as U
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.llvmbackend.irbase import I1, I64, PTR, c64


class AggsLowering:
    def agg_value(self, layout, key) -> ir.Value:
        """The entry's value over every CPU: summed (count, sum), the least/greatest of the
        CPUs that have one (min, max), sum / count (avg, stats); 0 when no CPU has it."""
        agg = layout.agg
        b = self.b
        total, cnt, first = self.alloca(8), self.alloca(8), self.alloca(8)
        for slot, v in ((total, 0), (cnt, 0), (first, 1)):
            self.store(slot, 0, v)
        m = self.map_ref(layout.kernel_name)
        for cpu in range(self.target.cpu_id_limit):
            p = self.call(U.FN_MAP_LOOKUP_PERCPU_ELEM, PTR, m, key, c64(cpu))

            def one(p=p):
                v = self.load(p, 0)
                if agg.kind in ("count", "sum"):
                    self.store(total, 0, b.add(self.load(total, 0), v))
                elif agg.kind in ("avg", "stats"):
                    self.store(cnt, 0, b.add(self.load(cnt, 0), v))
                    self.store(total, 0, b.add(self.load(total, 0), self.load(p, 8)))
                else:                       # min / max: (value, set flag)
                    cur = self.load(total, 0)
                    pred = "<" if agg.kind == "min" else ">"
                    better = (b.icmp_signed(pred, v, cur) if agg.signed
                              else b.icmp_unsigned(pred, v, cur))
                    take = b.and_(b.icmp_unsigned("!=", self.load(p, 8), c64(0)),
                                  b.or_(b.icmp_unsigned("!=", self.load(first, 0), c64(0)),
                                        better))

                    def set_():
                        self.store(total, 0, v)
                        self.store(first, 0, 0)

                    self.branch(take, set_)

            self.branch(self.found(p), one)
        out = self.load(total, 0)
        if agg.kind in ("avg", "stats"):
            n = self.load(cnt, 0)

            def mean():
                if not agg.signed:
                    return b.udiv(out, n)
                # a count is positive: the quotient of |sum|, negated for a negative sum
                # (an unsigned division, which every BPF CPU version has)
                neg = b.icmp_signed("<", out, c64(0))
                q = b.udiv(b.select(neg, b.neg(out), out), n)
                return b.select(neg, b.neg(q), q)

            return self.select_value(b.icmp_unsigned("!=", n, c64(0)), mean, lambda: c64(0))
        return out

    def aggregate(self, ref: ast.MapRef, layout, call: ast.Call) -> None:
        agg = layout.agg
        kind = agg.kind
        if kind == "tseries":
            self.tseries_aggregate(ref, layout, call)
            return
        if kind not in ("count", "sum", "min", "max", "avg", "stats", "hist", "lhist"):
            raise unsupported(f"the aggregation {kind}()", call.span)
        value = self.scalar(call.args[0]) if call.args else None
        extra = 8 if kind in ("hist", "lhist") else 0
        key = self.build_key(ref, layout, extra)
        if kind == "hist":
            self.store(key, layout.key_size, self.hist_bucket(value, agg.hist_k))
        elif kind == "lhist":
            self.store(key, layout.key_size, self.lhist_bucket(value, *agg.lhist))
        v = self.lookup(layout, key)

        def hit():
            if kind in ("count", "hist", "lhist"):
                self.b.atomic_rmw("add", v, c64(1), "monotonic")
            elif kind == "sum":
                self.store(v, 0, self.b.add(self.load(v, 0), value))
            elif kind in ("avg", "stats"):
                self.store(v, 0, self.b.add(self.load(v, 0), c64(1)))
                self.store(v, 8, self.b.add(self.load(v, 8), value))
            else:
                seen = self.b.icmp_unsigned("!=", self.load(v, 8), c64(0))
                cur = self.load(v, 0)
                pred = "<=" if kind == "min" else ">="
                keep = (self.b.icmp_signed(pred, cur, value) if agg.signed
                        else self.b.icmp_unsigned(pred, cur, value))

                def set_():
                    self.store(v, 0, value)
                    self.store(v, 8, 1)

                self.branch(self.b.and_(seen, keep), lambda: None, set_)

        def miss():
            val = self.alloca(layout.value_size)
            if kind in ("count", "hist", "lhist"):
                self.store(val, 0, 1)
            elif kind == "sum":
                self.store(val, 0, value)
            elif kind in ("avg", "stats"):
                self.store(val, 0, 1)
                self.store(val, 8, value)
            else:
                self.store(val, 0, value)
                self.store(val, 8, 1)
            self.update(layout, key, val)

        self.branch(self.found(v), hit, miss)

    def hist_bucket(self, value, k: int) -> ir.Value:
        """As runtime.format.hist_index (N = 2^k): v < 0 -> 0; v < N -> v + 1; else with
        p = floor(log2 v), s = p - k: (s << k) + (v >> s) + 1 (p + 2 when k = 0)."""
        b = self.b
        # floor(log2 v) as 63 - ctlz(v): BPF has no clz, LLVM expands it without branches
        # (a select per bit of a binary search became a branch each, and the verifier
        # walked their paths: 749 instructions verified for @ = hist(x) where now fewer)
        lg = b.sub(c64(63), b.ctlz(value, ir.Constant(I1, 0)))
        if k == 0:
            high = b.add(lg, c64(2))
        else:
            s = b.sub(lg, c64(k))
            high = b.add(b.add(b.lshr(value, s), c64(1)), b.shl(s, c64(k)))
        small = b.icmp_unsigned("<", value, c64(1 << k))
        out = b.select(small, b.add(value, c64(1)), high)
        return b.select(b.icmp_signed("<", value, c64(0)), c64(0), out)

    def lhist_bucket(self, value, lo: int, hi: int, step: int) -> ir.Value:
        b = self.b
        n = (hi - lo) // step
        mid = b.add(b.udiv(b.sub(value, c64(lo)), c64(step)), c64(1))
        out = b.select(b.icmp_signed(">", value, c64(hi)), c64(n + 1), mid)
        return b.select(b.icmp_signed("<", value, c64(lo)), c64(0), out)

    def tseries_aggregate(self, ref: ast.MapRef, layout, call: ast.Call) -> None:
        """tseries(v, interval, n[, agg]) as the direct backend keeps it: the interval number
        i = ktime / interval in key slot i % n; per-CPU value (i, a, b), restarted when it
        holds an older interval. sum: (sum, -); avg: (count, total); min/max: (value, -);
        the last value: (value, ktime)."""
        b = self.b
        interval, num, how = layout.agg.tseries
        value = self.scalar(call.args[0])
        now = self.call(U.FN_KTIME_GET_NS, I64)
        idx = b.udiv(now, c64(interval))
        key = self.build_key(ref, layout, 8)
        self.store(key, layout.key_size, b.urem(idx, c64(num)))
        v = self.lookup(layout, key)
        first = (c64(1) if how == "avg" else value, value if how == "avg" else now)

        def current():
            if how == "sum":
                self.store(v, 8, b.add(self.load(v, 8), value))
            elif how == "avg":
                self.store(v, 8, b.add(self.load(v, 8), c64(1)))
                self.store(v, 16, b.add(self.load(v, 16), value))
            elif how in ("min", "max"):
                pred = "<" if how == "min" else ">"
                t = self.load(v, 8)
                better = (b.icmp_signed(pred, value, t) if layout.agg.signed
                          else b.icmp_unsigned(pred, value, t))
                self.branch(better, lambda: self.store(v, 8, value))
            else:
                self.store(v, 8, value)
                self.store(v, 16, now)

        def restart():          # an entry of an interval n intervals ago starts afresh
            for off, x in ((0, idx), (8, first[0]), (16, first[1])):
                self.store(v, off, x)

        def hit():
            self.branch(b.icmp_unsigned("==", self.load(v, 0), idx), current, restart)

        def miss():
            val = self.alloca(24)
            for off, x in ((0, idx), (8, first[0]), (16, first[1])):
                self.store(val, off, x)
            self.update(layout, key, val)

        self.branch(self.found(v), hit, miss)
