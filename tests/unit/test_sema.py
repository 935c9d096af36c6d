"""Semantic errors: exact messages and locations, as the user sees them (no root, no kernel)."""
from __future__ import annotations

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options())
    return info.value.render(SOURCES)


CASES = [
    ("BEGIN { cat(1); }", "stdin:1:9-15: ERROR: cat() requires a string literal as its first argument\n"
                          "BEGIN { cat(1); }\n        ~~~~~~\nHINT: cat(const char *filename, ...)"),
    ('BEGIN { cat("/proc/%d/stat"); }',
     "stdin:1:13-28: ERROR: cat: not enough arguments for format string (0 supplied, 1 expected)"),
    ('BEGIN { printf("%d\\n", $a); }',
     "stdin:1:24-26: ERROR: Undefined or undeclared variable: $a"),
    ("BEGIN { @x = fake; }", "stdin:1:14-18: ERROR: Unknown identifier: 'fake'"),
    ('BEGIN { @x = 1; @x = "ab"; }',
     "stdin:1:17-26: ERROR: Type mismatch for @x: trying to assign value of type 'string[3]' "
     "when map already has a type 'int8'"),
    ('BEGIN { printf("%d %d\\n", 1); }',
     "stdin:1:16-28: ERROR: printf: not enough arguments for format string (1 supplied, 2 expected)"),
    ('BEGIN { printf("%d\\n", 1, 2); }',
     "stdin:1:16-28: ERROR: printf: too many arguments for format string (2 supplied, 1 expected)"),
    ('BEGIN { printf("%d\\n", comm); }',
     "stdin:1:24-28: ERROR: printf: %d specifier expects a value of type integer ('string[16]' supplied)"),
    ('BEGIN { printf("%y\\n", 1); }', "stdin:1:16-22: ERROR: printf: unsupported format specifier: y"),
    ("BEGIN { count(); }", "stdin:1:9-16: ERROR: count() should be directly assigned to a map"),
    ("BEGIN { @x = hist(); }", "stdin:1:14-20: ERROR: hist() takes 1 or 2 arguments (0 provided)\n"
                               "BEGIN { @x = hist(); }\n             ~~~~~~\nHINT: hist(int[, int k])"),
    ("BEGIN { @x = lhist(1, 0, 10); }", "stdin:1:14-29: ERROR: lhist() takes 4 arguments (3 provided)"),
    ("BEGIN { @x = args.foo; }", "stdin:1:14-18: ERROR: The args builtin can not be used with 'begin' probes"),
    ("BEGIN { foo(1); }", "stdin:1:9-15: ERROR: Unknown function: 'foo'"),
    ("BEGIN { @x[1] = 1; @x = 2; }",
     "stdin:1:20-22: ERROR: @x used as a map without an explicit key (scalar map), previously used with a key"),
    ('BEGIN { @x[1] = 1; @x["a"] = 2; }',
     "stdin:1:20-27: ERROR: Argument mismatch for @x: trying to access with arguments: 'string[2]' "
     "when map expects arguments: 'int64'"),
    ("BEGIN { break; }", "stdin:1:9-14: ERROR: 'break' outside of a loop"),
    ('BEGIN { $x = 1; $x = "a"; }',
     "stdin:1:17-25: ERROR: Type mismatch for $x: trying to assign value of type 'string[2]' "
     "when variable already has a type 'int8'"),
    ("BEGIN { print(@nope); }", "stdin:1:15-20: ERROR: Undefined map: @nope"),
    ("foo:bar { }", "stdin:1:1-8: ERROR: Invalid probe type: foo"),
    ("interval:xs:1 { }", "stdin:1:1-14: ERROR: xs is not an accepted unit of time"),
    ('BEGIN { @x = 1 + "a"; }', "stdin:1:16-17: ERROR: Type mismatch for '+': comparing int64 with string[2]"),
    ('BEGIN { exit("a"); }', "stdin:1:14-17: ERROR: exit() expects an integer exit code, got 'string[2]'"),
    ("BEGIN { str(); }", "stdin:1:9-14: ERROR: str() requires between 1 and 2 arguments (0 provided)"),
    ("BEGIN { @x = count(); @x = sum(1); }",
     "stdin:1:23-34: ERROR: Type mismatch for @x: trying to assign value of type 'sum_t' when map "
     "already has a type 'count_t'"),
    ("BEGIN { $x = count(); }", "stdin:1:14-21: ERROR: count() should be directly assigned to a map\n"
                               "BEGIN { $x = count(); }\n             ~~~~~~~"),
    ("BEGIN { @x = lhist(1, 10, 5, 1); }", "stdin:1:27-28: ERROR: lhist() max must be greater than min"),
    ('config = { bogus = 1; } BEGIN { }', "ERROR: Unrecognized config variable: bogus"),
    ("BEGIN { if (comm) { } }", "stdin:1:13-17: ERROR: Invalid condition in if(): string[16]"),
]


