"""The mapping of decoded maps to Prometheus metrics (ptrace --serve; docs/exporter.md), on
synthetic maps: no kernel. And the deployment manifests of docs/deploy/ parse."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("prometheus_client", reason="prometheus_client is not installed (pip install prometheus_client)")

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.openmetrics.exposition import generate_latest as generate_om  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from ptrace_lang import exporter as X  # noqa: E402
from ptrace_lang.cli import parse_args  # noqa: E402
from ptrace_lang.runtime.format import MapData, Stack  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


class _Fixed:
    def __init__(self, fams):
        self.fams = fams

    def collect(self):
        return self.fams


def _expose(*mds, labels=None, max_series=X.MAX_SERIES, openmetrics=False):
    fams = []
    for md in mds:
        fams.extend(X.map_families(md, "", X.parse_label_config(labels or ""), max_series)[0])
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Fixed(fams))
    return (generate_om if openmetrics else generate_latest)(reg).decode()


def _samples(text):
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_names_are_sanitised():
    assert X.metric_name("@bytes") == "ptrace_bytes"
    assert X.metric_name("@") == "ptrace_map"
    assert X.metric_name("@a.b-c") == "ptrace_a_b_c"


def test_counts_are_counters_with_key_labels():
    text = _expose(MapData("@bytes", "count", [("bash", 3), ("cat", 5)], True),
                   MapData("@", "sum", [(("sshd", 7), 10)], True))
    assert "# TYPE ptrace_bytes_total counter" in text
    s = _samples(text)
    assert s[("ptrace_bytes_total", (("key", "bash"),))] == 3
    assert s[("ptrace_bytes_total", (("key", "cat"),))] == 5
    assert s[("ptrace_map_total", (("key0", "sshd"), ("key1", "7")))] == 10


def test_configured_label_names_and_escaping():
    md = MapData("@rd", "count", [(('a "q"\\\n', 12), 2)], True)
    text = _expose(md, labels="@rd:comm,pid")
    assert r'ptrace_rd_total{comm="a \"q\"\\\n",pid="12"} 2.0' in text
    s = _samples(text)
    assert s[("ptrace_rd_total", (("comm", 'a "q"\\\n'), ("pid", "12")))] == 2
    # fewer names than key elements: the rest are keyN
    text = _expose(md, labels="@rd:comm")
    assert 'pid' not in text and 'key1="12"' in text


def test_label_config_errors():
    assert X.parse_label_config("@a:x,y; @b: z ") == {"@a": ["x", "y"], "@b": ["z"]}
    assert X.parse_label_config("@a:le,__x") == {"@a": ["key_le", "key_x"]}
    for bad in ("a:x", "@a", "@a:", "@a:x,x"):
        with pytest.raises(ValueError):
            X.parse_label_config(bad)


def test_gauges_and_summary():
    text = _expose(MapData("@x", "value", [(None, 42)], False),
                   MapData("@avg", "avg", [("a", 7)], True),
                   MapData("@mx", "max", [(None, -3)], False),
                   MapData("@name", "value", [(None, "bash")], False),
                   MapData("@st", "stats", [(None, (4, 100))], False))
    s = _samples(text)
    assert "# TYPE ptrace_x gauge" in text and s[("ptrace_x", ())] == 42
    assert s[("ptrace_avg", (("key", "a"),))] == 7
    assert s[("ptrace_mx", ())] == -3
    assert s[("ptrace_name_info", (("value", "bash"),))] == 1
    assert "# TYPE ptrace_st summary" in text
    assert s[("ptrace_st_count", ())] == 4 and s[("ptrace_st_sum", ())] == 100


def test_hist_buckets_are_cumulative_with_inf():
    # hist: bucket 1 holds 0, 2 holds 1, 3 holds 2..3, 4 holds 4..7 (le inclusive)
    md = MapData("@lat", "hist", [(None, {1: 2, 3: 5, 4: 1})], False)
    assert X.hist_buckets(md, md.entries[0][1]) == [
        ("0", 2.0), ("1", 2.0), ("3", 7.0), ("7", 8.0), ("+Inf", 8.0)]
    neg = MapData("@n", "hist", [(None, {0: 1, 2: 1})], False)
    assert X.hist_buckets(neg, neg.entries[0][1])[0] == ("-1", 1.0)
    # lhist(v, 0, 30, 10): every bucket of the range, the open ones at both ends
    lh = MapData("@l", "lhist", [("a", {0: 1, 1: 2, 3: 4, 4: 8})], True, lhist=(0, 30, 10))
    assert X.hist_buckets(lh, lh.entries[0][1]) == [
        ("-1", 1.0), ("9", 3.0), ("19", 3.0), ("29", 7.0), ("+Inf", 15.0)]
    text = _expose(md, lh)
    assert "# TYPE ptrace_lat histogram" in text
    s = _samples(text)
    assert s[("ptrace_lat_bucket", (("le", "+Inf"),))] == 8
    assert s[("ptrace_l_bucket", (("key", "a"), ("le", "29")))] == 7
    om = _expose(md, lh, openmetrics=True)
    assert om.rstrip().endswith("# EOF") and 'ptrace_lat_bucket{le="+Inf"} 8.0' in om


def test_stack_keys_are_folded_labels():
    md = MapData("@s", "count", [(Stack(["leaf+1", "main+2"]), 3)], True)
    assert 'key="main+2;leaf+1"' in _expose(md)


def test_high_cardinality_is_capped_and_counted():
    md = MapData("@many", "count", [(f"k{i}", i) for i in range(50)], True)
    fams, dropped = X.map_families(md, "", {}, max_series=10)
    assert dropped == 40
    keys = {s.labels["key"] for s in fams[0].samples}
    assert keys == {f"k{i}" for i in range(40, 50)}      # the largest are kept


def test_tseries_hook():
    md = MapData("@ts", "tseries", [(None, [(1, 5), (2, 9)])], False)
    assert _samples(_expose(md))[("ptrace_ts", ())] == 9


def test_help_names_the_script_line():
    text = "BEGIN {}\n\ntracepoint:x:y { @bytes[comm] = count(); @b = 1; }\n"
    assert X.map_help(text, "t.bt", "@b") == "@b at t.bt:3"
    assert X.map_help(text, "t.bt", "@bytes") == "@bytes at t.bt:3"
    assert X.map_help("", "t.bt", "@z") == "@z"


def test_the_command_line():
    o = parse_args(["--serve", "127.0.0.1:9100", "-e", "BEGIN {}"])
    assert o["serve"] == "127.0.0.1:9100"
    o = parse_args(["-f", "flamegraph", "-o", "cpu.svg", "-e", "x"])
    assert o["flame"] == "svg" and o["output"] == "cpu.svg" and o["format"] == "text"
    assert parse_args(["-f", "folded", "x.bt"])["flame"] == "folded"
    o = parse_args(["--flamegraph=cpu.svg", "x.bt"])
    assert o["flame"] == "svg" and o["flame_file"] == "cpu.svg"
    from ptrace_lang.modes import parse_listen
    assert parse_listen("127.0.0.1:9100") == ("127.0.0.1", 9100)
    assert parse_listen(":9100") == ("0.0.0.0", 9100)
    assert parse_listen("[::1]:0") == ("::1", 0)
    for bad in ("9100x", "host", "h:99999"):
        with pytest.raises(ValueError):
            parse_listen(bad)


def test_the_daemonset_manifest_parses():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (pip install PyYAML)")
    with open(os.path.join(ROOT, "docs", "deploy", "ptrace-exporter-daemonset.yaml")) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    ds = next(d for d in docs if d["kind"] == "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True
    c = pod["containers"][0]
    assert c["securityContext"]["privileged"] is True
    assert "--serve" in " ".join(c["command"] + c.get("args", []))
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    assert {"/sys/kernel/tracing", "/sys/kernel/btf"} <= mounts
    paths = {v["hostPath"]["path"] for v in pod["volumes"] if "hostPath" in v}
    assert {"/sys/kernel/tracing", "/sys/kernel/btf"} <= paths
    port = c["ports"][0]["containerPort"]
    assert str(port) in " ".join(c["command"] + c.get("args", []))
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()


def test_the_systemd_unit_is_complete():
    import configparser

    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(os.path.join(ROOT, "docs", "deploy", "ptrace-exporter.service"))
    assert "--serve" in cp["Service"]["ExecStart"]
    assert cp["Install"]["WantedBy"] == "multi-user.target"
