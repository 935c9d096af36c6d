#!/usr/bin/env python3
"""Compare ptrace with bpftrace on the same one-liners.

For every one-liner and both tools this measures
  startup   time from spawn to the attach line (ptrace: `Attached N probes` on
            stderr, printed after attaching; bpftrace 0.17: `Attaching N probes...`
            on stdout, printed *before* attaching, which flatters bpftrace a bit).
            ptrace's runs after the warm-up find the program in its compile cache;
  cold      the same with the cache off (PTRACE_NO_CACHE=1): ptrace compiles the script
            (bpftrace has no cache: its every start is cold, so its startup is shown)
  first event  time from spawn to the first printf line of a probe that fires all the
            time (a getppid every ~0.5 ms throughout): when the probe is really attached,
            for both tools alike
  wall      total wall time of `BEGIN { exit(); }`, spawn to reaped
  rss       peak RSS of the tool process (ru_maxrss from os.wait4)
  insns     BPF instructions of the tool's programs as the kernel holds them
            (xlated) and as the verifier walked them (verified_insns)
  ns/event  BPF run time per program run (kernel BPF stats) over a syscall loop
  +ns/call  how much slower the loop gets per call with the tool attached (all
            costs, including the tracepoint itself and perf-buffer wakeups)

The programs belonging to a tool are the ones it holds file descriptors for
(/proc/PID/fdinfo `prog_id:`); if it holds none, the programs loaded since the
tool was spawned are used instead (marked `~` in the raw output).

Everything kernel-facing is done here with ctypes (bpf(2)), no bpftool needed.

The stream row (measure_stream): printf of every call of a 500,000-call burst, delivered
lines, reported losses, the traced loop's ns per call and the tool's CPU per line.

Root is required. Run from anywhere: python3 bench/bench.py  (see bench/README.md)
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- one-liners


@dataclass
class OneLiner:
    key: str
    program: str
    workload: str  # "getppid", "read" or "none"
    fallback: str | None = None  # older spelling, tried if the tool rejects `program`
    fallback_note: str = ""  # what the older spelling changes, for the table


ONE_LINERS = [
    OneLiner("exit", "BEGIN { exit(); }", "none"),
    OneLiner("count", "tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }", "getppid"),
    OneLiner("hist", "tracepoint:syscalls:sys_enter_read { @bytes = hist(args.count); }", "read",
             fallback="tracepoint:syscalls:sys_enter_read { @bytes = hist(args->count); }",
             fallback_note="args->count"),
    OneLiner("sum_avg", "tracepoint:syscalls:sys_enter_getppid { @s = sum(pid); @a = avg(pid); }", "getppid"),
    OneLiner("printf", 'tracepoint:syscalls:sys_enter_getppid { printf("%d %s\\n", pid, comm); }', "getppid"),
    OneLiner("count_pid", "tracepoint:syscalls:sys_enter_getppid { @[pid] = count(); }", "getppid"),
    OneLiner("sum_comm", "tracepoint:syscalls:sys_enter_getppid { @[comm] = sum(pid); }", "getppid"),
    OneLiner("latency", "tracepoint:syscalls:sys_enter_read { @s[tid] = nsecs; } "
             "tracepoint:syscalls:sys_exit_read /@s[tid]/ { @h = hist(nsecs - @s[tid]); delete(@s[tid]); }",
             "read"),
    OneLiner("first", 'tracepoint:syscalls:sys_enter_getppid { printf("first\\n"); exit(); }', "spin"),
]

ATTACH_RE = re.compile(r"^(Attached|Attaching) (\d+) probes?")

# ---------------------------------------------------------------- bpf(2) via ctypes

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}.get(platform.machine())
BPF_PROG_GET_NEXT_ID = 11
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_ENABLE_STATS = 32
BPF_STATS_RUN_TIME = 0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


class _GetIdAttr(ctypes.Structure):  # start_id / prog_id, next_id, open_flags
    _fields_ = [("id", ctypes.c_uint32), ("next_id", ctypes.c_uint32), ("open_flags", ctypes.c_uint32)]


class _InfoAttr(ctypes.Structure):
    _fields_ = [("bpf_fd", ctypes.c_uint32), ("info_len", ctypes.c_uint32), ("info", ctypes.c_uint64)]


class _EnableStatsAttr(ctypes.Structure):
    _fields_ = [("type", ctypes.c_uint32)]


class BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info from linux/bpf.h (fields up to attach_btf_id)."""
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * 16), ("ifindex", ctypes.c_uint32), ("gpl_compatible", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("nr_jited_ksyms", ctypes.c_uint32), ("nr_jited_func_lens", ctypes.c_uint32),
        ("jited_ksyms", ctypes.c_uint64), ("jited_func_lens", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64), ("nr_func_info", ctypes.c_uint32),
        ("nr_line_info", ctypes.c_uint32), ("line_info", ctypes.c_uint64),
        ("jited_line_info", ctypes.c_uint64), ("nr_jited_line_info", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32), ("jited_line_info_rec_size", ctypes.c_uint32),
        ("nr_prog_tags", ctypes.c_uint32), ("prog_tags", ctypes.c_uint64),
        ("run_time_ns", ctypes.c_uint64), ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64), ("verified_insns", ctypes.c_uint32),
        ("attach_btf_obj_id", ctypes.c_uint32), ("attach_btf_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32),
    ]


