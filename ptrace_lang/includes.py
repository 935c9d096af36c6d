"""Where `#include` files are found: `-I DIR` and `--include FILE` of the command line.

The search follows the C preprocessor's: `#include "f.h"` looks in the script's directory
first, then in the `-I` directories in the order given, then in the system directories;
`#include <f.h>` skips the script's directory. `--include FILE` is included before the
program, as if the program began with `#include <FILE>` (a path with a slash is taken as is).
Every include is resolved when the program is compiled, so a missing header is a located
error naming the directories searched; the resolved paths are what the C-definition parser
reads (`resolve_all`), and they are dependencies of the compile cache.
"""
from __future__ import annotations

import os

from ptrace_lang.errors import CompileError, Span

SYSTEM_DIRS = ("/usr/local/include", "/usr/include/x86_64-linux-gnu", "/usr/include")


def search_dirs(quoted: bool, script_dir: str | None, include_dirs) -> list[str]:
    dirs = [script_dir or "."] if quoted else []
    return dirs + list(include_dirs) + [d for d in SYSTEM_DIRS if os.path.isdir(d)]


def find(name: str, quoted: bool, script_dir: str | None, include_dirs) -> tuple[str | None, list[str]]:
    """(the path of the header, the directories searched); path None when not found."""
    if os.path.isabs(name):
        return (name if os.path.isfile(name) else None), []
    dirs = search_dirs(quoted, script_dir, include_dirs)
    for d in dirs:
        path = os.path.join(d, name)
        if os.path.isfile(path):
            return path, dirs
    return None, dirs


def parse_directive(text: str) -> tuple[str, bool] | None:
    """`#include "a.h"` -> ("a.h", True); `#include <a.h>` -> ("a.h", False); None otherwise."""
    t = text.strip()
    if not t.startswith("#"):
        return None
    t = t[1:].lstrip()
    if not t.startswith("include"):
        return None
    t = t[len("include"):].strip()
    if len(t) >= 2 and t[0] == '"' and '"' in t[1:]:
        return t[1:t.index('"', 1)], True
    if len(t) >= 2 and t[0] == "<" and ">" in t:
        return t[1:t.index(">")], False
    return None


def resolve_all(program, filename: str, include_dirs, includes) -> list[str]:
    """The paths of the `--include` files and of the program's `#include` directives, in
    include order; a header that is not found is a (located) error."""
    script_dir = os.path.dirname(os.path.abspath(filename)) if filename not in ("stdin", "-") else None
    out = []
    for name in includes:
        quoted = "/" in name       # a path as given (relative to here), else searched like <name>
        path, dirs = find(name, quoted, os.getcwd() if quoted else None, include_dirs)
        if path is None:
            raise CompileError(f"--include: file '{name}' not found",
                               Span(filename, 0, 0, 0, 0),
                               hints=["searched: " + ", ".join(dirs)] if dirs else None)
        out.append(path)
    for cdef in getattr(program, "c_definitions", ()):
        if cdef.kind != "include":
            continue
        parsed = parse_directive(cdef.text)
        if parsed is None:
            raise CompileError("#include expects \"FILE\" or <FILE>", cdef.span)
        name, quoted = parsed
        path, dirs = find(name, quoted, script_dir, include_dirs)
        if path is None:
            hints = ["searched: " + ", ".join(dirs)] if dirs else []
            hints.append("add a directory to the search path with -I DIR")
            raise CompileError(f"include file '{name}' not found", cdef.span, hints=hints)
        out.append(path)
    return out
