"""Functions and builtins of sema/fn_funcs.py: exact error messages with their locations and
signature hints; types; compile-time values (pton, cgroupid); the user-space formatters
(runtime/ufuncs.py). No kernel."""
from __future__ import annotations

import os
import struct
import time

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError


def error_of(src: str, **kw) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options(**kw))
    return info.value.render(SOURCES)


FULL = [
    ('BEGIN { strncmp("a", "b"); }',
     'stdin:1:9-26: ERROR: strncmp() requires 3 arguments (2 provided)\n'
     'BEGIN { strncmp("a", "b"); }\n        ~~~~~~~~~~~~~~~~~\n'
     'HINT: strncmp(string s1, string s2, int n)'),
    ('BEGIN { strlen(1); }',
     "stdin:1:16-17: ERROR: strlen() expects a string as argument 1, got 'int64'\n"
     "BEGIN { strlen(1); }\n               ~\nHINT: strlen(string s)"),
    ('BEGIN { ntop(); }',
     'stdin:1:9-15: ERROR: ntop() requires between 1 and 2 arguments (0 provided)\n'
     'BEGIN { ntop(); }\n        ~~~~~~\nHINT: ntop([int af, ]int|uint8[4]|uint8[16] addr)'),
    ('interval:s:1 { signal(9); }',
     'stdin:1:16-25: ERROR: signal() is an unsafe function being used in safe mode\n'
     'interval:s:1 { signal(9); }\n               ~~~~~~~~~\n'
     'HINT: run with --unsafe to allow it'),
    ('tracepoint:syscalls:sys_enter_openat { override(1); }',
     'stdin:1:40-51: ERROR: override() is an unsafe function being used in safe mode\n'
     'tracepoint:syscalls:sys_enter_openat { override(1); }\n'
     '                                       ~~~~~~~~~~~\nHINT: run with --unsafe to allow it\n'
     'stdin:1:40-51: ERROR: override() can only be used in kprobe probes\n'
     'tracepoint:syscalls:sys_enter_openat { override(1); }\n'
     '                                       ~~~~~~~~~~~\nHINT: override(int rc)'),
]


@pytest.mark.parametrize("src,expected", FULL)
def test_full_messages(src, expected):
    assert error_of(src) == expected


