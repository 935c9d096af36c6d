"""``RecordConsumer``, the part of a ``Session`` that consumes the ring buffer: records taken out
in bulk (``drain``/``_drain``: bounded takes, a backlog in our memory, not the kernel's), runs of
one printf rendered at once (``_records``, ``printf.compile_run``), the other record kinds one
by one (``_on_record``: print, time, exit, cat, system, errorf...), and skipped records after an
exit() (``_discard``)."""
from __future__ import annotations

import struct
import time

from ptrace_lang import spec as S


_HDR = struct.Struct("<I")      # kind | id << 8 (spec.py)
BACKLOG_LIMIT = 64 << 20     # bytes of records taken from the ring buffer but not yet formatted
TAKE_BYTES = 256 << 10       # the first take of a drain: the first records of a full buffer print at once
# after a drain that found records, the pause before the next (the first record of a burst is
# printed at once, the rest at most this late), unless GATHER_BYTES are waiting already; a
# flood fills 8 MiB of ring in ~25 ms at most
GATHER_SECONDS = 0.005
GATHER_BYTES = 64 << 10
SLICE_RECORDS = 4096         # records formatted between two takes (and two writes)
_BUSY, _DISCARD = 1 << 31, 1 << 30       # a ring buffer record's length word (kernel/ringbuf.py)
_LEN_MASK = _DISCARD - 1
_I64 = struct.Struct("<q")
_Q2 = struct.Struct("<qq")


