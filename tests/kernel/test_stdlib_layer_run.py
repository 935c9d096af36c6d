"""The 0.26 standard-library layer run for real: probetype, __builtin_ names, pcomm, assert,
delete() as a bool, ppid(task), usermode in begin, getopt() with options after "--"."""
from __future__ import annotations

import os

import pytest

from runner import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


def test_values():
    r = run("-e", 'BEGIN { @a[1] = 1; printf("%s %d %s %d %d %d %d %d\\n", probetype, '
            '__builtin_pid == pid, pcomm, delete(@a[1]), delete(@a, 1), ppid(curtask) == ppid, '
            'usermode, getopt("n", 2) + getopt("m", 1)); exit(); }', "--", "--n=40")
    assert r.rc == 0, r.err
    probetype, same, pcomm, d1, d2, pp, um, n = r.out.split("\n")[0].split()
    assert probetype == "begin" and same == "1" and d1 == "1" and d2 == "0" and pp == "1"
    assert um == "1" and n == "41"
    assert pcomm          # the command of our process's main thread


def test_assert_exits_with_an_error():
    r = run("-e", 'BEGIN { assert(pid == 0, "pid is not 0"); printf("after\\n"); }')
    assert r.rc == 1
    assert "assert failed: pid is not 0" in r.err and "after" not in r.out


def test_unknown_program_option_is_refused():
    r = run("-e", 'BEGIN { exit(); }', "--", "--nope=1")
    assert r.rc == 1 and "unexpected program command line option: --nope" in r.err


def test_more_expressions():
    r = run("-e", 'BEGIN { @x = 1; $v = @x++; $w = ++@x; @c = count(); @c = count(); '
            '@a = avg(4); @a = avg(6); $s = "hello"; $t = (task_struct *)curtask; '
            'printf("%d %d %d %d %d %c %d %d\\n", $v, $w, @c + 1, (bool)@c, @a, $s[1], '
            '$t->pid == pid, nsecs(sw_tai) > 0); exit(); }')
    assert r.rc == 0, r.err
    assert r.out.split("\n")[0] == "1 3 3 1 5 e 1 1"


def test_len_of_a_stack():
    r = run("-e", 'profile:hz:199 /pid > 0/ { printf("%d\\n", len(ustack) + len(kstack)); exit(); }')
    assert r.rc == 0, r.err
    assert int(r.out.split("\n")[0]) >= 1


def test_no_warnings_silences_warnf_and_k_reports_reads():
    src = 'BEGIN { warnf("careful %d", 1); errorf("bad"); printf("%s|\\n", str(8)); exit(); }'
    r = run("--no-warnings", "-e", src)
    assert r.rc == 0, r.err
    assert "careful" not in r.err and "ERROR: bad" in r.err and "WARNING" not in r.err
    r = run("-k", "-e", src)
    assert "WARNING: careful 1" in r.err
    assert "WARNING: Failed to probe_read_str" in r.err
