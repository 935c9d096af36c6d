"""Values computed once and used again (codegen/lower_flow.py: pid/tid/uid/gid/cpu/cgroup and
the counters' address kept where they dominate): first read inside a branch, a ternary, a
loop or a record and then after it, each read must still give the value (the verifier refuses
a register read on a path that did not write it, so a wrong reuse fails the load)."""
from __future__ import annotations

from runner import run

SCRIPT = """BEGIN {
  if ($1 == 1) { @a = pid; } else { @a = tid; }
  $t = $1 == 2 ? uid : gid;
  $i = 0;
  while ($i < 2) { @w[$i] = cpu + pid; $i++; }
  printf("%d %d %d\\n", pid, tid, uid);
  @m[pid] = count();
  @n[tid, gid] = count();
  @x = pid + tid;
  if (pid == @a && @m[pid] == 1 && @n[tid, gid] == 1 && @w[1] == cpu + pid && $t == gid) {
    printf("same %d %d\\n", pid, @x - tid);
  }
  clear(@a); clear(@w); clear(@m); clear(@n); clear(@x);
  exit();
}"""


def test_values_read_in_branches_then_after_them():
    r = run("-e", SCRIPT, "1")
    assert r.rc == 0, r.err
    lines = r.out.split("\n")
    pid, tid, uid = (int(x) for x in lines[0].split())
    assert pid > 0 and tid == pid and uid == 0
    assert lines[1] == f"same {pid} {pid}", r.out
