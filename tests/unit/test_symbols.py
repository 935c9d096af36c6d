"""Stacks and symbols without the kernel: kallsyms lookups on a file laid out like it, frame
formatting in the three modes, user symbols of this very process, and the analysis errors."""
from __future__ import annotations

import ctypes
import os
import struct

import pytest

from ptrace_lang import spec as S
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.runtime import symbols
from ptrace_lang.runtime.format import (
    STYLE_OLD, MapData, Stack, format_map, format_map_json, format_value, value_text,
)
from ptrace_lang.runtime.printf import compile_format
from ptrace_lang.runtime.formatters import FORMATTERS

KALLSYMS = """\
0000000000000000 A fixed_percpu_data
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81001000 T do_one_initcall
ffffffff81002000 t helper.isra.0
ffffffff81003000 D jiffies_64
ffffffffc0201000 t ftrace_trampoline\t[__builtin__ftrace]
ffffffffc0300000 t ext4_lookup\t[ext4]
"""


@pytest.fixture
def fake_kernel(tmp_path, monkeypatch):
    path = tmp_path / "kallsyms"
    path.write_text(KALLSYMS)
    ks = symbols.KernelSymbols(str(path))
    monkeypatch.setattr(symbols, "_KSYMS", [ks])
    return str(path)


def test_kallsyms_lookup_bisects_and_keeps_the_first_name_at_an_address(fake_kernel):
    ks = symbols.kernel_symbols()
    assert ks.lookup(0xffffffff81000000) == ("_stext", 0, "")
    assert ks.lookup(0xffffffff81000fff) == ("_stext", 0xfff, "")
    assert ks.lookup(0xffffffff81001010) == ("do_one_initcall", 16, "")
    assert ks.lookup(0xffffffff81002003) == ("helper.isra.0", 3, "")
    assert ks.lookup(0xffffffffc0300044) == ("ext4_lookup", 0x44, "ext4")
    assert ks.lookup(0x1000) is None                    # below every symbol (0 ones are hidden)
    assert ks.address("jiffies_64") == 0xffffffff81003000
    assert ks.address("ext4_lookup") == 0xffffffffc0300000
    assert ks.address("fixed_percpu_data") is None


def test_kernel_address_searches_the_file_without_building_tables(fake_kernel):
    assert symbols.kernel_address("do_one_initcall", fake_kernel) == 0xffffffff81001000
    assert symbols.kernel_address("ext4_lookup", fake_kernel) == 0xffffffffc0300000
    assert symbols.kernel_address("one_initcall", fake_kernel) is None     # whole names only
    assert symbols.kernel_address("fixed_percpu_data", fake_kernel) is None
    assert symbols.kernel_address("nope", fake_kernel) is None


def test_ksym_text(fake_kernel):
    assert symbols.ksym_text(0xffffffff81001005, True) == "do_one_initcall+5"
    assert symbols.ksym_text(0xffffffff81001005, False) == "do_one_initcall"
    assert symbols.ksym_text(0x10, True) == "0x10"
    assert FORMATTERS["ksym"](struct.pack("<Q", 0xffffffff81002000), ()) == "helper.isra.0"


FRAMES = [0xffffffff81001005, 0xffffffff81002010, 0xffffffffc0300001]


class FakeStackMap:
    """Stands in for kernel.maps.Map: stack id -> u64 frames, zero padded to the value size."""

    def __init__(self, stacks: dict[int, list[int]], depth: int = 127) -> None:
        self.stacks = stacks
        self.depth = depth

    def lookup(self, key: bytes):
        (sid,) = struct.unpack("<I", key)
        if sid not in self.stacks:
            return None
        ips = self.stacks[sid]
        return struct.pack(f"<{self.depth}Q", *ips, *[0] * (self.depth - len(ips)))


@pytest.fixture
def stack_map(fake_kernel, monkeypatch):
    monkeypatch.setattr(symbols, "_MAPS", {"kstack_127": FakeStackMap({5: FRAMES})})


def kstack(sid: int, mode: str = "bpftrace"):
    return FORMATTERS["kstack"](struct.pack("<q", sid), (mode, 127, "kstack_127"))


def test_kstack_bpftrace_mode_in_map_keys_printf_and_print(stack_map):
    st = kstack(5)
    assert st == Stack(["do_one_initcall+5", "helper.isra.0+16", "ext4_lookup+1"])
    md = MapData("@", "count", [(st, 3)], keyed=True)
    assert format_map(md) == ("@[\n        do_one_initcall+5\n        helper.isra.0+16\n"
                              "        ext4_lookup+1\n]: 3\n")
    # bpftrace 0.17 indents map-key stacks by 4
    assert format_map(md, stats_style=STYLE_OLD).startswith("@[\n    do_one_initcall+5\n")
    assert compile_format("<%s>")([st]) == ("<\n        do_one_initcall+5\n        helper.isra.0+16\n"
                                           "        ext4_lookup+1\n>")
    assert format_value(st).endswith("ext4_lookup+1\n\n")
    md = MapData("@t", "count", [((st, "bash"), 1)], keyed=True)
    assert format_map(md).endswith("        ext4_lookup+1\n, bash]: 1\n")


