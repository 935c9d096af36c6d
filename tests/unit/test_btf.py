"""BTF reader: synthetic blobs built by a tiny encoder below (every kind, anonymous members,
bitfields, enum signedness, split BTF, both byte orders), then the running kernel's BTF when
/sys/kernel/btf/vmlinux is readable (skipped otherwise, with the reason printed)."""
from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import time

import pytest

from ptrace_lang.btf import (BTF, Array, BTFError, Const, Datasec, DeclTag, Enum, Float, Func,
                             FuncProto, Fwd, Int, Member, Ptr, Restrict, Struct, Typedef,
                             TypeTag, Union, Var, Void, Volatile)

# --------------------------------------------------------------------------------------------
# a tiny BTF encoder (layout from linux/btf.h)

K = dict(int=1, ptr=2, array=3, struct=4, union=5, enum=6, fwd=7, typedef=8, volatile=9,
         const=10, restrict=11, func=12, func_proto=13, var=14, datasec=15, float=16,
         decl_tag=17, type_tag=18, enum64=19)


class Enc:
    def __init__(self, base: "Enc | None" = None, order: str = "<", lead_nul: bool = True):
        self.order = order
        self.base = base
        self.str_base = base.str_base + len(base.strs) if base else 0
        self.strs = bytearray(b"\0" if (base is None or lead_nul) else b"")
        self.next_id = base.next_id if base else 1
        self.types = bytearray()

    def s(self, name: str) -> int:
        if not name:
            return 0
        enc = self
        while enc is not None:          # reuse a base string, as split BTF does
            data = bytes(enc.strs)
            i = data.find(b"\0" + name.encode() + b"\0")
            if i >= 0:
                return enc.str_base + i + 1
            if data.startswith(name.encode() + b"\0"):
                return enc.str_base
            enc = enc.base
        off = self.str_base + len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(self, kind: str, name: str, st: int, vlen: int = 0, kflag: int = 0,
            tail=()) -> int:
        info = (kflag << 31) | (K[kind] << 24) | vlen
        self.types += struct.pack(self.order + "III", self.s(name), info, st)
        for word in tail:
            self.types += struct.pack(self.order + ("i" if word < 0 else "I"), word)
        tid = self.next_id
        self.next_id += 1
        return tid

    # one method per kind
    def int_(self, name, size, signed=False, bits=None, char=False, boolean=False, off=0):
        enc = (1 if signed else 0) | (2 if char else 0) | (4 if boolean else 0)
        bits = size * 8 if bits is None else bits
        return self.add("int", name, size, tail=[(enc << 24) | (off << 16) | bits])

    def ptr(self, t):
        return self.add("ptr", "", t)

    def array(self, elem, n, index=0):
        return self.add("array", "", 0, tail=[elem, index, n])

    def composite(self, kind, name, size, members, kflag=None):
        if kflag is None:
            kflag = int(any(m[3] for m in members))
        tail = []
        for mname, mtype, bitoff, bfsize in members:
            tail += [self.s(mname), mtype, (bfsize << 24 | bitoff) if kflag else bitoff]
        return self.add(kind, name, size, len(members), kflag, tail)

    def enum(self, name, values, signed=False, size=4):
        tail = []
        for n, v in values:
            tail += [self.s(n), v & 0xFFFFFFFF]
        return self.add("enum", name, size, len(values), int(signed), tail)

    def enum64(self, name, values, signed=False, size=8):
        tail = []
        for n, v in values:
            v &= (1 << 64) - 1
            tail += [self.s(n), v & 0xFFFFFFFF, v >> 32]
        return self.add("enum64", name, size, len(values), int(signed), tail)

    def func_proto(self, ret, params, variadic=False):
        tail = []
        for n, t in params:
            tail += [self.s(n), t]
        if variadic:
            tail += [0, 0]
        return self.add("func_proto", "", ret, len(params) + variadic, tail=tail)

    def blob(self) -> bytes:
        hdr = struct.pack(self.order + "HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(self.types),
                          len(self.types), len(self.strs))
        return hdr + bytes(self.types) + bytes(self.strs)


