"""BTF-bound probes on this kernel: rawtracepoint's tp_btf programs with BTF-typed args,
iter:task / task_file / task_vma read for real and compared with /proc, the raw tracepoints
only BTF knows, and fentry/fexit programs as compiled (bound to their BTF function) plus the
clear error this kernel's refusal gets. fentry/fexit attachments are checked in the VM tier."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from runner import Tracer, named_workload, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")

TRACING, RAW_TRACEPOINT = 26, 17
BPF_TRACE_RAW_TP, BPF_TRACE_FENTRY, BPF_TRACE_FEXIT, BPF_TRACE_ITER = 23, 24, 25, 28


def compile_src(src: str, **kw):
    from ptrace_lang.driver import Options, compile_script

    return compile_script(src, "stdin", Options(**kw))


def btf_id(name: str, kind: str) -> int:
    from ptrace_lang import btf

    return btf.BTF.vmlinux().find(name, kind)


# ----------------------------------------------------------------------------- rawtracepoint

def test_tp_btf_typed_args_follow_pointers():
    """sched_switch's args.prev / args.next are struct task_struct pointers: their comm and
    pid are read through them, for a workload that sleeps 30 times."""
    wl = subprocess.Popen(named_workload("ptr_tpbtf", "import sys, time\nsys.stdin.readline()\n"
                                                      "for _ in range(30): time.sleep(0.002)"),
                          stdin=subprocess.PIPE, text=True)
    try:
        t = Tracer("-e", "rawtracepoint:sched_switch /args.prev->tgid == $1/ { "
                         "@[args.prev->comm, args.prev->pid == $1] = count(); "
                         "@state[args.prev_state > 0] = count(); "
                         "if (args.next->pid == 0) { @to_idle = count(); } }", str(wl.pid))
        t.wait_attached()
        wl.stdin.write("go\n")
        wl.stdin.flush()
        wl.wait(60)
        r = t.stop()
    finally:
        if wl.poll() is None:
            wl.kill()
    assert r.rc == 0, r.err
    assert r.err.startswith("Attached 1 probe"), r.err
    n = int(re.search(r"^@\[ptr_tpbtf, true\]: (\d+)$", r.out, re.M).group(1))
    assert n >= 30, r.out
    assert int(re.search(r"^@state\[true\]: (\d+)$", r.out, re.M).group(1)) >= 30, r.out


def test_tp_btf_program_only_when_args_are_read():
    c = compile_src("rawtracepoint:sched_switch { @[args.prev->pid] = count(); }")
    [p] = c.spec.programs
    assert (p.prog_type, p.expected_attach_type) == (TRACING, BPF_TRACE_RAW_TP)
    assert p.attach_btf_id == btf_id("btf_trace_sched_switch", "typedef")
    assert p.attach_btf_module == ""
    assert [a.probe_name for a in c.spec.attachments] == ["rawtracepoint:sched_switch"]
    # raw argN only: a plain raw tracepoint attached by name
    c = compile_src("rawtracepoint:sched_switch { @[arg0] = count(); }")
    [p] = c.spec.programs
    assert (p.prog_type, p.attach_btf_id) == (RAW_TRACEPOINT, 0)
    assert [a.target for a in c.spec.attachments] == ["sched_switch"]


def test_rawtracepoint_finds_what_the_listing_finds():
    """Tracepoints without a tracefs event (DECLARE_TRACE: sched_entry_tp...) come from BTF,
    as in ``ptrace -l``; they attach by name."""
    listed = run("-l", "rawtracepoint:*_tp").out.split()
    names = [x.rsplit(":", 1)[1] for x in listed]
    if not names:
        pytest.skip("this kernel has no bare (tracefs-less) tracepoints")
    c = compile_src("rawtracepoint:*_tp { @[probe] = count(); }")
    assert sorted(a.target for a in c.spec.attachments) == sorted(names)
    r = run("-e", f"rawtracepoint:{names[0]} {{ @ = count(); }} interval:ms:200 {{ exit(); }}")
    assert r.rc == 0 and r.err.startswith("Attached 2 probes"), r.err


def test_rawtracepoint_wildcard_with_args_one_program_per_event():
    c = compile_src("rawtracepoint:sched_wakeup* { @[probe] = count(); @p[args.p->pid] = count(); }")
    names = [a.probe_name for a in c.spec.attachments]
    assert names == ["rawtracepoint:sched_wakeup", "rawtracepoint:sched_wakeup_new"]
    assert len(c.spec.programs) == len(names)
    assert all(p.prog_type == TRACING and p.attach_btf_id for p in c.spec.programs)
    r = run("-e", "rawtracepoint:sched_wakeup* { @[probe] = count(); @p[args.p->pid] = count(); } "
                  "interval:ms:300 { exit(); }")
    assert r.rc == 0 and r.err.startswith("Attached 3 probes"), r.err
    assert re.search(r"^@\[rawtracepoint:sched_wakeup\]: \d+$", r.out, re.M), r.out


@pytest.mark.parametrize("src,message", [
    ("rawtracepoint:no_such_event_xyz { }", "ERROR: No matches for rawtracepoint no_such_event_xyz."),
    ("rawtracepoint:sched_switch { @ = args.nosuch; }",
     "ERROR: Struct/union of type 'struct sched_switch_args' does not contain a field named 'nosuch'"),
    ("rawtracepoint:no_such_module_xyz:sched_switch { }",
     "ERROR: No matches for rawtracepoint no_such_module_xyz:sched_switch."),
])
def test_rawtracepoint_errors(src, message):
    r = run("-e", src)
    assert r.rc == 1 and message in r.err and "Traceback" not in r.err, r.err


# ----------------------------------------------------------------------------- iter

def _proc_tids() -> dict[int, tuple[int, str]]:
    """tid -> (tgid, comm) of every task now."""
    out = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/comm") as f:
                    out[int(t)] = (int(p), f.read().rstrip("\n"))
        except OSError:
            continue
    return out


def test_iter_task_prints_every_task_and_ends_by_itself():
    before = _proc_tids()
    r = run("-e", 'iter:task { printf("%d %d %s\\n", ctx->task->tgid, ctx->task->pid, '
                  'ctx->task->comm); }', timeout=60)
    after = _proc_tids()
    assert r.rc == 0 and r.err.startswith("Attached 1 probe"), r.err
    got = {}
    for line in filter(None, r.out.splitlines()):
        m = re.fullmatch(r"(\d+) (\d+) (.*)", line)
        assert m, line
        got[int(m.group(2))] = (int(m.group(1)), m.group(3))
    stable = {t: v for t, v in before.items() if after.get(t) == v}
    assert len(stable) > 10
    # every task alive (with the same name) all along was visited, with its tgid and comm;
    # (pid 1's thread group excepted: this machine's task iterator never visits it)
    missing = sorted(t for t in set(stable) - set(got) if stable[t][0] != 1)
    assert not missing, (missing, r.out[:2000])
    for t, v in stable.items():
        if t in got:
            # (comm is 15 characters; /proc adds a kernel worker's current work to its name)
            assert got[t][0] == v[0] and v[1].startswith(got[t][1]) and got[t][1], (t, got[t], v)
    assert got.get(os.getpid(), (0, ""))[0] == os.getpid()
    # nothing made up: a printed task existed before, after or was ours
    assert len(set(got) - set(before) - set(after)) <= 5, set(got) - set(before) - set(after)


def test_iter_task_file_names_our_open_files():
    path = f"/tmp/ptrace-iter-{os.getpid()}.txt"
    with open(path, "w") as f:
        fd = f.fileno()
        r = run("-e", 'iter:task_file /ctx->task->tgid == $1 && ctx->task->pid == $1/ { '
                      'printf("%d %s\\n", ctx->fd, str(ctx->file->f_path.dentry->d_name.name)); }',
                str(os.getpid()))
    os.unlink(path)
    assert r.rc == 0, r.err
    lines = [x for x in r.out.splitlines() if x]
    assert f"{fd} {os.path.basename(path)}" in lines, r.out
    fds = sorted(int(x.split()[0]) for x in lines)
    assert 0 in fds and fd in fds and fds == sorted(set(fds)), fds


def test_iter_task_vma_counts_our_mappings():
    with open("/proc/self/maps") as f:
        n = len(f.read().splitlines())
    r = run("-e", "iter:task_vma /ctx->task->pid == $1/ { @vmas = count(); "
                  "@bytes = sum(ctx->vma->vm_end - ctx->vma->vm_start); }", str(os.getpid()))
    assert r.rc == 0, r.err
    got = int(re.search(r"^@vmas: (\d+)$", r.out, re.M).group(1))
    assert abs(got - n) <= 2, (got, n)       # (the vsyscall line is not a vma)
    assert int(re.search(r"^@bytes: (\d+)$", r.out, re.M).group(1)) > 1 << 20


def test_iter_program_is_bound_to_the_iterator():
    c = compile_src("iter:task_file { @ = count(); }")
    [p] = c.spec.programs
    assert (p.prog_type, p.expected_attach_type) == (TRACING, BPF_TRACE_ITER)
    assert p.attach_btf_id == btf_id("bpf_iter_task_file", "func")


@pytest.mark.parametrize("src,message", [
    ("iter:nosuch { }", "ERROR: iter:nosuch: unknown iterator (known: task, task_file, task_vma)"),
    ("iter:task* { }", "ERROR: iter probes do not take wildcards"),
    ("iter:task { @ = ctx->nosuch; }",
     "does not contain a field named 'nosuch'"),
    ("kprobe:vfs_read { @ = ctx; }", "ERROR: Unknown identifier: 'ctx'"),
])
def test_iter_errors(src, message):
    r = run("-e", src)
    assert r.rc == 1 and message in r.err and "Traceback" not in r.err, r.err


# ----------------------------------------------------------------------------- fentry / fexit

def test_fentry_fexit_programs_are_bound_to_their_function():
    c = compile_src("fentry:vfs_read { @[func] = count(); } "
                    "fexit:vfs_write { @r = sum(retval); @c = max(args.count); }")
    p0, p1 = c.spec.programs
    assert (p0.prog_type, p0.expected_attach_type, p0.attach_btf_id) == \
        (TRACING, BPF_TRACE_FENTRY, btf_id("vfs_read", "func"))
    assert (p1.prog_type, p1.expected_attach_type, p1.attach_btf_id) == \
        (TRACING, BPF_TRACE_FEXIT, btf_id("vfs_write", "func"))
    assert [a.probe_name for a in c.spec.attachments] == ["fentry:vfs_read", "fexit:vfs_write"]


def test_fentry_wildcard_compiles_once_and_loads_per_function():
    c = compile_src("kfunc:vfs_* { @[probe] = count(); }", stages=("asm",))
    names = [a.probe_name for a in c.spec.attachments]
    assert len(names) > 20 and "fentry:vfs_read" in names and names == sorted(names)
    assert len(c.spec.programs) == len(names)
    assert len({p.insns for p in c.spec.programs}) == 1            # one code
    assert len({p.attach_btf_id for p in c.spec.programs}) == len(names)
    assert len({p.name for p in c.spec.programs}) == len(names)
    assert sorted(a.cookie for a in c.spec.attachments) == list(range(len(names)))
    assert "get_attach_cookie" in c.dumps["asm"] or "call 174" in c.dumps["asm"]


def test_fentry_args_typed_from_btf():
    """args layout per function: vfs_read(file, buf, count, pos); fexit's retval after them."""
    c = compile_src("fexit:vfs_read { @ = args.count; @r = retval; @f = args.file->f_flags; }",
                    stages=("asm",))
    asm = c.dumps["asm"]
    assert re.search(r"= \*\(u64 \*\)\(r\d \+16\)", asm)        # count: the third slot
    assert re.search(r"= \*\(u64 \*\)\(r\d \+32\)", asm)        # retval: after four slots


