"""Real-kernel tests of ptrace_lang.kernel, with tiny hand-encoded programs."""

from __future__ import annotations

import errno
import os
import struct
import time

import pytest

from bpfasm_for_tests import (
    ADD, DW, FN_get_attach_cookie, FN_get_current_pid_tgid, FN_get_smp_processor_id,
    FN_map_lookup_elem, FN_map_update_elem, FN_ringbuf_output, JEQ, JNE, R0, R1, R2, R3,
    R4, R6, R7, R10, RSH, SUB, W, Label, alu64_imm, assemble, atomic_add64, call, exit_,
    jmp_imm, jmp_to, ld_map_fd, mov64_imm, mov64_reg, prog, ret, st_imm, stx,
)
from ptrace_lang.kernel import links, perf, progs, teardown, tracefs
from ptrace_lang.kernel import sys as ksys
from ptrace_lang.kernel.maps import Map, possible_cpus
from ptrace_lang.kernel.ringbuf import RingBuffer

FN_ringbuf_reserve = 131
FN_ringbuf_discard = 133

U64 = struct.Struct("<Q")
U32 = struct.Struct("<I")


def q(v: int) -> bytes:
    return U64.pack(v)


def raw_tp_ctx() -> bytes:
    return bytes(8 * 6)


# ---------------------------------------------------------------------------
# maps


def test_hash_map_ops():
    with Map.create(ksys.BPF_MAP_TYPE_HASH, 8, 16, 5000, name="t_hash") as m:
        assert m.lookup(q(1)) is None
        assert m.delete(q(1)) is False
        m.update(q(1), b"a" * 16)
        m.update(q(2), b"bb")  # short values are zero-padded
        assert m.lookup(q(1)) == b"a" * 16
        assert m.lookup(q(2)) == b"bb" + bytes(14)
        with pytest.raises(OSError) as ei:
            m.update(q(1), b"x", ksys.BPF_NOEXIST)
        assert ei.value.errno == errno.EEXIST
        with pytest.raises(OSError) as ei:
            m.update(q(3), b"x", ksys.BPF_EXIST)
        assert ei.value.errno == errno.ENOENT
        with pytest.raises(ValueError):
            m.lookup(b"123")
        for i in range(10, 4010):
            m.update(q(i), q(i * 7))
        items = m.items()
        assert m._batch_ok is True  # hash maps must go through LOOKUP_BATCH
        d = dict(items)
        assert len(items) == len(d) == 4002
        assert d[q(1)] == b"a" * 16 and d[q(3999)] == q(3999 * 7) + bytes(8)
        assert sorted(m.keys()) == sorted(d)
        # the per-element fallback agrees with the batch path
        m._batch_ok = False
        assert sorted(m.items()) == sorted(items)
        m._batch_ok = None
        assert m.delete(q(1)) is True and m.lookup(q(1)) is None
        m.clear()
        assert m.keys() == [] and m.items() == []


def test_map_items_reads_every_entry_of_a_big_percpu_map():
    # (its speed is bench/'s to measure: no timing assertion here)
    with Map.create(ksys.BPF_MAP_TYPE_PERCPU_HASH, 8, 8, 10000, name="t_fast") as m:
        for i in range(10000):
            m.update(q(i), q(i))
        items = m.items()
        assert len(items) == 10000
        assert sorted(int.from_bytes(k, "little") for k, _ in items) == list(range(10000))


def _percpu_update_prog(map_fd: int) -> bytes:
    # key 1 := smp_processor_id() + 100   (writes the current CPU's slot only)
    return prog(
        call(FN_get_smp_processor_id),
        alu64_imm(ADD, R0, 100),
        stx(DW, R10, R0, -16),
        st_imm(DW, R10, -8, 1),
        ld_map_fd(R1, map_fd),
        mov64_reg(R2, R10), alu64_imm(ADD, R2, -8),
        mov64_reg(R3, R10), alu64_imm(ADD, R3, -16),
        mov64_imm(R4, 0),
        call(FN_map_update_elem),
        ret(0),
    )


