"""Output that cannot be written, signals, and what a wrapper of ptrace relies on (issue 11
§4, issue 13): clear errors with exit 1 and every probe released, bpftrace's signal behaviour."""
from __future__ import annotations

import os
import signal
import subprocess

import pytest

from runner import ROOT, Tracer, bpf_prog_names, ptrace_cmd, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

PROG = 'BEGIN { printf("hello\\n"); } interval:ms:1 { exit(); }'


def _ptrace(args, **kw):
    return subprocess.run(ptrace_cmd(*args), capture_output=kw.pop("capture", True), text=True,
                          cwd=ROOT, timeout=60, **kw)


def _assert_released():
    assert not [n for n in bpf_prog_names() if n.startswith("p")
                and n.endswith("interval")], "a probe program is still loaded"


def test_output_file_that_cannot_be_written_is_an_error_naming_it():
    r = run("-e", PROG, "-o", "/dev/full")
    assert r.rc == 1
    assert "ERROR: failed to write output to '/dev/full': No space left on device" in r.err
    assert "Traceback" not in r.err and "internal error" not in r.err
    _assert_released()


def test_stdout_that_cannot_be_written_is_an_error():
    with open("/dev/full", "w") as full:
        p = subprocess.run(ptrace_cmd("-e", PROG), stdout=full, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    assert "ERROR: failed to write output to stdout: No space left on device" in p.stderr
    assert "Traceback" not in p.stderr and "Exception ignored" not in p.stderr
    _assert_released()


def test_closed_stdout_is_an_error():
    p = subprocess.run(["sh", "-c", '"$@" >&-', "sh", *ptrace_cmd("-e", PROG)],
                       stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 1
    assert "ERROR: failed to write output to stdout: it is closed" in p.stderr
    assert "Traceback" not in p.stderr


def test_non_ascii_output_passes_through_whatever_the_io_encoding():
    p = subprocess.run(ptrace_cmd("-e", 'BEGIN { printf("h\\xc3\\xa9 %s\\n", "\u00e9"); exit(); }'),
                       capture_output=True, cwd=ROOT, timeout=60,
                       env={**os.environ, "PYTHONIOENCODING": "ascii"})
    assert p.returncode == 0, p.stderr
    assert "h\u00e9 \u00e9\n".encode() in p.stdout