def build_everything(order: str = "<"):
    """One blob with every kind; returns (blob, ids)."""
    e = Enc(order=order)
    ids = {}
    ids["uint"] = e.int_("unsigned int", 4)
    ids["int"] = e.int_("int", 4, signed=True)
    ids["char"] = e.int_("char", 1, signed=True, char=True)
    ids["bool"] = e.int_("_Bool", 1, boolean=True)
    ids["u64"] = e.int_("long long unsigned int", 8)
    ids["pchar"] = e.ptr(ids["char"])
    ids["comm"] = e.array(ids["char"], 16, ids["uint"])
    ids["fwd_task"] = e.add("fwd", "task", 0)
    ids["task"] = e.add("struct", "task", 0)        # placeholder id, patched below
    ids["ptask"] = e.ptr(ids["task"])
    ids["pid_t"] = e.add("typedef", "pid_t", ids["int"])
    ids["vol"] = e.add("volatile", "", ids["int"])
    ids["cint"] = e.add("const", "", ids["int"])
    ids["restr"] = e.add("restrict", "", ids["pchar"])
    ids["tag"] = e.add("type_tag", "user", ids["char"])
    ids["ptag"] = e.ptr(ids["tag"])
    ids["cptr"] = e.add("const", "", ids["pchar"])
    # anonymous union inside the struct, holding an anonymous struct
    ids["anon_s"] = e.composite("struct", "", 8, [("lo", ids["uint"], 0, 0),
                                                  ("hi", ids["uint"], 32, 0)])
    ids["anon_u"] = e.composite("union", "", 8, [("whole", ids["u64"], 0, 0),
                                                 ("", ids["anon_s"], 0, 0)])
    ids["flags"] = e.composite("struct", "flags", 4, [("a", ids["uint"], 0, 1),
                                                      ("b", ids["uint"], 1, 3),
                                                      ("c", ids["uint"], 8, 0)])
    ids["fwd_u"] = e.add("fwd", "bpf_attr", 0, kflag=1)
    ids["senum"] = e.enum("sign", [("NEG", -2), ("POS", 5)], signed=True)
    ids["uenum"] = e.enum("usign", [("BIG", 0xFFFFFFFF), ("ZERO", 0)])
    ids["e64s"] = e.enum64("s64", [("MIN", -(1 << 63)), ("ONE", 1)], signed=True)
    ids["e64u"] = e.enum64("u64e", [("TOP", (1 << 64) - 1)])
    ids["proto"] = e.func_proto(ids["int"], [("t", ids["ptask"]), ("buf", ids["ptag"])])
    ids["func"] = e.add("func", "do_it", ids["proto"], vlen=1)
    ids["vproto"] = e.func_proto(ids["int"], [("fmt", ids["pchar"])], variadic=True)
    ids["printk"] = e.add("func", "printk", ids["vproto"], vlen=1)
    ids["fnptr"] = e.ptr(ids["proto"])
    ids["parr"] = e.ptr(ids["comm"])
    ids["var"] = e.add("var", "jiffies", ids["u64"], tail=[1])
    ids["sec"] = e.add("datasec", ".data", 8, vlen=1, tail=[ids["var"], 0, 8])
    ids["float"] = e.add("float", "double", 8)
    ids["decl"] = e.add("decl_tag", "kfunc", ids["func"], tail=[-1])
    ids["decl_arg"] = e.add("decl_tag", "nonnull", ids["func"], tail=[1])
    ids["grid"] = e.array(ids["comm"], 2)
    ids["void_p"] = e.ptr(0)
    # the real struct task (the placeholder above is replaced by patching the type bytes)
    members = [("pid", ids["pid_t"], 0, 0), ("comm", ids["comm"], 32, 0),
               ("", ids["anon_u"], 192, 0), ("parent", ids["ptask"], 256, 0),
               ("fl", ids["flags"], 320, 0), ("grid", ids["grid"], 352, 0)]
    real = Enc(order=order)
    real.strs = e.strs
    body = real.composite("struct", "task", 80, members)
    real_bytes = bytes(real.types)
    e.strs = real.strs
    # splice: find the placeholder (12 bytes) and replace it with the full record
    start = _record_start(e, ids["task"])
    e.types[start:start + 12] = real_bytes
    assert body == 1
    return e, ids


