"""Script text -> AST.

``parse(text, filename)`` runs the LALR(1) parser of ``grammar/ptrace.lark`` (contextual lexer) and turns
the parse tree into :mod:`ptrace_lang.frontend.ast` nodes with source spans. Every failure is a
:class:`~ptrace_lang.errors.CompileError` worded like bpftrace's (``syntax error, unexpected ;``); Lark's own
exceptions never escape.

The pieces: the lexer and LALR driver in :mod:`~ptrace_lang.frontend.lalr`, running tables generated
from the grammar at development time (:mod:`~ptrace_lang.frontend.gen_tables` writes
:mod:`~ptrace_lang.frontend.grammar_tables`, so a start neither imports lark nor builds anything); literal
decoding in :mod:`~ptrace_lang.frontend.literals`; the tree -> AST builder in
:mod:`~ptrace_lang.frontend.build`; here, the syntax errors' wording.
"""
from __future__ import annotations

import re

from ptrace_lang import errors
from ptrace_lang.errors import CompileError, Span
from ptrace_lang.frontend import ast, lalr
from ptrace_lang.frontend.build import Builder
from ptrace_lang.frontend.lalr import LexFailure, Tables, Unexpected, line_col
from ptrace_lang.sema.builtins import VARIABLES

__all__ = ["parse", "BUILTIN_VARIABLES"]

# Names that are builtin variables (used to tell ``sizeof(pid)`` from ``sizeof(my_typedef_t)`` and to word
# syntax errors as bpftrace does). Everything else written bare is still a ``Builtin`` node; sema judges it.
BUILTIN_VARIABLES = VARIABLES      # (sema.builtins: the one table of builtins)
_ARGN = re.compile(r"s?arg[0-9]+")


def _is_builtin_variable(name: str) -> bool:
    return name in BUILTIN_VARIABLES or _ARGN.fullmatch(name) is not None


# ---------------------------------------------------------------- public entry point


def parse(text: str, filename: str = "stdin") -> ast.Program:
    """Parse a whole script. Raises CompileError (never anything else) on any bad input."""
    errors.SOURCES.add(filename, text)
    src = text
    if src.startswith("#!"):
        # A shebang line: blank it out (keeping columns and line numbers intact).
        nl = src.find("\n")
        nl = len(src) if nl < 0 else nl
        src = " " * nl + src[nl:]
    tables = lalr.tables()
    err: CompileError | None = None
    try:
        tree = lalr.run(tables, src)
    except LexFailure as e:
        err = _lex_error(e, src, filename)
    except Unexpected as e:
        err = _syntax_error(tables, e, src, filename)
    except Exception as e:  # pragma: no cover - a bug here must still not show the user a traceback
        err = CompileError(f"internal parser error: {type(e).__name__}: {e}", _eof_span(src, filename))
    if err is not None:
        raise err
    try:
        return Builder(filename, text, _is_builtin_variable).program(tree)
    except CompileError:
        raise
    except Exception as e:  # pragma: no cover - as above
        raise CompileError(f"internal parser error: {type(e).__name__}: {e}", _eof_span(src, filename)) from None


# ---------------------------------------------------------------- syntax errors


def _pos_span(src: str, filename: str, pos: int, end: int | None = None) -> Span:
    """From ``pos`` to ``end`` (default and at most: the end of pos's line)."""
    line, col = line_col(src, pos)
    eol = src.find("\n", pos)
    eol = len(src) if eol < 0 else eol
    if end is None or end > eol:
        end = eol
    end = max(end, pos + 1)
    return Span(filename, line, col, line, col + (end - pos))


def _eof_span(src: str, filename: str) -> Span:
    line, col = line_col(src, len(src))
    return Span(filename, line, col, line, col)


def _tok_span(tok, filename: str) -> Span:
    return Span(filename, tok.line, tok.column, tok.end_line, tok.end_column)


_REGEX_DISPLAY = {
    "$END": "end of file",
    "NAME": "identifier",
    "NUMBER": "integer",
    "STRING": "string",
    "VAR": "variable",
    "MAP": "map",
    "POSPARAM": "positional parameter",
    "PARAMCOUNT": "$#",
    "ATTACH_POINT": "attach point",
    "PRED_END": "end predicate",
    "C_DEF": "C definition",
    "PREPROC": "preprocessor directive",
    "PTR_CAST": "(",
    "TYPE_WORD": "type",
}

