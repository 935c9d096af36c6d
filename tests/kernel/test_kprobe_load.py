"""kprobe: / kretprobe: on this kernel: programs pass the real verifier (--dry-run), attach
points expand (wildcards, mod:fn, fn+off), errors are located; attaching says clearly when the
kernel has no kprobe PMU. Real attachments are checked in the VM tier (tests/vm)."""
from __future__ import annotations

import os
import re

import pytest

from runner import ROOT, Tracer, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

HAS_KPROBE_PMU = os.path.isdir("/sys/bus/event_source/devices/kprobe")
NO_CACHE = {"PTRACE_NO_CACHE": "1"}


def compile_src(src: str, **kw):
    from ptrace_lang.driver import Options, compile_script

    return compile_script(src, "stdin", Options(**kw))


@pytest.mark.parametrize("src", [
    # argN from pt_regs, func, maps of every kind, printf
    'kprobe:vfs_read { @calls[func] = count(); @size = hist(arg2); @last[comm, pid] = arg0;'
    ' printf("%s %d %d %s\\n", comm, pid, arg2, func); }',
    # all six argument registers, the alias, a predicate, lhist/stats/min/max
    'k:do_sys_openat2 /arg0 != 0/ { @a = lhist(arg1 & 0xff, 0, 256, 16);'
    ' @s = stats(arg2 + arg3 + arg4 + arg5); @m = max(arg0); @n = min(arg1); }',
    # retval in a kretprobe, signed comparisons, a string key
    'kretprobe:vfs_read /(int64)retval > 0/ { @bytes[comm] = sum(retval); @r = hist(retval); }',
    'kr:vfs_write { if (retval < 0) { @errors[func] = count(); } else { printf("%d\\n", retval); } }',
    # wildcards: one program for all, probe and func through the attach cookie
    'kprobe:vfs_* { @[probe] = count(); @f[func] = count(); }',
    'kretprobe:vfs_rea* { @[func, retval] = count(); }',
    # offsets, module-qualified names
    'kprobe:vfs_read+0, kprobe:vmlinux:vfs_write { @[probe] = count(); }',
    'kprobe:vfs_read+0x4 { @ = count(); }',
    # several kprobe blocks and other providers in one script
    'kprobe:vfs_read { @r = count(); } kretprobe:vfs_read { @rr = count(); }'
    ' tracepoint:syscalls:sys_enter_read { @t = count(); } interval:s:1 { print(@r); }',
])
def test_kprobe_programs_pass_the_verifier(src):
    r = run("--dry-run", "-e", src)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err


def test_wildcard_shares_one_program_and_uses_cookies():
    c = compile_src("kprobe:vfs_* { @[probe] = count(); }", stages=("asm",))
    names = [a.probe_name for a in c.spec.attachments]
    assert len(names) > 10 and "kprobe:vfs_read" in names and "kprobe:vfs_write" in names
    assert names == sorted(names) and len(set(names)) == len(names)
    assert all(n.startswith("kprobe:vfs_") and ".part." not in n for n in names)
    assert len(c.spec.programs) == 1
    assert {a.program for a in c.spec.attachments} == {c.spec.programs[0].name}
    assert sorted(a.cookie for a in c.spec.attachments) == list(range(len(names)))
    assert "get_attach_cookie" in c.dumps["asm"] or "call 174" in c.dumps["asm"]


def test_offsets_and_modules_expand_to_targets():
    c = compile_src("kprobe:vfs_read+16, kprobe:vfs_read+0x10, kprobe:vmlinux:vfs_write,"
                    " kretprobe:vfs_read { @[probe] = count(); }")
    got = [(a.provider, a.probe_name, a.target) for a in c.spec.attachments]
    assert got == [
        ("kprobe", "kprobe:vfs_read+16", "vfs_read+16"),
        ("kprobe", "kprobe:vfs_read+16", "vfs_read+16"),
        ("kprobe", "kprobe:vmlinux:vfs_write", "vfs_write+0"),
        ("kretprobe", "kretprobe:vfs_read", "vfs_read+0"),
    ]
    # kprobe and kretprobe are different programs (different builtins)
    assert len(c.spec.programs) == 2


def test_single_target_needs_no_cookie():
    c = compile_src('kprobe:vfs_read { printf("%s\\n", probe); }', stages=("asm",))
    assert [a.probe_name for a in c.spec.attachments] == ["kprobe:vfs_read"]
    assert "call 174" not in c.dumps["asm"] and "get_attach_cookie" not in c.dumps["asm"]


