"""The ring buffer, created while the rest of the runtime is still being imported.

A program that prints gets an 8 MiB ring buffer (so that a burst of half a million printf
records loses nothing). The kernel takes ~3 ms to allocate it and ~0.7 ms to map it: a sixth
of a warm start (~20 ms from spawn to the "Attached" line). ``start`` runs that on a thread as
soon as the ObjectSpec is known, with nothing more imported than ctypes' C half (kernel/cty.py);
the system calls release the GIL, so the main thread imports the rest of the runtime and the
kernel layer, creates the other maps and imports the providers' attach code meanwhile. ``Session.load`` then ``take``s the map and its
mapping, or the error the kernel gave, which it reports as it reports its own.

Only the command line uses this (cli); a Session built any other way creates its ring buffer
itself. A process that ends before taking it just exits: the kernel frees the map with the fd.
"""
from __future__ import annotations

import _thread
import sys

__all__ = ["start", "pending", "take", "THRESHOLD"]

# smaller ring buffers are quicker to make than a thread is to start
THRESHOLD = 1 << 20

_pending: dict = {}        # map name -> (lock released when done, [fd, mappings, error], MapSpec)


def start(spec) -> None:
    """Begin creating and mapping ``spec``'s ring buffer map, when it has a big one."""
    rb = next((m for m in spec.maps if m.name == spec.ringbuf_map), None)
    if rb is None or rb.max_entries < THRESHOLD or rb.name in _pending:
        return
    # only cty (the C half of ctypes) before the thread starts: the rest of the kernel layer
    # is imported while the kernel allocates
    import struct

    from ptrace_lang.kernel import cty

    attr = cty.create_string_buffer(72)          # union bpf_attr for BPF_MAP_CREATE, zeroed
    struct.pack_into("<7I16s", attr, 0, rb.map_type, rb.key_size, rb.value_size, rb.max_entries,
                     rb.flags, 0, 0, rb.name[:15].encode())
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
                import os

                err = cty.get_errno()
                raise OSError(err, f"bpf(BPF_MAP_CREATE): {os.strerror(err)}")
            box[0] = fd
            from ptrace_lang.kernel.ringbuf import map_areas

            box[1] = map_areas(fd, rb.max_entries)
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
    _pending[rb.name] = (done, box, rb)


def pending(name: str) -> bool:
    """Whether ``start`` is making map ``name``."""
    return name in _pending


def take(name: str):
    """``(Map, RingBuffer)`` made for map ``name`` by ``start`` (waiting for it), or None when
    ``start`` made none; raises the OSError the kernel gave (the map already closed)."""
    entry = _pending.pop(name, None)
    if entry is None:
        return None
    done, box, rb = entry
    done.acquire()
    fd, mappings, err = box
    if err is not None:
        if fd >= 0:
            import os

            os.close(fd)
        raise err
    from ptrace_lang.kernel.maps import Map
    from ptrace_lang.kernel.ringbuf import RingBuffer

    return (Map(fd, rb.map_type, rb.key_size, rb.value_size, rb.max_entries, rb.flags, rb.name),
            RingBuffer(fd, rb.max_entries, mappings))
