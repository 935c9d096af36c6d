"""Defects found by using ptrace-lang as a bpftrace user would, checked in the real kernel:
map declarations, shifts by 64 or more, the failed-read warning."""
from __future__ import annotations

import os

import pytest

from runner import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

SCRIPT = r'''
let @h = hash(2);
let @l = lruhash(2);
let @pl = percpulruhash(2);
BEGIN {
  @h[1] = 1; @h[2] = 2; @h[3] = 3;
  @l[1] = 1; @l[2] = 2; @l[3] = 3;
  @pl[1] = count(); @pl[2] = count(); @pl[3] = count();
  $s = 64;
  printf("shift %d %d %d\n", 1 << 64, 1 << $s, -8 >> 65);
  $p = (int32 *)0;
  printf("deref %d\n", *$p);
  exit();
}
'''


def test_declared_maps_shifts_and_failed_reads_run():
    r = run("-q", "-e", SCRIPT)
    assert r.rc == 0, r.err
    assert "shift 1 1 -4\n" in r.out
    assert "deref 0\n" in r.out
    lines = r.out.splitlines()
    assert sorted(x for x in lines if x.startswith("@h[")) == ["@h[1]: 1", "@h[2]: 2"]   # full at 2
    assert sorted(x for x in lines if x.startswith("@l[")) == ["@l[2]: 2", "@l[3]: 3"]   # LRU evicts
    assert len([x for x in lines if x.startswith("@pl[")]) == 2
    assert "1 map updates failed: a map is full (raise max_map_keys, now 4096 or the size of a declared map)" in r.err, r.err
    assert "1 memory reads failed (an invalid address read" in r.err, r.err


def test_huge_max_strlen_records_are_not_lost():
    r = run("-q", "-c", "/bin/true", "-e",
            'tracepoint:syscalls:sys_enter_execve /pid == cpid/ { printf("[%s]\\n", str(args.filename)); }',
            env={"BPFTRACE_MAX_STRLEN": "9000000"})
    assert r.rc == 0, r.err
    assert "[/bin/true]\n" in r.out, (r.out, r.err)
    assert "Lost" not in r.err, r.err
