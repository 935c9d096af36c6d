"""Symbols and stacks, turned into text in user space.

Kernel addresses are looked up in ``/proc/kallsyms`` (read once, on the first lookup, into
sorted arrays searched by bisection); user addresses through ``/proc/PID/maps`` (the mapping
holding the address, its file and file offset) and that file's ELF symbol tables
(``elfsyms``, cached per file identity). User addresses are resolved when they are printed,
as bpftrace does: if the process is gone by then, they print as hex.

Stacks are ids in a BPF_MAP_TYPE_STACK_TRACE map (``kstack_<limit>`` / ``ustack_<limit>``);
the session hands its maps over with ``use_maps`` before anything prints. Nothing here is
imported by a script that has no stack or symbol.

Formatters registered in ``runtime.uvalues`` (raw bytes as the kernel stored them, aux):
  kstack  i64 stack id                      aux (mode, limit, map name)
  ustack  i64 stack id, u64 pid             aux (mode, limit, map name)
  ksym    u64 address                       aux ()
  usym    u64 address, u64 pid              aux ()
A negative stack id (no stack: a kernel stack sampled in user mode) prints as nothing.
"""
from __future__ import annotations

import struct
from bisect import bisect_right
from time import monotonic

from ptrace_lang.runtime.format import Stack
from ptrace_lang.runtime.uvalues import formatter

KALLSYMS = "/proc/kallsyms"
BPF_MAP_TYPE_STACK_TRACE = 7
_ADDR = struct.Struct("<Q")
PROCESS_TTL = 2.0       # seconds a process's mappings are trusted (pids are reused)
UNSIZED_REACH = 4096    # how far past a symbol without a size an address is still its
_ID_PID = struct.Struct("<qQ")

class TabStack(Stack):
    """perf mode: ``<hex address> func+off`` frames after a tab."""

    prefix = "\t"


class RawStack(Stack):
    """raw mode: the addresses in hex."""

    prefix = ""


# the session's kernel maps (name -> kernel.maps.Map), for reading stack traces
_MAPS: dict = {}


def use_maps(maps: dict) -> None:
    """Called by the session once its maps exist: stacks are read from these."""
    global _MAPS
    _MAPS = maps


# ------------------------------------------------------------------------------ kernel symbols

class KernelSymbols:
    """The symbols of ``/proc/kallsyms`` (or a file laid out like it): addresses sorted, with
    names and modules; the first symbol listed wins among several at one address."""

    def __init__(self, path: str = KALLSYMS) -> None:
        with open(path, "rb") as f:
            data = f.read()
        addrs: list[int] = []
        rest: list[bytes] = []      # "T name" or "t name\t[module]", split on lookup
        for line in data.split(b"\n"):
            p = line.split(b" ", 1)
            if len(p) == 2:
                try:
                    a = int(p[0], 16)
                except ValueError:
                    continue
                if a:               # 0: hidden by kptr_restrict
                    addrs.append(a)
                    rest.append(p[1])
        # stable: among symbols at one address, the first listed comes first and is kept
        order = sorted(range(len(addrs)), key=addrs.__getitem__)
        self.addrs = []
        self.rest = []
        last = -1
        for i in order:
            a = addrs[i]
            if a != last:
                last = a
                self.addrs.append(a)
                self.rest.append(rest[i])
        self._by_name: dict[str, int] | None = None

    @staticmethod
    def _split(rest: bytes) -> tuple[str, str]:
        name = rest[2:] if len(rest) > 2 and rest[1:2] == b" " else rest
        name, _, mod = name.partition(b"\t")
        return name.decode("utf-8", "replace"), mod.strip(b"[] ").decode("utf-8", "replace")

    def lookup(self, addr: int) -> tuple[str, int, str] | None:
        """(name, offset, module) of the symbol at or below ``addr``; None below every symbol."""
        i = bisect_right(self.addrs, addr) - 1
        if i < 0:
            return None
        name, mod = self._split(self.rest[i])
        return name, addr - self.addrs[i], mod

    def address(self, name: str) -> int | None:
        if self._by_name is None:
            self._by_name = {}
            for a, r in zip(self.addrs, self.rest):
                self._by_name.setdefault(self._split(r)[0], a)
        return self._by_name.get(name)


_KSYMS: list[KernelSymbols] = []


def kernel_symbols() -> KernelSymbols:
    if not _KSYMS:
        _KSYMS.append(KernelSymbols())
    return _KSYMS[0]


def kernel_address(name: str, path: str = KALLSYMS) -> int | None:
    """The address of kernel symbol ``name`` (the first listed), without building the tables:
    one search through the file's bytes. None if there is no such symbol (or it reads 0)."""
    with open(path, "rb") as f:
        data = f.read()
    needle = b" " + name.encode() + b"\n"
    start = 0
    while True:
        at = data.find(needle, start)
        if at < 0:
            needle_mod = b" " + name.encode() + b"\t"
            at = data.find(needle_mod, start)
            if at < 0:
                return None
        line_start = data.rfind(b"\n", 0, at) + 1
        parts = data[line_start:at + len(needle)].split()
        if len(parts) >= 3 and parts[2] == name.encode():
            try:
                addr = int(parts[0], 16)
            except ValueError:
                addr = 0
            return addr or None
        start = at + 1