def _record_start(e: Enc, tid: int) -> int:
    """Byte offset of type tid in e.types (walking like the kernel does)."""
    pos, cur = 0, 1
    extra = {1: 1, 3: 3, 14: 1, 17: 1}
    per = {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}
    while cur < tid:
        info = struct.unpack_from(e.order + "I", e.types, pos + 4)[0]
        kind, vlen = (info >> 24) & 31, info & 0xFFFF
        pos += 4 * (3 + extra.get(kind, 0) + vlen * per.get(kind, 0))
        cur += 1
    return pos


@pytest.fixture(params=["<", ">"], ids=["little", "big"])
def synth(request):
    e, ids = build_everything(request.param)
    return BTF.from_bytes(e.blob()), ids


# --------------------------------------------------------------------------------------------
# synthetic blobs


def test_every_kind_decodes(synth):
    b, i = synth
    assert b.nr_types == max(i.values())
    assert b.get(0) == Void()
    assert b.get(i["uint"]) == Int("unsigned int", 4, False, 32, False, False)
    assert b.get(i["char"]) == Int("char", 1, True, 8, True, False)
    assert b.get(i["bool"]).is_bool and not b.get(i["bool"]).signed
    assert b.get(i["pchar"]) == Ptr(i["char"])
    assert b.get(i["comm"]) == Array(i["char"], 16, i["uint"])
    assert b.get(i["fwd_task"]) == Fwd("task", False)
    assert b.get(i["fwd_u"]) == Fwd("bpf_attr", True)
    assert b.get(i["pid_t"]) == Typedef("pid_t", i["int"])
    assert b.get(i["vol"]) == Volatile(i["int"])
    assert b.get(i["cint"]) == Const(i["int"])
    assert b.get(i["restr"]) == Restrict(i["pchar"])
    assert b.get(i["tag"]) == TypeTag(i["char"], "user")
    assert b.get(i["func"]) == Func("do_it", i["proto"], 1)
    assert b.get(i["proto"]) == FuncProto(i["int"], [("t", i["ptask"]), ("buf", i["ptag"])],
                                          False)
    assert b.get(i["vproto"]) == FuncProto(i["int"], [("fmt", i["pchar"])], True)
    assert b.get(i["var"]) == Var("jiffies", i["u64"], 1)
    assert b.get(i["sec"]) == Datasec(".data", 8, [(i["var"], 0, 8)])
    assert b.get(i["float"]) == Float("double", 8)
    assert b.get(i["decl"]) == DeclTag("kfunc", i["func"], -1)
    assert b.get(i["decl_arg"]) == DeclTag("nonnull", i["func"], 1)
    task = b.get(i["task"])
    assert isinstance(task, Struct) and task.name == "task" and task.size == 80
    assert task.members[0] == Member("pid", i["pid_t"], 0, 0)
    assert task.members[2] == Member("", i["anon_u"], 192, 0)
    assert isinstance(b.get(i["anon_u"]), Union) and b.get(i["anon_u"]).name == ""
    assert b.get(i["task"]) is task and task.id == i["task"]      # cached
    assert b.kind_of(i["task"]) == "struct" and b.name_of(i["task"]) == "task"
    assert b.kind_of(0) == "void" and b.kind_of(i["e64u"]) == "enum64"
    with pytest.raises(BTFError):
        b.get(b.nr_types + 1)