# (source, first line of the message, hint or None)
FIRST = [
    ('BEGIN { strncmp("a", 1, 2); }',
     "stdin:1:22-23: ERROR: strncmp() expects a string as argument 2, got 'int64'",
     "strncmp(string s1, string s2, int n)"),
    ('BEGIN { $n = 2; strncmp("a", "b", $n); }',
     "stdin:1:35-37: ERROR: strncmp() requires an integer literal as its length",
     "strncmp(string s1, string s2, int n)"),
    ('BEGIN { strcontains("a"); }',
     "stdin:1:9-25: ERROR: strcontains() requires 2 arguments (1 provided)",
     "strcontains(string haystack, string needle)"),
    ('BEGIN { strcontains(1, "a"); }',
     "stdin:1:21-22: ERROR: strcontains() expects a string as argument 1, got 'int64'",
     "strcontains(string haystack, string needle)"),
    ('BEGIN { strstr("a", 2); }',
     "stdin:1:21-22: ERROR: strstr() expects a string as argument 2, got 'int64'",
     "strstr(string haystack, string needle)"),
    ('BEGIN { strftime("%H", 1, 2); }',
     "stdin:1:9-29: ERROR: strftime() requires 2 arguments (3 provided)",
     "strftime(const char *fmt, int nsecs)"),
    ('BEGIN { $f = "%H"; strftime($f, 1); }',
     "stdin:1:29-31: ERROR: strftime() requires a string literal as its format",
     "strftime(const char *fmt, int nsecs)"),
    ('BEGIN { strftime("%H", "x"); }',
     "stdin:1:24-27: ERROR: strftime() expects an integer as argument 2, got 'string[2]'",
     "strftime(const char *fmt, int nsecs)"),
    ('BEGIN { strerror("x"); }',
     "stdin:1:18-21: ERROR: strerror() expects an integer as argument 1, got 'string[2]'",
     "strerror(int errno)"),
    ('BEGIN { syscall_name(); }',
     "stdin:1:9-23: ERROR: syscall_name() requires 1 argument (0 provided)", "syscall_name(int id)"),
    ('BEGIN { signal_name(comm); }',
     "stdin:1:21-25: ERROR: signal_name() expects an integer as argument 1, got 'string[16]'",
     "signal_name(int sig)"),
    ('BEGIN { ntop(comm); }',
     "stdin:1:14-18: ERROR: ntop() expects an integer or an array of 4 or 16 bytes as its "
     "address, got 'string[16]'", "ntop([int af, ]int|uint8[4]|uint8[16] addr)"),
    ('BEGIN { ntop("x", 1); }',
     "stdin:1:14-17: ERROR: ntop() expects an address family as argument 1, got 'string[2]'",
     "ntop([int af, ]int|uint8[4]|uint8[16] addr)"),
    ('BEGIN { pton(comm); }', "stdin:1:14-18: ERROR: pton() requires a string literal",
     'pton(const char *addr) with a literal "1.2.3.4" or "::1"'),
    ('BEGIN { pton("1.2.3"); }',
     "stdin:1:14-21: ERROR: pton() expects an IPv4 or IPv6 address, got '1.2.3'",
     'pton(const char *addr) with a literal "1.2.3.4" or "::1"'),
    ('BEGIN { macaddr("abcdef"); }',
     "stdin:1:9-26: ERROR: macaddr() does not support literal string arguments",
     "macaddr(uint8[6] mac | pointer)"),
    ('BEGIN { macaddr(pton("1.2.3.4")); }',
     "stdin:1:9-33: ERROR: macaddr() argument must be 6 bytes in size",
     "macaddr(uint8[6] mac | pointer)"),
    ('BEGIN { bswap("a"); }',
     "stdin:1:15-18: ERROR: bswap() expects an integer as argument 1, got 'string[2]'", "bswap(int n)"),
    ('BEGIN { bswap(); }', "stdin:1:9-16: ERROR: bswap() requires 1 argument (0 provided)",
     "bswap(int n)"),
    ('BEGIN { has_key(1, 2); }', "stdin:1:17-18: ERROR: has_key() expects a map argument",
     "has_key(@map, key)"),
    ('BEGIN { @m[1] = 1; has_key(@m); }',
     "stdin:1:20-31: ERROR: has_key() requires 2 arguments (1 provided)", "has_key(@map, key)"),
    ('BEGIN { @a = 1; has_key(@a, 1); }',
     "stdin:1:29-30: ERROR: Argument mismatch for @a: trying to access with arguments: 'int64' "
     "when map expects no arguments", None),
    ('BEGIN { has_key(@nope, 1); }', "stdin:1:17-22: ERROR: Undefined map: @nope", None),
    ('BEGIN { @m[1] = 1; has_key(@m, "a"); }',
     "stdin:1:28-35: ERROR: Argument mismatch for @m: trying to access with arguments: "
     "'string[2]' when map expects arguments: 'int64'", None),
    ('BEGIN { cgroupid(comm); }', "stdin:1:18-22: ERROR: cgroupid() requires a string literal",
     "cgroupid(const char *path) with a literal path"),
    ('BEGIN { cgroupid("/nonexistent/cgroup"); }',
     "stdin:1:18-39: ERROR: cgroupid(): cannot resolve cgroup '/nonexistent/cgroup': "
     "No such file or directory", None),
    ('BEGIN { cgroup_path(); }',
     "stdin:1:9-22: ERROR: cgroup_path() requires between 1 and 2 arguments (0 provided)",
     "cgroup_path(int cgroupid[, const char *filter])"),
    ('BEGIN { cgroup_path(1, comm); }',
     "stdin:1:24-28: ERROR: cgroup_path() requires a string literal as its filter",
     "cgroup_path(int cgroupid[, const char *filter])"),
    ('BEGIN { errorf(1); }',
     "stdin:1:9-18: ERROR: errorf() requires a string literal as its first argument",
     "errorf(const char *fmt, ...)"),
    ('BEGIN { warnf("%d"); }',
     "stdin:1:15-19: ERROR: warnf: not enough arguments for format string (0 supplied, 1 expected)",
     None),
    ('BEGIN { debugf("%d", comm); }',
     "stdin:1:22-26: ERROR: debugf: %d specifier expects a value of type integer "
     "('string[16]' supplied)", None),
    ('BEGIN { nsecs(wall); }', "stdin:1:15-19: ERROR: nsecs() expects a clock: monotonic, boot, tai or sw_tai",
     "nsecs([monotonic|boot|tai|sw_tai])"),
    ('BEGIN { nsecs(boot, tai); }',
     "stdin:1:9-25: ERROR: nsecs() requires between 0 and 1 arguments (2 provided)",
     "nsecs([monotonic|boot|tai|sw_tai])"),
    ('tracepoint:syscalls:sys_enter_openat { @x = usermode; }',
     "stdin:1:45-53: ERROR: The usermode builtin can not be used with 'tracepoint' probes", None),
]


