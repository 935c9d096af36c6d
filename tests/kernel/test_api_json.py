"""Machine-readable output (-f json, -o, -B) and the Python API, against the real kernel."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from runner import ROOT, Tracer, bpf_prog_names, named_workload, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


def ours() -> list[str]:
    return [n for n in bpf_prog_names() if re.fullmatch(r"p\d+_\d+_.*", n)]


def workload(comm: str, calls: int) -> None:
    subprocess.run(named_workload(comm, f"import os\nfor _ in range({calls}): os.getppid()\n"), check=True)


# ---------------------------------------------------------------------------- -f json

JSON_PROG = ('BEGIN { printf("hi %d\\n", 5); printf("no newline"); time("%Y\\n"); print(7); '
             'print((1, "a")); @x = 1; @c[1, "x"] = count(); @h = hist(5); @s = stats(4); '
             '@t["k"] = (2, "b"); print(@c); exit(); } END { printf("end\\n"); }')


def test_json_output_is_ndjson_in_bpftrace_shapes():
    r = run("-f", "json", "-e", JSON_PROG)
    assert r.rc == 0, r.err
    lines = r.out.split("\n")
    assert lines[-1] == ""                       # every object ends its line
    objs = [json.loads(line) for line in lines[:-1]]  # nothing else on stdout
    year = time.strftime("%Y")
    assert objs == [
        {"type": "attached_probes", "data": {"probes": 2}},
        {"type": "printf", "data": "hi 5\n"},
        {"type": "printf", "data": "no newline"},
        {"type": "time", "data": f"{year}\n"},
        {"type": "value", "data": 7},
        {"type": "value", "data": [1, "a"]},
        {"type": "map", "data": {"@c": {"1,x": 1}}},
        {"type": "printf", "data": "end\n"},
        {"type": "map", "data": {"@c": {"1,x": 1}}},
        {"type": "hist", "data": {"@h": [{"min": 4, "max": 7, "count": 1}]}},
        {"type": "stats", "data": {"@s": {"count": 1, "average": 4, "total": 4}}},
        {"type": "map", "data": {"@t": {"k": [2, "b"]}}},
        {"type": "map", "data": {"@x": 1}},
    ]
    # spacing as bpftrace prints it
    assert '{"type": "value", "data": [1,"a"]}' in lines
    assert "Attached" not in r.err


def test_cat_prints_a_file_in_text_and_json(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("line1\nline2")
    prog = (f'BEGIN {{ cat("{f}"); printf("|after\\n"); cat("{tmp_path}/none%d", 5); '
            f'printf("|x\\n"); exit(); }}')
    r = run("-e", prog)
    assert r.rc == 0 and r.out == "line1\nline2|after\n|x\n\n\n"
    assert f"ERROR: failed to open file '{tmp_path}/none5': No such file or directory" in r.err
    r = run("-q", "-f", "json", "-e", prog)
    assert [json.loads(l) for l in r.out.splitlines()] == [
        {"type": "cat", "data": "line1\nline2"}, {"type": "printf", "data": "|after\n"},
        {"type": "cat", "data": ""}, {"type": "printf", "data": "|x\n"}]


def test_json_quiet_drops_the_attached_object():
    r = run("-q", "-f", "json", "-e", "BEGIN { @x = 2; exit(); }")
    assert r.out == '{"type": "map", "data": {"@x": 2}}\n'


def test_output_file_and_full_buffering(tmp_path):
    out = tmp_path / "trace.out"
    r = run("-o", str(out), "-B", "full", "-e", 'BEGIN { printf("to the file\\n"); @n = 3; exit(); }')
    assert r.rc == 0 and r.out == ""
    assert out.read_text() == "to the file\n\n\n@n: 3\n"
    assert "Attached 1 probe" in r.err
    bad = run("-o", str(tmp_path / "no" / "such" / "dir"), "-e", "BEGIN { exit(); }")
    assert bad.rc == 1 and 'Failed to open output file: "' in bad.err and "Traceback" not in bad.err
    for args, msg in ((("-f", "xml"), 'Invalid output format "xml"'),
                      (("-B", "some"), "-B must be either 'line', 'full', or 'none'")):
        r = run(*args, "-e", "BEGIN { exit(); }")
        assert r.rc == 1 and msg in r.err


def test_a_pipe_reader_sees_each_printf_line_as_it_happens():
    t = Tracer("-e", 'tracepoint:syscalls:sys_enter_getppid /comm == "ptr_prompt"/ '
                     '{ printf("call %d\\n", pid); }')
    t.wait_attached()
    try:
        seen = []
        for i in range(3):
            workload("ptr_prompt", 1)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                seen = [l for l in "".join(t.out_chunks).splitlines() if l.startswith("call ")]
                if len(seen) > i:
                    break
                time.sleep(0.02)
            # the line is there while the tracer still runs: not held until exit
            assert len(seen) == i + 1 and t.p.poll() is None
    finally:
        r = t.stop()
    assert r.rc == 0


# ---------------------------------------------------------------------------- Python API

API_SNIPPET = r"""
import json, os, subprocess, sys, time
from ptrace_lang import trace, compile, PtraceError