def test_bitfields(synth):
    b, i = synth
    fl = b.get(i["flags"])
    assert [(m.name, m.bit_offset, m.bitfield_size) for m in fl.members] == \
        [("a", 0, 1), ("b", 1, 3), ("c", 8, 0)]
    assert b.member(i["flags"], "b") == (1, i["uint"], 3)
    assert b.member_path(i["task"], "fl.b") == (321, i["uint"], 3)
    assert b.offsetof(i["task"], "fl.c") == 41
    with pytest.raises(BTFError, match="bitfield"):
        b.offsetof(i["task"], "fl.b")


def test_anonymous_members(synth):
    b, i = synth
    assert b.member(i["task"], "whole") == (192, i["u64"], 0)
    assert b.member(i["task"], "hi") == (224, i["uint"], 0)
    assert b.offsetof(i["task"], "hi") == 28
    assert b.offsetof("struct task", "comm") == 4
    flat = [name for name, *_ in b.members(i["task"])]
    assert flat == ["pid", "comm", "whole", "lo", "hi", "parent", "fl", "grid"]
    with pytest.raises(BTFError, match="no member named 'nope'"):
        b.member(i["task"], "nope")
    with pytest.raises(BTFError, match="not a struct"):
        b.member(i["int"], "x")


def test_member_paths_with_subscripts(synth):
    b, i = synth
    assert b.offsetof(i["task"], "comm[3]") == 7
    assert b.offsetof(i["task"], "grid[1][2]") == 44 + 16 + 2
    assert b.member_path(i["task"], "grid[1]")[1] == i["comm"]
    for bad in ("", "comm.", ".comm", "comm[16]", "pid[0]", "comm[1", "pid comm"):
        with pytest.raises(BTFError):
            b.member_path(i["task"], bad)


def test_enum_signedness(synth):
    b, i = synth
    s = b.get(i["senum"])
    assert s == Enum("sign", 4, True, {"NEG": -2, "POS": 5}, False)
    assert s.name_of(-2) == "NEG" and s.name_of(7) is None
    u = b.get(i["uenum"])
    assert not u.signed and u.values == {"BIG": 0xFFFFFFFF, "ZERO": 0}
    s64 = b.get(i["e64s"])
    assert s64.is64 and s64.signed and s64.values == {"MIN": -(1 << 63), "ONE": 1}
    assert b.get(i["e64u"]).values == {"TOP": (1 << 64) - 1}
    assert b.find("s64", "enum") == i["e64s"] and b.find("s64", "enum64") == i["e64s"]
    assert b.find("sign", "enum64") is None


def test_find_and_lookup(synth):
    b, i = synth
    assert b.find("task") == i["task"]                 # the definition beats the fwd
    assert b.find("task", "fwd") == i["fwd_task"]
    assert b.find("task", "struct") == i["task"]
    assert b.find_all("task") == [i["fwd_task"], i["task"]]
    assert b.find("bpf_attr") == i["fwd_u"]            # only a fwd: still found
    assert b.find("task", "union") is None
    assert b.find("nothing") is None and b.find("") is None
    assert b.find("tas") is None and b.find("ask") is None   # no partial string matches
    assert b.find("do_it", "func") == i["func"]
    assert b.find("kfunc", "decl_tag") == i["decl"]
    assert b.find("unsigned int") == i["uint"]
    assert b.lookup("struct task") == i["task"] and b.lookup("pid_t") == i["pid_t"]
    assert b.lookup("unsigned   int") == i["uint"]
    with pytest.raises(BTFError):
        b.lookup("struct nothing")
    with pytest.raises(BTFError):
        b.find("task", "structure")


