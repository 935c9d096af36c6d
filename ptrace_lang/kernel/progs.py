"""BPF programs: load (with verifier log on failure), test-run, info, stats."""

from __future__ import annotations

from . import cty
import errno
import os

from .sys import (
    obj_get_info,
    BPF_ENABLE_STATS,
    BPF_PROG_LOAD,
    BPF_PROG_TEST_RUN,
    BPF_STATS_RUN_TIME,
    EnableStatsAttr,
    ProgInfo,
    ProgLoadAttr,
    ProgTestRunAttr,
    bpf,
    bpf_errno,
)
from .maps import _obj_name

__all__ = [
    "VerifierError",
    "load_program",
    "load_program_with_log",
    "test_run",
    "prog_info",
    "enable_stats",
]

LOG_START = 1 << 20
LOG_MAX = 64 << 20

_INSN_LINE = r"^(\d+): \("     # compiled on first use: a successful load needs no re
# trailing statistics lines that carry no information about the failure
_NOISE = (
    "processed ",
    "verification time ",
    "stack depth ",
    "mark_read ",
    "cur state:",
    "old state:",
    "from ",
)


def _summary(log: str) -> tuple[str, int]:
    """(last meaningful line, its index in log.splitlines())."""
    lines = log.splitlines()
    for i in range(len(lines) - 1, -1, -1):
        line = lines[i].strip()
        if not line or line.startswith(_NOISE):
            continue
        return line, i
    return "", len(lines)


def _insn_index(log: str, upto: int) -> int | None:
    import re

    lines = log.splitlines()
    for i in range(min(upto, len(lines) - 1), -1, -1):
        m = re.match(_INSN_LINE, lines[i])
        if m:
            return int(m.group(1))
    return None


class VerifierError(OSError):
    """Program load failed; ``log`` holds the whole verifier log.

    ``summary`` is the last meaningful log line (the error itself) and
    ``insn_index`` the instruction the verifier was at when it gave up (None
    if the log names none).
    """

    def __init__(self, err: int, log: str, prog_name: str = ""):
        self.log = log
        self.summary, at = _summary(log)
        self.insn_index = _insn_index(log, at)
        where = f" at insn {self.insn_index}" if self.insn_index is not None else ""
        what = f" {prog_name!r}" if prog_name else ""
        msg = f"bpf(BPF_PROG_LOAD){what}: {os.strerror(err)}{where}: {self.summary}"
        super().__init__(err, msg)

    def __reduce__(self):
        return (type(self), (self.errno, self.log))


def _load(prog_type: int, insns: bytes, license: str, name: str,
          expected_attach_type: int, log_level: int, attach_btf_id: int,
          prog_flags: int, attach_prog_fd: int, kern_version: int,
          fd_array: bytes | None, log_size: int,
          func_info: tuple[int, bytes] | None = None) -> tuple[int, str, int]:
    """One BPF_PROG_LOAD; returns (fd or -errno, log text, log_true_size)."""
    if len(insns) % 8:
        raise ValueError(f"insns length {len(insns)} is not a multiple of 8")
    code = cty.create_string_buffer(bytes(insns), len(insns))
    lic = cty.create_string_buffer(license.encode())
    attr = ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(insns) // 8,
        insns=cty.addressof(code),
        license=cty.addressof(lic),
        kern_version=kern_version,
        prog_flags=prog_flags,
        prog_name=_obj_name(name),
        expected_attach_type=expected_attach_type,
        attach_btf_id=attach_btf_id,
        attach_prog_fd=attach_prog_fd,
    )
    fa = None
    if fd_array:
        fa = cty.create_string_buffer(bytes(fd_array), len(fd_array))
        attr.fd_array = cty.addressof(fa)
    fi = None
    if func_info:       # (BTF fd, bpf_func_info records): a program with subprograms
        fi = cty.create_string_buffer(func_info[1], len(func_info[1]))
        attr.prog_btf_fd = func_info[0]
        attr.func_info_rec_size = 8
        attr.func_info = cty.addressof(fi)
        attr.func_info_cnt = len(func_info[1]) // 8
    buf = None
    if log_level:
        buf = cty.create_string_buffer(log_size)
        attr.log_level = log_level
        attr.log_size = log_size
        attr.log_buf = cty.addressof(buf)
    r = bpf_errno(BPF_PROG_LOAD, attr)
    log = buf.value.decode(errors="replace") if buf is not None else ""
    del fa, fi
    return r, log, attr.log_true_size


