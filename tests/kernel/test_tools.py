"""The classic tools in tools/: each one is run as a user would (spawn, wait for
`Attached N probes`, a workload, Ctrl-C) against a workload that makes it print
something real, and what it printed is checked: the header, the column layout and
the values the workload is known to produce (its pid, comm, paths, signals, ...).

Needs root. Block-device tools are skipped, with the reason, when the checkout is not
on a block device whose block tracepoints fire; uprobe tools when the library or
binary they probe is missing.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from runner import ROOT, Tracer, named_workload, run

TOOLS_DIR = ROOT / "tools"
TIME_RE = r"\d\d:\d\d:\d\d"
GETPPID_NR = {"x86_64": 110, "aarch64": 173}.get(platform.machine())


# ---------------------------------------------------------------- helpers


def uniq(prefix: str) -> str:
    """A process name (at most 15 characters) or path part unique to this run."""
    return prefix + uuid.uuid4().hex[:8]


class Run:
    """One tool run: the tracer, then the workloads; ``finish`` waits for what is
    expected, stops the tool with Ctrl-C and returns its stdout."""

    def __init__(self, tool: str, *args: str) -> None:
        self.tool = tool
        self.t = Tracer(str(TOOLS_DIR / f"{tool}.bt"), *args)
        self.t.wait_attached()

    def workload(self, name: str, code: str, *argv: str, timeout: float = 20) -> tuple[int, str]:
        """Run ``code`` in a python process named ``name``; return its pid and stdout."""
        p = subprocess.Popen(named_workload(name, code) + list(argv), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        out, err = p.communicate(timeout=timeout)
        assert p.returncode == 0, f"workload {name} failed:\n{err}"
        return p.pid, out

    def out(self) -> str:
        return "".join(self.t.out_chunks)

    def finish(self, until=None, timeout: float = 5.0) -> str:
        """Wait until ``until(stdout)`` is true (or the timeout), then Ctrl-C."""
        if until is not None:
            end = time.monotonic() + timeout
            while time.monotonic() < end and not until(self.out()) and self.t.p.poll() is None:
                time.sleep(0.05)
        res = self.t.stop()
        assert "Traceback" not in res.err, res.err
        assert res.rc == 0, f"{self.tool} exited with {res.rc}:\n{res.err}"
        assert re.search(r"^Attached \d+ probes?$", res.err, re.M), res.err
        return res.out


def lines_of(out: str, pattern: str) -> list[re.Match]:
    return [m for m in re.finditer(pattern, out, re.M)]


def out_has(out: str, text: str, n: int = 1) -> bool:
    return out.count(text) >= n


def bucket_low(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text[:-1]) * mult[text[-1]] if text[-1] in mult else int(text)


def hist_of(out: str, header: str) -> dict[int, int]:
    """The buckets (low bound -> count) of the hist/lhist printed under ``header``."""
    i = out.index(header + "\n")
    buckets = {}
    for line in out[i + len(header) + 1:].splitlines():
        m = re.match(r"^\[([^,\]]+)(?:, ([^)]+)\))?\]?\s+(\d+) \|[@ ]*\|$", line)
        if not m:
            break
        buckets[bucket_low(m.group(1))] = int(m.group(3))
    assert buckets, f"no buckets under {header!r}:\n{out}"
    return buckets


def header_check(out: str, *lines: str) -> None:
    got = out.splitlines()[:len(lines)]
    assert got == list(lines), f"header {got!r}, expected {list(lines)!r}"


# ------------------------------------------------- block devices (for bio tools)


def _block_device() -> tuple[str | None, str]:
    """The whole disk ("MAJ:MIN") holding the checkout, or None and why not."""
    st = os.stat(ROOT)
    dev = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    sysdir = Path("/sys/dev/block") / dev
    if not sysdir.exists():
        return None, f"{ROOT} is on device {dev}, which is not a block device"
    if (sysdir / "partition").exists():        # a partition: its disk is the parent
        dev = (sysdir.resolve().parent / "dev").read_text().strip()
    if not Path("/sys/kernel/tracing/events/block/block_io_start").is_dir():
        return None, "no block:block_io_start tracepoint (Linux < 6.5)"
    return dev, ""


DIRECT_WRITES = 32
DIRECT_IO = f"""
import mmap, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o600)
buf = mmap.mmap(-1, 4096)          # page aligned, as O_DIRECT wants
buf.write(b"x" * 4096)
for _ in range({DIRECT_WRITES}):
    assert os.write(fd, buf) == 4096
