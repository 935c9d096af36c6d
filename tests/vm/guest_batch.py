"""The batch of checks run inside the VM (tests/vm/run_vm.py boots the guest and runs this).

Each check starts its workloads held, then ``python -m ptrace_lang`` with a script and the
workloads' pids as positional parameters, waits for its ``Attached`` line, releases the
workloads, stops the tracer with SIGINT and records exit status, stdout and stderr.
Nothing is judged here: tests/vm/test_vm.py checks the results on the host. Results go to
``--out`` as JSON and, readable on the serial console, between
``=== PTRACE-VM BEGIN name ===`` / ``=== PTRACE-VM END name rc=N ===`` markers.

Run by hand (on a kernel with kprobes, as root): ``python3 tests/vm/guest_batch.py``.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

JSON_MARK = "PTRACE-VM-JSON"
DD = ["dd", "if=/dev/zero", "of=/dev/null", "bs=4567", "count=7"]

# name, ptrace arguments, workload commands. Each workload is started first, held (a shell
# waiting for a line, then exec'ing the command: the pid stays), its pid passed to ptrace as
# the next positional parameter ($1, $2...), and released in order after the Attached line.
# (Filters use pid, not comm: see the comm_compare check.)
CHECKS = [
    ("kprobe_argN_func",
     ["-e", 'kprobe:vfs_read /pid == $1 && arg2 == 4567/ { @reads = count(); '
            '@funcs[func] = count(); @size = max(arg2); printf("%s read %d bytes in %s\\n", comm, arg2, func); }'],
     [DD]),
    ("kretprobe_retval",
     ["-e", 'kretprobe:vfs_read /pid == $1/ { if (retval == 4567) { @full = count(); } } '
            'kretprobe:do_sys_openat2 /pid == $2/ { @open[retval] = count(); '
            'if (retval < 0) { printf("%s failed: %d\\n", func, retval); } }'],
     [DD, ["cat", "/no/such/file/ptrace-vm"]]),
    ("kprobe_wildcard",
     ["-e", 'kprobe:vfs_* /pid == $1/ { @[probe] = count(); } '
            'kretprobe:vfs_writ* /pid == $1/ { @ret[probe, retval] = count(); }'],
     [DD]),
    ("kprobe_offset_module",
     ["-e", 'kprobe:vfs_read+5 /pid == $1 && arg2 == 4567/ { @[probe] = count(); @f[func] = count(); } '
            'kprobe:overlay:ovl_read_iter /pid == $2/ { @ovl[probe] = count(); }'],
     [DD, ["cat", "/etc/hostname"]]),
    ("kprobe_bad_offset",
     ["-e", "kprobe:vfs_read+1 { @ = count(); }"],
     []),
    # fentry/fexit (BPF trampolines): BTF-typed args (an integer, a pointer followed through
    # kernel structs, a user string), retval, func, aliases, and wildcards (one program per
    # function, probe and func from the link's cookie)
    ("fentry_args",
     ["-e", 'fentry:vfs_read /pid == $1 && args.count == 4567/ { @reads = count(); '
            '@funcs[func] = count(); printf("%s read %d bytes of %s in %s\\n", comm, args.count, '
            'str(args.file->f_path.dentry->d_name.name), func); } '
            'kfunc:vfs_write /pid == $1 && args.count == 4567/ { @writes = count(); }'],
     [DD]),
    ("fexit_retval",
     ["-e", 'fexit:vfs_read /pid == $1/ { if (retval == 4567) { @full = count(); } } '
            'fr:do_sys_openat2 /pid == $2/ { @open[retval] = count(); '
            'if (retval < 0) { printf("%s failed: %d %s\\n", func, retval, str(uptr(args.filename))); } }'],
     [DD, ["cat", "/no/such/file/ptrace-vm"]]),
    ("fexit_int_retval",      # an int's upper half is not set in the return slot
     ["-e", 'fexit:filename_lookup /pid == $1/ { @lookup[retval] = count(); '
            'if (retval < 0) { printf("%s: %d\\n", func, retval); } }'],
     [["stat", "/no/such/file/ptrace-vm"]]),
    ("fentry_wildcard",
     ["-e", 'fentry:vfs_rea* /pid == $1/ { @[probe] = count(); } '
            'fexit:vfs_writ* /pid == $1/ { @ret[func, retval] = count(); }'],
     [DD]),
    ("fentry_module",
     ["-e", 'fentry:overlay:ovl_read_iter /pid == $1/ { @ovl[probe] = count(); @f[func] = count(); } '
            'fexit:overlay:ovl_read_iter /pid == $1/ { @ret = max(retval); }'],
     [["cat", "/etc/hostname"]]),
    ("tp_btf_args",
     ["-e", 'rawtracepoint:sched_process_exec /args.p->tgid == $1/ { '
            'printf("exec %s %d\\n", args.p->comm, args.old_pid); }'],
     [DD]),
    # comm compared with a string literal: bpf_get_current_comm leaves the bytes after the
    # NUL as they were on 6.1 (strscpy, not strscpy_pad), so the code must zero them first
    ("comm_compare",
     ["-e", 'kprobe:vfs_read /pid == $1/ { @all = count(); if (comm == "dd") { @dd = count(); } '
            '@comms[comm] = count(); }'],
     [DD]),
    # values on a kernel without signed division (cpu v4 came in 6.6) and with 1024-byte
    # strings in per-CPU scratch memory (keys, comparisons, the truncation trailer)
    ("values_6_1",
     ["-e", 'config = { max_strlen = 1024 } '
            'BEGIN { $a = -7; $b = 2; $c = -2; $m = 7; $z = 0; '
            'printf("div %d %d %d %d %d %d %d\\n", $a / $b, $a % $b, $m / $c, $m % $c, $a / $c, '
            '$a % $c, $m / $z); $l = str(0); for ($i : 0..2) { $l = "in loop"; } '
            'printf("loop %s\\n", $l); } '
            'tracepoint:syscalls:sys_enter_openat /pid == $1/ { $s = str(args.filename); '
            '@opens[$s] = count(); if ($s == "/etc/hostname") { '
            'printf("eq %s %s\\n", $s, str(args.filename, 3)); @t = ($s, (x = 1)); } }'],
     [["cat", "/etc/hostname"]]),
    # for loops and len() are BPF callbacks (bpf_loop, bpf_for_each_map_elem) described in BTF
    # func_info: 6.1's verifier must take them, in a kprobe program and in end
    ("loops_callbacks",
     ["-e", 'kprobe:vfs_read /pid == $1 && arg2 == 4567/ { @n[arg2] = count(); '
            'for ($i : 0..3) { @r[$i] = count(); } } '
            'end { $t = 0; for ($kv : @n) { $t += $kv.1; printf("key %d count %d\\n", $kv.0, $kv.1); } '
            'printf("total %d len %d\\n", $t, len(@r)); clear(@n); clear(@r); }'],
     [DD]),
    # bpftrace 0.26's percpu_kaddr (the verifier needs CONFIG_KALLSYMS_ALL, which 6.1 has and
    # the development kernel lacks) and socket_cookie in fentry and tp_btf programs
    ("lang026_percpu_kaddr",
     ["-e", 'BEGIN { $r = (struct rq *)percpu_kaddr("runqueues"); printf("%d %d\\n", $r->cpu, cpu); '
            '$q = (struct rq *)percpu_kaddr("runqueues", 0); print($q->cpu); '
            'print(percpu_kaddr("runqueues", 100000)); exit(); }'],
     []),
    ("lang026_socket_cookie",
     ["-e", 'fentry:tcp_connect /pid == $1/ { printf("fentry %d\\n", socket_cookie(args.sk)); } '
            'rawtracepoint:inet_sock_set_state /pid == $1/ { printf("tp_btf %d %d %d\\n", '
            'socket_cookie(args.sk), args.oldstate, args.newstate); }'],
     [["sh", "-c", "ip link set lo up\nexec " + sys.executable + " -c 'import socket\n"
       'srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(1)\n'
       "c = socket.create_connection(srv.getsockname()); a, _ = srv.accept()\n"
       'print("cookie", int.from_bytes(c.getsockopt(socket.SOL_SOCKET, 57, 8), "little"))\n' + "'"]]),
    # kprobe_multi (one link for a whole wildcard) where the kernel has it (6.12 with
    # CONFIG_FPROBE: PTRACE_VM_CACHE with a 6.12 kernel, see docs/probes-more.md), and the same
    # script forced onto the per-function perf path, to compare attach and teardown times
    ("probes2_kprobe_multi",
     ["-e", 'kprobe:vfs_* /pid == $1/ { @[probe] = count(); @f[func] = count(); } '
            'kretprobe:vfs_read* /pid == $1/ { @r[probe, retval] = count(); } '
            'kprobe:tcp_* { @tcp = count(); }'],
     [DD]),
    ("probes2_kprobe_perf",
     ["-e", 'kprobe:vfs_* /pid == $1/ { @[probe] = count(); @f[func] = count(); } '
            'kretprobe:vfs_read* /pid == $1/ { @r[probe, retval] = count(); } '
            'kprobe:tcp_* { @tcp = count(); }'],
     [DD], {"env": {"PTRACE_NO_KPROBE_MULTI": "1"}, "needs_multi": True}),
    # a hardware breakpoint under qemu's TCG: a gcc-built target (built in the guest), the
    # address of its global from its symbol table, -c; the run ends with the command
    ("probes2_watchpoint",
     ["-c", "{wtarget} 20", "-e", "watchpoint:{waddr}:8:w /pid == cpid/ { @w = count(); }"],
     [], {"wait": True, "prepare": "wtarget"}),
]
# the classic kprobe-based tools of tools/, each with its workload
from guest_tools import TOOL_CHECKS  # noqa: E402

CHECKS += TOOL_CHECKS

WATCH_C = r"""
#include <stdlib.h>
#include <unistd.h>
volatile long counter_var;
int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 5;
    for (int i = 0; i < n; i++) { counter_var = i; usleep(1000); }
    return 0;
}
"""


def build_wtarget() -> dict:
    """Compile the watchpoint target (non-PIE: its global's address is final) in /tmp."""
    d = "/tmp/ptrace-vm-watch"
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "w.c"), "w") as f:
        f.write(WATCH_C)
    exe = os.path.join(d, "wtarget")
    subprocess.run(["gcc", "-O1", "-no-pie", "-o", exe, os.path.join(d, "w.c")], check=True,
                   capture_output=True)
    sys.path.insert(0, ROOT)
    from ptrace_lang import elfsyms

    return {"wtarget": exe, "waddr": hex(elfsyms.symbol_address(exe, "counter_var"))}


