"""Consumer side of a BPF_MAP_TYPE_RINGBUF map.

Memory layout:
  offset 0, one page, read/write:  consumer_pos (u64)
  offset page, read-only:          producer_pos (u64) page, then the data
                                   area. libbpf maps the data twice back to
                                   back so a wrapping record is contiguous;
                                   we map it once (half the resident memory)
                                   and join the two pieces when copying out.

``take()`` copies every committed record out in one or two memcpys and gives the
space back to the kernel at once: the producer never waits for the (slow, Python)
formatting of what was taken, which works on the copy.
Each record: u32 len (bit 31 busy, bit 30 discarded), u32 page offset,
then len bytes of data, the whole padded to 8 bytes.
"""

from __future__ import annotations

import mmap
import select
import struct

from .sys import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ

__all__ = ["RingBuffer", "map_areas", "run_length"]

_U32 = struct.Struct("=I")     # native, as memoryview.cast("I") reads it
_PAGE = mmap.PAGESIZE


def map_areas(map_fd: int, size: int) -> tuple:
    """The consumer page (read/write) and the producer page plus data (read-only)."""
    cons = mmap.mmap(map_fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
    try:
        prod = mmap.mmap(map_fd, _PAGE + size, mmap.MAP_SHARED, mmap.PROT_READ, offset=_PAGE)
    except BaseException:
        cons.close()
        raise
    return cons, prod


def run_length(words, i: int, step: int, count: int, value: int) -> int:
    """How many of the ``count`` words ``words[i]``, ``words[i + step]``, ... in a row, from
    the first, equal ``value`` (``words``: a memoryview of native u32; the first is assumed
    equal). A run of records of one size and kind is found in a few C-speed copies and
    comparisons rather than a Python step per record."""
    if count <= 1:
        return count
    if words[i + step] != value:
        return 1            # (records of several kinds interleaved: no run to look for)
    got = words[i:i + (count - 1) * step + 1:step].tobytes()
    want = _U32.pack(value) * count
    if got == want:
        return count
    # the first difference, by bisection on prefixes (two are known equal)
    lo, hi = 2, count       # words[:lo] equal, words[:hi] not
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if got[:mid * 4] == want[:mid * 4]:
            lo = mid
        else:
            hi = mid
    return lo


class RingBuffer:
    """mmap'ed ring buffer map.  drain() hands each committed record to a
    callback as a memoryview into the mapping: it is only valid during the
    callback (copy it with bytes(mv) to keep it)."""

    def __init__(self, map_fd: int, size: int, mappings: tuple | None = None):
        """``mappings``: the consumer and producer mappings, made already (``map_areas``)."""
        if size <= 0 or size & (size - 1) or size % _PAGE:
            raise ValueError(f"ring buffer size {size} is not a power-of-2 multiple of the page size")
        self.map_fd = map_fd
        self.size = size
        self._mask = size - 1
        self._cons_mm, self._prod_mm = mappings or map_areas(map_fd, size)
        self._cons = memoryview(self._cons_mm)
        self._prod = memoryview(self._prod_mm)
        self._data = self._prod[_PAGE:]
        self._words = self._data.cast("I")     # the data area as native u32 (record headers)
        # the positions are shared with the kernel: read and write them as single aligned 8-byte
        # accesses (native 'Q' items), never byte by byte as struct.pack_into/unpack_from do,
        # or the kernel can see a torn consumer position and refuse reservations
        self._cons_q = self._cons[:8].cast("Q")
        self._prod_q = self._prod[:8].cast("Q")
        self._ep = select.epoll()
        self._ep.register(map_fd, select.EPOLLIN)
        self.lost = 0  # not tracked by the kernel for ring buffers; kept for symmetry

    def fileno(self) -> int:
        """The epoll fd (readable when the ring buffer has data)."""
        return self._ep.fileno()

    def available(self) -> int:
        """Bytes between the consumer and producer positions."""
        return self._prod_q[0] - self._cons_q[0]

    def poll(self, timeout_ms: int = -1) -> bool:
        """Wait up to timeout_ms (-1: forever) for data; return whether any is ready."""
        if self.available():
            return True
        events = self._ep.poll(timeout_ms / 1000.0 if timeout_ms >= 0 else -1)
        return bool(events) or self.available() > 0

    def take(self, max_bytes: int = 1 << 62) -> bytes | None:
        """Copy out the committed records (headers included, in order; about ``max_bytes``
        of them at most, so a full buffer is handed over in pieces that can be formatted
        promptly), release their space to the producer, and return the copy; None when
        nothing is committed. Walk the copy with ``records()``."""
        return self._advance(max_bytes, copy=True)

    def skip(self) -> int:
        """Release every committed record unread; return the bytes released."""
        before = self._cons_q[0]
        self._advance(1 << 62, copy=False)
        return self._cons_q[0] - before

    def _advance(self, max_bytes: int, copy: bool) -> bytes | None:
        words = self._words
        mask = self._mask
        size = self.size
        busy = BPF_RINGBUF_BUSY_BIT
        len_mask = ~(busy | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF
        hdr = BPF_RINGBUF_HDR_SZ
        cons = self._cons_q[0]
        prod = self._prod_q[0]
        end = cons
        stop = min(prod, cons + max_bytes)
        # the committed records: a walk over their headers, in runs of records whose headers
        # are the same (a flood of one printf) checked at C speed (``run_length``), so that
        # taking half a million records is not half a million steps of Python
        while end < stop:
            off = end & mask
            ln = words[off >> 2]
            if ln & busy:
                break
            step = ((ln & len_mask) + hdr + 7) & ~7
            # the headers before the end of the data area (a record may wrap, its header not)
            count = min((stop - end + step - 1) // step, (size - off + step - 1) // step)
            end += step * run_length(words, off >> 2, step >> 2, count, ln)
        if end == cons:
            return None
        if not copy:
            self._cons_q[0] = end
            return None
        data = self._data
        a = cons & mask
        n = end - cons
        if a + n <= size:
            chunk = data[a:a + n].tobytes()
        else:
            chunk = data[a:].tobytes() + data[:a + n - size].tobytes()
        self._cons_q[0] = end
        return chunk

    @staticmethod
    def records(chunk: bytes, callback, start: int = 0, limit: int = -1) -> int:
        """Call callback(memoryview) for the records of a ``take()`` copy from byte ``start``,
        at most ``limit`` of them (-1: all); return the offset where it stopped."""
        mv = memoryview(chunk)
        unpack_hdr = _U32.unpack_from
        discard = BPF_RINGBUF_DISCARD_BIT
        len_mask = ~(BPF_RINGBUF_BUSY_BIT | discard) & 0xFFFFFFFF
        hdr = BPF_RINGBUF_HDR_SZ
        off = start
        end = len(chunk)
        while off < end and limit != 0:
            ln = unpack_hdr(mv, off)[0]
            n = ln & len_mask
            if not ln & discard:
                callback(mv[off + hdr:off + hdr + n])
                limit -= 1
            off += (n + hdr + 7) & ~7
        return off

    def drain(self, callback) -> int:
        """Call callback(memoryview) for each committed record, skipping
        discarded ones and stopping at the first busy (uncommitted) one.
        Returns the number of records handed to the callback."""
        count = 0

        def counted(mv):
            nonlocal count
            count += 1
            callback(mv)

        while True:
            chunk = self.take()
            if chunk is None:
                return count
            self.records(chunk, counted)

    def close(self) -> None:
        if self._ep is None:
            return
        self._ep.close()
        self._ep = None
        for mv in (self._cons_q, self._prod_q, self._words, self._data, self._prod, self._cons):
            try:
                mv.release()
            except BufferError:
                pass
        for mm in (self._prod_mm, self._cons_mm):
            try:
                mm.close()
            except BufferError:
                # a callback kept a view into the mapping; let GC unmap it
                pass

    def __enter__(self) -> "RingBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
