"""BPF maps: create, lookup, update, delete, iterate (batched when possible)."""

from __future__ import annotations

from . import cty
import errno
import os

from . import sys as _s
from .sys import (
    BPF_ANY,
    BPF_MAP_CREATE,
    BPF_MAP_DELETE_BATCH,
    BPF_MAP_DELETE_ELEM,
    BPF_MAP_GET_NEXT_KEY,
    BPF_MAP_LOOKUP_AND_DELETE_BATCH,
    BPF_MAP_LOOKUP_BATCH,
    BPF_MAP_LOOKUP_ELEM,
    BPF_MAP_UPDATE_BATCH,
    BPF_MAP_UPDATE_ELEM,
    ENOTSUPP,
    MapBatchAttr,
    MapCreateAttr,
    MapElemAttr,
    MapInfo,
    PERCPU_MAP_TYPES,
    bpf,
    bpf_errno,
)

__all__ = ["Map", "possible_cpus", "map_info", "round_up"]

_ARRAY_TYPES = frozenset({_s.BPF_MAP_TYPE_ARRAY, _s.BPF_MAP_TYPE_PERCPU_ARRAY})
# errors meaning "this map type has no batch ops" (EINVAL on kernels that
# predate them, ENOTSUPP when ops->map_*_batch is NULL)
_NO_BATCH = frozenset({errno.EINVAL, ENOTSUPP, errno.EOPNOTSUPP})
# target bytes per batch call
_BATCH_BYTES = 4 << 20


def _err(cmd_name: str, neg_errno: int) -> OSError:
    return OSError(-neg_errno, f"bpf({cmd_name}): {os.strerror(-neg_errno)}")


def round_up(n: int, align: int) -> int:
    return (n + align - 1) // align * align


_possible_cpus: list[int] = []


def possible_cpus() -> int:
    """Number of possible CPUs (what the kernel sizes per-CPU map values by)."""
    if not _possible_cpus:
        from ptrace_lang.kernel.cpus import possible_cpus as cpu_ids

        _possible_cpus.append(len(cpu_ids()))
    return _possible_cpus[0]


def _obj_name(name: str) -> bytes:
    """Kernel object names: <= 15 chars of [A-Za-z0-9_.]."""
    name = name[:_s.BPF_OBJ_NAME_LEN - 1]
    return "".join(c if (c.isascii() and c.isalnum()) or c in "_." else "_" for c in name).encode()


def map_info(fd: int) -> dict:
    """BPF_OBJ_GET_INFO_BY_FD on a map fd."""
    info = _s.obj_get_info(fd, MapInfo())
    return {
        "type": info.type,
        "id": info.id,
        "key_size": info.key_size,
        "value_size": info.value_size,
        "max_entries": info.max_entries,
        "map_flags": info.map_flags,
        "name": info.name.decode(errors="replace"),
        "btf_id": info.btf_id,
        "map_extra": info.map_extra,
    }


