"""The verifier's view of the bench one-liners: each loaded (as --dry-run does) and its
verified instruction count (and the kernel's translated length) compared with golden data.
A codegen change that makes the verifier walk more, or the kernel run more, fails here.

Regenerate deliberately with PTRACE_UPDATE_GOLDEN=1 (the counts depend on the kernel: 6.18).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

from test_insn_counts import SCRIPTS  # noqa: E402

GOLDEN = Path(__file__).parent / "golden_verified_counts.json"

# (issue 14's latency pair, word for word: its sys_exit_read format is not among the unit
# tests' recorded ones)
KERNEL_SCRIPTS = dict(SCRIPTS, uprobe_count="uprobe:/bin/bash:readline { @ = count(); }",
                      latency_read=("tracepoint:syscalls:sys_enter_read { @s[tid] = nsecs; } "
                                    "tracepoint:syscalls:sys_exit_read /@s[tid]/ "
                                    "{ @h = hist(nsecs - @s[tid]); delete(@s[tid]); }"))

# bpftrace 0.17's (xlated, verified) instruction counts of the same scripts (args->count for
# args.count), summed over its programs: measured on this kernel (6.18) by running
# `bpftrace -e SCRIPT`, finding its programs through the prog_id of /proc/PID/fdinfo and reading
# xlated_prog_len / 8 and verified_insns with BPF_OBJ_GET_INFO_BY_FD (bench/bench.py's
# prog_info; `bpftool prog dump xlated id N` for the code); `BEGIN { exit(); }`'s verified count
# from `bpftrace -v` ("processed 10 insns"), its xlated count not measured (the program is gone
# before it can be read).
BPFTRACE_0_17 = {
    "count": (31, 34), "hist": (58, 113), "sum_avg": (77, 73), "printf": (27, 25),
    "first": (25, 21), "exit": (None, 10), "count_pid": (27, 30), "sum_by_comm": (32, 37),
    "latency": (100, 159), "stream": (36, 34), "latency_read": (115, 139),
    "uprobe_count": (30, 21),
}
# the ones where ptrace's code is not (yet) as small as bpftrace's, with what is larger:
# counting failed map inserts and lost ring buffer records (bpftrace 0.17 counts neither in
# its programs) costs each insert or record 3-4 instructions, and a record is reserved and
# written in place (a branch) where bpftrace copies it from the stack
NOT_YET = {("count_pid", "xlated"), ("first", "xlated"),
           ("first", "verified"), ("exit", "verified")}


def loaded_counts(text: str) -> list[list[int]]:
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.kernel import progs
    from ptrace_lang.runtime.session import RunOptions, Session

    c = compile_script(text, "stdin", Options())
    s = Session(c.spec, RunOptions(dry_run=True, quiet=True))
    try:
        s.load()
        out = []
        for ps in c.spec.programs:
            info = progs.prog_info(s.k.progs[ps.name])
            out.append([info["verified_insns"], info["xlated_prog_len"] // 8])
        return out
    finally:
        s.close()


def test_verified_and_translated_counts_are_the_golden_ones():
    got = {name: loaded_counts(text) for name, text in KERNEL_SCRIPTS.items()}
    if os.environ.get("PTRACE_UPDATE_GOLDEN"):
        old = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
        GOLDEN.write_text(json.dumps({"kernel": os.uname().release,
                                      "ptrace [verified, xlated] per program": got,
                                      "bpftrace 0.17, for reference (not checked)":
                                          old.get("bpftrace 0.17, for reference (not checked)", {})},
                                     indent=1, sort_keys=True) + "\n")
    want = json.loads(GOLDEN.read_text())["ptrace [verified, xlated] per program"]
    assert got == want


def test_no_larger_than_bpftrace_0_17():
    """xlated and verified counts at most bpftrace 0.17's, where reached (NOT_YET lists the
    rest, each of which must still be larger: a gain there moves it out of the list)."""
    for name, text in KERNEL_SCRIPTS.items():
        progs = loaded_counts(text)
        ours = {"verified": sum(v for v, _ in progs), "xlated": sum(x for _, x in progs)}
        theirs = dict(zip(("xlated", "verified"), BPFTRACE_0_17[name]))
        for what in ("xlated", "verified"):
            if theirs[what] is None:
                continue
            if (name, what) in NOT_YET:
                assert ours[what] > theirs[what], f"{name} {what}: reached, drop it from NOT_YET"
            else:
                assert ours[what] <= theirs[what], f"{name} {what}: {ours[what]} > bpftrace's {theirs[what]}"
