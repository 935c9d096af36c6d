"""The ``ptrace`` command: bpftrace's flags, bpftrace's error format, never a traceback."""
from __future__ import annotations

import gc
import os
import sys

USAGE = """\
USAGE:
    ptrace [options] filename [args...]
    ptrace [options] - [args...]
    ptrace [options] -e 'program' [args...]
    ptrace [options] [--repl]      (an interactive session; see docs/repl.md)
    ptrace -l [pattern]            (list probes; -lv with their arguments; see docs/listing.md)

OPTIONS:
    -e, --program PROGRAM  the program to run
    -l [PATTERN]   list the probes matching PATTERN ('tracepoint:syscalls:*', 'kprobe:vfs_*',
                   'uprobe:/bin/bash:*'...; all kernel probes without one); -lv adds arguments;
                   with -p PID the process's uprobes and USDT probes; -l FILE.bt the probes
                   that program attaches
    -p, --pid PID  trace process PID: uprobes and USDT probes attach in it only, and the run
                   ends (END probes, maps printed) when it exits
    -c, --cmd 'CMD'  run CMD (split on each single space as bpftrace does: quotes stay as
                   written; no shell: no pipes, redirections or variables) once every probe
                   is attached; uprobes and USDT probes attach in it only, `cpid` is its
                   pid, the run ends when it exits
                   (options may come anywhere, as with getopt: after the program too;
                   `--` ends them, so `-- -5` passes -5 as $1; long options also as
                   --opt=VALUE, and abbreviated while unambiguous: --verb)
    -q, --quiet    keep messages quiet (no "Attached N probes")
    -v, --verbose  verbose messages (full verifier log on a rejection)
    -d, --debug STAGE  print a compiler stage: ast, types, ir, asm, all (repeat or join with commas)
    -f, --format FORMAT  output format: text (default) or json (NDJSON: one object per line);
                   flamegraph / folded: maps keyed by kstack/ustack as an SVG flame graph /
                   folded stacks at exit, to -o FILE (docs/flamegraph.md)
    --flamegraph FILE  write the flame graph (SVG) of the stack maps to FILE at exit
    --serve ADDR:PORT  serve the maps as Prometheus metrics on http://ADDR:PORT/metrics while
                   the program runs (docs/exporter.md)
    -o, --output FILE  write the program's output to FILE instead of stdout
    -B, --buffering MODE  output buffering: none, line (default: every batch is written at once,
                   also into a pipe) or full (written when the program ends)
    --dry-run      compile and load (passing the kernel verifier), attach nothing
    --mode MODE    bench: run each bench:NAME { ... } block many times (BPF_PROG_TEST_RUN)
                   and print their average times, nothing else is attached (--bench is the
                   same); codegen: compile only
    --probe-filter REGEX  attach only the probes whose names REGEX matches (begin/end always)
    --unsafe       allow unsafe functions (system())
    -k, -kk        accepted as bpftrace's "warn on helper errors": failed reads, full maps and
                   lost events are always counted and reported at exit (see docs/probes-more.md)
    -I DIR         add DIR to the search path of `#include "file"` / `#include <file>`
    --include FILE include FILE before the program (as `#include <FILE>` would)
    --no-warnings  print no WARNING messages
    --info         what this kernel supports: program, map and probe types, features
    --repl         an interactive session (also with no program on a terminal)
    -h, --help     show this help message
    -V, --version  print the version

ENVIRONMENT:
    BPFTRACE_MAX_MAP_KEYS  [default: 4096] maximum number of keys of a map
    BPFTRACE_MAX_STRLEN    [default: 64] bytes kept of a string value

EXAMPLES:
ptrace -e 'BEGIN { printf("hello\\n"); exit(); }'
ptrace -e 'tracepoint:syscalls:sys_enter_openat { @[comm] = count(); }'
ptrace script.bt 10 foo
ptrace -lv 'tracepoint:syscalls:sys_enter_open*'
ptrace -c 'ls -l /tmp' -e 'tracepoint:raw_syscalls:sys_enter /pid == cpid/ { @ = count(); }'
"""

