"""Map and value rendering.

Golden files (tests/unit/golden/format/NAME.out) are the stdout of `bpftrace NAME.bt` under
bpftrace 0.17 (see capture.py there); the tests rebuild the same maps by hand and render them with
stats_style="old". The newest bpftrace's flavour ("new", the default) is checked against
expectations written from its documented behaviour and its own unit tests.
"""
from __future__ import annotations

import pathlib
import random
from collections import Counter

import pytest

from ptrace_lang.runtime.format import (
    EXIT_PREAMBLE,
    MapData,
    Record,
    Stack,
    escape_buffer,
    format_map,
    format_map_json,
    format_maps,
    format_value,
    format_value_json,
    hist_bucket_bounds,
    hist_bucket_label,
    hist_index,
    hist_num_buckets,
    key_text,
    lhist_bucket_bounds,
    lhist_bucket_label,
    lhist_index,
    lhist_num_buckets,
    stats_average,
    value_text,
)

GOLDEN = pathlib.Path(__file__).parent / "golden" / "format"
ATTACHING = "Attaching 1 probe...\n"


def golden(name: str) -> str:
    return (GOLDEN / f"{name}.out").read_bytes().decode("utf-8", "surrogateescape")


def hist_of(values, k=0):
    return dict(Counter(hist_index(v, k) for v in values))


def lhist_of(values, lo, hi, step):
    return dict(Counter(lhist_index(v, lo, hi, step) for v in values))


def scalar(name, kind, value, **kw):
    return MapData(name, kind, [(None, value)], keyed=False, **kw)


def keyed(name, kind, mapping, **kw):
    return MapData(name, kind, list(mapping.items()), keyed=True, **kw)


def exit_output(maps, before="", style="old"):
    return ATTACHING + before + EXIT_PREAMBLE + format_maps(maps, stats_style=style)


# --------------------------------------------------------------------------- goldens (0.17)

LHIST = {"lhist": (0, 10, 2)}

GOLDEN_MAPS = {
    "hist_negative": lambda: [scalar("@h", "hist", hist_of([-1, 3, 5, 2]))],
    "hist_keyed": lambda: [keyed("@h", "hist", {0: hist_of([100, 100, 1000]), 1: hist_of([3]),
                                                 2: hist_of([10, 10])})],
    "hist_suffixes": lambda: [scalar("@h", "hist", hist_of([1000, 1500000, 1500000, 3000000000, 0]))],
    "hist_bars": lambda: [scalar("@h", "hist", hist_of([1, 2, 2, 4, 4, 4] + [8] * 7))],
    "lhist_basic": lambda: [scalar("@l", "lhist", lhist_of([-5, 3, 15, 10, 9], 0, 10, 2), **LHIST)],
    "lhist_inner": lambda: [scalar("@l", "lhist", lhist_of([3, 7], 0, 10, 2), **LHIST)],
    "lhist_uneven": lambda: [
        scalar("@l", "lhist", lhist_of([9, 2], 0, 10, 3), lhist=(0, 10, 3)),
        scalar("@m", "lhist", lhist_of([9, 2], 5, 10, 3), lhist=(5, 10, 3)),
    ],
    "lhist_step1": lambda: [scalar("@l", "lhist", lhist_of([3, 5, -1], 0, 10, 1), lhist=(0, 10, 1))],
    "lhist_kilo": lambda: [
        scalar("@l", "lhist", lhist_of([100, 1100, 5000], 0, 4096, 512), lhist=(0, 4096, 512)),
        scalar("@m", "lhist", lhist_of([1048576, 3000000], 0, 2097152, 524288), lhist=(0, 2097152, 524288)),
    ],
    "lhist_keyed": lambda: [keyed("@l", "lhist", {(2, "b"): lhist_of([50, 50], 0, 100, 10),
                                                   (1, "a"): lhist_of([3], 0, 100, 10)}, lhist=(0, 100, 10))],
    "count_tuple_keys": lambda: [
        scalar("@a", "value", 1), scalar("@b", "count", 1),
        keyed("@c", "sum", {(1, "x"): 5, (2, "y"): 3, (3, "z"): -4}),
    ],
    "value_int_values": lambda: [keyed("@v", "value", {3: 1, 1: 5, 2: 3, -1: 4})],
    "value_string_keys": lambda: [keyed("@v", "value", {"b": "x", "a": "z", "c": "y"}),
                                  keyed("@w", "value", {"abc": "1", "ab": "2", "b": "3"})],
    "value_int_keys": lambda: [keyed("@v", "value", {3: "x", 1: "z", -2: "y"})],
    "value_tuple_keys": lambda: [keyed("@v", "value", {(3, "b"): "x", (1, "c"): "z", (1, "a"): "y",
                                                       (-1, "z"): "q"})],
    "sum_negative": lambda: [keyed("@a", "sum", {"x": -5, "y": 3, "z": -10, "w": 0})],
    "min_keyed": lambda: [keyed("@mn", "min", {1: -5, 2: 3, 3: -1}), keyed("@mx", "max", {1: 7, 2: 3})],
    "avg_stats": lambda: [
        keyed("@a", "avg", {1: (2, -3), 2: (1, 3), 3: (1, -10)}),
        scalar("@s", "stats", (2, -3)),
        keyed("@s2", "stats", {1: (1, 10), 2: (1, 1)}),
    ],
    "avg_scalar": lambda: [scalar("@a", "avg", 5), scalar("@b", "value", 1)],
    "maps_mixed": lambda: [scalar("@z", "value", 4), scalar("@a", "value", 1),
                           scalar("@h", "hist", hist_of([3])), scalar("@", "count", 1),
                           keyed("@m", "value", {"k": 2})],
    "empty_maps": lambda: [keyed("@h", "hist", {}), keyed("@a", "value", {}), scalar("@b", "value", 2)],
    "zeroed": lambda: [scalar("@h", "hist", {2: 0}), scalar("@c", "count", 0),
                       scalar("@s", "stats", (0, 0)), scalar("@b", "value", 2)],
}


