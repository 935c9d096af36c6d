"""Raw syscalls: bpf(2) and perf_event_open(2), their constants and attr structs.

This is the only module in ptrace-lang that issues the bpf / perf_event_open
system calls.  Everything here is a thin, literal transcription of the uapi
headers (include/uapi/linux/bpf.h, perf_event.h); the richer wrappers live in
the sibling modules (maps, progs, perf, links, ringbuf).

Errors are raised as ``OSError(errno, "bpf(BPF_MAP_CREATE): <strerror>")``.
"""

from __future__ import annotations

from . import cty
import os

# ---------------------------------------------------------------------------
# syscall numbers, and libc's syscall(2) (kernel/cty.py: runtime/early.py uses them before
# this module is imported)

NR_BPF = cty.NR_BPF
NR_PERF_EVENT_OPEN = cty.NR_PERF_EVENT_OPEN
_syscall = cty.syscall()

# ---------------------------------------------------------------------------
# the uapi constants (enum bpf_cmd, bpf_map_type, bpf_prog_type, perf ...): pure data in bpf/uapi.py
from ptrace_lang.bpf.uapi import *  # noqa: E402,F401,F403
from ptrace_lang.bpf.uapi import CMD_NAMES, PERCPU_MAP_TYPES  # noqa: E402,F401


# ---------------------------------------------------------------------------
# union bpf_attr members.  Each is laid out like the corresponding anonymous
# struct in the uapi union; the kernel zero-extends shorter attrs and accepts
# longer ones as long as the tail is zero.

_u8 = cty.c_uint8
_u16 = cty.c_uint16
_u32 = cty.c_uint32
_s32 = cty.c_int32
_u64 = cty.c_uint64


class MapCreateAttr(cty.Structure):
    """BPF_MAP_CREATE."""
    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", cty.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
    ]


class MapElemAttr(cty.Structure):
    """BPF_MAP_LOOKUP_ELEM / UPDATE_ELEM / DELETE_ELEM / GET_NEXT_KEY.

    ``value`` doubles as ``next_key`` (they are a union in the uapi).
    """
    _fields_ = [
        ("map_fd", _u32),
        ("_pad0", _u32),
        ("key", _u64),
        ("value", _u64),
        ("flags", _u64),
    ]

    @property
    def next_key(self) -> int:
        return self.value

    @next_key.setter
    def next_key(self, v: int) -> None:
        self.value = v


class MapBatchAttr(cty.Structure):
    """BPF_MAP_LOOKUP_BATCH / LOOKUP_AND_DELETE_BATCH / UPDATE_BATCH / DELETE_BATCH."""
    _fields_ = [
        ("in_batch", _u64),
        ("out_batch", _u64),
        ("keys", _u64),
        ("values", _u64),
        ("count", _u32),
        ("map_fd", _u32),
        ("elem_flags", _u64),
        ("flags", _u64),
    ]