def test_kstack_perf_and_raw_modes(stack_map):
    perf = kstack(5, "perf")
    assert value_text(perf) == ("\n\tffffffff81001005 do_one_initcall+5\n"
                                "\tffffffff81002010 helper.isra.0+16\n"
                                "\tffffffffc0300001 ext4_lookup+1\n")
    raw = kstack(5, "raw")
    assert value_text(raw) == "\nffffffff81001005\nffffffff81002010\nffffffffc0300001\n"
    for style in ("new", STYLE_OLD):            # the same in both output flavours
        md = MapData("@p", "count", [(perf, 2)], keyed=True)
        assert format_map(md, stats_style=style).startswith("@p[\n\tffffffff81001005 do_one_initcall+5\n")
        md = MapData("@r", "count", [(raw, 2)], keyed=True)
        assert format_map(md, stats_style=style).startswith("@r[\nffffffff81001005\n")
    # JSON keys keep the perf layout's spaces
    md = MapData("@p", "count", [(perf, 2)], keyed=True)
    assert '"\\n\\tffffffff81001005 do_one_initcall+5\\n' in format_map_json(md)


def test_no_stack_prints_as_nothing(stack_map):
    # -EFAULT (a kernel stack sampled in user mode) and an id the map does not hold
    assert value_text(kstack(-14)) == ""
    assert value_text(kstack(9)) == ""
    assert value_text(kstack(9, "perf")) == ""
    assert format_map(MapData("@", "count", [(kstack(-14), 7)], keyed=True)) == "@[]: 7\n"


# ------------------------------------------------------------------------------ user symbols

def libc_function(name: str) -> int:
    libc = ctypes.CDLL(None)
    return ctypes.cast(getattr(libc, name), ctypes.c_void_p).value


def test_user_symbols_of_this_process():
    symbols.forget_processes()
    addr = libc_function("getpid")
    name, off, path = symbols.usym_lookup(addr + 2, os.getpid())
    assert (name, off) in (("getpid", 2), ("__getpid", 2))
    assert "libc" in path
    assert symbols.usym_text(addr, os.getpid(), False) in ("getpid", "__getpid")
    raw = struct.pack("<QQ", addr, os.getpid())
    assert FORMATTERS["usym"](raw, ()) in ("getpid", "__getpid")


def test_user_stack_perf_mode_names_the_file_and_unknown_frames(monkeypatch):
    symbols.forget_processes()
    addr = libc_function("getpid")
    monkeypatch.setattr(symbols, "_MAPS", {"ustack_127": FakeStackMap({1: [addr, 0x10]})})
    raw = struct.pack("<qQ", 1, os.getpid())
    text = value_text(FORMATTERS["ustack"](raw, ("perf", 127, "ustack_127")))
    lines = text.split("\n")
    assert lines[0] == ""
    assert lines[1].startswith(f"\t{addr:x} ") and "getpid+0 (/" in lines[1] and "libc" in lines[1]
    assert lines[2] == "\t10 0x10 ([unknown])"
    st = FORMATTERS["ustack"](raw, ("bpftrace", 127, "ustack_127"))
    assert st.frames[0] in ("getpid+0", "__getpid+0") and st.frames[1] == "0x10"


def test_user_symbols_of_a_process_gone_are_hex():
    symbols.forget_processes()
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    addr = libc_function("getpid")
    assert symbols.usym_text(addr, pid, False) == f"0x{addr:x}"


# ------------------------------------------------------------------------------ analysis

def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options())
    return info.value.render(SOURCES)