@pytest.mark.parametrize("name", sorted(GOLDEN_MAPS))
def test_golden_exit_output(name):
    assert exit_output(GOLDEN_MAPS[name]()) == golden(name)


def test_golden_goldens_all_used():
    used = set(GOLDEN_MAPS) | {
        "print_between", "empty_print", "print_top_div", "print_avg_div", "print_hist_top_div",
        "print_values", "buffers", "stack_keys", "json_maps", "printf_ints", "printf_widths",
        "printf_buffers",
    }
    assert {p.stem for p in GOLDEN.glob("*.bt")} == used


def test_golden_print_between():
    a, h, z = scalar("@a", "value", 1), scalar("@h", "hist", hist_of([3])), scalar("@z", "value", 4)
    before = "hi\n" + format_map(a, stats_style="old") + format_map(h, stats_style="old") \
        + format_map(z, stats_style="old") + "bye\n"
    assert exit_output([a, h, z], before) == golden("print_between")


def test_golden_empty_print():
    a, h = keyed("@a", "value", {}), keyed("@h", "hist", {})
    before = format_map(a, stats_style="old") + "--\n" + format_map(h, stats_style="old") + "--\n"
    assert exit_output([a, h], before) == golden("empty_print")


def test_golden_print_top_div():
    c = keyed("@c", "count", {3: 3, 1: 1, 2: 2})
    before = "".join(format_map(c, top, div, stats_style="old") for top, div in ((2, 1), (0, 2), (2, 3)))
    assert exit_output([keyed("@c", "count", {})], before) == golden("print_top_div")


def test_golden_print_avg_div():
    a = keyed("@a", "avg", {1: (2, 23), 2: (1, 7)})
    before = format_map(a, 0, 2, stats_style="old") + format_map(a, 1, stats_style="old")
    assert exit_output([keyed("@a", "avg", {})], before) == golden("print_avg_div")


def test_golden_print_hist_top_div():
    h = keyed("@h", "hist", {1: hist_of([10, 10, 100, 100, 100]), 2: hist_of([1])})
    before = format_map(h, 1, 2, stats_style="old")
    assert exit_output([keyed("@h", "hist", {})], before) == golden("print_hist_top_div")


def test_golden_print_values():
    t = scalar("@t", "value", (1, "a", (2, "b")))
    c = keyed("@c", "value", {"(abc)": 3})
    before = format_value((1, (2, 3))) + format_value("str") + format_value(-5) + format_map(t, stats_style="old")
    assert exit_output([t, c], before) == golden("print_values")


