"""An LLVM module -> BPF instructions and map relocations, through an ELF object.

LLVM optimizes the module (O2, the new pass manager) and its BPF target emits an ELF object
(``bpfel``, CPU v4 where the kernel has its instructions (6.6+: sdiv, sign-extending loads),
else v3). pyelftools reads the object back: the program section's bytes are decoded by
``bpf.insn.decode``, and each R_BPF_64_64 relocation of the section names the global an
ld_imm64 loads: ``map.<name>`` becomes a BPF_PSEUDO_MAP_FD load of map <name>,
``mapval.<name>.<off>`` a BPF_PSEUDO_MAP_VALUE load (the address of the map's value + off),
both listed in ``map_relocs`` as the direct backend lists them (instruction index, map name),
so the loader patches both alike. A relocation against a function of the program's section (a
callback's address: against the section's symbol, the function's byte offset in the
instruction) becomes a BPF_PSEUDO_FUNC load (imm: the function's start relative to the next
instruction); the section's other functions are returned as ``(start, name, 4)`` for the
driver's func_info (the callbacks of bpf_for_each_map_elem take 4 arguments).
"""
from __future__ import annotations

import io

from ptrace_lang.bpf import opcodes as op
from ptrace_lang.bpf.insn import LD_IMM64, Instruction, decode
from ptrace_lang.errors import CompileError, Span
from ptrace_lang.llvmbackend.debug import line_table
from ptrace_lang.llvmbackend.irbase import FUNCTION, SECTION

R_BPF_64_64 = 1
_MACHINE: dict = {}


def target_machine(cpu: str):
    import llvmlite.binding as llvm

    tm = _MACHINE.get(cpu)
    if tm is None:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        tm = _MACHINE[cpu] = llvm.Target.from_triple("bpfel").create_target_machine(
            cpu=cpu, opt=2, reloc="static", codemodel="default")
    return tm


def optimize(module_text: str, cpu: str):
    """The module parsed, verified and optimized at O2; returns the llvmlite ModuleRef."""
    import llvmlite.binding as llvm

    tm = target_machine(cpu)
    mod = llvm.parse_assembly(module_text)
    mod.triple = "bpfel"
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=2))
    pb.getModulePassManager().run(mod, pb)
    return mod


def emit_object(mod, cpu: str, span: Span) -> bytes:
    try:
        return target_machine(cpu).emit_object(mod)
    except RuntimeError as e:        # e.g. "Looks like the BPF stack limit is exceeded"
        raise CompileError(f"LLVM could not compile the probe: {str(e).strip()}", span) from None


def read_object(obj: bytes, span: Span) -> tuple[list[Instruction], list[tuple[int, str]], list,
                                                 list]:
    """The program's instructions (map loads rewritten for the loader), its map relocations,
    its callbacks ``(first instruction, name, argument count)`` and its line table rows
    (debug.line_table)."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection

    elf = ELFFile(io.BytesIO(obj))
    index = next((i for i, s in enumerate(elf.iter_sections()) if s.name == SECTION), None)
    sec = elf.get_section(index) if index is not None else None
    if sec is None:
        raise CompileError("LLVM produced no program section", span)
    insns = decode(sec.data())
    relocs: list[tuple[int, str]] = []
    for rs in elf.iter_sections():
        if not isinstance(rs, RelocationSection) or rs["sh_info"] != index:
            continue
        symtab = elf.get_section(rs["sh_link"])
        for r in rs.iter_relocations():
            sym = symtab.get_symbol(r["r_info_sym"])
            name = sym.name
            i = r["r_offset"] // 8
            if r["r_info_type"] != R_BPF_64_64 or not insns[i].is_ld_imm64:
                raise CompileError(f"LLVM emitted a relocation the loader cannot resolve "
                                   f"(type {r['r_info_type']} against '{name}')", span)
            first, second = insns[i], insns[i + 1]
            if sym["st_shndx"] == index:     # a function of the program: a callback's address
                target = (sym["st_value"] + (first.imm & 0xFFFFFFFF)) // 8
                first.src, first.imm, second.imm = op.BPF_PSEUDO_FUNC, target - i - 1, 0
            elif name.startswith("map."):
                relocs.append((i, name[4:]))
                first.src, first.imm, second.imm = op.BPF_PSEUDO_MAP_FD, 0, 0
            elif name.startswith("mapval."):
                mname, _, off = name[len("mapval."):].rpartition(".")
                relocs.append((i, mname))
                # the addend LLVM left in the instruction is added to the value's offset
                first.src, second.imm = op.BPF_PSEUDO_MAP_VALUE, int(off) + first.imm
                first.imm = 0
            else:
                raise CompileError(f"LLVM referenced '{name}', which is not a map", span)
    for i, ins in enumerate(insns):
        if ins.opcode == op.BPF_JMP | op.BPF_CALL and ins.src != 0:
            raise CompileError("LLVM emitted a call to a function of its own (a library "
                               "routine for an operation BPF lacks)", span)
    relocs.sort()
    symtab = elf.get_section_by_name(".symtab")
    functions = sorted((s["st_value"] // 8, s.name, 4) for s in symtab.iter_symbols()
                       if s["st_shndx"] == index and s["st_info"]["type"] == "STT_FUNC"
                       and s.name != FUNCTION)
    if functions and functions[0][0] == 0:
        raise CompileError(f"LLVM did not put {FUNCTION} first in its section", span)
    return insns, relocs, functions, line_table(elf, index)


def compile_module(module, span: Span, cpu: str, dumps: dict | None = None):
    """``module`` (llvmlite.ir) -> (instructions, map relocations, callbacks, line table).
    ``dumps`` gets the optimized IR under "llvm-ir" when given."""
    mod = optimize(str(module), cpu)
    if dumps is not None:
        dumps["llvm-ir"] = str(mod)
    insns, relocs, functions, lines = read_object(emit_object(mod, cpu, span), span)
    if not insns or insns[-1].opcode != op.BPF_JMP | op.BPF_EXIT:
        if not any(i.opcode == op.BPF_JMP | op.BPF_EXIT for i in insns):
            raise CompileError(f"LLVM produced no exit in {FUNCTION}", span)
    return insns, relocs, functions, lines


__all__ = ["compile_module", "read_object", "LD_IMM64"]