STAGES = ("ast", "types", "ir", "llvm-ir", "asm")
# short options as getopt(3) reads them: these take a value ("-e PROG" or "-ePROG"), the
# others are flags that may be grouped ("-qv", "-lv", "-kk")
_VALUE_SHORT = "edfoBpcI"
_FLAG_SHORT = "hVqvlk"
_LONG_FLAGS = {"help": "help", "version": "version", "unsafe": "unsafe", "dry-run": "dry_run",
               "repl": "repl", "no-warnings": "no_warnings", "info": "info",
               "usdt-file-activation": "usdt_file_activation",
               "compare-backends": "compare_backends",
               "quiet": "quiet", "verbose": "verbose", "bench": "bench"}
_LONG_VALUES = ("include", "backend", "mode", "probe-filter")
# bpftrace 0.26's --mode values; ptrace runs bench and codegen, refuses the others by name
_MODES = ("codegen", "compiler-bench", "bench", "test", "format")
_MODE_VALUES = {"serve": "serve", "flamegraph": "flame_file"}
# long spellings of the short options that take a value (bpftrace 0.26's man page)
_LONG_SHORT = {"pid": "p", "cmd": "c", "output": "o", "format": "f", "debug": "d",
               "buffering": "B", "program": "e"}
_LONG_NAMES = (*_LONG_FLAGS, *_LONG_VALUES, *_MODE_VALUES, *_LONG_SHORT)


def _long_name(name: str) -> str:
    """getopt_long's matching: the exact name, else the one long option it begins."""
    if name in _LONG_NAMES:
        return name
    found = [n for n in _LONG_NAMES if n.startswith(name)] if name else []
    if len(found) == 1:
        return found[0]
    if found:
        raise UsageError(_say("option_ambiguous", name=name,
                              choices=" ".join(f"'--{n}'" for n in sorted(found))))
    raise UsageError(_say("option_unrecognized", name=name))


class UsageError(Exception):
    """A bad command line: said with the usage text after it, unless ``usage`` is False (a
    bad value of an option, which bpftrace says alone)."""

    def __init__(self, message: str, usage: bool = True) -> None:
        super().__init__(message)
        self.usage = usage


def parse_args(argv: list[str]) -> dict:
    """bpftrace's command line as GNU getopt reads it: options are recognized anywhere (also
    after the program or file: `ptrace script.bt -q`), "--" ends them; the first non-option is
    the program file unless -e gave the program, the rest are positional parameters."""
    opts = {"program": None, "file": None, "quiet": False, "verbose": False, "stages": [],
            "dry_run": False, "positional": [], "help": False, "version": False, "repl": False,
            "format": "text", "output": None, "buffering": "line", "list": False,
            "pid": None, "command": None, "unsafe": False, "helper_checks": 0,
            "include_dirs": [], "includes": [], "no_warnings": False, "info": False,
            "usdt_file_activation": False, "serve": None, "flame": None, "flame_file": None,
            "backend": "direct", "compare_backends": False, "program_opts": [],
            "mode": None, "bench": False, "probe_filter": None}
    operands: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        i += 1
        if a == "--":    # after it: positional parameters and the program's --name[=value]
            for rest in argv[i:]:                                      # options (getopt())
                (opts["program_opts"] if rest.startswith("--") and len(rest) > 2
                 else operands).append(rest)
            break
        if a.startswith("--"):
            name, eq, val = a[2:].partition("=")
            name = _long_name(name)
            if name in _LONG_FLAGS:
                if eq:
                    raise UsageError(_say("option_no_argument", name=name))
                if name == "bench":           # --bench: --mode bench
                    _set_mode(opts, "bench", "--bench")
                opts[_LONG_FLAGS[name]] = True
            elif name in _MODE_VALUES:    # --serve ADDR:PORT, --flamegraph FILE (modes.py)
                if not eq:
                    if i >= len(argv):
                        raise UsageError(_say("option_needs_argument", name=name))
                    val = argv[i]
                    i += 1
                opts[_MODE_VALUES[name]] = val
                if name == "flamegraph":
                    opts["flame"] = opts["flame"] or "svg"
            elif name in _LONG_VALUES:
                if not eq:
                    if i >= len(argv):
                        raise UsageError(_say("option_needs_argument", name=name))
                    val = argv[i]
                    i += 1
                if name == "backend":      # --backend direct|llvm (llvmbackend/)
                    if val not in ("direct", "llvm"):
                        raise UsageError(_say("backend_invalid", backend=val))
                    opts["backend"] = val
                elif name == "mode":
                    if val not in _MODES:
                        raise UsageError(_say("mode_invalid"), usage=False)
                    _set_mode(opts, val, None)
                elif name == "probe-filter":
                    opts["probe_filter"] = val
                else:
                    opts["includes"].append(val)
            else:                            # --pid PID, --cmd CMD, --output FILE ...
                if not eq:
                    if i >= len(argv):
                        raise UsageError(_say("option_needs_argument", name=name))
                    val = argv[i]
                    i += 1
                _value_option(opts, _LONG_SHORT[name], val)
            continue
        if not a.startswith("-") or a == "-":
            operands.append(a)
            continue
        j = 1
        while j < len(a):
            c = a[j]
            j += 1
            if c in _VALUE_SHORT:
                val = a[j:]
                if not val:
                    if i >= len(argv):
                        raise UsageError(_say("short_needs_argument", option=c))
                    val = argv[i]
                    i += 1
                _value_option(opts, c, val)
                break
            if c not in _FLAG_SHORT:
                hint = _say("short_invalid_digit") if c.isdigit() else ""
                raise UsageError(_say("short_invalid", option=c) + hint)
            if c == "h":
                opts["help"] = True
            elif c == "V":
                opts["version"] = True
            elif c == "q":
                opts["quiet"] = True
            elif c == "v":
                opts["verbose"] = True
            elif c == "l":
                opts["list"] = True
            else:
                opts["helper_checks"] += 1
    if opts["program"] is None and operands:
        opts["file"] = operands.pop(0)
    opts["positional"] = operands
    if opts["pid"] is not None and opts["command"] is not None:
        raise UsageError(_say("pid_and_cmd"))
    return opts


