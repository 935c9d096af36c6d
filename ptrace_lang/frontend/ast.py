"""AST nodes: plain dataclasses carrying source spans.

Semantic analysis annotates expressions in place (``Expr.type`` and the few annotations declared
with ``_note``: resolved C members, constant indexes, addresses); nothing else mutates the tree.
Every node has a keyword-only ``span``; expression nodes also a keyword-only ``type``. Annotations
(``span``, ``type`` and the ``_note`` fields: keyword-only, neither compared nor shown) are not
children: ``children``, ``walk`` and ``dump`` skip them.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

from ptrace_lang.errors import NO_SPAN, Span

# a macro's own $x becomes $x`name`N (frontend.macros; a character no script can use in a
# name); messages show $x
HYGIENE_MARK = "`"


def unmangle(text: str) -> str:
    """A message with the macro-local variable names as the user wrote them."""
    while HYGIENE_MARK in text:
        i = text.index(HYGIENE_MARK)
        j = i + 1
        while j < len(text) and (text[j].isalnum() or text[j] in "_`"):
            j += 1
        text = text[:i] + text[j:]
    return text


def _note(default=None):
    """An annotation filled after parsing (by sema unless said otherwise): not a child, not compared."""
    return field(default=default, kw_only=True, repr=False, compare=False)


@dataclass
class Node:
    span: Span = field(default=NO_SPAN, kw_only=True, repr=False, compare=False)


# ---------------------------------------------------------------- types written in scripts


@dataclass
class TypeName(Node):
    """A type as written: ``uint8``, ``string``, ``struct task_struct *``, ``int8[4]``.

    ``name`` holds the base name including any ``struct ``/``union ``/``enum `` prefix.
    """

    name: str
    pointer_depth: int = 0
    array_len: int | None = None
    array_auto: bool = _note(False)  # (parser) written ``T[]``: a cast sized by its operand (sema.fn_values)
    of_expr: object = _note()  # (parser) ``typeof(expr)``: the type of that expression (name "typeof")


# ---------------------------------------------------------------- expressions


@dataclass
class Expr(Node):
    type: object = field(default=None, kw_only=True, repr=False, compare=False)


@dataclass
class IntLit(Expr):
    value: int


@dataclass
class StrLit(Expr):
    value: str  # escapes already decoded


@dataclass
class BoolLit(Expr):
    value: bool


@dataclass
class Builtin(Expr):
    """A builtin variable: ``pid``, ``comm``, ``args``, ``arg0``, ``retval``, ``probe`` ..."""

    name: str


@dataclass
class PositionalParam(Expr):
    """``$1`` .. ``$N``."""

    index: int


@dataclass
class ParamCount(Expr):
    """``$#``."""


@dataclass
class Var(Expr):
    """A scratch variable ``$name`` (name without the ``$``)."""

    name: str


@dataclass
class MapRef(Expr):
    """``@name`` or ``@name[k1, k2]``; ``name`` is "" for the anonymous map ``@``.

    ``keys`` is None when the map is used without a key.
    """

    name: str
    keys: list[Expr] | None = None


@dataclass
class Call(Expr):
    """A function call ``name(args)``; also builtins written as calls (``comm()``)."""

    name: str
    args: list[Expr] = field(default_factory=list)
    address: int | None = _note()  # kaddr/uaddr: the symbol's address; cgroupid: the cgroup's id


@dataclass
class Binary(Expr):
    """``left op right``; op is the operator text (``+``, ``==``, ``&&`` ...)."""

    op: str
    left: Expr
    right: Expr


@dataclass
class Unary(Expr):
    """``op operand``; op in ``- ! ~ * &`` (``*`` dereference, ``&`` address-of)."""

    op: str
    operand: Expr
    c_user: bool | None = _note()  # ``*p``: the address space read (True: user), None when not a C read


@dataclass
class IncDec(Expr):
    """``x++``, ``++x``, ``x--``, ``--x`` on a variable or map element."""

    op: str  # "++" or "--"
    target: Expr
    prefix: bool


