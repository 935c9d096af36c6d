"""``OutputCalls``, a mixin of ``sema.analyze._Analyzer``: the calls that write output or end
the run (printf, cat, system, join, print, time, exit), str() and delete(), and the check of a
printf format against its arguments (``check_format``)."""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import BOOL, INT64, VOID, AggT, ArgsT, BufT, StrT, Type



class OutputCalls:
    def fn_printf(self, e: ast.Call) -> Type:
        return self.format_call(e, "printf(const char *fmt, ...)")

    def fn_cat(self, e: ast.Call) -> Type:
        """cat(fmt, ...): the file named by the formatted string, printed from user space."""
        return self.format_call(e, "cat(const char *filename, ...)")

    def format_call(self, e: ast.Call, signature: str) -> Type:
        """A call whose arguments are a format string literal and its values (printf, cat,
        system): the values are checked against the format."""
        if not e.args or not isinstance(e.args[0], ast.StrLit):
            self.error(f"{e.name}() requires a string literal as its first argument", e.span,
                       [signature])
            for a in e.args:
                self.expr(a)
            return VOID
        self.expr(e.args[0])
        types = [self.expr(a) for a in e.args[1:]]
        check_format(self, e.name, e.args[0], e.args[1:], types)
        return VOID

    def fn_system(self, e: ast.Call) -> Type:
        """system(fmt, ...): the formatted command run by the shell in user space (--unsafe)."""
        if not self.unsafe:
            self.error("system() is an unsafe function being used in safe mode", e.span,
                       ["run with --unsafe to allow it"])
        return self.format_call(e, "system(const char *fmt, ...)")

    def fn_join(self, e: ast.Call) -> Type:
        """join(char *arr[][, char *delim]): the strings of a NULL-terminated user array."""
        if not self.nargs(e, 1, 2, "join(char *arr[][, char *delim])"):
            for a in e.args:
                self.expr(a)
            return VOID
        t = self.expr(e.args[0])
        if not t.is_int:
            self.error(f"join() expects an array of strings (a pointer), got '{t}'", e.args[0].span,
                       ["join(char *arr[][, char *delim])"])
        if len(e.args) == 2:
            if not isinstance(e.args[1], ast.StrLit):
                self.error("join() requires a string literal as its delimiter", e.args[1].span)
            self.expr(e.args[1])
        return VOID

    def fn_print(self, e: ast.Call) -> Type:
        if not e.args:
            self.error("print() requires at least 1 argument (0 provided)", e.span,
                       ["print(@map[, top[, div]]) or print(value)"])
            return VOID
        first = e.args[0]
        if isinstance(first, ast.MapRef) and first.keys is None and "@" + first.name in self.maps:
            first.type = self.maps["@" + first.name].value_type
            self.nargs(e, 1, 3, "print(@map[, top[, div]])")
            for a in e.args[1:]:
                if self.const_int(a) is None:
                    self.error("print(): top and div must be integer literals", a.span)
                a.type = INT64
            return VOID
        if len(e.args) > 1:
            self.error("print() with a value takes 1 argument", e.span,
                       ["print(@map[, top[, div]]) or print(value)"])
        t = self.expr(first)
        if t == VOID or isinstance(t, ArgsT):
            self.error(f"print() can not print a value of type '{t}'", first.span)
        return VOID

    def fn_time(self, e: ast.Call) -> Type:
        if self.nargs(e, 0, 1, "time([const char *fmt])") and e.args:
            if not isinstance(e.args[0], ast.StrLit):
                self.error("time() requires a string literal", e.args[0].span)
            self.expr(e.args[0])
        return VOID

    def fn_exit(self, e: ast.Call) -> Type:
        if self.nargs(e, 0, 1, "exit([int code])") and e.args:
            t = self.expr(e.args[0])
            if not t.is_int:
                self.error(f"exit() expects an integer exit code, got '{t}'", e.args[0].span)
        return VOID

    def fn_str(self, e: ast.Call) -> Type:
        if not self.nargs(e, 1, 2, "str(char *s[, int length])"):
            return StrT(self.max_strlen + 1)
        a = e.args[0]
        if isinstance(a, ast.PositionalParam):     # str($1): the argument's text ("" when absent,
            n = a.index                            # "5" when numeric), as bpftrace does
            text = self.positional[n - 1] if 1 <= n <= len(self.positional) else ""
            e.args[0] = ast.StrLit(text, span=a.span)
        elif (isinstance(a, ast.Binary) and a.op == "+" and isinstance(a.left, ast.PositionalParam)):
            # str($1 + 2): the parameter's text from its third character (bpftrace: a pointer
            # into the string literal, moved by a constant no greater than its length), a
            # numeric one's too (str($1 + 1) of 41 is "1")
            n = a.left.index
            text = self.positional[n - 1] if 1 <= n <= len(self.positional) else ""
            k = self.const_int(a.right)
            if k is None or not 0 <= k <= len(text.encode()):
                self.error(f"Only addition of a single constant less or equal to the length of "
                           f"${a.left.index} (which is {len(text.encode())}) is allowed inside "
                           f"str()", a.span)
                return StrT(self.max_strlen + 1)
            e.args[0] = ast.StrLit(text.encode()[k:].decode(errors="surrogateescape"), span=a.span)
        t = self.expr(e.args[0])
        size = cap = self.max_strlen + 1    # max_strlen characters, then the NUL (0.26)
        if len(e.args) == 2:
            n = self.const_int(e.args[1])
            lt = self.expr(e.args[1])
            if n is None:
                # a length known at run time: at most max_strlen characters, the read
                # bounded in the program (lower.str_call_into)
                if not lt.is_int:
                    self.error(f"str() expects an integer length, got '{lt}'", e.args[1].span,
                               ["str(char *s[, int length])"])
            elif n <= 0:
                self.error("str() length must be positive", e.args[1].span)
            else:
                size = min(n + 1, cap)
        if isinstance(t, StrT):         # a string cut to max_strlen shows the trailer
            return StrT(size, size == cap) if t.length > size else t
        if not t.is_int:
            self.error(f"str() expects a pointer or an integer address, got '{t}'", e.args[0].span)
        return StrT(size, trunc=True)

    def fn_delete(self, e: ast.Call) -> Type:
        if len(e.args) == 1 and isinstance(e.args[0], ast.MapRef) and e.args[0].keys is not None:
            ref = e.args[0]
        elif len(e.args) == 2 and isinstance(e.args[0], ast.MapRef) and e.args[0].keys is None:
            ref = ast.MapRef(e.args[0].name, [e.args[1]], span=e.args[0].span.join(e.args[1].span))
            e.args = [ref]
        elif len(e.args) == 1 and isinstance(e.args[0], ast.MapRef):
            ref = e.args[0]
        else:
            self.error("delete() expects a map and a key", e.span, ["delete(@map, key) or delete(@map[key])"])
            return VOID
        info = self.maps.get("@" + ref.name)
        if info is None:
            self.error(f"Undefined map: @{ref.name}", ref.span)
            return VOID
        self.check_key(info, ref, self.key_type(ref))
        ref.type = info.value_type
        return BOOL       # (bpftrace 0.26) whether the key was there

    def _whole_map(self, e: ast.Call) -> Type:
        if len(e.args) != 1 or not isinstance(e.args[0], ast.MapRef) or e.args[0].keys is not None:
            self.error(f"{e.name}() expects a map argument", e.span, [f"{e.name}(@map)"])
            return VOID
        ref = e.args[0]
        info = self.maps.get("@" + ref.name)
        if info is None:
            self.error(f"Undefined map: @{ref.name}", ref.span)
            return VOID
        ref.type = info.value_type
        return VOID

    fn_clear = _whole_map
    fn_zero = _whole_map


