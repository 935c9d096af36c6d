"""Loops that run as BPF subprograms: ``for ($kv : @map)`` (bpf_for_each_map_elem),
``for ($i : a..b)`` (bpf_loop) and ``len(@map)``.

The body of such a loop is lowered into a callback: a function of its own (its own IR, frame,
virtual registers, register allocation), listed in ``Lowering.subprogs`` and linked after the
probe's code by ``codegen.subprogs.link``. The caller passes one context struct on its stack:

    +0   the probe's context pointer (args, the attach cookie and helpers need it)
    +8   a flag the callback sets when the body returns from the probe (``return``, ``exit()``)
    +16  the probe's variables the body uses, 8 bytes per scalar, their size for the others

The callback copies the variables it uses into its own registers and frame on entry and writes
those it assigns back before it returns (0: next element / iteration, 1: stop — ``break``, or a
return from the probe); the caller reloads them after the helper call, so assignments in the
body are seen after the loop, as in bpftrace. A return from the probe inside the body sets the
flag, which the caller tests to leave the probe too (a loop inside a loop passes it on).
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

from ptrace_lang.bpf.uapi import FN_FOR_EACH_MAP_ELEM, FN_LOOP, FN_MAP_LOOKUP_PERCPU_ELEM
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.frame import Frame
from ptrace_lang.codegen.ir import FP, R0, R1, R2, R3, R4, VReg
from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import AggT, TupleT, is_scalar

# bpf_loop refuses more than this many iterations (BPF_MAX_LOOPS)
MAX_LOOPS = 1 << 23
CTX_OFF, FLAG_OFF, VARS_OFF = 0, 8, 16


@dataclass
class Subprogram:
    """One callback: its IR, its frame, its argument count and the function it is called from
    (an index into ``subprogs``, -1 for the probe's own code)."""

    name: str
    insns: list = field(default_factory=list)
    frame: Frame = field(default_factory=Frame)
    nargs: int = 2
    parent: int = -1


def used_vars(node: ast.Node) -> tuple[set[str], set[str]]:
    """($vars read or written in ``node``, $vars assigned in it)."""
    used, assigned = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Var):
            used.add(n.name)
        if isinstance(n, ast.Assign) and isinstance(n.target, ast.Var):
            assigned.add(n.target.name)
        elif isinstance(n, ast.Let):
            assigned.add(n.var.name)
        elif isinstance(n, ast.IncDec) and isinstance(n.target, ast.Var):
            assigned.add(n.target.name)
        elif isinstance(n, (ast.ForMap, ast.ForRange)):
            assigned.add(n.var.name)
    return used, assigned


