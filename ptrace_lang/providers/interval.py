"""interval: and profile: — timer perf events (cpu-clock) on one CPU or on every CPU."""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register, substitute_positional

_UNIT_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_UNITS = ("hz", "s", "ms", "us", "ns")


def _uint_reason(text: str) -> str:
    """Why ``text`` is not an unsigned integer, in bpftrace 0.26's words."""
    from ptrace_lang.messages import parse_uint

    try:
        parse_uint(text)
    except ValueError as e:
        return str(e)
    return "invalid integer"


def parse_rate(ap, opts) -> tuple[str, int]:
    """``interval:s:1`` / ``interval:1s`` / ``profile:hz:99`` -> ("hz"|"ns", value)."""
    from ptrace_lang.messages import parse_uint, say

    parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
    if len(parts) == 2:
        unit, value = parts
    elif len(parts) == 1:
        import re

        m = re.fullmatch(r"(\d+)([a-z]+)", parts[0])
        if not m:
            raise CompileError(say("rate_invalid", provider=ap.provider, reason=_uint_reason(parts[0]),
                                   text=parts[0]), ap.span,
                               hints=[f"write {ap.provider}:s:1, {ap.provider}:1s or {ap.provider}:hz:99"])
        value, unit = m.group(1), m.group(2)
    else:
        raise CompileError(say("probe_arguments", provider=ap.provider, expected="1 or 2",
                               found=len(parts)), ap.span)
    if not unit:
        raise CompileError(say("time_unit_missing", provider=ap.provider), ap.span)
    if unit not in _UNITS:
        raise CompileError(say("time_unit", unit=unit), ap.span,
                           hints=["units: " + ", ".join(_UNITS)])
    try:
        n = parse_uint(value)
    except ValueError as e:
        raise CompileError(say("rate_invalid", provider=ap.provider, reason=e, text=value),
                           ap.span) from None
    if n <= 0:
        raise CompileError(say("rate_positive", provider=ap.provider), ap.span)
    if unit == "hz":
        return unit, n
    return "ns", n * _UNIT_NS[unit]


class _Timer(Provider):
    listed = "named"
    kernel_feature = "software"
    completes = ("s:", "ms:", "us:", "hz:")
    prog_type_name = "BPF_PROG_TYPE_PERF_EVENT"
    pt_regs_context = True
    every_cpu = False

    def expand(self, ap, opts):
        unit, n = parse_rate(ap, opts)
        shown = ":".join(substitute_positional(p, opts, ap.span) for p in ap.parts)
        return [Target(self.name, f"{self.name}:{shown}", f"{unit}:{n}", share_key=self.name)]

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import perf

        unit, n = target.target.split(":")
        n = int(n)
        # cpu-clock counts nanoseconds: a rate becomes a fixed period, which keeps firing on
        # idle CPUs (frequency mode re-tunes only on ticks that idle CPUs skip)
        period = max(1, 1_000_000_000 // n) if unit == "hz" else n
        return attach_per_cpu(perf.software_event, perf.PERF_COUNT_SW_CPU_CLOCK, period, prog_fd,
                              cookie, self.every_cpu)


def attach_per_cpu(open_event, config: int, period: int, prog_fd: int, cookie: int,
                   every_cpu: bool) -> list:
    """Open a perf event on every online CPU (or CPU 0 only) and attach the program to each."""
    from ptrace_lang.kernel import links, maps

    cpus = range(maps.possible_cpus()) if every_cpu else [0]
    out = []
    try:
        for cpu in online_cpus(cpus):
            fd = open_event(config, cpu=cpu, period=period)
            out.append(links.attach_perf_fd(prog_fd, fd, cookie))
    except BaseException:
        for link in out:
            link.close()
        raise
    return out


def online_cpus(candidates) -> list[int]:
    try:
        text = open("/sys/devices/system/cpu/online").read().strip()
    except OSError:
        return list(candidates)
    online = set()
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            online.update(range(int(a), int(b) + 1))
        elif part:
            online.add(int(part))
    return [c for c in candidates if c in online]


class Interval(_Timer):
    periodic = True
    name = "interval"
    aliases = ("i",)


class Profile(_Timer):
    name = "profile"
    aliases = ("p",)
    every_cpu = True


register(Interval())
register(Profile())
