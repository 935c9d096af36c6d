"""Attaching programs: perf-event links and raw tracepoints."""

from __future__ import annotations

from . import cty
import errno
import os

from . import perf as _perf
from .sys import (
    BPF_LINK_CREATE,
    BPF_PROG_TYPE_KPROBE,
    BPF_PERF_EVENT,
    BPF_RAW_TRACEPOINT_OPEN,
    LinkCreateAttr,
    RawTracepointOpenAttr,
    bpf,
)

__all__ = ["Link", "attach_perf_event", "raw_tracepoint_open"]


class Link:
    """An attachment.  ``fd`` is the bpf_link fd (or, on the legacy ioctl path,
    the perf fd itself).  close() closes the link and the perf fd it owns."""

    def __init__(self, fd: int, perf_fd: int = -1, kind: str = "", name: str = ""):
        self.fd = fd
        self.perf_fd = perf_fd
        self.kind = kind
        self.name = name

    def fileno(self) -> int:
        return self.fd

    @property
    def closed(self) -> bool:
        return self.fd < 0 and self.perf_fd < 0

    def fds(self) -> list[int]:
        """Open fds owned by this link, in the order close() closes them."""
        return [fd for fd in (self.fd, self.perf_fd) if fd >= 0]

    def detach_fds(self) -> list[int]:
        """Hand the fds over to the caller (who must close them); the Link
        becomes closed without closing anything."""
        fds = self.fds()
        self.fd = self.perf_fd = -1
        return fds

    def close(self) -> None:
        """Close the link first (stops the program), then the perf fd."""
        for fd in self.detach_fds():
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> "Link":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Link {self.kind} {self.name} fd={self.fd} perf_fd={self.perf_fd}>"


# None: unknown yet; False: kernel has no perf links (pre-5.15)
_perf_link_supported: bool | None = None


def attach_perf_fd(prog_fd: int, perf_fd: int, cookie: int = 0) -> Link:
    """``attach_perf_event`` that owns ``perf_fd`` either way: closed if attaching fails."""
    try:
        return attach_perf_event(prog_fd, perf_fd, cookie)
    except BaseException:
        try:
            os.close(perf_fd)
        except OSError:
            pass
        raise


def attach_perf_event(prog_fd: int, perf_fd: int, cookie: int = 0) -> Link:
    """Attach prog to a perf event fd via BPF_LINK_CREATE(BPF_PERF_EVENT) with
    a bpf_cookie; falls back to PERF_EVENT_IOC_SET_BPF + ENABLE where perf
    links are unsupported (EINVAL on kernels < 5.15), in which case a
    non-zero cookie is an error.

    On success the returned Link owns perf_fd (closes it on close()); on
    failure perf_fd is left open for the caller."""
    global _perf_link_supported
    if _perf_link_supported is not False:
        attr = LinkCreateAttr(prog_fd=prog_fd, target_fd=perf_fd, attach_type=BPF_PERF_EVENT,
                              bpf_cookie=cookie & 0xFFFFFFFFFFFFFFFF)
        try:
            fd = bpf(BPF_LINK_CREATE, attr)
        except OSError as e:
            if e.errno != errno.EINVAL or _perf_link_supported or cookie:
                raise
            # maybe an old kernel without perf links: try the legacy ioctl;
            # if that fails too, the EINVAL was about our arguments
            try:
                _perf.ioctl_set_bpf(perf_fd, prog_fd)
            except OSError:
                raise e from None
            _perf_link_supported = False
            _perf.ioctl_enable(perf_fd)
            return Link(perf_fd, -1, "perf_event_ioctl")
        _perf_link_supported = True
        return Link(fd, perf_fd, "perf_event")
    if cookie:
        raise OSError(errno.EOPNOTSUPP,
                      "bpf cookies need BPF_LINK_CREATE for perf events (kernel >= 5.15)")
    _perf.ioctl_set_bpf(perf_fd, prog_fd)
    _perf.ioctl_enable(perf_fd)
    return Link(perf_fd, -1, "perf_event_ioctl")


def raw_tracepoint_open(prog_fd: int, name: str) -> Link:
    """BPF_RAW_TRACEPOINT_OPEN: attach a raw tracepoint (or tp_btf/fentry etc.
    when name is empty and the program carries attach_btf_id)."""
    nbuf = cty.create_string_buffer(name.encode()) if name else None
    attr = RawTracepointOpenAttr(prog_fd=prog_fd,
                                 name=cty.addressof(nbuf) if nbuf is not None else 0)
    fd = bpf(BPF_RAW_TRACEPOINT_OPEN, attr)
    return Link(fd, -1, "raw_tracepoint", name)


# enum bpf_attach_type; link_create.kprobe_multi.flags
BPF_TRACE_KPROBE_MULTI = 42
BPF_F_KPROBE_MULTI_RETURN = 1


class _KprobeMultiAttr(cty.Structure):
    """BPF_LINK_CREATE for kprobe_multi (the target union at offset 16)."""
    _fields_ = [
        ("prog_fd", cty.c_uint32),
        ("target_fd", cty.c_uint32),
        ("attach_type", cty.c_uint32),
        ("flags", cty.c_uint32),
        ("km_flags", cty.c_uint32),
        ("cnt", cty.c_uint32),
        ("syms", cty.c_uint64),
        ("addrs", cty.c_uint64),
        ("cookies", cty.c_uint64),
    ]


