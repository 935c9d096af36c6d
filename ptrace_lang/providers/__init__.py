"""Probe providers, one module each, listed in ``MODULES`` under every name they answer to.

A provider turns an attach point as written into concrete ``Target``s (compile time), says
which program type runs there and which builtins the probe context offers, and attaches a
loaded program to a target (run time; kernel modules are imported only inside ``attach``).
A provider's module is imported the first time one of its names is asked for (``get``), so a
run that attaches tracepoints imports the tracepoint provider and no other.
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

from ptrace_lang.errors import CompileError, NotSupportedYet

TYPE_CHECKING = False     # (importing typing costs ~3 ms of start-up)
if TYPE_CHECKING:
    from ptrace_lang.frontend import ast


@dataclass
class Target:
    provider: str            # canonical provider name
    probe_name: str          # the name bpftrace prints for ``probe``
    target: str              # what the attacher needs (provider-specific)
    share_key: object = None # targets of one block with equal keys can share one program
    args: object = None      # sema.types.ArgsT for tracepoints
    # BTF-bound programs (fentry, fexit, tp_btf, iter): provider data for ``program_attrs``
    # and ``lowering_options`` (the BTF id, module, ctx layout)
    btf: object = None


@dataclass
class Options:
    """Compile-time knowledge a provider may need."""

    positional: list[str] = field(default_factory=list)
    missing_probes: str = "error"
    deps: list[str] = field(default_factory=list)   # files read while expanding (the compile cache checks them)
    warnings: list = field(default_factory=list)    # Diagnostics (missing_probes = "warn")
    host: object = None     # target.Host: tracepoint formats and other lookups in the machine


class Provider:
    name = ""
    aliases: tuple[str, ...] = ()
    prog_type_name = ""          # key into kernel.sys BPF_PROG_TYPE_*
    builtins: frozenset[str] = frozenset()   # context builtins beyond the common ones
    # the program's context is, or starts with, the interrupted task's struct pt_regs (kprobe-type
    # programs, and perf events: bpf_perf_event_data begins with it): reg() and usermode read it
    pt_regs_context = False
    # the probed code runs in a process's address space (uprobe, usdt): pointers from the
    # context are user pointers, uaddr() resolves in the probed binary
    user_space = False
    runs_by_test_run = False     # begin/end
    # the kernel runs the programs on one of its events newest first (uprobes): attached in
    # reverse so that blocks run in declaration order (driver._attach_order)
    runs_last_attached_first = False
    # builtins whose code depends on the target (USDT argN): a block reading one is compiled
    # once per distinct ``Target.share_key``, as a block reading ``args`` is
    site_builtins: frozenset[str] = frozenset()
    # a program is bound to one attach target (BTF-bound programs): the targets of a group
    # share one compiled code, loaded once per target (``probe``/``func`` from the cookie)
    program_per_target = False

    def program_attrs(self, target: Target) -> dict:
        """Load attributes of the program for ``target``: any of ``prog_type_name``,
        ``expected_attach_type``, ``attach_btf_id``, ``attach_btf_module``."""
        return {}

    def lowering_options(self, target: Target) -> dict:
        """Keyword arguments for ``codegen.lower.Lowering`` (``arg_offsets``, ``retval_offset``)
        that depend on the target (a group's first target stands for the group)."""
        return {}

    def expand(self, ap: ast.AttachPoint, opts: Options) -> list[Target]:
        raise NotImplementedError

    def attach(self, target: Target, prog_fd: int, cookie: int) -> list:
        """Attach and return objects with ``close()`` that detach it."""
        raise NotImplementedError

    def warm_up(self) -> None:
        """Import what ``attach`` will need (called while the kernel makes the ring buffer)."""

    # what ``ptrace -l`` lists of it: "kernel" (also for a wildcard type: ``-l '*'``), "user"
    # (for a wildcard type only with a binary or -p), "named" (only when the type is named), ""
    # (nothing: begin, end, self, watchpoint); ``lists_as``: the type whose listing it shares
    listed = ""
    lists_as = ""
    # the kernel feature ``ptrace --info`` checks for it (info.py's FEATURE_CHECKS): "tracefs",
    # "raw_tracepoint", "kprobe_pmu", "uprobe_pmu", "tracing", "software", "hardware",
    # "breakpoint", "test_run"; "" to leave it out
    kernel_feature = ""
    # when its programs run: "event" (attached, on the kernel's events), "start" and "end"
    # (begin/end: run once by the session with BPF_PROG_TEST_RUN), "signal" (self: run when
    # ptrace receives the signal), "once" (iter: read once after attaching, no event loop),
    # "bench" (bench: run many times by --mode bench, modes.run_bench)
    runs = "event"
    # the session counts its timer's ticks against its program's runs (missed ticks, reported)
    periodic = False
    # what the REPL offers after "name:" (completion): "tracepoints", "raw_tracepoints",
    # "kernel_functions", or a fixed tuple of words; () for nothing
    completes: object = ()
    # written without a colon and a target (begin, end)
    bare = False


PROVIDERS: dict[str, Provider] = {}     # filled by ``register`` as modules are imported

# every provider name and alias (lower case) -> the module of ptrace_lang.providers defining it
MODULES = {
    "begin": "begin_end", "end": "begin_end",
    "tracepoint": "tracepoint", "t": "tracepoint",
    "rawtracepoint": "rawtracepoint", "rt": "rawtracepoint",
    "interval": "interval", "i": "interval", "profile": "interval", "p": "interval",
    "software": "perf_events", "s": "perf_events", "hardware": "perf_events", "h": "perf_events",
    "uprobe": "uprobe", "u": "uprobe", "uretprobe": "uprobe", "ur": "uprobe",
    "usdt": "usdt", "U": "usdt",      # (case matters for the one-letter aliases: u uprobe, U usdt)
    "kprobe": "kprobe", "k": "kprobe", "kretprobe": "kprobe", "kr": "kprobe",
    "watchpoint": "watchpoint", "w": "watchpoint",
    "self": "self_signal",
    "fentry": "fentry", "f": "fentry", "kfunc": "fentry",
    "fexit": "fentry", "fr": "fentry", "kretfunc": "fentry",
    "iter": "iter", "it": "iter",
    "bench": "bench",
}

# providers the dialect has but a later piece of work brings
_LATER = {"asyncwatchpoint"}


def register(provider: Provider) -> Provider:
    for n in (provider.name, *provider.aliases):
        PROVIDERS[n] = provider
    return provider


def get(name: str) -> Provider | None:
    """The provider answering to ``name`` (any case), or None."""
    key = name if name in MODULES else name.lower()
    p = PROVIDERS.get(key)
    if p is None and key in MODULES:
        # (importlib itself would cost a millisecond at start-up)
        __import__(f"ptrace_lang.providers.{MODULES[key]}")
        p = PROVIDERS.get(key)
    return p


def runs(name: str) -> str:
    """``Provider.runs`` of the provider named ``name`` ("event" when there is none)."""
    p = get(name)
    return p.runs if p is not None else "event"


def all_providers() -> list[Provider]:
    """Every provider, each once, in ``MODULES`` order (their modules imported)."""
    out: list[Provider] = []
    for name in MODULES:
        p = get(name)
        if p is not None and p not in out:
            out.append(p)
    return out


def lookup(ap: ast.AttachPoint) -> Provider:
    p = get(ap.provider)
    if p is not None:
        return p
    if ap.provider.lower() in {x.lower() for x in _LATER}:
        raise NotSupportedYet(f"probe type '{ap.provider}'", ap.span)
    raise CompileError(f"Invalid probe type: {ap.provider}", ap.span)


def missing(opts: Options, message: str, span, hints: list[str] | None = None) -> list:
    """An attach point that matches nothing: a located error, or with ``missing_probes = "warn"``
    a located warning (printed before anything attaches) and no targets."""
    if opts.missing_probes == "warn":
        from ptrace_lang.errors import Diagnostic

        from ptrace_lang.messages import say      # bpftrace's "... Skipping."
        opts.warnings.append(Diagnostic(say("missing_skipped", message=message.rstrip(".")), span,
                                        severity="WARNING"))
        return []
    raise CompileError(message, span, hints=hints)


def module_and_function(provider, ap, opts: Options, form: str) -> tuple[str | None, str]:
    """``provider:[module:]what`` (kprobe, fentry...): the module (None when absent) and the
    rest, positional parameters substituted; a located error showing ``form`` otherwise."""
    parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
    if len(parts) == 1:
        module, what = None, parts[0]
    elif len(parts) == 2:
        module, what = parts
    else:
        module, what = None, ""
    if not what or module == "":
        raise CompileError(f"{provider.name} probe must be written {form}", ap.span)
    return module, what


def substitute_positional(text: str, opts: Options, span) -> str:
    """Replace ``$N`` in an attach point component by the N-th positional parameter."""
    if "$" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        if text[i] == "$" and i + 1 < len(text) and text[i + 1].isdigit():
            j = i + 1
            while j < len(text) and text[j].isdigit():
                j += 1
            n = int(text[i + 1:j])
            if n < 1 or n > len(opts.positional):
                raise CompileError(f"Positional parameter ${n} is not set", span)
            out.append(opts.positional[n - 1])
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)

