"""Parse tree -> AST (:mod:`ptrace_lang.frontend.ast`), with source spans.

One ``t_<rule>`` method per tree node name of grammar/ptrace.lark, called bottom-up with the node's
children already built; the semantic checks a grammar cannot express (assignable targets, literal
ranges, one config block) raise CompileError here.
"""
from __future__ import annotations

import re

from ptrace_lang import errors
from ptrace_lang.errors import CompileError, Span
from ptrace_lang.frontend import ast
from ptrace_lang.frontend.lalr import Node, Token, line_col
from ptrace_lang.sema import builtins
from ptrace_lang.frontend.literals import decode_int, decode_string, split_attach_point

class _Last:
    """Marks the final statement of a block written without a trailing ``;``."""

    __slots__ = ("stmt",)

    def __init__(self, stmt):
        self.stmt = stmt


# Statements and expressions nested in one another at most (an `else if` is one level more):
# the later passes walk the AST recursively. Checked here, where nesting is built, naming the
# construct that crosses it; what counts as a level of nesting, by parse-tree rule:
MAX_NESTING = 100
NESTING = {
    "if_stmt": "an if statement", "while_stmt": "a while loop", "unroll_stmt": "an unroll",
    "for_map": "a for loop", "for_range": "a for loop", "block_stmt": "a block",
    "block_expr": "a block expression", "ternary": "a ?: expression",
    "binop": "a binary operator", "unop": "a unary operator", "pre_incdec": "++/--",
    "post_incdec": "++/--", "cast": "a cast", "ptr_cast": "a cast", "field": "a field access",
    "arrow": "a field access", "tuple_index": "a tuple index", "index": "an index",
    "call": "a function call", "map_ref": "a map key", "tuple": "a tuple", "record": "a record",
    "sizeof_expr": "sizeof", "assign": "an assignment", "let_stmt": "a let statement",
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ASSIGNABLE = (ast.Var, ast.MapRef, ast.FieldAccess, ast.Index, ast.TupleIndex)


class Builder:
    """Builds the AST of one parse tree (``program``). ``is_builtin_variable(name)`` tells a builtin
    variable from a type name in ``sizeof(name)``."""

    def __init__(self, filename: str, text: str, is_builtin_variable) -> None:
        self.filename = filename
        self.text = text
        self.is_builtin_variable = is_builtin_variable
        self.value_tail: set[int] = set()   # ids of Blocks whose last statement had no ";"

    # -- helpers

    def span(self, tree) -> Span:
        m = tree.meta
        if getattr(m, "empty", True):
            return errors.NO_SPAN
        return Span(self.filename, m.line, m.column, m.end_line, m.end_column)

    def tspan(self, tok) -> Span:
        return Span(self.filename, tok.line, tok.column, tok.end_line, tok.end_column)

    def error(self, message: str, span: Span) -> CompileError:
        return CompileError(message, span)

    @staticmethod
    def nodes(children):
        return [c for c in children if not isinstance(c, Token)]

    # -- driver: iterative post-order walk (deeply nested scripts must not hit Python's recursion limit)

    def program(self, tree) -> ast.Program:
        out: list = []
        stack = [(tree, False, 0)]
        while stack:
            node, done, depth = stack.pop()
            if not isinstance(node, Node):
                out.append(node)
                continue
            if not done:
                if node.data in NESTING:
                    depth += 1
                    if depth > MAX_NESTING:
                        raise self.error(f"the program is nested too deeply: {NESTING[node.data]} "
                                         f"at nesting level {depth}, more than the "
                                         f"{MAX_NESTING} levels of statements and expressions "
                                         "allowed", self.span(node))
                stack.append((node, True, depth))
                for child in reversed(node.children):
                    stack.append((child, False, depth))
                continue
            n = len(node.children)
            args = out[len(out) - n:] if n else []
            del out[len(out) - n:]
            handler = getattr(self, "t_" + node.data)
            out.append(handler(node, args))
        return out[0]

    # -- top level

    def t_start(self, tree, ch):
        prog = ast.Program(span=Span(self.filename, 1, 1, *line_col(self.text, len(self.text))))
        for item in ch:
            if isinstance(item, ast.Probe):
                prog.probes.append(item)
            elif isinstance(item, ast.CDefinition):
                prog.c_definitions.append(item)
            elif isinstance(item, ast.Config):
                if prog.config is not None:
                    raise self.error("only one config block is allowed", item.span)
                prog.config = item
            elif isinstance(item, ast.Import):
                prog.imports.append(item)
            elif isinstance(item, ast.MacroDef):
                prog.macros.append(item)
            elif isinstance(item, ast.MapDecl):
                prog.map_decls.append(item)
        return prog

    def t_probe(self, tree, ch):
        aps, rest = ch[0], ch[1:]
        pred = rest[0] if len(rest) == 2 else None
        return ast.Probe(aps, pred, rest[-1], span=self.span(tree))

    def t_attach_points(self, tree, ch):
        out = []
        for tok in ch:
            if tok.type != "ATTACH_POINT":
                continue
            bad = _CONTROL.search(tok)
            if bad is not None:     # a NUL byte or another control character: no probe is named so
                col = tok.column + bad.start()
                raise self.error(f"invalid character {bad.group()!r} in attach point",
                                 Span(self.filename, tok.line, col, tok.line, col + 1))
            provider, parts = split_attach_point(str(tok))
            out.append(ast.AttachPoint(str(tok), provider, parts, span=self.tspan(tok)))
        return out

    def t_predicate(self, tree, ch):
        return self.nodes(ch)[0]

    def t_config(self, tree, ch):
        return ast.Config(self.nodes(ch), span=self.span(tree))

    def t_config_item(self, tree, ch):
        return ast.ConfigItem(str(ch[0]), ch[2], span=self.span(tree))

    def t_import_decl(self, tree, ch):
        tok = ch[0]
        return ast.Import(self.string(tok), span=self.span(tree))

    def t_macro_def(self, tree, ch):
        name = str(ch[0])
        params = [p for p in ch[1:-1] if isinstance(p, str)]
        return ast.MacroDef(name, params, ch[-1], self.block_value(ch[-1]), span=self.span(tree))

    def t_macro_param(self, tree, ch):
        return str(ch[0])

    def t_map_decl(self, tree, ch):
        mtok, _eq, kind, size = ch
        return ast.MapDecl(str(mtok)[1:], str(kind), self.integer(size), span=self.span(tree))

    def t_c_definition(self, tree, ch):
        tok = ch[0]
        text = str(tok)
        if tok.type == "PREPROC":
            word = re.match(r"#\s*(\w+)", text).group(1)
            kind = {"include": "include", "define": "define", "ifdef": "ifdef", "ifndef": "ifdef", "if": "ifdef",
                    "elif": "ifdef", "else": "ifdef", "endif": "ifdef"}.get(word, "other")
            text = text.rstrip()
        else:
            word = re.match(r"\w+", text).group(0)
            kind = word if word in ("struct", "union", "enum") else "other"
            text = text.rstrip()
        return ast.CDefinition(kind, text, span=self.span(tree))

    # -- statements

    def t_block(self, tree, ch):
        stmts = []
        tail = False
        for c in ch:
            if isinstance(c, _Last):
                stmts.append(c.stmt)
                tail = True
            elif isinstance(c, ast.Stmt):
                stmts.append(c)
        block = ast.Block(stmts, span=self.span(tree))
        if tail:
            self.value_tail.add(id(block))
        return block

    t_body = t_block

    def t_last_stmt(self, tree, ch):
        return _Last(ch[0])

    def t_block_stmt(self, tree, ch):
        return ch[0]

    def t_expr_stmt(self, tree, ch):
        return ast.ExprStmt(ch[0], span=self.span(tree))

    def t_assign(self, tree, ch):
        target, op, value = ch
        if isinstance(target, ast.Builtin) and target.name == "_" and str(op) == "=":
            return ast.ExprStmt(value, span=self.span(tree))     # `_ = expr;`: value discarded
        if not isinstance(target, _ASSIGNABLE):
            raise self.error(f"syntax error, unexpected {op}", self.tspan(op))
        o = str(op)
        return ast.Assign(target, value, None if o == "=" else o[:-1], span=self.span(tree))

    def t_let_stmt(self, tree, ch):
        var_tok = ch[0]
        var = ast.Var(str(var_tok)[1:], span=self.tspan(var_tok))
        declared = None
        value = None
        for c in ch[1:]:
            if isinstance(c, ast.TypeName):
                declared = c
            elif isinstance(c, ast.Expr):
                value = c
        return ast.Let(var, declared, value, span=self.span(tree))

    def t_break_stmt(self, tree, ch):
        return ast.Break(span=self.span(tree))

    def t_continue_stmt(self, tree, ch):
        return ast.Continue(span=self.span(tree))

    def t_return_stmt(self, tree, ch):
        return ast.Return(ch[0] if ch else None, span=self.span(tree))

    def t_if_stmt(self, tree, ch):
        orelse = ch[2] if len(ch) > 2 else None
        return ast.If(ch[0], ch[1], orelse, span=self.span(tree))

    def t_else_body(self, tree, ch):
        body = ch[0]
        if isinstance(body, ast.Block):
            return body
        return ast.Block([body], span=body.span)

    def t_while_stmt(self, tree, ch):
        return ast.While(ch[0], ch[1], span=self.span(tree))

    def t_unroll_stmt(self, tree, ch):
        return ast.Unroll(ch[0], ch[1], span=self.span(tree))

    def t_for_map(self, tree, ch):
        var_tok, mref, body = ch
        var = ast.Var(str(var_tok)[1:], span=self.tspan(var_tok))
        return ast.ForMap(var, mref, body, span=self.span(tree))

    def t_for_range(self, tree, ch):
        var_tok, start, _dots, end, body = ch
        var = ast.Var(str(var_tok)[1:], span=self.tspan(var_tok))
        return ast.ForRange(var, start, end, body, span=self.span(tree))

    # -- types

    def _type(self, tree, ch):
        base = ch[0]
        if isinstance(base, Token):
            name = str(base)
        else:
            name = base
        depth = sum(1 for c in ch[1:] if isinstance(c, Token) and c.type == "STAR")
        arr = next((c for c in ch[1:] if isinstance(c, int) and not isinstance(c, Token)), None)
        # arr -1: (uint8[])x, the cast sizes the array (sema.fn_values)
        return ast.TypeName(name, depth, arr if arr != -1 else None, array_auto=arr == -1, span=self.span(tree))

    t_type = _type

    def t_typeof_type(self, tree, ch):
        return ast.TypeName("typeof", of_expr=ch[0], span=self.span(tree))
    t_cast_type = _type

    def t_type_base(self, tree, ch):
        if ch[0].type == "TYPE_WORD":
            return " ".join(str(t) for t in ch)
        return f"{ch[0]} {ch[1]}"

    def t_array_suffix(self, tree, ch):
        return self.integer(ch[0]) if ch else -1     # -1: `int8[]`, the size from the value

    def ptr_type(self, tok) -> ast.TypeName:
        inner = str(tok)[1:-1]
        name = re.match(r"\s*(\w+)", inner).group(1)
        return ast.TypeName(name, inner.count("*"), span=self.tspan(tok))

    # -- expressions

    def t_ternary(self, tree, ch):
        return ast.Ternary(ch[0], ch[1], ch[2], span=self.span(tree))

    def t_elvis(self, tree, ch):
        """``a ?: b``: ``a ? a : b``, ``a`` evaluated once: anything but a variable or literal is
        held in a block-local variable first (``{ let $t = a; $t ? $t : b }``)."""
        a, b = ch
        span = self.span(tree)
        if isinstance(a, (ast.Var, ast.IntLit)):
            return ast.Ternary(a, a, b, span=span)
        self._elvis = getattr(self, "_elvis", 0) + 1
        name = f"elvis{ast.HYGIENE_MARK}{self._elvis}"
        tmp = [ast.Var(name, span=a.span) for _ in range(3)]
        return ast.BlockExpr([ast.Let(tmp[0], None, a, span=a.span)],
                             ast.Ternary(tmp[1], tmp[2], b, span=span), span=span)

    def t_binop(self, tree, ch):
        return ast.Binary(str(ch[1]), ch[0], ch[2], span=self.span(tree))

    def t_unop(self, tree, ch):
        return ast.Unary(str(ch[0]), ch[1], span=self.span(tree))

    def t_pre_incdec(self, tree, ch):
        return ast.IncDec(str(ch[0]), ch[1], True, span=self.span(tree))

    def t_post_incdec(self, tree, ch):
        return ast.IncDec(str(ch[1]), ch[0], False, span=self.span(tree))

    def t_cast(self, tree, ch):
        return ast.Cast(ch[0], ch[1], span=self.span(tree))

    def t_ptr_cast(self, tree, ch):
        return ast.Cast(self.ptr_type(ch[0]), ch[1], span=self.span(tree))

    def t_field(self, tree, ch):
        return ast.FieldAccess(ch[0], str(ch[1]), False, span=self.span(tree))

    def t_arrow(self, tree, ch):
        return ast.FieldAccess(ch[0], str(ch[2]), True, span=self.span(tree))

    def t_tuple_index(self, tree, ch):
        return ast.TupleIndex(ch[0], self.integer(ch[1]), span=self.span(tree))

    def t_index(self, tree, ch):
        return ast.Index(ch[0], ch[1], span=self.span(tree))

    def t_int_lit(self, tree, ch):
        return ast.IntLit(self.integer(ch[0]), span=self.span(tree))

    def t_str_lit(self, tree, ch):
        return ast.StrLit(self.string(ch[0]), span=self.span(tree))

    def t_true_lit(self, tree, ch):
        return ast.BoolLit(True, span=self.span(tree))

    def t_false_lit(self, tree, ch):
        return ast.BoolLit(False, span=self.span(tree))

    def t_ident(self, tree, ch):
        return ast.Builtin(builtins.canonical(str(ch[0])), span=self.span(tree))

    def t_call(self, tree, ch):
        return ast.Call(builtins.canonical(str(ch[0])), list(ch[1:]), span=self.span(tree))

    def t_var(self, tree, ch):
        return ast.Var(str(ch[0])[1:], span=self.span(tree))

    def t_posparam(self, tree, ch):
        digits = str(ch[0])[1:]
        if len(digits) > 9:
            raise self.error(f"positional parameter number is too large: {ch[0]}", self.span(tree))
        return ast.PositionalParam(int(digits), span=self.span(tree))

    def t_paramcount(self, tree, ch):
        return ast.ParamCount(span=self.span(tree))

    def t_map_ref(self, tree, ch):
        name = str(ch[0])[1:]
        keys = list(ch[1:]) if len(ch) > 1 else None
        return ast.MapRef(name, keys, span=self.span(tree))

    def t_paren(self, tree, ch):
        return ch[0]

    def t_tuple(self, tree, ch):
        return ast.TupleExpr(list(ch), span=self.span(tree))

    def t_record(self, tree, ch):
        return ast.RecordExpr(list(ch), span=self.span(tree))

    def t_record_field(self, tree, ch):
        return (str(ch[0]), ch[2])

    def t_sizeof_type(self, tree, ch):
        return ast.Sizeof(of_type=ch[0], span=self.span(tree))

    def t_sizeof_ptr(self, tree, ch):
        return ast.Sizeof(of_type=self.ptr_type(ch[0]), span=self.span(tree))

    def t_sizeof_expr(self, tree, ch):
        e = ch[0]
        if isinstance(e, ast.Builtin) and not self.is_builtin_variable(e.name):
            return ast.Sizeof(of_type=ast.TypeName(e.name, span=e.span), span=self.span(tree))
        return ast.Sizeof(of_expr=e, span=self.span(tree))

    def t_offsetof(self, tree, ch):
        return ast.Offsetof(ch[0], [str(t) for t in ch[1:]], span=self.span(tree))

    def block_value(self, block: ast.Block) -> ast.BlockExpr | None:
        """``{ stmts; expr }`` as a BlockExpr; a trailing nested block that itself ends in a value counts
        (``{ $a = 1; { $a + 1 } }``: a "{" at the start of a statement always opens a block)."""
        if not block.stmts:
            return None
        last = block.stmts[-1]
        if id(block) in self.value_tail and isinstance(last, ast.ExprStmt):
            return ast.BlockExpr(block.stmts[:-1], last.expr, span=block.span)
        if isinstance(last, ast.Block):
            inner = self.block_value(last)
            if inner is not None:
                return ast.BlockExpr(block.stmts[:-1], inner, span=block.span)
        return None

    def t_if_expr(self, tree, ch):
        """``if c { a } else { b }`` as a value: ``c ? { a } : { b }``."""
        cond, then, orelse = ch
        arms = []
        for arm in (then, orelse):
            if isinstance(arm, ast.Block):
                value = self.block_value(arm)
                if value is None:
                    raise self.error("a block used as a value must end with an expression "
                                     "(without ';')", arm.span)
                arm = value
            arms.append(arm)
        return ast.Ternary(cond, arms[0], arms[1], span=self.span(tree))

    def t_block_expr(self, tree, ch):
        value = self.block_value(ch[0])
        if value is None:
            raise self.error("a block used as a value must end with an expression (without ';')", ch[0].span)
        value.span = self.span(tree)
        return value

    # -- literals

    def integer(self, tok) -> int:
        text = str(tok)
        try:
            return decode_int(text)
        except OverflowError:
            raise self.error(f"integer literal is too large: {text}", self.tspan(tok)) from None
        except ValueError:
            raise self.error(f"invalid integer literal: {text}", self.tspan(tok)) from None

    def string(self, tok) -> str:
        text = str(tok)
        try:
            return decode_string(text[1:-1])
        except ValueError as e:
            esc, end = e.args
            sp = self.tspan(tok)
            raise self.error(f"invalid escape character '{esc}'",
                             Span(sp.file, sp.line, sp.col, sp.line, sp.col + 1 + end)) from None
