"""Records and the test tree's own rules (the compiler's layering: test_layering_static.py)."""
from __future__ import annotations


def test_records_behave_like_dataclasses():
    from ptrace_lang.records import dataclass, field, fields, replace

    @dataclass(frozen=True)
    class P:
        a: int
        b: str = "x"

    @dataclass
    class Q(P.__base__):   # a plain class base works
        items: list = field(default_factory=list)
        tag: str = field(default="t", kw_only=True, compare=False)

    p = P(1)
    assert (p.a, p.b) == (1, "x") and p == P(1, "x") and hash(p) == hash(P(1))
    assert replace(p, b="y") == P(1, "y")
    q1, q2 = Q(), Q()
    assert q1.items is not q2.items and q1 == q2 and Q([1], tag="u") == Q([1])
    assert [f.name for f in fields(Q)] == ["items", "tag"]
    try:
        p.a = 2
    except AttributeError:
        pass
    else:
        raise AssertionError("frozen record accepted an assignment")
    try:
        P()
    except TypeError as e:
        assert "missing argument: 'a'" in str(e)
    else:
        raise AssertionError("missing argument accepted")


def test_test_modules_have_unique_names():
    """pytest imports test files by base name (no packages under tests/): two files of the same
    name in tests/unit and tests/kernel stop the whole run at collection."""
    import collections
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1]
    names = collections.Counter(p.name for p in root.rglob("test_*.py"))
    assert [n for n, c in names.items() if c > 1] == []