def check_format(an, fname: str, fmt_node: ast.StrLit, args: list[ast.Expr],
                 types: list[Type]) -> None:
    from ptrace_lang.fmtspec import arg_class, parse_format

    try:
        specs = parse_format(fmt_node.value)
    except ValueError as err:
        an.error(f"{fname}: {err}", fmt_node.span)
        return
    from ptrace_lang.fmtspec import check_arg_count

    problem = check_arg_count(specs, len(args))
    if problem is not None:
        span = fmt_node.span.join(args[-1].span) if args else fmt_node.span
        an.error(f"{fname}: {problem}", span)
        return
    for spec, arg, t in zip(specs, args, types):
        cls = arg_class(spec)
        if t == VOID or isinstance(t, (AggT, ArgsT)):
            an.error(f"{fname}: can not print a value of type '{t}'", arg.span)
        elif cls in ("int", "char", "ptr") and not t.is_int:
            an.error(f"{fname}: %{spec.conv} specifier expects a value of type integer "
                     f"('{t}' supplied)", arg.span)
        elif cls == "buf" and not isinstance(t, BufT):
            an.error(f"{fname}: %{spec.conv} specifier expects a value of type buffer "
                     f"('{t}' supplied)", arg.span, ["buf(void *data, [int64 length])"])
        elif cls == "float":
            an.error(f"{fname}: %{spec.conv} is not supported: there are no floating point values",
                     fmt_node.span)
