"""Semantic analysis of kernel/C types: casts to pointers and structs, ``.``/``->`` member
access, ``*p``, ``p[i]``, pointer arithmetic, ``sizeof``, ``offsetof``, ``curtask``, ``ppid``.

``TypesMixin`` is a base of ``analyze._Analyzer``; the analyzer calls its methods from small
hooks. Errors use bpftrace's wording (0.17).
"""
from __future__ import annotations

from ptrace_lang.errors import Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema import btftypes
from ptrace_lang.sema.fn_funcs import tracing_program
from ptrace_lang.sema.types import (
    BOOL, INT64, INT_TYPE_NAMES, UINT32, UINT64, VOID, AggT, ArgsT, ArrayT, BoolT, EnumT, IntT,
    PtrT, StrT, StructT, TupleT, Type, c_layout, c_sizeof,
)

TASK_STRUCT = "task_struct"


def located(t: Type) -> bool:
    """Types whose values are only read where they are (members, array elements)."""
    return isinstance(t, (StructT, ArrayT))


def kind_word(t: Type) -> str:
    """bpftrace's word for a type in "found ..." messages."""
    if isinstance(t, StrT):
        return "string"
    if isinstance(t, TupleT):
        return "tuple"
    if t.is_int:
        return "integer"
    return str(t)


