"""bpftrace 0.26's words for errors, from one table (ptrace_lang/messages.py): every entry is
used by the code, fills in, and the command line and the compiler say them (no kernel)."""
from __future__ import annotations

import pathlib
import re
import string

import pytest

from ptrace_lang import messages
from ptrace_lang.cli import UsageError, parse_args, parse_pid
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from recorded_machine import recorded_machine

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_message_is_used_and_fills_in():
    import inspect

    code = "".join(p.read_text() for p in (ROOT / "ptrace_lang").rglob("*.py")
                   if p.name != "messages.py") + inspect.getsource(messages.map_call_error)
    for key, template in messages.MESSAGES.items():
        assert re.search(rf"""["']{key}["']""", code), f"message {key!r} is not used"
        fields = {f: (1 if spec else "X") for _, f, spec, _ in string.Formatter().parse(template)
                  if f}
        assert messages.say(key, **fields)


@pytest.mark.parametrize("text,pid", [("123", 123), ("0x1f", 31), ("0b101", 5), ("017", 15),
                                      ("1_000", 1000), ("42u", 42), ("0", 0),
                                      ("4194304", 4194304)])
def test_pids_as_bpftrace_026_reads_them(text, pid):
    assert parse_pid(text) == pid
    assert parse_args(["-p", text, "-e", "BEGIN{}"])["pid"] == pid


@pytest.mark.parametrize("text,message", [
    ("abc", "Failed to parse pid: invalid integer: abc"),
    ("", "Failed to parse pid: invalid integer: "),
    ("-5", "Failed to parse pid: invalid integer: -5"),
    ("12x", "Failed to parse pid: invalid trailing bytes: 12x"),
    ("١٢", "Failed to parse pid: invalid integer: ١٢"),
    ("4194305", "Pid out of range: 4194305"),
    ("0x400001", "Pid out of range: 4194305"),
    ("99999999999999999999", "Failed to parse pid: overflow error, maximum value is "
                             "18446744073709551615: 99999999999999999999"),
])
def test_bad_pids_in_bpftrace_026_words(text, message):
    with pytest.raises(UsageError) as e:
        parse_args(["-p", text, "-e", "BEGIN{}"])
    assert str(e.value) == message and not e.value.usage


def test_command_line_errors_in_bpftrace_words():
    with pytest.raises(UsageError) as e:
        parse_args(["-c", "ls", "-p", "1", "-e", "BEGIN{}"])
    assert str(e.value) == "USAGE: Cannot use both -c and -p." and e.value.usage
    with pytest.raises(UsageError) as e:
        parse_args(["-d", "bogus", "-e", "BEGIN{}"])
    assert str(e.value) == "USAGE: invalid option for -d: bogus" and not e.value.usage
    assert messages.say("output_open", path="/x/y", reason="No such file or directory") == \
        'Failed to open output file: "/x/y": No such file or directory'


def _error(src: str) -> str:
    with pytest.raises(PtraceError) as e:
        compile_script(src, "stdin", Options(), machine=recorded_machine())
    return e.value.render(SOURCES)


@pytest.mark.parametrize("src,first", [
    ("BEGIN { unroll(200) { @a = 1; } }", "stdin:1:9-20: ERROR: unroll maximum value is 100"),
    ("BEGIN { unroll(0) { @a = 1; } }", "stdin:1:9-18: ERROR: unroll minimum value is 1"),
    ("BEGIN { $n = 2; unroll($n) { @a = 1; } }", "stdin:1:17-27: ERROR: invalid unroll value"),
    ("BEGIN { @a = 1; $b = has_key(@a, 1); }",
     "stdin:1:34-35: ERROR: Argument mismatch for @a: trying to access with arguments: 'int64' "
     "when map expects no arguments"),
    ("BEGIN { $x = 1; $b = has_key($x, 1); }",
     "stdin:1:30-32: ERROR: has_key() expects a map argument"),
    ("BEGIN { $n = len(); }", "stdin:1:14-19: ERROR: len() requires one argument (0 provided)"),
    ("tracepoint:syscalls:sys_enter_nope { }",
     "stdin:1:1-35: ERROR: No matches for tracepoint syscalls:sys_enter_nope."),
])
def test_compile_errors_in_bpftrace_026_words(src, first):
    text = _error(src)
    assert text.splitlines()[0] == first, text
    # the source line and the ~ markers under the place bpftrace marks
    col, end = (int(x) for x in first.split(":")[2].split("-"))
    assert text.splitlines()[2] == " " * (col - 1) + "~" * (end - col)


