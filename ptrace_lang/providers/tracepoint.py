"""tracepoint: — tracefs events, ``args`` from each event's format file."""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, missing, register, substitute_positional


class Tracepoint(Provider):
    name = "tracepoint"
    aliases = ("t",)
    prog_type_name = "BPF_PROG_TYPE_TRACEPOINT"
    builtins = frozenset({"args"})
    completes = "tracepoints"
    listed = "kernel"
    kernel_feature = "tracefs"

    def expand(self, ap, opts):
        from ptrace_lang.sema.types import ArgsT

        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if len(parts) != 2 or not all(parts):
            raise CompileError("tracepoint probe must be written tracepoint:subsystem:event", ap.span)
        pattern = f"{parts[0]}:{parts[1]}"
        try:
            names = opts.host.list_tracepoints(pattern)
        except OSError as e:
            raise CompileError(f"cannot read tracepoints: {e.strerror or e}", ap.span) from None
        if not names:
            from ptrace_lang.messages import say

            wild = any(c in pattern for c in "*?[")
            return missing(opts, say("tracepoints_missing" if wild else "tracepoint_missing",
                                     pattern=pattern), ap.span)
        out = []
        for name in names:
            subsys, event = name.split(":", 1)
            fields = opts.host.event_format(subsys, event)
            layout = tuple((f.name, f.offset, f.size, f.signed, f.data_loc, f.array_len, f.is_pointer,
                            f.type_text) for f in fields)
            args = ArgsT(event, tuple((f.name, f) for f in fields))
            out.append(Target(self.name, f"tracepoint:{name}", name, share_key=layout, args=args))
        return out

    def warm_up(self):
        from ptrace_lang.kernel import links, perf, tracefs  # noqa: F401

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import links, perf, tracefs

        subsys, event = target.target.split(":", 1)
        fd = perf.tracepoint_event(tracefs.event_id(subsys, event))
        return [links.attach_perf_fd(prog_fd, fd, cookie)]


register(Tracepoint())