@dataclass
class Ternary(Expr):
    cond: Expr
    then: Expr
    orelse: Expr


@dataclass
class FieldAccess(Expr):
    """``base.field`` (arrow=False) or ``base->field`` (arrow=True)."""

    base: Expr
    field_name: str
    arrow: bool = False
    c_field: object = _note()  # the C member (btftypes.Field) when base is a C struct/union (pointer)
    c_user: bool | None = _note()  # with c_field: the address space of the struct read (True: user)


@dataclass
class Index(Expr):
    """``base[index]`` on a pointer, array or tuple (tuple index must be a literal)."""

    base: Expr
    index: Expr
    c_user: bool | None = _note()  # a C pointer or array indexed: the address space read (True: user)
    tuple_index: int | None = _note()  # a tuple indexed with a constant: that constant
    array_index: int | None = _note()  # an int array (IntArrayT) indexed with a constant: that constant


@dataclass
class TupleIndex(Expr):
    """``tuple.0``."""

    base: Expr
    index: int


@dataclass
class TupleExpr(Expr):
    elems: list[Expr]


@dataclass
class RecordExpr(Expr):
    """``(x = 1, y = 2)``."""

    fields: list[tuple[str, Expr]]


@dataclass
class Cast(Expr):
    to: TypeName
    operand: Expr


@dataclass
class Sizeof(Expr):
    """``sizeof(T)`` or ``sizeof(expr)``: exactly one of ``of_type``/``of_expr`` is set."""

    of_type: TypeName | None = None
    of_expr: Expr | None = None
    value: int | None = _note()  # the size in bytes


@dataclass
class Offsetof(Expr):
    of_type: TypeName
    fields: list[str]
    value: int | None = _note()  # the offset in bytes


@dataclass
class BlockExpr(Expr):
    """``{ stmt; ...; expr }`` used as a value."""

    stmts: list["Stmt"]
    value: Expr


# ---------------------------------------------------------------- statements


@dataclass
class Stmt(Node):
    pass


@dataclass
class ExprStmt(Stmt):
    expr: Expr


@dataclass
class Assign(Stmt):
    """``target = value`` or a compound ``target op= value`` (op is e.g. "+", None for plain)."""

    target: Expr  # Var, MapRef, FieldAccess ...
    value: Expr
    op: str | None = None


@dataclass
class Let(Stmt):
    """``let $x [: type] [= value];``"""

    var: Var
    declared: TypeName | None = None
    value: Expr | None = None


@dataclass
class Block(Stmt):
    stmts: list[Stmt] = field(default_factory=list)


@dataclass
class If(Stmt):
    cond: Expr
    then: Block
    orelse: Block | None = None  # an ``else if`` is an If inside this Block


@dataclass
class Unroll(Stmt):
    count: Expr
    body: Block


@dataclass
class While(Stmt):
    cond: Expr
    body: Block


@dataclass
class ForMap(Stmt):
    """``for ($kv : @map) { }``"""

    var: Var
    map: MapRef
    body: Block
    body_locals: frozenset = _note(frozenset())  # the variables first assigned in the body (not var)


@dataclass
class ForRange(Stmt):
    """``for ($i : start..end) { }`` (end exclusive)."""

    var: Var
    start: Expr
    end: Expr
    body: Block
    body_locals: frozenset = _note(frozenset())  # the variables first assigned in the body (not var)


@dataclass
class Break(Stmt):
    pass


@dataclass
class Continue(Stmt):
    pass


@dataclass
class Return(Stmt):
    value: Expr | None = None


# ---------------------------------------------------------------- top level


@dataclass
class AttachPoint(Node):
    """One attach point as written, e.g. ``tracepoint:syscalls:sys_enter_*``.

    ``provider`` is the first component as written (``t``, ``tracepoint``, ``BEGIN``...);
    ``parts`` the remaining ``:``-separated components (quotes kept off, ``$N`` kept as text).
    Providers interpret ``parts``; the grammar does not.
    """

    raw: str
    provider: str
    parts: list[str] = field(default_factory=list)


