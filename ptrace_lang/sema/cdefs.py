"""C written in scripts: struct/union/enum definitions, typedefs, ``#define`` constants,
``#include`` lines and ``#if[n]def`` conditionals.

bpftrace hands these to clang; here a small parser covers what scripts write:

* ``preprocess(text)`` honours ``#ifdef NAME`` / ``#ifndef NAME`` / ``#else`` / ``#endif``
  (``BPFTRACE_HAVE_BTF`` is defined, as are the script's own ``#define``s): lines of a branch
  not taken are blanked, so line numbers stay right.
* ``load(program)`` parses the definitions into a ``btftypes.ScriptTypes`` (laid out as the
  x86-64 System V ABI does, bitfields included) and returns the ``#define`` constants.
  ``#include`` lines are accepted and ignored: types come from the kernel's BTF.
* ``substitute(program, constants)`` replaces identifiers naming a ``#define`` or an
  enumerator of a script enum with their value.
"""
from __future__ import annotations

import re

from ptrace_lang.errors import CompileError, Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema import btftypes, builtins
from ptrace_lang.sema.types import (
    BOOL, VOID, ArrayT, EnumT, IntT, PtrT, StrT, StructT, Type, c_sizeof,
)

PREDEFINED = ("BPFTRACE_HAVE_BTF",)

# Macros of kernel headers that scripts use but BTF cannot carry (BTF describes types and
# enums, not #defines): defined when the script #includes one of the headers.
_TASK_STATES = {
    "TASK_RUNNING": 0x0, "TASK_INTERRUPTIBLE": 0x1, "TASK_UNINTERRUPTIBLE": 0x2,
    "__TASK_STOPPED": 0x4, "__TASK_TRACED": 0x8, "EXIT_DEAD": 0x10, "EXIT_ZOMBIE": 0x20,
    "TASK_PARKED": 0x40, "TASK_DEAD": 0x80, "TASK_WAKEKILL": 0x100, "TASK_WAKING": 0x200,
    "TASK_NOLOAD": 0x400, "TASK_NEW": 0x800, "TASK_KILLABLE": 0x102, "TASK_STOPPED": 0x104,
    "TASK_TRACED": 0x8, "TASK_IDLE": 0x402, "TASK_NORMAL": 0x3, "TASK_REPORT": 0x7f,
}
_SOCKET = {
    "AF_UNSPEC": 0, "AF_UNIX": 1, "AF_LOCAL": 1, "AF_INET": 2, "AF_AX25": 3, "AF_IPX": 4,
    "AF_APPLETALK": 5, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17, "AF_VSOCK": 40,
    "AF_XDP": 44, "PF_UNSPEC": 0, "PF_UNIX": 1, "PF_LOCAL": 1, "PF_INET": 2, "PF_INET6": 10,
    "PF_NETLINK": 16, "PF_PACKET": 17, "SOCK_STREAM": 1, "SOCK_DGRAM": 2, "SOCK_RAW": 3,
    "SOCK_RDM": 4, "SOCK_SEQPACKET": 5,
}
_FCNTL = {
    "O_RDONLY": 0, "O_WRONLY": 1, "O_RDWR": 2, "O_CREAT": 0o100, "O_EXCL": 0o200,
    "O_NOCTTY": 0o400, "O_TRUNC": 0o1000, "O_APPEND": 0o2000, "O_NONBLOCK": 0o4000,
    "O_DIRECTORY": 0o200000, "O_CLOEXEC": 0o2000000,
}
HEADER_MACROS = {
    "linux/sched.h": _TASK_STATES, "linux/socket.h": _SOCKET, "sys/socket.h": _SOCKET,
    "net/sock.h": _SOCKET, "linux/fcntl.h": _FCNTL, "fcntl.h": _FCNTL,
    "linux/fs.h": {"FMODE_READ": 0x1, "FMODE_WRITE": 0x2, "FMODE_EXEC": 0x20},
}
_INCLUDE = re.compile(r"#\s*include\s*[<\"]([^>\"]+)[>\"]")

