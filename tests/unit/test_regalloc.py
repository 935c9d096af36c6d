"""Register allocator tests: liveness, fixed registers, spilling, coalescing, and a random
differential test against a tiny IR interpreter (before vs after allocation)."""
from __future__ import annotations

import random

import pytest

from ptrace_lang.codegen import ir
from ptrace_lang.codegen.emit import emit, peephole
from ptrace_lang.codegen.ir import (R0, R1, R2, R3, R4, R10, Alu, AtomicAdd, Call, CondJump,
                                    Endian, Exit, Jump, Label, Load, LoadImm64, LoadMapFd,
                                    PReg, Store, VReg)
from ptrace_lang.codegen.regalloc import allocate_registers

V = VReg
MASK = (1 << 64) - 1
FP_ADDR = 0x7FFF_0000_1000
CTX_ADDR = 0x5555_0000_0000
MAPVAL_ADDR = 0x6666_0000_0000


# --------------------------------------------------------------------------------------------
# a tiny interpreter of the IR


class Uninit(Exception):
    pass


class _Poison:
    def __repr__(self) -> str:
        return "POISON"


POISON = _Poison()


def _sx32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _alu(op: str, a: int, b: int, width: int) -> int:
    m = (1 << width) - 1
    a &= m
    b &= m
    if op == "mov":
        r = b
    elif op == "add":
        r = a + b
    elif op == "sub":
        r = a - b
    elif op == "mul":
        r = a * b
    elif op == "div":
        r = a // b if b else 0
    elif op == "mod":
        r = a % b if b else a
    elif op == "sdiv":
        sa, sb = _signed(a, width), _signed(b, width)
        r = (abs(sa) // abs(sb)) * (1 if (sa < 0) == (sb < 0) else -1) if sb else 0
    elif op == "smod":
        sa, sb = _signed(a, width), _signed(b, width)
        r = (sa - sb * int(sa / sb)) if sb else a
    elif op == "or":
        r = a | b
    elif op == "and":
        r = a & b
    elif op == "xor":
        r = a ^ b
    elif op == "lsh":
        r = a << (b & (width - 1))
    elif op == "rsh":
        r = a >> (b & (width - 1))
    elif op == "arsh":
        r = _signed(a, width) >> (b & (width - 1))
    elif op == "neg":
        r = -a
    else:
        raise ValueError(op)
    return r & m


def _cmp(op: str, a: int, b: int, width: int) -> bool:
    m = (1 << width) - 1
    a &= m
    b &= m
    sa, sb = _signed(a, width), _signed(b, width)
    return {"jeq": a == b, "jne": a != b, "jgt": a > b, "jge": a >= b, "jlt": a < b,
            "jle": a <= b, "jsgt": sa > sb, "jsge": sa >= sb, "jslt": sa < sb,
            "jsle": sa <= sb, "jset": bool(a & b)}[op]


def run_ir(insns: list[ir.Insn], frame_depth: int, max_steps: int = 100_000):
    """Run IR; returns (r0, observations). Reading an undefined register or stack byte raises
    Uninit; r1-r5 become undefined after every call (as the verifier sees them)."""
    regs: dict = {R1: CTX_ADDR, R10: FP_ADDR}
    mem: dict[int, int] = {}
    # a readable fake context at CTX_ADDR
    for k in range(256):
        mem[CTX_ADDR + k] = (k * 37 + 11) & 0xFF
        mem[MAPVAL_ADDR + k] = 0
    labels = {ins.name: i for i, ins in enumerate(insns) if isinstance(ins, Label)}
    obs: list = []

    def rd(r):
        v = regs.get(r, POISON)
        if v is POISON:
            raise Uninit(f"read of undefined {r}")
        return v

    def val(o):
        return o & MASK if isinstance(o, int) else rd(o)

    def load(addr, size):
        out = 0
        for k in range(size):
            if addr + k not in mem:
                raise Uninit(f"read of undefined memory {addr + k:#x}")
            out |= mem[addr + k] << (8 * k)
        return out

    def store(addr, size, value):
        for k in range(size):
            mem[addr + k] = (value >> (8 * k)) & 0xFF

    def frame():
        return tuple(mem.get(FP_ADDR - frame_depth + k) for k in range(frame_depth))

    pc = 0
    steps = 0
    while True:
        steps += 1
        if steps > max_steps:
            raise RuntimeError("too many steps")
        ins = insns[pc]
        pc += 1
        if isinstance(ins, (Label, ir.Comment)):
            continue
        if isinstance(ins, Alu):
            if ins.op == "mov":
                src = ins.src
                b = (src & MASK) if isinstance(src, int) else rd(src)
                if isinstance(src, int) and ins.width == 64:
                    b = src & MASK          # imm is sign-extended (python ints already are)
                regs[ins.dst] = _alu("mov", 0, b, ins.width)
            elif ins.op == "neg":
                regs[ins.dst] = _alu("neg", rd(ins.dst), 0, ins.width)
            else:
                regs[ins.dst] = _alu(ins.op, rd(ins.dst), val(ins.src), ins.width)
        elif isinstance(ins, LoadImm64):
            regs[ins.dst] = ins.value & MASK
        elif isinstance(ins, LoadMapFd):
            regs[ins.dst] = 0xFFFF_8000_0000_0000 | (sum(map(ord, ins.map_name)) << 12)
        elif isinstance(ins, Load):
            regs[ins.dst] = load((rd(ins.base) + ins.off) & MASK, ins.size)
        elif isinstance(ins, Store):
            store((rd(ins.base) + ins.off) & MASK, ins.size, val(ins.src))
        elif isinstance(ins, AtomicAdd):
            addr = (rd(ins.base) + ins.off) & MASK
            m = (1 << (8 * ins.size)) - 1
            store(addr, ins.size, (load(addr, ins.size) + rd(ins.src)) & m)
        elif isinstance(ins, Endian):
            v = rd(ins.dst) & ((1 << ins.bits) - 1)
            if ins.to_be:
                v = int.from_bytes(v.to_bytes(ins.bits // 8, "little"), "big")
            regs[ins.dst] = v
        elif isinstance(ins, Jump):
            pc = labels[ins.target]
        elif isinstance(ins, CondJump):
            if _cmp(ins.op, rd(ins.a), val(ins.b), ins.width):
                pc = labels[ins.target]
        elif isinstance(ins, Call):
            args = tuple(rd(ir.ARG_REGS[k]) for k in range(ins.nargs))
            obs.append(("call", ins.helper, args, frame()))
            h = ins.helper * 0x9E3779B97F4A7C15
            for a in args:
                h = ((h ^ a) * 0x100000001B3) & MASK
            for r in ir.CALLER_SAVED:
                regs[r] = POISON
            # helper 1 returns a pointer to a map value, helper 99 returns NULL
            regs[R0] = {1: MAPVAL_ADDR, 99: 0}.get(ins.helper, h & MASK)
        elif isinstance(ins, Exit):
            r0 = rd(R0)
            obs.append(("exit", r0, frame()))
            return r0, obs
        else:
            raise TypeError(ins)


def check_same(prog: list[ir.Insn], frame_depth: int = 16):
    """Allocate, run both, compare. Returns (allocated insns, new depth)."""
    out, depth = allocate_registers(prog, frame_depth)
    for ins in out:
        for f in ("dst", "src", "base", "a", "b"):
            assert not isinstance(getattr(ins, f, None), VReg), ir.format_insn(ins)
    assert depth >= frame_depth and (depth == frame_depth or depth % 8 == 0)
    assert depth <= 512
    before = run_ir(prog, frame_depth)
    after = run_ir(out, frame_depth)
    assert before == after
    emit(out)       # must be encodable
    return out, depth


def preg_of_def(out: list[ir.Insn], pred) -> PReg:
    hits = [ins for ins in out if pred(ins)]
    assert len(hits) == 1, [ir.format_insn(i) for i in out]
    return hits[0].dst


def moves(out: list[ir.Insn]) -> list[ir.Insn]:
    return [i for i in out if isinstance(i, Alu) and i.op == "mov" and i.width == 64
            and isinstance(i.src, PReg) and i.src != R10]


def is_mov_imm(value):
    return lambda i: isinstance(i, Alu) and i.op == "mov" and i.src == value


# --------------------------------------------------------------------------------------------
# unit tests


def test_simple_program_no_moves_left():
    # %a = r1; r1 = map; %fp = r10 - 8; r2 = %fp; call lookup; %p = r0; if %p == 0 ...
    prog = [
        Alu("mov", V(0), R1),
        Store(R10, -8, 0),
        LoadMapFd(V(1), "m"),
        Alu("mov", V(2), R10), Alu("add", V(2), -8),
        Alu("mov", R1, V(1)), Alu("mov", R2, V(2)),
        Call(1, 2),
        Alu("mov", V(3), R0),
        CondJump("jeq", V(3), 0, "out"),
        Alu("mov", V(4), 1),
        AtomicAdd(V(3), 0, V(4)),
        Label("out"),
        Alu("mov", R0, 0),
        Exit(),
    ]
    out, depth = check_same(prog)
    assert depth == 16
    # everything coalesced: map fd straight into r1, fp+off straight into r2, r0 used in place
    assert moves(out) == []
    assert len(emit(out).insns) == 11


def test_move_from_r0_after_call_is_coalesced():
    prog = [
        Call(5, 0),
        Alu("mov", V(1), R0),
        Alu("add", V(1), 3),
        Alu("mov", R0, V(1)),
        Exit(),
    ]
    out, _ = check_same(prog)
    assert [ir.format_insn(i) for i in out] == ["call 5 (0 args)", "r0 += 3", "exit"]


def test_arg_moves_coalesced_into_arg_registers():
    prog = [
        Load(V(1), R1, 8),
        Load(V(2), R1, 16),
        Alu("mov", V(3), R10), Alu("add", V(3), -16),
        Alu("mov", R1, V(3)),
        Alu("mov", R2, 8),
        Alu("mov", R3, V(1)),
        Call(4, 3),
        Alu("mov", R1, V(2)),
        Call(6, 1),
        Alu("mov", R0, 0),
        Exit(),
    ]
    out, _ = check_same(prog)
    # %1 needs r3, %3 needs r1; %2 lives across the first call so it needs a callee-saved reg
    assert preg_of_def(out, lambda i: isinstance(i, Load) and i.off == 8) == R3
    assert preg_of_def(out, lambda i: isinstance(i, Load) and i.off == 16).n in (6, 7, 8, 9)
    assert len(moves(out)) == 1          # r1 = <callee-saved> before the second call


def test_values_live_across_call_get_callee_saved():
    prog = [Alu("mov", V(10), R1)]
    for k in range(4):
        prog.append(Load(V(k), V(10), 8 * k))
    prog += [Call(5, 0)]
    prog += [Alu("mov", R0, V(0))]
    for k in range(1, 4):
        prog.append(Alu("add", R0, V(k)))
    prog.append(Exit())
    out, depth = check_same(prog)
    assert depth == 16
    for k in range(4):
        r = preg_of_def(out, lambda i, k=k: isinstance(i, Load) and i.off == 8 * k)
        assert r.n in (6, 7, 8, 9)


def test_vreg_not_placed_in_busy_argument_register():
    # %b is computed while r1 already holds the first argument
    prog = [
        Load(V(1), R1, 0),
        Alu("mov", R1, 7),
        Alu("mov", V(2), V(1)), Alu("mul", V(2), 3),
        Alu("mov", R2, V(2)),
        Call(9, 2),
        Exit(),
    ]
    out, _ = check_same(prog)
    r = preg_of_def(out, lambda i: isinstance(i, Alu) and i.op == "mul")
    assert r != R1


def test_r0_not_reused_before_call_result_is_read():
    prog = [
        Alu("mov", V(9), R1),
        Call(5, 0),
        Load(V(1), V(9), 0),        # defined while r0 holds the call result
        Alu("add", V(1), 1),
        Alu("mov", V(2), R0),
        Alu("add", V(2), V(1)),
        Alu("mov", R0, V(2)),
        Exit(),
    ]
    out, _ = check_same(prog)
    assert preg_of_def(out, lambda i: isinstance(i, Load)) != R0


def test_liveness_across_loop():
    # %keep is defined before the loop, only used after it; the loop body calls a helper and
    # uses temporaries, which must not clobber %keep (needs the back edge in the dataflow).
    prog = [
        Load(V(1), R1, 0),               # %keep
        Alu("mov", V(2), 0),             # %i
        Label("loop"),
        CondJump("jge", V(2), 4, "done"),
        Alu("mov", V(3), V(2)), Alu("mul", V(3), 5),
        Alu("mov", R1, V(3)),
        Call(7, 1),
        Alu("mov", V(4), R0),
        Alu("and", V(4), 0xFF),
        Alu("mov", R1, V(4)),
        Call(8, 1),
        Alu("add", V(2), 1),
        Jump("loop"),
        Label("done"),
        Alu("mov", R0, V(1)),
        Exit(),
    ]
    out, _ = check_same(prog)
    keep = preg_of_def(out, lambda i: isinstance(i, Load))
    counter = preg_of_def(out, is_mov_imm(0))
    assert keep.n in (6, 7, 8, 9) and counter.n in (6, 7, 8, 9) and keep != counter


def test_liveness_around_loop_without_calls():
    # a value defined before the loop and used only after it stays intact although the loop
    # body defines several short-lived values
    prog = [Load(V(1), R1, 0), Alu("mov", V(2), 0), Label("top")]
    for k in range(7):      # r1, %keep, %i and 7 loop values: exactly 10 registers
        prog += [Load(V(10 + k), R1, 8 + k), Alu("add", V(10 + k), V(2))]
    for k in range(1, 7):
        prog.append(Alu("xor", V(10), V(10 + k)))
    prog += [Store(R10, -8, V(10)), Alu("add", V(2), 1), CondJump("jlt", V(2), 3, "top"),
             Alu("mov", R0, V(1)), Exit()]
    out, depth = check_same(prog)
    keep = preg_of_def(out, lambda i: isinstance(i, Load) and i.off == 0)
    inner = [i.dst for i in out if isinstance(i, Load) and i.off >= 8]
    assert keep not in inner
    assert depth == 16


def _many_live_across_call(n: int, base: int = 0, ctx=R1):
    prog = [Alu("mov", V(base + 100), ctx)]
    for k in range(n):
        prog.append(Load(V(base + k), V(base + 100), 8 * k))
    prog.append(Alu("mov", R1, V(base + 100)))
    prog.append(Call(5, 1))
    prog.append(Alu("mov", V(base + 50), V(base)))
    for k in range(1, n):
        prog += [Alu("mul", V(base + 50), 3), Alu("add", V(base + 50), V(base + k))]
    return prog, V(base + 50)


def test_spilling_when_more_than_four_values_live_across_call():
    prog, total = _many_live_across_call(7)
    prog += [Alu("mov", R0, total), Exit()]
    out, depth = check_same(prog, frame_depth=20)
    assert depth > 20 and depth % 8 == 0
    spill_stores = [i for i in out if isinstance(i, Store) and i.base == R10 and i.off < -20]
    spill_loads = [i for i in out if isinstance(i, Load) and i.base == R10 and i.off < -20]
    assert spill_stores and spill_loads
    assert all(i.off % 8 == 0 and -depth <= i.off for i in spill_stores + spill_loads)


def test_spill_slots_are_reused():
    p1, t1 = _many_live_across_call(8, base=0)
    p2, t2 = _many_live_across_call(8, base=200, ctx=V(100))
    prog = p1 + [Store(R10, -8, t1)] + p2 + [Alu("mov", R0, t2), Exit()]
    out, depth = check_same(prog, frame_depth=8)
    spills = [i for i in out if isinstance(i, Store) and i.base == R10 and i.off < -8]
    slots = {i.off for i in spills}
    assert depth == 8 + 8 * len(slots)
    assert len(spills) >= 8 and len(slots) <= len(spills) // 2 + 1   # phase 2 reuses slots


def test_constants_are_rematerialised_not_spilled():
    prog = [Alu("mov", V(100), R1)]
    for k in range(7):
        prog.append(Alu("mov", V(k), 1000 + k))
    prog.append(Call(5, 0))
    prog.append(Alu("mov", R0, 0))
    for k in range(7):
        prog.append(Alu("add", R0, V(k)))
    prog.append(Exit())
    out, depth = check_same(prog)
    assert depth == 16


def test_frame_addresses_are_rematerialised_not_spilled():
    prog = [Alu("mov", V(100), R1)]
    for k in range(7):
        prog += [Alu("mov", V(k), R10), Alu("add", V(k), -8 * (k + 1))]
    prog.append(Call(5, 0))
    for k in range(7):
        prog += [Alu("mov", R1, V(k)), Alu("mov", R2, V(100)), Call(6, 2)]
    prog += [Alu("mov", R0, 0), Exit()]
    out, depth = check_same(prog, frame_depth=56)
    assert depth == 56


def test_stack_depth_unchanged_without_spills_and_aligned_with():
    prog = [Alu("mov", R0, 1), Exit()]
    assert allocate_registers(prog, 13)[1] == 13
    p, t = _many_live_across_call(6)
    p += [Alu("mov", R0, t), Exit()]
    out, depth = check_same(p, frame_depth=13)
    assert depth % 8 == 0 and depth >= 24
    offs = {i.off for i in out if isinstance(i, (Load, Store)) and i.base == R10}
    assert all(o <= -16 and o % 8 == 0 for o in offs)


def test_dead_code_removed_and_self_moves_deleted():
    prog = [
        Alu("mov", V(1), 5),         # dead
        Load(V(2), R1, 0),
        Alu("mov", V(3), V(2)),
        Alu("mov", R0, V(3)),
        Exit(),
    ]
    out, _ = check_same(prog)
    assert [ir.format_insn(i) for i in out] == ["r0 = *(u64 *)(r1 +0)", "exit"]


def test_null_check_branch_structure_preserved():
    prog = [
        Alu("mov", V(0), R1),
        LoadMapFd(R1, "m"),
        Alu("mov", R2, R10), Alu("add", R2, -8),
        Store(R10, -8, 0),
        Call(99, 2),                     # returns NULL in the interpreter
        Alu("mov", V(1), R0),
        CondJump("jne", V(1), 0, "have"),
        Alu("mov", R0, 1),
        Exit(),
        Label("have"),
        Load(V(2), V(1), 0),
        Alu("mov", R0, V(2)),
        Exit(),
    ]
    out, _ = check_same(prog)
    kinds = [type(i).__name__ for i in out]
    assert kinds.count("Exit") == 2 and kinds.count("Label") == 1


def test_32bit_mov_is_not_coalesced_away():
    prog = [Load(V(1), R1, 0), Alu("mov", V(2), V(1), width=32), Alu("mov", R0, V(2)), Exit()]
    out, _ = check_same(prog)
    assert any(isinstance(i, Alu) and i.width == 32 for i in out)


def test_peephole_inverts_branch_over_jump():
    prog = [
        Load(V(1), R1, 0),
        CondJump("jeq", V(1), 0, "a"),
        Jump("b"),
        Label("a"),
        Alu("mov", R0, 1),
        Exit(),
        Label("b"),
        Alu("mov", R0, 2),
        Exit(),
    ]
    opt = peephole(prog)
    assert not any(isinstance(i, Jump) for i in opt)
    assert [i.op for i in opt if isinstance(i, CondJump)] == ["jne"]
    check_same(prog)


def test_peephole_removes_jump_to_next_and_unreachable():
    prog = [
        Alu("mov", R0, 0),
        Jump("x"),
        Alu("mov", R0, 5),    # unreachable
        Label("x"),
        Exit(),
    ]
    assert [ir.format_insn(i) for i in peephole(prog)] == ["r0 = 0", "exit"]


def test_peephole_hoists_constant_else_arm():
    # x = lookup ? *lookup : 0   (how a map read with a default is lowered)
    prog = [
        Call(99, 0),
        Alu("mov", V(1), R0),
        CondJump("jeq", V(1), 0, "miss"),
        Load(V(2), V(1), 0),
        Jump("done"),
        Label("miss"),
        Alu("mov", V(2), 0),
        Label("done"),
        Alu("mov", R0, V(2)),
        Exit(),
    ]
    opt = peephole(prog)
    assert [ir.format_insn(i) for i in opt] == [
        "call 99 (0 args)", "%1 = r0", "%2 = 0", "if %1 jeq 0 goto done",
        "%2 = *(u64 *)(%1 +0)", "done:", "r0 = %2", "exit"]
    out, _ = check_same(prog)
    assert len(emit(out).insns) == 6
    # not when the arm reads x before setting it, or the condition reads x
    bad = list(prog)
    bad[3] = Alu("add", V(2), 1)
    assert len(peephole(bad)) == len(prog)
    bad = list(prog)
    bad[2] = CondJump("jeq", V(2), 0, "miss")
    assert len(peephole(bad)) == len(prog)


def test_reloads_forwarded_from_registers_still_holding_the_slot():
    from ptrace_lang.codegen.ra_spill import _forward_reloads, _SpillLoad, _SpillStore
    prog = [
        _SpillStore(R10, 0, R1, 8, slot=0),
        CondJump("jgt", R1, 100, "x"),
        _SpillLoad(R1, R10, 0, 8, slot=0),      # r1 still holds slot 0: dropped
        _SpillLoad(R2, R10, 0, 8, slot=0),      # r1 does: becomes r2 = r1
        Alu("add", R1, 1),
        _SpillLoad(R3, R10, 0, 8, slot=0),      # r2 still does
        Call(5, 0),
        _SpillLoad(R4, R10, 0, 8, slot=0),      # r0-r5 clobbered: real reload
        Label("x"),
        _SpillLoad(R1, R10, 0, 8, slot=0),      # merge point: real reload
        Exit(),
    ]
    out = _forward_reloads(prog)
    assert [ir.format_insn(i) for i in out] == [
        "*(u64 *)(r10 +0) = r1", "if r1 jgt 100 goto x", "r2 = r1", "r1 += 1", "r3 = r2",
        "call 5 (0 args)", "r4 = *(u64 *)(r10 +0)", "x:", "r1 = *(u64 *)(r10 +0)", "exit"]


def test_commutative_copy_is_moved_to_the_dying_operand():
    # $g = $a + $b * 3 with $a still needed afterwards
    prog = [
        Load(V(1), R1, 0),
        Load(V(2), R1, 8),
        Alu("mov", V(3), V(1)),
        Alu("mov", V(4), V(2)),
        Alu("mul", V(4), 3),
        Alu("add", V(3), V(4)),
        Store(R10, -8, V(3)),
        Alu("mov", R0, V(1)),
        Exit(),
    ]
    out, _ = check_same(prog)
    assert [ir.format_insn(i) for i in out] == [
        "r0 = *(u64 *)(r1 +0)", "r1 = *(u64 *)(r1 +8)", "r1 *= 3", "r1 += r0",
        "*(u64 *)(r10 -8) = r1", "exit"]


def test_unknown_label_is_an_error():
    with pytest.raises(ValueError):
        allocate_registers([Jump("nowhere"), Exit()], 0)


# --------------------------------------------------------------------------------------------
# random differential testing


class _Gen:
    ALU = ("add", "sub", "mul", "div", "mod", "or", "and", "xor", "lsh", "rsh", "arsh", "neg")
    CMP = ("jeq", "jne", "jgt", "jge", "jlt", "jle", "jsgt", "jsge", "jslt", "jsle", "jset")

    def __init__(self, rng: random.Random, frame_depth: int) -> None:
        self.rng = rng
        self.out: list[ir.Insn] = []
        self.nv = 0
        self.nl = 0
        self.frame_depth = frame_depth
        self.protected: set[VReg] = set()
        self.final_uses = rng.choice((1, 3, 12))

    def vreg(self) -> VReg:
        self.nv += 1
        return V(self.nv)

    def label(self) -> str:
        self.nl += 1
        return f"L{self.nl}"

    def pick(self, defined: list[VReg], mutable: bool = False) -> VReg:
        pool = [v for v in defined if v not in self.protected] if mutable else defined
        return self.rng.choice(pool)

    def operand(self, defined):
        r = self.rng
        if r.random() < 0.5:
            return self.pick(defined)
        return r.choice([0, 1, 2, 3, 7, 31, 64, -1, -5, 0x7FFFFFFF, -0x80000000, r.randrange(1000)])

    def stmt(self, defined: list[VReg], depth: int) -> list[VReg]:
        r = self.rng
        o = self.out
        k = r.random()
        if k < 0.20:            # new value
            v = self.vreg()
            c = r.random()
            if c < 0.3:
                o.append(Alu("mov", v, self.operand(defined), width=r.choice((64, 64, 32))))
            elif c < 0.45:
                o.append(LoadImm64(v, r.randrange(-(1 << 63), 1 << 64)))
            elif c < 0.55:
                o.append(LoadMapFd(v, r.choice(("a", "b", "counts"))))
            elif c < 0.7:
                o.append(Alu("mov", v, R10))
                o.append(Alu("add", v, -8 * r.randrange(1, self.frame_depth // 8 + 1)))
            else:
                o.append(Load(v, self.ctx, r.randrange(0, 200), r.choice((1, 2, 4, 8))))
            return defined + [v]
        if k < 0.45:            # ALU on an existing value
            if not [v for v in defined if v not in self.protected]:
                return defined
            d = self.pick(defined, mutable=True)
            op = r.choice(self.ALU)
            src = self.operand(defined)
            if op in ("lsh", "rsh", "arsh") and isinstance(src, int):
                src &= 63
            o.append(Alu(op, d, src, width=r.choice((64, 64, 64, 32))))
            return defined
        if k < 0.52:
            if not [v for v in defined if v not in self.protected]:
                return defined
            o.append(Endian(self.pick(defined, mutable=True), r.choice((16, 32, 64)),
                            r.random() < 0.5))
            return defined
        if k < 0.60:            # frame store / load
            off = -8 * r.randrange(1, self.frame_depth // 8 + 1)
            if r.random() < 0.5:
                o.append(Store(R10, off, self.operand(defined), r.choice((1, 2, 4, 8))))
                return defined
            v = self.vreg()
            o.append(Load(v, R10, off, 8))
            return defined + [v]
        if k < 0.63:
            off = -8 * r.randrange(1, self.frame_depth // 8 + 1)
            o.append(Alu("mov", self.tmp_fp, R10))
            o.append(Alu("add", self.tmp_fp, off))
            o.append(AtomicAdd(self.tmp_fp, 0, self.pick(defined), r.choice((4, 8))))
            return defined
        if k < 0.80:            # helper call
            n = r.randrange(0, 6)
            for a in range(n):
                src = self.operand(defined)
                if r.random() < 0.3:    # computed while earlier argument registers are busy
                    t = self.vreg()
                    o.append(Alu("mov", t, src))
                    o.append(Alu(r.choice(("add", "xor", "mul")), t, self.operand(defined)))
                    src = t
                o.append(Alu("mov", ir.ARG_REGS[a], src, width=r.choice((64, 64, 64, 32))))
            o.append(Call(r.randrange(1, 50), n))
            if r.random() < 0.8:
                v = self.vreg()
                o.append(Alu("mov", v, R0))
                return defined + [v]
            return defined
        if k < 0.84:            # x = c ? <value> : <constant>
            x = self.vreg() if r.random() < 0.7 or not [
                v for v in defined if v not in self.protected] else self.pick(defined, True)
            other, end = self.label(), self.label()
            o.append(CondJump(r.choice(self.CMP), self.pick(defined), self.operand(defined),
                              other))
            if r.random() < 0.5:
                self.stmt(defined, depth + 1)
            if r.random() < 0.5:
                o.append(Load(x, self.ctx, r.randrange(0, 64), 8))
            else:
                o.append(Alu("mov", x, self.pick(defined)))
            o.append(Jump(end))
            o.append(Label(other))
            o.append(Alu("mov", x, r.choice((0, 1, -1, 77)), width=r.choice((64, 32))))
            o.append(Label(end))
            return defined + [x] if x not in defined else defined
        if k < 0.86:            # c = a; ...; c op= b   (commutable copies)
            c = self.vreg()
            o.append(Alu("mov", c, self.pick(defined)))
            if r.random() < 0.5:
                defined = self.stmt(defined, depth + 1)
            o.append(Alu(r.choice(("add", "mul", "or", "and", "xor")), c, self.pick(defined),
                         width=r.choice((64, 64, 32))))
            return defined + [c]
        if k < 0.91 and depth < 3:      # if / else
            a = self.pick(defined)
            b = self.operand(defined)
            if isinstance(b, int) and r.random() < 0.5:
                b = b & 0xFF
            other, end = self.label(), self.label()
            o.append(CondJump(r.choice(self.CMP), a, b, other, width=r.choice((64, 32))))
            d1 = self.block(defined, depth + 1, r.randrange(1, 5))
            if r.random() < 0.15:
                o.append(Alu("mov", R0, self.pick(d1)))
                o.append(Exit())
            else:
                o.append(Jump(end))
            o.append(Label(other))
            d2 = self.block(defined, depth + 1, r.randrange(0, 5))
            o.append(Label(end))
            return [v for v in d1 if v in d2]
        if k < 0.97 and depth < 2:      # bounded loop
            i = self.vreg()
            top, done = self.label(), self.label()
            o.append(Alu("mov", i, 0))
            o.append(Label(top))
            o.append(CondJump("jge", i, r.randrange(1, 4), done))
            self.protected.add(i)
            self.block(defined + [i], depth + 1, r.randrange(1, 6))
            self.protected.discard(i)
            o.append(Alu("add", i, 1))
            o.append(Jump(top))
            o.append(Label(done))
            return defined + [i]
        return defined

    def block(self, defined, depth, n):
        for _ in range(n):
            defined = self.stmt(defined, depth)
        return defined

    def program(self, n: int) -> list[ir.Insn]:
        self.ctx = self.vreg()
        self.tmp_fp = self.vreg()
        self.out.append(Alu("mov", self.ctx, R1))
        for k in range(self.frame_depth // 8):
            self.out.append(Store(R10, -8 * (k + 1), 0))
        self.protected = {self.ctx}
        defined = [self.ctx]
        defined = self.block(defined, 0, n)
        # use several live values at the end so that many stay live for a long time
        res = self.vreg()
        self.out.append(Alu("mov", res, 0))
        for v in self.rng.sample(defined, min(len(defined), self.final_uses)):
            self.out.append(Alu("xor", res, v))
            self.out.append(Alu("mul", res, 3))
        self.out.append(Alu("mov", R0, res))
        self.out.append(Exit())
        return self.out


@pytest.mark.parametrize("seed", range(300))
def test_random_programs_same_result(seed):
    rng = random.Random(seed)
    frame = rng.choice((8, 16, 24, 40))
    prog = _Gen(rng, frame).program(rng.randrange(5, 40))
    check_same(prog, frame)


def test_random_programs_exercise_spilling():
    spilled = 0
    for seed in range(300):
        rng = random.Random(seed)
        frame = rng.choice((8, 16, 24, 40))
        prog = _Gen(rng, frame).program(rng.randrange(5, 40))
        _, depth = allocate_registers(prog, frame)
        spilled += depth > frame
    assert spilled >= 10
