"""Semantic analysis of stacks and symbols: ``kstack``/``ustack`` (builtins and functions with
a mode and a limit), ``ksym usym kaddr uaddr kptr uptr reg``.

Value types (``UserT``, turned into text by ``runtime.symbols``):
  kstack: 8 bytes, the stack id;           aux (mode, limit, stack map name)
  ustack: 16 bytes, stack id and pid;      aux (mode, limit, stack map name)
  ksym:   8 bytes, the address
  usym:   16 bytes, the address and pid
"""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.sema import btftypes, builtins
from ptrace_lang.sema.types import INT64, UINT64, StrT, Type, UserT

STACK_MODES = ("bpftrace", "perf", "raw")
DEFAULT_STACK_LIMIT = 127
MAX_STACK_LIMIT = 1024

# x86-64 struct pt_regs: bpftrace's register names and their offsets
PT_REGS = {
    "r15": 0, "r14": 8, "r13": 16, "r12": 24, "bp": 32, "bx": 40, "r11": 48, "r10": 56,
    "r9": 64, "r8": 72, "ax": 80, "cx": 88, "dx": 96, "si": 104, "di": 112, "orig_ax": 120,
    "ip": 128, "cs": 136, "flags": 144, "sp": 152, "ss": 160,
}
KSYM = UserT("ksym", 8, (), "ksym")
USYM = UserT("usym", 16, (), "usym")


def stack_type(kind: str, mode: str, limit: int) -> UserT:
    return UserT(kind, 8 if kind == "kstack" else 16, (mode, limit, f"{kind}_{limit}"), kind)


def _arg_kind(t: Type | None, e: ast.Expr) -> str:
    """bpftrace's word for what an argument is, in 'expects X (Y provided)' messages."""
    if isinstance(e, ast.StrLit) or isinstance(t, StrT):
        return "string"
    if t is not None and t.is_int:
        return "integer"
    return str(t) if t is not None else "none"