class TypesMixin:
    # ------------------------------------------------------------------ type names
    def user_space(self) -> bool:
        return self.ctx is not None and self.ctx.user_space

    def c_type(self, tn: ast.TypeName, span: Span | None = None, user: bool | None = None) -> Type:
        """The type a TypeName spells: ints, ``string``, ``void``, struct/union/enum names and
        typedefs (script definitions first, then BTF), with pointer stars and an array length."""
        span = span or tn.span
        name = " ".join(tn.name.split())
        base: Type | None = None
        if name == "void":
            base = VOID
        elif name == "string" and not tn.pointer_depth:
            return StrT(tn.array_len or self.max_strlen)
        else:
            base = INT_TYPE_NAMES.get(name)
        if base is None:
            base = btftypes.lookup_type(name)
            if base is None and " " not in name:
                # a struct/union named without its keyword, as bpftrace 0.26 allows:
                # (task_struct *)curtask, sizeof(task_struct)
                base = btftypes.lookup_type("struct " + name) or btftypes.lookup_type("union " + name)
            if base is None:
                if name.startswith(("struct ", "union ")):
                    self.error(f"Unknown struct/union: '{name}'", span)
                elif name.startswith("enum "):
                    self.error(f"Unknown enum: '{name}'", span)
                else:
                    self.error(f"Unknown type: '{name}'", span)
                return INT64 if not tn.pointer_depth else PtrT(VOID)
        if user is None:
            user = self.user_space()
        t = base
        for _ in range(tn.pointer_depth):
            t = PtrT(t, user)
        if tn.array_len is not None:
            if isinstance(t, IntT) and t.bits == 8 and not tn.pointer_depth:
                return StrT(tn.array_len)
            t = ArrayT(t, tn.array_len)
        return t

    # ------------------------------------------------------------------ casts
    def cast_expr(self, e: ast.Cast) -> Type:
        tn = e.to
        span = tn.span
        if span.col > e.span.col and span.line == e.span.line:     # (type): include the parens
            span = Span(span.file, e.span.line, e.span.col, span.end_line, span.end_col + 1)
        t = self.expr(e.operand)
        user = t.user if isinstance(t, PtrT) else None
        target = self.c_type(tn, span, user)
        if isinstance(target, PtrT):
            if not t.is_int:
                self.error(f"Cannot cast from \"{t}\" to \"{target}\"", e.span)
            return target
        if isinstance(target, (StructT, ArrayT)) or target == VOID:
            self.error(f"Cannot cast to \"{target}\"", e.span)
            return INT64
        if isinstance(target, EnumT):
            if not t.is_int:
                self.error(f"Cannot cast from \"{t}\" to \"{target}\"", e.span)
            return target
        if isinstance(target, StrT):
            self.error(f"Cannot cast to \"{target}\"", e.span)
            return target
        if not t.is_int:
            self.error(f"Cannot cast from \"{t}\" to \"{target}\"", e.span)
        return target

    # ------------------------------------------------------------------ members
    def member_access(self, e: ast.FieldAccess, base: Type) -> Type | None:
        """Type of ``base.f`` / ``base->f`` on pointers and structs; None when ``base`` is not
        a C type (the analyzer handles it)."""
        if isinstance(base, PtrT):
            st = btftypes.complete(base.target)
            if not e.arrow and isinstance(st, StructT):
                e.arrow = True          # bpftrace 0.25+: `.` on a pointer to a struct is `->`
            if not e.arrow:
                self.error(f"Can not access field '{e.field_name}' on type '{base}'. "
                           "Try dereferencing it first, or using '->'", e.span)
                return INT64
            if not isinstance(st, StructT):
                self.error(f"Can not access field '{e.field_name}' on expression of type "
                           f"'{base}'", e.span)
                return INT64
            return self.struct_field(e, st, base.user)
        if isinstance(base, StructT):
            if e.arrow:
                self.error(f"Can not dereference struct/union of type '{base}'. "
                           "It is not a pointer.", e.span)
                return INT64
            return self.struct_field(e, base, self.user_of(e.base))
        return None

    def c_value_key(self, t: Type) -> bool:
        """Structs and arrays of C types are map keys (bpftrace 0.26): their bytes."""
        return isinstance(t, (StructT, ArrayT)) and c_sizeof(t) > 0

    def struct_field(self, e: ast.FieldAccess, st: StructT, user: bool) -> Type:
        f = btftypes.field(st, e.field_name)
        if f is None:
            if not st.src and st.nbytes == 0:
                self.error(f"Unknown struct/union: '{st}'", e.span)
            else:
                self.error(f"Struct/union of type '{st}' does not contain a field named "
                           f"'{e.field_name}'", e.span)
            return INT64
        e.c_field = f
        e.c_user = user
        t = f.type
        if user:
            t = _as_user(t)
        return t

    def user_of(self, e: ast.Expr) -> bool:
        """The address space of the memory a located value (struct, array) lives in."""
        user = getattr(e, "c_user", None)
        return bool(user)

    # ------------------------------------------------------------------ *p, &x, p[i]
    def deref(self, e: ast.Unary) -> Type:
        t = self.expr(e.operand)
        if isinstance(t, PtrT):
            e.c_user = t.user
            t = btftypes.complete(t)
            if t.target == VOID:
                self.error(f"Can not dereference a pointer of type '{t}'", e.span)
                return INT64
            if isinstance(t.target, StructT) and not t.target.nbytes and not t.target.src:
                self.error(f"Unknown struct/union: '{t.target}'", e.span)
                return INT64
            return t.target
        if isinstance(t, (IntT, EnumT, BoolT)):
            e.c_user = self.user_space()        # an address held in an integer: 8 bytes
            return INT64
        self.error(f"The dereference operator can not be used on expressions of type '{t}'",
                   e.span)
        return INT64

    def address_of(self, e: ast.Unary) -> Type:
        t = self.expr(e.operand)
        if isinstance(e.operand, ast.Var) and self.lookup_var(e.operand.name) is not None:
            if t.size() == 0 or isinstance(t, (AggT, ArgsT)):
                self.error(f"The address-of operator can not be used on expressions of type "
                           f"'{t}'", e.span)
                return UINT64
            return PtrT(t, False)        # &$x: the variable's stack storage (0.26)
        if located(t) or isinstance(e.operand, (ast.FieldAccess, ast.Index)) and \
                e.operand.c_user is not None:
            return PtrT(t, self.user_of(e.operand))
        self.error(f"The address-of operator can not be used on expressions of type '{t}'",
                   e.span)
        return UINT64

    def index_expr(self, e: ast.Index) -> Type:
        t = self.expr(e.base)
        it = self.expr(e.index)
        if not it.is_int:
            self.error(f"The array index operator [] needs an integer index, found "
                       f"{kind_word(it)}.", e.index.span)
        if isinstance(t, PtrT):
            e.c_user = t.user
            t = btftypes.complete(t)
            if t.target == VOID:
                self.error(f"Can not index a pointer of type '{t}'", e.span)
                return INT64
            return t.target
        if isinstance(t, ArrayT):
            e.c_user = self.user_of(e.base)
            n = self.const_int(e.index)
            if n is not None and t.n and not 0 <= n < t.n:
                self.error(f"the index {n} is out of bounds for array of size {t.n}", e.span)
            return _as_user(t.elem) if e.c_user else t.elem
        if isinstance(t, TupleT):
            n = self.const_int(e.index)
            if n is None or not 0 <= n < len(t.elems):
                self.error(f"Invalid tuple index: {e.index}", e.span)
                return INT64
            e.tuple_index = n
            return t.elems[n]
        self.error(f"The array index operator [] can only be used on arrays and pointers, "
                   f"found {kind_word(t)}.", e.span)
        return INT64

    # ------------------------------------------------------------------ arithmetic
    def pointer_binary(self, e: ast.Binary, a: Type, b: Type) -> Type | None:
        """ptr + int, int + ptr, ptr - int: a pointer, moved by whole elements; ptr - ptr:
        the distance in bytes. None for anything else (plain integer rules apply)."""
        if e.op in ("+", "-") and isinstance(a, PtrT) and not isinstance(b, PtrT) and b.is_int:
            return a
        if e.op == "+" and isinstance(b, PtrT) and not isinstance(a, PtrT) and a.is_int:
            return b
        if e.op == "-" and isinstance(a, PtrT) and isinstance(b, PtrT):
            return INT64
        return None

    # ------------------------------------------------------------------ sizeof, offsetof
    def sizeof_expr(self, e: ast.Sizeof) -> Type:
        if e.of_type is not None:
            tn = e.of_type
            name = " ".join(tn.name.split())
            if (name.startswith(("struct ", "union ")) and not tn.pointer_depth
                    and btftypes.lookup_type(name) is None):
                self.error(f"Unknown identifier: '{name}'", e.span)
                e.value = 0
                return UINT64
            t = self.c_type(tn, e.span)
        else:
            t = self.stored_type(e.of_expr)      # sizeof(1) is 1: a literal's smallest type
        e.value = _value_size(t)
        return UINT64

    def offsetof_expr(self, e: ast.Offsetof) -> Type:
        t = self.c_type(e.of_type, e.span, False)
        e.value = 0
        off = 0
        for name in e.fields:
            if not isinstance(t, StructT):
                self.error(f"offsetof() can only be used on structs and unions, not '{t}'",
                           e.span)
                return UINT64
            f = btftypes.field(t, name)
            if f is None:
                self.error(f"Struct/union of type '{t}' does not contain a field named "
                           f"'{name}'", e.span)
                return UINT64
            if f.bitfield is not None:
                self.error(f"offsetof() can not be used on the bitfield '{name}'", e.span)
                return UINT64
            off += f.offset
            t = f.type
        e.value = off
        return UINT64

    def tp_pointer_type(self, args: ArgsT, f) -> Type | None:
        """A tracepoint field that points to a struct/union (``struct __kernel_timespec *
        rqtp``) as a typed pointer, so ``args.rqtp->tv_sec`` works; the arguments of syscall
        tracepoints are user pointers. None for other fields."""
        if not f.is_pointer or f.array_len is not None or f.data_loc:
            return None
        words = f.type_text.replace("*", " ").split()
        stars = f.type_text.count("*")
        words = [w for w in words if w not in ("const", "volatile", "__user")]
        user = args.name.startswith(("sys_enter_", "sys_exit_"))
        if stars == 1 and len(words) == 2 and words[0] in ("struct", "union"):
            st = btftypes.lookup_type(f"{words[0]} {words[1]}")
            if not isinstance(st, StructT):
                return None
            return PtrT(st, user)
        # char *, const char *const *argv, int *, unsigned long *: pointers to integers
        # (bpftrace 0.26 types every pointer field; void * stays an integer here)
        name = " ".join(words)
        base = INT_TYPE_NAMES.get(name)
        if base is None or not 1 <= stars <= 2:
            return None
        t: Type = base
        for _ in range(stars):
            t = PtrT(t, user)
        return t

    def _byte_source(self, e: ast.Call, i: int, t: Type, sizes: tuple) -> bool:
        """Byte arrays of C types (``unsigned char[16]`` members such as skc_v6_daddr's
        u6_addr8, ``uint8[4]``) count as byte sources for ntop()/macaddr() (fn_funcs)."""
        if isinstance(t, ArrayT) and isinstance(t.elem, IntT) and t.elem.bits == 8:
            return t.n in sizes
        nxt = getattr(super(), "_byte_source", None)
        return nxt(e, i, t, sizes) if nxt is not None else False

    # ------------------------------------------------------------------ builtins
    def task_type(self) -> Type:
        st = btftypes.struct_type(TASK_STRUCT)
        return PtrT(st, False) if st is not None else UINT64

    def fn_curtask(self, e: ast.Call) -> Type:
        self.nargs(e, 0, 0, "curtask()")
        return self.task_type()

    def fn_ppid(self, e: ast.Call) -> Type:
        """ppid() / ppid(struct task_struct *task) (bpftrace 0.26): the parent's pid."""
        if self.nargs(e, 0, 1, "ppid([struct task_struct *task])") and e.args:
            t = self.expr(e.args[0])
            if not (isinstance(t, PtrT) and isinstance(t.target, StructT)
                    and t.target.name == TASK_STRUCT) and not (t.is_int and not isinstance(t, PtrT)):
                self.error(f"ppid() expects a 'struct task_struct *' argument, got '{t}'",
                           e.args[0].span)
        return UINT32

    def fn_socket_cookie(self, e: ast.Call) -> Type:
        """socket_cookie(struct sock *sk) (bpftrace 0.26): bpf_get_socket_cookie. The kernel
        gives it to tracing programs only (fentry/fexit, rawtracepoint with BTF-typed args
        (tp_btf), iter), on a socket pointer whose BTF type the verifier knows."""
        sig = "socket_cookie(struct sock *sk)"
        if not self.nargs(e, 1, 1, sig):
            return UINT64
        t = self.expr(e.args[0])
        if not (isinstance(t, PtrT) and isinstance(t.target, StructT)):
            self.error("socket_cookie() only supports 'struct sock *' as the argument "
                       f"({'integer' if t.is_int else t} provided)", e.args[0].span, [sig])
        elif (t.target.kind, t.target.name) != ("struct", "sock"):
            self.error("socket_cookie() only supports 'struct sock *' as the argument "
                       f"('{t.target} *' provided)", e.args[0].span, [sig])
        ctx = self.ctx
        if ctx is not None and not tracing_program(ctx):
            self.error(f'socket_cookie can not be used with "{ctx.provider}" probes', e.span,
                       ["the kernel offers bpf_get_socket_cookie on a socket to tracing programs "
                        "only: fentry/fexit, rawtracepoint reading args (tp_btf), iter"])
        return UINT64

    def fn_kptr(self, e: ast.Call) -> Type:
        """kptr(p): a pointer p as a pointer into kernel memory (reads through it use
        probe_read_kernel); an integer stays an integer."""
        return self._address_space(e, False)

    def fn_uptr(self, e: ast.Call) -> Type:
        """uptr(p): a pointer p as a pointer into the process's memory (probe_read_user)."""
        return self._address_space(e, True)

    def _address_space(self, e: ast.Call, user: bool) -> Type:
        check = getattr(self, "_address_arg", None)      # the argument check of fn_symbols
        if check is not None:
            if not check(e, f"{e.name}(pointer or integer)"):
                return UINT64
            t = e.args[0].type
        else:
            if not self.nargs(e, 1, 1, f"{e.name}(pointer or integer)"):
                return UINT64
            t = self.expr(e.args[0])
            if not t.is_int:
                self.error(f"{e.name}() expects an integer or pointer argument", e.span)
                return UINT64
        if isinstance(t, PtrT):
            return PtrT(t.target, user)
        return t

    def c_builtin(self, name: str, span: Span) -> Type | None:
        if name == "curtask":
            return self.task_type()
        if name == "ppid":
            return UINT32
        return None


def _as_user(t: Type) -> Type:
    """A type read from user memory: pointers in it point to user memory too."""
    if isinstance(t, PtrT) and not t.user:
        return PtrT(t.target, True)
    return t


def _value_size(t: Type) -> int:
    """sizeof: C's size for C types; for script values, bpftrace's (ints their width...)."""
    if isinstance(t, (StructT, ArrayT, PtrT, EnumT, StrT)):
        return c_sizeof(t)
    if isinstance(t, IntT):
        return t.bits // 8
    if isinstance(t, BoolT) or t == BOOL:
        return 1
    if isinstance(t, ArgsT):
        return 8
    if isinstance(t, TupleT):
        return c_layout(t)[0]
    return t.size()

