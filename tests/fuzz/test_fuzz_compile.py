"""The fuzz tier: mutated scripts through the compiler, and a sample through the kernel's verifier
(``--dry-run``). Whatever the input, the answer is a located ``PtraceError`` or a compiled program:
never another exception (a traceback, "internal error: ..."), never a runaway.

A fixed seed and a few thousand cases run in CI; more on demand:

    PTRACE_FUZZ_CASES=60000 PTRACE_FUZZ_SEED=7 python -m pytest -q tests/fuzz

The mutations work on tokens of real scripts (examples/, tools/, tests/unit/corpus/; comments
dropped, attach points and "#" lines kept whole, kprobe-like attach points probing a uprobe of
/bin/bash instead, whose expansion costs nothing). Most cases stay parseable, to reach sema and
codegen: up to twelve statements inserted (map updates, assignments, calls of the builtins with
edge values, printf) and values replaced by edge values or calls. The others break tokens
anywhere: delete, duplicate, swap, insert a token from a vocabulary of the language's edges (huge
and negative numbers, long strings, NUL bytes, operators, keywords, builtins). One case in eight
is deep nesting (parentheses, chains of operators, ifs, else-ifs, calls, casts, map keys, unary
operators, a real script in nested ifs, nested unrolls) around the nesting limit.
"""
from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = int(os.environ.get("PTRACE_FUZZ_CASES", "1500"))
DRY_RUN_CASES = int(os.environ.get("PTRACE_FUZZ_DRY_RUN_CASES", "40"))
SEED = int(os.environ.get("PTRACE_FUZZ_SEED", "20261207"))
# one compile may take this long at most (a runaway is a failure too)
CASE_SECONDS = 10

# a token: a preprocessor/C line whole, a string, an attach point whole (provider:...), a number,
# a word or variable, or one character; comments are dropped first
_TOKEN = re.compile(r'^[ \t]*#[^\n]*|"(?:[^"\\\n]|\\.)*"|[A-Za-z_][\w-]*:[^\s,{}"]+'
                    r'|0[xX][0-9a-fA-F]+|\d+|\$#|[A-Za-z_$@][\w]*'
                    r'|->|\+\+|--|<<=?|>>=?|[<>=!+\-*/%&|^]=|&&|\|\||\.\.|\S', re.M)
_COMMENT = re.compile(r'//[^\n]*|/\*.*?\*/', re.S)
EDGES = [
    "0", "1", "-1", "255", "4294967295", "4294967296", "9223372036854775807",
    "9223372036854775808", "18446744073709551615", "18446744073709551616", "0x", "010", "1e9",
    '""', '"' + "a" * 300 + '"', '"\\x00"', '"%"', '"%d %s %r %-99999d"', "\x00",
    "(", ")", "{", "}", "[", "]", ";", ",", ":", "?", "/", "*", "&", "->", ".", "..", "++",
    "--", "<<", ">>", "==", "=", "+=", "!", "~", "$x", "$1", "$#", "@", "@m", "@m[1]",
    "if", "else", "while", "for", "unroll", "return", "break", "continue", "let", "macro",
    "config", "import", "struct", "union", "enum", "sizeof", "offsetof", "typeof",
    "pid", "comm", "args", "retval", "kstack", "ustack", "curtask", "nsecs", "probe",
    "printf", "print", "str", "buf", "count", "hist", "lhist", "sum", "stats", "exit",
    "ntop", "kaddr", "uaddr", "cgroupid", "strftime", "has_key", "len", "delete", "clear",
    "(int8)", "(uint64 *)", "(struct task_struct *)", "(int32[4])", "BEGIN", "END",
    "tracepoint:syscalls:sys_enter_read", "interval:s:1", "uprobe:/bin/bash:main",
]


def _corpus() -> list[str]:
    files = [*sorted((ROOT / "examples").glob("*.bt")), *sorted((ROOT / "tools").glob("*.bt")),
             *sorted((ROOT / "tests" / "unit" / "corpus").glob("*.bt"))]
    return [f.read_text(errors="replace") for f in files]


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(_COMMENT.sub(" ", text))


