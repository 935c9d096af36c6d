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
    # ---- attach points that match nothing (bpftrace 0.26: "No matches for <type> <target>."; with
    # missing_probes = "warn" a warning ending ". Skipping." instead: providers.missing)
    "no_matches": "No matches for {probetype} {what}.",
    "tracepoint_missing": "No matches for tracepoint {pattern}.",
    "tracepoints_missing": "No matches for tracepoint {pattern}.",
    "missing_skipped": "{message}. Skipping.",
    # ---- attach points checked as bpftrace 0.26's attach point parser and checker say it
    "target_file": "{provider} target file '{target}' does not exist or is not executable",
    "kprobe_not_traceable": ("{func} is not traceable (either non-existing, inlined, or marked as "
                             "\"notrace\"); attaching to it will likely fail"),
    "time_unit": "{unit} is not an accepted unit of time",
    "time_unit_missing": "{provider} probe must have unit of time",
    "rate_invalid": "Invalid rate of {provider} probe: {reason}: {text}",
    "rate_positive": "{provider} frequency should be a positive integer",
    "perf_event_unknown": "{event} is not a {provider} probe",
    "perf_event_missing": "{provider} probe must have a {provider} event name",
    "perf_event_wildcard": "wildcards are not allowed for {provider} probe type",
    "count_invalid": "Invalid count for {provider} probe: {reason}: {text}",
    "count_positive": "{provider} {count} should be a positive integer",
    "probe_arguments": "{provider} probe type requires {expected} arguments, found {found}",
    "watchpoint_address": "Invalid function/address argument: {reason}: {text}",
    "watchpoint_zero": "watchpoint must be attached to a non-zero address",
    "watchpoint_length_text": "Invalid length argument: {reason}: {text}",
    "watchpoint_length": "watchpoint length must be one of (1,2,4,8)",
    "watchpoint_mode": "watchpoint mode must be combination of (r,w,x)",
    "watchpoint_mode_twice": "watchpoint modes may not be duplicated",
    "watchpoint_mode_invalid": "invalid watchpoint mode: {mode}",
    "watchpoint_modes_hint": "supported modes: {modes}",
    # ---- a diagnostic in code a macro expanded: each call it came from (bpftrace 0.26)
    "expanded_from": "expanded from",
    # ---- the config block (bpftrace 0.26's config analyser)
    "config_unknown": "Unrecognized config variable: {key}",
    "config_env_only": "{key} can only be set as an environment variable",
    "config_bool_value": "Invalid value for {key}. Needs to be 0 or 1. Value: {value}",
    # ---- the language (bpftrace 0.26's semantic analyser)
    "binop_mismatch": "Type mismatch for '{op}': comparing {left} with {right}",
    "binop_left": "left ({type})",
    "binop_right": "right ({type})",
    "unroll_max": "unroll maximum value is 100",
    "unroll_min": "unroll minimum value is 1",
    "unroll_invalid": "invalid unroll value",
    "map_argument": "{func}() expects a map argument",
    "key_on_scalar_map": ("Argument mismatch for @{map}: trying to access with arguments: "
                          "'{keytype}' when map expects no arguments"),
    # ---- command line (bpftrace 0.26's words where it has them; getopt's for getopt's)
    "option_ambiguous": "option '--{name}' is ambiguous; possibilities: {choices}",
    "option_unrecognized": "unrecognized option '--{name}'",
    "option_no_argument": "option '--{name}' doesn't allow an argument",
    "option_needs_argument": "option '--{name}' requires an argument",
    "short_needs_argument": "option requires an argument -- '{option}'",
    "short_invalid": "invalid option -- '{option}'",
    "short_invalid_digit": " (a positional parameter that begins with '-' goes after '--')",
    "backend_invalid": "invalid backend '{backend}' (expected direct or llvm)",
    "pid_and_cmd": "USAGE: Cannot use both -c and -p.",
    "debug_invalid": "USAGE: invalid option for -d: {stage}",
    "no_program": "USAGE: filename or -e 'program' required.",
    "file_open": "failed to open file '{path}': {reason}",
    "output_open": "Failed to open output file: \"{path}\": {reason}",
    "stdout_closed": "failed to write output to stdout: it is closed (>&-); use -o FILE",
    "info_needs_root": "--info needs root (it loads programs to see what the kernel allows)",
    "list_with_cmd": ("-l does not take -c (list a binary's probes with 'uprobe:/path:*' or "
                      "'usdt:/path:*', a process's with -p PID)"),
    "list_no_process": "no process with pid {pid}",
    "list_args": "-l takes one pattern and no program",
    "repl_traced": "-p and -c are not supported in the REPL",
    "nested_too_deeply": "the program is nested too deeply",
    # -p PID: bpftrace 0.26 parses it as an integer literal (0x1f, 1_000 too)
    "pid_invalid": "Failed to parse pid: {reason}: {pid}",
    "pid_range": "Pid out of range: {pid}",
    "pid_overflow": ("Failed to parse pid: overflow error, maximum value is 18446744073709551615: "
                     "{pid}"),
    "format_invalid": ("Invalid output format \"{format}\"\n"
                       "Valid formats: 'text', 'json', 'flamegraph', 'folded'"),
    "buffering_invalid": "USAGE: -B must be either 'line', 'full', or 'none'.",
    # ---- ptrace's own run modes (modes.py: --serve, flame graphs)
    "serve_address": "--serve '{text}': expected ADDR:PORT (127.0.0.1:9100, :9100)",
    "serve_listen": "--serve {serve}: cannot listen on {addr} port {port}: {reason}",
    "serve_dropped": "{dropped} map keys were left out of scrapes (over {most} per map)",
    "flame_no_stack_map": "no map is keyed by kstack or ustack: no flame graph written",
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
    # ---- the command of -c (bpftrace's ChildProc; "cannot be run" is ours: found before forking)
    "fork_failed": "Failed to fork child: {reason}",
    "cmd_missing": "Failed to fork child: path '{path}' does not exist or is not executable",
    "cmd_ambiguous": ("Failed to fork child: path '{path}' must refer to a unique binary but "
                      "matched {count} binaries"),
    "cmd_not_runnable": "Failed to fork child: path '{path}' cannot be run: {why}",
}


