"""The ring buffer, created while the rest of the runtime is still being imported.

A program that prints gets an 8 MiB ring buffer (so that a burst of half a million printf
records loses nothing). The kernel takes ~3 ms to allocate it and ~0.7 ms to map it: a sixth
of a warm start (~20 ms from spawn to the "Attached" line). So it is made on a thread, with
nothing more imported than ctypes' C half (kernel/cty.py); the system calls release the GIL,
and the main thread meanwhile looks the program up in the compile cache, imports the rest of
the runtime and the kernel layer, creates the other maps and imports the providers' attach code.

* ``guess(text)``, before the program is known: a script that mentions ``print`` most likely
  prints, and gets the default ring buffer.
* ``start(spec)``, once the ObjectSpec is known: keeps what ``guess`` began when the spec asks
  for exactly that map, and otherwise begins the one it asks for (when big enough to be worth
  a thread).
* ``take(name)`` (``Session.load``): the map and its mappings, or the error the kernel gave,
  which the session reports as it reports its own.
* ``drop_unused()`` (``Session.load``): closes whatever was made and not taken (a wrong guess).

Only the command line uses this (cli); a Session built any other way creates its ring buffer
itself. A process that ends before taking it just exits: the kernel frees the map with the fd.
"""
from __future__ import annotations

import _thread
import os
import sys

__all__ = ["guess", "start", "pending", "take", "drop_unused", "THRESHOLD", "GUESS_BYTES"]

# smaller ring buffers are quicker to make than a thread is to start
THRESHOLD = 1 << 20
# the ring buffer of a program that prints, with the default settings (driver.py:
# DEFAULT_RINGBUF_BYTES; a unit test keeps the two equal)
GUESS_BYTES = 8 << 20
_RINGBUF = "ringbuf"
_BPF_MAP_TYPE_RINGBUF = 27

# map name -> (lock released when done, [fd, mappings, error], (type, key, value, entries, flags))
_pending: dict = {}
_stale: list = []          # entries begun and then not wanted (a wrong guess)


def guess(text: str) -> None:
    """Begin the default ring buffer of a printing program if ``text`` looks like one."""
    if "print" in text:
        _begin(_RINGBUF, (_BPF_MAP_TYPE_RINGBUF, 0, 0, GUESS_BYTES, 0))


def start(spec) -> None:
    """Make sure ``spec``'s ring buffer map is underway, when it has a big one."""
    rb = next((m for m in spec.maps if m.name == spec.ringbuf_map), None)
    params = None if rb is None else (rb.map_type, rb.key_size, rb.value_size, rb.max_entries,
                                      rb.flags)
    for name in list(_pending):
        if rb is None or name != rb.name or _pending[name][2] != params:
            _stale.append(_pending.pop(name))
    if rb is not None and THRESHOLD <= rb.max_entries <= 0xFFFFFFFF:    # (too big: load says so)
        _begin(rb.name, params)


def _begin(name: str, params: tuple) -> None:
    if name in _pending:
        return
    # only cty (the C half of ctypes) before the thread starts: the rest of the kernel layer
    # is imported while the kernel allocates
    import struct

    from ptrace_lang.kernel import cty

    map_type, key_size, value_size, max_entries, flags = params
    attr = cty.create_string_buffer(72)          # union bpf_attr for BPF_MAP_CREATE, zeroed
    struct.pack_into("<7I16s", attr, 0, map_type, key_size, value_size, max_entries, flags,
                     0, 0, name[:15].encode())
    syscall = cty.syscall()
    done = _thread.allocate_lock()
    done.acquire()
    box: list = [-1, None, None]
    # the worker needs the GIL only for moments between its system calls; with the default
    # switch interval (5 ms) it would wait that long behind the importing main thread each time
    interval = sys.getswitchinterval()

    def work() -> None:
        try:
            fd = syscall(cty.NR_BPF, 0, cty.addressof(attr), 72, 0, 0)   # BPF_MAP_CREATE
            if fd < 0:
                err = cty.get_errno()
                raise OSError(err, f"bpf(BPF_MAP_CREATE): {os.strerror(err)}")
            box[0] = fd
            from ptrace_lang.kernel.ringbuf import map_areas

            box[1] = map_areas(fd, max_entries)
        except BaseException as e:  # noqa: BLE001 - handed to the main thread
            box[2] = e
        finally:
            sys.setswitchinterval(interval)
            done.release()

    sys.setswitchinterval(1e-4)
    try:
        _thread.start_new_thread(work, ())
    except RuntimeError:       # no thread: Session.load creates it itself
        sys.setswitchinterval(interval)
        return
    _pending[name] = (done, box, params)


def pending(name: str) -> bool:
    """Whether map ``name`` is underway."""
    return name in _pending


def take(name: str):
    """``(Map, RingBuffer)`` made for map ``name`` (waiting for it), or None when none is
    underway; raises the OSError the kernel gave (the map already closed)."""
    entry = _pending.pop(name, None)
    if entry is None:
        return None
    fd, mappings, err = _wait(entry)
    if err is not None:
        raise err
    from ptrace_lang.kernel.maps import Map
    from ptrace_lang.kernel.ringbuf import RingBuffer

    map_type, key_size, value_size, max_entries, flags = entry[2]
    return (Map(fd, map_type, key_size, value_size, max_entries, flags, name),
            RingBuffer(fd, max_entries, mappings))


def drop_unused() -> None:
    """Close every map made here and not taken (waiting for the ones still being made)."""
    entries = _stale + list(_pending.values())
    _stale.clear()
    _pending.clear()
    for entry in entries:
        fd, mappings, _ = _wait(entry)
        for m in mappings or ():
            m.close()
        if fd >= 0:
            os.close(fd)


def _wait(entry) -> tuple:
    """The worker's result, once it is done; a failed map is closed already."""
    done, box, _ = entry
    done.acquire()
    done.release()
    fd, mappings, err = box
    if err is not None and fd >= 0:
        os.close(fd)
        box[0] = fd = -1
    return fd, mappings, err
