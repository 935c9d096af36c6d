"""``ptrace -l [pattern]``: list what can be traced, as bpftrace's ``provider:target`` lines.

Sources, each read only when the pattern can match its provider:

    tracepoint     tracefs ``available_events`` (events/<subsys>/<event> when unreadable);
                   ``-v``: the event's format fields
    rawtracepoint  BTF: ``__probestub_<event>`` functions and ``btf_trace_<event>`` typedefs of
                   vmlinux and each module, listed ``rawtracepoint:<module>:<event>``;
                   ``-v``: the event's arguments
    kprobe         tracefs ``available_filter_functions`` (``fn`` or ``fn [mod]``), listed
                   ``kprobe:fn`` (``kprobe:mod:fn`` when the pattern names a module);
                   ``-v``: ``type argN`` from BTF (kretprobe: ``type retval``)
    fentry/fexit   BTF functions that are also traceable, ``fentry:<module>:fn``;
                   ``-v``: ``type name`` per parameter, then ``type retval``
    software/      the event names and aliases of providers/perf_events, ``software:faults:``
    hardware
    iter           task, task_file, task_vma where BTF has them
    uprobe         ``uprobe:/path:*``: the binary's function symbols (elfsyms)
    usdt           ``usdt:/path:*``: its ``.note.stapsdt`` probes, ``usdt:/path:provider:name``

Patterns follow bpftrace (0.26): a glob (``*``, ``?``, ``[...]``; ``*`` also crosses ``:``)
over the provider and the target line; a pattern without ``:`` is ``*:pattern`` (any kernel
provider; tracepoints then match on the event name); several patterns may be joined with ``,``.
Provider aliases (``t``, ``k``, ``f``, ``kfunc``...) are accepted; lines use canonical names.
When ``available_filter_functions`` cannot be read (kernel lockdown, no tracefs), kprobe and
fentry targets come from BTF's function list, with a warning.
"""
from __future__ import annotations

import os
import sys

__all__ = ["list_probes", "ListingError"]


class ListingError(Exception):
    """A pattern or a binary that cannot be listed: one ``ERROR:`` line, exit code 1."""


# what each probe type lists, and under which names, is the provider's to say (Provider.listed,
# Provider.lists_as; aliases through providers.get, case-sensitive where bpftrace's are: ``u``
# uprobe, ``U`` usdt)
_LATER_UNLISTED = ("asyncwatchpoint", "aw")     # known, nothing to list (bpftrace lists none)


def _types(listed: str | None = None) -> list[str]:
    """The probe types whose providers list something (``listed`` of that kind only)."""
    from ptrace_lang import providers

    return [p.name for p in providers.all_providers()
            if p.listed and (listed is None or p.listed == listed)]


def _lister_of(name: str) -> str:
    from ptrace_lang import providers

    p = providers.get(name)
    return (p.lists_as or p.name) if p is not None else name


# interval/profile: their units, listed when the provider is named (bpftrace 0.26)
_TIMER_UNITS = ("hz", "ms", "s", "us")
_ITERS = ("task", "task_file", "task_vma")
_ITER_PARAMS = {   # when BTF has no bpf_iter_<name> function to read them from
    "task": ["struct task_struct * task"],
    "task_file": ["struct task_struct * task", "u32 fd", "struct file * file"],
    "task_vma": ["struct task_struct * task", "struct vm_area_struct * vma"],
}


def list_probes(pattern: str | None, verbose: bool, out, err=None, pid: int | None = None) -> int:
    """Write the probes matching ``pattern`` (all kernel probes when None) to ``out`` in one
    write; warnings go to ``err`` (stderr). Returns the exit code: 0 (also when nothing
    matches), 1 after an ``ERROR:`` line for a bad pattern or an unreadable binary. With
    ``pid`` (-p), the uprobes and USDT probes of every object the process maps as well."""
    err = sys.stderr if err is None else err
    lister = _Lister(verbose, pid)
    try:
        lines = lister.run(pattern)
    except ListingError as e:
        for w in lister.warnings:
            err.write(f"WARNING: {w}\n")
        err.write(f"ERROR: {e}\n")
        return 1
    for w in lister.warnings:
        err.write(f"WARNING: {w}\n")
    if lines:
        out.write("\n".join(lines) + "\n")
        out.flush()        # a closed pipe raises here, inside the caller's handler
    return 0


