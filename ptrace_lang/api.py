"""The Python API: compile and run ptrace programs from Python (notebooks, tests, services).

    import time
    from ptrace_lang import trace

    with trace('tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }') as t:
        time.sleep(1)
        counts = t.maps["@"]                    # {'cat': 3, ...}
        for event in t.events(timeout=0.5):     # printf / print / time records as they arrive
            print(event.kind, event.value)

Values are plain Python: integers, strings, bools, tuples (tuple keys and values), dicts (records,
stats ``{"count", "average", "total"}``), lists of buckets for hist/lhist
(``[{"min": 2, "max": 3, "count": 1}, ...]``, ``max`` inclusive as in the JSON output; the first
bucket of a hist has no ``min``, the last of an lhist no ``max``), and for a keyed hist a dict of
such lists; tseries values are lists of ``(interval start in wall-clock ns, value)``, oldest
first, the intervals holding data. A scalar map (``@x``) is its value; a keyed map a dict from key to value.

Errors are exceptions: ``ptrace_lang.errors.PtraceError`` (``CompileError`` for the program,
``RuntimeFailure`` for loading and attaching) carrying ``span`` (file, line, column) and
``render()`` giving bpftrace's located message. Nothing stays attached when the ``with`` block
ends, whichever way it ends.
"""
from __future__ import annotations

import select
import time
from collections import deque

from ptrace_lang.records import dataclass

from ptrace_lang.runtime.session import RunOptions, Session


@dataclass
class Event:
    """One record of the running program.

    ``kind``: "printf", "time", "cat", "join", "system", "value" (``print(expr)``) or "map"
    (``print(@m)``).
    ``value``: the plain value: the formatted text for printf and time (the file's text for cat), the value for print,
    ``{"@m": <map as in Trace.maps>}`` for a printed map.
    ``text``: what the ptrace command prints for it.
    """

    kind: str
    value: object
    text: str


def compile(script: str, *args: str, filename: str = "stdin"):  # noqa: A001 - the API's name
    """Compile ``script`` (positional parameters ``args``) into an ObjectSpec, touching no kernel."""
    from ptrace_lang.driver import Options, compile_script

    return compile_script(script, filename, Options(positional=[str(a) for a in args])).spec


def trace(script: str, *args: str, filename: str = "stdin") -> "Trace":
    """Compile, load and attach ``script``; use as a context manager (or call ``close()``)."""
    return Trace(script, *args, filename=filename)


class _EventSink:
    """The session's sink (runtime/sink.py) keeping records as ``Event`` objects in ``events``
    instead of writing text."""

    def __init__(self) -> None:
        self.events: deque = deque()

    def text_record(self, kind: str, text: str, end: str = ""):
        return Event(_EVENT_KINDS.get(kind, kind), text, text)

    def printf_output(self, render):
        return lambda args: self.text_record("printf", render(args))

    def value_output(self, value, stats_style: str):
        from ptrace_lang.runtime.format import format_value

        return Event("value", plain_value(value), format_value(value))

    def map_output(self, session, um, top: int, div: int):
        md = session.read_user_map(um)
        return Event("map", {um.name: plain_map(md, top, div)}, session.format_user_map(um, top, div))

    def flush(self, pending: list, stderr_lines: bool) -> None:
        self.events.extend(pending)
        pending.clear()


_EVENT_KINDS = {"syscall": "system"}    # the JSON name of system()'s record -> the Event's


