"""A tracing session: load the ObjectSpec, attach, consume events, print, release.

Order of a run (bpftrace's, with its slow parts removed):
  create maps -> load programs -> run begin programs (BPF_PROG_TEST_RUN) -> attach the rest
  -> "Attached N probes" -> print begin's output -> release the -c command -> events as they
  come -> stop (Ctrl-C, SIGTERM, exit(), the -p/-c process exiting, or a begin/end-only
  program) -> end a -c command still running -> detach (links closed in
  parallel; slow perf-event closes go to a background reaper) -> end programs -> print every
  map -> flush -> release the rest.
Every kernel object is owned by the session and released on every path out of ``run``.
"""
from __future__ import annotations

import errno
import os
import select
import struct
import sys
import time
from ptrace_lang.records import dataclass, field

from ptrace_lang import providers
from ptrace_lang import spec as S
from ptrace_lang.errors import RuntimeFailure, Span
from ptrace_lang.runtime import parallel
from ptrace_lang.runtime.consume import RecordConsumer
from ptrace_lang.runtime.mapread import MapReading

# the signal module's import costs ~2.5 ms of start-up (it builds enums); its C half, already
# loaded by the interpreter, has everything used here
import _signal as signal  # noqa: E402
from _collections import deque  # noqa: E402  (collections costs ~1.5 ms)

from ptrace_lang.runtime.consume import GATHER_BYTES, GATHER_SECONDS  # noqa: E402
_I64 = struct.Struct("<q")


@dataclass
class RunOptions:
    quiet: bool = False
    verbose: bool = False
    dry_run: bool = False
    out: object = None            # text stream for output (default sys.stdout)
    err: object = None            # text stream for diagnostics (default sys.stderr)
    stats_style: str = "new"
    output_format: str = "text"   # "text" (bpftrace's) or "json" (NDJSON, one object per line)
    buffering: str = "line"       # "none"/"line": written as it comes; "full": written at exit
    process: object = None        # process.TracedProcess of -p PID / -c CMD: the run ends when it exits
    warnings: bool = True         # False: --no-warnings (no WARNING lines)
    started: object = None        # called once the probes are attached (cli: gc.enable)
    sink: object = None           # where records go (runtime/sink.py; default: a TextSink of out, err)
    interrupted: object = None    # called at the start: True when a Ctrl-C came before the session's handler


class Stop(Exception):
    pass


@dataclass
class _Loaded:
    maps: dict = field(default_factory=dict)       # name -> kernel.maps.Map
    progs: dict = field(default_factory=dict)      # name -> fd
    links: list = field(default_factory=list)


def _name(spec) -> str:
    return spec.name