def ksym_text(addr: int, offset: bool) -> str:
    """``func+off`` (or ``func`` without ``offset``); hex when no symbol holds it."""
    try:
        hit = kernel_symbols().lookup(addr)
    except OSError:
        hit = None
    if hit is None:
        return f"0x{addr:x}"
    return f"{hit[0]}+{hit[1]}" if offset else hit[0]


# ------------------------------------------------------------------------------ user symbols

DEBUG_DIR = "/usr/lib/debug"


def debug_file(info) -> str | None:
    """The separate debug file of an ELF file (its .symtab holds the local functions a
    stripped library lacks): by build id under /usr/lib/debug/.build-id, else by
    .gnu_debuglink next to it or under /usr/lib/debug."""
    import os

    sec = info.section(".note.gnu.build-id")
    if sec is not None and sec.size >= 16:
        data = info._read(sec.offset, sec.size)
        namesz, descsz, _type = struct.unpack_from(info.endian + "III", data)
        desc = data[12 + (namesz + 3) // 4 * 4:][:descsz].hex()
        if len(desc) > 2:
            path = f"{DEBUG_DIR}/.build-id/{desc[:2]}/{desc[2:]}.debug"
            if os.path.exists(path):
                return path
    sec = info.section(".gnu_debuglink")
    if sec is not None and sec.size > 4:
        name = info._read(sec.offset, sec.size).split(b"\0", 1)[0].decode("utf-8", "replace")
        real = os.path.realpath(info.path)
        d = os.path.dirname(real)
        for cand in (f"{d}/.debug/{name}", f"{DEBUG_DIR}{d}/{name}"):
            if name and cand != real and os.path.exists(cand):
                return cand
    return None


class _FileSymbols:
    """Function symbols of one ELF file (and of its separate debug file), sorted by address,
    and its loadable segments."""

    def __init__(self, info) -> None:
        syms = [s for s in info.symbols() if s.type in ("func", "ifunc") and s.address]
        if not any(sec.type == 2 for sec in info.sections):     # no .symtab: stripped
            from ptrace_lang import elfsyms

            dbg = debug_file(info)
            if dbg is not None:
                try:
                    syms += [s for s in elfsyms.elf_info(dbg).symbols()
                             if s.type in ("func", "ifunc") and s.address]
                except (LookupError, OSError):
                    pass
        syms.sort(key=lambda s: (s.address, s.binding != "global", s.name))
        self.addrs: list[int] = []
        self.syms = []
        for s in syms:
            if self.addrs and self.addrs[-1] == s.address:
                continue
            self.addrs.append(s.address)
            self.syms.append(s)
        self.segments = [(seg.offset, seg.filesz, seg.vaddr) for seg in info.segments
                         if seg.type == 1]      # PT_LOAD

    def vaddr(self, file_off: int) -> int | None:
        for off, size, vaddr in self.segments:
            if off <= file_off < off + max(size, 1):
                return file_off - off + vaddr
        return None

    def lookup(self, vaddr: int) -> tuple[str, int] | None:
        i = bisect_right(self.addrs, vaddr) - 1
        if i < 0:
            return None
        s = self.syms[i]
        off = vaddr - s.address
        if off >= (s.size or UNSIZED_REACH):
            return None
        return s.name, off


_FILES: dict[str, tuple[object, _FileSymbols | None]] = {}


def file_symbols(path: str) -> _FileSymbols | None:
    from ptrace_lang import elfsyms

    try:
        info = elfsyms.elf_info(path)
    except (LookupError, OSError):
        return None
    hit = _FILES.get(path)
    if hit is not None and hit[0] is info:
        return hit[1]
    try:
        fs = _FileSymbols(info)
    except (OSError, ValueError, struct.error):
        fs = None
    _FILES[path] = (info, fs)
    return fs


class _ProcessMaps:
    """The mappings of one process as ``/proc/PID/maps`` lists them (re-read when an address
    falls in none of them: the process mapped something new)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.when = 0.0
        self.maps: list[tuple[int, int, int, str]] = []
        self.starts: list[int] = []
        self.alive = True
        self.read()

    def read(self) -> None:
        try:
            with open(f"/proc/{self.pid}/maps", "rb") as f:
                data = f.read()
        except OSError:
            self.alive = False
            self.maps, self.starts = [], []
            return
        out = []
        for line in data.split(b"\n"):
            parts = line.split(None, 5)
            if len(parts) < 5:
                continue
            lo, _, hi = parts[0].partition(b"-")
            path = parts[5].strip().decode("utf-8", "surrogateescape") if len(parts) > 5 else ""
            out.append((int(lo, 16), int(hi, 16), int(parts[2], 16), path))
        out.sort()
        self.maps = out
        self.starts = [m[0] for m in out]
        self.alive = bool(out)     # a zombie's maps are empty

    def find(self, addr: int):
        for attempt in (0, 1):
            i = bisect_right(self.starts, addr) - 1
            if i >= 0 and addr < self.maps[i][1]:
                return self.maps[i]
            if attempt == 0 and self.alive:
                self.read()
        return None


_PROCS: dict[int, _ProcessMaps] = {}


def forget_processes() -> None:
    """Drop the cached mappings (a new session, or a batch of output done)."""
    _PROCS.clear()


def usym_lookup(addr: int, pid: int) -> tuple[str, int, str] | None:
    """(name, offset, file) of a user address in process ``pid``; None if unknown (the process
    is gone, or the address is in no symbol of a mapped file)."""
    pm = _PROCS.get(pid)
    now = monotonic()
    if pm is None or now - pm.when > PROCESS_TTL:
        pm = _PROCS[pid] = _ProcessMaps(pid)
        pm.when = now
    m = pm.find(addr)
    if m is None or not m[3].startswith("/"):
        return None
    start, _end, pgoff, path = m
    real = path
    if path.endswith(" (deleted)"):
        real = f"/proc/{pid}/map_files/{start:x}-{_end:x}"
    fs = file_symbols(real)
    if fs is None:
        fs = file_symbols(f"/proc/{pid}/root{path}")
        if fs is None:
            return None
    vaddr = fs.vaddr(addr - start + pgoff)
    if vaddr is None:
        return None
    hit = fs.lookup(vaddr)
    if hit is None:
        return None
    return hit[0], hit[1], path


def usym_text(addr: int, pid: int, offset: bool) -> str:
    hit = usym_lookup(addr, pid)
    if hit is None:
        return f"0x{addr:x}"
    return f"{hit[0]}+{hit[1]}" if offset else hit[0]


# ------------------------------------------------------------------------------ stacks

def stack_addresses(map_name: str, stack_id: int) -> list[int]:
    """The frames of stack ``stack_id`` (innermost first); [] for a failed id or a missing one."""
    if stack_id < 0:
        return []
    m = _MAPS.get(map_name)
    if m is None:
        return []
    try:
        raw = m.lookup(struct.pack("<I", stack_id & 0xFFFFFFFF))
    except OSError:
        return []
    if not raw:
        return []
    out = []
    for (ip,) in struct.iter_unpack("<Q", raw):
        if ip == 0:
            break
        out.append(ip)
    return out


def format_stack(addrs: list[int], mode: str, user_pid: int | None = None):
    """A stack as bpftrace prints it (``\\n`` then a line per frame; nothing when empty):
    frames ``func+off`` indented by the output's style (bpftrace mode), ``<hex> func+off``
    after a tab (perf mode; user frames add ``(file)``), or hex addresses (raw mode)."""
    if mode == "raw":
        return RawStack(f"{a:x}" for a in addrs)
    if user_pid is None:
        frames = [ksym_text(a, True) for a in addrs]
        if mode == "perf":
            return TabStack(f"{a:x} {f}" for a, f in zip(addrs, frames))
        return Stack(frames)
    if mode == "perf":
        lines = []
        for a in addrs:
            hit = usym_lookup(a, user_pid)
            if hit is None:
                lines.append(f"{a:x} 0x{a:x} ([unknown])")
            else:
                lines.append(f"{a:x} {hit[0]}+{hit[1]} ({hit[2]})")
        return TabStack(lines)
    return Stack([usym_text(a, user_pid, True) for a in addrs])


@formatter("kstack")
def _kstack(raw: bytes, aux: tuple):
    mode, _limit, map_name = aux
    (sid,) = struct.unpack_from("<q", raw)
    return format_stack(stack_addresses(map_name, sid), mode)


@formatter("ustack")
def _ustack(raw: bytes, aux: tuple):
    mode, _limit, map_name = aux
    sid, pid = _ID_PID.unpack_from(raw)
    return format_stack(stack_addresses(map_name, sid), mode, pid)


@formatter("ksym")
def _ksym(raw: bytes, aux: tuple) -> str:
    return ksym_text(_ADDR.unpack_from(raw)[0], False)


@formatter("usym")
def _usym(raw: bytes, aux: tuple) -> str:
    addr, pid = struct.unpack_from("<QQ", raw)
    return usym_text(addr, pid, False)


# ------------------------------------------------------------------------------ reporting

def report_stack_failures(session) -> None:
    """At exit: how many stacks could not be recorded (stack map bucket taken by another
    stack, or full), from counter ``COUNTER_STACK_FAILED``."""
    from ptrace_lang import spec as S

    m = session.k.maps.get(session.spec.counters_map)
    if m is None:
        return
    raw = m.lookup(struct.pack("<I", 0)) or b""
    if len(raw) < 8 * (S.COUNTER_STACK_FAILED + 1):
        return
    (n,) = struct.unpack_from("<Q", raw, 8 * S.COUNTER_STACK_FAILED)
    if not n:
        return
    if session.opts.output_format == "json":
        from ptrace_lang.runtime.format import json_object

        session.out.write(json_object("errors", {"stack_failed": n}))
        session.out.flush()
        return
    session.err.write(f"WARNING: {n} stack traces could not be recorded (stack map bucket "
                      f"collision or full map; raise max_map_keys, now "
                      f"{session.spec.config.get('max_map_keys')})\n")
    session.err.flush()
