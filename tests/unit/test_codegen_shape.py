"""The shape of codegen/, checked on the source: helpers are called by their names from
bpf.uapi (no helper number written out), the modules import one another without a cycle (the
imports inside functions included), and no module but the register allocator grows past ~800
lines."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "ptrace_lang"
CODEGEN = PKG / "codegen"
MAX_LINES = 800
BIG_ON_PURPOSE: set[str] = set()      # (regalloc.py was, before its split)
# methods of Lowering whose first argument is a helper number
HELPER_CALLS = {"call", "checked_read"}


def _modules() -> list[Path]:
    return sorted(CODEGEN.glob("*.py"))


def _int_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        node = node.operand
    return isinstance(node, ast.Constant) and type(node.value) is int


def helper_number_literals(path: Path) -> list[str]:
    """Helper calls given a number, and helper numbers defined outside bpf.uapi."""
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args:
            f = node.func
            helper_call = f.attr in HELPER_CALLS or (
                f.attr == "Call" and isinstance(f.value, ast.Name) and f.value.id == "ir")
            if helper_call and _int_literal(node.args[0]):
                out.append(f"{path.name}:{node.lineno}: {f.attr}() of a helper number")
        elif isinstance(node, ast.Assign):
            names = [n for t in node.targets
                     for n in (t.elts if isinstance(t, ast.Tuple) else [t])
                     if isinstance(n, ast.Name)]
            values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
            if any(n.id.startswith(("H_", "FN_")) for n in names) \
                    and any(_int_literal(v) for v in values):
                out.append(f"{path.name}:{node.lineno}: a helper number defined here")
    return out


def codegen_imports(path: Path) -> set[str]:
    """The codegen modules ``path`` imports, anywhere in it (function bodies too)."""
    tree = ast.parse(path.read_text(), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = "ptrace_lang.codegen" if node.level == 1 else "ptrace_lang"
                base = base + ("." + node.module if node.module else "")
            else:
                base = node.module or ""
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            parts = n.split(".")
            if parts[:2] == ["ptrace_lang", "codegen"] and len(parts) > 2 \
                    and (CODEGEN / (parts[2] + ".py")).exists():
                out.add(parts[2])
    out.discard(path.stem)
    return out


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}     # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_helpers_are_called_by_name():
    found = [v for p in _modules() for v in helper_number_literals(p)]
    assert found == [], "\n".join(found)


def test_the_helper_check_sees_numbers(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("H_LOOKUP, FN_X = 1, 2\n"
                   "class L:\n"
                   "    def f(self):\n"
                   "        self.call(5)\n"
                   "        self.checked_read(113, 0, 0, 8, 0)\n"
                   "        self.emit(ir.Call(14, 0))\n"
                   "        self.call(FN_KTIME_GET_NS)\n")
    assert [v.split(": ", 1)[1] for v in helper_number_literals(bad)] == [
        "a helper number defined here", "call() of a helper number",
        "checked_read() of a helper number", "Call() of a helper number"]


def test_no_import_cycle_among_codegen_modules():
    graph = {p.stem: codegen_imports(p) for p in _modules()}
    assert graph["lower"] >= {"lower_maps", "lower_events", "lower_loops"}
    cycle = import_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_check_sees_a_cycle():
    assert import_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert import_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_codegen_modules_stay_small():
    big = [f"{p.name}: {n} lines" for p in _modules()
           if p.name not in BIG_ON_PURPOSE and (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert big == [], "\n".join(big)


def test_each_lowering_method_is_defined_once():
    # a method in two mixins would be chosen by the order of Lowering's bases (ntop was)
    from ptrace_lang.codegen.lower import Lowering

    where: dict[str, list[str]] = {}
    for cls in Lowering.__mro__[:-1]:
        for name in vars(cls):
            if not name.startswith("__"):
                where.setdefault(name, []).append(cls.__name__)
    twice = {n: c for n, c in where.items() if len(c) > 1}
    assert twice == {}, twice


def test_uapi_names_the_helpers_lowering_calls():
    from ptrace_lang.bpf import uapi
    from ptrace_lang.bpf.helpers import HELPER_IDS

    assert (uapi.FN_MAP_LOOKUP_ELEM, uapi.FN_KTIME_GET_NS, uapi.FN_RINGBUF_RESERVE) == (1, 5, 131)
    assert all(getattr(uapi, "FN_" + n.upper()) == i for n, i in HELPER_IDS.items())
    # bpf/uapi.py is pure data made from bpf/helpers.py only
    tree = ast.parse((PKG / "bpf" / "uapi.py").read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"__future__", "ptrace_lang.bpf.helpers"}, imported