def test_golden_buffers():
    b = scalar("@b", "value", b"ab\x01")
    m = keyed("@m", "value", {b"k\x03": 1})
    before = format_map(b, stats_style="old") + format_value(b"xy\x02")
    assert exit_output([b, m], before) == golden("buffers")


def test_golden_stack_keys():
    kframes = ["perf_syscall_enter+397", "syscall_trace_enter+384", "do_syscall_64+506"]
    user = Stack(["0x7fbb3cc6c409"])
    maps = [
        keyed("@", "count", {(Stack(kframes), user, "true"): 1}),
        scalar("@k", "value", Stack(kframes[:2])),
        keyed("@s", "count", {user: 1}),
    ]
    assert exit_output(maps) == golden("stack_keys")


def test_golden_json():
    lines = golden("json_maps").split("\n", 1)[1]  # drop 0.17's attached_probes line
    maps = [
        scalar("@a", "value", 1),
        keyed("@c", "count", {(2, "y"): 2, (1, "x"): 1}),
        scalar("@h", "hist", hist_of([-1, 5])),
        keyed("@h2", "hist", {3: hist_of([2])}),
        scalar("@l", "lhist", lhist_of([3, 100], 0, 10, 2), lhist=(0, 10, 2)),
        scalar("@s", "stats", (2, 13)),
        scalar("@av", "avg", 3),
        keyed("@t", "value", {1: (1, "abc")}),
        scalar("@str", "value", 'hi"x\t'),
        keyed("@k", "value", {"hello world": 1}),
    ]
    maps.sort(key=lambda m: m.name)
    expected = (format_value_json(5, "old") + format_value_json((1, "a"), "old") + "\n\n"
                + "".join(format_map_json(m, stats_style="old") for m in maps))
    assert expected == lines


# --------------------------------------------------------------------------- hist buckets

@pytest.mark.parametrize("k", range(0, 6))
def test_hist_index_matches_bounds(k):
    values = list(range(-3, 5000)) + [random.Random(k).randrange(1 << 63) for _ in range(2000)]
    values += [(1 << p) + d for p in range(1, 63) for d in (-1, 0, 1)] + [(1 << 63) - 1]
    last = -1
    for v in sorted(values):
        i = hist_index(v, k)
        lo, hi = hist_bucket_bounds(i, k)
        assert (lo is None and v < 0) or lo <= v < hi, (v, k, i, lo, hi)
        assert i >= last
        last = i
    assert hist_index((1 << 63) - 1, k) == hist_num_buckets(k) - 1


def test_hist_index_k0_classic_numbering():
    assert [hist_index(v) for v in (-5, 0, 1, 2, 3, 4, 7, 8, 1023, 1024)] == [0, 1, 2, 3, 3, 4, 4, 5, 11, 12]
    assert hist_num_buckets(0) == 65


def test_hist_index_k_formula():
    # v >= 2**k: s = floor(log2 v) - k; index = (s << k) + (v >> s) + 1
    for k in range(0, 5):
        for v in range(1 << k, 10000):
            s = v.bit_length() - 1 - k
            assert hist_index(v, k) == ((s + 1) << k) + ((v >> s) & ((1 << k) - 1)) + 1


def test_hist_labels_k0():
    labels = [hist_bucket_label(i) for i in range(0, 14)]
    assert labels == ["(..., 0)", "[0]", "[1]", "[2, 4)", "[4, 8)", "[8, 16)", "[16, 32)", "[32, 64)",
                      "[64, 128)", "[128, 256)", "[256, 512)", "[512, 1K)", "[1K, 2K)", "[2K, 4K)"]
    assert hist_bucket_label(hist_index(1 << 20)) == "[1M, 2M)"
    assert hist_bucket_label(hist_index(1 << 30)) == "[1G, 2G)"
    assert hist_bucket_label(hist_index(1 << 40)) == "[1T, 2T)"
    assert hist_bucket_label(hist_index(1 << 50)) == "[1P, 2P)"
    assert hist_bucket_label(hist_index(1 << 60)) == "[1E, 2E)"
    assert hist_bucket_label(hist_index(1 << 62)) == "[4E, 8E)"
    # 0.17 stopped at T.
    assert hist_bucket_label(hist_index(1 << 50), stats_style="old") == "[1024T, 2048T)"
    assert hist_bucket_label(hist_index(1 << 40), stats_style="old") == "[1T, 2T)"