def test_resolve_and_sizes(synth):
    b, i = synth
    assert b.resolve(i["pid_t"]) == i["int"]
    assert b.resolve(i["cptr"]) == i["pchar"]
    assert b.resolve(i["tag"]) == i["char"]
    assert b.resolve(0) == 0
    assert b.size_of(i["pid_t"]) == 4
    assert b.size_of(i["comm"]) == 16
    assert b.size_of(i["grid"]) == 32
    assert b.size_of(i["ptask"]) == 8
    assert b.size_of("struct task") == 80
    assert b.size_of(i["senum"]) == 4 and b.size_of(i["e64u"]) == 8
    assert b.size_of(i["var"]) == 8 and b.size_of(i["float"]) == 8
    for bad in (0, i["fwd_task"], i["proto"], i["func"]):
        with pytest.raises(BTFError):
            b.size_of(bad)


def test_type_names(synth):
    b, i = synth
    assert b.type_name(0) == "void"
    assert b.type_name(i["void_p"]) == "void *"
    assert b.type_name(i["uint"]) == "unsigned int"
    assert b.type_name(i["comm"]) == "char[16]"
    assert b.type_name(i["grid"]) == "char[2][16]"
    assert b.type_name(i["ptask"]) == "struct task *"
    assert b.type_name(b.member(i["task"], "parent")[1]) == "struct task *"
    assert b.type_name(i["pid_t"]) == "pid_t"
    assert b.type_name(i["cint"]) == "const int"
    assert b.type_name(i["vol"]) == "volatile int"
    assert b.type_name(i["cptr"]) == "char * const"
    assert b.type_name(i["restr"]) == "char * restrict"
    assert b.type_name(i["ptag"]) == "char *"
    assert b.type_name(i["parr"]) == "char (*)[16]"
    assert b.type_name(i["fnptr"]) == "int (*)(struct task *, char *)"
    assert b.type_name(i["func"]) == "int do_it(struct task *, char *)"
    assert b.type_name(i["printk"]) == "int printk(char *, ...)"
    assert b.type_name(i["anon_u"]) == "union {...}"
    assert b.type_name(i["fwd_u"]) == "union bpf_attr"
    assert b.type_name(i["senum"]) == "enum sign"
    assert b.type_name(i["float"]) == "double"
    assert b.type_name("struct task") == "struct task"


def test_func_proto(synth):
    b, i = synth
    fp = b.func_proto("do_it")
    assert [n for n, _ in fp.params] == ["t", "buf"] and fp.ret == i["int"]
    assert b.func_proto("printk").variadic
    assert b.func_proto("nothing") is None
    assert b.func_proto("task") is None                # a struct, not a function


def _split_pair(lead_nul: bool):
    base = Enc()
    b_int = base.int_("int", 4, signed=True)
    b_task = base.composite("struct", "task", 8, [("pid", b_int, 0, 0)])
    base.add("struct", "only_in_base", 0)
    split = Enc(base, lead_nul=lead_nul)
    s_dev = split.composite("struct", "net_device", 16, [("owner", split.ptr(b_task), 0, 0),
                                                          ("ifindex", b_int, 64, 0)])
    s_mod = split.add("typedef", "modint", b_int)
    s_int = split.add("typedef", "int", b_int)         # a split name equal to a base name
    return base, split, b_int, b_task, s_dev, s_mod, s_int


@pytest.mark.parametrize("lead_nul", [True, False])
def test_split_btf(lead_nul):
    base_e, split_e, b_int, b_task, s_dev, s_mod, s_int = _split_pair(lead_nul)
    base = BTF.from_bytes(base_e.blob())
    split = BTF.from_bytes(split_e.blob(), base=base)
    assert split.nr_types == split_e.next_id - 1 and s_dev > base.nr_types
    assert split.find("net_device", "struct") == s_dev
    assert base.find("net_device") is None
    assert split.find("task", "struct") == b_task        # base types are visible
    assert split.find_all("int") == [b_int, s_int]       # base first, like libbpf
    assert split.find("modint") == s_mod
    dev = split.get(s_dev)
    assert dev.name == "net_device" and dev.members[1] == Member("ifindex", b_int, 64, 0)
    assert split.type_name(split.member(s_dev, "owner")[1]) == "struct task *"
    assert split.offsetof(s_dev, "ifindex") == 8
    assert split.get(b_task) is base.get(b_task)
    assert split.resolve(s_mod) == b_int and split.size_of(s_mod) == 4
    assert split.name_of(s_mod) == "modint" and split.name_of(b_task) == "task"
    with pytest.raises(BTFError):
        split.get(split.nr_types + 1)


