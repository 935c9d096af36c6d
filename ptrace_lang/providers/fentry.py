"""fentry: / fexit: (also ``f``/``fr``, ``kfunc``/``kretfunc``) — kernel functions through BPF
trampolines, with their parameters typed from BTF.

``fentry:fn``, ``fentry:mod:fn`` and wildcards (``fentry:vfs_*``, ``fentry:ext4:*``) are
matched against the functions that BTF describes and ftrace can trace (``listing``'s index,
shared with ``ptrace -l``). A tracing program is bound to one function when it is loaded
(``attach_btf_id``, plus ``attach_btf_obj_fd`` for a module's function), so every function
gets a program of its own; the code is compiled once per block (once per parameter layout
when the block reads ``args``) and loaded once per function, ``probe`` and ``func`` coming
from the link's cookie. The context is an array of u64 slots, one per parameter (two for a
16-byte struct passed by value): ``args.name`` / ``args->name`` read a slot, typed from the
function's prototype (integers with their width and sign; pointers as u64 for now), and
fexit's ``retval`` is the slot after the last parameter.

The BTF helpers here (``proto_fields``) serve rawtracepoint's tp_btf programs and iter too.
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, missing, module_and_function, register

BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BPF_TRACE_ITER = 28
ENOTSUPP = 524


def _has_magic(s: str) -> bool:
    return "*" in s or "?" in s or "[" in s


_BtfField = None


def _field_class():
    """``tpformat.TpField`` plus ``ctype``: the parameter's script type (integers, enums and
    typed pointers from ``sema.btftypes``), which sema's ``field_type`` prefers."""
    global _BtfField
    if _BtfField is None:
        from ptrace_lang.tpformat import TpField
        from ptrace_lang.records import dataclass

        @dataclass
        class BtfField(TpField):
            ctype: object = None

        _BtfField = BtfField
    return _BtfField


def _script_type(btf, tid: int, module: str | None):
    from ptrace_lang.sema.types import EnumT, IntT, PtrT

    try:
        from ptrace_lang.sema.btftypes import type_from_btf

        t = type_from_btf(btf, tid, False, module)
    except Exception:  # noqa: BLE001 - untyped (u64) then
        return None
    return t if isinstance(t, (IntT, PtrT, EnumT)) or t.is_int else None


