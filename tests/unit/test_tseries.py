"""tseries(): analysis (arguments, located errors), the map's layout, the per-CPU merge and
the text/JSON output (a time-labelled chart), the exporter's gauge."""
from __future__ import annotations

import time

import pytest

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.runtime.format import MapData, format_map, format_map_json, tseries_merge
from ptrace_lang.sema.sema_aggs import parse_duration


def error_of(src: str) -> str:
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options())
    return info.value.render(SOURCES)


def test_durations():
    assert parse_duration("1s") == 10**9
    assert parse_duration("100ms") == 10**8
    assert parse_duration("5us") == 5000
    assert parse_duration("7") == 7
    assert parse_duration("2m") == 120 * 10**9
    assert parse_duration("1q") is None and parse_duration("s") is None


def test_compiles_with_a_layout():
    obj = compile_script('interval:s:1 { @[comm] = tseries(pid, "1s", 10, "max"); '
                         '@l = tseries(1, 500000, 3); }', "stdin", Options())
    obj = obj.spec
    um = {u.name: u for u in obj.user_maps}
    assert um["@"].kind == "tseries" and um["@"].tseries == (10**9, 10, "max")
    assert um["@l"].tseries == (500000, 3, "")
    maps = {m.name: m for m in obj.maps}
    assert maps["m_"].key_size == 16 + 8 and maps["m_"].value_size == 24
    assert maps["m_l"].key_size == 16 and maps["m_l"].value_size == 24


@pytest.mark.parametrize("src,msg", [
    ('BEGIN { @ = tseries(1, "1q", 3); }', 'tseries() interval must be a positive duration'),
    ('BEGIN { @ = tseries(1, 0, 3); }', 'tseries() interval must be a positive duration'),
    ('BEGIN { @ = tseries(1, "1s", 0); }', 'num_intervals must be an integer literal between 1'),
    ('BEGIN { @ = tseries(1, "1s", 3, "med"); }', 'aggregator must be one of "avg", "max"'),
    ('BEGIN { @ = tseries("a", "1s", 3); }', "tseries() expects an integer value, got 'string"),
    ('BEGIN { @ = tseries(1, "1s"); }', "tseries() takes 3 or 4 arguments (2 provided)"),
    ('BEGIN { $x = tseries(1, "1s", 2); }', "tseries() should be directly assigned to a map"),
    ('BEGIN { @ = tseries(1, "1s", 2); @ = tseries(1, "1s", 3); }', "Type mismatch for @"),
])
def test_errors(src, msg):
    assert msg in error_of(src)


def test_merge_of_the_cpus():
    parts = [(3, 10), (5, 20)]
    assert tseries_merge("sum", parts) == 8
    assert tseries_merge("min", parts) == 3 and tseries_merge("max", parts) == 5
    assert tseries_merge("", parts) == 5            # the latest write wins
    assert tseries_merge("", [(9, 30), (5, 20)]) == 9
    assert tseries_merge("avg", [(2, 10), (2, 20)]) == 7
    assert tseries_merge("avg", [(1, -3), (1, 0)]) == -1


def _t(ns: int, fmt: str = "%H:%M:%S") -> str:
    return time.strftime(fmt, time.localtime(ns // 10**9))


def test_text_chart_with_a_gap():
    s = 1_700_000_000 * 10**9
    md = MapData("@", "tseries", [(None, [(s, 2), (s + 2 * 10**9, 10)])], False,
                 tseries=(10**9, 5, ""))
    text = format_map(md)
    lines = text.split("\n")
    assert lines[0] == "@:"
    assert lines[1].split() == ["0", "10"]
    assert lines[2].startswith("hh:mm:ss ") and lines[2].endswith("|" + "_" * 50 + "|")
    assert lines[3].startswith(_t(s)) and lines[3].split()[1] == "2"
    assert lines[3].endswith("|" + " " * 10 + "*" + " " * 39 + "|")
    assert lines[4].split()[1] == "-" and lines[4].endswith("|" + " " * 50 + "|")
    assert lines[5].split()[1] == "10" and lines[5].endswith("*|")
    assert text.endswith("|\n\n")


def test_window_keeps_the_last_intervals_and_subsecond_labels():
    s = 1_700_000_000 * 10**9
    pts = [(s + i * 10**8, i) for i in range(3)]
    md = MapData("@k", "tseries", [("a", pts)], True, tseries=(10**8, 2, "sum"))
    text = format_map(md)
    assert text.startswith('@k[a]:\n')
    assert "hh:mm:ss.fff" in text
    rows = [ln for ln in text.split("\n") if ln.endswith("|") and "_" not in ln]
    assert [r.split()[1] for r in rows] == ["1", "2"]
    assert rows[0].startswith(_t(s) + ".100")


def test_json():
    s = 1_700_000_000 * 10**9
    md = MapData("@", "tseries", [(None, [(s, 4), (s + 2 * 10**9, 6)])], False,
                 tseries=(10**9, 3, "avg"))
    assert format_map_json(md) == (
        f'{{"type": "tseries", "data": {{"@": [{{"interval_start": "{_t(s)}", "value": 4}},'
        f'{{"interval_start": "{_t(s + 10**9)}", "value": null}},'
        f'{{"interval_start": "{_t(s + 2 * 10**9)}", "value": 6}}]}}}}\n')
    assert format_map_json(MapData("@", "tseries", [], False, tseries=(1, 1, ""))) == ""
