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
    # ptrace's error text equals bpftrace 0.17's (after its location, where it has one)
    cases = [(["-f", "xml", "-e", "BEGIN { exit(); }"],
              "ERROR: Invalid output format \"xml\""),
             (["-B", "x", "-e", "BEGIN { exit(); }"],
              "ERROR: USAGE: -B must be either 'line', 'full', or 'none'."),
             (["-p", "abc", "-e", "BEGIN { exit(); }"],
              "ERROR: pid 'abc' is not a valid decimal number"),
             (["-e", "tracepoint:syscalls:nope { exit(); }"],
              "stdin:1:1-25: ERROR: tracepoint not found: syscalls:nope"),
             (["-e", "tracepoint:nope:* { exit(); }"],
              "stdin:1:1-18: ERROR: tracepoints not found: nope:*")]
    for argv, want in cases:
        ours = _run_in("/", *argv)
        assert ours.returncode == 1 and ours.stderr.startswith(want), ours.stderr
        assert "\n\nUSAGE:" not in ours.stderr, ours.stderr
        if _BPFTRACE:
            assert _first_error(argv, False) == want.splitlines()[0], argv
