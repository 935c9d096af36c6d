"""The language's builtin variables, functions and aggregations: one table, read by the parser
(which bare words are builtins), sema (what is a builtin, signatures in hints, where a name is
allowed), the macros' stdlib auto-import (names the compiler answers itself) and the REPL
(completion and highlighting).

Each name has its ``Builtin`` entry:
  kind       "variable" (written bare; every variable may also be called without arguments:
             ``pid()``), "function" (called only), "both" (a variable that also takes
             arguments or has a function form of its own: ``nsecs(boot)``, ``kstack(perf)``),
             or "aggregation" (assigned to a map: ``@x = count()``)
  sig        the signature shown in hints
  probes     the probe types it is restricted to (empty: any the provider allows)
  needs      a ``ProbeContext`` fact it needs (``pt_regs``, ``user_space``), "builtins" for
             the names a provider lists in its ``builtins`` (args, argN, retval, func, ctx:
             allowed where the provider lists them), or "" for none
  formatter  for a value user space turns into text: its ``runtime.uvalues.FORMATTERS`` name
             (``sema.types.UserT.kind``)
  lower      how codegen lowers it when no ``Lowering`` method is named after it
             (``call_/into_/stmt_/builtin_<name>``): the ``Lowering`` method that handles it
  later      the dialect has it, a later piece of work brings it ("not supported yet")

``argN`` and ``sargN`` are families: ``arg0``, ``arg1``... (``is_builtin`` answers for them).
The parser imports this module: it imports nothing but ``records``.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass


@dataclass(frozen=True)
class Builtin:
    name: str
    kind: str
    sig: str = ""
    probes: tuple = ()
    needs: str = ""
    formatter: str = ""
    lower: str = ""
    later: bool = False


_PT_REGS_NAMES = ("r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di orig_ax ip cs flags sp "
                  "ss")

_TABLE = (
    # ---------------------------------------------------------------- variables of every probe
    Builtin("pid", "variable", "pid: the process id (tgid)", lower="builtin"),
    Builtin("tid", "variable", "tid: the thread id", lower="builtin"),
    Builtin("uid", "variable", "uid: the user id", lower="builtin"),
    Builtin("gid", "variable", "gid: the group id", lower="builtin"),
    Builtin("nsecs", "both", "nsecs([monotonic|boot|tai|sw_tai])", lower="builtin"),
    Builtin("elapsed", "variable", "elapsed: nanoseconds since the program started",
            lower="builtin"),
    Builtin("cpu", "variable", "cpu: the processor's id", lower="builtin"),
    Builtin("comm", "both", "comm / comm(int pid): the command name of the task, or of process "
            "pid (read from /proc when printed)", lower="string_into", formatter="comm_of_pid"),
    Builtin("probe", "variable", "probe: the probe's full name", lower="builtin"),
    Builtin("probetype", "variable", "probetype: the probe's type (tracepoint, uprobe, interval...)"),
    Builtin("rand", "variable", "rand: a pseudo-random 32-bit number", lower="builtin"),
    Builtin("cgroup", "variable", "cgroup: the cgroup v2 id of the task", lower="builtin"),
    Builtin("cpid", "variable", "cpid: the pid of the -c command", lower="builtin"),
    Builtin("curtask", "both", "curtask()", lower="c_builtin"),
    Builtin("ppid", "both", "ppid([struct task_struct *task])", lower="c_builtin"),
    Builtin("username", "variable", "username: the name of the task's user",
            formatter="username"),
    Builtin("jiffies", "variable", "jiffies: the kernel's tick counter"),
    Builtin("ncpus", "variable", "ncpus: the number of possible processors"),
    Builtin("numaid", "variable", "numaid: the NUMA node of the processor"),
    Builtin("usermode", "variable", "usermode: 1 when the probe interrupted user space",
            needs="pt_regs"),
    Builtin("kstack", "both",
            "kstack([mode][, limit]): mode is bpftrace, perf or raw; limit 1 to 1024",
            formatter="kstack"),
    Builtin("ustack", "both",
            "ustack([mode][, limit]): mode is bpftrace, perf or raw; limit 1 to 1024",
            formatter="ustack"),
    # ---------------------------------------------------------------- variables of some probes
    Builtin("args", "variable", "args: the probe's arguments (args.name)", needs="builtins",
            lower="args_field"),
    Builtin("ctx", "variable", "ctx: the iterator's context", needs="builtins",
            lower="args_field"),
    Builtin("argN", "variable", "argN: the probe's Nth argument", needs="builtins",
            lower="builtin"),
    Builtin("sargN", "variable", "sargN: the Nth argument on the stack", needs="builtins",
            later=True),
    Builtin("retval", "variable", "retval: the function's return value", needs="builtins",
            lower="builtin"),
    Builtin("func", "variable", "func: the probed function's name", needs="builtins",
            lower="builtin"),
    # ---------------------------------------------------------------- aggregations
    Builtin("count", "aggregation", "count()", lower="aggregate"),
    Builtin("sum", "aggregation", "sum(int)", lower="aggregate"),
    Builtin("avg", "aggregation", "avg(int)", lower="aggregate"),
    Builtin("min", "aggregation", "min(int)", lower="aggregate"),
    Builtin("max", "aggregation", "max(int)", lower="aggregate"),
    Builtin("stats", "aggregation", "stats(int)", lower="aggregate"),
    Builtin("hist", "aggregation", "hist(int[, int k])", lower="aggregate"),
    Builtin("lhist", "aggregation", "lhist(int value, int min, int max, int step)",
            lower="aggregate"),
    Builtin("tseries", "aggregation",
            'tseries(int value, "1s" | int interval_ns, int num_intervals[, "avg"|"max"|"min"|"sum"])',
            lower="aggregate"),
    # ---------------------------------------------------------------- output and control
    Builtin("printf", "function", "printf(const char *fmt, ...)"),
    Builtin("print", "function", "print(@map[, top[, div]]) or print(value)"),
    Builtin("cat", "function", "cat(const char *filename, ...)"),
    Builtin("system", "function", "system(const char *fmt, ...)"),
    Builtin("join", "function", "join(char *arr[][, char *delim])"),
    Builtin("time", "function", "time([const char *fmt])"),
    Builtin("exit", "function", "exit([int code])"),
    Builtin("errorf", "function", "errorf(const char *fmt, ...)"),
    Builtin("warnf", "function", "warnf(const char *fmt, ...)"),
    Builtin("debugf", "function", "debugf(const char *fmt, ...)"),
    Builtin("signal", "function", 'signal(int sig | "SIGNAME")'),
    Builtin("override", "function", "override(int rc)", probes=("kprobe",)),
    # ---------------------------------------------------------------- maps
    Builtin("delete", "function", "delete(@map, key) or delete(@map[key])"),
    Builtin("clear", "function", "clear(@map)"),
    Builtin("zero", "function", "zero(@map)"),
    Builtin("has_key", "function", "has_key(@map, key)"),
    Builtin("len", "function", "len(@map)"),
    # ---------------------------------------------------------------- strings and values
    Builtin("str", "function", "str(char *s[, int length])", lower="string_into"),
    Builtin("buf", "function", "buf(void *data, [int64 length])"),
    Builtin("strncmp", "function", "strncmp(string s1, string s2, int n)"),
    Builtin("strcontains", "function", "strcontains(string haystack, string needle)"),
    Builtin("strlen", "function", "strlen(string s)"),
    Builtin("strstr", "function", "strstr(string haystack, string needle)"),
    Builtin("strftime", "function", "strftime(const char *fmt, int nsecs)",
            formatter="strftime"),
    Builtin("strerror", "function", "strerror(int errno)", formatter="strerror"),
    Builtin("syscall_name", "function", "syscall_name(int id)", formatter="syscall_name"),
    Builtin("signal_name", "function", "signal_name(int sig)"),
    Builtin("ntop", "function", "ntop([int af, ]int|uint8[4]|uint8[16] addr)",
            formatter="inet"),
    Builtin("pton", "function", 'pton(const char *addr) with a literal "1.2.3.4" or "::1"',
            formatter="bytes"),
    Builtin("macaddr", "function", "macaddr(uint8[6] mac | pointer)", formatter="macaddr"),
    Builtin("path", "function", "path(struct path *path[, int size])",
            probes=("fentry", "fexit", "iter")),
    Builtin("bswap", "function", "bswap(int n)"),
    Builtin("getopt", "function", 'getopt(const char *name[, int|string|bool default]): the '
            'program option --name[=value] given after "--"'),
    Builtin("cgroupid", "function", "cgroupid(const char *path) with a literal path"),
    Builtin("cgroup_path", "function", "cgroup_path(int cgroupid[, const char *filter])",
            formatter="cgroup_path"),
    # ---------------------------------------------------------------- symbols and addresses
    Builtin("ksym", "function", "ksym(uint64 addr)", formatter="ksym"),
    Builtin("usym", "function", "usym(uint64 addr)", formatter="usym"),
    Builtin("kptr", "function", "kptr(pointer or integer)"),
    Builtin("uptr", "function", "uptr(pointer or integer)"),
    Builtin("kaddr", "function", "kaddr(const char *name)"),
    Builtin("uaddr", "function", "uaddr(const char *name)", needs="user_space"),
    Builtin("reg", "function", "reg(const char *name): " + _PT_REGS_NAMES, needs="pt_regs"),
    Builtin("percpu_kaddr", "function", "percpu_kaddr(const char *name[, int cpu]): the "
            "address of a per-CPU kernel variable on this CPU (or on cpu)"),
    Builtin("socket_cookie", "function", "socket_cookie(struct sock *sk): the socket's cookie "
            "(bpf_get_socket_cookie, on a BTF-typed socket)",
            probes=("fentry", "fexit", "rawtracepoint", "iter")),
    # ---------------------------------------------------------------- later
    Builtin("skboutput", "function", "skboutput(const string path, struct sk_buff *skb, "
            "uint64 cap_len, const uint32 offset): cap_len bytes of the packet into the pcap "
            "file path (raw IP), the first offset bytes left out; 0 or the helper's error",
            probes=("fentry", "fexit", "rawtracepoint")),
    Builtin("unwatch", "function", later=True),
)

BUILTINS: dict[str, Builtin] = {b.name: b for b in _TABLE}

# the names a script writes bare (the argN/sargN families apart): the parser's builtin words
VARIABLES = frozenset(b.name for b in _TABLE if b.kind in ("variable", "both")
                      and not b.name.endswith("N"))
AGGREGATIONS = frozenset(b.name for b in _TABLE if b.kind == "aggregation")
# the names called with arguments (aggregations included), for completion and highlighting
FUNCTIONS = frozenset(b.name for b in _TABLE if b.kind in ("function", "both", "aggregation")
                      and not b.later)


def family(name: str) -> str | None:
    """``argN`` for ``arg3``, ``sargN`` for ``sarg0``; None for any other name."""
    for stem in ("arg", "sarg"):
        if name.startswith(stem) and name[len(stem):].isdigit():
            return stem + "N"
    return None


BUILTIN_PREFIX = "__builtin_"


def canonical(name: str) -> str:
    """``__builtin_pid`` -> ``pid``: every builtin answers to its ``__builtin_`` name too
    (bpftrace 0.26's standard library spells them so); other names are unchanged."""
    if name.startswith(BUILTIN_PREFIX):
        rest = name[len(BUILTIN_PREFIX):]
        if rest in BUILTINS or family(rest) is not None:
            return rest
    return name


def lookup(name: str) -> Builtin | None:
    """The entry of ``name`` (``arg3`` finds ``argN``, ``__builtin_pid`` finds ``pid``), or None."""
    name = canonical(name)
    b = BUILTINS.get(name)
    if b is None:
        f = family(name)
        return BUILTINS[f] if f is not None else None
    return b


def is_builtin(name: str) -> bool:
    """Whether the compiler itself answers to ``name`` (a macro or stdlib name it is not)."""
    return lookup(name) is not None


def is_variable(name: str) -> bool:
    """Whether ``name`` written bare is a builtin variable (``arg3`` included)."""
    name = canonical(name)
    return name in VARIABLES or family(name) is not None


def signature(name: str) -> str:
    return BUILTINS[name].sig
