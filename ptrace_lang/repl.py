"""The REPL: ``ptrace`` with no program (on a terminal) or ``ptrace --repl``.

Every probe typed joins one running session: the accumulated source of the accepted entries
plus the new entry is compiled as one script (so maps and their types are shared), the
result is checked against what is loaded (earlier programs, maps, events and probe ids must be
unchanged, or the entry is refused), and only what is new is created, loaded and attached.
A refused entry leaves the session as it was. BEGIN blocks run once, when entered; END blocks
run at quit, before the maps print.

Events are read while the prompt is active: the ring buffer's fd is registered with the
asyncio loop prompt_toolkit runs on, and output goes through ``patch_stdout`` so it appears
above the line being edited.
"""
from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import time

from ptrace_lang import spec as S
from ptrace_lang.errors import (SOURCES, CompileError, Diagnostic, PtraceError, RuntimeFailure, Span,
                                internal_error)
from ptrace_lang.records import dataclass, field
from ptrace_lang.runtime.session import RunOptions, Session

PROMPT = "ptrace> "
CONTINUATION = "   ...> "

HELP = """\
Type a probe to compile, load and attach it; it joins the probes already running and maps
persist across entries:
    tracepoint:syscalls:sys_enter_openat { @opens[comm] = count(); }
Enter continues an entry inside an open { and after attach points (an empty line ends it).
Tab completes probes, tracepoints, kernel functions, builtins, functions and maps.
Ctrl-C cancels the line; Ctrl-D quits.
BEGIN blocks run once when entered, END blocks run at quit.

Commands (also with a leading dot: .probes):
    probes              list the probes of the session: #, state, attach points
    detach N            detach probe #N
    print [@map ...]    print maps (all of them without an argument)
    watch @map [SECS]   show a map every SECS seconds (default 1) until a key is pressed
    clear @map          delete every entry of a map
    zero @map           set every value of a map to zero
    asm N               the BPF instructions of probe #N, under the source lines
    ir N                the compiler's IR of probe #N
    help                this text
    quit                run END probes, print every map, detach and leave (also Ctrl-D, exit)
"""

COMMANDS = ("probes", "detach", "print", "watch", "clear", "zero", "asm", "ir", "help", "quit",
            "exit")
_MAP_COMMANDS = ("print", "watch", "clear", "zero")
_PROBE_COMMANDS = ("detach", "asm", "ir")

KEYWORDS = ("if", "else", "while", "for", "unroll", "return", "break", "continue", "let", "config")
FUNCTIONS = ("printf", "print", "time", "exit", "str", "count", "sum", "avg", "min", "max", "stats",
             "hist", "lhist", "delete", "clear", "zero")
BUILTINS = ("pid", "tid", "uid", "gid", "nsecs", "elapsed", "cpu", "comm", "probe", "rand",
            "cgroup", "args", "retval", "func", "arg0", "arg1", "arg2", "arg3", "arg4", "arg5")
PROVIDERS = ("BEGIN", "END", "tracepoint:", "rawtracepoint:", "interval:", "profile:",
             "software:", "hardware:", "uprobe:", "uretprobe:", "kprobe:", "kretprobe:",
             "fentry:", "fexit:", "usdt:")
_TP_PROVIDERS = ("tracepoint", "t")
_RAW_PROVIDERS = ("rawtracepoint", "rt")
_FUNC_PROVIDERS = ("kprobe", "k", "kretprobe", "kr", "fentry", "f", "fexit", "fr", "kfunc", "kretfunc")
MAX_COMPLETIONS = 400
DRAIN_SECONDS = 0.05     # longest a drain of the ring buffer keeps the prompt waiting
TAKE_BYTES = 256 << 10   # records taken from the ring buffer at a time


class ReplError(Exception):
    """A command used wrongly: one line, shown as ``ERROR: ...``."""


# ---------------------------------------------------------------------------------- text scans

