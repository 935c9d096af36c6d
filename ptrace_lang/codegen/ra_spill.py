"""Spill code of the register allocator (codegen/regalloc.py): the cost of spilling each vreg
(``_spill_plan``), the rewrite of a program for the vregs chosen (``_Spiller``: groups of uses
inside a block on one temp, rematerialisation of constants and frame addresses, a temp per
instruction for the rest), reloads forwarded from registers that still hold a slot's value,
and stack offsets for the slots (slots whose live ranges do not overlap share one)."""
from __future__ import annotations

from ptrace_lang.records import dataclass, replace

from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ra_analysis import (K, _REG_FIELDS, _Function, _backward_fixpoint,
                                             _is_move, _is_reg, _iter_bits, _subst)
from ptrace_lang.errors import NO_SPAN


# --------------------------------------------------------------------------------------------
# spill pseudo instructions (turned into plain Load/Store with concrete offsets at the end)


@dataclass
class _SpillLoad(ir.Load):
    slot: int = -1


@dataclass
class _SpillStore(ir.Store):
    slot: int = -1


def _remat_sequence(insns: list[ir.Insn], sites: list[int]) -> list[ir.Insn] | None:
    """The definition(s) of a vreg if they can be recomputed anywhere (rematerialisation):
    a single constant definition (``mov imm``, ``ld_imm64``, map fd) or a frame address
    (``v = r10; v += imm`` as two adjacent instructions)."""
    if len(sites) == 1:
        d = insns[sites[0]]
        if isinstance(d, (ir.LoadImm64, ir.LoadMapFd)):
            return [d]
        if isinstance(d, ir.Alu) and d.op == "mov" and isinstance(d.src, int):
            return [d]
        return None
    if len(sites) == 2 and sites[1] == sites[0] + 1:
        a, b = insns[sites[0]], insns[sites[1]]
        if (isinstance(a, ir.Alu) and a.op == "mov" and a.width == 64 and a.src == ir.FP
                and isinstance(b, ir.Alu) and b.op == "add" and b.width == 64
                and isinstance(b.src, int) and b.dst == a.dst):
            return [a, b]
    return None


# --------------------------------------------------------------------------------------------
# spill code


def _spill_plan(fn: _Function, after: list[int],
                singleton: set[int]) -> tuple[list[float], set[int]]:
    """Estimated cost of spilling each vreg, and which vregs are spilled by "groups".

    A spilled vreg is kept in one temp per *group*: a run of its uses/defs inside one basic
    block with no helper call in between. The temp is reloaded (or rematerialised) at the start
    of a group that reads the value and stored back after the group's last def if the value is
    still live when the group ends. The cost is the number of reloads and stores, weighted by
    loop depth. Grouping only helps a vreg that has more than one group or crosses a block
    boundary; the others (and spill temps, ``singleton``) are spilled around every single
    instruction, costing one reload per use and one store per def.
    """
    n = fn.nnodes
    group_cost = [0.0] * n
    plain_cost = [0.0] * n
    groups = [0] * n
    crosses = [False] * n
    for b, (s, e) in enumerate(fn.blocks):
        open_: dict[int, bool] = {}         # node -> dirty
        live_in = after[s]
        for d in fn.defs[s]:
            live_in &= ~(1 << d)
        for u in fn.uses[s]:
            live_in |= 1 << u
        for v in _iter_bits(live_in >> K):
            crosses[v + K] = True
        for i in range(s, e):
            w = fn.weight(i)
            if isinstance(fn.insns[i], ir.Call):
                for v, dirty in open_.items():
                    if dirty and after[i] >> v & 1:
                        group_cost[v] += w
                open_.clear()
            refs = [v for v in dict.fromkeys(fn.uses[i] + fn.defs[i]) if v >= K]
            for v in refs:
                is_use = v in fn.uses[i]
                is_def = v in fn.defs[i]
                plain_cost[v] += w * (is_use + is_def)
                if v not in open_:
                    open_[v] = False
                    groups[v] += 1
                    if is_use:
                        group_cost[v] += w
                if is_def:
                    open_[v] = True
            for v in refs:
                if v in open_ and not after[i] >> v & 1:
                    del open_[v]
        w = fn.weight(e - 1)
        for v, dirty in open_.items():
            if after[e - 1] >> v & 1:
                crosses[v] = True                   # live out of the block
                if dirty:
                    group_cost[v] += w
    grouped = {v for v in range(K, n)
               if v not in singleton and (groups[v] > 1 or crosses[v])}
    cost = [group_cost[v] if v in grouped else plain_cost[v] for v in range(n)]
    return cost, grouped


class _Group:
    __slots__ = ("temp", "dirty", "lastdef", "positions", "reloads")

    def __init__(self, temp: ir.VReg) -> None:
        self.temp = temp
        self.dirty = False
        self.lastdef = -1
        self.positions: list[int] = []
        self.reloads: list[int] = []


