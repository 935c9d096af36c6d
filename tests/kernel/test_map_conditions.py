"""Conditions on integer map entries, ``@m[k] OP K`` and ``@m[k]`` alone, whose missing-key
default (0) the generated code decides at the lookup's null test (lower_maps.map_compare):
the outcome for present, zero and missing keys, signed and unsigned, as bpftrace 0.17 gives
it (checked side by side when this test was written)."""
from __future__ import annotations

from runner import run

SCRIPT = """BEGIN { @a[1] = 5; @a[2] = -3; @a[3] = 0; @u[1] = (uint64)7;
  if (@a[1] != 0) { printf("a1\\n"); }
  if (@a[1] == 5) { printf("a2\\n"); }
  if (@a[9] == 0) { printf("a3\\n"); }
  if (@a[9] < 1) { printf("a4\\n"); }
  if (@a[2] < 0) { printf("a5\\n"); }
  if (@a[2] > 0) { printf("BAD1\\n"); }
  if (@a[9] != 0) { printf("BAD2\\n"); }
  if (@a[9]) { printf("BAD3\\n"); }
  if (@a[1]) { printf("a6\\n"); }
  if (@a[9] >= 0) { printf("a7\\n"); }
  if (!@a[9]) { printf("a8\\n"); }
  if (@a[3]) { printf("BAD4\\n"); }
  if (@a[3] == 0 && @a[1] > 4) { printf("a9\\n"); }
  if (@a[9] > -1) { printf("a10\\n"); }
  if (@u[9] < 1 && @u[1] > 6) { printf("a11\\n"); }
  if (@u[2] > 0 || @a[9] <= 0) { printf("a12\\n"); }
  clear(@a); clear(@u); exit(); }"""


def test_map_entry_conditions():
    r = run("-e", SCRIPT)
    assert r.rc == 0, r.err
    assert r.out.split() == [f"a{i}" for i in range(1, 13)], r.out
