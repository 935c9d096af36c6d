"""Maps as Prometheus metrics (``ptrace --serve``): the mapping from decoded maps to metric
families, and the ``Collector`` a scrape runs. See docs/exporter.md.

``map_families`` is pure (decoded ``MapData`` in, ``prometheus_client`` families out) so the
mapping is tested without a kernel; ``MapCollector`` reads a running ``Session``'s maps on the
scraping thread (map reads are bpf() syscalls, safe beside the event loop) and adds the
tracer's own health metrics. ``prometheus_client`` is imported only here, only in this mode.

  count() sum()            counter   ptrace_NAME_total
  avg() min() max() @x = v gauge     ptrace_NAME           (a string value: gauge 1, value="...")
  stats()                  summary   ptrace_NAME_count, ptrace_NAME_sum
  hist() lhist()           histogram ptrace_NAME_bucket{le=...} (cumulative, +Inf)
  tseries()                gauge     (the newest interval's value)
"""
from __future__ import annotations

import threading

from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, SummaryMetricFamily,
)

from ptrace_lang import spec as S

PREFIX = "ptrace"
MAX_SERIES = 10_000          # keys of one map exported per scrape; the rest are counted
_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def metric_name(map_name: str) -> str:
    """``@bytes`` -> ``ptrace_bytes``; ``@`` -> ``ptrace_map``; anything outside
    ``[A-Za-z0-9_]`` becomes ``_``."""
    base = map_name.lstrip("@") or "map"
    return PREFIX + "_" + "".join(c if c in _NAME_OK else "_" for c in base)