class _Spiller:
    """Rewrites a program for a set of spilled vregs (see ``_spill_plan``)."""

    def __init__(self, next_vreg: int) -> None:
        self.next_vreg = next_vreg
        self.next_slot = 0
        self.temps: set[ir.VReg] = set()        # every temp made by spilling
        self.nospill: set[ir.VReg] = set()      # temps of a single instruction
        self.temp_slot: dict[ir.VReg, int] = {}  # group temp -> slot of the value it caches

    def temp(self) -> ir.VReg:
        v = ir.VReg(self.next_vreg)
        self.next_vreg += 1
        self.temps.add(v)
        return v

    def rewrite(self, fn: _Function, after: list[int], spilled: set[ir.VReg],
                grouped: set[ir.VReg], remat: dict[ir.VReg, list[ir.Insn]]) -> list[ir.Insn]:
        insns = fn.insns
        slot: dict[ir.VReg, int] = {}
        for v in sorted(spilled, key=lambda r: r.id):
            if v in remat:
                continue
            if v in self.temp_slot:
                slot[v] = self.temp_slot[v]     # the temp's value already lives in that slot
            else:
                slot[v] = self.next_slot
                self.next_slot += 1
        remat_defs = {id(d) for seq in remat.values() for d in seq}

        def reload(v: ir.VReg, dst: ir.Reg, sp) -> list[ir.Insn]:
            if v in remat:
                return [replace(r, dst=dst, span=sp) for r in remat[v]]
            return [_SpillLoad(dst, ir.FP, 0, 8, slot=slot[v], span=sp)]

        out: list[ir.Insn] = []
        for s, e in fn.blocks:
            blk: list[ir.Insn | None] = []
            post: dict[int, list[ir.Insn]] = {}
            groups: dict[ir.VReg, _Group] = {}

            def close(v: ir.VReg, live: bool) -> None:
                g = groups.pop(v)
                if len(g.positions) == 1:
                    self.nospill.add(g.temp)
                    pos = g.positions[0]
                    ins = blk[pos]
                    if ins is not None and _is_move(ins):
                        if ins.dst == g.temp and ins.src != g.temp and not g.reloads:
                            # "%v = x" alone: store x directly
                            blk[pos] = (_SpillStore(ir.FP, 0, ins.src, 8, slot=slot[v],
                                                    span=ins.span) if live else None)
                            return
                        if ins.src == g.temp and ins.dst != g.temp and not g.dirty:
                            # "x = %v" alone: reload straight into x
                            for r in g.reloads:
                                blk[r] = replace(blk[r], dst=ins.dst)
                            blk[pos] = None
                            return
                if g.dirty and live:
                    post.setdefault(g.lastdef, []).append(
                        _SpillStore(ir.FP, 0, g.temp, 8, slot=slot[v], span=blk[g.lastdef].span
                                    if blk[g.lastdef] is not None else NO_SPAN))
                if v in slot:
                    self.temp_slot[g.temp] = slot[v]

            for i in range(s, e):
                ins = insns[i]
                if id(ins) in remat_defs:
                    continue                    # recomputed where needed instead
                if isinstance(ins, ir.Call):
                    for v in list(groups):
                        close(v, bool(after[i] >> fn.vnode[v.id] & 1))
                regs = [getattr(ins, f) for f in _REG_FIELDS if _is_reg(getattr(ins, f, None))]
                mine = [r for r in dict.fromkeys(regs) if r in spilled]
                if not mine:
                    blk.append(ins)
                    continue
                sp = ins.span
                # a temp's own reload / write-back to the slot that already holds it
                if isinstance(ins, _SpillLoad) and slot.get(ins.dst) == ins.slot:
                    continue
                if isinstance(ins, _SpillStore) and slot.get(ins.src) == ins.slot:
                    continue
                single = [v for v in mine if v not in grouped]
                if single and _is_move(ins) and len(mine) == 1:
                    d, src = ins.dst, ins.src
                    if d in slot:
                        blk.append(_SpillStore(ir.FP, 0, src, 8, slot=slot[d], span=sp))
                        continue
                    if src in slot:
                        blk.append(_SpillLoad(d, ir.FP, 0, 8, slot=slot[src], span=sp))
                        continue
                    if src in remat:
                        blk.extend(replace(r, dst=d, span=sp) for r in remat[src])
                        continue
                uses = ir.uses(ins)
                defs = ir.defs(ins)
                mapping = {}
                stores = []
                touched = []
                for v in mine:
                    if v not in grouped:        # around this one instruction
                        t = self.temp()
                        self.nospill.add(t)
                        mapping[v.id] = t
                        if v in uses:
                            blk.extend(reload(v, t, sp))
                        if v in defs:
                            if v in remat:
                                raise AssertionError("rematerialised vreg defined twice")
                            stores.append(_SpillStore(ir.FP, 0, t, 8, slot=slot[v], span=sp))
                        continue
                    g = groups.get(v)
                    if g is None:
                        g = groups[v] = _Group(self.temp())
                        if v in uses:
                            for r in reload(v, g.temp, sp):
                                g.reloads.append(len(blk))
                                blk.append(r)
                    mapping[v.id] = g.temp
                    touched.append(v)
                pos = len(blk)
                blk.append(_subst(ins, mapping))
                if stores:
                    post[pos] = stores
                for v in touched:
                    g = groups[v]
                    g.positions.append(pos)
                    if v in defs:
                        if v in remat:
                            raise AssertionError("rematerialised vreg defined twice")
                        g.dirty = True
                        g.lastdef = pos
                    if not after[i] >> fn.vnode[v.id] & 1:
                        close(v, False)
            for v in list(groups):
                close(v, bool(after[e - 1] >> fn.vnode[v.id] & 1))
            for k, ins in enumerate(blk):
                if ins is not None:
                    out.append(ins)
                out.extend(post.get(k, ()))
        return out


