"""The caches' files: where they live, who may have written them, and how they are read and
written so that nothing found there can do more than cost a compile.

ptrace runs as root, and a compiled program taken from a cache runs as is: whoever can write a
cache entry root reads can make root run anything. So:

* **Where.** ``$XDG_CACHE_HOME/ptrace-lang`` when ``XDG_CACHE_HOME`` is set; otherwise, for
  root, ``/var/cache/ptrace-lang`` (``ROOT_DEFAULT``: not under ``$HOME``, which ``sudo`` may
  leave pointing at the calling user's home); for anyone else ``~/.cache/ptrace-lang``.
  Directories are made one level at a time from one that exists (``~/.cache`` only when ``~``
  exists, ``$XDG_CACHE_HOME`` only when its parent does): a ``HOME`` that does not exist
  creates nothing.
* **Whose.** A cache directory is used only when it is a real directory (not a symlink) owned
  by the effective user and writable by no group or other; every file read must be a regular
  file (opened with O_NOFOLLOW|O_NONBLOCK: a FIFO or a symlink to /dev/zero is refused at
  once, never waited on) owned by the effective user and writable by no one else, and is read
  to a bounded size. Writing first looks at every file of the directory: one that fails those
  tests makes the directory unused. A directory that is not used is reported once under -v
  (``take_notes``) and the script compiled; ``XDG_CACHE_HOME`` pointing at another user's
  cache (``sudo -E``) thus only costs compiles.
* **Authentic.** Every file is sealed with a keyed BLAKE2b (a MAC) over its name and contents,
  under a per-user secret of 32 random bytes kept beside the entries (``key``, mode 0600): a
  flipped bit, a truncated file or a file not written by this user's ptrace is refused.
* **Written safely.** Through a temporary file of an unpredictable name created with
  O_CREAT|O_EXCL|O_NOFOLLOW (a planted symlink is never followed) and a rename; temporaries left
  by an interrupted write (their process gone, or an hour old) are removed by the next write.

Every operation works on a directory fd taken after the checks (``*at`` calls), so renaming a
directory after it was checked does not redirect anything. Imports ``os`` only (``_blake2``
when a file is sealed or opened: a C module, ~0.3 ms): the cache-hit start goes through here.
"""
from __future__ import annotations

import os
from _operator import _compare_digest     # hmac.compare_digest, without importing hmac

ROOT_DEFAULT = "/var/cache/ptrace-lang"
MAX_SIZE = 64 << 20            # no entry is larger; a bigger file is not read
_MAGIC = b"ptrace-lang cache 1\n"
_TAG = 32
_KEY = "key"
_STALE_TMP = 3600              # seconds after which a temporary is left over whatever its pid

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC

_notes: list[str] = []
_said: set = set()
_dirs: dict = {}               # (top, parts, create) -> fd or None, per process
_secret: dict = {}             # top -> the key once read or made


def _note(msg: str) -> None:
    if msg not in _said:
        _said.add(msg)
        _notes.append(msg)


def take_notes() -> list[str]:
    """What was refused since the last call, each message once per process (printed with -v)."""
    out = _notes[:]
    del _notes[:]
    return out


