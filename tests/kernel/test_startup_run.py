"""A start from the compile cache imports only what loading and attaching need.

Start-up time is measured by bench/bench.py, never asserted here; what this guards is the shape
that makes it fast: from a cached program to the "Attached" line, no compiler module, no `re`
(whose import pulls in enum, functools and collections: ~5 ms), no ctypes package (the kernel
layer makes what it needs from _ctypes: kernel/cty.py), no lark.
"""
from __future__ import annotations

import os
import subprocess
import sys

from runner import ROOT

NOT_BEFORE_ATTACHED = ("re", "enum", "functools", "collections", "typing", "dataclasses",
                       "threading", "ctypes", "lark", "elftools")
COMPILER = ("ptrace_lang.frontend", "ptrace_lang.sema", "ptrace_lang.codegen", "ptrace_lang.bpf")
# the uapi constants (and the helper names they are made from) are data the kernel layer shares
SHARED_DATA = ("ptrace_lang.bpf", "ptrace_lang.bpf.uapi", "ptrace_lang.bpf.helpers")


def _imported_before_attached(stderr: str) -> list[str]:
    """Modules imported from the launcher's first import to the Attached line."""
    mods: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("Attached"):
            return mods
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if mods or name == "ptrace_lang":
                mods.append(name)
    raise AssertionError(f"no Attached line:\n{stderr[-2000:]}")


def test_a_cached_start_imports_neither_the_compiler_nor_re(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path)}
    env.pop("PTRACE_NO_CACHE", None)
    cmd = [str(ROOT / "bin" / "ptrace"), "-e", 'BEGIN { printf("x %d\\n", 7); exit(); }']
    # the second run without site (-S): what site imports (here, a .pth file of the machine's
    # imports re) would hide what ptrace imports; a cached start needs no third-party package
    runs = [subprocess.run([sys.executable, *flags, "-X", "importtime", *cmd], capture_output=True,
                           text=True, env=env, timeout=60, cwd="/")
            for flags in ([], ["-S"])]
    for p in runs:
        assert p.returncode == 0 and p.stdout.startswith("x 7\n"), p.stderr[-2000:]
    first, second = (_imported_before_attached(p.stderr) for p in runs)
    # the first run compiled (so the check below is not vacuous), the second did not
    assert any(m.startswith(COMPILER) for m in first)
    assert not [m for m in second if m.startswith(COMPILER) and m not in SHARED_DATA]
    assert not [m for m in second if m in NOT_BEFORE_ATTACHED]
    # and the ring buffer was made while the runtime was imported
    assert "ptrace_lang.runtime.early" in second


def test_garbage_collection_is_off_while_starting_and_back_on_once_attached():
    code = ("import gc, sys\n"
            "from ptrace_lang import cli\n"
            "import ptrace_lang.runtime.session as s\n"
            "seen = []\n"
            "orig = s.Session.load\n"
            "def load(self):\n"
            "    seen.append(gc.isenabled())\n"
            "    orig(self)\n"
            "s.Session.load = load\n"
            "rc = cli.main(['-e', 'BEGIN { printf(\"x\\\\n\"); exit(); }'])\n"
            "print('during load:', seen, 'after:', gc.isenabled(), 'rc:', rc)\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd="/")
    assert p.stdout.splitlines()[-1] == "during load: [False] after: True rc: 0", (p.stdout, p.stderr)


def _map_types(pid: int) -> list[int]:
    """The types of the BPF maps process ``pid`` holds (from /proc/PID/fdinfo), one per map
    (Python's mmap keeps a dup of the fd it maps: a ring buffer is held three times)."""
    types = {}
    for fd in os.listdir(f"/proc/{pid}/fdinfo"):
        try:
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
        if "map_id" in fields:
            types[int(fields["map_id"])] = int(fields["map_type"])
    return sorted(types.values())


RINGBUF = 27


def test_the_ring_buffer_guessed_from_the_text_is_kept_or_released(tmp_path):
    """cli begins a printing script's ring buffer before it knows the program (early.guess): a
    program that prints keeps exactly that one; one whose text only mentions print releases it."""
    from runner import Tracer

    probe = "tracepoint:syscalls:sys_enter_getppid"
    for program, want in ((f'{probe} {{ printf("%d\\n", pid); }}', [RINGBUF]),
                          (f"{probe} {{ @n = count(); }} // no print here", [])):
        t = Tracer("-e", program)
        try:
            t.wait_attached()
            got = [m for m in _map_types(t.p.pid) if m == RINGBUF]
        finally:
            r = t.stop()
        assert r.rc == 0, r.err
        assert got == want, (program, got)


def test_early_keeps_a_matching_guess_and_releases_a_wrong_one():
    code = """
import os
from ptrace_lang.runtime import early
from ptrace_lang.driver import Options, compile_script
from test_startup_run import RINGBUF, _map_types

def ringbufs():
    return _map_types(os.getpid()).count(RINGBUF)

prints = compile_script('BEGIN { printf("x\\\\n"); }', 'stdin', Options()).spec
quiet = compile_script('BEGIN { @x = 1; }', 'stdin', Options()).spec
early.guess('BEGIN { printf("x\\\\n"); }')
assert early.pending('ringbuf')
early.start(prints)                       # the spec agrees with the guess: kept
m, rb = early.take('ringbuf')
assert m.max_entries == early.GUESS_BYTES and ringbufs() == 1
rb.close(); m.close()
early.guess('BEGIN { @x = 1; }  // print')
early.start(quiet)                        # no ring buffer wanted: the guess goes stale
assert not early.pending('ringbuf')
early.drop_unused()
assert ringbufs() == 0
print('ok')
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests' / 'kernel'}"},
                       cwd="/")
    assert p.stdout.strip() == "ok", p.stderr[-2000:]
