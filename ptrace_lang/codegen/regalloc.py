"""Register allocation for the BPF IR: iterated register coalescing (graph colouring).

Algorithm (George & Appel, "Iterated Register Coalescing", TOPLAS 1996), adapted to BPF:

* Nodes are the virtual registers plus the ten precoloured machine registers r0-r9 (r10, the
  frame pointer, is never a node and never allocatable). K = 10 colours.
* Liveness is a backward dataflow fixpoint over the CFG of basic blocks delimited by Labels,
  Jump, CondJump and Exit, so values live around ``while`` loops (back edges) stay live
  through the whole loop body.
* Interference: every register defined by an instruction interferes with everything live
  after it (for a 64-bit ``mov`` the source is excluded, which makes the move coalescable).
  Fixed registers need no special casing: a ``Call`` defines r0-r5, so a vreg live across a
  call interferes with r0-r5 and can only get r6-r9; a vreg defined while ``r1`` holds a
  helper argument (between ``r1 = %3`` and the call) or while ``r0`` holds a call result
  interferes with that register.
* Simplify / conservative coalesce (Briggs for vreg-vreg, George for vreg-precoloured) /
  freeze / potential spill, then optimistic colouring. The colour choice is biased: towards
  registers of move partners (weighted by loop depth), away from registers that uncoloured
  neighbours want, and otherwise r1-r5, r0 before the callee-saved r6-r9.
* Actual spills are rewritten and the whole thing repeats. A vreg with a single constant
  definition (``mov imm``, ``ld_imm64``, map fd) or a frame address (``r10 + imm``) is
  rematerialised instead of stored; the others get a u64 stack slot. A spilled vreg that
  lives across a helper call or a block boundary is split into *groups* (runs of its uses and
  defs inside one basic block with no call in between): each group works on one fresh temp,
  reloaded at the group's start if it reads the value and stored after the group's last def
  if the value is still live afterwards (``_spill_plan`` estimates exactly that cost for the
  spill choice). Other vregs, and group temps that must be spilled again, get a temp per
  instruction (``x = %s`` / ``%s = x`` become a direct load / store); those one-instruction
  temps are never spilled.
* Spill slots are themselves allocated at the end: slot liveness over the CFG, slots whose
  live ranges do not overlap share an 8-byte aligned stack slot below ``frame_depth``.
* After colouring, 64-bit self moves are deleted (that is where coalescing pays off).

Before allocating, the IR is cleaned by ``emit.peephole`` and by dead-code elimination of
side-effect-free instructions that define an unused vreg.

Here: the check, the colouring and the rounds; the analysis (nodes, CFG, liveness, dead code,
commuted copies) is in ``codegen/ra_analysis.py``, the spill code in ``codegen/ra_spill.py``.
"""
from __future__ import annotations

import heapq
from ptrace_lang.records import replace

from ptrace_lang.codegen import ir
from ptrace_lang.codegen.emit import is_self_move, peephole
from ptrace_lang.codegen.ra_analysis import (K, _Function, _commute_copies,
                                             _eliminate_dead_code, _reg_fields, _subst)
from ptrace_lang.codegen.ra_spill import (_Spiller, _assign_slots, _forward_reloads,
                                          _remat_sequence, _spill_plan)
from ptrace_lang.errors import CompileError

_INF_DEGREE = 1 << 40
_MAX_ROUNDS = 40
_DEFAULT_ORDER = (1, 2, 3, 4, 5, 0, 6, 7, 8, 9)


class RegAllocError(CompileError):
    """The program cannot be allocated (should not happen for well-formed IR)."""


_CHECKED: dict[type, tuple] = {}    # instruction class -> (its register fields, writes dst)
_DST_KINDS = frozenset((ir.KIND_ALU, ir.KIND_LOAD, ir.KIND_ENDIAN, ir.KIND_DEF))


