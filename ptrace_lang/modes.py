"""The run modes that change what a run produces: ``--serve ADDR:PORT`` (maps as Prometheus
metrics while it runs: ``exporter``), ``-f flamegraph`` / ``-f folded`` / ``--flamegraph
FILE`` (maps keyed by stacks as flame graphs at exit: ``flamegraph``) and ``--mode bench``
(``bench:`` blocks run many times, their average times in a table: ``run_bench``). ``cli``
hands a compiled program here (``run_mode``) instead of running its plain ``Session``; each
mode is a ``Session`` subclass overriding public methods (``start``, ``announce``, ``finish``,
``print_maps``). ``keep_probes`` is ``--probe-filter`` (and bench mode's choice of blocks).
"""
from __future__ import annotations

import gc
import os
import sys

from ptrace_lang.messages import say
from ptrace_lang.runtime.session import RunOptions, Session


def parse_listen(text: str) -> tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:9100``, ``:9100`` for every address) -> (addr, port)."""
    addr, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(say("serve_address", text=text))
    addr = addr.strip("[]") or "0.0.0.0"
    return addr, int(port)


def run_mode(spec, opts: dict, text: str, filename: str, process) -> int:
    if opts.get("mode") == "bench":
        return run_bench(spec, opts, process)
    if opts.get("serve"):
        return _run_served(spec, opts, text, filename, process)
    return _run_flamegraph(spec, opts, process)


def keep_probes(spec, keep):
    """The program with only the attachments ``keep(attachment)`` accepts (and begin/end):
    the programs left without one are not loaded (bpftrace's ``--probe-filter`` marks them
    not to be loaded the same way)."""
    from ptrace_lang import providers
    from ptrace_lang.records import replace

    kept = [a for a in spec.attachments
            if providers.runs(a.provider) in ("start", "end") or keep(a)]
    used = {a.program for a in kept}
    return replace(spec, attachments=kept, programs=[p for p in spec.programs if p.name in used])


def probe_filter(spec, pattern: str):
    """``--probe-filter REGEX``: the probes whose names the regular expression matches (a
    search, as ``grep``), begin and end always; ValueError for a bad expression."""
    import re

    try:
        rx = re.compile(pattern)
    except re.error as e:
        raise ValueError(str(e)) from None
    return keep_probes(spec, lambda a: rx.search(a.probe_name) is not None)


def _run_options(opts: dict, process, out=None, **kw) -> RunOptions:
    return RunOptions(quiet=opts["quiet"], verbose=opts["verbose"], dry_run=opts["dry_run"],
                      out=out, output_format=opts["format"], buffering=opts["buffering"],
                      process=process, warnings=not opts["no_warnings"], started=gc.enable, **kw)


def _run(session: Session, opts: dict) -> int:
    """``session.run()`` with the command's error rendering (as ``cli._compile_and_run``)."""
    from ptrace_lang.errors import PtraceError, report

    try:
        return session.run()
    except PtraceError as e:
        return report(e, opts["verbose"])
    except Exception as e:
        from ptrace_lang.errors import internal_error

        return internal_error(e)


def _open_out(path: str | None):
    if path is None:
        return None, 0
    try:
        return open(path, "w", encoding="utf-8", errors="surrogateescape"), 0
    except OSError as e:
        sys.stderr.write(f"ERROR: {say('output_open', path=path, reason=e.strerror)}\n")
        return None, 1


# ---------------------------------------------------------------------- --serve

class _ServeSession(Session):
    collector = None
    server = None

    def announce(self, n: int) -> None:
        self.collector.attached = n
        self.collector.ready = True
        super().announce(n)

    def finish(self) -> None:
        # no scrape reads the maps while they are detached, printed and closed
        self.stop_serving()
        super().finish()

    def stop_serving(self) -> None:
        if self.collector is not None:
            with self.collector._lock:
                self.collector.ready = False
        if self.server is not None:
            server, self.server = self.server, None
            server.shutdown()
            server.server_close()


