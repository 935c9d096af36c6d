"""Flame graphs of stack maps (-f folded, -f flamegraph; ptrace_lang/flamegraph.py) from
synthetic maps: folded lines against a golden file, the SVG as XML (frames, widths), and the
page's zoom and search run in a headless browser when one is installed."""
from __future__ import annotations

import os
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET

import pytest

from ptrace_lang import flamegraph as fg
from ptrace_lang.runtime.format import MapData, Stack
from ptrace_lang.spec import Field, UserMapSpec

GOLDEN = os.path.join(os.path.dirname(__file__), "golden", "flamegraph", "cpu.folded")
NS = "{http://www.w3.org/2000/svg}"
KINDS = ["kstack", "ustack", "other"]


def _map() -> MapData:
    """@[kstack, ustack, comm] = count(), as read: stacks innermost frame first."""
    k_read = Stack(["vfs_read+18", "ksys_read+100", "do_syscall_64+130"])
    k_none = Stack([])
    u_a = Stack(["read+4", "work+20", "main+9"])
    u_b = Stack(["compute+3", "main+40"])
    return MapData("@", "count", [
        ((k_read, u_a, "app"), 30),
        ((k_none, u_b, "app"), 60),
        ((k_none, Stack(["compute+7", "main+40"]), "app"), 10),     # same function: merged
        ((Stack(["ffffffff81000000 idle+1 ([kernel.kallsyms])"]), Stack([]), "swapper/0"), 100),
    ], True)


def _um() -> UserMapSpec:
    key = Field("tuple", 0, 40, fields=[Field("user", 0, 8, fmt="kstack"),
                                         Field("user", 8, 16, fmt="ustack"),
                                         Field("str", 24, 16)])
    return UserMapSpec("@", "count", "m_", key)


def test_key_kinds_from_the_map_spec():
    assert fg.key_kinds(_um()) == KINDS
    assert fg.is_stack_map(_um())
    assert not fg.is_stack_map(UserMapSpec("@c", "count", "m_c", Field("str", 0, 16)))


def test_frame_names_lose_offsets():
    assert fg.frame_name("vfs_read+18") == "vfs_read"
    assert fg.frame_name("ffffffff81000000 idle+1 ([kernel.kallsyms])") == "idle"
    assert fg.frame_name("0x7f001234") == "0x7f001234"
    assert fg.frame_name("a;b+0x10") == "a:b"
    assert fg.frame_name("operator+") == "operator+"


def test_folded_golden():
    text = fg.folded(fg.stacks_of(_map().entries, KINDS))
    if os.environ.get("PTRACE_UPDATE_GOLDEN"):
        with open(GOLDEN, "w") as f:
            f.write(text)
    with open(GOLDEN) as f:
        assert text == f.read()


def test_plain_maps_and_the_repl_entry_point(tmp_path):
    # plain_map's form: stacks as tuples of frames
    plain = {(("vfs_read+1",), ("main+2",), "app"): 4}
    out = tmp_path / "g.folded"
    assert fg.write_flamegraph(plain, str(out), KINDS) == 1
    assert out.read_text() == "app;main;vfs_read_[k] 4\n"


def _svg(tmp_path):
    path = tmp_path / "cpu.svg"
    fg.write_flamegraph(_map(), str(path), KINDS, title="Flame Graph: @")
    return path