def _checked(insns: list[ir.Insn]) -> list[ir.Insn]:
    """The program checked (instructions, machine registers, r10 never written, at most five
    helper arguments), with the source operand ``neg`` ignores set to 0 so that it cannot
    name a stray vreg."""
    out = []
    PReg, Alu, Call = ir.PReg, ir.Alu, ir.Call
    for ins in insns:
        cls = ins.__class__
        known = _CHECKED.get(cls)
        if known is None:
            if not isinstance(ins, ir.Insn) or cls is ir.Insn:
                raise ValueError(f"not an IR instruction: {ins!r}")
            # (a call writes r0-r5 only; the other kinds write their dst or nothing)
            known = _CHECKED[cls] = (_reg_fields(cls), ir.kind_of(cls) in _DST_KINDS,
                                     issubclass(cls, Alu))
        names, writes_dst, alu = known
        for f in names:
            v = getattr(ins, f)
            if v.__class__ is PReg and not 0 <= v.n <= 10:
                raise ValueError(f"bad machine register {v} in {ir.format_insn(ins)}")
        if writes_dst:
            d = ins.dst
            if d.__class__ is PReg and d.n == 10:
                raise ValueError(f"r10 is read-only: {ir.format_insn(ins)}")
            if alu and ins.op == "neg" and ins.src != 0:
                ins = replace(ins, src=0)
        elif cls is Call and not 0 <= ins.nargs <= 5:
            raise ValueError(f"helper call with {ins.nargs} arguments")
        out.append(ins)
    return out


def _lazy(make):
    """``make()``'s value, computed on the first call only."""
    box: list = []

    def get():
        if not box:
            box.append(make())
        return box[0]
    return get


# --------------------------------------------------------------------------------------------
# iterated register coalescing


