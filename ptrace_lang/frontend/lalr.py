"""The contextual lexer and LALR(1) driver that run the tables of grammar/ptrace.lark.

The tables are plain data in :mod:`ptrace_lang.frontend.grammar_tables`, written by
``python -m ptrace_lang.frontend.gen_tables`` from the grammar with Lark; a parse never imports lark.
``run(tables(), text)`` returns a parse tree of :class:`Node` and :class:`Token` shaped like Lark's
(rule names, kept children, positions); a failure is :class:`LexFailure` or :class:`Unexpected`, which
the parser words as bpftrace would.
"""
from __future__ import annotations

import re

# Terminals that are only lexed where the parser state accepts them; every other terminal is always lexed.
# Keywords (string terminals that also match NAME/ATTACH_POINT) are recognised after matching a word, and
# only count as keywords where the parser accepts them (`args.if` is a field named "if").
_CONTEXTUAL = frozenset({"ATTACH_POINT", "C_DEF", "PREPROC", "PRED_END", "PTR_CAST", "TYPE_WORD"})


# ---------------------------------------------------------------- tables


class Tables:
    """The LALR tables and terminals of grammar/ptrace.lark, with the lexer's regexes compiled on demand."""

    def __init__(self, states, rules, start, end, terminals, keywords, ignore) -> None:
        self.states: tuple[dict[str, int], ...] = states  # symbol -> state (shift/goto) or -(rule+1) (reduce)
        self.rules: tuple[tuple, ...] = rules  # (tree name, origin, size, expand1, include)
        self.start: int = start
        self.end: int = end
        self.terminals: tuple[tuple, ...] = terminals  # (name, regexp, is_str, str value), in match order
        self.keywords: dict[str, dict[str, str]] = keywords  # regex terminal -> {word: keyword terminal}
        self.ignore: frozenset = frozenset(ignore)
        self.strings: dict[str, str] = {t[0]: t[3] for t in self.terminals if t[2]}
        keyword_names = {k for m in self.keywords.values() for k in m.values()}
        self._base = [t for t in self.terminals if t[0] not in _CONTEXTUAL and t[0] not in keyword_names]
        self._extra = {t[0]: t for t in self.terminals if t[0] in _CONTEXTUAL}
        self._scanners: dict[frozenset, list] = {}
        self._state_scanner: dict[int, list] = {}
        self._base_scanner: list | None = None
        self._root_scanner: list | None = None
        # rules that reduce one symbol to itself (expand1 of a single kept child: the
        # precedence ladder, most of a parse's reductions): the driver only changes the state
        self.unit: tuple[bool, ...] = tuple(size == 1 and expand1 and tuple(include) == ((0, False),)
                                            for _, _, size, expand1, include in rules)
        order = {t[0]: i for i, t in enumerate(self.terminals)}
        first_base = min(order[t[0]] for t in self._base)
        assert all(order[name] < first_base for name in self._extra), "contextual terminals must come first"

    @property
    def root_scanner(self):
        """Every terminal: used when nothing acceptable matches, to name what was found instead."""
        if self._root_scanner is None:
            self.scanner(self.start)  # compiles the shared part
            self._root_scanner = self._compile(list(self._extra.values())) + self._base_scanner
        return self._root_scanner

    def _compile(self, terms):
        order = {t[0]: i for i, t in enumerate(self.terminals)}
        terms = sorted(terms, key=lambda t: order[t[0]])
        out = []
        for i in range(0, len(terms), 90):
            chunk = terms[i:i + 90]
            out.append(re.compile("|".join("(?P<%s>%s)" % (t[0], t[1]) for t in chunk)))
        return out

    def scanner(self, state: int):
        """The regexes to try in order at a position, for parser ``state``.

        The state's contextual terminals come first (they precede every other terminal in Lark's order:
        higher priority, or ATTACH_POINT, first of the priority-0 ones), then the terminals every state
        shares, compiled once."""
        sc = self._state_scanner.get(state)
        if sc is None:
            key = frozenset(k for k in self.states[state] if k in self._extra)
            sc = self._scanners.get(key)
            if sc is None:
                if self._base_scanner is None:
                    self._base_scanner = self._compile(self._base)
                extra = self._compile([self._extra[k] for k in key]) if key else []
                sc = self._scanners[key] = extra + self._base_scanner
            self._state_scanner[state] = sc
        return sc


_tables: Tables | None = None


def tables() -> Tables:
    """The grammar's tables, loaded (a plain import of the generated module) on first use."""
    global _tables
    if _tables is None:
        from ptrace_lang.frontend import grammar_tables as g

        _tables = Tables(g.STATES, g.RULES, g.START, g.END, g.TERMINALS, g.KEYWORDS, g.IGNORE)
    return _tables


# ---------------------------------------------------------------- the driver: contextual lexer + LALR(1)


class Token(str):
    """A lexed token: the matched text, its terminal name and its position (1-based, end exclusive)."""

    __slots__ = ("type", "start_pos", "line", "column", "end_line", "end_column")

    def __new__(cls, type_, value, start_pos, line, column, end_line, end_column):
        self = super().__new__(cls, value)
        self.type = type_
        self.start_pos = start_pos
        self.line = line
        self.column = column
        self.end_line = end_line
        self.end_column = end_column
        return self

    def __repr__(self) -> str:
        return f"Token({self.type}, {str(self)!r})"


class _Meta:
    __slots__ = ("empty", "line", "column", "end_line", "end_column")