# ---------------------------------------------------------------------------------------------
# patterns


def _has_magic(s: str) -> bool:
    return "*" in s or "?" in s or "[" in s


def _matcher(pattern: str):
    """A predicate on strings: fnmatch (case-sensitive, ``*`` crosses ``:``)."""
    if not _has_magic(pattern):
        return pattern.__eq__
    import fnmatch
    import re
    try:
        return re.compile(fnmatch.translate(pattern)).match
    except re.error as e:
        raise ListingError(f"invalid pattern '{pattern}': {e}") from None


def _filter(pattern: str, lines) -> list:
    """The lines matching, sorted as bpftrace sorts them (by bytes)."""
    if not _has_magic(pattern):
        return [pattern] if pattern in lines else []
    match = _matcher(pattern)
    return sorted(x for x in lines if match(x))


def _provider_types(type_pat: str, second: str | None, pid_given: bool = False) -> list[str]:
    if _has_magic(type_pat):
        match = _matcher(type_pat)
        types = [t for t in _types("kernel") if match(t)]
        # userspace providers only when a binary scopes the search (bpftrace does the same)
        if (second and not _has_magic(second) and os.path.isfile(second)) or pid_given:
            types += [t for t in _types("user") if match(t)]
        return sorted(types)
    from ptrace_lang import providers

    p = providers.get(type_pat)
    if p is not None:
        return [p.name] if p.listed else []
    if type_pat.lower() in _LATER_UNLISTED:
        return []
    raise ListingError(f"Invalid probe type: '{type_pat}' (probe types that can be listed: "
                       + ", ".join(_types()) + ")")


def parse_traceable(text: str) -> dict[str, list[str]]:
    """``available_filter_functions`` (``fn`` or ``fn [module]`` per line) -> module (``vmlinux``
    for the core kernel) -> sorted function names."""
    mods: dict = {}
    for line in text.splitlines():
        fn, _, mod = line.strip().partition(" [")
        if not fn or fn.startswith("__ftrace_invalid_address__"):   # ftrace's placeholders
            continue
        mods.setdefault(mod.rstrip("]") if mod else "vmlinux", set()).add(fn)
    return {m: sorted(fns) for m, fns in mods.items()}


# ---------------------------------------------------------------------------------------------
# the lister


