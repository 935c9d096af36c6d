"""The compiler is a pure function of (script, options, target facts): no module of frontend/,
sema/, codegen/, bpf/ (nor spec.py, target.py, tpformat.py) imports the kernel or runtime layers
or ctypes, or looks at the host through os.uname or the environment. Lookups in the machine go
through target.Host, which the driver supplies. Checked on the source, every import included
(those inside functions too)."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "ptrace_lang"
PURE = [*(PKG / d for d in ("frontend", "sema", "codegen", "bpf")),
        PKG / "spec.py", PKG / "target.py", PKG / "tpformat.py", PKG / "fmtspec.py"]
FORBIDDEN_MODULES = ("ptrace_lang.kernel", "ptrace_lang.runtime", "ptrace_lang.providers",
                     "ctypes", "_ctypes")
FORBIDDEN_ATTRS = {("os", "uname"), ("os", "environ"), ("os", "getenv"), ("os", "putenv")}


def _modules() -> list[Path]:
    out: list[Path] = []
    for p in PURE:
        out.extend(sorted(p.rglob("*.py")) if p.is_dir() else [p])
    return out


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)[:-node.level]
    return ".".join(parts + ([node.module] if node.module else []))


def violations(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(path, node)
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and (node.value.id, node.attr) in FORBIDDEN_ATTRS:
            out.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: os.{node.attr}")
        for n in names:
            if n.startswith(FORBIDDEN_MODULES) and (n in FORBIDDEN_MODULES
                                                    or n.startswith(tuple(m + "." for m in FORBIDDEN_MODULES))):
                out.append(f"{path.relative_to(PKG.parent)}:{node.lineno}: imports {n}")
                break
    return out


def test_the_compiler_modules_look_at_no_host():
    found = [v for p in _modules() for v in violations(p)]
    assert found == [], "\n".join(found)


def test_the_check_sees_what_it_forbids(tmp_path):
    # the check itself: each forbidden form is caught, in a function body too
    bad = PKG / "sema" / "_layering_probe.py"
    try:
        bad.write_text("import os\n"
                       "def f():\n"
                       "    from ptrace_lang.kernel import tracefs\n"
                       "    from ..runtime.printf import parse_format\n"
                       "    import ctypes\n"
                       "    return os.uname(), os.environ\n")
        found = violations(bad)
    finally:
        bad.unlink()
    assert sorted(v.split(": ", 1)[1] for v in found) == [
        "imports ctypes", "imports ptrace_lang.kernel", "imports ptrace_lang.runtime.printf",
        "os.environ", "os.uname"], found


def test_a_tracepoint_script_compiles_for_a_recorded_machine_with_no_kernel_module():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "sys.path.insert(0, %r)\n"
        "from recorded_machine import recorded_machine\n"
        "from ptrace_lang.driver import Options, compile_script\n"
        "c = compile_script('tracepoint:syscalls:sys_enter_openat { @[comm] = count(); "
        "printf(\"%%s\\\\n\", str(args.filename)); } interval:s:1 { print(@); }', 'stdin', "
        "Options(stages=('ast', 'ir', 'asm')), machine=recorded_machine())\n"
        "assert c.spec.programs and c.dumps['asm']\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ptrace_lang.kernel', "
        "'ptrace_lang.runtime', 'ctypes', '_ctypes'))))\n" % str(Path(__file__).parent))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
