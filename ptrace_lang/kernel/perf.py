"""perf_event_open(2) for tracepoints, software and hardware events, + ioctls."""

from __future__ import annotations

from . import cty

from .sys import (
    PERF_ATTR_FLAG_FREQ,
    PerfEventAttr,
    perf_event_open,
)

__all__ = [
    "tracepoint_event",
    "software_event",
    "hardware_event",
    "open_event",
    "uprobe_event",
    "kprobe_event",
    "probe_pmu",
    "ioctl_enable",
    "ioctl_disable",
    "ioctl_set_bpf",
]

# enum perf_type_id
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5

# enum perf_hw_id
PERF_COUNT_HW_CPU_CYCLES = 0
PERF_COUNT_HW_INSTRUCTIONS = 1
PERF_COUNT_HW_CACHE_REFERENCES = 2
PERF_COUNT_HW_CACHE_MISSES = 3
PERF_COUNT_HW_BRANCH_INSTRUCTIONS = 4
PERF_COUNT_HW_BRANCH_MISSES = 5
PERF_COUNT_HW_BUS_CYCLES = 6
PERF_COUNT_HW_STALLED_CYCLES_FRONTEND = 7
PERF_COUNT_HW_STALLED_CYCLES_BACKEND = 8
PERF_COUNT_HW_REF_CPU_CYCLES = 9

# enum perf_sw_ids
PERF_COUNT_SW_CPU_CLOCK = 0
PERF_COUNT_SW_TASK_CLOCK = 1
PERF_COUNT_SW_PAGE_FAULTS = 2
PERF_COUNT_SW_CONTEXT_SWITCHES = 3
PERF_COUNT_SW_CPU_MIGRATIONS = 4
PERF_COUNT_SW_PAGE_FAULTS_MIN = 5
PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6
PERF_COUNT_SW_ALIGNMENT_FAULTS = 7
PERF_COUNT_SW_EMULATION_FAULTS = 8
PERF_COUNT_SW_DUMMY = 9
PERF_COUNT_SW_BPF_OUTPUT = 10
PERF_COUNT_SW_CGROUP_SWITCHES = 11

# ioctl requests: _IO('$', n) / _IOW('$', 8, __u32)
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408


def open_event(type_: int, config: int, cpu: int = -1, pid: int = -1,
               period: int | None = None, freq: int | None = None,
               wakeup_events: int = 1, flags: int = 0) -> int:
    """Generic perf_event_open.  freq (samples/s) wins over period; with
    neither, sample_period is 1.  ``flags`` are extra PERF_ATTR_FLAG_* bits."""
    attr = PerfEventAttr(type=type_, config=config, wakeup_events=wakeup_events)
    attr.size = 0  # filled in by perf_event_open
    if freq is not None:
        attr.flags = flags | PERF_ATTR_FLAG_FREQ
        attr.sample_period = freq  # union with sample_freq
    else:
        attr.flags = flags
        attr.sample_period = 1 if period is None else period
    return perf_event_open(attr, pid, cpu)


def tracepoint_event(tp_id: int, cpu: int = 0, pid: int = -1) -> int:
    """A perf event for tracefs event id tp_id.  An attached BPF program runs
    on every CPU whatever ``cpu`` says (it hangs off the trace event itself)."""
    return open_event(PERF_TYPE_TRACEPOINT, tp_id, cpu=cpu, pid=pid, period=1)


def software_event(config: int, cpu: int, pid: int = -1, period: int | None = None,
                   freq: int | None = None) -> int:
    """PERF_TYPE_SOFTWARE event (PERF_COUNT_SW_*)."""
    return open_event(PERF_TYPE_SOFTWARE, config, cpu=cpu, pid=pid, period=period, freq=freq)


def hardware_event(config: int, cpu: int, pid: int = -1, period: int | None = None,
                   freq: int | None = None) -> int:
    """PERF_TYPE_HARDWARE event (PERF_COUNT_HW_*).  Fails with ENOENT/EOPNOTSUPP
    where there is no PMU (e.g. most VMs)."""
    return open_event(PERF_TYPE_HARDWARE, config, cpu=cpu, pid=pid, period=period, freq=freq)


def _pmu_attr(pmu: str, name: str) -> str:
    with open(f"/sys/bus/event_source/devices/{pmu}/{name}") as f:
        return f.read().strip()