def _run_served(spec, opts: dict, text: str, filename: str, process) -> int:
    from ptrace_lang.exporter import MapCollector, parse_label_config

    try:
        addr, port = parse_listen(opts["serve"])
        parse_label_config(spec.config.get("metric_labels", ""))
    except ValueError as e:
        sys.stderr.write(f"ERROR: {e}\n")
        return 1
    out, rc = _open_out(opts["output"])
    if rc:
        return rc
    try:
        session = _ServeSession(spec, _run_options(opts, process, out))
        session.collector = MapCollector(session, text, filename)
        # the port is taken before anything is loaded: a port in use leaves nothing attached
        try:
            session.server = make_server(addr, port, session.collector)
        except OSError as e:
            sys.stderr.write("ERROR: " + say("serve_listen", serve=opts["serve"], addr=addr,
                                             port=port, reason=e.strerror or e) + "\n")
            return 1
        import threading

        threading.Thread(target=session.server.serve_forever, kwargs={"poll_interval": 0.2},
                         name="ptrace-metrics", daemon=True).start()
        if not opts["quiet"]:
            host = f"[{addr}]" if ":" in addr else addr
            sys.stderr.write(f"Serving metrics on http://{host}:{session.server.server_port}"
                             f"/metrics\n")
        try:
            return _run(session, opts)
        finally:
            session.stop_serving()
            dropped = session.collector.dropped_total
            if dropped and not opts["no_warnings"]:
                sys.stderr.write("WARNING: " + say("serve_dropped", dropped=dropped,
                                                   most=session.collector.max_series) + "\n")
    finally:
        if out is not None:
            out.close()


def make_server(addr: str, port: int, collector):
    """A threaded HTTP server of ``/metrics`` (Prometheus text, or OpenMetrics when the
    scraper asks for it: prometheus_client's exposition), bound now; ``serve_forever`` on a
    thread of its own. Other paths get 404, other methods 405, malformed requests 400."""
    import socket
    from wsgiref.simple_server import WSGIRequestHandler, make_server as wsgi_server

    from prometheus_client import CollectorRegistry, make_wsgi_app
    from prometheus_client.exposition import ThreadingWSGIServer

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    metrics = make_wsgi_app(registry)

    def app(environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        method = environ.get("REQUEST_METHOD", "")
        if path not in ("/metrics", "/"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"404 Not Found: the metrics are at /metrics\n"]
        if method != "GET":
            start_response("405 Method Not Allowed", [("Allow", "GET"),
                                                      ("Content-Type", "text/plain")])
            return [b"405 Method Not Allowed: use GET\n"]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [b'<html><body><a href="/metrics">metrics</a> of ptrace</body></html>\n']
        return metrics(environ, start_response)

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):      # no line per scrape on stderr
            pass

    class Server(ThreadingWSGIServer):
        address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET

    return wsgi_server(addr, port, app, Server, handler_class=Quiet)


# ---------------------------------------------------------------------- flame graphs

class _FlameSession(Session):
    graph_path = None          # where the graph goes (None: stdout)
    graph_format = "svg"

    def print_maps(self) -> None:
        from ptrace_lang import flamegraph as fg
        from ptrace_lang.runtime.format import EXIT_PREAMBLE, format_maps

        stack_maps = [um for um in self.spec.user_maps if fg.is_stack_map(um)]
        paths = fg.output_paths(self.graph_path, [um.name for um in stack_maps])
        for um, path in zip(stack_maps, paths):
            target = path if path is not None else sys.stdout
            fg.write_flamegraph(self.read_user_map(um), target, fg.key_kinds(um),
                                self.graph_format, title=f"Flame Graph: {um.name}")
        if not stack_maps:
            self.err.write(f"WARNING: {say('flame_no_stack_map')}\n")
        rest = [self.read_user_map(um) for um in self.spec.user_maps if um not in stack_maps]
        if rest:
            self.out.write(EXIT_PREAMBLE + format_maps(rest, stats_style=self.opts.stats_style))
        self.out.flush()
        if hasattr(sys.stdout, "flush"):
            sys.stdout.flush()


