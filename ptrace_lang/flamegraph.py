"""Flame graphs of maps keyed by stacks (``-f flamegraph``, ``--flamegraph FILE``, ``-f folded``).

A map such as ``@[kstack, ustack, comm] = count()`` becomes stacks of frames, root first: the
key's other elements (``comm``) are the root frames, then the user stack from its outermost
call, then the kernel stack (a sample in a system call is user code that entered the kernel).
Frames lose their ``+offset`` so that samples at different addresses of one function merge.

``folded`` gives one ``frame;frame;frame N`` line per stack (kernel frames end in ``_[k]``, the
usual mark); ``render_svg`` an interactive SVG of our own: frames as wide as their count, a
title per frame (count and percentage), click to zoom, search, reset, kernel and user frames
in different colours, all in inline JavaScript so the file stands alone.

``write_flamegraph(map_values, path)`` is the entry point for the REPL (``flame @map FILE``)
and the Python API; ``session_flamegraph`` writes one from a running session's map.
"""
from __future__ import annotations

import zlib
from xml.sax.saxutils import escape, quoteattr

STACK_FMTS = ("kstack", "ustack")
WIDTH = 1200          # px of the image
FRAME_H = 16          # px of a frame
MIN_WIDTH = 0.1       # px: narrower frames are not drawn (they could not be seen or clicked)
_PAD = 10
_TOP = 54             # title, controls and legend
_BOTTOM = 26          # the details line
_CHAR = 7.0           # px of a character of the frames' 12px font, for fitting labels


# ---------------------------------------------------------------------- maps to stacks

def key_kinds(um) -> list[str]:
    """What each element of a map's key is: "kstack", "ustack" or "other" (from the
    ``UserMapSpec``); [] for a scalar map."""
    if um.key is None:
        return []
    fields = um.key.fields if um.key.kind == "tuple" else [um.key]
    return [f.fmt if f.kind == "user" and f.fmt in STACK_FMTS else "other" for f in fields]


def is_stack_map(um) -> bool:
    return any(k in STACK_FMTS for k in key_kinds(um)) and um.kind in ("count", "sum", "value")


def frame_name(frame: str) -> str:
    """``vfs_read+18`` -> ``vfs_read``; perf mode's ``ffffffff81000000 vfs_read+18 (mod)``
    -> ``vfs_read``; ``;`` (the separator of folded stacks) -> ``:``."""
    text = frame.strip()
    head, sep, rest = text.partition(" ")
    if sep and head and all(c in "0123456789abcdef" for c in head):
        text = rest.strip()
    if text.endswith(")") and " (" in text:
        text = text[:text.rindex(" (")]
    base, plus, off = text.rpartition("+")
    if plus and base and off and (off.isdigit() or off.startswith("0x")):
        text = base
    return text.replace(";", ":") or "[unknown]"


def stacks_of(entries, kinds: list[str] | None = None) -> list[tuple[list[tuple[str, str]], int]]:
    """``(frames, count)`` per map entry, frames root first as ``(name, kind)`` with kind "k"
    (kernel), "u" (user) or "o" (another key). ``entries``: ``[(key, value)]`` as in a
    ``MapData``, or a dict; stacks are ``format.Stack`` values or tuples of frames (as
    ``plain_map`` gives them). Without ``kinds``, an element that is a Stack (or a tuple, in a
    tuple key) is a stack of unknown side, drawn as user code."""
    from ptrace_lang.runtime.format import Stack

    if isinstance(entries, dict):
        entries = list(entries.items())
    out = []
    for key, value in entries:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            continue
        if kinds is not None:
            parts = list(key) if len(kinds) > 1 else [key]
            ks = list(kinds)
        elif isinstance(key, Stack):
            parts, ks = [key], ["ustack"]
        elif isinstance(key, tuple) and any(isinstance(e, (Stack, tuple)) for e in key):
            parts = list(key)
            ks = ["ustack" if isinstance(e, (Stack, tuple)) else "other" for e in key]
        else:
            parts, ks = [key], ["ustack"]
        roots: list[tuple[str, str]] = []
        user: list[tuple[str, str]] = []
        kernel: list[tuple[str, str]] = []
        for part, kind in zip(parts, ks):
            if kind in STACK_FMTS:
                frames = part.frames if isinstance(part, Stack) else tuple(part)
                side = kernel if kind == "kstack" else user
                mark = "k" if kind == "kstack" else "u"
                # bpftrace lists the innermost frame first
                side.extend((frame_name(f), mark) for f in reversed(frames))
            else:
                from ptrace_lang.runtime.format import value_text

                roots.append((value_text(part).replace(";", ":"), "o"))
        frames = roots + user + kernel
        if frames:
            out.append((frames, int(value)))
    return out


