"""hist() bucket indexes computed by the generated BPF code, checked against the reference
numbering (runtime.format.hist_index) at the edges of every halving step of the bucket
computation (codegen.lower_maps.log2_floor): each value is counted once, in a BEGIN program run
in the kernel, and every bucket read back must hold exactly the values the reference puts there.
"""
from __future__ import annotations

from collections import Counter

from ptrace_lang.driver import Options, compile_script
from ptrace_lang.runtime.format import hist_index
from ptrace_lang.runtime.session import RunOptions, Session

EDGES = sorted({v for p in (0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 33, 47, 48, 62)
                for v in ((1 << p) - 1, 1 << p, (1 << p) + 1)} | {-(1 << 63), -5, -1, 0, 12345,
                                                                    (1 << 63) - 1})


def buckets(k: int) -> Counter:
    body = " ".join(f"@h = hist({v}, {k});" if k else f"@h = hist({v});" for v in EDGES)
    c = compile_script(f"BEGIN {{ {body} }}", "stdin", Options())
    s = Session(c.spec, RunOptions(dry_run=True, quiet=True))
    try:
        s.load()
        s.run_test(c.spec.programs[0].name)
        md = s.read_user_map(c.spec.user_maps[0])
        (_, got), = md.entries
        return Counter({b: n for b, n in got.items() if n})
    finally:
        s.close()


def test_hist_buckets_are_the_reference_ones():
    for k in (0, 2):
        assert buckets(k) == Counter(hist_index(v, k) for v in EDGES), f"hist(v, {k})"
