"""Where the grammar and the stdlib live (inside the installed package, or in the checkout), and
the per-user cache directory with its atomic writes (checked and written by ``cachefs``)."""
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
    """The checked cache directory ``top/parts`` (``cachefs``: owned by the effective user,
    writable by no one else), made if ``create``; None when it is missing, cannot be made or is
    not trusted (the caches only ever save time)."""
    from ptrace_lang import cachefs

    return cachefs.dir_path(*parts, create=create)


def write_atomic(path: str, data: bytes) -> bool:
    """Write ``data`` to ``path`` through a temporary file (a new one, never a planted symlink:
    O_EXCL|O_NOFOLLOW) and a rename, so that a concurrent reader never sees half a file; False
    (and nothing left behind) if it failed."""
    from ptrace_lang import cachefs

    try:
        dfd = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        name = os.path.basename(path)
        tmp = cachefs._write_tmp(dfd, name, data)
        if tmp is None:
            return False
        try:
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
            return True
        except OSError:
            cachefs._unlink(dfd, tmp)
            return False
    finally:
        os.close(dfd)
