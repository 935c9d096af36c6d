"""bench:NAME — a micro-benchmark of a block (bpftrace 0.26's ``bench:`` probes): with
``--mode bench`` (or ``--bench``) each block is run many times by BPF_PROG_TEST_RUN and its
average run time printed in a table (``modes.run_bench``); without it the program is refused.
The program is an XDP program, as bpftrace's: raw tracepoint programs take no ``repeat``."""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register, substitute_positional


class Bench(Provider):
    name = "bench"
    prog_type_name = "BPF_PROG_TYPE_XDP"
    runs_by_test_run = True
    runs = "bench"
    kernel_feature = "test_run"

    def expand(self, ap, opts):
        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if not parts or not parts[0]:
            raise CompileError("bench probes must have a name", ap.span)
        if len(parts) > 1:
            raise CompileError("bench probe type requires 1 argument, found "
                               f"{len(parts)}", ap.span)
        return [Target(self.name, f"bench:{parts[0]}", parts[0], share_key=parts[0])]

    def attach(self, target, prog_fd, cookie):
        return []


register(Bench())
