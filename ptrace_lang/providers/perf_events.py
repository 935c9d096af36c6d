"""software: and hardware: — perf events counted on every CPU, the program run every N events."""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register, substitute_positional

# event name -> (PERF_COUNT_* number, default count); aliases share the entry
SOFTWARE = {
    "cpu-clock": (0, 1_000_000), "cpu": (0, 1_000_000),
    "task-clock": (1, 1_000_000),
    "page-faults": (2, 100), "faults": (2, 100),
    "context-switches": (3, 1_000), "cs": (3, 1_000),
    "cpu-migrations": (4, 1),
    "minor-faults": (5, 100),
    "major-faults": (6, 1),
    "alignment-faults": (7, 1),
    "emulation-faults": (8, 1),
    "dummy": (9, 1),
    "bpf-output": (10, 1),
}
HARDWARE = {
    "cpu-cycles": (0, 1_000_000), "cycles": (0, 1_000_000),
    "instructions": (1, 1_000_000),
    "cache-references": (2, 1_000_000),
    "cache-misses": (3, 1_000_000),
    "branch-instructions": (4, 100_000), "branches": (4, 100_000),
    "branch-misses": (5, 100_000),
    "bus-cycles": (6, 100_000),
    "frontend-stalls": (7, 1_000_000),
    "backend-stalls": (8, 1_000_000),
    "ref-cycles": (9, 1_000_000),
}


def parse_count(text: str) -> int | None:
    """``1000``, ``0x10``, ``1_000``, ``1e6``."""
    text = text.replace("_", "")
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


class _PerfCounter(Provider):
    listed = "kernel"
    prog_type_name = "BPF_PROG_TYPE_PERF_EVENT"
    pt_regs_context = True
    events: dict = {}
    count_word = "count"       # bpftrace 0.26: "software count ...", "hardware frequency ..."

    def expand(self, ap, opts):
        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        from ptrace_lang.messages import say

        if not 1 <= len(parts) <= 2:
            raise CompileError(say("probe_arguments", provider=self.name, expected="1 or 2",
                                   found=len(parts)), ap.span)
        event = parts[0]
        if not event:
            raise CompileError(say("perf_event_missing", provider=self.name), ap.span)
        if any(c in event for c in "*?["):
            raise CompileError(say("perf_event_wildcard", provider=self.name), ap.span)
        if event not in self.events:
            raise CompileError(say("perf_event_unknown", event=event, provider=self.name), ap.span,
                               hints=["events: " + ", ".join(sorted(self.events))])
        config, count = self.events[event]
        if len(parts) == 2:
            count = parse_count(parts[1])
            if count is None:
                from ptrace_lang.providers.interval import _uint_reason

                raise CompileError(say("count_invalid", provider=self.name,
                                       reason=_uint_reason(parts[1]), text=parts[1]), ap.span)
            if count <= 0:
                raise CompileError(say("count_positive", provider=self.name,
                                       count=self.count_word), ap.span)
        name = f"{self.name}:{event}:{count}" if len(parts) == 2 else f"{self.name}:{event}"
        return [Target(self.name, name, f"{config}:{count}", share_key=self.name)]

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import perf
        from ptrace_lang.providers.interval import attach_per_cpu

        config, count = (int(x) for x in target.target.split(":"))
        opener = perf.software_event if self is SOFTWARE_PROVIDER else perf.hardware_event
        try:
            return attach_per_cpu(opener, config, count, prog_fd, cookie, every_cpu=True)
        except OSError as e:
            if self is HARDWARE_PROVIDER and e.errno in (2, 95, 19):  # ENOENT EOPNOTSUPP ENODEV
                raise OSError(e.errno, "this machine has no hardware performance counter for "
                              f"'{target.probe_name}' (no PMU: a VM often has none)") from None
            raise


class Software(_PerfCounter):
    kernel_feature = "software"
    name = "software"
    aliases = ("s",)
    events = SOFTWARE
    completes = tuple(sorted(SOFTWARE))


class Hardware(_PerfCounter):
    kernel_feature = "hardware"
    name = "hardware"
    count_word = "frequency"
    aliases = ("h",)
    events = HARDWARE
    completes = tuple(sorted(HARDWARE))


SOFTWARE_PROVIDER = register(Software())
HARDWARE_PROVIDER = register(Hardware())
