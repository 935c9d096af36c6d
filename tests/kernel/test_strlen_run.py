"""str() and buf() with a length known only at run time, run for real: a workload writes known
byte strings of several lengths (and a zero, a huge and a negative length); the tracer prints what
str(args.buf, args.count) and friends read at sys_enter_write. Its BEGIN probe checks that a for
loop body's own variables start afresh each iteration (tests/unit/test_loop_scope.py)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from runner import Tracer

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

WORKLOAD = r'''
#include <string.h>
#include <unistd.h>
static const char *s[] = {"abc", "hello world", "",
    "0123456789012345678901234567890123456789012345678901234567890123456789xyz",
    "nul\0after", "tail", "neg"};
static const long n[] = {3, 5, 0, 72, 9, -1, 2};
static const int sz[] = {4, 12, 1, 74, 10, 5, 4};
int main(void) {
  char buf[256], go;
  if (read(0, &go, 1) != 1) return 1;      /* wait until the tracer is attached */
  for (int i = 0; i < 7; i++) {
    memset(buf, 0, sizeof buf);            /* on the stack: the page is present */
    memcpy(buf, s[i], sz[i]);
    write(1, buf, (size_t)n[i]);
  }
  return 0;
}
'''

SCRIPT = r'''
BEGIN {
  // a for loop body's own variables start afresh each iteration ($y is 0 again when $i is 2)
  $t = 0;
  for ($i : 0..4) {
    if ($i == 1) { $y = 5; }
    $t += $y;
    $s = str("abcdef", $i);
    printf("%s,", $s);
  }
  printf(" t=%d\n", $t);
}

tracepoint:syscalls:sys_enter_write /pid == PID/ {
  $n = (int64)args.count;
  if ($n == 2) { $n = -5; }
  printf("s=[%s] n=[%s] b=[%r] v=[%s]\n", str(args.buf, args.count), str(args.buf, $n),
         buf(args.buf, args.count), str("hello", $n));
  @k[str(args.buf, $n - 1)] = count();
}
'''

D64 = ("0123456789" * 7)[:64]
EXPECTED = [
    ",a,ab,abc, t=5",
    "s=[abc] n=[abc] b=[abc] v=[hel]",
    "s=[hello] n=[hello] b=[hello] v=[hello]",          # at most count bytes
    "s=[] n=[] b=[] v=[]",                              # zero length: empty
    f"s=[{D64}..] n=[{D64}..] b=[{D64}] v=[hello]",     # capped at max_strlen (64, 0.26)
    r"s=[nul] n=[nul] b=[nul\x00after] v=[hello]",      # str stops at the NUL, buf does not
    # count (size_t)-1: str() sees a length <= 0 (empty); buf()'s unsigned clamp reads 64 bytes
    "s=[] n=[] b=[tail" + r"\x00" * 60 + "] v=[]",
    "s=[ne] n=[] b=[ne] v=[]",                          # $n = -5: empty
]


def test_str_and_buf_with_a_run_time_length(tmp_path):
    if shutil.which("gcc") is None:
        print("gcc is not installed: the write workload cannot be built")
        pytest.skip("no gcc")
    src = tmp_path / "w.c"
    src.write_text(WORKLOAD)
    exe = tmp_path / "w"
    subprocess.run(["gcc", "-O1", "-o", str(exe), str(src)], check=True)
    w = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        t = Tracer("-e", SCRIPT.replace("PID", str(w.pid)))
        t.wait_attached()
        w.stdin.write(b"g")
        w.stdin.close()
        assert w.wait(30) == 0
    finally:
        if w.poll() is None:
            w.kill()
    r = t.stop()
    assert r.rc == 0, r.err
    lines = r.out.splitlines()
    assert lines[:8] == EXPECTED, r.out
    keys = set(lines[8:])
    assert "@k[ab]: 1" in keys and "@k[hell]: 1" in keys and "@k[nul]: 1" in keys
    assert f"@k[{D64}..]: 1" in keys
    assert "@k[]: 3" in keys, r.out
    assert "WARNING" not in r.err, r.err
