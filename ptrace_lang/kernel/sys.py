"""Raw syscalls: bpf(2) and perf_event_open(2), their constants and attr structs.

This is the only module in ptrace-lang that issues the bpf / perf_event_open
system calls.  Everything here is a thin, literal transcription of the uapi
headers (include/uapi/linux/bpf.h, perf_event.h); the richer wrappers live in
the sibling modules (maps, progs, perf, links, ringbuf).

Errors are raised as ``OSError(errno, "bpf(BPF_MAP_CREATE): <strerror>")``.
"""

from __future__ import annotations

from . import cty as ctypes
import os

# ---------------------------------------------------------------------------
# syscall numbers, and libc's syscall(2) (kernel/cty.py: runtime/early.py uses them before
# this module is imported)

NR_BPF = ctypes.NR_BPF
NR_PERF_EVENT_OPEN = ctypes.NR_PERF_EVENT_OPEN
_syscall = ctypes.syscall()

# ---------------------------------------------------------------------------
# enum bpf_cmd

BPF_MAP_CREATE = 0
BPF_MAP_LOOKUP_ELEM = 1
BPF_MAP_UPDATE_ELEM = 2
BPF_MAP_DELETE_ELEM = 3
BPF_MAP_GET_NEXT_KEY = 4
BPF_PROG_LOAD = 5
BPF_OBJ_PIN = 6
BPF_OBJ_GET = 7
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_TEST_RUN = 10
BPF_PROG_RUN = BPF_PROG_TEST_RUN
BPF_PROG_GET_NEXT_ID = 11
BPF_MAP_GET_NEXT_ID = 12
BPF_PROG_GET_FD_BY_ID = 13
BPF_MAP_GET_FD_BY_ID = 14
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_BTF_LOAD = 18
BPF_BTF_GET_FD_BY_ID = 19
BPF_TASK_FD_QUERY = 20
BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
BPF_MAP_FREEZE = 22
BPF_BTF_GET_NEXT_ID = 23
BPF_MAP_LOOKUP_BATCH = 24
BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
BPF_MAP_UPDATE_BATCH = 26
BPF_MAP_DELETE_BATCH = 27
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_GET_FD_BY_ID = 30
BPF_LINK_GET_NEXT_ID = 31
BPF_ENABLE_STATS = 32
BPF_ITER_CREATE = 33
BPF_LINK_DETACH = 34
BPF_PROG_BIND_MAP = 35
# newer than the installed (6.1) uapi header, values from upstream
BPF_TOKEN_CREATE = 36

CMD_NAMES = {v: k for k, v in sorted(globals().items())
             if k.startswith("BPF_") and isinstance(v, int) and k != "BPF_PROG_RUN"}

# ---------------------------------------------------------------------------
# enum bpf_map_type

BPF_MAP_TYPE_UNSPEC = 0
BPF_MAP_TYPE_HASH = 1
BPF_MAP_TYPE_ARRAY = 2
BPF_MAP_TYPE_PROG_ARRAY = 3
BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
BPF_MAP_TYPE_PERCPU_HASH = 5
BPF_MAP_TYPE_PERCPU_ARRAY = 6
BPF_MAP_TYPE_STACK_TRACE = 7
BPF_MAP_TYPE_CGROUP_ARRAY = 8
BPF_MAP_TYPE_LRU_HASH = 9
BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
BPF_MAP_TYPE_LPM_TRIE = 11
BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
BPF_MAP_TYPE_HASH_OF_MAPS = 13
BPF_MAP_TYPE_DEVMAP = 14
BPF_MAP_TYPE_SOCKMAP = 15
BPF_MAP_TYPE_CPUMAP = 16
BPF_MAP_TYPE_XSKMAP = 17
BPF_MAP_TYPE_SOCKHASH = 18
BPF_MAP_TYPE_CGROUP_STORAGE = 19
BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20
BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
BPF_MAP_TYPE_QUEUE = 22
BPF_MAP_TYPE_STACK = 23
BPF_MAP_TYPE_SK_STORAGE = 24
BPF_MAP_TYPE_DEVMAP_HASH = 25
BPF_MAP_TYPE_STRUCT_OPS = 26
BPF_MAP_TYPE_RINGBUF = 27
BPF_MAP_TYPE_INODE_STORAGE = 28
BPF_MAP_TYPE_TASK_STORAGE = 29
BPF_MAP_TYPE_BLOOM_FILTER = 30
BPF_MAP_TYPE_USER_RINGBUF = 31
# newer than the installed uapi header, values from upstream
BPF_MAP_TYPE_CGRP_STORAGE = 32
BPF_MAP_TYPE_ARENA = 33

PERCPU_MAP_TYPES = frozenset({
    BPF_MAP_TYPE_PERCPU_HASH,
    BPF_MAP_TYPE_PERCPU_ARRAY,
    BPF_MAP_TYPE_LRU_PERCPU_HASH,
    BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE,
})

# ---------------------------------------------------------------------------
# enum bpf_prog_type