def test_fexit_retval_typed_from_btf():
    """An int return is sign-extended from its 32 bits (the slot's upper half is not set); a
    returned pointer is typed (followed with ->) and null-checked; long stays 64 bits."""
    c = compile_src("fexit:security_file_open { @[retval] = count(); }", stages=("asm",))
    assert re.search(r"<<= 32\n.*s>>= 32", c.dumps["asm"]), c.dumps["asm"]
    assert c.spec.user_maps[0].key.signed
    c = compile_src("fexit:d_alloc { @[retval->d_name.len] = count(); }", stages=("asm",))
    assert "probe_read_kernel" in c.dumps["asm"]
    c = compile_src("fexit:vfs_read { @[retval] = count(); }", stages=("asm",))
    assert "<<= 32" not in c.dumps["asm"]
    r = run("-e", "fexit:vfs_read { @ = retval->x; }")
    assert r.rc == 1 and "Traceback" not in r.err, r.err


def test_fentry_attach_or_clear_refusal():
    """On a kernel that allows fentry this counts calls; this one refuses: the error names
    the step (the program load, before the verifier) and the function."""
    r = run("-e", "fentry:vfs_read { @ = count(); } interval:ms:200 { exit(); }")
    if r.rc == 0:
        assert re.search(r"^@: \d+$", r.out, re.M), r.out
        return
    assert "Traceback" not in r.err
    assert r.err.splitlines()[0] == (      # located at the probe that could not be loaded
        "stdin:1:1-16: ERROR: fentry program for 'vfs_read': this kernel refuses fentry/fexit programs: "
        "bpf(BPF_PROG_LOAD) fails with 'Operation not permitted' before its verifier runs"), r.err
    assert r.err.splitlines()[2] == "~" * 15, r.err


@pytest.mark.parametrize("src,message", [
    ("fentry:no_such_function_xyz { }",
     "stdin:1:1-28: ERROR: No matches for fentry no_such_function_xyz."),
    ("fexit:no_such_*_xyz { }", "ERROR: No matches for fexit no_such_*_xyz."),
    ("fentry:no_such_module_xyz:vfs_read { }",
     "ERROR: No matches for fentry no_such_module_xyz:vfs_read."),
    ("fentry:a:b:c { }", "ERROR: fentry probe must be written fentry:[module:]function"),
    ("fentry:vfs_read { @ = retval; }", "ERROR: The retval builtin can not be used with 'fentry' probes"),
    ("fentry:vfs_read { @ = args.nosuch; }",
     "ERROR: Struct/union of type 'struct vfs_read_args' does not contain a field named 'nosuch'"),
    ("fentry:vfs_read { @ = arg0; }", "ERROR: The arg0 builtin can not be used with 'fentry' probes"),
])
def test_fentry_errors(src, message):
    r = run("-e", src)
    assert r.rc == 1 and message in r.err and "Traceback" not in r.err, r.err
