"""printf: format parsing, argument classes, and rendering with C semantics.

printf_*.out in tests/unit/golden/format are bpftrace 0.17's stdout for printf_*.bt
(see capture.py); they are compared with style="old", and with the default style where the two agree.
"""
from __future__ import annotations

import pathlib
import time

import pytest

from ptrace_lang.runtime.format import Record, Stack
from ptrace_lang.runtime.printf import FormatSpec, arg_class, check_arg_count, compile_format, parse_format

GOLDEN = pathlib.Path(__file__).parent / "golden" / "format"


def golden_lines(name: str) -> list[str]:
    text = (GOLDEN / f"{name}.out").read_bytes().decode("utf-8", "surrogateescape")
    lines = text.split("\n")
    assert lines[0] == "Attaching 1 probe..."
    return lines[1:]


def fmt(f: str, *args, style: str = "new") -> str:
    return compile_format(f, style)(args)


# --------------------------------------------------------------------------- parsing

def test_parse_format_fields():
    specs = parse_format("a %-16s b %08d %5.2f %llx %hhd %.s %% %rx %rh %r %zu end")
    assert [s.conv for s in specs] == ["s", "d", "f", "x", "d", "s", "rx", "rh", "r", "u"]
    s = specs[0]
    assert (s.flags, s.width, s.precision, s.length, s.start, s.end) == ("-", "16", "", "", 2, 7)
    assert (specs[1].flags, specs[1].width) == ("0", "8")
    assert (specs[2].width, specs[2].precision) == ("5", "2")
    assert specs[3].length == "ll"
    assert specs[4].length == "hh"
    assert specs[5].precision == "0" and specs[5].has_precision
    assert specs[9].length == "z"
    text = "a %-16s b %08d %5.2f %llx %hhd %.s %% %rx %rh %r %zu end"
    assert [text[s.start:s.end] for s in specs] == [
        "%-16s", "%08d", "%5.2f", "%llx", "%hhd", "%.s", "%rx", "%rh", "%r", "%zu"]
    assert specs[0].text == "%-16s"


def test_parse_format_all_conversions_and_flags():
    specs = parse_format("%d %i %u %x %X %o %s %c %p %e %E %f %F %g %G %ld %lu %llx %lld %+d % d %#x %#o %jd %td %Lf")
    assert len(specs) == 26
    assert [s.flags for s in specs[19:23]] == ["+", " ", "#", "#"]


def test_arg_class():
    classes = {s.conv: arg_class(s) for s in parse_format("%d%i%u%x%X%o%c%s%p%e%f%g%r%rx%rh")}
    assert classes == {"d": "int", "i": "int", "u": "int", "x": "int", "X": "int", "o": "int", "c": "char",
                       "s": "str", "p": "ptr", "e": "float", "f": "float", "g": "float", "r": "buf",
                       "rx": "buf", "rh": "buf"}


@pytest.mark.parametrize("bad,message", [
    ("%y", "unsupported format specifier: y"),
    ("abc %k def", "unsupported format specifier: k"),
    ("%n", "unsupported format specifier: n"),
    ("%a", "unsupported format specifier: a"),
    ("100%", "incomplete format specifier at end of format string: %"),
    ("%-5", "incomplete format specifier at end of format string: %-5"),
    ("%!", "unsupported format specifier: %!"),
    ("%*d", "unsupported format specifier: %*d"),
])
def test_parse_format_errors(bad, message):
    with pytest.raises(ValueError) as err:
        parse_format(bad)
    assert str(err.value).startswith(message)
    with pytest.raises(ValueError):
        compile_format(bad)


def test_percent_percent_takes_no_argument():
    assert parse_format("100%% done %d%%") == [FormatSpec("d", "", "", "", "", 11, 13)]
    assert fmt("100%% done %d%%\n", 5) == "100% done 5%\n"
    assert compile_format("100%%\n")(()) == "100%\n"
    assert compile_format("plain\n")(()) == "plain\n"


def test_check_arg_count():
    specs = parse_format("%d %s")
    assert check_arg_count(specs, 2) is None
    assert check_arg_count(specs, 1) == "not enough arguments for format string (1 supplied, 2 expected)"
    assert check_arg_count(specs, 3) == "too many arguments for format string (3 supplied, 2 expected)"