def say(name: str, /, **fields) -> str:
    """The message ``name`` with its fields filled in."""
    return MESSAGES[name].format(**fields)


def parse_uint(text: str) -> int:
    """An unsigned integer literal as bpftrace 0.26 reads one in attach points and -p
    (decimal, 0x hex, 0b binary, 0 octal, ``_`` separators, a C suffix); ValueError with its
    reason ("invalid integer", "invalid trailing bytes", "overflow") otherwise."""
    digits = text.replace("_", "")
    base = 10
    if len(digits) >= 2 and digits[0] == "0":
        if digits[1] in "xX":
            base, digits = 16, digits[2:]
        elif digits[1] in "bB":
            base, digits = 2, digits[2:]
        elif "0" <= digits[1] <= "7":
            base, digits = 8, digits[1:]
    ok = "0123456789abcdefABCDEF"[: base + (6 if base == 16 else 0)]
    n = 0
    while n < len(digits) and digits[n] in ok:
        n += 1
    if n == 0 or not digits[:n].isascii():
        raise ValueError("invalid integer")
    if digits[n:].lower() not in ("", "u", "ul", "ull", "l", "ll"):
        raise ValueError("invalid trailing bytes")
    value = int(digits[:n], base)
    if value >= 1 << 64:
        raise ValueError("overflow")
    return value


def map_call_error(func: str, args: list, span, nargs: int) -> tuple:
    """(message, span) of a call of ``func`` (has_key, len) that does not get its ``nargs``
    arguments with a map first, as bpftrace 0.26 says it: the count under the call, else
    "expects a map argument" under the first argument."""
    if len(args) != nargs:
        want = "one argument" if nargs == 1 else f"{nargs} arguments"
        return f"{func}() requires {want} ({len(args)} provided)", span
    return say("map_argument", func=func), args[0].span
