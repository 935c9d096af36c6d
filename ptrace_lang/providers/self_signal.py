"""self:signal:SIGUSR1 — a probe of the tracer itself: its program runs each time the ptrace
process receives that signal (`kill -USR1 <ptrace's pid>`), e.g. to print or clear maps on
demand. Like begin/end it is not attached to the kernel: the session catches the signal and
runs the program with BPF_PROG_TEST_RUN, in the tracer's context (so `pid` is ptrace's)."""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register, substitute_positional

SIGNALS = {"SIGUSR1": 10}     # the signals a self probe can name (bpftrace's: SIGUSR1)


class Self(Provider):
    name = "self"
    prog_type_name = "BPF_PROG_TYPE_RAW_TRACEPOINT"
    runs_by_test_run = True
    runs_on_signal = True
    runs = "signal"
    kernel_feature = "test_run"

    def expand(self, ap, opts):
        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if len(parts) != 2 or parts[0] != "signal":
            raise CompileError("self probe must be written self:signal:SIGUSR1", ap.span)
        sig = parts[1] if parts[1].startswith("SIG") else "SIG" + parts[1]
        if sig not in SIGNALS:
            raise CompileError(f"Unsupported signal for self probe: {parts[1]}", ap.span,
                               hints=["the signals a self probe can catch: " + ", ".join(SIGNALS)])
        return [Target(self.name, f"self:signal:{sig}", str(SIGNALS[sig]), share_key=self.name)]

    def attach(self, target, prog_fd, cookie):
        return []


register(Self())
