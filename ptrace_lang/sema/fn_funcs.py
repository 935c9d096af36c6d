"""Semantic analysis of the string, network and miscellaneous functions and of the builtins
``username jiffies ncpus numaid usermode`` and ``nsecs(clock)`` (dialect.md §2/§3).

``FuncsMixin`` is a base of ``sema.analyze._Analyzer``: ``fn_<name>(call)`` checks a call and
returns its type; ``builtin_<name>(span)`` types a builtin variable. Values user space turns into
text are ``UserT``s whose formatters live in ``runtime.ufuncs``.
"""
from __future__ import annotations

from ptrace_lang.frontend import ast
from ptrace_lang.sema import builtins
from ptrace_lang.sema.types import (
    BOOL, INT64, PROBE, UINT32, UINT64, VOID, IntT, PtrT, StrT, StructT, Type, UserT,
)
from ptrace_lang.messages import map_call_error, say
from ptrace_lang.signals import SIGNAL_TEXT_SIZE, SIGNALS

PROBETYPE_SIZE = 16      # the longest provider name, "rawtracepoint", and its NUL fit
STRERROR = UserT("strerror", 8, (), "strerror_t")
SYSCALL_NAME = UserT("syscall_name", 8, (), "syscall_name_t")
# signal_name(n) is a string (bpftrace 0.26): a constant for a constant n, else read from the
# program's table of texts (codegen.lower_funcs.into_signal_name)
SIGNAL_NAME = StrT(SIGNAL_TEXT_SIZE)
USERNAME = UserT("username", 8, (), "username")
COMM_OF_PID = UserT("comm_of_pid", 8, (), "comm_of_pid")
INET = UserT("inet", 24, (), "inet")           # u64 family, then 16 address bytes
MACADDR = UserT("macaddr", 8, (), "mac_address")
CGROUP_PATH = "cgroup_path_t"
UINT8 = IntT(8, False)

NSECS_CLOCKS = ("monotonic", "boot", "tai", "sw_tai")   # sw_tai: TAI (bpftrace computes it in
# software for kernels without bpf_ktime_get_tai_ns; ours have it: the same clock)

# the signatures shown in hints (sema.builtins)
SIG = {b.name: b.sig for b in builtins.BUILTINS.values() if b.sig}


def array_field(e: ast.Expr):
    """The tracepoint format field when ``e`` is ``args.f`` naming a non-char byte array, else
    None (such fields are read as bytes by ntop/macaddr)."""
    from ptrace_lang.sema.types import ArgsT

    if isinstance(e, ast.FieldAccess) and isinstance(e.base.type, ArgsT):
        f = e.base.type.field(e.field_name)
        if f is not None and f.array_len is not None and not f.data_loc:
            return f
    return None


def pton_bytes(text: str) -> bytes | None:
    import socket

    for af in (socket.AF_INET, socket.AF_INET6):
        try:
            return socket.inet_pton(af, text)
        except OSError:
            continue
    return None


