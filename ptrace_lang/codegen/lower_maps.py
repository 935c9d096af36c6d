"""Lowering of map access and aggregations: keys, lookups and updates, ``@m += v``,
``count()``/``sum()``/``min()``/``max()``/``avg()``/``stats()``/``hist()``/``lhist()``,
``delete()``.

A script map ``@x`` is the kernel map ``m_x`` (``MapLayout``); aggregations are per-CPU maps
(summed in user space), hist/lhist with the bucket index appended to the key. A failed update
(map full) is counted in ``COUNTER_MAP_FULL``.

A mixin of ``lower.Lowering``.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import (
    BPF_ANY, BPF_NOEXIST, FN_KTIME_GET_NS, FN_MAP_DELETE_ELEM, FN_MAP_LOOKUP_ELEM, FN_MAP_UPDATE_ELEM,
)
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import FP, R0, VReg
from ptrace_lang.errors import NotSupportedYet
from ptrace_lang.frontend import ast
from ptrace_lang.sema.analyze import MapInfo
from ptrace_lang.sema.types import AggT, TupleT, Type


# The kernel key of a map without a script key (``@x``): any constant would do (user space
# iterates the map and ignores it); 1 doubles as the initial value 1 of count(), hist() and
# lhist(), so the insert on a miss passes the key's address as the value's.
KEYLESS_KEY = 1


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
        return self.key_size + (8 if a is not None and a.kind in ("hist", "lhist", "tseries") else 0)


def map_layout(info: MapInfo) -> MapLayout:
    key_size = info.key_type.size() if info.key_type is not None else 8
    vt = info.value_type
    if isinstance(vt, AggT):
        value_size = {"count": 8, "sum": 8, "min": 16, "max": 16, "avg": 16, "stats": 16,
                      "hist": 8, "lhist": 8, "tseries": 24}[vt.kind]
        return MapLayout(info, kernel_map_name(info.name), key_size, value_size, True)
    return MapLayout(info, kernel_map_name(info.name), key_size, max(vt.size(), 8), False)


NEGATED_JUMP = {"jeq": "jne", "jne": "jeq", "jgt": "jle", "jge": "jlt", "jlt": "jge",
                "jle": "jgt", "jsgt": "jsle", "jsge": "jslt", "jslt": "jsge", "jsle": "jsgt"}


def jump_taken(op: str, a: int, b: int) -> bool:
    """Whether the 64-bit compare ``op`` of a with b jumps (b sign-extended as an immediate)."""
    m = (1 << 64) - 1
    ua, ub = a & m, b & m
    sa, sb = (ua - (1 << 64) if ua >> 63 else ua), (ub - (1 << 64) if ub >> 63 else ub)
    return {"jeq": ua == ub, "jne": ua != ub, "jgt": ua > ub, "jge": ua >= ub, "jlt": ua < ub,
            "jle": ua <= ub, "jsgt": sa > sb, "jsge": sa >= sb, "jslt": sa < sb,
            "jsle": sa <= sb}[op]


class MapsLowering:
    """Methods mixed into ``Lowering`` (``self`` is a ``Lowering``)."""

    def stmt_delete(self, e: ast.Call) -> None:
        ref = e.args[0]
        layout = self.maps["@" + ref.name]
        if layout.agg is not None and layout.agg.kind in ("hist", "lhist"):
            raise NotSupportedYet("delete() on a hist/lhist map", e.span)
        key = self.build_key(ref, layout)
        self.call(FN_MAP_DELETE_ELEM, ("map", layout.kernel_name), self.key_arg(key))

    def call_delete(self, e: ast.Call) -> VReg:
        """delete() as a value: true when the key was there (the helper returned 0)."""
        self.stmt_delete(e)
        out = self.vreg()
        self.mov(out, R0)
        self.emit(ir.Alu("arsh", out, 63))      # -1 on a failure, 0 on success
        self.emit(ir.Alu("add", out, 1))
        return out

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
            self.emit(ir.Store(base, off, KEYLESS_KEY, 8))
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
        failed = self.vreg()
        self.mov(failed, R0)
        self.emit(ir.Alu("rsh", failed, 63))
        self.emit(ir.AtomicAdd(self.counters_address(), S.COUNTER_MAP_FULL * 8, failed, 8))

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

    def map_scalar_ref(self, e: ast.Expr) -> bool:
        """``e`` reads an integer map entry (not an aggregation)."""
        return isinstance(e, ast.MapRef) and self.maps["@" + e.name].agg is None \
            and e.type is not None and e.type.is_int

    def map_compare(self, ref: ast.MapRef, op: str, k: int, false_label: str) -> None:
        """The condition ``@m[k] OP K`` (``op`` a BPF jump, true when it jumps): a missing
        key's value 0 decides it at the null test, which jumps straight to where the
        condition's outcome goes (no 0 default joining the value read)."""
        layout = self.maps["@" + ref.name]
        v = self.lookup(layout, self.build_key(ref, layout))
        true = None
        if jump_taken(op, 0, k):
            true = self.label("true")
        self.emit(ir.CondJump("jeq", v, 0, true or false_label))
        out = self.vreg()
        self.emit(ir.Load(out, v, 0, 8))
        self.emit(ir.CondJump(NEGATED_JUMP[op], out, k, false_label))
        if true is not None:
            self.emit(ir.Label(true))

    def map_read_into(self, ref: ast.MapRef, layout: MapLayout, base, off: int, typ: Type) -> None:
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)
        miss, done = self.label("miss"), self.label("read")
        self.emit(ir.CondJump("jeq", v, 0, miss))
        vt = layout.info.value_type
        src_size = vt.size()
        if isinstance(vt, TupleT) and isinstance(typ, TupleT) and vt != typ:
            self.tuple_copy(base, off, typ, v, 0, vt)   # another layout: element by element
        else:
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
        if kind == "tseries":
            self.tseries_aggregate(ref, layout, call)
            return
        extra = 8 if kind in ("hist", "lhist") else 0
        # the key's address is computed once and kept: the key is written through it and it is
        # passed to the lookup and, on a miss, to the update. It comes before the bucket index,
        # whose branches make the verifier walk what follows them once per path: keep it short.
        # A key-less map's key (a constant) is even written before the value is computed, out
        # of the paths of the value's own branches (a map read's default...)
        key = self.var_as_key(ref, layout) if not extra else None
        if key is None and ref.keys is None:
            key = self.address_of(*self.alloc_mem(layout.key_size + extra, ref.span))
            self.build_key(ref, layout, extra, base=key)
        value = self.scalar(call.args[0]) if call.args else None
        if key is None:
            key = self.address_of(*self.alloc_mem(layout.key_size + extra, ref.span))
            self.build_key(ref, layout, extra, base=key)
        elif isinstance(key, int):
            key = self.address_of(FP, key)
        if kind == "hist":
            self.emit(ir.Store(key, layout.key_size, self.hist_bucket(value, agg.hist_k), 8))
        elif kind == "lhist":
            self.emit(ir.Store(key, layout.key_size, self.lhist_bucket(value, *agg.lhist), 8))
        v = self.lookup(layout, key)
        miss, done = self.label("miss"), self.label("agg")
        self.emit(ir.CondJump("jeq", v, 0, miss))
        self._agg_in_place(agg, v, value, done)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(miss))
        self._agg_insert(ref, layout, call, key, value)
        self.emit(ir.Label(done))

    def _agg_in_place(self, agg: AggT, v: VReg, value, done: str) -> None:
        """The aggregation's update of the value found at ``v``."""
        kind = agg.kind
        t = self.vreg()
        # adds as one atomic add each (one instruction where load-add-store is three; the
        # value is this CPU's, so it is never contended)
        if kind in ("count", "hist", "lhist"):
            self.mov(t, 1)
            self.emit(ir.AtomicAdd(v, 0, t, 8))
        elif kind == "sum":
            self.emit(ir.AtomicAdd(v, 0, value, 8))
        elif kind in ("avg", "stats"):
            self.mov(t, 1)
            self.emit(ir.AtomicAdd(v, 0, t, 8))
            self.emit(ir.AtomicAdd(v, 8, value, 8))
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

    def _agg_insert(self, ref: ast.MapRef, layout: MapLayout, call: ast.Call, key: VReg,
                    value) -> None:
        """The aggregation's first value for a key not in the map, inserted."""
        kind = layout.agg.kind
        if kind in ("count", "hist", "lhist") and ref.keys is None:
            # the key starts with the u64 KEYLESS_KEY == 1: it is the initial value too
            self.update(layout, key, (key, 0))
            return
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

    def tseries_aggregate(self, ref: ast.MapRef, layout: MapLayout, call: ast.Call) -> None:
        """``tseries(v, interval, n[, agg])``: interval number i = ktime / interval kept in slot
        i % n of the key (the script key plus a u64 slot), so a key holds at most n entries.
        Per-CPU value: (u64 i, a, b): an entry of an older interval is restarted. sum: (sum, -);
        avg: (count, total); min/max: (value, -); the last value: (value, ktime) so user space
        takes the latest of the CPUs'."""
        interval, num, how = layout.agg.tseries
        value = self.scalar(call.args[0])
        self.call(FN_KTIME_GET_NS)
        now = self.result()
        idx = self.vreg()
        self.mov(idx, now)
        self.emit(ir.Alu("div", idx, interval if interval < (1 << 31) else self.const(interval)))
        slot = self.vreg()
        self.mov(slot, idx)
        self.emit(ir.Alu("mod", slot, num))
        key = self.address_of(*self.alloc_mem(layout.key_size + 8, ref.span))
        self.build_key(ref, layout, 8, base=key)
        self.emit(ir.Store(key, layout.key_size, slot, 8))
        v = self.lookup(layout, key)
        miss, restart, done = self.label("miss"), self.label("restart"), self.label("ts")
        self.emit(ir.CondJump("jeq", v, 0, miss))
        cur = self.vreg()
        self.emit(ir.Load(cur, v, 0, 8))
        self.emit(ir.CondJump("jne", cur, idx, restart))
        t = self.vreg()
        if how == "sum":
            self.emit(ir.Load(t, v, 8, 8))
            self.emit(ir.Alu("add", t, value))
            self.emit(ir.Store(v, 8, t, 8))
        elif how == "avg":
            self.emit(ir.Load(t, v, 8, 8))
            self.emit(ir.Alu("add", t, 1))
            self.emit(ir.Store(v, 8, t, 8))
            t2 = self.vreg()
            self.emit(ir.Load(t2, v, 16, 8))
            self.emit(ir.Alu("add", t2, value))
            self.emit(ir.Store(v, 16, t2, 8))
        elif how in ("min", "max"):
            self.emit(ir.Load(t, v, 8, 8))
            signed = layout.agg.signed
            op = ("jsle" if signed else "jle") if how == "min" else ("jsge" if signed else "jge")
            self.emit(ir.CondJump(op, t, value, done))
            self.emit(ir.Store(v, 8, value, 8))
        else:
            self.emit(ir.Store(v, 8, value, 8))
            self.emit(ir.Store(v, 16, now, 8))
        self.emit(ir.Jump(done))
        # an entry of an interval n intervals ago: this interval starts afresh in its slot
        self.emit(ir.Label(restart))
        self.emit(ir.Store(v, 0, idx, 8))
        self.emit(ir.Store(v, 8, 1 if how == "avg" else value, 8))
        self.emit(ir.Store(v, 16, value if how == "avg" else now, 8))
        self.emit(ir.Jump(done))
        self.emit(ir.Label(miss))
        val = self.frame.alloc(24, call.span)
        self.emit(ir.Store(FP, val, idx, 8))
        self.emit(ir.Store(FP, val + 8, 1 if how == "avg" else value, 8))
        self.emit(ir.Store(FP, val + 16, value if how == "avg" else now, 8))
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
        if k:
            self.mov(out, value)
            self.emit(ir.Alu("add", out, 1))
        else:
            self.mov(out, 1)                # (v < 1 here is v == 0)
        self.emit(ir.CondJump("jlt", value, 1 << k, done))
        lg = self.log2_floor(value)
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

    def log2_floor(self, value: VReg) -> VReg:
        """floor(log2(v)) of 1 <= v < 2^63 by halving steps s = 32, 16, ..., 1 (add s and shift
        v right by s when v > 2^s - 1). The first step has no branch: t = s when v > 2^32 - 1,
        found as the sign of (2^32 - 1) - v (no overflow for such v), then v >>= t. Besides
        being as short as a compare with a 64-bit constant, the shift by a register leaves the
        verifier no bounds on v, so that it cannot decide the later compares, which would make
        it follow (and keep precise) each of their paths apart: the middle steps are a compare
        and a skip, every state of theirs the same to it. The last step (s = 1) has no branch
        either, t = (1 - v) >> 63: fewer paths reach the code after the bucket."""
        v = self.vreg()
        self.mov(v, value)
        lg = self.vreg()
        self.mov(lg, -1, 32)             # 0xffffffff, zero-extended
        self.emit(ir.Alu("sub", lg, v))
        self.emit(ir.Alu("rsh", lg, 63))
        self.emit(ir.Alu("lsh", lg, 5))
        self.emit(ir.Alu("rsh", v, lg))
        for shift in (16, 8, 4, 2):
            skip = self.label("lg")
            self.emit(ir.CondJump("jle", v, (1 << shift) - 1, skip))
            self.emit(ir.Alu("rsh", v, shift))
            self.emit(ir.Alu("add", lg, shift))
            self.emit(ir.Label(skip))
        t = self.vreg()
        self.mov(t, 1)
        self.emit(ir.Alu("sub", t, v))
        self.emit(ir.Alu("rsh", t, 63))
        self.emit(ir.Alu("add", lg, t))
        return lg

    def lhist_bucket(self, value: VReg, lo: int, hi: int, step: int) -> VReg:
        """Bucket index as runtime.format.lhist_index: v < lo -> 0, v > hi -> n + 1,
        else (v - lo) / step + 1, with n = (hi - lo) / step."""
        out = self.vreg()
        done = self.label("bucket")
        n = (hi - lo) // step

        def operand(v: int):       # an immediate is 32 bits: wider bounds go in a register
            return v if -(1 << 31) <= v < (1 << 31) else self.const(v)

        lo_op, hi_op, step_op = operand(lo), operand(hi), operand(step)
        self.mov(out, 0)
        self.emit(ir.CondJump("jslt", value, lo_op, done))
        self.mov(out, n + 1)
        self.emit(ir.CondJump("jsgt", value, hi_op, done))
        self.mov(out, value)
        if lo:
            self.emit(ir.Alu("sub", out, lo_op))
        if step != 1:
            self.emit(ir.Alu("div", out, step_op))
        self.emit(ir.Alu("add", out, 1))
        self.emit(ir.Label(done))
        return out
