"""Defects found by using ptrace-lang as a bpftrace user would (one-liners, misuse, odd input):
each test pins the fixed behaviour. No kernel needed."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError


def compiled(src: str, **opts):
    return compile_script(src, "stdin", Options(**opts))


def error_of(src: str, **opts) -> str:
    with pytest.raises(PtraceError) as info:
        compiled(src, **opts)
    return info.value.render(SOURCES)


def test_literal_shift_of_64_or_more_is_masked_as_a_register_shift_is():
    # `1 << 64` reached the verifier as an immediate shift of 64 ("invalid shift 64")
    ir = compiled("BEGIN { $y = 1 << 64; print($y); $z = -8; $z >>= 65; print($z); }",
                  stages=("ir",)).dumps["ir"]
    assert "<<= 0" in ir and "s>>= 1" in ir
    assert "<<= 64" not in ir and ">>= 65" not in ir


def test_unknown_printf_conversion_shows_control_characters_escaped():
    # "%z\n": the newline was printed raw inside the message, breaking the located layout
    msg = error_of('BEGIN { printf("%z\\n", 1); }')
    assert msg.splitlines()[0] == "stdin:1:16-22: ERROR: printf: unsupported format specifier: %z\\n"
    assert msg.splitlines()[1] == 'BEGIN { printf("%z\\n", 1); }'