class Session(RecordConsumer, MapReading):
    def __init__(self, spec: S.ObjectSpec, opts: RunOptions) -> None:
        self.spec = spec
        self.opts = opts
        if "stats_style" in spec.config:        # config = { stats_style = "old" }
            opts.stats_style = spec.config["stats_style"]
        self.out = opts.out or sys.stdout
        self.err = opts.err or sys.stderr
        if opts.sink is not None:
            self.sink = opts.sink
        else:
            from ptrace_lang.runtime.sink import TextSink

            self.sink = TextSink(self.out, self.err, opts.output_format, opts.buffering)
        self.k = _Loaded()
        self.ringbuf = None
        self._skb = None                  # skboutput's pcap capture (runtime.pcap.SkbCapture)
        self.exit_code = 0
        self.stopping = False
        self.pending: list[str] = []
        self._formatters: dict[int, object] = {}
        self._cat_paths: dict[int, object] = {}
        self._decoders: dict[int, object] = {}
        # runs of printf records rendered in one go (printf.compile_run), by the record's
        # header word and stride; False: that printf's records are rendered one by one
        self._runs: dict[int, object] = {}
        self._batch_text = getattr(self.sink, "batch_text", False)
        self._wakeup_r = self._wakeup_w = -1
        self._backlog: deque[bytes] = deque()
        self._backlog_off = 0
        self._backlog_bytes = 0
        self._taken = 0                   # bytes taken from the ring buffer so far
        self._counters_at_stop: tuple[int, int, int] | None = None
        self._got_signal = False
        self._process_exited = False
        self._group_types: dict = {}      # program -> expected_attach_type of a one-link attach
        self._self_probes: dict = {}      # signal number -> programs of self:signal probes
        self._self_pending: list = []     # signals received, their probes not run yet
        self._usr1 = False                # SIGUSR1 received: print the maps (in the loop)
        self._system_not_run = 0          # system() records left unrun after a Ctrl-C
        self._ticks: list = []            # (program, "ns:N"/"hz:N", links) of interval probes
        self._stats_fd = -1               # BPF_ENABLE_STATS while interval probes run
        self._missed_ticks = 0

    # ------------------------------------------------------------------ loading
    def load(self) -> None:
        from ptrace_lang.kernel import maps as kmaps
        from ptrace_lang.runtime import early

        # the ring buffer cli began making (early) is taken last: the other maps are made, and
        # the providers' attach code imported, while the kernel is still allocating it
        pending = [ms for ms in self.spec.maps if early.pending(ms.name)]
        if pending and not self.opts.dry_run:
            for name in {a.provider for a in self.spec.attachments}:
                prov = providers.get(name)
                if prov is not None:
                    prov.warm_up()
        def check(ms) -> None:
            if not 0 <= ms.max_entries <= 0xFFFFFFFF:     # (perf_rb_pages = 1048576)
                what = (f"a ring buffer of {ms.max_entries} bytes is more than the kernel "
                        "allows (4 GiB): lower perf_rb_pages" if ms.map_type == 27 else
                        f"{ms.max_entries} entries is more than the kernel allows")
                raise RuntimeFailure(f"map '{ms.name}': failed to create: {what}")

        def failed(ms, e: OSError) -> RuntimeFailure:
            return RuntimeFailure(f"map '{ms.name}': failed to create: {e.strerror or e}")

        def make(ms):
            check(ms)
            try:
                return kmaps.Map.create(ms.map_type, ms.key_size, ms.value_size,
                                        ms.max_entries, ms.flags, name=ms.name)
            except OSError as e:
                raise failed(ms, e) from None

        parallel.each(make, [ms for ms in self.spec.maps if ms not in pending], self.k.maps,
                      _name)
        for ms in pending:
            check(ms)
            try:
                made = early.take(ms.name)
            except OSError as e:
                raise failed(ms, e) from None
            if made is None:
                self.k.maps[ms.name] = make(ms)
            else:
                self.k.maps[ms.name], self.ringbuf = made
        early.drop_unused()         # a ring buffer guessed and not needed
        types = {} if self.opts.dry_run else self._group_attach_types()
        parallel.each(lambda ps: self.load_program(ps, types.get(ps.name)), self.spec.programs,
                      self.k.progs, _name)
        if any(ms.map_type == 7 for ms in self.spec.maps):     # kstack/ustack: printed from there
            from ptrace_lang.runtime.symbols import use_maps

            use_maps(self.k.maps)
        g = self.k.maps.get("globals")
        if g is not None:
            g.update(struct.pack("<I", 0), struct.pack("<Q", time.clock_gettime_ns(time.CLOCK_MONOTONIC)))

    def _probe_span(self, ps: S.ProgramSpec):
        """Where the script wrote the probe of a program (its first attach point)."""
        for a in self.spec.attachments:
            if a.program == ps.name and a.span.line:
                return a.span
        return S.NO_SPAN

    def _verifier_failure(self, ps: S.ProgramSpec, e) -> RuntimeFailure:
        span = None
        if e.insn_index is not None and 0 <= e.insn_index < len(ps.spans):
            span = ps.spans[e.insn_index]
        msg = f"the kernel's verifier rejected probe program '{ps.name}': {e.summary}"
        hints = []
        if "bpf_override_return" in e.summary:      # override(): a kernel build option
            hints.append("override() needs a kernel built with CONFIG_BPF_KPROBE_OVERRIDE "
                         "(and CONFIG_FUNCTION_ERROR_INJECTION)")
        if e.insn_index is not None:
            hints.append(f"failing instruction #{e.insn_index}; run with -v for the full verifier log")
        err = RuntimeFailure(msg, span if span is not None and span.line else Span("", 0, 0, 0, 0), hints)
        err.verifier_log = e.log
        return err

    # ------------------------------------------------------------------ attaching
    def _group_attach_types(self) -> dict:
        """Program name -> the expected_attach_type its provider wants for all its targets at
        once (``Provider.group_attach_type``: kprobe_multi), for programs whose provider has one."""

        by_prog: dict = {}
        for a in self.spec.attachments:
            by_prog.setdefault(a.program, []).append(a)
        out = {}
        for name, atts in by_prog.items():
            fn = getattr(providers.get(atts[0].provider), "group_attach_type", None)
            if fn is not None:
                t = fn([a.target for a in atts])
                if t:
                    out[name] = t
        self._group_types = out
        return out

    def load_program(self, ps: S.ProgramSpec, expected_attach_type: int | None = None) -> int:
        """Load one program, its map references patched with the fds of the maps created;
        a verifier rejection names the script line (``_verifier_failure``)."""
        from ptrace_lang.kernel import progs as kprogs

        code = bytearray(ps.insns)
        for idx, map_name in ps.map_relocs:
            struct.pack_into("<i", code, idx * 8 + 4, self.k.maps[map_name].fd)
        if expected_attach_type is None:
            expected_attach_type = ps.expected_attach_type
        btf_fd = -1
        func_info = None
        try:
            if ps.func_btf:
                func_info = self._func_info(ps)
            if ps.attach_btf_module:
                from ptrace_lang.kernel.btfobj import module_btf_fd

                btf_fd = module_btf_fd(ps.attach_btf_module)
            return kprogs.load_program(ps.prog_type, bytes(code),
                                       self.spec.config.get("license", "GPL"), name=ps.name,
                                       expected_attach_type=expected_attach_type,
                                       attach_btf_id=ps.attach_btf_id,
                                       attach_prog_fd=max(btf_fd, 0), func_info=func_info)
        except OSError as e:
            if ps.attach_btf_id:    # BTF-bound programs: the provider explains a refusal
                from ptrace_lang.providers.fentry import load_failure

                why = load_failure(ps, e)
                if why is not None:
                    raise RuntimeFailure(why, self._probe_span(ps)) from None
            if isinstance(e, kprogs.VerifierError):
                if e.summary.strip():
                    raise self._verifier_failure(ps, e) from None
                raise RuntimeFailure(f"prog '{ps.name}': failed to load: {os.strerror(e.errno)}",
                                     self._probe_span(ps)) from None
            raise RuntimeFailure(f"prog '{ps.name}': failed to load: {e.strerror or e}",
                                 self._probe_span(ps)) from None
        finally:
            if btf_fd >= 0:
                os.close(btf_fd)
            if func_info is not None:       # the program keeps its own reference to the BTF
                os.close(func_info[0])

    def _func_info(self, ps: S.ProgramSpec) -> tuple[int, bytes]:
        """The BTF object of a program with callbacks (compiled into ``ps.func_btf``) loaded,
        with its func_info records (the caller closes the BTF fd once the program is loaded)."""
        from ptrace_lang.kernel import progs as kprogs

        try:
            fd = kprogs.load_btf(ps.func_btf)
        except OSError as e:
            raise RuntimeFailure(f"prog '{ps.name}': failed to load the BTF of its functions: "
                                 f"{e.strerror or e}") from None
        return fd, ps.func_info

    def run_test(self, prog_name: str) -> None:
        from ptrace_lang.kernel import progs as kprogs

        kprogs.test_run(self.k.progs[prog_name], ctx_in=bytes(64))

    def attach_all(self) -> int:

        count = 0
        grouped = set()
        tried = set()
        # in the order of spec.attachments (the compiler orders them so that blocks on one
        # event run in declaration order), a one-link program where its first target is
        for a in self.spec.attachments:
            name = a.program
            if name in self._group_types and name not in tried:
                # all targets of the program in one link (kprobe_multi); if the kernel refuses
                # the link, the program is loaded again for the one-by-one path
                tried.add(name)
                atts = [x for x in self.spec.attachments if x.program == name]
                prov = providers.get(atts[0].provider)
                try:
                    self.k.links.extend(prov.attach_group([x.target for x in atts],
                                                          self.k.progs[name],
                                                          [x.cookie for x in atts]))
                    grouped.add(name)
                    count += len(atts)
                except OSError:
                    ps = next(p for p in self.spec.programs if p.name == name)
                    old_fd = self.k.progs[name]
                    self.k.progs[name] = self.load_program(ps, 0)
                    os.close(old_fd)
            if a.program in grouped:
                continue
            prov = providers.get(a.provider)
            if prov.runs_by_test_run:
                count += 1
                continue
            target = providers.Target(a.provider, a.probe_name, a.target)
            try:
                made = prov.attach(target, self.k.progs[a.program], a.cookie)
                self.k.links.extend(made)
                if prov.periodic:      # its ticks are counted (missed_ticks)
                    self._ticks.append((a.program, a.target, made))
            except OSError as e:
                hints = []
                if e.errno == errno.EMFILE:
                    hints.append("every attach point takes two file descriptors: raise the limit "
                                 "(ulimit -n) or attach fewer probes")
                raise RuntimeFailure(f"probe '{a.probe_name}': failed to attach: {e.strerror or e}",
                                     a.span, hints) from None
            count += 1
        return count

    # ------------------------------------------------------------------ events
    def _note_counters(self) -> None:
        """The counters as exit() is seen: records dropped after it, while the probes were
        still attached, are not losses (they would not have been printed)."""
        if self._counters_at_stop is None:
            self._counters_at_stop = self._read_counters()

    def _read_counters(self) -> tuple[int, int, int] | None:
        m = self.k.maps.get(self.spec.counters_map)
        if m is None:
            return None
        raw = m.lookup(struct.pack("<I", 0)) or bytes(8 * S.NUM_COUNTERS)
        return struct.unpack_from("<QQQ", raw, 8 * S.COUNTER_LOST_EVENTS)

    def report_counters(self) -> None:
        if self._missed_ticks:
            self.err.write(f"WARNING: {self._missed_ticks} ticks of interval probes were missed "
                           "(their CPU was running another probe, or the timer fired late)\n")
        if self._system_not_run:
            self.err.write(f"WARNING: {self._system_not_run} system() commands were not run: "
                           "the run was interrupted\n")
        counters = self._read_counters()
        if counters is None:
            self.err.flush()
            return
        if any(ms.map_type == 7 for ms in self.spec.maps):
            from ptrace_lang.runtime.symbols import report_stack_failures

            report_stack_failures(self)
        lost, full, failed = counters
        if self._counters_at_stop is not None:
            lost = self._counters_at_stop[0]
        if self._skb is not None:       # skboutput packets that did not reach their file
            lost += self._skb.lost
        if self.opts.output_format == "json":
            from ptrace_lang.runtime.format import json_object

            if lost:
                self.out.write(json_object("lost_events", {"events": lost}))
            if full or failed:
                self.out.write(json_object("errors", {"map_full": full, "read_failed": failed}))
            self.out.flush()
            return
        if lost:
            self.err.write(f"Lost {lost} events\n")
        if not self.opts.warnings:
            full = failed = 0
        if full:
            also = (" or the size of a declared map" if self.spec.config.get("declared_maps")
                    else "")
            self.err.write(f"WARNING: {full} map updates failed: a map is full "
                           f"(raise max_map_keys, now {self.spec.config.get('max_map_keys')}{also})\n")
        if failed:
            self.err.write(f"WARNING: {failed} memory reads failed (an invalid address read: str(), a dereference or a field)\n")
        self.err.flush()

    # ------------------------------------------------------------------ the run
    def _install_signals(self):
        r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wakeup_r, self._wakeup_w = r, w
        self._got_signal = False

        def handler(signum, frame):
            self._got_signal = True

        old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
        # self:signal:SIG... probes: the signal runs their programs (in the loop, not here)
        self._self_probes = {}
        for a in self.spec.attachments:
            if providers.runs(a.provider) == "signal":
                self._self_probes.setdefault(int(a.target), []).append(a.program)
        self._self_pending = []

        def self_handler(signum, frame):
            self._self_pending.append(signum)

        for sig in self._self_probes:
            old[sig] = signal.signal(sig, self_handler)
        # SIGUSR1 prints every map and the run goes on, as bpftrace (unless a
        # self:signal:SIGUSR1 probe takes it)
        self._usr1 = False
        if signal.SIGUSR1 not in old:
            def usr1_handler(signum, frame):
                self._usr1 = True

            old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, usr1_handler)
        from ptrace_lang.signals import PENDING_USR1

        if PENDING_USR1:            # came while the command started (cli._on_usr1)
            PENDING_USR1.clear()
            if signal.SIGUSR1 in self._self_probes:
                self._self_pending.append(signal.SIGUSR1)
            else:
                self._usr1 = True
        old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        return old, old_fd

    def _restore_signals(self, saved) -> None:
        old, old_fd = saved
        signal.set_wakeup_fd(old_fd)
        for s, h in old.items():
            signal.signal(s, h)
        for fd in (self._wakeup_r, self._wakeup_w):
            if fd >= 0:
                os.close(fd)

    def start(self) -> int:
        """Create the maps, load the programs, run the begin probes and attach the rest;
        return the number of probes (begin's output is held in ``pending`` until then)."""
        self.load()
        rb_spec = next((m for m in self.spec.maps if m.name == self.spec.ringbuf_map), None)
        if rb_spec is not None and self.ringbuf is None:
            from ptrace_lang.kernel.ringbuf import RingBuffer      # (mmap: only when printing)

            self.ringbuf = RingBuffer(self.k.maps[rb_spec.name].fd, rb_spec.max_entries)
        if self.opts.dry_run:
            return 0
        if S.SKB_OUTPUT_MAP in self.k.maps:        # skboutput(): its pcap files and reader
            from ptrace_lang.runtime.pcap import SkbCapture

            self._skb = SkbCapture(self.spec, self.k.maps[S.SKB_OUTPUT_MAP])
        begins = [a for a in self.spec.attachments if providers.runs(a.provider) == "start"]
        # hold begin's output until the probes are attached, as bpftrace prints it after
        # the "Attached" line (print(), clear() and system() in begin too); an exit() in begin
        # means nothing else needs attaching
        self._holding = True
        try:
            for a in begins:
                self.run_test(a.program)
            self.drain(flush=False)
        finally:
            self._holding = False
        if self.stopping or self._got_signal:
            # as bpftrace says "Attaching N probes" before begin runs: every probe counts
            return len(self.spec.attachments)
        if any(providers.get(a.provider).periodic for a in self.spec.attachments):
            # the runs of interval programs are counted, to report the ticks that did not run
            # them (a tick that lands while another probe runs on its CPU is skipped)
            from ptrace_lang.kernel.progs import enable_stats

            try:
                self._stats_fd = enable_stats()
            except OSError:
                pass
        return self.attach_all()

    def missed_ticks(self) -> int:
        """Ticks of interval probes that did not run their program so far: the ticks their
        cpu-clock events counted less the runs the kernel counted (one in flight allowed)."""
        if self._stats_fd < 0 or not self._ticks:
            return 0
        from ptrace_lang.kernel.progs import prog_info

        expected: dict = {}
        for prog, target, made in self._ticks:
            unit, n = target.split(":")
            period = max(1, 1_000_000_000 // int(n)) if unit == "hz" else int(n)
            for link in made:
                try:
                    ns = struct.unpack("<Q", os.read(link.perf_fd, 8))[0]
                except (OSError, struct.error, AttributeError):
                    return 0
                expected[prog] = expected.get(prog, 0) + ns // period
        missed = 0
        for prog, ticks in expected.items():
            try:
                runs = prog_info(self.k.progs[prog])["run_cnt"]
            except OSError:
                return 0
            missed += max(0, ticks - runs - 1)
        return missed

    @property
    def has_running_probes(self) -> bool:
        # (iter probes run once, in run_iterators, and need no event loop)
        return any(providers.runs(a.provider) in ("event", "signal") for a in self.spec.attachments)

    def run_iterators(self) -> None:
        """iter: probes: read each iterator to its end (its program runs once per object)."""
        for link in list(self.k.links):
            run = getattr(link, "run", None)
            if run is None:
                continue
            try:
                run()
            except OSError as e:
                raise RuntimeFailure(f"iterator: {e.strerror or e}") from None
            self.drain()

    def finish(self) -> None:
        """Stop the probes, print what came before, run the end probes."""
        # detaching links is quick when done in parallel (closing the perf events behind
        # them is slow and is left to the final teardown); what came before still prints,
        # what came after an exit() does not
        self.detach()
        if self._skb is not None:
            self._skb.stop()
        self.drain()
        self.stopping = False
        for a in self.spec.attachments:
            if providers.runs(a.provider) == "end":
                self.run_test(a.program)
        self.drain()

    def announce(self, n: int) -> None:
        """The "Attached N probes" line (an attached_probes object in JSON)."""
        if self.opts.quiet:
            return
        if self.opts.output_format == "json":
            from ptrace_lang.runtime.format import json_object

            self.out.write(json_object("attached_probes", {"probes": n}))
            self.out.flush()
        else:
            self.err.write(f"Attached {n} probe{'s' if n != 1 else ''}\n")
            self.err.flush()

    def notify_attached(self) -> None:
        """With ``__BPFTRACE_NOTIFY_PROBES_ATTACHED`` in the environment, the marker line in
        the output once every probe is attached (wrappers of bpftrace wait for it); not for the
        Python API, whose records go to its own sink."""
        if self.opts.sink is None and "__BPFTRACE_NOTIFY_PROBES_ATTACHED" in os.environ:
            self.out.write("__BPFTRACE_NOTIFY_PROBES_ATTACHED\n")
            self.out.flush()

    def run(self) -> int:
        saved = self._install_signals()
        if self.opts.interrupted is not None and self.opts.interrupted():
            self._got_signal = True     # (its KeyboardInterrupt was lost in an import): end now
        _raise_fd_limit(2 * len(self.spec.attachments) + len(self.spec.maps)
                        + len(self.spec.programs) + 64)
        proc = self.opts.process
        try:
            n = self.start()
            if self.opts.dry_run:
                return 0
            self.announce(n)
            self.notify_attached()
            if self.opts.started is not None:
                self.opts.started()
            self._flush()
            running = not self.stopping and not self._got_signal
            if proc is not None and running:
                # -c: the command runs only now, with every probe in place
                proc.release()
            if running:
                self.run_iterators()
                running = not self.stopping and not self._got_signal
            if running and (self.has_running_probes or proc is not None):
                self._loop()
            if proc is not None:
                # -c: a command still running when tracing stops is ended, as bpftrace does
                # (after a Ctrl-C it got the SIGINT too: it is given a moment to end by itself)
                proc.stop(after_signal=self._got_signal)
            self.finish()
            if self.spec.config.get("print_maps_on_exit", True):
                self.print_maps()
            self.report_counters()
            return self.exit_code
        finally:
            if proc is not None:
                proc.close()      # (a child still held is killed: it never runs the command)
            try:
                self.close()
            except Exception:  # noqa: BLE001 - keep the error that got us here
                pass
            self._restore_signals(saved)

    def _loop(self) -> None:
        ep = select.epoll()
        proc = self.opts.process
        try:
            if self.ringbuf is not None:
                ep.register(self.ringbuf.map_fd, select.EPOLLIN)
            ep.register(self._wakeup_r, select.EPOLLIN)
            if proc is not None:
                ep.register(proc.pidfd, select.EPOLLIN)
            while not self.stopping and not self._got_signal:
                for fd, _ in ep.poll(-1):
                    if proc is not None and fd == proc.pidfd:
                        self._process_exited = True
                if self._self_pending:
                    self.run_self_probes()
                taken = self._taken
                self._drain(True, gather=True)
                if self._usr1:
                    self._usr1 = False
                    self.print_maps(preamble=False)
                if self._process_exited:
                    break      # what it did last is drained after detaching (finish)
                if (self._taken != taken and not self.stopping
                        and self.ringbuf.available() < GATHER_BYTES):
                    # records came, more are likely on their way: let them gather in the ring
                    # buffer a moment, to be taken and written by the thousand (a wakeup for
                    # every few records costs more than formatting them)
                    time.sleep(GATHER_SECONDS)
        finally:
            ep.close()

    def run_self_probes(self) -> None:
        """Run the programs of the self:signal probes whose signal arrived (once per signal)."""
        pending, self._self_pending = self._self_pending, []
        for sig in pending:
            for prog in self._self_probes.get(sig, ()):
                self.run_test(prog)

    def detach(self) -> None:
        """Detach every attached program (perf events closed in the background when many)."""
        if self._ticks:
            self._missed_ticks = self.missed_ticks()
            self._ticks = []
        links, self.k.links = self.k.links, []
        _close_all(links)

    def close(self) -> None:
        if self._stats_fd >= 0:
            os.close(self._stats_fd)
            self._stats_fd = -1
        objs = list(self.k.links)
        self.k.links.clear()
        if self._skb is not None:
            objs.append(self._skb)
            self._skb = None
        if self.ringbuf is not None:
            objs.append(self.ringbuf)
            self.ringbuf = None
        objs.extend(_FdCloser(fd) for fd in self.k.progs.values())
        self.k.progs.clear()
        objs.extend(self.k.maps.values())
        self.k.maps.clear()
        _close_all(objs)


def _close_all(objs: list) -> None:
    """``teardown.close_all``, imported only now (it is not needed to start). Out of file
    descriptors (attaching failed with EMFILE), the import itself needs one: one object is
    closed first to free it, and should the import still fail, they are closed one by one."""
    for _ in range(2):
        try:
            from ptrace_lang.kernel.teardown import close_all
        except (ImportError, OSError):
            if objs:
                _close_quietly(objs.pop())
            continue
        close_all(objs)
        return
    for obj in objs:
        _close_quietly(obj)


def _close_quietly(obj) -> None:
    try:
        obj.close()
    except Exception:  # noqa: BLE001 - teardown goes on whatever one object does
        pass


def _raise_fd_limit(needed: int | None = None) -> None:
    """Two file descriptors per attach point: take the hard limit, as bpftrace does (only
    when the soft limit could be short: ``needed``, when given, is a generous estimate)."""
    if needed is not None:
        try:
            if needed < os.sysconf("SC_OPEN_MAX"):   # the soft limit, without importing resource
                return
        except (OSError, ValueError):
            pass
    import resource

    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (OSError, ValueError):
        pass


class _FdCloser:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def close(self) -> None:
        os.close(self.fd)
