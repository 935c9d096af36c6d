"""Runs of printf records rendered in one go (printf.compile_run, Session._records) and the
ring buffer's walk over runs of headers (ringbuf.run_length, RingBuffer.take): the text must
be what rendering the records one by one gives, byte for byte."""
from __future__ import annotations

import io
import mmap
import os
import random
import struct

import pytest

from ptrace_lang import spec as S
from ptrace_lang.kernel.ringbuf import RingBuffer, run_length
from ptrace_lang.runtime import decode
from ptrace_lang.runtime.printf import compile_format, compile_run

BUSY, DISCARD = 1 << 31, 1 << 30


def ring_record(body: bytes, flags: int = 0) -> bytes:
    """A record as the kernel lays it out in the ring: u32 length | flags, u32 page offset,
    the body, padded to 8 bytes."""
    return struct.pack("<II", len(body) | flags, 7) + body + bytes(-len(body) % 8)


def body_of(ident: int, fields: list, values: list, garbage: bytes = b"\xa5") -> bytes:
    size = S.RECORD_HEADER + max((f.offset + f.size - S.RECORD_HEADER for f in fields), default=0)
    body = bytearray(garbage * size)            # (the kernel does not zero what is not written)
    struct.pack_into("<I", body, 0, S.EV_PRINTF | ident << 8)
    for f, v in zip(fields, values):
        if f.kind != "str":
            struct.pack_into("<q" if v < 0 else "<Q", body, f.offset, v)
        else:
            body[f.offset:f.offset + f.size] = v.ljust(f.size, b"\0")[:f.size]
    return bytes(body)


def one_by_one(fmt: str, fields: list, bodies: list[bytes], style: str = "new") -> str:
    ev = S.EventSpec(S.EV_PRINTF, fmt, fields)
    dec = decode.record_decoder(ev, [])
    render = compile_format(fmt, style)
    return "".join(render(dec(b)) for b in bodies)


def ints(*signed):
    return [S.Field("int", 8 + 8 * i, 8, signed=s) for i, s in enumerate(signed)]


INT_VALUES = [0, 1, -1, 42, -42, 1 << 63, (1 << 64) - 1, -(1 << 63), 123456789012345, 255, 65536]
STRS = [b"python3", b"", b"a" * 16, b"x\0junk", b"sshd", b"caf\xc3\xa9", b"\xff\xfe"]