out = {}
spec = compile('BEGIN { @x = 1; exit(); }')
out["compiled_programs"] = len(spec.programs)
try:
    trace('BEGIN { $x = ; }')
except PtraceError as e:
    out["error"] = [e.span.line, e.span.col, e.render().splitlines()[0]]

prog = ('tracepoint:syscalls:sys_enter_getppid /comm == "ptr_api"/ '
        '{ @[comm] = count(); @h = hist(pid & 0); @t[comm, 1] = sum(2); printf("hi %s\\n", comm); }')
with trace(prog) as t:
    subprocess.run([sys.executable, "-c",
                    "import ctypes, os; ctypes.CDLL(None).prctl(15, b'ptr_api', 0, 0, 0); "
                    "[os.getppid() for _ in range(5)]"], check=True)
    out["live"] = {k: (list(v.items()) if isinstance(v, dict) else v) for k, v in t.maps.items()}
    events = []
    deadline = time.monotonic() + 20
    while len(events) < 5 and time.monotonic() < deadline:
        events += [(e.kind, e.value) for e in t.events(timeout=0.5)]
    out["events"] = events
    out["probes"] = t.probes
out["final"] = t.maps["@"]
out["exit_code"] = t.exit_code

with trace('BEGIN { print(3); print((1, "a")); exit(); } END { printf("end\\n"); }') as t:
    first = [(e.kind, e.value) for e in t.events(timeout=1)]
out["begin_events"] = first
out["end_events"] = [(e.kind, e.value) for e in t.events(timeout=0)]
out["exited"] = t.exited

try:
    with trace('tracepoint:syscalls:sys_enter_getppid { @n = count(); }') as t:
        raise KeyError("user code failed inside the block")
except KeyError:
    out["raised_through"] = True
