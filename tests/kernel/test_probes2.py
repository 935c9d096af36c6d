"""watchpoint:, self:signal:SIGUSR1, software:/hardware: events, kprobe_multi fallback, --info,
and the command line details of tests/unit/test_cli_opts.py that need the kernel (root)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from runner import ROOT, Tracer, run

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, str(ROOT))

from ptrace_lang import elfsyms  # noqa: E402

WATCH_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
volatile long counter_var;
volatile long other_var;
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 5;
    if (argc > 2) { char c; if (read(0, &c, 1) != 1) return 2; }   /* held until a byte comes */
    for (int i = 0; i < n; i++) { counter_var = i * 10; other_var = counter_var + 1; usleep(2000); }
    printf("done %d\n", n);
    return 0;
}
"""


@pytest.fixture(scope="module")
def wtarget(tmp_path_factory):
    d = tmp_path_factory.mktemp("watch")
    src = d / "wtarget.c"
    src.write_text(WATCH_C)
    exe = d / "wtarget"
    r = subprocess.run(["gcc", "-O1", "-no-pie", "-o", str(exe), str(src)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"gcc could not build the watchpoint target: {r.stderr}")
    return str(exe)


def symbol_address(path: str, name: str) -> int:
    """The address of a global variable from the binary's ELF symbol table (non-PIE: final)."""
    return elfsyms.symbol_address(path, name)


# ------------------------------------------------------------------ watchpoint


def test_watchpoint_counts_the_writes_of_a_pid_exactly(wtarget):
    addr = symbol_address(wtarget, "counter_var")
    other = symbol_address(wtarget, "other_var")
    target = subprocess.Popen([wtarget, "25", "hold"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True)
    try:
        t = Tracer("-p", str(target.pid), "-e",
                   f"watchpoint:0x{addr:x}:8:w {{ @writes[comm, probe] = count(); @pid = max(pid); }} "
                   f"w:{other}:8:rw {{ @rw = count(); }}")
        t.wait_attached()
        out, _ = target.communicate("g", timeout=30)
        assert out == "done 25\n"
        r = t.wait(30)       # -p: the run ends when the process does
    finally:
        if target.poll() is None:
            target.kill()
    assert r.rc == 0, r.err
    assert "Attached 2 probes" in r.err
    # exactly the 25 stores to counter_var; other_var is written 25 times (its read of
    # counter_var does not touch other_var)
    assert f"@writes[wtarget, watchpoint:0x{addr:x}:8:w]: 25\n" in r.out, r.out
    assert "@rw: 25\n" in r.out, r.out
    assert f"@pid: {target.pid}\n" in r.out, r.out


def test_watchpoint_with_c_and_rw_mode_sees_reads(wtarget):
    addr = symbol_address(wtarget, "counter_var")
    # rw: counter_var is stored then loaded each round (other_var = counter_var + 1)
    r = run("-c", f"{wtarget} 10", "-e",
            f"watchpoint:0x{addr:x}:8:rw /pid == cpid/ {{ @acc = count(); }}", timeout=30)
    assert r.rc == 0, r.err
    n = int(re.search(r"^@acc: (\d+)$", r.out, re.M).group(1))
    # 10 stores + 10 loads; the kernel's own clearing of the .bss page at exec also hits
    # (it writes in the child's context), so a few more are allowed
    assert 20 <= n <= 40, r.out


@pytest.mark.parametrize("probe,message", [
    ("watchpoint:0x1000:3:w", "watchpoint length must be one of (1,2,4,8)"),
    ("watchpoint:0x1000:8:q", "watchpoint mode must be combination of (r,w,x)"),
    ("watchpoint:0x1000:8:r", "invalid watchpoint mode: r"),
    ("w:0x1000:8:rwx", "invalid watchpoint mode: rwx"),
    ("watchpoint:0x1000:4:x", "an execution watchpoint (mode x) must have length 8"),
    ("watchpoint:0x1000:8", "watchpoint probe type requires 3 arguments, found 2"),
    ("watchpoint:abc:8:w", "Invalid function/address argument: invalid integer: abc"),
    ("watchpoint:0:8:w", "watchpoint must be attached to a non-zero address"),
    ("watchpoint:0x1000:8:ww", "watchpoint modes may not be duplicated"),
    ("watchpoint:0x1004:8:w", "watchpoint address 0x1004 is not aligned to its length 8"),
])
def test_watchpoint_errors_are_located(probe, message):
    r = run("-p", str(os.getpid()), "-e", probe + " { @ = count(); }")
    assert r.rc == 1
    lines = r.err.splitlines()
    assert lines[0].startswith("stdin:1:1-") and lines[0].endswith("ERROR: " + message), r.err
    assert lines[2].startswith("~"), r.err
    assert "Traceback" not in r.err


def test_watchpoint_needs_a_process():
    r = run("-e", "watchpoint:0x1000:8:w { @ = count(); }")
    assert r.rc == 1
    assert "ERROR: -p PID or -c CMD required for watchpoint" in r.err, r.err
    assert "HINT:" in r.err


def test_a_fifth_watchpoint_is_a_clear_attach_error():
    """x86-64 has four debug registers: the fifth watchpoint cannot attach, and nothing stays."""
    if not os.path.isdir("/sys/bus/event_source/devices/breakpoint"):
        r = run("-p", str(os.getpid()), "-e", "w:0x1000:8:w { @ = count(); }")
        assert r.rc == 1 and "no hardware breakpoints (no breakpoint PMU" in r.err, r.err
        return
    aps = ", ".join(f"w:0x{0x1000 + 8 * i:x}:8:w" for i in range(5))
    r = run("-p", str(os.getpid()), "-e", aps + " { @ = count(); }", timeout=30)
    assert r.rc == 1, r.err
    assert ("ERROR: probe 'watchpoint:0x1020:8:w': failed to attach: every hardware debug "
            "register is in use") in r.err, r.err
    assert "Attached" not in r.err and "Traceback" not in r.err


# ------------------------------------------------------------------ self:signal


SELF_BT = """
tracepoint:syscalls:sys_enter_getppid /pid == $1/ { @calls = count(); }
self:signal:SIGUSR1 { printf("usr1 in %d\\n", pid); print(@calls); @sigs = count(); }
"""


def test_self_signal_runs_the_probe_on_each_sigusr1(tmp_path):
    script = tmp_path / "self.bt"
    script.write_text(SELF_BT)
    t = Tracer(str(script), str(os.getpid()))
    t.wait_attached()
    for _ in range(7):
        os.getppid()
    t.p.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    for _ in range(3):
        os.getppid()
    t.p.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    r = t.stop()
    assert r.rc == 0, r.err
    assert "Attached 2 probes" in r.err
    me = t.p.pid
    assert r.out.startswith(f"usr1 in {me}\n@calls: 7\n"), r.out
    assert f"usr1 in {me}\n@calls: 10\n" in r.out, r.out
    assert "@sigs: 2\n" in r.out and r.out.count("usr1 in") == 2, r.out


def test_self_probe_errors():
    r = run("-e", "self:signal:SIGUSR2 { }")
    assert r.rc == 1 and "ERROR: Unsupported signal for self probe: SIGUSR2" in r.err, r.err
    r = run("-e", "self:timer:1 { }")
    assert r.rc == 1 and "ERROR: self probe must be written self:signal:SIGUSR1" in r.err, r.err


# ------------------------------------------------------------------ software / hardware

SOFTWARE_EVENTS = ["cpu-clock", "cpu", "task-clock", "page-faults", "faults", "context-switches",
                   "cs", "cpu-migrations", "minor-faults", "major-faults", "alignment-faults",
                   "emulation-faults", "dummy", "bpf-output"]


def test_every_software_event_and_alias_attaches():
    # (default counts: a clock event counts nanoseconds, a small count would flood)
    probes = " ".join(f"software:{e} {{ @[\"{e}\"] = count(); }}" for e in SOFTWARE_EVENTS)
    r = run("-e", probes + " software:faults:1_000 { @f = count(); } software:page-faults:1 "
            "{ @pf = count(); } interval:ms:300 { exit(); }", timeout=60)
    assert r.rc == 0, r.err
    assert f"Attached {len(SOFTWARE_EVENTS) + 3} probes" in r.err, r.err
    # faults happen all the time on a running machine, one by one with count 1
    assert int(re.search(r"^@pf: (\d+)$", r.out, re.M).group(1)) > 0, r.out


def test_software_event_errors():
    r = run("-e", "software:nosuch { }")
    assert r.rc == 1 and "ERROR: nosuch is not a software probe" in r.err and "HINT: events:" in r.err
    r = run("-e", "s:faults:0 { }")
    assert r.rc == 1 and "software count should be a positive integer" in r.err


def _has_hardware_pmu(_memo=[]) -> bool:
    """``ptrace --info``'s answer (asked once)."""
    if not _memo:
        out = subprocess.run([sys.executable, "-m", "ptrace_lang", "--info"], cwd=ROOT,
                             capture_output=True, text=True).stdout
        _memo.append(out.split("hardware counters (PMU):")[1].split("\n")[0].strip() == "yes")
    return _memo[0]


@pytest.mark.parametrize("event", ["cpu-cycles", "cycles", "instructions", "cache-references",
                                   "cache-misses", "branch-instructions", "branches",
                                   "branch-misses", "bus-cycles", "frontend-stalls",
                                   "backend-stalls", "ref-cycles"])
def test_hardware_events_attach_or_say_the_pmu_is_missing(event):
    r = run("-e", f"hardware:{event}:100000 {{ @ = count(); }} interval:ms:100 {{ exit(); }}")
    has_pmu = _has_hardware_pmu()
    if has_pmu:
        assert r.rc == 0, r.err
    else:   # (this VM: "PMU not available due to virtualization")
        assert r.rc == 1
        first = r.err.splitlines()[0]
        assert first.startswith("stdin:1:1-") and "ERROR: probe 'hardware:" in first, r.err
        assert "no hardware performance counter" in first, r.err
        assert "Traceback" not in r.err


# ------------------------------------------------------------------ kprobe_multi here


def test_kprobe_multi_is_detected_absent_on_this_kernel():
    from ptrace_lang import providers
    from ptrace_lang.providers import kprobe

    if os.path.isdir("/sys/bus/event_source/devices/kprobe"):
        pytest.skip("this kernel has kprobes: kprobe_multi is checked in the VM tier")
    assert kprobe.kprobe_multi_supported() is False
    assert providers.get("kprobe").group_attach_type(["vfs_read+0", "vfs_write+0"]) == 0


# ------------------------------------------------------------------ command line (root)


def test_info_reports_probe_types():
    r = run("--info")
    assert r.rc == 0, r.err
    for head in ("System", "Kernel features", "Map types", "Probe types"):
        assert f"\n{head}\n" in "\n" + r.out, r.out
    assert "  tracepoint: yes\n" in r.out and "  self / bench: yes\n" in r.out
    kp = "yes" if os.path.isdir("/sys/bus/event_source/devices/kprobe") else "no (no kprobe PMU"
    assert f"  kprobe / kretprobe: {kp}" in r.out, r.out


def test_options_after_the_program_are_options():
    r = run("-e", 'BEGIN { printf("x%d\\n", $#); exit(); }', "-q")
    assert r.rc == 0 and r.out.startswith("x0\n") and "Attached" not in r.err, r
    r = run("-e", 'BEGIN { printf("%s\\n", str($1)); exit(); }', "--", "-q")
    assert r.rc == 0 and r.out.startswith("-q\n") and "Attached" in r.err, r


def test_script_file_then_options_then_args(tmp_path):
    f = tmp_path / "a.bt"
    f.write_text('BEGIN { printf("%d %s\\n", $1, str($2)); exit(); }')
    r = run(str(f), "-q", "5", "five")
    assert r.rc == 0 and r.out.startswith("5 five\n") and r.err == "", r


def test_c_that_cannot_exec_fails_before_attaching(tmp_path):
    bad = tmp_path / "notelf"
    bad.write_bytes(b"\0\1 not a program")
    bad.chmod(0o755)
    r = run("-c", str(bad), "-e", 'BEGIN { printf("begin\\n"); } tracepoint:syscalls:sys_enter_getpid { }')
    assert r.rc == 1
    assert r.err.startswith(f"ERROR: Failed to fork child: path '{bad}' cannot be run: not an ELF"), r.err
    assert "Attached" not in r.err and r.out == "", r
    script = tmp_path / "s.sh"
    script.write_text("#!/no/such/shell\necho hi\n")
    script.chmod(0o755)
    r = run("-c", str(script), "-e", "BEGIN { }")
    assert r.rc == 1 and "its interpreter '/no/such/shell' does not exist" in r.err, r.err


def test_no_warnings_silences_warnings():
    prog = ('config = { missing_probes = "warn" } tracepoint:syscalls:sys_enter_nosuch_x { } '
            'BEGIN { exit(); }')
    r = run("-e", prog)
    assert r.rc == 0 and "WARNING:" in r.err, r.err
    r = run("--no-warnings", "-e", prog)
    assert r.rc == 0 and "WARNING" not in r.err, r.err


def test_k_is_accepted_and_counting_stays_on():
    r = run("-k", "-e", 'BEGIN { printf("k\\n"); exit(); }')
    assert r.rc == 0 and r.out.startswith("k\n"), r
    r = run("-kk", "-q", "-e", 'BEGIN { exit(); }')
    assert r.rc == 0, r


def test_I_reads_the_users_header(tmp_path):
    inc = tmp_path / "inc"
    inc.mkdir()
    (inc / "mine.h").write_text('#define MAGIC 42\n#include "more.h"\nstruct pt { int x; int y; };\n')
    (inc / "more.h").write_text("#define OTHER 7\n")
    prog = ('#include "mine.h"\n#include <linux/sched.h>\n'
            'BEGIN { printf("%d %d %d %d\\n", MAGIC, OTHER, sizeof(struct pt), TASK_RUNNING); exit(); }')
    r = run("-I", str(inc), "-e", prog)
    assert r.rc == 0 and r.out.startswith("42 7 8 0\n"), r
    r = run("-e", prog)
    assert r.rc == 1 and "stdin:1:1-18: ERROR: include file 'mine.h' not found" in r.err, r.err
    r = run("--include", str(inc / "mine.h"), "-e", 'BEGIN { printf("%d\\n", MAGIC); exit(); }')
    assert r.rc == 0 and r.out.startswith("42\n"), r
