"""Warnings bpftrace gives: unreachable statements after exit()/return, an unused declared map
(see test_accept), -k's per-event report of a failed read (a located warning record)."""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.driver import Options, compile_script


def warnings_of(src: str, **kw) -> list:
    return compile_script(src, "stdin", Options(**kw)).spec.config.get("warnings", [])


def test_unreachable_statements():
    w = warnings_of('BEGIN { exit(); printf("x\\n"); printf("y\\n"); } '
                    'END { if (1) { return; } printf("z\\n"); }')
    assert len(w) == 1 and w[0].startswith("stdin:1:17-30: WARNING: Unreachable statement")
    w = warnings_of('BEGIN { if (1) { return; } printf("z\\n"); }')
    assert w == []
    w = warnings_of('BEGIN { return; @x = 1; }')
    assert "Unreachable statement" in w[0]


def test_k_reports_failed_reads_per_event():
    src = 'BEGIN { printf("%s\\n", str(8)); }'
    plain = compile_script(src, "stdin", Options()).spec
    checked = compile_script(src, "stdin", Options(helper_checks=1)).spec
    assert not any(e.kind == S.EV_WARNING for e in plain.events)
    warns = [e for e in checked.events if e.kind == S.EV_WARNING]
    assert len(warns) == 1 and "WARNING: Failed to probe_read_str" in warns[0].fmt
    assert warns[0].fmt.startswith("stdin:1:24-30:")
