"""The REPL's session, testable without a terminal: ``ReplSession`` grows one running session
entry by entry (see repl.py for how), detaches single probes and ends with the END probes
and the maps."""
from __future__ import annotations

import os
import re
import time

from ptrace_lang import providers
from ptrace_lang import spec as S
from ptrace_lang.errors import SOURCES, CompileError, Diagnostic, PtraceError, RuntimeFailure, Span
from ptrace_lang.records import dataclass, field
from ptrace_lang.runtime.session import RunOptions, Session

DRAIN_SECONDS = 0.05     # longest a drain of the ring buffer keeps the prompt waiting
TAKE_BYTES = 256 << 10   # records taken from the ring buffer at a time


class ReplError(Exception):
    """A command used wrongly: one line, shown as ``ERROR: ...``."""


@dataclass
class Entry:
    number: int            # 1-based, in the order accepted
    text: str
    first_line: int        # its first line in the accumulated source


@dataclass
class ProbeInfo:
    index: int                       # the probe block's index in the accumulated program
    entry: int
    text: str                        # attach points as written
    provider: str                    # of the first attachment: begin, end, tracepoint ...
    programs: list[str] = field(default_factory=list)
    attachments: int = 0
    links: list = field(default_factory=list)
    state: str = "attached"          # attached, detached, ran (begin), waiting (end)


_PROG_INDEX = re.compile(r"p(\d+)_")


def _probe_index(prog_name: str) -> int:
    m = _PROG_INDEX.match(prog_name)
    return int(m.group(1)) if m else -1


def _base_maps() -> list[S.MapSpec]:
    """The maps every entry shares, created at start: the ring buffer is always there, so an
    entry that prints joins a session whose first entries did not."""
    from ptrace_lang.driver import DEFAULT_RINGBUF_BYTES, MAP_TYPES, _ringbuf_size

    return [S.MapSpec("ringbuf", MAP_TYPES["ringbuf"], 0, 0, _ringbuf_size(DEFAULT_RINGBUF_BYTES)),
            S.MapSpec("counters", MAP_TYPES["array"], 4, 8 * S.NUM_COUNTERS, 1),
            S.MapSpec("globals", MAP_TYPES["array"], 4, 8, 1)]


