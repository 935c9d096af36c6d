"""The allocator's analysis shortcuts give what the plain analysis gives: the _Function that
dead-code removal derives from the decoded one (and the liveness it hands on) equals a fresh
_Function of the remaining instructions, on random programs and on real ones."""
from __future__ import annotations

import random

import pytest

from test_regalloc import _Gen

from ptrace_lang.codegen import regalloc as R
from ptrace_lang.codegen.emit import peephole
from ptrace_lang.codegen.ir import R1, Alu, Call, CondJump, Exit, Jump, Label, Load, VReg


def _same_as_fresh(prog) -> bool:
    """Whether dead-code removal's _Function (and liveness, when it keeps one) is a fresh
    one's; returns whether the liveness was kept."""
    insns, fn = R._eliminate_dead_code(peephole(R._checked(prog)))
    fresh = R._Function(insns)
    for name in ("vregs", "uses", "defs", "moves", "kinds", "ctl", "blocks", "succ", "depth",
                 "labels"):
        assert getattr(fn, name) == getattr(fresh, name), name
    kept = fn._live_out is not None
    assert fn.liveness() == fresh.liveness()
    assert fn.live_after() == fresh.live_after()
    return kept


@pytest.mark.parametrize("seed", range(60))
def test_dead_code_removal_function_is_a_fresh_one(seed):
    rng = random.Random(seed)
    _same_as_fresh(_Gen(rng, 16).program(rng.randrange(5, 60)))


def test_kept_liveness_after_removing_dead_code():
    # "%3 >>= 1" is dead (%3 is not read after it, as the log2 steps of a hist), the rest
    # stays, blocks and vreg numbers too: the liveness found while removing it is kept, and
    # it is the program's own
    v = [VReg(i) for i in range(5)]
    prog = [Alu("mov", v[0], R1),
            Load(v[1], v[0], 16),
            Alu("mov", v[2], v[1]),
            Alu("mov", v[3], v[1]),
            CondJump("jle", v[3], 1, "skip"),
            Alu("rsh", v[3], 1),
            Alu("add", v[2], 1),
            Label("skip"),
            Call(5, 0),
            Alu("mov", v[4], v[2]),
            CondJump("jne", v[4], 3, "skip2"),
            Alu("add", v[4], 2),
            Jump("out"),
            Label("skip2"),
            Alu("add", v[4], 7),
            Label("out"),
            Alu("mov", R1, v[4]),
            Exit()]
    before = peephole(R._checked(prog))
    insns, _ = R._eliminate_dead_code(before)
    assert len(insns) == len(before) - 1
    assert _same_as_fresh(prog)
