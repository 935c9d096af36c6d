"""The possible CPUs of the running machine (what per-CPU values are sized by), read without
importing anything: the kernel layer asks while starting, the compiler's Target is built from it."""
from __future__ import annotations

_ids: list[tuple[int, ...]] = []


def parse_cpu_list(text: str) -> list[int]:
    """The CPU ids of a kernel CPU list ("0-3,5\\n" -> [0, 1, 2, 3, 5])."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def possible_cpus() -> tuple[int, ...]:
    """The possible CPUs' ids (/sys/devices/system/cpu/possible), read once."""
    if not _ids:
        import os

        try:      # (raw bytes: the text layer costs more than the read, on every start)
            fd = os.open("/sys/devices/system/cpu/possible", os.O_RDONLY)
            try:
                _ids.append(tuple(parse_cpu_list(os.read(fd, 4096).decode())))
            finally:
                os.close(fd)
        except (OSError, ValueError):
            _ids.append(tuple(range(os.cpu_count() or 1)))
    return _ids[0]
