"""The yardstick of the direct backend: its instruction counts (encoded, xlated by the kernel,
verified) next to the llvm backend's (LLVM -O2), for every bench one-liner and every tool that
both backends load here, from one run of `ptrace --compare-backends` each; and for the
one-liners with a syscall workload, the BPF run time per event of each backend's programs
(kernel BPF stats over bench.py's workload loop, measured by bench.py's own `measure`; the
median of --runs runs, the backends alternating so that the neighbours' load drifts alike).

    sudo python3 bench/backends.py [--runs N] [--events N] [--no-ns]
                                              # a Markdown table; needs llvmlite ('.[llvm]')

A row where LLVM is smaller names a pattern for the direct backend to learn (ARCHITECTURE.md,
issue "Faster"). Scripts the llvm backend does not support are listed at the end, with why.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))

import bench  # noqa: E402
from bench import ONE_LINERS  # noqa: E402

_SUMMARY = re.compile(r"insns direct (\d+) llvm (\d+).*xlated direct (\d+) llvm (\d+); "
                      r"verified direct (\d+) llvm (\d+)")


def compare(args: list[str]) -> tuple[tuple[int, ...] | None, str]:
    p = subprocess.run([sys.executable, "-m", "ptrace_lang", "--compare-backends", *args],
                       capture_output=True, text=True, cwd=ROOT, timeout=300,
                       env={"PTRACE_NO_CACHE": "1", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                            **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}})
    m = _SUMMARY.search(p.stdout)
    if m is None:
        why = (p.stderr.strip().splitlines() or ["no summary"])[0]
        return None, why[:120]
    return tuple(int(x) for x in m.groups()), ""


def ns_per_event(one, runs: int, events: int) -> dict[str, float | None]:
    """Median BPF ns per program run of each backend for ``one`` (None: no syscall workload,
    or no run counted)."""
    if one.workload not in ("getppid", "read"):
        return {"direct": None, "llvm": None}
    got: dict[str, list[float]] = {"direct": [], "llvm": []}
    for _ in range(runs):
        for backend in got:
            tool = bench.Tool(backend, [sys.executable, "-m", "ptrace_lang", "--backend", backend],
                              cwd=ROOT, env=bench.ptrace_env())
            try:
                run = bench.measure(tool, one, one.program, events, {}, 60.0, kernel=True)
            except bench.ToolError as e:
                print(f"<!-- {backend} {one.key}: {e} -->", file=sys.stderr)
                continue
            if run.ns_per_event is not None:
                got[backend].append(run.ns_per_event)
    return {b: bench.median(v) if v else None for b, v in got.items()}


def ns_cell(ns: dict) -> str:
    if ns["direct"] is None or ns["llvm"] is None:
        return "-"
    return f"{ns['direct']:.0f} / {ns['llvm']:.0f}"


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3, help="runs per backend for ns/event (3)")
    ap.add_argument("--events", type=int, default=200_000, help="syscalls per run (200000)")
    ap.add_argument("--no-ns", action="store_true", help="instruction counts only")
    opts = ap.parse_args()
    ns = {o.program: ns_per_event(o, opts.runs, opts.events) for o in ONE_LINERS
          if not opts.no_ns}
    cases = [(f"`{o.program}`", ["-e", o.program]) for o in ONE_LINERS]
    cases += [(f"tools/{t.name}", [str(t)]) for t in sorted((ROOT / "tools").glob("*.bt"))]
    print("| script | insns direct / llvm | xlated direct / llvm | verified direct / llvm "
          "| BPF ns/event direct / llvm |")
    print("|---|---|---|---|---|")
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
        cell = ns_cell(ns[args[1]]) if args[0] == "-e" and args[1] in ns else "-"
        print(f"| {label} | {i_d} / {i_l} | {x_d} / {x_l}{mark} | {v_d} / {v_l} | {cell} |")
    print(f"\n{len(cases) - len(skipped)} scripts compared; the direct backend is larger (xlated) "
          f"on {larger}.")
    if skipped:
        print("\nNot compared (the llvm backend or this kernel refuses them):")
        for label, why in skipped:
            print(f"- {label}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