_COND = re.compile(r"^[ \t]*#[ \t]*(ifdef|ifndef|if|elif|else|endif)\b(.*)$")
_DEFINE = re.compile(r"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(?![\w(])[ \t]*(.*)$")
_DEFINED = re.compile(r"^\s*!?\s*defined\s*\(?\s*([A-Za-z_]\w*)\s*\)?\s*$")


def preprocess(text: str) -> str:
    """Blank the lines of ``#if[n]def`` branches not taken (and the directives themselves)."""
    if "#if" not in text:
        return text
    lines = text.split("\n")
    defined = set(PREDEFINED)
    stack: list[list[bool]] = []      # [taking this branch, some branch already taken]
    for i, line in enumerate(lines):
        active = all(s[0] for s in stack)
        m = _COND.match(line)
        if m is None:
            if not active:
                lines[i] = ""
            else:
                d = _DEFINE.match(line)
                if d:
                    defined.add(d.group(1))
            continue
        word, rest = m.group(1), m.group(2).split("//")[0].strip()
        if word in ("ifdef", "ifndef"):
            name = rest.split()[0] if rest.split() else ""
            take = (name in defined) == (word == "ifdef")
            stack.append([take, take])
        elif word == "if":
            take = _if_value(rest, defined)
            stack.append([take, take])
        elif word in ("elif", "else"):
            if stack:
                top = stack[-1]
                take = not top[1] and (word == "else" or _if_value(rest, defined))
                top[0] = take
                top[1] = top[1] or take
        elif word == "endif":
            if stack:
                stack.pop()
        lines[i] = ""
    return "\n".join(lines)


def _if_value(expr: str, defined: set) -> bool:
    m = _DEFINED.match(expr)
    if m:
        return (m.group(1) in defined) != expr.lstrip().startswith("!")
    try:
        return bool(int(expr, 0))
    except ValueError:
        return False


# ---------------------------------------------------------------------------- C declarations

_TOKEN = re.compile(r"\s*(?:(/\*.*?\*/|//[^\n]*)|([A-Za-z_]\w*)|(0[xX][0-9a-fA-F]+|\d+)[uUlL]*"
                    r"|(.))", re.S)

_INT_WORDS = {
    ("char",): IntT(8, True), ("signed", "char"): IntT(8, True), ("unsigned", "char"): IntT(8, False),
    ("short",): IntT(16, True), ("unsigned", "short"): IntT(16, False),
    ("int",): IntT(32, True), ("signed",): IntT(32, True), ("unsigned",): IntT(32, False),
    ("unsigned", "int"): IntT(32, False), ("long",): IntT(64, True),
    ("unsigned", "long"): IntT(64, False), ("long", "long"): IntT(64, True),
    ("unsigned", "long", "long"): IntT(64, False), ("_Bool",): BOOL, ("bool",): BOOL,
    ("void",): VOID,
    # floating point members take their C size and alignment (their value reads as its bits:
    # the language has no floating point values)
    ("float",): IntT(32, True), ("double",): IntT(64, True),
}
_FIXED = {"int8_t": IntT(8, True), "int16_t": IntT(16, True), "int32_t": IntT(32, True),
          "int64_t": IntT(64, True), "uint8_t": IntT(8, False), "uint16_t": IntT(16, False),
          "uint32_t": IntT(32, False), "uint64_t": IntT(64, False), "size_t": IntT(64, False),
          "ssize_t": IntT(64, True), "uintptr_t": IntT(64, False), "intptr_t": IntT(64, True)}
for _n, _t in (("int8", IntT(8, True)), ("int16", IntT(16, True)), ("int32", IntT(32, True)),
               ("int64", IntT(64, True)), ("uint8", IntT(8, False)), ("uint16", IntT(16, False)),
               ("uint32", IntT(32, False)), ("uint64", IntT(64, False))):
    _FIXED[_n] = _t