def brace_depth(text: str) -> int:
    """How many ``{`` are open at the end of ``text`` (strings and comments skipped)."""
    depth, i, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                return depth + 1        # an open comment also continues
            i = j + 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return max(depth, 0)


_HEADER_RE = re.compile(r"\s*(?:[A-Za-z_][\w]*:|BEGIN\b|END\b|begin\b|end\b)")


def needs_more(text: str) -> bool:
    """Whether Enter continues the entry: inside an open block, or after a probe's attach
    points whose block has not begun (``tracepoint:a:b`` then ``{`` on the next line). An
    empty line ends an entry that is not inside a block."""
    if brace_depth(text) > 0:
        return True
    if not text.strip() or split_command(text) is not None or text.rstrip(" \t").endswith("\n"):
        return False
    return "{" not in text and _HEADER_RE.match(text) is not None


_COMMAND_RE = re.compile(r"\s*\.?([a-z]+)(?:\s+(.*?))?\s*\Z", re.S)


def split_command(text: str) -> tuple[str, list[str]] | None:
    """(command, arguments) when ``text`` is a REPL command rather than program text."""
    m = _COMMAND_RE.match(text)
    if m is None or m.group(1) not in COMMANDS or "{" in text:
        return None
    return m.group(1), (m.group(2) or "").split()


# ---------------------------------------------------------------------------------- the session

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
        from ptrace_lang import providers
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
            if info.provider == "end":
                info.state = "waiting"
        for info in added:
            if info.provider == "begin":
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
            if info.provider == "end" and info.state == "waiting":
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


# ---------------------------------------------------------------------------------- completion

class _Catalog:
    """Names offered by completion, read once and only when first asked for."""

    def __init__(self) -> None:
        self._tracepoints: list[str] | None = None
        self._functions: list[str] | None = None

    def tracepoints(self) -> list[str]:
        if self._tracepoints is None:
            try:
                from ptrace_lang.kernel.tracefs import list_tracepoints

                self._tracepoints = list_tracepoints("*:*")
            except Exception:  # noqa: BLE001 - no tracefs: nothing to offer
                self._tracepoints = []
        return self._tracepoints

    def functions(self) -> list[str]:
        if self._functions is None:
            try:
                from ptrace_lang.btf import BTF

                btf = BTF.vmlinux()
                self._functions = sorted({btf.name_of(i) for i in range(1, btf.nr_types + 1)
                                          if btf.kind_of(i) == "func"})
            except Exception:  # noqa: BLE001 - no BTF: nothing to offer
                self._functions = []
        return self._functions