@pytest.mark.parametrize("src,first,hint", FIRST)
def test_first_line_and_hint(src, first, hint):
    text = error_of(src)
    assert text.splitlines()[0] == first
    if hint is None:
        assert "HINT" not in text
    else:
        assert text.splitlines()[3] == "HINT: " + hint


UNSAFE = [
    ('tracepoint:syscalls:sys_enter_openat { signal("SIGFOO"); }',
     "stdin:1:47-55: ERROR: signal(): unknown signal 'SIGFOO'"),
    ('tracepoint:syscalls:sys_enter_openat { signal(65); }',
     "stdin:1:47-49: ERROR: signal(): invalid signal number 65"),
    ('tracepoint:syscalls:sys_enter_openat { signal(comm); }',
     "stdin:1:47-51: ERROR: signal() expects a signal number or name as argument 1, got 'string[16]'"),
    ('BEGIN { signal(SIGKILL); }',
     "stdin:1:9-24: ERROR: signal() can not be used in BEGIN: there is no traced process to signal"),
]


@pytest.mark.parametrize("src,first", UNSAFE)
def test_unsafe_function_errors(src, first):
    text = error_of(src, unsafe=True)
    assert text.splitlines()[0] == first
    assert text.splitlines()[3] == 'HINT: signal(int sig | "SIGNAME")'


@pytest.mark.parametrize("src", [
    # every function of the slice, in one program each kind of value: it compiles (sema + codegen)
    'BEGIN { $s = "hello"; printf("%d %d %d %d %d\\n", strncmp($s, "he", 2), strcontains($s, "ll"),'
    ' strlen($s), strstr($s, "lo"), strstr($s, $s)); }',
    'BEGIN { printf("%s %s %s %s\\n", strftime("%H:%M:%S.%f", nsecs(boot)), strerror(2),'
    ' syscall_name(1), signal_name(9)); }',
    'BEGIN { printf("%s %s %s %s\\n", ntop(0x0100007f), ntop(2, 0x0100007f), ntop(pton("::1")),'
    ' ntop(10, pton("fe80::1"))); print(pton("1.2.3.4")); @p = pton("::2");'
    ' @n = ntop(1); @n = ntop(pton("::1")); $v = ntop(2, 1); $v = ntop(pton("1.2.3.4")); }',
    'BEGIN { @m[1] = 1; printf("%d %d %d %d\\n", bswap((uint16)1), bswap((uint32)1), bswap(1),'
    ' has_key(@m, 1)); }',
    'BEGIN { print(cgroupid("/sys/fs/cgroup")); print(cgroup_path(cgroup)); print(cgroup_path(1, "u*")); }',
    'BEGIN { errorf("e %d", 1); warnf("w %s", comm); debugf("d"); }',
    'BEGIN { print((username, jiffies, ncpus, numaid, nsecs(monotonic), nsecs(tai), pid(), comm(),'
    ' username(), jiffies())); @u[username] = count(); @e[strerror(1)] = count(); }',
    'tracepoint:sock:inet_sock_set_state { printf("%s %s %s\\n", ntop(args.saddr),'
    ' ntop(args.daddr_v6), ntop(args.family, args.saddr_v6)); }',
    'tracepoint:syscalls:sys_enter_openat { printf("%s\\n", macaddr(args.filename)); }',
    'profile:hz:99 { @[usermode, usermode()] = count(); }',
    # every builtin is callable as a function
    'BEGIN { @[pid(), tid(), uid(), gid(), cpu(), elapsed(), cgroup(), rand(), nsecs(), probe(),'
    ' jiffies(), ncpus(), numaid(), username(), comm()] = count(); }',
    'interval:s:1 { @[usermode()] = count(); }',
])
def test_compiles(src):
    if "/sys/fs/cgroup" in src and not os.path.isdir("/sys/fs/cgroup"):
        pytest.skip("no /sys/fs/cgroup on this machine")
    if "tracepoint:" in src and not os.path.isdir("/sys/kernel/tracing/events/syscalls"):
        pytest.skip("no tracefs events to expand tracepoints against")
    compile_script(src, "stdin", Options(stages=("asm",)))


