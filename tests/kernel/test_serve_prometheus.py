"""ptrace --serve against a real Prometheus server (docs/exporter.md): two exporters on
loopback ports trace a deterministic workload, a Prometheus started here scrapes both every
second, and its query API must agree with the tracers' own final maps. Skipped, with the
reason, when Debian's `prometheus` package is not installed."""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from runner import Tracer, bpf_prog_names, named_workload, run

pytest.importorskip("prometheus_client", reason="prometheus_client is not installed (pip install prometheus_client)")

PROMETHEUS = shutil.which("prometheus")

# tracer A counts the reads of both workloads, tracer B those of the second only: summed by
# key across the two instances, h8wl_a counts once and h8wl_b twice
SCRIPT_A = ('tracepoint:syscalls:sys_enter_read /comm == "h8wl_a" || comm == "h8wl_b"/ '
            '{ @reads[comm] = count(); @size = hist(args.count); }')
SCRIPT_B = ('tracepoint:syscalls:sys_enter_read /comm == "h8wl_b"/ '
            '{ @reads[comm] = count(); @size = hist(args.count); }')
READS = {"h8wl_a": 300, "h8wl_b": 500}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _query(prom: str, expr: str) -> list:
    status, body = _get(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert status == 200, body
    data = json.loads(body)
    assert data["status"] == "success", data
    return data["data"]["result"]


def _final_reads(out: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"^@reads\[(\w+)\]: (\d+)$", out, re.M)}


@pytest.fixture
def prometheus(tmp_path):
    if PROMETHEUS is None:
        reason = "prometheus is not installed (apt-get install -y prometheus)"
        print(f"\nSKIPPED: {reason}", file=sys.stderr)
        pytest.skip(reason)
    ports = [_free_port(), _free_port()]
    web = _free_port()
    (tmp_path / "prometheus.yml").write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: ptrace\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}']\n")
    log = open(tmp_path / "prometheus.log", "w")
    p = subprocess.Popen([PROMETHEUS, f"--config.file={tmp_path / 'prometheus.yml'}",
                          f"--storage.tsdb.path={tmp_path / 'data'}",
                          f"--web.listen-address=127.0.0.1:{web}"],
                         stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{web}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if _get(f"{url}/-/ready", 1)[0] == 200:
                    break
            except OSError:
                pass
            assert p.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "prometheus.log").read_text()[-3000:]
            time.sleep(0.2)
        yield url, ports
    finally:
        p.terminate()
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        log.close()


def test_two_exporters_scraped_by_prometheus(prometheus):
    prom, ports = prometheus
    a = Tracer("--serve", f"127.0.0.1:{ports[0]}", "-e", SCRIPT_A)
    b = Tracer("--serve", f"127.0.0.1:{ports[1]}", "-e", SCRIPT_B)
    try:
        a.wait_attached()
        b.wait_attached()
        assert any("Serving metrics on http://127.0.0.1:" in line for line in a.err_lines)
        for name, n in READS.items():
            subprocess.run(named_workload(name, f"fd = os.open('/dev/zero', os.O_RDONLY); "
                                                f"[os.read(fd, 1000) for _ in range({n})]"),
                           check=True, timeout=60)
        # the exporter itself: metrics, and 4xx for what is not a scrape
        status, body = _get(f"http://127.0.0.1:{ports[0]}/metrics")
        assert status == 200 and b"# TYPE ptrace_reads_total counter" in body
        assert b"ptrace_tracer_attached_probes 1.0" in body
        assert _get(f"http://127.0.0.1:{ports[0]}/nothing")[0] == 404
        req = urllib.request.Request(f"http://127.0.0.1:{ports[0]}/metrics", data=b"x", method="POST")
        try:
            urllib.request.urlopen(req, timeout=5)
            assert False, "POST accepted"
        except urllib.error.HTTPError as e:
            assert e.code == 405
        with socket.create_connection(("127.0.0.1", ports[0]), 5) as s:
            s.sendall(b"GET /metrics NOT-HTTP\r\n\r\n")     # a malformed request line
            # (answered as HTTP/0.9 would be, without a status line: the page says 400)
            reply = s.recv(4096)
            assert b"Error code: 400" in reply, reply
        # Prometheus scrapes every second: wait for both targets to report the final counts
        expect_a = None
        deadline = time.monotonic() + 40
        sums = {}
        while time.monotonic() < deadline:
            targets = _query(prom, "up")
            sums = {r["metric"]["key"]: float(r["value"][1])
                    for r in _query(prom, "sum by (key) (ptrace_reads_total)")}
            if len(targets) == 2 and all(r["value"][1] == "1" for r in targets) and \
                    sums.get("h8wl_b", 0) >= 2 * READS["h8wl_b"] and \
                    sums.get("h8wl_a", 0) >= READS["h8wl_a"]:
                time.sleep(2.5)      # a scrape or two more, with nothing changing
                sums = {r["metric"]["key"]: float(r["value"][1])
                        for r in _query(prom, "sum by (key) (ptrace_reads_total)")}
                expect_a = True
                break
            time.sleep(0.5)
        assert expect_a, f"Prometheus did not see the counts: {sums}"
        q = _query(prom, "histogram_quantile(0.5, sum by (le) (ptrace_size_bucket))")
        assert len(q) == 1
        median = float(q[0]["value"][1])
        assert 511 < median <= 1023, median     # every read asked for 1000 bytes: [512, 1024)
        health = _query(prom, "sum(ptrace_tracer_lost_events_total)")
        assert float(health[0]["value"][1]) == 0
    finally:
        ra = a.stop()
        rb = b.stop()
    assert ra.rc == 0 and rb.rc == 0, (ra.err, rb.err)
    fa, fb = _final_reads(ra.out), _final_reads(rb.out)
    assert fa.keys() == {"h8wl_a", "h8wl_b"} and fb.keys() == {"h8wl_b"}, (ra.out, rb.out)
    assert fa["h8wl_a"] >= READS["h8wl_a"] and fb["h8wl_b"] >= READS["h8wl_b"]
    assert sums == {"h8wl_a": fa["h8wl_a"], "h8wl_b": fa["h8wl_b"] + fb["h8wl_b"]}
    assert "@size:" in ra.out       # Ctrl-C printed the final maps as usual


def test_a_port_in_use_is_an_error_and_nothing_stays_attached():
    before = bpf_prog_names().count("p0_0_tracepoint")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = run("--serve", f"127.0.0.1:{port}", "-e",
                "tracepoint:syscalls:sys_enter_read { @h8busy = count(); }", timeout=60)
    assert r.rc == 1
    assert f"cannot listen on 127.0.0.1 port {port}: Address already in use" in r.err
    assert "Attached" not in r.err
    assert bpf_prog_names().count("p0_0_tracepoint") <= before
