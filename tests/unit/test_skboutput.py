"""skboutput(path, skb, cap_len, offset): its analysis (arguments, the probe types whose
programs may call bpf_skb_output), what it compiles to (a perf event array in the ObjectSpec,
one EV_SKBOUTPUT event per call site) and the pcap file format user space writes."""
from __future__ import annotations

import os
import struct

import pytest

from ptrace_lang import spec as S
from ptrace_lang.sema.types import IntT

from test_types import error_of, printed_types

needs_btf = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                               reason="no kernel BTF at /sys/kernel/btf/vmlinux")
TP = "rawtracepoint:netif_receive_skb"


@needs_btf
def test_skboutput_is_a_uint32_in_a_tp_btf_program():
    t = printed_types(TP + ' { print(skboutput("/tmp/x.pcap", args.skb, args.skb->len, 14)); }')
    assert t == [IntT(32, False)]


@needs_btf
def test_skboutput_compiles_to_a_perf_event_array_and_one_event_per_call():
    from ptrace_lang.driver import Options, compile_script

    obj = compile_script(TP + ' { $a = skboutput("/tmp/a.pcap", args.skb, 64, 0); '
                         '$b = skboutput("/tmp/b.pcap", args.skb, args.skb->len, 14); }',
                         "stdin", Options()).spec
    perf = [m for m in obj.maps if m.name == S.SKB_OUTPUT_MAP]
    assert len(perf) == 1 and perf[0].map_type == 4 and (perf[0].key_size, perf[0].value_size) == (4, 4)
    assert perf[0].max_entries >= 1
    evs = [(e.fmt, e.skb_offset) for e in obj.events if e.kind == S.EV_SKBOUTPUT]
    assert evs == [("/tmp/a.pcap", 0), ("/tmp/b.pcap", 14)]
    assert any(name == S.SKB_OUTPUT_MAP for p in obj.programs for _, name in p.map_relocs)


@needs_btf
def test_skboutput_argument_errors():
    err = error_of(TP + ' { $r = skboutput("/tmp/x.pcap", args.skb, 64); }')
    assert "skboutput() requires 4 arguments (3 provided)" in err
    err = error_of(TP + ' { $p = "/tmp/x"; $r = skboutput($p, args.skb, 64, 0); }')
    assert "skboutput() expects a string literal as argument 1" in err
    assert "$p" in err.split("\n")[1] and "~~" in err.split("\n")[2]
    err = error_of(TP + ' { $r = skboutput("", args.skb, 64, 0); }')
    assert "skboutput() expects a file path as argument 1, got an empty string" in err
    err = error_of(TP + ' { $r = skboutput("/tmp/x.pcap", curtask, 64, 0); }')
    assert "skboutput() expects a 'struct sk_buff *' as argument 2, got 'struct task_struct *'" in err
    err = error_of(TP + ' { $r = skboutput("/tmp/x.pcap", args.skb, "64", 0); }')
    assert "skboutput() expects an integer as argument 3" in err
    err = error_of(TP + ' { $r = skboutput("/tmp/x.pcap", args.skb, 64, args.skb->len); }')
    assert "skboutput() expects an integer literal as argument 4 (the offset)" in err
    assert err.startswith("stdin:1:")


@needs_btf
def test_skboutput_is_refused_outside_tracing_programs():
    err = error_of('tracepoint:net:netif_receive_skb { $r = skboutput("/tmp/x.pcap", '
                   '(struct sk_buff *)args.skbaddr, 64, 0); }')
    assert 'ERROR: skboutput can not be used with "tracepoint" probes' in err
    assert "skboutput(" in err.split("\n")[1] and "~" in err.split("\n")[2]
    assert "tracing programs only" in err
    # a rawtracepoint that does not read its typed args is a raw tracepoint program
    err = error_of('rawtracepoint:netif_receive_skb { $r = skboutput("/tmp/x.pcap", '
                   '(struct sk_buff *)arg0, 64, 0); }')
    assert 'skboutput can not be used with "rawtracepoint" probes' in err
    err = error_of('interval:s:1 { $r = skboutput("/tmp/x.pcap", (struct sk_buff *)0, 64, 0); }')
    assert 'skboutput can not be used with "interval" probes' in err


def test_pcap_file_format(tmp_path):
    """The global header (LINKTYPE_RAW) and records: the offset's bytes left out, the wall
    clock from the boot clock, a sample of an unknown call site counted, not written."""
    from ptrace_lang.runtime.pcap import PcapFile, SkbCapture

    path = tmp_path / "p.pcap"
    f = PcapFile(str(path))
    cap = SkbCapture.__new__(SkbCapture)        # its packet() alone, without perf rings
    cap.sites, cap.offset_ns, cap.malformed = {3: (f, 4)}, 1_000_000_000, 0
    payload = b"ETHHIP-PACKET-BYTES"
    cap.packet(struct.pack("<QQQ", 3, 2_500_000_000, len(payload)) + payload + b"\0" * 5)
    cap.packet(struct.pack("<QQQ", 9, 0, 4) + b"abcd")
    cap.packet(b"short")
    f.close()
    data = path.read_bytes()
    magic, major, minor, zone, sigfigs, snap, link = struct.unpack_from("<IHHiIII", data)
    assert (magic, major, minor, zone, sigfigs, snap, link) == (0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
    sec, usec, incl, orig = struct.unpack_from("<IIII", data, 24)
    assert (sec, usec, incl, orig) == (3, 500000, len(payload) - 4, len(payload) - 4)
    assert data[40:] == payload[4:]
    assert cap.malformed == 2


def test_pcap_file_that_cannot_be_created_is_a_runtime_failure(tmp_path):
    from ptrace_lang.errors import RuntimeFailure
    from ptrace_lang.runtime.pcap import PcapFile

    with pytest.raises(RuntimeFailure, match="skboutput: cannot create the pcap file"):
        PcapFile(str(tmp_path / "no" / "such" / "dir.pcap"))


@needs_btf
def test_skboutput_is_refused_by_the_repl():
    """The REPL loads entries one by one and opens no pcap file: a located refusal, not
    packets sent to a perf event array nobody reads."""
    from ptrace_lang.errors import CompileError
    from ptrace_lang.repl_session import ReplSession
    from ptrace_lang.runtime.session import RunOptions

    s = ReplSession(RunOptions())
    compiled = s.compile(TP + ' { $r = skboutput("/tmp/x.pcap", args.skb, 64, 0); }')
    with pytest.raises(CompileError, match=r"skboutput\(\) is not supported in the REPL") as e:
        s._check(compiled.spec)
    assert e.value.span.line == 1 and e.value.span.col > 1