def test_percpu_hash_values_per_cpu():
    ncpus = possible_cpus()
    with Map.create(ksys.BPF_MAP_TYPE_PERCPU_HASH, 8, 4, 16, name="t_pcpu") as m:
        assert m.percpu and m.value_stride == 8 and m.raw_value_size == 8 * ncpus
        fd = progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT, _percpu_update_prog(m.fd))
        try:
            cpus = [0, ncpus - 1] if ncpus > 1 else [0]
            for cpu in cpus:
                progs.test_run(fd, ctx_in=raw_tp_ctx(), flags=ksys.BPF_F_TEST_RUN_ON_CPU,
                               cpu=cpu)
        finally:
            os.close(fd)
        raw = m.lookup(q(1))
        assert len(raw) == 8 * ncpus
        vals = [U32.unpack(v)[0] for v in m.percpu_values(raw)]
        want = [0] * ncpus
        for cpu in cpus:
            want[cpu] = 100 + cpu
        assert vals == want
        # batch path returns the same raw layout
        assert m.items() == [(q(1), raw)]
        # user-space update: one value goes to every CPU, a raw value per CPU
        m.update(q(2), U32.pack(7))
        assert [U32.unpack(v)[0] for v in m.percpu_values(m.lookup(q(2)))] == [7] * ncpus
        rawv = b"".join(q(10 + c) for c in range(ncpus))
        m.update(q(3), rawv)
        assert m.lookup(q(3)) == rawv
        assert dict(m.items())[q(3)] == rawv


@pytest.mark.parametrize("mtype", [ksys.BPF_MAP_TYPE_ARRAY, ksys.BPF_MAP_TYPE_PERCPU_ARRAY])
def test_array_maps(mtype):
    with Map.create(mtype, 4, 8, 64, name="t_arr") as m:
        m.update(U32.pack(3), q(33))
        m.update(U32.pack(63), q(99))
        items = dict(m.items())
        assert len(items) == 64  # arrays always have every key
        first = m.percpu_values(items[U32.pack(3)]) if m.percpu else [items[U32.pack(3)]]
        assert first == [q(33)] * len(first)
        assert items[U32.pack(0)] == bytes(m.raw_value_size)
        assert len(m.keys()) == 64
        m.clear()
        assert all(v == bytes(m.raw_value_size) for _, v in m.items())
        assert m.lookup(U32.pack(63)) == bytes(m.raw_value_size)
        assert m.lookup(U32.pack(64)) is None


def test_stack_trace_map_falls_back_from_batch():
    with Map.create(ksys.BPF_MAP_TYPE_STACK_TRACE, 4, 8 * 127, 64) as m:
        assert m.items() == []
        assert m._batch_ok is False


# ---------------------------------------------------------------------------
# programs


def test_verifier_error():
    bad = prog(mov64_imm(R0, 0), mov64_imm(R6, 1), mov64_reg(R0, R2), exit_())
    with pytest.raises(progs.VerifierError) as ei:
        progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT, bad, name="bad")
    e = ei.value
    assert isinstance(e, OSError) and e.errno == errno.EACCES
    assert "R2 !read_ok" in e.log
    assert e.summary == "R2 !read_ok"
    assert e.insn_index == 2
    assert "R2 !read_ok" in str(e)


def test_load_with_log_and_test_run():
    fd, log = progs.load_program_with_log(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT, ret(42),
                                          name="ok", log_level=1)
    try:
        assert "processed 2 insns" in log
        assert progs.test_run(fd, ctx_in=raw_tp_ctx()) == 42
        info = progs.prog_info(fd)
        assert info["name"] == "ok" and info["verified_insns"] == 2
        assert info["xlated_prog_len"] == 16 and info["id"] > 0
    finally:
        os.close(fd)