def _run_flamegraph(spec, opts: dict, process) -> int:
    path = opts["flame_file"] or opts["output"]
    fmt = opts["flame"]
    # the graph takes the file (or stdout); the program's own output goes to stdout, or to
    # stderr when the graph is written on stdout
    out = sys.stderr if path is None else None
    session = _FlameSession(spec, _run_options(opts, process, out))
    session.graph_path = path
    session.graph_format = fmt
    if path is not None:
        try:
            with open(path, "a"):
                pass
        except OSError as e:
            sys.stderr.write(f"ERROR: {say('output_open', path=path, reason=e.strerror)}\n")
            return 1
    rc = _run(session, opts)
    if path is not None and os.path.exists(path) and os.path.getsize(path) == 0 and rc:
        os.unlink(path)
    return rc


# ---------------------------------------------------------------------- --mode bench

BENCH_SECONDS = 0.1          # each benchmark's runs take about this long in the kernel
BENCH_PACKET = bytes(64)     # the XDP program's input: a zeroed minimal Ethernet frame


def bench_repeat(ns_per_run: int) -> int:
    """How many runs make about BENCH_SECONDS, from one run's time (1,000 to 10,000,000)."""
    return max(1000, min(10_000_000, int(BENCH_SECONDS * 1e9) // max(ns_per_run, 1)))


def duration_text(ns: int) -> str:
    """A duration as bpftrace writes one: the largest unit it reaches, whole units."""
    for scale, unit in ((1_000_000_000, "s"), (1_000_000, "ms"), (1_000, "\u03bcs")):
        if ns >= scale:
            return f"{ns // scale}{unit}"
    return f"{ns}ns"


def bench_table(results: list[tuple[str, int]]) -> str:
    """bpftrace's table of benchmark results (name, average nanoseconds), and an empty line."""
    head, avg = "BENCHMARK", "AVERAGE TIME"
    width = max([len(head)] + [len(n) for n, _ in results])
    sep = f"+{'-' * (width + 2)}+{'-' * (len(avg) + 2)}+\n"
    rows = "".join(f"| {name:<{width}} | {duration_text(ns):<{len(avg)}} |\n"
                   for name, ns in results)
    return f"{sep}| {head:<{width}} | {avg} |\n{sep}{rows}{sep}\n"


class _BenchSession(Session):
    """Loads the program, runs each bench: block many times (in declaration order) and prints
    the table, then the maps as at exit; nothing is attached, and what the blocks print is
    discarded (the ring buffer is never read)."""
    results: list

    def start(self) -> int:
        from ptrace_lang import providers
        from ptrace_lang.kernel.progs import bench_run

        self.load()
        self.results = []
        if self.opts.dry_run:
            return 0
        for a in self.spec.attachments:
            if providers.runs(a.provider) != "bench":
                continue
            fd = self.k.progs[a.program]
            first = bench_run(fd, BENCH_PACKET, 100)
            self.results.append((a.target, bench_run(fd, BENCH_PACKET, bench_repeat(first))))
        return 0

    def announce(self, n: int) -> None:
        if self.opts.output_format == "json":
            from ptrace_lang.runtime.format import json_object

            self.out.write(json_object("benchmark_results", dict(self.results)))
        else:
            self.out.write(bench_table(self.results))
        self.out.flush()

    def notify_attached(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def report_counters(self) -> None:
        """(what the runs printed was discarded on purpose: no "Lost N events")"""

    @property
    def has_running_probes(self) -> bool:
        return False


def run_bench(spec, opts: dict, process) -> int:
    from ptrace_lang import providers

    spec = keep_probes(spec, lambda a: providers.runs(a.provider) == "bench")
    out, rc = _open_out(opts["output"])
    if rc:
        return rc
    try:
        return _run(_BenchSession(spec, _run_options(opts, process, out)), opts)
    finally:
        if out is not None:
            out.close()
