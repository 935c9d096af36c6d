"""``MapReading``, a mixin of ``runtime.session.Session``: the script's maps read from the
kernel (per-CPU values merged, hist buckets gathered, tseries intervals ordered), formatted as
print() and the end of a run write them, and zeroed."""
from __future__ import annotations

import struct
import time

from ptrace_lang import spec as S

_I64 = struct.Struct("<q")


class MapReading:
    """Needs ``self.k.maps`` (the kernel maps by name), ``self.spec``, ``self.opts`` and
    ``self.out``."""

    def read_user_map(self, um: S.UserMapSpec):
        from ptrace_lang.runtime import decode
        from ptrace_lang.runtime.format import MapData

        kmap = self.k.maps[um.kernel_map]
        items = kmap.items()
        names = self.spec.probe_names
        key_dec = decode.field_decoder(um.key, names) if um.key is not None else None
        entries: dict = {}
        if um.kind == "tseries":
            return _read_tseries(um, kmap, items, key_dec)
        for kb, vb in items:
            if um.kind in ("hist", "lhist"):
                klen = len(kb) - 8
                key = key_dec(kb) if key_dec else None
                bucket = struct.unpack_from("<Q", kb, klen)[0]
                total = sum(v for v in _percpu_u64(kmap, vb))
                entries.setdefault(key, {})
                entries[key][bucket] = entries[key].get(bucket, 0) + total
                continue
            key = key_dec(kb) if key_dec else None
            if um.kind == "value":
                entries[key] = decode.field_decoder(um.value, names)(vb)
            elif um.kind in ("count", "sum"):
                vals = _percpu_i64(kmap, vb, 0)
                entries[key] = sum(vals) if um.signed else sum(v & ((1 << 64) - 1) for v in vals)
            elif um.kind in ("avg", "stats"):
                cnt = sum(_percpu_i64(kmap, vb, 0))
                tot = sum(_percpu_i64(kmap, vb, 8))
                entries[key] = (cnt, tot) if um.kind == "stats" else (tot // cnt if cnt else 0)
                if um.kind == "avg" and cnt:
                    entries[key] = int(tot / cnt) if um.signed else tot // cnt
            elif um.kind in ("min", "max"):
                best = None
                for chunk in kmap.percpu_values(vb):
                    v, seen = struct.unpack_from("<qq", chunk, 0)
                    if not seen:
                        continue
                    if best is None or (v < best if um.kind == "min" else v > best):
                        best = v
                entries[key] = best if best is not None else 0
        return MapData(um.name, um.kind, list(entries.items()), um.key is not None,
                       hist_k=um.hist_k, lhist=um.lhist)

    def format_user_map(self, um: S.UserMapSpec, top: int = 0, div: int = 1,
                        printed: bool = False) -> str:
        """The map as text (``printed``: as print() writes it; else as at exit)."""
        from ptrace_lang.runtime.format import format_map

        return format_map(self.read_user_map(um), top=top, div=div,
                          stats_style=self.opts.stats_style, printed=printed)

    def zero_map(self, um: S.UserMapSpec) -> None:
        kmap = self.k.maps[um.kernel_map]
        for kb, vb in kmap.items():
            kmap.update(kb, bytes(len(vb)))

    def print_maps(self, preamble: bool = True) -> None:
        """Every map, as at exit (``preamble``: after bpftrace's two blank lines; SIGUSR1
        prints them without)."""
        from ptrace_lang.runtime.format import EXIT_PREAMBLE, format_maps

        data = [self.read_user_map(um) for um in self.spec.user_maps]
        if self.opts.output_format == "json":
            from ptrace_lang.runtime.format import format_map_json

            # nothing but NDJSON on stdout: no blank lines before the maps
            self.out.write("".join(format_map_json(md, stats_style=self.opts.stats_style) for md in data))
        else:
            self.out.write((EXIT_PREAMBLE if preamble else "")
                           + format_maps(data, stats_style=self.opts.stats_style))
        self.out.flush()


def _percpu_i64(kmap, raw: bytes, off: int) -> list[int]:
    return [_I64.unpack_from(c, off)[0] for c in kmap.percpu_values(raw)]


def _read_tseries(um: S.UserMapSpec, kmap, items, key_dec):
    """A tseries map as ``MapData`` entries ``(key, [(interval start, value), ...])``: the
    intervals of the last ``num_intervals`` (ending at the newest interval any key has) that
    hold data, oldest first, each start in wall-clock nanoseconds (CLOCK_REALTIME)."""
    from ptrace_lang.runtime.format import MapData, tseries_merge

    interval, num, how = um.tseries
    per_key: dict = {}
    for kb, vb in items:
        key = key_dec(kb[:len(kb) - 8]) if key_dec else None
        slots = per_key.setdefault(key, {})
        for chunk in kmap.percpu_values(vb):
            idx, a, b = struct.unpack_from("<Qqq", chunk, 0)
            if idx or a or b:
                slots.setdefault(idx, []).append((a, b))
    newest = max((i for slots in per_key.values() for i in slots), default=0)
    offset = time.time_ns() - time.monotonic_ns()
    entries = []
    for key, slots in per_key.items():
        points = [(i * interval + offset, tseries_merge(how, parts, um.signed))
                  for i, parts in sorted(slots.items()) if i > newest - num]
        if points:
            entries.append((key, points))
    return MapData(um.name, um.kind, entries, um.key is not None, tseries=um.tseries)


def _percpu_u64(kmap, raw: bytes) -> list[int]:
    return [struct.unpack_from("<Q", c, 0)[0] for c in kmap.percpu_values(raw)]
