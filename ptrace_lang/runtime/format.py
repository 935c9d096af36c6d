"""Text and JSON rendering of maps and values, byte for byte as bpftrace prints them.

Two flavours are kept, chosen by ``stats_style`` (the name is historical: it picks the
whole output flavour, not only the stats line):

``"new"`` (default) -- the newest bpftrace (0.26):
    ``@s: { .count = 3, .average = 2, .total = 6 }``; ``@h:`` / ``@h[key]:`` headers without a
    trailing space; hist labels with K/M/G/T/P/E; lhist labels with K/M only when the step is a
    multiple of 1024, ``[5]`` for one-value buckets (step 1), and the overflow row starting where
    the last full bucket ends; integer keys sorted as signed; an outer ``(...)`` around a
    key's text is dropped (that is how tuple keys lose their parentheses); avg/stats maps are
    not followed by an empty line; an empty map prints nothing.
``"old"`` -- bpftrace 0.17 (the version installed on this machine, used for the golden files):
    ``@s: count 2, average -1, total -3``; ``@h: `` (trailing space); keys sorted as unsigned;
    stack keys indented by 4; an empty line after every avg/stats map; an empty map prints
    ``"\\n"``; print()'s top/div ignored on stats maps.

Strings are Python ``str``. Bytes that are not valid UTF-8 are expected to be decoded with
``errors="surrogateescape"`` and the output written back with the same error handler, so any
byte the kernel produced reaches the terminal unchanged.

What happens around the maps at exit is the caller's business: bpftrace (both versions) prints
``EXIT_PREAMBLE`` ("\\n\\n") after the end probes and before the maps; ``format_maps`` gives the
maps themselves, sorted by name.
"""
from __future__ import annotations

import struct
from ptrace_lang.records import dataclass

TYPE_CHECKING = False      # (collections.abc costs start-up time)
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "STYLE_NEW", "STYLE_OLD", "EXIT_PREAMBLE", "MapData", "Stack", "Record",
    "hist_index", "hist_bucket_bounds", "hist_num_buckets", "hist_bucket_label",
    "lhist_index", "lhist_bucket_bounds", "lhist_num_buckets", "lhist_bucket_label",
    "stats_average", "format_map", "format_maps", "format_value", "value_text", "key_text",
    "format_map_json", "format_value_json", "json_value", "escape_buffer",
]

STYLE_NEW = "new"
STYLE_OLD = "old"
EXIT_PREAMBLE = "\n\n"

_U64 = (1 << 64) - 1
_S64 = 1 << 63
_K = 1024
_M = 1024 * 1024
_BAR_WIDTH = 52


# --------------------------------------------------------------------------- value types

@dataclass(frozen=True)
class Stack:
    """A resolved kstack/ustack: one string per frame (``func+off`` or ``0x...``).

    ``prefix`` (a class attribute) is what goes before each frame: None for the output's
    indentation (bpftrace mode), else fixed text (a tab in perf mode, nothing in raw mode)."""

    frames: tuple[str, ...]
    prefix = None

    def __init__(self, frames: Iterable[str]):
        object.__setattr__(self, "frames", tuple(frames))


@dataclass(frozen=True)
class Record:
    """A named-field value: a record ``(x = 1, y = 2)`` or a C struct. Fields keep their order."""

    fields: tuple[tuple[str, object], ...]

    def __init__(self, fields):
        if isinstance(fields, dict):
            fields = fields.items()
        object.__setattr__(self, "fields", tuple((str(k), v) for k, v in fields))


