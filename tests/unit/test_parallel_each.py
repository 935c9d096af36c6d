"""runtime.parallel.each: every item done, in two threads from PARALLEL_MIN items on; the
first failure in the items' order raised after the successes are kept."""
from __future__ import annotations

import threading

import pytest

from ptrace_lang.runtime import parallel


def _double(seen):
    def fn(x):
        seen.add(threading.get_ident())
        if x in (7, 12):
            raise ValueError(f"bad {x}")
        return 2 * x
    return fn


def test_many_items_all_done_in_order_of_items():
    seen: set = set()
    items = list(range(parallel.PARALLEL_MIN + 5))
    into: dict = {}
    parallel.each(lambda x: seen.add(threading.get_ident()) or x * 3, items, into, str)
    assert into == {str(x): x * 3 for x in items}
    assert list(into) == [str(x) for x in items]
    if (parallel.os.cpu_count() or 1) > 1:
        assert len(seen) == 2, seen           # the calling thread and the helper
    else:
        print("one CPU: done on the calling thread alone")


def test_many_items_first_failure_in_order_raised_after_keeping_the_rest():
    items = list(range(parallel.PARALLEL_MIN + 5))
    into: dict = {}
    with pytest.raises(ValueError, match="bad 7"):
        parallel.each(_double(set()), items, into, int)
    assert into == {x: 2 * x for x in items if x not in (7, 12)}


def test_few_items_one_by_one_stopping_at_the_first_failure():
    seen: set = set()
    into: dict = {}
    with pytest.raises(ValueError, match="bad 7"):
        parallel.each(_double(seen), list(range(10)), into, int)
    assert into == {x: 2 * x for x in range(7)}
    assert seen == {threading.get_ident()}
