"""Consumer side of a BPF_MAP_TYPE_RINGBUF map.

Memory layout (as mapped by libbpf):
  offset 0, one page, read/write:  consumer_pos (u64)
  offset page, read-only:          producer_pos (u64) page, then the data
                                   area mapped twice back to back, so a
                                   record that wraps is contiguous.
Each record: u32 len (bit 31 busy, bit 30 discarded), u32 page offset,
then len bytes of data, the whole padded to 8 bytes.
"""

from __future__ import annotations

import mmap
import select
import struct

from .sys import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ

__all__ = ["RingBuffer"]

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_PAGE = mmap.PAGESIZE


class RingBuffer:
    """mmap'ed ring buffer map.  drain() hands each committed record to a
    callback as a memoryview into the mapping: it is only valid during the
    callback (copy it with bytes(mv) to keep it)."""

    def __init__(self, map_fd: int, size: int):
        if size <= 0 or size & (size - 1) or size % _PAGE:
            raise ValueError(f"ring buffer size {size} is not a power-of-2 multiple of the page size")
        self.map_fd = map_fd
        self.size = size
        self._mask = size - 1
        self._cons_mm = mmap.mmap(map_fd, _PAGE, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._prod_mm = mmap.mmap(map_fd, _PAGE + 2 * size, mmap.MAP_SHARED,
                                      mmap.PROT_READ, offset=_PAGE)
        except BaseException:
            self._cons_mm.close()
            raise
        self._cons = memoryview(self._cons_mm)
        self._prod = memoryview(self._prod_mm)
        self._data = self._prod[_PAGE:]
        self._ep = select.epoll()
        self._ep.register(map_fd, select.EPOLLIN)
        self.lost = 0  # not tracked by the kernel for ring buffers; kept for symmetry

    def fileno(self) -> int:
        """The epoll fd (readable when the ring buffer has data)."""
        return self._ep.fileno()

    def available(self) -> int:
        """Bytes between the consumer and producer positions."""
        return _U64.unpack_from(self._prod, 0)[0] - _U64.unpack_from(self._cons, 0)[0]

    def poll(self, timeout_ms: int = -1) -> bool:
        """Wait up to timeout_ms (-1: forever) for data; return whether any is ready."""
        if self.available():
            return True
        events = self._ep.poll(timeout_ms / 1000.0 if timeout_ms >= 0 else -1)
        return bool(events) or self.available() > 0

    def drain(self, callback) -> int:
        """Call callback(memoryview) for each committed record, skipping
        discarded ones and stopping at the first busy (uncommitted) one.
        Returns the number of records handed to the callback."""
        cons_mv = self._cons
        prod_mv = self._prod
        data = self._data
        mask = self._mask
        unpack_hdr = _U32.unpack_from
        unpack_pos = _U64.unpack_from
        pack_pos = _U64.pack_into
        busy = BPF_RINGBUF_BUSY_BIT
        discard = BPF_RINGBUF_DISCARD_BIT
        len_mask = ~(busy | discard) & 0xFFFFFFFF
        hdr = BPF_RINGBUF_HDR_SZ
        count = 0
        cons = unpack_pos(cons_mv, 0)[0]
        while True:
            prod = unpack_pos(prod_mv, 0)[0]
            start = cons
            while cons < prod:
                off = cons & mask
                ln = unpack_hdr(data, off)[0]
                if ln & busy:
                    break
                off += hdr
                n = ln & len_mask
                cons += (n + hdr + 7) & ~7
                if ln & discard:
                    continue
                callback(data[off:off + n])
                count += 1
            if cons == start:
                break
            pack_pos(cons_mv, 0, cons)
            if cons < prod:  # stopped at a busy record
                break
        return count

    def close(self) -> None:
        if self._ep is None:
            return
        self._ep.close()
        self._ep = None
        for mv in (self._data, self._prod, self._cons):
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