@dataclass
class MapData:
    """One map as read from the kernel, decoded.

    name:    with the ``@`` ("@" for the anonymous map).
    kind:    count | sum | min | max | avg | stats | hist | lhist | value.
    entries: ``[(key, value), ...]`` in the order the kernel returned them (ties in the sort keep
             that order, as bpftrace's do). Scalar maps have one entry whose key is None.
             value: int for count/sum/min/max; int (the average) or ``(count, total)`` for avg;
             ``(count, total)`` for stats; ``{bucket_index: count}`` (or a list indexed by bucket)
             for hist and lhist (see hist_index / lhist_index); anything printable for value
             maps: int, str, bool, tuple, Record, Stack, bytes (a buffer), list (an array).
    keyed:   False for a scalar map (``@x``), True for ``@x[...]``.
    hist_k:  the k of ``hist(n, k)``.
    lhist:   ``(min, max, step)`` of ``lhist(n, min, max, step)``.
    tseries: ``(interval_ns, num_intervals, aggregator)`` of ``tseries()``; its values are
             ``[(interval start in wall-clock ns, value), ...]``, oldest first, only the
             intervals holding data (the text fills the gaps).
    """

    name: str
    kind: str
    entries: list
    keyed: bool
    hist_k: int = 0
    lhist: tuple[int, int, int] | None = None
    tseries: tuple | None = None


# --------------------------------------------------------------------------- tseries

TSERIES_WIDTH = 50


def tseries_merge(how: str, parts: list, signed: bool = True) -> int:
    """One interval's value from its per-CPU ``(a, b)`` parts (see ``spec.UserMapSpec``)."""
    if how == "sum":
        return sum(a for a, _ in parts)
    if how == "avg":
        cnt = sum(a for a, _ in parts)
        tot = sum(b for _, b in parts)
        if not cnt:
            return 0
        return int(tot / cnt) if signed else (tot & ((1 << 64) - 1)) // cnt
    if how == "min":
        return min(a for a, _ in parts)
    if how == "max":
        return max(a for a, _ in parts)
    return max(parts, key=lambda p: p[1])[0]      # the last value written, on any CPU


def _tseries_time(ns: int, interval: int) -> str:
    import time as _time

    secs, frac = divmod(ns, 1_000_000_000)
    text = _time.strftime("%H:%M:%S", _time.localtime(secs))
    if interval % 1_000_000_000 == 0:
        return text
    if interval % 1_000_000 == 0:
        return f"{text}.{frac // 1_000_000:03d}"
    return f"{text}.{frac // 1_000:06d}"


def _tseries_grid(md: MapData, points: list) -> list:
    """``[(start ns, value or None), ...]``: every interval of the window, gaps as None."""
    interval, num, _ = md.tseries
    if not points:
        return []
    last = points[-1][0]
    have = {t: v for t, v in points}
    return [(t, have.get(t)) for t in range(last - (num - 1) * interval, last + 1, interval)
            if t >= points[0][0]]


def _tseries_rows(md: MapData, points: list, div: int) -> str:
    interval = md.tseries[0]
    grid = [(t, None if v is None else _trunc_div(v, div)) for t, v in _tseries_grid(md, points)]
    values = [v for _, v in grid if v is not None]
    if not values:
        return ""
    lo, hi = min(min(values), 0), max(max(values), 0)
    times = [_tseries_time(t, interval) for t, _ in grid]
    tw = max(len(t) for t in times)
    texts = ["-" if v is None else str(v) for _, v in grid]
    vw = max(8, max(len(x) for x in texts))
    lo_s, hi_s = str(lo), str(hi)
    pad = " " * (tw + 1 + vw + 1)
    gap = max(1, TSERIES_WIDTH + 2 - len(lo_s) - len(hi_s))
    out = [f"{pad}{lo_s}{' ' * gap}{hi_s}\n",
           f"{'hh:mm:ss' + times[0][8:].translate(_FRAC_LABEL):<{tw}} {'value':>{vw}} "
           f"|{'_' * TSERIES_WIDTH}|\n"]
    span = hi - lo
    for time_s, text, (_, v) in zip(times, texts, grid):
        bar = [" "] * TSERIES_WIDTH
        if v is not None:
            pos = 0 if span == 0 else round((v - lo) * (TSERIES_WIDTH - 1) / span)
            bar[pos] = "*"
        out.append(f"{time_s:<{tw}} {text:>{vw}} |{''.join(bar)}|\n")
    return "".join(out)


