"""elfsyms: binary resolution, symbols, uprobe file offsets and stapsdt notes, checked against
fixtures compiled here with gcc (PIE, non-PIE, shared library) and against nm/readelf."""
from __future__ import annotations

import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import time

import pytest

from ptrace_lang import elfsyms, libpath, usdtargs
from ptrace_lang.elfsyms import (find_symbols, semaphore_file_offset, symbol_offset, symbols,
                                 usdt_file_offset, usdt_notes)
from ptrace_lang.libpath import resolve_binary
from ptrace_lang.usdtargs import UsdtArg, parse_usdt_arg

GCC = shutil.which("gcc")
BINUTILS = shutil.which("nm") and shutil.which("readelf")
X86_64 = platform.machine() == "x86_64"

needs_binutils = pytest.mark.skipif(not BINUTILS, reason="nm/readelf (binutils) not installed")

if GCC is None:
    print("test_elfsyms: gcc missing, fixture tests skipped", file=sys.stderr)

# A stapsdt note written by hand (what <sys/sdt.h> would emit), so the test does not need
# systemtap-sdt-dev: note header, "stapsdt", pc, .stapsdt.base, semaphore, provider, name,
# argument string; .stapsdt.base as a one-byte comdat section; the semaphore in .probes.
SDT_NOTE = r'''
#define STR_(x) #x
#define STR(x) STR_(x)
#define SDT_NOTE(provider, name, sem, args)                                              \
    "990: nop\n"                                                                          \
    ".pushsection .note.stapsdt,\"?\",\"note\"\n"                                          \
    ".balign 4\n"                                                                         \
    ".4byte 992f-991f, 994f-993f, 3\n"                                                    \
    "991: .asciz \"stapsdt\"\n"                                                           \
    "992: .balign 4\n"                                                                    \
    "993: .8byte 990b\n"                                                                  \
    ".8byte _.stapsdt.base\n"                                                             \
    ".8byte " sem "\n"                                                                    \
    ".asciz \"" provider "\"\n"                                                           \
    ".asciz \"" name "\"\n"                                                               \
    ".asciz \"" args "\"\n"                                                               \
    "994: .balign 4\n"                                                                    \
    ".popsection\n"                                                                       \
    ".ifndef _.stapsdt.base\n"                                                            \
    ".pushsection .stapsdt.base,\"aG\",\"progbits\",.stapsdt.base,comdat\n"               \
    ".weak _.stapsdt.base\n"                                                              \
    ".hidden _.stapsdt.base\n"                                                            \
    "_.stapsdt.base: .space 1\n"                                                          \
    ".size _.stapsdt.base, 1\n"                                                           \
    ".popsection\n"                                                                       \
    ".endif\n"
'''

PROGRAM = SDT_NOTE + r'''
#include <stdio.h>
#include <unistd.h>

__attribute__((section(".probes"))) volatile unsigned short myprov_start_semaphore = 0x4d2;
static long counter_global = 77;
extern int lib_add(int, int);

__attribute__((noinline)) int known_func(int a) { return a * 3 + 1; }
__attribute__((noinline)) static int static_helper(int a) { return a - 2; }

__attribute__((noinline)) int probed(int x, long y)
{
    volatile int local = x + 1;
    /* reg (int in a register), const, stack memory, rip-relative static */
    __asm__ __volatile__(SDT_NOTE("myprov", "start", "myprov_start_semaphore",
                                  "-4@%0 -4@$5 -4@%1 8@%2 8@%3")
                         :: "r"(x), "m"(local), "m"(counter_global), "r"(y));
    __asm__ __volatile__(SDT_NOTE("myprov", "done", "0", "8@%%rax -2@$-3 8@8(%%rdi,%%rsi,8)")
                         ::: "memory");
    return local + static_helper(x);
}

int main(int argc, char **argv)
{
    int r = probed(argc, 2) + known_func(argc);
#ifdef WITH_LIB
    r += lib_add(1, 2);
    printf("ready\n");
    fflush(stdout);
    sleep(30);
#endif
    return r == 12345;
}
'''

LIBRARY = r'''
__attribute__((noinline)) static int lib_static(int a) { return a ^ 5; }
int lib_add(int a, int b) { return lib_static(a) + b; }
int lib_mul(int a, int b) { return a * b; }
'''


