"""The REPL's text handling, without a kernel or a terminal: when Enter continues an entry,
what is a command, highlighting, completion, and which entries are refused because they would
change what is already loaded (the kernel half is in tests/kernel/test_repl.py)."""
from __future__ import annotations

import pytest

from ptrace_lang import repl, repl_session, repl_text
from ptrace_lang.errors import SOURCES, PtraceError
from ptrace_lang.runtime.session import RunOptions


def test_brace_depth_skips_strings_and_comments():
    assert repl_text.brace_depth("BEGIN {") == 1
    assert repl_text.brace_depth('BEGIN { printf("}}"); // }\n') == 1
    assert repl_text.brace_depth("BEGIN { /* } */ }") == 0
    assert repl_text.brace_depth("BEGIN { if (1) { }") == 1
    assert repl_text.brace_depth("/* open") == 1


@pytest.mark.parametrize("text, more", [
    ("tracepoint:syscalls:sys_enter_read {", True),
    ("tracepoint:syscalls:sys_enter_read", True),          # the block on the next line
    ("tracepoint:a:b,\n  tracepoint:c:d", True),
    ("tracepoint:syscalls:sys_enter_read\n", False),        # an empty line ends it
    ("BEGIN { exit(); }", False),
    ("print @x", False),
    ("nonsense", False),
    ("", False),
])
def test_needs_more(text, more):
    assert repl_text.needs_more(text) is more


def test_split_command():
    assert repl_text.split_command("print @x @y") == ("print", ["@x", "@y"])
    assert repl_text.split_command("  .probes ") == ("probes", [])
    assert repl_text.split_command("watch @x 0.5") == ("watch", ["@x", "0.5"])
    assert repl_text.split_command("BEGIN { print(@x); }") is None
    assert repl_text.split_command("print(@x)") is None
    assert repl_text.split_command("tracepoint:a:b") is None


def test_highlight_styles():
    lines = repl_text.highlight('tracepoint:syscalls:sys_enter_read /pid == 1/ {\n'
                           '  @x[comm] = count(); // c\n  printf("%d\\n", $v);\n}')
    styles = {text: style for line in lines for style, text in line}
    assert styles["tracepoint:syscalls:sys_enter_read"] == "class:probe"
    assert styles["@x"] == "class:map"
    assert styles["comm"] == "class:builtin"
    assert styles["count"] == "class:function"
    assert styles["// c"] == "class:comment"
    assert styles['"%d\\n"'] == "class:string"
    assert styles["$v"] == "class:var"
    assert len(lines) == 4
    assert repl_text.highlight("print @x")[0][0] == ("class:command", "print")


def _completions(session, text):
    from prompt_toolkit.document import Document

    class FakeRepl:
        pass

    r = FakeRepl()
    r.session = session
    c = repl._make_completer(r)
    return [x.text for x in c.get_completions(Document(text), None)]


def test_completion():
    s = repl_session.ReplSession(RunOptions())
    s.spec = s.compile("BEGIN { @count = 1; @total = 2; }").spec
    assert "printf" in _completions(s, "BEGIN { pri")
    assert _completions(s, "BEGIN { @c") == ["@count"]
    assert _completions(s, "print @t") == ["@total"]
    assert "tracepoint:" in _completions(s, "tr")
    assert "probes" in _completions(s, "pro")
    assert _completions(s, "interval:") == ["interval:s:", "interval:ms:", "interval:us:",
                                            "interval:hz:"]


def test_completion_asks_the_providers():
    # every provider is offered, from its own module (a new provider needs no REPL list)
    from ptrace_lang import providers

    s = repl_session.ReplSession(RunOptions())
    offered = set(_completions(s, ""))
    for p in providers.all_providers():
        assert (p.name in offered) if p.bare else (p.name + ":" in offered), p.name
    assert "BEGIN" in offered and "END" in offered
    assert "software:cpu-clock" in _completions(s, "software:cpu-c")
    assert _completions(s, "p:") == ["p:s:", "p:ms:", "p:us:", "p:hz:"]     # an alias


def _session_with(*entries):
    """A session whose entries were accepted (compiled only: nothing is loaded)."""
    s = repl_session.ReplSession(RunOptions())
    for text in entries:
        compiled = s.compile(text)
        s._check(compiled.spec)
        s.entries.append(repl_session.Entry(len(s.entries) + 1, text,
                                            s.source.count("\n") + 2 if s.source else 1))
        s.source = f"{s.source}\n{text}" if s.source else text
        s.spec = compiled.spec
    return s


def _refusal(s, text) -> str:
    with pytest.raises(PtraceError) as info:
        s._check(s.compile(text).spec)
    return info.value.render(SOURCES)


def test_entries_that_keep_loaded_code_are_accepted():
    # @a sorts before @x: the index print(@x) carries must not move
    s = _session_with("interval:s:1 { print(@x); }  BEGIN { @x = 1; }",
                      "BEGIN { @a = 2; @x = 3; }",
                      'BEGIN { printf("%d\\n", @a); }')
    assert [um.name for um in s.spec.user_maps] == ["@x", "@a"]


def test_entries_changing_loaded_code_are_refused():
    s = _session_with('BEGIN { @s["ab"] = 1; }')
    assert "type of @s changed" in _refusal(s, 'BEGIN { @s["abcdefgh"] = 2; }')
    assert "the size of @s (max_map_keys 4096 -> 10)" in _refusal(
        s, "config = { max_map_keys = 10 } BEGIN { @q = 1; }")


def test_errors_point_into_the_entry():
    s = _session_with("BEGIN { @n = 1; }", "BEGIN {\n  @m = 2;\n}")
    with pytest.raises(PtraceError) as info:
        s.compile('BEGIN { @n = "text"; }')
    text = info.value.render(SOURCES)
    assert text.startswith("stdin:1:9-20: ERROR: Type mismatch for @n")
    assert text.splitlines()[1] == 'BEGIN { @n = "text"; }'
    with pytest.raises(PtraceError) as info:
        s.compile("BEGIN { $x = ; }")
    assert info.value.render(SOURCES).startswith("stdin:1:14-15: ERROR: syntax error")


def test_highlight_keeps_every_character():
    import random

    rnd = random.Random(5)
    alphabet = 'ab1_:@$/*{}"\\\n .e9x-()'
    for _ in range(500):
        text = "".join(rnd.choice(alphabet) for _ in range(rnd.randrange(30)))
        lines = repl_text.highlight(text)
        assert "\n".join("".join(t for _, t in line) for line in lines) == text
