"""uprobe: / uretprobe: — functions of user binaries and libraries, through the uprobe PMU.

``uprobe:/path/bin:func``, ``uprobe:libc:malloc`` (a library name found as the dynamic loader
would), ``uprobe:bin:func+0x10``, ``uprobe:bin:0x1234`` and wildcards over function symbols.
Attachments are one uprobe_multi link per block and binary where the kernel has it (6.6+; the
kernel unregisters all its uprobes at once when it is closed), else perf events (fd-based either
way: nothing outlives the tracer). All functions of one block share a program; ``probe`` and ``func`` come from the attach cookie. With ``-p PID`` / ``-c CMD``
the perf events are opened for that process only (the kernel installs the breakpoints in its
memory only; for the ``-c`` child, held before its exec, they follow it into the command's image,
as uprobes are keyed by inode), and ``-p`` finds library names in ``/proc/PID/maps``.
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, missing, register, substitute_positional

# x86-64 struct pt_regs: where the calling convention's argument registers and rax live
X86_64_ARG_OFFSETS = (112, 104, 96, 88, 72, 64)    # di si dx cx r8 r9
X86_64_RETVAL_OFFSET = 80                          # ax


def as_written(binary: str, path: str) -> str:
    """How a probe on ``binary`` is printed (``probe``, -l, the attach line): a path as the user
    wrote it (``./bash`` stays ``./bash``, ``/bin/bash`` is not made ``/usr/bin/bash``), a
    library name as the file it was found to be; as bpftrace does."""
    return binary if "/" in binary else path


def resolve_binary(provider: str, binary: str, opts, span) -> str:
    """The file a uprobe/USDT attach point names (a path, or a library name found as the dynamic
    loader would, or in the maps of the -p process), recorded as a dependency of the compile."""
    from ptrace_lang import libpath

    try:
        path = libpath.resolve_binary(binary, getattr(opts, "maps_pid", None))
    except LookupError:
        from ptrace_lang.messages import say

        raise CompileError(say("target_file", provider=provider, target=binary), span) from None
    opts.deps.append(path)
    if "/" not in binary:
        opts.deps.append("/etc/ld.so.cache")
    return path


def resolve_binaries(provider: str, binary: str, opts, span) -> list[tuple[str, str]]:
    """The files an attach point's binary names, as (shown, path) pairs: ``*`` or nothing
    (``usdt::prov:probe``) with ``-p PID``: every object the process maps, as bpftrace does; a
    glob (``./bin*``): the ELF files it matches; otherwise the one file ``resolve_binary``
    finds."""
    import os

    from ptrace_lang import libpath

    if binary in ("", "*"):
        pid = getattr(opts, "maps_pid", None)
        if pid is None:
            raise CompileError(f"{provider}: a probe on every object ('{binary}') needs -p PID "
                               f"(the objects of that process)", span)
        try:
            paths = libpath.mapped_objects(pid)
        except OSError as e:
            raise CompileError(f"{provider}: cannot read /proc/{pid}/maps: {e.strerror or e}",
                               span) from None
        opts.deps.extend(paths)
        return [(p, p) for p in paths]
    if any(c in binary for c in "*?["):
        import glob

        found = sorted(p for p in glob.glob(binary) if os.path.isfile(p) and libpath.is_elf(p))
        if not found:
            from ptrace_lang.messages import say

            raise CompileError(say("target_file", provider=provider, target=binary), span)
        out = []
        for p in found:
            path = os.path.realpath(p) if "/" in p else os.path.abspath(p)
            opts.deps.append(path)
            out.append((p if "/" in p else path, path))
        return out
    path = resolve_binary(provider, binary, opts, span)
    return [(as_written(binary, path), path)]


class PtRegsProvider(Provider):
    """Probes whose context is the probed task's registers (uprobe, kprobe and their return
    probes): ``argN`` from the argument registers, ``retval`` from ax."""

    prog_type_name = "BPF_PROG_TYPE_KPROBE"
    builtins = frozenset({f"arg{i}" for i in range(len(X86_64_ARG_OFFSETS))} | {"func"})
    pt_regs_context = True
    arg_offsets = X86_64_ARG_OFFSETS
    retval_offset = X86_64_RETVAL_OFFSET
    retprobe = False


class Uprobe(PtRegsProvider):
    name = "uprobe"
    user_space = True
    listed = "user"
    kernel_feature = "uprobe_pmu"
    aliases = ("u",)
    runs_last_attached_first = True    # (a uprobe's consumers: the newest runs first)

    def expand(self, ap, opts):
        from ptrace_lang import elfsyms

        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        if len(parts) == 3 and parts[1] == "cpp":
            parts = [parts[0], parts[2]]
        if len(parts) != 2 or not parts[0] or not parts[1]:
            raise CompileError(f"{self.name} probe must be written {self.name}:binary:function", ap.span)
        binary, what = parts
        pid = getattr(opts, "pid", None)
        pid = -1 if pid is None else pid
        files = resolve_binaries(self.name, binary, opts, ap.span)
        if len(files) > 1 or binary in ("", "*"):
            # a function in every object of the process / every file of a glob: the objects
            # that have no such function are left out
            out = []
            for shown, path in files:
                try:
                    syms = [s.name for s in elfsyms.find_symbols(path, what)]
                    out.extend(Target(self.name, f"{self.name}:{shown}:{sym}",
                                      f"{elfsyms.symbol_offset(path, sym)}:{pid}:{path}",
                                      share_key=self.name) for sym in syms)
                except (OSError, LookupError, ValueError):
                    continue
            if not out:
                return self._missing(opts, binary, what, ap.span)
            return out
        shown, path = files[0]
        targets = []
        try:
            if any(c in what for c in "*?["):
                names = [s.name for s in elfsyms.find_symbols(path, what)]
                if not names:
                    return self._missing(opts, shown, what, ap.span)
                for sym in names:
                    targets.append((sym, elfsyms.symbol_offset(path, sym)))
            else:
                targets.append((what, self._checked_offset(
                    path, what, f"{self.name}:{shown}:{what}", opts, ap.span)))
        except elfsyms.BadOffset as e:  # (a LookupError too, but no missing probe)
            raise CompileError(f"{self.name}: {e}", ap.span) from None
        except LookupError:             # a missing symbol: a missing probe (missing_probes)
            return self._missing(opts, shown, what, ap.span)
        except OSError as e:
            raise CompileError(f"{self.name}: cannot read {path}: {e.strerror or e}", ap.span) from None
        return [Target(self.name, f"{self.name}:{shown}:{sym}", f"{off}:{pid}:{path}", share_key=self.name)
                for sym, off in targets]

    def _missing(self, opts, binary: str, what: str, span) -> list:
        """bpftrace 0.26's "No matches for uprobe BINARY:FUNC." (a warning with
        missing_probes = "warn")."""
        from ptrace_lang.messages import say

        return missing(opts, say("no_matches", probetype=self.name, what=f"{binary}:{what}"), span)

    @staticmethod
    def _checked_offset(path: str, what: str, probe: str, opts, span) -> int:
        """The file offset of ``func``, ``func+N`` or an address, checked as bpftrace does: an
        address must fall inside a function symbol (else refused, or with --unsafe attached
        with a warning), and ``func+N`` must stay inside the function."""
        from ptrace_lang import elfsyms
        from ptrace_lang.messages import say

        text = what.strip()
        address = _address(text)
        if address is not None:
            sym = elfsyms.function_at(path, address)
            if sym is None:
                if not getattr(opts, "unsafe", False):
                    raise CompileError(say("uprobe_address", path=path, address=address), span,
                                       hints=["--unsafe attaches there all the same"])
                from ptrace_lang.errors import Diagnostic

                opts.warnings.append(Diagnostic(say("uprobe_address_unsafe", probe=probe), span,
                                                severity="WARNING"))
            return elfsyms.vaddr_to_offset(path, address)
        func, plus = elfsyms.split_func_plus(path, text)
        if plus:
            sym = elfsyms.lookup_symbol(path, func)
            if plus >= sym.size:
                raise CompileError(say("uprobe_offset", func=func, size=sym.size), span)
        return elfsyms.symbol_offset(path, text)

    def attach(self, target, prog_fd, cookie):
        from ptrace_lang.kernel import links, perf

        off, pid, path = target.target.split(":", 2)
        fd = perf.uprobe_event(path, int(off), retprobe=self.retprobe, pid=int(pid))
        return [links.attach_perf_fd(prog_fd, fd, cookie)]

    # ---- uprobe_multi: the targets of a program in one binary, in one link
    def group_attach_type(self, targets: list[str]) -> int:
        """BPF_TRACE_UPROBE_MULTI when these targets (``off:pid:path``) can share one
        uprobe_multi link: several offsets of one binary for one pid (or all), on a kernel that
        has it; 0 otherwise (one perf event each)."""
        import os

        if len(targets) < 2 or os.environ.get("PTRACE_NO_UPROBE_MULTI", "") not in ("", "0"):
            return 0
        if len({t.split(":", 1)[1] for t in targets}) != 1:
            return 0
        from ptrace_lang.kernel import links

        return links.BPF_TRACE_UPROBE_MULTI if uprobe_multi_supported() else 0

    def attach_group(self, targets: list[str], prog_fd: int, cookies: list[int]) -> list:
        from ptrace_lang.kernel import links

        _, pid, path = targets[0].split(":", 2)
        offsets = [int(t.split(":", 1)[0]) for t in targets]
        return [links.uprobe_multi(prog_fd, path, offsets, cookies, retprobe=self.retprobe,
                                   pid=int(pid), name=f"{self.name}:{path}:{len(offsets)} offsets")]


def uprobe_multi_supported() -> bool:
    """Does this kernel attach uprobe_multi links (6.6+)? (One on a path that does not exist
    fails with ENOENT where it does.)"""
    import errno

    from ptrace_lang.kernel import links

    return links.multi_link_supported(
        links.BPF_TRACE_UPROBE_MULTI,
        lambda fd: links.uprobe_multi(fd, "/nonexistent/ptrace-lang-probe", [0], [0]),
        (errno.ENOENT,))


class Uretprobe(Uprobe):
    name = "uretprobe"
    aliases = ("ur",)
    listed, lists_as = "named", "uprobe"
    builtins = frozenset({"retval", "func"})
    retprobe = True


def _address(text: str) -> int | None:
    """``0x1234`` or ``4660`` as an address; None for a symbol."""
    if text[:2] in ("0x", "0X"):
        try:
            return int(text, 16)
        except ValueError:
            return None
    return int(text) if text.isdigit() and text.isascii() else None


def function_of(probe_name: str) -> str:
    """The function part of a probe name (for ``func``)."""
    return probe_name.rsplit(":", 1)[-1]


register(Uprobe())
register(Uretprobe())