def load_program_with_log(prog_type: int, insns: bytes, license: str = "GPL", name: str = "",
                          expected_attach_type: int = 0, log_level: int = 1,
                          attach_btf_id: int = 0, *, prog_flags: int = 0,
                          attach_prog_fd: int = 0, kern_version: int = 0,
                          fd_array: bytes | None = None,
                          func_info: tuple[int, bytes] | None = None) -> tuple[int, str]:
    """Load with the verifier log on (level max(1, log_level)); return (fd, log).

    The log buffer starts at 1 MiB and grows on ENOSPC up to 64 MiB.  Raises
    VerifierError (with the log) when the kernel rejects the program, or a
    plain OSError when it failed without saying anything.
    """
    log_level = max(1, log_level)
    size = LOG_START
    while True:
        r, log, true_size = _load(prog_type, insns, license, name, expected_attach_type,
                                  log_level, attach_btf_id, prog_flags, attach_prog_fd,
                                  kern_version, fd_array, size, func_info)
        if r >= 0:
            return r, log
        if r == -errno.ENOSPC and size < LOG_MAX:
            # log truncated: grow (kernels >= 6.4 tell us the size needed)
            size = min(LOG_MAX, max(size * 4, true_size + 1))
            continue
        if log.strip():
            raise VerifierError(-r, log, name)
        raise OSError(-r, f"bpf(BPF_PROG_LOAD): {os.strerror(-r)}")


def load_program(prog_type: int, insns: bytes, license: str = "GPL", name: str = "",
                 expected_attach_type: int = 0, log_level: int = 0,
                 attach_btf_id: int = 0, *, prog_flags: int = 0,
                 attach_prog_fd: int = 0, kern_version: int = 0,
                 fd_array: bytes | None = None,
                 func_info: tuple[int, bytes] | None = None) -> int:
    """Load a program and return its fd.

    Tries once without a log (fast path); if that fails, loads again with the
    verifier log on and raises VerifierError carrying it.  With log_level > 0
    it loads with the log from the start (the log is dropped on success; use
    load_program_with_log to get it).
    """
    if log_level <= 0:
        r, _, _ = _load(prog_type, insns, license, name, expected_attach_type, 0,
                        attach_btf_id, prog_flags, attach_prog_fd, kern_version, fd_array, 0,
                        func_info)
        if r >= 0:
            return r
        first_err = -r
    else:
        first_err = 0
    try:
        fd, _ = load_program_with_log(prog_type, insns, license, name, expected_attach_type,
                                      log_level, attach_btf_id, prog_flags=prog_flags,
                                      attach_prog_fd=attach_prog_fd, kern_version=kern_version,
                                      fd_array=fd_array, func_info=func_info)
    except VerifierError:
        raise
    except OSError as e:
        if first_err and e.errno != first_err:
            raise OSError(first_err, f"bpf(BPF_PROG_LOAD): {os.strerror(first_err)}") from e
        raise
    return fd