def test_hist_labels_k_positive():
    # hist(n, 10): the first 2**11 buckets hold one value each (bpftrace's print_hist_map test).
    assert [hist_bucket_label(i, 10) for i in range(1, 6)] == ["[0]", "[1]", "[2]", "[3]", "[4]"]
    # hist(n, 3): one value per bucket up to 15, then 8 sub-buckets per power of two.
    assert [hist_bucket_label(hist_index(v, 3), 3) for v in (15, 16, 18, 32, 64, 120, 1024, 1100, 9300)] == [
        "[15]", "[16, 18)", "[18, 20)", "[32, 36)", "[64, 72)", "[120, 128)", "[1024, 1152)",
        "[1024, 1152)", "[9K, 10K)"]
    assert hist_bucket_label(hist_index(3 << 20, 1), 1) == "[3M, 4M)"
    assert hist_bucket_label(hist_index(2 << 20, 1), 1) == "[2M, 3M)"


def test_hist_rows_k3_text():
    md = scalar("@", "hist", hist_of(range(0, 20), 3), hist_k=3)
    text = format_map(md)
    lines = text.split("\n")
    assert lines[0] == "@:"
    assert lines[1].startswith("[0]  ") and lines[16].startswith("[15]  ")
    assert lines[17] == "[16, 18)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
    assert lines[18] == "[18, 20)               2 |@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@|"
    assert text.endswith("|\n\n")


def test_hist_json_k3_bounds():
    md = scalar("@", "hist", hist_of([14, 15, 16, 17, 36], 3), hist_k=3)
    assert format_map_json(md) == (
        '{"type": "hist", "data": {"@": [{"min": 14, "max": 14, "count": 1},{"min": 15, "max": 15, "count": 1},'
        '{"min": 16, "max": 17, "count": 2},{"min": 18, "max": 19, "count": 0},{"min": 20, "max": 21, "count": 0},'
        '{"min": 22, "max": 23, "count": 0},{"min": 24, "max": 25, "count": 0},{"min": 26, "max": 27, "count": 0},'
        '{"min": 28, "max": 29, "count": 0},{"min": 30, "max": 31, "count": 0},{"min": 32, "max": 35, "count": 0},'
        '{"min": 36, "max": 39, "count": 1}]}}\n')


# --------------------------------------------------------------------------- lhist buckets

def test_lhist_index_and_bounds():
    assert [lhist_index(v, 0, 10, 2) for v in (-1, 0, 1, 2, 9, 10, 11, 1000)] == [0, 1, 1, 2, 5, 6, 6, 6]
    assert lhist_num_buckets(0, 10, 2) == 7
    assert [lhist_index(v, 0, 10, 3) for v in (8, 9, 10, 11)] == [3, 4, 4, 4]
    for lo, hi, step in ((0, 10, 2), (0, 10, 3), (5, 100, 7), (-20, 20, 5)):
        for v in range(lo - 5, hi + 20):
            i = lhist_index(v, lo, hi, step)
            low, high = lhist_bucket_bounds(i, lo, hi, step)
            assert (low is None or low <= v) and (high is None or v < high)


def test_lhist_labels():
    assert [lhist_bucket_label(i, 0, 10, 2) for i in range(7)] == [
        "(..., 0)", "[0, 2)", "[2, 4)", "[4, 6)", "[6, 8)", "[8, 10)", "[10, ...)"]
    assert lhist_bucket_label(0, 5, 10, 1) == "(..., 5)"
    # newest: one-value buckets print as [v]; the overflow starts at lo + n*step; K/M only for
    # steps that are multiples of 1024.
    assert lhist_bucket_label(4, 0, 10, 1) == "[3]"
    assert lhist_bucket_label(4, 0, 10, 1, "old") == "[3, 4)"
    assert lhist_bucket_label(4, 0, 10, 3) == "[9, ...)"
    assert lhist_bucket_label(4, 0, 10, 3, "old") == "[10, ...)"
    assert lhist_bucket_label(2, 0, 4096, 512) == "[512, 1024)"
    assert lhist_bucket_label(2, 0, 4096, 512, "old") == "[512, 1K)"
    assert [lhist_bucket_label(i, 0, 5 * 1024, 1024) for i in (1, 2, 5, 6)] == [
        "[0, 1K)", "[1K, 2K)", "[4K, 5K)", "[5K, ...)"]
    assert lhist_bucket_label(3, 0, 4 << 20, 1 << 20) == "[2M, 3M)"