def _run(*cmd, **kw) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw).stdout


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if GCC is None:
        pytest.skip("gcc is not installed")
    if not X86_64:
        pytest.skip("fixtures use x86-64 inline assembly")
    d = tmp_path_factory.mktemp("elfsyms")
    (d / "prog.c").write_text(PROGRAM)
    (d / "lib.c").write_text(LIBRARY)
    out = {}
    _run(GCC, "-O0", "-g0", "-fPIE", "-pie", "-o", str(d / "prog_pie"), str(d / "prog.c"))
    _run(GCC, "-O0", "-g0", "-fno-pie", "-no-pie", "-o", str(d / "prog_nopie"), str(d / "prog.c"))
    libdir = d / "lib"
    libdir.mkdir()
    _run(GCC, "-O1", "-fPIC", "-shared", "-Wl,-soname,libptfix.so.1", "-o",
         str(libdir / "libptfix.so.1"), str(d / "lib.c"))
    _run(GCC, "-O0", "-DWITH_LIB", "-o", str(d / "prog_lib"), str(d / "prog.c"),
         str(libdir / "libptfix.so.1"))
    out.update(dir=d, pie=str(d / "prog_pie"), nopie=str(d / "prog_nopie"),
               lib=str(libdir / "libptfix.so.1"), libdir=str(libdir), prog_lib=str(d / "prog_lib"))
    return out


def _nm(path: str) -> dict[str, int]:
    syms = {}
    for line in _run("nm", path).splitlines():
        parts = line.split()
        if len(parts) == 3:
            syms.setdefault(parts[2], int(parts[0], 16))
    return syms


def _loads(path: str) -> list[tuple[int, int, int, int]]:
    """(offset, vaddr, filesz, memsz) of the PT_LOAD lines of readelf -lW."""
    out = []
    for line in _run("readelf", "-lW", path).splitlines():
        parts = line.split()
        if parts and parts[0] == "LOAD":
            out.append(tuple(int(x, 16) for x in (parts[1], parts[2], parts[4], parts[5])))
    return out


def _offset_by_readelf(path: str, addr: int) -> int:
    for off, vaddr, _filesz, memsz in _loads(path):
        if vaddr <= addr < vaddr + memsz:
            return addr - vaddr + off
    raise AssertionError(f"{addr:#x} not in a LOAD segment of {path}")


# --------------------------------------------------------------------------------------------
# symbols and offsets


@needs_binutils
@pytest.mark.parametrize("kind", ["pie", "nopie", "lib"])
def test_symbol_offsets_match_nm_and_readelf(built, kind):
    path = built[kind]
    nm = _nm(path)
    names = ["lib_add", "lib_mul", "lib_static"] if kind == "lib" else \
        ["known_func", "probed", "static_helper", "main"]
    by_name = {s.name: s for s in symbols(path)}
    for name in names:
        assert by_name[name].address == nm[name], name
        assert by_name[name].type == "func"
        want = _offset_by_readelf(path, nm[name])
        assert symbol_offset(path, name) == want
        assert symbol_offset(path, name, plus=4) == want + 4
        assert symbol_offset(path, f"{name}+0x8") == want + 8
        assert symbol_offset(path, f"{name}+3", plus=1) == want + 4
        assert symbol_offset(path, f"{name}+010") == want + 8      # octal, as strtoull reads it
        assert symbol_offset(path, hex(nm[name])) == want
        assert symbol_offset(path, nm[name]) == want


@needs_binutils
def test_non_pie_offset_differs_from_address(built):
    nm = _nm(built["nopie"])
    addr = nm["known_func"]
    assert addr >= 0x400000                     # linked at a fixed address
    off = symbol_offset(built["nopie"], "known_func")
    assert off < addr and off == _offset_by_readelf(built["nopie"], addr)


def test_function_bytes_at_offset_are_the_functions(built):
    # both builds have the same code for known_func at -O0: the bytes at the offsets agree
    def code(path):
        s = next(s for s in symbols(path) if s.name == "known_func")
        with open(path, "rb") as f:
            f.seek(symbol_offset(path, "known_func"))
            return f.read(s.size)
    a, b = code(built["pie"]), code(built["nopie"])
    assert len(a) > 4 and a[:4] == b[:4]


