"""Source spans and the errors a user can cause, rendered in bpftrace's format.

    stdin:1:14-15: ERROR: syntax error, unexpected ;
    BEGIN { $x = ; }
                 ~
"""
from __future__ import annotations

import os
import sys

from ptrace_lang.records import dataclass, field


@dataclass(frozen=True)
class Span:
    """A region of one source file. Lines and columns are 1-based; end_col is exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int
    # code a macro expanded: the calls it came from, nearest first (each said under the
    # diagnostic as "expanded from", as bpftrace 0.26 does)
    origin: tuple = field(default=(), kw_only=True, repr=False, compare=False)

    def join(self, other: "Span | None") -> "Span":
        if other is None or other is NO_SPAN:
            return self
        if self is NO_SPAN:
            return other
        start = min((self.line, self.col), (other.line, other.col))
        end = max((self.end_line, self.end_col), (other.end_line, other.end_col))
        return Span(self.file, start[0], start[1], end[0], end[1])


NO_SPAN = Span("", 0, 0, 0, 0)


@dataclass
class Diagnostic:
    message: str
    span: Span = NO_SPAN
    hints: list[str] = field(default_factory=list)
    severity: str = "ERROR"  # or "WARNING"
    # more places the diagnostic points at, each (message, Span) said under it in its
    # severity (bpftrace 0.26's "left (T)" / "right (T)" under a binary operator's mismatch)
    context: list = field(default_factory=list)


class SourceRegistry:
    """Maps file names to their text so diagnostics can quote the line."""

    def __init__(self) -> None:
        self._texts: dict[str, list[str]] = {}

    def add(self, name: str, text: str) -> None:
        self._texts[name] = text.split("\n")

    def line(self, name: str, lineno: int) -> str | None:
        lines = self._texts.get(name)
        if lines is None or not 1 <= lineno <= len(lines):
            return None
        return lines[lineno - 1]


SOURCES = SourceRegistry()


def render(diag: Diagnostic, sources: SourceRegistry = SOURCES) -> str:
    """Render one diagnostic as bpftrace does: header, source line, ~ markers, hints."""
    sp = diag.span
    out = []
    if sp is NO_SPAN or sp.line == 0:
        out.append(f"{diag.severity}: {diag.message}")
    else:
        end_col = sp.end_col if sp.end_line == sp.line else None
        src = sources.line(sp.file, sp.line)
        if end_col is None:
            end_col = (len(src) + 1) if src is not None else sp.col + 1
        if end_col <= sp.col:
            end_col = sp.col + 1
        out.append(f"{sp.file}:{sp.line}:{sp.col}-{end_col}: {diag.severity}: {diag.message}")
        if src is not None:
            out.append(src)
            marker = "".join("\t" if c == "\t" else " " for c in src[: sp.col - 1])
            out.append(marker + "~" * (end_col - sp.col))
    for message, where in diag.context:
        bare = Span(where.file, where.line, where.col, where.end_line, where.end_col)
        out.append(render(Diagnostic(message, bare, severity=diag.severity), sources))
    for hint in diag.hints:
        out.append(f"HINT: {hint}")
    for call in sp.origin:
        from ptrace_lang.messages import say

        out.append(render(Diagnostic(say("expanded_from"), call, severity=diag.severity), sources))
    return "\n".join(out)


class PtraceError(Exception):
    """Any error the user caused; carries one or more diagnostics. Never shown as a traceback."""

    def __init__(self, message: str, span: Span = NO_SPAN, hints: list[str] | None = None,
                 diagnostics: list[Diagnostic] | None = None) -> None:
        super().__init__(message)
        if diagnostics is None:
            diagnostics = [Diagnostic(message, span, list(hints or []))]
        self.diagnostics = diagnostics

    @property
    def span(self) -> Span:
        """Where the (first) error is: file, line, col, end_line, end_col (1-based)."""
        return self.diagnostics[0].span if self.diagnostics else NO_SPAN

    @property
    def message(self) -> str:
        return self.diagnostics[0].message if self.diagnostics else str(self)

    def render(self, sources: SourceRegistry = SOURCES) -> str:
        return "\n".join(render(d, sources) for d in self.diagnostics)


class CompileError(PtraceError):
    """A parse or semantic error in the script."""


class NotSupportedYet(CompileError):
    def __init__(self, what: str, span: Span = NO_SPAN) -> None:
        super().__init__(f"{what} is not supported yet", span)


class RuntimeFailure(PtraceError):
    """Loading, attaching or running failed (verifier rejection, missing probe, permissions)."""


def out_of_fds(e: BaseException) -> bool:
    """Whether ``e`` is EMFILE (as an ImportError: the module's file could not be opened)."""
    if isinstance(e, OSError):
        return e.errno == 24
    return isinstance(e, ImportError) and "Too many open files" in str(e)


def report(e: "PtraceError", verbose: bool = False) -> int:
    """Write a run's error as bpftrace does (after what the run printed), the verifier's whole
    log too with -v; the exit code 1."""
    sys.stdout.flush()
    sys.stderr.write(e.render(SOURCES) + "\n")
    log = getattr(e, "verifier_log", None)
    if log and verbose:
        sys.stderr.write(log.rstrip("\n") + "\n")
    return 1


def internal_error(e: BaseException) -> int:
    """Report an error of ptrace itself in one line (the traceback with PTRACE_DEBUG=1); the
    exit code 1. A broken pipe is raised again: the caller ends quietly as ``head`` expects."""
    if isinstance(e, BrokenPipeError):
        raise e
    if out_of_fds(e):       # (ulimit -n 8): a module, a file or a kernel object could not be opened
        limit = os.sysconf("SC_OPEN_MAX")
        sys.stderr.write(f"ERROR: out of file descriptors (Too many open files): the limit is "
                         f"{limit} (ulimit -n); ptrace needs a few dozen, and two per attach "
                         "point\n")
        return 1
    if os.environ.get("PTRACE_DEBUG"):
        import traceback
        traceback.print_exc()
    sys.stderr.write(f"ERROR: internal error: {type(e).__name__}: {e}\n"
                     "(set PTRACE_DEBUG=1 for the Python traceback)\n")
    return 1
