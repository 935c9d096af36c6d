"""A lazy reader of BPF Type Format (BTF): the kernel's description of its own types.

Opening ``/sys/kernel/btf/vmlinux`` (~5.5 MB, ~130k types) only reads the file, checks the
header and walks the type section once to record where each type starts (one word offset per
type, no per-type objects). Everything else happens on demand:

* ``find(name, kind)`` looks the name up in the string section with ``bytes.find`` and then
  looks for that string offset among the types' ``name_off`` words (packed once, on the first
  call, into a byte string searched the same way); results are cached per name.
* ``get(type_id)`` decodes one type into a small record (``Int``, ``Ptr``, ``Struct``...),
  cached per id.

Split BTF (kernel modules, ``/sys/kernel/btf/<module>``) continues the base's type ids and
string offsets; ``BTF.from_bytes(data, base=BTF.vmlinux())`` or ``BTF.module(name)`` read it.

Layout facts come from ``linux/btf.h``: a 24-byte header (magic 0xeB9F, version 1, hdr_len,
type_off/type_len, str_off/str_len relative to the header's end), then 12-byte ``btf_type``
records (name_off, info = kflag:1 kind:5 vlen:16, size-or-type) each followed by a per-kind
tail: INT 1 word, ARRAY 3, VAR 1, DECL_TAG 1, STRUCT/UNION/DATASEC/ENUM64 3 words per vlen,
ENUM/FUNC_PROTO 2 words per vlen.
"""
from __future__ import annotations

import array
import os
import re
import struct
import sys
from operator import itemgetter

from ptrace_lang.records import dataclass, field

__all__ = [
    "BTF", "BTFError", "Type", "Void", "Int", "Ptr", "Array", "Member", "Struct", "Union",
    "Enum", "Fwd", "Typedef", "Volatile", "Const", "Restrict", "Func", "FuncProto", "Var",
    "Datasec", "Float", "DeclTag", "TypeTag", "KIND_NAMES",
]

BTF_MAGIC = 0xEB9F
VMLINUX_PATH = "/sys/kernel/btf/vmlinux"

(KIND_UNKN, KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_FWD,
 KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR,
 KIND_DATASEC, KIND_FLOAT, KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64) = range(20)

KIND_NAMES = ("void", "int", "ptr", "array", "struct", "union", "enum", "fwd", "typedef",
              "volatile", "const", "restrict", "func", "func_proto", "var", "datasec", "float",
              "decl_tag", "type_tag", "enum64")
_KIND_BY_NAME = {n: (i,) for i, n in enumerate(KIND_NAMES)}
_KIND_BY_NAME["enum"] = (KIND_ENUM, KIND_ENUM64)   # either width answers "enum X"

# words after the 3-word btf_type header: fixed part, and words per vlen entry
_EXTRA = {KIND_INT: 1, KIND_ARRAY: 3, KIND_VAR: 1, KIND_DECL_TAG: 1}
_PER_VLEN = {KIND_STRUCT: 3, KIND_UNION: 3, KIND_ENUM: 2, KIND_FUNC_PROTO: 2,
             KIND_DATASEC: 3, KIND_ENUM64: 3}
_MODIFIERS = (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG)

PTR_SIZE = 8


class BTFError(Exception):
    """Malformed BTF, or a type/member/function that is not there."""


class _Steps(dict):
    """info word -> length in words of the whole record; filled on first sight of each info
    value (vmlinux has only ~300 distinct ones), so the scan does one dict lookup per type."""

    def __missing__(self, info: int) -> int:
        kind = (info >> 24) & 0x1F
        if kind > KIND_ENUM64 or kind == KIND_UNKN:
            raise BTFError(f"unknown BTF kind {kind}")
        n = self[info] = 3 + _EXTRA.get(kind, 0) + (info & 0xFFFF) * _PER_VLEN.get(kind, 0)
        return n


# ---------------------------------------------------------------------------------------------
# decoded types


