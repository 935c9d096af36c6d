"""Script types of kernel data (from BTF) and of C definitions written in scripts.

Stable API (used by sema, codegen and the providers that type their ``args``):

    struct_type(name, kind="struct") -> StructT | None   a struct/union by name ("task_struct")
    enum_type(name) -> EnumT | None
    lookup_type(spelling) -> Type | None    "struct sock", "union bpf_attr", "enum pid_type",
                                            "u32", "unsigned int", "pid_t" (typedefs resolved)
    type_from_btf(btf, type_id, user=False) -> Type
                                            one BTF type as a script type (typedef/const/
                                            volatile/type tags skipped; char arrays -> StrT)
    field(t: StructT, name) -> Field | None one member (anonymous members searched), its byte
                                            offset, type and bitfield (shift, bits) or None
    member_names(t: StructT) -> [name]      members in declaration order (anonymous flattened)
    enumerator(name) -> (value, EnumT) | None   a kernel enum's member by name (TCP_CLOSE...)
    func_params(func, module=None) -> [(name, Type)] | None   a kernel function's parameters
    func_return(func, module=None) -> Type | None
    raw_tracepoint_params(event, module=None) -> [(name, Type)] | None
                                            the arguments of a raw tracepoint, from the
                                            ``btf_trace_<event>`` typedef (leading void * dropped)
    flush()                                 save what this process resolved to the cache file

Everything is lazy: BTF (/sys/kernel/btf/vmlinux) is opened on the first question a cached
answer cannot give, and only the types a script touches are decoded. Answers are kept in a
small per-kernel cache file (``<cache>/ptrace-lang/btf-<key>.marshal``, keyed by the BTF
file's size and mtime and the boot id) as plain data, so a later compile touching the same
types does not open BTF at all. The file is read and written by ``cachefs`` (the directory and
file must be the effective user's alone, the contents sealed with the user's secret).

Pointers from BTF are kernel pointers (``PtrT(user=False)``) unless the caller asks for user.
"""
from __future__ import annotations

import os

from ptrace_lang.records import dataclass
from ptrace_lang.sema.types import (
    BOOL, VOID, ArrayT, EnumT, IntT, PtrT, StrT, StructT, Type,
)

__all__ = ["Field", "member_names", "enumerator", "struct_type", "enum_type", "lookup_type", "type_from_btf", "field",
           "func_params", "func_return", "raw_tracepoint_params", "flush", "vmlinux",
           "define_script_types", "script_types"]

VMLINUX = "/sys/kernel/btf/vmlinux"


@dataclass(frozen=True)
class Field:
    """A member of a struct/union: ``offset`` in bytes from the start of the struct (for a
    bitfield: of the smallest load of 1, 2, 4 or 8 bytes holding it), ``type``, and for a
    bitfield ``bitfield = (shift, bits)``: the value is (load >> shift) & ((1 << bits) - 1)."""

    name: str
    offset: int
    type: Type
    bitfield: tuple | None = None


# ---------------------------------------------------------------------------- plain encoding
# Types as tuples of plain values (marshal can store them): the cache file's format.

def to_plain(t: Type) -> tuple:
    if isinstance(t, IntT):
        return ("i", t.bits, t.signed)
    if isinstance(t, PtrT):
        return ("p", to_plain(t.target), t.user)
    if isinstance(t, StructT):
        return ("s", t.kind, t.name, t.nbytes, t.src)
    if isinstance(t, ArrayT):
        return ("a", to_plain(t.elem), t.n)
    if isinstance(t, StrT):
        return ("t", t.length)
    if isinstance(t, EnumT):
        return ("e", t.name, t.bits, t.signed, t.values)
    if t == BOOL:
        return ("b",)
    return ("v",)


def from_plain(p: tuple) -> Type:
    k = p[0]
    if k == "i":
        return IntT(p[1], p[2])
    if k == "p":
        return PtrT(from_plain(p[1]), p[2])
    if k == "s":
        return StructT(p[1], p[2], p[3], tuple(p[4]))
    if k == "a":
        return ArrayT(from_plain(p[1]), p[2])
    if k == "t":
        return StrT(p[1])
    if k == "e":
        return EnumT(p[1], p[2], p[3], tuple(tuple(v) for v in p[4]))
    if k == "b":
        return BOOL
    return VOID


