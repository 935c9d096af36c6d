"""Every entry of the builtins registry (sema.builtins) has its analysis, its lowering and, for
values user space turns into text, its formatter: a half-added function fails here."""
from __future__ import annotations

import inspect
import os

import pytest

from ptrace_lang.codegen.lower import Lowering
from ptrace_lang.runtime.formatters import FORMATTERS   # the complete table (uvalues is the leaf)
from ptrace_lang.sema import builtins
from ptrace_lang.sema.analyze import AGGREGATIONS, COMMON_BUILTINS, _Analyzer

ENTRIES = sorted(builtins.BUILTINS)


def stem(name: str) -> str:
    return name[:-1] if name.endswith("N") else name     # argN: the "arg" prefix is tested


def has_analysis(b) -> bool:
    if b.kind == "aggregation":
        return b.name in AGGREGATIONS
    if b.later:
        return True          # refused with "not supported yet" by the registry itself
    if hasattr(_Analyzer, "fn_" + b.name) or hasattr(_Analyzer, "builtin_" + b.name):
        return True
    if b.kind == "function":
        return False
    if b.name in COMMON_BUILTINS:
        return True
    # variables typed inside _Analyzer.builtin / c_builtin (cpid, args, ctx, argN, retval...)
    src = inspect.getsource(_Analyzer.builtin) + inspect.getsource(_Analyzer.c_builtin)
    return f'"{stem(b.name)}"' in src


def has_lowering(b) -> bool:
    if b.later:
        return True
    for prefix in ("call_", "into_", "stmt_", "builtin_"):
        if hasattr(Lowering, prefix + b.name):
            return True
    if not b.lower:
        return False
    method = getattr(Lowering, b.lower, None)
    if method is None:
        return False
    if b.kind == "aggregation" or b.lower == "args_field":
        return True          # by the value's type (AggT, ArgsT), not by name
    return f'"{stem(b.name)}"' in inspect.getsource(method)


@pytest.mark.parametrize("name", ENTRIES)
def test_entry_is_complete(name):
    b = builtins.BUILTINS[name]
    assert b.kind in ("variable", "function", "both", "aggregation"), name
    assert b.later or b.sig, f"{name}: no signature"
    assert b.needs in ("", "pt_regs", "user_space", "builtins"), name
    assert has_analysis(b), f"{name}: no analysis in sema (fn_{name} / builtin_{name})"
    assert has_lowering(b), f"{name}: no lowering in codegen (call_/into_/stmt_/builtin_{name})"
    if b.formatter:
        assert b.formatter in FORMATTERS, f"{name}: no formatter '{b.formatter}' in FORMATTERS"


def test_a_half_added_function_fails(monkeypatch):
    fake = builtins.Builtin("frobnicate", "function", "frobnicate(int x)")
    assert not has_lowering(fake)
    monkeypatch.setattr(_Analyzer, "fn_frobnicate", lambda self, e: None, raising=False)
    assert has_analysis(fake)
    assert not has_lowering(fake)
    with_formatter = builtins.Builtin("frob_name", "function", "frob_name(int x)",
                                      formatter="frob_name")
    assert with_formatter.formatter not in FORMATTERS


def test_analyzer_methods_are_registered():
    """The other way round: every fn_/builtin_ of sema names an entry."""
    names = {n.split("_", 1)[1] for n in dir(_Analyzer) if n.startswith(("fn_", "builtin_"))}
    assert names <= set(builtins.BUILTINS)
    assert set(AGGREGATIONS) == builtins.AGGREGATIONS
    assert set(COMMON_BUILTINS) <= builtins.VARIABLES


def test_user_values_name_their_formatter():
    from ptrace_lang.sema.fn_funcs import MACADDR, STRERROR, SYSCALL_NAME, USERNAME
    from ptrace_lang.sema.fn_symbols import KSYM, USYM

    for name, t in (("macaddr", MACADDR), ("strerror", STRERROR),
                    ("syscall_name", SYSCALL_NAME), ("username", USERNAME), ("ksym", KSYM),
                    ("usym", USYM)):
        assert builtins.BUILTINS[name].formatter == t.kind


def test_reg_signature_lists_the_registers():
    from ptrace_lang.sema.fn_symbols import PT_REGS

    assert builtins.signature("reg") == "reg(const char *name): " + " ".join(PT_REGS)


def test_parser_and_repl_words():
    from ptrace_lang.frontend.parser import BUILTIN_VARIABLES
    from ptrace_lang.repl import BUILTINS, FUNCTIONS

    assert BUILTIN_VARIABLES == builtins.VARIABLES
    for w in ("ppid", "curtask", "username", "jiffies", "numaid", "ncpus", "usermode", "cpid"):
        assert w in BUILTINS
    for w in ("strftime", "ntop", "kstack", "has_key", "count", "printf"):
        assert w in FUNCTIONS


def test_registry_imports_nothing_heavy():
    import subprocess
    import sys

    code = ("import sys; before = set(sys.modules); import ptrace_lang.sema.builtins; "
            "print(sorted(set(sys.modules) - before))")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                         check=True, cwd=root).stdout
    for heavy in ("'re'", "'typing'", "'dataclasses'", "'enum'"):
        assert heavy not in out
