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

from ptrace_lang.errors import SOURCES, PtraceError, internal_error
from ptrace_lang.repl_session import ReplError, ReplSession
from ptrace_lang.repl_text import (
    _MAP_COMMANDS, _PROBE_COMMANDS, BUILTINS,
    COMMANDS, FUNCTIONS, KEYWORDS, MAX_COMPLETIONS, STYLE, provider_words, brace_depth, highlight,
    needs_more, split_command,
)
from ptrace_lang.runtime.session import RunOptions

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
    flame @map FILE     write a flame graph of a stack-keyed map (FILE.svg; .folded: folded stacks)
    asm N               the BPF instructions of probe #N, under the source lines
    ir N                the compiler's IR of probe #N
    help                this text
    quit                run END probes, print every map, detach and leave (also Ctrl-D, exit)
"""


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
                yield from offer(provider_words(), word, "probe")
                return
            prov, rest = word.split(":", 1)
            from ptrace_lang import providers

            p = providers.get(prov)
            what = p.completes if p is not None else ()
            if what == "tracepoints":
                tps = catalog.tracepoints()
                if ":" not in rest:
                    cands = sorted({tp.split(":", 1)[0] + ":" for tp in tps})
                else:
                    cands = tps
                yield from offer([f"{prov}:{c}" for c in cands if c.startswith(rest)], word, "tracepoint")
            elif what == "raw_tracepoints":
                events = sorted({tp.split(":", 1)[1] for tp in catalog.tracepoints()})
                yield from offer([f"{prov}:{e}" for e in events if e.startswith(rest)], word)
            elif what == "kernel_functions":
                if rest:        # tens of thousands of functions: only once a prefix is typed
                    yield from offer([f"{prov}:{f}" for f in catalog.functions() if f.startswith(rest)],
                                     word, "function")
            elif isinstance(what, tuple):
                yield from offer([f"{prov}:{u}" for u in what], word)

    return ReplCompleter()


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
        elif name == "flame":
            self.out(self.flame(args))

    def flame(self, args: list[str]) -> str:
        """``flame @map FILE``: the map's flame graph, as ``-f flamegraph`` writes it at exit."""
        if len(args) != 2:
            raise ReplError("usage: flame @map FILE (an .svg; a .folded file gets folded stacks)")
        from ptrace_lang.flamegraph import session_flamegraph

        s = self.session
        s.drain()
        fmt = "folded" if args[1].endswith(".folded") else None
        try:
            n = session_flamegraph(s, args[0], args[1], fmt)
        except ValueError as e:
            raise ReplError(str(e)) from None
        except OSError as e:
            raise ReplError(f"cannot write {args[1]}: {e.strerror or e}") from None
        return f"wrote {args[1]} ({n} stacks)"

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
