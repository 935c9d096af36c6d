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
data (marshal: built in, no import cost) in ``<cache>/ptrace-lang/specs``, where ``<cache>`` is
``$XDG_CACHE_HOME``, else ``/var/cache`` for root and ``~/.cache`` for others;
``PTRACE_NO_CACHE=1`` turns the cache off. Stages (``-d``) always compile.

A program from the cache runs as root, so an entry is trusted no more than the command line:
``cachefs`` uses a directory and its files only when they are the effective user's alone, and
refuses any entry not sealed with this user's secret (a flipped bit, a foreign file); a FIFO, a
symlink or an oversized file is refused without waiting. What is loaded is then checked again:
a malformed ObjectSpec is a miss, and one with unsafe records (``system()``, ``signal()``,
``override()``) is refused unless --unsafe was given (``needs_unsafe``). A refused entry is
reported under -v (``cachefs.take_notes``) and the script compiled.
"""
from __future__ import annotations

import marshal
import os
import sys

FORMAT = 1
MAX_ENTRIES = 200          # oldest entries beyond this are removed when a new one is written

_PKG_DIR = os.path.dirname(os.path.abspath(__file__))


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


def _entry_name(k: tuple) -> str:
    blob = repr(k).encode("utf-8", "surrogateescape")   # (marshal's bytes vary with object sharing)
    # the key's bytes as one big number, reduced modulo two primes: two 61/59-bit digests
    # computed in C without importing zlib or hashlib (a shared library each); entries store
    # their whole key, so a collision is only a miss
    n = int.from_bytes(blob, "little")
    return "%016x-%015x.marshal" % (n % _P61, n % _P59)


_P61 = (1 << 61) - 1
_P59 = (1 << 59) - 55
_DIR = ("specs",)

# helpers a program of an unsafe function calls (bpf.helpers.HELPER_IDS; a unit test compares)
_UNSAFE_HELPERS = {58: "override", 109: "signal", 117: "signal"}   # override_return, send_signal(_thread)
_EV_SYSTEM = 9            # spec.EV_SYSTEM, not imported: spec is loaded only on a hit


def enabled() -> bool:
    return os.environ.get("PTRACE_NO_CACHE", "") in ("", "0")


def needs_unsafe(spec) -> str | None:
    """The unsafe function a program uses (``system``, ``signal``, ``override``), or None: a
    spec found in the cache must not do what the command line did not allow."""
    for ev in spec.events:
        if ev.kind == _EV_SYSTEM:
            return "system"
    for prog in spec.programs:
        insns = prog.insns
        # a helper call is opcode 0x85 with src_reg 0; its immediate is the helper's number
        at = insns.find(b"\x85")
        while at >= 0:
            if at % 8 == 0 and insns[at + 1] >> 4 == 0:
                helper = int.from_bytes(insns[at + 4:at + 8], "little", signed=True)
                if helper in _UNSAFE_HELPERS:
                    return _UNSAFE_HELPERS[helper]
            at = insns.find(b"\x85", at + 1)
    return None


def _well_formed(spec) -> bool:
    """The shape the runtime relies on (a sealed entry is this user's, yet a damaged one must
    not become a traceback at run time)."""
    from ptrace_lang import spec as S

    def all_of(xs, cls) -> bool:
        return type(xs) is list and all(type(x) is cls for x in xs)

    return (type(spec) is S.ObjectSpec and len(spec.__dict__) == len(S.ObjectSpec.__dataclass_fields__)
            and all_of(spec.maps, S.MapSpec) and all_of(spec.programs, S.ProgramSpec)
            and all_of(spec.attachments, S.AttachSpec) and all_of(spec.user_maps, S.UserMapSpec)
            and all_of(spec.events, S.EventSpec) and all_of(spec.probe_names, str)
            and type(spec.config) is dict
            and all(type(p.insns) is bytes and len(p.insns) % 8 == 0 and type(p.name) is str
                    for p in spec.programs)
            and all(type(e.kind) is int for e in spec.events))


def lookup(k: tuple, unsafe: bool = False):
    """The cached ObjectSpec for key ``k``, or None. ``unsafe``: --unsafe was given (without
    it, a spec using an unsafe function is refused whatever its key says)."""
    from ptrace_lang import cachefs

    data = cachefs.read(_DIR, _entry_name(k))
    if data is None:
        return None
    try:
        stored_key, deps, plain = marshal.loads(data)
        if stored_key != k or any(_dep_state(d[0]) != tuple(d) for d in deps):
            return None
    except Exception:  # truncated, foreign: compile
        return None
    from ptrace_lang.spec import from_plain

    try:
        spec = from_plain(plain)
        if not _well_formed(spec):
            raise ValueError("malformed")
        used = needs_unsafe(spec)
    except Exception:  # written by another layout of the classes, or damaged
        cachefs._note(f"ptrace: compile cache entry {_entry_name(k)} refused: malformed")
        return None
    if used is not None and not unsafe:
        cachefs._note(f"ptrace: compile cache entry {_entry_name(k)} refused: it uses {used}() "
                      "and --unsafe was not given")
        return None
    return spec


def store(k: tuple, spec, deps: list[str]) -> None:
    from ptrace_lang import cachefs
    from ptrace_lang.spec import to_plain

    data = marshal.dumps((k, tuple(_dep_state(d) for d in sorted(set(deps))), to_plain(spec)))
    if cachefs.write(_DIR, _entry_name(k), data):      # a concurrent run never reads half an entry
        _trim()


def _trim() -> None:
    from ptrace_lang import cachefs

    entries = cachefs.names(_DIR, ".marshal")
    if len(entries) <= MAX_ENTRIES:
        return
    entries.sort(key=lambda e: e[1])
    for name, _ in entries[: len(entries) - MAX_ENTRIES]:
        cachefs.remove(_DIR, name)