def test_errors_in_macros_say_where_they_were_expanded_from():
    # bpftrace 0.26: the error where it is in the macro's body, then "expanded from" under
    # each call it came through, nearest first, in the diagnostic's severity
    src = ('macro add2($x) { $x + 1 } macro add1($x) { add2($x) } '
           'BEGIN { $a = "string"; add1($a); }')
    lines = _error(src).splitlines()
    assert lines[0] == "stdin:1:21-22: ERROR: Type mismatch for '+': comparing string[7] with int64"
    # (the left and right operands with their types, then the calls)
    assert lines[3] == "stdin:1:18-20: ERROR: left (string[7])"
    assert lines[6] == "stdin:1:23-24: ERROR: right (int64)"
    assert lines[9] == "stdin:1:44-52: ERROR: expanded from"
    assert lines[10] == src and lines[11] == " " * 43 + "~" * 8
    assert lines[12] == "stdin:1:78-86: ERROR: expanded from"
    assert lines[14] == " " * 77 + "~" * 8 and len(lines) == 15
    # an argument is the caller's own code: no chain
    text = _error('macro twice(x) { x * 2 } BEGIN { $v = twice($nope); }')
    assert text.startswith("stdin:1:45-50: ERROR: Undefined or undeclared variable: $nope")
    assert "expanded from" not in text, text
    # the body's own code is: one call, one line
    text = _error('macro twice(x) { x * 2 } BEGIN { $v = twice("a"); }')
    assert text.count("expanded from") == 1 and "stdin:1:39-49: ERROR: expanded from" in text
    # nor does code outside any macro have one
    assert "expanded from" not in _error('BEGIN { $v = "a" * 2; }')


def _first_error(src: str, **opts) -> str:
    with pytest.raises(PtraceError) as e:
        compile_script(src, "stdin", Options(**opts), machine=recorded_machine())
    return e.value.render(SOURCES).splitlines()[0]


BIN = str(pathlib.Path(__import__("sys").executable).resolve())


@pytest.mark.parametrize("ap,message", [
    # uprobe/usdt (bpftrace 0.26's attach point checker and probe expansion)
    ("uprobe:/no/such/bin:main", "uprobe target file '/no/such/bin' does not exist or is not "
                                 "executable"),
    ("uretprobe:libno_such_lib_xyz:f", "uretprobe target file 'libno_such_lib_xyz' does not "
                                       "exist or is not executable"),
    ("uprobe:/no/such/dir*/b:main", "uprobe target file '/no/such/dir*/b' does not exist or is "
                                    "not executable"),
    (f"uprobe:{BIN}:no_such_fn_xyz", f"No matches for uprobe {BIN}:no_such_fn_xyz."),
    (f"uretprobe:{BIN}:no_such_*_xyz", f"No matches for uretprobe {BIN}:no_such_*_xyz."),
    ("usdt:/no/such/bin:p:x", "usdt target file '/no/such/bin' does not exist or is not "
                              "executable"),
    (f"usdt:{BIN}:no_such_provider_xyz:x", f"No matches for usdt {BIN}:x."),
    # software/hardware/profile/interval (bpftrace 0.26's attach point parser and checker)
    ("software:nosuch", "nosuch is not a software probe"),
    ("hardware:nosuch", "nosuch is not a hardware probe"),
    ("software:", "software probe must have a software event name"),
    ("software:page-*", "wildcards are not allowed for software probe type"),
    ("software:faults:12x", "Invalid count for software probe: invalid trailing bytes: 12x"),
    ("software:faults:0", "software count should be a positive integer"),
    ("hardware:cycles:0", "hardware frequency should be a positive integer"),
    ("software:a:b:c", "software probe type requires 1 or 2 arguments, found 3"),
    ("interval:xs:1", "xs is not an accepted unit of time"),
    ("profile:minutes:1", "minutes is not an accepted unit of time"),
    ("interval::1", "interval probe must have unit of time"),
    ("interval:s:abc", "Invalid rate of interval probe: invalid integer: abc"),
    ("profile:hz:0", "profile frequency should be a positive integer"),
    ("interval:s:1:2", "interval probe type requires 1 or 2 arguments, found 3"),
    # watchpoint
    ("watchpoint:0x1000:8", "watchpoint probe type requires 3 arguments, found 2"),
    ("watchpoint:abc:8:w", "Invalid function/address argument: invalid integer: abc"),
    ("watchpoint:0x1000:eight:w", "Invalid length argument: invalid integer: eight"),
    ("watchpoint:0:8:w", "watchpoint must be attached to a non-zero address"),
    ("watchpoint:0x1000:3:w", "watchpoint length must be one of (1,2,4,8)"),
    ("watchpoint:0x1000:8:q", "watchpoint mode must be combination of (r,w,x)"),
    ("watchpoint:0x1000:8:ww", "watchpoint modes may not be duplicated"),
    ("watchpoint:0x1000:8:rwx", "invalid watchpoint mode: rwx"),
])
def test_attach_point_errors_in_bpftrace_026_words(ap, message):
    first = _first_error(ap + " { }", pid=1)
    # located under the whole attach point, as bpftrace marks it
    assert first == f"stdin:1:1-{len(ap) + 1}: ERROR: {message}", first


