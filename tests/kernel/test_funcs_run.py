"""The string, network and misc functions and the builtins of sema/fn_funcs.py, run for real:
BEGIN computes values in the kernel (BPF_PROG_TEST_RUN) that user space prints; tracepoints,
raw syscalls and profile probes see a workload's events; signal() delivers a signal."""
from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import sys
import time

import pytest

from runner import Tracer, named_workload, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to load BPF programs")


def test_values_computed_in_the_kernel_and_printed():
    src = r'''BEGIN {
  $h = "hello world"; $n = "wor"; $e = "";
  printf("S %d %d %d %d %d %d %d\n", strcontains($h, "wor"), strcontains($h, "xyz"),
         strstr($h, "o"), strstr($h, $n), strstr($h, "zz"), strcontains($h, $e), strstr($h, "d"));
  printf("L %d %d %d %d %d %d\n", strlen($h), strlen(""), strlen(comm), strncmp($h, "help", 3),
         strncmp($h, "help", 4), strncmp($n, $n, 10));
  printf("E %s|%s|%s|%s|%s\n", strerror(2), strerror(13), syscall_name(59), signal_name(9),
         signal_name(10));
  printf("N %s|%s|%s|%s|%s\n", ntop(0x0100007f), ntop(2, 0x0101a8c0), ntop(pton("::1")),
         ntop(10, pton("fe80::1:2")), ntop(pton("10.1.2.3")));
  print(pton("1.2.3.4"));
  printf("B %d %d %d %d\n", bswap((uint16)0x1234), bswap((uint32)0x12345678), bswap(1),
         bswap((uint8)7));
  @m[1, "a"] = 1;
  printf("K %d %d\n", has_key(@m, (1, "a")), has_key(@m, (2, "a")));
  printf("C %d %d %s|%s\n", cgroupid("/sys/fs/cgroup/unified") == cgroupid("/sys/fs/cgroup/unified"),
         cgroup == cgroup(), cgroup_path(cgroup), cgroup_path(cgroup, "unified"));
  printf("U %s %d %d %d %d %d\n", username, uid == uid(), ncpus, jiffies > 0, numaid, pid() == pid);
  printf("T %d %d %d\n", nsecs(monotonic) <= nsecs(boot), nsecs(tai) > nsecs(boot), nsecs() > 0);
  printf("F %s\n", strftime("%Y-%m-%d %H:%M:%S|%f", nsecs(boot)));
  warnf("careful: %d", 42); errorf("bad %s", "thing"); debugf("dbg");
  @e[strerror(1)] = count(); @u[username()] = count();
  exit();
}'''
    before = time.time()
    r = run("-e", src)
    after = time.time()
    assert r.rc == 0, r.err
    lines = {ln[:2]: ln[2:] for ln in r.out.splitlines() if len(ln) > 2 and ln[1] == " "}
    assert lines["S "] == "1 0 4 6 -1 1 10"
    # strlen(comm) is the length of the tracer's own comm (BEGIN runs in it)
    assert lines["L "].split()[0:2] == ["11", "0"] and lines["L "].split()[3:] == ["0", "1", "0"]
    assert 1 <= int(lines["L "].split()[2]) <= 15
    assert lines["E "] == ("No such file or directory|Permission denied|execve|Killed|User defined signal 1")
    assert lines["N "] == "127.0.0.1|192.168.1.1|::1|fe80::1:2|10.1.2.3"
    assert "[1,2,3,4]\n" in r.out
    assert lines["B "] == f"{0x3412} {0x78563412} {1 << 56} 7"
    assert lines["K "] == "1 0"
    c = lines["C "].split(" ", 2)
    assert c[:2] == ["1", "1"]
    full, only = c[2].split("|")
    assert only.startswith("unified:/") and "," not in only
    assert full.startswith(only)
    from ptrace_lang.kernel.host import possible_cpus

    user, same_uid, ncpus, jiffies, numaid, same_pid = lines["U "].split()
    assert (user, same_uid, jiffies, same_pid) == (pwd.getpwuid(os.getuid()).pw_name, "1", "1", "1")
    assert int(ncpus) == len(possible_cpus()) >= os.cpu_count()
    nodes = [d for d in os.listdir("/sys/devices/system/node") if d.startswith("node")] \
        if os.path.isdir("/sys/devices/system/node") else ["node0"]
    assert f"node{numaid}" in nodes
    assert lines["T "] == "1 1 1"
    stamp, us = lines["F "].split("|")
    t = time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(us) / 1e6
    assert len(us) == 6 and before - 0.01 <= t <= after + 0.01, (before, t, after)
    assert "@e[Operation not permitted]: 1\n" in r.out
    assert f"@u[{pwd.getpwuid(os.getuid()).pw_name}]: 1\n" in r.out
    # errorf/warnf/debugf: on stderr, after the script location
    err = r.err.splitlines()
    assert err[:4] == ["Attached 1 probe", "stdin:21:3-27: WARNING: careful: 42",
                       "stdin:21:29-54: ERROR: bad thing", "stdin:21:56-69: DEBUG: dbg"]
    assert "WARNING: careful" not in r.out