def _forward_reloads(insns: list[ir.Insn]) -> list[ir.Insn]:
    """After colouring: drop a spill reload whose register still holds the slot's value, or
    turn it into a register move when another register does. Knowledge flows along
    straight-line code and into the fall-through of a conditional jump (a Label, a possible
    merge point, forgets everything). Only spill slots are tracked: nothing else writes them.
    """
    holders: dict[int, set[ir.Reg]] = {}        # slot -> registers holding its value

    def clobber(r: ir.Reg) -> None:
        for hs in holders.values():
            hs.discard(r)

    out: list[ir.Insn] = []
    for ins in insns:
        if isinstance(ins, ir.Label):
            holders.clear()
        elif isinstance(ins, _SpillLoad):
            have = holders.get(ins.slot, set())
            if ins.dst in have:
                continue                        # the register already holds the value
            slot = ins.slot
            if have:
                ins = ir.Alu("mov", ins.dst, min(have, key=lambda r: r.n), span=ins.span)
            clobber(ins.dst)
            holders.setdefault(slot, set()).add(ins.dst)
        elif isinstance(ins, _SpillStore):
            holders[ins.slot] = {ins.src}
        else:
            for d in ir.defs(ins):
                clobber(d)
            if isinstance(ins, (ir.Jump, ir.Exit)):
                holders.clear()
        out.append(ins)
    return out


def _assign_slots(insns: list[ir.Insn], frame_depth: int) -> tuple[list[ir.Insn], int]:
    """Give every spill slot a stack offset; slots with disjoint live ranges share one."""
    slots = sorted({ins.slot for ins in insns if isinstance(ins, (_SpillLoad, _SpillStore))})
    if not slots:
        return insns, frame_depth
    fn = _Function(insns)
    # reuse the block structure; compute slot liveness (bitset over slot ids)
    nb = len(fn.blocks)
    gen, kill = [0] * nb, [0] * nb
    for b, (s, e) in enumerate(fn.blocks):
        g = k = 0
        for i in range(e - 1, s - 1, -1):
            ins = insns[i]
            if isinstance(ins, _SpillStore):
                k |= 1 << ins.slot
                g &= ~(1 << ins.slot)
            elif isinstance(ins, _SpillLoad):
                g |= 1 << ins.slot
        gen[b], kill[b] = g, k
    live_in, live_out = _backward_fixpoint(fn.succ, gen, kill)
    adj: dict[int, set[int]] = {s: set() for s in slots}
    for b, (s, e) in enumerate(fn.blocks):
        live = live_out[b]
        for i in range(e - 1, s - 1, -1):
            ins = insns[i]
            if isinstance(ins, _SpillStore):
                for t in _iter_bits(live & ~(1 << ins.slot)):
                    adj[ins.slot].add(t)
                    adj[t].add(ins.slot)
                live &= ~(1 << ins.slot)
            elif isinstance(ins, _SpillLoad):
                live |= 1 << ins.slot
    # slots live at entry (read before any store on some path) overlap each other
    entry = live_in[0] if nb else 0
    for a in _iter_bits(entry):
        for b2 in _iter_bits(entry & ~(1 << a)):
            adj[a].add(b2)
    where: dict[int, int] = {}
    for s in slots:
        used = {where[t] for t in adj[s] if t in where}
        k = 0
        while k in used:
            k += 1
        where[s] = k
    base = (frame_depth + 7) & ~7
    nslots = max(where.values()) + 1
    depth = base + 8 * nslots       # the caller checks it against MAX_BPF_STACK (512)
    out = []
    for ins in insns:
        if isinstance(ins, _SpillLoad):
            out.append(ir.Load(ins.dst, ir.FP, -(base + 8 * (where[ins.slot] + 1)), 8,
                               span=ins.span))
        elif isinstance(ins, _SpillStore):
            out.append(ir.Store(ir.FP, -(base + 8 * (where[ins.slot] + 1)), ins.src, 8,
                                span=ins.span))
        else:
            out.append(ins)
    return out, depth
