"""Where the grammar and the stdlib live (inside the installed package, or in the checkout), and
the per-user cache directory with its atomic writes."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _locate(subpackage: str) -> str:
    installed = os.path.join(_HERE, subpackage)          # pip install: ptrace_lang/grammar
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_HERE), subpackage)  # a checkout: ./grammar


def grammar_dir() -> str:
    return _locate("grammar")


def stdlib_dir() -> str:
    return _locate("stdlib")


def cache_dir(*parts: str, create: bool = True) -> str | None:
    """``$XDG_CACHE_HOME/ptrace-lang/...`` (or ``~/.cache``), made if ``create``; None when it
    cannot be made or written (the caches only ever save time)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "ptrace-lang", *parts)
    if not create:
        return path
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
    except OSError:
        return None
    return path if os.access(path, os.W_OK | os.X_OK) else None


def write_atomic(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file and a rename, so that a concurrent
    reader never sees half a file; False (and nothing left behind) if it failed."""
    tmp = "%s.%d.tmp" % (path, os.getpid())
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