def _join(toks: list[str]) -> str:
    """Tokens as a script: a "#" line keeps a line of its own."""
    return " ".join(f"\n{t.strip()}\n" if t.lstrip().startswith("#") else t
                    for t in toks).lstrip()


# statements inserted whole after a "{" or a ";": they parse, so they reach sema and codegen
CALLS = ["str", "buf", "ksym", "usym", "kaddr", "ntop", "strftime", "strncmp", "strcontains",
         "printf", "print", "exit", "count", "hist", "lhist", "sum", "stats", "avg", "min",
         "max", "delete", "has_key", "len", "comm", "pid", "nsecs", "ustack", "kstack",
         "reg", "uaddr", "cgroupid", "signal", "system", "cat", "join", "time", "clear", "zero",
         "sizeof", "offsetof", "macaddr", "path", "strerror", "bswap", "percpu_kaddr"]
CALLS = [c for c in CALLS if c not in ("sizeof", "offsetof")]     # (their own syntax)
VALUES = ["0", "1", "-1", "4294967296", "18446744073709551615", '""', '"%s %d"',
          '"' + "x" * 200 + '"', "$x", "@m", "@m[1]", "comm", "pid", "curtask", "args",
          "(1, \"a\")", "(int8)-1", "(uint64 *)0", "$1", "$#", "retval", "arg0", "probe",
          "kstack", "ustack(3)", "str(0)", "nsecs", "ctx"]


def _value(rng: random.Random) -> str:
    if rng.random() < 0.3:
        args = ", ".join(_value(rng) if rng.random() < 0.2 else rng.choice(VALUES)
                         for _ in range(rng.randrange(4)))
        return f"{rng.choice(CALLS)}({args})"
    return rng.choice(VALUES)


def _statement(rng: random.Random) -> list[str]:
    form = rng.randrange(6)
    if form == 0:
        text = f"@m[{_value(rng)}] = {_value(rng)};"
    elif form == 1:
        text = f"$x = {_value(rng)};"
    elif form == 2:
        text = f"{_value(rng)};"
    elif form == 3:
        text = f"if ({_value(rng)}) {{ {_value(rng)}; }}"
    elif form == 4:
        text = f"@m = {rng.choice(CALLS)}({_value(rng)}, {_value(rng)});"
    else:
        text = f"printf({rng.choice(VALUES[4:7])}, {_value(rng)}, {_value(rng)});"
    return _tokens(text)


def _nest(rng: random.Random, toks: list[str]) -> list[str]:
    depth = rng.choice((40, 99, 101, 120, 300, 400))
    form = rng.randrange(7)
    if form == 0:      # deep parentheses around an expression
        return ["BEGIN", "{", "$x", "=", *(["("] * depth), "1", *([")"] * depth), ";", "}"]
    if form == 1:      # a long chain of terms
        return ["BEGIN", "{", "$x", "=", "1", *([rng.choice(("+", "&&", "|", "*")), "1"] * depth),
                ";", "}"]
    if form == 2:      # nested ifs
        return ["BEGIN", "{", *(["if", "(", "1", ")", "{"] * depth), "@x", "++", ";",
                *(["}"] * depth), "}"]
    if form == 3:      # an else-if chain
        return ["BEGIN", "{", "if", "(", "$1", ")", "{", "}",
                *(["else", "if", "(", "$1", "==", "2", ")", "{", "@x", "++", ";", "}"] * depth), "}"]
    if form == 4:      # nested calls, casts, map keys, unary operators
        opener = rng.choice((["str", "("], ["(", "int8", ")"], ["@m", "["], ["-"], ["!"], ["~"]))
        closer = {"(": [")"], "[": ["]"]}.get(opener[-1], []) if opener[0] != "(" else []
        return ["BEGIN", "{", "$x", "=", *(opener * depth), "1", *(closer * depth), ";", "}"]
    if form == 5 and toks:     # a real script's statements wrapped in nesting
        return [*(["if", "(", "1", ")", "{"] * depth), *toks, *(["}"] * depth)] \
            if toks[0] in ("BEGIN", "END") else toks
    # nested unrolls
    n = rng.choice((2, 3, 10, 100))
    k = rng.choice((2, 3, 4, 16))
    return ["BEGIN", "{", *(["unroll", "(", str(n), ")", "{"] * k), "@x", "++", ";",
            *(["}"] * k), "}"]


