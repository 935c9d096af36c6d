"""Parser tests: corpus, AST shapes, spans, literals, errors, fuzzing, generated tables."""
from __future__ import annotations

import glob
import os
import random
import subprocess
import sys

import pytest

from ptrace_lang import errors
from ptrace_lang.errors import CompileError, Span
from ptrace_lang.frontend import ast
from ptrace_lang.frontend import lalr
from ptrace_lang.frontend.parser import parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = sorted(glob.glob(os.path.join(HERE, "corpus", "*.bt")))


# ---------------------------------------------------------------- helpers


def sx(e) -> str:
    """A compact S-expression of an expression, to check tree shapes."""
    if isinstance(e, ast.IntLit):
        return str(e.value)
    if isinstance(e, ast.StrLit):
        return repr(e.value)
    if isinstance(e, ast.BoolLit):
        return "true" if e.value else "false"
    if isinstance(e, ast.Builtin):
        return e.name
    if isinstance(e, ast.Var):
        return "$" + e.name
    if isinstance(e, ast.PositionalParam):
        return f"${e.index}"
    if isinstance(e, ast.ParamCount):
        return "$#"
    if isinstance(e, ast.MapRef):
        if e.keys is None:
            return "@" + e.name
        return "@%s[%s]" % (e.name, ", ".join(sx(k) for k in e.keys))
    if isinstance(e, ast.Call):
        return "%s(%s)" % (e.name, ", ".join(sx(a) for a in e.args))
    if isinstance(e, ast.Binary):
        return f"({e.op} {sx(e.left)} {sx(e.right)})"
    if isinstance(e, ast.Unary):
        return f"({e.op} {sx(e.operand)})"
    if isinstance(e, ast.IncDec):
        return f"({e.op}pre {sx(e.target)})" if e.prefix else f"({e.op}post {sx(e.target)})"
    if isinstance(e, ast.Ternary):
        return f"(? {sx(e.cond)} {sx(e.then)} {sx(e.orelse)})"
    if isinstance(e, ast.FieldAccess):
        return f"({'->' if e.arrow else '.'} {sx(e.base)} {e.field_name})"
    if isinstance(e, ast.Index):
        return f"([] {sx(e.base)} {sx(e.index)})"
    if isinstance(e, ast.TupleIndex):
        return f"(.{e.index} {sx(e.base)})"
    if isinstance(e, ast.TupleExpr):
        return "(tuple %s)" % " ".join(sx(x) for x in e.elems)
    if isinstance(e, ast.RecordExpr):
        return "(record %s)" % " ".join(f"{k}={sx(v)}" for k, v in e.fields)
    if isinstance(e, ast.Cast):
        return f"(cast {ty(e.to)} {sx(e.operand)})"
    if isinstance(e, ast.Sizeof):
        return f"(sizeof type {ty(e.of_type)})" if e.of_type else f"(sizeof {sx(e.of_expr)})"
    if isinstance(e, ast.Offsetof):
        return f"(offsetof {ty(e.of_type)} {'.'.join(e.fields)})"
    if isinstance(e, ast.BlockExpr):
        return "(block %d %s)" % (len(e.stmts), sx(e.value))
    raise AssertionError(f"unexpected node {e!r}")


def ty(t: ast.TypeName) -> str:
    s = t.name + "*" * t.pointer_depth
    if t.array_len is not None:
        s += f"[{t.array_len}]"
    return s


def body(src: str) -> list[ast.Stmt]:
    return parse(src).probes[0].body.stmts


def expr(text: str) -> ast.Expr:
    """The value of ``$x = <text>;`` inside a BEGIN probe."""
    stmt = body(f"BEGIN {{ $x = {text}; }}")[0]
    assert isinstance(stmt, ast.Assign)
    return stmt.value


def err(src: str) -> CompileError:
    with pytest.raises(CompileError) as info:
        parse(src)
    return info.value


def msg(src: str) -> str:
    e = err(src)
    d = e.diagnostics[0]
    sp = d.span
    return f"{sp.line}:{sp.col}-{sp.end_col}: {d.message}"


def sp(node) -> tuple[int, int, int, int]:
    s = node.span
    return (s.line, s.col, s.end_line, s.end_col)


# ---------------------------------------------------------------- corpus


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 40


