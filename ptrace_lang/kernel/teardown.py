"""Fast teardown of many attachments.

Why this exists (measured on Linux 6.18, 2 CPUs, 360 syscalls:sys_enter_*
tracepoints each with a perf-event bpf_link and a trivial program):

* closing a perf bpf_link fd detaches the program and then waits for an RCU
  tasks-trace grace period (~35 ms), outside any lock: closing them from
  many threads at once shares the grace periods (360 links: 12.7 s serially,
  0.15-0.3 s from a pool of threads);
* closing the perf event fd itself unregisters the perf tracepoint probe and
  calls tracepoint_synchronize_unregister() *under the global event_mutex*
  (~31-41 ms each): threads cannot overlap those (360 fds: 11-15 s serially
  or threaded alike).

Serial Link.close() of all 360: ~26-30 s.  close_all(background=False):
~15 s.  close_all() (reaper): 0.3 s from the first close to process exit.

So close_all() closes everything but perf event fds concurrently (the
programs are detached when it returns), disables the perf events (cheap;
takes them off the tracepoint's hot path), and, when there are many, hands
the perf fds to a double-forked "reaper" child that closes them after we
are gone, so the caller can exit at once.  The reaper keeps nothing else
open (all other fds are closed first, including stdio, so it never holds a
pipe a parent is reading).  Cost: while a reaper is still closing (~15 s for
360 events), perf tracepoint attaches elsewhere wait on event_mutex behind
it (a second 360-tracepoint run started right away attaches in ~1.5-2 s
instead of 0.05 s).
"""

from __future__ import annotations

import _thread   # threading costs ~1 ms of start-up; plain threads are all this needs
import os
import time

from . import perf as _perf

__all__ = ["close_all", "reap_in_background", "BACKGROUND_THRESHOLD"]

# more perf event fds than this are handed to a reaper process when
# background is None (~20-40 ms each to close synchronously; a fork costs ~2 ms)
BACKGROUND_THRESHOLD = 0
_MAX_WORKERS = 128
_DONE = object()


def _is_perf_fd(fd: int) -> bool | None:
    """True for a perf event fd, False for another open fd, None if closed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[perf_event]"
    except FileNotFoundError:
        return None
    except OSError:
        return False


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _close_obj(obj) -> None:
    # teardown must go on whatever one object does
    try:
        obj.close()
    except Exception:  # noqa: BLE001
        pass


def _run(fn, items: list, parallel: bool) -> None:
    if not items:
        return
    if not parallel or len(items) == 1:
        for it in items:
            fn(it)
        return
    # plain threads pulling from one iterator (concurrent.futures costs start-up time)
    work = iter(items)
    lock = _thread.allocate_lock()
    finished = _thread.allocate_lock()
    finished.acquire()
    running = [1]        # the workers, plus this thread until it has started them all

    def done() -> None:
        with lock:
            running[0] -= 1
            if running[0] == 0:
                finished.release()

    def worker() -> None:
        try:
            while True:
                with lock:
                    item = next(work, _DONE)
                if item is _DONE:
                    return
                fn(item)
        finally:
            done()

    for _ in range(min(_MAX_WORKERS, len(items))):
        with lock:
            running[0] += 1
        try:
            _thread.start_new_thread(worker, ())
        except RuntimeError:      # no more threads: the ones running (or this one) do the rest
            done()
            break
    worker()                      # this thread works too, and counts itself out when done
    finished.acquire()


def _unmap_bpf_maps() -> None:
    """In the reaper: unmap the BPF maps it inherited mapped (the 8 MiB ring buffer), which
    would otherwise stay allocated until it exits: it holds only the fds it closes."""
    try:
        with open("/proc/self/maps", "rb") as f:
            areas = [line.split(None, 1)[0] for line in f if line.rstrip().endswith(b"anon_inode:bpf-map")]
    except OSError:
        return
    try:
        from . import cty

        munmap = cty.libc_function("munmap", cty.c_int, [cty.c_size_t, cty.c_size_t])
    except Exception:  # noqa: BLE001 - only memory held a little longer
        return
    for area in areas:
        start, end = (int(x, 16) for x in area.split(b"-"))
        munmap(start, end - start)


def reap_in_background(fds: list[int]) -> bool:
    """Hand fds to a detached grandchild process that closes them, then close
    our copies (cheap: the child still holds references).  Returns False (and
    closes nothing) if forking failed.

    The child only starts closing once we have dropped all our copies (it
    waits for EOF on a pipe): whoever drops the last reference pays for the
    release, and that must be the child."""
    if not fds:
        return True
    try:
        rfd, wfd = os.pipe()
    except OSError:
        return False
    keep = set(fds)
    keep.add(rfd)
    try:
        pid = os.fork()
    except OSError:
        os.close(rfd)
        os.close(wfd)
        return False
    if pid == 0:  # first child
        try:
            _unmap_bpf_maps()    # (before the fork: done once the caller's waitpid returns)
            if os.fork() != 0:
                os._exit(0)
            # grandchild: orphaned, re-parented to init; never returns
            try:
                os.setsid()
            except OSError:
                pass
            for name in os.listdir("/proc/self/fd"):
                fd = int(name)
                if fd not in keep:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            # wait until the parent has closed its copies (EOF: it closed
            # the write end, or died)
            try:
                while os.read(rfd, 64):
                    pass
            except OSError:
                pass
            for fd in fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
        finally:
            os._exit(0)
    os.close(rfd)
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
    for fd in fds:
        _close_fd(fd)
    os.close(wfd)
    return True


def close_all(fds_or_closables, parallel: bool = True, background: bool | None = None) -> dict:
    """Close many fds / objects quickly.

    Items may be ints (fds), Links (anything with detach_fds()) or objects
    with close().  Non-perf fds and objects are closed first, concurrently
    when parallel (after this the programs are detached); perf event fds are
    then disabled and closed: synchronously, or by a background reaper
    process when background is True, or None and there are more than
    BACKGROUND_THRESHOLD of them.

    Returns timings: {"fast": s, "perf": s, "n_fast": n, "n_perf": n,
    "background": bool}.
    """
    fast_fds: list[int] = []
    perf_fds: list[int] = []
    objs: list = []

    def add_fd(fd: int) -> None:
        kind = _is_perf_fd(fd)
        if kind is None:
            return
        (perf_fds if kind else fast_fds).append(fd)

    for item in fds_or_closables:
        if isinstance(item, int):
            add_fd(item)
        elif hasattr(item, "detach_fds"):
            for fd in item.detach_fds():
                add_fd(fd)
        elif hasattr(item, "close"):
            objs.append(item)
        else:
            raise TypeError(f"cannot close {item!r}")

    t0 = time.perf_counter()
    _run(_close_fd, fast_fds, parallel)
    _run(_close_obj, objs, parallel)
    t1 = time.perf_counter()

    if background is None:
        background = len(perf_fds) > BACKGROUND_THRESHOLD
    bg = False
    if perf_fds:
        for fd in perf_fds:
            try:
                _perf.ioctl_disable(fd)
            except (OSError, ImportError):   # (fcntl is imported on first use)
                pass
        if background:
            bg = reap_in_background(perf_fds)
        if not bg:
            # serialized in the kernel (event_mutex): threads do not help
            for fd in perf_fds:
                _close_fd(fd)
    t2 = time.perf_counter()
    return {"fast": t1 - t0, "perf": t2 - t1, "n_fast": len(fast_fds) + len(objs),
            "n_perf": len(perf_fds), "background": bg}
