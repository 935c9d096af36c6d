"""Instruction counts of the code we generate for the bench one-liners (bench/bench.py), the
latency pair and a few more, as golden data: a change that makes any of them longer fails
here. Counts are instruction slots as encoded (what `bpf(BPF_PROG_LOAD)` receives); the
kernel's verified counts are checked by tests/kernel/test_insn_counts_run.py.

Regenerate deliberately with PTRACE_UPDATE_GOLDEN=1 and review the diff (bpftrace 0.17's
measured numbers, and the check that ours are no larger, are in the kernel test).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from recorded_machine import recorded_machine

GOLDEN = Path(__file__).parent / "golden" / "insn_counts.json"

# name -> script; bench.py's one-liners first (its keys), then the ones issue 14 names
SCRIPTS = {
    "count": "tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }",
    "hist": "tracepoint:syscalls:sys_enter_read { @bytes = hist(args.count); }",
    "sum_avg": "tracepoint:syscalls:sys_enter_getppid { @s = sum(pid); @a = avg(pid); }",
    "printf": 'tracepoint:syscalls:sys_enter_getppid { printf("%d %s\\n", pid, comm); }',
    "first": 'tracepoint:syscalls:sys_enter_getppid { printf("first\\n"); exit(); }',
    "exit": "BEGIN { exit(); }",
    "count_pid": "tracepoint:raw_syscalls:sys_enter { @[pid] = count(); }",
    "sum_by_comm": "tracepoint:syscalls:sys_enter_read { @[comm] = sum(args.count); }",
    "latency": ("tracepoint:raw_syscalls:sys_enter { @start[tid] = nsecs; }\n"
                "tracepoint:raw_syscalls:sys_exit { $d = nsecs - @start[tid]; @lat = hist($d); "
                "delete(@start[tid]); }"),
    # bench.py's stream row (its $1 a pid)
    "stream": 'tracepoint:syscalls:sys_enter_getppid /pid == 1234/ { printf("%d %s\\n", tid, comm); }',
}


def counts(text: str) -> list[int]:
    from ptrace_lang.driver import Options, compile_script

    c = compile_script(text, "stdin", Options(), machine=recorded_machine())
    return [len(p.insns) // 8 for p in c.spec.programs]


def test_instruction_counts_are_the_golden_ones():
    got = {name: counts(text) for name, text in SCRIPTS.items()}
    if os.environ.get("PTRACE_UPDATE_GOLDEN"):
        old = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        GOLDEN.write_text(json.dumps({"ptrace": got, "bpftrace": old.get("bpftrace", {})},
                                     indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())["ptrace"]
    assert got == want


def test_stack_addresses_passed_to_helpers_are_computed_once_where_they_dominate():
    # capable.bt's BEGIN pattern (a string table written into a map): each update passes the
    # same key and value slots, whose addresses are kept in registers across the calls, as
    # LLVM keeps them (issue 15's finding: direct 762 xlated against LLVM's 729 before this)
    import struct

    from ptrace_lang.driver import Options, compile_script

    text = ('BEGIN { @n[0] = "CAP_CHOWN"; @n[1] = "CAP_DAC_OVERRIDE"; @n[2] = "CAP_FOWNER"; '
            '@n[3] = "CAP_FSETID"; }')
    c = compile_script(text, "stdin", Options(), machine=recorded_machine())
    raw = c.spec.programs[0].insns
    from_fp = [i for i in range(0, len(raw), 8)
               if raw[i] == 0xBF and raw[i + 1] >> 4 == 10]      # rX = r10 (ALU64 MOV X)
    calls = [i for i in range(0, len(raw), 8) if raw[i] == 0x85
             and struct.unpack_from("<i", raw, i + 4)[0] == 2]   # bpf_map_update_elem
    assert len(calls) == 4
    assert len(from_fp) == 2, f"{len(from_fp)} stack addresses computed for {len(calls)} updates"