def run_check(py: str, args: list[str], workloads: list[list[str]], timeout: float = 120,
              env_extra: dict | None = None, wait: bool = False) -> dict:
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": ROOT, "PTRACE_NO_CACHE": "1", **(env_extra or {})}
    held = [subprocess.Popen(["sh", "-c", 'read _; exec "$@"', "sh", *cmd], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for cmd in workloads]
    p = subprocess.Popen([py, "-m", "ptrace_lang", *args, *(str(w.pid) for w in held)], cwd=ROOT,
                         env=env, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    err_lines: list[str] = []
    out_chunks: list[str] = []
    attached = threading.Event()

    def read_err():
        for line in p.stderr:
            err_lines.append(line)
            if line.startswith("Attached"):
                attached.set()
        attached.set()

    def read_out():
        out_chunks.append(p.stdout.read())

    threads = [threading.Thread(target=read_err, daemon=True),
               threading.Thread(target=read_out, daemon=True)]
    for t in threads:
        t.start()
    ok = attached.wait(timeout)
    attach_secs = time.monotonic() - t0
    wl: list[int] = []
    wl_out: list[str] = []
    for cmd, w in zip(workloads, held):
        if ok and p.poll() is None:
            out, _ = w.communicate("go\n", timeout=60)
        else:
            w.kill()
            out, _ = w.communicate()
        wl.append(w.returncode)
        wl_out.append(f"$ {' '.join(cmd)}  (pid {w.pid}, exit status {w.returncode})\n{out}")
    if p.poll() is None and not wait:
        time.sleep(0.2)
        p.send_signal(signal.SIGINT)
    t_stop = time.monotonic()
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait()
        err_lines.append("[guest_batch: the tracer did not stop; killed]\n")
    for t in threads:
        t.join(10)
    return {"rc": rc, "out": "".join(out_chunks), "err": "".join(err_lines),
            "attach_secs": round(attach_secs, 2), "secs": round(time.monotonic() - t0, 2),
            "stop_secs": round(time.monotonic() - t_stop, 2),
            "workload_rcs": wl, "workload_out": "".join(wl_out)}


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", help="write the results as JSON here")
    ap.add_argument("--python", default=sys.executable, help="interpreter for ptrace")
    ap.add_argument("-k", dest="only", help="run only checks whose name contains this")
    a = ap.parse_args()
    t0 = time.monotonic()
    results = {"kernel": os.uname().release,
               "kprobe_pmu": os.path.isdir("/sys/bus/event_source/devices/kprobe"),
               "checks": {}}
    try:
        sys.path.insert(0, ROOT)
        from ptrace_lang.providers import kprobe

        results["kprobe_multi"] = kprobe.kprobe_multi_supported()
    except Exception as e:  # noqa: BLE001
        results["kprobe_multi"] = f"{type(e).__name__}: {e}"
    prepared: dict = {}
    for name, args, workloads, *more in CHECKS:
        if a.only and a.only not in name:
            continue
        opts = more[0] if more else {}
        if name.startswith("probes2_") and not a.only:
            continue        # (their own boot: tests/vm/test_vm_probes2.py, run_vm.py -k probes2)
        if opts.get("needs_multi") and results["kprobe_multi"] is not True:
            continue        # without kprobe_multi the first check already took this path
        print(f"=== PTRACE-VM BEGIN {name} ===", flush=True)
        try:
            if opts.get("prepare") == "wtarget":
                if "wtarget" not in prepared:
                    prepared.update(build_wtarget())
                args = [x.replace("{wtarget}", prepared["wtarget"]).replace("{waddr}", prepared["waddr"])
                        for x in args]
            print("$ ptrace " + " ".join(args), flush=True)
            r = run_check(a.python, args, workloads, env_extra=opts.get("env"),
                          wait=opts.get("wait", False))
        except Exception as e:   # noqa: BLE001 - recorded, the batch goes on
            r = {"rc": -1, "out": "", "err": f"[guest_batch: {type(e).__name__}: {e}]\n",
                 "secs": 0, "attach_secs": 0, "workload_rcs": [], "workload_out": ""}
        results["checks"][name] = r
        sys.stdout.write("--- workload ---\n" + r["workload_out"] + "--- stdout ---\n" + r["out"]
                         + "--- stderr ---\n" + r["err"])
        print(f"=== PTRACE-VM END {name} rc={r['rc']} attach={r['attach_secs']}s "
              f"total={r['secs']}s ===", flush=True)
    results["batch_secs"] = round(time.monotonic() - t0, 2)
    text = json.dumps(results)
    written = False
    if a.out:
        try:
            with open(a.out + ".tmp", "w") as f:
                f.write(text)
            os.rename(a.out + ".tmp", a.out)
            written = True
        except OSError as e:
            print(f"PTRACE-VM: cannot write {a.out}: {e}", flush=True)
    if not written:     # the host then reads the results from the console
        print(f"{JSON_MARK} {text}", flush=True)
    print(f"PTRACE-VM batch done in {results['batch_secs']}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
