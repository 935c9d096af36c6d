"""Allocated IR (PRegs only) -> BPF instructions, plus a small IR peephole optimiser.

``emit`` drops Labels and Comments, resolves symbolic jumps to pc-relative offsets (an
ld_imm64 counts as two slots), records a relocation for every ``LoadMapFd`` and keeps one
source span per instruction slot.

``peephole`` works on IR with virtual or physical registers and preserves semantics exactly:
jump threading, deleting jumps to the next instruction, ``if c goto A; goto B; A:`` ->
``if !c goto B; A:``, deleting unreachable code, 64-bit self moves and unused labels, and
hoisting a lone constant else-arm above its branch (``if c goto E; ..x = ..; goto J;
E: x = K; J:`` -> ``x = K; if c goto J; ..x = ..; J:``), a virtual register set to a constant
and read once replaced by the constant as its reader's immediate, ``a = b`` right after
``b = a`` dropped, and two 32-bit constant stores to the halves of an aligned u64 merged.
Apart from the hoisting, whose label E has no other user, no instruction moves across a label.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field, replace

from ptrace_lang.bpf import opcodes as op
from ptrace_lang.bpf.insn import Instruction, ld_imm64
from ptrace_lang.codegen import ir
from ptrace_lang.errors import NO_SPAN, CompileError, Span

TOO_LARGE_HINT = ("unroll less, use shorter strings (config max_strlen) or split the probe "
                  "into several")

# --------------------------------------------------------------------------------------------
# peephole


_INVERSE = {"jeq": "jne", "jne": "jeq", "jgt": "jle", "jle": "jgt", "jge": "jlt", "jlt": "jge",
            "jsgt": "jsle", "jsle": "jsgt", "jsge": "jslt", "jslt": "jsge"}


class _Removed(ir.Comment):
    """Placeholder for an instruction deleted during a peephole round."""


def is_self_move(insn: ir.Insn) -> bool:
    """``r = r`` (64-bit; a 32-bit self move zero-extends and is kept)."""
    return (insn.__class__ is ir.Alu and insn.op == "mov" and insn.width == 64
            and insn.src.__class__ in _REGS and insn.src == insn.dst)


_REGS = (ir.VReg, ir.PReg)

# what the peephole tells apart, one category per instruction class (found once per class, in
# the order of its isinstance checks): a round reads them from a list made in one pass
_C_OTHER, _C_LABEL, _C_COMMENT, _C_REMOVED, _C_JUMP, _C_CJUMP, _C_EXIT = range(1, 8)   # (not 0: a
# category is looked up as ``get(cls) or _cat(cls)``)
_CAT_BASES = ((ir.Label, _C_LABEL), (_Removed, _C_REMOVED), (ir.Comment, _C_COMMENT),
              (ir.Jump, _C_JUMP), (ir.CondJump, _C_CJUMP), (ir.Exit, _C_EXIT))
_CAT: dict[type, int] = {}


def _cat(cls: type) -> int:
    c = _CAT.get(cls)
    if c is None:
        c = _CAT[cls] = next((c for base, c in _CAT_BASES if issubclass(cls, base)), _C_OTHER)
    return c


def _cats(insns: list[ir.Insn]) -> list[int]:
    get = _CAT.get
    return [get(ins.__class__) or _cat(ins.__class__) for ins in insns]


def _is_code(insn: ir.Insn) -> bool:
    """Not a Label or a Comment (nor a _Removed placeholder)."""
    c = _CAT.get(insn.__class__)
    if c is None:
        c = _cat(insn.__class__)
    return c != _C_LABEL and c != _C_COMMENT and c != _C_REMOVED


def _label_index(insns: list[ir.Insn], cats: list[int] | None = None) -> dict[str, int]:
    out = {}
    for i, c in enumerate(_cats(insns) if cats is None else cats):
        if c == _C_LABEL:
            name = insns[i].name
            if name in out:
                raise ValueError(f"duplicate label {name!r}")
            out[name] = i
    return out


def _next_code(insns: list[ir.Insn], i: int) -> int:
    """Index of the first real instruction at or after ``i`` (len(insns) if none)."""
    n = len(insns)
    get = _CAT.get
    while i < n:
        cls = insns[i].__class__
        c = get(cls) or _cat(cls)
        if c != _C_LABEL and c != _C_COMMENT and c != _C_REMOVED:
            break
        i += 1
    return i


def _labels_between(insns: list[ir.Insn], start: int, end: int) -> set[str]:
    return {ins.name for ins in insns[start:end] if isinstance(ins, ir.Label)}


def _has_label(insns: list[ir.Insn], start: int, end: int, name: str) -> bool:
    """``name in _labels_between(insns, start, end)``, without making the set."""
    Label = ir.Label
    for k in range(start, end):
        ins = insns[k]
        if ins.__class__ is Label and ins.name == name:
            return True
    return False


def _any_label(insns: list[ir.Insn], start: int, end: int) -> bool:
    Label = ir.Label
    return any(insns[k].__class__ is Label for k in range(start, end))


def _reachable(insns: list[ir.Insn], labels: dict[str, int],
               cats: list[int] | None = None) -> list[bool]:
    if cats is None:
        cats = _cats(insns)
    seen = [False] * len(insns)
    work = [0] if insns else []
    while work:
        i = work.pop()
        while i < len(insns) and not seen[i]:
            seen[i] = True
            c = cats[i]
            if c == _C_JUMP:
                i = labels[insns[i].target]
                continue
            if c == _C_CJUMP:
                work.append(labels[insns[i].target])
            elif c == _C_EXIT:
                break
            i += 1
    return seen


def _check_labels(insns: list[ir.Insn], labels: dict[str, int],
                  cats: list[int] | None = None) -> None:
    for i, c in enumerate(_cats(insns) if cats is None else cats):
        if (c == _C_JUMP or c == _C_CJUMP) and insns[i].target not in labels:
            raise ValueError(f"jump to undefined label {insns[i].target!r}")


def _is_constant_def(ins: ir.Insn) -> bool:
    if isinstance(ins, (ir.LoadImm64, ir.LoadMapFd)):
        return True
    return isinstance(ins, ir.Alu) and ins.op == "mov" and isinstance(ins.src, int)


def _hoist_constant_else(out: list) -> bool:
    """Rewrite, in place (deleted slots become ``_Removed``), every

        if c goto E; <A: straight line, sets x before reading it>; goto J; E: x = K; J:
    into
        x = K; if c goto J; <A>; J:

    which saves the ``goto`` (a map read with a default value is lowered like this).
    """
    n = len(out)
    get = _CAT.get
    refs: dict[str, int] = {}
    for ins in out:
        c = get(ins.__class__) or _cat(ins.__class__)
        if c == _C_JUMP or c == _C_CJUMP:
            refs[ins.target] = refs.get(ins.target, 0) + 1
    changed = False
    for i in range(n):
        cj = out[i]
        if (get(cj.__class__) or _cat(cj.__class__)) != _C_CJUMP or refs.get(cj.target) != 1:
            continue
        # the A arm: straight-line code up to an unconditional jump
        j = i + 1
        while j < n:
            c = get(out[j].__class__) or _cat(out[j].__class__)
            if c == _C_LABEL or c == _C_JUMP or c == _C_CJUMP or c == _C_EXIT:
                break
            j += 1
        if j >= n or (get(out[j].__class__) or _cat(out[j].__class__)) != _C_JUMP:
            continue
        k = _next_code(out, j + 1)
        if k >= n or _labels_between(out, j + 1, k) != {cj.target}:
            continue
        const = out[k]
        if not _is_constant_def(const):
            continue
        m = _next_code(out, k + 1)
        if out[j].target not in _labels_between(out, k + 1, m):
            continue
        x = const.dst
        if x == ir.FP or x in ir.uses(cj):
            continue
        ok = False
        for ins in out[i + 1:j]:
            if x in ir.uses(ins):
                break
            if x in ir.defs(ins):
                ok = not isinstance(ins, ir.Call)
                break
        if not ok:
            continue
        arm = out[i + 1:j]
        out[i] = const
        out[i + 1] = replace(cj, target=out[j].target)
        out[i + 2:j + 1] = arm
        out[k] = _Removed("", span=const.span)
        changed = True
    return changed


_NO_IMM_SHIFT = {"lsh", "rsh", "arsh"}
_NO_IMM_ZERO = {"div", "mod", "sdiv", "smod"}


def _fold_constant(use: ir.Insn, x, value: int) -> ir.Insn | None:
    """``use`` with the virtual register ``x`` (holding ``value``) read as an immediate, or None
    where an immediate cannot stand for it (a base or address, a 32-bit range, a shift amount
    or divisor the verifier refuses as an immediate)."""
    if not -(1 << 31) <= value < (1 << 31):
        return None
    cls = use.__class__
    if cls is ir.Store:
        if use.src == x and use.base != x:
            return replace(use, src=value)
    elif cls is ir.CondJump:
        if use.b == x and use.a != x:
            return replace(use, b=value)
    elif cls is ir.Alu:
        if use.src == x and use.dst != x and use.op != "neg":
            if use.op in _NO_IMM_SHIFT and not 0 <= value < use.width:
                return None
            if use.op in _NO_IMM_ZERO and value == 0:
                return None
            return replace(use, src=value)
    return None


def _fold_single_use_constants(out: list) -> bool:
    """``x = K`` (64-bit, x a virtual register defined there only) whose one reader is a store,
    a compare or an ALU operand: the reader takes K as its immediate and the move goes (a store
    of a constant becomes one ``*(u64 *)(r +off) = K``, as LLVM emits it)."""
    Alu, VReg = ir.Alu, ir.VReg
    cand = {}         # vreg id -> where such a move sets it (after allocation: none)
    for i, ins in enumerate(out):
        if (ins.__class__ is Alu and ins.op == "mov" and ins.width == 64
                and ins.dst.__class__ is VReg and isinstance(ins.src, int)):
            cand[ins.dst.id] = i
    if not cand:
        return False
    # how often each of them is written and read; the readers, with what they read, in order
    # (by vreg id: a VReg's own hash and == are Python code)
    ndefs = dict.fromkeys(cand, 0)
    nuses = dict.fromkeys(cand, 0)
    readers = []
    uses, defs = ir.uses, ir.defs
    for j, ins in enumerate(out):
        for r in defs(ins):
            if r.__class__ is VReg and r.id in ndefs:
                ndefs[r.id] += 1
        u = uses(ins)
        hit = False
        for r in u:
            if r.__class__ is VReg and r.id in nuses:
                nuses[r.id] += 1
                hit = True
        if hit:
            readers.append((j, u))
    consts = {r: i for r, i in cand.items() if ndefs[r] == 1 and nuses[r] == 1}
    if not consts:
        return False
    changed = False
    for j, u in readers:
        for r in u:
            i = consts.get(r.id) if r.__class__ is VReg else None
            if i is None:
                continue
            folded = _fold_constant(out[j], r, out[i].src)
            if folded is not None:
                out[j] = folded
                out[i] = _Removed("", span=out[i].span)
                changed = True
            break
    return changed


def _merge_constant_stores(out: list) -> bool:
    """Two 32-bit stores of constants, one after the other, to the halves of an aligned u64
    become one 64-bit store when its (sign-extended 32-bit) immediate can hold both (a constant
    string's last bytes and their zero padding)."""
    changed = False
    prev = None
    get = _CAT.get
    for i, ins in enumerate(out):
        if ins.__class__ is ir.Store and ins.size == 4 and isinstance(ins.src, int):
            if prev is not None and out[prev].base == ins.base \
                    and {out[prev].off, ins.off} == {ins.off & ~7, (ins.off & ~7) + 4}:
                lo, hi = (out[prev], ins) if out[prev].off < ins.off else (ins, out[prev])
                value = ((hi.src & 0xffffffff) << 32) | (lo.src & 0xffffffff)
                if value >= 1 << 63:
                    value -= 1 << 64
                if -(1 << 31) <= value < (1 << 31):
                    out[prev] = replace(lo, src=value, size=8)
                    out[i] = _Removed("", span=ins.span)
                    changed = True
                    prev = None
                    continue
            prev = i
        else:
            c = get(ins.__class__) or _cat(ins.__class__)
            if c != _C_COMMENT and c != _C_REMOVED:      # (code, or a label)
                prev = None
    return changed


def _peephole_round(insns: list[ir.Insn]) -> tuple[list[ir.Insn], bool]:
    cats = _cats(insns)
    labels = _label_index(insns, cats)
    _check_labels(insns, labels, cats)
    changed = False
    out = list(insns)
    n = len(out)
    jumps = [i for i, c in enumerate(cats) if c == _C_JUMP or c == _C_CJUMP]
    Jump, CondJump = ir.Jump, ir.CondJump

    # 1. jump threading: a jump to a label whose first instruction is "goto M" jumps to M.
    def final_target(name: str) -> str:
        seen = {name}
        while True:
            j = _next_code(out, labels[name])
            if j < n and isinstance(out[j], Jump) and out[j].target not in seen:
                name = out[j].target
                seen.add(name)
            else:
                return name

    for i in jumps:
        ins = out[i]
        t = final_target(ins.target)
        if t != ins.target:
            out[i] = replace(ins, target=t)
            changed = True

    # 2. jumps to the next instruction; "if c goto L1; goto L2; L1:" -> "if !c goto L2; L1:"
    # (the jumps found above, in order, each still a jump when its turn comes)
    for i in jumps:
        ins = out[i]
        if isinstance(ins, (Jump, CondJump)):
            j = _next_code(out, i + 1)
            if _has_label(out, i + 1, j, ins.target):
                out[i] = _Removed("", span=ins.span)
                changed = True
            elif (isinstance(ins, CondJump) and ins.op in _INVERSE and j < n
                  and isinstance(out[j], Jump)
                  and not _any_label(out, i + 1, j)):
                k = _next_code(out, j + 1)
                if _has_label(out, j + 1, k, ins.target):
                    out[i] = replace(ins, op=_INVERSE[ins.op], target=out[j].target)
                    out[j] = _Removed("", span=out[j].span)
                    changed = True

    # 2b. "if c goto E; A; goto J; E: x = K; J:" -> "x = K; if c goto J; A; J:" when A sets x
    if _hoist_constant_else(out):
        changed = True

    # 2c. a constant read once, as the reader's immediate
    if _fold_single_use_constants(out):
        changed = True
    if _merge_constant_stores(out):
        changed = True

    # 3. self moves, and "a = b; b = a" (the second one moves nothing)
    prev = None
    Alu, get = ir.Alu, _CAT.get
    for i, ins in enumerate(out):
        cls = ins.__class__
        if cls is Alu:
            if ins.op == "mov" and ins.width == 64:
                src = ins.src
                if ((src.__class__ in _REGS and src == ins.dst)       # (is_self_move)
                        or (prev is not None and src == prev.dst and ins.dst == prev.src)):
                    out[i] = _Removed("", span=ins.span)
                    changed = True
                    continue
                prev = ins if src.__class__ in _REGS else None
            else:
                prev = None
        else:
            c = get(cls) or _cat(cls)
            if c != _C_COMMENT and c != _C_REMOVED:      # (code, or a label)
                prev = None

    # 4. unreachable code, unreferenced labels, placeholder comments
    cats = _cats(out)
    reach = _reachable(out, labels, cats)
    referenced = {out[k].target for k, c in enumerate(cats)
                  if (c == _C_JUMP or c == _C_CJUMP) and reach[k]}
    result = []
    for k, ins in enumerate(out):
        c = cats[k]
        if c == _C_LABEL:
            if ins.name not in referenced:
                changed = True
                continue
        elif c == _C_REMOVED:
            continue
        elif c == _C_COMMENT:
            pass
        elif not reach[k]:
            changed = True
            continue
        result.append(ins)
    return result, changed


def peephole(insns: list[ir.Insn]) -> list[ir.Insn]:
    """Semantics-preserving jump/move clean-up; returns a new list."""
    out = list(insns)
    for _ in range(100):
        out, changed = _peephole_round(out)
        if not changed:
            break
    return out


# --------------------------------------------------------------------------------------------
# encoding


@dataclass
class Emitted:
    insns: list[Instruction]
    spans: list[Span]
    map_relocs: list[tuple[int, str]]   # (instruction index of the ld_imm64, map name)
    # (instruction index of the ld_imm64, subprogram name): filled in by codegen.subprogs.link
    func_relocs: list[tuple[int, str]] = field(default_factory=list)


def _reg(r: object, what: str) -> int:
    if isinstance(r, ir.PReg):
        if not 0 <= r.n <= 10:
            raise ValueError(f"bad register {r} as {what}")
        return r.n
    raise ValueError(f"{what} is not a machine register: {r!r} (run register allocation first)")


def _imm(v: int, signed_only: bool, what: str) -> int:
    lo = -(1 << 31)
    hi = (1 << 31) if signed_only else (1 << 32)
    if not lo <= v < hi:
        raise ValueError(f"{what} immediate {v} out of range")
    return v - (1 << 32) if v >= (1 << 31) else v


# what emit() does with each instruction class, found once per class in the order of the
# checks it stands for (a subclass is emitted as its first listed base)
(_E_SKIP, _E_ALU, _E_FUNC, _E_IMM64, _E_MAPFD, _E_LOAD, _E_STORE, _E_ATOMIC, _E_ENDIAN, _E_JUMP,
 _E_CJUMP, _E_CALL, _E_EXIT, _E_BAD, _E_BTFID) = range(1, 16)     # (not 0, as the categories above)
_EMIT_BASES = (((ir.Label, ir.Comment), _E_SKIP), (ir.Alu, _E_ALU), (ir.LoadFuncAddr, _E_FUNC),
               (ir.LoadBtfId, _E_BTFID), (ir.LoadImm64, _E_IMM64), (ir.LoadMapFd, _E_MAPFD),
               (ir.Load, _E_LOAD),
               (ir.Store, _E_STORE), (ir.AtomicAdd, _E_ATOMIC), (ir.Endian, _E_ENDIAN),
               (ir.Jump, _E_JUMP), (ir.CondJump, _E_CJUMP), (ir.Call, _E_CALL),
               (ir.Exit, _E_EXIT))
_EMIT_KIND: dict[type, int] = {}
_SLOTS = {_E_SKIP: 0, _E_FUNC: 2, _E_IMM64: 2, _E_MAPFD: 2, _E_BTFID: 2}     # others: 1


def _emit_kind(cls: type) -> int:
    return ir.class_kind(_EMIT_KIND, _EMIT_BASES, cls, _E_BAD)


_S32_MIN, _S32_MAX = -(1 << 31), (1 << 31) - 1


def emit(insns: list[ir.Insn], optimize: bool = True) -> Emitted:
    """Encode allocated IR. ``optimize`` runs ``peephole`` first."""
    if optimize:
        insns = peephole(insns)
    kinds = [_EMIT_KIND.get(ins.__class__) or _emit_kind(ins.__class__) for ins in insns]
    # pass 1: slot index of every label
    pos: dict[str, int] = {}
    pc = 0
    slots = _SLOTS
    for ins, k in zip(insns, kinds):
        if k == _E_SKIP:
            if ins.__class__ is ir.Label or isinstance(ins, ir.Label):
                if ins.name in pos:
                    raise ValueError(f"duplicate label {ins.name!r}")
                pos[ins.name] = pc
        else:
            pc += slots.get(k, 1)

    out: list[Instruction] = []
    spans: list[Span] = []
    relocs: list[tuple[int, str]] = []
    func_relocs: list[tuple[int, str]] = []
    append = out.append
    PReg = ir.PReg
    alu_codes, jmp_codes, size_codes = op.ALU_OP_CODES, op.JMP_OP_CODES, op.SIZE_CODES
    ALU64, ALU, K, X = op.BPF_ALU64, op.BPF_ALU, op.BPF_K, op.BPF_X

    def jump_off(target: str) -> int:
        if target not in pos:
            raise ValueError(f"jump to undefined label {target!r}")
        off = pos[target] - (len(out) + 1)
        if not -(1 << 15) <= off < (1 << 15):     # a program too large for BPF's 16-bit jumps
            raise CompileError(f"The probe's program is too large: a jump spans {abs(off)} "
                               f"instructions, more than the {(1 << 15) - 1} BPF allows",
                               getattr(cur, "span", None) or NO_SPAN, hints=[TOO_LARGE_HINT])
        return off

    cur = None
    for ins, k in zip(insns, kinds):
        cur = ins
        if k == _E_SKIP:
            continue
        if k == _E_ALU:
            opc = alu_codes.get(ins.op)
            if opc is None:
                raise ValueError(f"unknown ALU op {ins.op!r}")
            code, off = opc
            width = ins.width
            if width == 64:
                cls = ALU64
            elif width == 32:
                cls = ALU
            else:
                raise ValueError(f"bad ALU width {ins.width}")
            d = ins.dst
            dst = d.n if d.__class__ is PReg and 0 <= d.n <= 10 else _reg(d, "ALU destination")
            src = ins.src
            if ins.op == "neg":
                append(Instruction(cls | code | K, dst, 0, off, 0))
            elif src.__class__ is not PReg and isinstance(src, int):
                imm = src if _S32_MIN <= src <= _S32_MAX else \
                    _imm(src, width == 64, f"ALU{width} {ins.op}")
                append(Instruction(cls | code | K, dst, 0, off, imm))
            else:
                s = src.n if src.__class__ is PReg and 0 <= src.n <= 10 else \
                    _reg(src, "ALU source")
                append(Instruction(cls | code | X, dst, s, off, 0))
            spans.append(ins.span)
            continue
        start = len(out)
        if k == _E_LOAD:
            size = size_codes[ins.size]
            d, b = ins.dst, ins.base
            append(Instruction(op.BPF_LDX | op.BPF_MEM | size,
                               d.n if d.__class__ is PReg and 0 <= d.n <= 10
                               else _reg(d, "load dst"),
                               b.n if b.__class__ is PReg and 0 <= b.n <= 10
                               else _reg(b, "load base"), ins.off, 0))
        elif k == _E_STORE:
            size = size_codes[ins.size]
            b = ins.base
            base = b.n if b.__class__ is PReg and 0 <= b.n <= 10 else _reg(b, "store base")
            src = ins.src
            if src.__class__ is not PReg and isinstance(src, int):
                imm = src if _S32_MIN <= src <= _S32_MAX else _imm(src, ins.size == 8, "store")
                append(Instruction(op.BPF_ST | op.BPF_MEM | size, base, 0, ins.off, imm))
            else:
                append(Instruction(op.BPF_STX | op.BPF_MEM | size, base,
                                   src.n if src.__class__ is PReg and 0 <= src.n <= 10
                                   else _reg(src, "store source"), ins.off, 0))
        elif k == _E_CJUMP:
            code = jmp_codes.get(ins.op)
            if code is None:
                raise ValueError(f"unknown jump op {ins.op!r}")
            code |= op.BPF_JMP if ins.width == 64 else op.BPF_JMP32
            a = ins.a
            a = a.n if a.__class__ is PReg and 0 <= a.n <= 10 else _reg(a, "jump operand")
            off = jump_off(ins.target)
            b = ins.b
            if b.__class__ is not PReg and isinstance(b, int):
                imm = b if _S32_MIN <= b <= _S32_MAX else _imm(b, ins.width == 64, "jump")
                append(Instruction(code | K, a, 0, off, imm))
            else:
                append(Instruction(code | X, a, b.n if b.__class__ is PReg and 0 <= b.n <= 10
                                   else _reg(b, "jump operand"), off, 0))
        elif k == _E_JUMP:
            append(Instruction(op.BPF_JMP | op.BPF_JA, 0, 0, jump_off(ins.target), 0))
        elif k == _E_CALL:
            append(Instruction(op.BPF_JMP | op.BPF_CALL, 0, 0, 0, ins.helper))
        elif k == _E_EXIT:
            append(Instruction(op.BPF_JMP | op.BPF_EXIT, 0, 0, 0, 0))
        elif k == _E_MAPFD:
            relocs.append((len(out), ins.map_name))
            if ins.value_offset is None:
                out.extend(ld_imm64(_reg(ins.dst, "map destination"), 0, op.BPF_PSEUDO_MAP_FD))
            else:
                first, second = ld_imm64(_reg(ins.dst, "map destination"), 0,
                                         op.BPF_PSEUDO_MAP_VALUE)
                second.imm = ins.value_offset
                out.extend((first, second))
        elif k == _E_IMM64:
            out.extend(ld_imm64(_reg(ins.dst, "ld_imm64 destination"), ins.value))
        elif k == _E_BTFID:
            out.extend(ld_imm64(_reg(ins.dst, "btf id destination"), ins.value,
                                op.BPF_PSEUDO_BTF_ID))
        elif k == _E_FUNC:
            func_relocs.append((len(out), ins.func))
            out.extend(ld_imm64(_reg(ins.dst, "func destination"), 0, op.BPF_PSEUDO_FUNC))
        elif k == _E_ATOMIC:
            if ins.size not in (4, 8):
                raise ValueError(f"atomic add of size {ins.size}")
            size = size_codes[ins.size]
            append(Instruction(op.BPF_STX | op.BPF_ATOMIC | size, _reg(ins.base, "base"),
                               _reg(ins.src, "atomic source"), ins.off, op.BPF_ADD))
        elif k == _E_ENDIAN:
            if ins.bits not in (16, 32, 64):
                raise ValueError(f"byte swap of {ins.bits} bits")
            src = op.BPF_TO_BE if ins.to_be else op.BPF_TO_LE
            append(Instruction(op.BPF_ALU | op.BPF_END | src, _reg(ins.dst, "endian"),
                               0, 0, ins.bits))
        else:
            raise ValueError(f"cannot encode {ins!r}")
        if len(out) - start == 1:
            spans.append(ins.span)
        else:
            spans.extend([ins.span] * (len(out) - start))
    return Emitted(out, spans, relocs, func_relocs)
