"""rawtracepoint: — the kernel's raw tracepoints: raw u64 ``arg0``..``argN``, and BTF-typed
``args`` where BTF describes the event.

The events are the ones ``ptrace -l rawtracepoint:`` lists: BTF's ``btf_trace_<event>``
typedefs and ``__probestub_<event>`` functions of vmlinux and of each module with BTF (this
includes the tracepoints that have no tracefs event, such as ``sched_entry_tp``), or
tracefs' events when the kernel has no BTF. ``rawtracepoint:event``, ``rawtracepoint:module:event``
and wildcards over both parts.

A block that reads only ``argN`` is a plain raw tracepoint program attached by name (the
arguments are u64 scalars). A block that reads ``args`` is a tp_btf program
(BPF_PROG_TYPE_TRACING, BPF_TRACE_RAW_TP, bound to the ``btf_trace_<event>`` typedef): the
kernel checks every argument's type, and ``args.name`` reads the argument as the event's
prototype types it (names from the ``__probestub_`` or ``__bpf_trace_`` function of the
event, ``arg0``.. when BTF has neither). Each attach point gets its own program: attach cookies need kernel
6.10 for raw tracepoints, and the program's ``probe`` is a constant.
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.messages import say
from ptrace_lang.providers import Provider, Target, missing, register, substitute_positional

RAW_ARGS = frozenset(f"arg{i}" for i in range(12))
BPF_TRACE_RAW_TP = 23


def _has_magic(s: str) -> bool:
    return "*" in s or "?" in s or "[" in s


def _matcher(pat: str):
    if not _has_magic(pat):
        return pat.__eq__
    import fnmatch
    import re

    return re.compile(fnmatch.translate(pat)).match


def btf_args(index, event: str):
    """(typedef id, ArgsT fields) of a raw tracepoint from its BTF, or None."""
    from ptrace_lang import btf as B
    from ptrace_lang.providers.fentry import proto_fields

    b = index.btf
    try:
        tid = b.find("btf_trace_" + event, "typedef")
        if tid is None:
            return None
        proto = b.get(b.resolve(b.get(b.resolve(tid)).target))
        params = list(proto.params[1:])           # (the first is the tracepoint's void *__data)
        # names: the __probestub_<event> function (6.8+), else __bpf_trace_<event>
        stub = index.rawtps.get(event)
        if stub is None:
            stub = index.funcs.get("__bpf_trace_" + event)
        if stub is not None:
            named = b.get(b.get(stub).proto).params[1:]
            if len(named) == len(params):
                params = [(n, t) for (n, _), (_, t) in zip(named, params)]
        fields, _ = proto_fields(b, [(n or f"arg{i}", t) for i, (n, t) in enumerate(params)],
                                 None if index.module == "vmlinux" else index.module)
        return tid, fields
    except (B.BTFError, AttributeError, TypeError):
        return None


class RawTracepoint(Provider):
    completes = "raw_tracepoints"
    listed = "kernel"
    kernel_feature = "raw_tracepoint"
    name = "rawtracepoint"
    aliases = ("rt",)
    prog_type_name = "BPF_PROG_TYPE_RAW_TRACEPOINT"
    builtins = RAW_ARGS | {"args"}

    def expand(self, ap, opts):
        from ptrace_lang.sema.types import ArgsT

        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        module = None
        if len(parts) == 2:
            module, parts = parts[0], parts[1:]
        if len(parts) != 1 or not parts[0] or module == "":
            raise CompileError("rawtracepoint probe must be written rawtracepoint[:module]:event", ap.span)
        pattern = parts[0]
        uses_args = getattr(opts, "uses_args", False)
        from ptrace_lang.providers.fentry import functions

        indexes = functions(opts).indexes()
        found: list[tuple] = []      # (index or None, module, event)
        if indexes:
            mod_match, ev_match = _matcher(module or "*"), _matcher(pattern)
            for index in indexes:
                if mod_match(index.module):
                    found.extend((index, index.module, e) for e in sorted(index.rawtps) if ev_match(e))
        else:
            try:
                # syscalls:* and ftrace:* events are made by ftrace, not tracepoints of their own
                events = sorted({n.split(":", 1)[1] for n in opts.host.list_tracepoints("*:*")
                                 if n.split(":", 1)[0] not in ("syscalls", "ftrace")})
            except OSError as e:
                raise CompileError(f"cannot read tracepoints: {e.strerror or e}", ap.span) from None
            ev_match = _matcher(pattern)
            found = [(None, "vmlinux", e) for e in events if ev_match(e)]
        if not _has_magic(pattern) and not (module and _has_magic(module)):
            found = found[:1]         # an event both in vmlinux and a module: vmlinux's
        if not found:
            shown = f"{module}:{pattern}" if module is not None else pattern
            return missing(opts, say("no_matches", probetype="rawtracepoint", what=shown), ap.span,
                           hints=["ptrace -l 'rawtracepoint:PATTERN' lists the raw tracepoints"])
        out = []
        for index, mod, ev in found:
            shown = f"{mod}:{ev}" if module is not None or mod != "vmlinux" else ev
            args, btf = ArgsT(ev, ()), None
            if uses_args:
                got = btf_args(index, ev) if index is not None else None
                if got is None:
                    raise CompileError(f"rawtracepoint:{shown}: BTF does not describe this event's "
                                       "arguments, so args cannot be used", ap.span,
                                       hints=["read the raw arguments arg0, arg1, ..."])
                tid, fields = got
                args = ArgsT(ev, fields)
                btf = {"id": tid, "module": "" if mod == "vmlinux" else mod}
            out.append(Target(self.name, f"rawtracepoint:{shown}", ev if btf is None else "",
                              share_key=shown, args=args, btf=btf))
        return out

    def program_attrs(self, target):
        if target.btf is None:
            return {}
        return {"prog_type_name": "BPF_PROG_TYPE_TRACING", "expected_attach_type": BPF_TRACE_RAW_TP,
                "attach_btf_id": target.btf["id"], "attach_btf_module": target.btf["module"]}

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import links

        # a tp_btf program knows its event (attach_btf_id): it is opened without a name
        return [links.raw_tracepoint_open(prog_fd, target.target)]


register(RawTracepoint())