print(json.dumps(out))
"""


def test_python_api_end_to_end():
    p = subprocess.run([sys.executable, "-c", API_SNIPPET], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["compiled_programs"] == 1
    assert out["error"] == [1, 14, "stdin:1:14-15: ERROR: syntax error, unexpected ;"]
    assert out["probes"] == 1
    live = out["live"]
    assert live["@"] == [["ptr_api", 5]]
    assert live["@h"] == [{"min": 0, "max": 0, "count": 5}]
    assert live["@t"] == [[["ptr_api", 1], 10]]
    assert out["events"] == [["printf", "hi ptr_api\n"]] * 5
    assert out["final"] == {"ptr_api": 5} and out["exit_code"] == 0
    assert out["begin_events"] == [["value", 3], ["value", [1, "a"]]]
    assert out["end_events"] == [["printf", "end\n"]] and out["exited"] is True
    assert out["raised_through"] is True
    assert ours() == []


def test_the_command_does_not_import_the_api():
    code = ("import sys; import ptrace_lang.cli, ptrace_lang.runtime.session; "
            "print('ptrace_lang.api' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.stdout.strip() == "False", p.stderr


def test_api_example_runs():
    p = subprocess.run([sys.executable, str(ROOT / "examples" / "api_top_syscalls.py"), "0.5"],
                       capture_output=True, text=True, timeout=60, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    rows = [l.split() for l in p.stdout.splitlines() if not l.startswith("event:")]
    assert rows and all(r[-1].isdigit() for r in rows)
    assert ours() == []


def test_join_and_system_in_text_and_json(tmp_path):
    import pathlib
    import tempfile
    short = pathlib.Path(tempfile.mkdtemp(prefix="pj", dir="/tmp"))   # within max_strlen
    marker = short / "joinme"
    marker.write_text("#!/bin/sh\nexit 0\n")
    marker.chmod(0o755)
    prog = (f'tracepoint:syscalls:sys_enter_execve /str(args.filename) == "{marker}"/ '
            '{ join(args.argv); join(args.argv, ","); exit(); }')
    for fmt in ("text", "json"):
        t = Tracer("-f", fmt, "-e", prog)   # (with -f json the attach line is on stdout)
        try:
            deadline = time.monotonic() + 20
            while t.p.poll() is None and time.monotonic() < deadline:
                subprocess.run([str(marker), "a b", "c"], check=True)
                time.sleep(0.1)
        finally:
            r = t.wait(timeout=30)
        assert r.rc == 0, r.err
        if fmt == "text":
            assert r.out.startswith(f"{marker} a b c\n{marker},a b,c\n"), r.out
        else:
            objs = [json.loads(l) for l in r.out.splitlines()]
            assert {"type": "join", "data": f"{marker} a b c"} in objs
            assert {"type": "join", "data": f"{marker},a b,c"} in objs
    # system() only with --unsafe (and the compile cache never lets a program compiled with it
    # run without it)
    prog = 'BEGIN { system("echo hi %d", 5); printf("after\\n"); exit(); }'
    ok = run("--unsafe", "-e", prog)
    assert ok.rc == 0 and ok.out.startswith("hi 5\nafter\n"), ok
    refused = run("-e", prog)
    assert refused.rc == 1 and "system() is an unsafe function being used in safe mode" in refused.err
    js = run("-q", "--unsafe", "-f", "json", "-e", prog)
    assert js.out.splitlines()[:2] == ['{"type": "syscall", "data": "hi 5\\n"}',
                                       '{"type": "printf", "data": "after\\n"}']


def test_json_reports_lost_events_and_full_maps():
    # a one-page ring buffer and a burst of printf: some records are lost, and said so
    prog = ('config = { perf_rb_pages = 1 } '
            'tracepoint:syscalls:sys_enter_getppid /comm == "ptr_jlost"/ { printf("%d %s\\n", pid, comm); }')
    t = Tracer("-f", "json", "-e", prog)
    deadline = time.monotonic() + 20
    while not any('"attached_probes"' in c for c in t.out_chunks) and time.monotonic() < deadline:
        time.sleep(0.05)
    workload("ptr_jlost", 20000)
    r = t.stop()
    assert r.rc == 0, r.err
    objs = [json.loads(line) for line in r.out.splitlines()]
    lost = [o for o in objs if o["type"] == "lost_events"]
    printed = sum(1 for o in objs if o["type"] == "printf")
    assert len(lost) == 1 and lost[0]["data"]["events"] > 0
    assert printed + lost[0]["data"]["events"] == 20000
    # max_map_keys 8 for 20 keys: the failed updates are an "errors" object
    r2 = run("-f", "json", "-e", 'BEGIN { $i = 0; while ($i < 20) { @m[$i] = 1; $i++; } exit(); }',
             env={"BPFTRACE_MAX_MAP_KEYS": "8"})
    objs = [json.loads(line) for line in r2.out.splitlines()]
    errs = [o for o in objs if o["type"] == "errors"]
    assert errs == [{"type": "errors", "data": {"map_full": 12, "read_failed": 0}}], r2.out
    assert len(next(o for o in objs if o["type"] == "map")["data"]["@m"]) == 8