def _set_mode(opts: dict, mode: str, alias: str | None) -> None:
    """--mode MODE, or an alias of one (--bench), which conflicts with a mode given before."""
    if alias is not None and opts["mode"] is not None:
        raise UsageError(_say("mode_conflict", option=alias), usage=False)
    opts["mode"] = mode


def _say(key: str, /, **kw) -> str:
    """bpftrace's words for an error (messages.py, imported only when there is one)."""
    from ptrace_lang.messages import say

    return say(key, **kw)


_PID_MAX = 0x400000      # bpftrace's bound (the nominal pid_max of 64-bit systems)


def split_command(text: str) -> list[str]:
    """The words of ``-c CMD`` as bpftrace reads them: cut at each single space (not tabs,
    quotes kept as written, two spaces make an empty word between them), with no empty last
    word after a trailing space (bpftrace's getline loop): ``"a  b "`` is ``["a", "", "b"]``."""
    words = text.split(" ")
    if words[-1] == "":
        words.pop()
    return words


def parse_pid(text: str) -> int:
    """-p PID as bpftrace 0.26 reads it: an unsigned integer literal (decimal, 0x hex, 0b
    binary, 0 octal, with _ separators), at most 0x400000; a UsageError in its words."""
    from ptrace_lang.messages import parse_uint

    try:
        pid = parse_uint(text)
    except ValueError as e:
        if str(e) == "overflow":
            raise UsageError(_say("pid_overflow", pid=text), usage=False) from None
        raise UsageError(_say("pid_invalid", reason=str(e), pid=text), usage=False) from None
    if pid > _PID_MAX:
        raise UsageError(_say("pid_range", pid=pid), usage=False)
    return pid


def _value_option(opts: dict, c: str, val: str) -> None:
    if c == "e":
        opts["program"] = val
    elif c == "f":
        if val in ("flamegraph", "folded"):      # flame graphs of stack maps (modes.py)
            opts["flame"] = "svg" if val == "flamegraph" else "folded"
            return
        if val not in ("text", "json"):
            raise UsageError(_say("format_invalid", format=val), usage=False)
        opts["format"] = val
    elif c == "o":
        opts["output"] = val
    elif c == "p":
        opts["pid"] = parse_pid(val)
    elif c == "c":
        opts["command"] = split_command(val) or None    # -c '' runs nothing, as bpftrace
    elif c == "B":
        if val not in ("none", "line", "full"):
            raise UsageError(_say("buffering_invalid"), usage=False)
        opts["buffering"] = val
    elif c == "I":
        opts["include_dirs"].append(val)
    else:
        for st in val.split(","):
            if st == "all":
                opts["stages"].extend(STAGES)
            elif st in STAGES:
                opts["stages"].append(st)
            else:
                raise UsageError(_say("debug_invalid", stage=st), usage=False)