@pytest.mark.parametrize("path", CORPUS, ids=[os.path.basename(p) for p in CORPUS])
def test_corpus_parses(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    prog = parse(text, path)
    assert isinstance(prog, ast.Program)
    for node in ast.walk(prog):
        if isinstance(node, (ast.Expr, ast.Stmt, ast.Probe, ast.AttachPoint)):
            assert node.span.file == path and node.span.line >= 1, node
    # the dump used by `-d ast` works on every tree
    assert ast.dump(prog)


def _lark_norm(x, lark):
    if isinstance(x, (lark.Token, lalr.Token)):
        return ("T", x.type, str(x), x.line, x.column, x.end_line, x.end_column)
    m = x.meta
    pos = None if getattr(m, "empty", True) else (m.line, m.column, m.end_line, m.end_column)
    return ("N", x.data, pos, tuple(_lark_norm(c, lark) for c in x.children))


def test_driver_matches_lark_on_corpus():
    """The driver of the generated tables builds exactly the trees (and positions) Lark itself builds."""
    lark = pytest.importorskip("lark")
    from ptrace_lang.resources import grammar_dir

    with open(os.path.join(grammar_dir(), "ptrace.lark"), encoding="utf-8") as f:
        reference = lark.Lark(f.read(), parser="lalr", lexer="contextual", maybe_placeholders=False,
                              propagate_positions=True)
    tables = lalr.tables()
    for path in CORPUS:
        with open(path, encoding="utf-8") as f:
            src = f.read()
        if src.startswith("#!"):
            nl = src.find("\n")
            src = " " * nl + src[nl:]
        assert _lark_norm(lalr.run(tables, src), lark) == _lark_norm(reference.parse(src), lark), path


# ---------------------------------------------------------------- probes and attach points


@pytest.mark.parametrize("raw, provider, parts", [
    ("BEGIN", "BEGIN", []),
    ("begin", "begin", []),
    ("END", "END", []),
    ("tracepoint:syscalls:sys_enter_*", "tracepoint", ["syscalls", "sys_enter_*"]),
    ("t:syscalls:sys_enter_openat", "t", ["syscalls", "sys_enter_openat"]),
    ("kprobe:vfs_*", "kprobe", ["vfs_*"]),
    ("kprobe:mod:fn+0x10", "kprobe", ["mod", "fn+0x10"]),
    ("KPROBE:do_nanosleep", "KPROBE", ["do_nanosleep"]),
    ("uprobe:/bin/bash:readline", "uprobe", ["/bin/bash", "readline"]),
    ("uprobe:libc:malloc", "uprobe", ["libc", "malloc"]),
    ('uprobe:/bin/x:cpp:"ns::f(int)"', "uprobe", ["/bin/x", "cpp", "ns::f(int)"]),
    ('uprobe:/bin/x:cpp:"a, b{c}"', "uprobe", ["/bin/x", "cpp", "a, b{c}"]),
    ("usdt:/path:prov:probe", "usdt", ["/path", "prov", "probe"]),
    ("usdt:*:probe", "usdt", ["*", "probe"]),
    ("interval:s:1", "interval", ["s", "1"]),
    ("interval:1s", "interval", ["1s"]),
    ("profile:hz:99", "profile", ["hz", "99"]),
    ("i:ms:$1", "i", ["ms", "$1"]),
    ("watchpoint:0x1234:8:w", "watchpoint", ["0x1234", "8", "w"]),
    ("self:signal:SIGUSR1", "self", ["signal", "SIGUSR1"]),
    ("iter:task", "iter", ["task"]),
    ("software:cpu-clock:1000", "software", ["cpu-clock", "1000"]),
    ("hardware:cache-misses:1e6", "hardware", ["cache-misses", "1e6"]),
    ("uprobe:/usr/lib/x86_64-linux-gnu/libc.so.6:malloc", "uprobe",
     ["/usr/lib/x86_64-linux-gnu/libc.so.6", "malloc"]),
    ("kprobe:lookup_fast.constprop.0", "kprobe", ["lookup_fast.constprop.0"]),
])
def test_attach_point_splitting(raw, provider, parts):
    prog = parse(raw + " { }")
    (ap,) = prog.probes[0].attach_points
    assert (ap.raw, ap.provider, ap.parts) == (raw, provider, parts)
    assert sp(ap) == (1, 1, 1, 1 + len(raw))


def test_several_attach_points():
    prog = parse("kprobe:a,kprobe:b ,\n  kprobe:c\n{ }")
    aps = prog.probes[0].attach_points
    assert [a.raw for a in aps] == ["kprobe:a", "kprobe:b", "kprobe:c"]
    assert sp(aps[2]) == (2, 3, 2, 11)
    assert prog.probes[0].predicate is None


def test_path_slash_vs_predicate():
    prog = parse("uprobe:/bin/bash:readline /pid == 1/ { }")
    probe = prog.probes[0]
    assert probe.attach_points[0].parts == ["/bin/bash", "readline"]
    assert sx(probe.predicate) == "(== pid 1)"


def test_predicate_may_divide():
    probe = parse("kprobe:f /pid / 2 == 1/ { }").probes[0]
    assert sx(probe.predicate) == "(== (/ pid 2) 1)"
    probe = parse("kprobe:f /@m[tid] / 1000 > 5/\n{\n}").probes[0]
    assert sx(probe.predicate) == "(> (/ @m[tid] 1000) 5)"
    probe = parse("kprobe:f /arg0/ /* c */ { }").probes[0]
    assert sx(probe.predicate) == "arg0"


def test_attach_point_ends_at_brace_and_comma():
    prog = parse("BEGIN,END{}")
    assert [a.raw for a in prog.probes[0].attach_points] == ["BEGIN", "END"]
    assert parse("i:s:1{exit();}").probes[0].attach_points[0].parts == ["s", "1"]


def test_probe_span_and_several_probes():
    prog = parse("BEGIN { }\nEND {\n}")
    assert [p.attach_points[0].raw for p in prog.probes] == ["BEGIN", "END"]
    assert sp(prog.probes[0]) == (1, 1, 1, 10)
    assert sp(prog.probes[1]) == (2, 1, 3, 2)
    assert sp(prog.probes[1].body) == (2, 5, 3, 2)


def test_statement_after_nested_block_is_not_an_attach_point():
    stmts = body("BEGIN { if (1) { } exit(); { } printf(\"x\"); }")
    assert [type(s).__name__ for s in stmts] == ["If", "ExprStmt", "Block", "ExprStmt"]


# ---------------------------------------------------------------- expressions


@pytest.mark.parametrize("text, tree", [
    ("1 + 2 * 3", "(+ 1 (* 2 3))"),
    ("1 - 2 - 3", "(- (- 1 2) 3)"),
    ("8 / 4 / 2", "(/ (/ 8 4) 2)"),
    ("1 + 2 % 3 * 4", "(+ 1 (* (% 2 3) 4))"),
    ("1 << 2 + 3", "(<< 1 (+ 2 3))"),
    ("1 < 2 == 3 > 4", "(== (< 1 2) (> 3 4))"),
    ("1 & 2 == 2", "(& 1 (== 2 2))"),
    ("1 | 2 ^ 3 & 4", "(| 1 (^ 2 (& 3 4)))"),
    ("a || b && c", "(|| a (&& b c))"),
    ("a && b || c && d", "(|| (&& a b) (&& c d))"),
    ("a ? b : c ? d : e", "(? a b (? c d e))"),
    ("a || b ? 1 : 2", "(? (|| a b) 1 2)"),
    ("(1 + 2) * 3", "(* (+ 1 2) 3)"),
    ("-1 + -2", "(+ (- 1) (- 2))"),
    ("!a && ~b", "(&& (! a) (~ b))"),
    ("*$p + 1", "(+ (* $p) 1)"),
    ("&$v", "(& $v)"),
    ("$a * -$b", "(* $a (- $b))"),
    ("- - 1", "(- (- 1))"),
    ("$i++ + ++$j", "(+ (++post $i) (++pre $j))"),
    ("$i-- - --$j", "(- (--post $i) (--pre $j))"),
    ("@x++", "(++post @x)"),
    ("$p->a->b", "(-> (-> $p a) b)"),
    ("args.filename", "(. args filename)"),
    ("args->filename", "(-> args filename)"),
    ("$t.0", "(.0 $t)"),
    ("$t.1.0", "(.0 (.1 $t))"),
    ("$t[0]", "([] $t 0)"),
    ("$p[1][2]", "([] ([] $p 1) 2)"),
    ("-$p->x", "(- (-> $p x))"),
    ("*$p->x", "(* (-> $p x))"),
    ("@m[1, 2].x", "(. @m[1, 2] x)"),
    ("@m[1][2]", "([] @m[1] 2)"),
    ("@", "@"),
    ("@[1, comm]", "@[1, comm]"),
    ("@m", "@m"),
    ("$1 + $#", "(+ $1 $#)"),
    ("pid", "pid"),
    ("comm()", "comm()"),
    ("kstack(perf, 10)", "kstack(perf, 10)"),
    ("nsecs(monotonic)", "nsecs(monotonic)"),
    ("printf(\"%d\", 1)", "printf('%d', 1)"),
    ("delete(@m, 1)", "delete(@m, 1)"),
    ("delete(@m[1])", "delete(@m[1])"),
    ("unknown_thing", "unknown_thing"),
    ("true", "true"),
    ("false || true", "(|| false true)"),
    ("x.if", "(. x if)"),
    ("$r.struct", "(. $r struct)"),
])
def test_expression_shapes(text, tree):
    assert sx(expr(text)) == tree


@pytest.mark.parametrize("text, tree", [
    ("(uint8)1", "(cast uint8 1)"),
    ("(int16)-1", "(cast int16 (- 1))"),
    ("(uint64)$a + 1", "(+ (cast uint64 $a) 1)"),
    ("-(uint8)1", "(- (cast uint8 1))"),
    ("(int8[4])x", "(cast int8[4] x)"),
    ("(struct task_struct *)curtask", "(cast struct task_struct* curtask)"),
    ("(struct foo **)arg0", "(cast struct foo** arg0)"),
    ("(union u *)arg0", "(cast union u* arg0)"),
    ("(enum e)arg0", "(cast enum e arg0)"),
    ("(char *)arg0", "(cast char* arg0)"),
    ("(unsigned long long)5", "(cast unsigned long long 5)"),
    ("(pid_t *)arg0", "(cast pid_t* arg0)"),
    ("(uint8 *)arg0", "(cast uint8* arg0)"),
    ("((struct sock *)arg0)->sk_state", "(-> (cast struct sock* arg0) sk_state)"),
    ("(struct sock *)arg0->sk", "(cast struct sock* (-> arg0 sk))"),
    ("(pid)", "pid"),
    ("(pid) - 1", "(- pid 1)"),
    ("(a * b)", "(* a b)"),
    ("(uint32)(arg0 + 1)", "(cast uint32 (+ arg0 1))"),
    ("sizeof(struct foo)", "(sizeof type struct foo)"),
    ("sizeof(uint32)", "(sizeof type uint32)"),
    ("sizeof($x)", "(sizeof $x)"),
    ("sizeof(pid)", "(sizeof pid)"),
    ("sizeof(arg0)", "(sizeof arg0)"),
    ("sizeof(my_typedef_t)", "(sizeof type my_typedef_t)"),
    ("sizeof(pid_t *)", "(sizeof type pid_t*)"),
    ("offsetof(struct foo, bar)", "(offsetof struct foo bar)"),
    ("offsetof(struct task_struct, se.cfs_rq)", "(offsetof struct task_struct se.cfs_rq)"),
    ("offsetof(foo_t, a)", "(offsetof foo_t a)"),
])
def test_casts_versus_parentheses(text, tree):
    assert sx(expr(text)) == tree


@pytest.mark.parametrize("text, tree", [
    ("(1, 2)", "(tuple 1 2)"),
    ("(1,)", "(tuple 1)"),
    ("(1, 2,)", "(tuple 1 2)"),
    ("(1, \"a\", $x)", "(tuple 1 'a' $x)"),
    ("((1, 2), (3,))", "(tuple (tuple 1 2) (tuple 3))"),
    ("(x = 1, y = 2)", "(record x=1 y=2)"),
    ("(x = 1)", "(record x=1)"),
    ("(a = (1, 2), b = (c = 3))", "(record a=(tuple 1 2) b=(record c=3))"),
    ("(name = comm, id = pid).id", "(. (record name=comm id=pid) id)"),
    ("(1, 2).1", "(.1 (tuple 1 2))"),
])
def test_tuples_and_records(text, tree):
    assert sx(expr(text)) == tree


def test_block_expressions():
    assert sx(expr("{ let $a = 1; $a + 1 }")) == "(block 1 (+ $a 1))"
    assert sx(expr("{ 5 }")) == "(block 0 5)"
    e = expr("{ $t = 2; { $t * 3 } }")
    assert sx(e) == "(block 1 (block 0 (* $t 3)))"
    call = expr("f({ 1 })")
    assert sx(call) == "f((block 0 1))"
    assert msg("BEGIN { $x = { 1; }; }").endswith("a block used as a value must end with an expression (without ';')")
    assert msg("BEGIN { $x = {}; }").startswith("1:14-16:")


# ---------------------------------------------------------------- statements


def test_assignments():
    stmts = body("BEGIN { $a = 1; @b[1] = 2; $a += 1; @c <<= 2; $r.x = 3; $t[0] = 1; @m[1].f = 2; }")
    assert [(type(s).__name__, s.op) for s in stmts] == [
        ("Assign", None), ("Assign", None), ("Assign", "+"), ("Assign", "<<"), ("Assign", None),
        ("Assign", None), ("Assign", None)]
    assert [sx(s.target) for s in stmts] == ["$a", "@b[1]", "$a", "@c", "(. $r x)", "([] $t 0)",
                                             "(. @m[1] f)"]
    for op in ["+", "-", "*", "/", "%", "&", "|", "^", "<<", ">>"]:
        (s,) = body(f"BEGIN {{ $a {op}= 2; }}")
        assert s.op == op and sx(s.value) == "2"


def test_let():
    stmts = body("BEGIN { let $a; let $b = 1; let $c: uint32 = 5; let $d: struct task_struct * = curtask;"
                 " let $e: int8[4]; let $f: string[16]; let $g: pid_t; }")
    assert all(isinstance(s, ast.Let) for s in stmts)
    assert [s.var.name for s in stmts] == list("abcdefg")
    assert [ty(s.declared) if s.declared else None for s in stmts] == [
        None, None, "uint32", "struct task_struct*", "int8[4]", "string[16]", "pid_t"]
    assert [sx(s.value) if s.value else None for s in stmts] == [None, "1", "5", "curtask", None, None, None]
    assert sp(stmts[2]) == (1, 29, 1, 47)
    assert sp(stmts[2].var) == (1, 33, 1, 35)


def test_if_else_chain():
    (s,) = body("BEGIN { if (a) { 1; } else if (b) { 2; } else { 3; } }")
    assert isinstance(s, ast.If) and sx(s.cond) == "a"
    inner = s.orelse.stmts[0]
    assert isinstance(inner, ast.If) and sx(inner.cond) == "b"
    assert len(s.orelse.stmts) == 1
    assert sx(inner.orelse.stmts[0].expr) == "3"
    (s,) = body("BEGIN { if (a) { } }")
    assert s.orelse is None and s.then.stmts == []


def test_loops_and_jumps():
    stmts = body("BEGIN { unroll(5) { $i++; } while ($i < 10) { break; continue; } "
                 "for ($kv : @m) { print($kv.0); } for ($i : 0..10) { } for ($j : $a..$a + 5) { } "
                 "return; return 1 }")
    u, w, fm, fr, fr2, r0, r1 = stmts
    assert isinstance(u, ast.Unroll) and sx(u.count) == "5"
    assert isinstance(w, ast.While) and [type(x).__name__ for x in w.body.stmts] == ["Break", "Continue"]
    assert isinstance(fm, ast.ForMap) and fm.var.name == "kv" and sx(fm.map) == "@m"
    assert isinstance(fr, ast.ForRange) and (sx(fr.start), sx(fr.end)) == ("0", "10")
    assert (sx(fr2.start), sx(fr2.end)) == ("$a", "(+ $a 5)")
    assert isinstance(r0, ast.Return) and r0.value is None
    assert sx(r1.value) == "1"


def test_semicolons_are_flexible():
    assert len(body("BEGIN { $x = 1 }")) == 1
    assert len(body("BEGIN { ; $x = 1;; }")) == 1
    assert len(body("BEGIN { if (1) { }; $x = 1 }")) == 2
    assert body("BEGIN { }") == []


# ---------------------------------------------------------------- top level


def test_top_level_items():
    prog = parse("""#!/usr/bin/env bpftrace
#include <linux/sched.h>
#define X 1
struct foo { int a; union { int b; long c; } u; };
enum e { A, B };
config = { max_strlen = 64; stack_mode = perf }
import "lib.bt";
let @m = lruhash(100);
macro add($a, @b, c) { $a + 1 }
BEGIN { }
""", "t.bt")
    assert [(c.kind, c.text) for c in prog.c_definitions] == [
        ("include", "#include <linux/sched.h>"),
        ("define", "#define X 1"),
        ("struct", "struct foo { int a; union { int b; long c; } u; };"),
        ("enum", "enum e { A, B };"),
    ]
    assert [(i.key, sx(i.value)) for i in prog.config.items] == [("max_strlen", "64"), ("stack_mode", "perf")]
    assert [i.path for i in prog.imports] == ["lib.bt"]
    assert [(d.name, d.kind, d.size) for d in prog.map_decls] == [("m", "lruhash", 100)]
    (m,) = prog.macros
    assert (m.name, m.params) == ("add", ["$a", "@b", "c"])
    assert sx(m.body.stmts[0].expr) == "(+ $a 1)"
    assert len(prog.probes) == 1
    assert sp(prog.c_definitions[2]) == (4, 1, 4, 51)


def test_preprocessor_kinds_and_continuations():
    prog = parse("#ifdef A\n#define M(a) \\\n  ((a) + 1)\n#else\n#endif\ntypedef unsigned int u32_t;\nBEGIN {}")
    assert [c.kind for c in prog.c_definitions] == ["ifdef", "define", "ifdef", "ifdef", "other"]
    assert prog.c_definitions[1].text == "#define M(a) \\\n  ((a) + 1)"


def test_config_and_macros_and_empty_program():
    assert parse("").probes == []
    assert parse("// just a comment\n").probes == []
    prog = parse('config = { missing_probes = "warn"; }\nmacro f() { }')
    assert prog.config.items[0].key == "missing_probes"
    assert prog.macros[0].params == [] and prog.macros[0].body.stmts == []
    assert msg("config = { a = 1 }\nconfig = { b = 2 }").endswith("only one config block is allowed")


def test_shebang_keeps_positions():
    prog = parse("#!/usr/bin/env bpftrace\nBEGIN { exit(); }")
    assert sp(prog.probes[0]) == (2, 1, 2, 18)
    assert errors.SOURCES.line("stdin", 1) == "#!/usr/bin/env bpftrace"


def test_keywords_are_contextual():
    # keywords only where the grammar expects them: fields and macro parameters may use the words
    assert sx(expr("args.if + args.while")) == "(+ (. args if) (. args while))"
    prog = parse("macro m(config) { config }")
    assert prog.macros[0].params == ["config"]
    # type words are identifiers outside casts
    assert sx(expr("uint8 + string")) == "(+ uint8 string)"


# ---------------------------------------------------------------- literals


@pytest.mark.parametrize("text, value", [
    ("0", 0), ("42", 42), ("0x10", 16), ("0XfF", 255), ("0755", 0o755), ("00", 0), ("1_000", 1000),
    ("1_000_000", 10**6), ("1e6", 10**6), ("2E3", 2000), ("10u", 10), ("10UL", 10), ("5ll", 5),
    ("7ULL", 7), ("8lu", 8), ("0x10ul", 16), ("0b101", 5), ("18446744073709551615", 2**64 - 1),
    ("100ns", 100), ("10us", 10_000), ("5ms", 5_000_000), ("1s", 10**9), ("2m", 120 * 10**9),
    ("1h", 3600 * 10**9), ("1d", 86400 * 10**9), ("1_500ms", 1_500_000_000),
])
def test_integer_literals(text, value):
    e = expr(text)
    assert isinstance(e, ast.IntLit) and e.value == value
    assert sp(e) == (1, 14, 1, 14 + len(text))


@pytest.mark.parametrize("text", ["08", "1abc", "0x", "0xg", "1e", "1_", "1__0", "10sec", "0b2", "1uu"])
def test_bad_integer_literals(text):
    assert msg(f"BEGIN {{ $x = {text}; }}") == f"1:14-{14 + len(text)}: invalid integer literal: {text}"


def test_integer_too_large():
    assert msg("BEGIN { $x = 18446744073709551616; }").endswith(
        "integer literal is too large: 18446744073709551616")
    for text in ["9" * 5000, "0x" + "f" * 5000, "0" + "7" * 5000, "1e99999", "0b" + "1" * 5000]:
        assert "integer literal is too large" in msg(f"BEGIN {{ $x = {text}; }}")
    assert "positional parameter number is too large" in msg("BEGIN { $x = $" + "9" * 5000 + "; }")
    assert msg("BEGIN { $x = $t." + "9" * 50 + "; }").startswith("1:17-67: integer literal is too large")


@pytest.mark.parametrize("text, value", [
    (r'"plain"', "plain"),
    (r'""', ""),
    (r'"a\nb\tc\rd"', "a\nb\tc\rd"),
    (r'"back\\slash"', "back\\slash"),
    (r'"q\"q"', 'q"q'),
    (r"'x'".replace("'x'", r'"s\'q"'), "s'q"),
    (r'"\101\102"', "AB"),
    (r'"\0"', "\0"),
    (r'"\012"', "\n"),
    (r'"\1234"', "S4"),
    (r'"\x41\x4a\x7f"', "AJ\x7f"),
    (r'"\x4"', "\x04"),
    (r'"\x414"', "A4"),
    ('"/* not a comment */ // nor this"', "/* not a comment */ // nor this"),
    ('"é"', "é"),
])
def test_string_escapes(text, value):
    e = expr(text)
    assert isinstance(e, ast.StrLit) and e.value == value


def test_high_byte_escapes_round_trip_as_bytes():
    e = expr(r'"\xff\200é"')
    assert e.value.encode("utf-8", "surrogateescape") == b"\xff\x80\xc3\xa9"


@pytest.mark.parametrize("text, bad", [(r'"\q"', r"\q"), (r'"ab\a"', r"\a"), (r'"\x"', r"\x"),
                                       (r'"\777"', r"\777")])
def test_bad_escapes(text, bad):
    m = msg(f"BEGIN {{ $x = {text}; }}")
    assert m.endswith(f"invalid escape character '{bad}'")
    assert m.startswith("1:14-")


# ---------------------------------------------------------------- spans


def test_spans():
    src = 'BEGIN { @m[1, 2] = count(); $y = (1 + 2) * foo(3, "a"); }'
    s1, s2 = body(src)
    assert sp(s1) == (1, 9, 1, 27)
    assert sp(s1.target) == (1, 9, 1, 17)          # @m[1, 2]
    assert sp(s1.value) == (1, 20, 1, 27)          # count()
    mul = s2.value
    assert sp(mul) == (1, 34, 1, 55)               # (1 + 2) * foo(3, "a")
    assert sp(mul.left) == (1, 35, 1, 40)          # 1 + 2
    assert sp(mul.right) == (1, 44, 1, 55)         # foo(3, "a")
    assert sp(mul.right.args[1]) == (1, 51, 1, 54)  # "a"
    assert sp(s2.target) == (1, 29, 1, 31)


def test_spans_of_casts_tuples_and_statements():
    src = "BEGIN {\n  $p = (struct sock *)arg0;\n  if ($p) {\n    $t = (1, 2);\n  }\n}"
    a, i = body(src)
    assert sp(a.value) == (2, 8, 2, 27)
    assert sp(a.value.to) == (2, 9, 2, 22)
    assert sp(i) == (3, 3, 5, 4)
    assert sp(i.then) == (3, 11, 5, 4)
    assert sp(i.then.stmts[0].value) == (4, 10, 4, 16)


def test_spans_of_predicate_and_attach_points():
    probe = parse("kprobe:f,\n kprobe:g /pid == 1/ { }").probes[0]
    assert sp(probe.attach_points[1]) == (2, 2, 2, 10)
    assert sp(probe.predicate) == (2, 12, 2, 20)
    assert sp(probe) == (1, 1, 2, 25)


def test_spans_with_tabs_and_multiline_expressions():
    (s,) = body("BEGIN\n{\n\tprintf(\"%d\\n\",\n\t    pid);\n}")
    assert sp(s.expr) == (3, 2, 4, 10)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("src, expected", [
    ("BEGIN { $x = ; }", "1:14-15: syntax error, unexpected ;"),
    ("BEGIN { exit() ", "1:16-16: syntax error, unexpected end of file, expecting }"),
    ("BEGIN {\n  exit();\n\n", "4:1-1: syntax error, unexpected end of file, expecting }"),
    ("BEGIN foo {}", "1:7-10: syntax error, unexpected identifier, expecting {"),
    ("BEGIN foo", "1:7-10: syntax error, unexpected identifier, expecting {"),
    ("BEGIN {} END", "1:13-13: syntax error, unexpected end of file, expecting {"),
    ("BEGIN /1/ foo", "1:14-14: syntax error, unexpected end of file, expecting end predicate"),
    ("BEGIN { $x = (1,2; }", "1:18-19: syntax error, unexpected ;, expecting ) or \",\""),
    ("BEGIN { @x[1 = 2; }", "1:14-15: syntax error, unexpected =, expecting ] or \",\""),
    ("BEGIN { if 1 }", "1:14-15: syntax error, unexpected }, expecting {"),
    ("BEGIN { $x = 1 + }", "1:18-19: syntax error, unexpected }"),
    ("BEGIN { print(1) print(2) }", "1:18-23: syntax error, unexpected identifier, expecting }"),
    ("BEGIN { $x = 1 if }", "1:16-18: syntax error, unexpected if, expecting }"),
    ("BEGIN { 1 = 2; }", "1:11-12: syntax error, unexpected ="),
    ("BEGIN { f() += 2; }", "1:13-15: syntax error, unexpected +="),
    ("BEGIN { $x = pid pid; }", "1:18-21: syntax error, unexpected builtin, expecting }"),
    ("kprobe:f/pid==1/{}", "1:13-15: syntax error, unexpected ==, expecting {"),
    ("BEGIN { $x = \"abc; }", "1:14-21: unterminated string"),
    ('BEGIN { printf("abc); }', "1:16-24: unterminated string"),
    ("BEGIN { $x = \"a\nb\"; }", "1:14-16: unterminated string"),
    ("BEGIN { /* abc }", "1:9-17: end of file during comment"),
    ("BEGIN { $x = 1 /* abc\n }", "1:16-22: end of file during comment"),
    ("BEGIN { $x = 1 ` 2; }", "1:16-17: invalid character '`'"),
    ("BEGIN { \x01 }", "1:9-10: invalid character '\\x01'"),
    ("BEGIN { é }", "1:9-10: invalid character 'é'"),
    ("BEGIN { $x = 1; } }", "1:19-20: syntax error, unexpected }"),
    ("{ }", "1:1-2: syntax error, unexpected {"),
    ("BEGIN { let @m = hash(1); }", "1:13-15: syntax error, unexpected map, expecting variable"),
    ("let $x = 1;", "1:5-7: syntax error, unexpected variable, expecting map"),
    ("BEGIN { for ($i : 0..) { } }", "1:22-23: syntax error, unexpected )"),
    ("BEGIN { $x = (uint8); }", "1:21-22: syntax error, unexpected ;"),
])
def test_error_messages(src, expected):
    assert msg(src) == expected


def test_error_rendering():
    e = err("BEGIN { $x = ; }")
    assert e.render() == (
        "stdin:1:14-15: ERROR: syntax error, unexpected ;\n"
        "BEGIN { $x = ; }\n"
        "             ~")
    with pytest.raises(CompileError) as info:
        parse("BEGIN {\n\t$x = 1 +;\n}", "script.bt")
    assert info.value.render() == (
        "script.bt:2:10-11: ERROR: syntax error, unexpected ;\n"
        "\t$x = 1 +;\n"
        "\t        ~")


# ---------------------------------------------------------------- fuzzing


def _check_no_crash(text: str) -> None:
    try:
        parse(text, "fuzz")
    except CompileError as e:
        assert e.diagnostics and e.diagnostics[0].message
        assert "internal parser error" not in e.diagnostics[0].message, (text, e.diagnostics[0].message)
        e.render()  # rendering never fails either


def test_fuzz_random_bytes():
    rng = random.Random(1234)
    for _ in range(600):
        n = rng.randint(0, 80)
        data = bytes(rng.randrange(256) for _ in range(n))
        _check_no_crash(data.decode("utf-8", "surrogateescape"))
        _check_no_crash(data.decode("latin-1"))


_FUZZ_TOKENS = ["BEGIN", "kprobe:f", "{", "}", "(", ")", "[", "]", "/", "*", ";", ",", ":", "..", ".", "->",
                "=", "+=", "==", "?", "$x", "@m", "@", "$1", "$#", "pid", "printf", "\"s\"", "\"", "1", "0x", "1s",
                "if", "else", "for", "while", "unroll", "let", "return", "struct", "uint8", "sizeof",
                "offsetof", "config", "macro", "import", "#include <a.h>", "/*", "*/", "//", "\n", " ", "\\",
                "(struct x *)", "true", "'"]


def test_fuzz_token_soup():
    rng = random.Random(99)
    for _ in range(1500):
        text = " ".join(rng.choice(_FUZZ_TOKENS) for _ in range(rng.randint(1, 25)))
        _check_no_crash(text)


def test_fuzz_mutated_corpus():
    rng = random.Random(4321)
    texts = []
    for path in CORPUS:
        with open(path, encoding="utf-8") as f:
            texts.append(f.read())
    alphabet = "{}()[]/*;,:.$@\"'\\#!=<>+-&|^~%?\n \t0123456789abcxyz_"
    for i in range(1200):
        t = list(rng.choice(texts))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            pos = rng.randrange(len(t) + 1)
            if op == 0 and t:
                del t[min(pos, len(t) - 1)]
            elif op == 1:
                t.insert(pos, rng.choice(alphabet))
            elif op == 2 and t:
                t[min(pos, len(t) - 1)] = rng.choice(alphabet)
            else:
                end = rng.randint(pos, min(len(t), pos + 40))
                del t[pos:end]
        _check_no_crash("".join(t))


def test_deep_nesting_does_not_crash():
    _check_no_crash("BEGIN { $x = " + "(" * 3000 + "1" + ")" * 3000 + "; }")
    _check_no_crash("BEGIN { $x = " + " + ".join(["1"] * 3000) + "; }")
    _check_no_crash("BEGIN { " + "if (1) { " * 500 + "}" * 500 + " }")
    _check_no_crash("BEGIN { $x = " + "-" * 3000 + "1; }")


# ---------------------------------------------------------------- generated tables and startup


def test_grammar_tables_are_up_to_date():
    """grammar_tables.py is what gen_tables makes of grammar/*.lark with the installed lark."""
    pytest.importorskip("lark")
    from ptrace_lang.frontend import gen_tables

    assert gen_tables.generate(gen_tables.grammar_text()) == gen_tables.loaded(), (
        f"ptrace_lang/frontend/grammar_tables.py is out of date with the grammar: run `{gen_tables.COMMAND}`")


def test_generated_tables_are_canonical():
    """The same grammar gives the same module whatever the hash seed (Lark numbers states in set order)."""
    pytest.importorskip("lark")
    code = ("from ptrace_lang.frontend import gen_tables as g; "
            "print(g.render(g.generate(g.grammar_text())) == open(g.MODULE, encoding='utf-8').read())")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    for seed in ("1", "2"):
        env["PYTHONHASHSEED"] = seed
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "True", seed


def test_parse_neither_imports_lark_nor_writes_a_cache(tmp_path):
    code = ("import sys; from ptrace_lang.frontend.parser import parse; parse('BEGIN { exit(); }'); "
            "print('lark' in sys.modules)")
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["XDG_CACHE_HOME"] = str(tmp_path)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
    assert os.listdir(tmp_path) == []


def test_sources_registered():
    parse("BEGIN { }\n", "registered.bt")
    assert errors.SOURCES.line("registered.bt", 1) == "BEGIN { }"
    assert isinstance(Span("a", 1, 1, 1, 2), Span)