_FRAC_LABEL = str.maketrans("0123456789", "ffffffffff")


def _tseries_json(md: MapData, points: list, div: int) -> str:
    interval = md.tseries[0]
    rows = []
    for t, v in _tseries_grid(md, points):
        val = "null" if v is None else str(_trunc_div(v, div))
        rows.append(f'{{"interval_start": {_json_str(_tseries_time(t, interval))}, "value": {val}}}')
    return "[" + ",".join(rows) + "]"


# --------------------------------------------------------------------------- hist buckets

def hist_index(v: int, k: int = 0) -> int:
    """Bucket of value ``v`` in ``hist(v, k)``; ``v`` is a signed 64-bit integer.

    With N = 2**k:
      * v < 0          -> 0
      * 0 <= v < N     -> v + 1                      (one value per bucket)
      * v >= N         -> (s << k) + (v >> s) + 1    where p = floor(log2(v)), s = p - k
                          (each power of two [2**p, 2**(p+1)) is cut into N buckets of 2**s values;
                          v >> s is in [N, 2N), so the same thing is ((s+1) << k) + ((v >> s) & (N-1)) + 1)

    For k = 0 this is bpftrace's classic numbering: 0 negatives, 1 zero, 2 + floor(log2(v)) for
    v >= 1 ([1] -> 2, [2, 4) -> 3, [4, 8) -> 4, ...). The largest index for a signed 64-bit value
    is (64 - k) << k, so an array of hist_num_buckets(k) = ((64 - k) << k) + 1 slots holds them all.
    This is the numbering of the newest bpftrace, whose labels we print.
    """
    if v < 0:
        return 0
    n = 1 << k
    if v < n:
        return v + 1
    s = v.bit_length() - 1 - k
    return (s << k) + (v >> s) + 1


def hist_num_buckets(k: int = 0) -> int:
    """Number of bucket slots needed for every signed 64-bit value (indices 0 .. (64-k) << k)."""
    return ((64 - k) << k) + 1


def _hist_boundary(j: int, k: int) -> int:
    """Value where bucket j ends (exclusive) and bucket j+1 starts."""
    n = 1 << k
    if j < n:
        return j
    return (1 << ((j >> k) - 1)) * (n + (j & (n - 1)))


def hist_bucket_bounds(index: int, k: int = 0) -> tuple[int | None, int]:
    """``(lo, hi)`` of bucket ``index``: it holds lo <= v < hi; lo is None for bucket 0 (v < 0).

    hi is b(index) and lo is b(index - 1), with b(j) = j for j < 2**k and
    b(j) = 2**((j >> k) - 1) * (2**k + (j & (2**k - 1))) otherwise.
    """
    if index == 0:
        return None, 0
    return _hist_boundary(index - 1, k), _hist_boundary(index, k)


def _hist_boundary_text(j: int, k: int) -> str:
    n = 1 << k
    if j <= 2 * n:
        return str(j)
    power = (j >> k) - 1
    decade = power // 10
    text = str((1 << (power - 10 * decade)) * (n + (j & (n - 1))))
    return text + "\0KMGTPE"[decade] if decade else text


def _old_power_text(power: int) -> str:
    # bpftrace 0.17: suffixes stop at T, so 2**50 prints as 1024T.
    for threshold, suffix in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if power >= threshold:
            return f"{1 << (power - threshold)}{suffix}"
    return str(1 << power)


