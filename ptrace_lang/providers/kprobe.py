"""kprobe: / kretprobe: — kernel functions, through the kprobe perf PMU.

``kprobe:fn``, ``kprobe:mod:fn`` (a function of a kernel module), ``kprobe:fn+off`` (an
instruction offset into the function, decimal or hex; not for kretprobe) and wildcards
(``kprobe:vfs_*``, ``kprobe:ext4:*``) matched against the traceable functions: tracefs'
``available_filter_functions`` when it can be read, BTF's function names otherwise (the lookup
is ``listing``'s, shared with ``ptrace -l``). A named function that is neither traceable nor a
text symbol of ``/proc/kallsyms`` is a located compile error (``missing_probes = "warn"``:
a warning, and the attach point is skipped).

Every attachment is a perf event of the kprobe PMU (fd-based: nothing outlives the tracer);
all functions of one block share one program, ``probe`` and ``func`` come from the attach
cookie. ``argN`` are the x86-64 argument registers in ``pt_regs`` (as for uprobes),
``retval`` is rax in a kretprobe.

Where the kernel has kprobe_multi (fprobe, 5.18+), a block over several functions (a
wildcard, a list) attaches with ONE bpf link (BPF_TRACE_KPROBE_MULTI by symbol names, a cookie
per function): attaching and detaching hundreds of functions takes one system call each
instead of a perf event per function. The program is then loaded for that link
(``group_attach_type``); if the kernel refuses the link, the session loads it again and
attaches function by function. ``PTRACE_NO_KPROBE_MULTI=1`` forces the per-function path.
"""
from __future__ import annotations

import os

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Target, missing, module_and_function, register
from ptrace_lang.providers.uprobe import PtRegsProvider

KPROBE_PMU = "/sys/bus/event_source/devices/kprobe"
NO_KPROBES = "kprobe: this kernel has no kprobe support (no kprobe PMU)"
BLACKLIST = "/sys/kernel/debug/kprobes/blacklist"


def _has_magic(s: str) -> bool:
    return "*" in s or "?" in s or "[" in s


def parse_offset(text: str) -> int:
    """``16`` or ``0x10`` -> 16; ValueError otherwise."""
    t = text.strip()
    if not t or t.startswith(("-", "+")):
        raise ValueError(text)
    return int(t, 16) if t.lower().startswith("0x") else int(t, 10)


class _Functions:
    """The kernel's traceable functions (module -> sorted names) and, on demand, its text
    symbols and kprobe blacklist. One instance per compile (``Kprobe.functions``)."""

    def __init__(self) -> None:
        from ptrace_lang import listing

        self._lister = listing._Lister(False)
        self._kallsyms: dict | None = None
        self._blacklist: set | None = None

    def by_module(self) -> dict:
        return self._lister.traceable()

    def names(self) -> list[str]:
        return self._lister.traceable_names()

    def traceable(self, fn: str, module: str | None) -> bool:
        return fn in self._lister.traceable_set(module)

    def _symbols(self) -> dict:
        """Text symbol name -> [module ("vmlinux" for the core kernel), one per symbol of that
        name], without the init functions (freed after boot); {} when unreadable."""
        if self._kallsyms is None:
            syms: dict = {}
            init: list = []
            lo = hi = 0
            try:
                with open("/proc/kallsyms", "rb") as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) < 3 or parts[1] not in (b"t", b"T"):
                            continue
                        name = parts[2].decode()
                        if name == "_sinittext":
                            lo = int(parts[0], 16)
                        elif name == "_einittext":
                            hi = int(parts[0], 16)
                        mod = parts[3].strip(b"[]").decode() if len(parts) > 3 else "vmlinux"
                        syms.setdefault(name, []).append(mod)
                        if mod == "vmlinux":
                            init.append((parts[0], name))
            except OSError:
                syms = {}
            if lo and hi > lo:     # (addresses read as 0 where kptr_restrict hides them)
                for addr, name in init:
                    if lo <= int(addr, 16) < hi and syms.get(name) == ["vmlinux"]:
                        del syms[name]
            self._kallsyms = syms
        return self._kallsyms

    def in_kallsyms(self, fn: str, module: str | None) -> bool:
        """A text symbol of that name (in that module) exists; True when kallsyms cannot be
        read (the kernel then decides at attach time)."""
        syms = self._symbols()
        if not syms:
            return True
        mods = syms.get(fn)
        return bool(mods) and (module is None or module in mods)

    def attachable(self, fn: str, module: str | None) -> bool:
        """For wildcards: one text symbol of that name (the kernel refuses a kprobe on a name
        that several functions share), not an init function; when the traceable list is
        BTF's (tracefs unreadable), also a symbol that kallsyms has."""
        syms = self._symbols()
        if not syms:
            return True
        mods = syms.get(fn)
        if mods is None:
            return not self.from_btf
        return mods.count(module) == 1 if module is not None else len(mods) == 1

    @property
    def from_btf(self) -> bool:
        """True when the traceable functions are BTF's (available_filter_functions unreadable)."""
        self.by_module()
        return "aff" in self._lister._warned

    def blacklisted(self, fn: str) -> bool:
        """In the kprobe blacklist (debugfs; unknown -> False)."""
        if self._blacklist is None:
            names = set()
            try:
                with open(BLACKLIST) as f:
                    for line in f:
                        parts = line.split()
                        if len(parts) >= 2:
                            names.add(parts[1])
            except OSError:
                pass
            self._blacklist = names
        return fn in self._blacklist