# ---------------------------------------------------------------------------- the cache

class _Store:
    """Answers to BTF questions, loaded from and saved to the per-kernel cache file."""

    def __init__(self) -> None:
        self.answers: dict | None = None
        self.dirty = False
        self.path: str | None = None
        self.btf_opened = False      # for measurements and tests
        self.enabled = True          # kept on disk (target.Host.btf_cache)

    def _key(self) -> str | None:
        try:
            st = os.stat(VMLINUX)
        except OSError:
            return None
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                boot = f.read().strip()
        except OSError:
            boot = "-"
        # the code that wrote the answers is part of the key: another checkout or version
        # of this module (their encoding may differ) keeps a file of its own
        code = 0
        here = os.path.dirname(os.path.abspath(__file__))
        for name in ("btftypes.py", "types.py"):
            try:
                cs = os.stat(os.path.join(here, name))
                code = (code * 1000003 + cs.st_size * 31 + cs.st_mtime_ns) % (1 << 40)
            except OSError:
                pass
        return f"{st.st_size:x}-{int(st.st_mtime):x}-{boot[:8]}-{code:x}"

    def load(self) -> dict:
        if self.answers is None:
            self.answers = {}
            if not self.enabled:
                return self.answers
            key = self._key()
            if key is None:
                return self.answers
            self.path = f"btf-{key}.marshal"
            from ptrace_lang import cachefs

            # cachefs: only a file of this user's, sealed with its secret (a flipped bit in
            # an offset would otherwise read the wrong field without an error)
            data = cachefs.read((), self.path)
            if data is not None:
                try:
                    import marshal

                    got = marshal.loads(data)
                    if isinstance(got, dict):
                        self.answers = got
                except (EOFError, ValueError, TypeError):
                    pass
        return self.answers

    def get(self, key, compute):
        answers = self.load()
        if key in answers:
            return answers[key]
        value = compute()
        if None in _BTFS and _BTFS[None] is None:
            return value            # BTF could not be read: an answer not worth keeping
        answers[key] = value
        self.dirty = True
        return value

    def save(self) -> None:
        if not self.dirty or self.path is None or not self.enabled:
            return
        import marshal

        from ptrace_lang import cachefs

        try:
            data = marshal.dumps(self.answers)
        except ValueError:
            return
        if cachefs.write((), self.path, data):
            self.dirty = False


_STORE = _Store()
_BTFS: dict = {}


def vmlinux():
    """The kernel's BTF (a ``btf.BTF``), or None when the kernel has none."""
    if None not in _BTFS:
        from ptrace_lang.btf import BTF, BTFError

        _STORE.btf_opened = True
        try:
            _BTFS[None] = BTF.vmlinux()
        except (OSError, BTFError):
            _BTFS[None] = None
    return _BTFS[None]


def _btf(module: str | None):
    if module is None:
        return vmlinux()
    if module not in _BTFS:
        from ptrace_lang.btf import BTF, BTFError

        try:
            _BTFS[module] = BTF.module(module)
        except (OSError, BTFError):
            _BTFS[module] = None
    return _BTFS[module]


def use_disk_cache(enabled: bool) -> None:
    """Whether resolved types are kept in the per-kernel cache file (the driver asks the host)."""
    _STORE.enabled = enabled


def flush() -> None:
    """Save newly resolved answers to the cache file (called once per compile)."""
    _STORE.save()


# ---------------------------------------------------------------------------- BTF -> types

