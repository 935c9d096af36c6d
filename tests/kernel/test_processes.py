"""-p PID and -c CMD: tracing one process, the command's lifetime, `cpid` (root)."""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from runner import ROOT, bpf_prog_names, cmd_line, ptrace_cmd, run

def py_cmd(code: str, *args: str) -> str:
    """A -c command line running ``code`` in Python with ``args``."""
    return cmd_line([sys.executable, "-c", code, *args])


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_c_runs_the_command_once_attached_and_ends_with_it():
    code = ("import os; [os.getpriority(os.PRIO_PROCESS, 0) for _ in range(37)]; "
            "print('child', os.getpid(), flush=True)")
    t0 = time.monotonic()
    r = run("-c", py_cmd(code), "-e",
            'BEGIN { printf("cpid %d\\n", cpid); } '
            "tracepoint:syscalls:sys_enter_getpriority /pid == cpid/ { @n = count(); } "
            'END { printf("end\\n"); }', timeout=30)
    assert time.monotonic() - t0 < 10          # it ended by itself, with the command
    assert r.rc == 0, r.err
    assert r.err.startswith("Attached 3 probes")
    cpid = int(re.search(r"^cpid (\d+)$", r.out, re.M).group(1))
    # the child's output (straight to our stdout) comes after begin's, before end's and the maps
    assert f"cpid {cpid}\nchild {cpid}\nend\n" in r.out
    assert r.out.endswith("\n@n: 37\n")
    assert gone(cpid)


