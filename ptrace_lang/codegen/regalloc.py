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
"""
from __future__ import annotations

import heapq
from ptrace_lang.records import dataclass, fields, replace

from ptrace_lang.codegen import ir
from ptrace_lang.codegen.emit import is_self_move, peephole
from ptrace_lang.errors import NO_SPAN, CompileError

K = 10                      # r0..r9
_INF_DEGREE = 1 << 40
_MAX_ROUNDS = 40
_DEFAULT_ORDER = (1, 2, 3, 4, 5, 0, 6, 7, 8, 9)
_REG_FIELDS = ("dst", "src", "base", "a", "b")
_CALL_USES = [list(range(1, n + 1)) for n in range(6)]    # r1..r<nargs> as nodes
_CALL_DEFS = list(range(6))                               # r0-r5
_EXIT_USES = [0]
_CTL_CLASSES = frozenset((ir.Label, ir.Jump, ir.CondJump, ir.Exit))   # (block boundaries)


class RegAllocError(CompileError):
    """The program cannot be allocated (should not happen for well-formed IR)."""


# --------------------------------------------------------------------------------------------
# spill pseudo instructions (turned into plain Load/Store with concrete offsets at the end)


@dataclass
class _SpillLoad(ir.Load):
    slot: int = -1


@dataclass
class _SpillStore(ir.Store):
    slot: int = -1


# --------------------------------------------------------------------------------------------
# helpers


def _is_reg(x: object) -> bool:
    return isinstance(x, (ir.VReg, ir.PReg))


_REG_FIELDS_OF: dict[type, tuple[str, ...]] = {}


def _reg_fields(cls: type) -> tuple[str, ...]:
    """The register fields (``_REG_FIELDS``) an instruction class has."""
    names = _REG_FIELDS_OF.get(cls)
    if names is None:
        names = _REG_FIELDS_OF[cls] = tuple(f.name for f in fields(cls) if f.name in _REG_FIELDS)
    return names


def _subst(insn: ir.Insn, by_id: dict) -> ir.Insn:
    """Copy of ``insn`` with its vregs replaced as ``by_id`` (vreg id -> register) says."""
    d = insn.__dict__           # (an IR instruction keeps all its fields there)
    changes = None
    VReg = ir.VReg
    for name in _REG_FIELDS_OF.get(insn.__class__) or _reg_fields(insn.__class__):
        v = d.get(name)
        if v.__class__ is VReg:
            new = by_id.get(v.id)
            if new is not None:
                if changes is None:
                    changes = d.copy()
                changes[name] = new
    if changes is None:
        return insn
    cls = insn.__class__
    out = cls.__new__(cls)
    out.__dict__ = changes
    return out


def _is_move(insn: ir.Insn) -> bool:
    return (isinstance(insn, ir.Alu) and insn.op == "mov" and insn.width == 64
            and _is_reg(insn.src) and _is_reg(insn.dst))


# kinds of the instructions whose only effect is writing their destination register
_PURE_DEF_KINDS = frozenset((ir.KIND_ALU, ir.KIND_DEF, ir.KIND_LOAD, ir.KIND_ENDIAN))


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


def _iter_bits(x: int):
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


# --------------------------------------------------------------------------------------------
# analysis: node numbering, CFG, liveness


class _Function:
    """A program's registers as node numbers (r0-r9 are 0-9, vregs K... in order of first
    mention), the nodes each instruction reads and writes, its moves, basic blocks, CFG and
    loop depths; liveness computed once and kept (the instructions never change)."""

    def __init__(self, insns: list[ir.Insn], decoded: tuple | None = None) -> None:
        self.insns = insns
        self._live_out: list[int] | None = None
        self._after: list[int] | None = None
        if decoded is None:
            self._decode()
        else:       # (see without())
            (self.vregs, self.vnode, self.uses, self.defs, self.moves, self.kinds,
             self.ctl) = decoded
        self.nnodes = K + len(self.vregs)
        self._build_cfg()

    def _decode(self) -> None:
        insns = self.insns
        n = len(insns)
        self.vregs: list[ir.VReg] = []
        vregs = self.vregs
        vnode = self.vnode = {}             # vreg id -> node
        self.uses = uses_of = [[]] * n
        self.defs = defs_of = [[]] * n
        self.moves: list[tuple[int, int] | None] = [None] * n
        moves = self.moves
        self.kinds = kind_list = [0] * n    # ir.KIND_* of every instruction
        self.ctl = ctl = []                 # indexes of the labels, jumps and exits
        ctl_classes = _CTL_CLASSES
        kinds, kind_of = ir.KIND_OF, ir.kind_of
        KA, KL, KS, KAT, KE, KCJ, KC, KX, KD = (
            ir.KIND_ALU, ir.KIND_LOAD, ir.KIND_STORE, ir.KIND_ATOMIC, ir.KIND_ENDIAN,
            ir.KIND_CONDJUMP, ir.KIND_CALL, ir.KIND_EXIT, ir.KIND_DEF)
        VReg, PReg = ir.VReg, ir.PReg

        def node(r) -> int:         # -1: the frame pointer (never a node)
            c = r.__class__
            if c is VReg:
                nd = vnode.get(r.id)
                if nd is None:
                    nd = vnode[r.id] = K + len(vregs)
                    vregs.append(r)
                return nd
            if c is PReg and 0 <= r.n <= 10:
                return r.n if r.n < K else -1
            raise ValueError(f"bad register {r!r}")

        for i, ins in enumerate(insns):
            cls = ins.__class__
            k = kinds.get(cls)
            if k is None:
                k = kind_of(cls)
            kind_list[i] = k
            if k == KA:
                op, src = ins.op, ins.src
                regsrc = src.__class__ is VReg or src.__class__ is PReg
                if op == "mov":
                    if regsrc:
                        s = node(src)
                        if s >= 0:
                            uses_of[i] = [s]
                    dst = ins.dst
                    d = vnode.get(dst.id, -1) if dst.__class__ is VReg else -1
                    if d < 0:
                        d = node(dst)
                    if d >= 0:
                        defs_of[i] = [d]
                        if (regsrc and s >= 0 and ins.width == 64 and src != dst):
                            moves[i] = (d, s)
                else:
                    dst = ins.dst
                    d = vnode.get(dst.id, -1) if dst.__class__ is VReg else -1
                    if d < 0:
                        d = node(dst)
                    u = [d] if d >= 0 else []
                    if regsrc and op != "neg":
                        s = node(src)
                        if s >= 0 and s != d:
                            u.append(s)
                    uses_of[i] = u
                    if d >= 0:
                        defs_of[i] = [d]
            elif k == KL or k == KD:
                if k == KL:
                    b = node(ins.base)
                    if b >= 0:
                        uses_of[i] = [b]
                d = node(ins.dst)
                if d >= 0:
                    defs_of[i] = [d]
            elif k == KS or k == KAT or k == KCJ:
                if k == KCJ:
                    a, b = ins.a, ins.b
                else:
                    a, b = ins.base, ins.src
                u = []
                x = node(a)
                if x >= 0:
                    u.append(x)
                if b.__class__ is VReg or b.__class__ is PReg or k == KAT:
                    x = node(b)
                    if x >= 0 and x not in u:
                        u.append(x)
                uses_of[i] = u
                if k == KCJ and cls in ctl_classes:
                    ctl.append(i)
            elif k == KC:
                uses_of[i] = _CALL_USES[ins.nargs]
                defs_of[i] = _CALL_DEFS
            elif k == KX:
                uses_of[i] = _EXIT_USES
                if cls in ctl_classes:
                    ctl.append(i)
            elif k == 0:
                if cls in ctl_classes:
                    ctl.append(i)
            elif k == KE:
                d = node(ins.dst)
                if d >= 0:
                    uses_of[i] = defs_of[i] = [d]

    def without(self, dead: set[int]) -> "_Function":
        """The ``_Function`` of the program without the instructions at ``dead``, numbered
        as a fresh one would be (vregs in order of first mention), made from this one's
        decoded operands rather than by decoding the instructions again."""
        keep = []
        newpos = [-1] * len(self.insns)
        for i in range(len(self.insns)):
            if i not in dead:
                newpos[i] = len(keep)
                keep.append(i)
        uses = [self.uses[i] for i in keep]
        defs = [self.defs[i] for i in keep]
        moves = [self.moves[i] for i in keep]
        new_of: dict[int, int] = {}         # old vreg node -> new
        for u, d in zip(uses, defs):
            for x in u:
                if x >= K and x not in new_of:
                    new_of[x] = K + len(new_of)
            for x in d:
                if x >= K and x not in new_of:
                    new_of[x] = K + len(new_of)
        vregs = [self.vregs[x - K] for x in new_of]
        renumbered = any(x != y for x, y in new_of.items())
        if renumbered:
            def renum(nodes: list[int]) -> list[int]:
                return [new_of[x] if x >= K else x for x in nodes]
            uses = [renum(u) if u else u for u in uses]
            defs = [renum(d) if d else d for d in defs]
            moves = [None if m is None else (new_of.get(m[0], m[0]), new_of.get(m[1], m[1]))
                     for m in moves]
        vnode = {r.id: nd for nd, r in enumerate(vregs, K)}
        out = _Function([self.insns[i] for i in keep],
                        (vregs, vnode, uses, defs, moves, [self.kinds[i] for i in keep],
                         [newpos[i] for i in self.ctl]))     # (never dead: no pure defs)
        out.renumbered = renumbered
        return out

    def node_of(self, r: ir.Reg) -> int:
        """The node of r0-r9 or of a vreg of the program (KeyError for another vreg)."""
        return r.n if r.__class__ is ir.PReg else self.vnode[r.id]

    def reg_of(self, nd: int) -> ir.Reg:
        return ir.PReg(nd) if nd < K else self.vregs[nd - K]

    def _build_cfg(self) -> None:
        """Basic blocks (label and jump boundaries), their successors, and every
        instruction's loop depth (the back edges around it)."""
        insns = self.insns
        n = len(insns)
        labels: dict[str, int] = {}
        leaders = {0} if n else set()
        Label, Jump, CondJump, Exit = ir.Label, ir.Jump, ir.CondJump, ir.Exit
        jumps = []
        for i in self.ctl:
            ins = insns[i]
            cls = ins.__class__
            if cls is Label:
                labels[ins.name] = i
                leaders.add(i)
            elif cls is Jump or cls is CondJump:
                jumps.append(i)
                if i + 1 < n:
                    leaders.add(i + 1)
            elif cls is Exit and i + 1 < n:
                leaders.add(i + 1)
        starts = sorted(leaders)
        nb = len(starts)
        self.blocks = blocks = [(s, starts[k + 1] if k + 1 < nb else n)
                                for k, s in enumerate(starts)]
        block_at = {s: b for b, s in enumerate(starts)}
        self.labels = labels
        self.succ = succ = []
        for b, (s, e) in enumerate(blocks):
            last = insns[e - 1]
            cls = last.__class__
            out = []
            if cls is Jump or cls is CondJump or isinstance(last, (Jump, CondJump)):
                if last.target not in labels:
                    raise ValueError(f"jump to undefined label {last.target!r}")
                out.append(block_at[labels[last.target]])
            if not isinstance(last, (Jump, Exit)) and b + 1 < nb:
                out.append(b + 1)
            succ.append(out)
        # loop depth: a back edge (a jump to a label at or before it) makes [label, jump] a
        # loop body
        delta = [0] * (n + 1)
        loops = False
        for i in jumps:
            j = labels[insns[i].target]
            if j <= i:
                delta[j] += 1
                delta[i + 1] -= 1
                loops = True
        if not loops:
            self.depth = [0] * n
            return
        depth, acc = [0] * n, 0
        for i in range(n):
            acc += delta[i]
            depth[i] = acc
        self.depth = depth

    def weight(self, i: int) -> float:
        return 8.0 ** min(self.depth[i], 6)

    def liveness(self) -> list[int]:
        """Live-out bitset of every block (computed once)."""
        if self._live_out is None:
            nb = len(self.blocks)
            gen = [0] * nb
            kill = [0] * nb
            uses, defs = self.uses, self.defs
            for b, (s, e) in enumerate(self.blocks):
                g = k = 0
                for i in range(e - 1, s - 1, -1):
                    for d in defs[i]:
                        k |= 1 << d
                        g &= ~(1 << d)
                    for u in uses[i]:
                        g |= 1 << u
                gen[b], kill[b] = g, k
            self._live_out = _backward_fixpoint(self.succ, gen, kill)[1]
        return self._live_out

    def live_after(self) -> list[int]:
        """Live-out bitset of every instruction (computed once)."""
        if self._after is None:
            live_out = self.liveness()
            res = [0] * len(self.insns)
            uses, defs = self.uses, self.defs
            for b, (s, e) in enumerate(self.blocks):
                live = live_out[b]
                for i in range(e - 1, s - 1, -1):
                    res[i] = live
                    for d in defs[i]:
                        live &= ~(1 << d)
                    for u in uses[i]:
                        live |= 1 << u
            self._after = res
        return self._after


