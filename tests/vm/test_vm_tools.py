"""The classic kprobe-based tools of tools/ on Debian's 6.1 kernel (the VM tier): each ran in
the guest (tests/vm/guest_tools.py) against a workload that makes it print something real; here
their output is checked: the header, the columns, and the values the workload is known to
produce (its pid, comm, ports, sizes, counts). Also ``loads``, whose kaddr("avenrun") needs
the data symbols the development kernel's /proc/kallsyms lacks.
"""
from __future__ import annotations

import re
import shutil

import pytest

from test_vm import check, shown

TIME = r"\d\d:\d\d:\d\d"


def ok(vm, name: str) -> dict:
    c = check(vm, name)
    assert c["rc"] == 0 and "Traceback" not in c["err"], shown(c)
    assert re.search(r"^Attached \d+ probes?$", c["err"], re.M), shown(c)
    return c


def pids(c: dict) -> list[int]:
    """The workloads' pids (what ptrace got as $1, $2...), from the batch's workload log."""
    return [int(p) for p in re.findall(r"\(pid (\d+), exit status", c["workload_out"])]


def counts(out: str, key: str) -> int:
    """The sum of every ``@[key]: N`` line (per-second prints and the final one)."""
    return sum(int(n) for n in re.findall(rf"^@\[{re.escape(key)}\]: (\d+)$", out, re.M))


def hist(out: str, header: str) -> dict[int, int]:
    """Buckets (low bound -> count) of the histogram printed under ``header``."""
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    lines = out.split(header + "\n", 1)[1].splitlines() if header + "\n" in out else []
    got = {}
    for ln in lines:
        m = re.match(r"^\[(\d+)([KMG]?)(?:, [^)]+\))?\]?\s+(\d+) \|[@ ]*\|$", ln)
        if not m:
            break
        got[int(m.group(1)) * mult.get(m.group(2), 1)] = int(m.group(3))
    return got


def workload_words(c: dict) -> dict[str, int]:
    """``word number`` pairs the TCP workload printed (server/client/full/queued/dropped ports)."""
    return {k: int(v) for k, v in re.findall(r"\b(server|client|full|queued|dropped) (\d+)",
                                             c["workload_out"])}


def test_vfscount(vm):
    c = ok(vm, "tool_vfscount")
    assert c["out"].startswith("Tracing VFS calls... Hit Ctrl-C to end.\n"), shown(c)
    assert int(re.search(r"^Attached (\d+) probes", c["err"], re.M).group(1)) >= 20, shown(c)
    # dd's 7 reads and 7 writes, and whatever else ran
    assert counts(c["out"], "vfs_read") >= 7 and counts(c["out"], "vfs_write") >= 7, shown(c)
    assert all(re.fullmatch(r"@\[vfs_\w+\]: \d+", ln) for ln in c["out"].splitlines()[1:] if ln), shown(c)


def test_vfsstat(vm):
    c = ok(vm, "tool_vfsstat")
    lines = c["out"].splitlines()
    assert lines[0] == "Tracing key VFS calls... Hit Ctrl-C to end.", shown(c)
    assert any(re.fullmatch(TIME, ln) for ln in lines), shown(c)     # a per-second print
    assert all(re.fullmatch(TIME + r"|@\[vfs_\w+\]: \d+|", ln) for ln in lines[1:]), shown(c)
    assert counts(c["out"], "vfs_read") >= 7 and counts(c["out"], "vfs_write") >= 7, shown(c)


def test_capable(vm):
    c = ok(vm, "tool_capable")
    (pid,) = pids(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Tracing cap_capable syscalls... Hit Ctrl-C to end.",
                         "TIME      UID    PID    COMM             CAP  NAME                 AUDIT"], shown(c)
    # chroot(2) asks for CAP_SYS_CHROOT (18), audited
    want = f"{0:<6} {pid:<6} {'chroot':<16} {18:<4} {'CAP_SYS_CHROOT':<20} 1"
    assert any(re.fullmatch(TIME + "  " + re.escape(want), ln) for ln in lines), shown(c)


def test_swapin(vm):
    c = ok(vm, "tool_swapin")
    (pid,) = pids(c)
    assert c["workload_rcs"] == [0], shown(c)
    # 48 MiB read back in a 24 MiB cgroup: thousands of pages come back from swap
    assert counts(c["out"], f"python3, {pid}") >= 1000, shown(c)
    assert re.match(TIME + "\n", c["out"]), shown(c)