os.close(fd)
os.unlink(path)
"""


def disks_under(dev: str) -> set[str]:
    """``dev`` and, for a device-mapper or md device, the disks its I/O goes to."""
    found = {dev}
    for slave in (Path("/sys/dev/block") / dev / "slaves").glob("*"):
        sdir = slave.resolve()
        if (sdir / "partition").exists():
            sdir = sdir.parent
        found |= disks_under((sdir / "dev").read_text().strip())
    return found


def direct_io(r: Run, name: str) -> int:
    dev, why = _block_device()
    if dev is None:
        r.t.stop()
        pytest.skip(f"no block device to do I/O on: {why}")
    pid, _ = r.workload(name, DIRECT_IO, str(ROOT / f".{name}.dio"))
    return pid


# ---------------------------------------------------------------- the tools


def check_opensnoop(tool: str = "opensnoop") -> None:
    r = Run(tool)
    name = uniq("os_")
    with tempfile.TemporaryDirectory() as d:
        good, bad = os.path.join(d, name + ".txt"), os.path.join(d, name + ".missing")
        Path(good).write_text("x")
        pid, fd = r.workload(name, "import os, sys\n"
                             "print(os.open(sys.argv[1], os.O_RDONLY))\n"
                             "try: os.open(sys.argv[2], os.O_RDONLY)\n"
                             "except FileNotFoundError: pass\n", good, bad)
        out = r.finish(lambda o: bad in o)
    header_check(out, "Tracing open syscalls... Hit Ctrl-C to end.",
                 "PID    COMM               FD ERR PATH")
    assert f"{pid:<6} {name:<16} {int(fd):>4} {0:>3} {good}\n" in out, out
    assert f"{pid:<6} {name:<16} {-1:>4} {2:>3} {bad}\n" in out, out


def check_opensnoop26() -> None:
    check_opensnoop("opensnoop26")      # bpftrace 0.26's dialect, the same output


def check_execsnoop(tool: str = "execsnoop") -> None:
    r = Run(tool)
    name = uniq("es_")
    # the workload execs /bin/true with a unique argument list (one argument has a space)
    pid, _ = r.workload(name, "import os, sys\n"
                        "p = os.fork()\n"
                        "if p == 0:\n    os.execv('/bin/true', ['/bin/true', sys.argv[1], 'two words'])\n"
                        "os.waitpid(p, 0)\n", name)
    out = r.finish(lambda o: name in o)
    header_check(out, "TIME(ms)   PID   ARGS")
    mine = [ln for ln in out.splitlines() if ln.endswith(f"/bin/true {name} two words")]
    assert len(mine) == 1, out
    assert re.fullmatch(r"\d+ {1,10}\d+ +/bin/true " + re.escape(name) + " two words", mine[0]), mine
    ms, child = mine[0].split()[:2]
    assert int(child) != pid and len(mine[0].split(" /bin/true")[0]) == 16, mine


def check_execsnoop26() -> None:
    check_execsnoop("execsnoop26")      # bpftrace 0.26's dialect, the same output


def check_killsnoop() -> None:
    r = Run("killsnoop")
    name = uniq("ks_")
    pid, out = r.workload(name, "import os, signal, time\n"
                          "c = os.fork()\n"
                          "if c == 0:\n    time.sleep(30); os._exit(0)\n"
                          "os.kill(c, signal.SIGTERM); os.waitpid(c, 0)\n"
                          "try: os.kill(c, 0)\n"
                          "except ProcessLookupError: pass\n"
                          "print(c)\n")
    child = int(out)
    out = r.finish(lambda o: out_has(o, f" {name} ", 2))
    header_check(out, "Tracing kill() signals... Hit Ctrl-C to end.",
                 "TIME      PID    COMM             SIG  TPID   RESULT")
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    assert len(mine) == 2, out
    assert re.fullmatch(TIME_RE + "  " + re.escape(f"{pid:<6} {name:<16} {15:<4} {child:<6} 0"),
                        mine[0]), mine
    # signal 0 to the reaped child: ESRCH (3)
    assert re.fullmatch(TIME_RE + "  " + re.escape(f"{pid:<6} {name:<16} {0:<4} {child:<6} -3"),
                        mine[1]), mine


def check_statsnoop() -> None:
    r = Run("statsnoop")
    name = uniq("st_")
    with tempfile.TemporaryDirectory() as d:
        good, bad = os.path.join(d, name + ".txt"), os.path.join(d, name + ".missing")
        Path(good).write_text("x")
        pid, _ = r.workload(name, "import os, sys\n"
                            "os.stat(sys.argv[1]); os.lstat(sys.argv[1])\n"
                            "try: os.stat(sys.argv[2])\n"
                            "except FileNotFoundError: pass\n"
                            "os.statvfs(sys.argv[3])\n", good, bad, d)
        out = r.finish(lambda o: f" {d}\n" in o)
    header_check(out, "Tracing stat syscalls... Hit Ctrl-C to end.",
                 "PID    COMM             ERR PATH")
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    assert mine.count(f"{pid:<6} {name:<16} {0:>3} {good}") == 2, mine     # stat + lstat
    assert f"{pid:<6} {name:<16} {2:>3} {bad}" in mine, mine
    assert f"{pid:<6} {name:<16} {0:>3} {d}" in mine, mine                 # statfs
    # fstat() (an empty path with AT_EMPTY_PATH) is not a path lookup: not shown
    assert all(not ln.endswith(" 0 ") for ln in mine), mine


def check_syncsnoop() -> None:
    r = Run("syncsnoop")
    name = uniq("sy_")
    with tempfile.TemporaryDirectory() as d:
        pid, _ = r.workload(name, "import os, sys\n"
                            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)\n"
                            "os.write(fd, b'x'); os.fsync(fd); os.fdatasync(fd)\n",
                            os.path.join(d, "f"))
        out = r.finish(lambda o: "sys_enter_fdatasync" in o)
    header_check(out, "Tracing sync syscalls... Hit Ctrl-C to end.",
                 "TIME      PID    COMM             EVENT")
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    assert len(mine) == 2, out
    for ln, ev in zip(mine, ("fsync", "fdatasync")):
        assert re.fullmatch(TIME_RE + "  " + re.escape(
            f"{pid:<6} {name:<16} tracepoint:syscalls:sys_enter_{ev}"), ln), mine


def check_syscount() -> None:
    if GETPPID_NR is None:
        pytest.skip(f"getppid's number is not known for {platform.machine()}")
    r = Run("syscount")
    name = uniq("sc_")
    n = 50000
    r.workload(name, f"import os\nfor _ in range({n}): os.getppid()\n")
    out = r.finish()
    assert out.startswith("Counting syscalls... Hit Ctrl-C to end.\n\nTop 10 syscalls IDs:\n"), out
    ids, procs = out.split("\nTop 10 processes:\n")
    rows = lines_of(ids, r"^@syscall\[(\d+)\]: (\d+)$")
    assert 1 <= len(rows) <= 10, ids
    counts = {int(m.group(1)): int(m.group(2)) for m in rows}
    assert counts.get(GETPPID_NR, 0) >= n, ids
    values = [int(m.group(2)) for m in rows]
    assert values == sorted(values), ids                  # smallest first, as bpftrace
    prows = lines_of(procs, r"^@process\[(.+)\]: (\d+)$")
    assert 1 <= len(prows) <= 10, procs
    assert int(dict((m.group(1), m.group(2)) for m in prows).get(name, 0)) >= n, procs


def check_pidpersec() -> None:
    r = Run("pidpersec")
    name = uniq("pp_")
    forks = 25
    r.workload(name, f"import os\nfor _ in range({forks}):\n"
               "    c = os.fork()\n    if c == 0: os._exit(0)\n    os.waitpid(c, 0)\n")

    def total(o: str) -> int:
        return sum(int(m.group(1)) for m in lines_of(o, TIME_RE + r" PIDs/sec: @: (\d+)$"))
    # a second may end in the middle of the forks: wait for the counts to reach them all
    out = r.finish(lambda o: total(o) >= forks and o.rstrip().endswith(tuple("0123456789")),
                   timeout=4)
    assert out.startswith("Tracing new processes... Hit Ctrl-C to end.\n"), out
    body = out.splitlines()[1:]
    assert all(re.fullmatch(TIME_RE + r" PIDs/sec: @: \d+", ln) for ln in body if ln), out
    assert total(out) >= forks, out


def check_cpuwalk() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    target = cpus[-1]
    r = Run("cpuwalk")
    # spin 0.5 s on one CPU: ~50 samples at 99 Hz land in its bucket
    r.workload(uniq("cw_"), f"import os, time\nos.sched_setaffinity(0, {{{target}}})\n"
               "end = time.monotonic() + 0.5\nwhile time.monotonic() < end: pass\n")
    out = r.finish()
    assert out.startswith("Sampling CPU at 99hz... Hit Ctrl-C to end.\n"), out
    b = hist_of(out, "@cpu:")
    assert b.get(target, 0) >= 25, out
    assert all(0 <= c < os.cpu_count() for c in b), out


def check_runqlat() -> None:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    r = Run("runqlat")
    # two spinners on one CPU take turns: each waits a time slice (ms) in the run queue
    spin = (f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
            "end = time.monotonic() + 0.3\nwhile time.monotonic() < end: pass\n")
    procs = [subprocess.Popen(named_workload(uniq("rq_"), spin)) for _ in range(2)]
    for p in procs:
        assert p.wait(20) == 0
    out = r.finish()
    assert out.startswith("Tracing CPU scheduler... Hit Ctrl-C to end.\n"), out
    b = hist_of(out, "@usecs:")
    assert sum(b.values()) >= 10, out
    assert sum(c for lo, c in b.items() if lo >= 1024) >= 2, out     # waits of a slice or more


def check_setuids() -> None:
    r = Run("setuids")
    name = uniq("su_")
    pid, _ = r.workload(name, "import os, ctypes\n"
                        "libc = ctypes.CDLL(None, use_errno=True)\n"
                        "os.setuid(0)\n"
                        "os.setresuid(0, 65534, 0)\n"       # euid 65534: no CAP_SETUID now
                        "libc.setfsuid(4321)\n"            # refused: returns the old fsuid
                        "try: os.setuid(4321)\n"
                        "except PermissionError: pass\n"
                        "os.setresuid(0, 0, 0)\n")
    out = r.finish(lambda o: out_has(o, f" {name} ", 5))
    header_check(out, "Tracing setuid(2) family syscalls. Hit Ctrl-C to end.",
                 "TIME     PID    COMM             UID    SYSCALL   ARGS (RET)")
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    pre = f"{pid:<6} {name:<16} {0:<6} "
    want = [pre + "setuid    uid=0 (0)",
            pre + "setresuid ruid=0 euid=65534 suid=0 (0)",
            pre + "setfsuid  uid=4321 (prevuid=65534)",
            pre + "setuid    uid=4321 (-1)",                  # -EPERM
            pre + "setresuid ruid=0 euid=0 suid=0 (0)"]
    assert [ln[9:] for ln in mine] == want, mine
    assert all(re.match(TIME_RE + " ", ln) for ln in mine), mine


def check_biosnoop() -> None:
    dev, _ = _block_device()
    r = Run("biosnoop")
    name = uniq("bs_")
    pid = direct_io(r, name)
    # (as many requests as writes, unless the block layer merged two: at least half of them)
    out = r.finish(lambda o: out_has(o, f" {name} ", DIRECT_WRITES // 2))
    header_check(out, "TIME(ms)     DISK    COMM             PID    LAT(ms)")
    disks = {f"{d.split(':')[0]:>3}:{d.split(':')[1]:<3}" for d in disks_under(dev)}
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    assert len(mine) >= DIRECT_WRITES // 2, out
    times = []
    for ln in mine:
        m = re.fullmatch(r"(\d+) +(.{7}) " + re.escape(f"{name:<16} {pid:<6} ") + r" *(\d+)", ln)
        assert m and len(ln) == 12 + 1 + 7 + 1 + 16 + 1 + 6 + 1 + max(7, len(m.group(3))), ln
        assert m.group(2) in disks, (ln, disks)
        times.append(int(m.group(1)))
        assert int(m.group(3)) < 10000, ln
    assert times == sorted(times), mine


def check_biolatency() -> None:
    r = Run("biolatency")
    direct_io(r, uniq("bl_"))
    out = r.finish()
    assert out.startswith("Tracing block device I/O... Hit Ctrl-C to end.\n"), out
    b = hist_of(out, "@usecs:")
    # (the block layer may merge two of the writes into one request: bitesize saw 8 KiB ones)
    assert sum(b.values()) >= DIRECT_WRITES // 2, out
    assert "@start" not in out, out           # cleared in END


def check_bitesize() -> None:
    r = Run("bitesize")
    name = uniq("bz_")
    direct_io(r, name)
    out = r.finish()
    assert out.startswith("Tracing block device I/O... Hit Ctrl-C to end.\n"
                          "\nI/O size (bytes) histograms by process name:\n"), out
    b = hist_of(out, f"@[{name}]:")
    # each 4 KiB O_DIRECT write is one request of 4096 bytes; the file system may issue a few
    # requests of its own in the process's context (its journal, the inode), of other sizes
    assert b.get(4096, 0) >= DIRECT_WRITES // 2, out
    assert max(b, key=b.get) == 4096 and b[4096] > sum(b.values()) // 2, out


def check_writeback() -> None:
    dev, why = _block_device()
    if dev is None:
        pytest.skip(f"no block device for writeback: {why}")
    r = Run("writeback")
    name = uniq("wb_")
    path = str(ROOT / f".{name}.wb")
    # dirty 1 MiB of page cache, then syncfs(): the flusher writes it back for "sync"
    r.workload(name, "import os, sys, ctypes\n"
               "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
               "os.write(fd, b'y' * (1 << 20))\n"
               "assert ctypes.CDLL(None).syncfs(fd) == 0\n"
               "os.close(fd); os.unlink(sys.argv[1])\n", path)
    out = r.finish(lambda o: " sync " in o)
    header_check(out, "Tracing writeback... Hit Ctrl-C to end.",
                 "TIME      DEVICE   PAGES    REASON           ms")
    rows = lines_of(out, "^" + TIME_RE + r"  (\S+) +(\d+) +(\S+) +(\d+\.\d{3})$")
    assert rows, out
    sync_rows = [m for m in rows if m.group(3) == "sync"]
    assert sync_rows, out
    assert any(m.group(1) == dev for m in sync_rows), out       # the bdi of our disk
    known = {"background", "vmscan", "sync", "periodic", "laptop_timer", "fs_free_space",
             "forker_thread", "foreign_flush"}
    assert {m.group(3) for m in rows} <= known, out


BASH_SESSION = r"""
import os, pty, select, sys, time
pid, fd = pty.fork()
if pid == 0:
    os.execv("/bin/bash", ["bash", "--norc", "--noprofile", "-i"])