def type_from_btf(btf, type_id: int, user: bool = False, module: str | None = None) -> Type:
    from ptrace_lang import btf as B

    tid = btf.resolve(type_id)
    t = btf.get(tid)
    if isinstance(t, B.Int):
        if t.is_bool:
            return BOOL
        bits = t.size * 8 if t.size in (1, 2, 4, 8) else 64
        return IntT(bits, t.signed or t.name == "char")
    if isinstance(t, B.Ptr):
        target = btf.get(btf.resolve(t.target))
        if isinstance(target, B.FuncProto):
            return PtrT(VOID, user)
        tagged_user = user or _user_tagged(btf, t.target)    # char __user *
        return PtrT(type_from_btf(btf, t.target, user, module), tagged_user)
    if isinstance(t, B.Array):
        elem = btf.get(btf.resolve(t.elem))
        if isinstance(elem, B.Int) and elem.size == 1 and elem.name == "char":
            return StrT(t.nelems)       # char[N] is a string; unsigned char[N] is uint8[N]
        return ArrayT(type_from_btf(btf, t.elem, user, module), t.nelems)
    if isinstance(t, (B.Struct, B.Union)):
        src = ("btf", tid) if module is None else ("btf", tid, module)
        return StructT(t.kind, t.name, t.size, src)
    if isinstance(t, B.Fwd):
        kind = "union" if t.is_union else "struct"
        full = btf.find(t.name, kind)
        if full is not None and full != tid:
            return type_from_btf(btf, full, user, module)
        return StructT(kind, t.name, 0, ())
    if isinstance(t, B.Enum):
        signed = t.signed
        return EnumT(t.name, t.size * 8, signed, tuple(t.values.items()))
    if isinstance(t, B.Float):
        return IntT(t.size * 8, True)
    return VOID


def _user_tagged(btf, tid: int) -> bool:
    from ptrace_lang import btf as B

    for _ in range(16):
        t = btf.get(tid)
        if isinstance(t, B.TypeTag) and t.name == "user":
            return True
        if not isinstance(t, (B.TypeTag, B.Const, B.Volatile, B.Restrict, B.Typedef)):
            return False
        tid = t.target
    return False


def _resolve_spelling(spelling: str):
    """The plain type a C spelling names in vmlinux BTF, or None."""
    words = spelling.split()
    btf = vmlinux()
    if btf is None or not words:
        return None
    if words[0] in ("struct", "union", "enum") and len(words) == 2:
        tid = btf.find(words[1], words[0])
    else:
        tid = btf.find(" ".join(words))
        if tid is not None:
            from ptrace_lang import btf as B

            t = btf.get(tid)
            if not isinstance(t, (B.Typedef, B.Int, B.Enum, B.Float)):
                tid = None
    if tid is None:
        return None
    return to_plain(type_from_btf(btf, tid))


def lookup_type(spelling: str) -> Type | None:
    """A type named in C: script definitions first, then the kernel's BTF."""
    spelling = " ".join(spelling.split())
    got = _SCRIPT.lookup(spelling)
    if got is not None:
        return got
    p = _STORE.get(("T", spelling), lambda: _resolve_spelling(spelling))
    return from_plain(p) if p is not None else None


def struct_type(name: str, kind: str = "struct") -> StructT | None:
    t = lookup_type(f"{kind} {name}")
    return t if isinstance(t, StructT) else None


def enum_type(name: str) -> EnumT | None:
    t = lookup_type(f"enum {name}")
    return t if isinstance(t, EnumT) else None


def _btf_field(src: tuple, name: str):
    module = src[2] if len(src) > 2 else None
    btf = _btf(module)
    if btf is None:
        return None
    from ptrace_lang.btf import BTFError

    try:
        bit_off, tid, bits = btf.member(src[1], name)
    except BTFError:
        return None
    return (bit_off, bits, to_plain(type_from_btf(btf, tid, False, module)))


def field(t: StructT, name: str) -> Field | None:
    """A field of a struct/union (anonymous members searched), or None."""
    if not t.src:
        return None
    if t.src[0] == "c":
        got = _SCRIPT.field(t, name)
    else:
        got = _STORE.get(("F", t.src, name), lambda: _btf_field(t.src, name))
    if got is None:
        return None
    bit_off, bits, plain = got
    typ = from_plain(plain) if isinstance(plain, tuple) else complete(plain)
    return make_field(name, bit_off, bits, typ)