assert ctypes.sizeof(BpfProgInfo) == 232 and BpfProgInfo.run_time_ns.offset == 192


def _bpf(cmd: int, attr: ctypes.Structure) -> int:
    if _SYS_BPF is None:
        raise OSError(f"bpf(2) syscall number unknown for {platform.machine()}")
    ret = _libc.syscall(_SYS_BPF, cmd, ctypes.byref(attr), ctypes.sizeof(attr))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def all_prog_ids() -> set[int]:
    ids, attr = set(), _GetIdAttr()
    while True:
        attr.next_id = 0
        try:
            _bpf(BPF_PROG_GET_NEXT_ID, attr)
        except OSError:  # ENOENT: no more
            return ids
        ids.add(attr.next_id)
        attr.id = attr.next_id


def prog_info(prog_id: int) -> BpfProgInfo | None:
    try:
        fd = _bpf(BPF_PROG_GET_FD_BY_ID, _GetIdAttr(id=prog_id))
    except OSError:  # gone already
        return None
    try:
        info = BpfProgInfo()
        _bpf(BPF_OBJ_GET_INFO_BY_FD, _InfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info),
                                                info=ctypes.addressof(info)))
        return info
    finally:
        os.close(fd)


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


class BpfStats:
    """Kernel BPF run-time statistics on while this object lives."""

    def __init__(self):
        self.fd = None
        self.sysctl_old = None
        try:
            self.fd = _bpf(BPF_ENABLE_STATS, _EnableStatsAttr(type=BPF_STATS_RUN_TIME))
        except OSError:
            path = Path("/proc/sys/kernel/bpf_stats_enabled")
            self.sysctl_old = path.read_text().strip()
            path.write_text("1\n")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.sysctl_old is not None:
            Path("/proc/sys/kernel/bpf_stats_enabled").write_text(self.sysctl_old + "\n")
            self.sysctl_old = None


def process_tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{tid}/children").read_text().split()
                todo.extend(int(c) for c in children)
        except OSError:
            pass
    return pids


def held_prog_ids(pid: int) -> set[int]:
    """Programs (and links' programs) the process tree of `pid` holds fds for."""
    ids = set()
    for p in process_tree(pid):
        try:
            names = os.listdir(f"/proc/{p}/fdinfo")
        except OSError:
            continue
        for name in names:
            try:
                text = Path(f"/proc/{p}/fdinfo/{name}").read_text()
            except OSError:
                continue
            match = re.search(r"^prog_id:\s*(\d+)", text, re.M)
            if match:
                ids.add(int(match.group(1)))
    return ids


# ---------------------------------------------------------------- running a tool


class ToolError(Exception):
    pass


@dataclass
class Tool:
    name: str
    argv: list[str]
    cwd: Path | None = None
    env: dict | None = None


@dataclass
class Run:
    startup_s: float | None = None
    startup_cold_s: float | None = None
    first_event_s: float | None = None
    wall_s: float | None = None
    rss_kb: int | None = None
    progs: list[dict] = field(default_factory=list)
    progs_exact: bool = True
    ns_per_event: float | None = None
    events: int | None = None
    extra_ns_per_call: float | None = None
    program_text: str = ""


