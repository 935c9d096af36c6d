"""Provider facts sema decides by (sema.analyze.ProbeContext): the context starts with
pt_regs (reg(), usermode) and the probed code is a process's (uaddr(), user pointers)."""
from __future__ import annotations

import pytest

from ptrace_lang import providers
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import SOURCES, PtraceError

PT_REGS = {"kprobe", "kretprobe", "uprobe", "uretprobe", "usdt", "profile", "interval",
           "software", "hardware", "watchpoint"}
USER = {"uprobe", "uretprobe", "usdt"}
OTHERS = {"begin", "end", "tracepoint", "rawtracepoint", "fentry", "fexit", "iter", "self"}


@pytest.mark.parametrize("name", sorted(PT_REGS | USER | OTHERS))
def test_facts_on_providers(name):
    p = providers.get(name)
    assert p.pt_regs_context == (name in PT_REGS)
    assert p.user_space == (name in USER)


def test_facts_reach_sema():
    from ptrace_lang.sema.analyze import ProbeContext

    assert ProbeContext("begin", frozenset()).pt_regs is False
    assert ProbeContext("begin", frozenset()).user_space is False


def test_watchpoint_allows_reg_and_usermode():
    # a watchpoint runs as a perf event (breakpoint PMU): its context is pt_regs, as bpftrace says
    compile_script('watchpoint:0x10000000:8:w { @[usermode, reg("ip")] = count(); }', "stdin",
                   Options(stages=("asm",), pid=1))


@pytest.mark.parametrize("src, word", [
    ('BEGIN { @ = reg("ip"); }', 'reg can not be used with "begin" probes'),
    ('tracepoint:syscalls:sys_enter_openat { @ = usermode; }',
     "The usermode builtin can not be used with 'tracepoint' probes"),
    ('kprobe:do_nanosleep { @ = uaddr("x"); }', 'uaddr can not be used with "kprobe" probes'),
])
def test_refused_without_the_fact(src, word):
    with pytest.raises(PtraceError) as info:
        compile_script(src, "stdin", Options(stages=("asm",)))
    assert word in info.value.render(SOURCES)