def test_a_missing_probe_is_a_warning_with_missing_probes_warn():
    src = (f'config = {{ missing_probes = "warn" }} uprobe:{BIN}:no_such_fn_xyz {{ }} '
           'BEGIN { exit(); }')
    c = compile_script(src, "stdin", Options(), machine=recorded_machine())
    warned = [w.splitlines()[0] for w in c.spec.config["warnings"]]
    assert warned == [f"stdin:1:38-{38 + len(BIN) + 22}: WARNING: No matches for uprobe "
                      f"{BIN}:no_such_fn_xyz. Skipping."], warned


@pytest.mark.parametrize("src,first,left,right", [
    ('BEGIN { $a = "abc"; if ($a == 1) { } }',
     "stdin:1:28-30: ERROR: Type mismatch for '==': comparing string[4] with int64",
     "stdin:1:25-27: ERROR: left (string[4])", "stdin:1:31-32: ERROR: right (int64)"),
    # a parenthesized operand: the operator past its closing parenthesis
    ('BEGIN { $x = (comm) + 1; }',
     "stdin:1:21-22: ERROR: Type mismatch for '+': comparing string[16] with int64",
     "stdin:1:15-19: ERROR: left (string[16])", "stdin:1:23-24: ERROR: right (int64)"),
    ('BEGIN { $x = 1 - "s"; }',
     "stdin:1:16-17: ERROR: Type mismatch for '-': comparing int64 with string[2]",
     "stdin:1:14-15: ERROR: left (int64)", "stdin:1:18-21: ERROR: right (string[2])"),
])
def test_a_binary_operators_mismatch_marks_the_operator_as_bpftrace_026(src, first, left, right):
    lines = _error(src).splitlines()
    assert lines[0] == first and lines[3] == left and lines[6] == right, lines
    col, end = (int(x) for x in first.split(":")[2].split("-"))
    assert lines[2] == " " * (col - 1) + "~" * (end - col)


def test_a_mismatch_across_lines_marks_the_whole_expression():
    lines = _error('BEGIN { $x = comm <\n 2; }').splitlines()
    assert lines[0] == "stdin:1:14-20: ERROR: Type mismatch for '<': comparing string[16] with int64"


def test_a_kprobe_on_a_function_ftrace_does_not_list_is_warned_of(monkeypatch):
    # bpftrace 0.26's warning for a kernel symbol missing from available_filter_functions
    # (the kernel decides at attach time); a name in neither is "No matches"
    from ptrace_lang.providers import kprobe

    class Listed:
        from_btf = False

        def traceable(self, fn, module):
            return fn == "vfs_read"

        def in_kallsyms(self, fn, module):
            return fn in ("vfs_read", "notrace_fn")

        def names(self):
            return ["vfs_read"]

    monkeypatch.setattr(kprobe.Kprobe, "functions", lambda self, opts: Listed())
    c = compile_script("kprobe:notrace_fn { }", "stdin", Options(), machine=recorded_machine())
    assert [w.splitlines()[0] for w in c.spec.config["warnings"]] == [
        'stdin:1:1-18: WARNING: notrace_fn is not traceable (either non-existing, inlined, or '
        'marked as "notrace"); attaching to it will likely fail']
    c = compile_script("kprobe:vfs_read { }", "stdin", Options(), machine=recorded_machine())
    assert "warnings" not in c.spec.config
    assert _first_error("kprobe:no_such_fn { }") == \
        "stdin:1:1-18: ERROR: No matches for kprobe no_such_fn."


def test_no_match_in_the_objects_of_a_process():
    # usdt::probe and uprobe:*:func with -p: every object the process maps (this one's)
    pid = __import__("os").getpid()
    assert _first_error("usdt::no_such_probe_xyz { }", pid=pid) == \
        "stdin:1:1-24: ERROR: No matches for usdt no_such_probe_xyz."
    assert _first_error("uprobe:*:no_such_fn_xyz { }", pid=pid) == \
        "stdin:1:1-24: ERROR: No matches for uprobe *:no_such_fn_xyz."