def test_run(prog_fd: int, ctx_in: bytes = b"", data_in: bytes = b"", repeat: int = 1,
             flags: int = 0, cpu: int = 0) -> int:
    """BPF_PROG_TEST_RUN; returns the program's return value.

    repeat <= 1 is sent as 0 (the kernel treats 0 as 1), so this works for
    raw tracepoint programs, which reject any repeat (pass ctx_in there, e.g.
    8 * nargs zero bytes, and no data_in).
    """
    cbuf = cty.create_string_buffer(bytes(ctx_in), len(ctx_in)) if ctx_in else None
    dbuf = cty.create_string_buffer(bytes(data_in), len(data_in)) if data_in else None
    attr = ProgTestRunAttr(
        prog_fd=prog_fd,
        repeat=repeat if repeat > 1 else 0,
        flags=flags,
        cpu=cpu,
    )
    if cbuf is not None:
        attr.ctx_in = cty.addressof(cbuf)
        attr.ctx_size_in = len(ctx_in)
    if dbuf is not None:
        attr.data_in = cty.addressof(dbuf)
        attr.data_size_in = len(data_in)
    bpf(BPF_PROG_TEST_RUN, attr)
    return attr.retval


def bench_run(prog_fd: int, data_in: bytes, repeat: int) -> int:
    """BPF_PROG_TEST_RUN of ``repeat`` runs of a program that takes a packet (XDP): the
    kernel's average time of one run, in nanoseconds."""
    dbuf = cty.create_string_buffer(bytes(data_in), len(data_in))
    attr = ProgTestRunAttr(prog_fd=prog_fd, repeat=repeat, data_size_in=len(data_in))
    attr.data_in = cty.addressof(dbuf)
    bpf(BPF_PROG_TEST_RUN, attr)
    return attr.duration


def prog_info(fd: int) -> dict:
    """BPF_OBJ_GET_INFO_BY_FD on a program fd."""
    info = obj_get_info(fd, ProgInfo())
    return {
        "type": info.type,
        "id": info.id,
        "tag": bytes(info.tag).hex(),
        "name": info.name.decode(errors="replace"),
        "run_time_ns": info.run_time_ns,
        "run_cnt": info.run_cnt,
        "recursion_misses": info.recursion_misses,
        "xlated_prog_len": info.xlated_prog_len,
        "jited_prog_len": info.jited_prog_len,
        "verified_insns": info.verified_insns,
        "nr_map_ids": info.nr_map_ids,
        "load_time": info.load_time,
        "created_by_uid": info.created_by_uid,
        "gpl_compatible": bool(info.gpl_compatible & 1),
        "btf_id": info.btf_id,
        "attach_btf_id": info.attach_btf_id,
        "attach_btf_obj_id": info.attach_btf_obj_id,
    }


def enable_stats() -> int:
    """BPF_ENABLE_STATS(BPF_STATS_RUN_TIME): run_cnt / run_time_ns are
    collected for every program while the returned fd stays open."""
    return bpf(BPF_ENABLE_STATS, EnableStatsAttr(type=BPF_STATS_RUN_TIME))


class _BtfLoadAttr(cty.Structure):
    _fields_ = [("btf", cty.c_uint64), ("btf_log_buf", cty.c_uint64),
                ("btf_size", cty.c_uint32), ("btf_log_size", cty.c_uint32),
                ("btf_log_level", cty.c_uint32)]


def load_btf(blob: bytes) -> int:
    """BPF_BTF_LOAD: the fd of a BTF object (the functions of a program with subprograms);
    on failure an OSError carrying the kernel's BTF log."""
    from ptrace_lang.kernel.sys import BPF_BTF_LOAD

    data = cty.create_string_buffer(blob, len(blob))
    log = cty.create_string_buffer(65536)
    attr = _BtfLoadAttr(btf=cty.addressof(data), btf_size=len(blob),
                        btf_log_buf=cty.addressof(log), btf_log_size=65536, btf_log_level=1)
    r = bpf_errno(BPF_BTF_LOAD, attr)
    if r < 0:
        raise OSError(-r, f"bpf(BPF_BTF_LOAD): {os.strerror(-r)}: {log.value.decode(errors='replace').strip()}")
    return r
