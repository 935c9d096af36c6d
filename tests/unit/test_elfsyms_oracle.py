"""pyelftools as the oracle of the hand-written ELF reader (ptrace_lang/elfsyms.py): symbols
(name, value, size), section offsets and stapsdt notes of system binaries, as elfsyms reads
them, against what pyelftools reads. Only elfsyms' public functions are used."""
from __future__ import annotations

import os
import struct

import pytest

elftools = pytest.importorskip("elftools", reason="pyelftools is not installed "
                                                   "(pip install pyelftools): the oracle is missing")
from elftools.elf.elffile import ELFFile  # noqa: E402
from elftools.elf.sections import NoteSection, SymbolTableSection  # noqa: E402

from ptrace_lang import elfsyms  # noqa: E402

CANDIDATES = ["/bin/bash", "/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6",
              "/usr/lib64/libc.so.6", "/usr/bin/python3", "/lib/x86_64-linux-gnu/libstdc++.so.6"]
BINARIES = [p for p in CANDIDATES if os.path.exists(p)]


def oracle_symbols(path: str) -> set[tuple[str, int, int]]:
    """(name, value, size) of every defined, named symbol of .symtab and .dynsym."""
    out = set()
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if not isinstance(sec, SymbolTableSection) or sec["sh_type"] not in ("SHT_SYMTAB",
                                                                                 "SHT_DYNSYM"):
                continue
            for sym in sec.iter_symbols():
                if sym.name and sym["st_shndx"] != "SHN_UNDEF":
                    out.add((sym.name, sym["st_value"], sym["st_size"]))
    return out


@pytest.mark.parametrize("path", BINARIES)
def test_symbols_match_pyelftools(path):
    ours = {(s.name, s.address, s.size) for s in elfsyms.symbols(path)}
    theirs = oracle_symbols(path)
    assert theirs, f"{path} has no symbols"
    # elfsyms keeps one symbol per (name, address): the first table's size wins
    assert {(n, a) for n, a, _ in ours} == {(n, a) for n, a, _ in theirs}
    sizes = {}
    for n, a, s in theirs:
        sizes.setdefault((n, a), set()).add(s)
    assert all(s in sizes[(n, a)] for n, a, s in ours)


@pytest.mark.parametrize("path", BINARIES)
def test_section_offsets_match_pyelftools(path):
    info = elfsyms.elf_info(path)
    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if not sec.name:
                continue
            ours = info.section(sec.name)
            assert ours is not None, sec.name
            assert (ours.offset, ours.addr, ours.size) == (sec["sh_offset"], sec["sh_addr"],
                                                           sec["sh_size"]), sec.name


def oracle_notes(path: str) -> list[tuple[str, str, int, int, int, str]]:
    """(provider, name, pc, base, semaphore, args) of every stapsdt note, as stored."""
    out = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        fmt = "<QQQ" if elf.elfclass == 64 else "<III"
        for sec in elf.iter_sections():
            if not isinstance(sec, NoteSection) or sec.name != ".note.stapsdt":
                continue
            for note in sec.iter_notes():
                # pyelftools names note type 3 as the GNU one (NT_GNU_BUILD_ID) whatever the
                # note's owner: stapsdt's type 3 is NT_STAPSDT; its raw bytes are n_descdata
                if note["n_name"] != "stapsdt" or note["n_type"] not in (3, "NT_GNU_BUILD_ID"):
                    continue
                desc = bytes(note["n_descdata"])
                pc, base, sem = struct.unpack_from(fmt, desc)
                strs = desc[struct.calcsize(fmt):].split(b"\0")
                out.append((strs[0].decode(), strs[1].decode(), pc, base, sem, strs[2].decode()))
    return out


@pytest.mark.parametrize("path", BINARIES)
def test_usdt_notes_match_pyelftools(path):
    ours = [(n.provider, n.name, n.note_pc, n.note_base, n.note_semaphore, n.args_text)
            for n in elfsyms.usdt_notes(path)]
    assert ours == oracle_notes(path)


def test_some_binary_has_usdt_notes():
    if not any(oracle_notes(p) for p in BINARIES):
        pytest.skip("no binary here has .note.stapsdt notes")