def test_symbol_kinds_and_dedup(built):
    syms = symbols(built["pie"])
    keys = [(s.name, s.address) for s in syms]
    assert len(keys) == len(set(keys))
    by = {s.name: s for s in syms}
    assert by["counter_global"].type == "object" and by["counter_global"].binding == "local"
    assert by["known_func"].binding == "global"
    assert by["static_helper"].binding == "local"
    assert all(s.name for s in syms)
    assert "printf" not in by and "puts" not in by      # undefined imports are skipped


def test_stripped_library_keeps_dynsym(built, tmp_path):
    if not shutil.which("strip"):
        pytest.skip("strip not installed")
    p = tmp_path / "libstripped.so"
    shutil.copy(built["lib"], p)
    _run("strip", str(p))
    names = {s.name for s in symbols(str(p))}
    assert {"lib_add", "lib_mul"} <= names and "lib_static" not in names
    assert symbol_offset(str(p), "lib_add") == symbol_offset(built["lib"], "lib_add")


def test_find_symbols_wildcards(built):
    assert [s.name for s in find_symbols(built["lib"], "lib_*")] == \
        ["lib_add", "lib_mul", "lib_static"]
    assert [s.name for s in find_symbols(built["lib"], "lib_mul")] == ["lib_mul"]
    assert find_symbols(built["pie"], "counter_*") == []         # objects are not functions
    assert [s.name for s in find_symbols(built["pie"], "*_func")] == ["known_func"]


def test_unknown_symbol_hints(built):
    with pytest.raises(LookupError) as e:
        symbol_offset(built["pie"], "known_fnuc")
    assert "known_fnuc" in str(e.value) and "known_func" in str(e.value)
    with pytest.raises(LookupError):
        symbol_offset(built["pie"], "zzzz+4")
    with pytest.raises(LookupError):
        symbol_offset(built["pie"], 0x7FFF_FFFF_0000)       # in no segment


def test_cache_invalidated_when_file_changes(built, tmp_path):
    p = tmp_path / "changing"
    shutil.copy(built["pie"], p)
    assert any(s.name == "known_func" for s in symbols(str(p)))
    assert elfsyms.elf_info(str(p)) is elfsyms.elf_info(str(p))
    time.sleep(0.01)
    shutil.copy(built["lib"], p)
    names = {s.name for s in symbols(str(p))}
    assert "lib_add" in names and "known_func" not in names


def test_not_elf(tmp_path):
    p = tmp_path / "text"
    p.write_text("hello, this is not an ELF file at all, but long enough to be read\n" * 2)
    with pytest.raises(LookupError):
        symbols(str(p))
    with pytest.raises(LookupError):
        symbols(str(tmp_path / "missing"))


@pytest.mark.skipif(shutil.which("g++") is None, reason="g++ not installed")
def test_cxx_demangled_names(tmp_path):
    (tmp_path / "a.cc").write_text(
        "namespace ns { int f(int a) { return a + 1; } int f(double d) { return (int)d; } }\n"
        "int main() { return ns::f(1) + ns::f(2.0); }\n")
    exe = str(tmp_path / "a")
    _run("g++", "-O0", "-o", exe, str(tmp_path / "a.cc"))
    by = {s.name: s for s in symbols(exe)}
    assert by["_ZN2ns1fEi"].demangled in ("ns::f(int)", "_ZN2ns1fEi")  # raw if no libstdc++
    if by["_ZN2ns1fEi"].demangled == "ns::f(int)":
        assert [s.name for s in find_symbols(exe, "ns::f(*)")] == ["_ZN2ns1fEd", "_ZN2ns1fEi"]
        assert symbol_offset(exe, "ns::f(int)") == symbol_offset(exe, "_ZN2ns1fEi")


# --------------------------------------------------------------------------------------------
# USDT


