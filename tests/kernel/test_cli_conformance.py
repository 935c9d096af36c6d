"""bpftrace's command line, probe spellings and output, as scripts and pipelines around them
rely on them (each test names what bpftrace does)."""
from __future__ import annotations

import os
import subprocess

from runner import ptrace_cmd


def _run_in(cwd: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(ptrace_cmd(*args), capture_output=True, text=True, timeout=60, cwd=cwd,
                          env={**os.environ, "PYTHONPATH": str(os.path.dirname(os.path.dirname(
                              os.path.dirname(os.path.abspath(__file__)))))})


def test_a_binary_is_printed_as_the_user_wrote_it():
    # bpftrace resolves ./bash for attaching but prints the attach point as written; /bin/bash
    # is not turned into /usr/bin/bash (a symlinked /bin)
    for cwd, binary in (("/bin", "./bash"), ("/", "/bin/bash")):
        p = _run_in(cwd, "-c", f"{binary} -c true", "-e",
                    f'uprobe:{binary}:main {{ printf("%s|%s\\n", probe, func); }}')
        assert p.returncode == 0, p.stderr
        assert p.stdout.split() == [f"uprobe:{binary}:main|main"], p.stdout


def test_a_library_name_is_printed_as_the_file_found():
    p = _run_in("/", "-c", "/bin/true", "-e",
                'uprobe:libc:exit { printf("%s\\n", probe); }')
    assert p.returncode == 0, p.stderr
    (line,) = p.stdout.split()
    assert line.startswith("uprobe:/") and line.endswith("libc.so.6:exit"), line


_BPFTRACE = __import__("shutil").which("bpftrace")


def _first_error(argv: list[str], ptrace: bool) -> str:
    """The first ERROR line of a run, as ptrace or bpftrace 0.17 prints it (bpftrace's
    RLIMIT_MEMLOCK complaint of this machine left out)."""
    p = _run_in("/", *argv) if ptrace else subprocess.run(
        [_BPFTRACE, *argv], capture_output=True, text=True, timeout=60, cwd="/")
    lines = [x for x in p.stderr.splitlines() if "ERROR" in x and "RLIMIT" not in x]
    return lines[0] if lines else ""


def test_uprobe_targets_refused_in_bpftrace_words():
    cases = [["-e", "uprobe:/bin/bash:10 { exit(); }"],
             ["-e", "uprobe:/bin/bash:echo_builtin+100000 { exit(); }"]]
    want = ["Could not resolve address: /bin/bash:0xa",
            "Offset outside the function bounds ('echo_builtin' size is "]
    for argv, w in zip(cases, want):
        ours = _first_error(argv, True)
        assert w in ours, ours
        if _BPFTRACE:        # bpftrace 0.17 says it at attach time, without a location
            theirs = _first_error(argv, False)
            assert theirs.split("ERROR: ")[1] == ours.split("ERROR: ")[1], (theirs, ours)


def test_errors_in_bpftraces_words():
    # ptrace's error text is bpftrace 0.26's; where 0.17 says the same (same017), it equals
    # bpftrace 0.17's, run side by side
    cases = [(["-f", "xml", "-e", "BEGIN { exit(); }"],
              "ERROR: Invalid output format \"xml\"", True),
             (["-B", "x", "-e", "BEGIN { exit(); }"],
              "ERROR: USAGE: -B must be either 'line', 'full', or 'none'.", True),
             (["-o", "/nonexistent/dir/x", "-e", "BEGIN { exit(); }"],
              "ERROR: Failed to open output file: \"/nonexistent/dir/x\": No such file or "
              "directory", True),
             (["/nonexistent.bt"],
              "ERROR: failed to open file '/nonexistent.bt': No such file or directory", True),
             (["-q"], "ERROR: USAGE: filename or -e 'program' required.", True),
             (["-e", "BEGIN { unroll(200) { @a = 1; } exit(); }"],
              "stdin:1:9-20: ERROR: unroll maximum value is 100", True),
             (["-e", "BEGIN { unroll(0) { @a = 1; } exit(); }"],
              "stdin:1:9-18: ERROR: unroll minimum value is 1", True),
             (["-p", "abc", "-e", "BEGIN { exit(); }"],
              "ERROR: Failed to parse pid: invalid integer: abc", False),
             (["-p", "4194305", "-e", "BEGIN { exit(); }"], "ERROR: Pid out of range: 4194305",
              False),
             (["-e", "tracepoint:syscalls:nope { exit(); }"],
              "stdin:1:1-25: ERROR: No matches for tracepoint syscalls:nope.", False),
             (["-e", "tracepoint:nope:* { exit(); }"],
              "stdin:1:1-18: ERROR: No matches for tracepoint nope:*.", False)]
    cases += _attach_point_cases()
    for argv, want, same017 in cases:
        ours = _run_in("/", *argv)
        assert ours.returncode == 1 and ours.stderr.startswith(want), ours.stderr
        assert "\n\nUSAGE:" not in ours.stderr, ours.stderr
        if _BPFTRACE and same017:
            assert _first_error(argv, False) == want.splitlines()[0], argv


def _attach_point_cases() -> list:
    """Attach points that match nothing or are malformed: (argv, bpftrace 0.26's first line,
    whether 0.17 says the same)."""
    out = []
    for ap, message, same017 in [
            ("uprobe:/nonexist:foo", "uprobe target file '/nonexist' does not exist or is not "
                                     "executable", True),
            ("usdt:/nonexist:a:b", "usdt target file '/nonexist' does not exist or is not "
                                   "executable", True),
            ("uprobe:/bin/bash:no_such_fn_xyz", "No matches for uprobe /bin/bash:no_such_fn_xyz.",
             False),
            ("uprobe:/bin/bash:no_such_*_xyz", "No matches for uprobe /bin/bash:no_such_*_xyz.",
             False),
            ("usdt:/bin/bash:no_such_xyz", "No matches for usdt /bin/bash:no_such_xyz.", False),
            ("kprobe:no_such_fn_xyz", "No matches for kprobe no_such_fn_xyz.", False),
            ("kretprobe:no_such_*_xyz", "No matches for kretprobe no_such_*_xyz.", False),
            ("fentry:no_such_fn_xyz", "No matches for fentry no_such_fn_xyz.", False),
            ("software:nosuch", "nosuch is not a software probe", True),
            ("hardware:nosuch", "nosuch is not a hardware probe", True),
            ("interval:xs:1", "xs is not an accepted unit of time", True),
            ("profile:xs:1", "xs is not an accepted unit of time", True),
            ("watchpoint:0x10000000:3:w", "watchpoint length must be one of (1,2,4,8)", True),
            ("watchpoint:0x10000000:8:q", "watchpoint mode must be combination of (r,w,x)", True),
            ("watchpoint:0x10000000:8:ww", "watchpoint modes may not be duplicated", True),
            ("watchpoint:0:8:w", "watchpoint must be attached to a non-zero address", True)]:
        out.append((["-e", ap + " { exit(); }"], f"stdin:1:1-{len(ap) + 1}: ERROR: {message}",
                    same017))
    return out


def test_bench_mode_runs_each_bench_block_and_prints_the_table():
    # bpftrace 0.26 --mode bench: each bench: block run by BPF_PROG_TEST_RUN many times, the
    # table of their average times, then the maps; the other blocks are not run
    prog = ('bench:count { @c = count(); } bench:hist_of_rand { @h = hist(rand); } '
            'BEGIN { printf("begin ran\\n"); } interval:ms:1 { @i = 1; }')
    for flag in (["--mode", "bench"], ["--bench"]):
        p = _run_in("/", *flag, "-e", prog)
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        sep = "+--------------+--------------+"
        assert lines[:3] == [sep, "| BENCHMARK    | AVERAGE TIME |", sep], p.stdout
        names = [x.split("|")[1].strip() for x in lines[3:5]]
        assert names == ["count", "hist_of_rand"] and lines[5] == sep, p.stdout
        for row in lines[3:5]:
            t = row.split("|")[2].strip()
            assert t[:-2].isdigit() and t.endswith(("ns", "\u03bcs")), row
        # the runs happened: @c counts every one of them (at least the 1,000 of a benchmark)
        count = int(next(x for x in lines if x.startswith("@c: ")).split(": ")[1])
        assert count >= 1000, p.stdout
        assert "begin ran" not in p.stdout and "@i" not in p.stdout and "Attached" not in p.stderr
    # what the blocks print is discarded, and not reported lost
    p = _run_in("/", "--bench", "-e", 'bench:printing { printf("x %d\\n", 1); }')
    assert p.returncode == 0 and "| printing  |" in p.stdout, p.stdout
    assert "x 1" not in p.stdout and "Lost" not in p.stdout + p.stderr, (p.stdout, p.stderr)


def test_bench_probes_are_refused_outside_bench_mode():
    p = _run_in("/", "-e", "bench:x { @a = 1; } BEGIN { exit(); }")
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("stdin:1:1-8: ERROR: bench probes are only run with --mode "
                               "bench\n"), p.stderr
    p = _run_in("/", "--bench", "-e", "bench:x { @a = 1; } bench:x { @b = 1; }")
    assert p.returncode == 1
    assert 'ERROR: "x" was used as the name for more than one BENCH probe' in p.stderr, p.stderr


def test_probe_filter_attaches_only_the_matching_probes():
    prog = ('BEGIN { printf("begin\\n"); } interval:ms:5 { printf("%s\\n", probe); exit(); } '
            'tracepoint:syscalls:sys_enter_getppid { printf("tp\\n"); }')
    p = _run_in("/", "--probe-filter", "^interval:", "-e", prog)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["begin", "interval:ms:5"], p.stdout
    assert "Attached 2 probes" in p.stderr, p.stderr
    p = _run_in("/", "--probe-filter", "kprobe", "-e", "interval:ms:5 { exit(); }")
    assert (p.returncode, p.stdout) == (1, "No probes to attach\n"), (p.stdout, p.stderr)
