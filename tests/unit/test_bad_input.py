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


@pytest.mark.parametrize("src, expected", [
    ("struct S { int e:-1; } BEGIN { exit(); }",
     "stdin:1:1-24: ERROR: Invalid C definition: bit-field 'e' has a negative width (-1)"),
    ("struct S { int e:0; } BEGIN { exit(); }", "named bit-field 'e' has zero width"),
    ("struct S { char g:9; } BEGIN { exit(); }",
     "width of bit-field 'g' (9 bits) exceeds the width of its type (8 bits)"),
    ("struct S { int *e:3; } BEGIN { exit(); }", "bit-field 'e' has a type that is not an integer"),
    ("struct S { int e:x; } BEGIN { exit(); }", "bit-field 'e' has a width that is not a number: 'x'"),
    ("struct S { int a[-1]; } BEGIN { exit(); }", "array 'a' has a negative size (-1)"),
])
def test_bad_c_declarators_are_located_errors(src, expected):
    assert expected in error_of(src)


def test_c_integer_constants_are_read_as_c_reads_them():
    """010 is octal in C (int(tok, 0) refused it with a ValueError)."""
    c = compile_script("struct S { int a:010; int b:0x3; int c[010]; } enum E { A = 010, B }; "
                       "BEGIN { @ = sizeof(struct S); @b = B; }", "stdin", Options())
    assert c is not None


def test_lhist_step_larger_than_the_range_is_refused():
    assert error_of("BEGIN { @x = lhist(2, 0, 100, 4294967296); }") == (
        "stdin:1:14-42: ERROR: lhist() step is too large for the given range (provided step "
        "4294967296 for range 100)\nBEGIN { @x = lhist(2, 0, 100, 4294967296); }\n"
        "             ~~~~~~~~~~~~~~~~~~~~~~~~~~~~")


@pytest.mark.parametrize("args", ["4294967296, 8589934592, 1000000000",
                                  "0, 9223372036854775807, 9223372036854775807"])
def test_lhist_bounds_wider_than_an_immediate_compile(args):
    """min, max and step over 32 bits go through a register (an immediate is 32 bits)."""
    compile_script(f"BEGIN {{ @x = lhist(5000000000, {args}); }}", "stdin", Options())


@pytest.mark.parametrize("src, col", [("tracepoint:sys\x00calls:x { }", 15),
                                      ('uprobe:/bin/bash:"ma\x01in" { }', 21)])
def test_a_control_character_in_an_attach_point_is_a_located_error(src, col):
    """(a NUL byte reached the file system: ValueError: embedded null byte)"""
    text = error_of(src)
    assert text.startswith(f"stdin:1:{col}-{col + 1}: ERROR: invalid character ")
    assert "in attach point" in text.splitlines()[0]


@pytest.mark.parametrize("text, want", [("0x10", 16), ("010", 8), ("0", 0), ("12", 12)])
def test_uprobe_offsets_are_read_as_strtoull_reads_them(text, want):
    from ptrace_lang.elfsyms import parse_offset

    assert parse_offset(text) == want


def test_a_bad_uprobe_offset_is_a_located_error():
    """+08 is no octal number (int("08", 0) escaped as a ValueError)."""
    import os

    if not os.path.exists("/bin/bash"):
        pytest.skip("no /bin/bash")
    text = error_of("uprobe:/bin/bash:echo_builtin+08 { exit(); }")
    assert text.startswith("stdin:1:1-33: ERROR: uprobe: invalid offset '08' "
                           "(a leading 0 makes it octal)")


def test_a_string_literal_over_32_kib_is_refused_at_the_literal():
    text = error_of('BEGIN { printf("%s\\n", "' + "a" * 33000 + '"); }')
    assert text.startswith("stdin:1:24-33026: ERROR: String literal is too long (33000 bytes, "
                           "at most 32767)")


def test_a_record_over_32_kib_is_written_through_an_address():
    """Stores past an instruction's 16-bit offset go through an address register (the encoder
    failed: offset 32768 does not fit in 16 bits)."""
    big = '"' + "a" * 20000 + '"'
    c = compile_script(f'BEGIN {{ printf("%s%s\\n", {big}, {big}); }}', "stdin", Options())
    assert c.spec.events[0].args[1].offset > 20000


@pytest.mark.parametrize("src, expected", [
    ("BEGIN { unroll(100) { unroll(100) { @x++; } } }",
     "stdin:1:9-46: ERROR: unroll() expands to 40201 nodes of code (10000 copies of its innermost "
     "body), more than the limit of 2500 for a whole expansion"),
    ("BEGIN { " + "unroll(2) { " * 16 + "@x++; " + "} " * 16 + "}",
     "(65536 copies of its innermost body), more than the limit of 2500"),
])
def test_nested_unrolls_are_bounded_before_they_are_expanded(src, expected):
    """(sixteen nested unroll(2) took 12 GB; two nested unroll(100) 31 s)"""
    assert expected in error_of(src)


def test_unrolls_within_the_limit_compile():
    compile_script("BEGIN { unroll(100) { unroll(5) { @x++; } } unroll(100) { @y++; } }",
                   "stdin", Options())


def test_a_program_too_large_is_stopped_while_it_is_lowered():
    """(a huge program went on to register allocation for a minute, then failed to encode)"""
    text = error_of("config = { max_strlen = 1024 } BEGIN { $s = str(0); "
                    "unroll(100) { if (strcontains($s, str(1))) { @x++ } } }")
    assert "ERROR: The probe's program is too large: more than 32768 instructions" in text


@pytest.mark.parametrize("src, construct", [
    ("BEGIN { " + "if (1) { " * 300 + "@x++; " + "} " * 300 + "}", "an if statement"),
    ("BEGIN { $x = 1" + " + 1" * 400 + "; }", "a binary operator"),
    ("BEGIN { " + "while (1) { " * 150 + "break; " + "} " * 150 + "}", "a while loop"),
    ("BEGIN { $x = " + "!" * 200 + "1; }", "a unary operator"),
])
def test_deep_nesting_is_a_located_error_naming_the_construct(src, construct):
    """(the recursive passes raised RecursionError: the CLI said "nested too deeply", nowhere)"""
    text = error_of(src)
    assert text.startswith("stdin:1:")
    assert (f"ERROR: the program is nested too deeply: {construct} at nesting level 101, more "
            "than the 100 levels of statements and expressions allowed") in text


@pytest.mark.parametrize("src", [
    "BEGIN { " + "if (1) { " * 98 + "@x++; " + "} " * 98 + "}",
    "BEGIN { $x = 1" + " + 1" * 98 + "; }",
    "BEGIN { $x = " + "(" * 500 + "1" + ")" * 500 + "; }",      # parentheses nest nothing
    "BEGIN { $x = " + "1 ? " * 97 + "1" + " : 2" * 97 + "; }",
])
def test_nesting_within_the_limit_compiles_below_python_s_recursion_limit(src):
    import sys

    def deeper(k):            # a caller's frames (pytest's, the CLI's) take their share too
        return compile_script(src, "stdin", Options(stages=("ast", "types", "ir"))) if k == 0 \
            else deeper(k - 1)

    assert sys.getrecursionlimit() <= 1000
    deeper(150)


def test_a_record_written_inside_an_open_record_keeps_its_labels():
    """A division's warning record inside a printf value written in place (ntop): the outer
    record's labels were overwritten (duplicate label, an internal error)."""
    compile_script('BEGIN { $a = 0; printf("%s %d\\n", ntop(2 / $a), 5); }', "stdin", Options())