def test_lhist_keyed_newest():
    # bpftrace's print_lhist_map test: lhist(n, 0, 5K, 1K), keys sorted by total count.
    md = keyed("lhist_map_1", "lhist", {0: {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}, 1: {1: 2, 2: 2, 3: 2, 4: 2, 5: 2}},
               lhist=(0, 5 * 1024, 1024))
    text = format_map(md, div=2)
    assert text.startswith("lhist_map_1[1]:\n[0, 1K)                2 |" + "@" * 52 + "|\n")
    assert "lhist_map_1[0]:\n[0, 1K)               10 |" + "@" * 10 + " " * 42 + "|\n" in text
    assert text.endswith("[4K, 5K)              50 |" + "@" * 52 + "|\n\n")
    assert format_map(md, top=1).startswith("lhist_map_1[0]:\n")


# --------------------------------------------------------------------------- text rendering (newest)

def test_newest_hist_header_and_empty_line():
    md = scalar("@h", "hist", hist_of([-1, 3, 5, 2]))
    assert format_map(md) == golden("hist_negative")[len(ATTACHING) + 2:].replace("@h: \n", "@h:\n")
    md = keyed("@h", "hist", {(1, "a"): hist_of([3])})
    assert format_map(md) == "@h[1, a]:\n[2, 4)                 1 |" + "@" * 52 + "|\n\n"


def test_newest_hist_div_and_top():
    # bpftrace's print_hist_map test (hist(n, 10)).
    values = {0: {1: 10, 2: 20, 3: 30, 4: 40, 5: 50}, 1: {1: 2, 2: 2, 3: 2, 4: 2, 5: 2}}
    md = keyed("hist_map_3", "hist", values, hist_k=10)
    text = format_map(md, 0, 2)
    assert text.startswith("hist_map_3[1]:\n[0]                    1 |" + "@" * 52 + "|\n")
    assert "hist_map_3[0]:\n[0]                    5 |" + "@" * 10 + " " * 42 + "|\n" in text
    assert "[2]                   15 |" + "@" * 31 + " " * 21 + "|\n" in text
    assert format_map(md, 1, 2).startswith("hist_map_3[0]:\n")
    # The newest bpftrace draws the bars from the divided counts, 0.17 from the raw ones.
    h = keyed("@h", "hist", {1: hist_of([10, 10, 100, 100, 100])})
    assert "[8, 16)                1 |" + "@" * 52 + "|" in format_map(h, 0, 2)
    assert "[8, 16)                1 |" + "@" * 34 + " " * 18 + "|" in format_map(h, 0, 2, "old")


def test_newest_stats_and_avg():
    s = scalar("@s", "stats", (3, 6))
    assert format_map(s) == "@s: { .count = 3, .average = 2, .total = 6 }\n"
    assert format_map(s, stats_style="old") == "@s: count 3, average 2, total 6\n\n"
    s2 = keyed("@s", "stats", {1: (2, -3), 2: (1, 100)})
    assert format_map(s2) == ("@s[1]: { .count = 2, .average = -1, .total = -3 }\n"
                              "@s[2]: { .count = 1, .average = 100, .total = 100 }\n")
    assert format_map(s2, 1, 2) == "@s[2]: { .count = 1, .average = 50, .total = 100 }\n"
    assert format_map(s2, 1, 2, "old") == format_map(s2, stats_style="old")  # 0.17 ignored top/div
    assert format_map(scalar("@e", "stats", (0, 0))) == "@e: { .count = 0, .average = 0, .total = 0 }\n"
    a = keyed("@a", "avg", {1: 5, 2: 14, 3: 200})
    assert format_map(a) == "@a[1]: 5\n@a[2]: 14\n@a[3]: 200\n"
    assert format_map(a, 2, 2) == "@a[2]: 7\n@a[3]: 100\n"
    assert format_map(a, stats_style="old") == "@a[1]: 5\n@a[2]: 14\n@a[3]: 200\n\n"


def test_stats_average_truncates_toward_zero():
    assert stats_average(2, -3) == -1
    assert stats_average(2, 3) == 1
    assert stats_average(0, 0) == 0
    assert stats_average(3, -7) == -2