@pytest.mark.parametrize("src,expected", CASES, ids=[c[0] for c in CASES])
def test_error_message(src, expected):
    text = error_of(src)
    assert expected in text
    # one misuse, one error (a binary operator's says where its two sides are under it)
    sides = text.count("ERROR: left (") + text.count("ERROR: right (")
    assert text.count("ERROR:") - sides == 1, text


def test_errors_are_all_reported_with_source_line_and_markers():
    text = error_of("BEGIN {\n  @a = x;\n  @b = y;\n}")
    assert text == ("stdin:2:8-9: ERROR: Unknown identifier: 'x'\n  @a = x;\n       ~\n"
                    "stdin:3:8-9: ERROR: Unknown identifier: 'y'\n  @b = y;\n       ~")


LATER = [
    ("fentry:no_such_fn_xyz { }", "stdin:1:1-22: ERROR: No matches for fentry no_such_fn_xyz."),
]


@pytest.mark.parametrize("src,expected", LATER, ids=[c[0] for c in LATER])
def test_later_constructs_parse_and_are_refused_with_a_location(src, expected):
    assert expected in error_of(src)


def test_stack_limit_names_the_statement():
    long = '"' + "a" * 63 + '"'
    src = f"BEGIN {{ $s = {long};" + "".join(f" ${v} = $s;" for v in "tuvwabcd") + " }"
    text = error_of(src)
    assert "ERROR: The probe needs 576 bytes of stack, more than BPF's 512" in text
    assert text.startswith("stdin:1:144-151:")   # the statement that crossed the limit


def test_positional_parameters_are_typed_by_their_value():
    c = compile_script('BEGIN { printf("%d %s\\n", $1, $2); }', "stdin", Options(positional=["5", "x"]))
    assert c.spec.events[0].args[0].kind == "int"
    assert c.spec.events[0].args[1].kind == "str"
    with pytest.raises(PtraceError):
        compile_script('BEGIN { printf("%d\\n", $1); }', "stdin", Options(positional=["x"]))


def test_map_types_are_learned_across_probes():
    # @x is read in a probe declared before the one assigning it
    c = compile_script("interval:s:1 { $v = @x; } BEGIN { @x = 1; }", "stdin", Options())
    assert [m.name for m in c.spec.user_maps] == ["@x"]


def test_positional_parameters_in_attach_points_before_they_are_split():
    # bpftrace substitutes $N in the attach point's text, the provider's name included
    c = compile_script('BEG$1 { exit(); } i$2:$3:1 { exit(); }', "stdin",
                       Options(positional=["IN", "nterval", "s"]))
    assert c.spec.probe_names == ["begin", "interval:s:1"]
    c = compile_script('$1:s:1 { exit(); }', "stdin", Options(positional=["interval"]))
    assert c.spec.probe_names == ["interval:s:1"]
    with pytest.raises(PtraceError) as info:
        compile_script('BEG$1 { exit(); }', "stdin", Options())
    assert info.value.render(SOURCES).startswith(
        "stdin:1:1-6: ERROR: Positional parameter $1 is not set")


def test_str_of_a_positional_parameter_plus_a_constant():
    from ptrace_lang.frontend import ast as A
    c = compile_script('BEGIN { printf("%s %s\\n", str($1 + 1), str($1 + 5)); }', "stdin",
                       Options(positional=["hello"]))
    lits = [n.value for n in A.walk(c.program) if isinstance(n, A.StrLit)]
    assert "ello" in lits and "" in lits
    with pytest.raises(PtraceError) as info:
        compile_script('BEGIN { print(str($1 + 6)); }', "stdin", Options(positional=["hello"]))
    assert info.value.render(SOURCES).startswith(
        "stdin:1:19-25: ERROR: Only addition of a single constant less or equal to the length "
        "of $1 (which is 5) is allowed inside str()")
    # a numeric parameter is sliced as text too: bpftrace 0.17 prints "1" for str($1 + 1) of 41
    c = compile_script('BEGIN { print(str($1 + 1)); }', "stdin", Options(positional=["41"]))
    assert "1" in [n.value for n in A.walk(c.program) if isinstance(n, A.StrLit)]


def test_a_leading_zero_makes_an_octal_literal():
    # bpftrace 0.17 prints 509 for print(0775)
    from ptrace_lang.frontend import ast as A
    c = compile_script('BEGIN { @ = 0775; }', "stdin", Options())
    assert [n.value for n in A.walk(c.program) if isinstance(n, A.IntLit)] == [509]
