"""Where a session's records go. The session decodes a record and asks its sink what to keep
in ``pending`` for it; ``flush`` hands ``pending`` over. ``TextSink`` (the command, the REPL)
keeps bpftrace's text or NDJSON lines and writes them; the Python API's sink keeps ``Event``s
(api.py). A sink defines the methods of ``TextSink``."""
from __future__ import annotations

import os


class TextSink:
    """bpftrace's output (or NDJSON, one object per line) written to ``out``; errorf/warnf/
    debugf lines (``ufuncs.StderrText``) to ``err``, in order with the output around them."""

    def __init__(self, out, err, output_format: str = "text", buffering: str = "line") -> None:
        self.out = out
        self.err = err
        self.json = output_format == "json"
        self.buffering = buffering
        # printf records are text as they are: the session may render a run of them at once
        self.batch_text = not self.json

    def text_record(self, kind: str, text: str, end: str = ""):
        """A record that is text (printf, time, cat, join, syscall): as it is, followed by
        ``end``, or ``{"type": kind, "data": text}`` in JSON."""
        if self.json:
            from ptrace_lang.runtime.format import json_message

            return json_message(kind, text)
        return text + end

    def printf_output(self, render):
        """What printf's compiled format becomes: called with the record's values."""
        if not self.json:
            return render               # the hot path: the compiled format, nothing around it
        return lambda args: self.text_record("printf", render(args))

    def value_output(self, value, stats_style: str):
        """print(expr)"""
        from ptrace_lang.runtime.format import format_value, format_value_json

        if self.json:
            return format_value_json(value, stats_style)
        return format_value(value)

    def map_output(self, session, um, top: int, div: int):
        """print(@m): the map ``um`` read now through ``session``."""
        if self.json:
            from ptrace_lang.runtime.format import format_map_json

            return format_map_json(session.read_user_map(um), top=top, div=div,
                                   stats_style=session.opts.stats_style)
        return session.format_user_map(um, top, div, printed=True)

    def flush(self, pending: list, stderr_lines: bool) -> None:
        """Write and empty ``pending`` (``stderr_lines``: it holds lines for stderr)."""
        if stderr_lines:
            from ptrace_lang.runtime.ufuncs import flush_mixed

            flush_mixed(pending, self.out, self.err)
        if pending:
            self.out.write("".join(pending))
            pending.clear()
            if self.buffering != "full":
                self.out.flush()


class OutputFailure(Exception):
    """Writing the output failed (a full disk, /dev/full, a closed or unwritable stream): the
    run stops, its kernel objects are released on the way out, and cli reports ``message``."""

    def __init__(self, name: str, err: OSError) -> None:
        self.message = f"failed to write output to {name}: {err.strerror or err}"
        super().__init__(self.message)


class GuardedOutput:
    """The output stream of the command: text kept until ``flush``, then written to the file
    descriptor whole, whatever signals interrupt the writes (CPython's buffered writer drops
    the rest of a chunk when a signal cuts a write to a full pipe short: a Ctrl-C while the
    reader lags). Write errors become ``OutputFailure`` naming the file (a broken pipe stays
    a ``BrokenPipeError``: the reader went away, the run ends quietly)."""

    def __init__(self, stream, name: str) -> None:
        self.stream = stream
        self.name = name
        self.failed = False
        self._parts: list = []
        try:
            self._fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self._fd = -1           # (no file descriptor: written through the stream)

    def _fail(self, e: OSError):
        self.failed = True
        return OutputFailure(self.name, e)

    def write(self, s: str) -> int:
        if self._fd < 0:
            try:
                return self.stream.write(s)
            except BrokenPipeError:
                raise
            except OSError as e:
                raise self._fail(e) from None
        self._parts.append(s)
        return len(s)

    def flush(self) -> None:
        try:
            self.stream.flush()         # what was written through the stream itself, first
            if not self._parts:
                return
            data = "".join(self._parts).encode("utf-8", "surrogateescape")
            self._parts.clear()
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view):]
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._fail(e) from None

    def close(self) -> None:
        self.flush()
        try:
            self.stream.close()
        except BrokenPipeError:
            raise
        except OSError as e:
            raise self._fail(e) from None

    def __getattr__(self, attr: str):
        return getattr(self.stream, attr)