class RecordConsumer:
    """(A mixin of ``runtime.session.Session``.)"""

    def _on_record(self, mv) -> None:
        if self.stopping:
            return
        head = _HDR.unpack_from(mv, 0)[0]
        kind, ident = head & 0xFF, head >> 8
        if kind == S.EV_PRINTF:
            fmt = self._formatters.get(ident)
            if fmt is None:
                fmt = self._formatter(ident)
            self.pending.append(fmt(self._decoders[ident](mv)))
        elif kind == S.EV_CAT or kind == S.EV_SYSTEM:
            if ident not in self._decoders:
                self._formatter(ident)
            text = self._cat_paths[ident](self._decoders[ident](mv))
            self.pending.append(self._cat_output(text) if kind == S.EV_CAT else self._system_output(text))
        elif kind == S.EV_JOIN:
            if ident not in self._decoders:
                self._formatter(ident)
            vals = self._decoders[ident](mv)
            text = self.spec.events[ident].fmt.join(vals[1:1 + vals[0]])
            self.pending.append(self.sink.text_record("join", text, "\n"))
        elif kind == S.EV_EXIT:
            self.exit_code = _I64.unpack_from(mv, 8)[0]
            self.stopping = True
        elif kind == S.EV_PRINT_VALUE:
            if ident not in self._decoders:
                self._formatter(ident)
            vals = self._decoders[ident](mv)
            self.pending.append(self.sink.value_output(vals[0], self.opts.stats_style))
        elif kind == S.EV_TIME:
            ev = self.spec.events[ident]
            self.pending.append(self.sink.text_record("time", time.strftime(ev.fmt)))
        elif kind == S.EV_PRINT_MAP:
            top, div = _Q2.unpack_from(mv, 8)
            self.pending.append(self.sink.map_output(self, self.spec.user_maps[ident], top, div or 1))
        elif kind == S.EV_CLEAR_MAP:
            self._flush()
            self.k.maps[self.spec.user_maps[ident].kernel_map].clear()
        elif kind == S.EV_ZERO_MAP:
            self._flush()
            self.zero_map(self.spec.user_maps[ident])
        elif kind in (S.EV_WARNING, S.EV_WARNF) and not self.opts.warnings:
            pass                            # --no-warnings: warnf() and run-time warnings too
        elif kind == S.EV_WARNING:          # a located run-time warning (lower_values)
            from ptrace_lang.runtime.ufuncs import StderrText

            self.pending.append(StderrText(self.spec.events[ident].fmt))
            self._stderr_pending = True
        elif S.EV_ERRORF <= kind <= S.EV_DEBUGF:
            self._message(kind, ident, mv)

    def _message(self, kind: int, ident: int, mv) -> None:
        """errorf/warnf/debugf: the formatted text for stderr after the script location, kept
        in order with the output around it (``_flush``)."""
        from ptrace_lang.runtime.ufuncs import StderrText, message_line

        if ident not in self._decoders:
            self._formatter(ident)
        self.pending.append(StderrText(message_line(kind, self.spec.events[ident],
                                                    self._cat_paths[ident],
                                                    self._decoders[ident](mv))))
        self._stderr_pending = True

    def _formatter(self, ident: int):
        from ptrace_lang.runtime.printf import compile_format

        ev = self.spec.events[ident]
        from ptrace_lang.runtime import decode

        self._decoders[ident] = decode.record_decoder(ev, self.spec.probe_names)
        if ev.kind == S.EV_PRINTF:
            self._formatters[ident] = self.sink.printf_output(
                compile_format(ev.fmt, arg_bits=ev.arg_bits))
            return self._formatters[ident]
        if ev.kind in (S.EV_CAT, S.EV_SYSTEM) or S.EV_ERRORF <= ev.kind <= S.EV_DEBUGF:
            self._cat_paths[ident] = compile_format(ev.fmt, arg_bits=ev.arg_bits)
        return None

    def _cat_output(self, path: str):
        """cat(): the file's contents as they are (as bpftrace: an unreadable file is an error
        line on stderr and prints nothing)."""
        try:
            with open(path, "rb") as f:
                text = f.read(self.spec.config.get("max_cat_bytes", 10240)).decode("utf-8", "replace")
        except OSError as e:
            self.err.write(f"ERROR: failed to open file '{path}': {e.strerror}\n")
            self.err.flush()
            text = ""
        return self.sink.text_record("cat", text)

    def _system_output(self, command: str):
        """system() (--unsafe): the command run by /bin/sh, its output printed when it ends.
        After a Ctrl-C no more are run (a flood of them must not hold the run): they are
        counted and reported at exit."""
        import subprocess

        if self._got_signal:
            self._system_not_run += 1
            return ""
        self._flush()            # what came before prints first
        try:
            p = subprocess.run(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL,
                               stdout=subprocess.PIPE, check=False)
            text = p.stdout.decode("utf-8", "replace")
        except OSError as e:
            self.err.write(f"ERROR: system(): cannot run /bin/sh: {e.strerror}\n")
            text = ""
        return self.sink.text_record("syscall", text)

    # What a record becomes in ``pending`` is the sink's to say (runtime/sink.py)
    _stderr_pending = False      # pending holds errorf/warnf/debugf lines (ufuncs.StderrText)
    _holding = False             # begin's output is held until the probes are attached

    def _flush(self) -> None:
        """Hand ``pending`` to the sink (written, or kept as events by the Python API); held
        while begin runs, to be written after the attach signal (``start``)."""
        if self._holding:
            return
        stderr_lines, self._stderr_pending = self._stderr_pending, False
        self.sink.flush(self.pending, stderr_lines)

    def _pump(self, max_bytes: int = 1 << 62) -> None:
        # the backlog is bounded: when formatting cannot keep up with a flood, the kernel's
        # buffer fills and its drops are counted (and reported), rather than our memory growing
        if self._backlog_bytes < BACKLOG_LIMIT:
            chunk = self.ringbuf.take(max_bytes)
            if chunk is not None:
                self._taken += len(chunk)
                self._backlog.append(chunk)
                self._backlog_bytes += len(chunk)

    def drain(self, flush: bool = True) -> None:
        """Format everything committed so far. Ring buffer space is given back in bulk
        (``take``) between slices of formatting, so a burst waits in our memory, not in
        the kernel's buffer where it would be lost. Returns early when the run is stopping
        (exit() or a signal) while probes still fire: a flood must not keep it here."""
        self._drain(flush, gather=False)

    def _drain(self, flush: bool, gather: bool) -> None:
        """``drain``; ``gather`` (the event loop): return once what was taken is formatted and
        less than ``GATHER_BYTES`` more is waiting, to take it in bigger pieces later."""
        if self.ringbuf is None:
            return
        if self.stopping:
            if not self.k.links:
                self._discard()
            if flush:
                self._flush()
            return
        # a first piece of bounded size, so that the first records print at once; then more
        # whenever a good piece is waiting (records are taken by the thousand, and rendered in
        # runs of a piece: ``_records``), and all that is left once the backlog is formatted
        ring = self.ringbuf
        self._pump(TAKE_BYTES)
        backlog = self._backlog
        while backlog:
            chunk = backlog[0]
            off = self._records(chunk, self._backlog_off, SLICE_RECORDS)
            if off >= len(chunk):
                backlog.popleft()
                self._backlog_bytes -= len(chunk)
                self._backlog_off = 0
            else:
                self._backlog_off = off
            if self.stopping:
                # exit(): what came before it is written below, at once; what the probes
                # record until they are detached is dropped after detaching (_discard)
                self._note_counters()
                break
            if flush and self.pending:
                self._flush()      # a slice at a time: batched, yet never held back
            if self._got_signal and self.k.links:
                break              # Ctrl-C: detach first, then format what is left
            if (backlog or gather) and ring.available() < GATHER_BYTES:
                continue
            self._pump()
        if flush:
            self._flush()

    def _records(self, chunk: bytes, off: int, limit: int) -> int:
        """Format the records of a ``take()`` copy from byte ``off``, ``limit`` of them at most;
        return the offset where it stopped. A run of records of one printf (the same length
        and header word, one after the other: a flood) is rendered in one go
        (``printf.compile_run``); any other record by ``_on_record``."""
        from ptrace_lang.kernel.ringbuf import run_length

        mv = memoryview(chunk)
        words = mv.cast("I")
        end = len(chunk)
        runs = self._runs
        pending = self.pending
        while off < end and limit > 0:
            i = off >> 2
            ln = words[i]
            n = ln & _LEN_MASK
            step = (n + 15) & ~7
            if ln & _DISCARD:
                off += step
                continue
            head = words[i + 2]
            if head & 0xFF == S.EV_PRINTF and self._batch_text and not self.stopping:
                key = head | step << 32
                render_run = runs.get(key)
                if render_run is None:
                    render_run = runs[key] = self._run_renderer(head >> 8, step)
                if render_run:
                    count = min(limit, (end - off) // step)
                    count = run_length(words, i, step >> 2, count, ln)
                    count = run_length(words, i + 2, step >> 2, count, head)
                    pending.append(render_run(chunk, off, count))
                    off += count * step
                    limit -= count
                    continue
            self._on_record(mv[off + 8:off + 8 + n])
            off += step
            limit -= 1
        return off

    def _run_renderer(self, ident: int, step: int):
        """printf.compile_run for the printf ``ident`` (False: its records go one by one)."""
        from ptrace_lang.runtime.printf import compile_run

        if ident >= len(self.spec.events):
            return False
        ev = self.spec.events[ident]
        return compile_run(ev.fmt, ev.args, step, arg_bits=ev.arg_bits) or False

    def _discard(self) -> None:
        """After exit() and detaching: what the probes recorded after the exit() is not
        printed (as bpftrace), and its space is given back for the end probes' records."""
        self._backlog.clear()
        self._backlog_bytes = 0
        self._backlog_off = 0
        self.ringbuf.skip()
