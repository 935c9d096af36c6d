"""Kernel work for many objects on two threads: bpf(2) through ctypes releases the GIL, so
while one thread waits for the kernel (the verifier checking a program, a map being
allocated) the other can run, on the other core (``Session.load``)."""
from __future__ import annotations

import os

PARALLEL_MIN = 16      # objects: fewer are done one by one on the calling thread


def each(fn, items: list, into: dict, key) -> None:
    """``into[key(item)] = fn(item)`` for every item, in order. From ``PARALLEL_MIN`` items on
    (with two CPUs), the odd-numbered ones on a second thread: every item is tried, what
    succeeded is put in ``into`` and then the first exception in the items' order raised.
    With fewer: one by one, stopping at the first exception."""
    if len(items) < PARALLEL_MIN or (os.cpu_count() or 1) < 2:
        for it in items:
            into[key(it)] = fn(it)
        return
    from threading import Thread

    out: list = [None] * len(items)

    def every_other(start: int) -> None:
        for i in range(start, len(items), 2):
            try:
                out[i] = (True, fn(items[i]))
            except Exception as e:       # (raised below, in the items' order)
                out[i] = (False, e)

    helper = Thread(target=every_other, args=(1,), daemon=True)
    helper.start()
    every_other(0)
    helper.join()
    into.update((key(it), r) for it, (ok, r) in zip(items, out) if ok)
    failure = next((r for ok, r in out if not ok), None)
    if failure is not None:
        raise failure
