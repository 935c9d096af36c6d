"""path(): analysis errors (the verifier run is in tests/kernel/test_path_run.py)."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError


def _err(text: str) -> str:
    with pytest.raises(PtraceError) as ei:
        compile_script(text, "stdin", Options())
    return ei.value.render(SOURCES)


def test_path_only_in_fentry_fexit_and_iter():
    msg = _err('tracepoint:syscalls:sys_enter_openat { printf("%s\\n", path(args.filename)); }')
    assert "The path function can only be used with 'fentry', 'fexit', 'iter' probes" in msg
    assert "path(struct path *path[, int size])" in msg


def test_path_wants_a_pointer_and_a_literal_size():
    assert "path() expects a pointer to a struct path, got 'string[4]'" in _err(
        'iter:task_file { printf("%s\\n", path("abc")); }')
    assert "path(): the size must be a positive integer literal" in _err(
        'iter:task_file { $n = 5; printf("%s\\n", path(&ctx->file->f_path, $n)); }')
