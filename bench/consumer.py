#!/usr/bin/env python3
"""The consumer path of ptrace without a kernel: a ring buffer of N printf records (laid out
as the kernel lays them out) in anonymous memory, drained by a real Session into a file.
Reports the CPU time per record of each phase: taking the records out of the ring (the walk
over their headers and the copy), decoding and formatting them, writing the text.

    python3 bench/consumer.py                       # the stream row's printf, 500,000 records
    python3 bench/consumer.py -n 200000 --profile   # and a cProfile of the drain

No root needed. The program is compiled for the running machine (tracefs is read to expand
the tracepoint: run as root, or pass a program without tracepoints with -e).
"""
from __future__ import annotations

import argparse
import mmap
import os
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PROGRAM = 'tracepoint:syscalls:sys_enter_getppid /pid == $1/ { printf("%d %s\\n", tid, comm); }'


def fake_ring(size: int):
    """A RingBuffer over anonymous memory (the producer side written by ``fill``)."""
    from ptrace_lang.kernel.ringbuf import RingBuffer

    page = mmap.PAGESIZE
    cons = mmap.mmap(-1, page)
    prod = mmap.mmap(-1, page + size)
    fd = os.eventfd(0)
    rb = RingBuffer(fd, size, (cons, prod))
    return rb, prod


def fill(rb, prod, records: list[bytes]) -> int:
    """Append committed records at the producer position (wrapping); return the bytes added."""
    page = mmap.PAGESIZE
    pos = rb._prod_q[0]
    data = memoryview(prod)[page:]
    size = rb.size
    for body in records:
        n = len(body)
        off = pos & (size - 1)
        hdr = struct.pack("<II", n, 0)
        rec = hdr + body + bytes(-(8 + n) % 8)
        first = min(len(rec), size - off)
        data[off:off + first] = rec[:first]
        if first < len(rec):
            data[:len(rec) - first] = rec[first:]
        pos += len(rec)
    added = pos - rb._prod_q[0]
    rb._prod_q[0] = pos
    return added


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=500_000, help="records (default 500000)")
    ap.add_argument("-e", default=PROGRAM, help="the program (its first printf is used)")
    ap.add_argument("--ring", type=int, default=64 << 20, help="ring bytes (default 64 MiB)")
    ap.add_argument("--out", default="/dev/null", help="where the text goes (default /dev/null)")
    ap.add_argument("--profile", action="store_true", help="cProfile the drain")
    args = ap.parse_args(argv)

    from ptrace_lang import spec as S
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.runtime.session import RunOptions, Session

    spec = compile_script(args.e, "bench", Options(positional=["1234"])).spec
    ident = next(i for i, ev in enumerate(spec.events) if ev.kind == S.EV_PRINTF)
    ev = spec.events[ident]
    size = S.RECORD_HEADER + max((f.offset + f.size - S.RECORD_HEADER for f in ev.args), default=0)
    body = bytearray(size)
    struct.pack_into("<I", body, 0, S.EV_PRINTF | ident << 8)
    for f in ev.args:
        if f.kind == "int":
            struct.pack_into("<q", body, f.offset, 4321)
        elif f.kind == "str":
            body[f.offset:f.offset + 7] = b"python3"
    rec = bytes(body)
    per_fill = max(1, min(args.n, (args.ring // 2) // (len(rec) + 8)))

    out = open(args.out, "w")
    sess = Session(spec, RunOptions(out=out, err=sys.stderr))
    rb, prod = fake_ring(args.ring)
    sess.ringbuf = rb

    prof = None
    if args.profile:
        import cProfile

        prof = cProfile.Profile()
    cpu = wall = 0.0
    take_cpu = 0.0
    left = args.n
    while left:
        k = min(per_fill, left)
        fill(rb, prod, [rec] * k)
        left -= k
        # the take alone (the walk over the headers and the copy), then the rest of a drain
        c0 = time.process_time()
        chunk = rb.take()
        take_cpu += time.process_time() - c0
        rb._cons_q[0] -= len(chunk)          # (given back: the drain takes it again)
        c0, w0 = time.process_time(), time.perf_counter()
        if prof:
            prof.enable()
        sess.drain()
        if prof:
            prof.disable()
        cpu += time.process_time() - c0
        wall += time.perf_counter() - w0
    out.close()
    n = args.n
    print(f"{n} records of {len(rec) + 8} bytes ({ev.fmt!r}):")
    print(f"  take (walk + copy)      {take_cpu * 1e9 / n:8.1f} ns/record")
    print(f"  drain (all, into {args.out}) {cpu * 1e9 / n:8.1f} ns/record CPU, {wall * 1e9 / n:.1f} wall")
    if prof:
        import pstats

        pstats.Stats(prof).sort_stats("tottime").print_stats(12)
    return 0


if __name__ == "__main__":
    sys.exit(main())
