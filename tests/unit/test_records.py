"""records: the dataclass subset's generic __init__ (its fast way and its general way give the
same instances and the same errors)."""
from __future__ import annotations

import pytest

from ptrace_lang.records import dataclass, field, fields, replace


@dataclass
class _Base:
    span: str = field(default="nowhere", kw_only=True, compare=False)


@dataclass
class _Point(_Base):
    x: int
    y: int = 7
    tags: list = field(default_factory=list)


@dataclass
class _Plain(_Base):
    a: int
    b: str
    label: str = field(default="", kw_only=True)


@dataclass(frozen=True)
class _Frozen:
    p: int
    q: int


@dataclass
class _WithProperty:
    v: int

    @property
    def w(self) -> int:
        return self.v * 2


def test_all_positional_given_and_keyword_only_defaults():
    p = _Plain(1, "x")
    assert (p.a, p.b, p.label, p.span) == (1, "x", "", "nowhere")
    q = _Plain(1, "x", label="L", span="here")
    assert (q.a, q.b, q.label, q.span) == (1, "x", "L", "here")
    assert set(vars(q)) == {f.name for f in fields(_Plain)} == {"a", "b", "label", "span"}
    assert q == _Plain(1, "x", label="L", span="elsewhere")   # (span: compare=False)
    assert q != _Plain(1, "y", label="L")


def test_fewer_arguments_defaults_and_factories():
    a, b = _Point(1), _Point(1)
    assert (a.x, a.y, a.tags, a.span) == (1, 7, [], "nowhere")
    assert a.tags is not b.tags                 # a fresh list each
    c = _Point(2, 3, [1], span="s")
    assert (c.x, c.y, c.tags, c.span) == (2, 3, [1], "s")
    assert _Point(x=4).x == 4 and _Point(4, y=5).y == 5


def test_errors_the_same_whichever_way():
    with pytest.raises(TypeError, match="takes 2 positional arguments but 3"):
        _Plain(1, "x", "z")
    with pytest.raises(TypeError, match="missing argument: 'b'"):
        _Plain(1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        _Plain(1, "x", nope=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'a'"):
        _Plain(1, "x", a=2)                     # a positional field given twice


def test_frozen_and_descriptors():
    f = _Frozen(1, 2)
    assert (f.p, f.q) == (1, 2) and hash(f) == hash(_Frozen(1, 2))
    with pytest.raises(AttributeError):
        f.p = 3
    w = _WithProperty(4)
    assert (w.v, w.w) == (4, 8)
    r = replace(_Plain(1, "x", label="L"), b="y")
    assert (r.a, r.b, r.label) == (1, "y", "L")
