"""The second-kernel tier: real kprobes and kretprobes on Debian's 6.1 kernel under qemu.

One boot for the whole session (conftest.py; tests/vm/run_vm.py runs tests/vm/guest_batch.py in the guest);
each test checks one script's output. Without qemu or the kernel (``tests/vm/run_vm.py
--setup`` fetches them; the tests never install anything) every test skips, saying why, loudly.
"""
from __future__ import annotations

import re

# the ``vm`` fixture (one boot for the session) is in conftest.py


def check(vm, name: str) -> dict:
    c = vm["results"]["checks"].get(name)
    assert c is not None, f"the guest did not run {name}"
    return c


def shown(c: dict) -> str:
    return (f"exit status {c['rc']}\n--- workload ---\n{c['workload_out']}--- stdout ---\n{c['out']}"
            f"--- stderr ---\n{c['err']}")


def num(pattern: str, text: str) -> int:
    m = re.search(pattern, text, re.M)
    return int(m.group(1)) if m else -1


def test_guest_kernel_has_kprobes(vm):
    res = vm["results"]
    assert res["kernel"].startswith("6.1."), res["kernel"]
    assert res["kprobe_pmu"], "the guest kernel has no kprobe PMU"


def test_kprobe_arguments_func_maps_printf(vm):
    c = check(vm, "kprobe_argN_func")
    assert c["rc"] == 0 and c["err"].startswith("Attached 1 probe"), shown(c)
    assert c["workload_rcs"] == [0], shown(c)
    assert c["out"].count("dd read 4567 bytes in vfs_read\n") == 7, shown(c)
    for line in ("@reads: 7", "@funcs[vfs_read]: 7", "@size: 4567"):
        assert re.search(rf"^{re.escape(line)}$", c["out"], re.M), shown(c)


def test_kretprobe_retval(vm):
    c = check(vm, "kretprobe_retval")
    assert c["rc"] == 0 and c["err"].startswith("Attached 2 probes"), shown(c)
    assert "@full: 7\n" in c["out"], shown(c)                 # vfs_read returned 4567, 7 times
    assert "do_sys_openat2 failed: -2\n" in c["out"], shown(c)   # ENOENT, signed
    assert num(r"^@open\[-2\]: (\d+)$", c["out"]) >= 1, shown(c)
    assert re.search(r"^@open\[[3-9]\]: \d+$", c["out"], re.M), shown(c)   # cat's successful opens


def test_wildcard_kprobes_and_kretprobes_share_programs(vm):
    c = check(vm, "kprobe_wildcard")
    assert c["rc"] == 0, shown(c)
    attached = num(r"^Attached (\d+) probes$", c["err"])
    assert attached >= 20, shown(c)
    assert num(r"^@\[kprobe:vfs_read\]: (\d+)$", c["out"]) >= 7, shown(c)
    assert num(r"^@\[kprobe:vfs_write\]: (\d+)$", c["out"]) >= 7, shown(c)
    assert "@ret[kretprobe:vfs_write, 4567]: 7\n" in c["out"], shown(c)


def test_offset_and_module_function(vm):
    c = check(vm, "kprobe_offset_module")
    assert c["rc"] == 0 and c["err"].startswith("Attached 2 probes"), shown(c)
    assert "@[kprobe:vfs_read+5]: 7\n" in c["out"], shown(c)
    assert "@f[vfs_read]: 7\n" in c["out"], shown(c)      # func is the function, without +5
    assert num(r"^@ovl\[kprobe:overlay:ovl_read_iter\]: (\d+)$", c["out"]) >= 1, shown(c)


def test_offset_inside_an_instruction_is_a_clean_attach_error(vm):
    c = check(vm, "kprobe_bad_offset")
    assert c["rc"] == 1, shown(c)
    assert ("ERROR: probe 'kprobe:vfs_read+1': failed to attach: kprobe: offset 1 is not at an "
            "instruction boundary of 'vfs_read'") in c["err"], shown(c)
    assert "Traceback" not in c["err"] and "Attached" not in c["err"], shown(c)


def test_comm_compares_equal_on_6_1(vm):
    c = check(vm, "comm_compare")
    assert c["rc"] == 0, shown(c)
    total, dd = num(r"^@all: (\d+)$", c["out"]), num(r"^@dd: (\d+)$", c["out"])
    assert total >= 7, shown(c)
    # on 6.1 bpf_get_current_comm (strscpy) leaves the bytes after the NUL unwritten: the
    # compiler zeroes the buffer first on kernels before 6.4, or this would miss
    # (the traced pid reads as "sh" before it execs dd: those reads count in @all only)
    comms = re.findall(r"^@comms\[(.*)\]: (\d+)$", c["out"], re.M)
    names = [n for n, _ in comms]
    assert len(names) == len(set(names)), shown(c)          # one key per name, not several
    assert dict(comms).get("dd") == str(dd) and sum(int(v) for _, v in comms) == total, shown(c)