def hist_bucket_label(index: int, k: int = 0, stats_style: str = STYLE_NEW) -> str:
    """Row label of a hist bucket: ``(..., 0)``, ``[0]``, ``[1]``, ``[2, 4)``, ``[1K, 2K)``...

    With k > 0 the first 2**(k+1) buckets hold one value each (``[5]``); after that a label is
    ``[lo, hi)`` with each bound printed as m * 2**(10*d) -> ``m`` + " KMGTPE"[d], where the
    bound is 2**p * (2**k + i) and d = p // 10 (so with k = 3: ``[1152, 1280)``, ``[9K, 10K)``).
    """
    if index == 0:
        return "(..., 0)"
    if stats_style == STYLE_OLD and k == 0:
        if index <= 2:
            return f"[{index - 1}]"
        return f"[{_old_power_text(index - 2)}, {_old_power_text(index - 1)})"
    if index <= 2 << k:
        return f"[{index - 1}]"
    return f"[{_hist_boundary_text(index - 1, k)}, {_hist_boundary_text(index, k)})"


# --------------------------------------------------------------------------- lhist buckets

def lhist_num_buckets(lo: int, hi: int, step: int) -> int:
    """Slots of ``lhist(v, lo, hi, step)``: below, n = (hi - lo) // step buckets, overflow."""
    return (hi - lo) // step + 2


def lhist_index(v: int, lo: int, hi: int, step: int) -> int:
    """Bucket of ``v`` in ``lhist(v, lo, hi, step)``, as bpftrace's kernel code computes it.

    * v < lo   -> 0
    * v > hi   -> n + 1              with n = (hi - lo) // step
    * else     -> (v - lo) // step + 1   (v == hi, or any v >= lo + n*step, lands in n + 1)
    """
    if v < lo:
        return 0
    if v > hi:
        return (hi - lo) // step + 1
    return (v - lo) // step + 1


def lhist_bucket_bounds(index: int, lo: int, hi: int, step: int) -> tuple[int | None, int | None]:
    """``(low, high)`` of an lhist bucket (high exclusive); None for an open end."""
    n = (hi - lo) // step
    if index == 0:
        return None, lo
    if index > n:
        return lo + n * step, None
    return lo + (index - 1) * step, lo + index * step


def _lhist_number_new(number: int, step: int) -> str:
    if step % _K != 0 or number == 0:
        return str(number)
    if number % _M == 0:
        return f"{number // _M}M"
    if number % _K == 0:
        return f"{number // _K}K"
    return str(number)


def _lhist_number_old(number: int) -> str:
    if number == 0:
        return "0"
    if number % _M == 0:
        return f"{number // _M}M"
    if number % _K == 0:
        return f"{number // _K}K"
    return str(number)


def lhist_bucket_label(index: int, lo: int, hi: int, step: int, stats_style: str = STYLE_NEW) -> str:
    """Row label of an lhist bucket: ``(..., 0)``, ``[0, 2)``, ..., ``[10, ...)``."""
    n = (hi - lo) // step
    if stats_style == STYLE_OLD:
        num = _lhist_number_old
        if index == 0:
            return f"(..., {num(lo)})"
        if index > n:
            return f"[{num(hi)}, ...)"
        return f"[{num(lo + (index - 1) * step)}, {num(lo + index * step)})"
    if index == 0:
        return f"(..., {_lhist_number_new(lo, step)})"
    low = lo + (index - 1) * step
    if index > n:
        return f"[{_lhist_number_new(low, step)}, ...)"
    if step == 1:
        return f"[{low}]"
    return f"[{_lhist_number_new(low, step)}, {_lhist_number_new(low + step, step)})"


# --------------------------------------------------------------------------- values as text

def escape_buffer(data: bytes) -> str:
    """Buffer as bpftrace prints it (``%r``, ``print(buf)``): printable ASCII kept, others ``\\xNN``."""
    return data.decode("latin-1").translate(_BUF_TABLE)


