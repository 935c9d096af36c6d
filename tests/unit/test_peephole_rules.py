"""The peephole rules that tighten code (codegen/emit.py): a constant read once becomes its
reader's immediate, ``b = a`` right after ``a = b`` goes, and two 32-bit constant stores to the
halves of an aligned u64 become one 64-bit store; each where it is exact, and not where an
immediate cannot stand for the register."""
from __future__ import annotations

from ptrace_lang.codegen import ir
from ptrace_lang.codegen.emit import peephole
from ptrace_lang.codegen.ir import R0, R1, R10, Alu, CondJump, Exit, Label, Load, Store, VReg as V


def text(prog) -> list[str]:
    return [ir.format_insn(i) for i in peephole(prog)]


def test_a_constant_read_once_becomes_the_immediate_of_a_store_compare_or_alu():
    prog = [Alu("mov", V(1), 10), Store(R10, -8, V(1), 8),
            Load(V(2), R1, 0), Alu("mov", V(3), 7), CondJump("jgt", V(2), V(3), "x"),
            Alu("mov", V(4), 3), Alu("add", V(2), V(4)), Label("x"), Alu("mov", R0, V(2)), Exit()]
    assert text(prog) == ["*(u64 *)(r10 -8) = 10", "%2 = *(u64 *)(r1 +0)", "if %2 jgt 7 goto x",
                          "%2 += 3", "x:", "r0 = %2", "exit"]


def test_not_where_the_immediate_would_differ_or_be_refused():
    keep = [
        [Alu("mov", V(1), 1 << 40), Store(R10, -8, V(1), 8)],          # no 32-bit immediate
        [Load(V(2), R1, 0), Alu("mov", V(1), 0), Alu("div", V(2), V(1))],   # division by 0
        [Load(V(2), R1, 0), Alu("mov", V(1), 64), Alu("lsh", V(2), V(1))],  # shift >= 64
        [Alu("mov", V(1), 5), Store(R10, -8, V(1), 8), Store(R10, -16, V(1), 8)],   # read twice
        [Alu("mov", V(1), 5), Alu("add", V(1), 1), Store(R10, -8, V(1), 8)],        # set twice
    ]
    for body in keep:
        prog = body + [Alu("mov", R0, 0), Exit()]
        assert len(peephole(prog)) == len(prog), body


def test_a_move_back_right_after_a_move_goes():
    prog = [Load(V(1), R1, 0), Alu("mov", V(2), V(1)), Alu("mov", V(1), V(2)),
            Alu("add", V(1), V(2)), Alu("mov", R0, V(1)), Exit()]
    assert text(prog) == ["%1 = *(u64 *)(r1 +0)", "%2 = %1", "%1 += %2", "r0 = %1", "exit"]
    # not across a label (another path may come in there) nor for a 32-bit move
    for second in ([Label("j"), Alu("mov", V(1), V(2))], [Alu("mov", V(1), V(2), width=32), Label("j")]):
        prog = [Load(V(1), R1, 0), CondJump("jeq", V(1), 0, "j"), Alu("mov", V(2), V(1))] + second \
            + [Alu("add", V(1), V(2)), Alu("mov", R0, V(1)), Exit()]
        assert len([i for i in peephole(prog) if not isinstance(i, Label)]) == \
            len([i for i in prog if not isinstance(i, Label)]), second


def test_two_constant_halves_become_one_store():
    prog = [Store(R10, -16, 0x41424344, 4), Store(R10, -12, 0, 4), Alu("mov", R0, 0), Exit()]
    assert text(prog)[0] == "*(u64 *)(r10 -16) = 1094861636"
    # the other order, and a negative value whose upper half is all ones
    prog = [Store(R0, 12, -1, 4), Store(R0, 8, -2, 4), Exit()]
    assert text(prog)[0] == "*(u64 *)(r0 +8) = -2"
    keep = [
        [Store(R10, -16, 0x41424344, 4), Store(R10, -12, 1, 4)],     # needs 64 bits
        [Store(R10, -12, 5, 4), Store(R10, -8, 0, 4)],               # not one aligned u64
        [Store(R10, -16, 5, 4), Store(R0, -12, 0, 4)],               # two bases
        [Store(R10, -16, 0x80000000, 4), Store(R10, -12, 0, 4)],     # would sign-extend
    ]
    for body in keep:
        prog = body + [Alu("mov", R0, 0), Exit()]
        assert len(peephole(prog)) == len(prog), body