class _Lister:
    def __init__(self, verbose: bool, pid: int | None = None) -> None:
        self.verbose = verbose
        self.pid = pid
        self.warnings: list[str] = []
        self._warned: set = set()
        self._events: list | None = None
        self._traceable: dict | None = None     # module -> sorted function names
        self._names: list | None = None
        self._sets: dict = {}
        self._btf: list | None = None
        self._type_names: dict = {}

    def warn(self, key: str, text: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            self.warnings.append(text)

    def run(self, pattern: str | None) -> list[str]:
        pattern = (pattern or "").strip()
        if pattern in ("", "*"):
            # -p PID alone: the uprobes and USDT probes of the process (bpftrace)
            pattern = "uprobe:*:*,usdt:*:*" if self.pid is not None and not pattern else "*:*"
        elif ":" not in pattern and "*" not in pattern and os.path.isfile(pattern):
            return self._program_probes(pattern)    # `-l script.bt`: the probes it attaches
        elif pattern.startswith(("struct ", "union ")):
            return self._struct(pattern)           # `-lv 'struct path'`: its members, from BTF
        if any(c in pattern for c in "\n\t\"' {};"):
            c = next(c for c in pattern if c in "\n\t\"' {};")
            raise ListingError(f"invalid character {c!r} in the search pattern '{pattern}'")
        lines: list[str] = []
        for one in pattern.split(","):
            one = one.strip()
            if not one:
                continue
            if ":" not in one:
                one = "*:" + one
            type_pat, rest = one.split(":", 1)
            second = rest.split(":", 1)[0] if ":" in rest else None
            explicit = not _has_magic(type_pat)
            for prov in _provider_types(type_pat, second, self.pid is not None):
                getattr(self, "_list_" + _lister_of(prov))(prov, rest, explicit, lines)
        return lines

    # -- tracepoint -----------------------------------------------------------------------------

    def _tracefs(self) -> str | None:
        from ptrace_lang.kernel import tracefs
        try:
            return tracefs.tracefs_root()
        except OSError as e:
            self.warn("tracefs", f"cannot list tracepoints: {e.strerror or e}")
            return None

    def events(self) -> list[str]:
        """Sorted ``subsys:event`` names of the tracepoints."""
        if self._events is None:
            root = self._tracefs()
            names: list[str] = []
            if root is not None:
                try:
                    with open(os.path.join(root, "available_events")) as f:
                        names = f.read().split()
                except OSError:
                    names = self._scan_events(os.path.join(root, "events"))
            self._events = sorted(set(names))
        return self._events

    @staticmethod
    def _scan_events(events: str) -> list[str]:
        out = []
        try:
            with os.scandir(events) as subs:
                for sub in subs:
                    # ftrace's own events (function, print...) cannot be attached to
                    if sub.name == "ftrace" or not sub.is_dir():
                        continue
                    with os.scandir(sub.path) as evs:
                        out.extend(f"{sub.name}:{e.name}" for e in evs if e.is_dir())
        except OSError:
            pass
        return out

    def _list_tracepoint(self, prov, rest, explicit, lines) -> None:
        pat = rest if ":" in rest else "*:" + rest
        for name in _filter(pat, self.events()):
            lines.append(f"tracepoint:{name}")
            if self.verbose:
                lines.extend(self._tp_fields(name))

    def _tp_fields(self, name: str) -> list[str]:
        """The format fields after the common ones, as the format file spells them."""
        from ptrace_lang.kernel import tracefs
        subsys, event = name.split(":", 1)
        try:
            path = os.path.join(tracefs.tracefs_root(), "events", subsys, event, "format")
            with open(path) as f:
                text = f.read()
        except OSError:
            return []
        out = []
        _, _, body = text.partition("\n\n")      # the common_* fields come before a blank line
        for line in body.splitlines():
            if line.startswith("\tfield:"):
                decl = line[len("\tfield:"):].split(";", 1)[0]
                out.append("    " + decl)
        return out

    # -- BTF ------------------------------------------------------------------------------------

    def btfs(self) -> list:
        """[_BtfIndex] for vmlinux then each module with BTF; [] without BTF."""
        if self._btf is None:
            self._btf = []
            from ptrace_lang import btf as btfmod
            try:
                vml = btfmod.BTF.vmlinux()
            except (OSError, btfmod.BTFError) as e:
                self.warn("btf", f"no kernel BTF ({btfmod.VMLINUX_PATH}: "
                                 f"{getattr(e, 'strerror', None) or e}): fentry, rawtracepoint "
                                 "and iter probes are not listed")
                return self._btf
            self._btf.append(_BtfIndex(vml, "vmlinux"))
            try:
                mods = sorted(n for n in os.listdir(os.path.dirname(btfmod.VMLINUX_PATH))
                              if n != "vmlinux")
            except OSError:
                mods = []
            for m in mods:
                try:
                    self._btf.append(_BtfIndex(btfmod.BTF.module(m), m))
                except (OSError, btfmod.BTFError):
                    continue
        return self._btf

    def type_name(self, btf, tid: int) -> str:
        key = (id(btf), tid)
        got = self._type_names.get(key)
        if got is None:
            got = self._type_names[key] = btf.type_name(tid)
        return got

    def _params(self, index, fid: int, skip_first=False, argn=False, retval=True) -> list[str]:
        btf = index.btf
        try:
            proto = btf.get(btf.get(fid).proto)
            params = proto.params[1:] if skip_first else proto.params
            out = []
            for i, (pname, ptype) in enumerate(params):
                if argn:
                    pname = f"arg{i}"
                out.append(f"    {self.type_name(btf, ptype)} {pname or f'arg{i}'}")
            if retval and proto.ret:
                out.append(f"    {self.type_name(btf, proto.ret)} retval")
            return out
        except Exception:  # noqa: BLE001 - odd BTF costs the argument lines, not the listing
            return []

    # -- traceable functions --------------------------------------------------------------------

    def traceable(self) -> dict:
        """module -> sorted names of the functions ftrace can trace ("vmlinux": the core
        kernel); BTF's functions when tracefs' list cannot be read."""
        if self._traceable is None:
            from ptrace_lang.kernel import tracefs
            path = "available_filter_functions"
            try:
                path = os.path.join(tracefs.tracefs_root(), path)
                with open(path) as f:
                    self._traceable = parse_traceable(f.read())
            except OSError as e:
                why = e.strerror or str(e)
                self.warn("aff", f"cannot read {path} ({why}): kprobe and fentry targets are "
                                 "BTF's functions, some of which may not be traceable")
                self._traceable = {ix.module: sorted(ix.funcs) for ix in self.btfs()}
        return self._traceable

    def traceable_names(self) -> list[str]:
        """Every traceable function name once, sorted (module-less kprobe lines)."""
        if self._names is None:
            self._names = sorted({fn for fns in self.traceable().values() for fn in fns})
        return self._names

    def traceable_set(self, module: str | None = None) -> set:
        key = module or ""
        got = self._sets.get(key)
        if got is None:
            t = self.traceable()
            got = set(t.get(module, ())) if module else set(self.traceable_names())
            self._sets[key] = got
        return got

    # -- kprobe / kretprobe ---------------------------------------------------------------------

    def _list_kprobe(self, prov, rest, explicit, lines) -> None:
        funcs = self.traceable()
        if explicit and not (os.path.isdir("/sys/bus/event_source/devices/kprobe")
                             or os.path.exists("/sys/kernel/tracing/kprobe_events")):
            self.warn("nokprobe", "this kernel has no kprobe support (no kprobe PMU): kprobe "
                                  "targets are listed but cannot be attached here")
        if ":" in rest:     # kprobe:mod:fn — the lines name their module
            # a line has one ':', so the pattern's module part alone decides the module
            match_mod = _matcher(rest.partition(":")[0])
            cands = [f"{m}:{fn}" for m in sorted(funcs) if match_mod(m) for fn in funcs[m]]
            matches = _filter(rest, cands)
        elif _has_magic(rest):
            matches = _filter(rest, self.traceable_names())
        else:
            matches = [rest] if rest in self.traceable_set() else []
        for m in matches:
            if ".part." in m:       # bpftrace skips these: they cannot be traced
                continue
            lines.append(f"{prov}:{m}")
            if self.verbose:
                lines.extend(self._kprobe_params(prov, m))

    def _kprobe_params(self, prov: str, match: str) -> list[str]:
        mod, _, fn = match.rpartition(":")
        for index in self.btfs():
            if mod and index.module != mod:
                continue
            fid = index.funcs.get(fn)
            if fid is None:
                continue
            if prov == "kretprobe":
                ret = self._params(index, fid, retval=True)
                ret = [x for x in ret if x.endswith(" retval")]
                return ret or ["    void"]
            return self._params(index, fid, argn=True, retval=False)
        return []

    # -- fentry / fexit -------------------------------------------------------------------------

    def _list_fentry(self, prov, rest, explicit, lines) -> None:
        indexes = self.btfs()
        if not indexes:
            return
        traceable = self.traceable()
        pat = rest if ":" in rest else "*:" + rest
        cands = []
        for index in indexes:
            if index.module not in traceable:
                continue
            okset = self.traceable_set(index.module)
            names = sorted(n for n in index.funcs if n in okset and ".part." not in n)
            cands.extend(f"{index.module}:{n}" for n in names)
        for m in _filter(pat, cands):
            lines.append(f"{prov}:{m}")
            if self.verbose:
                mod, _, fn = m.partition(":")
                for index in indexes:
                    if index.module == mod and fn in index.funcs:
                        lines.extend(self._params(index, index.funcs[fn], retval=True))
                        break

    # -- rawtracepoint --------------------------------------------------------------------------

    def _list_rawtracepoint(self, prov, rest, explicit, lines) -> None:
        indexes = self.btfs()
        if not indexes:       # no BTF: the tracefs events that are kernel tracepoints
            evs = sorted({e.split(":", 1)[1] for e in self.events()
                          if e.split(":", 1)[0] not in ("syscalls", "ftrace")})
            for m in _filter(rest.rsplit(":", 1)[-1], evs):
                lines.append(f"rawtracepoint:{m}")
            return
        pat = rest if ":" in rest else "*:" + rest
        cands = []
        for index in indexes:
            cands.extend(f"{index.module}:{e}" for e in sorted(index.rawtps))
        for m in _filter(pat, cands):
            lines.append(f"rawtracepoint:{m}")
            if self.verbose:
                mod, _, ev = m.partition(":")
                for index in indexes:
                    if index.module == mod:
                        lines.extend(self._rawtp_params(index, ev))
                        break

    def _rawtp_params(self, index, event: str) -> list[str]:
        fid = index.rawtps.get(event)
        if fid is not None:        # __probestub_<event>(void *__data, named args...)
            return self._params(index, fid, skip_first=True, retval=False)
        btf = index.btf
        try:                       # btf_trace_<event>: typedef of a pointer to a prototype
            tid = btf.find("btf_trace_" + event, "typedef")
            proto = btf.get(btf.resolve(btf.get(btf.resolve(tid)).target))
            return [f"    {self.type_name(btf, t)} arg{i}"
                    for i, (_, t) in enumerate(proto.params[1:])]
        except Exception:  # noqa: BLE001
            return []

    # -- software / hardware / iter -------------------------------------------------------------

    def _list_software(self, prov, rest, explicit, lines) -> None:
        from ptrace_lang.providers import perf_events
        events = perf_events.SOFTWARE if prov == "software" else perf_events.HARDWARE
        pat = rest.split(":", 1)[0]          # "software:faults:100": the count is not listed
        for name in sorted(_filter(pat, events), key=lambda n: n + ":"):
            lines.append(f"{prov}:{name}:")

    _list_hardware = _list_software

    def _list_iter(self, prov, rest, explicit, lines) -> None:
        indexes = self.btfs()
        if not indexes:
            return
        vml = indexes[0]
        have = [n for n in _ITERS if vml.has_string("bpf_iter__" + n)]
        for name in _filter(rest, have):
            lines.append(f"iter:{name}")
            if self.verbose:
                fid = vml.funcs.get("bpf_iter_" + name)
                params = self._params(vml, fid, skip_first=True, retval=False) if fid else []
                lines.extend(params or ["    " + p for p in _ITER_PARAMS[name]])

    def _list_interval(self, prov, rest, explicit, lines) -> None:
        if explicit:       # named only: `-l` alone lists what the kernel has
            pat = rest.split(":", 1)[0]
            lines.extend(f"{prov}:{u}:" for u in _filter(pat, _TIMER_UNITS))

    _list_profile = _list_interval

    def _struct(self, spelling: str) -> list[str]:
        """A kernel struct or union as bpftrace prints it: ``struct path {``, one member a
        line (``struct dentry * dentry;``), ``};``."""
        from ptrace_lang.sema import btftypes

        kind, _, name = spelling.partition(" ")
        t = btftypes.struct_type(name.strip(), kind)
        if t is None:
            raise ListingError(f"{kind} {name.strip()} not found in the kernel's BTF")
        lines = [f"{kind} {name.strip()} {{"]
        for member in btftypes.member_names(t):
            f = btftypes.field(t, member)
            typ = str(f.type) if f is not None else "?"
            dims = ""
            if typ.endswith("]") and "[" in typ:          # char[16] comm -> char comm[16]
                typ, dims = typ[:typ.index("[")], typ[typ.index("["):]
            stars = len(typ) - len(typ.rstrip("*"))        # struct dentry * -> *dentry
            typ = typ.rstrip("*").rstrip()
            lines.append(f"\t{typ} {'*' * stars}{member}{dims};")
        lines += ["};", ""]         # (bpftrace leaves a blank line after it)
        return lines

    def _program_probes(self, path: str) -> list[str]:
        """The probes a program file would attach (its attach points expanded), in order."""
        from ptrace_lang.driver import Options, compile_script
        from ptrace_lang.errors import SOURCES, PtraceError

        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
        except OSError as e:
            raise ListingError(f"failed to open file '{path}': {e.strerror}") from None
        try:
            spec = compile_script(text, path, Options(pid=self.pid)).spec
        except PtraceError as e:
            raise ListingError(e.render(SOURCES).removeprefix("ERROR: ")) from None
        out: list[str] = []
        for a in spec.attachments:
            if a.probe_name not in out:
                out.append(a.probe_name)
        return out

    # -- uprobe / usdt --------------------------------------------------------------------------

    def _binaries(self, prov: str, target: str) -> list[tuple[str, str]]:
        """(shown, path): the binary as written (``./bash``), a library name as the file found;
        with -p, ``*`` or nothing is every object of the process."""
        from ptrace_lang import elfsyms, libpath
        if not target or target == "*":
            if self.pid is not None:
                try:
                    return [(p, p) for p in libpath.mapped_objects(self.pid)]
                except OSError as e:
                    raise ListingError(f"cannot read /proc/{self.pid}/maps: "
                                       f"{e.strerror or e}") from None
            raise ListingError(f"listing {prov} probes needs a binary: {prov}:/path/to/binary:*")
        if _has_magic(target):
            import glob
            paths = sorted(p for p in glob.glob(target) if os.path.isfile(p))
            return [(p if "/" in p else os.path.abspath(p), os.path.abspath(p))
                    for p in paths if libpath.is_elf(p)]
        try:
            path = libpath.resolve_binary(target, self.pid)
            elfsyms.elf_info(path)
        except LookupError as e:
            raise ListingError(f"{prov}: {e}") from None
        if os.path.isdir(path):
            raise ListingError(f"{prov}: '{target}' is a directory, not a binary")
        return [(target if "/" in target else path, path)]

    def _list_uprobe(self, prov, rest, explicit, lines) -> None:
        from ptrace_lang import elfsyms
        target, _, fn_pat = rest.partition(":")
        cpp = False
        if fn_pat.startswith("cpp:"):
            cpp, fn_pat = True, fn_pat[4:]
        fn_pat = fn_pat or "*"
        found: list[str] = []
        for shown, path in self._binaries(prov, target):
            try:
                syms = elfsyms.symbols(path)
            except (LookupError, OSError) as e:
                raise ListingError(f"{prov}: cannot read symbols of {path}: {e}") from None
            names = sorted({s.name for s in syms if s.type in ("func", "ifunc")
                            and ".part." not in s.name})
            if cpp:
                match = _matcher(fn_pat)
                with_params = "(" in fn_pat
                for n in names:
                    if not n.startswith("_Z"):
                        continue
                    d = elfsyms.demangle(n)
                    key = d if with_params else d.split("(", 1)[0]
                    if match(key):
                        found.append(f'{prov}:{shown}:cpp:"{d}"')
            else:
                found.extend(f"{prov}:{shown}:{n}" for n in _filter(fn_pat, names))
        lines.extend(sorted(found))

    def _list_usdt(self, prov, rest, explicit, lines) -> None:
        from ptrace_lang import elfsyms
        target, _, what = rest.partition(":")
        parts = what.split(":") if what else ["*"]
        if len(parts) == 1:
            prov_pat, name_pat = "*", parts[0]
        else:
            prov_pat, name_pat = parts[0], ":".join(parts[1:])
        match_prov, match_name = _matcher(prov_pat), _matcher(name_pat)
        found: list[str] = []
        for shown, path in self._binaries(prov, target):
            try:
                notes = elfsyms.usdt_notes(path)
            except (LookupError, OSError, ValueError) as e:
                raise ListingError(f"{prov}: cannot read the USDT notes of {path}: {e}") from None
            seen = sorted({(n.provider, n.name) for n in notes})
            found.extend(f"usdt:{shown}:{p}:{n}" for p, n in seen
                         if match_prov(p) and match_name(n))
        lines.extend(sorted(found))


class _BtfIndex:
    """The function names (-> type id) and raw tracepoints (-> ``__probestub_`` function id or
    None) of one BTF blob, found in one pass over its type records.

    This reads ``btf.BTF``'s layout (the type words and each record's offset) directly: asking
    for the kind and name of 130k types one by one costs ~0.5 s, this ~0.1 s (plus ~0.05 s
    to read vmlinux's BTF)."""

    def __init__(self, btf, module: str) -> None:
        from itertools import compress
        from operator import itemgetter

        self.btf = btf
        self.module = module
        self.funcs: dict[str, int] = {}
        self.rawtps: dict[str, int | None] = {}
        offs, w = btf._offs, btf._w
        if not offs:
            return
        first = btf._first
        names = itemgetter(*offs)(w)
        infos = itemgetter(*[o + 1 for o in offs])(w)
        if len(offs) == 1:
            names, infos = (names,), (infos,)
        # the ids of FUNC and TYPEDEF records, selected at C speed (no per-type Python code)
        kinds = list(map((0x1F000000).__and__, infos))
        func_ix = list(compress(range(len(kinds)), map((12 << 24).__eq__, kinds)))
        tdef_ix = list(compress(range(len(kinds)), map((8 << 24).__eq__, kinds)))
        fnames = self._names([names[i] for i in func_ix], btf)
        funcs = self.funcs
        for i, nm in zip(func_ix, fnames):
            if nm not in funcs:
                funcs[nm] = first + i
        for nm, fid in funcs.items():
            if nm.startswith("__probestub_"):
                self.rawtps[nm[len("__probestub_"):]] = fid
        data, s0, slen, sbase = btf._data, btf._sstart, btf._slen, btf._str_base
        trace = [n for n in (names[i] for i in tdef_ix)
                 if 0 <= n - sbase < slen and data.startswith(b"btf_trace_", s0 + n - sbase)]
        for nm in self._names(trace, btf):
            self.rawtps.setdefault(nm[len("btf_trace_"):], None)

    @staticmethod
    def _names(offsets: list, btf) -> list[str]:
        """The strings at these string offsets, decoded in one go."""
        data, s0, slen, sbase = btf._data, btf._sstart, btf._slen, btf._str_base
        find = data.find
        if all(0 <= o - sbase < slen for o in offsets):
            raw = [data[a:find(b"\0", a)] for a in (s0 + o - sbase for o in offsets)]
            return b"\n".join(raw).decode("utf-8", "replace").split("\n") if raw else []
        return [btf._str(o) for o in offsets]    # split BTF naming strings of its base

    def has_string(self, s: str) -> bool:
        b = self.btf
        return b._data.find(b"\0" + s.encode() + b"\0", b._sstart, b._sstart + b._slen) >= 0