def test_types():
    from ptrace_lang.frontend import ast

    src = ('BEGIN { $a = strncmp("a", "b", 1); $b = strcontains("a", "b"); $c = strlen("a");'
           ' $d = strstr("a", "b"); $e = bswap((uint16)1); $f = bswap((int32)1); $g = numaid;'
           ' $h = usermode2; }')
    with pytest.raises(PtraceError):
        compile_script(src, "stdin", Options())
    c = compile_script(src.replace(" $h = usermode2;", ""), "stdin", Options(stages=("asm",)))
    stmts = c.program.probes[0].body.stmts
    types = [str(s.value.type) for s in stmts if isinstance(s, ast.Assign)]
    assert types == ["int64", "bool", "uint64", "int64", "uint16", "uint32", "uint32"]


def test_signal_name_is_a_string_folded_when_its_number_is_known():
    from ptrace_lang.frontend import ast
    from ptrace_lang.sema.types import StrT
    from ptrace_lang.signals import SIGNAL_TEXT_SIZE

    src = ('BEGIN { $k = 15; $a = signal_name(9); $b = signal_name(SIGKILL + 1 - 1); '
           '$c = signal_name($k); $d = signal_name(9) == "Killed"; '
           '$e = strcontains(signal_name($k), "Term"); @m[signal_name($k)] = 1; }')
    c = compile_script(src, "stdin", Options(stages=("asm",)))
    stmts = [s for s in c.program.probes[0].body.stmts if isinstance(s, ast.Assign)]
    calls = {s.target.name: s.value for s in stmts[1:4]}
    assert all(v.type == StrT(SIGNAL_TEXT_SIZE) for v in calls.values())
    # a number known at compile time is the text's constant; $k is read at run time
    assert [calls[n].address for n in ("a", "b", "c")] == [9, 9, None]
    assert [str(s.value.type) for s in stmts[4:6]] == ["bool", "bool"]
    key = next(m.key for m in c.spec.user_maps if m.name == "@m")
    assert (key.kind, key.size) == ("str", 32), key      # (its size rounded up to 8)

    def insns(s: str) -> int:
        return len(compile_script(s, "stdin", Options(stages=("asm",))).spec.programs[0].insns) // 8

    # the folded text is a few stores; the table a compare and the text's stores per number
    folded = insns("BEGIN { @m[signal_name(9)] = 1; }")
    table = insns("BEGIN { $k = 9; @m[signal_name($k)] = 1; }")
    assert folded < 40 < 200 < table


def test_pton_and_cgroupid_are_constants():
    from ptrace_lang.kernel.host import cgroup_id_of
    from ptrace_lang.sema.fn_funcs import pton_bytes

    assert pton_bytes("1.2.3.4") == b"\x01\x02\x03\x04"
    assert pton_bytes("::1") == b"\0" * 15 + b"\x01"
    assert pton_bytes("1.2.3") is None
    if os.path.isdir("/sys/fs/cgroup"):
        st = os.stat("/sys/fs/cgroup")
        # cgroup2 ids are the directory's inode; on a v1 tmpfs the handle may differ, never 0
        assert cgroup_id_of("/sys/fs/cgroup") in (st.st_ino, cgroup_id_of("/sys/fs/cgroup")) and \
            cgroup_id_of("/sys/fs/cgroup") != 0


def q(v: int) -> bytes:
    return struct.pack("<q", v)