class Type:
    """Base of the decoded records. ``kind`` is a class attribute ("struct", "ptr", ...);
    ``id`` is the type id the record was decoded from."""

    kind = "?"


@dataclass
class Void(Type):
    kind = "void"
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Int(Type):
    kind = "int"
    name: str
    size: int
    signed: bool
    bits: int
    is_char: bool = False
    is_bool: bool = False
    bit_offset: int = 0
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Ptr(Type):
    kind = "ptr"
    target: int
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Array(Type):
    kind = "array"
    elem: int
    nelems: int
    index_type: int = 0
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass(frozen=True)
class Member:
    name: str            # "" for an anonymous struct/union member
    type_id: int
    bit_offset: int
    bitfield_size: int = 0


@dataclass
class Struct(Type):
    kind = "struct"
    name: str
    size: int
    members: list = field(default_factory=list)
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Union(Type):
    kind = "union"
    name: str
    size: int
    members: list = field(default_factory=list)
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Enum(Type):
    """ENUM and ENUM64 (``is64``); ``values`` keeps declaration order."""

    kind = "enum"
    name: str
    size: int
    signed: bool
    values: dict = field(default_factory=dict)
    is64: bool = False
    id: int = field(default=0, kw_only=True, compare=False, repr=False)

    def name_of(self, value: int) -> str | None:
        for n, v in self.values.items():
            if v == value:
                return n
        return None


@dataclass
class Fwd(Type):
    kind = "fwd"
    name: str
    is_union: bool = False
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Typedef(Type):
    kind = "typedef"
    name: str
    target: int
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Volatile(Type):
    kind = "volatile"
    target: int
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Const(Type):
    kind = "const"
    target: int
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Restrict(Type):
    kind = "restrict"
    target: int
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class TypeTag(Type):
    kind = "type_tag"
    target: int
    name: str = ""       # the tag, e.g. "rcu", "user", "percpu"
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Func(Type):
    kind = "func"
    name: str
    proto: int
    linkage: int = 0     # 0 static, 1 global, 2 extern
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class FuncProto(Type):
    kind = "func_proto"
    ret: int
    params: list = field(default_factory=list)   # [(name, type_id)], "" when unnamed
    variadic: bool = False
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Var(Type):
    kind = "var"
    name: str
    type_id: int
    linkage: int = 0
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Datasec(Type):
    kind = "datasec"
    name: str
    size: int
    vars: list = field(default_factory=list)     # [(var type_id, offset, size)]
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class Float(Type):
    kind = "float"
    name: str
    size: int
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


@dataclass
class DeclTag(Type):
    kind = "decl_tag"
    name: str
    target: int
    component_idx: int = -1
    id: int = field(default=0, kw_only=True, compare=False, repr=False)


_PATH_TOKEN = re.compile(r"\s*(?:([A-Za-z_]\w*)|\[\s*(\d+)\s*\]|(\.))")


# ---------------------------------------------------------------------------------------------
# the reader