ERRORS = [
    ('BEGIN { @ = reg("ip"); }',
     'stdin:1:13-22: ERROR: reg can not be used with "begin" probes\n'
     'BEGIN { @ = reg("ip"); }\n'
     '            ~~~~~~~~~'),
    ('profile:hz:99 { @ = reg("xx"); }',
     "stdin:1:21-30: ERROR: 'xx' is not a valid register on this architecture (x86_64)\n"
     'profile:hz:99 { @ = reg("xx"); }\n'
     "                    ~~~~~~~~~\n"
     "HINT: valid registers: r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, "
     "orig_ax, ip, cs, flags, sp, ss"),
    ('profile:hz:99 { @ = reg(1); }',
     "stdin:1:21-27: ERROR: reg() expects a string literal (integer provided)"),
    ("BEGIN { @ = kaddr(1); }", "stdin:1:13-21: ERROR: kaddr() expects a string literal (integer provided)\n"
     "BEGIN { @ = kaddr(1); }\n            ~~~~~~~~\nHINT: kaddr(const char *name)"),
    ('BEGIN { @ = uaddr("x"); }', 'stdin:1:13-23: ERROR: uaddr can not be used with "begin" probes'),
    ("BEGIN { @ = kstack(foo); }", "stdin:1:20-23: ERROR: kstack(): unknown stack mode 'foo'\n"
     "BEGIN { @ = kstack(foo); }\n                   ~~~\n"
     "HINT: kstack([mode][, limit]): mode is bpftrace, perf or raw; limit 1 to 1024"),
    ("BEGIN { @ = ustack(1, 2, 3); }", "stdin:1:13-28: ERROR: ustack() takes up to 2 arguments (3 provided)"),
    ("BEGIN { @ = kstack(perf, 0); }",
     "stdin:1:26-27: ERROR: kstack(): the limit must be between 1 and 1024, 0 given"),
    ("BEGIN { @ = kstack(perf, 2000); }",
     "stdin:1:26-30: ERROR: kstack(): the limit must be between 1 and 1024, 2000 given"),
    ('BEGIN { @ = kstack("perf"); }',
     "stdin:1:20-26: ERROR: kstack() expects an integer literal as its limit (string provided)"),
    ("BEGIN { @ = ksym(); }", "stdin:1:13-19: ERROR: ksym() requires 1 argument (0 provided)\n"
     "BEGIN { @ = ksym(); }\n            ~~~~~~\nHINT: ksym(uint64 addr)"),
    ('BEGIN { @ = usym("a"); }',
     "stdin:1:18-21: ERROR: usym() expects an integer or pointer argument (string provided)"),
    ('BEGIN { @ = kptr("a"); }',
     "stdin:1:18-21: ERROR: kptr() expects an integer or pointer argument (string provided)"),
    ("config = { stack_mode = foo } BEGIN { }",
     "stdin:1:25-28: ERROR: Invalid value for stack_mode: foo. Valid values: bpftrace, perf, raw"),
]


@pytest.mark.parametrize("src,expected", ERRORS, ids=[e[0] for e in ERRORS])
def test_errors(src, expected):
    assert error_of(src).startswith(expected)


def stack_map_specs(spec) -> dict[str, tuple]:
    return {m.name: (m.key_size, m.value_size, m.max_entries) for m in spec.maps if m.map_type == 7}


def test_stack_maps_per_kind_and_limit_and_value_layouts():
    c = compile_script("profile:hz:99 { @a[kstack] = count(); @b[kstack(perf, 5)] = count(); "
                       "@c[ustack(3), comm] = count(); @d[kstack(raw)] = count(); "
                       "printf(\"%s %s\\n\", ksym(reg(\"ip\")), usym(reg(\"ip\"))); }",
                       "stdin", Options())
    assert stack_map_specs(c.spec) == {"kstack_127": (4, 1016, 4096), "kstack_5": (4, 40, 4096),
                                      "ustack_3": (4, 24, 4096)}
    keys = {um.name: um.key for um in c.spec.user_maps}
    assert (keys["@a"].kind, keys["@a"].fmt, keys["@a"].size, keys["@a"].aux) == \
        ("user", "kstack", 8, ("bpftrace", 127, "kstack_127"))
    assert keys["@b"].aux == ("perf", 5, "kstack_5")
    assert keys["@d"].aux == ("raw", 127, "kstack_127")
    ustack = keys["@c"].fields[0]
    assert (ustack.fmt, ustack.size, ustack.aux) == ("ustack", 16, ("bpftrace", 3, "ustack_3"))
    ev = [e for e in c.spec.events if e.kind == S.EV_PRINTF][0]
    assert [(a.fmt, a.size) for a in ev.args] == [("ksym", 8), ("usym", 16)]


def test_no_stack_map_without_stacks():
    c = compile_script("profile:hz:99 { @ = count(); }", "stdin", Options())
    assert stack_map_specs(c.spec) == {}


def test_stack_mode_config_and_environment(monkeypatch):
    c = compile_script("config = { stack_mode = perf } profile:hz:99 { @[kstack] = count(); }",
                       "stdin", Options())
    assert c.spec.user_maps[0].key.aux == ("perf", 127, "kstack_127")
    monkeypatch.setenv("BPFTRACE_STACK_MODE", "raw")
    c = compile_script("profile:hz:99 { @[ustack] = count(); }", "stdin", Options())
    assert c.spec.user_maps[0].key.aux == ("raw", 127, "ustack_127")
