"""A reader of one BPF perf event array (``skboutput``'s): one PERF_COUNT_SW_BPF_OUTPUT event
per online CPU, its ring mapped and its fd stored in the array at that CPU's index, so that a
program's ``BPF_F_CURRENT_CPU`` output lands in the ring of the CPU it runs on.

The rings are read on a thread of their own (an epoll wait on the events, woken by the
kernel after each record) until ``stop``, which reads what is left once the probes are
detached. Each PERF_RECORD_SAMPLE's raw bytes go to the ``on_sample`` callback; the kernel's
PERF_RECORD_LOST records (a ring that was full) are summed in ``lost``; the kernel writes one
only before the ring's next record, so the program counts the drops itself (the helper's
-ENOSPC) for the session's report. The ring-buffer map that carries printf and the other records
is a different thing (``kernel/ringbuf.py``); nothing here touches it.

Ring layout (``struct perf_event_mmap_page``): a meta page whose ``data_head`` (offset 1024,
written by the kernel) and ``data_tail`` (1032, written by us) are read and written as single
aligned 8-byte accesses, then ``PAGES`` pages of records, each starting with
``struct perf_event_header`` (u32 type, u16 misc, u16 size) and wrapping around the end.
"""
from __future__ import annotations

import mmap
import os
import select
import struct
import threading

PAGES = 64                   # data pages per CPU (bpftrace's perf_rb_pages default)
PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
_HEAD_Q = 1024 // 8          # data_head / data_tail as u64 indexes of the meta page
_HDR = struct.Struct("<IHH")
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def online_cpus() -> list[int]:
    """The ids of the CPUs that are online now (a perf event cannot be opened on the others)."""
    from ptrace_lang.kernel.cpus import parse_cpu_list, possible_cpus

    try:
        with open("/sys/devices/system/cpu/online", "rb") as f:
            return parse_cpu_list(f.read().decode())
    except (OSError, ValueError):
        return list(possible_cpus())


class PerfRing:
    """One CPU's perf event and its mapped ring."""

    def __init__(self, cpu: int, pages: int = PAGES) -> None:
        from ptrace_lang.kernel.perf import bpf_output_event

        self.cpu = cpu
        self.fd = bpf_output_event(cpu)
        self.size = pages * mmap.PAGESIZE
        try:
            self._mm = mmap.mmap(self.fd, mmap.PAGESIZE + self.size, mmap.MAP_SHARED,
                                 mmap.PROT_READ | mmap.PROT_WRITE)
        except OSError:
            os.close(self.fd)
            raise
        self._view = memoryview(self._mm)
        self._pos = self._view[:mmap.PAGESIZE].cast("Q")
        self._data = self._view[mmap.PAGESIZE:]

    def _bytes(self, start: int, n: int) -> bytes:
        off = start % self.size
        end = off + n
        if end <= self.size:
            return bytes(self._data[off:end])
        return bytes(self._data[off:]) + bytes(self._data[:end - self.size])

    def read(self, on_sample, on_lost) -> int:
        """Hand every record written since the last read to ``on_sample(raw bytes)`` or
        ``on_lost(count)``; give the space back; return how many samples there were."""
        head = self._pos[_HEAD_Q]
        tail = self._pos[_HEAD_Q + 1]
        n = 0
        while tail < head:
            kind, _, size = _HDR.unpack(self._bytes(tail, 8))
            if size < 8:            # (never from a sane kernel: stop rather than spin)
                tail = head
                break
            rec = self._bytes(tail, size)
            if kind == PERF_RECORD_SAMPLE:
                raw = _U32.unpack_from(rec, 8)[0]
                on_sample(rec[12:12 + raw])
                n += 1
            elif kind == PERF_RECORD_LOST:
                on_lost(_U64.unpack_from(rec, 16)[0])
            tail += size
        self._pos[_HEAD_Q + 1] = tail
        return n

    def close(self) -> None:
        if self.fd < 0:
            return
        self._pos.release()
        self._data.release()
        self._view.release()
        self._mm.close()
        os.close(self.fd)
        self.fd = -1


class PerfReader:
    """The rings of one perf event array, read on a thread (``start``) until ``stop``."""

    def __init__(self, kmap, on_sample, pages: int = PAGES) -> None:
        self.on_sample = on_sample
        self.lost = 0
        self.rings: list[PerfRing] = []
        self._thread: threading.Thread | None = None
        self._stop_r, self._stop_w = os.pipe2(os.O_CLOEXEC)
        try:
            for cpu in online_cpus():
                if cpu >= kmap.max_entries:
                    continue
                ring = PerfRing(cpu, pages)
                self.rings.append(ring)
                kmap.update(_U32.pack(cpu), _U32.pack(ring.fd))
        except BaseException:
            self.close()
            raise

    def _count_lost(self, n: int) -> None:
        self.lost += n

    def read_all(self) -> int:
        return sum(r.read(self.on_sample, self._count_lost) for r in self.rings)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="ptrace-perfbuf", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ep = select.epoll()
        try:
            for r in self.rings:
                ep.register(r.fd, select.EPOLLIN)
            ep.register(self._stop_r, select.EPOLLIN)
            while True:
                ready = [fd for fd, _ in ep.poll(-1)]
                self.read_all()
                if self._stop_r in ready:
                    return
        finally:
            ep.close()

    def stop(self) -> None:
        """End the thread, then read what the rings still hold (the probes are detached)."""
        t, self._thread = self._thread, None
        if t is not None:
            os.write(self._stop_w, b"x")
            t.join()
        if self.rings:
            self.read_all()

    def close(self) -> None:
        """Stop reading and release every ring and fd (safe to call more than once)."""
        try:
            if self._thread is not None:
                self.stop()
        finally:
            rings, self.rings = self.rings, []
            for r in rings:
                r.close()
            for fd in (self._stop_r, self._stop_w):
                if fd >= 0:
                    os.close(fd)
            self._stop_r = self._stop_w = -1