def drain(t):
    end = time.monotonic() + t
    while time.monotonic() < end:
        if select.select([fd], [], [], 0.05)[0]:
            try:
                os.read(fd, 4096)
            except OSError:
                return
drain(0.3)
os.write(fd, b"echo " + sys.argv[1].encode() + b"\n"); drain(0.2)
os.write(fd, b"exit\n"); drain(0.2)
os.waitpid(pid, 0)
print(pid)
"""


def check_bashreadline() -> None:
    if not run("-l", "uprobe:/bin/bash:readline").out.strip():
        pytest.skip("/bin/bash has no readline symbol to probe")
    r = Run("bashreadline")
    marker = uniq("marker_")
    _, printed = r.workload(uniq("br_"), BASH_SESSION, marker)
    bash_pid = int(printed)
    out = r.finish(lambda o: " exit\n" in o and marker in o)
    header_check(out, "Tracing bash commands... Hit Ctrl-C to end.",
                 "TIME      PID    COMMAND")
    mine = [ln for ln in out.splitlines() if re.match(TIME_RE + f"  {bash_pid:<6} ", ln)]
    assert [ln[10:] for ln in mine] == [f"{bash_pid:<6} echo {marker}", f"{bash_pid:<6} exit"], out


def check_gethostlatency() -> None:
    r = Run("gethostlatency")
    name = uniq("gh_")
    # numeric names: resolved by libc at once, no DNS needed; unique to this run
    a, b = (f"127.{int(name[-4:-2], 16)}.{int(name[-2:], 16)}.{i}" for i in (1, 2))
    pid, _ = r.workload(name, "import socket, ctypes, sys\n"
                        "socket.getaddrinfo(sys.argv[1], 80)\n"
                        "assert ctypes.CDLL(None).gethostbyname(sys.argv[2].encode())\n", a, b)
    out = r.finish(lambda o: f" {b}\n" in o)
    header_check(out, "Tracing getaddr/gethost calls... Hit Ctrl-C to end.",
                 "TIME      PID    COMM              LATms HOST")
    for host in (a, b):
        assert re.search("^" + TIME_RE + "  " + re.escape(f"{pid:<6} {name:<16} ") + r" +\d+ "
                         + re.escape(host) + "$", out, re.M), out
        line = next(ln for ln in out.splitlines() if ln.endswith(" " + host))
        assert len(line) == 10 + 6 + 1 + 16 + 1 + 6 + 1 + len(host), line


SSL_SESSION = r"""
import ssl, sys
cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
cctx.check_hostname = False
cctx.verify_mode = ssl.CERT_NONE
sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
sctx.load_cert_chain(sys.argv[1], sys.argv[2])
c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
c = cctx.wrap_bio(c_in, c_out)
s = sctx.wrap_bio(s_in, s_out, server_side=True)
done = [False, False]
for _ in range(10):                     # a TLS handshake between two in-memory ends
    for i, (o, out, peer_in) in enumerate(((c, c_out, s_in), (s, s_out, c_in))):
        if not done[i]:
            try:
                o.do_handshake()
                done[i] = True
            except ssl.SSLWantReadError:  # SSL_do_handshake returned -1: wants the peer
                pass
        data = out.read()
        if data:
            peer_in.write(data)
    if all(done):
        break