def _eliminate_dead_code(insns: list[ir.Insn]) -> tuple[list[ir.Insn], _Function]:
    """Side-effect-free definitions of vregs nobody reads, removed; chains of them too (a
    dead definition's operands are not counted as live: liveness is computed over the
    instructions still alive, to a fixpoint over the CFG). Returns the instructions and
    their ``_Function``."""
    fn = _Function(insns)
    n = len(insns)
    cand = [-1] * n        # node of the vreg a side-effect-free instruction defines
    any_cand = False
    blocks, succ, uses, defs = fn.blocks, fn.succ, fn.uses, fn.defs
    for i, k in enumerate(fn.kinds):
        if k in _PURE_DEF_KINDS and defs[i] and defs[i][0] >= K:
            cand[i] = defs[i][0]
            any_cand = True
    if not any_cand:
        return insns, fn
    nb = len(blocks)
    live_in = [0] * nb
    preds: list[list[int]] = [[] for _ in range(nb)]
    for b, ss in enumerate(succ):
        for t in ss:
            preds[t].append(b)

    def walk(b: int, dead: set | None) -> int:
        live = 0
        for t in succ[b]:
            live |= live_in[t]
        s, e = blocks[b]
        for i in range(e - 1, s - 1, -1):
            c = cand[i]
            if c >= 0 and not live >> c & 1:
                if dead is not None:
                    dead.add(i)
                continue
            for d in defs[i]:
                live &= ~(1 << d)
            for u in uses[i]:
                live |= 1 << u
        return live

    work = list(range(nb))
    queued = [True] * nb
    while work:
        b = work.pop()
        queued[b] = False
        live = walk(b, None)
        if live != live_in[b]:
            live_in[b] = live
            for p in preds[b]:
                if not queued[p]:
                    queued[p] = True
                    work.append(p)
    dead: set[int] = set()
    for b in range(nb):
        walk(b, dead)
    # this fixpoint is the liveness of the program without the dead instructions (the least
    # fixpoint of both transfer functions): kept, so that it is not worked out again, when
    # the blocks and node numbers stay as they are
    live_out = [0] * nb
    for b, ss in enumerate(succ):
        out = 0
        for t in ss:
            out |= live_in[t]
        live_out[b] = out
    if dead:
        fn = fn.without(dead)
        if fn.renumbered or len(fn.blocks) != nb:
            return fn.insns, fn
    fn._live_out = live_out
    return fn.insns, fn