class FuncsMixin:
    """fn_* / builtin_* methods for _Analyzer (see the module doc)."""

    # ------------------------------------------------------------------ helpers
    def _args_types(self, e: ast.Call) -> list[Type]:
        return [self.expr(a) for a in e.args]

    def _want_int(self, e: ast.Call, i: int, t: Type, what: str = "an integer") -> bool:
        if t.is_int:
            return True
        self.error(f"{e.name}() expects {what} as argument {i + 1}, got '{t}'", e.args[i].span,
                   [SIG[e.name]])
        return False

    def _want_str(self, e: ast.Call, i: int, t: Type) -> bool:
        if isinstance(t, StrT):
            return True
        if t == PROBE:                   # the probe's name as a string (0.26)
            e.args[i] = self.probe_string(e.args[i])
            return True
        self.error(f"{e.name}() expects a string as argument {i + 1}, got '{t}'", e.args[i].span,
                   [SIG[e.name]])
        return False

    def _checked(self, e: ast.Call, lo: int, hi: int) -> list[Type] | None:
        """Argument count check, then the arguments' types (None when the count is wrong)."""
        if not self.nargs(e, lo, hi, SIG[e.name]):
            for a in e.args:
                self.expr(a)
            return None
        return self._args_types(e)

    # ------------------------------------------------------------------ strings
    def fn_strncmp(self, e: ast.Call) -> Type:
        ts = self._checked(e, 3, 3)
        if ts is None:
            return INT64
        self._want_str(e, 0, ts[0]) and self._want_str(e, 1, ts[1])
        n = self.const_int(e.args[2])
        if n is None:
            self.error("strncmp() requires an integer literal as its length", e.args[2].span,
                       [SIG["strncmp"]])
        elif n < 0:
            self.error("strncmp() length must be non-negative", e.args[2].span, [SIG["strncmp"]])
        return INT64

    def _two_strings(self, e: ast.Call, result: Type) -> Type:
        ts = self._checked(e, 2, 2)
        if ts is not None:
            self._want_str(e, 0, ts[0]) and self._want_str(e, 1, ts[1])
        return result

    def fn_strcontains(self, e: ast.Call) -> Type:
        return self._two_strings(e, BOOL)

    def fn_strstr(self, e: ast.Call) -> Type:
        return self._two_strings(e, INT64)

    def fn_strlen(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 1)
        if ts is not None:
            self._want_str(e, 0, ts[0])
        return UINT64

    def fn_strftime(self, e: ast.Call) -> Type:
        ts = self._checked(e, 2, 2)
        if ts is None:
            return UserT("strftime", 8, ("",), "timestamp")
        if not isinstance(e.args[0], ast.StrLit):
            self.error("strftime() requires a string literal as its format", e.args[0].span,
                       [SIG["strftime"]])
            return UserT("strftime", 8, ("",), "timestamp")
        self._want_int(e, 1, ts[1])
        return UserT("strftime", 8, (e.args[0].value,), "timestamp")

    def _one_int(self, e: ast.Call, result: Type) -> Type:
        ts = self._checked(e, 1, 1)
        if ts is not None:
            self._want_int(e, 0, ts[0])
        return result

    def fn_strerror(self, e: ast.Call) -> Type:
        return self._one_int(e, STRERROR)

    def fn_syscall_name(self, e: ast.Call) -> Type:
        return self._one_int(e, SYSCALL_NAME)

    def fn_signal_name(self, e: ast.Call) -> Type:
        """The text of the signal; ``e.address`` keeps a number known at compile time (the
        string is then a constant of the program)."""
        ts = self._checked(e, 1, 1)
        if ts is not None and self._want_int(e, 0, ts[0]):
            e.address = self.const_expr(e.args[0])
        return SIGNAL_NAME

    # ------------------------------------------------------------------ network
    def _byte_source(self, e: ast.Call, i: int, t: Type, sizes: tuple) -> bool:
        """Is argument i a byte array of one of ``sizes`` (a tracepoint array field, a pton()
        value or a string value)?"""
        a = e.args[i]
        f = array_field(a)
        if f is not None:
            n = f.size
            return n in sizes
        if isinstance(t, UserT) and t.kind == "bytes":
            return t.nbytes in sizes
        return False

    def fn_ntop(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 2)
        if ts is None:
            return INET
        addr_i = len(e.args) - 1
        if len(e.args) == 2:
            self._want_int(e, 0, ts[0], "an address family")
        t = ts[addr_i]
        if self._byte_source(e, addr_i, t, (4, 16)):
            return INET
        if t.is_int:
            return INET
        self.error(f"ntop() expects an integer or an array of 4 or 16 bytes as its address, "
                   f"got '{t}'", e.args[addr_i].span, [SIG["ntop"]])
        return INET

    def fn_pton(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 1)
        if ts is None:
            return UserT("bytes", 4, (4,), "uint8[4]")
        if not isinstance(e.args[0], ast.StrLit):
            self.error("pton() requires a string literal", e.args[0].span, [SIG["pton"]])
            return UserT("bytes", 4, (4,), "uint8[4]")
        raw = pton_bytes(e.args[0].value)
        if raw is None:
            self.error(f"pton() expects an IPv4 or IPv6 address, got '{e.args[0].value}'",
                       e.args[0].span, [SIG["pton"]])
            return UserT("bytes", 4, (4,), "uint8[4]")
        return UserT("bytes", len(raw), (len(raw),), f"uint8[{len(raw)}]")

    def fn_macaddr(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 1)
        if ts is None:
            return MACADDR
        a, t = e.args[0], ts[0]
        f = array_field(a)
        if isinstance(a, ast.StrLit):
            self.error("macaddr() does not support literal string arguments", e.span, [SIG["macaddr"]])
        elif f is not None:
            if f.size < 6:
                self.error("macaddr() argument must be 6 bytes in size", e.span, [SIG["macaddr"]])
        elif isinstance(t, UserT) and t.kind == "bytes":
            if t.nbytes != 6:
                self.error("macaddr() argument must be 6 bytes in size", e.span, [SIG["macaddr"]])
        elif isinstance(t, StrT):
            if t.length < 6:
                self.error("macaddr() argument must be 6 bytes in size", e.span, [SIG["macaddr"]])
        elif not t.is_int:
            self.error(f"macaddr() expects an array of 6 bytes or a pointer, got '{t}'", a.span,
                       [SIG["macaddr"]])
        return MACADDR

    # ------------------------------------------------------------------ misc
    def fn_bswap(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 1)
        if ts is None or not self._want_int(e, 0, ts[0]):
            return UINT64
        bits = ts[0].bits if isinstance(ts[0], IntT) else 64
        return IntT(bits, False)

    def fn_has_key(self, e: ast.Call) -> Type:
        if len(e.args) != 2 or not isinstance(e.args[0], ast.MapRef) or e.args[0].keys is not None:
            self.error(*map_call_error("has_key", e.args, e.span, 2), [SIG["has_key"]])
            for a in e.args:
                if not isinstance(a, ast.MapRef):
                    self.expr(a)
            return BOOL
        m = e.args[0]
        info = self.maps.get("@" + m.name)
        if info is None:
            self.error(f"Undefined map: @{m.name}", m.span)
            self.expr(e.args[1])
            return BOOL
        ref = ast.MapRef(m.name, [e.args[1]], span=m.span.join(e.args[1].span))
        if info.key_type is None:
            self.error(say("key_on_scalar_map", map=m.name, keytype=self.expr(e.args[1])), e.args[1].span)
            return BOOL
        self.check_key(info, ref, self.key_type(ref))
        m.type = info.value_type
        return BOOL

    def fn_cgroupid(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 1)
        if ts is None:
            return UINT64
        a = e.args[0]
        if not isinstance(a, ast.StrLit):
            self.error("cgroupid() requires a string literal", a.span, [SIG["cgroupid"]])
            return UINT64
        if self.final:
            # the compile cache checks the path's inode (the cgroup id) before reusing a program
            if a.value not in self.__dict__.setdefault("deps", []):
                self.deps.append(a.value)
            try:
                e.address = self.host.cgroup_id(a.value)
            except OSError as err:
                self.error(f"cgroupid(): cannot resolve cgroup '{a.value}': {err.strerror}", a.span)
        return UINT64

    def fn_cgroup_path(self, e: ast.Call) -> Type:
        ts = self._checked(e, 1, 2)
        filt = ""
        if ts is not None:
            self._want_int(e, 0, ts[0])
            if len(e.args) == 2:
                if isinstance(e.args[1], ast.StrLit):
                    filt = e.args[1].value
                else:
                    self.error("cgroup_path() requires a string literal as its filter",
                               e.args[1].span, [SIG["cgroup_path"]])
        return UserT("cgroup_path", 8, (filt,), CGROUP_PATH)

    def _message_call(self, e: ast.Call) -> Type:
        return self.format_call(e, SIG[e.name])

    fn_errorf = _message_call
    fn_warnf = _message_call
    fn_debugf = _message_call

    def fn_signal(self, e: ast.Call) -> Type:
        if not self.unsafe:
            self.error("signal() is an unsafe function being used in safe mode", e.span,
                       ["run with --unsafe to allow it"])
        if self.ctx is not None and self.ctx.provider in ("begin", "end"):
            self.error(f"signal() can not be used in {self.ctx.provider.upper()}: there is no "
                       "traced process to signal", e.span, [SIG["signal"]])
        if not self.nargs(e, 1, 1, SIG["signal"]):
            for a in e.args:
                self.expr(a)
            return VOID
        a = e.args[0]
        if isinstance(a, ast.StrLit) or (isinstance(a, ast.Builtin) and a.name.startswith("SIG")):
            name = a.value if isinstance(a, ast.StrLit) else a.name
            if not name.startswith("SIG"):
                name = "SIG" + name
            if name not in SIGNALS:
                self.error(f"signal(): unknown signal '{name}'", a.span, [SIG["signal"]])
            a.type = INT64
            return VOID
        t = self.expr(a)
        if not self._want_int(e, 0, t, "a signal number or name"):
            return VOID
        n = self.const_int(a)
        if n is not None and not 1 <= n <= 64:
            self.error(f"signal(): invalid signal number {n}", a.span, [SIG["signal"]])
        return VOID

    def fn_path(self, e: ast.Call) -> Type:
        """path(struct path *[, size]): the file's full path, written by bpf_d_path, which the
        kernel allows in fentry/fexit probes of its allow-listed functions and in iter probes."""
        size = self.max_strlen + 1      # max_strlen characters and the NUL, as str()
        if not self.nargs(e, 1, 2, SIG["path"]):
            return StrT(size)
        t = self.expr(e.args[0])
        if not t.is_int or t == BOOL:
            self.error(f"path() expects a pointer to a struct path, got '{t}'", e.args[0].span,
                       [SIG["path"]])
        if len(e.args) == 2:
            self.expr(e.args[1])
            n = self.const_int(e.args[1])
            if n is None or n <= 0:
                self.error("path(): the size must be a positive integer literal", e.args[1].span,
                           [SIG["path"]])
            else:
                size = min(n, 4096)
        probes = builtins.BUILTINS["path"].probes
        if self.ctx is not None and self.ctx.provider not in probes:
            self.error("The path function can only be used with "
                       + ", ".join(f"'{p}'" for p in probes) + " probes", e.span, [SIG["path"]])
        return StrT(size)

    def fn_override(self, e: ast.Call) -> Type:
        if not self.unsafe:
            self.error("override() is an unsafe function being used in safe mode", e.span,
                       ["run with --unsafe to allow it"])
        if self.ctx is not None and self.ctx.provider not in builtins.BUILTINS["override"].probes:
            self.error("override() can only be used in kprobe probes", e.span, [SIG["override"]])
        ts = self._checked(e, 1, 1)
        if ts is not None:
            self._want_int(e, 0, ts[0])
        return VOID

    # ------------------------------------------------------------------ builtins
    def fn_nsecs(self, e: ast.Call) -> Type:
        if not self.nargs(e, 0, 1, SIG["nsecs"]):
            return UINT64
        if e.args:
            a = e.args[0]
            clock = a.name if isinstance(a, ast.Builtin) else None
            if clock not in NSECS_CLOCKS:
                self.error("nsecs() expects a clock: monotonic, boot, tai or sw_tai", a.span, [SIG["nsecs"]])
            a.type = UINT64
        return UINT64

    def fn_comm(self, e: ast.Call) -> Type:
        """``comm()`` is the task's command name; ``comm(pid)`` (bpftrace 0.26) the name of
        process ``pid``, looked up in user space when printed (the kernel has no helper that
        finds a task by pid): the value is the pid."""
        if not e.args:
            return self.builtin("comm", e.span)
        ts = self._checked(e, 1, 1)
        if ts is not None:
            self._want_int(e, 0, ts[0])
        return COMM_OF_PID

    def builtin_username(self, span) -> Type:
        return USERNAME

    def builtin_jiffies(self, span) -> Type:
        return UINT64

    def builtin_ncpus(self, span) -> Type:
        return UINT64

    def builtin_numaid(self, span) -> Type:
        return UINT32

    program_opts: dict = {}       # the program's --name[=value] options (analyze sets them)

    def fn_getopt(self, e: ast.Call) -> Type:
        """getopt("name"[, default]) (bpftrace 0.26): the program option --name given after
        "--", typed by the default (an integer, a string or a bool; none: a bool, false); a
        constant of the program: the call's second argument becomes the value's literal."""
        if not self.nargs(e, 1, 2, 'getopt(const char *name[, int|string|bool default])'):
            return INT64
        name_e = e.args[0]
        if not isinstance(name_e, ast.StrLit) or not name_e.value:
            self.error("getopt() expects a literal option name", name_e.span)
            return INT64
        name = name_e.value
        self.__dict__.setdefault("getopt_names", set()).add(name)
        default = e.args[1] if len(e.args) == 2 else ast.BoolLit(False, span=e.span)
        if (isinstance(default, ast.Unary) and default.op == "-"
                and isinstance(default.operand, ast.IntLit)):
            default = ast.IntLit(-default.operand.value, span=default.span)
        if not isinstance(default, (ast.IntLit, ast.StrLit, ast.BoolLit)):
            self.error("getopt() expects a literal default: an integer, a string or a bool",
                       default.span)
            return INT64
        given = self.program_opts.get(name, False)
        value = default
        if given is not False:          # the option is on the command line
            if isinstance(default, ast.BoolLit):
                low = (given or "true").lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    self.error(f"getopt(): --{name} takes a bool (true or false), got '{given}'",
                               name_e.span)
                    return BOOL
                value = ast.BoolLit(low in ("true", "1", "yes"), span=default.span)
            elif isinstance(default, ast.IntLit):
                try:
                    value = ast.IntLit(int(given or "", 0), span=default.span)
                except ValueError:
                    self.error(f"getopt(): --{name} takes an integer, got '{given or ''}'",
                               name_e.span)
                    return INT64
            else:
                value = ast.StrLit(given or "", span=default.span)
        e.args = [name_e, value]
        return self.expr(value)

    def builtin_probetype(self, span) -> Type:
        return StrT(PROBETYPE_SIZE)

    def builtin_usermode(self, span) -> Type:
        if self.ctx is not None and self.ctx.provider in ("begin", "end"):
            return UINT8      # 1: begin and end run from ptrace's own user-space start and end
        if self.ctx is not None and not self.ctx.pt_regs:
            self.error(f"The usermode builtin can not be used with '{self.ctx.provider}' probes",
                       span)
        return UINT8

    # ------------------------------------------------------------------ skboutput
    def fn_skboutput(self, e: ast.Call) -> Type:
        """skboutput(path, skb, cap_len, offset) (bpftrace 0.20): bpf_skb_output copies cap_len
        bytes of the packet into a perf event array; user space writes them, the first offset
        bytes left out (14: an Ethernet header), to the pcap file path (raw IP). The kernel
        gives the helper to tracing programs only, on a BTF-typed ``struct sk_buff *``."""
        ts = self._checked(e, 4, 4)
        if ts is not None:
            if not isinstance(e.args[0], ast.StrLit):
                self.error("skboutput() expects a string literal as argument 1 (the pcap "
                           "file's path)", e.args[0].span, [SIG["skboutput"]])
            elif not e.args[0].value:
                self.error("skboutput() expects a file path as argument 1, got an empty "
                           "string", e.args[0].span, [SIG["skboutput"]])
            t = ts[1]
            if not (isinstance(t, PtrT) and isinstance(t.target, StructT)
                    and (t.target.kind, t.target.name) == ("struct", "sk_buff")):
                self.error(f"skboutput() expects a 'struct sk_buff *' as argument 2, got '{t}'",
                           e.args[1].span, [SIG["skboutput"]])
            self._want_int(e, 2, ts[2])
            if self._want_int(e, 3, ts[3]) and not isinstance(e.args[3], ast.IntLit):
                self.error("skboutput() expects an integer literal as argument 4 (the offset)",
                           e.args[3].span, [SIG["skboutput"]])
            elif isinstance(e.args[3], ast.IntLit) and not 0 <= e.args[3].value < 1 << 32:
                self.error("skboutput(): the offset must be between 0 and 4294967295",
                           e.args[3].span, [SIG["skboutput"]])
        ctx = self.ctx
        if ctx is not None and not tracing_program(ctx):
            self.error(f'skboutput can not be used with "{ctx.provider}" probes', e.span,
                       ["the kernel offers bpf_skb_output to tracing programs only: "
                        "fentry/fexit, rawtracepoint reading args (tp_btf)"])
        return UINT32


def tracing_program(ctx) -> bool:
    """Whether a probe's program is a BTF tracing program (fentry/fexit, tp_btf: a
    rawtracepoint that reads its typed args, iter), which some helpers require."""
    return ctx.provider in ("fentry", "fexit", "iter") or (
        ctx.provider == "rawtracepoint" and ctx.args is not None and bool(ctx.args.fields))