@dataclass
class Probe(Node):
    attach_points: list[AttachPoint]
    predicate: Expr | None
    body: Block


@dataclass
class ConfigItem(Node):
    key: str
    value: Expr


@dataclass
class Config(Node):
    items: list[ConfigItem]


@dataclass
class Import(Node):
    path: str


@dataclass
class MacroDef(Node):
    """``macro name($a, @b, c) { ... }``; params keep their sigil (``$a``, ``@b``, ``c``)."""

    name: str
    params: list[str]
    body: Block
    # the body as a BlockExpr when it ends in an expression without ';' (the macro's value)
    value: object = field(default=None, compare=False, repr=False)


@dataclass
class MapDecl(Node):
    """``let @m = hash(N);``"""

    name: str
    kind: str
    size: int


@dataclass
class CDefinition(Node):
    """C text passed through: ``struct x { ... };``, ``#include <...>``, ``#define A 1`` ..."""

    kind: str  # "struct" | "union" | "enum" | "include" | "define" | "ifdef" | "other"
    text: str


@dataclass
class Program(Node):
    c_definitions: list[CDefinition] = field(default_factory=list)
    config: Config | None = None
    imports: list[Import] = field(default_factory=list)
    macros: list[MacroDef] = field(default_factory=list)
    map_decls: list[MapDecl] = field(default_factory=list)
    probes: list[Probe] = field(default_factory=list)


AnyNode = Expr | Stmt | Probe | Program


_CHILD_FIELDS: dict[type, tuple[str, ...]] = {}


def child_fields(cls: type) -> tuple[str, ...]:
    """The names of the fields of ``cls`` that are not annotations (see the module's docstring)."""
    names = _CHILD_FIELDS.get(cls)
    if names is None:
        names = _CHILD_FIELDS[cls] = tuple(n for n, f in cls.__dataclass_fields__.items()
                                           if not (f.kw_only and not f.repr and not f.compare))
    return names


def _child_list(node: Node) -> list:
    """The direct child nodes of ``node``, in source order."""
    out = []
    for name in _CHILD_FIELDS.get(node.__class__) or child_fields(node.__class__):
        value = getattr(node, name)
        if isinstance(value, Node):
            out.append(value)
        elif value.__class__ is list or isinstance(value, list):
            for item in value:
                if isinstance(item, Node):
                    out.append(item)
                elif isinstance(item, tuple):
                    out.extend(sub for sub in item if isinstance(sub, Node))
    return out


def children(node: Node):
    """Yield the direct child nodes of ``node`` (in source order)."""
    return iter(_child_list(node))


def walk(node: Node):
    """Pre-order traversal of ``node`` and all its descendants."""
    stack = [node]
    pop, extend = stack.pop, stack.extend
    while stack:
        cur = pop()
        yield cur
        kids = _child_list(cur)
        if kids:
            kids.reverse()
            extend(kids)


def dump(node: object, indent: int = 0) -> str:
    """A readable tree, for ``-d ast``."""
    pad = "  " * indent
    if isinstance(node, list):
        return "\n".join(dump(n, indent) for n in node)
    if not isinstance(node, Node):
        return pad + repr(node)
    scalars = []
    kids = []
    for name in child_fields(node.__class__):
        value = getattr(node, name)
        if isinstance(value, Node) or (isinstance(value, list) and value and
                                       any(isinstance(v, (Node, tuple)) for v in value)):
            kids.append((name, value))
        elif value is not None and value != []:
            scalars.append(f"{name}={value!r}")
    head = f"{pad}{type(node).__name__}"
    if scalars:
        head += " " + " ".join(scalars)
    if getattr(node, "type", None) is not None:
        head += f" :: {node.type}"
    lines = [head]
    for name, value in kids:
        if isinstance(value, Node):
            lines.append(dump(value, indent + 1))
        else:
            for item in value:
                if isinstance(item, tuple):
                    lines.append(f"{pad}  {item[0]}:")
                    lines.append(dump(item[1], indent + 2))
                else:
                    lines.append(dump(item, indent + 1))
    return "\n".join(lines)