def test_newest_basic_map_top_div():
    # bpftrace's print_basic_map test: int values sort by value, div truncates.
    md = keyed("basic_map", "value", {1: 5, 3: 10, 5: 4, 7: 11, 9: 7})
    assert format_map(md, 3) == "basic_map[9]: 7\nbasic_map[3]: 10\nbasic_map[7]: 11\n"
    assert format_map(md, 0, 2) == ("basic_map[5]: 2\nbasic_map[1]: 2\nbasic_map[9]: 3\n"
                                    "basic_map[3]: 5\nbasic_map[7]: 5\n")
    assert format_map(md, 3, 2) == "basic_map[9]: 3\nbasic_map[3]: 5\nbasic_map[7]: 5\n"
    strings = keyed("string_map", "value", {3: "hello", 1: "world", 2: "bpftrace"})
    assert format_map(strings, 2, 2) == "string_map[2]: bpftrace\nstring_map[3]: hello\n"


def test_sum_div_truncates_toward_zero():
    md = keyed("@s", "sum", {"a": -7, "b": 7})
    assert format_map(md, 0, 2) == "@s[a]: -3\n@s[b]: 3\n"


def test_ties_in_key_order_not_the_kernels_hash_order():
    md = keyed("@c", "count", {7: 1, 6: 1, 3: 1, 1: 1, 4: 2})
    assert format_map(md) == "@c[1]: 1\n@c[3]: 1\n@c[6]: 1\n@c[7]: 1\n@c[4]: 2\n"
    md = keyed("@h", "hist", {"b": {3: 1}, "a": {3: 1}, "c": {2: 1, 3: 1}})
    assert [line for line in format_map(md).splitlines() if line.startswith("@")] == \
        ["@h[a]:", "@h[b]:", "@h[c]:"]


def test_key_sort_signed_vs_unsigned():
    md = keyed("@v", "value", {3: "x", 1: "z", -2: "y"})
    assert format_map(md) == "@v[-2]: y\n@v[1]: z\n@v[3]: x\n"
    assert format_map(md, stats_style="old") == "@v[1]: z\n@v[3]: x\n@v[-2]: y\n"
    tup = keyed("@v", "value", {(3, "b"): "x", (1, "c"): "z", (1, "a"): "y", (-1, "z"): "q"})
    assert format_map(tup) == "@v[-1, z]: q\n@v[1, a]: y\n@v[1, c]: z\n@v[3, b]: x\n"


def test_value_map_non_int_values_sorted_by_key():
    md = keyed("@v", "value", {"b": (1, "x"), "a": (2, "y")})
    assert format_map(md) == "@v[a]: (2, y)\n@v[b]: (1, x)\n"
    md = keyed("@b", "value", {2: True, 1: False})
    assert format_map(md) == "@b[1]: false\n@b[2]: true\n"


def test_empty_maps():
    assert format_map(keyed("@a", "count", {})) == ""
    assert format_map(keyed("@a", "count", {}), stats_style="old") == "\n"
    assert format_map(keyed("@a", "stats", {}), stats_style="old") == "\n\n"
    assert format_map(keyed("@h", "hist", {})) == ""
    assert format_map(scalar("@h", "hist", {})) == "@h:\n\n"
    assert format_map(MapData("@x", "count", [], keyed=False)) == ""


def test_scalar_and_anonymous():
    assert format_map(scalar("@x", "count", 5)) == "@x: 5\n"
    assert format_map(scalar("@", "sum", -5)) == "@: -5\n"
    assert format_map(keyed("@", "count", {"bash": 3})) == "@[bash]: 3\n"


def test_format_maps_orders_by_name_bytes():
    maps = [scalar("@b", "value", 1), scalar("@a", "value", 2), scalar("@", "value", 3), scalar("@B", "value", 4)]
    assert format_maps(maps) == "@: 3\n@B: 4\n@a: 2\n@b: 1\n"


def test_stack_rendering():
    frames = Stack(["f1+1", "f2+2"])
    assert format_map(keyed("@", "count", {frames: 3})) == "@[\n        f1+1\n        f2+2\n]: 3\n"
    assert format_map(keyed("@", "count", {frames: 3}), stats_style="old") == "@[\n    f1+1\n    f2+2\n]: 3\n"
    assert format_map(scalar("@k", "value", frames)) == "@k: \n        f1+1\n        f2+2\n\n"
    assert format_map(keyed("@", "count", {(frames, "bash"): 1})) == "@[\n        f1+1\n        f2+2\n, bash]: 1\n"


