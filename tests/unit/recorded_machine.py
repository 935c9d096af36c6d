"""A machine made of constants and recorded tracefs formats: unit tests compile for it with no
root, no tracefs and no kernel, and their golden code does not depend on the host's kernel."""
from __future__ import annotations

from pathlib import Path

from ptrace_lang.target import Host, Machine, Target

RECORDED = Path(__file__).parent / "recorded"


def recorded_machine(release: str = "6.18.0", cpus: tuple[int, ...] = (0, 1)) -> Machine:
    formats = {p.name[:-len(".format")]: p.read_text() for p in RECORDED.glob("*.format")}
    return Machine(Target.for_release(release, cpus=cpus),
                   Host(tracepoints=formats, kernel_symbols={"jiffies": 0xffffffff82a05000},
                        cgroups={"/sys/fs/cgroup": 1}))
