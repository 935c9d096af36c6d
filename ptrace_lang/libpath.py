"""Binaries and libraries named in probes found as the dynamic loader finds them: the process'
own mappings (/proc/PID/maps) first when a pid is given, then LD_LIBRARY_PATH, /etc/ld.so.cache
and the default and multiarch directories; executables in $PATH.

    resolve_binary("libc")   -> "/usr/lib/x86_64-linux-gnu/libc.so.6"
"""
from __future__ import annotations

import os
import struct
import sys

LD_SO_CACHE = "/etc/ld.so.cache"
_LDCACHE: dict[str, tuple] = {}


def clear_cache() -> None:
    _LDCACHE.clear()


# ld.so.cache entry flags: FLAG_ELF_LIBC6 with the architecture's "required" bits
_CACHE_FLAGS = {"x86_64": 0x0303, "aarch64": 0x0A03, "ppc64le": 0x0503, "ppc64": 0x0503,
                "s390x": 0x0403, "i686": 0x0003, "i386": 0x0003, "armv7l": 0x0903}


def ld_so_cache(path: str = LD_SO_CACHE) -> list[tuple[str, str, int, int]]:
    """Entries (soname, path, flags, hwcap) of the loader's cache, in the file's order.

    Reads the ``glibc-ld.so.cache1.1`` format, alone or after the old ``ld.so-1.7.0`` table."""
    try:
        st = os.stat(path)
    except OSError:
        return []
    key = (st.st_ino, st.st_size, st.st_mtime_ns)
    hit = _LDCACHE.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return []
    entries = _parse_ld_so_cache(data)
    _LDCACHE[path] = (key, entries)
    return entries


def _parse_ld_so_cache(data: bytes) -> list[tuple[str, str, int, int]]:
    new_magic = b"glibc-ld.so.cache1.1"
    start = 0
    if data.startswith(b"ld.so-1.7.0"):
        if len(data) < 16:
            return []
        (old_n,) = struct.unpack_from("<I", data, 12)     # cache file is in host order
        start = (16 + old_n * 12 + 7) & ~7
    if data[start:start + len(new_magic)] != new_magic:
        return []
    endian = "<" if sys.byteorder == "little" else ">"
    nlibs, _strlen = struct.unpack_from(endian + "II", data, start + 20)
    out = []
    pos = start + 48
    for _ in range(nlibs):
        if pos + 24 > len(data):
            break
        flags, k, v, _osv, hwcap = struct.unpack_from(endian + "iIIIQ", data, pos)
        pos += 24
        out.append((_cstr(data, start + k), _cstr(data, start + v), flags, hwcap))
    return out


def _cstr(data: bytes, off: int) -> str:
    end = data.find(b"\0", off)
    return data[off:end if end >= 0 else len(data)].decode("utf-8", "replace")


def _multiarch() -> str:
    try:
        import sysconfig
        ma = sysconfig.get_config_var("MULTIARCH")
        if ma:
            return ma
    except Exception:
        pass
    m = os.uname().machine
    return {"x86_64": "x86_64-linux-gnu", "aarch64": "aarch64-linux-gnu",
            "i686": "i386-linux-gnu"}.get(m, f"{m}-linux-gnu")