class Trace:
    """A running program. ``maps`` reads the maps now; ``events()`` yields records as they
    arrive; ``close()`` (or leaving the ``with`` block) stops the probes, runs the end probes,
    keeps the final maps in ``maps`` and releases every kernel object."""

    def __init__(self, script: str, *args: str, filename: str = "stdin") -> None:
        self.spec = compile(script, *args, filename=filename)
        self.exit_code: int | None = None
        self._final: dict | None = None
        self._sink = _EventSink()
        self._session = Session(self.spec, RunOptions(quiet=True, sink=self._sink))
        try:
            self.probes = self._session.start()
            self._session._flush()
        except BaseException:
            self._session.close()
            raise

    # ------------------------------------------------------------------ context manager
    def __enter__(self) -> "Trace":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ reading
    @property
    def maps(self) -> dict:
        """Every map of the program by name (``"@"``, ``"@x"``), as plain values; after
        ``close()``, the maps as they were at the end."""
        if self._final is not None:
            return self._final
        return self._read_maps()

    def _read_maps(self) -> dict:
        s = self._session
        return {um.name: plain_map(s.read_user_map(um)) for um in s.spec.user_maps}

    @property
    def exited(self) -> bool:
        """True once the program called ``exit()``."""
        return self._session.stopping or self.exit_code is not None

    def events(self, timeout: float | None = 0.5):
        """Yield the program's records (``Event``) as they arrive; stop after ``timeout``
        seconds without one (0: only what is there now; None: until the program exits)."""
        s = self._session
        while True:
            events = self._sink.events
            if not events and s.ringbuf is not None and self._final is None:
                s.drain()
            while events:
                yield events.popleft()
            if self._final is not None or s.ringbuf is None or s.stopping:
                return
            wait = -1 if timeout is None else timeout
            if wait == 0:
                return
            if not self._wait(wait):
                return

    def _wait(self, timeout: float) -> bool:
        s = self._session
        ep = select.epoll()
        try:
            ep.register(s.ringbuf.map_fd, select.EPOLLIN)
            deadline = None if timeout < 0 else time.monotonic() + timeout
            while True:
                left = -1 if deadline is None else max(0.0, deadline - time.monotonic())
                if ep.poll(left) or s.ringbuf.available():
                    return True
                if deadline is not None and time.monotonic() >= deadline:
                    return False
        finally:
            ep.close()

    # ------------------------------------------------------------------ the end
    def close(self) -> None:
        if self._final is not None:
            return
        s = self._session
        try:
            s.finish()
            self._final = self._read_maps()
            self.exit_code = s.exit_code
            counters = s._read_counters()
            self.lost_events = counters[0] if counters else 0
        finally:
            s.close()
            if self._final is None:
                self._final = {}


# ---------------------------------------------------------------------- plain values

def plain_value(v: object) -> object:
    from ptrace_lang.runtime.format import Record, Stack

    if isinstance(v, Record):
        return {k: plain_value(e) for k, e in v.fields}
    if isinstance(v, Stack):
        return tuple(v.frames)      # (hashable: stacks are map keys)
    if isinstance(v, tuple):
        return tuple(plain_value(e) for e in v)
    if isinstance(v, list):
        return [plain_value(e) for e in v]
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    return v


def plain_map(md, top: int = 0, div: int = 1) -> object:
    """A map read from the kernel (``runtime.format.MapData``) as plain Python values."""
    from ptrace_lang.runtime.format import (
        hist_bucket_bounds, lhist_bucket_bounds, stats_average,
    )

    def one(value):
        if md.kind in ("hist", "lhist"):
            buckets = value if isinstance(value, dict) else dict(enumerate(value))
            nonzero = [i for i, c in buckets.items() if c]
            if not nonzero:
                return []
            rows = []
            for i in range(min(nonzero), max(nonzero) + 1):
                if md.kind == "hist":
                    lo, hi = hist_bucket_bounds(i, md.hist_k)
                else:
                    lo, hi = lhist_bucket_bounds(i, *md.lhist)
                row = {}
                if lo is not None:
                    row["min"] = lo
                if hi is not None:
                    row["max"] = hi - 1
                row["count"] = buckets.get(i, 0) // div
                rows.append(row)
            return rows
        if md.kind == "tseries":      # [(interval start, wall-clock ns; value), ...]
            return [(t, v // div if div > 1 else v) for t, v in value]
        if md.kind == "stats":
            count, total = value
            return {"count": count, "average": stats_average(count, total), "total": total}
        if md.kind == "avg" and isinstance(value, tuple):
            return stats_average(*value)
        if md.kind in ("count", "sum", "min", "max", "avg") and div > 1:
            return value // div
        return plain_value(value)

    entries = md.entries
    if top:
        entries = sorted(entries, key=lambda kv: _order(one(kv[1])))[-top:]
    if not md.keyed:
        return one(entries[0][1]) if entries else None
    return {plain_value(k): one(v) for k, v in entries}


def _order(v):
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, dict):
        return v.get("total", 0)
    if isinstance(v, list):
        return sum(r.get("count", 0) for r in v if isinstance(r, dict))
    return 0
