"""Kernel BTF objects: the fd of a kernel module's BTF (for ``attach_btf_obj_fd`` when a
program is bound to a function, raw tracepoint or iterator of a module)."""

from __future__ import annotations

from . import cty
import errno
import os

from .sys import (
    BPF_BTF_GET_FD_BY_ID,
    BPF_BTF_GET_NEXT_ID,
    GetIdAttr,
    bpf,
    bpf_errno,
    obj_get_info,
)

__all__ = ["module_btf_fd"]


class BtfInfo(cty.Structure):
    """struct bpf_btf_info."""
    _fields_ = [
        ("btf", cty.c_uint64),
        ("btf_size", cty.c_uint32),
        ("id", cty.c_uint32),
        ("name", cty.c_uint64),
        ("name_len", cty.c_uint32),
        ("kernel_btf", cty.c_uint32),
    ]


_ids: dict[str, int] = {}     # module name -> BTF object id (found once per process)


def _name_of(fd: int) -> tuple[str, bool]:
    buf = cty.create_string_buffer(64)
    info = BtfInfo(name=cty.addressof(buf), name_len=len(buf))
    obj_get_info(fd, info)
    return buf.value.decode(errors="replace"), bool(info.kernel_btf)


def _fd_by_id(btf_id: int) -> int:
    return bpf(BPF_BTF_GET_FD_BY_ID, GetIdAttr(start_id=btf_id))


def module_btf_fd(module: str) -> int:
    """A new fd of the kernel BTF object of ``module`` (the caller closes it); OSError(ENOENT)
    when the module has none (not loaded, or built without BTF)."""
    known = _ids.get(module)
    if known is not None:
        try:
            fd = _fd_by_id(known)
            if _name_of(fd)[0] == module:
                return fd
            os.close(fd)
        except OSError:
            pass
    cur = 0
    while True:
        attr = GetIdAttr(start_id=cur)
        if bpf_errno(BPF_BTF_GET_NEXT_ID, attr) < 0:
            break
        cur = attr.next_id
        try:
            fd = _fd_by_id(cur)
        except OSError:
            continue
        try:
            name, kernel = _name_of(fd)
        except OSError:
            os.close(fd)
            continue
        if kernel and name == module:
            _ids[module] = cur
            return fd
        os.close(fd)
    raise OSError(errno.ENOENT, f"no BTF for kernel module '{module}' (is it loaded?)")