# Ctrl-C before the session's handler (which only notes it: the run then ends by itself) is
# noted here too: the KeyboardInterrupt it raises can be swallowed by the interpreter when it
# lands inside an import's lock ("Exception ignored in ..."), the note cannot. Once the probes
# are attached (_attached) it raises no more: the run's Ctrl-C, then any number more while the
# maps print and the interpreter exits, end the run with its own exit status (bpftrace's 0).
_SIGINTS: list = []
_RAISING = [True]


def _on_sigint(signum, frame):
    _SIGINTS.append(signum)
    if _RAISING[0]:
        raise KeyboardInterrupt


def _on_usr1(signum, frame):
    from ptrace_lang.signals import PENDING_USR1

    PENDING_USR1.append(signum)


def _unraisable(u, default=sys.unraisablehook):
    """A KeyboardInterrupt the interpreter could not raise is already noted (_on_sigint); a
    SIGINT that came as the run ended was to be ignored (_ignore_sigint_from_now_on)."""
    if u.exc_type is not None and issubclass(u.exc_type, KeyboardInterrupt):
        return
    if isinstance(u.exc_value, OSError) and "ignored due to race condition" in str(u.exc_value):
        return
    default(u)


def _attached() -> None:
    """RunOptions.started: every probe attached (or the run over before attaching)."""
    _RAISING[0] = False
    gc.enable()


def main(argv: list[str] | None = None, interrupted: list | None = None) -> int:
    """``interrupted``: the launcher's note of a Ctrl-C swallowed while it imported us."""
    argv = sys.argv[1:] if argv is None else argv
    # a Ctrl-C stops a tracer even when it was started with SIGINT ignored (in the background
    # of a non-interactive shell): until the session installs its handler, one raises
    # KeyboardInterrupt (nothing is loaded yet), and the session's handler replaces it
    import _signal

    _signal.signal(_signal.SIGINT, _on_sigint)
    # a SIGUSR1 while starting (a wrapper asking for the maps early) is kept for the session,
    # not the default action that would kill us
    _signal.signal(_signal.SIGUSR1, _on_usr1)
    sys.unraisablehook = _unraisable
    if interrupted:
        return 1
    # no cyclic garbage collection while starting: the passes it makes over every object
    # allocated by the imports cost ~2 ms of a ~25 ms start; it is back on once the probes are
    # attached (RunOptions.started) or the REPL starts, and short commands end without it
    gc.disable()
    # bytes pass through as bpftrace writes them, whatever the locale or PYTHONIOENCODING: a
    # script's undecodable bytes (quoted in an error, read by str()) are written back as they were
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(encoding="utf-8", errors="surrogateescape")
    if sys.stderr is None:      # (2>&-): diagnostics go nowhere, the run goes on
        sys.stderr = open(os.devnull, "w")
    try:
        return _main(argv)
    except KeyboardInterrupt:
        return 1
    except BrokenPipeError:
        # the reader of our output went away (`ptrace ... | head`): end quietly, as a tool killed
        # by SIGPIPE would; the session has released everything on its way out
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except (OSError, ImportError) as e:
        # out of file descriptors (ulimit -n 8) while importing or opening: said in a line
        from ptrace_lang.errors import internal_error   # (loaded already: no file opened)
        return internal_error(e)
    finally:
        if not _RAISING[0]:
            # the run is over: the interpreter puts back the default action of a signal with a
            # Python handler as it exits, and one more Ctrl-C would then kill us (exit 130)
            _ignore_sigint_from_now_on()