class LoopsLowering:
    """Mixin of ``Lowering``: loops as callbacks."""

    def _subprogs(self) -> list[Subprogram]:
        subs = self.__dict__.get("subprogs")
        if subs is None:
            subs = self.subprogs = []
            self.current_fn = -1
        return subs

    # ------------------------------------------------------------------ the caller's side
    def _pass_vars(self, body: ast.Node, local: str, fresh=frozenset()):
        """The context struct: (its offset, [(name, offset in struct, type)], assigned names).
        ``fresh``: the body's own variables (sema's body_locals): passed as they are (zero, never
        written back), so each iteration starts them afresh."""
        used, assigned = used_vars(body)
        assigned = assigned - fresh
        passed, off = [], VARS_OFF
        for name in sorted(used):
            if name == local or name not in self.vars:
                continue
            typ = self.var_types[name]
            passed.append((name, off, typ))
            off += 8 if is_scalar(typ) or self._by_ref(name) else (typ.size() + 7) // 8 * 8
        ctxs = self.frame.alloc(off, body.span)
        self.emit(ir.Store(FP, ctxs + CTX_OFF, self.ctx, 8))
        self.emit(ir.Store(FP, ctxs + FLAG_OFF, 0, 8))
        for name, o, typ in passed:
            if is_scalar(typ):
                self.emit(ir.Store(FP, ctxs + o, self.vars[name], 8))
            elif self._by_ref(name):     # a big value: its address (the body works in place)
                self.emit(ir.Store(FP, ctxs + o, self.address_of(*self.vars[name]), 8))
            else:
                self.copy_mem(FP, ctxs + o, *self.vars[name], typ.size())
        return ctxs, passed, assigned

    def _after_call(self, ctxs: int, passed, assigned) -> None:
        for name, o, typ in passed:
            if name not in assigned or self._by_ref(name):
                continue
            if is_scalar(typ):
                self.emit(ir.Load(self.vars[name], FP, ctxs + o, 8))
            else:
                self.copy_mem(*self.vars[name], FP, ctxs + o, typ.size())
        flag = self.vreg()
        self.emit(ir.Load(flag, FP, ctxs + FLAG_OFF, 8))
        self.emit(ir.CondJump("jne", flag, 0, self.exit_label))

    def _by_ref(self, name: str) -> bool:
        """A variable held outside the stack (the scratch value, or by a caller's address):
        passed to a loop body by address."""
        slot = self.vars.get(name)
        return isinstance(slot, tuple) and slot[0] is not FP

    # ------------------------------------------------------------------ the callback's side
    def _callback(self, name: str, nargs: int, ctx_arg, passed, assigned, prologue, body):
        """Lower ``body`` as a new function; ``prologue(args)`` runs first with the argument
        registers copied into vregs. Returns the function's name."""
        subs = self._subprogs()
        sub = Subprogram(f"{name}_{len(subs)}", nargs=nargs, parent=self.current_fn)
        subs.append(sub)
        byref = {vname for vname, _, _ in passed if self._by_ref(vname)}
        saved = (self.insns, self.frame, self.vars, self.loops, self.ctx, self.exit_label,
                 self.current_fn, getattr(self, "_skip", None), getattr(self, "_done", None))
        self.insns, self.frame, self.loops = sub.insns, sub.frame, []
        self.current_fn = len(subs) - 1
        args = [self.vreg() for _ in range(nargs)]
        for a, r in zip(args, (R1, R2, R3, R4)):
            self.mov(a, r)
        cstruct = args[ctx_arg]
        self.ctx = self.vreg()
        self.emit(ir.Load(self.ctx, cstruct, CTX_OFF, 8))
        self.vars = {}
        for vname, o, typ in passed:
            if is_scalar(typ):
                r = self.vars[vname] = self.vreg()
                self.emit(ir.Load(r, cstruct, o, 8))
            elif vname in byref:
                r = self.vreg()
                self.emit(ir.Load(r, cstruct, o, 8))
                self.vars[vname] = (r, 0)
            else:
                slot = self.frame.alloc(typ.size(), body.span)
                self.vars[vname] = (FP, slot)       # memory variables: (base, offset)
                self.copy_mem(FP, slot, cstruct, o, typ.size())
        cont, brk, ret = self.label("next"), self.label("stop"), self.label("leave")
        self.exit_label = ret
        prologue(args)
        self.loops = [(cont, brk)]
        outer_slots = self.addr_slots_for(body)       # &$x in the body: slots of its frame
        self.block(body)
        self.addr_slots = outer_slots
        # the end of the body and `continue`: write back, next element; `break`: write back, stop
        for label, rv in ((cont, 0), (brk, 1)):
            self.emit(ir.Label(label))
            for vname, o, typ in passed:
                if vname not in assigned or vname in byref:
                    continue
                if is_scalar(typ):
                    self.emit(ir.Store(cstruct, o, self.vars[vname], 8))
                else:
                    self.copy_mem(cstruct, o, *self.vars[vname], typ.size())
            self.mov(R0, rv)
            self.emit(ir.Exit())
        # a return from the probe (return, exit()): raise the flag, stop
        self.emit(ir.Label(ret))
        self.emit(ir.Store(cstruct, FLAG_OFF, 1, 8))
        self.mov(R0, 1)
        self.emit(ir.Exit())
        (self.insns, self.frame, self.vars, self.loops, self.ctx, self.exit_label,
         self.current_fn, self._skip, self._done) = saved
        return sub.name

    # ------------------------------------------------------------------ for ($kv : @map)
    def lower_ForMap(self, s: ast.ForMap) -> None:
        self._subprogs()
        layout = self.maps["@" + s.map.name]
        kv_type: TupleT = s.var.type
        ctxs, passed, assigned = self._pass_vars(s.body, s.var.name, s.body_locals)
        var_types = self.var_types
        self.var_types = dict(var_types)
        self.var_types[s.var.name] = kv_type

        def prologue(args):
            key, value = args[1], args[2]
            slot = self.frame.alloc(kv_type.size(), s.span)
            self.vars[s.var.name] = (FP, slot)
            (koff, kspan), (voff, vspan) = kv_type.spans()
            kt, vt = kv_type.elems
            self.stored_into_elem(FP, slot + koff, kt, kspan, key)
            if layout.agg is not None:
                self.elem_store(self._agg_value(layout, key, value), FP, slot + voff, vt, vspan)
            else:
                self.stored_into_elem(FP, slot + voff, vt, vspan, value)

        fn = self._callback("for_each", 4, 3, passed, assigned, prologue, s.body)
        self.var_types = var_types
        f = self.vreg()
        self.emit(ir.LoadFuncAddr(f, 0, func=fn))
        self.call(FN_FOR_EACH_MAP_ELEM, ("map", layout.kernel_name), f, ("fp", ctxs), 0)
        self._after_call(ctxs, passed, assigned)

    def _agg_value(self, layout, key: VReg, value: VReg) -> VReg:
        """The value of a count/sum/min/max/avg entry as a script reads it: summed (count, sum)
        or combined (min, max; avg = sum / count) over every CPU's slot with
        bpf_map_lookup_percpu_elem."""
        agg: AggT = layout.agg
        ncpus = self.target.cpu_id_limit
        total, cnt = self.vreg(), self.vreg()
        self.mov(total, 0)
        self.mov(cnt, 0)
        first = self.vreg()
        self.mov(first, 1)
        for cpu in range(ncpus):
            skip = self.label("cpu")
            self.call(FN_MAP_LOOKUP_PERCPU_ELEM, ("map", layout.kernel_name), key, cpu)
            p = self.result()
            self.emit(ir.CondJump("jeq", p, 0, skip))
            v = self.vreg()
            self.emit(ir.Load(v, p, 0, 8))
            if agg.kind in ("count", "sum"):
                self.emit(ir.Alu("add", total, v))
            elif agg.kind in ("avg", "stats"):
                self.emit(ir.Alu("add", cnt, v))
                v2 = self.vreg()
                self.emit(ir.Load(v2, p, 8, 8))
                self.emit(ir.Alu("add", total, v2))
            else:                           # min / max: (value, set flag)
                isset = self.vreg()
                self.emit(ir.Load(isset, p, 8, 8))
                self.emit(ir.CondJump("jeq", isset, 0, skip))
                take = self.label("take")
                self.emit(ir.CondJump("jne", first, 0, take))
                if agg.kind == "min":
                    op = "jsge" if agg.signed else "jge"
                else:
                    op = "jsle" if agg.signed else "jle"
                self.emit(ir.CondJump(op, v, total, skip))
                self.emit(ir.Label(take))
                self.mov(total, v)
                self.mov(first, 0)
            self.emit(ir.Label(skip))
        if agg.kind in ("avg", "stats"):
            done = self.label("avg")
            self.emit(ir.CondJump("jeq", cnt, 0, done))
            self.emit(ir.Alu("sdiv" if agg.signed else "div", total, cnt))
            self.emit(ir.Label(done))
        return total

    # ------------------------------------------------------------------ for ($i : a..b)
    def lower_ForRange(self, s: ast.ForRange) -> None:
        self._subprogs()
        start = self.scalar(s.start)
        end = self.scalar(s.end)
        n = self.vreg()
        self.mov(n, end)
        self.emit(ir.Alu("sub", n, start))
        skip = self.label("norange")
        # an empty range (end <= start) runs no iteration; bpf_loop caps the count
        self.emit(ir.CondJump("jsle", end, start, skip))
        ctxs, passed, assigned = self._pass_vars(s.body, s.var.name, s.body_locals)
        start_off = self.frame.alloc(8, s.span)
        self.emit(ir.Store(FP, start_off, start, 8))
        var_types = self.var_types
        self.var_types = dict(var_types)
        self.var_types[s.var.name] = s.var.type
        # the callback reads the start from the caller's stack: passed as a hidden variable
        passed = passed + [(" start", start_off - ctxs, s.var.type)]

        def prologue(args):
            i = self.vars[s.var.name] = self.vreg()
            self.mov(i, args[0])
            self.emit(ir.Alu("add", i, self.vars[" start"]))

        fn = self._callback("loop", 2, 1, passed, assigned, prologue, s.body)
        self.var_types = var_types
        f = self.vreg()
        self.emit(ir.LoadFuncAddr(f, 0, func=fn))
        self.call(FN_LOOP, n, f, ("fp", ctxs), 0)
        self._after_call(ctxs, passed, assigned)
        self.emit(ir.Label(skip))

    # ------------------------------------------------------------------ len(@map)
    def call_len(self, e: ast.Call) -> VReg:
        """len(@map): the number of entries, counted by bpf_for_each_map_elem (which returns
        the number of elements it visited) with a callback that only continues."""
        ref = e.args[0]
        if not isinstance(ref, ast.MapRef):
            return self.stack_len(ref)
        layout = self.maps["@" + ref.name]
        if layout.info.key_type is None:
            return self.const(1)
        subs = self._subprogs()
        name = "count_elems"
        if not any(sb.name == name for sb in subs):
            sub = Subprogram(name, nargs=4, parent=self.current_fn)
            sub.insns.extend([ir.Alu("mov", R0, 0), ir.Exit()])
            subs.append(sub)
        f = self.vreg()
        self.emit(ir.LoadFuncAddr(f, 0, func=name))
        self.call(FN_FOR_EACH_MAP_ELEM, ("map", layout.kernel_name), f, 0, 0)
        return self.result()

    # ------------------------------------------------------------------ let, block expressions
    def lower_let(self, s: ast.Let) -> None:
        name = s.var.name
        if s.value is not None:
            self.assign_var(s.var, s.value)
            return
        typ = s.var.type or self.var_types.get(name)
        if typ is None:
            return
        if is_scalar(typ):
            self.mov(self.var_reg(name), 0)
        else:
            self.zero_mem(*self.vars[name], typ.size())

    def _block_stmts(self, stmts) -> None:
        for st in stmts:
            prev = self.at(st)
            self.stmt(st)
            self.span = prev

    def scalar_BlockExpr(self, e: ast.BlockExpr) -> VReg:
        self._block_stmts(e.stmts)
        return self.scalar(e.value)

    def into_node_BlockExpr(self, e: ast.BlockExpr, base, off: int, typ) -> None:
        self._block_stmts(e.stmts)
        self.expr_into(e.value, base, off, typ)