# --------------------------------------------------------------------------- goldens (0.17)

def test_golden_printf_ints():
    lines = golden_lines("printf_ints")
    line1 = "%ld|%lu|%llx|%lld|%hhd|%hd|%zu|%lx|%llu\n"
    args1 = (-7, -8, -9, -10, 300, 70000, 11, -1, -1)
    assert fmt(line1, *args1, style="old") == lines[0] + "\n"
    assert fmt(line1, *args1) == lines[0] + "\n"  # same in both styles: explicit lengths
    assert fmt("%X|%o|%x\n", 255, 8, 255) == lines[1] + "\n"
    line3 = "%d %u %x %X %o|\n"
    args3 = (0x100000001, 0x100000001, -1, -1, -1)
    assert fmt(line3, *args3, style="old") == lines[2] + "\n"
    # The newest bpftrace reads 64 bits without a length modifier.
    assert fmt(line3, *args3) == "4294967297 4294967297 ffffffffffffffff FFFFFFFFFFFFFFFF 1777777777777777777777|\n"
    line4 = "%hd %hu %hhx %hhu %lu %zd\n"
    assert fmt(line4, -1, -1, -1, 511, -1, -1, style="old") == lines[3] + "\n"
    assert fmt(line4, -1, -1, -1, 511, -1, -1) == lines[3] + "\n"


def test_golden_printf_widths():
    lines = golden_lines("printf_widths")
    for style in ("old", "new"):
        assert fmt("%-8s|%8.3s|%-3d|%03x|%.5d|%8.3d|%5d|%-5d|%05d|\n", "ab", "abcdef", 7, 10, 42, 42, 42, 42, 42,
                   style=style) == lines[0] + "\n"
        assert fmt("%s|%10s|%-10s|%.2s|%c|%p|%5c|%-3c|\n", "abc", "abc", "abc", "abc", 65, 4096, 65, 66,
                   style=style) == lines[1] + "\n"


def test_golden_printf_buffers():
    lines = golden_lines("printf_buffers")
    assert fmt("[%r] [%rx] [%rh]\n", b'ab\x01\xff"\\\n c', b"ab\x01\xff", b"ab\x01\xff") == lines[0] + "\n"
    assert fmt("%p %p\n", 0, -1) == lines[1] + "\n"


# --------------------------------------------------------------------------- conversions

def test_signed_conversions():
    assert fmt("%d %i", -5, 7) == "-5 7"
    assert fmt("%d", (1 << 64) - 1) == "-1"          # the bits of a u64, read as signed
    assert fmt("%d", 1 << 63) == "-9223372036854775808"
    assert fmt("%d", 0x1_0000_0001, style="old") == "1"
    assert fmt("%hhd %hd", 255, 65535) == "-1 -1"
    assert fmt("%ld %lld %jd %zd %td", -1, -2, -3, -4, -5) == "-1 -2 -3 -4 -5"
    assert fmt("%+d % d %+d % d", 5, 5, -5, -5) == "+5  5 -5 -5"
    assert fmt("%5d|%-5d|%05d|%-05d|%+05d", -42, -42, -42, -42, 42) == "  -42|-42  |-0042|-42  |+0042"


def test_unsigned_conversions():
    assert fmt("%u", -1) == "18446744073709551615"
    assert fmt("%u", -1, style="old") == "4294967295"
    assert fmt("%x %X %o", -4, -5, -6) == "fffffffffffffffc FFFFFFFFFFFFFFFB 1777777777777777777772"
    assert fmt("%x", -4, style="old") == "fffffffc"
    assert fmt("%hx %hhx %hhu", -1, 0x1ff, 256) == "ffff ff 0"
    assert fmt("%lx %llx %lu", -1, -1, -1) == "ffffffffffffffff ffffffffffffffff 18446744073709551615"
    assert fmt("%+u % x", 5, 10) == "5 a"          # sign flags do not apply to unsigned conversions
    assert fmt("%08x|%-8x|%8X", 0xbeef, 0xbeef, 0xbeef) == "0000beef|beef    |    BEEF"


