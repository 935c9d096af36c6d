"""tseries() run for real: interval probes fill a few intervals, printed at exit as a chart and
as JSON, emptied by clear()."""
from __future__ import annotations

import json
import os

import pytest

from runner import run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


def test_tseries_text_and_clear():
    r = run("-e", 'interval:ms:20 { @s = tseries(3, "1s", 3, "sum"); @m = tseries(5, "100ms", 2, "max"); '
            '@c = tseries(1, "1s", 2); } interval:ms:330 { clear(@c); exit(); }')
    assert r.rc == 0, r.err
    out = r.out
    assert "@c:" not in out
    s = out[out.index("@s:"):]
    rows = [ln for ln in s.split("\n")[3:] if ln.endswith("|")]
    assert sum(int(ln.split()[1]) for ln in rows) in range(36, 52)       # ~16 events of 3
    m = out[out.index("@m:"):out.index("@s:")]
    assert "hh:mm:ss.fff" in m
    mrows = [ln for ln in m.split("\n")[3:] if ln.endswith("|")]
    assert 1 <= len(mrows) <= 2 and all(ln.split()[1] == "5" for ln in mrows)


def test_tseries_json_keyed():
    r = run("-f", "json", "-e", 'interval:ms:20 { @[1] = tseries(7, "1s", 4, "avg"); } '
            'interval:ms:120 { exit(); }')
    assert r.rc == 0, r.err
    lines = [json.loads(ln) for ln in r.out.splitlines()]
    ts = [ln for ln in lines if ln["type"] == "tseries"]
    assert len(ts) == 1
    points = ts[0]["data"]["@"]["1"]
    assert points and all(p["value"] in (7, None) for p in points) and points[-1]["value"] == 7