def kprobe_multi(prog_fd: int, syms: list[str], cookies: list[int] | None = None,
                 retprobe: bool = False, name: str = "") -> Link:
    """One kprobe_multi link (fprobe, kernel >= 5.18) over kernel functions by name, each with
    its bpf cookie. The program must be loaded with expected_attach_type
    BPF_TRACE_KPROBE_MULTI. The kernel looks the names up itself: an unknown one fails the
    whole link (ESRCH/ENOENT); EOPNOTSUPP / EINVAL: the kernel has no kprobe_multi."""
    n = len(syms)
    if cookies is not None:
        # (kernels before 6.0 look names up by bsearch: hand them over sorted, cookies alongside)
        pairs = sorted(zip(syms, cookies))
        syms = [p[0] for p in pairs]
        cookies = [p[1] for p in pairs]
    else:
        syms = sorted(syms)
    bufs = [cty.create_string_buffer(s.encode()) for s in syms]
    ptrs = (cty.c_uint64 * n)(*(cty.addressof(b) for b in bufs))
    attr = _KprobeMultiAttr(prog_fd=prog_fd, attach_type=BPF_TRACE_KPROBE_MULTI, cnt=n,
                            km_flags=BPF_F_KPROBE_MULTI_RETURN if retprobe else 0,
                            syms=cty.addressof(ptrs))
    if cookies is not None:
        carr = (cty.c_uint64 * n)(*(c & 0xFFFFFFFFFFFFFFFF for c in cookies))
        attr.cookies = cty.addressof(carr)
    fd = bpf(BPF_LINK_CREATE, attr)
    return Link(fd, -1, "kprobe_multi", name)


# enum bpf_attach_type (kernel >= 6.6); link_create.uprobe_multi.flags
BPF_TRACE_UPROBE_MULTI = 48
BPF_F_UPROBE_MULTI_RETURN = 1


class _UprobeMultiAttr(cty.Structure):
    """BPF_LINK_CREATE for uprobe_multi (the target union at offset 16)."""
    _fields_ = [
        ("prog_fd", cty.c_uint32),
        ("target_fd", cty.c_uint32),
        ("attach_type", cty.c_uint32),
        ("flags", cty.c_uint32),
        ("path", cty.c_uint64),
        ("offsets", cty.c_uint64),
        ("ref_ctr_offsets", cty.c_uint64),
        ("cookies", cty.c_uint64),
        ("cnt", cty.c_uint32),
        ("um_flags", cty.c_uint32),
        ("pid", cty.c_uint32),
    ]


def uprobe_multi(prog_fd: int, path: str, offsets: list[int], cookies: list[int],
                 retprobe: bool = False, pid: int = 0, name: str = "") -> Link:
    """One uprobe_multi link (kernel >= 6.6) over file offsets of one binary, each with its bpf
    cookie, for every process (``pid`` 0) or one. The program must be loaded with
    expected_attach_type BPF_TRACE_UPROBE_MULTI. Closing it unregisters all its uprobes at once
    (per-uprobe perf events each wait for the kernel on close)."""
    n = len(offsets)
    pbuf = cty.create_string_buffer(path.encode())
    offs = (cty.c_uint64 * n)(*offsets)
    carr = (cty.c_uint64 * n)(*(c & 0xFFFFFFFFFFFFFFFF for c in cookies))
    attr = _UprobeMultiAttr(prog_fd=prog_fd, attach_type=BPF_TRACE_UPROBE_MULTI,
                            path=cty.addressof(pbuf), offsets=cty.addressof(offs),
                            cookies=cty.addressof(carr), cnt=n,
                            um_flags=BPF_F_UPROBE_MULTI_RETURN if retprobe else 0,
                            pid=max(pid, 0))
    fd = bpf(BPF_LINK_CREATE, attr)
    return Link(fd, -1, "uprobe_multi", name)


_multi_support: dict[int, bool] = {}


def multi_link_supported(attach_type: int, try_link, present_errnos: tuple) -> bool:
    """Does this kernel attach links of ``attach_type`` (kprobe_multi, uprobe_multi)? Probed
    once per type: a trivial kprobe program loaded for it and ``try_link(prog_fd)`` asked for a
    link on a target that does not exist. A kernel that has the link type looks the target up
    and fails with one of ``present_errnos``; one without it refuses the attach type (EINVAL)
    or the feature (EOPNOTSUPP)."""
    if attach_type not in _multi_support:
        from . import progs

        ok = False
        try:
            fd = progs.load_program(BPF_PROG_TYPE_KPROBE,
                                    bytes.fromhex("b700000000000000" "9500000000000000"),
                                    name="ptrace_probe", expected_attach_type=attach_type)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                try_link(fd).close()
                ok = True
            except OSError as e:
                ok = e.errno in present_errnos
            finally:
                os.close(fd)
        _multi_support[attach_type] = ok
    return _multi_support[attach_type]