class SymbolsAnalyzer:
    """Mixin of ``sema.analyze._Analyzer``."""

    stack_mode: str | None = None      # config stack_mode (analyze() sets it)

    def default_stack_mode(self) -> str:
        return self.stack_mode if self.stack_mode in STACK_MODES else "bpftrace"

    # ---------------------------------------------------------------- kstack / ustack
    def builtin_kstack(self, span) -> Type:
        return stack_type("kstack", self.default_stack_mode(), DEFAULT_STACK_LIMIT)

    def builtin_ustack(self, span) -> Type:
        return stack_type("ustack", self.default_stack_mode(), DEFAULT_STACK_LIMIT)

    def fn_kstack(self, e: ast.Call) -> Type:
        return self._stack_call(e, "kstack")

    def fn_ustack(self, e: ast.Call) -> Type:
        return self._stack_call(e, "ustack")

    def _stack_call(self, e: ast.Call, kind: str) -> Type:
        sig = f"{kind}([mode][, limit]): mode is bpftrace, perf or raw; limit 1 to {MAX_STACK_LIMIT}"
        mode, limit = self.default_stack_mode(), DEFAULT_STACK_LIMIT
        if len(e.args) > 2:
            self.error(f"{kind}() takes up to 2 arguments ({len(e.args)} provided)", e.span, [sig])
            return stack_type(kind, mode, limit)
        args = list(e.args)
        if args and isinstance(args[0], ast.Builtin) or (len(args) == 2):
            m = args.pop(0)
            if not isinstance(m, ast.Builtin) or m.name not in STACK_MODES:
                what = m.name if isinstance(m, ast.Builtin) else None
                msg = (f"{kind}(): unknown stack mode '{what}'" if what is not None
                       else f"{kind}() expects a stack mode (bpftrace, perf or raw) as its first argument")
                self.error(msg, m.span, [sig])
            else:
                mode = m.name
            m.type = INT64
        if args:
            a = args[0]
            n = self.const_int(a)
            if n is None:
                t = self.expr(a) if not isinstance(a, ast.Builtin) else None
                self.error(f"{kind}() expects an integer literal as its limit "
                           f"({_arg_kind(t, a)} provided)", a.span, [sig])
            elif not 1 <= n <= MAX_STACK_LIMIT:
                self.error(f"{kind}(): the limit must be between 1 and {MAX_STACK_LIMIT}, "
                           f"{n} given", a.span, [sig])
            else:
                limit = n
            a.type = INT64
        return stack_type(kind, mode, limit)

    # ---------------------------------------------------------------- ksym / usym
    def _address_arg(self, e: ast.Call, sig: str) -> bool:
        if not self.nargs(e, 1, 1, sig):
            for a in e.args:
                self.expr(a)
            return False
        t = self.expr(e.args[0])
        if not t.is_int:
            self.error(f"{e.name}() expects an integer or pointer argument "
                       f"({_arg_kind(t, e.args[0])} provided)", e.args[0].span, [sig])
            return False
        return True

    def fn_ksym(self, e: ast.Call) -> Type:
        self._address_arg(e, "ksym(uint64 addr)")
        return KSYM

    def fn_usym(self, e: ast.Call) -> Type:
        self._address_arg(e, "usym(uint64 addr)")
        return USYM

    def fn_kptr(self, e: ast.Call) -> Type:
        ok = self._address_arg(e, "kptr(pointer or integer)")
        return e.args[0].type if ok else UINT64

    def fn_uptr(self, e: ast.Call) -> Type:
        ok = self._address_arg(e, "uptr(pointer or integer)")
        return e.args[0].type if ok else UINT64

    # ---------------------------------------------------------------- kaddr / uaddr / reg
    def _literal_arg(self, e: ast.Call, sig: str) -> str | None:
        if not self.nargs(e, 1, 1, sig):
            return None
        a = e.args[0]
        if not isinstance(a, ast.StrLit):
            t = self.expr(a)
            self.error(f"{e.name}() expects a string literal ({_arg_kind(t, a)} provided)",
                       e.span, [sig])
            return None
        self.expr(a)
        return a.value

    def fn_kaddr(self, e: ast.Call) -> Type:
        name = self._literal_arg(e, 'kaddr(const char *name)')
        if name is not None and self.final and e.address is None:
            try:
                addr = self.host.kernel_address(name)
            except OSError as err:
                self.error(f"kaddr(): cannot read /proc/kallsyms: {err.strerror or err}", e.span)
                return UINT64
            if addr is None:
                self.error(f"Failed to resolve kernel symbol: {name}", e.args[0].span,
                           ["kaddr() takes a symbol of /proc/kallsyms (with CONFIG_KALLSYMS_ALL "
                            "for data symbols)"])
            else:
                e.address = addr
        return UINT64

    def fn_percpu_kaddr(self, e: ast.Call) -> Type:
        """percpu_kaddr("name"[, cpu]) (bpftrace 0.26): the address of a per-CPU kernel
        variable, found in the kernel's BTF (``e.address`` keeps its VAR's BTF id)."""
        sig = builtins.signature("percpu_kaddr")
        if not self.nargs(e, 1, 2, sig):
            return UINT64
        if len(e.args) == 2:
            t = self.expr(e.args[1])
            if not t.is_int:
                self.error(f"percpu_kaddr() expects an integer cpu ({_arg_kind(t, e.args[1])} "
                           "provided)", e.args[1].span, [sig])
        a = e.args[0]
        if not isinstance(a, ast.StrLit):
            t = self.expr(a)
            self.error(f"percpu_kaddr() expects a string literal ({_arg_kind(t, a)} provided)",
                       e.span, [sig])
            return UINT64
        self.expr(a)
        var = btftypes.percpu_var(a.value)
        if var is None:
            self.error(f"Could not resolve per-CPU kernel variable: {a.value}", a.span,
                       ["percpu_kaddr() takes a per-CPU variable of the kernel's BTF "
                        "(/sys/kernel/btf/vmlinux), e.g. runqueues"])
            return UINT64
        e.address = var[0]
        if self.final and not self._kallsyms_has(a.value):
            # the verifier looks the variable's address up with kallsyms_lookup_name
            self.error(f"percpu_kaddr(): the kernel has no address for '{a.value}' in "
                       "/proc/kallsyms", a.span,
                       ["the kernel finds per-CPU variables by name only when it is built with "
                        "CONFIG_KALLSYMS_ALL"])
        return UINT64

    def _kallsyms_has(self, name: str) -> bool:
        try:
            return self.host.kernel_address(name) is not None
        except OSError:
            return False

    def fn_uaddr(self, e: ast.Call) -> Type:
        name = self._literal_arg(e, 'uaddr(const char *name)')
        provider = self.ctx.provider if self.ctx is not None else ""
        if self.ctx is None or not self.ctx.user_space:
            self.error(f'uaddr can not be used with "{provider}" probes', e.span)
            return UINT64
        if name is None or not self.final or e.address is not None:
            return UINT64
        probe = getattr(self, "cur_probe", None)
        paths = set()
        for ap in (probe.attach_points if probe is not None else ()):
            if ap.parts:
                try:
                    paths.add(self.host.resolve_binary(ap.parts[0]))
                except LookupError:
                    pass
        if len(paths) != 1:
            self.error("uaddr() needs every attach point of its probe to be in one binary",
                       e.span)
            return UINT64
        path = paths.pop()
        try:      # (functions first among symbols of one name, as for uprobes)
            e.address = self.host.user_symbol_address(path, name)
        except LookupError:
            self.error(f"Could not resolve symbol: {path}:{name}", e.span)
        return UINT64

    def fn_reg(self, e: ast.Call) -> Type:
        sig = builtins.signature("reg")      # (it lists PT_REGS)
        name = self._literal_arg(e, sig)
        provider = self.ctx.provider if self.ctx is not None else ""
        if self.ctx is None or not self.ctx.pt_regs:
            self.error(f'reg can not be used with "{provider}" probes', e.span)
            return UINT64
        if name is not None and name not in PT_REGS:
            self.error(f"'{name}' is not a valid register on this architecture (x86_64)", e.span,
                       ["valid registers: " + ", ".join(PT_REGS)])
        return UINT64