_QUALIFIERS = {"const", "volatile", "restrict", "__restrict", "static", "extern", "register",
               "__attribute__", "__packed", "__aligned"}


def _c_int(tok: str | None) -> int | None:
    """A C integer constant (``0x1f``, ``010`` octal, ``12``), or None."""
    if tok is None:
        return None
    if re.fullmatch(r"0[xX][0-9a-fA-F]+", tok):
        return int(tok, 16)
    if re.fullmatch(r"0[0-7]*", tok):
        return int(tok, 8)
    if re.fullmatch(r"[1-9][0-9]*", tok):
        return int(tok)
    return None


class _Parser:
    def __init__(self, text: str, span: Span, scope: btftypes.ScriptTypes,
                 counter: list) -> None:
        self.toks = []
        for m in _TOKEN.finditer(text):
            if m.group(1):
                continue
            tok = m.group(2) or m.group(3) or m.group(4)
            if tok is not None:
                self.toks.append(tok)
        self.pos = 0
        self.span = span
        self.scope = scope
        self.counter = counter

    # -- tokens
    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.toks[i] if i < len(self.toks) else None

    def take(self) -> str:
        tok = self.peek()
        if tok is None:
            self.fail("unexpected end of the definition")
        self.pos += 1
        return tok

    def expect(self, tok: str) -> None:
        got = self.take()
        if got != tok:
            self.fail(f"expected '{tok}', found '{got}'")

    def fail(self, message: str):
        raise CompileError(f"Invalid C definition: {message}", self.span)

    # -- top level
    def definitions(self) -> None:
        while self.peek() is not None:
            if self.peek() == ";":
                self.take()
                continue
            if self.peek() == "typedef":
                self.take()
                base = self.type_spec()
                while True:
                    name, t, _ = self.declarator(base)
                    self.scope.typedefs[name] = t
                    if self.peek() == ",":
                        self.take()
                        continue
                    break
                self.expect(";")
                continue
            base = self.type_spec()
            if self.peek() not in (";", None):     # struct x { } var;  (a variable: ignored)
                while self.peek() not in (";", None):
                    self.take()
            if self.peek() == ";":
                self.take()

    def type_spec(self) -> Type:
        words = []
        while self.peek() in _QUALIFIERS:
            self.skip_qualifier()
        tok = self.peek()
        if tok in ("struct", "union"):
            return self.record(self.take())
        if tok == "enum":
            self.take()
            return self.enum()
        while self.peek() in ("unsigned", "signed", "char", "short", "int", "long", "_Bool",
                              "bool", "void", "float", "double") or self.peek() in _QUALIFIERS:
            if self.peek() in _QUALIFIERS:
                self.skip_qualifier()
                continue
            words.append(self.take())
        if words:
            if words[-1] == "int" and len(words) > 1 and words[-2] in ("short", "long"):
                words.pop()
            if words[0] == "signed" and len(words) > 1:
                words.pop(0)
            t = _INT_WORDS.get(tuple(words))
            if t is None:
                self.fail(f"unknown type '{' '.join(words)}'")
            return t
        name = self.take()
        if not re.match(r"[A-Za-z_]\w*$", name):
            self.fail(f"expected a type, found '{name}'")
        if name in _FIXED:
            return _FIXED[name]
        t = btftypes.lookup_type(name)
        if t is None:
            self.fail(f"unknown type '{name}'")
        return t

    def skip_qualifier(self) -> list:
        """Skip a qualifier or an ``__attribute__((...))``; the words it held (``packed``)."""
        word = self.take()
        words = [word]
        if word == "__attribute__" and self.peek() == "(":
            depth = 0
            while True:
                tok = self.take()
                depth += tok == "("
                depth -= tok == ")"
                words.append(tok)
                if depth == 0:
                    break
        return words

    def attributes(self) -> bool:
        """Skip qualifiers and attributes; whether one of them asked for a packed layout."""
        packed = False
        while self.peek() in _QUALIFIERS:
            words = self.skip_qualifier()
            packed = packed or any(w in ("packed", "__packed__", "__packed") for w in words)
        return packed

    def record(self, kind: str) -> Type:
        name = ""
        packed = self.attributes()      # struct __attribute__((packed)) name { ... }
        if self.peek() not in ("{", None) and re.match(r"[A-Za-z_]", self.peek()):
            name = self.take()
        if self.peek() != "{":
            key = f"{kind} {name}"
            if key in self.scope.records:
                return self.scope.records[key][0]
            t = btftypes.lookup_type(key)
            if t is not None:
                return t
            return StructT(kind, name, 0, ("c", key))       # declared, defined later (or not)
        self.take()
        members: list = []          # (name, Type, bits or None)
        while self.peek() != "}":
            if self.peek() is None:
                self.fail(f"missing '}}' in the definition of {kind} {name}")
            if self.peek() == ";":
                self.take()
                continue
            base = self.type_spec()
            if self.peek() == ";":             # an anonymous struct/union member
                self.take()
                members.append(("", base, None))
                continue
            while True:
                mname, t, bits = self.declarator(base)
                members.append((mname, t, bits))
                if self.peek() == ",":
                    self.take()
                    continue
                break
            if self.peek() != "}":         # (the last member's ';' may be missing, as clang allows)
                self.expect(";")
        self.take()
        packed = self.attributes() or packed       # } __attribute__((packed));
        if not name:
            self.counter[0] += 1
            key = f"{kind} <anonymous {self.counter[0]}>"
        else:
            key = f"{kind} {name}"
        fields, size = _layout(kind, members, packed)
        t = StructT(kind, name, size, ("c", key))
        self.scope.records[key] = (t, fields, 1 if packed else _align_of_members(members))
        return t

    def enum(self) -> Type:
        name = ""
        if self.peek() not in ("{", None) and re.match(r"[A-Za-z_]", self.peek()):
            name = self.take()
        if self.peek() != "{":
            t = self.scope.enums.get(f"enum {name}") or btftypes.lookup_type(f"enum {name}")
            if t is None:
                self.fail(f"unknown enum '{name}'")
            return t
        self.take()
        values = []
        nxt = 0
        while self.peek() != "}":
            ename = self.take()
            if self.peek() == "=":
                self.take()
                neg = False
                if self.peek() == "-":
                    self.take()
                    neg = True
                tok = self.take()
                if tok in self.scope.constants:
                    v = self.scope.constants[tok]
                else:
                    v = _c_int(tok)
                    if v is None:
                        self.fail(f"enumerator value '{tok}' is not a number")
                nxt = -v if neg else v
            values.append((ename, nxt))
            self.scope.constants[ename] = nxt
            nxt += 1
            if self.peek() == ",":
                self.take()
        self.take()
        signed = any(v < 0 for _, v in values)
        t = EnumT(name, 32, signed, tuple(values))
        if name:
            self.scope.enums[f"enum {name}"] = t
            for ename, v in values:     # a named enum's enumerators are values of its type
                self.scope.constants[ename] = EnumValue(v, t)
        return t

    def declarator(self, base: Type) -> tuple:
        stars = 0
        while self.peek() in ("*",) or self.peek() in _QUALIFIERS:
            if self.take() == "*":
                stars += 1
        name = self.take()
        if not re.match(r"[A-Za-z_]\w*$", name):
            self.fail(f"expected a name, found '{name}'")
        dims = []
        while self.peek() == "[":
            self.take()
            tok = self.take()
            if tok == "]":
                dims.append(0)
                continue
            sign = 1
            if tok == "-" and self.peek() is not None:
                sign, tok = -1, self.take()
            n = _c_int(tok)
            if n is None and tok in self.scope.constants:
                n = self.scope.constants[tok]
            if n is not None:
                n *= sign
            if n is None:
                self.fail(f"array size '{tok}' is not a number")
            if n < 0:
                self.fail(f"array '{name}' has a negative size ({n})")
            dims.append(n)
            self.expect("]")
        bits = None
        if self.peek() == ":":
            self.take()
            tok = self.take()
            sign = 1
            if tok == "-" and self.peek() is not None:
                sign, tok = -1, self.take()
            bits = _c_int(tok)
            if bits is None and tok in self.scope.constants:
                bits = self.scope.constants[tok]
            if bits is not None:
                bits *= sign
            if bits is None:
                self.fail(f"bit-field '{name}' has a width that is not a number: '{tok}'")
            if not isinstance(base, (IntT, EnumT)) or stars or dims:
                self.fail(f"bit-field '{name}' has a type that is not an integer")
            if bits < 0:
                self.fail(f"bit-field '{name}' has a negative width ({bits})")
            if bits == 0:
                self.fail(f"named bit-field '{name}' has zero width")
            if bits > c_sizeof(base) * 8:
                self.fail(f"width of bit-field '{name}' ({bits} bits) exceeds the width of its "
                          f"type ({c_sizeof(base) * 8} bits)")
        t = base
        for _ in range(stars):
            t = PtrT(t, False)
        for n in reversed(dims):
            if isinstance(t, IntT) and t.bits == 8 and t.signed:     # char[N]: a string
                t = StrT(n)
            else:
                t = ArrayT(t, n)
        return name, t, bits