def member_names(t: StructT) -> list:
    """Names of a struct's members in declaration order, anonymous members flattened."""
    if not t.src:
        return []
    if t.src[0] == "c":
        out = []
        for n, _, _, ft in _SCRIPT.fields(t):
            if n:
                out.append(n)
            elif isinstance(ft, StructT):
                out.extend(member_names(ft))
        return out

    def compute():
        btf = _btf(t.src[2] if len(t.src) > 2 else None)
        return [] if btf is None else [m[0] for m in btf.members(t.src[1]) if m[0]]

    return list(_STORE.get(("M", t.src), compute))


def _find_enumerator(name: str):
    """Search the BTF type section for an ENUM/ENUM64 entry whose name is ``name``: the
    string's offset is found in the string section, then its word among the enum records."""
    import struct as _struct
    from bisect import bisect_right

    from ptrace_lang import btf as B

    btf = vmlinux()
    if btf is None:
        return None
    offsets = btf._name_offsets(name.encode())
    if not offsets:
        return None
    raw = btf._data[btf._tstart:btf._tend]
    offs = btf._offs
    for off in offsets:
        pat = _struct.pack(btf._order + "I", off)
        p = raw.find(pat)
        while p >= 0:
            if p % 4 == 0:
                word = p // 4
                i = bisect_right(offs, word) - 1
                o = offs[i]
                info = btf._w[o + 1]
                kind = (info >> 24) & 0x1F
                step = 2 if kind == B.KIND_ENUM else 3 if kind == B.KIND_ENUM64 else 0
                if step and word > o + 2 and (word - o - 3) % step == 0:
                    t = btf.get(btf._first + i)
                    e = type_from_btf(btf, t.id)
                    return (t.values[name], to_plain(e))
            p = raw.find(pat, p + 1)
    return None


def enumerator(name: str):
    """(value, EnumT) of a kernel enum member called ``name``, or None."""
    got = _STORE.get(("N", name), lambda: _find_enumerator(name))
    return None if got is None else (got[0], from_plain(got[1]))


def complete(t: Type) -> Type:
    """A script struct used before its definition ended (``struct node *next`` inside
    ``struct node``) has size 0; give the finished definition instead."""
    if isinstance(t, PtrT):
        c = complete(t.target)
        return t if c is t.target else PtrT(c, t.user)
    if isinstance(t, ArrayT):
        c = complete(t.elem)
        return t if c is t.elem else ArrayT(c, t.n)
    if isinstance(t, StructT) and not t.nbytes and len(t.src) > 1 and t.src[0] == "c":
        rec = _SCRIPT.records.get(t.src[1])
        if rec is not None:
            return rec[0]
    return t