def default_lib_dirs() -> list[str]:
    ma = _multiarch()
    dirs = [f"/lib/{ma}", f"/usr/lib/{ma}", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
    return [d for d in dirs if os.path.isdir(d)]


def is_elf(path: str) -> bool:
    """Whether ``path`` is a readable file starting with the ELF magic."""
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def _lib_names(name: str) -> list[str]:
    """Stems to try for a bare name: 'libc' -> ['libc'], 'c' -> ['c', 'libc']."""
    stems = [name]
    if not name.startswith("lib") and ".so" not in name:
        stems.append("lib" + name)
    return stems


def _name_rank(base: str, stem: str) -> int | None:
    """How well a file name matches a library stem (lower is better); None if it doesn't."""
    if base == stem:
        return 0
    if stem.endswith(".so"):
        return 1 if base.startswith(stem + ".") else None     # libc.so -> libc.so.6
    if ".so" in stem:
        return None
    if base.startswith(stem + ".so."):
        return 1                                   # libc.so.6
    if base == stem + ".so":
        return 2                                   # dev symlink (may be a linker script)
    if base.startswith(stem + "-") and ".so" in base[len(stem):]:
        return 3                                   # libc-2.31.so
    return None


def _search_dir(d: str, stems: list[str]) -> str | None:
    try:
        names = os.listdir(d)
    except OSError:
        return None
    best = None
    for stem in stems:
        for n in names:
            r = _name_rank(n, stem)
            if r is None:
                continue
            p = os.path.join(d, n)
            if not os.path.isfile(p) or not is_elf(p):
                continue
            cand = (r, len(n), n)         # the soname (libc.so.6) before longer versions
            if best is None or cand < best[0]:
                best = (cand, p)
        if best is not None:
            return best[1]
    return None


def _maps_paths(pid: int) -> list[str]:
    out: list[str] = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6:
                p = parts[5].rstrip("\n")
                if p.startswith("/") and not p.endswith(" (deleted)") and p not in out:
                    out.append(p)
    return out


def mapped_objects(pid: int) -> list[str]:
    """The ELF files process ``pid`` maps (its executable and libraries), in the order of
    /proc/PID/maps, each as reachable from here; OSError when the maps cannot be read."""
    out = []
    for p in _maps_paths(pid):
        p = _in_pid_root(p, pid)
        if p not in out and os.path.isfile(p) and is_elf(p):
            out.append(p)
    return out


def _in_pid_root(path: str, pid: int | None) -> str:
    """A path as the process sees it, made reachable from here (containers)."""
    if pid is None or os.path.exists(path):
        return path
    alt = f"/proc/{pid}/root{path}"
    return alt if os.path.exists(alt) else path


def resolve_binary(name_or_path: str, pid: int | None = None) -> str:
    """The absolute path of a binary or library named in a probe.

    Paths (containing '/') are returned absolute, as given. Bare names: the file the process
    ``pid`` mapped (``/proc/PID/maps``) wins; then libraries as the dynamic loader finds them
    (LD_LIBRARY_PATH, /etc/ld.so.cache, default and multiarch dirs) and executables in $PATH —
    library-looking names (``lib*``, ``*.so*``) search libraries first, others $PATH first.
    ``libc`` and ``c`` find ``libc.so.6``. Raises LookupError naming everything tried."""
    name = name_or_path
    if not name:
        raise LookupError("empty binary name")
    if "/" in name:
        if pid is not None and name.startswith("/") and not os.path.exists(name):
            alt = _in_pid_root(name, pid)
            if alt != name:
                return alt
        path = os.path.abspath(name)
        if not os.path.exists(path):
            raise LookupError(f"binary '{name}' does not exist")
        return path
    tried: list[str] = []
    stems = _lib_names(name)

    if pid is not None:
        try:
            mapped = _maps_paths(pid)
        except OSError as e:
            tried.append(f"/proc/{pid}/maps ({e.strerror})")
        else:
            tried.append(f"/proc/{pid}/maps")
            best = None
            for p in mapped:
                base = os.path.basename(p)
                for i, stem in enumerate(stems):
                    r = _name_rank(base, stem)
                    if r is not None and (best is None or (i, r) < best[0]):
                        best = ((i, r), p)
            if best is not None:
                return _in_pid_root(best[1], pid)

    def search_libs() -> str | None:
        llp = [d for d in os.environ.get("LD_LIBRARY_PATH", "").replace(";", ":").split(":") if d]
        if llp:
            tried.append("LD_LIBRARY_PATH (" + ":".join(llp) + ")")
            for d in llp:
                hit = _search_dir(d, stems)
                if hit:
                    return os.path.abspath(hit)
        tried.append(LD_SO_CACHE)
        hit = _from_ld_cache(stems)
        if hit:
            return hit
        dirs = default_lib_dirs()
        tried.append(", ".join(dirs))
        for d in dirs:
            hit = _search_dir(d, stems)
            if hit:
                return hit
        return None

    def search_path() -> str | None:
        if ".so" in name:
            return None
        dirs = [d for d in os.environ.get("PATH", os.defpath).split(":") if d]
        tried.append("$PATH (" + ":".join(dirs) + ")")
        for d in dirs:
            p = os.path.join(d, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                return os.path.abspath(p)
        return None

    order = (search_libs, search_path) if (name.startswith("lib") or ".so" in name) \
        else (search_path, search_libs)
    for fn in order:
        hit = fn()
        if hit:
            return hit
    raise LookupError(f"cannot find binary or library '{name}': tried " + "; ".join(tried))


def _from_ld_cache(stems: list[str]) -> str | None:
    want = _CACHE_FLAGS.get(os.uname().machine)
    entries = ld_so_cache()
    for stem in stems:
        best = None
        for i, (soname, path, flags, hwcap) in enumerate(entries):
            if want is not None and flags != want:
                continue
            r = _name_rank(soname, stem)
            if r is None:
                continue
            cand = (r, hwcap != 0, i)     # baseline entries before glibc-hwcaps ones
            if best is None or cand < best[0]:
                if os.path.exists(path) and is_elf(path):
                    best = (cand, path)
        if best is not None:
            return best[1]
    return None