def test_positional_parameter_in_the_attach_point():
    c = compile_src("kprobe:$1 { @ = count(); }", positional=["vfs_read"])
    assert [a.probe_name for a in c.spec.attachments] == ["kprobe:vfs_read"]


@pytest.mark.parametrize("src,message", [
    ("kprobe:no_such_function_xyz { }",
     "stdin:1:1-28: ERROR: No matches for kprobe no_such_function_xyz."),
    ("kretprobe:no_such_function_xyz { }",
     "stdin:1:1-31: ERROR: No matches for kretprobe no_such_function_xyz."),
    ("kprobe:no_such_*_xyz { }", "stdin:1:1-21: ERROR: No matches for kprobe no_such_*_xyz."),
    ("kprobe:no_such_module_xyz:vfs_read { }",
     "ERROR: No matches for kprobe no_such_module_xyz:vfs_read."),
    ("kretprobe:vfs_read+8 { }", "ERROR: kretprobe cannot take an offset"),
    ("kprobe:vfs_read+0xzz { }", "ERROR: Invalid offset '0xzz' in kprobe probe"),
    ("kprobe:vfs_*+8 { }", "ERROR: an offset cannot be used with a wildcard"),
    ("kprobe:a:b:c { }", "ERROR: kprobe probe must be written kprobe:[module:]function[+offset]"),
    ("kretprobe:vfs_read { @ = arg0; }", "ERROR: The arg0 builtin can not be used with 'kretprobe' probes"),
    ("kprobe:vfs_read { @ = retval; }", "ERROR: The retval builtin can not be used with 'kprobe' probes"),
    ("kprobe:vfs_read { @ = args; }", "ERROR: The args builtin can not be used with 'kprobe' probes"),
])
def test_kprobe_errors(src, message):
    r = run("--dry-run", "-e", src)
    assert r.rc == 1
    assert message in r.err and "Traceback" not in r.err, r.err


def test_missing_function_before_anything_attaches():
    # the error comes from the compiler: nothing is loaded, not even the tracepoint's program
    r = run("-e", "tracepoint:syscalls:sys_enter_read { } kprobe:no_such_function_xyz { }")
    assert r.rc == 1 and "Attached" not in r.err
    assert "stdin:1:40-67: ERROR: No matches for kprobe no_such_function_xyz." in r.err, r.err


def test_missing_probes_warn_skips_the_function():
    src = ('config = { missing_probes = "warn" } '
           "kprobe:no_such_function_xyz, kprobe:vfs_read { @ = count(); }")
    r = run("--dry-run", "-e", src, env=NO_CACHE)
    assert r.rc == 0, r.err
    assert "WARNING: No matches for kprobe no_such_function_xyz. Skipping." in r.err
    c = compile_src(src)
    assert [a.probe_name for a in c.spec.attachments] == ["kprobe:vfs_read"]


@pytest.mark.skipif(HAS_KPROBE_PMU, reason="this kernel has a kprobe PMU (the VM tier covers "
                                            "the missing-PMU case's opposite; see test below)")
def test_attach_without_kprobe_pmu_is_a_clean_error():
    # a tracepoint attaches first, then the kprobe fails: exit 1, one error, nothing left behind
    from runner import bpf_prog_names

    before = set(bpf_prog_names())
    r = run("-e", "tracepoint:syscalls:sys_enter_read { @t = count(); } "
                  "kprobe:vfs_read { @k = count(); }")
    assert r.rc == 1
    assert "kprobe: this kernel has no kprobe support (no kprobe PMU)" in r.err, r.err
    assert re.search(r"^stdin:1:\d+-\d+: ERROR: probe 'kprobe:vfs_read': failed to attach: ", r.err, re.M)
    assert "Attached" not in r.err and "Traceback" not in r.err and r.out == ""
    assert r.err.count("ERROR") == 1
    left = {n for n in bpf_prog_names() if n.startswith("p")} - before
    assert not any(n.endswith(("_kprobe", "_tracepoin", "_tracepoint")) for n in left), left


@pytest.mark.skipif(not HAS_KPROBE_PMU, reason="this kernel has no kprobe PMU (tests/vm attaches "
                                                "kprobes in a VM)")
def test_kprobe_attaches_and_fires_here():
    t = Tracer("-e", "kprobe:vfs_read { @calls = count(); } "
                     "kretprobe:vfs_read { @ret = count(); }")
    t.wait_attached()
    with open(os.path.join(ROOT, "README.md"), "rb") as f:
        f.read()
    r = t.stop()
    assert r.rc == 0, r.err
    assert int(re.search(r"^@calls: (\d+)$", r.out, re.M).group(1)) >= 1
