"""begin/BEGIN and end/END: programs run once with BPF_PROG_TEST_RUN, not attached."""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register


class _RunOnce(Provider):
    prog_type_name = "BPF_PROG_TYPE_RAW_TRACEPOINT"
    runs_by_test_run = True

    def expand(self, ap, opts):
        if ap.parts:
            raise CompileError(f"{ap.provider} probes take no arguments", ap.span)
        return [Target(self.name, self.name, "", share_key=self.name)]

    def attach(self, target, prog_fd, cookie):
        return []


class Begin(_RunOnce):
    bare = True
    runs = "start"
    name = "begin"
    aliases = ("BEGIN",)


class End(_RunOnce):
    bare = True
    runs = "end"
    name = "end"
    aliases = ("END",)


register(Begin())
register(End())