def parse_label_config(text: str) -> dict[str, list[str]]:
    """``config = { metric_labels = "@bytes:comm,pid; @lat:disk" }``: map name -> the label
    names of its key's elements, in order. Names are sanitised like metric names."""
    out: dict[str, list[str]] = {}
    for part in (text or "").replace("\n", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        name, colon, labels = part.partition(":")
        name = name.strip()
        if not colon or not name.startswith("@"):
            raise ValueError(f"metric_labels: '{part}' is not '@map:label,label,...'")
        names = [_label(l) for l in labels.split(",") if l.strip()]
        if not names:
            raise ValueError(f"metric_labels: '{part}' names no label")
        if len(set(names)) != len(names):
            raise ValueError(f"metric_labels: '{part}' repeats a label")
        out[name] = names
    return out


def _label(text: str) -> str:
    text = "".join(c if c in _NAME_OK else "_" for c in text.strip())
    if not text or text[0].isdigit():
        text = "_" + text
    if text.startswith("__") or text == "le" or text == "quantile":
        text = "key_" + text.lstrip("_")     # reserved by Prometheus
    return text


def label_names(md, configured: dict[str, list[str]]) -> list[str]:
    """The labels of a keyed map: the names the script gave, else ``key`` for a single key,
    ``key0, key1, ...`` for a tuple key (the first element of a tuple key decides)."""
    if not md.keyed:
        return []
    width = _key_width(md)
    given = configured.get(md.name) or []
    if width == 1:
        return given[:1] or ["key"]
    return [given[i] if i < len(given) else f"key{i}" for i in range(width)]


def _key_width(md) -> int:
    for key, _ in md.entries:
        return len(key) if isinstance(key, tuple) else 1
    return 1


def label_values(key, width: int) -> list[str]:
    from ptrace_lang.runtime.format import Stack, value_text

    parts = list(key) if width > 1 and isinstance(key, tuple) else [key]
    out = []
    for p in parts:
        if isinstance(p, Stack):
            out.append(";".join(reversed(p.frames)))     # root first, as folded stacks
        else:
            out.append(value_text(p))
    return (out + [""] * width)[:width]


def _total(kind: str, value) -> float:
    """How a key ranks when a map has more keys than are exported (the largest are kept)."""
    if kind in ("hist", "lhist"):
        return sum(value.values()) if isinstance(value, dict) else sum(value)
    if kind == "stats":
        return value[0]
    if isinstance(value, (int, float)):
        return abs(value)
    return 0


def map_families(md, helptext: str = "", configured: dict | None = None,
                 max_series: int = MAX_SERIES) -> tuple[list, int]:
    """The metric families of one decoded map (``runtime.format.MapData``) and how many of its
    keys were left out (over ``max_series``)."""
    configured = configured or {}
    name = metric_name(md.name)
    helptext = helptext or md.name
    labels = label_names(md, configured)
    width = len(labels)
    entries = md.entries
    dropped = 0
    if len(entries) > max_series:
        dropped = len(entries) - max_series
        entries = sorted(entries, key=lambda kv: _total(md.kind, kv[1]), reverse=True)[:max_series]
    build = _BUILDERS.get(md.kind, _gauge)
    fams = build(md, name, helptext, labels, [(label_values(k, width) if width else [], v)
                                              for k, v in entries])
    return [f for f in fams if f is not None], dropped


def _counter(md, name, helptext, labels, rows):
    fam = CounterMetricFamily(name, f"{helptext} ({md.kind}())", labels=labels)
    for lv, v in rows:
        fam.add_metric(lv, v)
    return [fam]


def _gauge(md, name, helptext, labels, rows):
    what = f"{md.kind}()" if md.kind != "value" else "value"
    fam = GaugeMetricFamily(name, f"{helptext} ({what})", labels=labels)
    texts = None
    for lv, v in rows:
        if isinstance(v, tuple) and md.kind == "avg":      # (count, total) as some readers keep it
            from ptrace_lang.runtime.format import stats_average

            v = stats_average(*v)
        if isinstance(v, bool) or isinstance(v, (int, float)):
            fam.add_metric(lv, float(v))
            continue
        # a string (or other non-number) value: an info-style gauge of 1 with the value as a label
        if texts is None:
            texts = GaugeMetricFamily(name + "_info", f"{helptext} (value as a label)",
                                      labels=labels + ["value"])
        from ptrace_lang.runtime.format import value_text

        texts.add_metric(lv + [value_text(v)], 1.0)
    return [fam if fam.samples or texts is None else None, texts]


def _summary(md, name, helptext, labels, rows):
    fam = SummaryMetricFamily(name, f"{helptext} (stats(): count and sum)", labels=labels)
    for lv, (count, total) in rows:
        fam.add_metric(lv, count_value=count, sum_value=total)
    return [fam]


def _histogram(md, name, helptext, labels, rows):
    fam = HistogramMetricFamily(name, f"{helptext} ({md.kind}(), integer buckets: le is "
                                      f"inclusive)", labels=labels)
    for lv, value in rows:
        fam.add_metric(lv, hist_buckets(md, value), None)
    return [fam]


def hist_buckets(md, value) -> list[tuple[str, float]]:
    """Cumulative ``(le, count)`` buckets of one hist/lhist value (``{index: count}``), ending
    with ``+Inf``. Values are integers, so a bucket [lo, hi) has ``le = hi - 1``. An lhist
    gives every bucket of its range; a hist its buckets from ``le="0"`` to the highest one
    used (and the negative bucket, ``le="-1"``, when used)."""
    from ptrace_lang.runtime.format import hist_bucket_bounds, lhist_bucket_bounds

    counts = value if isinstance(value, dict) else dict(enumerate(value))
    used = [i for i, c in counts.items() if c]
    if md.kind == "lhist":
        lo, hi, step = md.lhist
        last = (hi - lo) // step + 1          # the open bucket above the range
        indexes = range(0, last)
        bound = lambda i: lhist_bucket_bounds(i, lo, hi, step)[1]      # noqa: E731
    else:
        top = max(used) if used else 1
        indexes = range(0 if 0 in used else 1, top + 1)
        bound = lambda i: hist_bucket_bounds(i, md.hist_k)[1]          # noqa: E731
    out = []
    running = 0
    for i in indexes:
        running += counts.get(i, 0)
        out.append((str(bound(i) - 1), float(running)))
    total = sum(counts.values())
    out.append(("+Inf", float(total)))
    return out


def _tseries(md, name, helptext, labels, rows):
    """tseries(): the decoded value is ``[(interval start ns, value), ...]`` oldest first
    (``mapread._read_tseries``); each key's latest interval is a gauge."""
    fam = GaugeMetricFamily(name, f"{helptext} (tseries(): the latest interval)", labels=labels)
    for lv, points in rows:
        if points:
            fam.add_metric(lv, float(points[-1][1]))
    return [fam]


_BUILDERS = {"count": _counter, "sum": _counter, "avg": _gauge, "min": _gauge, "max": _gauge,
             "value": _gauge, "stats": _summary, "hist": _histogram, "lhist": _histogram,
             "tseries": _tseries}


def map_help(text: str, filename: str, map_name: str) -> str:
    """``@bytes at script.bt:3``: where the script first writes the map (the first
    ``@name`` not followed by more of a name), for a metric's # HELP."""
    if text:
        n = len(map_name)
        start = 0
        while True:
            at = text.find(map_name, start)
            if at < 0:
                break
            after = text[at + n: at + n + 1]
            if not (after and (after in _NAME_OK)):
                line = text.count("\n", 0, at) + 1
                return f"{map_name} at {filename}:{line}"
            start = at + 1
    return map_name


# ---------------------------------------------------------------------- the running tracer

def _stats_enabled() -> bool:
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled") as f:
            return f.read().strip() == "1"
    except OSError:
        return False


class MapCollector:
    """What a scrape returns: every user map, read now, and the tracer's health metrics.
    ``session`` is a loaded ``runtime.session.Session``; one scrape at a time reads it."""

    def __init__(self, session, text: str = "", filename: str = "stdin",
                 max_series: int = MAX_SERIES) -> None:
        self.session = session
        self.max_series = max_series
        self.attached = 0
        self.ready = False                   # set once the probes are attached
        self.dropped: dict[str, int] = {}    # map -> keys left out at the last scrape
        self.dropped_total = 0               # summed over every scrape (reported at exit)
        self.failed_reads = 0                # maps whose read raised
        self._lock = threading.Lock()
        spec = session.spec
        try:
            self.labels = parse_label_config(spec.config.get("metric_labels", ""))
        except ValueError:
            self.labels = {}               # (checked by serve before starting)
        self.helps = {um.name: map_help(text, filename, um.name) for um in spec.user_maps}

    def collect(self):
        with self._lock:
            return self._collect()

    def _collect(self) -> list:
        out: list = []
        s = self.session
        if self.ready and s.k.maps:
            for um in s.spec.user_maps:
                try:
                    md = s.read_user_map(um)
                except Exception:  # noqa: BLE001 - a map that cannot be read is counted, not fatal
                    self.failed_reads += 1
                    continue
                fams, dropped = map_families(md, self.helps.get(um.name, um.name), self.labels,
                                             self.max_series)
                out.extend(fams)
                self.dropped[um.name] = dropped
                self.dropped_total += dropped
        out.extend(self._health())
        return out

    def _health(self) -> list:
        s = self.session
        p = PREFIX + "_tracer_"
        fams = []
        counters = self._counters()
        for idx, name, doc in ((S.COUNTER_LOST_EVENTS, "lost_events", "events lost: the ring buffer was full"),
                               (S.COUNTER_MAP_FULL, "map_full", "map updates that failed: a map was full"),
                               (S.COUNTER_READ_FAILED, "read_failed", "memory reads that failed in a probe"),
                               (S.COUNTER_STACK_FAILED, "stack_failed", "stacks that could not be recorded")):
            fams.append(CounterMetricFamily(p + name, doc, value=counters[idx]))
        fams.append(GaugeMetricFamily(p + "attached_probes", "probes attached", value=self.attached))
        drop = GaugeMetricFamily(p + "series_dropped", f"keys of a map not exported at this "
                                 f"scrape (over {self.max_series} per map)", labels=["map"])
        for name, n in self.dropped.items():
            drop.add_metric([name], n)
        fams.append(drop)
        fams.append(CounterMetricFamily(p + "scrape_read_errors", "map reads that failed during "
                                        "a scrape", value=self.failed_reads))
        enabled = "1" if _stats_enabled() else "0"
        why = ("per program, counted while kernel.bpf_stats_enabled is 1 "
               "(sysctl -w kernel.bpf_stats_enabled=1); label stats_enabled says if it is now")
        run_time = CounterMetricFamily(p + "bpf_run_time_seconds", "BPF run time " + why,
                                       labels=["program", "stats_enabled"])
        run_cnt = CounterMetricFamily(p + "bpf_runs", "BPF program runs " + why,
                                      labels=["program", "stats_enabled"])
        if self.ready:
            from ptrace_lang.kernel.progs import prog_info

            for name, fd in list(s.k.progs.items()):
                try:
                    info = prog_info(fd)
                except OSError:
                    continue
                run_time.add_metric([name, enabled], info["run_time_ns"] / 1e9)
                run_cnt.add_metric([name, enabled], info["run_cnt"])
        fams.extend((run_time, run_cnt))
        return fams

    def _counters(self) -> list[int]:
        import struct

        s = self.session
        m = s.k.maps.get(s.spec.counters_map) if self.ready else None
        raw = None
        if m is not None:
            try:
                raw = m.lookup(struct.pack("<I", 0))
            except OSError:
                raw = None
        raw = raw or bytes(8 * S.NUM_COUNTERS)
        return list(struct.unpack_from(f"<{S.NUM_COUNTERS}Q", raw))