def test_formatters():
    from ptrace_lang.runtime import ufuncs
    from ptrace_lang.runtime.formatters import FORMATTERS

    assert FORMATTERS["strerror"](q(2), ()) == "No such file or directory"
    assert FORMATTERS["strerror"](q(0), ()) == "Success"
    assert FORMATTERS["syscall_name"](q(0), ()) == "read"
    assert FORMATTERS["syscall_name"](q(59), ()) == "execve"
    assert FORMATTERS["syscall_name"](q(100000), ()) == "100000"
    # bpftrace 0.26's texts (strsignal(3)): every number 0..64, then N/A
    from ptrace_lang.signals import signal_text

    texts = [signal_text(n) for n in range(-1, 67)]
    assert texts[:3] == ["N/A", "Unknown signal 0", "Hangup"]
    assert texts[1 + 9] == "Killed" and texts[1 + 6] == "Aborted" and texts[1 + 29] == "I/O possible"
    assert texts[1 + 16] == "Stack fault" and texts[1 + 31] == "Bad system call"
    assert texts[1 + 32:1 + 35] == ["Unknown signal 32", "Unknown signal 33", "Real-time signal 0"]
    assert texts[1 + 64:] == ["Real-time signal 30", "N/A", "N/A"]
    assert len(set(texts[1:66])) == 65
    assert signal_text((1 << 32) + 15) == "Terminated"   # an int32
    assert FORMATTERS["inet"](q(2) + q(0x0100007F) + q(0), ()) == "127.0.0.1"
    assert FORMATTERS["inet"](q(99) + q(0) + q(0), ()) == ""
    assert FORMATTERS["inet"](q(2) + b"\x0a\0\0\x01" + b"\0" * 12, ()) == "10.0.0.1"
    assert FORMATTERS["inet"](q(10) + b"\0" * 15 + b"\x01", ()) == "::1"
    assert FORMATTERS["bytes"](b"\x01\x02\x03\x04\0\0\0\0", (4,)) == "[1,2,3,4]"
    assert FORMATTERS["macaddr"](b"\x00\x1b\x2c\xaa\xff\x10\0\0", ()) == "00:1B:2C:AA:FF:10"
    assert FORMATTERS["username"](q(0), ()) == "root"
    assert FORMATTERS["username"](q(654321), ()) == "654321"
    # strftime: boot-time ns to local wall-clock time, %f the microseconds, %% kept
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    wall = time.time()
    text = ufuncs.strftime_text("%Y-%m-%d %H:%M:%S|%f|%%f", boot)
    date, us, lit = text.split("|")
    assert lit == "%f" and len(us) == 6
    assert abs(time.mktime(time.strptime(date, "%Y-%m-%d %H:%M:%S")) + int(us) / 1e6 - wall) < 0.05


def test_message_line():
    from ptrace_lang import spec as S
    from ptrace_lang.errors import Span
    from ptrace_lang.runtime.ufuncs import message_line

    ev = S.EventSpec(S.EV_WARNF, "x", [], Span("stdin", 1, 9, 1, 20))
    assert message_line(S.EV_WARNF, ev, lambda a: f"w {a[0]}\n", [3]) == "stdin:1:9-20: WARNING: w 3\n"
    assert message_line(S.EV_ERRORF, ev, lambda a: "e", []) == "stdin:1:9-20: ERROR: e\n"
    assert message_line(S.EV_DEBUGF, ev, lambda a: "d", []) == "stdin:1:9-20: DEBUG: d\n"


def test_later_lists_no_longer_hold_this_slice():
    from ptrace_lang.sema.analyze import LATER_BUILTINS, LATER_FUNCTIONS

    mine = {"strncmp", "strcontains", "strlen", "strstr", "strftime", "strerror", "syscall_name",
            "signal_name", "ntop", "pton", "macaddr", "bswap", "has_key", "cgroupid",
            "cgroup_path", "errorf", "warnf", "debugf", "signal", "override", "nsecs"}
    assert not mine & LATER_FUNCTIONS
    assert not {"username", "jiffies", "ncpus", "numaid", "usermode"} & LATER_BUILTINS


def test_comm_of_a_pid():
    # comm(pid) (bpftrace 0.26): the value is the pid, named from /proc when printed
    from ptrace_lang.runtime.formatters import FORMATTERS

    with open(f"/proc/{os.getpid()}/comm") as f:
        mine = f.read().strip()
    assert FORMATTERS["comm_of_pid"](q(os.getpid()), ()) == mine
    assert FORMATTERS["comm_of_pid"](q(-5), ()) == ""
    c = compile_script("BEGIN { @[comm(1)] = count(); $c = comm(); print((comm(pid), $c)); }",
                       "stdin", Options())
    (m,) = c.spec.user_maps
    assert m.key.kind == "user" and m.key.fmt == "comm_of_pid" and m.key.size == 8
    assert error_of('BEGIN { print(comm("x")); }').startswith(
        "stdin:1:20-23: ERROR: comm() expects an integer as argument 1")
    assert error_of("BEGIN { print(comm(1, 2)); }").startswith(
        "stdin:1:15-25: ERROR: comm() requires 1 argument")