# kprobe targets are expanded through the kernel's whole function list (~1 s a compile here):
# the fuzzer probes a uprobe instead, a provider with the same args/retval
_KPROBE = re.compile(r"(?:kprobe|k|kretprobe|kr|fentry|fexit|kfunc|kretfunc|f|fr):\S*")
_WORD_OR_VALUE = re.compile(r'\d+|0[xX][0-9a-fA-F]+|"(?:[^"\\]|\\.)*"|\$\w+|arg\d|retval|pid|tid'
                            r'|comm|nsecs|cpu|uid|curtask|args|probe|func')


def _cheap_attach_point(tok: str) -> str:
    if not _KPROBE.fullmatch(tok):
        return tok
    ret = tok.split(":", 1)[0] in ("kretprobe", "kr", "fexit", "kretfunc", "fr")
    return "uretprobe:/bin/bash:main" if ret else "uprobe:/bin/bash:main"


def mutate(rng: random.Random, text: str) -> str:
    toks = [_cheap_attach_point(t) for t in _tokens(text)]
    if not toks or rng.random() < 0.12:
        toks = _nest(rng, toks)
    # most cases keep the script parseable (statements inserted, values replaced) so that sema
    # and codegen see them; the others break tokens anywhere
    structured = rng.random() < 0.7
    for _ in range(rng.choice((1, 2, 3, 5, 8, 12) if structured else (1, 1, 2, 3, 5))):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.randrange(4) + 5 if structured else rng.randrange(9)
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, toks[i])
        elif op == 2:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif op in (3, 4):
            toks.insert(i, rng.choice(EDGES))
        elif op == 5:          # a number or a value replaced by an edge value or a call
            spots = [k for k, t in enumerate(toks) if _WORD_OR_VALUE.fullmatch(t)]
            if spots:
                k = rng.choice(spots)
                toks[k:k + 1] = _tokens(rng.choice(EDGES[:10]) if toks[k].isdigit()
                                        and rng.random() < 0.5 else _value(rng))
        elif op in (6, 7):     # a whole statement after a "{" or a ";"
            spots = [k + 1 for k, t in enumerate(toks) if t in ("{", ";")]
            if spots:
                k = rng.choice(spots)
                toks[k:k] = _statement(rng)
        else:
            toks[i] = rng.choice(EDGES)
    return _join(toks)


def cases(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    corpus = _corpus()
    return [mutate(rng, rng.choice(corpus)) for _ in range(n)]


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def test_mutated_scripts_compile_or_fail_cleanly():
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.errors import PtraceError

    failures: dict[str, str] = {}      # first script of each distinct failure
    old = signal.signal(signal.SIGALRM, _alarm)
    try:
        for text in cases(CASES, SEED):
            signal.alarm(CASE_SECONDS)
            try:
                compile_script(text, "fuzz.bt", Options(positional=["1", "x"]))
            except PtraceError:
                pass
            except _Timeout:
                failures.setdefault(f"runaway (over {CASE_SECONDS} s)", text)
            except BaseException as e:  # noqa: BLE001 - every other exception is the finding
                if isinstance(e, KeyboardInterrupt):
                    raise
                where = e.__traceback__
                while where is not None and where.tb_next is not None:
                    where = where.tb_next
                loc = (f"{Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno}"
                       if where is not None else "?")
                failures.setdefault(f"{type(e).__name__} at {loc}: {str(e)[:120]}", text)
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, old)
    report = "\n\n".join(f"{k}\n    script: {v[:400]!r}" for k, v in sorted(failures.items()))
    assert not failures, f"{len(failures)} distinct failures in {CASES} cases (seed {SEED}):\n{report}"