def test_malformed_blobs():
    e, _ = build_everything()
    good = e.blob()
    with pytest.raises(BTFError, match="magic"):
        BTF.from_bytes(b"\0\0" + good[2:])
    with pytest.raises(BTFError):
        BTF.from_bytes(good[:10])
    # a type section claiming one more member than it holds
    hdr = bytearray(good[:24])
    struct.pack_into("<I", hdr, 12, len(e.types) - 4)        # type_len shorter
    with pytest.raises(BTFError):
        BTF.from_bytes(bytes(hdr) + good[24:])
    bad_kind = Enc()
    bad_kind.types += struct.pack("<III", 0, 25 << 24, 0)
    with pytest.raises(BTFError, match="kind"):
        BTF.from_bytes(bad_kind.blob())
    empty = BTF.from_bytes(Enc().blob())
    assert empty.nr_types == 0 and empty.find("x") is None


# --------------------------------------------------------------------------------------------
# the running kernel's BTF

VMLINUX = "/sys/kernel/btf/vmlinux"


@pytest.fixture(scope="module")
def vmlinux():
    try:
        with open(VMLINUX, "rb") as f:
            f.read(1)
    except OSError as exc:
        reason = f"{VMLINUX} unreadable: {exc}"
        print(reason)
        pytest.skip(reason)
    return BTF.vmlinux()


def _independent_struct(path: str, name: str) -> dict:
    """A second, straight-line decoder: walk every record with struct.unpack_from until the
    STRUCT called `name`; return {member: (bit offset, bitfield size)}."""
    data = open(path, "rb").read()
    _, _, _, hdr_len, toff, tlen, soff, slen = struct.unpack_from("<HBBIIIII", data)
    strs = data[hdr_len + soff:hdr_len + soff + slen]

    def s(off):
        return strs[off:strs.index(b"\0", off)].decode()

    pos, end = hdr_len + toff, hdr_len + toff + tlen
    while pos < end:
        name_off, info, _ = struct.unpack_from("<III", data, pos)
        kind, vlen, kflag = (info >> 24) & 31, info & 0xFFFF, info >> 31
        pos += 12
        if kind == 4 and s(name_off) == name:
            out = {}
            for k in range(vlen):
                mn, _, mo = struct.unpack_from("<III", data, pos + 12 * k)
                out[s(mn)] = (mo & 0xFFFFFF, mo >> 24) if kflag else (mo, 0)
            return out
        pos += 4 * {1: 1, 3: 3, 14: 1, 17: 1}.get(kind, 0)
        pos += 4 * vlen * {4: 3, 5: 3, 6: 2, 13: 2, 15: 3, 19: 3}.get(kind, 0)
    raise AssertionError(f"struct {name} not found by the independent decoder")


