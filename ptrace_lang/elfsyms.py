"""What uprobes and USDT probes need from binaries: paths, symbols, file offsets, stapsdt notes.

A small ELF reader of its own (``struct`` over the few tables needed; pyelftools builds an object
per symbol and costs tens of milliseconds to import), cached per process and keyed by the
file's identity (device, inode, size, mtime), so a changed binary is read again.

    symbol_offset(path, "malloc+4")           -> file offset for a uprobe
    usdt_notes(path)                          -> [UsdtNote(provider, name, pc, ..., args)]
    usdt_file_offset(path, note), semaphore_file_offset(path, note)

Library names are resolved in ``libpath`` (as the dynamic loader would); stapsdt argument
operands are parsed in ``usdtargs``.
"""
from __future__ import annotations

import fnmatch
import os
import re
import struct

from ptrace_lang.libpath import clear_cache as _clear_ld_cache
from ptrace_lang.records import dataclass, replace
from ptrace_lang.usdtargs import UsdtArg, parse_usdt_arg

__all__ = ["Symbol", "UsdtNote", "ElfInfo", "symbols", "find_symbols", "find_usdt",
           "symbol_address", "symbol_offset", "vaddr_to_offset", "usdt_notes", "usdt_file_offset",
           "semaphore_file_offset", "demangle", "elf_info", "clear_caches"]

# --------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Symbol:
    name: str
    address: int            # st_value (link-time virtual address)
    size: int
    type: str               # 'func', 'object', 'notype', 'tls', 'ifunc', 'common', ...
    binding: str            # 'local', 'global', 'weak', 'unique'

    def __init__(self, name, address, size, type, binding):
        # direct (tens of thousands are made per large library); records keeps the rest
        self.__dict__.update(name=name, address=address, size=size, type=type, binding=binding)

    @property
    def demangled(self) -> str:
        return demangle(self.name)


@dataclass(frozen=True)
class UsdtNote:
    provider: str
    name: str
    pc: int                 # probe address, adjusted for prelink (link-time vaddr)
    base: int               # address of .stapsdt.base (the note's own when the section is absent)
    semaphore: int          # semaphore vaddr (adjusted), 0 if none
    args: tuple = ()        # tuple[UsdtArg, ...]
    args_text: str = ""
    note_pc: int = 0        # values as stored in the note, before adjustment
    note_base: int = 0
    note_semaphore: int = 0


# --------------------------------------------------------------------------------------------
# ELF reading

_STT = {0: "notype", 1: "object", 2: "func", 3: "section", 4: "file", 5: "common", 6: "tls",
        10: "ifunc"}
_STB = {0: "local", 1: "global", 2: "weak", 10: "unique"}
_FUNC_TYPES = ("func", "ifunc")
PT_LOAD = 1
SHT_SYMTAB = 2
SHT_NOTE = 7
SHT_NOBITS = 8
SHT_DYNSYM = 11
SHF_ALLOC = 2


class Section:
    __slots__ = ("name", "type", "flags", "addr", "offset", "size", "link", "info", "entsize")

    def __init__(self, name, type_, flags, addr, offset, size, link, info, entsize):
        self.name = name
        self.type = type_
        self.flags = flags
        self.addr = addr
        self.offset = offset
        self.size = size
        self.link = link
        self.info = info
        self.entsize = entsize

    def __repr__(self) -> str:
        return f"Section({self.name!r}, addr={self.addr:#x}, offset={self.offset:#x})"


class Segment:
    __slots__ = ("type", "flags", "offset", "vaddr", "filesz", "memsz")

    def __init__(self, type_, flags, offset, vaddr, filesz, memsz):
        self.type = type_
        self.flags = flags
        self.offset = offset
        self.vaddr = vaddr
        self.filesz = filesz
        self.memsz = memsz

    def __repr__(self) -> str:
        return (f"Segment(type={self.type}, vaddr={self.vaddr:#x}, offset={self.offset:#x}, "
                f"memsz={self.memsz:#x})")