class Map:
    """An open BPF map fd plus its geometry.

    Keys and values are raw bytes.  For per-CPU maps a "value" as returned by
    lookup()/items() is the raw concatenation of ``possible_cpus()`` slots,
    each ``round_up(value_size, 8)`` bytes; split it with percpu_values().
    """

    def __init__(self, fd: int, map_type: int, key_size: int, value_size: int,
                 max_entries: int, flags: int = 0, name: str = ""):
        self.fd = fd
        self.map_type = map_type
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        self.percpu = map_type in PERCPU_MAP_TYPES
        if self.percpu:
            self.ncpus = possible_cpus()
            self.value_stride = round_up(value_size, 8)
        else:
            self.ncpus = 1
            self.value_stride = value_size
        # size of the user buffer for one element's value
        self.raw_value_size = self.value_stride * self.ncpus
        self._batch_ok: bool | None = None

    # -- construction -------------------------------------------------------

    @classmethod
    def create(cls, map_type: int, key_size: int, value_size: int, max_entries: int,
               flags: int = 0, name: str = "", *, inner_map_fd: int = 0,
               map_extra: int = 0, numa_node: int = 0) -> "Map":
        attr = MapCreateAttr(
            map_type=map_type, key_size=key_size, value_size=value_size,
            max_entries=max_entries, map_flags=flags, inner_map_fd=inner_map_fd,
            numa_node=numa_node, map_name=_obj_name(name), map_extra=map_extra)
        fd = bpf(BPF_MAP_CREATE, attr)
        return cls(fd, map_type, key_size, value_size, max_entries, flags, name)

    @classmethod
    def from_fd(cls, fd: int) -> "Map":
        """Wrap an existing map fd (takes ownership: close() closes it)."""
        i = map_info(fd)
        return cls(fd, i["type"], i["key_size"], i["value_size"], i["max_entries"],
                   i["map_flags"], i["name"])

    def __repr__(self) -> str:
        return (f"<Map fd={self.fd} type={self.map_type} name={self.name!r} "
                f"key={self.key_size} value={self.value_size} max={self.max_entries}>")

    def fileno(self) -> int:
        return self.fd

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    @property
    def closed(self) -> bool:
        return self.fd < 0

    def __enter__(self) -> "Map":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------

    def _key(self, key) -> cty.Array:
        if len(key) != self.key_size:
            raise ValueError(f"key must be {self.key_size} bytes, got {len(key)}")
        return (cty.c_char * max(self.key_size, 1)).from_buffer_copy(key) \
            if self.key_size else (cty.c_char * 1)()

    def _value(self, value) -> cty.Array:
        n = len(value)
        full = self.raw_value_size
        buf = (cty.c_char * max(full, 1))()
        if n == full:
            cty.memmove(buf, bytes(value), n)
        elif n <= self.value_size:
            if self.percpu:
                # one value: replicate it into every CPU's slot
                v = bytes(value)
                for cpu in range(self.ncpus):
                    cty.memmove(cty.addressof(buf) + cpu * self.value_stride, v, n)
            else:
                cty.memmove(buf, bytes(value), n)
        else:
            raise ValueError(f"value must be <= {self.value_size} bytes "
                             f"(or {full} raw per-CPU bytes), got {n}")
        return buf

    def percpu_values(self, raw: bytes) -> list[bytes]:
        """Split a raw per-CPU value into one value_size slice per CPU."""
        st, vs = self.value_stride, self.value_size
        return [raw[i:i + vs] for i in range(0, st * self.ncpus, st)]

    # -- single-element ops -------------------------------------------------

    def lookup(self, key) -> bytes | None:
        k = self._key(key)
        v = (cty.c_char * max(self.raw_value_size, 1))()
        attr = MapElemAttr(map_fd=self.fd, key=cty.addressof(k), value=cty.addressof(v))
        r = bpf_errno(BPF_MAP_LOOKUP_ELEM, attr)
        if r < 0:
            if r == -errno.ENOENT:
                return None
            raise _err("BPF_MAP_LOOKUP_ELEM", r)
        return v.raw[:self.raw_value_size]

    def update(self, key, value, flags: int = BPF_ANY) -> None:
        """Set key to value.  value may be shorter than value_size (zero-padded);
        for per-CPU maps it is either the full raw layout or one value that is
        written to every CPU's slot."""
        k = self._key(key)
        v = self._value(value)
        attr = MapElemAttr(map_fd=self.fd, key=cty.addressof(k), value=cty.addressof(v),
                           flags=flags)
        bpf(BPF_MAP_UPDATE_ELEM, attr)

    def delete(self, key) -> bool:
        """Delete key; False if it was not there."""
        k = self._key(key)
        attr = MapElemAttr(map_fd=self.fd, key=cty.addressof(k))
        r = bpf_errno(BPF_MAP_DELETE_ELEM, attr)
        if r < 0:
            if r == -errno.ENOENT:
                return False
            raise _err("BPF_MAP_DELETE_ELEM", r)
        return True

    # -- iteration ----------------------------------------------------------

    def keys(self) -> list[bytes]:
        """All keys, via BPF_MAP_GET_NEXT_KEY."""
        ks = self.key_size
        cur = (cty.c_char * max(ks, 1))()
        nxt = (cty.c_char * max(ks, 1))()
        attr = MapElemAttr(map_fd=self.fd, key=0, value=cty.addressof(nxt))
        cur_addr = cty.addressof(cur)
        seen: dict[bytes, None] = {}
        # a hash map restarts from the beginning when the current key vanished
        # under us; bound the walk so concurrent churn cannot loop forever
        limit = 2 * self.max_entries + 16
        for _ in range(limit):
            r = bpf_errno(BPF_MAP_GET_NEXT_KEY, attr)
            if r < 0:
                if r == -errno.ENOENT:
                    break
                raise _err("BPF_MAP_GET_NEXT_KEY", r)
            kb = nxt.raw[:ks]
            seen[kb] = None
            cty.memmove(cur, nxt, ks)
            attr.key = cur_addr
        return list(seen)

    def _batch(self, cmd: int) -> list[tuple[bytes, bytes]]:
        ks, vs = self.key_size, self.raw_value_size
        chunk = max(1, min(self.max_entries, _BATCH_BYTES // max(ks + vs, 1)))
        tok = max(ks, 8)
        in_tok = (cty.c_char * tok)()
        out_tok = (cty.c_char * tok)()
        kbuf = (cty.c_char * (chunk * ks))()
        vbuf = (cty.c_char * (chunk * vs))()
        attr = MapBatchAttr(map_fd=self.fd)
        in_ptr = 0
        keys: list[bytes] = []
        vals: list[bytes] = []
        string_at = cty.string_at
        while True:
            attr.in_batch = in_ptr
            attr.out_batch = cty.addressof(out_tok)
            attr.keys = cty.addressof(kbuf)
            attr.values = cty.addressof(vbuf)
            attr.count = chunk
            r = bpf_errno(cmd, attr)
            n = attr.count
            if r < 0 and r != -errno.ENOENT:
                if r == -errno.ENOSPC and n == 0:
                    # a hash bucket holds more entries than fit: grow and retry
                    chunk *= 2
                    kbuf = (cty.c_char * (chunk * ks))()
                    vbuf = (cty.c_char * (chunk * vs))()
                    continue
                raise _err(_s.CMD_NAMES[cmd], r)
            if n:
                kr = string_at(kbuf, n * ks)
                vr = string_at(vbuf, n * vs)
                keys.extend([kr[i:i + ks] for i in range(0, n * ks, ks)])
                vals.extend([vr[i:i + vs] for i in range(0, n * vs, vs)])
            if r == -errno.ENOENT:
                break
            cty.memmove(in_tok, out_tok, tok)
            in_ptr = cty.addressof(in_tok)
        return list(zip(keys, vals))

    def _try_batch(self, cmd: int) -> list[tuple[bytes, bytes]] | None:
        if self._batch_ok is False or self.key_size == 0:
            return None
        try:
            res = self._batch(cmd)
        except OSError as e:
            if self._batch_ok is None and e.errno in _NO_BATCH:
                self._batch_ok = False
                return None
            raise
        self._batch_ok = True
        return res

    def items(self) -> list[tuple[bytes, bytes]]:
        """All (key, raw value) pairs; batched (BPF_MAP_LOOKUP_BATCH) when the
        map type supports it, else keys() + lookup()."""
        res = self._try_batch(BPF_MAP_LOOKUP_BATCH)
        if res is not None:
            return res
        out = []
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                out.append((k, v))
        return out

    def pop_items(self) -> list[tuple[bytes, bytes]]:
        """Read and delete everything (BPF_MAP_LOOKUP_AND_DELETE_BATCH for hash
        maps; for arrays: items() then zero them)."""
        if self.map_type in _ARRAY_TYPES:
            res = self.items()
            self.clear()
            return res
        res = self._try_batch(BPF_MAP_LOOKUP_AND_DELETE_BATCH)
        if res is not None:
            return res
        out = []
        for k in self.keys():
            v = self.lookup(k)
            if v is not None and self.delete(k):
                out.append((k, v))
        return out

    def clear(self) -> None:
        """Delete every key; for arrays, zero every entry."""
        if self.map_type in _ARRAY_TYPES:
            self._zero_array()
            return
        if self._try_batch(BPF_MAP_LOOKUP_AND_DELETE_BATCH) is not None:
            return
        keys = self.keys()
        if not keys:
            return
        if self._delete_batch(keys):
            return
        for k in keys:
            self.delete(k)

    def _delete_batch(self, keys: list[bytes]) -> bool:
        kraw = b"".join(keys)
        kbuf = (cty.c_char * len(kraw)).from_buffer_copy(kraw)
        attr = MapBatchAttr(map_fd=self.fd, keys=cty.addressof(kbuf), count=len(keys))
        r = bpf_errno(BPF_MAP_DELETE_BATCH, attr)
        if r < 0:
            if -r in _NO_BATCH or r == -errno.ENOENT:
                # ENOENT: some key vanished concurrently; finish one by one
                return False
            raise _err("BPF_MAP_DELETE_BATCH", r)
        return True

    def _zero_array(self) -> None:
        n = self.max_entries
        ks, vs = self.key_size, self.raw_value_size
        chunk = max(1, min(n, _BATCH_BYTES // max(ks + vs, 1)))
        vbuf = (cty.c_char * (chunk * vs))()
        for start in range(0, n, chunk):
            cnt = min(chunk, n - start)
            kbuf = (cty.c_uint32 * cnt)(*range(start, start + cnt))
            attr = MapBatchAttr(map_fd=self.fd, keys=cty.addressof(kbuf),
                                values=cty.addressof(vbuf), count=cnt)
            r = bpf_errno(BPF_MAP_UPDATE_BATCH, attr)
            if r < 0:
                if -r not in _NO_BATCH:
                    raise _err("BPF_MAP_UPDATE_BATCH", r)
                zero = bytes(self.raw_value_size)
                for i in range(start, n):
                    self.update(i.to_bytes(4, "little"), zero)
                return