@pytest.mark.parametrize("kind", ["pie", "nopie"])
def test_usdt_notes(built, kind):
    path = built[kind]
    notes = usdt_notes(path)
    assert [(n.provider, n.name) for n in notes] == [("myprov", "start"), ("myprov", "done")]
    start, done = notes
    by = {s.name: s for s in symbols(path)}
    probed = by["probed"]
    base = next(s for s in elfsyms.elf_info(path).sections if s.name == ".stapsdt.base")
    for n in notes:
        assert probed.address <= n.pc < probed.address + probed.size
        assert n.base == base.addr == n.note_base and n.pc == n.note_pc
        with open(path, "rb") as f:
            f.seek(usdt_file_offset(path, n))
            assert f.read(1) == b"\x90"                 # the probe's nop
    # semaphore: the variable's address, its bytes (0x4d2) at the file offset
    assert start.semaphore == by["myprov_start_semaphore"].address
    with open(path, "rb") as f:
        f.seek(semaphore_file_offset(path, start))
        assert struct.unpack("<H", f.read(2))[0] == 0x4D2
    assert done.semaphore == 0 and semaphore_file_offset(path, done) is None

    a = start.args
    assert len(a) == 5, start.args_text
    assert a[0].kind == "reg" and a[0].size == 4 and a[0].signed
    assert usdtargs.canonical_reg(a[0].reg) in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi",
                                               "r8", "r9", "r10", "r11")
    assert (a[1].kind, a[1].value, a[1].size, a[1].signed) == ("const", 5, 4, True)
    assert a[2].kind == "mem" and a[2].base_reg in ("rbp", "rsp") and a[2].offset != 0
    assert a[3].kind == "mem" and a[3].size == 8 and not a[3].signed
    if kind == "pie":
        assert a[3].base_reg == "rip"
    assert a[3].symbol == "counter_global"
    assert a[3].address == by["counter_global"].address
    assert a[4].kind == "reg" and a[4].size == 8

    d = done.args
    assert (d[0].kind, d[0].reg, d[0].size) == ("reg", "rax", 8)
    assert (d[1].kind, d[1].value, d[1].size, d[1].signed) == ("const", -3, 2, True)
    assert (d[2].kind, d[2].offset, d[2].base_reg, d[2].index_reg, d[2].scale) == \
        ("mem", 8, "rdi", "rsi", 8)


@needs_binutils
def test_usdt_semaphore_in_probes_section(built):
    out = _run("readelf", "-SW", built["pie"])
    assert ".probes" in out and ".note.stapsdt" in out and ".stapsdt.base" in out
    (start, _done) = usdt_notes(built["pie"])
    assert start.semaphore == _nm(built["pie"])["myprov_start_semaphore"]
    assert semaphore_file_offset(built["pie"], start) == \
        _offset_by_readelf(built["pie"], start.semaphore)


def test_usdt_prelink_adjustment(built, tmp_path):
    """A note whose recorded .stapsdt.base differs from the section's address (as after
    prelink) has its pc and semaphore shifted by the difference."""
    path = built["pie"]
    info = elfsyms.elf_info(path)
    sec = next(s for s in info.sections if s.name == ".note.stapsdt")
    data = bytearray(open(path, "rb").read())
    pos, end = sec.offset, sec.offset + sec.size
    while pos < end:                                     # rewrite the base of every note
        namesz, descsz, _t = struct.unpack_from("<III", data, pos)
        desc = pos + 12 + ((namesz + 3) & ~3)
        base = struct.unpack_from("<Q", data, desc + 8)[0]
        struct.pack_into("<Q", data, desc + 8, base - 0x1000)
        pos = desc + ((descsz + 3) & ~3)
    p = tmp_path / "prelinked"
    p.write_bytes(bytes(data))
    orig = usdt_notes(path)
    moved = usdt_notes(str(p))
    for o, m in zip(orig, moved):
        assert m.note_pc == o.pc and m.note_base == o.base - 0x1000
        assert m.pc == o.pc + 0x1000 and m.base == o.base
    assert moved[0].semaphore == orig[0].semaphore + 0x1000
    assert moved[1].semaphore == 0


def _readelf_notes(path: str) -> list[tuple]:
    out, cur = [], None
    for line in _run("readelf", "-nW", path).splitlines():
        line = line.strip()
        if "Provider:" in line:
            cur = [line.split("Provider:", 1)[1].strip()]
        elif cur is not None and line.startswith("Name:"):
            cur.append(line.split(":", 1)[1].strip())
        elif cur is not None and line.startswith("Location:"):
            cur.extend(int(x, 16) for x in re.findall(r"0x[0-9a-fA-F]+", line))
        elif cur is not None and line.startswith("Arguments:"):
            cur.append(line.split(":", 1)[1].strip())
            out.append(tuple(cur))
            cur = None
    return out