WORKLOAD = r'''
import os, signal, sys, time
if len(sys.argv) > 1:          # join the test's cgroup first
    with open(sys.argv[1] + "/cgroup.procs", "w") as f:
        f.write(str(os.getpid()))
got = []
signal.signal(signal.SIGUSR1, lambda s, f: got.append(s))
t = time.time()
try:
    os.open("/tmp/funcs-needle-abcdef", os.O_RDONLY)
except OSError:
    pass
print("T", repr(t), flush=True)
for _ in range(300):
    if got:
        break
    try:
        os.open("/tmp/funcs-signal-me", os.O_RDONLY)
    except OSError:
        pass
    time.sleep(0.01)
print("GOT", got, flush=True)
signal.signal(signal.SIGUSR2, lambda s, f: None)
os.kill(os.getpid(), signal.SIGUSR2)
end = time.time() + 0.4
while time.time() < end:
    pass
'''

SCRIPT = r'''
tracepoint:syscalls:sys_enter_openat /comm == "fnwork"/ {
  $f = str(args.filename);
  if (strcontains($f, "funcs-needle")) {
    printf("OPEN %s|%d|%d|%d|%d|%s|%s\n", $f, strlen($f), strstr($f, "needle"),
           strncmp($f, "/tmp/funcs-", 11), strcontains($f, "nomatch"), macaddr(args.filename),
           strftime("%H:%M:%S.%f", nsecs(boot)));
  }
  if (strcontains($f, "signal-me") && !@sent) {
    signal(SIGUSR1);
    @sent = 1;
  }
}
tracepoint:syscalls:sys_enter_kill /comm == "fnwork"/ {
  printf("KILL %s %s\n", signal_name(args.sig), strerror(args.pid == 1 ? 1 : 0));
}
tracepoint:raw_syscalls:sys_enter /comm == "fnwork"/ { @sys[syscall_name(args.id)] = count(); }
profile:hz:199 /comm == "fnwork"/ { @mode[usermode] = count(); }
'''


def cgroup2_mount() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if parts[2] == "cgroup2":
                return parts[1]
    return None


def test_functions_on_real_events_and_signal_delivery():
    script, cg = SCRIPT, None
    v2 = cgroup2_mount()
    if v2 is not None:
        # cgroupid() of a new cgroup (a compile-time constant) selects the workload's events;
        # cgroup_path() names it
        cg = os.path.join(v2, f"ptrace_funcs_{os.getpid()}")
        os.mkdir(cg)
        script += ('tracepoint:syscalls:sys_enter_openat /cgroup == cgroupid("%s")/ '
                   '{ printf("CG %%d %%s\\n", cgroup, cgroup_path(cgroup, "unified")); }' % cg)
    try:
        t = Tracer("--unsafe", "-e", script)
        t.wait_attached()
        w = subprocess.run(named_workload("fnwork", WORKLOAD) + ([cg] if cg else []),
                           capture_output=True, text=True, timeout=60)
        time.sleep(0.3)
        r = t.stop()
        if cg is not None:
            ino = os.stat(cg).st_ino
    finally:
        if cg is not None:
            os.rmdir(cg)
    assert r.rc == 0, r.err
    assert "Traceback" not in r.err
    # the signal reached the workload: its handler ran
    assert "GOT [10]" in w.stdout, (w.stdout, w.stderr, r.out)
    # (a signal sent from a BPF program raises no signal_generate event: BPF programs do not
    # run inside BPF programs; a kill(2) of the workload names its signal)
    assert "KILL User defined signal 2 Success" in r.out, r.out
    m = re.search(r"^OPEN (.*)$", r.out, re.M)
    assert m, r.out
    f, n, at, cmp, nomatch, mac, stamp = m.group(1).split("|")
    assert f == "/tmp/funcs-needle-abcdef"
    assert (n, at, cmp, nomatch) == (str(len(f)), str(f.index("needle")), "0", "0")
    # macaddr(pointer): the first 6 bytes of the user-space file name
    assert mac == ":".join(f"{b:02X}" for b in f.encode()[:6])
    # strftime of the event's time: the workload read the clock just before the open
    t0 = float(re.search(r"^T (\S+)$", w.stdout, re.M).group(1))
    hms, us = stamp.split(".")
    lt = time.localtime(t0)
    when = time.mktime(lt[:3] + time.strptime(hms, "%H:%M:%S")[3:6] + lt[6:]) + int(us) / 1e6
    assert 0 <= when - t0 < 0.5, (t0, stamp)
    # syscall names of the workload's raw syscalls
    assert re.search(r"^@sys\[openat\]: \d+$", r.out, re.M), r.out
    assert re.search(r"^@sys\[rt_sigaction\]: \d+$", r.out, re.M)
    assert re.search(r"^@sys\[exit_group\]: 1$", r.out, re.M), r.out
    if cg is not None:
        assert f"CG {ino} unified:/{os.path.basename(cg)}\n" in r.out, r.out
    else:
        print("cgroupid()/cgroup_path() of a workload not checked: no cgroup2 mount")
    # the workload spins in user space at the end: profile samples see user mode
    assert re.search(r"^@mode\[1\]: \d+$", r.out, re.M), r.out
    assert re.search(r"^@sys\[kill\]: 1$", r.out, re.M), r.out