def _bpftool_members(struct_id: int) -> dict | None:
    tool = shutil.which("bpftool")
    if tool is None:
        return None
    out = subprocess.run([tool, "btf", "dump", "file", VMLINUX, "format", "raw"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        return None
    members, inside = {}, False
    for line in out.stdout.splitlines():
        if line.startswith("["):
            inside = line.startswith(f"[{struct_id}] STRUCT")
        elif inside:
            m = re.match(r"\s+'([^']*)' type_id=\d+ bits_offset=(\d+)(?: bitfield_size=(\d+))?",
                         line)
            if m:
                members[m.group(1)] = (int(m.group(2)), int(m.group(3) or 0))
    return members


def test_vmlinux_task_struct(vmlinux):
    b = vmlinux
    tid = b.find("task_struct", "struct")
    assert tid is not None
    pid_off, pid_type, bf = b.member(tid, "pid")
    pid = b.get(b.resolve(pid_type))
    assert isinstance(pid, Int) and pid.size == 4 and pid.signed and bf == 0
    assert b.size_of(pid_type) == 4
    assert b.type_name(b.member(tid, "comm")[1]) == "char[16]"
    comm = b.get(b.resolve(b.member(tid, "comm")[1]))
    assert isinstance(comm, Array) and comm.nelems == 16
    assert b.get(comm.elem).name == "char" and b.size_of(comm.elem) == 1   # pahole sets no
    # CHAR encoding bit for the kernel's (unsigned) char
    assert b.type_name(b.member(tid, "parent")[1]) == "struct task_struct *"
    assert b.offsetof(tid, "pid") == pid_off // 8


def test_vmlinux_offsets_cross_checked(vmlinux):
    b = vmlinux
    tid = b.find("task_struct", "struct")
    task = b.get(tid)
    ours = {m.name: (m.bit_offset, m.bitfield_size) for m in task.members}
    oracle = _bpftool_members(tid)
    if oracle is None:
        print("bpftool not available: cross-checking against an independent decoder")
        oracle = _independent_struct(VMLINUX, "task_struct")
    assert ours == oracle
    # internal consistency: offsets never decrease, every member fits in the struct
    prev = -1
    for m in task.members:
        assert m.bit_offset >= prev
        prev = m.bit_offset
        if m.bitfield_size:
            assert m.bit_offset + m.bitfield_size <= task.size * 8
        else:
            assert m.bit_offset % 8 == 0
            assert m.bit_offset // 8 + b.size_of(m.type_id) <= task.size
    assert 1000 < task.size < 1 << 16


def test_vmlinux_functions_and_names(vmlinux):
    b = vmlinux
    fp = b.func_proto("vfs_read")
    assert fp is not None
    assert [n for n, _ in fp.params] == ["file", "buf", "count", "pos"]
    assert b.type_name(fp.params[0][1]) == "struct file *"
    assert b.size_of(fp.ret) == 8
    assert b.type_name(b.find("unsigned int")) == "unsigned int"
    pid_type = b.get(b.find("pid_type", "enum"))
    assert pid_type.values["PIDTYPE_PID"] == 0
    # an anonymous member reached through member(): sk_buff's 'next' lives in unions
    skb = b.find("sk_buff", "struct")
    assert b.member(skb, "next")[0] == 0
    assert b.offsetof("struct task_struct", "se.vruntime") > 0


def test_vmlinux_open_find_get(vmlinux):
    """Opens, finds and decodes; prints the times for the record (no timing assertion)."""
    data = open(VMLINUX, "rb").read()
    t0 = time.perf_counter()
    b = BTF.from_bytes(data)
    t1 = time.perf_counter()
    tid = b.find("task_struct", "struct")
    t2 = time.perf_counter()
    b.get(tid)
    t3 = time.perf_counter()
    print(f"BTF open {1e3 * (t1 - t0):.1f} ms ({b.nr_types} types), first find "
          f"{1e3 * (t2 - t1):.1f} ms, get task_struct {1e3 * (t3 - t2):.1f} ms")
    assert b.nr_types > 1000 and tid is not None


def test_module_split_btf_if_loaded(vmlinux):
    mods = sorted(n for n in os.listdir(os.path.dirname(VMLINUX)) if n != "vmlinux")
    if not mods:
        print("no module BTF under /sys/kernel/btf")
        pytest.skip("no module BTF under /sys/kernel/btf")
    m = BTF.module(mods[0])
    assert m.base is vmlinux and m.nr_types >= vmlinux.nr_types
    assert m.find("task_struct", "struct") == vmlinux.find("task_struct", "struct")
