"""tracefs: find it, list tracepoints, read event ids and formats."""

from __future__ import annotations

from . import cty
import errno
import os

__all__ = ["tracefs_root", "list_tracepoints", "event_id", "event_format"]

_CANDIDATES = ("/sys/kernel/tracing", "/sys/kernel/debug/tracing")
_root: str | None = None


def _mounted_tracefs() -> list[str]:
    out = []
    try:
        with open("/proc/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "tracefs":
                    out.append(parts[1].replace("\\040", " "))
    except OSError:
        pass
    return out


def _usable(path: str) -> bool:
    return os.path.isdir(os.path.join(path, "events"))


def _mount_tracefs(target: str) -> int:
    """mount(2) tracefs at target: 0, or the errno of the failure."""
    # int mount(const char *source, const char *target, const char *fstype,
    #           unsigned long flags, const void *data): five arguments
    mount = cty.libc_function("mount", cty.c_int,
                                 [cty.c_char_p] * 3 + [cty.c_ulong, cty.c_void_p])
    if mount(b"nodev", target.encode(), b"tracefs", 0, None) == 0:
        return 0
    return cty.get_errno() or 1


def tracefs_root() -> str:
    """Path of a usable tracefs mount; mounts one at /sys/kernel/tracing if
    none is mounted, falls back to /sys/kernel/debug/tracing."""
    global _root
    if _root is not None and _usable(_root):
        return _root
    mounts = _mounted_tracefs()
    for path in sorted(mounts, key=lambda p: p != _CANDIDATES[0]):
        if _usable(path):
            _root = path
            return path
    err = 0
    if os.path.isdir(_CANDIDATES[0]):
        err = _mount_tracefs(_CANDIDATES[0])
        if not err and _usable(_CANDIDATES[0]):
            _root = _CANDIDATES[0]
            return _root
    # debugfs automounts tracefs under tracing/ on access
    if _usable(_CANDIDATES[1]):
        _root = _CANDIDATES[1]
        return _root
    if err in (errno.EPERM, errno.EACCES):
        raise PermissionError(err, "tracefs is not mounted and mounting it needs root "
                              "(CAP_SYS_ADMIN): run ptrace as root, or mount it with "
                              "'mount -t tracefs nodev /sys/kernel/tracing'")
    raise FileNotFoundError(2, "tracefs not found (mount -t tracefs nodev /sys/kernel/tracing)")


def _events_dir() -> str:
    return os.path.join(tracefs_root(), "events")


def _has_magic(s: str) -> bool:
    return any(c in s for c in "*?[")


def _subdirs(path: str, listing: dict | None = None) -> list[str]:
    """The directories in ``path``; ``listing``: answers kept from earlier calls (by path)."""
    if listing is not None:
        names = listing.get(path)
        if names is None:
            names = listing[path] = _subdirs(path)
        return names
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def list_tracepoints(pattern: str = "*:*", listing: dict | None = None) -> list[str]:
    """Sorted "subsys:event" names matching pattern.

    With a colon, the subsystem and event parts are globbed separately
    (fnmatch); without one, the glob is matched against "subsys:event".
    A name without wildcards is looked up, not listed. ``listing``: a dict in
    which the directories read are kept, to be read once when the caller lists
    many patterns (a compile of many blocks).
    """
    import fnmatch

    events = _events_dir()
    if ":" in pattern:
        sub_pat, ev_pat = pattern.split(":", 1)
        whole = None
    else:
        sub_pat, ev_pat, whole = "*", "*", pattern
    if whole is None and not _has_magic(sub_pat) and not _has_magic(ev_pat):
        ok = ("/" not in pattern and sub_pat not in ("", ".", "..")
              and ev_pat not in ("", ".", "..")
              and os.path.isdir(os.path.join(events, sub_pat, ev_pat)))
        return [pattern] if ok else []
    if _has_magic(sub_pat):
        subs = [s for s in _subdirs(events, listing) if fnmatch.fnmatchcase(s, sub_pat)]
    else:
        subs = [sub_pat]
    out = []
    for sub in subs:
        evs = _subdirs(os.path.join(events, sub), listing)
        if whole is not None:
            out.extend(n for n in (f"{sub}:{e}" for e in evs) if fnmatch.fnmatchcase(n, whole))
        elif _has_magic(ev_pat):
            out.extend(f"{sub}:{e}" for e in evs if fnmatch.fnmatchcase(e, ev_pat))
        elif ev_pat in evs:
            out.append(f"{sub}:{ev_pat}")
    out.sort()
    return out


def _event_path(subsys: str, event: str, leaf: str) -> str:
    if "/" in subsys or "/" in event or subsys in ("", ".", "..") or event in ("", ".", ".."):
        raise ValueError(f"bad tracepoint name {subsys}:{event}")
    return os.path.join(_events_dir(), subsys, event, leaf)


def event_id(subsys: str, event: str) -> int:
    """The perf tracepoint id of subsys:event (FileNotFoundError if none)."""
    with open(_event_path(subsys, event, "id")) as f:
        return int(f.read())


def event_format(subsys: str, event: str) -> list:
    """Fields of subsys:event's record, common_* fields skipped."""
    from ptrace_lang.tpformat import parse_format

    with open(_event_path(subsys, event, "format")) as f:
        return parse_format(f.read())
