"""The fuzz tier: mutated scripts through the compiler, and a sample through the kernel's verifier
(``--dry-run``). Whatever the input, the answer is a located ``PtraceError`` or a compiled program:
never another exception (a traceback, "internal error: ..."), never a runaway.

A fixed seed and a few thousand cases run in CI; more on demand:

    PTRACE_FUZZ_CASES=60000 PTRACE_FUZZ_SEED=7 python -m pytest -q tests/fuzz

The mutations work on tokens of real scripts (examples/, tools/, tests/unit/corpus/): delete,
duplicate, swap, insert a token from a vocabulary of the language's edges (huge and negative
numbers, long strings, NUL bytes, operators, keywords, builtins), replace a number by an extreme,
and wrap a block or an expression in deep nesting.
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
CASES = int(os.environ.get("PTRACE_FUZZ_CASES", "2500"))
DRY_RUN_CASES = int(os.environ.get("PTRACE_FUZZ_DRY_RUN_CASES", "60"))
SEED = int(os.environ.get("PTRACE_FUZZ_SEED", "20261207"))
# one compile may take this long at most (a runaway is a failure too)
CASE_SECONDS = 10

_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|0[xX][0-9a-fA-F]+|\d+|[A-Za-z_$@][\w]*|\S')
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
    return _TOKEN.findall(text)


def _nest(rng: random.Random, toks: list[str]) -> list[str]:
    depth = rng.choice((40, 120, 300, 400))
    form = rng.randrange(4)
    if form == 0:      # deep parentheses around an expression
        return ["BEGIN", "{", "$x", "=", *(["("] * depth), "1", *([")"] * depth), ";", "}"]
    if form == 1:      # a long chain of terms
        return ["BEGIN", "{", "$x", "=", "1", *(["+", "1"] * depth), ";", "}"]
    if form == 2:      # nested ifs
        return ["BEGIN", "{", *(["if", "(", "1", ")", "{"] * depth), "@x", "++", ";",
                *(["}"] * depth), "}"]
    # nested unrolls
    n = rng.choice((2, 3, 100))
    k = rng.choice((2, 4, 16))
    return ["BEGIN", "{", *(["unroll", "(", str(n), ")", "{"] * k), "@x", "++", ";",
            *(["}"] * k), "}"]


def mutate(rng: random.Random, text: str) -> str:
    toks = _tokens(text)
    if not toks or rng.random() < 0.04:
        toks = _nest(rng, toks)
    for _ in range(rng.choice((1, 1, 2, 3, 5))):
        if not toks:
            break
        i = rng.randrange(len(toks))
        op = rng.randrange(6)
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, toks[i])
        elif op == 2:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
        elif op == 3:
            toks.insert(i, rng.choice(EDGES))
        elif op == 4 and re.fullmatch(r"\d+|0[xX][0-9a-fA-F]+", toks[i]):
            toks[i] = rng.choice(EDGES[:10])
        else:
            toks[i] = rng.choice(EDGES)
    return " ".join(toks)


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