def probe_pmu(pmu: str) -> tuple[int, int]:
    """(PMU type, bit of the retprobe flag in config) of the ``kprobe``/``uprobe`` PMU.
    Raises OSError(ENOENT) when the kernel has no such PMU."""
    kind = int(_pmu_attr(pmu, "type"))
    fmt = _pmu_attr(pmu, "format/retprobe")          # e.g. "config:0"
    return kind, int(fmt.split(":", 1)[1].split("-")[0])


def uprobe_event(path: str, offset: int, retprobe: bool = False, pid: int = -1,
                 ref_ctr_offset: int = 0) -> int:
    """A uprobe (or uretprobe) perf event at file ``offset`` of ``path`` (fd-based: it goes
    away with the fd). System-wide when pid is -1 (then on cpu 0: a BPF program attached to
    it runs for every hit, on every CPU)."""
    kind, ret_bit = probe_pmu("uprobe")
    buf = cty.create_string_buffer(path.encode())
    attr = PerfEventAttr(type=kind, wakeup_events=1)
    attr.config = ((1 << ret_bit) if retprobe else 0) | (ref_ctr_offset << 32)
    attr.config1 = cty.addressof(buf)
    attr.config2 = offset
    attr.sample_period = 1
    return perf_event_open(attr, pid, 0 if pid == -1 else -1)


def kprobe_event(func: str, offset: int = 0, retprobe: bool = False, addr: int = 0) -> int:
    """A kprobe (or kretprobe) perf event on kernel function ``func`` (``fn`` or ``mod:fn``)
    at ``offset`` bytes into it, or at the address ``addr`` when ``func`` is empty
    (fd-based: it goes away with the fd). On cpu 0 for every pid: a BPF program attached to
    it runs for every hit, on every CPU. Raises OSError(ENOENT) when the kernel has no
    kprobe PMU."""
    kind, ret_bit = probe_pmu("kprobe")
    buf = cty.create_string_buffer(func.encode()) if func else None
    attr = PerfEventAttr(type=kind, wakeup_events=1)
    attr.config = (1 << ret_bit) if retprobe else 0
    attr.config1 = cty.addressof(buf) if buf is not None else 0     # kprobe_func
    attr.config2 = offset if buf is not None else addr                   # probe_offset / kprobe_addr
    attr.sample_period = 1
    fd = perf_event_open(attr, -1, 0)
    del buf
    return fd


def _ioctl(fd: int, request: int, arg: int) -> None:
    import fcntl   # (a C module: loaded only when an ioctl is made)

    fcntl.ioctl(fd, request, arg)


def ioctl_enable(fd: int) -> None:
    _ioctl(fd, PERF_EVENT_IOC_ENABLE, 0)


def ioctl_disable(fd: int) -> None:
    _ioctl(fd, PERF_EVENT_IOC_DISABLE, 0)


def ioctl_set_bpf(fd: int, prog_fd: int) -> None:
    _ioctl(fd, PERF_EVENT_IOC_SET_BPF, prog_fd)


# hw_breakpoint types (uapi/linux/hw_breakpoint.h)
HW_BREAKPOINT_R = 1
HW_BREAKPOINT_W = 2
HW_BREAKPOINT_RW = 3
HW_BREAKPOINT_X = 4


def breakpoint_event(addr: int, length: int, bp_type: int, pid: int = -1, cpu: int = -1) -> int:
    """A hardware breakpoint (PERF_TYPE_BREAKPOINT) on ``addr``: the event fires on every
    access of that kind (``bp_type``, HW_BREAKPOINT_*) to ``length`` bytes there, in process
    ``pid`` (all CPUs) or on ``cpu``."""
    attr = PerfEventAttr(type=PERF_TYPE_BREAKPOINT, config=0, wakeup_events=1)
    attr.size = 0
    attr.sample_period = 1
    attr.bp_type = bp_type
    attr.config1 = addr
    attr.config2 = length
    return perf_event_open(attr, pid, cpu)


PERF_SAMPLE_RAW = 1 << 10


def bpf_output_event(cpu: int, wakeup_events: int = 1) -> int:
    """A PERF_COUNT_SW_BPF_OUTPUT event on ``cpu`` sampling raw records: the ring that
    bpf_perf_event_output / bpf_skb_output write into once its fd is in a perf event array."""
    attr = PerfEventAttr(type=PERF_TYPE_SOFTWARE, config=PERF_COUNT_SW_BPF_OUTPUT,
                         sample_type=PERF_SAMPLE_RAW, wakeup_events=wakeup_events)
    attr.sample_period = 1
    return perf_event_open(attr, -1, cpu)
