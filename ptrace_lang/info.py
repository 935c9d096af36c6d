"""``ptrace --info``: what this machine's kernel supports, probed for real.

Like bpftrace's ``--info`` in spirit (System, Build, Kernel features, Map types, Probe types),
but each probe type is answered by trying what ptrace would do to attach it: load a trivial
program of its type, open its perf event (kprobe/uprobe PMUs, a hardware counter, a hardware
breakpoint on one of our own variables), create a kprobe_multi link on a name that does not
exist, attach an fentry program. A "no" says why. Everything opened is closed at once.
"""
from __future__ import annotations

import os

RET0 = bytes.fromhex("b700000000000000" "9500000000000000")    # r0 = 0; exit


def _try(fn) -> tuple[bool, str]:
    try:
        r = fn()
    except OSError as e:
        return False, e.strerror or str(e)
    except Exception as e:  # noqa: BLE001 - a probe that cannot run answers "no"
        return False, f"{type(e).__name__}: {e}"
    if isinstance(r, tuple):
        return r
    return True, ""


def _close(*fds) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _load(prog_type: int, expected: int = 0, btf_id: int = 0) -> int:
    from ptrace_lang.kernel import progs

    return progs.load_program(prog_type, RET0, name="ptrace_info", expected_attach_type=expected,
                              attach_btf_id=btf_id)


def _prog(prog_type: int):
    def check():
        _close(_load(prog_type))
    return check


def _map(map_type: int, key: int = 4, value: int = 8, entries: int = 1):
    def check():
        from ptrace_lang.kernel import maps

        maps.Map.create(map_type, key, value, entries, name="ptrace_info").close()
    return check


def _pmu(name: str, why: str):
    def check():
        if not os.path.isdir(f"/sys/bus/event_source/devices/{name}"):
            return False, why
        return True, ""
    return check


def _software():
    from ptrace_lang.kernel import perf

    _close(perf.software_event(perf.PERF_COUNT_SW_CPU_CLOCK, cpu=0, period=1_000_000_000))


def _hardware():
    from ptrace_lang.kernel import perf

    try:
        _close(perf.hardware_event(perf.PERF_COUNT_HW_CPU_CYCLES, cpu=0, period=1_000_000_000))
    except OSError as e:
        return False, f"no hardware PMU: {os.strerror(e.errno)}; a VM often has none"
    return True, ""


def _breakpoint():
    import ctypes

    from ptrace_lang.kernel import perf

    if not os.path.isdir("/sys/bus/event_source/devices/breakpoint"):
        return False, "no breakpoint PMU"
    var = ctypes.c_uint64(0)
    try:
        _close(perf.breakpoint_event(ctypes.addressof(var), 8, perf.HW_BREAKPOINT_W, pid=os.getpid()))
    except OSError as e:
        return False, f"a breakpoint event cannot be opened: {os.strerror(e.errno)}"
    return True, ""


def _kprobe_multi():
    from ptrace_lang.providers import kprobe

    if not kprobe.kprobe_multi_supported():
        return False, "no kprobe_multi links (kernel < 5.18 or built without CONFIG_FPROBE)"
    return True, ""


def _fentry():
    from ptrace_lang import btf
    from ptrace_lang.kernel import links, sys as ksys

    try:
        b = btf.BTF.vmlinux()
    except Exception:  # noqa: BLE001
        return False, "no kernel BTF"
    fid = b.find("vfs_read", "func") or b.find("do_nanosleep", "func")
    if not fid:
        return False, "no BTF function to try"
    try:
        fd = _load(ksys.BPF_PROG_TYPE_TRACING, 24, fid)       # BPF_TRACE_FENTRY
    except OSError as e:
        return False, f"the kernel refuses an fentry program on a kernel function ({os.strerror(e.errno)})"
    try:
        links.raw_tracepoint_open(fd, "").close()
    except OSError as e:
        return False, f"fentry programs load but the kernel refuses to attach them ({e.strerror})"
    finally:
        _close(fd)
    return True, ""


def _tracefs():
    for d in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"):
        if os.path.isdir(d):
            return True, ""
    return False, "tracefs is not mounted"


def report() -> str:
    from ptrace_lang import __version__
    from ptrace_lang.kernel import sys as ksys

    u = os.uname()
    out = ["System", f"  OS: {u.sysname} {u.release} {u.version}", f"  Arch: {u.machine}", "",
           "Build", f"  version: v{__version__}",
           "  compiler: ptrace-lang's own (Python, no LLVM)", f"  Python: {os.sys.version.split()[0]}",
           ""]

    def section(title, rows):
        out.append(title)
        for name, check in rows:
            ok, why = _try(check)
            out.append(f"  {name}: {'yes' if ok else 'no'}" + (f" ({why})" if not ok and why else ""))
        out.append("")

    section("Kernel features", [
        ("btf", lambda: (os.path.exists("/sys/kernel/btf/vmlinux"), "no /sys/kernel/btf/vmlinux")),
        ("ring buffer", _map(ksys.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)),
        ("BPF_PROG_TEST_RUN (begin, end, self)", _test_run),
        ("kprobe_multi", _kprobe_multi),
        ("hardware counters (PMU)", _hardware),
        ("hardware breakpoints", _breakpoint),
    ])
    section("Map types", [
        ("hash", _map(ksys.BPF_MAP_TYPE_HASH)),
        ("percpu hash", _map(ksys.BPF_MAP_TYPE_PERCPU_HASH)),
        ("array", _map(ksys.BPF_MAP_TYPE_ARRAY)),
        ("percpu array", _map(ksys.BPF_MAP_TYPE_PERCPU_ARRAY)),
        ("ringbuf", _map(ksys.BPF_MAP_TYPE_RINGBUF, 0, 0, 4096)),
        ("stack_trace", _map(ksys.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 127, 16)),
    ])
    # one line per kernel feature the providers name (Provider.kernel_feature), in their order
    checks = feature_checks()
    from ptrace_lang import providers

    by_feature: dict[str, list[str]] = {}
    for p in providers.all_providers():
        if p.kernel_feature:
            by_feature.setdefault(p.kernel_feature, []).append(p.name)
    rows = [(" / ".join(names), checks[f]) for f, names in by_feature.items()]
    kp = next(i for i, (label, _) in enumerate(rows) if "kprobe" in label)
    rows.insert(kp + 1, ("kprobe_multi", _kprobe_multi))
    section("Probe types", rows)
    return "\n".join(out)


def feature_checks() -> dict:
    """The check of each kernel feature a provider can name (``Provider.kernel_feature``)."""
    from ptrace_lang.kernel import sys as ksys

    return {"tracefs": _tracefs, "raw_tracepoint": _prog(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT),
            "kprobe_pmu": _pmu("kprobe", "no kprobe PMU: this kernel has no kprobes"),
            "uprobe_pmu": _pmu("uprobe", "no uprobe PMU"), "tracing": _fentry,
            "software": _software, "hardware": _hardware, "breakpoint": _breakpoint,
            "test_run": _test_run}


def _test_run():
    from ptrace_lang.kernel import progs, sys as ksys

    fd = _load(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT)
    try:
        progs.test_run(fd, ctx_in=bytes(64))
    finally:
        _close(fd)