BPF_PROG_TYPE_UNSPEC = 0
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_SCHED_ACT = 4
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_XDP = 6
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPE_CGROUP_SKB = 8
BPF_PROG_TYPE_CGROUP_SOCK = 9
BPF_PROG_TYPE_LWT_IN = 10
BPF_PROG_TYPE_LWT_OUT = 11
BPF_PROG_TYPE_LWT_XMIT = 12
BPF_PROG_TYPE_SOCK_OPS = 13
BPF_PROG_TYPE_SK_SKB = 14
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_PROG_TYPE_SK_MSG = 16
BPF_PROG_TYPE_RAW_TRACEPOINT = 17
BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
BPF_PROG_TYPE_LWT_SEG6LOCAL = 19
BPF_PROG_TYPE_LIRC_MODE2 = 20
BPF_PROG_TYPE_SK_REUSEPORT = 21
BPF_PROG_TYPE_FLOW_DISSECTOR = 22
BPF_PROG_TYPE_CGROUP_SYSCTL = 23
BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE = 24
BPF_PROG_TYPE_CGROUP_SOCKOPT = 25
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_STRUCT_OPS = 27
BPF_PROG_TYPE_EXT = 28
BPF_PROG_TYPE_LSM = 29
BPF_PROG_TYPE_SK_LOOKUP = 30
BPF_PROG_TYPE_SYSCALL = 31
# newer than the installed uapi header, values from upstream
BPF_PROG_TYPE_NETFILTER = 32

# ---------------------------------------------------------------------------
# enum bpf_attach_type

BPF_CGROUP_INET_INGRESS = 0
BPF_CGROUP_INET_EGRESS = 1
BPF_CGROUP_INET_SOCK_CREATE = 2
BPF_CGROUP_SOCK_OPS = 3
BPF_SK_SKB_STREAM_PARSER = 4
BPF_SK_SKB_STREAM_VERDICT = 5
BPF_CGROUP_DEVICE = 6
BPF_SK_MSG_VERDICT = 7
BPF_CGROUP_INET4_BIND = 8
BPF_CGROUP_INET6_BIND = 9
BPF_CGROUP_INET4_CONNECT = 10
BPF_CGROUP_INET6_CONNECT = 11
BPF_CGROUP_INET4_POST_BIND = 12
BPF_CGROUP_INET6_POST_BIND = 13
BPF_CGROUP_UDP4_SENDMSG = 14
BPF_CGROUP_UDP6_SENDMSG = 15
BPF_LIRC_MODE2 = 16
BPF_FLOW_DISSECTOR = 17
BPF_CGROUP_SYSCTL = 18
BPF_CGROUP_UDP4_RECVMSG = 19
BPF_CGROUP_UDP6_RECVMSG = 20
BPF_CGROUP_GETSOCKOPT = 21
BPF_CGROUP_SETSOCKOPT = 22
BPF_TRACE_RAW_TP = 23
BPF_TRACE_FENTRY = 24
BPF_TRACE_FEXIT = 25
BPF_MODIFY_RETURN = 26
BPF_LSM_MAC = 27
BPF_TRACE_ITER = 28
BPF_CGROUP_INET4_GETPEERNAME = 29
BPF_CGROUP_INET6_GETPEERNAME = 30
BPF_CGROUP_INET4_GETSOCKNAME = 31
BPF_CGROUP_INET6_GETSOCKNAME = 32
BPF_XDP_DEVMAP = 33
BPF_CGROUP_INET_SOCK_RELEASE = 34
BPF_XDP_CPUMAP = 35
BPF_SK_LOOKUP = 36
BPF_XDP = 37
BPF_SK_SKB_VERDICT = 38
BPF_SK_REUSEPORT_SELECT = 39
BPF_SK_REUSEPORT_SELECT_OR_MIGRATE = 40
BPF_PERF_EVENT = 41
BPF_TRACE_KPROBE_MULTI = 42
BPF_LSM_CGROUP = 43
# newer than the installed uapi header, values from upstream
BPF_STRUCT_OPS = 44
BPF_NETFILTER = 45
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47
BPF_TRACE_UPROBE_MULTI = 48

# ---------------------------------------------------------------------------
# enum bpf_link_type

BPF_LINK_TYPE_UNSPEC = 0
BPF_LINK_TYPE_RAW_TRACEPOINT = 1
BPF_LINK_TYPE_TRACING = 2
BPF_LINK_TYPE_CGROUP = 3
BPF_LINK_TYPE_ITER = 4
BPF_LINK_TYPE_NETNS = 5
BPF_LINK_TYPE_XDP = 6
BPF_LINK_TYPE_PERF_EVENT = 7
BPF_LINK_TYPE_KPROBE_MULTI = 8
BPF_LINK_TYPE_STRUCT_OPS = 9

# ---------------------------------------------------------------------------
# flags

# BPF_MAP_UPDATE_ELEM flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# BPF_MAP_CREATE map_flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12

# BPF_PROG_LOAD prog_flags
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5

# BPF_PROG_TEST_RUN flags
BPF_F_TEST_RUN_ON_CPU = 1 << 0

