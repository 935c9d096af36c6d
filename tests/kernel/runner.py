"""Running ptrace as a user would, for the kernel tests: spawn, wait for attach, Ctrl-C, collect."""
from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def ptrace_cmd(*args: str) -> list[str]:
    base = os.environ.get("PTRACE_CMD", "").split() or [sys.executable, "-m", "ptrace_lang"]
    return [*base, *args]


def _as_from_a_terminal() -> None:
    """In the child: SIGINT as a command typed at a terminal has it. A test run started in the
    background of a non-interactive shell inherits SIGINT ignored, and a Ctrl-C sent before
    the tracer installs its own handler would then be ignored, not interrupt it."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclass
class Result:
    rc: int
    out: str
    err: str


def run(*args: str, stdin: str | None = None, timeout: float = 60, env: dict | None = None) -> Result:
    """Run ptrace to completion (programs that exit by themselves); ``env`` adds variables."""
    p = subprocess.run(ptrace_cmd(*args), input=stdin, capture_output=True, text=True,
                       timeout=timeout, cwd=ROOT, env={**os.environ, **env} if env else None)
    return Result(p.returncode, p.stdout, p.stderr)


class Tracer:
    """A ptrace process in the background; ``wait_attached`` then a workload then ``stop``."""

    def __init__(self, *args: str) -> None:
        self.p = subprocess.Popen(ptrace_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, cwd=ROOT, preexec_fn=_as_from_a_terminal)
        self.err_lines: list[str] = []
        self.out_chunks: list[str] = []
        self._attached = threading.Event()
        self._t_err = threading.Thread(target=self._read_err, daemon=True)
        self._t_out = threading.Thread(target=self._read_out, daemon=True)
        self._t_err.start()
        self._t_out.start()

    def _read_err(self) -> None:
        for line in self.p.stderr:
            self.err_lines.append(line)
            if line.startswith("Attached"):
                self._attached.set()
        self._attached.set()

    def _read_out(self) -> None:
        # raw reads: whatever has arrived, not a full 4096 characters
        import codecs
        dec = codecs.getincrementaldecoder("utf-8")("replace")
        fd = self.p.stdout.fileno()
        while True:
            data = os.read(fd, 1 << 20)
            if not data:
                break
            self.out_chunks.append(dec.decode(data))

    def wait_attached(self, timeout: float = 60) -> None:
        if not self._attached.wait(timeout) or self.p.poll() not in (None, 0):
            self.stop()
            raise AssertionError("ptrace did not attach:\n" + "".join(self.err_lines))

    def stop(self, sig: int = signal.SIGINT, timeout: float = 60) -> Result:
        if self.p.poll() is None:
            self.p.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> Result:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self._t_err.join(5)
        self._t_out.join(5)
        return Result(rc, "".join(self.out_chunks), "".join(self.err_lines))


def named_workload(name: str, code: str) -> list[str]:
    """A python command whose comm is ``name`` (set through prctl before running ``code``)."""
    prelude = ("import ctypes, os; ctypes.CDLL(None).prctl(15, ctypes.c_char_p(%r), 0, 0, 0); "
               % name.encode())
    return [sys.executable, "-c", prelude + code]


_CODE_DIR: tempfile.TemporaryDirectory | None = None


def cmd_line(argv: list[str]) -> str:
    """``argv`` as a ``-c`` command that comes out as ``argv`` again when split as bpftrace
    splits it (on each single space, quotes kept). Words with no space are joined with spaces;
    a ``python -c CODE args`` whose code has spaces becomes ``python FILE args``, the code
    written to a file in a temporary directory (removed when the tests end)."""
    global _CODE_DIR
    if argv[1:2] == ["-c"] and len(argv) > 2:
        if _CODE_DIR is None:
            _CODE_DIR = tempfile.TemporaryDirectory(prefix="ptrace-cmd-")
        name = hashlib.sha256(argv[2].encode()).hexdigest()[:16]
        script = Path(_CODE_DIR.name) / f"{name}.py"
        script.write_text(argv[2])
        argv = [argv[0], str(script), *argv[3:]]
    bad = [a for a in argv if a == "" or " " in a]
    if bad:
        raise ValueError(f"bpftrace's -c cannot pass these words intact: {bad!r}")
    return " ".join(argv)


def bpf_prog_names() -> list[str]:
    """Names of every BPF program loaded in the kernel now."""
    return [name for _, name in bpf_progs()]


def bpf_progs() -> list[tuple[int, str]]:
    """(id, name) of every BPF program loaded in the kernel now (ids only grow)."""
    from ptrace_lang.kernel import progs, sys as ksys

    names = []
    cur = 0
    while True:
        attr = ksys.GetIdAttr()
        attr.start_id = cur
        try:
            ksys.bpf(ksys.BPF_PROG_GET_NEXT_ID, attr)
        except OSError:
            break
        cur = attr.next_id
        fa = ksys.GetIdAttr()
        fa.start_id = cur
        try:
            fd = ksys.bpf(ksys.BPF_PROG_GET_FD_BY_ID, fa)
        except OSError:
            continue
        try:
            names.append((cur, progs.prog_info(fd).get("name", "")))
        finally:
            os.close(fd)
    return names


def out_of(src: str, *args: str) -> str:
    """The output of a program that exits by itself, checked to have run cleanly."""
    r = run("-e", src, *args)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    return r.out


# a test that reads kernel types from BTF
needs_btf = pytest.mark.skipif(not os.path.exists("/sys/kernel/btf/vmlinux"),
                               reason="no kernel BTF at /sys/kernel/btf/vmlinux")