def _align(t: Type) -> int:
    if isinstance(t, StructT):
        rec = btftypes.script_types().records.get(t.src[1]) if t.src and t.src[0] == "c" else None
        if rec is not None:
            return rec[2]
        for a in (8, 4, 2):
            if t.nbytes % a == 0:
                return a
        return 1
    if isinstance(t, ArrayT):
        return _align(t.elem)
    if isinstance(t, StrT):
        return 1
    return max(1, min(8, c_sizeof(t)))


def _align_of_members(members: list) -> int:
    return max([_align(t) for _, t, _ in members] or [1])


def _layout(kind: str, members: list, packed: bool = False) -> tuple:
    """[(name, bit offset, bits, Type)] and the size, as the x86-64 System V ABI lays out a
    struct (each member at its alignment; a bitfield in the next bits unless it would cross a
    unit of its declared type) or a union (every member at 0). Packed: alignment 1."""
    out = []
    bit = 0
    size_bits = 0
    for name, t, bits in members:
        a = 1 if packed else _align(t)
        if kind == "union":
            out.append((name, 0, bits or 0, t))
            size_bits = max(size_bits, bits or c_sizeof(t) * 8)
            continue
        if bits is not None:
            unit = c_sizeof(t) * 8
            if bits == 0:
                bit = (bit + unit - 1) // unit * unit
                continue
            if bit // unit != (bit + bits - 1) // unit:
                bit = (bit + unit - 1) // unit * unit
            out.append((name, bit, bits, t))
            bit += bits
        else:
            bit = (bit + a * 8 - 1) // (a * 8) * (a * 8)
            out.append((name, bit, 0, t))
            bit += c_sizeof(t) * 8
        size_bits = bit
    a = 1 if packed else _align_of_members(members)
    size = (size_bits + 7) // 8
    size = (size + a - 1) // a * a
    return out, size