def test_prog_info_run_cnt_with_stats():
    fd = progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT, ret(0), name="stats")
    sfd = progs.enable_stats()
    try:
        for _ in range(3):
            progs.test_run(fd, ctx_in=raw_tp_ctx())
        info = progs.prog_info(fd)
        assert info["run_cnt"] == 3
        assert info["run_time_ns"] > 0
    finally:
        os.close(sfd)
        os.close(fd)


# ---------------------------------------------------------------------------
# ring buffer

RB_MAGIC = 0x5A5A1234


def _rb_loop_prog(map_fd: int, n: int, start: int, rec_size: int) -> bytes:
    """Output n records: u64 counter (start + n - 1 down to start), u32 magic
    (rec_size 12) -- or just the counter (rec_size 8)."""
    return assemble(
        mov64_imm(R6, n),
        Label("loop"),
        mov64_reg(R7, R6), alu64_imm(ADD, R7, start - 1),
        stx(DW, R10, R7, -16),
        st_imm(W, R10, -8, RB_MAGIC),
        ld_map_fd(R1, map_fd),
        mov64_reg(R2, R10), alu64_imm(ADD, R2, -16),
        mov64_imm(R3, rec_size), mov64_imm(R4, 0),
        call(FN_ringbuf_output),
        alu64_imm(SUB, R6, 1),
        jmp_to(JNE, R6, 0, "loop"),
        ret(0),
    )


def test_ringbuf_output_and_drain_with_wraparound():
    size = 4096  # 4096 is not a multiple of the 24-byte record: records straddle the end
    with Map.create(ksys.BPF_MAP_TYPE_RINGBUF, 0, 0, size, name="t_rb") as m, \
            RingBuffer(m.fd, size) as rb:
        assert rb.poll(0) is False
        assert rb.drain(lambda mv: None) == 0
        got = []
        for rnd in range(12):
            fd = progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT,
                                    _rb_loop_prog(m.fd, 100, rnd * 100, 12))
            try:
                progs.test_run(fd, ctx_in=raw_tp_ctx())
            finally:
                os.close(fd)
            assert rb.poll(100) is True
            assert rb.drain(lambda mv: got.append(bytes(mv))) == 100
            assert rb.available() == 0
        assert all(len(r) == 12 for r in got)
        assert [U32.unpack_from(r, 8)[0] for r in got] == [RB_MAGIC] * 1200
        counters = [U64.unpack_from(r, 0)[0] for r in got]
        assert counters == [c for rnd in range(12) for c in range(rnd * 100 + 99, rnd * 100 - 1, -1)]


def test_ringbuf_skips_discarded_records():
    size = 4096
    with Map.create(ksys.BPF_MAP_TYPE_RINGBUF, 0, 0, size) as m, RingBuffer(m.fd, size) as rb:
        code = assemble(
            ld_map_fd(R1, m.fd), mov64_imm(R2, 16), mov64_imm(R3, 0),
            call(FN_ringbuf_reserve),
            jmp_to(JEQ, R0, 0, "out"),
            mov64_reg(R1, R0), mov64_imm(R2, 0),
            call(FN_ringbuf_discard),
            st_imm(DW, R10, -8, 77),
            ld_map_fd(R1, m.fd), mov64_reg(R2, R10), alu64_imm(ADD, R2, -8),
            mov64_imm(R3, 8), mov64_imm(R4, 0),
            call(FN_ringbuf_output),
            Label("out"),
            ret(0),
        )
        fd = progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT, code)
        try:
            progs.test_run(fd, ctx_in=raw_tp_ctx())
        finally:
            os.close(fd)
        got = []
        assert rb.drain(lambda mv: got.append(bytes(mv))) == 1
        assert got == [q(77)]
        assert rb.available() == 0