class _Colouring:
    def __init__(self, fn: _Function, nospill: set[int], plan) -> None:
        self.fn = fn
        n = fn.nnodes
        self.n = n
        self.adj: list[set[int]] = [set() for _ in range(n)]
        self.degree = [_INF_DEGREE if v < K else 0 for v in range(n)]
        self.move_list: list[set[int]] = [set() for _ in range(n)]
        self.move_ends: dict[int, tuple[int, int]] = {}
        self.move_weight: dict[int, float] = {}
        self.nospill = nospill
        self._build()
        self.plan = plan        # () -> (cost, grouped) of _spill_plan, asked for when spilling

    # -- build ------------------------------------------------------------------------------
    def _add_edge(self, u: int, v: int) -> None:
        if u == v or (u < K and v < K):
            return
        if u >= K:
            if v in self.adj[u]:
                return
            self.adj[u].add(v)
            self.degree[u] += 1
            if v >= K:
                self.adj[v].add(u)
                self.degree[v] += 1
        else:
            if u in self.adj[v]:
                return
            self.adj[v].add(u)
            self.degree[v] += 1

    def _interferes(self, u: int, v: int) -> bool:
        if u < K and v < K:
            return u != v
        if v >= K:
            return u in self.adj[v]
        return v in self.adj[u]

    def _build(self) -> None:
        """The interference graph and the moves: every def interferes with what is live after
        it (a move's source excepted). ``_add_edge`` inlined, in the same order of calls
        (the graph's sets are filled as it would fill them)."""
        fn = self.fn
        live_out = fn.liveness()
        adj, degree = self.adj, self.degree
        all_uses, all_defs, moves = fn.uses, fn.defs, fn.moves
        for b, (s, e) in enumerate(fn.blocks):
            live = live_out[b]
            for i in range(e - 1, s - 1, -1):
                mv = moves[i]
                if mv is not None:
                    dst, src = mv
                    live &= ~(1 << src)
                    self.move_ends[i] = mv
                    self.move_weight[i] = fn.weight(i)
                    self.move_list[dst].add(i)
                    self.move_list[src].add(i)
                defs = all_defs[i]
                if defs:
                    for d in defs:
                        live |= 1 << d
                    for d in defs:
                        x = live & ~(1 << d)
                        if d < K:           # only vregs live across a fixed def interfere
                            x >>= K
                            while x:
                                low = x & -x
                                x ^= low
                                a = adj[low.bit_length() - 1 + K]
                                if d not in a:
                                    a.add(d)
                                    degree[low.bit_length() - 1 + K] += 1
                        else:
                            ad = adj[d]
                            while x:
                                low = x & -x
                                x ^= low
                                nd = low.bit_length() - 1
                                if nd < K:
                                    if nd not in ad:
                                        ad.add(nd)
                                        degree[d] += 1
                                else:
                                    a = adj[nd]
                                    if d not in a:
                                        a.add(d)
                                        degree[nd] += 1
                                        ad.add(nd)
                                        degree[d] += 1
                    for d in defs:
                        live &= ~(1 << d)
                for u in all_uses[i]:
                    live |= 1 << u

    # -- main loop ----------------------------------------------------------------------------
    def run(self) -> tuple[list[int], set[int]]:
        n = self.n
        self.alias = list(range(n))
        self.coalesced: set[int] = set()
        self.on_stack: set[int] = set()
        self.stack: list[int] = []
        self.simplify_wl: set[int] = set()
        self.freeze_wl: set[int] = set()
        self.spill_wl: set[int] = set()
        self.wl_moves: set[int] = set(self.move_ends)
        self.active_moves: set[int] = set()
        self._move_heap = [(-self.move_weight[m], m) for m in self.wl_moves]
        heapq.heapify(self._move_heap)

        for v in range(K, n):
            if self.degree[v] >= K:
                self.spill_wl.add(v)
            elif self._move_related(v):
                self.freeze_wl.add(v)
            else:
                self.simplify_wl.add(v)

        while True:
            if self.simplify_wl:
                self._simplify()
            elif self.wl_moves:
                self._coalesce()
            elif self.freeze_wl:
                self._freeze()
            elif self.spill_wl:
                self._select_spill()
            else:
                break
        return self._assign_colours()

    # (set operations: their order of iteration is not the adjacency sets' own, and nothing
    # depends on it: worklists are taken by min(), moves from a heap of unique (weight, move)
    # keys, degrees are counts, and _choose's scores are sums of powers of two, exact in any
    # order)
    def _adjacent(self, v: int) -> set[int]:
        return self.adj[v] - self.on_stack - self.coalesced

    def _node_moves(self, v: int) -> set[int]:
        ml = self.move_list[v]
        return (ml & self.active_moves) | (ml & self.wl_moves)

    def _move_related(self, v: int) -> bool:
        ml = self.move_list[v]
        return not (ml.isdisjoint(self.active_moves) and ml.isdisjoint(self.wl_moves))

    def _simplify(self) -> None:
        v = min(self.simplify_wl)
        self.simplify_wl.discard(v)
        self.stack.append(v)
        self.on_stack.add(v)
        for t in self._adjacent(v):
            self._decrement_degree(t)

    def _decrement_degree(self, m: int) -> None:
        if m < K:
            return
        d = self.degree[m]
        self.degree[m] = d - 1
        if d == K:
            self._enable_moves([m] + list(self._adjacent(m)))
            self.spill_wl.discard(m)
            if self._move_related(m):
                self.freeze_wl.add(m)
            else:
                self.simplify_wl.add(m)

    def _enable_moves(self, nodes) -> None:
        for v in nodes:
            for m in self._node_moves(v):
                if m in self.active_moves:
                    self.active_moves.discard(m)
                    self.wl_moves.add(m)
                    heapq.heappush(self._move_heap, (-self.move_weight[m], m))

    def _get_alias(self, v: int) -> int:
        while v in self.coalesced:
            v = self.alias[v]
        return v

    def _add_worklist(self, u: int) -> None:
        if u >= K and not self._move_related(u) and self.degree[u] < K:
            self.freeze_wl.discard(u)
            self.simplify_wl.add(u)

    def _ok(self, t: int, r: int) -> bool:
        return self.degree[t] < K or t < K or self._interferes(t, r)

    def _conservative(self, nodes: set[int]) -> bool:
        k = 0
        for v in nodes:
            if self.degree[v] >= K:
                k += 1
                if k >= K:
                    return False
        return True

    def _coalesce(self) -> None:
        while True:
            _, m = heapq.heappop(self._move_heap)
            if m in self.wl_moves:
                break
        self.wl_moves.discard(m)
        x, y = self.move_ends[m]
        x, y = self._get_alias(x), self._get_alias(y)
        if y < K:
            u, v = y, x
        else:
            u, v = x, y
        if u == v:
            self._add_worklist(u)
        elif v < K or self._interferes(u, v):
            self._add_worklist(u)
            self._add_worklist(v)
        elif (u < K and all(self._ok(t, u) for t in self._adjacent(v))) or \
                (u >= K and self._conservative(self._adjacent(u) | self._adjacent(v))):
            self._combine(u, v)
            self._add_worklist(u)
        else:
            self.active_moves.add(m)

    def _combine(self, u: int, v: int) -> None:
        if v in self.freeze_wl:
            self.freeze_wl.discard(v)
        else:
            self.spill_wl.discard(v)
        self.coalesced.add(v)
        self.alias[v] = u
        self.move_list[u] |= self.move_list[v]
        self._enable_moves([v])
        for t in list(self._adjacent(v)):
            self._add_edge(t, u)
            self._decrement_degree(t)
        if u >= K and self.degree[u] >= K and u in self.freeze_wl:
            self.freeze_wl.discard(u)
            self.spill_wl.add(u)
        if v in self.nospill and u >= K:
            self.nospill.add(u)

    def _freeze(self) -> None:
        u = min(self.freeze_wl)
        self.freeze_wl.discard(u)
        self.simplify_wl.add(u)
        self._freeze_moves(u)

    def _freeze_moves(self, u: int) -> None:
        for m in self._node_moves(u):
            x, y = self.move_ends[m]
            if self._get_alias(y) == self._get_alias(u):
                v = self._get_alias(x)
            else:
                v = self._get_alias(y)
            self.active_moves.discard(m)
            self.wl_moves.discard(m)
            if v >= K and not self._move_related(v) and self.degree[v] < K:
                self.freeze_wl.discard(v)
                self.simplify_wl.add(v)

    def _spill_priority(self, v: int) -> float:
        if v in self.nospill:
            return float("inf")
        return self.plan()[0][v] / max(self.degree[v], 1)

    def _select_spill(self) -> None:
        v = min(self.spill_wl, key=lambda x: (self._spill_priority(x), x))
        self.spill_wl.discard(v)
        self.simplify_wl.add(v)
        self._freeze_moves(v)

    # -- select --------------------------------------------------------------------------------
    def _assign_colours(self) -> tuple[list[int], set[int]]:
        colour = [v if v < K else -1 for v in range(self.n)]
        spilled: set[int] = set()
        while self.stack:
            v = self.stack.pop()
            self.on_stack.discard(v)
            ok = set(range(K))
            for w in self.adj[v]:
                a = self._get_alias(w)
                if colour[a] >= 0:
                    ok.discard(colour[a])
            if not ok:
                spilled.add(v)
                continue
            colour[v] = self._choose(v, ok, colour)
        for v in self.coalesced:
            colour[v] = colour[self._get_alias(v)]
        return colour, spilled

    def _partners(self, v: int):
        """(other end, weight) for every move touching ``v`` (after coalescing)."""
        for m in self.move_list[v]:
            x, y = self.move_ends[m]
            x, y = self._get_alias(x), self._get_alias(y)
            if x == v and y != v:
                yield y, self.move_weight[m]
            elif y == v and x != v:
                yield x, self.move_weight[m]

    def _choose(self, v: int, ok: set[int], colour: list[int]) -> int:
        score = {c: 0.0 for c in ok}
        for p, w in self._partners(v):
            if colour[p] >= 0:
                if colour[p] in score:
                    score[colour[p]] += w
            else:   # partner not coloured yet: look one move further
                for q, w2 in self._partners(p):
                    if q != v and colour[q] in score:
                        score[colour[q]] += min(w, w2) / 2
        # stay away from registers that uncoloured neighbours would like to have
        for t in self.adj[v]:
            a = self._get_alias(t)
            if a >= K and colour[a] < 0:
                for q, w in self._partners(a):
                    if colour[q] in score:
                        score[colour[q]] -= w / 4
        best = max(score.values())
        for c in _DEFAULT_ORDER:
            if c in score and score[c] == best:
                return c
        raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# entry point