def folded(stacks) -> str:
    """One ``root;...;leaf N`` line per distinct stack, sorted (equal stacks summed); kernel
    frames marked ``_[k]``."""
    sums: dict[str, int] = {}
    for frames, n in stacks:
        line = ";".join(name + "_[k]" if kind == "k" else name for name, kind in frames)
        sums[line] = sums.get(line, 0) + n
    return "".join(f"{line} {n}\n" for line, n in sorted(sums.items()))


# ---------------------------------------------------------------------- the tree and the SVG

class _Node:
    __slots__ = ("name", "kind", "count", "children")

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.count = 0
        self.children: dict[tuple[str, str], _Node] = {}


def build_tree(stacks) -> _Node:
    root = _Node("all", "a")
    for frames, n in stacks:
        node = root
        node.count += n
        for name, kind in frames:
            child = node.children.get((name, kind))
            if child is None:
                child = node.children[(name, kind)] = _Node(name, kind)
            child.count += n
            node = child
    return root


def _colour(name: str, kind: str) -> str:
    v = (zlib.crc32(name.encode("utf-8", "surrogateescape")) & 0xFFFF) / 0xFFFF
    w = (zlib.crc32(name[::-1].encode("utf-8", "surrogateescape")) & 0xFFFF) / 0xFFFF
    if kind == "k":       # kernel: cool blues and teals
        r, g, b = 60 + 50 * w, 150 + 60 * v, 200 + 50 * v
    elif kind == "u":     # user: the warm reds and yellows
        r, g, b = 215 + 40 * v, 70 + 140 * w, 40 + 40 * v
    elif kind == "o":     # the key's other elements (comm, pid ...): greens
        r, g, b = 110 + 40 * v, 190 + 40 * w, 110 + 30 * v
    else:                 # all
        r, g, b = 200, 200, 200
    return f"rgb({int(r)},{int(g)},{int(b)})"


def _label(name: str, width: float) -> str:
    room = int((width - 6) / _CHAR)
    if room < 3:
        return ""
    return name if len(name) <= room else name[:room - 2] + ".."


def render_svg(stacks, title: str = "Flame Graph", unit: str = "samples") -> str:
    """The SVG document of ``stacks`` (``stacks_of``): one ``<g class="fr">`` per frame drawn."""
    root = build_tree(stacks)
    total = root.count or 1
    inner = WIDTH - 2 * _PAD
    rows: list[str] = []
    depth_max = 0
    nframes = 0
    todo = [(root, 0.0, 0)]
    while todo:
        node, x0, depth = todo.pop()
        frac = node.count / total
        if frac * inner < MIN_WIDTH:
            continue
        depth_max = max(depth_max, depth)
        nframes += 1
        rows.append((node, x0, frac, depth))
        x = x0
        for child in sorted(node.children.values(), key=lambda c: (c.name, c.kind)):
            todo.append((child, x, depth + 1))
            x += child.count / total
    height = _TOP + (depth_max + 1) * FRAME_H + _BOTTOM
    parts = [
        '<?xml version="1.0" standalone="no"?>\n',
        f'<svg version="1.1" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" '
        f'xmlns="http://www.w3.org/2000/svg" data-total="{root.count}" data-unit={quoteattr(unit)} '
        f'data-frames="{nframes}">\n',
        "<style>\n"
        "text { font-family: monospace; font-size: 12px; fill: #000; }\n"
        "g.fr text { pointer-events: none; }\n"
        "g.fr:hover rect { stroke: #000; stroke-width: 0.5; }\n"
        "g.fr.hide { display: none; }\n"
        "g.fr.anc rect { opacity: 0.55; }\n"
        "rect.bg { fill: #f8f8f0; }\n"
        ".ctl { cursor: pointer; fill: #225; text-decoration: underline; }\n"
        ".off { display: none; }\n"
        "</style>\n",
        f'<rect class="bg" x="0" y="0" width="{WIDTH}" height="{height}"/>\n',
        f'<text id="title" x="{WIDTH / 2}" y="20" text-anchor="middle" style="font-size:16px">'
        f'{escape(title)}</text>\n',
        f'<text id="reset" class="ctl off" x="{_PAD}" y="20">Reset Zoom</text>\n',
        f'<text id="search" class="ctl" x="{WIDTH - _PAD}" y="20" text-anchor="end">Search</text>\n',
        f'<text id="clear" class="ctl off" x="{WIDTH - _PAD - 60}" y="20" text-anchor="end">'
        f'Clear</text>\n',
        _legend(),
        f'<text id="details" x="{_PAD}" y="{height - 8}"> </text>\n',
        f'<text id="matched" x="{WIDTH - _PAD}" y="{height - 8}" text-anchor="end"> </text>\n',
        f'<g id="frames" data-left="{_PAD}" data-inner="{inner}" data-top="{_TOP}" '
        f'data-h="{FRAME_H}" data-depth="{depth_max}">\n',
    ]
    for node, x0, frac, depth in rows:
        px = _PAD + x0 * inner
        w = frac * inner
        y = _TOP + (depth_max - depth) * FRAME_H
        pct = 100.0 * node.count / total
        tip = f"{node.name} ({node.count:,} {unit}, {pct:.2f}%)"
        parts.append(
            f'<g class="fr" data-n={quoteattr(node.name)} data-k="{node.kind}" '
            f'data-x="{x0:.9f}" data-w="{frac:.9f}" data-d="{depth}" data-c="{node.count}">'
            f'<title>{escape(tip)}</title>'
            f'<rect x="{px:.2f}" y="{y}" width="{w:.2f}" height="{FRAME_H - 1}" rx="2" '
            f'fill="{_colour(node.name, node.kind)}"/>'
            f'<text x="{px + 3:.2f}" y="{y + FRAME_H - 4}">{escape(_label(node.name, w))}</text>'
            "</g>\n")
    parts.append("</g>\n")
    parts.append("<script><![CDATA[\n" + _SCRIPT + "]]></script>\n</svg>\n")
    return "".join(parts)