@pytest.mark.parametrize("fmt,fields", [
    ("%d %s\n", [S.Field("int", 8, 8, signed=True), S.Field("str", 16, 16)]),
    ("%d %s\n", [S.Field("int", 8, 8, signed=False), S.Field("str", 16, 16)]),
    ("%-6d %-16s|\n", [S.Field("int", 8, 8, signed=True), S.Field("str", 16, 16)]),
    ("%16s|%s\n", [S.Field("str", 8, 16), S.Field("str", 24, 16)]),
    ("%x %u %o %X %i\n", ints(True, True, False, False, True)),
    ("%+d % d %05d %-5u|\n", ints(True, False, True, False)),
    ("%s %s %%\n", ints(True, False)),
    ("%f %.2e\n", ints(True, False)),
    ("100%% %lu %lld %zd\n", ints(False, True, False)),
    ("no conversions\n", []),
])
@pytest.mark.parametrize("n", [1, 2, 3, 511, 512, 513, 1300, 5000])
@pytest.mark.parametrize("strings", ["random", "stretches"])
def test_a_run_renders_as_records_one_by_one(fmt, fields, n, strings):
    rnd = random.Random(f"{fmt}{n}")
    if strings == "random":
        def text(i):
            return rnd.choice(STRS)
    else:
        # the same string for stretches of records (written into the block's format), some
        # of them varied, some with a % or bytes that are not ASCII
        stretch = [rnd.choice(STRS + [b"50%", b"%s%d"]) for _ in range(n // 700 + 1)]

        def text(i):
            return rnd.choice(STRS) if i // 700 % 3 == 1 else stretch[i // 700]
    bodies = [body_of(3, fields, [rnd.choice(INT_VALUES) if f.kind == "int" else text(i)
                                  for f in fields]) for i in range(n)]
    chunk = b"".join(ring_record(b) for b in bodies)
    stride = len(chunk) // n
    render_run = compile_run(fmt, fields, stride)
    assert render_run is not None
    # from an offset, as in the middle of a chunk
    pad = ring_record(b"\0" * 24)
    assert render_run(pad + chunk, len(pad), n) == one_by_one(fmt, fields, bodies)


def test_a_run_of_32_bit_signed_arguments_reads_their_low_half_as_one_by_one_does():
    # (int32)-1 is sign-extended into its 8-byte field: %x/%u read 32 bits of it, as C's int
    fmt, fields = "%x %u %d %X %x\n", ints(True, True, True, True, False)
    bits = (32, 32, 32, 64, 64)
    rnd = random.Random(7)
    values = [-1, 0, 1, -42, (1 << 31) - 1, -(1 << 31), 255]
    bodies = [body_of(3, fields, [rnd.choice(values) for _ in fields]) for _ in range(600)]
    chunk = b"".join(ring_record(b) for b in bodies)
    render_run = compile_run(fmt, fields, len(chunk) // 600, arg_bits=bits)
    assert render_run is not None
    ev = S.EventSpec(S.EV_PRINTF, fmt, fields)
    dec, render = decode.record_decoder(ev, []), compile_format(fmt, arg_bits=bits)
    expected = "".join(render(dec(b)) for b in bodies)
    assert render_run(chunk, 0, 600) == expected
    assert render((-1, -1, -1, -1, (1 << 64) - 1)) == \
        "ffffffff 4294967295 -1 FFFFFFFFFFFFFFFF ffffffffffffffff\n"
    # bpftrace 0.17's style reads 32 bits without a length modifier, whatever the type
    fields2 = ints(True, False)
    bodies2 = [body_of(3, fields2, [rnd.choice(values), rnd.choice(values)]) for _ in range(600)]
    chunk2 = b"".join(ring_record(b) for b in bodies2)
    old = compile_run("%d %x\n", fields2, len(chunk2) // 600, "old")
    assert old(chunk2, 0, 600) == one_by_one("%d %x\n", fields2, bodies2, "old")


@pytest.mark.parametrize("fmt,fields,style", [
    ("%#x\n", ints(False), "new"),
    ("%.3d\n", ints(True), "new"),
    ("%hd\n", ints(True), "new"),
    ("%c\n", ints(True), "new"),
    ("%p\n", ints(False), "new"),
    ("%.3s\n", [S.Field("str", 8, 16)], "new"),
    ("%s\n", [S.Field("str", 8, 16, aux=(16, ".."))], "new"),     # read from memory: a trailer
    ("%s\n", [S.Field("probe", 8, 8)], "new"),
])
def test_what_percent_cannot_render_goes_one_by_one(fmt, fields, style):
    assert compile_run(fmt, fields, 32, style) is None


def test_run_length():
    words = memoryview(struct.pack("=12I", 5, 0, 5, 0, 5, 0, 6, 0, 5, 0, 5, 0))
    words = words.cast("B").cast("I")
    assert run_length(words, 0, 2, 6, 5) == 3
    assert run_length(words, 0, 2, 2, 5) == 2
    assert run_length(words, 0, 2, 1, 5) == 1
    assert run_length(words, 8, 2, 2, 5) == 2
    assert run_length(words, 4, 2, 2, 5) == 1
    many = struct.pack("=I", 9) * 1000 + struct.pack("=I", 8) + struct.pack("=I", 9) * 23
    w = memoryview(many).cast("I")
    for count in (1, 2, 999, 1000, 1001, 1024):
        assert run_length(w, 0, 1, count, 9) == min(count, 1000)


def fake_ring(size: int):
    page = mmap.PAGESIZE
    cons, prod = mmap.mmap(-1, page), mmap.mmap(-1, page + size)
    fd = os.eventfd(0)
    rb = RingBuffer(fd, size, (cons, prod))
    return rb, memoryview(prod)[page:], fd


def produce(rb, data, records: list[bytes]) -> None:
    pos = rb._prod_q[0]
    for rec in records:
        off = pos & (rb.size - 1)
        first = min(len(rec), rb.size - off)
        data[off:off + first] = rec[:first]
        data[:len(rec) - first] = rec[first:]
        pos += len(rec)
    rb._prod_q[0] = pos


def test_take_stops_at_a_busy_record_in_a_run_and_wraps():
    rb, data, fd = fake_ring(4096)
    try:
        recs = [ring_record(bytes([i]) * 32) for i in range(60)]
        recs[45] = ring_record(bytes([45]) * 32, BUSY)
        produce(rb, data, recs)
        got = rb.take()
        assert got == b"".join(recs[:45])
        data[45 * 40:45 * 40 + 4] = struct.pack("<I", 32)      # committed now
        recs[45] = ring_record(bytes([45]) * 32)
        assert rb.take() == b"".join(recs[45:60])
        # around the end of the data area (4096 is not a multiple of 40): a record wraps
        more = [ring_record(bytes([i]) * 32) for i in range(100, 160)]
        produce(rb, data, more)
        assert rb.take() == b"".join(more)
        assert rb.take() is None
        # mixed sizes, a discarded one: all taken, in order
        mixed = [ring_record(b"\1" * 32), ring_record(b"\2" * 8), ring_record(b"\3" * 32, DISCARD),
                 ring_record(b"\4" * 32), ring_record(b"\5" * 32), ring_record(b"\6" * 48)]
        produce(rb, data, mixed)
        assert rb.take() == b"".join(mixed)
        produce(rb, data, mixed)
        assert rb.take(1) == mixed[0]                 # (about max_bytes: whole records)
        assert rb.take(41) == b"".join(mixed[1:3])
        assert rb.take() == b"".join(mixed[3:])
    finally:
        rb.close()
        os.close(fd)


SCRIPT = ('BEGIN { printf("%d %s\\n", pid, comm); printf("%-5d|%x\\n", tid, 255); '
          'printf("%s!\\n", probe); print(7); }')


def _session(batch: bool):
    from recorded_machine import recorded_machine

    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.runtime.session import RunOptions, Session
    from ptrace_lang.runtime.sink import TextSink

    spec = compile_script(SCRIPT, "stdin", Options(), machine=recorded_machine()).spec
    out = io.StringIO()
    sink = TextSink(out, io.StringIO())
    sink.batch_text = batch
    return Session(spec, RunOptions(out=out, err=io.StringIO(), sink=sink)), out


def test_a_session_prints_runs_and_single_records_in_order():
    rnd = random.Random(5)
    sess, _ = _session(True)
    spec = sess.spec
    printfs = [i for i, ev in enumerate(spec.events) if ev.kind == S.EV_PRINTF]
    value = next(i for i, ev in enumerate(spec.events) if ev.kind == S.EV_PRINT_VALUE)
    recs = []
    for _ in range(3000):
        r = rnd.random()
        if r < 0.9:
            ident = printfs[0] if rnd.random() < 0.97 else printfs[1]
        elif r < 0.95:
            ident = printfs[2]
        else:
            ident = value
        ev = spec.events[ident]
        vals = [rnd.choice(INT_VALUES) if f.kind in ("int", "probe") else rnd.choice(STRS)
                for f in ev.args]
        if ev.kind != S.EV_PRINTF or any(f.kind == "probe" for f in ev.args):
            vals = [0 for _ in ev.args]
        body = bytearray(body_of(ident, ev.args, vals))
        struct.pack_into("<I", body, 0, ev.kind | ident << 8)
        recs.append(ring_record(bytes(body), DISCARD if rnd.random() < 0.01 else 0))
    outs = []
    for batch in (True, False):
        sess, out = _session(batch)
        rb, data, fd = fake_ring(1 << 20)
        sess.ringbuf = rb
        try:
            for i in range(0, len(recs), 700):
                produce(rb, data, recs[i:i + 700])
                sess.drain()
        finally:
            rb.close()
            os.close(fd)
        outs.append(out.getvalue())
        assert any(sess._runs.values()) == batch
    assert outs[0] == outs[1]
    assert outs[0].count("\n") > 2500