def test_fentry_typed_args_func_and_kfunc_alias(vm):
    c = check(vm, "fentry_args")
    assert c["rc"] == 0 and c["err"].startswith("Attached 2 probes"), shown(c)
    assert c["workload_rcs"] == [0], shown(c)
    # args.count (size_t), a pointer followed through struct file to the dentry's name, func
    assert c["out"].count("dd read 4567 bytes of zero in vfs_read\n") == 7, shown(c)
    for line in ("@reads: 7", "@writes: 7", "@funcs[vfs_read]: 7"):
        assert re.search(rf"^{re.escape(line)}$", c["out"], re.M), shown(c)


def test_fexit_retval_and_user_string_arg(vm):
    c = check(vm, "fexit_retval")
    assert c["rc"] == 0 and c["err"].startswith("Attached 2 probes"), shown(c)
    assert "@full: 7\n" in c["out"], shown(c)                 # vfs_read returned 4567, 7 times
    assert "do_sys_openat2 failed: -2 /no/such/file/ptrace-vm\n" in c["out"], shown(c)
    assert num(r"^@open\[-2\]: (\d+)$", c["out"]) >= 1, shown(c)
    assert re.search(r"^@open\[[3-9]\]: \d+$", c["out"], re.M), shown(c)


def test_fexit_int_retval_sign_extended(vm):
    c = check(vm, "fexit_int_retval")
    assert c["rc"] == 0 and c["err"].startswith("Attached 1 probe"), shown(c)
    assert "filename_lookup: -2\n" in c["out"], shown(c)
    assert num(r"^@lookup\[-2\]: (\d+)$", c["out"]) >= 1, shown(c)


def test_fentry_fexit_wildcards_one_program_per_function(vm):
    c = check(vm, "fentry_wildcard")
    assert c["rc"] == 0, shown(c)
    n = num(r"^Attached (\d+) probes", c["err"])
    assert n >= 4, shown(c)
    assert num(r"^@\[fentry:vfs_read\]: (\d+)$", c["out"]) >= 7, shown(c)
    assert num(r"^@ret\[vfs_write, 4567\]: (\d+)$", c["out"]) == 7, shown(c)


def test_fentry_fexit_on_a_module_function(vm):
    """A module's function: the program is loaded with the module's BTF object fd."""
    c = check(vm, "fentry_module")
    assert c["rc"] == 0 and c["err"].startswith("Attached 2 probes"), shown(c)
    assert num(r"^@ovl\[fentry:overlay:ovl_read_iter\]: (\d+)$", c["out"]) >= 1, shown(c)
    assert num(r"^@f\[ovl_read_iter\]: (\d+)$", c["out"]) >= 1, shown(c)
    assert num(r"^@ret: (\d+)$", c["out"]) >= 1, shown(c)       # the bytes of /etc/hostname


def test_rawtracepoint_btf_typed_args(vm):
    c = check(vm, "tp_btf_args")
    assert c["rc"] == 0 and c["err"].startswith("Attached 1 probe"), shown(c)
    dd = c["workload_out"].split("(pid ", 1)[1].split(",", 1)[0]
    assert f"exec dd {dd}\n" in c["out"], shown(c)


def test_values_on_6_1(vm):
    """No sdiv/smod on 6.1: signed / and % by the portable sequence; division by zero is 1 with
    its warning; 1024-byte strings live in scratch memory (docs/values.md)."""
    c = check(vm, "values_6_1")
    assert c["rc"] == 0, shown(c)
    assert "div -3 -1 -3 1 3 -1 1\n" in c["out"], shown(c)
    assert "WARNING: Divide or modulo by 0 detected." in c["err"], shown(c)
    assert "eq /etc/hostname /et..\n" in c["out"], shown(c)
    assert "loop in loop\n" in c["out"], shown(c)     # a big variable used in a loop body
    assert "@opens[/etc/hostname]: 1\n" in c["out"], shown(c)
    assert "@t: (/etc/hostname, { .x = 1 })\n" in c["out"], shown(c)


def test_loops_are_callbacks_the_6_1_verifier_takes(vm):
    c = check(vm, "loops_callbacks")
    assert c["rc"] == 0, shown(c)
    total = num(r"^total (\d+) len 3$", c["out"])
    assert total >= 7, shown(c)
    assert num(r"^key 4567 count (\d+)$", c["out"]) == total, shown(c)


def test_percpu_kaddr_reads_runqueues_on_6_1(vm):
    """percpu_kaddr (bpftrace 0.26): ld_imm64 of the BTF variable, bpf_this_cpu_ptr /
    bpf_per_cpu_ptr (NULL past the last CPU); 6.1 has the kallsyms the verifier needs."""
    c = check(vm, "lang026_percpu_kaddr")
    assert c["rc"] == 0, shown(c)
    lines = c["out"].split("\n")
    mine, cpu = lines[0].split()
    assert mine == cpu and lines[1:3] == ["0", "0"], shown(c)


def test_socket_cookie_in_fentry_and_tp_btf_on_6_1(vm):
    c = check(vm, "lang026_socket_cookie")
    assert c["rc"] == 0 and c["err"].startswith("Attached 2 probes"), shown(c)
    cookie = num(r"^cookie (\d+)$", c["workload_out"])
    assert cookie > 0, shown(c)
    assert f"fentry {cookie}\n" in c["out"] and f"tp_btf {cookie} 7 2\n" in c["out"], shown(c)