_cache: list = [None, None]      # [_Functions, the providers.Options it was read for]


class Kprobe(PtRegsProvider):
    completes = "kernel_functions"
    listed = "kernel"
    kernel_feature = "kprobe_pmu"
    name = "kprobe"
    aliases = ("k",)

    def functions(self, opts) -> _Functions:
        """The function lists, read once per compile (``opts`` is the compile's) and shared
        by kprobe and kretprobe."""
        if _cache[0] is None or _cache[1] is not opts:
            _cache[:] = [_Functions(), opts]
        return _cache[0]

    def expand(self, ap, opts):
        form = f"{self.name}:[module:]function[+offset]" if not self.retprobe \
            else f"{self.name}:[module:]function"
        module, what = module_and_function(self, ap, opts, form)
        fn, plus, off_text = what.partition("+")
        offset = 0
        if plus:
            if self.retprobe:
                raise CompileError("kretprobe cannot take an offset: a return probe fires on the "
                                   "function's return", ap.span)
            if _has_magic(what) or (module is not None and _has_magic(module)):
                raise CompileError("an offset cannot be used with a wildcard", ap.span)
            try:
                offset = parse_offset(off_text)
            except ValueError:
                raise CompileError(f"Invalid offset '{off_text}' in {self.name} probe "
                                   "(decimal or 0x hex)", ap.span) from None
        if not fn:
            raise CompileError(f"{self.name} probe must be written {form}", ap.span)
        funcs = self.functions(opts)
        if _has_magic(fn) or (module is not None and _has_magic(module)):
            matches = self._wildcard(funcs, module, fn)
            if not matches:
                return self._missing(opts, ap, module, fn)
        else:
            if not funcs.traceable(fn, module):
                if not funcs.in_kallsyms(fn, module):
                    return self._missing(opts, ap, module, fn)
                if not funcs.from_btf and funcs.names():
                    # a function ftrace does not list: the kernel decides, bpftrace warns
                    from ptrace_lang.errors import Diagnostic
                    from ptrace_lang.messages import say

                    opts.warnings.append(Diagnostic(say("kprobe_not_traceable", func=fn),
                                                    ap.span, severity="WARNING"))
            matches = [(module, fn)]
        out = []
        for mod, f in matches:
            shown = f"{mod}:{f}" if mod is not None else f
            # the kernel resolves "mod:fn" in a module; the core kernel's functions by name
            sym = f if mod in (None, "vmlinux") else f"{mod}:{f}"
            if plus:
                shown += f"+{offset}"
            out.append(Target(self.name, f"{self.name}:{shown}", f"{sym}+{offset}",
                              share_key=self.name))
        return out

    @staticmethod
    def _wildcard(funcs: _Functions, module: str | None, pattern: str) -> list[tuple]:
        import fnmatch
        import re

        match = re.compile(fnmatch.translate(pattern)).match
        if module is None:
            names = [n for n in funcs.names() if match(n)]
            mods = [None] * len(names)
        else:
            mod_match = re.compile(fnmatch.translate(module)).match
            pairs = [(m, n) for m, fns in sorted(funcs.by_module().items()) if mod_match(m)
                     for n in fns if match(n)]
            mods = [m for m, _ in pairs]
            names = [n for _, n in pairs]
        # bpftrace skips .part. clones (not attachable); blacklisted functions refuse kprobes
        return [(m, n) for m, n in zip(mods, names)
                if ".part." not in n and not funcs.blacklisted(n) and funcs.attachable(n, m)]

    def _missing(self, opts, ap, module: str | None, fn: str) -> list:
        """bpftrace 0.26's "No matches for kprobe [MODULE:]FUNC." (a warning with
        missing_probes = "warn")."""
        from ptrace_lang.messages import say

        what = fn if module is None else f"{module}:{fn}"
        return missing(opts, say("no_matches", probetype=self.name, what=what), ap.span,
                       hints=["ptrace -l 'kprobe:PATTERN' lists the traceable functions"])

    def attach(self, target, prog_fd, cookie):
        import errno

        from ptrace_lang.kernel import links, perf

        sym, _, off = target.target.rpartition("+")
        try:
            fd = perf.kprobe_event(sym, int(off), retprobe=self.retprobe)
        except OSError as e:
            if not os.path.isdir(KPROBE_PMU):
                raise OSError(errno.ENOENT, NO_KPROBES) from None
            why = {
                errno.ENOENT: f"no function '{sym}' in the running kernel",
                errno.EILSEQ: f"offset {off} is not at an instruction boundary of '{sym}'",
                errno.EADDRNOTAVAIL: f"'{sym}' names several functions of the kernel",
                errno.EINVAL: f"'{sym}' cannot be probed (blacklisted, or not a function entry)",
            }.get(e.errno)
            if why is None:
                raise
            raise OSError(e.errno, f"{self.name}: {why}") from None
        return [links.attach_perf_fd(prog_fd, fd, cookie)]


    # ---- kprobe_multi: every target of a program in one link
    def group_attach_type(self, targets: list[str]) -> int:
        """BPF_TRACE_KPROBE_MULTI when these targets can share one kprobe_multi link (several
        functions of the core kernel, no offsets, a kernel that has it); 0 otherwise."""
        if len(targets) < 2 or os.environ.get("PTRACE_NO_KPROBE_MULTI", "") not in ("", "0"):
            return 0
        for t in targets:
            sym, _, off = t.rpartition("+")
            if off != "0" or ":" in sym:      # (module functions: by name from 6.4 only)
                return 0
        from ptrace_lang.kernel import links

        return links.BPF_TRACE_KPROBE_MULTI if kprobe_multi_supported() else 0

    def attach_group(self, targets: list[str], prog_fd: int, cookies: list[int]) -> list:
        from ptrace_lang.kernel import links

        syms = [t.rpartition("+")[0] for t in targets]
        return [links.kprobe_multi(prog_fd, syms, cookies, retprobe=self.retprobe,
                                   name=f"{self.name}:{len(syms)} functions")]


def kprobe_multi_supported() -> bool:
    """Does this kernel attach kprobe_multi links? (One over a function that does not exist
    fails with ESRCH/ENOENT where it does.)"""
    import errno

    from ptrace_lang.kernel import links

    return links.multi_link_supported(
        links.BPF_TRACE_KPROBE_MULTI,
        lambda fd: links.kprobe_multi(fd, ["ptrace_lang_no_such_function_"], [0]),
        (errno.ESRCH, errno.ENOENT))


class Kretprobe(Kprobe):
    listed, lists_as = "named", "kprobe"
    name = "kretprobe"
    aliases = ("kr",)
    builtins = frozenset({"retval", "func"})
    retprobe = True


register(Kprobe())
register(Kretprobe())
