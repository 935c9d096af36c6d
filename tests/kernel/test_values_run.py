"""Values run for real: records, tuples, buffers, integer arrays, casts, arithmetic, literals,
division by zero, long strings in per-CPU scratch memory; text and JSON output."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from runner import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

VALUES = r'''
BEGIN {
  $r = (x = 1, y = "ab", z = (2, (w = -3)));
  print($r); print($r.y); print($r.z.1.w);
  $r = (z = (4, (w = 5)), y = "cd", x = 6);
  print($r);
  $t = (1, "two", (3, 4));
  print($t); print($t[1]); print($t.2.0);
  @rec = (a = 0, b = "str");
  @rk[(k = 1, l = "m")] = (n = 2);
  @tk[(1, "a")] = 1;
  printf("%d %s|", $r.x, $r.y);
  printf("[%r] [%rx] [%rh]\n", buf("ab\x01c\n", 5), buf("ab\x01c", 4), buf("abc", 3));
  print(buf("a\x00\xffz", 4));
  @b[buf("ab\x00c", 4)] = buf("x\x02", 2);
  $a = (uint8[4])(uint32)0x04030201;
  print($a); printf("%d %d\n", (uint32)$a, (int16)(int8[2])(int16)-2);
  @ia[$a] = 1;
  printf("%d %d %d %d %d %d\n", (uint8)300, (int8)200, (uint16)-1, (int32)4294967295, (uint32)-1, (int64)(uint8)255);
  printf("%d %d %d %d %d\n", -7 / 2, -7 % 3, 7 % -3, -8 / -2, (uint64)-8 / 2);
  printf("%d %d\n", -1 >> 1, (uint64)-1 >> 63);
  printf("%d %d %d %d\n", -1 < 1, (uint32)1 < (int32)-1, -1 < (uint64)1, (int8)-1 == (int64)-1);
  printf("%d %d %d %d %d %d\n", 1_000, 1e6, 0x10, 010, 2s, 3ms);
  print(true); print(1 == 1); print((true, false));
  $z = 0;
  printf("%d %d\n", 10 / $z, 10 % $z);
  printf("%d %d %d\n", ~(uint8)0, ~0, ~(uint32)1);
  print((!0, !10)); print(((bool)"hello", (bool)"")); print(((int64)true, (bool)7));
  @ba = (bool[2])(uint16)1; @bk[true] = false;
  $i8 = (int8[8])12345; printf("%x %x %d\n", $i8[0], $i8[1], (uint64)$i8); print((int8[])(int32)12345);
  if ($t == (1, "two", (3, 4))) { printf("teq "); }
  if ($t != (1, "two", (3, 5))) { printf("tne "); }
  if (buf("ab", 2) == buf("ab", 2)) { printf("beq "); }
  if ($r != (x = 6, y = "cd", z = (4, (w = 5)))) { printf("BAD\n"); } else { printf("req\n"); }
  exit();
}
'''

EXPECTED = r'''{ .x = 1, .y = ab, .z = (2, { .w = -3 }) }
ab
-3
{ .x = 6, .y = cd, .z = (4, { .w = 5 }) }
(1, two, (3, 4))
two
3
6 cd|[ab\x01c\x0a] [\x61\x62\x01\x63] [61 62 63]
a\x00\xffz
[1,2,3,4]
67305985 -2
44 -56 65535 -1 4294967295 255
-3 -1 1 4 9223372036854775804
-1 1
1 0 0 1
1000 1000000 16 8 2000000000 3000000
true
true
(true, false)
1 1
255 -1 4294967294
(true, false)
(true, false)
(1, true)
39 30 12345
[57,48,0,0]
teq tne beq req


@b[ab\x00c]: x\x02
@ba: [true,false]
@bk[true]: false
@ia[[1,2,3,4]]: 1
@rec: { .a = 0, .b = str }
@rk[{ .k = 1, .l = m }]: { .n = 2 }
@tk[1, a]: 1
'''


def test_values_print_as_bpftrace_prints_them(tmp_path):
    script = tmp_path / "values.bt"
    script.write_text(VALUES)
    r = run("-q", str(script))
    assert r.rc == 0, r.err
    assert r.out == EXPECTED
    # division by zero: 1, and bpftrace's located warning, once per event and place
    line = '  printf("%d %d\\n", 10 / $z, 10 % $z);'
    n = VALUES.split("\n").index(line) + 1
    cmp_line = '  printf("%d %d %d %d\\n", -1 < 1, (uint32)1 < (int32)-1, -1 < (uint64)1, (int8)-1 == (int64)-1);'
    c = VALUES.split("\n").index(cmp_line) + 1
    assert r.err == (
        f"{script}:{c}:58-72: WARNING: comparison of integers of different signs: 'int64' and "
        f"'uint64' can lead to undefined behavior\n{cmp_line}\n" + " " * 57 + "~" * 14 + "\n"
        f"{script}:{n}:21-28: WARNING: Divide or modulo by 0 detected. This can lead to unexpected "
        f"results. 1 is being used as the result.\n{line}\n" + " " * 20 + "~" * 7 + "\n"
        f"{script}:{n}:30-37: WARNING: Divide or modulo by 0 detected. This can lead to unexpected "
        f"results. 1 is being used as the result.\n{line}\n" + " " * 29 + "~" * 7 + "\n")


def test_values_as_json():
    r = run("-q", "-f", "json", "-e",
            'BEGIN { print((x = 1, y = "a", z = (2, (w = true)))); print((1, "s", (2, 3))); '
            'print(buf("a\\x01", 2)); print((uint8[2])(uint16)0x0201); '
            '@r = (a = 1, b = "c"); @t[(k = 2)] = (3, "d"); exit(); }')
    assert r.rc == 0, r.err
    objs = [json.loads(line) for line in r.out.splitlines() if line]
    assert objs[0] == {"type": "value", "data": {"x": 1, "y": "a", "z": [2, {"w": True}]}}
    assert '"data": {"x": 1, "y": "a", "z": [2,{"w": true}]}' in r.out.splitlines()[0]
    assert objs[1] == {"type": "value", "data": [1, "s", [2, 3]]}
    assert objs[2] == {"type": "value", "data": [97, 1]}
    assert objs[3] == {"type": "value", "data": [1, 2]}
    assert {"type": "map", "data": {"@r": {"a": 1, "b": "c"}}} in objs
    assert {"type": "map", "data": {"@t": {"{.k=2}": [3, "d"]}}} in objs


def test_long_strings_live_in_scratch_memory(tmp_path):
    """max_strlen 1024: a 700-byte path read, kept in a variable, used as a map key and value,
    a tuple member, compared, printed, and read as a 1000-byte buffer; the stack could hold
    none of these."""
    d = tmp_path
    for i in range(7):
        d = d / (f"d{i}_" + "x" * 90)
    d.mkdir(parents=True)
    target = d / "file.txt"
    target.write_text("hi\n")
    path = str(target)
    assert len(path) > 600
    src = '''config = { max_strlen = 1024 }
tracepoint:syscalls:sys_enter_openat /pid == cpid/ {
  $s = str(args.filename);
  if ($s == "%s") {
    @[$s] = count();
    @last[pid] = $s;
    printf("open %%s\\n", $s);
    if ($s == str(args.filename)) { @same = count(); }
    @tup[(1, $s)] = 1;
    @b = buf(args.filename, 1000);
    printf("cut %%s|%%s\\n", str(args.filename, 10), str(args.filename, 2000));
  }
}''' % path
    r = run("-q", "-c", f"{shutil.which('cat')} {path}", "-e", src + "\nEND { printf(\"%r|\\n\", @b); }")
    assert r.rc == 0, r.err
    assert f"open {path}\n" in r.out
    # a read string cut by its length gets the trailer (str_trunc_trailer), a whole one none
    assert f"cut {path[:10]}..|{path}\n" in r.out
    assert f"@[{path}]: 1\n" in r.out
    assert f"]: {path}\n" in r.out               # @last[pid]
    assert f"@tup[1, {path}]: 1\n" in r.out
    assert "@same: 1\n" in r.out
    assert path + "\\x00" in r.out                # the buffer keeps the NUL and what follows
    assert "hi\n" in r.out                        # cat ran


def test_signed_division_without_the_v4_instructions():
    """Kernels before 6.6 have no signed division: the portable sequence gives C's results."""
    src = ('BEGIN { $a = -7; $b = 2; $c = -2; $m = 7; '
           'printf("%d %d %d %d %d %d %d %d\\n", $a / $b, $a % $b, $m / $c, $m % $c, $a / $c, '
           '$a % $c, $a / 3, $m % -4); exit(); }')
    r = run("-q", "-e", src, env={"PTRACE_NO_SDIV": "1", "PTRACE_NO_CACHE": "1"})
    assert r.rc == 0, r.err
    assert r.out.split("\n")[0] == "-3 -1 -3 1 3 -1 -2 3"


def test_long_strings_inside_loop_bodies():
    """A loop body is a function of its own: a big variable is passed by its address and used
    and changed in place, also in a nested loop."""
    r = run("-q", "-e", 'config = { max_strlen = 1024 } BEGIN { $s = str(0); $t = "outer"; '
            'for ($i : 0..2) { printf("%d [%s] %s\\n", $i, $s, $t); $s = "changed in loop"; '
            'for ($j : 0..1) { printf(" %s\\n", $s); } } print($s); exit(); }')
    assert r.rc == 0, r.err
    assert r.out.startswith("0 [] outer\n changed in loop\n1 [changed in loop] outer\n"
                            " changed in loop\nchanged in loop\n"), r.out
