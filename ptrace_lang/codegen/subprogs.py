"""Linking a program made of several functions: the probe's code, then each callback
(``codegen.lower_loops``), each register-allocated and encoded on its own, concatenated, with
the ``ld_imm64`` of every callback address (BPF_PSEUDO_FUNC) pointing at its function.

The verifier gives every function its own frame; the frames of a chain of calls (probe ->
loop body -> loop inside it) share BPF's 512 bytes, each rounded up to 32 bytes.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

from ptrace_lang.errors import CompileError, Span

STACK_LIMIT = 512


@dataclass
class Linked:
    insns: list                          # bpf.insn.Instruction
    spans: list
    map_relocs: list
    functions: list = field(default_factory=list)   # (first insn, name, nargs) per subprogram
    depth: int = 0                       # the deepest chain of frames, in bytes


def _round(n: int) -> int:
    return (max(n, 1) + 31) // 32 * 32


def link(low, insns: list, span: Span) -> Linked:
    """Allocate registers, encode and link the probe's IR ``insns`` and ``low.subprogs``."""
    from ptrace_lang.bpf.insn import Instruction
    from ptrace_lang.codegen.emit import emit
    from ptrace_lang.codegen.regalloc import allocate_registers

    subs = getattr(low, "subprogs", None) or []
    funcs = [("main", insns, low.frame, 1, -1)] + [
        (sb.name, sb.insns, sb.frame, sb.nargs, sb.parent + 1) for sb in subs]
    out: list = []
    spans: list = []
    relocs: list = []
    func_relocs: list = []
    starts: dict[str, int] = {}
    functions = []
    chain = []
    for name, code, frame, nargs, parent in funcs:
        allocated, depth = allocate_registers(code, frame.max_depth)
        total = _round(depth) + (chain[parent] if parent >= 0 else 0)
        chain.append(total)
        if total > STACK_LIMIT:
            where = frame.deepest_span if frame.deepest_span.line else span
            what = "The probe" if parent < 0 else "The probe with its loop bodies"
            raise CompileError(f"{what} needs {total} bytes of stack, more than BPF's 512",
                               where, hints=["use shorter strings (config max_strlen) or fewer "
                                             "string values in one statement"])
        em = emit(allocated)
        base = len(out)
        starts[name] = base
        if parent >= 0:
            functions.append((base, name, nargs))
        out.extend(em.insns)
        spans.extend(em.spans)
        relocs.extend((base + i, m) for i, m in em.map_relocs)
        func_relocs.extend((base + i, f) for i, f in em.func_relocs)
    for i, f in func_relocs:
        ins = out[i]
        out[i] = Instruction(ins.opcode, ins.dst, ins.src, ins.off, starts[f] - (i + 1))
    return Linked(out, spans, relocs, functions, max(chain))