# enum bpf_stats_type
BPF_STATS_RUN_TIME = 0

# ring buffer record header bits
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8

# perf_event_open flags
PERF_FLAG_FD_NO_GROUP = 1 << 0
PERF_FLAG_FD_OUTPUT = 1 << 1
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3

# errno values the kernel uses that Python's errno module lacks
ENOTSUPP = 524

# ---------------------------------------------------------------------------
# union bpf_attr members.  Each is laid out like the corresponding anonymous
# struct in the uapi union; the kernel zero-extends shorter attrs and accepts
# longer ones as long as the tail is zero.

_u8 = ctypes.c_uint8
_u16 = ctypes.c_uint16
_u32 = ctypes.c_uint32
_s32 = ctypes.c_int32
_u64 = ctypes.c_uint64


class MapCreateAttr(ctypes.Structure):
    """BPF_MAP_CREATE."""
    _fields_ = [
        ("map_type", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("inner_map_fd", _u32),
        ("numa_node", _u32),
        ("map_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("map_ifindex", _u32),
        ("btf_fd", _u32),
        ("btf_key_type_id", _u32),
        ("btf_value_type_id", _u32),
        ("btf_vmlinux_value_type_id", _u32),
        ("map_extra", _u64),
    ]


class MapElemAttr(ctypes.Structure):
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


class MapBatchAttr(ctypes.Structure):
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


class ProgLoadAttr(ctypes.Structure):
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
        ("prog_name", ctypes.c_char * BPF_OBJ_NAME_LEN),
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


class ObjGetInfoAttr(ctypes.Structure):
    """BPF_OBJ_GET_INFO_BY_FD."""
    _fields_ = [
        ("bpf_fd", _u32),
        ("info_len", _u32),
        ("info", _u64),
    ]


class ProgTestRunAttr(ctypes.Structure):
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


class LinkCreateAttr(ctypes.Structure):
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


class RawTracepointOpenAttr(ctypes.Structure):
    """BPF_RAW_TRACEPOINT_OPEN."""
    _fields_ = [
        ("name", _u64),
        ("prog_fd", _u32),
        ("_pad0", _u32),
        ("cookie", _u64),  # kernel >= 6.10; must stay 0 on older kernels
    ]


class EnableStatsAttr(ctypes.Structure):
    """BPF_ENABLE_STATS."""
    _fields_ = [
        ("type", _u32),
        ("_pad0", _u32),
    ]


class GetIdAttr(ctypes.Structure):
    """BPF_*_GET_NEXT_ID / BPF_*_GET_FD_BY_ID."""
    _fields_ = [
        ("start_id", _u32),  # union with prog_id / map_id / btf_id / link_id
        ("next_id", _u32),
        ("open_flags", _u32),
        ("_pad0", _u32),
    ]


class ObjAttr(ctypes.Structure):
    """BPF_OBJ_PIN / BPF_OBJ_GET."""
    _fields_ = [
        ("pathname", _u64),
        ("bpf_fd", _u32),
        ("file_flags", _u32),
    ]


class ProgInfo(ctypes.Structure):
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
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
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


class MapInfo(ctypes.Structure):
    """struct bpf_map_info."""
    _fields_ = [
        ("type", _u32),
        ("id", _u32),
        ("key_size", _u32),
        ("value_size", _u32),
        ("max_entries", _u32),
        ("map_flags", _u32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
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


class PerfEventAttr(ctypes.Structure):
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
    assert ctypes.sizeof(_cls) == _size, (_cls.__name__, ctypes.sizeof(_cls))
del _cls, _size


# ---------------------------------------------------------------------------
# the syscalls

def bpf(cmd: int, attr: ctypes.Structure) -> int:
    """Issue bpf(cmd, &attr, sizeof(attr)); return the result or raise OSError."""
    ret = _syscall(NR_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr), 0, 0)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({CMD_NAMES.get(cmd, cmd)}): {os.strerror(err)}")
    return ret


def bpf_errno(cmd: int, attr: ctypes.Structure) -> int:
    """Like bpf() but return -errno instead of raising (for hot loops)."""
    ret = _syscall(NR_BPF, cmd, ctypes.addressof(attr), ctypes.sizeof(attr), 0, 0)
    if ret < 0:
        return -ctypes.get_errno()
    return ret


def perf_event_open(attr: PerfEventAttr, pid: int, cpu: int, group_fd: int = -1,
                    flags: int = PERF_FLAG_FD_CLOEXEC) -> int:
    """perf_event_open(2); fills in attr.size if it is 0."""
    if not attr.size:
        attr.size = ctypes.sizeof(attr)
    ret = _syscall(NR_PERF_EVENT_OPEN, ctypes.addressof(attr), pid, cpu, group_fd, flags)
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"perf_event_open: {os.strerror(err)}")
    return ret


def obj_get_info(fd: int, info: ctypes.Structure) -> ctypes.Structure:
    """BPF_OBJ_GET_INFO_BY_FD into ``info`` (a struct bpf_prog_info / bpf_map_info ...)."""
    attr = ObjGetInfoAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return info