def test_value_text_and_format_value():
    assert format_value(5) == "5\n"
    assert format_value("str") == "str\n"
    assert format_value((1, "abc")) == "(1, abc)\n"
    assert format_value((1, (2, 3))) == "(1, (2, 3))\n"
    assert format_value(Record({"x": 1, "y": 2})) == "{ .x = 1, .y = 2 }\n"
    assert format_value(Record([("a", (1, "b")), ("c", Record({"d": "e"}))])) == "{ .a = (1, b), .c = { .d = e } }\n"
    assert format_value(Record({})) == "{}\n"
    assert format_value(True) == "true\n"
    assert format_value([1, 2, 3]) == "[1,2,3]\n"
    assert format_value(b"ab\x01\xff") == "ab\\x01\\xff\n"
    assert value_text(-5) == "-5"


def test_key_text():
    assert key_text((1, "hello")) == "1, hello"
    assert key_text("abc") == "abc"
    assert key_text((1, (2, "x"))) == "1, (2, x)"
    # The newest bpftrace strips an outer "(...)" from any key's text; 0.17 did not.
    assert key_text("(sd-pam)") == "sd-pam"
    assert key_text("(sd-pam)", "old") == "(sd-pam)"


def test_escape_buffer():
    assert escape_buffer(bytes(range(0x1e, 0x22)) + b'"\\~\x7f\x80') == '\\x1e\\x1f !"\\~\\x7f\\x80'


def test_hist_label_column_overflow():
    # A label longer than 16 columns is not cut (setw pads, never truncates).
    md = scalar("@h", "hist", {hist_index(1 << 62): 1})
    assert format_map(md) == "@h:\n[4E, 8E)               1 |" + "@" * 52 + "|\n\n"
    md = scalar("@l", "lhist", {1: 123456789}, lhist=(1000000000, 2000000000, 1000000))
    line = format_map(md).split("\n")[1]
    assert line.startswith("[1000000000, 1001000000)123456789 |")


def test_bar_width_single_precision():
    # 1/3*52 and friends, computed in float32 then truncated.
    md = scalar("@h", "hist", {2: 1, 3: 3, 4: 2, 5: 7, 6: 13})
    rows = format_map(md).split("\n")[1:6]
    assert [r.count("@") for r in rows] == [int(c / 13 * 52) for c in (1, 3, 2, 7, 13)]


# --------------------------------------------------------------------------- JSON (newest)

def test_json_newest_maps():
    assert format_map_json(scalar("@x", "count", 5)) == '{"type": "map", "data": {"@x": 5}}\n'
    md = keyed("@m", "count", {(1, "a b"): 2, "k": 1})
    assert format_map_json(md) == '{"type": "map", "data": {"@m": {"k": 1, "1,ab": 2}}}\n'
    md = keyed("@m", "count", {(1, "a b"): 2}) 
    assert format_map_json(md, stats_style="old") == '{"type": "map", "data": {"@m": {"1,a b": 2}}}\n'
    assert format_map_json(keyed("@m", "count", {})) == ""
    assert format_map_json(scalar("@t", "value", (1, "abc", True))) == \
        '{"type": "map", "data": {"@t": [1,"abc",true]}}\n'
    assert format_map_json(scalar("@r", "value", Record({"x": 1, "y": "z"}))) == \
        '{"type": "map", "data": {"@r": {"x": 1, "y": "z"}}}\n'


def test_json_newest_stats_avg_hist():
    assert format_map_json(scalar("@s", "stats", (2, 12))) == \
        '{"type": "stats", "data": {"@s": {"count": 2, "average": 6, "total": 12}}}\n'
    assert format_map_json(keyed("@a", "avg", {"x": 3})) == '{"type": "stats", "data": {"@a": {"x": 3}}}\n'
    h = scalar("@h", "hist", hist_of([-1, 2, 5]))
    assert format_map_json(h) == (
        '{"type": "hist", "data": {"@h": [{"max": -1, "count": 1},{"min": 0, "max": 0, "count": 0},'
        '{"min": 1, "max": 1, "count": 0},{"min": 2, "max": 3, "count": 1},{"min": 4, "max": 7, "count": 1}]}}\n')
    l = keyed("@l", "lhist", {"k": lhist_of([95, 150], 0, 100, 10)}, lhist=(0, 100, 10))
    assert format_map_json(l) == (
        '{"type": "hist", "data": {"@l": {"k": [{"min": 90, "max": 99, "count": 1},{"min": 100, "count": 1}]}}}\n')
    assert format_map_json(scalar("@h", "hist", {})) == '{"type": "hist", "data": {"@h": []}}\n'