def test_oomkill(vm):
    c = ok(vm, "tool_oomkill")
    (pid,) = pids(c)
    assert c["workload_rcs"] == [-9], shown(c)          # dd was killed
    lines = c["out"].splitlines()
    assert lines[0] == "Tracing oom_kill_process()... Hit Ctrl-C to end.", shown(c)
    # the cgroup's limit, 32 MiB, is 8192 pages: the OOM context's totalpages
    assert re.fullmatch(TIME + re.escape(f' Triggered by PID {pid} ("dd"), OOM kill of PID {pid} '
                                         '("dd"), 8192 pages, loadavg: ')
                        + r"\d+\.\d\d \d+\.\d\d \d+\.\d\d \d+/\d+ \d+", lines[1]), shown(c)


def test_biolatency_kp(vm):
    c = ok(vm, "tool_biolatency_kp")
    assert c["out"].startswith("Tracing block device I/O... Hit Ctrl-C to end.\n"), shown(c)
    # 32 direct writes to the loop device: 32 requests
    assert sum(hist(c["out"], "@usecs:").values()) >= 32, shown(c)
    assert "@start" not in c["out"], shown(c)


def test_mdflush(vm):
    c = ok(vm, "tool_mdflush")
    (pid,) = pids(c)
    assert c["workload_rcs"] == [0], shown(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Tracing md flush events... Hit Ctrl-C to end.",
                         "TIME     PID    COMM             DEVICE"], shown(c)
    # dd's fsync on the md array sends it a flush
    assert any(re.fullmatch(TIME + " " + re.escape(f"{pid:<6} {'dd':<16} md99"), ln)
               for ln in lines), shown(c)


def test_xfsdist(vm):
    c = ok(vm, "tool_xfsdist")
    assert c["out"].startswith("Tracing XFS operation latency... Hit Ctrl-C to end.\n"), shown(c)
    assert re.search(r"^Attached 10 probes$", c["err"], re.M), shown(c)    # 4 + 4 + BEGIN, END
    if "mkfs.xfs: not found" in c["workload_out"]:
        assert shutil.which("mkfs.xfs") is None
        pytest.skip("xfsdist attached in the guest, but without mkfs.xfs (xfsprogs; "
                    "tests/vm/run_vm.py --setup installs it) there was no XFS file system to use")
    # open, 8 writes, fsync, read on a fresh XFS file system
    for op, n in (("open", 2), ("write_iter", 8), ("fsync", 1), ("read_iter", 1)):
        assert sum(hist(c["out"], f"@us[xfs_file_{op}]:").values()) >= n, (op, shown(c))


def test_dcsnoop(vm):
    c = ok(vm, "tool_dcsnoop")
    (pid,) = pids(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Tracing dcache lookups... Hit Ctrl-C to end.",
                         "TIME     PID    COMM             T FILE"], shown(c)
    pre = r"\d+ +" + re.escape(f"{pid:<6} {'touch':<16} ")
    # "tmp" is found in the dcache, the new file's name is not; each name is one component
    # (str(name, len) of the qstr), not the rest of the path
    assert any(re.fullmatch(pre + "R tmp", ln) for ln in lines), shown(c)
    assert not any(re.fullmatch(pre + "[RM] .*/.*", ln) for ln in lines), shown(c)
    assert any(re.fullmatch(pre + "M ptrace-dcsnoop-new", ln) for ln in lines), shown(c)
    assert all(re.fullmatch(r"\d+ +\d+ +.{16} [RM] .*", ln) for ln in lines[2:] if ln), shown(c)


def test_tcpconnect(vm):
    c = ok(vm, "tool_tcpconnect")
    (pid,) = pids(c)
    w = workload_words(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Tracing tcp connections. Hit Ctrl-C to end.",
                         f"{'TIME':<8} {'PID':<8} {'COMM':<16} {'SADDR':<39} {'SPORT':<6} "
                         f"{'DADDR':<39} {'DPORT':<6}"], shown(c)
    for sport, dport in ((w["client"], w["server"]), (w["queued"], w["full"]),
                         (w["dropped"], w["full"])):
        want = (f"{pid:<8} {'python3':<16} {'127.0.0.1':<39} {sport:<6} {'127.0.0.1':<39} "
                f"{dport:<6}")
        assert any(re.fullmatch(TIME + " " + re.escape(want), ln) for ln in lines), (want, shown(c))