def top() -> str | None:
    """The path of the caches' top directory (see the module's docstring), checked or not."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return os.path.join(xdg, "ptrace-lang")
    if os.geteuid() == 0:
        return ROOT_DEFAULT
    home = os.environ.get("HOME", "")
    if not os.path.isabs(home):
        return None
    return os.path.join(home, ".cache", "ptrace-lang")


def _trusted(st, path: str) -> bool:
    """A directory or file of ours: owned by the effective user, writable by no one else."""
    if st.st_uid != os.geteuid():
        _note(f"ptrace: cache {path} not used: owned by uid {st.st_uid}, not {os.geteuid()}")
        return False
    if st.st_mode & 0o022:
        _note(f"ptrace: cache {path} not used: writable by group or others "
              f"(mode {st.st_mode & 0o7777:o})")
        return False
    return True


def _open_dir_at(parent: int | None, path: str, name: str, create: bool) -> int | None:
    where = os.path.join(path, name)
    for attempt in (0, 1):
        try:
            fd = os.open(name if parent is not None else where, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create or attempt:
                return None
            try:
                os.mkdir(name if parent is not None else where, 0o700, dir_fd=parent)
            except FileExistsError:
                pass
            except OSError:
                return None
            continue
        except OSError as e:
            _note(f"ptrace: cache {where} not used: {e.strerror}")
            return None
        if _trusted(os.fstat(fd), where):
            return fd
        os.close(fd)
        return None
    return None


def open_dir(*parts: str, create: bool = False) -> int | None:
    """An fd of the checked cache directory ``top()/parts`` (kept open for the process), made
    if ``create``; None when it is missing, cannot be made, or is not trusted."""
    path = top()
    k = (path, parts, create)
    if k in _dirs:
        return _dirs[k]
    fd = None
    if path is not None:
        base = os.path.dirname(path)
        if create and not os.path.isdir(base) and os.path.isdir(os.path.dirname(base)):
            try:                # ~/.cache in a home that exists, $XDG_CACHE_HOME in a directory
                os.mkdir(base, 0o700)
            except OSError:
                pass
        if os.path.isdir(base):
            fd = _open_dir_at(None, base, os.path.basename(path), create)
        for p in parts:
            if fd is None:
                break
            sub = _open_dir_at(fd, path, p, create)
            os.close(fd)
            fd, path = sub, os.path.join(path, p)
    if fd is not None:          # (one found missing may be made later in the process)
        _dirs[k] = fd
    return fd


def dir_path(*parts: str, create: bool = False) -> str | None:
    """The path of a checked cache directory, for callers that work with paths."""
    if open_dir(*parts, create=create) is None:
        return None
    return os.path.join(top(), *parts)


def _read_file(dfd: int, name: str, secret: bool = False) -> bytes | None:
    try:
        fd = os.open(name, _READ_FLAGS, dir_fd=dfd)
    except FileNotFoundError:
        return None
    except OSError as e:
        _note(f"ptrace: cache file {name} refused: {e.strerror}")
        return None
    try:
        st = os.fstat(fd)
        if (st.st_mode & 0o170000) != 0o100000:
            _note(f"ptrace: cache file {name} refused: not a regular file")
            return None
        if not _trusted(st, name) or (secret and st.st_mode & 0o077):
            return None
        if st.st_size > MAX_SIZE:
            _note(f"ptrace: cache file {name} refused: {st.st_size} bytes")
            return None
        chunks = []
        left = st.st_size + 1
        while left > 0:
            b = os.read(fd, left)
            if not b:
                break
            chunks.append(b)
            left -= len(b)
        data = b"".join(chunks)
        return data if len(data) == st.st_size else None    # changed while read
    except OSError:
        return None
    finally:
        os.close(fd)


def _key(dfd: int, create: bool) -> bytes | None:
    where = top()
    if where in _secret:
        return _secret[where]
    key = _read_file(dfd, _KEY, secret=True)
    if key is None and create:
        # made whole under a temporary name, then linked: a concurrent run sees all or nothing
        # and the first link wins
        tmp = _write_tmp(dfd, _KEY, os.urandom(_TAG))
        if tmp is not None:
            try:
                os.link(tmp, _KEY, src_dir_fd=dfd, dst_dir_fd=dfd, follow_symlinks=False)
            except OSError:
                pass
            _unlink(dfd, tmp)
            key = _read_file(dfd, _KEY, secret=True)
    if key is not None and len(key) != _TAG:
        _note("ptrace: cache key refused: damaged")
        key = None
    if key is not None:
        _secret[where] = key
    return key


def _mac(key: bytes, name: str, payload: bytes) -> bytes:
    from _blake2 import blake2b

    h = blake2b(digest_size=_TAG, key=key)
    h.update(name.encode("utf-8", "surrogateescape") + b"\0")
    h.update(payload)
    return h.digest()


def read(parts: tuple, name: str) -> bytes | None:
    """The contents of cache file ``name`` in ``top()/parts``, if every check passes and its
    seal is this user's; None otherwise (a refusal is noted)."""
    dfd = open_dir(*parts)
    if dfd is None:
        return None
    data = _read_file(dfd, name)
    if data is None:
        return None
    key_dir = open_dir() if parts else dfd
    key = _key(key_dir, create=False) if key_dir is not None else None
    n = len(_MAGIC)
    payload = data[n + _TAG:]
    if key is None or data[:n] != _MAGIC or len(data) < n + _TAG \
            or not _compare_digest(data[n:n + _TAG], _mac(key, name, payload)):
        _note(f"ptrace: cache file {name} refused: not sealed by this user's ptrace")
        return None
    return payload


