"""bpftrace's wording of the errors a user meets on the command line and in attach points, in
one table, so the places that raise them say the same words (checked side by side against
bpftrace 0.17 by tests/kernel/test_cli_conformance.py and tests/unit/test_messages.py).
Each entry is a ``str.format`` template; ``say(key, **fields)`` fills it in. Imports nothing.
"""
from __future__ import annotations

MESSAGES: dict[str, str] = {
    # ---- uprobe targets (bpftrace's resolve_offset_uprobe)
    "uprobe_address": "Could not resolve address: {path}:0x{address:x}",
    "uprobe_address_unsafe": ("Could not determine instruction boundary for {probe} (binary "
                              "appears stripped). Misaligned probes can lead to tracee crashes!"),
    "uprobe_offset": "Offset outside the function bounds ('{func}' size is {size})",
    # ---- tracepoints (bpftrace 0.17: one name, or a wildcard)
    "tracepoint_missing": "tracepoint not found: {pattern}",
    "tracepoints_missing": "tracepoints not found: {pattern}",
    # ---- command line (bpftrace 0.17's words; said without the usage text)
    "pid_invalid": "pid '{pid}' is not a valid decimal number",
    "format_invalid": ("Invalid output format \"{format}\"\n"
                       "Valid formats: 'text', 'json', 'flamegraph', 'folded'"),
    "buffering_invalid": "USAGE: -B must be either 'line', 'full', or 'none'.",
    # ---- --mode (bpftrace 0.26's words; ptrace runs bench and codegen)
    "mode_invalid": ("USAGE: --mode can only be 'codegen', 'compiler-bench', 'bench', 'test' "
                     "or 'format'."),
    "mode_conflict": "USAGE: {option} conflicts with existing --mode",
    "mode_unsupported": "--mode {mode} is not supported by ptrace (bench and codegen are)",
    "bench_outside_mode": "bench probes are only run with --mode bench",
    "bench_outside_mode_hint": "run the program with --mode bench (or --bench)",
    "bench_duplicate": "\"{name}\" was used as the name for more than one BENCH probe",
    "probe_filter_invalid": "invalid --probe-filter regular expression '{pattern}': {reason}",
    "no_probes": "No probes to attach",
}


def say(key: str, **fields) -> str:
    return MESSAGES[key].format(**fields)
