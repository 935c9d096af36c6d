"""Bad input gives a located error or compiles, never a traceback or a runaway (issue 11, part 3):
the cases the fuzz tier (tests/fuzz) reported, each checked alone."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options())
    return info.value.render(SOURCES)


@pytest.mark.parametrize("src", [
    "BEGIN { ustack(); }",
    "BEGIN { kstack(3); }",
    'BEGIN { str("a"); }',
    'BEGIN { str("a", 1); }',
    'BEGIN { buf("abc", 2); }',
    "BEGIN { comm(); }",
    "BEGIN { if (1) { ustack() } }",
])
def test_a_value_in_memory_as_a_statement_compiles(src):
    """Its value is computed and dropped (the lowering used to call itself forever)."""
    compile_script(src, "stdin", Options())
