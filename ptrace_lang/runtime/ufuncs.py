"""Text of the values of strerror, strftime, syscall_name, ntop, pton, macaddr,
cgroup_path and username (formatters registered in ``runtime.uvalues``), and the lines of
errorf/warnf/debugf."""
from __future__ import annotations

import struct

from ptrace_lang.runtime.uvalues import formatter, u64

_U32 = struct.Struct("<I")


@formatter("strerror")
def fmt_strerror(raw: bytes, aux: tuple) -> str:
    import os

    return os.strerror(int.from_bytes(raw[:4], "little", signed=True))


@formatter("syscall_name")
def fmt_syscall_name(raw: bytes, aux: tuple) -> str:
    from ptrace_lang.runtime.syscalls_x86_64 import NAMES

    n = u64(raw)
    if n < len(NAMES) and NAMES[n]:
        return NAMES[n]
    return str(struct.unpack_from("<q", raw)[0])


@formatter("username")
def fmt_username(raw: bytes, aux: tuple) -> str:
    import pwd

    uid = _U32.unpack_from(raw)[0]
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@formatter("comm_of_pid")
def fmt_comm_of_pid(raw: bytes, aux: tuple) -> str:
    """comm(pid): the process's name as /proc says when printed ("" once it is gone)."""
    pid = struct.unpack_from("<q", raw)[0]
    try:
        with open(f"/proc/{pid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "surrogateescape")
    except (OSError, ValueError):
        return ""


@formatter("inet")
def fmt_inet(raw: bytes, aux: tuple) -> str:
    import socket

    af = u64(raw)
    if af == socket.AF_INET:
        return ".".join(str(b) for b in raw[8:12])
    if af == socket.AF_INET6:
        return socket.inet_ntop(socket.AF_INET6, raw[8:24])
    return ""


@formatter("bytes")
def fmt_bytes(raw: bytes, aux: tuple) -> str:
    """An array of uint8 (pton's value), as bpftrace prints int arrays: [1,2,3,4]."""
    n = int(aux[0]) if aux else len(raw)
    return "[" + ",".join(str(b) for b in raw[:n]) + "]"


@formatter("macaddr")
def fmt_macaddr(raw: bytes, aux: tuple) -> str:
    return ":".join(f"{b:02X}" for b in raw[:6])


# ------------------------------------------------------------------ strftime
_BOOT_OFFSET: list[int] = []


def boot_to_wall_ns(boot_ns: int) -> int:
    """CLOCK_BOOTTIME ns -> CLOCK_REALTIME ns (the offset is measured once per run)."""
    if not _BOOT_OFFSET:
        import time

        best = None
        for _ in range(3):       # the tightest of three samples
            a = time.time_ns()
            b = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
            c = time.time_ns()
            if best is None or c - a < best[0]:
                best = (c - a, (a + c) // 2 - b)
        _BOOT_OFFSET.append(best[1])
    return boot_ns + _BOOT_OFFSET[0]


def strftime_text(fmt: str, boot_ns: int) -> str:
    """``fmt`` as C strftime in local time, plus ``%f``: the microseconds (6 digits)."""
    import time

    wall = boot_to_wall_ns(boot_ns)
    secs, rest = divmod(wall, 1_000_000_000)
    if "%f" in fmt:
        parts, i = [], 0
        while i < len(fmt):
            ch = fmt[i]
            if ch == "%" and i + 1 < len(fmt):
                nxt = fmt[i + 1]
                parts.append(f"{rest // 1000:06d}" if nxt == "f" else fmt[i:i + 2])
                i += 2
            else:
                parts.append(ch)
                i += 1
        fmt = "".join(parts)
    return time.strftime(fmt, time.localtime(secs))


@formatter("strftime")
def fmt_strftime(raw: bytes, aux: tuple) -> str:
    return strftime_text(aux[0] if aux else "", u64(raw))


# ------------------------------------------------------------------ cgroup_path
_CGROUP: dict = {}


def _cgroup_mounts() -> tuple[str | None, list[tuple[str, str]]]:
    """(the cgroup2 mount point, [(hierarchy name, mount point)] of the cgroup v1 mounts)."""
    v2, v1 = None, []
    try:
        with open("/proc/self/mountinfo") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, []
    for line in lines:
        left, _, right = line.partition(" - ")
        fields, rfields = left.split(), right.split()
        if len(fields) < 5 or len(rfields) < 3:
            continue
        mnt = fields[4].replace("\\040", " ")
        if rfields[0] == "cgroup2" and v2 is None:
            v2 = mnt
        elif rfields[0] == "cgroup":
            opts = [o for o in rfields[2].split(",") if o not in ("rw", "ro")
                    and not o.startswith(("relatime", "noatime", "nosuid", "nodev", "noexec",
                                          "clone_children", "xattr", "release_agent",
                                          "cpuset_v2_mode", "noprefix", "favordynmods"))]
            name = ",".join(o[5:] if o.startswith("name=") else o for o in opts)
            v1.append((name, mnt))
    return v2, sorted(v1)


def _cgroup2_path(cgid: int) -> str | None:
    import os

    if "mounts" not in _CGROUP:
        _CGROUP["mounts"] = _cgroup_mounts()
        _CGROUP["paths"] = {}
    v2 = _CGROUP["mounts"][0]
    if v2 is None:
        return None
    paths = _CGROUP["paths"]
    if cgid not in paths:                  # (re)walk: cgroups come and go
        paths.clear()
        for dirpath, _dirs, _files in os.walk(v2):
            try:
                ino = os.stat(dirpath).st_ino
            except OSError:
                continue
            rel = dirpath[len(v2):] or "/"
            paths[ino] = rel
    return paths.get(cgid)


@formatter("cgroup_path")
def fmt_cgroup_path(raw: bytes, aux: tuple) -> str:
    """The cgroup's path in every hierarchy it exists in: "unified:/a/b" first, then the
    cgroup v1 hierarchies (sorted by name) where the same path exists; ``aux[0]`` is a
    wildcard filter on the hierarchy names."""
    import fnmatch
    import os

    cgid = u64(raw)
    path = _cgroup2_path(cgid)
    if path is None:
        return ""
    filt = aux[0] if aux else ""
    out = []
    if not filt or fnmatch.fnmatchcase("unified", filt):
        out.append(f"unified:{path}")
    for name, mnt in _CGROUP["mounts"][1]:
        if filt and not fnmatch.fnmatchcase(name, filt):
            continue
        if os.path.isdir(mnt + (path if path != "/" else "")):
            out.append(f"{name}:{path}")
    return ",".join(out)


# ------------------------------------------------------------------ errorf / warnf / debugf
def message_line(kind: int, ev, render, args) -> str:
    from ptrace_lang import spec as S

    level = {S.EV_ERRORF: "ERROR", S.EV_WARNF: "WARNING", S.EV_DEBUGF: "DEBUG"}[kind]
    text = render(args).rstrip("\n")
    sp = ev.span
    if sp is not None and sp.line:
        end = f"-{sp.end_col}" if sp.end_line == sp.line else ""
        return f"{sp.file}:{sp.line}:{sp.col}{end}: {level}: {text}\n"
    return f"{level}: {text}\n"


class StderrText(str):
    """A line of errorf/warnf/debugf waiting in the session's output for stderr."""


def flush_mixed(pending: list, out, err) -> None:
    """Write ``pending`` in order: runs of output to ``out``, StderrText lines to ``err``
    (both flushed so the two streams interleave as the events came); empties the list."""
    run: list = []
    for item in pending:
        if isinstance(item, StderrText):
            if run:
                out.write("".join(run))
                out.flush()
                run.clear()
            err.write(item)
            err.flush()
        else:
            run.append(item)
    pending.clear()
    if run:
        out.write("".join(run))
        out.flush()