def test_json_values():
    assert format_value_json(5) == '{"type": "value", "data": 5}\n'
    assert format_value_json((1, "a")) == '{"type": "value", "data": [1,"a"]}\n'
    assert format_value_json('q"\\\n\r\t\x01\x7f') == '{"type": "value", "data": "q\\"\\\\\\n\\r\\t\\u0001\x7f"}\n'
    assert format_value_json((1 << 53) + 1) == '{"type": "value", "data": "9007199254740993"}\n'
    assert format_value_json((1 << 53) + 1, "old") == '{"type": "value", "data": 9007199254740993}\n'
    assert format_value_json(-(1 << 53)) == '{"type": "value", "data": -9007199254740992}\n'
    assert format_value_json(b"a\xff") == '{"type": "value", "data": [97,-1]}\n'
    assert format_value_json(b"a\xff", "old") == '{"type": "value", "data": "a\\\\xff"}\n'
    assert format_value_json(Stack(["f"])) == '{"type": "value", "data": "\\n        f\\n"}\n'


def test_hist_buckets_as_list():
    as_dict = scalar("@h", "hist", hist_of([-1, 3, 5, 2]))
    as_list = scalar("@h", "hist", [as_dict.entries[0][1].get(i, 0) for i in range(hist_num_buckets())])
    assert format_map(as_list) == format_map(as_dict)
    assert format_map_json(as_list) == format_map_json(as_dict)
    two = keyed("@h", "hist", {1: [0, 0, 5], 2: [0, 1]})
    assert format_map(two).startswith("@h[2]:\n[0]  ")


# --------------------------------------------------------------------------- print(@m)

def test_print_of_a_keyed_map_ends_with_an_empty_line():
    # bpftrace 0.26: what print(@keyed) writes ends with an empty line (its runtime test
    # print_avg_map_args expects "@[c]: 3\n@[d]: 4\n\n"); 0.17 wrote none; at exit unchanged
    a = keyed("@a", "avg", {"a": 1, "b": 2, "c": 3, "d": 4})
    assert format_map(a, 2, 1, printed=True) == "@a[c]: 3\n@a[d]: 4\n\n"
    c = keyed("@c", "count", {1: 1, 2: 5})
    assert format_map(c, printed=True) == "@c[1]: 1\n@c[2]: 5\n\n"
    assert format_map(c) == "@c[1]: 1\n@c[2]: 5\n"
    assert format_map(c, printed=True, stats_style="old") == "@c[1]: 1\n@c[2]: 5\n"
    s = keyed("@s", "stats", {1: (1, 3)})
    assert format_map(s, printed=True).endswith(" }\n\n")
    # a map without keys, a histogram (already followed by one), an empty map: no more
    assert format_map(scalar("@x", "count", 3), printed=True) == "@x: 3\n"
    h = keyed("@h", "hist", {1: hist_of([3])})
    assert format_map(h, printed=True) == format_map(h)
    assert format_map(keyed("@e", "count", {}), printed=True) == ""


def test_ties_print_in_key_order_not_hash_order():
    rng = random.Random(7)
    keys = list(range(40))
    for kind, value in (("count", 5), ("sum", 5), ("max", 5)):
        rng.shuffle(keys)
        md = keyed("@m", kind, {k: value for k in keys})
        lines = format_map(md).splitlines()
        assert lines == [f"@m[{k}]: 5" for k in range(40)]
    rng.shuffle(keys)
    md = keyed("@h", "hist", {k: hist_of([1]) for k in keys})
    heads = [line for line in format_map(md).splitlines() if line.startswith("@h[")]
    assert heads == [f"@h[{k}]:" for k in range(40)]
    # string keys tie in byte order
    names = ["bash", "Xorg", "a", "sshd", "_x"]
    rng.shuffle(names)
    md = keyed("@s", "count", {n: 1 for n in names})
    assert [l.split("]")[0][3:] for l in format_map(md).splitlines()] == sorted(
        names, key=lambda n: n.encode())