class ElfInfo:
    """Headers of one ELF file; symbols and notes are read on first use."""

    def __init__(self, path: str) -> None:
        self.path = path
        with open(path, "rb") as f:
            ident = f.read(64)
            if len(ident) < 52 or ident[:4] != b"\x7fELF":
                raise ValueError(f"{path}: not an ELF file")
            self.is64 = ident[4] == 2
            self.endian = "<" if ident[5] != 2 else ">"
            e = self.endian
            if self.is64:
                (self.e_type, self.machine, _v, self.entry, phoff, shoff, _fl, _eh, phentsize,
                 phnum, shentsize, shnum, shstrndx) = struct.unpack_from(e + "HHIQQQIHHHHHH",
                                                                         ident, 16)
            else:
                (self.e_type, self.machine, _v, self.entry, phoff, shoff, _fl, _eh, phentsize,
                 phnum, shentsize, shnum, shstrndx) = struct.unpack_from(e + "HHIIIIIHHHHHH",
                                                                         ident, 16)
            raw_sh = []
            if shoff:
                shfmt = e + ("IIQQQQIIQQ" if self.is64 else "IIIIIIIIII")
                f.seek(shoff)
                first = f.read(shentsize)
                if len(first) >= struct.calcsize(shfmt):
                    s0 = struct.unpack_from(shfmt, first)
                    if shnum == 0:
                        shnum = s0[5]          # extended numbering: count in sh_size
                    if shstrndx == 0xFFFF:
                        shstrndx = s0[6]       # ... index in sh_link
                    if phnum == 0xFFFF:
                        phnum = s0[7]          # ... in sh_info
                    rest = first + f.read(shentsize * max(shnum - 1, 0))
                    for i in range(shnum):
                        if (i + 1) * shentsize > len(rest):
                            break
                        raw_sh.append(struct.unpack_from(shfmt, rest, i * shentsize))
            self.segments: list[Segment] = []
            if phoff and phnum:
                f.seek(phoff)
                data = f.read(phentsize * phnum)
                for i in range(phnum):
                    if (i + 1) * phentsize > len(data):
                        break
                    if self.is64:
                        p_type, p_flags, p_off, p_vaddr, _pa, p_filesz, p_memsz, _al = \
                            struct.unpack_from(e + "IIQQQQQQ", data, i * phentsize)
                    else:
                        p_type, p_off, p_vaddr, _pa, p_filesz, p_memsz, p_flags, _al = \
                            struct.unpack_from(e + "IIIIIIII", data, i * phentsize)
                    self.segments.append(Segment(p_type, p_flags, p_off, p_vaddr, p_filesz,
                                                 p_memsz))
            names = b""
            if raw_sh and 0 < shstrndx < len(raw_sh):
                s = raw_sh[shstrndx]
                f.seek(s[4])
                names = f.read(s[5])
            self.sections: list[Section] = []
            for s in raw_sh:
                end = names.find(b"\0", s[0])
                name = names[s[0]:end if end >= 0 else len(names)].decode("utf-8", "replace")
                self.sections.append(Section(name, s[1], s[2], s[3], s[4], s[5], s[6], s[7],
                                             s[9]))
        self._symbols: list[Symbol] | None = None
        self._by_name: dict[str, list[Symbol]] | None = None
        self._notes: list[UsdtNote] | None = None

    # -- sections and addresses -----------------------------------------------------------
    def section(self, name: str) -> Section | None:
        for s in self.sections:
            if s.name == name:
                return s
        return None

    def _read(self, offset: int, size: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(size)

    def vaddr_to_offset(self, addr: int) -> int:
        for seg in self.segments:
            if seg.type == PT_LOAD and seg.vaddr <= addr < seg.vaddr + seg.memsz:
                return addr - seg.vaddr + seg.offset
        # No program headers (relocatable object, odd debug file): allocated sections.
        if not any(seg.type == PT_LOAD for seg in self.segments):
            for s in self.sections:
                if (s.flags & SHF_ALLOC and s.type != SHT_NOBITS
                        and s.addr <= addr < s.addr + s.size):
                    return addr - s.addr + s.offset
        raise LookupError(f"{self.path}: address {addr:#x} is in no loadable segment")

    # -- symbols --------------------------------------------------------------------------
    def symbols(self) -> list[Symbol]:
        if self._symbols is None:
            # .symtab first: it has the local (static) functions .dynsym lacks. Deduplicated
            # by (name, address), also within a table (versioned .dynsym names repeat).
            seen: set[tuple[str, int]] = set()
            out: list[Symbol] = []
            for kind in (SHT_SYMTAB, SHT_DYNSYM):
                for sec in self.sections:
                    if sec.type == kind:
                        self._read_symtab(sec, seen, out)
            self._symbols = out
        return self._symbols

    def _read_symtab(self, sec: Section, seen: set, out: list) -> None:
        if not (0 < sec.link < len(self.sections)) or sec.size == 0:
            return
        strsec = self.sections[sec.link]
        with open(self.path, "rb") as f:
            f.seek(sec.offset)
            data = f.read(sec.size)
            f.seek(strsec.offset)
            strtab = f.read(strsec.size)
        if self.is64:
            fmt, size = self.endian + "IBBHQQ", 24
        else:
            fmt, size = self.endian + "IIIBBH", 16
        data = data[:len(data) - len(data) % size]
        append = out.append
        add = seen.add
        find = strtab.find
        types = [_STT.get(t, f"type{t}") for t in range(16)]
        binds = [_STB.get(b, f"bind{b}") for b in range(16)]
        recs = struct.iter_unpack(fmt, data)
        if not self.is64:       # to the ELF64 field order
            recs = ((n, i, o, x, v, z) for n, v, z, i, o, x in recs)
        for st_name, info, _other, shndx, value, sz in recs:
            if shndx == 0 or st_name == 0:       # undefined, or nameless (sections)
                continue
            end = find(b"\0", st_name)
            if end < 0:
                end = len(strtab)
            if end == st_name:
                continue
            name = strtab[st_name:end].decode("utf-8", "replace")
            key = (name, value)
            if key in seen:
                continue
            add(key)
            append(Symbol(name, value, sz, types[info & 0xF], binds[info >> 4]))

    def by_name(self) -> dict[str, list[Symbol]]:
        if self._by_name is None:
            d: dict[str, list[Symbol]] = {}
            for s in self.symbols():
                d.setdefault(s.name, []).append(s)
            self._by_name = d
        return self._by_name

    # -- stapsdt notes --------------------------------------------------------------------
    def usdt_notes(self) -> list[UsdtNote]:
        if self._notes is None:
            self._notes = self._read_notes()
        return self._notes

    def _read_notes(self) -> list[UsdtNote]:
        secs = [s for s in self.sections if s.name == ".note.stapsdt" and s.type == SHT_NOTE]
        if not secs:
            return []
        base_sec = self.section(".stapsdt.base")
        e = self.endian
        asz = 8 if self.is64 else 4
        afmt = e + ("QQQ" if self.is64 else "III")
        out: list[UsdtNote] = []
        for sec in secs:
            data = self._read(sec.offset, sec.size)
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from(e + "III", data, pos)
                pos += 12
                name = data[pos:pos + namesz]
                pos += (namesz + 3) & ~3
                desc = data[pos:pos + descsz]
                pos += (descsz + 3) & ~3
                if ntype != 3 or name.rstrip(b"\0") != b"stapsdt" or len(desc) < 3 * asz:
                    continue
                pc, nbase, sem = struct.unpack_from(afmt, desc)
                strs = desc[3 * asz:].split(b"\0")
                while len(strs) < 3:
                    strs.append(b"")
                provider, pname, argtext = (x.decode("utf-8", "replace") for x in strs[:3])
                real_pc, real_sem, base = pc, sem, nbase
                if base_sec is not None:
                    # prelink may have moved the code: shift by how far .stapsdt.base moved
                    base = base_sec.addr
                    real_pc = pc + base - nbase
                    if sem:
                        real_sem = sem + base - nbase
                args = tuple(self._resolve_arg(parse_usdt_arg(a)) for a in argtext.split())
                out.append(UsdtNote(provider, pname, real_pc, base, real_sem, args, argtext,
                                    pc, nbase, sem))
        return out

    def _resolve_arg(self, arg: UsdtArg) -> UsdtArg:
        if arg.kind != "mem" or arg.symbol is None:
            return arg
        for s in self.by_name().get(arg.symbol, ()):
            return replace(arg, address=s.address + arg.offset)
        return arg


# --------------------------------------------------------------------------------------------
# cache

_ELF_CACHE: dict[str, tuple[tuple, ElfInfo]] = {}


def elf_info(path: str) -> ElfInfo:
    """The parsed headers of ``path``, cached while the file's identity is unchanged."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise LookupError(f"cannot open binary '{path}': {e.strerror}") from None
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _ELF_CACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        info = ElfInfo(path)
    except OSError as e:
        raise LookupError(f"cannot read binary '{path}': {e.strerror}") from None
    except (ValueError, struct.error) as e:
        raise LookupError(f"'{path}' is not a usable ELF file ({e})") from None
    _ELF_CACHE[path] = (key, info)
    return info


def clear_caches() -> None:
    _ELF_CACHE.clear()
    _clear_ld_cache()


# --------------------------------------------------------------------------------------------
# symbols and offsets


def symbols(path: str) -> list[Symbol]:
    """Defined symbols of .symtab and .dynsym, deduplicated by (name, address)."""
    return elf_info(path).symbols()


def find_symbols(path: str, pattern: str) -> list[Symbol]:
    """Function symbols whose name (or demangled name, for C++ patterns) matches ``pattern``
    (fnmatch: ``*``, ``?``, ``[...]``). One symbol per name; the list is sorted by name."""
    info = elf_info(path)
    wild = any(c in pattern for c in "*?[")
    out: dict[str, Symbol] = {}
    if not wild:
        for s in info.by_name().get(pattern, ()):
            if s.type in _FUNC_TYPES:
                return [s]
    cxx = "::" in pattern or "(" in pattern
    for s in info.symbols():
        if s.type not in _FUNC_TYPES or s.name in out:
            continue
        if fnmatch.fnmatchcase(s.name, pattern) or (
                cxx and s.name.startswith("_Z") and fnmatch.fnmatchcase(s.demangled, pattern)):
            out[s.name] = s
    return sorted(out.values(), key=lambda s: s.name)


_FUNC_PLUS = re.compile(r"^(.*?)\s*\+\s*(0[xX][0-9a-fA-F]+|\d+)$")


class BadOffset(LookupError):
    """``func+OFF`` whose OFF is no number (``+08``: a leading 0 makes it octal, as strtoull)."""


def parse_offset(text: str) -> int:
    """The offset of ``func+OFF`` read as bpftrace reads it (strtoull, base 0): ``0x10`` hex,
    ``010`` octal, ``10`` decimal."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16)
    if re.fullmatch(r"0[0-7]*", text):
        return int(text, 8)
    if re.fullmatch(r"[1-9][0-9]*", text):
        return int(text)
    why = " (a leading 0 makes it octal)" if re.fullmatch(r"0[0-9]+", text) else ""
    raise BadOffset(f"invalid offset '{text}'{why}")


def _lookup(info: ElfInfo, name: str) -> Symbol:
    cands = info.by_name().get(name)
    if not cands:
        # a demangled C++ name ("ns::f(int)")
        if "::" in name or "(" in name:
            for s in info.symbols():
                if s.name.startswith("_Z") and s.demangled == name:
                    return s
        import difflib
        names = {s.name for s in info.symbols() if s.type in _FUNC_TYPES}
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise LookupError(f"symbol '{name}' not found in {info.path}{hint}")
    rank = {"func": 0, "ifunc": 1}
    bind = {"global": 0, "weak": 1}
    return min(cands, key=lambda s: (rank.get(s.type, 2), bind.get(s.binding, 2), s.address == 0))


def symbol_address(path: str, name_or_addr: str | int, plus: int = 0) -> int:
    """The link-time virtual address of ``func``, ``func+off``, ``0xADDR`` or an int, plus
    ``plus``."""
    info = elf_info(path)
    if isinstance(name_or_addr, int):
        return name_or_addr + plus
    text = name_or_addr.strip()
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", text):
        return int(text, 16) + plus
    if text.isdigit():
        return int(text) + plus
    m = _FUNC_PLUS.match(text)
    if m and m.group(1):
        try:
            return _lookup(info, text).address + plus      # a symbol that really contains '+'
        except LookupError:
            pass
        off = parse_offset(m.group(2))
        return _lookup(info, m.group(1)).address + off + plus
    return _lookup(info, text).address + plus


def function_at(path: str, address: int) -> Symbol | None:
    """The function symbol whose bytes contain ``address`` (a zero-size symbol contains
    nothing, as in bpftrace); None when there is none."""
    for s in elf_info(path).symbols():
        if s.type in _FUNC_TYPES and s.size and s.address <= address < s.address + s.size:
            return s
    return None


def lookup_symbol(path: str, name: str) -> Symbol:
    """The symbol ``name`` names (as a uprobe on it would pick it); LookupError if none."""
    return _lookup(elf_info(path), name)


def split_func_plus(path: str, text: str) -> tuple[str, int]:
    """``func+N`` as (func, N); (text, 0) for a plain name or a symbol that contains '+'."""
    m = _FUNC_PLUS.match(text)
    if not m or not m.group(1) or text in elf_info(path).by_name():
        return text, 0
    return m.group(1), parse_offset(m.group(2))


def symbol_offset(path: str, name_or_addr: str | int, plus: int = 0) -> int:
    """The file offset a uprobe on ``name_or_addr`` (+ ``plus``) needs: through the PT_LOAD
    segment containing the address, ``addr - p_vaddr + p_offset``."""
    return elf_info(path).vaddr_to_offset(symbol_address(path, name_or_addr, plus))


def vaddr_to_offset(path: str, addr: int) -> int:
    return elf_info(path).vaddr_to_offset(addr)


# --------------------------------------------------------------------------------------------
# USDT


def usdt_notes(path: str) -> list[UsdtNote]:
    """The SystemTap SDT probes of ``path`` (``.note.stapsdt``, owner "stapsdt", type 3)."""
    return elf_info(path).usdt_notes()


def find_usdt(path: str, provider: str = "*", name: str = "*") -> list[UsdtNote]:
    """The notes whose provider and name match the fnmatch patterns, in file order (one
    probe can have several notes: each inlined or duplicated copy of the site is its own)."""
    return [n for n in usdt_notes(path)
            if fnmatch.fnmatchcase(n.provider, provider) and fnmatch.fnmatchcase(n.name, name)]


def usdt_file_offset(path: str, note: UsdtNote) -> int:
    return elf_info(path).vaddr_to_offset(note.pc)


def semaphore_file_offset(path: str, note: UsdtNote) -> int | None:
    """File offset of the probe's semaphore (the uprobe ``ref_ctr_offset``); None if it has none."""
    if not note.semaphore:
        return None
    return elf_info(path).vaddr_to_offset(note.semaphore)


# --------------------------------------------------------------------------------------------
# C++ demangling through libstdc++'s __cxa_demangle (no dependency; names stay if unavailable)

_demangler = None
_demangled: dict[str, str] = {}


def demangle(name: str) -> str:
    if not name.startswith("_Z"):
        return name
    hit = _demangled.get(name)
    if hit is not None:
        return hit
    global _demangler
    if _demangler is None:
        _demangler = _load_demangler()
    result = name
    if _demangler:
        import ctypes
        fn, free = _demangler
        status = ctypes.c_int(0)
        ptr = fn(name.encode(), None, None, ctypes.byref(status))
        if ptr:
            if status.value == 0:
                result = ctypes.string_at(ptr).decode("utf-8", "replace")
            free(ptr)
    _demangled[name] = result
    return result


def _load_demangler():
    try:
        import ctypes
        lib = ctypes.CDLL("libstdc++.so.6")
        fn = lib.__cxa_demangle
        fn.restype = ctypes.c_void_p
        fn.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_void_p,
                       ctypes.POINTER(ctypes.c_int)]
        free = ctypes.CDLL(None).free
        free.argtypes = [ctypes.c_void_p]
        free.restype = None
        return fn, free
    except (OSError, AttributeError):
        return False
