"""uprobe_multi: the uprobes of one block in one binary attached with a single link (kernel
>= 6.6), which the kernel unregisters at once when it closes; the per-uprobe perf events of
the fallback path (PTRACE_NO_UPROBE_MULTI=1) print the same."""
from __future__ import annotations

import glob
import os
import re
import subprocess
import time

import pytest

from runner import Tracer, named_workload


def _multi_or_skip():
    from ptrace_lang.providers.uprobe import uprobe_multi_supported

    if not uprobe_multi_supported():
        pytest.skip("this kernel has no uprobe_multi links (Linux >= 6.6): the perf path is used")


def _link_types(pid: int) -> list[str]:
    out = []
    for fd in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            text = open(fd).read()
        except OSError:
            continue
        m = re.search(r"^link_type:\s*(\S+)", text, re.M)
        if m:
            out.append(m.group(1))
    return out


PROG = ('uprobe:libc:labs, uprobe:libc:atoi, uprobe:libc:abs /comm == "umwork"/ '
        '{ @[probe, func] = count(); }')
WORK = ("import ctypes; c = ctypes.CDLL(None)\n"
        "for i in range(40): c.labs(-5); c.atoi(b'12')\n"
        "for i in range(7): c.abs(-3)\n")


def _run(env_extra: dict | None = None):
    old = dict(os.environ)
    os.environ.update(env_extra or {})
    try:
        t = Tracer("-e", PROG)
    finally:
        os.environ.clear()
        os.environ.update(old)
    t.wait_attached()
    links = _link_types(t.p.pid)
    subprocess.run(named_workload("umwork", WORK), check=True)
    time.sleep(0.3)
    return t.stop(), links


def test_one_link_and_the_same_counts_as_the_perf_path():
    _multi_or_skip()
    multi, links = _run()
    perf, perf_links = _run({"PTRACE_NO_UPROBE_MULTI": "1"})
    assert links.count("uprobe_multi") == 1, links
    assert "uprobe_multi" not in perf_links and perf_links.count("perf") == 3, perf_links
    for r in (multi, perf):
        assert r.rc == 0, r.err
        assert "Attached 3 probes" in r.err
        assert re.search(r"@\[uprobe:\S+libc\S*:labs, labs\]: 40\n", r.out), r.out
        assert re.search(r"@\[uprobe:\S+libc\S*:atoi, atoi\]: 40\n", r.out), r.out
        assert re.search(r"@\[uprobe:\S+libc\S*:abs, abs\]: 7\n", r.out), r.out
    assert sorted(multi.out.splitlines()) == sorted(perf.out.splitlines())


def test_hundreds_of_uprobes_are_gone_when_the_tracer_exits():
    """500+ uprobes over libc: attached in one link, and nothing of ours is left running
    after the exit (per-uprobe perf events take the kernel ~80 ms each to close)."""
    _multi_or_skip()
    t = Tracer("-e", "uprobe:libc:__* { @n = count(); }")
    t.wait_attached()
    n = int(re.search(r"Attached (\d+) probes", "".join(t.err_lines)).group(1))
    assert n > 300
    r = t.stop()
    assert r.rc == 0, r.err
    time.sleep(0.5)
    left = subprocess.run(["pgrep", "-f", "uprobe:libc:__"], capture_output=True, text=True).stdout
    assert left.strip() == "", f"still running after exit: {left}"