# ---------------------------------------------------------------------------- the program

def load(program: ast.Program) -> dict:
    """Install the script's type definitions (``btftypes.define_script_types``) and return its
    constants: ``#define`` names -> value text, enumerators -> int."""
    scope = btftypes.ScriptTypes()
    btftypes.define_script_types(scope)
    defines: dict = {}
    counter = [0]
    headers: dict = {}
    for cdef in program.c_definitions:
        if cdef.kind == "include":
            m = _INCLUDE.match(cdef.text.strip())
            if m is not None:
                headers.update(HEADER_MACROS.get(m.group(1), {}))
            continue
        if cdef.kind == "ifdef":
            continue
        if cdef.kind == "define":
            m = _DEFINE.match(cdef.text)
            if m is None:
                raise CompileError("Invalid #define: only 'NAME value' constants are supported",
                                   cdef.span)
            defines[m.group(1)] = m.group(2).split("//")[0].strip()
            continue
        if cdef.kind == "other" and cdef.text.lstrip().startswith("#"):
            continue        # #pragma, #undef...: nothing to do here
        _Parser(cdef.text, cdef.span, scope, counter).definitions()
    constants: dict = dict(headers)
    constants.update(scope.constants)
    constants.update(defines)
    return constants


class EnumValue(int):
    """An enumerator's value knowing its enum: the literal it becomes has the enum's type, so
    ``%s``, print() and maps show the enumerator's name (bpftrace 0.26)."""

    enum: EnumT

    def __new__(cls, value: int, enum: EnumT):
        self = super().__new__(cls, value)
        self.enum = enum
        return self


