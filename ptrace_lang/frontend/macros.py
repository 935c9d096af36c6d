"""``import "file";`` and ``macro name($a, @b, c) { ... }``: resolved on the AST, before
semantic analysis.

Imports: a path is looked up relative to the importing script's directory (the current
directory for ``-e`` and stdin), then in the standard library directory (``stdlib/``, shipped as
``ptrace_lang.stdlib``); a name without an extension also tries ``.bt``. Each file is read once,
however often and from wherever it is imported; its macros, probes and map declarations join the
program (its probes after the importing script's). A config block belongs to the main script.

Macros are hygienic, as in the newest bpftrace: the body sees only what it is given.
 - ``$a``: the argument must be a scratch variable; the body uses (and may assign) the caller's.
 - ``@b``: the argument must be a map (without a key); the body uses the caller's map.
 - ``c``: any expression, inserted wherever ``c`` appears (evaluated at each use).
 - ``$x`` of the body that are not parameters are the body's own (renamed apart per expansion);
   a map that is not a parameter is an error.
A body ending in an expression without ``;`` has that value. A call is expanded where it appears:
as a statement, into a block; as a value, into a block expression (or the expression itself when
the body is just one). A macro without parameters may be used as a bare identifier.
"""
from __future__ import annotations

import os

from ptrace_lang.errors import CompileError
from ptrace_lang.frontend import ast

from ptrace_lang.frontend.ast import HYGIENE_MARK, unmangle  # noqa: F401  (macros' names)

MAX_DEPTH = 64


def resolve_imports(program: ast.Program, filename: str, stdlib: str | None = None) -> list[str]:
    """Merge every imported file (recursively, each once) into ``program``; returns their paths
    (the compile cache checks them: a changed import compiles again)."""
    if not program.imports:
        return []
    from ptrace_lang.frontend.parser import parse

    if stdlib is None:
        from ptrace_lang.resources import stdlib_dir

        stdlib = stdlib_dir()
    main = os.path.realpath(filename) if os.path.isfile(filename) else None
    seen = {main} if main else set()
    queue = [(imp, _base_dir(filename)) for imp in program.imports]
    files: list[str] = []
    while queue:
        imp, base = queue.pop(0)
        path = _find(imp.path, base, stdlib)
        if path is None:
            raise CompileError(f"Could not find the imported file '{imp.path}'", imp.span,
                               hints=["an import is looked up next to the script, then in the "
                                      f"standard library ({stdlib})"])
        real = os.path.realpath(path)
        if real in seen:
            continue
        seen.add(real)
        files.append(real)
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise CompileError(f"Could not read the imported file '{imp.path}': "
                               f"{getattr(e, 'strerror', None) or e}", imp.span) from None
        sub = parse(text, path)
        if sub.config is not None:
            raise CompileError("A config block is only allowed in the main script",
                               sub.config.span)
        program.macros.extend(sub.macros)
        program.map_decls.extend(sub.map_decls)
        program.c_definitions.extend(sub.c_definitions)
        program.probes.extend(sub.probes)
        queue.extend((i, os.path.dirname(path)) for i in sub.imports)
    program.imports = []
    return files


def _base_dir(filename: str) -> str:
    if filename in ("stdin", "-", "") or not os.path.isfile(filename):
        return os.getcwd()
    return os.path.dirname(os.path.abspath(filename))


def _find(name: str, base: str, stdlib: str) -> str | None:
    names = [name] if name.endswith(".bt") else [name, name + ".bt"]
    dirs = [""] if os.path.isabs(name) else [base, stdlib]
    for d in dirs:
        for n in names:
            p = os.path.join(d, n) if d else n
            if os.path.isfile(p):
                return p
    return None


# ---------------------------------------------------------------------------------------- macros


def expand_macros(program: ast.Program) -> None:
    """Replace every macro call in the probes by the macro's body. Macros overload by arity
    (bpftrace 0.26): ``f(a)`` and ``f(a, b)`` are two macros; a script's macro wins over a
    standard-library one of the same name and arity."""
    if not program.macros:
        return
    macros: dict[tuple, ast.MacroDef] = {}
    for m in program.macros:
        key = (m.name, len(m.params))
        if key in macros:
            first = macros[key]
            if _from_stdlib(m) != _from_stdlib(first):
                if _from_stdlib(first):
                    macros[key] = m
                continue
            raise CompileError(f"Redefinition of macro: {m.name}", m.span,
                               hints=[f"first defined at line {first.span.line}"])
        names = set()
        for p in m.params:
            if p.lstrip("$@") in names:
                raise CompileError(f"Macro '{m.name}' has two parameters named "
                                   f"'{p.lstrip('$@')}'", m.span)
            names.add(p.lstrip("$@"))
        macros[key] = m
    ex = _Expander(macros)
    for probe in program.probes:
        if probe.predicate is not None:
            probe.predicate = ex.expr(probe.predicate)
        probe.body = ex.node(probe.body)
    program.macros = []