def test_tcpaccept(vm):
    c = ok(vm, "tool_tcpaccept")
    (pid,) = pids(c)
    w = workload_words(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Tracing tcp accepts. Hit Ctrl-C to end.",
                         f"{'TIME':<8} {'PID':<6} {'COMM':<14} {'RADDR':<39} {'RPORT':<5} "
                         f"{'LADDR':<39} {'LPORT':<5} BL"], shown(c)
    # the one accept(): the client's end, the server's end, an empty queue of listen(4)
    want = (f"{pid:<6} {'python3':<14} {'127.0.0.1':<39} {w['client']:<5} {'127.0.0.1':<39} "
            f"{w['server']:<5} 0/4")
    assert [ln[9:] for ln in lines[2:] if ln] == [want], shown(c)
    assert re.match(TIME + " ", lines[2]), shown(c)


def test_tcplife(vm):
    c = ok(vm, "tool_tcplife")
    (pid,) = pids(c)
    w = workload_words(c)
    lines = c["out"].splitlines()
    assert lines[0] == (f"{'PID':<5} {'COMM':<10} {'LADDR':<15} {'LPORT':<5} {'RADDR':<15} "
                        f"{'RPORT':<5} TX_KB RX_KB MS"), shown(c)
    # the client sent 300000 bytes (292 KiB) and got 100000 (97 KiB); the server the reverse
    for lport, rport, tx, rx in ((w["client"], w["server"], 292, 97),
                                 (w["server"], w["client"], 97, 292)):
        want = (f"{pid:<5} {'python3':<10} {'127.0.0.1':<15} {lport:<5} {'127.0.0.1':<15} "
                f"{rport:<6} {tx:>5} {rx:>5} ")
        assert any(ln.startswith(want) and ln[len(want):].isdigit() for ln in lines), (want, shown(c))


def test_tcpretrans(vm):
    c = ok(vm, "tool_tcpretrans")
    w = workload_words(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Tracing tcp retransmits. Hit Ctrl-C to end.",
                         f"{'TIME':<8} {'PID':<8} {'LADDR:LPORT':>20} {'RADDR:RPORT':>21} "
                         f"{'STATE':>6}"], shown(c)
    # the SYN the full listener dropped is sent again after the 1 s initial RTO
    want = f"{'127.0.0.1':>14}:{w['dropped']:<6} {'127.0.0.1':>14}:{w['full']:<6} SYN_SENT"
    assert any(re.fullmatch(TIME + r" \d+ +" + re.escape(want), ln) for ln in lines), shown(c)


def test_tcpsynbl(vm):
    c = ok(vm, "tool_tcpsynbl")
    assert c["out"].startswith("Tracing SYN backlog size. Ctrl-C to end.\n"
                               "\n@backlog[backlog limit]: histogram of backlog size\n"), shown(c)
    # listen(4): one handshake with an empty queue; listen(0): the queued one, queue empty
    assert hist(c["out"], "@backlog[4]:") == {0: 1}, shown(c)
    assert hist(c["out"], "@backlog[0]:") == {0: 1}, shown(c)


def test_undump(vm):
    c = ok(vm, "tool_undump")
    (pid,) = pids(c)
    lines = c["out"].splitlines()
    assert lines[:2] == ["Dump UNIX socket packages RX. Ctrl-C to end",
                         f"{'TIME':<8} {'COMM':<16} {'PID':<8} {'SIZE':<8} DATA"], shown(c)
    want = f"{'python3':<16} {pid:<8} {14:<8} ptrace-undump\\x0a"
    assert any(re.fullmatch(TIME + " " + re.escape(want), ln) for ln in lines), shown(c)


def test_loads(vm):
    c = ok(vm, "tool_loads")
    loadavg = [[float(x) for x in m] for m in
               re.findall(r"^(\d+\.\d\d) (\d+\.\d\d) (\d+\.\d\d) \d+/\d+ \d+$", c["workload_out"], re.M)]
    assert len(loadavg) == 2, shown(c)
    rows = re.findall("^" + TIME + r" load averages: (\d+\.\d{3}) (\d+\.\d{3}) (\d+\.\d{3})$",
                      c["out"], re.M)
    assert c["out"].startswith("Reading load averages... Hit Ctrl-C to end.\n") and rows, shown(c)
    # the same numbers as /proc/loadavg (which rounds to two places): a line printed between
    # the two reads shows one of them (the kernel updates them every 5 s; a line printed
    # after the workload may show newer ones)
    def same(row, la):
        return all(abs(float(v) - la[i]) <= 0.006 for i, v in enumerate(row))

    assert any(same(row, la) for row in rows for la in loadavg), (loadavg, shown(c))