_BUF_TABLE = {b: (chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02x}") for b in range(256)}


def _trunc_div(a: int, b: int) -> int:
    """C integer division (rounds toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def stats_average(count: int, total: int) -> int:
    """bpftrace's average: total / count in C (toward zero), 0 for an empty aggregation."""
    return _trunc_div(total, count) if count else 0


def value_text(v: object, stack_indent: int = 8) -> str:
    """A value as text (no trailing newline): ``5``, ``abc``, ``(1, abc)``, ``{ .x = 1 }``, ``true``."""
    cls = v.__class__
    if cls is str:
        return v  # type: ignore[return-value]
    if cls is int:
        return str(v)
    if cls is bool:
        return "true" if v else "false"
    if cls is tuple:
        return "(" + ", ".join(value_text(e, stack_indent) for e in v) + ")"  # type: ignore[union-attr]
    if isinstance(v, Stack):
        if not v.frames:
            return ""
        pad = " " * stack_indent if v.prefix is None else v.prefix
        return "\n" + "".join(f"{pad}{frame}\n" for frame in v.frames)
    if isinstance(v, Record):
        if not v.fields:
            return "{}"
        return "{ " + ", ".join(f".{name} = {value_text(val, stack_indent)}" for name, val in v.fields) + " }"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return escape_buffer(bytes(v))
    if isinstance(v, list):
        return "[" + ",".join(value_text(e, stack_indent) for e in v) + "]"
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, int):  # int subclasses (IntEnum...; pointers and enums have text())
        text = getattr(v, "text", None)
        return text() if text is not None else str(int(v))
    if isinstance(v, tuple):  # namedtuple
        return "(" + ", ".join(value_text(e, stack_indent) for e in v) + ")"
    return str(v)


def key_text(key: object, stats_style: str = STYLE_NEW) -> str:
    """What goes between ``@m[`` and ``]``: tuples without their parentheses."""
    if stats_style == STYLE_OLD:
        if isinstance(key, tuple) and not isinstance(key, Stack):
            return ", ".join(value_text(e, 4) for e in key)
        return value_text(key, 4)
    s = value_text(key)
    # bpftrace 0.26 drops an outer "(...)" from the key's text, whatever the key's type.
    if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
        s = s[1:-1]
    return s


def format_value(v: object) -> str:
    """Everything ``print(value)`` writes for a non-map value, newline included."""
    return value_text(v) + "\n"


# --------------------------------------------------------------------------- sorting

def _sort_field(v: object, unsigned: bool):
    cls = v.__class__
    if cls is int or cls is bool or isinstance(v, int):
        v = int(v)  # type: ignore[call-overload]
        if unsigned:
            return v & _U64
        return ((v & _U64) ^ _S64) - _S64
    if cls is str:
        return v.encode("utf-8", "surrogateescape")  # type: ignore[union-attr]
    return 0  # stacks, buffers, records: bpftrace leaves them in the kernel's order


def _key_order(unsigned: bool):
    def order(entry):
        key = entry[0]
        if isinstance(key, tuple) and not isinstance(key, Stack):
            return tuple(_sort_field(f, unsigned) for f in key)
        return _sort_field(key, unsigned)
    return order


def _avg_of(v) -> int:
    if isinstance(v, tuple):
        return stats_average(v[0], v[1])
    return v


def _sorted_entries(md: MapData, stats_style: str) -> list:
    entries = list(md.entries)
    kind = md.kind
    if not md.keyed:
        return entries[:1]
    if kind != "value" or (entries and all(e[1].__class__ is int for e in entries)):
        # sorted by value below: ties in key order, not in the order of the kernel's hash
        try:
            entries.sort(key=_key_order(stats_style == STYLE_OLD))
        except TypeError:       # keys of different shapes (a Python API caller's): as they came
            pass
    if kind in ("count", "sum", "min", "max"):
        entries.sort(key=lambda e: e[1])
    elif kind == "avg":
        entries.sort(key=lambda e: _avg_of(e[1]))
    elif kind == "stats":
        entries.sort(key=lambda e: stats_average(e[1][0], e[1][1]))
    elif kind in ("hist", "lhist"):
        entries.sort(key=lambda e: sum(e[1].values() if isinstance(e[1], dict) else e[1]))
    elif kind == "tseries":
        entries.sort(key=_key_order(False))
    elif entries and all(e[1].__class__ is int for e in entries):
        entries.sort(key=lambda e: e[1])
    else:
        entries.sort(key=_key_order(stats_style == STYLE_OLD))
    return entries


