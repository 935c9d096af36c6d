"""The llvm backend's coverage: the share of examples/*.bt, tools/*.bt and tests/unit/corpus/*.bt
that `ptrace --dry-run --backend llvm` compiles and the kernel's verifier accepts, next to the
direct backend's on the same scripts (a script the direct backend refuses here, for a probe
type this kernel lacks, is left out of the share). Needs root.

    python bench/llvm_coverage.py [-v]      # -v: every script's outcome
"""
from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DIRS = ("examples", "tools", "tests/unit/corpus")
ARGS = {"timedcount.bt": ["1"], "pidsyscalls.bt": ["1"]}


def outcome(path: Path, backend: str) -> tuple[str, str]:
    cmd = [sys.executable, "-m", "ptrace_lang", "--dry-run", "--backend", backend, "-q",
           str(path), *ARGS.get(path.name, [])]
    try:
        p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "timeout", ""
    err = p.stderr.strip()
    if p.returncode == 0:
        return "ok", ""
    first = next((ln for ln in err.splitlines() if "ERROR" in ln), err[:200])
    if "not supported by the llvm backend" in err:
        return "unsupported", first.split("ERROR: ", 1)[-1]
    if "internal error" in err:
        return "crash", first
    if "verifier" in err:
        return "verifier", first
    return "error", first


def main() -> int:
    verbose = "-v" in sys.argv
    rows = []
    for d in DIRS:
        for p in sorted((ROOT / d).glob("*.bt")):
            direct = outcome(p, "direct")[0]
            llvm, why = outcome(p, "llvm")
            rows.append((d, p.name, direct, llvm, why))
            if verbose:
                print(f"{d}/{p.name}: direct {direct}, llvm {llvm} {why}", flush=True)
    reasons = Counter(why.split(" is not supported")[0] for *_, llvm, why in rows
                      if llvm == "unsupported")
    for d in DIRS:
        mine = [r for r in rows if r[0] == d and r[2] == "ok"]
        ok = sum(r[3] == "ok" for r in mine)
        print(f"{d}: llvm {ok}/{len(mine)} of the scripts the direct backend loads here "
              f"({len([r for r in rows if r[0] == d])} scripts)")
    mine = [r for r in rows if r[2] == "ok"]
    ok = sum(r[3] == "ok" for r in mine)
    print(f"total: llvm {ok}/{len(mine)} ({100 * ok / max(len(mine), 1):.0f}%)")
    print("llvm outcomes:", dict(Counter(r[3] for r in mine)))
    for what, n in reasons.most_common(12):
        print(f"  {n:3d}  {what}")
    bad = [r for r in mine if r[3] in ("crash", "verifier", "error", "timeout")]
    for r in bad:
        print(f"  {r[3]}: {r[0]}/{r[1]}: {r[4]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