def _from_stdlib(m: ast.MacroDef) -> bool:
    from ptrace_lang.resources import stdlib_dir

    f = m.span.file or ""
    return os.path.isabs(f) and os.path.realpath(os.path.dirname(f)) == os.path.realpath(stdlib_dir())


def signature(m: ast.MacroDef) -> str:
    return f"{m.name}({', '.join(m.params)})"


class _Expander:
    def __init__(self, macros: dict[tuple, ast.MacroDef]) -> None:
        self.macros = macros                 # (name, arity) -> definition
        self.names = {name for name, _ in macros}
        self.count = 0
        self.stack: list[tuple] = []

    # -- generic traversal: returns the (possibly replaced) node
    def node(self, n):
        if isinstance(n, ast.ExprStmt):
            call = self._macro_call(n.expr)
            if call is not None:
                return self.expand(call, statement=True)
        if isinstance(n, ast.Expr):
            return self.expr(n)
        return self._children(n)

    def expr(self, e: ast.Expr) -> ast.Expr:
        call = self._macro_call(e)
        if call is not None:
            return self.expand(call, statement=False)
        return self._children(e)

    def _children(self, n: ast.Node) -> ast.Node:
        """Expand the macros in ``n``'s child nodes, in place."""
        for name in n.__dataclass_fields__:
            if name in ("span", "type"):
                continue
            v = getattr(n, name)
            if isinstance(v, ast.Node):
                setattr(n, name, self.node(v))
            elif isinstance(v, list):
                setattr(n, name, [self.node(x) if isinstance(x, ast.Node) else x for x in v])
        return n

    def _macro_call(self, e) -> ast.Call | None:
        if isinstance(e, ast.Call) and e.name in self.names:
            return e
        if isinstance(e, ast.Builtin) and (e.name, 0) in self.macros:
            return ast.Call(e.name, [], span=e.span)
        return None

    # -- one expansion
    def expand(self, call: ast.Call, statement: bool):
        key = (call.name, len(call.args))
        m = self.macros.get(key)
        if m is None:
            defs = sorted((d for (n, _), d in self.macros.items() if n == call.name),
                          key=lambda d: len(d.params))
            counts = " or ".join(str(len(d.params)) for d in defs)
            plural = "s" if counts != "1" else ""
            raise CompileError(f"Macro '{call.name}' takes {counts} argument{plural} "
                               f"({len(call.args)} provided)", call.span,
                               hints=[signature(d) for d in defs])
        if key in self.stack:
            chain = " -> ".join(n for n, _ in self.stack[self.stack.index(key):] + [key])
            raise CompileError(f"Recursive macro call: {chain}", call.span)
        if len(self.stack) >= MAX_DEPTH:
            raise CompileError(f"Macro expansion nested more than {MAX_DEPTH} deep", call.span)
        args = [self.expr(a) for a in call.args]
        var_map: dict[str, str] = {}
        map_map: dict[str, str] = {}
        exprs: dict[str, ast.Expr] = {}
        for p, a in zip(m.params, args):
            if p.startswith("$"):
                if not isinstance(a, ast.Var):
                    raise CompileError(f"Macro '{m.name}' expects a scratch variable for "
                                       f"parameter {p}", a.span, hints=[signature(m)])
                var_map[p[1:]] = a.name
            elif p.startswith("@"):
                if not isinstance(a, ast.MapRef) or a.keys is not None:
                    raise CompileError(f"Macro '{m.name}' expects a map for parameter {p}",
                                       a.span, hints=[signature(m)])
                map_map[p[1:]] = a.name
            else:
                exprs[p] = a
        self.count += 1
        suffix = f"{HYGIENE_MARK}{m.name}{HYGIENE_MARK}{self.count}"
        value = getattr(m, "value", None)
        import copy     # (only scripts with macros pay for it)

        body = copy.deepcopy(value if value is not None else m.body)
        self._rename(body, m, var_map, map_map, suffix)
        _expanded_from(body, call.span)
        body = self._substitute(body, exprs)
        self.stack.append(key)
        try:
            if isinstance(body, ast.BlockExpr):
                stmts = [self.node(s) for s in body.stmts]
                val = self.expr(body.value)
                if statement:
                    return ast.Block(stmts + [ast.ExprStmt(val, span=val.span)], span=call.span)
                if not stmts:
                    return val
                return ast.BlockExpr(stmts, val, span=call.span)
            body = self.node(body)
            if not statement:
                raise CompileError(f"Macro '{m.name}' has no value: its body does not end in "
                                   "an expression without ';'", call.span, hints=[signature(m)])
            return ast.Block(body.stmts, span=call.span)
        finally:
            self.stack.pop()

    def _rename(self, body, m: ast.MacroDef, var_map, map_map, suffix) -> None:
        for n in ast.walk(body):
            if isinstance(n, ast.Var):
                n.name = var_map.get(n.name, n.name + suffix)
            elif isinstance(n, ast.MapRef):
                if n.name not in map_map:
                    raise CompileError(f"Macro '{m.name}' uses the map @{n.name}, which is not "
                                       "one of its parameters", n.span,
                                       hints=[f"pass it in: macro {m.name}(..., @{n.name})"])
                n.name = map_map[n.name]

    def _substitute(self, n, exprs: dict[str, ast.Expr]):
        if not exprs:
            return n
        if isinstance(n, ast.Builtin) and n.name in exprs:
            import copy

            return copy.deepcopy(exprs[n.name])
        for name in n.__dataclass_fields__:
            if name in ("span", "type"):
                continue
            v = getattr(n, name)
            if isinstance(v, ast.Node):
                setattr(n, name, self._substitute(v, exprs))
            elif isinstance(v, list):
                setattr(n, name, [self._substitute(x, exprs) if isinstance(x, ast.Node) else x
                                  for x in v])
        return n


