"""The yardstick of the direct backend: its instruction counts (encoded, xlated by the kernel,
verified) next to the llvm backend's (LLVM -O2), for every bench one-liner and every tool that
both backends load here, from one run of `ptrace --compare-backends` each.

    sudo python3 bench/backends.py            # a Markdown table; needs llvmlite ('.[llvm]')

A row where LLVM is smaller names a pattern for the direct backend to learn (ARCHITECTURE.md,
issue "Faster"). Scripts the llvm backend does not support are listed at the end, with why.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

from bench import ONE_LINERS  # noqa: E402

_SUMMARY = re.compile(r"insns direct (\d+) llvm (\d+).*xlated direct (\d+) llvm (\d+); "
                      r"verified direct (\d+) llvm (\d+)")


def compare(args: list[str]) -> tuple[tuple[int, ...] | None, str]:
    p = subprocess.run([sys.executable, "-m", "ptrace_lang", "--compare-backends", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={"PTRACE_NO_CACHE": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    m = _SUMMARY.search(p.stdout)
    if m is None:
        why = (p.stderr.strip().splitlines() or ["no summary"])[0]
        return None, why[:120]
    return tuple(int(x) for x in m.groups()), ""


def main() -> int:
    cases = [(f"`{o.program}`", ["-e", o.program]) for o in ONE_LINERS]
    cases += [(f"tools/{t.name}", [str(t)]) for t in sorted((ROOT / "tools").glob("*.bt"))]
    print("| script | insns direct / llvm | xlated direct / llvm | verified direct / llvm |")
    print("|---|---|---|---|")
    skipped = []
    larger = 0
    for label, args in cases:
        got, why = compare(args)
        if got is None:
            skipped.append((label, why))
            continue
        i_d, i_l, x_d, x_l, v_d, v_l = got
        larger += x_d > x_l
        mark = " **(llvm smaller)**" if x_d > x_l else ""
        print(f"| {label} | {i_d} / {i_l} | {x_d} / {x_l}{mark} | {v_d} / {v_l} |")
    print(f"\n{len(cases) - len(skipped)} scripts compared; the direct backend is larger (xlated) "
          f"on {larger}.")
    if skipped:
        print("\nNot compared (the llvm backend or this kernel refuses them):")
        for label, why in skipped:
            print(f"- {label}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