def _select(md: MapData, top: int, stats_style: str) -> list:
    entries = _sorted_entries(md, stats_style)
    if md.kind in ("hist", "lhist"):
        # Buckets may come as {index: count} or as a list indexed by bucket (an array map's read).
        entries = [(k, v if isinstance(v, dict) else dict(enumerate(v))) for k, v in entries]
    if md.kind == "stats" and stats_style == STYLE_OLD:
        top = 0  # 0.17 warns that print()'s top and div are ignored on stats maps
    if top and len(entries) > top:
        entries = entries[len(entries) - top:]
    return entries


def _scaled(kind: str, value, div: int, stats_style: str):
    """The value as printed: divided by print()'s div where bpftrace divides."""
    if kind == "avg":
        value = _avg_of(value)
    if div == 1:
        return value
    if kind in ("count", "sum", "min", "max", "avg") or (kind == "value" and value.__class__ is int):
        return _trunc_div(value, div)
    return value


# --------------------------------------------------------------------------- hist rows

def _f32(x: float) -> float:
    return struct.unpack("f", struct.pack("f", x))[0]


def _bar_width(count: int, max_count: int) -> int:
    # bpftrace computes count / (float)max * 52 in single precision and truncates.
    if max_count <= 0:
        return 0
    return int(_f32(_f32(_f32(float(count)) / _f32(float(max_count))) * 52.0))


