"""Statement spans through LLVM's debug info, so that an instruction of an llvm-built program
names the script statement it came from (a verifier rejection, ``-d asm``), as the direct
backend's spans do.

Each statement the lowering enters gets a DILocation whose *line is the statement's index* in
``DebugInfo.spans`` (1-based; column 1): the index, not the script line, because a probe's
statements may come from several files (imports, macros). LLVM carries the locations through
its optimizations into the object's DWARF line table (``.debug_line``), which ``line_table``
reads back with pyelftools; ``spans_of`` turns it into one span per instruction. An
instruction LLVM left without a location gets the probe's span.
"""
from __future__ import annotations

import bisect

from llvmlite import ir

from ptrace_lang.errors import Span

I32 = ir.IntType(32)


class DebugInfo:
    def __init__(self, module: ir.Module, filename: str) -> None:
        self.module = module
        self.spans: list[Span] = []
        self.file = module.add_debug_info("DIFile", {"filename": filename or "script",
                                                     "directory": ""})
        self.unit = module.add_debug_info("DICompileUnit", {
            "language": ir.DIToken("DW_LANG_C99"), "file": self.file, "producer": "ptrace-lang",
            "isOptimized": True, "runtimeVersion": 0,
            "emissionKind": ir.DIToken("LineTablesOnly")}, is_distinct=True)
        self.fn_type = module.add_debug_info("DISubroutineType",
                                             {"types": module.add_metadata([])})
        module.add_named_metadata("llvm.dbg.cu", self.unit)
        for key, name, value in ((2, "Debug Info Version", 3), (7, "Dwarf Version", 4)):
            module.add_named_metadata("llvm.module.flags", module.add_metadata(
                [ir.Constant(I32, key), name, ir.Constant(I32, value)]))

    def subprogram(self, fn: ir.Function):
        sp = self.module.add_debug_info("DISubprogram", {
            "name": fn.name, "file": self.file, "line": 0, "type": self.fn_type,
            "unit": self.unit, "scopeLine": 0,
            "spFlags": ir.DIToken("DISPFlagDefinition | DISPFlagOptimized")}, is_distinct=True)
        fn.set_metadata("dbg", sp)
        return sp

    def location(self, scope, span: Span):
        """The location standing for ``span`` (a new index in ``spans``)."""
        self.spans.append(span)
        return self.module.add_debug_info("DILocation", {"line": len(self.spans), "column": 1,
                                                         "scope": scope})


def line_table(elf, section_index: int) -> list[tuple[int, int]]:
    """(byte offset in the program's section, line) rows of the object's line table, sorted;
    addresses are read unrelocated: LLVM's BPF relocations there are against the section's
    symbol (value 0) with the offset in place."""
    if not elf.has_dwarf_info():
        return []
    dwarf = elf.get_dwarf_info(relocate_dwarf_sections=False)
    rows = []
    for cu in dwarf.iter_CUs():
        for entry in dwarf.line_program_for_CU(cu).get_entries():
            st = entry.state
            if st is not None and not st.end_sequence:
                rows.append((st.address, st.line))
    return sorted(rows)


def spans_of(n: int, rows: list[tuple[int, int]], spans: list[Span], default: Span) -> list:
    """One span per instruction: the row at or before its offset."""
    addrs = [a for a, _ in rows]
    out = []
    for i in range(n):
        k = bisect.bisect_right(addrs, 8 * i) - 1
        line = rows[k][1] if k >= 0 else 0
        out.append(spans[line - 1] if 0 < line <= len(spans) else default)
    return out