def proto_fields(btf, params, module: str | None = None) -> tuple[tuple, int]:
    """(ArgsT fields for ``params`` [(name, type id)] laid out as u64 slots, slots used)."""
    from ptrace_lang import btf as B

    TpField = _field_class()

    fields, slot = [], 0
    for i, (name, tid) in enumerate(params):
        r = btf.resolve(tid)
        t = btf.get(r) if r else None
        try:
            size = btf.size_of(tid) if r else 8
        except B.BTFError:
            size = 8
        is_ptr = isinstance(t, B.Ptr)
        signed = bool(getattr(t, "signed", False)) if isinstance(t, (B.Int, B.Enum)) else False
        try:
            text = btf.type_name(tid)
        except Exception:  # noqa: BLE001 - an odd type costs its spelling only
            text = "?"
        fields.append((name or f"arg{i}",
                       TpField(name or f"arg{i}", text, 8 * slot, size if size in (1, 2, 4, 8) else 8,
                               signed, False, None, is_ptr,
                               ctype=_script_type(btf, tid, module) if r else None)))
        slot += max(1, (size + 7) // 8)
    return tuple(fields), slot


_FuncArgsT = None


def func_args_type(name: str, fields: tuple, ret):
    """``ArgsT`` of a function's parameters plus ``ret``: its return type (fexit's retval)."""
    global _FuncArgsT
    if _FuncArgsT is None:
        from ptrace_lang.records import dataclass
        from ptrace_lang.sema.types import ArgsT

        @dataclass(frozen=True)
        class FuncArgsT(ArgsT):
            ret: object = None

        _FuncArgsT = FuncArgsT
    return _FuncArgsT(name, fields, ret)


def layout_key(fields: tuple) -> tuple:
    return tuple((n, f.offset, f.size, f.signed, f.is_pointer, f.type_text) for n, f in fields)


class _Index:
    """BTF functions per module that ftrace can trace, read once per compile."""

    def __init__(self) -> None:
        from ptrace_lang import listing

        self.lister = listing._Lister(False)

    def indexes(self) -> list:
        return self.lister.btfs()

    def candidates(self, module_pat: str | None, fn_pat: str) -> list[tuple]:
        """[(index, function name)] matching, vmlinux first, sorted by name within a module."""
        import fnmatch
        import re

        fn_match = re.compile(fnmatch.translate(fn_pat)).match if _has_magic(fn_pat) else fn_pat.__eq__
        if module_pat is None:
            mod_match = None
        elif _has_magic(module_pat):
            mod_match = re.compile(fnmatch.translate(module_pat)).match
        else:
            mod_match = module_pat.__eq__
        out = []
        for index in self.indexes():
            if mod_match is not None and not mod_match(index.module):
                continue
            ok = self.lister.traceable_set(index.module)
            if _has_magic(fn_pat):
                names = sorted(n for n in index.funcs if fn_match(n) and n in ok and ".part." not in n)
            else:
                names = [fn_pat] if fn_pat in index.funcs and fn_pat in ok else []
            out.extend((index, n) for n in names)
        return out


_cache: list = [None, None]      # [_Index, the providers.Options it was read for]


def functions(opts) -> _Index:
    if _cache[0] is None or _cache[1] is not opts:
        _cache[:] = [_Index(), opts]
    return _cache[0]


class Fentry(Provider):
    completes = "kernel_functions"
    listed = "kernel"
    kernel_feature = "tracing"
    name = "fentry"
    aliases = ("f", "kfunc")
    prog_type_name = "BPF_PROG_TYPE_TRACING"
    builtins = frozenset({"args", "func"})
    program_per_target = True
    attach_type = BPF_TRACE_FENTRY

    def expand(self, ap, opts):
        from ptrace_lang.sema.types import ArgsT

        module, fn = module_and_function(self, ap, opts, f"{self.name}:[module:]function")
        index = functions(opts)
        if not index.indexes():
            raise CompileError(f"{self.name} probes need the kernel's BTF "
                               "(/sys/kernel/btf/vmlinux), which this kernel does not have", ap.span)
        found = index.candidates(module, fn)
        if not _has_magic(fn) and not (module and _has_magic(module)):
            found = found[:1]       # a name both in vmlinux and a module: vmlinux's
        if not found:
            from ptrace_lang.messages import say

            where = f"{module}:{fn}" if module is not None else fn
            msg = say("no_matches", probetype=self.name, what=where)
            return missing(opts, msg, ap.span,
                           hints=[f"ptrace -l '{self.name}:PATTERN' lists the functions "
                                  f"{self.name} can trace"])
        out = []
        uses_args = getattr(opts, "uses_args", True)
        for ix, f in found:
            btf = ix.btf
            fid = ix.funcs[f]
            proto = btf.get(btf.get(fid).proto)
            fields, slots = proto_fields(btf, proto.params,
                                         None if ix.module == "vmlinux" else ix.module)
            shown = f"{ix.module}:{f}" if module is not None or ix.module != "vmlinux" else f
            ret_off = 8 * slots
            ret = None
            if self.attach_type == BPF_TRACE_FEXIT and proto.ret:
                ret = _script_type(btf, proto.ret, None if ix.module == "vmlinux" else ix.module)
            rkey = (ret_off, str(ret)) if self.attach_type == BPF_TRACE_FEXIT else 0
            key = (layout_key(fields), rkey) if uses_args else rkey
            out.append(Target(self.name, f"{self.name}:{shown}", shown, share_key=key,
                              args=func_args_type(f, fields, ret),
                              btf={"id": fid, "module": "" if ix.module == "vmlinux" else ix.module,
                                   "retval_offset": ret_off}))
        return out

    def program_attrs(self, target):
        return {"expected_attach_type": self.attach_type, "attach_btf_id": target.btf["id"],
                "attach_btf_module": target.btf["module"]}

    def lowering_options(self, target):
        return {"retval_offset": target.btf["retval_offset"]}

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import tracing

        try:
            return [tracing.tracing_link(prog_fd, self.attach_type, cookie)]
        except OSError as e:
            raise OSError(e.errno, f"{self.name}: {refusal(e.errno, 'BPF_LINK_CREATE')}") from None


class Fexit(Fentry):
    listed, lists_as = "named", "fentry"
    name = "fexit"
    aliases = ("fr", "kretfunc")
    builtins = frozenset({"args", "func", "retval"})
    attach_type = BPF_TRACE_FEXIT


def refusal(err: int, step: str) -> str:
    import errno
    import os

    what = os.strerror(err) if err != ENOTSUPP else "Operation not supported"
    if err in (errno.EPERM, errno.EOPNOTSUPP, ENOTSUPP, errno.ENODEV):
        when = " before its verifier runs" if step == "BPF_PROG_LOAD" else ""
        return f"this kernel refuses fentry/fexit programs: bpf({step}) fails with '{what}'{when}"
    return f"bpf({step}) failed: {what}"


def load_failure(ps, e: OSError) -> str | None:
    """A clear message for a BTF-bound program the kernel refused to load, or None to report
    it as usual (a verifier rejection with a log)."""
    if getattr(e, "summary", "").strip():
        return None
    kind = {BPF_TRACE_FENTRY: "fentry", BPF_TRACE_FEXIT: "fexit", BPF_TRACE_RAW_TP: "rawtracepoint",
            BPF_TRACE_ITER: "iter"}.get(ps.expected_attach_type)
    if kind is None:
        return None
    target = f"BTF id {ps.attach_btf_id}"
    try:
        from ptrace_lang import btf as B

        b = B.BTF.module(ps.attach_btf_module) if ps.attach_btf_module else B.BTF.vmlinux()
        target = f"'{b.name_of(ps.attach_btf_id)}'"
    except Exception:  # noqa: BLE001 - the id then
        pass
    if kind in ("fentry", "fexit"):
        return f"{kind} program for {target}: {refusal(e.errno, 'BPF_PROG_LOAD')}"
    import os

    return f"{kind} program for {target}: the kernel refused to load it: {os.strerror(e.errno)}"


register(Fentry())
register(Fexit())
