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

KERNEL_SCRIPTS = dict(SCRIPTS, uprobe_count="uprobe:/bin/bash:readline { @ = count(); }")


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
