"""The process of ``-p PID`` / ``-c CMD``: watched through a pidfd (the run ends when it
exits); a ``-c`` command forked before anything is loaded, held until every probe is attached,
ended with the run."""
from __future__ import annotations

import errno
import os
import select
import sys

from ptrace_lang.errors import RuntimeFailure
from ptrace_lang.messages import say

# (the signal module's import costs ~2.5 ms: its C half has everything used here)
import _signal as signal  # noqa: E402


class TracedProcess:
    """The process of ``-p PID`` (watched) or ``-c CMD`` (our child, held before its exec).

    ``pidfd`` becomes readable when the process exits (pidfd_open: it works for any process,
    and is never confused by a reused pid). The ``-c`` child is forked before anything is
    compiled or loaded, so it holds none of our BPF or perf fds; it waits on a pipe until
    ``release`` (or exits at EOF: if we die, it never runs the command), then execs the command
    directly (no shell). An exec failure comes back through a close-on-exec pipe."""

    def __init__(self, pid: int, pidfd: int, child: bool, argv: list[str] | None = None) -> None:
        self.pid = pid
        self.pidfd = pidfd
        self.child = child
        self.argv = argv or []
        self._hold_w = -1
        self._err_r = -1
        self._released = False
        self._reaped = False

    @classmethod
    def watch(cls, pid: int) -> "TracedProcess":
        """-p PID: the process must exist."""
        if not 0 < pid < 1 << 31:      # (pid_t; beyond it os.pidfd_open raises OverflowError)
            raise RuntimeFailure(f"failed to trace pid {pid}: No such process")
        try:
            fd = os.pidfd_open(pid)
        except OSError as e:
            why = "No such process" if e.errno == errno.ESRCH else (e.strerror or str(e))
            if e.errno == errno.EINVAL:
                why += " (not a process id: a thread id?)"
            raise RuntimeFailure(f"failed to trace pid {pid}: {why}") from None
        return cls(pid, fd, child=False)

    @classmethod
    def spawn(cls, argv: list[str], path: str) -> "TracedProcess":
        """-c CMD: fork the child that will exec ``path`` with ``argv``, held until ``release``."""
        hold_r, hold_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()      # nothing buffered may be written twice
            except (OSError, ValueError):
                pass
        try:
            pid = os.fork()
        except OSError as e:
            for fd in (hold_r, hold_w, err_r, err_w):
                os.close(fd)
            raise RuntimeFailure(say("fork_failed", reason=e.strerror or e)) from None
        if pid == 0:   # the child: nothing but system calls until exec, then _exit
            code = 127
            try:
                os.close(hold_w)
                os.close(err_r)
                if os.read(hold_r, 1) == b"x":
                    os.close(hold_r)
                    # Python ignores SIGPIPE (and SIGXFSZ); the command gets the defaults
                    for sig in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)):
                        if sig is not None:
                            signal.signal(sig, signal.SIG_DFL)
                    os.execv(path, argv)
                else:
                    code = 0     # the tracer went away (or stopped) before releasing us
            except OSError as e:
                try:
                    os.write(err_w, str(e.errno or 0).encode())
                except OSError:
                    pass
            except BaseException:  # noqa: BLE001 - a Ctrl-C while held: just go
                pass
            os._exit(code)
        os.close(hold_r)
        os.close(err_w)
        try:
            pidfd = os.pidfd_open(pid)
        except OSError as e:
            os.close(hold_w)
            os.close(err_r)
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise RuntimeFailure(say("fork_failed", reason=e.strerror or e)) from None
        proc = cls(pid, pidfd, child=True, argv=argv)
        proc._hold_w, proc._err_r = hold_w, err_r
        return proc

    def release(self) -> None:
        """-c: let the child exec the command (once every probe is attached)."""
        if not self.child or self._released:
            return
        self._released = True
        try:
            os.write(self._hold_w, b"x")
        except OSError:
            pass
        os.close(self._hold_w)
        self._hold_w = -1
        try:
            data = b""
            while True:      # EOF when exec closes the pipe (or the child ends)
                chunk = os.read(self._err_r, 64)
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(self._err_r)
            self._err_r = -1
        if data:
            self._reap(block=True)
            try:
                why = os.strerror(int(data))
            except ValueError:
                why = data.decode(errors="replace")
            raise RuntimeFailure(f"Failed to run '{self.argv[0]}': {why}")

    def _reap(self, block: bool) -> bool:
        """Collect the child's exit status; True when it has exited."""
        if self._reaped:
            return True
        try:
            pid, _ = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            pid = self.pid
        if pid == self.pid:
            self._reaped = True
        return self._reaped

    def _wait(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the child to exit (reaping it); True if it did."""
        if select.select([self.pidfd], [], [], seconds)[0]:
            return self._reap(block=True)
        return self._reap(block=False)

    def stop(self, after_signal: bool = False) -> None:
        """-c: end the command if tracing stopped first (exit(), Ctrl-C): SIGTERM as bpftrace
        does, then SIGKILL if it does not go. After a Ctrl-C the terminal sent it the SIGINT
        too, so it first gets a moment to end by itself."""
        if not self.child or self._reaped:
            return
        if not self._released:
            self._kill(signal.SIGKILL)
            self._reap(block=True)
            return
        if after_signal and self._wait(1.0):   # (returns as soon as the command has ended)
            return
        if self._wait(0):
            return
        self._kill(signal.SIGTERM)
        if self._wait(0.5):
            return
        self._kill(signal.SIGKILL)
        self._reap(block=True)

    def _kill(self, sig: int) -> None:
        try:
            signal.pidfd_send_signal(self.pidfd, sig)
        except (OSError, AttributeError):
            try:
                os.kill(self.pid, sig)
            except OSError:
                pass

    def close(self) -> None:
        """Release everything: a child never released is killed (it has not run anything),
        a running one is stopped, then reaped."""
        if self.child and not self._reaped:
            self.stop()
        for name in ("_hold_w", "_err_r", "pidfd"):
            fd = getattr(self, name)
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, -1)


def resolve_command(argv: list[str]) -> str:
    """The executable ``argv[0]`` names, found as bpftrace finds it: the path itself when it
    has a '/', else every executable of that name in $PATH, which must be one binary (the
    same file reached twice, as /bin/x and /usr/bin/x where /bin links to /usr/bin, is one)."""
    name = argv[0]
    if "/" in name:
        candidates = [name]
    else:
        dirs = os.environ.get("PATH") or os.defpath
        candidates = [os.path.join(d or ".", name) for d in dirs.split(":")] if name else []
    found = [c for c in candidates if os.path.isfile(c) and os.access(c, os.X_OK)]
    if not found:
        raise RuntimeFailure(say("cmd_missing", path=name))
    if len({os.path.realpath(c) for c in found}) > 1:
        raise RuntimeFailure(say("cmd_ambiguous", path=name, count=len(found)))
    why = _not_runnable(found[0])
    if why:     # found now, before anything is attached, rather than by a failed exec
        raise RuntimeFailure(say("cmd_not_runnable", path=name, why=why))
    return found[0]


def _not_runnable(path: str) -> str:
    """Why execv would refuse ``path`` (an executable file): not an ELF binary nor a `#!`
    script, or a script whose interpreter is missing; "" when it looks runnable."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        return e.strerror or str(e)
    if head.startswith(b"\x7fELF"):
        return ""
    if head.startswith(b"#!"):
        words = head[2:].split(b"\n", 1)[0].split()
        interp = words[0].decode(errors="replace") if words else ""
        if not interp:
            return "its #! line names no interpreter"
        if not (os.path.isfile(interp) and os.access(interp, os.X_OK)):
            return f"its interpreter '{interp}' does not exist or is not executable"
        return ""
    return "not an ELF executable nor a #! script (exec format error)"