def _legend() -> str:
    out = []
    x = _PAD
    for kind, what in (("k", "kernel"), ("u", "user"), ("o", "key")):
        out.append(f'<rect x="{x}" y="30" width="12" height="12" fill="{_colour(what, kind)}"/>'
                   f'<text x="{x + 16}" y="40">{what}</text>')
        x += 80
    return "".join(out) + "\n"


# The page's behaviour: zoom (click a frame: it fills the width, its ancestors are dimmed at
# full width, the rest hidden), reset (the control or Escape), search (a pattern: matching
# frames turn magenta, the share of the total they cover shown). Frames keep their place in
# data-x/data-w (fractions of the total) and data-d (depth); functions on `window.flame`
# let a test drive it.
_SCRIPT = r"""
(function () {
  var doc = document;
  var box = doc.getElementById('frames');
  var left = +box.getAttribute('data-left'), inner = +box.getAttribute('data-inner');
  var top = +box.getAttribute('data-top'), fh = +box.getAttribute('data-h');
  var depthMax = +box.getAttribute('data-depth');
  var frames = Array.prototype.slice.call(box.querySelectorAll('g.fr'));
  var details = doc.getElementById('details'), matched = doc.getElementById('matched');
  var resetCtl = doc.getElementById('reset'), clearCtl = doc.getElementById('clear');
  var svg = doc.documentElement.tagName.toLowerCase() === 'svg' ? doc.documentElement
            : doc.querySelector('svg');
  var zoomed = null;

  function num(g, a) { return +g.getAttribute(a); }
  function label(name, w) {
    var room = Math.floor((w - 6) / 7);
    if (room < 3) return '';
    return name.length <= room ? name : name.substring(0, room - 2) + '..';
  }
  function place(g, x, w) {
    var r = g.querySelector('rect'), t = g.querySelector('text');
    r.setAttribute('x', (left + x * inner).toFixed(2));
    r.setAttribute('width', (w * inner).toFixed(2));
    t.setAttribute('x', (left + x * inner + 3).toFixed(2));
    t.textContent = label(g.getAttribute('data-n'), w * inner);
  }
  function set(el, cls, on) {
    if (on) el.classList.add(cls); else el.classList.remove(cls);
  }
  function zoom(z) {
    var zx = num(z, 'data-x'), zw = num(z, 'data-w'), zd = num(z, 'data-d');
    var eps = 1e-9;
    frames.forEach(function (g) {
      var x = num(g, 'data-x'), w = num(g, 'data-w'), d = num(g, 'data-d');
      if (d >= zd && x >= zx - eps && x + w <= zx + zw + eps) {
        set(g, 'hide', false); set(g, 'anc', false);
        place(g, (x - zx) / zw, w / zw);
      } else if (d < zd && x <= zx + eps && x + w >= zx + zw - eps) {
        set(g, 'hide', false); set(g, 'anc', true);
        place(g, 0, 1);
      } else {
        set(g, 'hide', true);
      }
    });
    zoomed = z;
    set(resetCtl, 'off', false);
    svg.setAttribute('data-zoomed', z.getAttribute('data-n'));
  }
  function reset() {
    frames.forEach(function (g) {
      set(g, 'hide', false); set(g, 'anc', false);
      place(g, num(g, 'data-x'), num(g, 'data-w'));
    });
    zoomed = null;
    set(resetCtl, 'off', true);
    svg.removeAttribute('data-zoomed');
  }
  function search(term) {
    var re = null;
    try { re = new RegExp(term); } catch (e) { re = null; }
    var spans = [];
    frames.forEach(function (g) {
      var name = g.getAttribute('data-n'), r = g.querySelector('rect');
      var hit = term && (re ? re.test(name) : name.indexOf(term) >= 0);
      if (!r.hasAttribute('data-fill')) r.setAttribute('data-fill', r.getAttribute('fill'));
      r.setAttribute('fill', hit ? 'rgb(230,0,230)' : r.getAttribute('data-fill'));
      if (hit) spans.push([num(g, 'data-x'), num(g, 'data-x') + num(g, 'data-w')]);
    });
    // the share of the total covered by matches, nested matches counted once
    spans.sort(function (a, b) { return a[0] - b[0]; });
    var covered = 0, end = -1;
    spans.forEach(function (s) {
      if (s[0] >= end) { covered += s[1] - s[0]; end = s[1]; }
      else if (s[1] > end) { covered += s[1] - end; end = s[1]; }
    });
    matched.textContent = term ? 'Matched: ' + (100 * covered).toFixed(1) + '%' : ' ';
    set(clearCtl, 'off', !term);
    if (term) svg.setAttribute('data-matched', (100 * covered).toFixed(1));
    else svg.removeAttribute('data-matched');
    return covered;
  }
  frames.forEach(function (g) {
    g.addEventListener('click', function () { zoom(g); });
    g.addEventListener('mouseover', function () {
      details.textContent = g.querySelector('title').textContent;
    });
    g.addEventListener('mouseout', function () { details.textContent = ' '; });
  });
  resetCtl.addEventListener('click', reset);
  clearCtl.addEventListener('click', function () { search(''); });
  doc.getElementById('search').addEventListener('click', function () {
    var term = window.prompt('Search frames (a regular expression):', '');
    if (term !== null) search(term);
  });
  doc.addEventListener('keydown', function (e) {
    if (e.key === 'Escape') reset();
  });
  window.flame = { zoom: zoom, reset: reset, search: search, frames: frames,
                   zoomed: function () { return zoomed; } };
})();
"""


