"""ptrace-lang: a bpftrace-dialect tracing language compiled straight to eBPF.

The Python API (``trace``, ``compile``; see ``ptrace_lang.api``) is imported on first use, so
that the ``ptrace`` command, which imports this package, starts without it.
"""

__version__ = "0.1.0"

__all__ = ["trace", "compile", "Trace", "Event", "PtraceError", "__version__"]


def __getattr__(name: str):
    if name in ("trace", "compile", "Trace", "Event"):
        from ptrace_lang import api

        return getattr(api, name)
    if name == "PtraceError":
        from ptrace_lang.errors import PtraceError

        return PtraceError
    raise AttributeError(f"module 'ptrace_lang' has no attribute {name!r}")
