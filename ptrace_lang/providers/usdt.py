"""usdt: — SystemTap SDT probes (``.note.stapsdt``) of a binary or shared library.

``usdt:PATH:PROBE`` (any provider) or ``usdt:PATH:PROVIDER:PROBE``; both parts may be globs.
Every note (a probe site: one probe can have several, e.g. when inlined) becomes one uprobe at
the site's file offset, attached through the uprobe PMU with the site's semaphore as the
``ref_ctr_offset``: the kernel increments the semaphore in every process that maps the binary
while the probe is attached (and decrements it after), so ``if (PROBE_ENABLED())`` guards
open without writing into the process. With ``-p PID`` / ``-c CMD`` the uprobes are opened for
that process only, so only its semaphores are raised. ``argN`` is read as the note's argument spec says
(register, memory at register + offset, constant; see ``codegen.lower.usdt_arg``); sites whose
specs are equal share one program.
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, missing, register, substitute_positional

MAX_ARGS = 12       # sys/sdt.h allows up to 12 arguments


class Usdt(Provider):
    listed = "user"
    kernel_feature = "uprobe_pmu"
    name = "usdt"
    aliases = ("U",)
    prog_type_name = "BPF_PROG_TYPE_KPROBE"
    builtins = frozenset({f"arg{i}" for i in range(MAX_ARGS)} | {"func"})
    site_builtins = frozenset(f"arg{i}" for i in range(MAX_ARGS))
    pt_regs_context = True
    user_space = True
    runs_last_attached_first = True    # (a uprobe's consumers: the newest runs first)

    def expand(self, ap, opts):
        from ptrace_lang import elfsyms
        from ptrace_lang.sema.types import UsdtArgsT

        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if len(parts) == 2:
            binary, provider, probe = parts[0], "*", parts[1]
        elif len(parts) == 3:
            binary, provider, probe = parts
        else:
            raise CompileError("usdt probe must be written usdt:binary:[provider:]probe", ap.span)
        if not probe:
            raise CompileError("usdt probe must be written usdt:binary:[provider:]probe", ap.span)
        from ptrace_lang.providers.uprobe import resolve_binaries

        # usdt::prov:probe / usdt:*:... with -p: every object of the process; usdt:./bin*:...
        files = resolve_binaries(self.name, binary, opts, ap.span)
        pid = getattr(opts, "pid", None)
        pid = -1 if pid is None else pid
        out = []
        for shown, path in files:
            try:
                notes = elfsyms.find_usdt(path, provider or "*", probe)
                sites = [(n, elfsyms.usdt_file_offset(path, n),
                          elfsyms.semaphore_file_offset(path, n) or 0) for n in notes]
            except (OSError, ValueError, LookupError) as e:
                if len(files) > 1:
                    continue        # (an object of the process that cannot be read)
                raise CompileError(f"usdt: cannot read the probes of {path}: {e}", ap.span) from None
            out.extend(Target(self.name, f"usdt:{shown}:{n.provider}:{n.name}",
                              f"{off}:{sem}:{pid}:{path}", share_key=("usdt", n.args),
                              args=UsdtArgsT(tuple(n.args)))
                       for n, off, sem in sites)
        if not out:
            from ptrace_lang.messages import say

            # (bpftrace names the binary, if any, and the probe, not the provider)
            what = f"{binary}:{probe}" if binary else probe
            return missing(opts, say("no_matches", probetype="usdt", what=what), ap.span)
        return out

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import links, perf

        off, sem, pid, path = target.target.split(":", 3)
        fd = perf.uprobe_event(path, int(off), ref_ctr_offset=int(sem), pid=int(pid))
        return [links.attach_perf_fd(prog_fd, fd, cookie)]


register(Usdt())