class ProgLoadAttr(cty.Structure):
    """BPF_PROG_LOAD (including log_true_size, which newer kernels fill in)."""
    _fields_ = [
        ("prog_type", _u32),
        ("insn_cnt", _u32),
        ("insns", _u64),
        ("license", _u64),
        ("log_level", _u32),
        ("log_size", _u32),
        ("log_buf", _u64),
        ("kern_version", _u32),
        ("prog_flags", _u32),
        ("prog_name", cty.c_char * BPF_OBJ_NAME_LEN),
        ("prog_ifindex", _u32),
        ("expected_attach_type", _u32),
        ("prog_btf_fd", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("func_info_cnt", _u32),
        ("line_info_rec_size", _u32),
        ("line_info", _u64),
        ("line_info_cnt", _u32),
        ("attach_btf_id", _u32),
        ("attach_prog_fd", _u32),  # union with attach_btf_obj_fd
        ("core_relo_cnt", _u32),
        ("fd_array", _u64),
        ("core_relos", _u64),
        ("core_relo_rec_size", _u32),
        ("log_true_size", _u32),  # output, kernel >= 6.4
    ]


class ObjGetInfoAttr(cty.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""
    _fields_ = [
        ("bpf_fd", _u32),
        ("info_len", _u32),
        ("info", _u64),
    ]


class ProgTestRunAttr(cty.Structure):
    """BPF_PROG_TEST_RUN."""
    _fields_ = [
        ("prog_fd", _u32),
        ("retval", _u32),
        ("data_size_in", _u32),
        ("data_size_out", _u32),
        ("data_in", _u64),
        ("data_out", _u64),
        ("repeat", _u32),
        ("duration", _u32),
        ("ctx_size_in", _u32),
        ("ctx_size_out", _u32),
        ("ctx_in", _u64),
        ("ctx_out", _u64),
        ("flags", _u32),
        ("cpu", _u32),
        ("batch_size", _u32),
        ("_pad0", _u32),
    ]


class LinkCreateAttr(cty.Structure):
    """BPF_LINK_CREATE.

    The target-specific union starts at offset 16; ``bpf_cookie`` is its
    ``perf_event.bpf_cookie`` member, ``target_btf_id`` aliases its first u32
    (and ``tracing.cookie`` is at offset 24, exposed as ``tracing_cookie``).
    """
    _fields_ = [
        ("prog_fd", _u32),
        ("target_fd", _u32),  # union with target_ifindex
        ("attach_type", _u32),
        ("flags", _u32),
        ("bpf_cookie", _u64),  # perf_event.bpf_cookie / target_btf_id / iter_info
        ("tracing_cookie", _u64),  # tracing.cookie / iter_info_len / kprobe_multi.syms
        ("_union2", _u64),
        ("_union3", _u64),
    ]

    @property
    def target_btf_id(self) -> int:
        return self.bpf_cookie & 0xFFFFFFFF

    @target_btf_id.setter
    def target_btf_id(self, v: int) -> None:
        self.bpf_cookie = (self.bpf_cookie & ~0xFFFFFFFF) | (v & 0xFFFFFFFF)


class RawTracepointOpenAttr(cty.Structure):
    """BPF_RAW_TRACEPOINT_OPEN."""
    _fields_ = [
        ("name", _u64),
        ("prog_fd", _u32),
        ("_pad0", _u32),
        ("cookie", _u64),  # kernel >= 6.10; must stay 0 on older kernels
    ]


class EnableStatsAttr(cty.Structure):
    """BPF_ENABLE_STATS."""
    _fields_ = [
        ("type", _u32),
        ("_pad0", _u32),
    ]


class GetIdAttr(cty.Structure):
    """BPF_*_GET_NEXT_ID / BPF_*_GET_FD_BY_ID."""
    _fields_ = [
        ("start_id", _u32),  # union with prog_id / map_id / btf_id / link_id
        ("next_id", _u32),
        ("open_flags", _u32),
        ("_pad0", _u32),
    ]


class ObjAttr(cty.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""
    _fields_ = [
        ("pathname", _u64),
        ("bpf_fd", _u32),
        ("file_flags", _u32),
    ]


class ProgInfo(cty.Structure):
    """struct bpf_prog_info."""
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("tag", _u8 * BPF_TAG_SIZE),
        ("jited_prog_len", _u32),
        ("xlated_prog_len", _u32),
        ("jited_prog_insns", _u64),
        ("xlated_prog_insns", _u64),
        ("load_time", _u64),
        ("created_by_uid", _u32),
        ("nr_map_ids", _u32),
        ("map_ids", _u64),
        ("name", cty.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("gpl_compatible", _u32),  # bit 0
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("nr_jited_ksyms", _u32),
        ("nr_jited_func_lens", _u32),
        ("jited_ksyms", _u64),
        ("jited_func_lens", _u64),
        ("btf_id", _u32),
        ("func_info_rec_size", _u32),
        ("func_info", _u64),
        ("nr_func_info", _u32),
        ("nr_line_info", _u32),
        ("line_info", _u64),
        ("jited_line_info", _u64),
        ("nr_jited_line_info", _u32),
        ("line_info_rec_size", _u32),
        ("jited_line_info_rec_size", _u32),
        ("nr_prog_tags", _u32),
        ("prog_tags", _u64),
        ("run_time_ns", _u64),
        ("run_cnt", _u64),
        ("recursion_misses", _u64),
        ("verified_insns", _u32),
        ("attach_btf_obj_id", _u32),
        ("attach_btf_id", _u32),
        ("_pad0", _u32),
    ]


class MapInfo(cty.Structure):
    """struct bpf_map_info."""
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", cty.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("netns_dev", _u64),
        ("netns_ino", _u64),
        ("btf_id", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("_pad0", _u32),
        ("map_extra", _u64),
    ]


class PerfEventAttr(cty.Structure):
    """struct perf_event_attr (PERF_ATTR_SIZE_VER8 layout, 136 bytes).

    The bitfield word is exposed as the plain integer ``flags``; use the
    PERF_ATTR_FLAG_* bit values below.
    """
    _fields_ = [
        ("type", _u32),
        ("size", _u32),
        ("config", _u64),
        ("sample_period", _u64),  # union with sample_freq
        ("sample_type", _u64),
        ("read_format", _u64),
        ("flags", _u64),
        ("wakeup_events", _u32),  # union with wakeup_watermark
        ("bp_type", _u32),
        ("config1", _u64),  # bp_addr / kprobe_func / uprobe_path
        ("config2", _u64),  # bp_len / kprobe_addr / probe_offset
        ("branch_sample_type", _u64),
        ("sample_regs_user", _u64),
        ("sample_stack_user", _u32),
        ("clockid", _s32),
        ("sample_regs_intr", _u64),
        ("aux_watermark", _u32),
        ("sample_max_stack", _u16),
        ("_reserved_2", _u16),
        ("aux_sample_size", _u32),
        ("_reserved_3", _u32),
        ("sig_data", _u64),
        ("config3", _u64),
    ]

    @property
    def sample_freq(self) -> int:
        return self.sample_period

    @sample_freq.setter
    def sample_freq(self, v: int) -> None:
        self.sample_period = v


PERF_ATTR_FLAG_DISABLED = 1 << 0
PERF_ATTR_FLAG_INHERIT = 1 << 1
PERF_ATTR_FLAG_PINNED = 1 << 2
PERF_ATTR_FLAG_EXCLUSIVE = 1 << 3
PERF_ATTR_FLAG_EXCLUDE_USER = 1 << 4
PERF_ATTR_FLAG_EXCLUDE_KERNEL = 1 << 5
PERF_ATTR_FLAG_EXCLUDE_HV = 1 << 6
PERF_ATTR_FLAG_EXCLUDE_IDLE = 1 << 7
PERF_ATTR_FLAG_FREQ = 1 << 10
PERF_ATTR_FLAG_WATERMARK = 1 << 14

for _cls, _size in ((MapCreateAttr, 72), (MapElemAttr, 32), (MapBatchAttr, 56),
                    (ProgLoadAttr, 144), (ObjGetInfoAttr, 16), (ProgTestRunAttr, 80),
                    (LinkCreateAttr, 48), (RawTracepointOpenAttr, 24),
                    (EnableStatsAttr, 8), (ProgInfo, 232), (MapInfo, 88),
                    (PerfEventAttr, 136)):
    assert cty.sizeof(_cls) == _size, (_cls.__name__, cty.sizeof(_cls))
del _cls, _size


# ---------------------------------------------------------------------------
# the syscalls

def bpf(cmd: int, attr: cty.Structure) -> int:
    """Issue bpf(cmd, &attr, sizeof(attr)); return the result or raise OSError."""
    ret = _syscall(NR_BPF, cmd, cty.addressof(attr), cty.sizeof(attr), 0, 0)
    if ret < 0:
        err = cty.get_errno()
        raise OSError(err, f"bpf({CMD_NAMES.get(cmd, cmd)}): {os.strerror(err)}")
    return ret


def bpf_errno(cmd: int, attr: cty.Structure) -> int:
    """Like bpf() but return -errno instead of raising (for hot loops)."""
    ret = _syscall(NR_BPF, cmd, cty.addressof(attr), cty.sizeof(attr), 0, 0)
    if ret < 0:
        return -cty.get_errno()
    return ret


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """perf_event_open(2); fills in attr.size if it is 0."""
    if not attr.size:
        attr.size = cty.sizeof(attr)
    ret = _syscall(NR_PERF_EVENT_OPEN, cty.addressof(attr), pid, cpu, group_fd, flags)
    if ret < 0:
        err = cty.get_errno()
        raise OSError(err, f"perf_event_open: {os.strerror(err)}")
    return ret


def obj_get_info(fd: int, info: cty.Structure) -> cty.Structure:
    """BPF_OBJ_GET_INFO_BY_FD into ``info`` (a struct bpf_prog_info / bpf_map_info ...)."""
    attr = ObjGetInfoAttr(bpf_fd=fd, info_len=cty.sizeof(info), info=cty.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info
