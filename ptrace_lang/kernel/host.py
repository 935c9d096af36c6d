"""The running machine as the compiler's ``Target`` and ``Host`` (ptrace_lang/target.py)."""
from __future__ import annotations

import os

from ptrace_lang.kernel.cpus import possible_cpus  # noqa: F401 (the running machine's CPU ids)
from ptrace_lang.target import Host, Machine, Target

_running: list[Machine] = []


def running_target() -> Target:
    u = os.uname()
    return Target.for_release(u.release, u.machine, possible_cpus(),
                              # tests: the code for kernels older than 6.6
                              no_sdiv=bool(os.environ.get("PTRACE_NO_SDIV")))


class LiveHost(Host):
    """Lookups in the running kernel: tracefs, /proc/kallsyms, cgroupfs."""

    def __init__(self) -> None:
        super().__init__()
        self.btf_cache = not os.environ.get("PTRACE_NO_BTF_CACHE")
        self.forget()

    def forget(self) -> None:
        """Drop the tracefs directories and formats read so far: they are kept for one
        compile (a script of many blocks reads each once), and the driver calls this as a
        compile begins, so that a later compile in the process sees the kernel as it is then."""
        self._listing: dict = {}
        self._formats: dict = {}

    def list_tracepoints(self, pattern: str) -> list[str]:
        from ptrace_lang.kernel import tracefs

        return tracefs.list_tracepoints(pattern, self._listing)

    def event_format(self, subsys: str, event: str) -> list:
        fields = self._formats.get((subsys, event))
        if fields is None:
            from ptrace_lang.kernel import tracefs

            fields = self._formats[(subsys, event)] = tracefs.event_format(subsys, event)
        return list(fields)

    def kernel_address(self, name: str) -> int | None:
        from ptrace_lang.runtime.symbols import kernel_address

        return kernel_address(name)

    def resolve_binary(self, binary: str) -> str:
        from ptrace_lang.libpath import resolve_binary

        return resolve_binary(binary)

    def cgroup_id(self, path: str) -> int:
        return cgroup_id_of(path)


def running() -> Machine:
    """The running machine (built once per process)."""
    if not _running:
        _running.append(Machine(running_target(), LiveHost()))
    return _running[0]


def cgroup_id_of(path: str) -> int:
    """The cgroup id of a cgroupfs directory, as the kernel reports it
    (``bpf_get_current_cgroup_id``): the 8-byte file handle name_to_handle_at(2) gives,
    which on cgroup2 is the directory's inode number. OSError when the path is not there."""
    import struct

    from ptrace_lang.kernel import cty

    st = os.stat(path)
    try:
        name_to_handle_at = cty.libc_function(
            "name_to_handle_at", cty.c_int,
            [cty.c_int, cty.c_char_p, cty.c_void_p, cty.c_void_p, cty.c_int])
        buf = bytearray(8 + 128)
        struct.pack_into("<I", buf, 0, 128)          # handle_bytes
        mount_id = bytearray(4)
        cbuf = (cty.c_char * len(buf)).from_buffer(buf)
        cmid = (cty.c_char * 4).from_buffer(mount_id)
        if name_to_handle_at(-100, path.encode(), cty.addressof(cbuf), cty.addressof(cmid), 0) == 0:
            nbytes = struct.unpack_from("<I", buf, 0)[0]
            if nbytes == 8:
                return struct.unpack_from("<Q", buf, 8)[0]
    except (OSError, AttributeError):
        pass
    return st.st_ino