def test_alternate_form_and_precision():
    assert fmt("%#x %#X %#o %#x %#o", 255, 255, 8, 0, 0) == "0xff 0XFF 010 0 0"
    assert fmt("%#10x|%#-10x|%#010x", 255, 255, 255) == "      0xff|0xff      |0x000000ff"
    assert fmt("%.5d|%.0d|%5.0d|%.3x|%08.3d", 42, 0, 0, 10, 7) == "00042||     |00a|     007"
    assert fmt("%+.3d|% .3d", 7, -7) == "+007|-007"


def test_char_conversion():
    assert fmt("%c%c%c", 72, 105, 0x2121) == "Hi!"
    assert fmt("[%c]", 0) == "[]"                 # a NUL prints nothing (as bpftrace 0.17)
    assert fmt("%5c|%-3c|", 65, 66) == "    A|B  |"
    out = fmt("%c", -1)
    assert out.encode("utf-8", "surrogateescape") == b"\xff"


def test_string_conversion():
    assert fmt("%s|%10s|%-10s|%.2s|%-6.3s|", "abc", "abc", "abc", "abc", "abcdef") == \
        "abc|       abc|abc       |ab|abc   |"
    assert fmt("[%s]", "") == "[]"
    # %s prints any value the way print() does.
    assert fmt("%s %s %s %s %s", 5, -5, True, (1, "a"), Record({"x": 1})) == "5 -5 true (1, a) { .x = 1 }"
    assert fmt("%s", Stack(["f+1"])) == "\n        f+1\n"
    assert fmt("%5s|", 42) == "   42|"
    # Widths and precisions count bytes, as C does.
    assert fmt("[%6s]", "é") == "[    é]"
    assert fmt("[%-6s]", "é") == "[é    ]"
    assert fmt("[%.1s]", "é").encode("utf-8", "surrogateescape") == b"[\xc3]"
    raw = b"\xff\xfeab".decode("utf-8", "surrogateescape")
    assert fmt("[%s|%5s]", raw, raw).encode("utf-8", "surrogateescape") == b"[\xff\xfeab| \xff\xfeab]"


def test_pointer_conversion():
    assert fmt("%p %p %p", 0, 4096, -1) == "(nil) 0x1000 0xffffffffffffffff"
    assert fmt("%18p|%-8p|", 0xffffffff81000000, 0x10) == "0xffffffff81000000|0x10    |"


def test_float_conversions():
    assert fmt("%5.2f|%e|%g|%E|%G|%f", 3.14159, 12345.678, 0.0001, 1.5, 2e20, 2) == \
        " 3.14|1.234568e+04|0.0001|1.500000E+00|2E+20|2.000000"


def test_buffer_conversions():
    data = bytes([0, 0x1f, 0x20, 0x41, 0x5c, 0x7e, 0x7f, 0xff])
    assert fmt("%r", data) == "\\x00\\x1f A\\~\\x7f\\xff"
    assert fmt("%rx", data) == "\\x00\\x1f\\x20\\x41\\x5c\\x7e\\x7f\\xff"
    assert fmt("%rh", data) == "00 1f 20 41 5c 7e 7f ff"
    assert fmt("[%r][%rx][%rh]", b"", b"", b"") == "[][][]"
    assert fmt("[%6r]", b"ab") == "[    ab]"
    assert fmt("%rhello", b"\x01") == "01ello"   # rh wins over r + "h"


def test_literal_text_with_percent_signs_and_braces():
    assert fmt("{%d} %%s %s\n", 1, "x") == "{1} %s x\n"
    assert fmt("\\n %d", 3) == "\\n 3"


def test_argument_count_must_match():
    render = compile_format("%d %d")
    with pytest.raises(ValueError):
        render((1,))
    with pytest.raises(ValueError):
        compile_format("no args")((1,))


def test_compiled_formatter_is_reusable_and_pure():
    render = compile_format("%s=%d\n")
    assert [render((k, v)) for k, v in (("a", 1), ("b", -2))] == ["a=1\n", "b=-2\n"]


def test_speed_two_arguments():
    render = compile_format("%d %s\n")
    args = (123456, "bash")
    calls = 50_000
    best = min(_timed(render, args, calls) for _ in range(5))
    assert calls / best > 500_000, f"{calls / best:.0f} calls/s"


def _timed(render, args, calls):
    start = time.perf_counter()
    for _ in range(calls):
        render(args)
    return time.perf_counter() - start
