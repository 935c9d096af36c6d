"""The register allocator's analysis of a program (codegen/regalloc.py): registers as integer
nodes (r0-r9 are 0-9, vregs from K in order of first mention), each instruction's use and def
nodes decoded once from its operand kind (``ir.KIND_OF``), basic blocks, the CFG and loop
depths, liveness as bitsets (computed once per ``_Function``), dead-code removal (which derives
the new ``_Function`` from the decoded one instead of decoding again) and the commutative-copy
rewrite."""
from __future__ import annotations

from ptrace_lang.records import fields, replace

from ptrace_lang.codegen import ir

K = 10                      # r0..r9
_REG_FIELDS = ("dst", "src", "base", "a", "b")
_CALL_USES = [list(range(1, n + 1)) for n in range(6)]    # r1..r<nargs> as nodes
_CALL_DEFS = list(range(6))                               # r0-r5
_EXIT_USES = [0]
_CTL_CLASSES = frozenset((ir.Label, ir.Jump, ir.CondJump, ir.Exit))   # (block boundaries)


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