def test_ringbuf_drains_every_record_of_many_batches():
    # (how fast it drains is bench/'s to measure: no timing assertion here)
    size = 1 << 20
    n = 10000
    with Map.create(ksys.BPF_MAP_TYPE_RINGBUF, 0, 0, size) as m, RingBuffer(m.fd, size) as rb:
        fd = progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT, _rb_loop_prog(m.fd, n, 0, 8))
        try:
            for _ in range(3):
                for _ in range(6):
                    progs.test_run(fd, ctx_in=raw_tp_ctx())
                sizes = []
                assert rb.drain(lambda mv: sizes.append(len(mv))) == 6 * n
                assert sizes == [8] * (6 * n)
                assert rb.available() == 0
        finally:
            os.close(fd)


# ---------------------------------------------------------------------------
# attaching


def _cookie_prog(map_fd: int, pid: int) -> bytes:
    """If current tgid == pid: counts[0].hits++, counts[0].cookie = attach cookie."""
    return assemble(
        mov64_reg(R6, R1),
        call(FN_get_current_pid_tgid),
        alu64_imm(RSH, R0, 32),
        jmp_to(JNE, R0, pid, "out"),
        mov64_reg(R1, R6),
        call(FN_get_attach_cookie),
        mov64_reg(R7, R0),
        st_imm(W, R10, -4, 0),
        ld_map_fd(R1, map_fd), mov64_reg(R2, R10), alu64_imm(ADD, R2, -4),
        call(FN_map_lookup_elem),
        jmp_to(JEQ, R0, 0, "out"),
        mov64_imm(R1, 1),
        atomic_add64(R0, R1, 0),
        stx(DW, R0, R7, 8),
        Label("out"),
        ret(0),
    )


def _hits(m: Map) -> tuple[int, int]:
    v = m.lookup(U32.pack(0))
    return U64.unpack_from(v, 0)[0], U64.unpack_from(v, 8)[0]


def test_tracefs_syscalls_read():
    root = tracefs.tracefs_root()
    assert os.path.isdir(os.path.join(root, "events", "syscalls"))
    names = tracefs.list_tracepoints("syscalls:sys_enter_rea*")
    assert "syscalls:sys_enter_read" in names and names == sorted(names)
    assert all(n.startswith("syscalls:sys_enter_rea") for n in names)
    everything = tracefs.list_tracepoints()
    assert len(everything) > 500 and "sched:sched_switch" in everything
    assert tracefs.list_tracepoints("*:sys_enter_read") == ["syscalls:sys_enter_read"]
    with open(os.path.join(root, "events/syscalls/sys_enter_read/id")) as f:
        assert tracefs.event_id("syscalls", "sys_enter_read") == int(f.read()) > 0
    fields = {f.name: f for f in tracefs.event_format("syscalls", "sys_enter_read")}
    assert not any(n.startswith("common_") for n in fields)
    assert (fields["fd"].offset, fields["buf"].offset, fields["count"].offset) == (16, 24, 32)
    assert fields["buf"].is_pointer and not fields["fd"].is_pointer
    assert fields["count"].size == 8
    sw = {f.name: f for f in tracefs.event_format("sched", "sched_switch")}
    assert sw["prev_comm"].array_len == 16 and sw["prev_comm"].type_text == "char"
    assert sw["prev_pid"].signed and sw["prev_pid"].array_len is None
    ex = {f.name: f for f in tracefs.event_format("sched", "sched_process_exec")}
    assert ex["filename"].data_loc and ex["filename"].size == 4
    with pytest.raises(FileNotFoundError):
        tracefs.event_id("syscalls", "sys_enter_no_such_thing")