def _ignore_sigint_from_now_on() -> None:
    # A SIGINT landing between CPython's check of pending signals and its sigaction() leaves a
    # tripped flag with no Python handler to run (CPython then reports "Signal 2 ignored due to
    # race condition", seen in a storm of Ctrl-C). Blocking SIGINT in this thread first closes
    # that window; one another thread took in it is the case left, and _unraisable drops it.
    import _signal

    mask = _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGINT})
    try:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    except KeyboardInterrupt:
        # a Ctrl-C already pending ran its handler in signal()'s own check: once more
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    finally:
        # the old mask back: a SIGINT pending meanwhile is discarded, being ignored now
        _signal.pthread_sigmask(_signal.SIG_SETMASK, mask)


def _main(argv: list[str]) -> int:
    from ptrace_lang.errors import SOURCES, PtraceError, internal_error

    try:
        opts = parse_args(argv)
    except UsageError as e:
        sys.stderr.write(f"ERROR: {e}\n\n{USAGE}" if e.usage else f"ERROR: {e}\n")
        return 1
    if opts["help"]:
        sys.stdout.write(USAGE)
        return 0
    if opts["mode"] in ("compiler-bench", "test", "format"):
        sys.stderr.write(f"ERROR: {_say('mode_unsupported', mode=opts['mode'])}\n")
        return 1
    if opts["version"]:
        from ptrace_lang import __version__
        sys.stdout.write(f"ptrace v{__version__}\n")
        return 0
    if opts["info"]:
        if os.geteuid() != 0:
            sys.stderr.write(f"ERROR: {_say('info_needs_root')}\n")
            return 1
        from ptrace_lang.info import report
        try:
            sys.stdout.write(report() + "\n")
        except Exception as e:
            return internal_error(e)
        return 0
    traced = opts["pid"] is not None or opts["command"] is not None
    if opts["list"]:
        if opts["command"] is not None:
            sys.stderr.write(f"ERROR: {_say('list_with_cmd')}\n")
            return 1
        if opts["pid"] is not None and not os.path.isdir(f"/proc/{opts['pid']}"):
            sys.stderr.write(f"ERROR: {_say('list_no_process', pid=opts['pid'])}\n")
            return 1
        if opts["positional"] or opts["program"] is not None:
            sys.stderr.write(f"ERROR: {_say('list_args')}\n\n{USAGE}")
            return 1
        from ptrace_lang.kernel.privilege import NEEDS_ROOT, privileged
        if not privileged() and not _file_listing(opts["file"]):
            sys.stderr.write(NEEDS_ROOT)
            return 1
        from ptrace_lang.listing import list_probes
        try:
            return list_probes(opts["file"], opts["verbose"], sys.stdout, pid=opts["pid"])
        except Exception as e:
            return internal_error(e)
    if opts["repl"] or (opts["program"] is None and opts["file"] is None
                        and sys.stdin.isatty() and sys.stdout.isatty()):
        if traced:
            sys.stderr.write(f"ERROR: {_say('repl_traced')}\n")
            return 1
        from ptrace_lang.repl import run_repl
        gc.enable()
        return run_repl(opts)
    if opts["program"] is not None:
        text, filename = opts["program"], "stdin"
    elif opts["file"] == "-":
        text, filename = sys.stdin.read(), "stdin"
    elif opts["file"] is not None:
        filename = opts["file"]
        try:
            with open(filename, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            sys.stderr.write(f"ERROR: {_say('file_open', path=filename, reason=e.strerror)}\n")
            return 1
    elif not argv:                  # no arguments at all: the usage text, as bpftrace
        sys.stderr.write(USAGE)
        return 1
    else:
        sys.stderr.write(f"ERROR: {_say('no_program')}\n")
        return 1

    if sys.stdout is None and (opts["output"] is None or opts["stages"]):
        sys.stderr.write(f"ERROR: {_say('stdout_closed')}\n")
        return 1
    process = None
    if traced:
        # -p: the process must exist; -c: the command is found and its process forked now,
        # held before its exec (its pid is `cpid`, a constant of the compiled program)
        from ptrace_lang.runtime.process import TracedProcess, resolve_command
        try:
            if opts["pid"] is not None:
                process = TracedProcess.watch(opts["pid"])
            else:
                path = resolve_command(opts["command"])     # also its argv[0], as bpftrace
                process = TracedProcess.spawn([path, *opts["command"][1:]], path)
        except PtraceError as e:
            sys.stderr.write(e.render(SOURCES) + "\n")
            return 1
        except Exception as e:
            return internal_error(e)
    try:
        return _compile_and_run(text, filename, opts, process)
    finally:
        if process is not None:
            process.close()     # a child that never ran the command is killed, a running one ended


def _compile_and_run(text: str, filename: str, opts: dict, process) -> int:
    from ptrace_lang.errors import SOURCES, PtraceError, internal_error, report

    spec = None
    cache_key = None
    if opts["compare_backends"]:      # both backends' instruction counts (llvmbackend/compare)
        from ptrace_lang.llvmbackend.compare import compare_backends
        return compare_backends(text, filename, opts)
    from ptrace_lang.kernel.privilege import NEEDS_ROOT, privileged
    if not opts["stages"] and not privileged():
        # said before compiling: a tracepoint's format needs tracefs, which only root mounts
        sys.stderr.write(NEEDS_ROOT)
        return 1
    if not opts["dry_run"] and not opts["stages"] and os.geteuid() == 0:
        from ptrace_lang.runtime import early
        early.guess(text)       # a printing script's ring buffer, begun before the lookup
    from ptrace_lang import speccache
    # a -c program holds its child's pid (cpid, uprobes attached in it): never cached;
    # a -p program is cached for that pid only
    if not opts["stages"] and speccache.enabled() and opts["command"] is None \
            and opts["backend"] == "direct":
        try:
            cache_key = speccache.key(text, filename, opts["positional"] + opts["program_opts"]
                                      + ["\0-k"] * opts["helper_checks"],
                                      pid=opts["pid"],
                                      unsafe=opts["unsafe"],
                                      includes=(*opts["include_dirs"], "--include",
                                                *opts["includes"])
                                      if opts["include_dirs"] or opts["includes"] else ())
            spec = speccache.lookup(cache_key, unsafe=opts["unsafe"])
        except Exception:  # noqa: BLE001 - the cache only ever saves time
            cache_key = spec = None
        _cache_notes(opts)
    if spec is not None:
        SOURCES.add(filename, text)
        _print_warnings(spec, opts)
    else:
        spec = _compile(text, filename, opts, cache_key,
                        cpid=process.pid if process is not None and process.child else None,
                        pid=process.pid if process is not None else None)
        if isinstance(spec, int):
            return spec

    if not privileged():
        sys.stderr.write(NEEDS_ROOT)
        return 1
    spec = _select_probes(spec, opts)
    if isinstance(spec, int):
        return spec
    if opts["mode"] == "bench" or ((opts["serve"] or opts["flame"]) and not opts["dry_run"]):
        # --mode bench, --serve, flame graphs
        from ptrace_lang.modes import run_mode
        return run_mode(spec, opts, text, filename, process)
    file = None
    if opts["output"] is not None:
        try:
            file = open(opts["output"], "w", encoding="utf-8", errors="surrogateescape")
        except OSError as e:
            sys.stderr.write(f"ERROR: {_say('output_open', path=opts['output'], reason=e.strerror)}\n")
            return 1
    if not opts["dry_run"]:
        from ptrace_lang.runtime import early
        early.start(spec)       # the kernel allocates the ring buffer while we import the rest
    from ptrace_lang.runtime.session import RunOptions, Session
    from ptrace_lang.runtime.sink import GuardedOutput, OutputFailure
    # a write that fails (a full disk, /dev/full) stops the run with an error naming the file
    out = GuardedOutput(file, f"'{opts['output']}'") if file is not None \
        else GuardedOutput(sys.stdout, "stdout")
    session = Session(spec, RunOptions(quiet=opts["quiet"], verbose=opts["verbose"],
                                       dry_run=opts["dry_run"], out=out,
                                       output_format=opts["format"], buffering=opts["buffering"],
                                       process=process, warnings=not opts["no_warnings"],
                                       started=_attached, interrupted=lambda: bool(_SIGINTS)))
    try:
        rc = session.run()
        out.flush()         # what is still buffered: its failure is reported too
        return rc
    except OutputFailure as e:
        _output_failed(e, out)
        return 1
    except PtraceError as e:
        return report(e, opts["verbose"])
    except Exception as e:
        return internal_error(e)
    finally:
        if file is not None:
            try:
                file.close()
            except OSError:     # (reported above: the flush after the run failed the same way)
                pass


def _select_probes(spec, opts: dict):
    """The probes that run: bench: blocks only in bench mode (refused outside it), those
    --probe-filter matches; or an exit code (0 for --mode codegen: compiled, nothing run)."""
    from ptrace_lang.errors import SOURCES, CompileError

    benches = [a for a in spec.attachments if a.provider == "bench"]
    bad = None
    if benches and opts["mode"] != "bench":
        bad = CompileError(_say("bench_outside_mode"), benches[0].span,
                           hints=[_say("bench_outside_mode_hint")])
    seen = set()
    for a in benches:
        if a.target in seen and bad is None:
            bad = CompileError(_say("bench_duplicate", name=a.target), a.span)
        seen.add(a.target)
    if bad is not None:
        sys.stderr.write(bad.render(SOURCES) + "\n")
        return 1
    if opts["mode"] == "codegen":
        return 0
    if opts["probe_filter"] is not None:
        from ptrace_lang.modes import probe_filter
        try:
            spec = probe_filter(spec, opts["probe_filter"])
        except ValueError as e:
            sys.stderr.write("ERROR: " + _say("probe_filter_invalid", pattern=opts["probe_filter"],
                                              reason=e) + "\n")
            return 1
        if not spec.attachments:
            if not opts["quiet"]:
                sys.stdout.write(_say("no_probes") + "\n")
            return 1
    return spec


def _output_failed(e, out) -> None:
    """A write of the output failed: said on stderr; what is still buffered for the stream is
    dropped (the interpreter would try it again at exit, and fail again)."""
    sys.stderr.write(f"ERROR: {e.message}\n")
    sys.stderr.flush()
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), out.stream.fileno())
    except (OSError, ValueError):
        pass


