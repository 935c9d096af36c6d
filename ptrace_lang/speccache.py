"""A cache of compiled programs: the second run of a script skips the whole compiler.

Compiling is most of ptrace's start-up (importing and running the parser, semantic analysis,
code generation and register allocation), yet its output, the ``ObjectSpec``, depends only on
things that can be listed and checked cheaply:

* the script text and file name, the positional parameters, every ``BPFTRACE_*`` variable and
  the pid of ``-p`` (programs of ``-c`` are not cached: ``cpid`` differs every run);
* the compiler itself (path, size and mtime of every file of the package and grammar; for a
  package pip installed, the state of its RECORD, rewritten at every install);
* the running kernel: its boot id (tracepoint formats and ids, BTF) and the loaded modules
  (a module brings tracepoints and functions);
* files the compile read (``deps``: the binaries of uprobes), by path, size, mtime and inode.

An entry is written after a successful compile and used only when all of these are equal: the
whole key is stored in the entry and compared, so a stale entry is never used. Entries are plain
data (marshal: built in, no import cost) in ``$XDG_CACHE_HOME/ptrace-lang/specs`` (or
``~/.cache``); ``PTRACE_NO_CACHE=1`` turns the cache off. Stages (``-d``) always compile.
"""
from __future__ import annotations

import marshal
import os
import sys

FORMAT = 1
MAX_ENTRIES = 200          # oldest entries beyond this are removed when a new one is written

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


def _cache_dir(create: bool) -> str | None:
    from ptrace_lang.resources import cache_dir

    return cache_dir("specs", create=create)


def _code_fingerprint() -> tuple:
    """Path, size and mtime of every file the compiler is made of; for a package installed by
    pip (not editable), the state of its RECORD instead (``_installed_record``)."""
    installed = _installed_record()
    if installed is not None:
        return installed
    from ptrace_lang.resources import grammar_dir

    out = []
    todo = [_PKG_DIR, grammar_dir()]
    while todo:
        d = todo.pop()
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                if e.name != "__pycache__":
                    todo.append(e.path)
            elif e.name.endswith((".py", ".lark")):
                st = e.stat()
                out.append((e.path, st.st_size, st.st_mtime_ns))
    return tuple(out)


def _installed_record() -> tuple | None:
    """An installed package's files change only when pip installs it again, and pip then writes
    a new ``RECORD`` in its ``.dist-info`` (one stat instead of ~90; a file edited in place under
    site-packages goes unnoticed: PTRACE_NO_CACHE=1). None for a source checkout."""
    parent = os.path.dirname(_PKG_DIR)
    if os.path.basename(parent) not in ("site-packages", "dist-packages"):
        return None
    try:
        for e in os.scandir(parent):
            if e.name.startswith("ptrace_lang-") and e.name.endswith(".dist-info"):
                record = os.path.join(e.path, "RECORD")
                st = os.stat(record)
                return ((record, st.st_size, st.st_mtime_ns, st.st_ino),)
    except OSError:
        pass
    return None


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _kernel_fingerprint() -> tuple:
    modules = tuple(sorted(line.split(" ", 1)[0] for line in _read("/proc/modules").splitlines()))
    return (_read("/proc/sys/kernel/random/boot_id").strip(), os.uname().release, modules)


def _dep_state(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (path, -1, 0, 0)
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


def key(text: str, filename: str, positional: list[str], pid: int | None = None,
        unsafe: bool = False, includes: tuple = ()) -> tuple:
    """``pid``: the process of -p (its uprobes are attached in it, its libraries found in its
    maps). A -c program is never cached: its child's pid (``cpid``) is new every run.
    ``unsafe``: --unsafe (a program compiled with it must not run without it).
    ``includes``: -I directories and --include files (they decide which headers are read)."""
    env = tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("BPFTRACE_")))
    process = None
    if pid is not None:     # the pid and its start time: a reused pid is another process
        stat = _read(f"/proc/{pid}/stat")
        process = (pid, tuple(stat[stat.rfind(")") + 1:].split()[19:20]))
    return (FORMAT, sys.version_info[:2], text, filename, tuple(positional), env,
            _code_fingerprint(), _kernel_fingerprint(), process, unsafe) + \
        ((tuple(includes),) if includes else ())


def _entry_path(k: tuple, create: bool) -> str | None:
    d = _cache_dir(create)
    if d is None:
        return None
    blob = repr(k).encode("utf-8", "surrogateescape")   # (marshal's bytes vary with object sharing)
    # the key's bytes as one big number, reduced modulo two primes: two 61/59-bit digests
    # computed in C without importing zlib or hashlib (a shared library each); entries store
    # their whole key, so a collision is only a miss
    n = int.from_bytes(blob, "little")
    return os.path.join(d, "%016x-%015x.marshal" % (n % _P61, n % _P59))


_P61 = (1 << 61) - 1
_P59 = (1 << 59) - 55


def enabled() -> bool:
    return os.environ.get("PTRACE_NO_CACHE", "") in ("", "0")


def lookup(k: tuple):
    """The cached ObjectSpec for key ``k``, or None."""
    path = _entry_path(k, create=False)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            data = marshal.loads(f.read())
        stored_key, deps, plain = data
    except Exception:  # missing, truncated, foreign: compile
        return None
    if stored_key != k or any(_dep_state(d[0]) != tuple(d) for d in deps):
        return None
    from ptrace_lang.spec import from_plain

    try:
        return from_plain(plain)
    except Exception:  # written by another layout of the classes
        return None


def store(k: tuple, spec, deps: list[str]) -> None:
    from ptrace_lang.spec import to_plain

    path = _entry_path(k, create=True)
    if path is None:
        return
    from ptrace_lang.resources import write_atomic

    data = marshal.dumps((k, tuple(_dep_state(d) for d in sorted(set(deps))), to_plain(spec)))
    if write_atomic(path, data):       # a concurrent run never reads half an entry
        _trim(os.path.dirname(path))


def _trim(d: str) -> None:
    try:
        entries = [e for e in os.scandir(d) if e.name.endswith(".marshal")]
    except OSError:
        return
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda e: e.stat().st_mtime_ns)
    for e in entries[: len(entries) - MAX_ENTRIES]:
        try:
            os.unlink(e.path)
        except OSError:
            pass
