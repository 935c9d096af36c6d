"""Where `#include` files are found: `-I DIR` and `--include FILE` of the command line.

The search follows the C preprocessor's: `#include "f.h"` looks in the script's directory
first, then in the `-I` directories in the order given, then in the system directories;
`#include <f.h>` skips the script's directory. `--include FILE` is included before the
program, as if the program began with `#include <FILE>` (a path with a slash is taken as is).

A header found in the script's directory, a `-I` directory or given by `--include` is the
user's: its C definitions (`#define`, struct/union/enum, typedef) are read in place of the
`#include` line (`expand_includes`, nested includes too). System and kernel headers
(`<linux/sched.h>`, `<net/sock.h>`) stay `#include` directives for sema.cdefs: the kernel's
types come from BTF, and such a header need not be installed. The headers read are
dependencies of the compile cache. A `--include` that is found nowhere (and is not a header
cdefs knows) is an error.
"""
from __future__ import annotations

import os

from ptrace_lang.errors import NO_SPAN, CompileError, Span

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


def expand_includes(program, filename: str, include_dirs, includes) -> list[str]:
    """Splice the C definitions of the user's headers into ``program.c_definitions`` in place
    of their `#include` lines (``--include`` files first); return the paths read."""
    from ptrace_lang.frontend import ast

    script_dir = os.path.dirname(os.path.abspath(filename)) if filename not in ("stdin", "-") else None
    user_dirs = [os.path.abspath(d) for d in include_dirs]
    read: list[str] = []
    head: list = []
    for name in includes:
        quoted = os.path.isabs(name) or os.path.isfile(name)    # a path at hand, else <name>
        path, dirs = find(name, quoted, os.getcwd() if quoted else None, include_dirs)
        if path is None:
            from ptrace_lang.sema.cdefs import HEADER_MACROS

            if name in HEADER_MACROS:       # a kernel header cdefs knows: a directive
                head.append(ast.CDefinition("include", f"#include <{name}>",
                                            span=NO_SPAN))
                continue
            raise CompileError(f"--include: file '{name}' not found", NO_SPAN,
                               hints=["searched: " + ", ".join(dirs)] if dirs else None)
        if quoted or _is_user(path, script_dir, user_dirs):
            head.extend(_expand(_definitions_of(path, [], read), os.path.dirname(path),
                                include_dirs, user_dirs + [os.path.dirname(os.path.abspath(path))],
                                [path], read))
        else:       # a system header: a directive, as `#include <name>` in the script is
            head.append(ast.CDefinition("include", f"#include <{name}>",
                                        span=NO_SPAN))
    program.c_definitions[:] = head + _expand(program.c_definitions, script_dir, include_dirs,
                                              user_dirs, [], read)
    return read


def kernel_header_dirs() -> list[str]:
    """The running kernel's header directories that exist (as bpftrace looks for them)."""
    rel = os.uname().release
    cands = [f"/lib/modules/{rel}/build/include", f"/lib/modules/{rel}/source/include",
             f"/usr/src/linux-headers-{rel}/include", f"/usr/src/kernels/{rel}/include"]
    return [d for d in cands if os.path.isdir(d)]


def _known_system_header(name: str) -> bool:
    """A `<name>` found in no search directory is still accepted when it is a header whose
    names sema.cdefs knows (linux/sched.h, net/sock.h...) or a kernel header of the running
    kernel's header directories; any other is an error (as clang's "file not found")."""
    from ptrace_lang.sema.cdefs import HEADER_MACROS

    if name in HEADER_MACROS:
        return True
    return any(os.path.isfile(os.path.join(d, name)) for d in kernel_header_dirs())


def _is_user(path: str, script_dir: str | None, user_dirs: list[str]) -> bool:
    d = os.path.dirname(os.path.abspath(path))
    return d == script_dir or any(d == u or d.startswith(u + os.sep) for u in user_dirs)


def _expand(cdefs: list, here: str | None, include_dirs, user_dirs, stack: list, read: list) -> list:
    out = []
    for cdef in cdefs:
        parsed = parse_directive(cdef.text) if cdef.kind == "include" else None
        if parsed is None:
            out.append(cdef)
            continue
        name, quoted = parsed
        path, dirs = find(name, quoted, here, include_dirs)
        if path is None and quoted:
            hints = ["searched: " + ", ".join(dirs)] if dirs else []
            hints.append("add a directory to the search path with -I DIR")
            raise CompileError(f"include file '{name}' not found", cdef.span, hints=hints)
        if path is None and not _known_system_header(name):
            hints = ["searched: " + ", ".join(dirs + kernel_header_dirs())] if dirs else []
            hints.append("with kernel BTF the kernel's types need no header: put the #include "
                         "under #ifndef BPFTRACE_HAVE_BTF, or add a directory with -I DIR")
            raise CompileError(f"include file '{name}' not found", cdef.span, hints=hints)
        if path is None or not _is_user(path, here, user_dirs):
            out.append(cdef)        # a system or kernel header: types from BTF (sema.cdefs)
            continue
        if path in stack:
            raise CompileError(f"#include of '{name}' includes itself", cdef.span)
        out.extend(_expand(_definitions_of(path, stack, read), os.path.dirname(path),
                           include_dirs, user_dirs, stack + [path], read))
    return out


def _definitions_of(path: str, stack: list, read: list) -> list:
    from ptrace_lang.errors import SOURCES
    from ptrace_lang.frontend.parser import parse

    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as f:
            text = f.read()
    except OSError as e:
        raise CompileError(f"cannot read header '{path}': {e.strerror}", Span(path, 0, 0, 0, 0)) from None
    if path not in read:
        read.append(path)
    SOURCES.add(path, text)
    sub = parse(text, path)
    if sub.probes:
        raise CompileError(f"header '{path}' holds probes: only C definitions can be included",
                           sub.probes[0].span)
    return list(sub.c_definitions)