def _make_completer(repl: "Repl"):
    from prompt_toolkit.completion import Completer, Completion

    catalog = _Catalog()

    def offer(cands, word: str, display_meta: str = ""):
        n = 0
        for c in cands:
            if c.startswith(word) and c != word:
                yield Completion(c, start_position=-len(word), display_meta=display_meta)
                n += 1
                if n >= MAX_COMPLETIONS:
                    return

    class ReplCompleter(Completer):
        def get_completions(self, document, complete_event):
            text = document.text_before_cursor
            word = re.search(r"[\w:@$.*+-]*\Z", text).group()
            session = repl.session
            maps = sorted({um.name for um in session.spec.user_maps}
                          | set(re.findall(r"@\w*", document.text)) - {word}) if session else []
            cmd = split_command(text)
            if cmd is not None and re.search(r"\s", text.lstrip()):
                name = cmd[0]
                if name in _MAP_COMMANDS:
                    yield from offer(maps, word, "map")
                elif name in _PROBE_COMMANDS and session is not None:
                    yield from offer([str(i) for i in sorted(session.probes)], word, "probe")
                elif name == "help":
                    yield from offer(COMMANDS, word)
                return
            if brace_depth(text) > 0:
                if word.startswith("@"):
                    yield from offer(maps, word, "map")
                elif word.startswith("$"):
                    yield from offer(sorted(set(re.findall(r"\$\w+", document.text)) - {word}), word)
                else:
                    yield from offer(FUNCTIONS, word, "function")
                    yield from offer(BUILTINS, word, "builtin")
                    yield from offer(KEYWORDS, word, "keyword")
                return
            # at the top level: an attach point (or a command, as the first word)
            if ":" not in word:
                if text.strip() == word:
                    yield from offer(COMMANDS, word.lstrip("."), "command")
                yield from offer(PROVIDERS, word, "probe")
                return
            prov, rest = word.split(":", 1)
            low = prov.lower()
            if low in _TP_PROVIDERS:
                tps = catalog.tracepoints()
                if ":" not in rest:
                    cands = sorted({tp.split(":", 1)[0] + ":" for tp in tps})
                else:
                    cands = tps
                yield from offer([f"{prov}:{c}" for c in cands if c.startswith(rest)], word, "tracepoint")
            elif low in _RAW_PROVIDERS:
                events = sorted({tp.split(":", 1)[1] for tp in catalog.tracepoints()})
                yield from offer([f"{prov}:{e}" for e in events if e.startswith(rest)], word)
            elif low in _FUNC_PROVIDERS:
                if rest:        # tens of thousands of functions: only once a prefix is typed
                    yield from offer([f"{prov}:{f}" for f in catalog.functions() if f.startswith(rest)],
                                     word, "function")
            elif low in ("interval", "i", "profile", "p"):
                yield from offer([f"{prov}:{u}" for u in ("s:", "ms:", "us:", "hz:")], word)
            elif low in ("software", "s", "hardware", "h"):
                from ptrace_lang.providers.perf_events import HARDWARE, SOFTWARE

                names = SOFTWARE if low in ("software", "s") else HARDWARE
                yield from offer([f"{prov}:{e}" for e in sorted(names)], word)

    return ReplCompleter()


# ---------------------------------------------------------------------------------- highlighting

_TOKEN = re.compile(r"""
    (?P<comment>//[^\n]*|/\*.*?(?:\*/|\Z))
  | (?P<string>"(?:\\.|[^"\\\n])*"?)
  | (?P<map>@\w*)
  | (?P<var>\$\w+)
  | (?P<number>\b(?:0[xX][0-9a-fA-F]+|\d[\d_]*(?:[eE]\d+)?)\b)
  | (?P<word>[A-Za-z_][\w.*\-/]*(?::[^\s{},]*)+|[A-Za-z_]\w*)
  | (?P<open>\{)
  | (?P<close>\})
  | (?P<other>[^\s"@$/{}A-Za-z_0-9]+|\s+|.)
""", re.X | re.S)

STYLE = {
    "probe": "ansicyan bold",
    "command": "ansimagenta bold",
    "keyword": "ansiblue bold",
    "builtin": "ansigreen",
    "function": "ansiblue",
    "map": "ansiyellow",
    "var": "ansiyellow",
    "string": "ansired",
    "number": "ansibrightmagenta",
    "comment": "ansibrightblack italic",
}


def highlight(text: str) -> list[list[tuple[str, str]]]:
    """Style fragments per line of ``text``."""
    lines: list[list[tuple[str, str]]] = [[]]
    depth = 0
    is_command = split_command(text) is not None
    first = True
    for m in _TOKEN.finditer(text):
        kind, tok = m.lastgroup, m.group()
        style = ""
        if kind in ("comment", "string", "map", "var", "number"):
            style = kind
        elif kind == "open":
            depth += 1
        elif kind == "close":
            depth = max(depth - 1, 0)
        elif kind == "word":
            if first and is_command:
                style = "command"
            elif depth == 0 and (":" in tok or tok in ("BEGIN", "END", "begin", "end")):
                style = "probe"
            elif tok in KEYWORDS:
                style = "keyword"
            elif tok in FUNCTIONS and text[m.end():m.end() + 1] == "(":
                style = "function"
            elif tok in BUILTINS and depth > 0:
                style = "builtin"
        if kind != "other" or tok.strip():
            first = False
        parts = tok.split("\n")
        for i, part in enumerate(parts):
            if i:
                lines.append([])
            if part:
                lines[-1].append(("class:" + style if style else "", part))
    return lines