class Spawned:
    def __init__(self, tool: Tool, args: list[str]):
        self.t0 = time.monotonic()
        self.t0_boot = boottime_ns()
        self.proc = subprocess.Popen(
            [*tool.argv, *args], cwd=tool.cwd, env=tool.env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.attach_time: float | None = None
        self.first_line_time: float | None = None
        self.attached = threading.Event()
        self.out_head: list[str] = []
        self.err_head: list[str] = []
        self.out_lines = 0
        self.status = None
        self.rusage = None
        self.end_time = None
        self.readers = [threading.Thread(target=self._read, args=(s, h), daemon=True)
                        for s, h in ((self.proc.stdout, self.out_head), (self.proc.stderr, self.err_head))]
        for r in self.readers:
            r.start()

    def _read(self, stream, head: list[str]) -> None:
        for raw in stream:
            now = time.monotonic()
            line = raw.decode(errors="replace")
            if stream is self.proc.stdout:
                self.out_lines += 1
                if self.first_line_time is None and not ATTACH_RE.match(line):
                    self.first_line_time = now
            if len(head) < 200:
                head.append(line)
            if not self.attached.is_set() and ATTACH_RE.match(line):
                self.attach_time = now
                self.attached.set()

    def describe(self) -> str:
        text = "".join(self.err_head).strip() or "".join(self.out_head).strip()
        lines = [l for l in text.splitlines() if "RLIMIT_MEMLOCK" not in l]
        return " | ".join(lines[-3:]) if lines else "(no output)"

    def poll(self) -> bool:
        if self.status is None:
            pid, status, rusage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                self.end_time = time.monotonic()
                self.status, self.rusage = status, rusage
                self.proc.returncode = os.waitstatus_to_exitcode(status)
        return self.status is not None

    def wait_attached(self, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while not self.attached.wait(0.001):
            if self.poll():
                for r in self.readers:
                    r.join(2)
                if self.attached.is_set():
                    break
                raise ToolError(f"exited with {self.proc.returncode} before attaching: {self.describe()}")
            if time.monotonic() > deadline:
                raise ToolError(f"no attach line within {timeout:.0f}s: {self.describe()}")
        return self.attach_time - self.t0

    def interrupt(self, timeout: float) -> None:
        """Ctrl-C, repeated every 5 s: a SIGINT that lands while bpftrace 0.17 is
        still attaching (it prints its line first) can go unnoticed."""
        self.proc.send_signal(signal.SIGINT)
        self.wait_exit(timeout, resend=5.0)

    def wait_exit(self, timeout: float, resend: float | None = None) -> None:
        deadline = time.monotonic() + timeout
        next_signal = time.monotonic() + resend if resend else None
        while not self.poll():
            now = time.monotonic()
            if now > deadline:
                self.kill()
                raise ToolError(f"did not exit within {timeout:.0f}s")
            if next_signal and now > next_signal:
                self.proc.send_signal(signal.SIGINT)
                next_signal = now + resend
            time.sleep(0.001)
        for r in self.readers:
            r.join(5)

    def kill(self) -> None:
        if not self.poll():
            self.proc.kill()
            while not self.poll():
                time.sleep(0.001)


# ---------------------------------------------------------------- workloads


def run_workload(kind: str, events: int) -> float:
    """Run the syscall loop in a child; return its wall time in seconds."""
    if kind == "getppid":
        argv = [sys.executable, "-c",
                f"import os\nfor _ in range({events}): os.getppid()\n"]
    elif kind == "read":
        argv = ["dd", "if=/dev/zero", "of=/dev/null", "bs=1", f"count={events}", "status=none"]
    else:
        return 0.0
    t0 = time.monotonic()
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def baseline_ns_per_call(kind: str, events: int, repeat: int = 3) -> float:
    return min(run_workload(kind, events) for _ in range(repeat)) * 1e9 / events


# ---------------------------------------------------------------- measuring


def measure(tool: Tool, one: OneLiner, program: str, events: int, baseline: dict,
            timeout: float, kernel: bool) -> Run:
    run = Run(program_text=program)
    if kernel and one.workload not in ("none", "spin"):
        # untraced loop right before the traced one: neighbours' load drifts
        baseline = {one.workload: baseline_ns_per_call(one.workload, events, repeat=2)}
    before_ids = all_prog_ids()
    if one.workload == "spin":
        return measure_first_event(tool, program, timeout, before_ids)
    if kernel and one.workload != "none":
        if tool.name == "ptrace":
            cold = Spawned(Tool(tool.name, tool.argv, tool.cwd, {**(tool.env or os.environ),
                                                                  "PTRACE_NO_CACHE": "1"}),
                           ["-e", program])
            try:
                run.startup_cold_s = cold.wait_attached(timeout)
                cold.interrupt(timeout)
            finally:
                cold.kill()
            settle(before_ids)
    spawned = Spawned(tool, ["-e", program])
    try:
        if one.workload == "none":
            spawned.wait_exit(timeout)
            run.wall_s = spawned.end_time - spawned.t0
            if spawned.proc.returncode != 0:
                raise ToolError(f"exit code {spawned.proc.returncode}: {spawned.describe()}")
            if spawned.attach_time is not None:
                run.startup_s = spawned.attach_time - spawned.t0
        else:
            run.startup_s = spawned.wait_attached(timeout)
            settle_deadline = time.monotonic() + 2.0
            ids = held_prog_ids(spawned.proc.pid)
            while not ids and time.monotonic() < settle_deadline:
                time.sleep(0.01)
                ids = held_prog_ids(spawned.proc.pid)
            time.sleep(0.05)  # bpftrace 0.17 prints its line before attaching
            if kernel:
                if not ids:
                    run.progs_exact = False
                    ids = {i for i in all_prog_ids() - before_ids
                           if (info := prog_info(i)) and info.load_time >= spawned.t0_boot}
                infos = [i for i in (prog_info(x) for x in sorted(ids)) if i is not None]
                run.progs = [{"id": i.id, "name": i.name.decode(errors="replace"), "type": i.type,
                              "xlated": i.xlated_prog_len // 8, "verified": i.verified_insns,
                              "jited_bytes": i.jited_prog_len} for i in infos]
                stats = BpfStats()
                try:
                    start = {i.id: (i.run_time_ns, i.run_cnt) for i in infos}
                    took = run_workload(one.workload, events)
                    time.sleep(0.05)
                    d_ns = d_cnt = 0
                    for pid_ in start:
                        info = prog_info(pid_)
                        if info is not None:
                            d_ns += info.run_time_ns - start[pid_][0]
                            d_cnt += info.run_cnt - start[pid_][1]
                finally:
                    stats.close()
                if d_cnt:
                    run.ns_per_event = d_ns / d_cnt
                    run.events = d_cnt
                run.extra_ns_per_call = took * 1e9 / events - baseline[one.workload]
            else:
                run_workload(one.workload, events)
            spawned.interrupt(timeout)
            if spawned.proc.returncode not in (0, -signal.SIGINT, 130):
                raise ToolError(f"exit code {spawned.proc.returncode} after SIGINT: {spawned.describe()}")
    finally:
        spawned.kill()
        settle(before_ids)
    run.rss_kb = spawned.rusage.ru_maxrss if spawned.rusage else None
    if run.startup_cold_s is None and tool.name != "ptrace":
        run.startup_cold_s = run.startup_s      # no compile cache: every start is cold
    return run


def settle(before_ids: set[int], limit: float = 3.0) -> None:
    """Wait until the programs of the last run are gone from the kernel (ptrace closes its
    perf events in a background process after exiting): the next start must not queue
    behind the teardown of the previous one in the kernel's tracepoint locks."""
    deadline = time.monotonic() + limit
    while all_prog_ids() - before_ids and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)


def measure_first_event(tool: Tool, program: str, timeout: float, before_ids: set[int]) -> Run:
    run = Run(program_text=program)
    # a getppid every ~0.5 ms: the probe fires within a millisecond of being attached, and the
    # loop leaves the CPUs to the tool (a busy loop slows both tools' start-up 2-3x here)
    spinner = subprocess.Popen([sys.executable, "-c",
                                "import os, time\nwhile True:\n os.getppid()\n time.sleep(0.0005)\n"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        time.sleep(0.05)
        spawned = Spawned(tool, ["-e", program])
        try:
            spawned.wait_exit(timeout)
            if spawned.first_line_time is None:
                raise ToolError(f"no printf line before exiting: {spawned.describe()}")
            run.first_event_s = spawned.first_line_time - spawned.t0
        finally:
            spawned.kill()
        run.rss_kb = spawned.rusage.ru_maxrss if spawned.rusage else None
    finally:
        spinner.kill()
        spinner.wait()
        settle(before_ids)
    return run


def measure_tool(tool: Tool, one: OneLiner, runs: int, events: int, baseline: dict,
                 timeout: float) -> tuple[list[Run], str | None]:
    """`runs` measured runs after one warm-up run (page cache, .pyc files)."""
    program = one.program
    results: list[Run] = []
    for attempt in range(runs + 1):
        try:
            try:
                run = measure(tool, one, program, events, baseline, timeout, kernel=attempt > 0)
            except ToolError as exc:
                if attempt > 0 or not one.fallback:
                    raise
                program = one.fallback
                try:
                    run = measure(tool, one, program, events, baseline, timeout, kernel=False)
                except ToolError as exc2:
                    raise ToolError(f"{exc2} [with the older spelling; with `{one.program}`: {exc}]") from None
        except ToolError as exc:
            return results, str(exc)
        except OSError as exc:
            return results, f"{type(exc).__name__}: {exc}"
        if attempt > 0:
            results.append(run)
    return results, None


# ---------------------------------------------------------------- summary


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


@dataclass
class Cell:
    value: float | None
    text: str


def metrics_for(one: OneLiner) -> list[str]:
    if one.workload == "none":
        return ["wall", "rss"]
    if one.workload == "spin":
        return ["first_event"]
    return ["startup", "startup_cold", "rss", "xlated", "verified", "ns_event", "extra_ns_call"]


def summarize(runs: list[Run], one: OneLiner) -> dict[str, Cell]:
    cells: dict[str, Cell] = {}

    def put(metric, value, fmt):
        cells[metric] = Cell(value, fmt(value) if value is not None else "n/a")

    if one.workload == "none":
        put("wall", median(r.wall_s for r in runs), lambda v: f"{v * 1000:.0f} ms")
    elif one.workload == "spin":
        put("first_event", median(r.first_event_s for r in runs), lambda v: f"{v * 1000:.0f} ms")
        return cells
    else:
        put("startup", median(r.startup_s for r in runs), lambda v: f"{v * 1000:.0f} ms")
        put("startup_cold", median(r.startup_cold_s for r in runs), lambda v: f"{v * 1000:.0f} ms")
    rss = [r.rss_kb for r in runs if r.rss_kb]
    put("rss", max(rss) / 1024 if rss else None, lambda v: f"{v:.1f} MiB")
    if one.workload != "none":
        progs = runs[0].progs if runs else []
        put("xlated", sum(p["xlated"] for p in progs) if progs else None, lambda v: f"{v:.0f}")
        put("verified", sum(p["verified"] for p in progs) if progs else None, lambda v: f"{v:.0f}")
        put("ns_event", median(r.ns_per_event for r in runs), lambda v: f"{v:.0f} ns")
        put("extra_ns_call", median(r.extra_ns_per_call for r in runs), lambda v: f"{v:.0f} ns")
    return cells


METRIC_TITLES = {
    "wall": "wall time, spawn to exit",
    "startup": "startup to attach line",
    "startup_cold": "startup, no compile cache",
    "first_event": "spawn to first event (really attached)",
    "rss": "peak RSS",
    "xlated": "BPF insns (xlated)",
    "verified": "BPF insns verified",
    "ns_event": "BPF ns/event",
    "extra_ns_call": "+ns per syscall (end to end)",
}


def ratio(a: Cell | None, b: Cell | None) -> str:
    if a is None or b is None or a.value is None or b.value is None:
        return "n/a"
    if b.value == 0:
        return "n/a" if a.value else "1.00"
    return f"{a.value / b.value:.2f}"


def markdown_table(results, tools: list[str]) -> str:
    show_ratio = tools == ["ptrace", "bpftrace"]
    head = ["one-liner", "metric", *tools] + (["ptrace/bpftrace"] if show_ratio else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for one in ONE_LINERS:
        per_tool = {t: results[t][one.key]["cells"] for t in tools if one.key in results[t]}
        if not per_tool:
            continue
        for i, metric in enumerate(metrics_for(one)):
            first = f"`{one.program}`"
            for t in tools:
                runs = results[t][one.key]["runs"]
                if runs and runs[0].program_text != one.program:
                    first += f" ({t}: `{one.fallback_note or runs[0].program_text}`)"
            row = [first if i == 0 else "", METRIC_TITLES[metric]]
            row += [per_tool.get(t, {}).get(metric, Cell(None, "n/a")).text for t in tools]
            if show_ratio:
                row.append(ratio(per_tool["ptrace"].get(metric), per_tool["bpftrace"].get(metric)))
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the stream row

STREAM_PROGRAM = 'tracepoint:syscalls:sys_enter_getppid /pid == $1/ { printf("%d %s\\n", tid, comm); }'
STREAM_EVENTS = 500_000
# the traced loop: waits for a line, calls getppid() N times, prints the loop's time in ns
_STREAM_LOOP = ("import os, sys, time\ng = os.getppid\nn = {n}\nprint('ready', flush=True)\nsys.stdin.readline()\n"
                "t0 = time.perf_counter_ns()\nfor _ in range(n): g()\n"
                "print(time.perf_counter_ns() - t0, flush=True)\nsys.stdin.readline()\n")


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far (schedstat: ns on a CPU)."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pass
    return total


def _stream_loop(n: int, cpu: int) -> subprocess.Popen:
    wl = subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", _STREAM_LOOP.format(n=n)],
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    if wl.stdout.readline() != "ready\n":       # (running python, not taskset any more)
        wl.kill()
        raise ToolError("the loop did not start")
    return wl


def _stream_go(wl: subprocess.Popen) -> int:
    wl.stdin.write("go\n")
    wl.stdin.flush()
    return int(wl.stdout.readline())


def _stream_end(wl: subprocess.Popen) -> None:
    try:
        wl.stdin.write("end\n")
        wl.stdin.close()
    except OSError:
        pass
    try:
        wl.wait(10)
    except subprocess.TimeoutExpired:
        wl.kill()
        wl.wait()


def stream_baseline(events: int, cpu: int = 1) -> float:
    """ns per getppid() of the untraced loop on ``cpu``."""
    best = None
    for _ in range(2):
        wl = _stream_loop(events, cpu)
        try:
            ns = _stream_go(wl)
        finally:
            _stream_end(wl)
        best = ns if best is None else min(best, ns)
    return best / events


def measure_stream(tool: Tool, events: int, timeout: float, tool_cpu: int = 0, load_cpu: int = 1) -> dict:
    """printf of every getppid() of an ``events``-call burst of one process, the tool on
    ``tool_cpu``, the loop on ``load_cpu``, the output to a file: lines delivered, losses
    the tool reported, the loop's ns per call, the tool's CPU time per delivered line (every
    thread of it, from the burst's start until its output stopped growing)."""
    import tempfile

    before_ids = all_prog_ids()
    wl = _stream_loop(events, load_cpu)
    out = tempfile.TemporaryFile()
    sp = None
    try:
        comm = Path(f"/proc/{wl.pid}/comm").read_text().strip()
        sp = subprocess.Popen(["taskset", "-c", str(tool_cpu), *tool.argv, "-e", STREAM_PROGRAM, str(wl.pid)],
                              cwd=tool.cwd, env=tool.env, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.PIPE)
        err_lines: list[str] = []
        reader = threading.Thread(target=lambda: err_lines.extend(l.decode(errors="replace") for l in sp.stderr),
                                  daemon=True)
        reader.start()
        deadline = time.monotonic() + timeout
        while True:
            out.seek(0)
            head = out.read(200).decode(errors="replace")
            if any(ATTACH_RE.match(l) for l in err_lines) or ATTACH_RE.match(head):
                break
            if sp.poll() is not None or time.monotonic() > deadline:
                raise ToolError(f"no attach line: {''.join(err_lines)[-300:]}")
            time.sleep(0.01)
        time.sleep(0.5)          # bpftrace 0.17 prints its line before attaching
        cpu0 = _cpu_ns(sp.pid)
        size0 = os.fstat(out.fileno()).st_size
        loop_ns = _stream_go(wl)
        # the tool is done when its output stops growing (or it has printed every line)
        expect = size0 + events * (len(f"{wl.pid} {comm}\n"))
        last, still = -1, time.monotonic()
        while time.monotonic() < deadline:
            size = os.fstat(out.fileno()).st_size
            if size >= expect:
                break
            if size != last:
                last, still = size, time.monotonic()
            elif time.monotonic() - still > 1.0:
                break
            time.sleep(0.02)
        cpu1 = _cpu_ns(sp.pid)
        sp.send_signal(signal.SIGINT)
        try:
            sp.wait(timeout)
        except subprocess.TimeoutExpired:
            sp.kill()
            sp.wait()
        reader.join(5)
        out.seek(0)
        text = out.read().decode(errors="replace")
    finally:
        _stream_end(wl)
        if sp is not None and sp.poll() is None:
            sp.kill()
            sp.wait()
        out.close()
        settle(before_ids)
    line = f"{wl.pid} {comm}"
    delivered = sum(1 for l in text.splitlines() if l == line)
    lost = sum(int(m) for m in re.findall(r"^Lost (\d+) events", text + "".join(err_lines), re.M))
    return {"delivered": delivered, "events": events, "lost": lost,
            "loop_ns_per_call": loop_ns / events,
            "cpu_ns_per_line": (cpu1 - cpu0) / delivered if delivered else None,
            "cpu_ms": (cpu1 - cpu0) / 1e6}


def stream_table(stream: dict, baseline_ns: float) -> str:
    tools = list(stream)
    two = len(tools) == 2
    lines = ["| " + " | ".join(["stream", "metric", *tools] + (["ptrace/bpftrace"] if two else [])) + " |",
             "|" + "---|" * (len(tools) + 2 + two)]
    rows = [
        ("delivered", lambda r: 100.0 * r["delivered"] / r["events"], lambda v: f"{v:.1f}%"),
        ("lost (reported)", lambda r: r["lost"], lambda v: f"{v:,}"),
        ("traced loop ns per call", lambda r: r["loop_ns_per_call"], lambda v: f"{v:,.0f} ns"),
        ("+ns per call (vs untraced)", lambda r: r["loop_ns_per_call"] - baseline_ns, lambda v: f"{v:,.0f} ns"),
        ("tool CPU per delivered line", lambda r: r["cpu_ns_per_line"], lambda v: f"{v:,.0f} ns"),
    ]
    for i, (title, get, fmt) in enumerate(rows):
        vals = []
        for t in tools:
            r = stream[t]
            v = get(r) if "error" not in r else None
            vals.append(v)
        row = [f"`{STREAM_PROGRAM}`, {stream[tools[0]].get('events', STREAM_EVENTS):,} calls "
               f"(tool on CPU0, loop on CPU1)" if i == 0 else "", title,
               *[fmt(v) if v is not None else "n/a" for v in vals]]
        if two:
            a, b = vals
            row.append(f"{a / b:.3f}" if a is not None and b else "n/a")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- main


MASS_PROGRAM = "tracepoint:syscalls:sys_enter_* { @[probe] = count(); }"


def measure_mass(tool: Tool, timeout: float) -> dict:
    """Attach every syscalls:sys_enter_* tracepoint; time to attached and exit after Ctrl-C.
    Runs once per tool (bpftrace 0.17 takes tens of seconds to exit here)."""
    sp = Spawned(tool, ["-e", MASS_PROGRAM])
    try:
        attach = sp.wait_attached(timeout)
        time.sleep(1.0)
        t_int = time.monotonic()
        sp.interrupt(max(timeout, 120))
        return {"attach_s": attach, "exit_s": sp.end_time - t_int,
                "probes": next((int(m.group(1)) for line in sp.err_head + sp.out_head
                                for m in [re.search(r"Attach\w* (\d+) probe", line)] if m), None)}
    except ToolError as exc:
        sp.kill()
        return {"error": str(exc)}


def mass_table(mass: dict) -> str:
    tools = list(mass)
    lines = ["| " + " | ".join(["many probes", "metric", *tools] + (["ptrace/bpftrace"] if len(tools) == 2 else []))
             + " |", "|" + "---|" * (len(tools) + 2 + (len(tools) == 2))]
    for key, title in (("attach_s", "spawn to attach line"), ("exit_s", "exit after Ctrl-C")):
        cells = [f"{mass[t][key] * 1000:.0f} ms" if key in mass[t] else "n/a" for t in tools]
        row = [f"`{MASS_PROGRAM}` ({mass[tools[0]].get('probes')} probes)" if key == "attach_s" else "",
               title, *cells]
        if len(tools) == 2:
            a, b = (mass[t].get(key) for t in tools)
            row.append(f"{a / b:.2f}" if a and b else "n/a")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


GROWTH_SIZES = (10, 100, 1000)


def measure_growth(tools: list[Tool], sizes, cap: float) -> dict:
    """Compile time as a script grows: N tracepoint blocks (bench/gen_blocks.py: a predicate,
    a keyed count, a hist and a printf each). Per tool and N, wall seconds of
      compile   ptrace `--dry-run` (compile, create maps, load through the verifier, attach
                nothing; compile cache off); bpftrace 0.17 has no dry run that loads:
                `--emit-elf` (compile to an ELF, no verifier)
      full      the script with `BEGIN { exit(); }` in front, run to its exit: compile, load,
                attach every block, detach (both tools alike)
    A run longer than ``cap`` seconds is killed and reported as "> cap"."""
    sys.path.insert(0, str(ROOT / "bench"))
    import tempfile

    from gen_blocks import script

    out: dict = {t.name: {} for t in tools}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            body = script(n)
            plain, full = Path(tmp, f"b{n}.bt"), Path(tmp, f"e{n}.bt")
            plain.write_text(body)
            full.write_text("BEGIN { exit(); }\n" + body)
            for tool in tools:
                env = dict(tool.env or os.environ, PTRACE_NO_CACHE="1")
                dry = (["--dry-run", str(plain)] if tool.name == "ptrace"
                       else ["--emit-elf", str(Path(tmp, "out.elf")), str(plain)])
                row = {}
                for kind, args in (("compile", dry), ("full", [str(full)])):
                    t0 = time.monotonic()
                    try:
                        proc = subprocess.run([*tool.argv, *args], cwd=tool.cwd, env=env,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                              timeout=cap)
                        row[kind] = time.monotonic() - t0 if proc.returncode == 0 else None
                        if proc.returncode:
                            row[kind + "_error"] = proc.stderr.decode(errors="replace")[-300:]
                    except subprocess.TimeoutExpired:
                        row[kind] = float("inf")
                out[tool.name][n] = row
                print(f"{tool.name:8s} growth {n:5d} blocks  " + "  ".join(
                    f"{k} {_growth_cell(row.get(k), cap)}" for k in ("compile", "full")), flush=True)
    return out


def _growth_cell(v, cap: float) -> str:
    if v is None:
        return "failed"
    return f"> {cap:.0f} s" if v == float("inf") else f"{v:.2f} s"


def growth_table(growth: dict, cap: float) -> str:
    tools = list(growth)
    sizes = sorted({n for t in tools for n in growth[t]})
    head = ["blocks"] + [f"{t} {k}" for t in tools for k in ("compile", "full")]
    both = len(tools) == 2
    if both:
        head.append("ptrace/bpftrace full")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in sizes:
        row = [str(n)]
        for t in tools:
            for k in ("compile", "full"):
                row.append(_growth_cell(growth[t].get(n, {}).get(k), cap))
        if both:
            a, b = (growth[t].get(n, {}).get("full") for t in tools)
            row.append(f"{a / b:.2f}" if a and b and b != float("inf") else
                       (f"< {a / cap:.2f}" if a and b == float("inf") else "n/a"))
        lines.append("| " + " | ".join(row) + " |")
    lines.append("\n(compile: ptrace --dry-run, which loads every program through the verifier; "
                 "bpftrace 0.17 --emit-elf, which compiles only. full: `BEGIN { exit(); }` first, "
                 "spawn to exit.)")
    return "\n".join(lines)


def ptrace_env() -> dict:
    # Let Python cache bytecode (.pyc) as an installed ptrace would have it;
    # PYTHONDONTWRITEBYTECODE=1 would make every start recompile every module.
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def default_ptrace() -> Tool:
    return Tool("ptrace", [sys.executable, "-m", "ptrace_lang"], cwd=ROOT, env=ptrace_env())


def tool_version(tool: Tool) -> str:
    try:
        proc = subprocess.run([*tool.argv, "-V"], cwd=tool.cwd, capture_output=True, text=True, timeout=30)
        return (proc.stdout.strip() or proc.stderr.strip()).splitlines()[-1][:80]
    except Exception as exc:  # noqa: BLE001 - only for the report
        return f"unknown ({exc.__class__.__name__})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5,
                        help="measured runs per one-liner and tool, after one warm-up run (median; default 5)")
    parser.add_argument("--events", type=int, default=200_000, help="syscalls in the workload loop (default 200000)")
    parser.add_argument("--ptrace", default=None,
                        help="command for ptrace (default: python3 -m ptrace_lang in the checkout; "
                             "e.g. --ptrace ptrace for the installed command)")
    parser.add_argument("--bpftrace", default="bpftrace", help="command for bpftrace (default: bpftrace)")
    parser.add_argument("--only", choices=["ptrace", "bpftrace"], help="measure one tool only")
    parser.add_argument("--filter", help="only one-liners whose key contains this (exit,count,hist,sum_avg,printf,count_pid,sum_comm,latency,first; stream: the stream row only)")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds allowed to attach and to exit")
    parser.add_argument("--json", metavar="FILE", help="also write every raw number to FILE")
    parser.add_argument("--no-mass", action="store_true",
                        help="skip attaching all syscalls:sys_enter_* tracepoints (bpftrace 0.17 needs ~30 s to exit)")
    parser.add_argument("--stream-events", type=int, default=STREAM_EVENTS,
                        help=f"calls in the stream row's burst (default {STREAM_EVENTS}; 0: no stream row)")
    parser.add_argument("--growth", nargs="?", const=",".join(map(str, GROWTH_SIZES)), metavar="N,N,...",
                        help="only measure compile time growth: scripts of N tracepoint blocks "
                             "(bench/gen_blocks.py; default 10,100,1000)")
    parser.add_argument("--growth-cap", type=float, default=300.0,
                        help="seconds after which a growth run is killed (default 300)")
    args = parser.parse_args(argv)

    if os.geteuid() != 0:
        print("bench.py: needs root (BPF programs, BPF stats)", file=sys.stderr)
        return 2

    tools: list[Tool] = []
    if args.only != "bpftrace":
        tools.append(Tool("ptrace", shlex.split(args.ptrace), env=ptrace_env()) if args.ptrace
                     else default_ptrace())
    if args.only != "ptrace":
        argv_b = shlex.split(args.bpftrace)
        if shutil.which(argv_b[0]) is None:
            print(f"bench.py: {argv_b[0]} not found; measuring ptrace only", file=sys.stderr)
        else:
            tools.append(Tool("bpftrace", argv_b))
    names = [t.name for t in tools]
    if args.growth:
        growth = measure_growth(tools, [int(x) for x in args.growth.split(",")], args.growth_cap)
        print()
        print(growth_table(growth, args.growth_cap))
        if args.json:
            Path(args.json).write_text(json.dumps({"growth": {t: {str(n): r for n, r in g.items()}
                                                              for t, g in growth.items()}},
                                                  indent=1, default=str))
        return 0
    one_liners = [o for o in ONE_LINERS if not args.filter or args.filter in o.key]
    do_stream = args.stream_events > 0 and (not args.filter or args.filter in "stream")

    print(f"# bench: {platform.node()} {platform.release()} {platform.machine()}, {os.cpu_count()} CPUs, "
          f"{args.runs} runs, {args.events} syscalls per loop")
    for tool in tools:
        print(f"#   {tool.name}: {' '.join(tool.argv)}  [{tool_version(tool)}]")

    baseline = {kind: baseline_ns_per_call(kind, args.events) for kind in ("getppid", "read")}
    print(f"#   untraced loop: getppid {baseline['getppid']:.0f} ns/call, read(1 byte) {baseline['read']:.0f} ns/call")
    print(flush=True)

    results = {t.name: {} for t in tools}
    errors = []
    for one in one_liners:
        for tool in tools:
            t0 = time.monotonic()
            runs, error = measure_tool(tool, one, args.runs, args.events, baseline, args.timeout)
            cells = summarize(runs, one) if runs else {}
            results[tool.name][one.key] = {"runs": runs, "cells": cells, "error": error}
            if error:
                errors.append(f"{tool.name} `{one.program}`: {error}")
            progs = runs[0].progs if runs else []
            prog_text = ", ".join(f"{p['name'] or '?'}:{p['xlated']}/{p['verified']}" for p in progs)
            if runs and not runs[0].progs_exact:
                prog_text = "~" + prog_text
            raw = "; ".join(f"{c.text}" for c in cells.values())
            used = runs[0].program_text if runs else one.program
            print(f"{tool.name:8s} {one.key:8s} {time.monotonic() - t0:5.1f}s  {raw or 'n/a'}"
                  + (f"  progs(name:xlated/verified)=[{prog_text}]" if prog_text else "")
                  + (f"  [ran: {used}]" if used != one.program else "")
                  + (f"  ERROR: {error}" if error else ""), flush=True)

    stream = {}
    if do_stream:
        stream_base = stream_baseline(args.stream_events)
        for tool in tools:
            try:
                stream[tool.name] = measure_stream(tool, args.stream_events, max(args.timeout, 120))
            except (ToolError, OSError) as exc:
                stream[tool.name] = {"error": str(exc)}
            print(f"{tool.name:8s} stream   {stream[tool.name]}", flush=True)

    mass = {}
    if not args.no_mass and not args.filter:
        for tool in tools:
            mass[tool.name] = measure_mass(tool, args.timeout)
            print(f"{tool.name:8s} mass     {mass[tool.name]}", flush=True)
            time.sleep(20)  # let the closes of the previous run finish in the kernel

    print()
    print(markdown_table(results, names))
    if stream:
        print()
        print(stream_table(stream, stream_base))
        print(f"(untraced loop: {stream_base:.0f} ns per call)")
    if mass:
        print()
        print(mass_table(mass))
    if errors:
        print("\nErrors (n/a above):")
        for e in errors:
            print(f"- {e}")
    print("\nNotes: medians of the runs (after a warm-up run); ratio < 1 means ptrace is smaller/faster. bpftrace 0.17 prints its "
          "attach line before attaching, ptrace after. BPF ns/event is the kernel's run_time_ns/run_cnt "
          "summed over the tool's programs (bpf_stats); +ns per syscall is the loop's slowdown per call "
          "against an untraced run.")

    if args.json:
        dump = {
            tool: {key: {"error": v["error"], "runs": [r.__dict__ for r in v["runs"]],
                         "summary": {m: c.value for m, c in v["cells"].items()}}
                   for key, v in per.items()}
            for tool, per in results.items()
        }
        Path(args.json).write_text(json.dumps({"baseline_ns_per_call": baseline, "results": dump,
                                               "stream": stream}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