def test_kernel_side_programs_pass_the_verifier():
    """ntop of tracepoint byte arrays (sock:inet_sock_set_state does not fire on this
    machine's network), usermode in kprobes, and override() in a kprobe: loaded through the
    verifier. bpf_override_return exists only in kernels built with CONFIG_BPF_KPROBE_OVERRIDE;
    elsewhere the verifier's refusal is reported at the call."""
    ok = run("--dry-run", "-e",
             'tracepoint:sock:inet_sock_set_state { printf("%s %s %s %s\\n", ntop(args.saddr),'
             ' ntop(args.daddr_v6), ntop(args.family, args.saddr_v6), macaddr(args.saddr_v6)); }'
             ' kprobe:vfs_read { @[usermode, username, numaid, jiffies > 0] = count(); }')
    assert ok.rc == 0, ok.err
    r = run("--dry-run", "--unsafe", "-e", "kprobe:vfs_read { override(-5); }")
    config = ""
    try:
        import gzip
        with gzip.open("/proc/config.gz", "rt") as fh:
            config = fh.read()
    except OSError:
        pass
    if "CONFIG_BPF_KPROBE_OVERRIDE=y" in config:
        assert r.rc == 0, r.err
    else:
        assert r.rc == 1
        assert r.err.startswith("stdin:1:19-31: ERROR: the kernel's verifier rejected probe program")
        assert "bpf_override_return" in r.err
        assert "HINT: override() needs a kernel built with CONFIG_BPF_KPROBE_OVERRIDE" in r.err
        assert "Traceback" not in r.err


def test_comm_of_a_pid_is_named_when_printed():
    # comm(pid) (bpftrace 0.26): the -c child's name, looked up while it still runs, as a
    # printf argument and as a map key; comm() unchanged beside it
    r = run("-c", "/bin/sleep 0.3", "-e",
            'tracepoint:syscalls:sys_enter_clock_nanosleep /pid == cpid/ '
            '{ printf("%s|%s\\n", comm(cpid), comm()); @[comm(pid)] = count(); }')
    assert r.rc == 0, r.err
    assert "sleep|sleep" in r.out.splitlines(), r.out
    assert "@[]: 1" in r.out or "@[sleep]: 1" in r.out, r.out


SIGNAL_CHILD = r'''
import signal, sys, time
for s in (signal.SIGUSR1, signal.SIGRTMIN + 2):
    signal.signal(s, lambda *a: None)
print("ready", flush=True)
time.sleep(60)
'''


def test_signal_name_is_a_string_of_the_program_over_real_signals():
    # bpftrace 0.26: signal_name() returns a string, so it compares, searches and keys maps
    # in the kernel; a run-time number reads the program's table, a constant one folds
    child = subprocess.Popen([sys.executable, "-c", SIGNAL_CHILD], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        src = r'''tracepoint:signal:signal_generate /args.pid == $1/ {
  $s = signal_name(args.sig);
  @names[signal_name(args.sig)] = count();
  if ($s == "Killed") { printf("KILLED %d %d\n", args.sig, $s == signal_name(9)); }
  if (strcontains(signal_name(args.sig), "User defined")) { printf("USER %s|\n", $s); }
  if ($s != signal_name(10) && $s != signal_name(SIGKILL)) { printf("OTHER %s|\n", $s); }
}'''
        t = Tracer("-e", src, str(child.pid))
        t.wait_attached()
        os.kill(child.pid, signal.SIGUSR1)
        time.sleep(0.2)
        os.kill(child.pid, signal.SIGRTMIN + 2)
        time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        time.sleep(0.3)
        r = t.stop()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert r.rc == 0 and "Traceback" not in r.err, r.err
    lines = r.out.splitlines()
    assert "KILLED 9 1" in lines and "USER User defined signal 1|" in lines, r.out
    assert "OTHER Real-time signal 2|" in lines and sum(x.startswith("OTHER") for x in lines) == 1
    assert "@names[Killed]: 1" in lines and "@names[User defined signal 1]: 1" in lines, r.out
    assert "@names[Real-time signal 2]: 1" in lines, r.out
