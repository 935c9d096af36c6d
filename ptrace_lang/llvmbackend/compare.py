"""``ptrace --compare-backends``: the script compiled by both backends, both loaded into the
kernel (maps created, programs verified, nothing attached), and per program the instructions
each produced, the kernel's translated length (``xlated_prog_len`` / 8) and the instructions
the verifier walked (``verified_insns``), side by side; then a one-line summary."""
from __future__ import annotations

import os
import sys

BACKENDS = ("direct", "llvm")


def _measure(text: str, filename: str, opts: dict, backend: str, out) -> dict | None:
    """{program name: (insns, xlated, verified)} for one backend, or None (the error printed)."""
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.errors import PtraceError, SOURCES

    try:
        spec = compile_script(text, filename, Options(
            positional=opts["positional"], unsafe=opts["unsafe"],
            include_dirs=tuple(opts["include_dirs"]), includes=tuple(opts["includes"]),
            backend=backend)).spec
    except PtraceError as e:
        out.write(f"{backend}: " + e.render(SOURCES) + "\n")
        return None
    except Exception as e:  # noqa: BLE001 - a crash of one backend is a finding, not a traceback
        out.write(f"{backend}: internal error: {type(e).__name__}: {e}\n")
        return None
    counts = {ps.name: [len(ps.insns) // 8, None, None] for ps in spec.programs}
    if os.geteuid() != 0:
        return counts
    from ptrace_lang.kernel.progs import prog_info
    from ptrace_lang.runtime.session import RunOptions, Session

    session = Session(spec, RunOptions(quiet=True, dry_run=True))
    try:
        session.load()
        for name, fd in session.k.progs.items():
            info = prog_info(fd)
            counts[name][1:] = [info["xlated_prog_len"] // 8, info["verified_insns"]]
    except PtraceError as e:
        out.write(f"{backend}: " + e.render(SOURCES) + "\n")
    finally:
        session.close()
    return counts


def _cell(v) -> str:
    return "-" if v is None else str(v)


def compare_backends(text: str, filename: str, opts: dict, out=None) -> int:
    out = out or sys.stdout
    got = {b: _measure(text, filename, opts, b, out) for b in BACKENDS}
    if got["direct"] is None:
        return 1
    llvm = got["llvm"] or {}
    names = list(got["direct"])
    w = max(len("program"), *(len(n) for n in names))
    out.write(f"{'program':<{w}}  {'direct insns/xlated/verified':>30}  "
              f"{'llvm insns/xlated/verified':>28}\n")
    totals = {b: [0, 0, 0] for b in BACKENDS}
    for n in names:
        row = []
        for b, counts in (("direct", got["direct"]), ("llvm", llvm)):
            c = counts.get(n)
            row.append("/".join(_cell(v) for v in c) if c else "(not compiled)")
            for i, v in enumerate(c or ()):
                totals[b][i] += v or 0
        out.write(f"{n:<{w}}  {row[0]:>30}  {row[1]:>28}\n")
    d, ll = totals["direct"], totals["llvm"]
    if got["llvm"] is None:
        out.write(f"summary: direct {d[0]} insns (xlated {d[1]}, verified {d[2]}); "
                  "llvm: not compiled\n")
        return 1
    ratio = f"{ll[0] / d[0]:.2f}" if d[0] else "-"
    out.write(f"summary: {len(names)} programs; insns direct {d[0]} llvm {ll[0]} "
              f"(llvm/direct {ratio}); xlated direct {d[1]} llvm {ll[1]}; "
              f"verified direct {d[2]} llvm {ll[2]}\n")
    return 0
