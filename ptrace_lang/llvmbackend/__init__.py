"""A second backend: the typed AST lowered to LLVM IR (llvmlite.ir), compiled by LLVM's BPF
target into an ELF object, and read back (pyelftools) into the same ``ProgramSpec`` the direct
backend makes (instructions, map relocations, spans). It exists as a cross-check of the direct
backend (codegen/): both compile from sema's output into one ObjectSpec contract, so the
loader, attacher and runtime are shared and their outputs can be compared.

    lower.py    typed probe -> an LLVM module with one function in section ``ptrace/prog``
                (mixins: strings, cvalues, funcs, flow, loops, aggs, symbols; irbase: types)
    debug.py    statement spans as LLVM debug locations, read back from the line table
    compile.py  module -> optimized (O2) -> BPF ELF object -> instructions, relocations,
                callbacks (map loops) and the line table

Only ``driver.compile_group`` imports this package (``Options.backend == "llvm"``): the default
path never imports llvmlite. Constructs the lowering does not know raise a located
CompileError "<construct> is not supported by the llvm backend".
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError, Span


def unsupported(what: str, span: Span) -> CompileError:
    return CompileError(f"{what} is not supported by the llvm backend", span,
                        ["compile it with the default backend (without --backend llvm)"])


def available() -> str | None:
    """None when llvmlite (with its BPF target) can be used, else why not."""
    try:
        import llvmlite.binding as llvm
    except ImportError as e:
        return f"llvmlite is not installed ({e}); pip install 'ptrace-lang[llvm]'"
    try:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
        llvm.Target.from_triple("bpfel")
    except RuntimeError as e:
        return f"LLVM has no BPF target: {e}"
    return None