assert all(done)
c.write(b"ping")
s_in.write(c_out.read())
assert s.read(100) == b"ping"
"""


def ssl_workload(r: Run, name: str) -> int:
    import ssl  # noqa: F401  (maps libssl into this process, to check which one python uses)
    maps = Path("/proc/self/maps").read_text()
    if "libssl.so" not in maps:
        r.t.stop()
        pytest.skip(f"{sys.executable}'s ssl module does not use a shared libssl")
    openssl = shutil.which("openssl")
    if openssl is None:
        r.t.stop()
        pytest.skip("no openssl command to make a test certificate")
    with tempfile.TemporaryDirectory() as d:
        cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
                        "-days", "1", "-subj", "/CN=ptrace-test"], check=True,
                       capture_output=True)
        pid, _ = r.workload(name, SSL_SESSION, cert, key)
    return pid


def check_sslsnoop() -> None:
    r = Run("sslsnoop")
    name = uniq("sl_")
    pid = ssl_workload(r, name)
    out = r.finish(lambda o: "SSL_read_ex" in o)
    header_check(out, "Tracing SSL/TLS handshake... Hit Ctrl-C to end.",
                 "TIME(us)   TID      COMM     LAT(us)   RET FUNC")
    rows = [m.groups() for m in lines_of(
        out, r"^(\d+) +" + re.escape(f"{pid:<8} {name:<8} ") + r" *(\d+) +(-?\d+) (\S+)$")]
    calls = [(ret, fn) for _, _, ret, fn in rows]
    # client and server each fail (want the peer's data) and then succeed once
    assert calls.count(("1", "SSL_do_handshake")) == 2, out
    assert ("-1", "SSL_do_handshake") in calls, out
    assert calls[-2:] == [("1", "SSL_write_ex"), ("1", "SSL_read_ex")], out
    assert set(calls) <= {("1", "SSL_do_handshake"), ("-1", "SSL_do_handshake"),
                          ("1", "SSL_write_ex"), ("1", "SSL_read_ex")}, out
    times = [int(t) for t, _, _, _ in rows]
    assert times == sorted(times), out


def check_ssllatency() -> None:
    r = Run("ssllatency")
    ssl_workload(r, uniq("sl_"))
    out = r.finish()
    assert out.startswith("Tracing SSL/TLS handshake... Hit Ctrl-C to end.\n"
                          "\nLatency distribution in microsecond:\n"), out
    stats = {(m.group(1), m.group(2)): int(m.group(3)) for m in lines_of(
        out, r"^@(stat|statF)\[(\w+)\]: \{ \.count = (\d+), \.average = \d+, \.total = \d+ \}$")}
    assert stats.get(("stat", "SSL_do_handshake"), 0) >= 2, out
    assert stats.get(("statF", "SSL_do_handshake"), 0) >= 1, out
    assert stats.get(("stat", "SSL_write_ex"), 0) >= 1, out
    assert stats.get(("stat", "SSL_read_ex"), 0) >= 1, out
    b = hist_of(out, "@hist[SSL_do_handshake]:")
    assert sum(b.values()) == stats[("stat", "SSL_do_handshake")], out
    assert all(lo % 200 == 0 for lo in b), out       # lhist(.., 0, 1000, 200)
    assert sum(hist_of(out, "@histF[SSL_do_handshake]:").values()) \
        == stats[("statF", "SSL_do_handshake")], out


# ------------------------------------------------ tools of kernel structs and symbols


def check_naptime() -> None:
    r = Run("naptime")
    name = uniq("np_")
    # glibc's nanosleep(3) is the clock_nanosleep syscall (relative, flags 0); the
    # nanosleep syscall itself through syscall(2); an absolute sleep is left out
    pid, _ = r.workload(name, "import ctypes, time\n"
                        "libc = ctypes.CDLL(None, use_errno=True)\n"
                        "class ts(ctypes.Structure):\n"
                        "    _fields_ = [('s', ctypes.c_long), ('ns', ctypes.c_long)]\n"
                        "assert libc.nanosleep(ctypes.byref(ts(0, 123456789)), None) == 0\n"
                        "assert libc.syscall(35, ctypes.byref(ts(0, 234000000)), None) == 0\n"
                        "now = ts()\n"
                        "libc.clock_gettime(1, ctypes.byref(now))\n"
                        "t = now.s * 10**9 + now.ns + 10**6\n"
                        "assert libc.clock_nanosleep(1, 1, ctypes.byref(ts(t // 10**9, t % 10**9)), None) == 0\n")
    out = r.finish(lambda o: out_has(o, f" {name} ", 2))
    header_check(out, "Tracing sleeps. Hit Ctrl-C to end.",
                 "TIME     PPID   PCOMM            PID    COMM             SECONDS")
    me = os.getpid()
    pcomm = Path("/proc/self/comm").read_text().strip()
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    assert [ln[9:] for ln in mine] == [f"{me:<6} {pcomm:<16} {pid:<6} {name:<16} 0.123",
                                       f"{me:<6} {pcomm:<16} {pid:<6} {name:<16} 0.234"], out
    assert all(re.match(TIME_RE + " ", ln) for ln in mine), mine


def check_runqlen() -> None:
    cpu = sorted(os.sched_getaffinity(0))[-1]
    r = Run("runqlen")
    # two spinners on one CPU: while one runs the other waits, a queue of 1
    spin = (f"import os, time\nos.sched_setaffinity(0, {{{cpu}}})\n"
            "end = time.monotonic() + 0.6\nwhile time.monotonic() < end: pass\n")
    procs = [subprocess.Popen(named_workload(uniq("rl_"), spin)) for _ in range(2)]
    for p in procs:
        assert p.wait(20) == 0
    out = r.finish()
    assert out.startswith("Sampling run queue length at 99 Hertz... Hit Ctrl-C to end.\n"), out
    b = hist_of(out, "@runqlen:")
    # ~60 samples on that CPU while both spin see one task waiting (more when other work
    # shares the CPU): queues of one or more
    assert sum(c for lo, c in b.items() if lo >= 1) >= 20, out
    assert sum(b.values()) >= 50, out


def check_loads() -> None:
    from ptrace_lang.runtime.symbols import kernel_address

    if not kernel_address("avenrun"):
        # no data symbols in /proc/kallsyms (CONFIG_KALLSYMS_ALL unset): the located error
        res = run(str(TOOLS_DIR / "loads.bt"))
        assert res.rc == 1 and "Traceback" not in res.err, res.err
        assert "ERROR: Failed to resolve kernel symbol: avenrun" in res.err, res.err
        pytest.skip("this kernel's /proc/kallsyms has no avenrun (CONFIG_KALLSYMS_ALL unset): "
                    "loads fails with a located error here; the VM tier (tests/vm, Debian 6.1) "
                    "checks its load averages")
    r = Run("loads")
    before = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    out = r.finish(lambda o: o.count("load averages") >= 2, timeout=4)
    after = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    rows = lines_of(out, "^" + TIME_RE + r" load averages: (\d+\.\d{3}) (\d+\.\d{3}) (\d+\.\d{3})$")
    assert out.startswith("Reading load averages... Hit Ctrl-C to end.\n") and rows, out
    for i in range(3):
        got = float(rows[0].group(i + 1))
        assert min(before[i], after[i]) - 0.02 <= got <= max(before[i], after[i]) + 0.02, (out, before, after)


THREAD_C = r"""
#include <pthread.h>
#include <stdio.h>
void *ptrace_thread_main(void *arg) { return arg; }
int main(void)
{
    pthread_t t;
    for (int i = 0; i < 2; i++) {
        if (pthread_create(&t, 0, ptrace_thread_main, 0) != 0)
            return 1;
        pthread_join(t, 0);
    }
    getchar();      /* alive until told: the tracer names the start function from its maps */
    return 0;
}
"""


def check_threadsnoop() -> None:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no gcc to build the thread-creating test program")
    with tempfile.TemporaryDirectory() as d:
        name = uniq("th_")
        exe = os.path.join(d, name)
        Path(exe + ".c").write_text(THREAD_C)
        subprocess.run([gcc, "-O0", "-pthread", "-o", exe, exe + ".c"], check=True)
        r = Run("threadsnoop")
        p = subprocess.Popen([exe], stdin=subprocess.PIPE)
        end = time.monotonic() + 10
        while time.monotonic() < end and r.out().count(f" {name} ") < 2:
            time.sleep(0.05)
        p.communicate(b"\n", timeout=10)
        assert p.returncode == 0
        out = r.finish(lambda o: out_has(o, " ptrace_thread_main\n", 2))
    header_check(out, "TIME                PID COMM             FUNC")
    mine = [ln for ln in out.splitlines() if f" {name} " in ln]
    assert len(mine) == 2, out
    for ln in mine:
        assert re.fullmatch(r"\d\d:\d\d:\d\d\.\d{6} +\d+ " + re.escape(f"{name:<16} ptrace_thread_main"),
                            ln), ln
        assert len(ln.split(f" {name} ")[0]) == 15 + 1 + 7, ln


DROP_WORKLOAD = r"""
import random, socket, struct
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
c = socket.create_connection(srv.getsockname())
s, _ = srv.accept()
sport, dport = c.getsockname()[1], srv.getsockname()[1]
# a segment for the server's end with a sequence number far outside its window: TCP drops it
seg = struct.pack("!HHIIBBHHH", sport, dport, random.getrandbits(32), 0, 5 << 4, 0x10, 1024, 0, 0)
seg += b"ptrace-tcpdrop"
pseudo = struct.pack("!4s4sBBH", socket.inet_aton("127.0.0.1"), socket.inet_aton("127.0.0.1"),
                     0, socket.IPPROTO_TCP, len(seg))
