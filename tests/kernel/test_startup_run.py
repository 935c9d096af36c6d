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
    assert not [m for m in second if m.startswith(COMPILER)]
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
