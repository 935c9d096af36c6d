"""-f folded / -f flamegraph on a real profile: a named busy workload's samples become stacks
rooted at its comm, and the SVG is well-formed with one frame per node."""
from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET

from runner import Tracer, named_workload

BUSY = "import time\nend = time.time() + 1.5\nwhile time.time() < end: os.getpid()"


def _profile(tmp_path, *fmt):
    out = tmp_path / "graph"
    t = Tracer(*fmt, "-o", str(out), "-e",
               'profile:hz:199 /comm == "h8busy"/ { @[kstack, ustack, comm] = count(); @n = count(); }')
    t.wait_attached()
    subprocess.run(named_workload("h8busy", BUSY), check=True, timeout=30)
    r = t.stop()
    assert r.rc == 0, r.err
    return out, r


def test_folded_stacks_of_a_profile(tmp_path):
    out, r = _profile(tmp_path, "-f", "folded")
    lines = out.read_text().splitlines()
    assert lines, r.err
    total = 0
    for line in lines:
        stack, n = line.rsplit(" ", 1)
        assert stack.split(";")[0] == "h8busy"
        total += int(n)
    assert total > 50
    assert "@n: " in r.out          # the other maps print as usual
    assert int(r.out.split("@n: ")[1].split()[0]) == total


def test_svg_of_a_profile(tmp_path):
    out, r = _profile(tmp_path, "-f", "flamegraph")
    root = ET.parse(out).getroot()
    frames = root.findall(".//{http://www.w3.org/2000/svg}g[@class='fr']")
    assert int(root.get("data-frames")) == len(frames) > 2
    assert {g.get("data-n") for g in frames} >= {"all", "h8busy"}