def test_tracefs_exact_names_and_kept_listings():
    # a name without wildcards is looked up, not listed: the same answers as a listing gives
    assert tracefs.list_tracepoints("syscalls:sys_enter_read") == ["syscalls:sys_enter_read"]
    for bad in ("syscalls:sys_enter_nonesuch", "nonesuch:sys_enter_read", "syscalls:",
                ":sys_enter_read", "syscalls:..", "syscalls:sys_enter_read/..",
                "syscalls/../syscalls:sys_enter_read"):
        assert tracefs.list_tracepoints(bad) == [], bad
    # the directories read for a wildcard are kept in the dict given, and answer from it
    listing: dict = {}
    first = tracefs.list_tracepoints("syscalls:sys_enter_rea*", listing)
    assert first == tracefs.list_tracepoints("syscalls:sys_enter_rea*")
    syscalls_dir = os.path.join(tracefs.tracefs_root(), "events", "syscalls")
    assert "sys_enter_read" in listing[syscalls_dir]
    listing[syscalls_dir] = ["sys_enter_ready_made"]     # (proves the kept listing is read)
    assert tracefs.list_tracepoints("syscalls:sys_enter_rea*", listing) == \
        ["syscalls:sys_enter_ready_made"]


def test_live_host_keeps_formats_for_one_compile():
    from ptrace_lang.kernel.host import LiveHost

    host = LiveHost()
    a = host.event_format("syscalls", "sys_enter_read")
    assert [f.name for f in a][:3] == ["__syscall_nr", "fd", "buf"]
    assert host._formats[("syscalls", "sys_enter_read")] is not a     # (a copy each time)
    host._formats[("syscalls", "sys_enter_read")] = ["kept"]
    assert host.event_format("syscalls", "sys_enter_read") == ["kept"]
    host.forget()                    # a new compile reads tracefs again
    assert host.event_format("syscalls", "sys_enter_read") == a


def test_tracepoint_perf_link_with_cookie():
    with Map.create(ksys.BPF_MAP_TYPE_ARRAY, 4, 16, 1, name="t_cookie") as m:
        fd = progs.load_program(ksys.BPF_PROG_TYPE_TRACEPOINT, _cookie_prog(m.fd, os.getpid()),
                                name="cookie")
        sfd = progs.enable_stats()
        try:
            pfd = perf.tracepoint_event(tracefs.event_id("syscalls", "sys_enter_getppid"))
            link = links.attach_perf_event(fd, pfd, cookie=0xC0FFEE0012345678)
            assert link.fd != pfd and link.perf_fd == pfd
            for _ in range(5):
                os.getppid()
            assert _hits(m) == (5, 0xC0FFEE0012345678)
            assert progs.prog_info(fd)["run_cnt"] >= 5
            link.close()
            assert link.closed
            with pytest.raises(OSError):
                os.fstat(pfd)  # the link owned the perf fd
            os.getppid()
            assert _hits(m)[0] == 5
        finally:
            os.close(sfd)
            os.close(fd)


def test_software_cpu_clock_event_fires():
    with Map.create(ksys.BPF_MAP_TYPE_ARRAY, 4, 8, 1) as m:
        code = prog(
            st_imm(W, R10, -4, 0),
            ld_map_fd(R1, m.fd), mov64_reg(R2, R10), alu64_imm(ADD, R2, -4),
            call(FN_map_lookup_elem),
            jmp_imm(JEQ, R0, 0, 2),
            mov64_imm(R1, 1),
            atomic_add64(R0, R1, 0),
            ret(0),
        )
        fd = progs.load_program(ksys.BPF_PROG_TYPE_PERF_EVENT, code, name="clock")
        ls = []
        try:
            for cpu in range(possible_cpus()):
                pfd = perf.software_event(perf.PERF_COUNT_SW_CPU_CLOCK, cpu, freq=1000)
                ls.append(links.attach_perf_event(fd, pfd))
            deadline = time.monotonic() + 2
            while U64.unpack(m.lookup(U32.pack(0)))[0] < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert U64.unpack(m.lookup(U32.pack(0)))[0] >= 5
        finally:
            teardown.close_all(ls, background=False)
            os.close(fd)


