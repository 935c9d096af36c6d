"""The REPL's text: scanning an entry (is it complete? a command?), highlighting it, and the
words completion and highlighting know. No terminal and no prompt_toolkit here."""
from __future__ import annotations

import re

COMMANDS = ("probes", "detach", "print", "watch", "clear", "zero", "flame", "asm", "ir", "help", "quit",
            "exit")
_MAP_COMMANDS = ("print", "watch", "clear", "zero", "flame")
_PROBE_COMMANDS = ("detach", "asm", "ir")

KEYWORDS = ("if", "else", "while", "for", "unroll", "return", "break", "continue", "let", "config")
from ptrace_lang.sema import builtins as _builtins   # noqa: E402  (the one table of builtins)
FUNCTIONS = tuple(sorted(_builtins.FUNCTIONS))
BUILTINS = tuple(sorted(_builtins.VARIABLES)) + tuple(f"arg{i}" for i in range(6))


def provider_words() -> tuple[str, ...]:
    """The attach-point words completion offers, asked of the providers: ``BEGIN``/``END`` (and
    every bare provider's names), ``name:`` for the others."""
    if not _PROVIDER_WORDS:
        from ptrace_lang import providers

        ps = providers.all_providers()
        _PROVIDER_WORDS.extend(n for p in ps if p.bare for n in (*p.aliases, p.name))
        _PROVIDER_WORDS.extend(p.name + ":" for p in ps if not p.bare)
    return tuple(_PROVIDER_WORDS)


_PROVIDER_WORDS: list[str] = []
MAX_COMPLETIONS = 400


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