# Order of tokens in "expecting A or B": closers first, as bpftrace tends to list them.
_ORDER = {name: i for i, name in enumerate(
    ["$END", "RBRACE", "RPAR", "RSQB", "COMMA", "SEMICOLON", "LBRACE", "LPAR", "LSQB", "COLON", "PRED_END",
     "ASSIGN", "DOTDOT"])}


def _display(tables: Tables, name: str, value: str | None = None) -> str:
    if name in ("NAME", "ATTACH_POINT") and value is not None:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            if value in BUILTIN_VARIABLES or _ARGN.fullmatch(value):
                return "builtin"
            return "identifier"
    if name in _REGEX_DISPLAY:
        return _REGEX_DISPLAY[name]
    s = tables.strings.get(name)
    if s is None:
        return name.lower()
    # bison quotes token names that contain a comma or a quote: expecting ) or ","
    return f'"{s}"' if ("," in s or "'" in s or "\\" in s) else s


def _is_terminal(sym: str) -> bool:
    return sym == "$END" or sym == "_ELSE" or (sym.isupper() and not sym.startswith("_"))


def _expected_after_default_reductions(tables: Tables, stack: list[int], token_type: str) -> list[str]:
    """bpftrace's bison parser performs default reductions before it notices an error, so its
    "expecting" list is the set of tokens shiftable in the state where no reduction is left.
    Emulate that on our LALR tables."""
    states = tables.states
    work: list[int] | None = list(stack)
    for _ in range(500):
        actions = states[work[-1]]
        reduces: dict[int, int] = {}
        for act in actions.values():
            if act < 0:
                reduces[act] = reduces.get(act, 0) + 1
        if not reduces:
            break
        act = max(reduces.items(), key=lambda kv: (kv[1], kv[0]))[0]
        _name, origin, size, _e, _i = tables.rules[-act - 1]
        if size:
            if size >= len(work):
                break
            del work[-size:]
        goto = states[work[-1]].get(origin)
        if goto is None:
            break
        work.append(goto)
        if token_type in states[goto]:
            work = None  # accepted after all: report the original state
            break
    final = states[work[-1]] if work else states[stack[-1]]
    return [sym for sym, act in final.items() if act >= 0 and _is_terminal(sym)]


def _expecting(tables: Tables, names) -> str:
    names = set(names)
    if "LBRACE" in names and "SLASH" in names:
        names = {"LBRACE"}  # after attach points: "," and a predicate are possible too, bpftrace says "{"
    shown: list[str] = []
    for n in sorted(names, key=lambda n: (_ORDER.get(n, 100), _display(tables, n))):
        d = _display(tables, n)
        if d not in shown:
            shown.append(d)
    if not shown or len(shown) > 4:
        return ""
    return ", expecting " + " or ".join(shown)


def _syntax_error(tables: Tables, e: Unexpected, src: str, filename: str) -> CompileError:
    tok = e.token
    if tok.type == "$END":
        what = "end of file"
        span = _eof_span(src, filename)
    else:
        what = _display(tables, tok.type, str(tok))
        span = _tok_span(tok, filename)
    expected = _expected_after_default_reductions(tables, e.stack, tok.type)
    if tok.type == "$END" and "RBRACE" in expected:
        expected = ["RBRACE"]  # the input stopped inside a block: the useful hint is the missing "}"
    return CompileError(f"syntax error, unexpected {what}{_expecting(tables, expected)}", span)


def _lex_error(e: LexFailure, src: str, filename: str) -> CompileError:
    pos = e.pos
    if e.message:
        return CompileError(e.message, _pos_span(src, filename, pos, e.end))
    ch = src[pos] if pos < len(src) else ""
    if ch == '"':
        return CompileError("unterminated string", _pos_span(src, filename, pos))
    if src.startswith("/*", pos):
        return CompileError("end of file during comment", _pos_span(src, filename, pos))
    shown = ch if ch.isprintable() else ascii(ch)[1:-1]
    if "\udc80" <= ch <= "\udcff":        # a byte that is not UTF-8 (read with surrogateescape)
        shown = f"\\x{ord(ch) - 0xdc00:02x}"
    return CompileError(f"invalid character '{shown}'", _pos_span(src, filename, pos, pos + 1))


