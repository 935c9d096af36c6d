"""rawtracepoint: — the kernel's raw tracepoints, arguments as raw u64 ``arg0``..``argN``.

BTF-typed ``args`` (tp_btf) come with BTF types in the compiler; until then a script reads the
raw arguments. Each attach point gets its own program: attach cookies need kernel 6.10 for raw
tracepoints, and the program's ``probe`` is a constant.
"""
from __future__ import annotations

import fnmatch

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, missing, register, substitute_positional

RAW_ARGS = frozenset(f"arg{i}" for i in range(12))


class RawTracepoint(Provider):
    name = "rawtracepoint"
    aliases = ("rt",)
    prog_type_name = "BPF_PROG_TYPE_RAW_TRACEPOINT"
    builtins = RAW_ARGS

    def expand(self, ap, opts):
        from ptrace_lang.kernel import tracefs

        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if len(parts) == 2:          # rawtracepoint:module:event — the module only narrows
            parts = parts[1:]
        if len(parts) != 1 or not parts[0]:
            raise CompileError("rawtracepoint probe must be written rawtracepoint[:module]:event", ap.span)
        pattern = parts[0]
        try:
            # syscalls:* and ftrace:* events are made by ftrace, not tracepoints of their own
            events = sorted({n.split(":", 1)[1] for n in tracefs.list_tracepoints("*:*")
                             if n.split(":", 1)[0] not in ("syscalls", "ftrace")})
        except OSError as e:
            raise CompileError(f"cannot read tracepoints: {e.strerror or e}", ap.span) from None
        names = [e for e in events if fnmatch.fnmatchcase(e, pattern)]
        if not names:
            return missing(opts, f"raw tracepoint not found: {pattern}", ap.span)
        return [Target(self.name, f"rawtracepoint:{n}", n, share_key=n) for n in names]

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import links

        return [links.raw_tracepoint_open(prog_fd, target.target)]


register(RawTracepoint())
