"""``FlowLowering``, a mixin of ``codegen.lower.Lowering``: values computed once and used again.

A value computed where every later instruction of the list being written is reached only
through it can be kept and used again instead of computed again (a helper call, a map
value address). The code is written in order and structured: a value defined at p
dominates the instructions after p until a label is placed that a jump written before p
targets (a path that skipped p joins there). Jumps written after p come from code p
dominates; a jump back re-runs p. Each instruction list (a loop body's function, the
program) has its own record: (the list, jump targets not placed yet, kept values, labels
placed).
"""
from __future__ import annotations

from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import VReg


class FlowLowering:
    """Methods mixed into ``Lowering`` (``self`` is a ``Lowering``)."""

    def _flow(self) -> tuple:
        states = self.__dict__.setdefault("_flow_states", {})
        st = states.get(id(self.insns))
        if st is None or st[0] is not self.insns:
            st = states[id(self.insns)] = (self.insns, {}, {}, set())
        return st

    def _track_flow(self, insn: ir.Insn) -> None:
        _, pending, kept, placed = self._flow()
        if insn.__class__ is ir.Label:
            placed.add(insn.name)
            if pending.pop(insn.name, None) is not None:
                for k in [k for k, (_, before) in kept.items() if insn.name in before]:
                    del kept[k]
        elif insn.target not in placed:
            pending[insn.target] = True

    def kept_value(self, key) -> VReg | None:
        """The register of the value ``remember``ed as ``key``, if it still dominates here."""
        got = self._flow()[2].get(key)
        return got[0] if got is not None else None

    def remember(self, key, reg: VReg) -> VReg:
        """Keep ``reg`` (written here, never written again) as the value of ``key``."""
        _, pending, kept, _ = self._flow()
        kept[key] = (reg, frozenset(pending))
        return reg

    def counters_address(self) -> VReg:
        """The address of the ``counters`` array's value (loaded once where it can be kept)."""
        r = self.kept_value("counters")
        if r is None:
            r = self.vreg()
            self.emit(ir.LoadMapFd(r, "counters", 0))
            self.remember("counters", r)
        return r