@needs_binutils
def test_system_libraries_notes_match_readelf():
    """Real SDT notes (libstdc++ and libpython carry some on Debian) read as readelf does."""
    checked = 0
    for lib in ("libstdc++", "libpython3.11", "libpython3.12", "libc"):
        try:
            path = resolve_binary(lib)
        except LookupError:
            continue
        ref = _readelf_notes(path)
        mine = usdt_notes(path)
        assert [(n.provider, n.name, n.note_pc, n.note_base, n.note_semaphore, n.args_text)
                for n in mine] == ref
        for n in mine:
            assert all(a.kind != "unknown" for a in n.args), n.args_text
            assert usdt_file_offset(path, n) == _offset_by_readelf(path, n.pc)
            if n.semaphore:
                assert semaphore_file_offset(path, n) == _offset_by_readelf(path, n.semaphore)
        checked += bool(mine)
    if not checked:
        pytest.skip("no system library with stapsdt notes")


def test_find_usdt(built):
    path = built["pie"]
    assert [n.name for n in elfsyms.find_usdt(path, "myprov", "*")] == ["start", "done"]
    assert [n.name for n in elfsyms.find_usdt(path, name="do*")] == ["done"]
    assert elfsyms.find_usdt(path, "other") == []


def test_no_notes(built):
    assert usdt_notes(built["lib"]) == []


@pytest.mark.parametrize("text,want", [
    ("-4@-20(%rbp)", UsdtArg(4, True, "mem", offset=-20, base_reg="rbp", text="-4@-20(%rbp)")),
    ("8@%rax", UsdtArg(8, False, "reg", reg="rax", text="8@%rax")),
    ("-4@$5", UsdtArg(4, True, "const", value=5, text="-4@$5")),
    ("1@$0x1f", UsdtArg(1, False, "const", value=0x1F, text="1@$0x1f")),
    ("8@8(%rdi,%rsi,8)", UsdtArg(8, False, "mem", offset=8, base_reg="rdi", index_reg="rsi",
                                 scale=8, text="8@8(%rdi,%rsi,8)")),
    ("8@(%rdi,%rsi)", UsdtArg(8, False, "mem", base_reg="rdi", index_reg="rsi",
                              text="8@(%rdi,%rsi)")),
    ("4@(,%rax,4)", UsdtArg(4, False, "mem", index_reg="rax", scale=4, text="4@(,%rax,4)")),
    ("4@symbol(%rip)", UsdtArg(4, False, "mem", base_reg="rip", symbol="symbol",
                               text="4@symbol(%rip)")),
    ("-8@counter+16(%rip)", UsdtArg(8, True, "mem", offset=16, base_reg="rip", symbol="counter",
                                    text="-8@counter+16(%rip)")),
    ("2@tab-0x4(%rip)", UsdtArg(2, False, "mem", offset=-4, base_reg="rip", symbol="tab",
                                text="2@tab-0x4(%rip)")),
    ("-2@%r8w", UsdtArg(2, True, "reg", reg="r8w", text="-2@%r8w")),
    ("%rdx", UsdtArg(8, False, "reg", reg="rdx", text="%rdx")),
    ("4@0x601040", UsdtArg(4, False, "mem", offset=0x601040, address=0x601040,
                           text="4@0x601040")),
])
def test_parse_usdt_arg(text, want):
    assert parse_usdt_arg(text) == want


def test_parse_usdt_arg_unknown_kept():
    a = parse_usdt_arg("8@[sp, 16]")
    assert a.kind == "unknown" and a.text == "8@[sp, 16]"


def test_canonical_reg():
    assert usdtargs.canonical_reg("eax") == "rax"
    assert usdtargs.canonical_reg("%r9d") == "r9"
    assert usdtargs.canonical_reg("sil") == "rsi"
    assert usdtargs.canonical_reg("rbp") == "rbp"


# --------------------------------------------------------------------------------------------
# finding binaries


def _mapped_libc() -> str | None:
    with open("/proc/self/maps") as f:
        for line in f:
            p = line.split(None, 5)[-1].strip()
            if os.path.basename(p).startswith("libc.so") or \
                    (os.path.basename(p).startswith("libc-") and p.endswith(".so")):
                return p
    return None