# ---------------------------------------------------------------------- writing files

def write_flamegraph(map_values, path, kinds: list[str] | None = None, fmt: str | None = None,
                     title: str = "Flame Graph") -> int:
    """Write a flame graph of a map (a ``MapData``, a dict as ``plain_map`` gives, or a list
    of ``(key, value)``) to ``path`` (a file name or a text stream): SVG, or folded lines when
    ``fmt`` is "folded" or the name ends in ``.folded``/``.txt``. ``kinds``: ``key_kinds``
    of the map (which key elements are kernel or user stacks). Returns the number of stacks."""
    entries = getattr(map_values, "entries", map_values)
    stacks = stacks_of(entries, kinds)
    if fmt is None:
        name = path if isinstance(path, str) else ""
        fmt = "folded" if name.endswith((".folded", ".txt")) else "svg"
    text = folded(stacks) if fmt == "folded" else render_svg(stacks, title)
    if isinstance(path, str):
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
            f.write(text)
    else:
        path.write(text)
    return len(stacks)


def session_flamegraph(session, map_name: str, path, fmt: str | None = None) -> int:
    """A flame graph of a running session's map ``@name`` (the REPL's ``flame @map FILE``)."""
    um = next((u for u in session.spec.user_maps if u.name == map_name), None)
    if um is None:
        raise ValueError(f"no map {map_name}")
    if not is_stack_map(um):
        raise ValueError(f"{map_name} is not a count()/sum() map keyed by kstack or ustack")
    return write_flamegraph(session.read_user_map(um), path, key_kinds(um), fmt,
                            title=f"Flame Graph: {map_name}")


def output_paths(path: str | None, names: list[str]) -> list[str | None]:
    """Where each stack map's graph goes: the first to ``path``, the others next to it with
    the map's name before the extension (``cpu.svg``, ``cpu.off.svg``); None: stdout."""
    if path is None or len(names) <= 1:
        return [path] * len(names)
    stem, dot, ext = path.rpartition(".")
    if not dot or "/" in ext:
        stem, ext = path, ""
    out = [path]
    for n in names[1:]:
        tag = "".join(c if c.isalnum() or c == "_" else "_" for c in n.lstrip("@")) or "map"
        out.append(f"{stem}.{tag}.{ext}" if ext else f"{stem}.{tag}")
    return out