def _unlink(dfd: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _write_tmp(dfd: int, name: str, data: bytes) -> str | None:
    """A new file holding ``data`` under an unpredictable name; None if it could not be made."""
    tmp = "%s.%d.%s.tmp" % (name, os.getpid(), os.urandom(8).hex())
    try:
        fd = os.open(tmp, _NEW_FLAGS, 0o600, dir_fd=dfd)
    except OSError:
        return None
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:
        os.close(fd)
        _unlink(dfd, tmp)
        return None
    os.close(fd)
    return tmp


def _scan(dfd: int, where: str) -> bool:
    """Every file of the directory ours (else the directory is not written); temporaries of
    interrupted writes removed."""
    import time

    now = time.time()
    try:
        entries = list(os.scandir(dfd))
    except OSError:
        return False
    for e in entries:
        try:
            st = e.stat(follow_symlinks=False)
        except OSError:
            continue
        if e.name.endswith(".tmp"):
            pid = e.name.rsplit(".", 3)[-3] if e.name.count(".") >= 3 else ""
            if now - st.st_mtime > _STALE_TMP or not (pid.isdigit() and _alive(int(pid))):
                _unlink(dfd, e.name)
                continue
        is_dir = (st.st_mode & 0o170000) == 0o040000
        is_file = (st.st_mode & 0o170000) == 0o100000
        if not (is_dir or is_file) or not _trusted(st, os.path.join(where, e.name)):
            _note(f"ptrace: cache {where} not used: {e.name} is not a file of this user")
            return False
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    return True


def write(parts: tuple, name: str, payload: bytes) -> bool:
    """Seal ``payload`` and write it as ``name`` in ``top()/parts`` (made if needed) through a
    temporary file and a rename; False if the directory is not trusted or the write failed."""
    dfd = open_dir(*parts, create=True)
    if dfd is None:
        return False
    where = os.path.join(top(), *parts)
    key_dir = dfd if not parts else open_dir(create=True)
    if key_dir is None or not _scan(dfd, where):
        return False
    key = _key(key_dir, create=True)
    if key is None:
        return False
    tmp = _write_tmp(dfd, name, _MAGIC + _mac(key, name, payload) + payload)
    if tmp is None:
        return False
    try:
        os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
    except OSError:
        _unlink(dfd, tmp)
        return False
    return True


def names(parts: tuple, suffix: str) -> list:
    """(name, mtime_ns) of the directory's files ending in ``suffix`` (for trimming)."""
    dfd = open_dir(*parts)
    if dfd is None:
        return []
    out = []
    try:
        for e in os.scandir(dfd):
            if e.name.endswith(suffix):
                try:
                    out.append((e.name, e.stat(follow_symlinks=False).st_mtime_ns))
                except OSError:
                    pass
    except OSError:
        pass
    return out


def remove(parts: tuple, name: str) -> None:
    dfd = open_dir(*parts)
    if dfd is not None:
        _unlink(dfd, name)


def reset() -> None:
    """Forget the directories and secret this process found (tests change the environment)."""
    for fd in set(_dirs.values()):
        if fd is not None:
            try:
                os.close(fd)
            except OSError:
                pass
    _dirs.clear()
    _secret.clear()
    del _notes[:]
    _said.clear()