_COMMUTATIVE = ("add", "mul", "or", "and", "xor")


def _commute_copies(insns: list[ir.Insn], fn: _Function) -> list[ir.Insn]:
    """``c = a; ...; c op= b`` (commutative op, a still live after it, b dying there) becomes
    ``...; c = b; c op= a`` so that c can share b's register: the copy then coalesces away.
    The ``...`` (same basic block) must not touch c nor redefine a. ``fn``: the
    ``_Function`` of ``insns``; the result is ``insns`` itself when nothing changed."""
    after = fn.live_after()
    drop: set[int] = set()
    repl: dict[int, list[ir.Insn]] = {}
    kinds, KA = fn.kinds, ir.KIND_ALU
    for s, e in fn.blocks:
        for j in range(s, e):
            if kinds[j] != KA:
                continue
            opi = insns[j]
            if not (opi.op in _COMMUTATIVE and _is_reg(opi.src)):
                continue
            c, b = opi.dst, opi.src
            if b == c or b == ir.FP:
                continue
            live = after[j]
            if live >> fn.node_of(b) & 1:
                continue
            nc = fn.node_of(c)
            i = j - 1
            while i >= s and i not in drop and nc not in fn.uses[i] and nc not in fn.defs[i]:
                i -= 1
            if i < s or i in drop or i in repl or not _is_move(insns[i]) or insns[i].dst != c:
                continue
            a = insns[i].src
            if a == ir.FP or a == b or a == c or not live >> fn.node_of(a) & 1:
                continue
            na = fn.node_of(a)
            if any(na in fn.defs[k] for k in range(i + 1, j)):
                continue
            drop.add(i)
            repl[j] = [replace(insns[i], src=b), replace(opi, src=a)]
    if not drop:
        return insns
    out: list[ir.Insn] = []
    for k, ins in enumerate(insns):
        if k in drop:
            continue
        out.extend(repl.get(k, [ins]))
    return out


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


def _backward_fixpoint(succ: list[list[int]], gen: list[int],
                       kill: list[int]) -> tuple[list[int], list[int]]:
    """Live-in and live-out bitsets of blocks from per-block gen/kill bitsets (backward dataflow to a fixpoint)."""
    nb = len(gen)
    live_in = [0] * nb
    live_out = [0] * nb
    changed = True
    while changed:
        changed = False
        for b in range(nb - 1, -1, -1):
            out = 0
            for s in succ[b]:
                out |= live_in[s]
            live_out[b] = out
            new_in = gen[b] | (out & ~kill[b])
            if new_in != live_in[b]:
                live_in[b] = new_in
                changed = True
    return live_in, live_out


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