class Node:
    """A parse tree node (rule name, children, position), shaped like Lark's Tree."""

    __slots__ = ("data", "children", "meta")

    def __init__(self, data, children, meta):
        self.data = data
        self.children = children
        self.meta = meta

    def __repr__(self) -> str:
        return f"Node({self.data}, {self.children!r})"


class LexFailure(Exception):
    def __init__(self, message: str, pos: int, end: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.end = end


class Unexpected(Exception):
    def __init__(self, token: Token, stack: list[int]) -> None:
        super().__init__(token.type)
        self.token = token
        self.stack = stack


def line_col(src: str, pos: int) -> tuple[int, int]:
    """The 1-based line and column of offset ``pos``."""
    line = src.count("\n", 0, pos) + 1
    start = src.rfind("\n", 0, pos) + 1
    return line, pos - start + 1


def _match(scanner, text: str, pos: int):
    for rx in scanner:
        m = rx.match(text, pos)
        if m:
            return m
    return None


def _lex_one(tables: Tables, text: str, pos: int, line: int, col: int, state: int):
    """The next significant token at ``pos`` for parser ``state``; returns (token, pos, line, col)."""
    n = len(text)
    accepts = tables.states[state]
    scanner = tables._state_scanner.get(state) or tables.scanner(state)
    keywords, ignore = tables.keywords, tables.ignore
    while True:
        if pos >= n:
            return Token("$END", "", pos, line, col, line, col), pos, line, col
        for rx in scanner:
            m = rx.match(text, pos)
            if m:
                break
        else:
            m = _match(tables.root_scanner, text, pos)
            if m is None:
                raise LexFailure("", pos)
        ttype = m.lastgroup
        value = m.group()
        kw = keywords.get(ttype)
        if kw is not None and value in kw:
            k = kw[value]
            if k in accepts or ttype not in accepts:
                ttype = k
        nl = value.count("\n")
        if nl:
            end_line = line + nl
            end_col = len(value) - value.rfind("\n")
        else:
            end_line = line
            end_col = col + len(value)
        if ttype in ignore:
            if ttype == "BLOCK_COMMENT" and (len(value) < 4 or not value.endswith("*/")):
                raise LexFailure("end of file during comment", pos)
            pos += len(value)
            line, col = end_line, end_col
            continue
        tok = Token(ttype, value, pos, line, col, end_line, end_col)
        return tok, pos + len(value), end_line, end_col


def run(tables: Tables, text: str) -> Node:
    """The parse tree of ``text``. Raises LexFailure or Unexpected."""
    states = tables.states
    rules = tables.rules
    unit = tables.unit
    end_state = tables.end
    stack = [tables.start]
    values: list = []
    pos, line, col = 0, 1, 1
    n = len(text)
    scanners, ignore, keywords = tables._state_scanner, tables.ignore, tables.keywords
    tok, pos, line, col = _lex_one(tables, text, pos, line, col, stack[-1])
    ttype = tok.type
    while True:
        act = states[stack[-1]].get(ttype)
        if act is None:
            raise Unexpected(tok, list(stack))
        if act >= 0:
            stack.append(act)
            values.append(tok)
            # the next token, as _lex_one finds it (inline: a call per token was a third of
            # a parse); the end of the text, a failed match and an unfinished comment are left
            # to _lex_one, at the position reached
            tok = None
            sc = scanners.get(act) or tables.scanner(act)
            accepts = states[act]
            while pos < n:
                for rx in sc:
                    m = rx.match(text, pos)
                    if m:
                        break
                else:
                    break
                ttype = m.lastgroup
                value = m.group()
                kw = keywords.get(ttype)
                if kw is not None and value in kw:
                    k = kw[value]
                    if k in accepts or ttype not in accepts:
                        ttype = k
                nl = value.count("\n")
                if nl:
                    end_line = line + nl
                    end_col = len(value) - value.rfind("\n")
                else:
                    end_line = line
                    end_col = col + len(value)
                if ttype in ignore:
                    if ttype == "BLOCK_COMMENT" and (len(value) < 4 or not value.endswith("*/")):
                        break
                    pos += len(value)
                    line, col = end_line, end_col
                    continue
                tok = Token(ttype, value, pos, line, col, end_line, end_col)
                pos += len(value)
                line, col = end_line, end_col
                break
            if tok is not None:
                continue
            tok, pos, line, col = _lex_one(tables, text, pos, line, col, act)
            ttype = tok.type
            continue
        r = -act - 1
        if unit[r]:         # the value stays on top: only the state changes
            goto = stack[-1] = states[stack[-2]][rules[r][1]]
            if goto == end_state and ttype == "$END":
                return values[-1]
            continue
        name, origin, size, expand1, include = rules[r]
        if size:
            children = values[-size:]
            del values[-size:]
            del stack[-size:]
        else:
            children = []
        kept = []
        for i, splice in include:
            c = children[i]
            if splice:
                kept.extend(c.children)
            else:
                kept.append(c)
        if expand1 and len(kept) == 1:
            node = kept[0]
        else:
            meta = _Meta()
            meta.empty = True
            for c in children:
                if c.__class__ is Node:
                    cm = c.meta
                    if cm.empty:
                        continue
                else:
                    cm = c
                meta.line, meta.column, meta.empty = cm.line, cm.column, False
                break
            if not meta.empty:
                for c in reversed(children):
                    if c.__class__ is Node:
                        cm = c.meta
                        if cm.empty:
                            continue
                    else:
                        cm = c
                    meta.end_line, meta.end_column = cm.end_line, cm.end_column
                    break
            node = Node(name, kept, meta)
        goto = states[stack[-1]][origin]
        stack.append(goto)
        values.append(node)
        if goto == end_state and ttype == "$END":
            return node