def _hist_rows(buckets: dict, label, div: int, stats_style: str) -> str:
    nonzero = [i for i, c in buckets.items() if c > 0]
    if not nonzero:
        return ""
    first, last = min(nonzero), max(nonzero)
    raw = [buckets.get(i, 0) for i in range(first, last + 1)]
    shown = [c // div for c in raw] if div != 1 else raw
    # 0.17 scaled the bars by the undivided counts; the newest bpftrace by the printed ones.
    bars = raw if stats_style == STYLE_OLD else shown
    top = max(bars)
    out = []
    for offset, (count, bar_count) in enumerate(zip(shown, bars)):
        bar = "@" * _bar_width(bar_count, top)
        out.append(f"{label(first + offset):<16}{count:>8} |{bar:<52}|\n")
    return "".join(out)


def _rows_for(md: MapData, buckets: dict, div: int, stats_style: str) -> str:
    if md.kind == "hist":
        k = md.hist_k
        return _hist_rows(buckets, lambda i: hist_bucket_label(i, k, stats_style), div, stats_style)
    lo, hi, step = _lhist_args(md)
    # div has no effect on linear histograms (in both versions).
    return _hist_rows(buckets, lambda i: lhist_bucket_label(i, lo, hi, step, stats_style), 1, stats_style)


def _lhist_args(md: MapData) -> tuple[int, int, int]:
    if md.lhist is None:
        raise ValueError(f"{md.name}: lhist map without (min, max, step)")
    return md.lhist


# --------------------------------------------------------------------------- maps as text

def _stats_text(value, div: int, stats_style: str) -> str:
    count, total = value
    average = stats_average(count, total)
    if stats_style == STYLE_OLD:
        return f"count {count}, average {average}, total {total}"
    if div != 1:
        average = _trunc_div(average, div)
    return f"{{ .count = {count}, .average = {average}, .total = {total} }}"


def format_map(md: MapData, top: int = 0, div: int = 1, stats_style: str = STYLE_NEW,
               printed: bool = False) -> str:
    """Everything bpftrace prints for one map, at exit or for ``print(@m, top, div)``
    (``printed``: the newest bpftrace ends what print() writes of a keyed map with an empty
    line, as it already does after each histogram; 0.17 does not; maps at exit unchanged).

    Order: count/sum/min/max/avg (and value maps holding integers) ascending by value;
    stats by average; hist/lhist keys by the total of their buckets; other value maps by key.
    ``top`` keeps the last ``top`` entries of that order; ``div`` divides the printed values
    (hist counts, the average of stats; not lhist, not strings).
    """
    if div == 0:
        div = 1
    old = stats_style == STYLE_OLD
    kind = md.kind
    entries = _select(md, top, stats_style)
    if old and kind == "stats":
        div = 1
    name = md.name
    trailer = "\n" if old and kind in ("avg", "stats") else ""
    if not entries:
        return "\n" + trailer if old else ""
    out = []
    if kind == "tseries":
        for key, points in entries:
            head = f"{name}[{key_text(key, stats_style)}]" if md.keyed else name
            out.append(head + ":\n" + _tseries_rows(md, points, div) + "\n")
        return "".join(out)
    if kind in ("hist", "lhist"):
        colon = ": \n" if old else ":\n"
        for key, buckets in entries:
            head = f"{name}[{key_text(key, stats_style)}]" if md.keyed else name
            out.append(head + colon + _rows_for(md, buckets, div, stats_style) + "\n")
        return "".join(out)
    for key, value in entries:
        if kind == "stats":
            text = _stats_text(value, div, stats_style)
        else:
            text = value_text(_scaled(kind, value, div, stats_style))
        if md.keyed:
            out.append(f"{name}[{key_text(key, stats_style)}]: {text}\n")
        else:
            out.append(f"{name}: {text}\n")
    if printed and md.keyed and not old:
        trailer = "\n"
    out.append(trailer)
    return "".join(out)


def format_maps(maps: Iterable[MapData], stats_style: str = STYLE_NEW) -> str:
    """All maps as printed at exit (after EXIT_PREAMBLE): ordered by name, byte order."""
    ordered = sorted(maps, key=lambda m: m.name.encode("utf-8", "surrogateescape"))
    return "".join(format_map(m, stats_style=stats_style) for m in ordered)


# --------------------------------------------------------------------------- JSON

def _json_str(s: str) -> str:
    return '"' + s.translate(_JSON_TABLE) + '"'


_JSON_TABLE = {c: f"\\u{c:04x}" for c in range(0x20)}
_JSON_TABLE.update({ord('"'): '\\"', ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})


def _json_int(v: int, stats_style: str) -> str:
    # The newest bpftrace quotes integers a double cannot hold exactly.
    if stats_style != STYLE_OLD and int(float(v)) != v:
        return f'"{v}"'
    return str(v)


def json_value(v: object, stats_style: str = STYLE_NEW) -> str:
    """A value as JSON, spaced as bpftrace spaces it: arrays ``[1,"a"]``, objects ``{"a": 1}``."""
    cls = v.__class__
    if cls is bool:
        return "true" if v else "false"
    if cls is int or (isinstance(v, int) and not isinstance(v, bool)):
        return _json_int(int(v), stats_style)  # type: ignore[call-overload]
    if cls is str:
        return _json_str(v)  # type: ignore[arg-type]
    if isinstance(v, Stack):
        return _json_str(value_text(v))
    if isinstance(v, Record):
        return "{" + ", ".join(f"{_json_str(k)}: {json_value(e, stats_style)}" for k, e in v.fields) + "}"
    if isinstance(v, (tuple, list)):
        return "[" + ",".join(json_value(e, stats_style) for e in v) + "]"
    if isinstance(v, (bytes, bytearray, memoryview)):
        if stats_style == STYLE_OLD:
            return _json_str(escape_buffer(bytes(v)))
        return "[" + ",".join(str(b - 256 if b > 127 else b) for b in bytes(v)) + "]"
    if v is None:
        return "null"
    if isinstance(v, float):
        return repr(v)
    return _json_str(str(v))


def _json_key(key: object, stats_style: str) -> str:
    if stats_style == STYLE_OLD:
        if isinstance(key, tuple) and not isinstance(key, Stack):
            s = ",".join(value_text(e) for e in key)
        else:
            s = value_text(key)
    else:
        # The newest bpftrace drops an outer "(...)" and then every space.
        s = value_text(key)
        if len(s) >= 2 and s[0] == "(" and s[-1] == ")":
            s = s[1:-1]
        if not (isinstance(key, Stack) and key.prefix is not None):   # (perf-mode frames)
            s = s.replace(" ", "")
    return _json_str(s)


def _json_hist(md: MapData, buckets: dict, div: int, stats_style: str) -> str:
    nonzero = [i for i, c in buckets.items() if c > 0]
    if not nonzero:
        return "[]"
    first, last = min(nonzero), max(nonzero)
    rows = []
    for i in range(first, last + 1):
        count = buckets.get(i, 0)
        if md.kind == "hist":
            count //= div
            low, high = hist_bucket_bounds(i, md.hist_k)
        else:
            lo, hi, step = _lhist_args(md)
            low, high = lhist_bucket_bounds(i, lo, hi, step)
            if high is None and stats_style == STYLE_OLD:
                low = hi
        parts = []
        if low is not None:
            parts.append(f'"min": {low}')
        if high is not None:
            parts.append(f'"max": {high - 1}')
        parts.append(f'"count": {count}')
        rows.append("{" + ", ".join(parts) + "}")
    return "[" + ("," if stats_style != STYLE_OLD else ", ").join(rows) + "]"


def format_map_json(md: MapData, top: int = 0, div: int = 1, stats_style: str = STYLE_NEW) -> str:
    """The NDJSON line (newline included) for a map; "" for an empty map (bpftrace skips it)."""
    if div == 0:
        div = 1
    kind = md.kind
    entries = _select(md, top, stats_style)
    if not entries:
        return ""
    if kind in ("avg", "stats"):
        msg_type = "stats"
    elif kind in ("hist", "lhist"):
        msg_type = "hist"
    elif kind == "tseries":
        msg_type = "tseries"
    else:
        msg_type = "map"

    def one(value) -> str:
        if kind == "tseries":
            return _tseries_json(md, value, div)
        if kind in ("hist", "lhist"):
            return _json_hist(md, value, div, stats_style)
        if kind == "stats":
            count, total = value
            average = stats_average(count, total)
            if stats_style != STYLE_OLD and div != 1:
                average = _trunc_div(average, div)
            return (f'{{"count": {_json_int(count, stats_style)}, "average": {_json_int(average, stats_style)}, '
                    f'"total": {_json_int(total, stats_style)}}}')
        return json_value(_scaled(kind, value, div, stats_style), stats_style)

    if md.keyed:
        data = "{" + ", ".join(f"{_json_key(k, stats_style)}: {one(v)}" for k, v in entries) + "}"
    else:
        data = one(entries[0][1])
    return f'{{"type": "{msg_type}", "data": {{{_json_str(md.name)}: {data}}}}}\n'


def json_message(msg_type: str, text: str) -> str:
    """An NDJSON line carrying text: ``{"type": "printf", "data": "hi\\n"}`` (printf, time, ...)."""
    return f'{{"type": "{msg_type}", "data": {_json_str(text)}}}\n'


def json_object(msg_type: str, fields: dict) -> str:
    """An NDJSON line carrying an object of plain values: ``{"type": "lost_events", "data": {"events": 3}}``."""
    body = ", ".join(f"{_json_str(k)}: {json_value(v)}" for k, v in fields.items())
    return f'{{"type": "{msg_type}", "data": {{{body}}}}}\n'


def format_value_json(v: object, stats_style: str = STYLE_NEW) -> str:
    """The NDJSON line for ``print(value)``: ``{"type": "value", "data": 5}``."""
    return f'{{"type": "value", "data": {json_value(v, stats_style)}}}\n'