def _expanded_from(body, call_span) -> None:
    """The body's nodes remember the call they were expanded from, and the calls that one
    came from (``Span.origin``, nearest first): diagnostics in them say each."""
    from ptrace_lang.records import replace

    chain = (replace(call_span, origin=()),) + call_span.origin
    for n in ast.walk(body):
        if n.span.line:         # (not NO_SPAN, which stays the one "nowhere")
            n.span = replace(n.span, origin=chain + n.span.origin)


def stdlib_index(stdlib: str) -> dict[str, str]:
    """Every macro the standard library defines: name -> its file."""
    import re

    index: dict[str, str] = {}
    try:
        files = sorted(f for f in os.listdir(stdlib) if f.endswith(".bt"))
    except OSError:
        return index
    for f in files:
        try:
            with open(os.path.join(stdlib, f), encoding="utf-8") as fh:
                text = fh.read()
        except OSError:
            continue
        for m in re.finditer(r"^macro\s+([A-Za-z_]\w*)\s*\(", text, re.M):
            index.setdefault(m.group(1), f)
    return index


def auto_imports(program: ast.Program, filename: str) -> list[str]:
    """The standard library is there without an import, as in the newest bpftrace: a name
    used as a call or a bare identifier that is none of the compiler's builtins nor a macro of
    the script, and that a stdlib module defines, imports that module (``errno_name(e)``,
    ``ENOENT``, ``tcp_state_name(s)`` ...)."""
    from ptrace_lang.errors import NO_SPAN
    from ptrace_lang.resources import stdlib_dir
    from ptrace_lang.sema.builtins import is_builtin

    defined = {(m.name, len(m.params)) for m in program.macros}
    wanted = set()
    for root in [*program.probes, *program.macros]:
        for n in ast.walk(root):      # (a script macro of another arity hides no stdlib one)
            if isinstance(n, ast.Call) and (n.name, len(n.args)) not in defined:
                wanted.add(n.name)
            elif isinstance(n, ast.Builtin) and (n.name, 0) not in defined:
                wanted.add(n.name)
    wanted = {w for w in wanted if not is_builtin(w)}
    if not wanted:
        return []
    stdlib = stdlib_dir()
    index = stdlib_index(stdlib)
    needed = sorted({index[w] for w in wanted if w in index})
    if not needed:
        return []
    program.imports = [ast.Import(os.path.join(stdlib, f), span=NO_SPAN) for f in needed]
    return resolve_imports(program, filename)