def make_field(name: str, bit_off: int, bits: int, typ: Type) -> Field:
    if not bits:
        return Field(name, bit_off // 8, typ)
    first = bit_off // 8
    shift = bit_off - first * 8
    need = (shift + bits + 7) // 8
    size = 1 if need <= 1 else 2 if need <= 2 else 4 if need <= 4 else 8
    return Field(name, first, IntT(size * 8, isinstance(typ, IntT) and typ.signed),
                 (shift, bits))


def _with_user(t: Type, user: bool) -> Type:
    if isinstance(t, PtrT) and user:
        return PtrT(_with_user(t.target, user), True)
    return t


def _func_proto(btf, func: str):
    from ptrace_lang import btf as B

    fid = btf.find(func, B.KIND_FUNC)
    if fid is None:
        return None
    return btf.get(btf.get(fid).proto)


def _params_plain(func: str, module: str | None):
    btf = _btf(module)
    if btf is None:
        return None
    proto = _func_proto(btf, func)
    if proto is None:
        return None
    return [(n, to_plain(type_from_btf(btf, t, False, module))) for n, t in proto.params]


def func_params(func: str, module: str | None = None) -> list | None:
    """[(name, Type)] of a kernel function's parameters (from BTF), or None if it has none."""
    got = _STORE.get(("P", func, module), lambda: _params_plain(func, module))
    return None if got is None else [(n, from_plain(p)) for n, p in got]


def percpu_var(name: str) -> tuple | None:
    """(BTF id of its VAR, its Type) of the per-CPU kernel variable ``name`` (a VAR of the
    vmlinux ``.data..percpu`` section: ``runqueues``, ``process_counts``), or None."""
    def compute():
        btf = vmlinux()
        if btf is None:
            return None
        sec = btf.find(".data..percpu", "datasec")
        var = btf.find(name, "var")
        if sec is None or var is None or all(v[0] != var for v in btf.get(sec).vars):
            return None
        return (var, to_plain(type_from_btf(btf, btf.get(var).type_id)))

    got = _STORE.get(("V", name), compute)
    return None if got is None else (got[0], from_plain(got[1]))


def func_return(func: str, module: str | None = None) -> Type | None:
    def compute():
        btf = _btf(module)
        proto = _func_proto(btf, func) if btf is not None else None
        return None if proto is None else to_plain(type_from_btf(btf, proto.ret, False, module))

    got = _STORE.get(("R", func, module), compute)
    return None if got is None else from_plain(got)


def raw_tracepoint_params(event: str, module: str | None = None) -> list | None:
    """[(name, Type)] of a raw tracepoint's arguments: the ``btf_trace_<event>`` typedef is a
    pointer to a function prototype whose first parameter (void *data) is not an argument."""
    def compute():
        from ptrace_lang import btf as B

        btf = _btf(module)
        if btf is None:
            return None
        proto = _func_proto(btf, "__bpf_trace_" + event)    # named parameters
        if proto is not None and proto.params:
            return [(n, to_plain(type_from_btf(btf, t, False, module)))
                    for n, t in proto.params[1:]]
        tid = btf.find("btf_trace_" + event, B.KIND_TYPEDEF)
        if tid is None:
            return None
        ptr = btf.get(btf.resolve(tid))
        if not isinstance(ptr, B.Ptr):
            return None
        proto = btf.get(btf.resolve(ptr.target))
        if not isinstance(proto, B.FuncProto):
            return None
        return [(n, to_plain(type_from_btf(btf, t, False, module))) for n, t in proto.params[1:]]

    got = _STORE.get(("RT", event, module), compute)
    return None if got is None else [(n, from_plain(p)) for n, p in got]


# ---------------------------------------------------------------------------- script types

class ScriptTypes:
    """Struct/union/enum definitions and typedefs written in the script being compiled
    (``sema.cdefs`` fills it). They take precedence over the kernel's types of the same name.
    A script struct's ``src`` is ("c", key), its key in ``records``."""

    def __init__(self) -> None:
        # "struct foo" -> (StructT, [(name, bit offset, bits, Type)], alignment)
        self.records: dict[str, tuple] = {}
        self.enums: dict[str, EnumT] = {}
        self.typedefs: dict[str, Type] = {}
        self.constants: dict[str, int] = {}   # enumerator names

    def lookup(self, spelling: str) -> Type | None:
        if spelling in self.records:
            return self.records[spelling][0]
        if spelling in self.enums:
            return self.enums[spelling]
        return self.typedefs.get(spelling)

    def field(self, t: StructT, name: str):
        return _find_member(self.fields(t), name, self)

    def fields(self, t: StructT) -> list:
        rec = self.records.get(t.src[1]) if len(t.src) > 1 else None
        return [] if rec is None else rec[1]


def _find_member(members: list, name: str, scope: ScriptTypes, depth: int = 0):
    for mname, bit_off, bits, typ in members:
        if mname == name:
            return (bit_off, bits, typ)
        if not mname and isinstance(typ, StructT) and depth < 16:
            inner = scope.fields(typ)
            got = _find_member(inner, name, scope, depth + 1)
            if got is not None:
                return (bit_off + got[0], got[1], got[2])
    return None


_SCRIPT = ScriptTypes()


def script_types() -> ScriptTypes:
    return _SCRIPT


def define_script_types(scope: ScriptTypes | None) -> None:
    """Install the definitions of the script being compiled (None: none)."""
    global _SCRIPT
    _SCRIPT = scope if scope is not None else ScriptTypes()