def allocate_registers(insns: list[ir.Insn], frame_depth: int) -> tuple[list[ir.Insn], int]:
    """Map every VReg to r0-r9. Returns (new insns with PRegs only, new frame depth).

    The new depth includes the spill slots (8-byte aligned, below ``frame_depth``); it may
    exceed BPF's 512 bytes, which the caller must report. Labels and Comments are kept.
    """
    if frame_depth < 0:
        raise ValueError("frame_depth must be a positive byte count")
    prog = peephole(_checked(insns))
    prog, fn = _eliminate_dead_code(prog)
    max_id = max(fn.vnode, default=-1)       # (the vregs' ids)
    commuted = _commute_copies(prog, fn)      # (moves registers around, makes none)
    if commuted is not prog:
        prog, fn = commuted, None
    spiller = _Spiller(max_id + 1)

    for _ in range(_MAX_ROUNDS):
        if fn is None:
            fn = _Function(prog)
        after = fn.live_after()
        vnode = fn.vnode
        temp_nodes = {vnode[t.id] for t in spiller.temps if t.id in vnode}
        nospill = {vnode[t.id] for t in spiller.nospill if t.id in vnode}
        # the spill costs: only a colouring that must spill asks for them
        plan = _lazy(lambda: _spill_plan(fn, after, temp_nodes))
        col = _Colouring(fn, set(nospill), plan)
        colour, spilled = col.run()
        if not spilled:
            break
        cost, grouped_nodes = plan()
        # vregs whose value can be recomputed at each use instead of going to the stack
        def_sites: dict[int, list[int]] = {}
        for i, ds in enumerate(fn.defs):
            for d in ds:
                if d >= K:
                    def_sites.setdefault(d, []).append(i)
        remat_seqs = {v: seq for v, sites in def_sites.items()
                      if (seq := _remat_sequence(prog, sites)) is not None}
        bad = spilled & nospill
        if bad:
            # a temp of a single instruction found no register: spill a longer-lived neighbour
            spilled -= bad
            for t in sorted(bad):
                cands = [v for v in col.adj[t] if v >= K and v not in nospill]
                if not cands:
                    raise RegAllocError("register allocation failed: too many registers are "
                                        "needed at one instruction")
                spilled.add(min(cands, key=lambda v: (cost[v] / len(col.adj[v]), v)))
        spilled_regs = {fn.reg_of(v) for v in spilled}
        grouped = {fn.reg_of(v) for v in spilled & grouped_nodes}
        remat = {fn.reg_of(v): remat_seqs[v] for v in spilled if v in remat_seqs}
        prog = spiller.rewrite(fn, after, spilled_regs, grouped, remat)
        fn = None
    else:
        raise RegAllocError("register allocation did not converge")

    pregs = [ir.PReg(c) for c in range(K)]
    by_id = {r.id: pregs[colour[v]] for v, r in enumerate(fn.vregs, K)}
    out = []
    Alu = ir.Alu
    for ins, u, d in zip(prog, fn.uses, fn.defs):
        # (an instruction whose uses and defs name no vreg names none: nothing to replace)
        if (u and max(u) >= K) or (d and max(d) >= K):
            ins = _subst(ins, by_id)
        if ins.__class__ is Alu and ins.op == "mov" and is_self_move(ins):
            continue
        out.append(ins)
    if not spiller.next_slot:       # no stack slot: no spill loads or stores to place
        return out, frame_depth
    return _assign_slots(_forward_reloads(out), frame_depth)