def test_c_splits_on_single_spaces_as_bpftrace_and_runs_no_shell():
    # bpftrace cuts the command at each space: quotes stay, two spaces give an empty word, one
    # trailing space no word; no shell: $HOME and >x are passed as they are
    show = py_cmd("import sys; print(sys.argv[1:])")
    cases = {f"{show} 'a b' c '$HOME' '>x'": "[\"'a\", \"b'\", 'c', \"'$HOME'\", \"'>x'\"]\n",
             f"{show} a  b": "['a', '', 'b']\n",
             f"{show} a\tb ": "['a\\tb']\n",
             f"{show} a  ": "['a', '']\n"}
    for cmd, want in cases.items():
        r = run("-q", "-c", cmd, "-e", "BEGIN { }")
        assert r.rc == 0, r.err
        assert r.out.startswith(want), (cmd, r.out)
        if shutil.which("bpftrace"):     # side by side with bpftrace 0.17
            p = subprocess.run(["bpftrace", "-q", "-c", cmd, "-e", "BEGIN { }"],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0 and p.stdout.startswith(want), p


def test_c_finds_the_command_in_path():
    r = run("-q", "-c", "env PTRACE_TEST_VAR=1 true", "-e", 'END { printf("ok\\n"); }')
    assert r.rc == 0 and r.out.startswith("ok\n"), r.err


def test_c_finds_one_binary_in_path_as_bpftrace(tmp_path):
    # the command's argv[0] is the binary found, as bpftrace sets it
    r = run("-q", "-c", "cat /proc/self/cmdline", "-e", "BEGIN { }", env={"PATH": "/usr/bin"})
    assert r.rc == 0 and r.out.startswith("/usr/bin/cat\0/proc/self/cmdline\0"), (r.out, r.err)
    # the same file reached through two directories is one binary; two files are refused
    one, two, link = (tmp_path / d for d in ("one", "two", "link"))
    for d, word in ((one, "one"), (two, "two")):
        d.mkdir()
        (d / "ptrtool").write_text(f"#!/bin/sh\necho {word}\n")
        (d / "ptrtool").chmod(0o755)
    link.symlink_to(one)
    r = run("-q", "-c", "ptrtool", "-e", "BEGIN { }", env={"PATH": f"{one}:{link}"})
    assert r.rc == 0 and r.out.startswith("one\n"), (r.out, r.err)
    r = run("-q", "-c", "ptrtool", "-e", "BEGIN { }", env={"PATH": f"{two}:{one}:{link}"})
    assert r.rc == 1 and r.err == ("ERROR: Failed to fork child: path 'ptrtool' must refer to a "
                                   "unique binary but matched 3 binaries\n"), r.err


def _ours(names) -> list[str]:
    return sorted(n for n in names if n.startswith(("p20_0_", "p21_0_")))


# probes 20 and 21 (program names p20_0_..., p21_0_...): other tests do not load those
MANY_PROBES = "".join("BEGIN { } " for _ in range(20)) + \
    "tracepoint:syscalls:sys_enter_getpriority { @ = count(); } END { }"


@pytest.mark.parametrize("cmd,message", [
    ("no_such_command_xyz a b", "ERROR: Failed to fork child: path 'no_such_command_xyz' "
                                "does not exist or is not executable"),
    ("/no/such/dir/cmd", "ERROR: Failed to fork child: path '/no/such/dir/cmd' does not exist"),
    # found before anything is attached (no "Attached" line, no BEGIN output)
    ("{noexec}", "ERROR: Failed to fork child: path '{noexec}' cannot be run: not an ELF "
                 "executable nor a #! script (exec format error)"),
])
def test_c_with_a_command_that_cannot_run(cmd, message, tmp_path):
    noexec = tmp_path / "noexec"          # executable, but neither ELF nor #! script
    noexec.write_text("echo hi\n")
    noexec.chmod(0o755)
    cmd, message = cmd.replace("{noexec}", str(noexec)), message.replace("{noexec}", str(noexec))
    before = _ours(bpf_prog_names())
    r = run("-c", cmd, "-e", MANY_PROBES)
    assert r.rc == 1 and message in r.err and "Traceback" not in r.err, r.err
    assert "Attached" not in r.err, r.err
    deadline = time.monotonic() + 5     # (programs go when their last reference does)
    while _ours(bpf_prog_names()) != before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _ours(bpf_prog_names()) == before


def test_exit_ends_the_command():
    r = run("-c", py_cmd("import os, time; print(os.getpid(), flush=True); time.sleep(30)"),
            "-e", "interval:ms:300 { exit(); }", timeout=20)
    assert r.rc == 0, r.err
    assert gone(int(r.out.split()[0]))


def test_ctrl_c_from_the_terminal_reaches_the_command_too():
    # a terminal sends SIGINT to the whole foreground process group: ptrace and its command
    # (os.write, not print: a SIGINT landing while print('started') still holds stdout's
    # buffer made the handler's print fail as a reentrant call, and the line was lost)
    code = ("import os, signal, time\n"
            "signal.signal(signal.SIGINT, lambda *a: (os.write(1, b'child got SIGINT\\n'), os._exit(3)))\n"
            "os.write(1, b'started\\n')\ntime.sleep(30)")
    p = subprocess.Popen(ptrace_cmd("-c", py_cmd(code), "-e",
                                    'interval:s:30 { } END { printf("end\\n"); }'),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                         start_new_session=True)
    try:
        assert p.stdout.readline() == "started\n"
        t0 = time.monotonic()
        os.killpg(p.pid, signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert time.monotonic() - t0 < 2
    assert p.returncode == 0, err
    assert out.startswith("child got SIGINT\nend\n"), out


def test_p_ends_when_the_process_exits_and_attaches_uprobes_in_it_only():
    code = "import os, time\nfor _ in range(25):\n    os.getpid()\n    time.sleep(0.02)\nprint('done')"
    other = subprocess.Popen([sys.executable, "-c", "import os, time\n"
                              "t = time.time()\nwhile time.time() - t < 3: os.getpid(); time.sleep(0.001)"])
    target = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()\n" + code],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        from runner import Tracer
        # `libc` is found in the process's own maps
        t = Tracer("-p", str(target.pid), "-e",
                   "uprobe:libc:getpid { @[probe, pid] = count(); } "
                   'END { printf("end\\n"); }')
        t.wait_attached()
        target.stdin.write("\n")
        target.stdin.flush()
        assert target.stdout.readline() == "done\n"
        target.wait(10)
        t0 = time.monotonic()
        r = t.wait(20)
        assert time.monotonic() - t0 < 5
    finally:
        for p in (other, target):
            if p.poll() is None:
                p.kill()
            p.wait()
    assert r.rc == 0, r.err
    keys = re.findall(r"^@\[uprobe:(\S+):getpid, (\d+)\]: (\d+)$", r.out, re.M)
    assert len(keys) == 1, r.out                  # the other python is not counted
    path, pid, n = keys[0]
    assert "libc.so" in path and int(pid) == target.pid and int(n) >= 25
    assert r.out.startswith("end\n")


def test_uprobe_with_c_counts_the_command_only():
    other = subprocess.Popen([sys.executable, "-c", "import os, time\n"
                              "t = time.time()\nwhile time.time() - t < 3: os.getpid(); time.sleep(0.001)"])
    try:
        time.sleep(0.1)
        r = run("-c", py_cmd("import os\nfor _ in range(50): os.getpid()"),
                "-e", "uprobe:libc:getpid { @[pid == cpid] = count(); }", timeout=30)
    finally:
        other.kill()
        other.wait()
    assert r.rc == 0, r.err
    m = re.findall(r"^@\[(\w+)\]: (\d+)$", r.out, re.M)
    assert len(m) == 1 and m[0][0] == "true" and int(m[0][1]) >= 50, r.out


def test_p_errors():
    r = run("-p", "4194300", "-e", "BEGIN { }")
    assert r.rc == 1 and r.err == "ERROR: failed to trace pid 4194300: No such process\n", r.err
    # bpftrace 0.26's words: an integer literal up to 0x400000
    r = run("-p", "999999999", "-e", "BEGIN { }")
    assert r.rc == 1 and r.err == "ERROR: Pid out of range: 999999999\n", r.err
    r = run("-p", "12x", "-e", "BEGIN { }")
    assert r.rc == 1 and r.err == "ERROR: Failed to parse pid: invalid trailing bytes: 12x\n", r.err
    r = run("-p", "1", "-c", "true", "-e", "BEGIN { }")
    assert r.rc == 1 and r.err.startswith("ERROR: USAGE: Cannot use both -c and -p.\n\nUSAGE:"), r.err


def test_cpid_needs_c():
    r = run("--dry-run", "-e", "BEGIN { print(cpid); }")
    assert r.rc == 1
    assert r.err == ("stdin:1:15-19: ERROR: cpid cannot be used without child command\n"
                     "BEGIN { print(cpid); }\n              ~~~~\n"), r.err


def test_dry_run_never_runs_the_command(tmp_path):
    mark = tmp_path / "ran"
    r = run("--dry-run", "-c", f"touch {mark}", "-e", "BEGIN { print(cpid); }")
    assert r.rc == 0, r.err
    time.sleep(0.1)
    assert not mark.exists()


USDT_APP = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <sys/sdt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
__attribute__((section(".probes"))) volatile unsigned short app_hit_semaphore;
int main(int argc, char **argv) {
    int n = atoi(argv[1]), enabled = 0;
    for (int i = 0; i < n; i++) {
        if (app_hit_semaphore) { enabled++; DTRACE_PROBE1(app, hit, i); }
        usleep(20000);
    }
    printf("enabled %d\n", enabled);
    return 0;
}
"""


def test_usdt_with_c_raises_the_semaphore_of_the_command_only(tmp_path):
    (tmp_path / "app.c").write_text(USDT_APP)
    app = str(tmp_path / "app")
    p = subprocess.run(["gcc", "-O1", "-o", app, str(tmp_path / "app.c")], capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot build a USDT target (sys/sdt.h from systemtap-sdt-dev?): {p.stderr[:200]}")
    other = subprocess.Popen([app, "60"], stdout=subprocess.PIPE, text=True)   # ~1.2 s, untraced
    try:
        r = run("-c", f"{app} 15", "-e", f"usdt:{app}:app:hit {{ @n = count(); @s = sum(arg0); }}",
                timeout=30)
        other_out, _ = other.communicate(timeout=30)
    finally:
        if other.poll() is None:
            other.kill()
            other.wait()
    assert r.rc == 0, r.err
    assert r.out.startswith("enabled 15\n") and "@n: 15\n" in r.out and "@s: 105\n" in r.out, r.out
    assert other_out == "enabled 0\n"


def test_compile_cache_never_reuses_a_cpid_and_keys_p_by_process(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "PTRACE_NO_CACHE": "0"}
    prog = 'BEGIN { printf("cpid %d\\n", cpid); }'
    seen = set()
    for _ in range(2):
        r = run("-q", "-c", py_cmd("import os; print('child', os.getpid())"), "-e", prog, env=env)
        assert r.rc == 0, r.err
        cpid, child = re.findall(r"^(?:cpid|child) (\d+)$", r.out, re.M)
        assert cpid == child
        seen.add(cpid)
    assert len(seen) == 2
    assert not list((tmp_path / "ptrace-lang" / "specs").glob("*.marshal"))   # -c: nothing stored

    from ptrace_lang import speccache
    base = speccache.key("BEGIN { }", "stdin", [])
    assert speccache.key("BEGIN { }", "stdin", [], pid=os.getpid()) != base
    assert speccache.key("BEGIN { }", "stdin", [], pid=1) != speccache.key("BEGIN { }", "stdin", [],
                                                                           pid=os.getpid())