def test_svg_frames_and_widths(tmp_path):
    root = ET.parse(_svg(tmp_path)).getroot()
    frames = root.findall(f".//{NS}g[@class='fr']")
    # all; app (root key) + main, work, read + vfs_read chain ... counted by hand:
    # all, app, swapper/0, main, work, read, do_syscall_64, ksys_read, vfs_read, compute, idle
    names = sorted(g.get("data-n") for g in frames)
    assert names == sorted(["all", "app", "swapper/0", "main", "work", "read", "do_syscall_64",
                            "ksys_read", "vfs_read", "compute", "idle"])
    assert root.get("data-frames") == str(len(frames))
    by = {g.get("data-n"): g for g in frames}
    inner = fg.WIDTH - 20
    width = lambda n: float(by[n].find(f"{NS}rect").get("width"))      # noqa: E731
    assert width("all") == pytest.approx(inner, abs=0.01)
    assert width("app") == pytest.approx(inner * 100 / 200, abs=0.01)
    assert width("compute") == pytest.approx(inner * 70 / 200, abs=0.01)
    assert width("vfs_read") == pytest.approx(inner * 30 / 200, abs=0.01)
    assert by["vfs_read"].get("data-k") == "k" and by["main"].get("data-k") == "u"
    assert by["app"].get("data-k") == "o"
    # kernel and user frames in different colours; the title gives count and share
    fill = lambda n: by[n].find(f"{NS}rect").get("fill")      # noqa: E731
    assert fill("vfs_read") != fill("main")
    assert by["compute"].find(f"{NS}title").text == "compute (70 samples, 35.00%)"
    # children sit on their parent (root at the bottom), inside its span
    y = lambda n: float(by[n].find(f"{NS}rect").get("y"))      # noqa: E731
    assert y("app") < y("all") and y("main") < y("app")
    assert root.find(f".//{NS}script") is not None


def _browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _headless(browser: str, tmp_path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                           "--disable-background-networking", "--no-first-run",
                           "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}",
                           *args], capture_output=True, text=True, timeout=90)


_PROBE = """<script><![CDATA[
(function () {
  var f = window.flame, out = {};
  var compute = f.frames.filter(function (g) { return g.getAttribute('data-n') === 'compute'; })[0];
  compute.dispatchEvent(new MouseEvent('click', {bubbles: true}));
  out.zoomed = document.documentElement.getAttribute('data-zoomed');
  out.width = +compute.querySelector('rect').getAttribute('width');
  out.hidden = f.frames.filter(function (g) { return g.classList.contains('hide'); }).length;
  out.ancestors = f.frames.filter(function (g) { return g.classList.contains('anc'); }).length;
  out.resetShown = !document.getElementById('reset').classList.contains('off');
  f.reset();
  out.afterReset = +compute.querySelector('rect').getAttribute('width');
  out.matched = f.search('^(vfs_read|ksys_read)$');
  document.documentElement.setAttribute('data-test', JSON.stringify(out));
})();
]]></script>
</svg>"""


def test_svg_in_a_headless_browser(tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no headless browser: apt-get install -y chromium")
    svg = _svg(tmp_path)
    # a screenshot of the page as it is
    shot = tmp_path / "shot.png"
    r = _headless(browser, tmp_path, f"--screenshot={shot}", "--window-size=1200,400",
                  svg.as_uri())
    assert shot.exists(), r.stderr[-2000:]
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", head[16:24]) == (1200, 400)
    assert shot.stat().st_size > 5000        # something was drawn, not a blank page
    # a click that zooms, reset and search, driven by a script added to a copy of the page
    probe = tmp_path / "probe.svg"
    probe.write_text(svg.read_text().replace("</svg>", _PROBE))
    r = _headless(browser, tmp_path, "--dump-dom", probe.as_uri())
    import json
    import re

    m = re.search(r'data-test="([^"]*)"', r.stdout)
    assert m, (r.stdout[-2000:], r.stderr[-2000:])
    got = json.loads(m.group(1).replace("&quot;", '"'))
    inner = fg.WIDTH - 20
    assert got["zoomed"] == "compute"
    assert got["width"] == pytest.approx(inner, abs=0.01)           # the clicked frame fills it
    assert got["ancestors"] == 3                                    # all, app, main dimmed
    assert got["hidden"] == 11 - 4
    assert got["resetShown"] is True
    assert got["afterReset"] == pytest.approx(inner * 70 / 200, abs=0.01)
    assert got["matched"] == pytest.approx(30 / 200)                # nested matches once