data = pseudo + seg
total = sum(struct.unpack("!%dH" % (len(data) // 2), data[:len(data) // 2 * 2]))
if len(data) % 2:
    total += data[-1] << 8
while total >> 16:
    total = (total & 0xffff) + (total >> 16)
seg = seg[:16] + struct.pack("!H", ~total & 0xffff) + seg[18:]
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
raw.sendto(seg, ("127.0.0.1", 0))
print(sport, dport)
"""


def check_tcpdrop() -> None:
    fmt = Path("/sys/kernel/tracing/events/skb/kfree_skb/format")
    if "rx_sk" not in (fmt.read_text() if fmt.exists() else ""):
        pytest.skip("skb:kfree_skb has no rx_sk field (Linux < 6.10): tcpdrop needs it")
    r = Run("tcpdrop")
    _, ports = r.workload(uniq("td_"), DROP_WORKLOAD)
    sport, dport = (int(x) for x in ports.split())
    want = f"{dport:<6} {'127.0.0.1':>39}:{sport:<6} ESTABLISHED"
    out = r.finish(lambda o: want in o)
    header_check(out, "Tracing tcp drops. Hit Ctrl-C to end.",
                 "TIME     PID      COMM             SADDR:SPORT           DADDR:DPORT           "
                 "STATE   ")
    lines = out.splitlines()
    i = next((k for k, ln in enumerate(lines) if ln.endswith(want)), None)
    assert i is not None, out
    # PID and COMM: whoever was on the CPU (the sender, on loopback; or a softirq thread)
    assert re.fullmatch(TIME_RE + r" \d+ +.{16} " + re.escape(f"{'127.0.0.1':>39}:{want}"),
                        lines[i]), lines[i]
    # the kernel stack follows as bpftrace prints it: an empty line, then one frame a line,
    # indented by 8 spaces: TCP's input path
    assert lines[i + 1] == "", lines[i:]
    stack = []
    for ln in lines[i + 2:]:
        if not ln.startswith(" " * 8):
            break
        stack.append(ln.strip())
    assert stack and all(re.fullmatch(r"[\w.]+\+\d+", f) for f in stack), stack
    assert any(f.startswith("tcp_") for f in stack), stack


# kprobe-based tools: this kernel has no kprobes, so here they pass the verifier
# (--dry-run loads every program); tests/vm runs each against a workload on Debian's 6.1
KPROBE_TOOLS = ("biolatency-kp", "capable", "dcsnoop", "mdflush", "oomkill", "swapin",
                "tcpaccept", "tcpconnect", "tcplife", "tcpretrans", "tcpsynbl", "undump",
                "vfscount", "vfsstat", "xfsdist")


def verify_kprobe_tool(tool: str) -> None:
    res = run("--dry-run", str(TOOLS_DIR / f"{tool}.bt"))
    assert "Traceback" not in res.err, res.err
    if tool == "mdflush" and "No matches for kprobe md_flush_request." in res.err:
        # the md module is not loaded here: the located error, then the VM tier's word
        assert res.rc == 1 and "kprobe:md_flush_request" in res.err, res.err
        pytest.skip("md_flush_request is not in this kernel (the md module is not loaded): "
                    "mdflush is checked in the VM tier")
    assert res.rc == 0, res.err


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items()
          if name.startswith("check_")}


def test_every_tool_is_checked():
    assert sorted(p.stem for p in TOOLS_DIR.glob("*.bt")) == sorted([*CHECKS, *KPROBE_TOOLS])


@pytest.mark.parametrize("tool", sorted(CHECKS))
def test_tool(tool):
    CHECKS[tool]()


@pytest.mark.parametrize("tool", KPROBE_TOOLS)
def test_kprobe_tool_passes_the_verifier(tool):
    verify_kprobe_tool(tool)