def _compile(text: str, filename: str, opts: dict, cache_key, cpid: int | None = None,
             pid: int | None = None):
    """The ObjectSpec of the program (stored in the compile cache), or an exit code."""
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.errors import SOURCES, PtraceError, internal_error
    try:
        compiled = compile_script(text, filename, Options(positional=opts["positional"],
                                                          program_opts=tuple(opts["program_opts"]),
                                                          helper_checks=opts["helper_checks"],
                                                          stages=tuple(opts["stages"]),
                                                          pid=pid, cpid=cpid, unsafe=opts["unsafe"],
                                                          include_dirs=tuple(opts["include_dirs"]),
                                                          includes=tuple(opts["includes"]),
                                                          backend=opts["backend"]))
    except PtraceError as e:
        sys.stderr.write(e.render(SOURCES) + "\n")
        return 1
    except RecursionError:
        sys.stderr.write(f"{filename}: ERROR: {_say('nested_too_deeply')}\n")
        return 1
    except Exception as e:  # an internal error must still not print a traceback
        return internal_error(e)
    for st in STAGES:
        if st in compiled.dumps:
            sys.stdout.write(compiled.dumps[st].rstrip("\n") + "\n")
    sys.stdout.flush()
    if cache_key is not None:
        from ptrace_lang import speccache
        try:
            speccache.store(cache_key, compiled.spec, compiled.deps)
        except Exception:  # noqa: BLE001 - a read-only or full disk only costs the next start
            pass
    _cache_notes(opts)
    _print_warnings(compiled.spec, opts)
    return compiled.spec


def _cache_notes(opts: dict) -> None:
    """-v: the cache directories and entries refused (not trusted, damaged), each said once."""
    from ptrace_lang import cachefs
    notes = cachefs.take_notes()
    if opts["verbose"] and notes:
        sys.stderr.write("".join(n + "\n" for n in notes))


def _file_listing(pattern: str | None) -> bool:
    """A -l pattern that only reads a binary's symbols or notes (no kernel, no tracefs)."""
    return bool(pattern) and pattern.split(":", 1)[0] in ("uprobe", "uretprobe", "usdt") \
        and ":" in pattern and pattern.split(":")[1] not in ("", "*")


def _print_warnings(spec, opts: dict) -> None:
    if opts["no_warnings"]:
        return
    for w in spec.config.get("warnings", ()):
        sys.stderr.write(w + "\n")

