#!/usr/bin/env python3
"""Check that a change to the compiler leaves the compiled programs as they were.

Compiles a fixed set of scripts (examples/*.bt, tools/*.bt, bench/gen_blocks.py 100, or the
files named) for the running machine and writes one line per script: its name and a digest of
its whole ObjectSpec (instructions, relocations, source spans, maps, events), or of its error.

    python3 bench/codecheck.py --save /tmp/before.txt      # before the change
    python3 bench/codecheck.py --check /tmp/before.txt     # after it: lists what differs

Run it with the checkout's PYTHONPATH. Exit status 1 when a digest differs.
"""
from __future__ import annotations

import argparse
import hashlib
import marshal
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _scripts(names: list[str]) -> list[tuple[str, str]]:
    if names:
        return [(n, Path(n).read_text()) for n in names]
    sys.path.insert(0, str(ROOT / "bench"))
    from gen_blocks import script

    out = [(str(p.relative_to(ROOT)), p.read_text())
           for d in ("examples", "tools") for p in sorted((ROOT / d).glob("*.bt"))]
    out.append(("gen_blocks 100", script(100)))
    return out


def digest(text: str, name: str, machine) -> str:
    from ptrace_lang import driver, spec
    from ptrace_lang.errors import PtraceError

    try:
        compiled = driver.compile_script(text, name, driver.Options(), machine)
    except PtraceError as e:
        blob = ("error", str(e)).__repr__().encode()
    else:
        blob = marshal.dumps(spec.to_plain(compiled.spec))
    return hashlib.blake2b(blob, digest_size=12).hexdigest()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save", metavar="FILE")
    ap.add_argument("--check", metavar="FILE")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args(argv)
    from ptrace_lang.kernel.host import running

    machine = running()
    lines = [f"{name}\t{digest(text, name, machine)}" for name, text in _scripts(a.files)]
    if a.save:
        Path(a.save).write_text("\n".join(lines) + "\n")
    if not a.check:
        if not a.save:
            print("\n".join(lines))
        return 0
    before = dict(line.split("\t") for line in Path(a.check).read_text().splitlines())
    bad = [name for name, d in (line.split("\t") for line in lines) if before.get(name) != d]
    for name in bad:
        print(f"DIFFERS: {name}")
    print(f"{len(lines) - len(bad)} of {len(lines)} scripts compile as before")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