class ReplSession(Session):
    """A session that grows: ``add`` compiles an entry together with the accepted ones and
    loads and attaches only what is new; ``detach_probe`` takes one probe away;
    ``shutdown`` runs the END probes and prints the maps."""

    def __init__(self, opts: RunOptions, positional: list[str] | None = None) -> None:
        super().__init__(S.ObjectSpec(), opts)
        self._got_signal = False
        self.positional = list(positional or [])
        self.entries: list[Entry] = []
        self.source = ""
        self.accepted: set[str] = set()      # every program name ever loaded
        self.probes: dict[int, ProbeInfo] = {}

    # -------------------------------------------------------------- events
    def drain(self, flush: bool = True) -> None:
        # a flood of events must not keep the prompt from being drawn: a drain takes what is
        # committed for a bounded time, and the loop calls it again while the buffer has more
        self._drain_until = time.monotonic() + DRAIN_SECONDS
        super().drain(flush)

    def _pump(self, max_bytes: int = 1 << 62) -> None:
        if time.monotonic() < getattr(self, "_drain_until", 0):
            super()._pump(min(max_bytes, TAKE_BYTES))

    def drain_all(self) -> None:
        """Drain until the ring buffer is empty (the probes are detached), for a few seconds
        at most."""
        deadline = time.monotonic() + 5
        self.drain()
        while (self.ringbuf is not None and not self.stopping and self.ringbuf.available()
               and time.monotonic() < deadline):
            self.drain()

    # -------------------------------------------------------------- start
    def open(self) -> None:
        import struct

        from ptrace_lang.kernel import maps as kmaps
        from ptrace_lang.kernel.ringbuf import RingBuffer

        base = _base_maps()
        for ms in base:
            self._create_map(ms, kmaps)
        self.spec.maps = list(base)
        self.k.maps["globals"].update(struct.pack("<I", 0),
                                      struct.pack("<Q", time.clock_gettime_ns(time.CLOCK_MONOTONIC)))
        self.ringbuf = RingBuffer(self.k.maps["ringbuf"].fd, base[0].max_entries)

    def _create_map(self, ms: S.MapSpec, kmaps) -> None:
        try:
            self.k.maps[ms.name] = kmaps.Map.create(ms.map_type, ms.key_size, ms.value_size,
                                                    ms.max_entries, ms.flags, name=ms.name)
        except OSError as e:
            raise RuntimeFailure(f"map '{ms.name}': failed to create: {e.strerror or e}") from None
        if ms.map_type == 7:        # a stack trace map: kstack/ustack values are read from it
            from ptrace_lang.runtime.symbols import use_maps

            use_maps(self.k.maps)

    # -------------------------------------------------------------- entries
    def compile(self, text: str, stages: tuple[str, ...] = ()):
        """Compile the accepted entries plus ``text``; errors located in the entries."""
        from ptrace_lang.driver import Options, compile_script

        entries = list(self.entries)
        if text:
            first = self.source.count("\n") + 2 if self.source else 1
            entries.append(Entry(len(self.entries) + 1, text, first))
        combined = "\n".join(e.text for e in entries)
        order = tuple(um.name for um in self.spec.user_maps)
        try:
            return compile_script(combined, "stdin", Options(positional=self.positional,
                                                             map_order=order, stages=stages))
        except PtraceError as e:
            raise self.relocate(e, entries, len(self.entries) + 1) from None
        except RecursionError:
            raise CompileError("the program is nested too deeply") from None

    def relocate(self, err: PtraceError, entries: list[Entry] | None = None,
                 current: int | None = None) -> PtraceError:
        """The error with its spans moved from the accumulated source into the entries: the
        entry being added is "stdin" (as a one-liner would be), an earlier one "entryN"."""
        entries = self.entries if entries is None else entries
        current = len(entries) if current is None else current
        diags = []
        for d in err.diagnostics:
            sp = d.span
            if sp.file == "stdin" and sp.line > 0 and entries:
                e = entries[0]
                for cand in entries:
                    if cand.first_line <= sp.line:
                        e = cand
                name = "stdin" if e.number == current else f"entry{e.number}"
                SOURCES.add(name, e.text)
                last = e.text.count("\n") + 1
                line = sp.line - e.first_line + 1
                end_line = min(sp.end_line - e.first_line + 1, last)
                end_col = sp.end_col if sp.end_line - e.first_line + 1 <= last else 1 << 20
                sp = Span(name, line, sp.col, max(end_line, line), end_col)
            diags.append(Diagnostic(d.message, sp, list(d.hints), d.severity))
        err.diagnostics = diags
        return err

    def _check(self, new: S.ObjectSpec) -> None:
        """Refuse an entry that would change what is already loaded."""
        old = self.spec
        new_um = {um.name: um for um in new.user_maps}
        for i, um in enumerate(old.user_maps):
            if (new_um.get(um.name) != um or i >= len(new.user_maps)
                    or new.user_maps[i].name != um.name):
                raise CompileError(f"type of {um.name} changed: the entry uses it differently "
                                   "from the probes already loaded",
                                   hints=["use another map name"])
        new_maps = {m.name: m for m in new.maps}
        if S.SKB_OUTPUT_MAP in new_maps:      # (its pcap files are opened as a run starts)
            ev = next(e for e in new.events if e.kind == S.EV_SKBOUTPUT)
            raise CompileError("skboutput() is not supported in the REPL", ev.span,
                               hints=["run the script with ptrace -e or a file"])
        for m in old.maps:
            q = new_maps.get(m.name)
            if m.name == "ringbuf" or q is None or q == m:
                continue
            um = next((u.name for u in old.user_maps if u.kernel_map == m.name), m.name)
            if (q.map_type, q.key_size, q.value_size) == (m.map_type, m.key_size, m.value_size):
                raise CompileError(f"the entry changes the size of {um} (max_map_keys "
                                   f"{m.max_entries} -> {q.max_entries}), already loaded")
            if um.startswith("@"):
                raise CompileError(f"type of {um} changed: the entry uses it differently "
                                   "from the probes already loaded", hints=["use another map name"])
            raise CompileError(f"the entry changes map '{m.name}' of the probes already loaded")
        if (new.probe_names[:len(old.probe_names)] != old.probe_names
                or new.events[:len(old.events)] != old.events):
            raise CompileError("the entry changes probes already loaded")
        new_progs = {p.name: p for p in new.programs}
        for p in old.programs:
            q = new_progs.get(p.name)
            if (q is None or q.insns != p.insns or q.map_relocs != p.map_relocs
                    or q.prog_type != p.prog_type):
                n = _probe_index(p.name)
                raise CompileError(f"the entry changes the code of probe #{n}, already loaded "
                                   "(a config change or a different use of its maps)")

    def add(self, text: str) -> list[ProbeInfo]:
        """Compile, load and attach an entry; return its probes (BEGIN ones already ran).
        On any error nothing of the entry stays loaded and the session is unchanged."""
        from ptrace_lang.kernel import maps as kmaps
        from ptrace_lang.kernel.teardown import close_all

        compiled = self.compile(text)
        new = compiled.spec
        self._check(new)
        entry = Entry(len(self.entries) + 1, text,
                      self.source.count("\n") + 2 if self.source else 1)
        fresh = [ps for ps in new.programs if ps.name not in self.accepted]
        fresh_names = {ps.name for ps in fresh}
        created: list[str] = []
        loaded: list[str] = []
        links: dict[int, list] = {}
        try:
            for ms in new.maps:
                if ms.name not in self.k.maps:
                    self._create_map(ms, kmaps)
                    created.append(ms.name)
            for ps in fresh:
                self.k.progs[ps.name] = self.load_program(ps)
                loaded.append(ps.name)
            for a in new.attachments:
                if a.program not in fresh_names:
                    continue
                prov = providers.get(a.provider)
                if prov.runs_by_test_run:
                    continue
                target = providers.Target(a.provider, a.probe_name, a.target)
                try:
                    got = prov.attach(target, self.k.progs[a.program], a.cookie)
                except OSError as e:
                    raise RuntimeFailure(f"probe '{a.probe_name}': failed to attach: "
                                         f"{e.strerror or e}", a.span) from None
                links.setdefault(_probe_index(a.program), []).extend(got)
        except BaseException as e:
            close_all([link for ls in links.values() for link in ls])
            for name in loaded:
                os.close(self.k.progs.pop(name))
            close_all([self.k.maps.pop(name) for name in created])
            if isinstance(e, PtraceError):
                raise self.relocate(e, [*self.entries, entry]) from None
            raise
        # accepted: the new spec describes every event id and map from now on
        self.spec = new
        self.source = f"{self.source}\n{text}" if self.source else text
        self.entries.append(entry)
        self.accepted |= fresh_names
        added = []
        for ps in fresh:
            pi = _probe_index(ps.name)
            info = self.probes.get(pi)
            if info is None:
                probe = compiled.program.probes[pi] if 0 <= pi < len(compiled.program.probes) else None
                ap_text = ", ".join(ap.raw for ap in probe.attach_points) if probe else ps.name
                atts = [a for a in new.attachments if _probe_index(a.program) == pi]
                info = self.probes[pi] = ProbeInfo(pi, entry.number, ap_text,
                                                   atts[0].provider if atts else "",
                                                   attachments=len(atts))
                added.append(info)
            info.programs.append(ps.name)
        for info in added:
            info.links = links.get(info.index, [])
            self.k.links.extend(info.links)
            if providers.runs(info.provider) == "end":
                info.state = "waiting"
        for info in added:
            if providers.runs(info.provider) == "start":
                for name in info.programs:
                    self.run_test(name)
                    os.close(self.k.progs.pop(name))
                info.state = "ran"
        return added

    def detach_probe(self, n: int) -> ProbeInfo:
        from ptrace_lang.kernel.teardown import close_all

        info = self.probes.get(n)
        if info is None:
            raise ReplError(f"no probe #{n} (see `probes`)")
        if info.state in ("detached", "ran"):
            raise ReplError(f"probe #{n} is not attached ({info.state})")
        self.drain()
        gone = {id(link) for link in info.links}
        self.k.links = [link for link in self.k.links if id(link) not in gone]
        close_all(info.links)
        info.links = []
        for name in info.programs:
            fd = self.k.progs.pop(name, None)
            if fd is not None:
                os.close(fd)
        info.state = "detached"
        self.drain_all()
        return info

    def user_map(self, name: str) -> S.UserMapSpec:
        if not name.startswith("@"):
            raise ReplError(f"'{name}' is not a map name (maps start with @)")
        for um in self.spec.user_maps:
            if um.name == name:
                return um
        known = ", ".join(sorted(um.name for um in self.spec.user_maps)) or "none yet"
        raise ReplError(f"unknown map {name} (maps: {known})")

    def format_all_maps(self) -> str:
        from ptrace_lang.runtime.format import format_maps

        data = [self.read_user_map(um) for um in sorted(self.spec.user_maps, key=lambda u: u.name)]
        return format_maps(data, stats_style=self.opts.stats_style)

    def print_maps(self) -> None:
        from ptrace_lang.runtime.format import EXIT_PREAMBLE

        self.out.write(EXIT_PREAMBLE + self.format_all_maps())
        self.out.flush()

    def shutdown(self) -> int:
        """Stop every probe, print what came before, run the END probes, print the maps."""
        self.drain()
        self.detach()
        self.drain_all()
        self.stopping = False
        for info in sorted(self.probes.values(), key=lambda i: i.index):
            if providers.runs(info.provider) == "end" and info.state == "waiting":
                for name in info.programs:
                    self.run_test(name)
                info.state = "ran"
        self.drain_all()
        self.print_maps()
        self.report_counters()
        return self.exit_code

    def _entry_line(self, line: int) -> str:
        """A line of the accumulated source as the entry and line in it."""
        e = next((e for e in reversed(self.entries) if e.first_line <= line), None)
        if e is None:
            return f"[line {line}]"
        return f"[entry {e.number}, line {line - e.first_line + 1}]"

    def code_of(self, n: int, stage: str) -> str:
        """The asm or IR of probe #n (the accumulated program compiled again with the dump)."""
        info = self.probes.get(n)
        if info is None:
            raise ReplError(f"no probe #{n} (see `probes`)")
        compiled = self.compile("", stages=(stage,))
        wanted = set(info.programs)
        if stage == "asm":
            text = "\n".join(f"; program {ps.name}: {info.text}\n{ps.asm.rstrip()}"
                              for ps in compiled.spec.programs if ps.name in wanted) + "\n"
            return re.sub(r"\[line (\d+)\]$", lambda m: self._entry_line(int(m.group(1))), text,
                          flags=re.M)
        out, keep = [], False
        for line in compiled.dumps.get("ir", "").splitlines():
            if line.startswith("; program "):
                keep = line[len("; program "):].split(":", 1)[0] in wanted
            if keep:
                out.append(line)
        return "\n".join(out) + "\n"
