"""Links of BTF-bound tracing programs: fentry/fexit (with a cookie), tp_btf, iterators."""

from __future__ import annotations

from . import cty
import errno
import os

from .links import Link, raw_tracepoint_open
from .sys import (
    BPF_ITER_CREATE,
    BPF_LINK_CREATE,
    BPF_TRACE_ITER,
    LinkCreateAttr,
    bpf,
)

__all__ = ["tracing_link", "iter_link", "IterLink"]


def tracing_link(prog_fd: int, attach_type: int, cookie: int = 0) -> Link:
    """BPF_LINK_CREATE for a fentry/fexit/tp_btf program (bound to its target at load time);
    ``cookie`` is what bpf_get_attach_cookie returns (kernel >= 5.19). Without a cookie, a
    kernel whose link_create does not know tracing programs gets BPF_RAW_TRACEPOINT_OPEN."""
    attr = LinkCreateAttr(prog_fd=prog_fd, target_fd=0, attach_type=attach_type,
                          tracing_cookie=cookie & 0xFFFFFFFFFFFFFFFF)
    try:
        fd = bpf(BPF_LINK_CREATE, attr)
    except OSError as e:
        if e.errno != errno.EINVAL or cookie:
            raise
        return raw_tracepoint_open(prog_fd, "")
    return Link(fd, -1, "tracing")


class _IterInfo(cty.Structure):
    """union bpf_iter_link_info: map.map_fd / cgroup / task (tid, pid, pid_fd)."""
    _fields_ = [("a", cty.c_uint32), ("b", cty.c_uint32), ("c", cty.c_uint32),
                ("d", cty.c_uint32)]


class _IterCreateAttr(cty.Structure):
    _fields_ = [("link_fd", cty.c_uint32), ("flags", cty.c_uint32)]


class IterLink(Link):
    """An iterator link; ``run()`` creates an iterator from it and reads it to the end, which
    runs the program once per object (and once more with a NULL object at the end)."""

    def run(self) -> bytes:
        it = bpf(BPF_ITER_CREATE, _IterCreateAttr(link_fd=self.fd))
        out = []
        try:
            while True:
                chunk = os.read(it, 1 << 16)
                if not chunk:
                    break
                out.append(chunk)
        finally:
            os.close(it)
        return b"".join(out)


def iter_link(prog_fd: int, pid: int = 0) -> IterLink:
    """BPF_LINK_CREATE(BPF_TRACE_ITER); ``pid`` > 0 limits a task iterator to that process
    (kernel >= 6.1), 0 walks every task."""
    attr = LinkCreateAttr(prog_fd=prog_fd, target_fd=0, attach_type=BPF_TRACE_ITER)
    info = None
    if pid:
        info = _IterInfo(0, pid, 0, 0)        # task.tid = 0, task.pid = pid
        attr.bpf_cookie = cty.addressof(info)     # iter_info pointer (offset 16)
        attr.tracing_cookie = cty.sizeof(info)    # iter_info_len (offset 24)
    fd = bpf(BPF_LINK_CREATE, attr)
    del info
    return IterLink(fd, -1, "iter")
