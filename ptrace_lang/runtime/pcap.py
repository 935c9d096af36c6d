"""skboutput's user space: the pcap files its packets are written to, and the capture that
reads them from the perf event array (``runtime.perfbuf``).

Each ``skboutput(path, skb, cap_len, offset)`` call site is an ``EventSpec`` of kind
``EV_SKBOUTPUT`` (fmt: the path, ``skb_offset``). Every path is created (or truncated) when
the run starts and gets the classic pcap global header: magic a1b2c3d4 (microsecond
timestamps), version 2.4, snap length 65535 and link type 101, LINKTYPE_RAW (the packet
starts with its IP header, as bpftrace writes them). A record per packet: the time (seconds,
microseconds) of the probe's boot-clock reading moved to the wall clock, the bytes written
and the same length as the original length, then the packet's bytes from ``offset`` on.
"""
from __future__ import annotations

import struct
import time

from ptrace_lang import spec as S
from ptrace_lang.errors import RuntimeFailure

PCAP_MAGIC = 0xA1B2C3D4
LINKTYPE_RAW = 101
SNAPLEN = 65535
GLOBAL_HEADER = struct.Struct("<IHHiIII")
RECORD_HEADER = struct.Struct("<IIII")
_SKB_HDR = struct.Struct("<QQQ")          # (spec.SKB_HEADER bytes) event id, boot-clock ns, cap_len


def boot_to_wall_ns() -> int:
    """What to add to a CLOCK_BOOTTIME reading to get the wall clock (CLOCK_REALTIME)."""
    return time.clock_gettime_ns(time.CLOCK_REALTIME) - time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class PcapFile:
    """One pcap file, written through a buffered file object."""

    def __init__(self, path: str) -> None:
        try:
            self.f = open(path, "wb")
        except OSError as e:
            raise RuntimeFailure(f"skboutput: cannot create the pcap file '{path}': "
                                 f"{e.strerror or e}") from None
        self.path = path
        self.f.write(GLOBAL_HEADER.pack(PCAP_MAGIC, 2, 4, 0, 0, SNAPLEN, LINKTYPE_RAW))

    def write(self, wall_ns: int, packet: bytes) -> None:
        sec, ns = divmod(wall_ns, 1_000_000_000)
        n = len(packet)
        self.f.write(RECORD_HEADER.pack(sec & 0xFFFFFFFF, ns // 1000, n, n))
        self.f.write(packet)

    def close(self) -> None:
        self.f.close()


class SkbCapture:
    """The files of a spec's skboutput calls and the perf reader feeding them."""

    def __init__(self, spec: S.ObjectSpec, kmap) -> None:
        from ptrace_lang.runtime.perfbuf import PerfReader

        self.files: dict[str, PcapFile] = {}
        self.sites: dict[int, tuple[PcapFile, int]] = {}     # event id -> (file, offset)
        self.reader = None
        self.malformed = 0
        self.offset_ns = boot_to_wall_ns()
        try:
            for i, ev in enumerate(spec.events):
                if ev.kind == S.EV_SKBOUTPUT:
                    if ev.fmt not in self.files:
                        self.files[ev.fmt] = PcapFile(ev.fmt)
                    self.sites[i] = (self.files[ev.fmt], ev.skb_offset)
            self.reader = PerfReader(kmap, self.packet)
        except BaseException:
            self.close()
            raise
        self.reader.start()

    @property
    def lost(self) -> int:
        """Packets that reached the rings but not the file. (Those a full ring refused are
        counted by the program: bpf_skb_output's -ENOSPC, in the session's lost events; the
        kernel's PERF_RECORD_LOST counts of the same drops, ``reader.lost``, are not added.)"""
        return self.malformed

    def packet(self, raw: bytes) -> None:
        """One perf sample: our header, then the packet's bytes (padded to 8 by the kernel)."""
        if len(raw) < _SKB_HDR.size:
            self.malformed += 1
            return
        ev, ns, cap = _SKB_HDR.unpack_from(raw)
        site = self.sites.get(ev)
        if site is None:
            self.malformed += 1
            return
        f, offset = site
        data = raw[_SKB_HDR.size:_SKB_HDR.size + (cap & 0xFFFFFFFF)]
        try:
            f.write(ns + self.offset_ns, data[offset:])
        except (OSError, ValueError):     # a full disk, or the file closed: counted as lost
            self.malformed += 1

    def stop(self) -> None:
        """Read what is left (the probes are detached) and flush the files."""
        if self.reader is not None:
            self.reader.stop()
        for f in self.files.values():
            f.f.flush()

    def close(self) -> None:
        """Release the rings, the fds and the files (every exit path; more than once is fine)."""
        try:
            if self.reader is not None:
                self.reader.close()
        finally:
            files, self.files = list(self.files.values()), {}
            for f in files:
                f.close()