class BTF:
    _vmlinux_cache: dict = {}
    _module_cache: dict = {}

    def __init__(self, data: bytes, base: "BTF | None" = None, path: str | None = None):
        if not isinstance(data, bytes):
            data = bytes(data)
        self.path = path
        self.base = base
        self._data = data
        if len(data) < 24:
            raise BTFError("BTF blob shorter than its header")
        magic = struct.unpack_from("<H", data)[0]
        if magic == BTF_MAGIC:
            self._order = "<"
        elif magic == 0x9FEB:
            self._order = ">"
        else:
            raise BTFError(f"bad BTF magic {magic:#06x}")
        (_, version, _flags, hdr_len, type_off, type_len, str_off,
         str_len) = struct.unpack_from(self._order + "HBBIIIII", data)
        if version != 1:
            raise BTFError(f"unsupported BTF version {version}")
        tstart, sstart = hdr_len + type_off, hdr_len + str_off
        if (hdr_len < 24 or tstart + type_len > len(data) or sstart + str_len > len(data)
                or type_len % 4 or tstart % 4):
            raise BTFError("BTF header sections out of bounds or misaligned")
        self._tstart, self._tend = tstart, tstart + type_len
        self._sstart, self._slen = sstart, str_len
        if base is None and (str_len == 0 or data[sstart] != 0):
            raise BTFError("BTF string section must start with an empty string")
        # ids and string offsets of split BTF continue those of its base
        self._first = base.nr_types + 1 if base is not None else 1
        self._str_base = base._str_base + base._slen if base is not None else 0

        native = ("<" if sys.byteorder == "little" else ">") == self._order
        if native:
            words = memoryview(data)[tstart:tstart + type_len].cast("I")
        else:
            words = array.array("I", data[tstart:tstart + type_len])
            words.byteswap()
        self._w = words
        self._offs = self._scan(words)
        self.nr_types = self._first + len(self._offs) - 1   # highest type id

        self._cache: dict = {}
        self._find_cache: dict = {}
        self._member_cache: dict = {}
        self._stroff_cache: dict = {}
        self._name_words: bytes | None = None

    @staticmethod
    def _scan(w) -> list:
        """Word offset of every type record, in id order: one dict lookup per type."""
        offs: list = []
        n = len(w)
        if n == 0:
            return offs
        append = offs.append
        step = _Steps()
        i = 0
        try:
            while True:
                append(i)
                i += step[w[i + 1]]
        except IndexError:
            pass
        if offs[-1] != n:
            raise BTFError("BTF type section is truncated")
        offs.pop()
        return offs

    # -- constructors ---------------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, base: "BTF | None" = None) -> "BTF":
        return cls(data, base)

    @classmethod
    def from_file(cls, path: str, base: "BTF | None" = None) -> "BTF":
        with open(path, "rb") as f:
            return cls(f.read(), base, path)

    @classmethod
    def vmlinux(cls, path: str = VMLINUX_PATH) -> "BTF":
        """The running kernel's BTF, read once per process."""
        btf = cls._vmlinux_cache.get(path)
        if btf is None:
            btf = cls._vmlinux_cache[path] = cls.from_file(path)
        return btf

    @classmethod
    def module(cls, name: str) -> "BTF":
        """A loaded module's split BTF (/sys/kernel/btf/<name>) on top of vmlinux's."""
        btf = cls._module_cache.get(name)
        if btf is None:
            if "/" in name or name in ("", ".", "..", "vmlinux"):
                raise BTFError(f"bad module name {name!r}")
            btf = cls.from_file(os.path.join(os.path.dirname(VMLINUX_PATH), name),
                                cls.vmlinux())
            cls._module_cache[name] = btf
        return btf

    def __len__(self) -> int:
        return self.nr_types + 1   # ids 0 (void) .. nr_types

    def __repr__(self) -> str:
        return (f"<BTF {self.path or 'blob'}: ids {self._first}..{self.nr_types}"
                f"{' (split)' if self.base is not None else ''}>")

    # -- raw access -----------------------------------------------------------------------------

    def _str(self, off: int) -> str:
        if off < self._str_base:
            return self.base._str(off)
        local = off - self._str_base
        if local >= self._slen:
            raise BTFError(f"string offset {off} out of range")
        start = self._sstart + local
        end = self._data.find(b"\0", start, self._sstart + self._slen)
        if end < 0:
            raise BTFError(f"unterminated string at offset {off}")
        return self._data[start:end].decode("utf-8", "replace")

    def _owner(self, type_id: int) -> "BTF":
        btf = self
        while type_id < btf._first:
            btf = btf.base
            if btf is None:
                break
        if btf is None or type_id > btf.nr_types or type_id < 0:
            raise BTFError(f"type id {type_id} out of range")
        return btf

    def _head(self, type_id: int) -> tuple:
        """(name_off, info, size_or_type) of a type, without decoding it."""
        btf = self._owner(type_id)
        o = btf._offs[type_id - btf._first]
        w = btf._w
        return w[o], w[o + 1], w[o + 2]

    def kind_of(self, type_id: int) -> str:
        if type_id == 0:
            return "void"
        return KIND_NAMES[(self._head(type_id)[1] >> 24) & 0x1F]

    def name_of(self, type_id: int) -> str:
        if type_id == 0:
            return ""
        return self._str(self._head(type_id)[0])

    # -- lookup by name -------------------------------------------------------------------------

    def _local_name_offsets(self, name: bytes) -> list:
        """Offsets (global numbering) of the strings in this blob's own section equal to name."""
        data, s0, s1 = self._data, self._sstart, self._sstart + self._slen
        found = []
        if data.startswith(name + b"\0", s0):   # offset 0 (possible in split BTF only)
            found.append(self._str_base)
        pat = b"\0" + name + b"\0"
        p = data.find(pat, s0, s1)
        while p >= 0:
            found.append(self._str_base + p + 1 - s0)
            p = data.find(pat, p + 1, s1)
        return found

    def _name_offsets(self, name: bytes) -> list:
        found = self._stroff_cache.get(name)
        if found is None:
            found = self.base._name_offsets(name) if self.base is not None else []
            found = self._stroff_cache[name] = found + self._local_name_offsets(name)
        return found

    def _local_ids_named(self, offsets: list) -> list:
        if not offsets or not self._offs:
            return []
        words = self._name_words
        if words is None:
            # the name_off word of every type, packed, so one bytes.find per candidate string
            first = itemgetter(*self._offs)(self._w)
            if len(self._offs) == 1:
                first = (first,)
            words = self._name_words = array.array("I", first).tobytes()
        ids = []
        for off in offsets:
            pat = struct.pack("=I", off)
            p = words.find(pat)
            while p >= 0:
                if p % 4 == 0:
                    ids.append(self._first + p // 4)
                p = words.find(pat, p + 1)
        ids.sort()
        return ids

    def find_all(self, name: str) -> list:
        """Ids of every type called ``name`` (any kind), base types first."""
        got = self._find_cache.get(name)
        if got is None:
            if not name:
                got = []
            else:
                enc = name.encode()
                base_ids = self.base.find_all(name) if self.base is not None else []
                got = base_ids + self._local_ids_named(self._name_offsets(enc))
            self._find_cache[name] = got
        return list(got)

    def find(self, name: str, kind: "str | int | None" = None) -> int | None:
        """The id of a type called ``name``; ``kind`` is "struct", "union", "enum" (ENUM or
        ENUM64), "typedef", "func", "int", ... or a BTF_KIND number. Without a kind, a full
        definition is preferred to a forward declaration or a decl tag."""
        ids = self._find_cache.get(name)
        if ids is None:
            ids = self.find_all(name)
        if kind is None:
            fallback = None
            for tid in ids:
                k = (self._head(tid)[1] >> 24) & 0x1F
                if k not in (KIND_FWD, KIND_DECL_TAG):
                    return tid
                if fallback is None:
                    fallback = tid
            return fallback
        if isinstance(kind, int):
            kinds = (kind,)
        else:
            kinds = _KIND_BY_NAME.get(kind)
            if kinds is None:
                raise BTFError(f"unknown BTF kind name {kind!r}")
        for tid in ids:
            if (self._head(tid)[1] >> 24) & 0x1F in kinds:
                return tid
        return None

    def lookup(self, spelling: str) -> int:
        """A type id from a C-like name: "struct task_struct", "union bpf_attr", "enum
        pid_type", "u32", "unsigned int" — raising BTFError when absent. Pointer stars are not
        accepted (BTF has pointer types only where the kernel uses them)."""
        words = spelling.split()
        if not words:
            raise BTFError("empty type name")
        if words[0] in ("struct", "union", "enum") and len(words) == 2:
            tid = self.find(words[1], words[0])
        else:
            tid = self.find(" ".join(words))
        if tid is None:
            raise BTFError(f"unknown type '{spelling}'")
        return tid

    def _tid(self, t) -> int:
        if isinstance(t, str):
            return self.lookup(t)
        if isinstance(t, Type):
            return t.id
        return t

    # -- decoding -------------------------------------------------------------------------------

    def get(self, type_id) -> Type:
        """The decoded type (cached). Accepts an id, or a spelling like "struct task_struct"."""
        type_id = self._tid(type_id)
        t = self._cache.get(type_id)
        if t is None:
            btf = self._owner(type_id) if type_id else self
            if btf is not self:
                t = btf.get(type_id)
            else:
                t = self._decode(type_id)
            self._cache[type_id] = t
        return t

    def _decode(self, tid: int) -> Type:
        if tid == 0:
            return Void()
        w = self._w
        o = self._offs[tid - self._first]
        name_off, info, st = w[o], w[o + 1], w[o + 2]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = info >> 31
        name = self._str(name_off) if name_off else ""
        if kind == KIND_INT:
            enc = w[o + 3]
            e = (enc >> 24) & 0x0F
            return Int(name, st, bool(e & 1), enc & 0xFF, bool(e & 2), bool(e & 4),
                       (enc >> 16) & 0xFF, id=tid)
        if kind == KIND_PTR:
            return Ptr(st, id=tid)
        if kind == KIND_ARRAY:
            return Array(w[o + 3], w[o + 5], w[o + 4], id=tid)
        if kind in (KIND_STRUCT, KIND_UNION):
            members = []
            p = o + 3
            for _ in range(vlen):
                mname, mtype, moff = w[p], w[p + 1], w[p + 2]
                members.append(Member(self._str(mname) if mname else "", mtype,
                                      moff & 0xFFFFFF if kflag else moff,
                                      moff >> 24 if kflag else 0))
                p += 3
            cls = Struct if kind == KIND_STRUCT else Union
            return cls(name, st, members, id=tid)
        if kind == KIND_ENUM:
            values = {}
            p = o + 3
            for _ in range(vlen):
                v = w[p + 1]
                if kflag and v & 0x80000000:
                    v -= 1 << 32
                values[self._str(w[p])] = v
                p += 2
            return Enum(name, st, bool(kflag), values, False, id=tid)
        if kind == KIND_ENUM64:
            values = {}
            p = o + 3
            for _ in range(vlen):
                v = w[p + 1] | (w[p + 2] << 32)
                if kflag and v >> 63:
                    v -= 1 << 64
                values[self._str(w[p])] = v
                p += 3
            return Enum(name, st, bool(kflag), values, True, id=tid)
        if kind == KIND_FWD:
            return Fwd(name, bool(kflag), id=tid)
        if kind == KIND_TYPEDEF:
            return Typedef(name, st, id=tid)
        if kind == KIND_VOLATILE:
            return Volatile(st, id=tid)
        if kind == KIND_CONST:
            return Const(st, id=tid)
        if kind == KIND_RESTRICT:
            return Restrict(st, id=tid)
        if kind == KIND_TYPE_TAG:
            return TypeTag(st, name, id=tid)
        if kind == KIND_FUNC:
            return Func(name, st, vlen, id=tid)
        if kind == KIND_FUNC_PROTO:
            params = []
            p = o + 3
            for _ in range(vlen):
                params.append((self._str(w[p]) if w[p] else "", w[p + 1]))
                p += 2
            variadic = bool(params) and params[-1] == ("", 0)
            if variadic:
                params.pop()
            return FuncProto(st, params, variadic, id=tid)
        if kind == KIND_VAR:
            return Var(name, st, w[o + 3], id=tid)
        if kind == KIND_DATASEC:
            secinfo = []
            p = o + 3
            for _ in range(vlen):
                secinfo.append((w[p], w[p + 1], w[p + 2]))
                p += 3
            return Datasec(name, st, secinfo, id=tid)
        if kind == KIND_FLOAT:
            return Float(name, st, id=tid)
        if kind == KIND_DECL_TAG:
            idx = w[o + 3]
            if idx & 0x80000000:
                idx -= 1 << 32
            return DeclTag(name, st, idx, id=tid)
        raise BTFError(f"type {tid}: unknown kind {kind}")

    # -- helpers --------------------------------------------------------------------------------

    def resolve(self, type_id) -> int:
        """Skip typedef, const, volatile, restrict and type tags."""
        tid = self._tid(type_id)
        for _ in range(64):
            if tid == 0:
                return 0
            _, info, target = self._head(tid)
            if (info >> 24) & 0x1F not in _MODIFIERS:
                return tid
            tid = target
        raise BTFError(f"type {type_id}: modifier chain too long (a loop?)")

    def size_of(self, type_id) -> int:
        tid = self.resolve(type_id)
        t = self.get(tid)
        if isinstance(t, (Int, Enum, Struct, Union, Float, Datasec)):
            return t.size
        if isinstance(t, Ptr):
            return PTR_SIZE
        if isinstance(t, Array):
            return t.nelems * self.size_of(t.elem)
        if isinstance(t, Var):
            return self.size_of(t.type_id)
        raise BTFError(f"sizeof applied to incomplete or non-object type '{self.type_name(tid)}'")

    def member(self, struct_id, name: str) -> tuple:
        """(bit offset, type id, bitfield size) of a member of a struct/union, looking inside
        anonymous struct/union members too. Raises BTFError when there is no such member."""
        sid = self.resolve(struct_id)
        key = (sid, name)
        got = self._member_cache.get(key)
        if got is None:
            t = self.get(sid)
            if not isinstance(t, (Struct, Union)):
                raise BTFError(f"'{self.type_name(sid)}' is not a struct or union")
            got = self._member_in(t, name, 0)
            if got is None:
                raise BTFError(f"'{self.type_name(sid)}' has no member named '{name}'")
            self._member_cache[key] = got
        return got

    def _member_in(self, t, name: str, depth: int):
        if depth > 32:
            return None
        for m in t.members:
            if m.name == name:
                return (m.bit_offset, m.type_id, m.bitfield_size)
            if not m.name:
                inner = self.get(self.resolve(m.type_id))
                if isinstance(inner, (Struct, Union)):
                    got = self._member_in(inner, name, depth + 1)
                    if got is not None:
                        return (m.bit_offset + got[0], got[1], got[2])
        return None

    def members(self, struct_id) -> list:
        """Members of a struct/union, with anonymous struct/union members flattened:
        [(name, bit offset, type id, bitfield size)]."""
        sid = self.resolve(struct_id)
        t = self.get(sid)
        if not isinstance(t, (Struct, Union)):
            raise BTFError(f"'{self.type_name(sid)}' is not a struct or union")
        out: list = []
        self._flatten(t, 0, out, 0)
        return out

    def _flatten(self, t, base_bits: int, out: list, depth: int) -> None:
        for m in t.members:
            inner = self.get(self.resolve(m.type_id)) if not m.name else None
            if inner is not None and isinstance(inner, (Struct, Union)) and depth < 32:
                self._flatten(inner, base_bits + m.bit_offset, out, depth + 1)
            else:
                out.append((m.name, base_bits + m.bit_offset, m.type_id, m.bitfield_size))

    def member_path(self, struct_id, path: str) -> tuple:
        """(bit offset, type id, bitfield size) of "a.b[2].c" inside a struct/union
        (no pointer is followed)."""
        tid = self._tid(struct_id)
        bits = 0
        bitfield = 0
        pos = 0
        path = path.strip()
        expect_name = True
        if not path:
            raise BTFError("empty member path")
        while pos < len(path):
            m = _PATH_TOKEN.match(path, pos)
            if m is None:
                raise BTFError(f"bad member path {path!r}")
            pos = m.end()
            ident, index, dot = m.groups()
            if bitfield:
                raise BTFError(f"bitfield in the middle of member path {path!r}")
            if ident is not None:
                if not expect_name:
                    raise BTFError(f"bad member path {path!r}")
                off, tid, bitfield = self.member(tid, ident)
                bits += off
                expect_name = False
            elif index is not None:
                if expect_name:
                    raise BTFError(f"bad member path {path!r}")
                arr = self.get(self.resolve(tid))
                if not isinstance(arr, Array):
                    raise BTFError(f"subscript of non-array '{self.type_name(tid)}' in {path!r}")
                if int(index) >= arr.nelems and arr.nelems:
                    raise BTFError(f"index {index} out of bounds of '{self.type_name(tid)}'")
                bits += int(index) * self.size_of(arr.elem) * 8
                tid = arr.elem
            else:
                if expect_name:
                    raise BTFError(f"bad member path {path!r}")
                expect_name = True
        if expect_name:
            raise BTFError(f"bad member path {path!r}")
        return bits, tid, bitfield

    def offsetof(self, struct_id, path: str) -> int:
        """Byte offset of a (possibly nested: "a.b.c", "a[1].b") member, as C's offsetof."""
        bits, _, bitfield = self.member_path(struct_id, path)
        if bitfield or bits % 8:
            raise BTFError(f"offsetof applied to bitfield '{path}'")
        return bits // 8

    def func_proto(self, name: str) -> FuncProto | None:
        """The prototype of a kernel function (BTF FUNC -> FUNC_PROTO), or None."""
        fid = self.find(name, KIND_FUNC)
        if fid is None:
            return None
        return self.get(self.get(fid).proto)

    # -- C spelling -----------------------------------------------------------------------------

    def type_name(self, type_id) -> str:
        """C spelling: "struct task_struct *", "unsigned int", "char[16]",
        "int (*)(struct file *, int)", "const char *"."""
        return self._spell(self._tid(type_id), "", 0)

    def _spell(self, tid: int, decl: str, depth: int) -> str:
        if depth > 64:
            return "..."
        t = self.get(tid)
        k = t.kind
        if k == "ptr":
            target = self.get(t.target)
            inner = "*" + decl
            if target.kind in ("array", "func_proto"):
                inner = "(" + inner + ")"
            return self._spell(t.target, inner, depth + 1)
        if k == "array":
            return self._spell(t.elem, decl + f"[{t.nelems}]", depth + 1)
        if k in ("const", "volatile", "restrict"):
            if self.get(t.target).kind == "ptr":   # char *const p
                return self._spell(t.target, f" {k}" + (" " + decl if decl else ""), depth + 1)
            return f"{k} " + self._spell(t.target, decl, depth + 1)
        if k == "type_tag":
            return self._spell(t.target, decl, depth + 1)
        if k == "func_proto":
            params = [self._spell(p, "", depth + 1) for _, p in t.params]
            if t.variadic:
                params.append("...")
            return self._spell(t.ret, decl + "(" + (", ".join(params) or "void") + ")",
                               depth + 1)
        if k == "func":
            return self._spell(t.proto, t.name, depth + 1)
        if k == "void":
            base = "void"
        elif k in ("struct", "union"):
            base = f"{k} {t.name}" if t.name else f"{k} {{...}}"
        elif k == "enum":
            base = f"enum {t.name}" if t.name else "enum {...}"
        elif k == "fwd":
            base = ("union " if t.is_union else "struct ") + t.name
        elif k in ("var", "datasec", "decl_tag"):
            return t.name
        else:   # int, float, typedef
            base = t.name
        if not decl:
            return base
        if decl[0] == "[" or decl[0] == " ":
            return base + decl
        return base + " " + decl
