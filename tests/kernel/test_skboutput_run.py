"""skboutput() in the kernel: a tp_btf program on net:netif_receive_skb (which loopback
traffic reaches: the packet's data starts at its IP header there) writes the UDP datagrams
this test sends over 127.0.0.1 into a pcap file, read back here with ``struct``; the perf
event array's rings released with the run; fentry programs as this kernel answers them."""
from __future__ import annotations

import os
import socket
import struct
import time

import pytest

from runner import Tracer, run

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs"),
    pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                       reason="no kernel BTF at /sys/kernel/btf/vmlinux (tp_btf programs)"),
]


def read_pcap(path: str) -> tuple[tuple, list[tuple[int, int, int, int, bytes]]]:
    data = open(path, "rb").read()
    head = struct.unpack_from("<IHHiIII", data)
    records, off = [], 24
    while off < len(data):
        sec, usec, incl, orig = struct.unpack_from("<IIII", data, off)
        records.append((sec, usec, incl, orig, data[off + 16:off + 16 + incl]))
        off += 16 + incl
    assert off == len(data), "a record runs past the end of the file"
    return head, records


def send_datagrams(payloads: list[bytes]) -> int:
    """Send each payload over loopback UDP to a bound socket; return the port."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        for p in payloads:
            tx.sendto(p, ("127.0.0.1", port))
            assert rx.recv(2048) == p
        return port
    finally:
        tx.close()
        rx.close()


def test_skboutput_writes_loopback_udp_datagrams_to_a_raw_ip_pcap(tmp_path):
    path = str(tmp_path / "lo.pcap")
    with open(path, "wb") as f:
        f.write(b"stale contents the run must truncate")
    script = ('rawtracepoint:netif_receive_skb /args.skb->len > 28/ { '
              f'$r = skboutput("{path}", args.skb, args.skb->len, 0); @ret[$r] = count(); '
              f'$h = skboutput("{path}.cut", args.skb, 28, 20); }}')
    t = Tracer("-e", script)
    t.wait_attached()
    before = time.time()
    payloads = [b"ptrace-skboutput-%03d-" % i + b"x" * i for i in range(20)]
    port = send_datagrams(payloads)
    after = time.time()
    r = t.stop()
    assert r.rc == 0, r.err
    assert "Lost" not in r.err, r.err
    head, records = read_pcap(path)
    assert head == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)      # LINKTYPE_RAW
    ours = []
    for sec, usec, incl, orig, pkt in records:
        assert incl == orig == len(pkt)
        ver_ihl, total_len, proto = pkt[0], struct.unpack_from(">H", pkt, 2)[0], pkt[9]
        assert ver_ihl >> 4 in (4, 6)
        if ver_ihl == 0x45 and proto == 17 and struct.unpack_from(">H", pkt, 22)[0] == port:
            assert pkt[12:20] == socket.inet_aton("127.0.0.1") * 2
            assert total_len == len(pkt)
            assert before - 1 <= sec + usec / 1e6 <= after + 1
            ours.append(pkt[28:])
    # (each CPU has its ring: packets of a sender that moved between CPUs come in ring order)
    assert sorted(ours) == sorted(payloads), (len(records), ours[:3])
    # every packet counted a 0 from the helper (the map's line for 0, none for errors)
    assert r.out.strip().startswith("@ret[0]: "), r.out
    assert [line for line in r.out.splitlines() if line.startswith("@ret[")] == \
        [f"@ret[0]: {len(records)}"], r.out
    # 28 bytes asked for, the IP header's 20 left out: the UDP header alone
    _, cut = read_pcap(path + ".cut")
    udp = [pkt for *_, pkt in cut if len(pkt) == 8 and struct.unpack_from(">H", pkt, 2)[0] == port]
    assert len(udp) == len(payloads)
    assert sorted(struct.unpack_from(">H", u, 4)[0] - 8 for u in udp) == \
        sorted(len(p) for p in payloads)


def perf_fds() -> set[str]:
    out = set()
    for f in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{f}") == "anon_inode:[perf_event]":
                out.add(f)
        except OSError:
            pass
    return out


def test_skboutput_rings_are_released_with_the_session(tmp_path):
    """In one process: the capture's perf events and mappings are gone after close()."""
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.runtime.session import RunOptions, Session

    spec = compile_script('rawtracepoint:netif_receive_skb { '
                          f'$r = skboutput("{tmp_path}/s.pcap", args.skb, 64, 0); }}',
                          "stdin", Options()).spec
    fds = perf_fds()
    s = Session(spec, RunOptions(out=open(os.devnull, "w"), err=open(os.devnull, "w")))
    s.start()
    assert s._skb is not None and len(s._skb.reader.rings) >= 1
    assert len(perf_fds() - fds) >= len(s._skb.reader.rings)
    s.finish()
    s.close()
    assert not perf_fds() - fds
    assert os.path.getsize(f"{tmp_path}/s.pcap") >= 24


def test_skboutput_records_a_full_ring_drops_are_counted_and_reported(tmp_path):
    """Rings of one page that nobody reads while 24 datagrams of 1,111 bytes pass: the
    helper's -ENOSPC drops are counted and reported as lost events; the kept and the lost
    add up to the packets sent."""
    import io
    import re

    from ptrace_lang import spec as S
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.runtime.perfbuf import PerfReader
    from ptrace_lang.runtime.session import RunOptions, Session

    spec = compile_script('rawtracepoint:netif_receive_skb /args.skb->len == 1139/ { '
                          f'$r = skboutput("{tmp_path}/l.pcap", args.skb, args.skb->len, 0); }}',
                          "stdin", Options()).spec
    err = io.StringIO()
    s = Session(spec, RunOptions(out=io.StringIO(), err=err))
    try:
        s.start()
        s._skb.close()             # its rings replaced by small ones read only at the end
        got = []
        s._skb = PerfReader(s.k.maps[S.SKB_OUTPUT_MAP], got.append, pages=1)
        send_datagrams([b"L" * 1111] * 24)
        s.finish()
        s.report_counters()
    finally:
        s.close()
    m = re.search(r"^Lost (\d+) events$", err.getvalue(), re.M)
    assert m, (len(got), err.getvalue())
    assert int(m.group(1)) >= 1 and len(got) + int(m.group(1)) == 24, (len(got), m.group(1))
    assert all(len(raw) >= 24 + 1139 for raw in got)


def test_skboutput_in_fentry_loads_or_is_refused_clearly(tmp_path):
    path = str(tmp_path / "f.pcap")
    r = run("--dry-run", "-e", f'fentry:netif_receive_skb {{ $r = skboutput("{path}", '
                               'args.skb, args.skb->len, 0); }')
    if r.rc != 0 and "this kernel refuses fentry/fexit programs" in r.err:
        assert "Traceback" not in r.err
        pytest.skip("this kernel refuses fentry programs before the verifier runs: " +
                    r.err.splitlines()[0])
    assert r.rc == 0, r.err
    assert not os.path.exists(path)          # a dry run writes no file