@pytest.mark.skipif(os.geteuid() != 0, reason="--dry-run loads programs into the verifier: needs root")
def test_mutated_scripts_through_the_verifier():
    """A sample of the mutated scripts that compile, through ``ptrace --dry-run`` (the kernel's
    verifier): a verifier refusal is a located error too, never an internal one."""
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.errors import PtraceError

    compiled = []
    for text in cases(CASES, SEED + 1):
        if len(compiled) >= DRY_RUN_CASES:
            break
        try:
            compile_script(text, "fuzz.bt", Options(positional=["1", "x"]))
        except Exception:  # noqa: BLE001 - only those that compile go on to the verifier
            continue
        compiled.append(text)
    bad = []
    for text in compiled:
        p = subprocess.run([sys.executable, "-m", "ptrace_lang", "--dry-run", "-e", text, "1", "x"],
                           capture_output=True, text=True, timeout=60, cwd=ROOT,
                           env={**os.environ, "PTRACE_NO_CACHE": "1"})
        if p.returncode not in (0, 1) or "Traceback" in p.stderr or "internal error" in p.stderr:
            bad.append(f"rc={p.returncode} {p.stderr.strip()[-300:]}\n    script: {text[:300]!r}")
    assert compiled, "no mutated script compiled: the sample is empty"
    assert not bad, "\n\n".join(bad)


# inputs that once escaped as internal errors, runaways or a false "nested too deeply"
REPORTED = {
    "300 nested ifs": "BEGIN { " + "if (1) { " * 300 + "@x++; " + "} " * 300 + "}",
    "400-term sum": "BEGIN { $x = 1" + " + 1" * 400 + "; }",
    "deep parentheses": "BEGIN { $x = " + "(" * 500 + "1" + ")" * 500 + "; }",
    "ustack() as a statement": "BEGIN { ustack(); }",
    "str() with a length as a statement": 'BEGIN { str("a", 1); }',
    "33 KB string literal in printf": 'BEGIN { printf("%s\\n", "' + "a" * 33000 + '"); }',
    "negative bitfield width": "struct S { int e:-1; } BEGIN { exit(); }",
    "lhist step over 32 bits": "BEGIN { @x = lhist(2, 0, 100, 4294967296); }",
    "NUL byte in an attach point": "tracepoint:sys\x00calls:x { }",
    "octal-looking uprobe offset": "uprobe:/bin/bash:echo_builtin+010 { exit(); }",
    "huge perf_rb_pages": "config = { perf_rb_pages = 1048576 } BEGIN { exit(); }",
    "sixteen nested unroll(2)": "BEGIN { " + "unroll(2) { " * 16 + "@x++; " + "} " * 16 + "}",
    "two nested unroll(100)": "BEGIN { unroll(100) { unroll(100) { @x++; } } }",
}


@pytest.mark.parametrize("name", sorted(REPORTED))
def test_reported_inputs_fail_cleanly(name):
    from ptrace_lang.driver import Options, compile_script
    from ptrace_lang.errors import PtraceError

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(CASE_SECONDS)
    problem = None
    try:
        compile_script(REPORTED[name], "stdin", Options())
    except PtraceError as e:
        text = e.render()
        if "nested too deeply" in text and not any(w in name for w in ("nest", "sum", "paren")):
            problem = f"a false 'nested too deeply': {text}"
    except _Timeout:
        problem = f"still compiling after {CASE_SECONDS} s"
    except Exception as e:  # noqa: BLE001 - reported outside: a RecursionError's traceback is
        problem = f"{type(e).__name__}: {str(e)[:300]}"      # too deep for pytest to show
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    if problem:
        pytest.fail(f"{name}: {problem}", pytrace=False)