def test_raw_tracepoint_open():
    with Map.create(ksys.BPF_MAP_TYPE_ARRAY, 4, 16, 1) as m:
        # raw tracepoint sys_enter: args are (regs, id); filter on our tgid only
        fd = progs.load_program(ksys.BPF_PROG_TYPE_RAW_TRACEPOINT,
                                _cookie_prog_no_cookie(m.fd, os.getpid()))
        try:
            link = links.raw_tracepoint_open(fd, "sys_enter")
            for _ in range(3):
                os.getppid()
            assert _hits(m)[0] >= 3
            link.close()  # the close() syscall itself is still counted
            n = _hits(m)[0]
            os.getppid()
            os.getppid()
            assert _hits(m)[0] == n
            with pytest.raises(OSError) as ei:
                links.raw_tracepoint_open(fd, "no_such_raw_tracepoint_xyz")
            assert ei.value.errno == errno.ENOENT
        finally:
            os.close(fd)


def _cookie_prog_no_cookie(map_fd: int, pid: int) -> bytes:
    return assemble(
        call(FN_get_current_pid_tgid),
        alu64_imm(RSH, R0, 32),
        jmp_to(JNE, R0, pid, "out"),
        st_imm(W, R10, -4, 0),
        ld_map_fd(R1, map_fd), mov64_reg(R2, R10), alu64_imm(ADD, R2, -4),
        call(FN_map_lookup_elem),
        jmp_to(JEQ, R0, 0, "out"),
        mov64_imm(R1, 1),
        atomic_add64(R0, R1, 0),
        Label("out"),
        ret(0),
    )


@pytest.mark.parametrize("background", [False, True])
def test_close_all_detaches(background):
    events = ["sys_enter_getppid", "sys_enter_getpgrp", "sys_enter_getuid"]
    with Map.create(ksys.BPF_MAP_TYPE_ARRAY, 4, 16, 1) as m:
        fd = progs.load_program(ksys.BPF_PROG_TYPE_TRACEPOINT, _cookie_prog(m.fd, os.getpid()))
        try:
            ls = []
            for i, ev in enumerate(events):
                pfd = perf.tracepoint_event(tracefs.event_id("syscalls", ev))
                ls.append(links.attach_perf_event(fd, pfd, cookie=i + 1))
            os.getppid()
            os.getpgrp()
            assert _hits(m) == (2, 2)
            perf_fds = [lk.perf_fd for lk in ls]
            res = teardown.close_all(ls, background=background)
            assert res["n_perf"] == 3 and res["background"] is background
            for pfd in perf_fds:
                with pytest.raises(OSError):
                    os.fstat(pfd)
            os.getppid()
            os.getpgrp()
            assert _hits(m)[0] == 2
        finally:
            os.close(fd)


def test_close_all_many_tracepoints_is_fast():
    # sys_enter_* programs must exit fast: closing perf events serially costs
    # ~35 ms each (under the kernel's event_mutex), so close_all hands them
    # to a background reaper when there are many
    names = tracefs.list_tracepoints("syscalls:sys_enter_*")[:24]
    assert len(names) == 24
    with Map.create(ksys.BPF_MAP_TYPE_ARRAY, 4, 16, 1) as m:
        fd = progs.load_program(ksys.BPF_PROG_TYPE_TRACEPOINT, _cookie_prog(m.fd, os.getpid()))
        try:
            ls = []
            try:
                for i, name in enumerate(names):
                    pfd = perf.tracepoint_event(tracefs.event_id(*name.split(":")))
                    ls.append(links.attach_perf_event(fd, pfd, cookie=i))
            except BaseException:
                teardown.close_all(ls, background=False)
                raise
            res = teardown.close_all(ls)
            assert res["background"] is True and res["n_perf"] == 24
            assert all(lk.closed for lk in ls)
            before = _hits(m)[0]
            os.getppid()
            assert _hits(m)[0] == before
        finally:
            os.close(fd)