def enum_literal(value: int, enum: EnumT | None, span: Span) -> ast.IntLit:
    """The literal of an enumerator: typed with its (named) enum."""
    lit = ast.IntLit(int(value), span=span)
    if enum is not None and enum.name:
        lit.type = enum
    return lit


def _value_expr(name: str, value, span: Span) -> ast.Expr:
    if isinstance(value, int):
        return enum_literal(value, getattr(value, "enum", None), span)
    text = value.strip()
    from ptrace_lang.frontend.parser import parse

    try:
        prog = parse(f"BEGIN {{ $__define = ({text}); }}", "<define>")
        expr = prog.probes[0].body.stmts[0].value
    except CompileError:
        raise CompileError(f"Can not use the #define '{name}' as a value: {text!r}", span) from None
    for node in ast.walk(expr):
        node.span = span
    return expr


_ARGN = re.compile(r"s?arg[0-9]+")


def kernel_enumerator(name: str):
    """The value of a kernel enum member named like a constant (it has an upper-case letter
    and is no builtin: TCP_CLOSE, PIDTYPE_TGID, SKB_DROP_REASON_NOT_SPECIFIED), or None."""
    got = kernel_enumerator_typed(name)
    return None if got is None else got[0]


def kernel_enumerator_typed(name: str):
    """``(value, EnumT)`` of a kernel enum member named like a constant, or None."""
    if name == name.lower() or builtins.is_variable(name) or _ARGN.fullmatch(name):
        return None
    return btftypes.enumerator(name)


def substitute(program: ast.Program, constants: dict) -> None:
    """Replace identifiers that name a constant (``#define``, an enumerator of a script enum,
    a macro of an included header, or a member of a kernel enum) with its value."""

    def fix(value, depth: int = 0):
        if isinstance(value, ast.Builtin) and depth < 8:
            if value.name in constants:
                got = _value_expr(value.name, constants[value.name], value.span)
                rec(got, depth + 1)
                return got
            got = kernel_enumerator_typed(value.name)
            if got is not None:
                return enum_literal(got[0], got[1], value.span)
            return value
        if isinstance(value, ast.Node):
            rec(value, depth)
        return value

    def rec(node: ast.Node, depth: int = 0) -> None:
        for fname in node.__dataclass_fields__:
            if fname in ("span", "type"):
                continue
            v = getattr(node, fname)
            if isinstance(v, ast.Node):
                setattr(node, fname, fix(v, depth))
            elif isinstance(v, list):
                for i, item in enumerate(v):
                    if isinstance(item, ast.Node):
                        v[i] = fix(item, depth)
                    elif isinstance(item, tuple):
                        v[i] = tuple(fix(x, depth) if isinstance(x, ast.Node) else x
                                     for x in item)

    for probe in program.probes:
        rec(probe)
    for macro in program.macros:
        rec(macro)