def test_resolve_libc_and_malloc():
    libc = resolve_binary("libc")
    assert os.path.isabs(libc) and os.path.isfile(libc)
    mapped = _mapped_libc()
    if mapped:
        assert os.path.realpath(libc) == os.path.realpath(mapped)
    assert resolve_binary("libc.so.6") == libc or not os.path.basename(libc) == "libc.so.6"
    assert resolve_binary("c") == libc
    assert resolve_binary("libc.so") == libc          # not the linker script libc.so
    assert any(s.name == "malloc" and s.type == "func" for s in symbols(libc))
    assert find_symbols(libc, "malloc")[0].name == "malloc"
    assert symbol_offset(libc, "malloc") > 0


def test_resolve_with_pid_uses_maps():
    mapped = _mapped_libc()
    if not mapped:
        pytest.skip("python is not linked against a shared libc")
    assert resolve_binary("libc", pid=os.getpid()) == mapped


def test_resolve_executable_in_path():
    sh = resolve_binary("sh")
    assert os.path.isabs(sh) and os.access(sh, os.X_OK)
    assert resolve_binary("/bin/sh") == "/bin/sh"


def test_resolve_failures(tmp_path):
    with pytest.raises(LookupError) as e:
        resolve_binary("libdefinitely_not_here_xyz")
    msg = str(e.value)
    assert "libdefinitely_not_here_xyz" in msg and "ld.so.cache" in msg and "$PATH" in msg
    with pytest.raises(LookupError):
        resolve_binary(str(tmp_path / "nope"))


def test_resolve_ld_library_path(built, monkeypatch):
    monkeypatch.setenv("LD_LIBRARY_PATH", "/nonexistent:" + built["libdir"])
    assert resolve_binary("libptfix") == built["lib"]
    assert resolve_binary("ptfix") == built["lib"]
    assert resolve_binary("libptfix.so.1") == built["lib"]
    monkeypatch.delenv("LD_LIBRARY_PATH")
    with pytest.raises(LookupError) as e:
        resolve_binary("libptfix")
    assert "LD_LIBRARY_PATH" not in str(e.value)


def test_resolve_from_running_process(built, monkeypatch):
    monkeypatch.delenv("LD_LIBRARY_PATH", raising=False)
    env = dict(os.environ, LD_LIBRARY_PATH=built["libdir"])
    proc = subprocess.Popen([built["prog_lib"]], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        assert resolve_binary("libptfix", pid=proc.pid) == built["lib"]
        assert resolve_binary("prog_lib", pid=proc.pid) == built["prog_lib"]
        with pytest.raises(LookupError):
            resolve_binary("libptfix")                   # not without the process
    finally:
        proc.kill()
        proc.wait()


def test_ld_so_cache_matches_ldconfig():
    if not os.path.exists(libpath.LD_SO_CACHE) or not shutil.which("ldconfig"):
        pytest.skip("no /etc/ld.so.cache or ldconfig")
    entries = libpath.ld_so_cache()
    assert entries
    listed = set()
    for line in _run("ldconfig", "-p").splitlines()[1:]:
        if "=>" in line:
            left, path = line.split("=>", 1)
            listed.add((left.split()[0], path.strip()))
    assert listed == {(e[0], e[1]) for e in entries}


def test_ld_so_cache_format_synthetic():
    strings = b"libfoo.so.1\0/opt/x/libfoo.so.1\0"
    header_len = 48
    entry_len = 24
    str_base = header_len + entry_len
    head = b"glibc-ld.so.cache1.1" + struct.pack("<IIB3xI12x", 1, len(strings), 0, 0)
    entry = struct.pack("<iIIIQ", 0x0303, str_base, str_base + 12, 0, 0)
    data = head + entry + strings
    assert libpath._parse_ld_so_cache(data) == [("libfoo.so.1", "/opt/x/libfoo.so.1", 0x0303, 0)]
    # the same table after an (empty) old-format ld.so-1.7.0 table
    old = b"ld.so-1.7.0\0" + struct.pack("<I", 0)
    assert libpath._parse_ld_so_cache(old + data) == \
        [("libfoo.so.1", "/opt/x/libfoo.so.1", 0x0303, 0)]
    assert libpath._parse_ld_so_cache(b"garbage") == []
