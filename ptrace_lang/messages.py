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
    # ---- a diagnostic in code a macro expanded: each call it came from (bpftrace 0.26)
    "expanded_from": "expanded from",
    # ---- the config block (bpftrace 0.26's config analyser)
    "config_unknown": "Unrecognized config variable: {key}",
    "config_env_only": "{key} can only be set as an environment variable",
    "config_bool_value": "Invalid value for {key}. Needs to be 0 or 1. Value: {value}",
    # ---- the language (bpftrace 0.26's semantic analyser)
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


def map_call_error(func: str, args: list, span, nargs: int) -> tuple:
    """(message, span) of a call of ``func`` (has_key, len) that does not get its ``nargs``
    arguments with a map first, as bpftrace 0.26 says it: the count under the call, else
    "expects a map argument" under the first argument."""
    if len(args) != nargs:
        want = "one argument" if nargs == 1 else f"{nargs} arguments"
        return f"{func}() requires {want} ({len(args)} provided)", span
    return say("map_argument", func=func), args[0].span