def _make_lexer():
    from prompt_toolkit.lexers import Lexer

    class ReplLexer(Lexer):
        def lex_document(self, document):
            lines = highlight(document.text)

            def get_line(n: int):
                return lines[n] if 0 <= n < len(lines) else []
            return get_line

    return ReplLexer()


# ---------------------------------------------------------------------------------- history

def history_path() -> str:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "ptrace-lang", "history")


def open_history():
    """The history file, created readable and writable by the user only."""
    from prompt_toolkit.history import FileHistory, InMemoryHistory

    path = history_path()
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            os.fchmod(fd, 0o600)
        finally:
            os.close(fd)
    except OSError as e:
        sys.stderr.write(f"WARNING: history not kept: {path}: {e.strerror or e}\n")
        return InMemoryHistory()
    return FileHistory(path)


# ---------------------------------------------------------------------------------- the REPL

class Repl:
    def __init__(self, opts: dict) -> None:
        self.opts = opts
        self.session: ReplSession | None = None
        self.ending = False
        self.loop: asyncio.AbstractEventLoop | None = None
        self._reading = False

    # -------------------------------------------------------------- output
    def out(self, text: str) -> None:
        if text:
            sys.stdout.write(text if text.endswith("\n") else text + "\n")
            sys.stdout.flush()

    def error(self, text: str) -> None:
        sys.stdout.flush()
        sys.stderr.write(text.rstrip("\n") + "\n")
        sys.stderr.flush()

    def show_error(self, e: BaseException) -> None:
        if isinstance(e, PtraceError):
            self.error(e.render(SOURCES))
            log = getattr(e, "verifier_log", None)
            if log and self.opts.get("verbose"):
                self.error(log)
        elif isinstance(e, ReplError):
            self.error(f"ERROR: {e}")
        else:
            if os.environ.get("PTRACE_DEBUG"):
                import traceback
                traceback.print_exception(e)
            self.error(f"ERROR: internal error: {type(e).__name__}: {e}\n"
                       "(set PTRACE_DEBUG=1 for the Python traceback)")

    # -------------------------------------------------------------- events
    def _on_readable(self) -> None:
        s = self.session
        try:
            s.drain()
        except Exception as e:  # noqa: BLE001 - one line, the session goes on
            self.show_error(e)
        if s.stopping:
            self._stop_reading()
            self.end()

    def _start_reading(self) -> None:
        if not self._reading:
            self.loop.add_reader(self.session.ringbuf.map_fd, self._on_readable)
            self._reading = True

    def _stop_reading(self) -> None:
        if self._reading:
            self.loop.remove_reader(self.session.ringbuf.map_fd)
            self._reading = False

    def end(self) -> None:
        """End the session (exit() in a probe, SIGTERM): leave whatever app is running."""
        self.ending = True
        from prompt_toolkit.application import get_app_or_none

        app = get_app_or_none()
        if app is not None and app.is_running and not app.future.done():
            app.exit(exception=EOFError())

    # -------------------------------------------------------------- the loop
    def _make_prompt(self):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.application import get_app
        from prompt_toolkit.completion import ThreadedCompleter
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.styles import Style

        @Condition
        def open_block() -> bool:
            return needs_more(get_app().current_buffer.text)

        return PromptSession(
            PROMPT, multiline=open_block, prompt_continuation=CONTINUATION,
            lexer=_make_lexer(), completer=ThreadedCompleter(_make_completer(self)),
            complete_while_typing=False, history=open_history(), style=Style.from_dict(STYLE),
            include_default_pygments_style=False)

    async def main(self) -> int:
        from prompt_toolkit.patch_stdout import patch_stdout

        self.loop = asyncio.get_running_loop()
        prompt = self._make_prompt()
        if not self.opts.get("quiet"):
            self.out("ptrace REPL: type a probe to attach it; `help` lists the commands; "
                     "Ctrl-D quits")
        with patch_stdout(raw=True):
            self.session = ReplSession(RunOptions(quiet=self.opts.get("quiet", False),
                                                  verbose=self.opts.get("verbose", False)),
                                       self.opts.get("positional"))
            try:
                self.session.open()
            except PtraceError as e:
                self.show_error(e)
                self.session.close()
                return 1
            self.loop.add_signal_handler(signal.SIGTERM, self.end)
            self.loop.add_signal_handler(signal.SIGHUP, self.end)
            self._start_reading()
            first = self._first_entry()
            if first:
                try:
                    self.add(first)
                except Exception as e:  # noqa: BLE001
                    self.show_error(e)
                self.ending = self.session.stopping
            try:
                while not self.ending:
                    try:
                        text = await prompt.prompt_async()
                    except KeyboardInterrupt:
                        continue
                    except EOFError:
                        break
                    if self.ending:
                        break
                    try:
                        await self.handle(text)
                    except (KeyboardInterrupt, asyncio.CancelledError):
                        self.error("^C")
                    except Exception as e:  # noqa: BLE001 - no traceback, the session goes on
                        self.show_error(e)
                    if self.session.stopping:      # exit() in a BEGIN just entered
                        self.ending = True
            finally:
                self._stop_reading()
                for sig in (signal.SIGTERM, signal.SIGHUP):
                    self.loop.remove_signal_handler(sig)
        # the prompt is gone: END output and the maps go straight to the terminal
        s = self.session
        s.out, s.err = sys.stdout, sys.stderr
        s.sink.out, s.sink.err = sys.stdout, sys.stderr
        try:
            return s.shutdown()
        except PtraceError as e:
            self.show_error(e)
            return 1
        finally:
            s.close()

    def _first_entry(self) -> str:
        """``ptrace --repl -e PROG`` or ``ptrace --repl FILE``: the program is the first entry."""
        if self.opts.get("program"):
            return self.opts["program"]
        path = self.opts.get("file")
        if path and path != "-":
            try:
                with open(path, encoding="utf-8", errors="surrogateescape") as f:
                    return f.read().rstrip("\n")
            except OSError as e:
                self.error(f"ERROR: failed to open file '{path}': {e.strerror}")
        return ""

    async def handle(self, text: str) -> None:
        if not text.strip():
            return
        cmd = split_command(text)
        if cmd is None:
            self.add(text)
            return
        name, args = cmd
        s = self.session
        if name in ("quit", "exit"):
            self.ending = True
        elif name == "help":
            self.out(HELP)
        elif name == "probes":
            self.out(self.probes_text())
        elif name in _PROBE_COMMANDS:
            n = self._probe_arg(name, args)
            if name == "detach":
                info = s.detach_probe(n)
                self.out(f"Detached probe #{n} ({info.text})")
            else:
                self.out(s.code_of(n, name))
        elif name == "print":
            names = args or sorted(um.name for um in s.spec.user_maps)
            ums = [s.user_map(a) for a in names]
            if not ums:
                self.out("no maps yet")
            for um in ums:
                self.out(s.format_user_map(um) or f"{um.name} is empty")
        elif name in ("clear", "zero"):
            if len(args) != 1:
                raise ReplError(f"usage: {name} @map")
            um = s.user_map(args[0])
            s.drain()
            if name == "clear":
                s.k.maps[um.kernel_map].clear()
            else:
                s.zero_map(um)
        elif name == "watch":
            await self.watch(args)

    def _probe_arg(self, name: str, args: list[str]) -> int:
        if len(args) != 1 or not args[0].lstrip("#").isdigit():
            raise ReplError(f"usage: {name} N (the probe's number in `probes`)")
        return int(args[0].lstrip("#"))

    def add(self, text: str) -> None:
        s = self.session
        try:
            added = s.add(text)
        except PtraceError as e:
            self.show_error(e)
            return
        s.drain(flush=False)
        n = sum(i.attachments for i in added)
        if added and not self.opts.get("quiet"):
            nums = ", ".join(f"#{i.index}" for i in added)
            self.error(f"Attached {n} probe{'s' if n != 1 else ''} ({nums})")
        elif not added:
            self.error("nothing new to attach")
        s._flush()

    def probes_text(self) -> str:
        s = self.session
        if not s.probes:
            return "no probes yet"
        rows = []
        for i in sorted(s.probes):
            info = s.probes[i]
            state = {"ran": "ran", "waiting": "at quit"}.get(info.state, info.state)
            extra = f" ({info.attachments} attach points)" if info.attachments > 1 else ""
            rows.append(f"#{i:<3} {state:<9} {info.text}{extra}")
        return "\n".join(rows)

    async def watch(self, args: list[str]) -> None:
        from prompt_toolkit.application import Application
        from prompt_toolkit.key_binding import KeyBindings
        from prompt_toolkit.layout import Layout, Window
        from prompt_toolkit.layout.controls import FormattedTextControl

        s = self.session
        if not 1 <= len(args) <= 2:
            raise ReplError("usage: watch @map [SECONDS]")
        um = s.user_map(args[0])
        try:
            every = float(args[1]) if len(args) > 1 else 1.0
        except ValueError:
            every = -1
        if not every > 0:
            raise ReplError(f"watch: '{args[1]}' is not a positive number of seconds")

        def render() -> str:
            try:
                body = s.format_user_map(um)
            except Exception as e:  # noqa: BLE001
                body = f"ERROR: {e}\n"
            return (f"Every {every:g}s: {um.name}    {time.strftime('%H:%M:%S')}"
                    f"    (any key stops)\n{body.rstrip(chr(10))}\n")

        state = {"text": render()}
        kb = KeyBindings()

        @kb.add("<any>")
        @kb.add("c-c")
        @kb.add("<sigint>")
        def _stop(event) -> None:
            if not event.app.future.done():
                event.app.exit()

        app = Application(layout=Layout(Window(FormattedTextControl(lambda: state["text"]))),
                          key_bindings=kb, full_screen=False, erase_when_done=False)

        async def refresh() -> None:
            while True:
                await asyncio.sleep(every)
                state["text"] = render()
                app.invalidate()

        task = self.loop.create_task(refresh())
        try:
            await app.run_async()
        except EOFError:        # the session is ending (exit() in a probe, SIGTERM)
            pass
        finally:
            task.cancel()


def run_repl(opts: dict) -> int:
    """``ptrace`` without a program on a terminal, or ``ptrace --repl``."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("ERROR: the REPL needs a terminal (give a program with -e, a file or -)\n")
        return 1
    from ptrace_lang.kernel.privilege import NEEDS_ROOT, privileged
    if not privileged():
        sys.stderr.write(NEEDS_ROOT)
        return 1
    from ptrace_lang.runtime.session import _raise_fd_limit

    _raise_fd_limit()
    # Ctrl-C outside the prompt (the terminal is in cooked mode while an entry loads) must not
    # raise in the middle of it: the prompt and the watch view read it as a key
    old = signal.signal(signal.SIGINT, lambda *_: None)
    loop = asyncio.new_event_loop()
    repl = Repl(opts)
    try:
        return loop.run_until_complete(repl.main())
    except Exception as e:  # noqa: BLE001 - never a traceback
        if repl.session is not None:
            try:
                repl.session.close()
            except Exception:  # noqa: BLE001
                pass
        return internal_error(e)
    finally:
        loop.close()
        signal.signal(signal.SIGINT, old)
