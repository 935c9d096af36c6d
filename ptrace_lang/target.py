"""What the compiler knows of the machine it compiles for, handed to it rather than looked up.

``Target`` is a record of facts (kernel release, CPU count, which BPF features exist) and ``Host``
the lookups a compile makes there (tracepoint formats, kernel symbols, cgroup ids). The driver
builds both from the running kernel (``kernel.host``); a test builds them from constants and
recorded files, and compiles with no root, no tracefs and no kernel. Nothing in frontend/,
sema/, codegen/ or bpf/ looks at the host itself (tests/unit/test_layering.py checks it).
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field


@dataclass(frozen=True)
class Target:
    release: tuple[int, int] = (6, 18)   # kernel major, minor
    machine: str = "x86_64"
    # the possible CPUs' ids (/sys/devices/system/cpu/possible "0-3,5" -> 0 1 2 3 5:
    # kernel.cpus reads them)
    cpus: tuple[int, ...] = (0,)
    # BPF's signed division and modulo (cpu v4), since Linux 6.6
    sdiv: bool = True
    # bpf_get_current_comm zero-pads its whole buffer, since Linux 6.4
    comm_padded: bool = True

    @property
    def ncpus(self) -> int:
        """How many CPUs are possible (``ncpus``; the values of a per-CPU map entry)."""
        return len(self.cpus)

    @property
    def cpu_id_limit(self) -> int:
        """The highest possible CPU id + 1 (bpf_map_lookup_percpu_elem takes an id)."""
        return max(self.cpus) + 1

    @classmethod
    def for_release(cls, release: str, machine: str = "x86_64", cpus: tuple[int, ...] = (0,),
                    no_sdiv: bool = False) -> "Target":
        """The facts that follow from a kernel release string ("6.18.4-foo")."""
        try:
            major, minor = (int(x) for x in release.split(".")[:2])
        except ValueError:
            major, minor = 0, 0
        return cls((major, minor), machine, tuple(cpus) or (0,),
                   sdiv=(major, minor) >= (6, 6) and not no_sdiv,
                   comm_padded=(major, minor) >= (6, 4))


class Host:
    """The lookups a compile makes in the machine it compiles for. This base answers from what
    it is given (tests); ``kernel.host.LiveHost`` answers from the running kernel. Each lookup
    raises OSError when the information cannot be read."""

    btf_cache = False      # whether kernel types resolved from BTF are kept in a cache file

    def __init__(self, tracepoints: dict[str, str] | None = None,
                 kernel_symbols: dict[str, int] | None = None,
                 cgroups: dict[str, int] | None = None) -> None:
        self.tracepoints = tracepoints or {}        # "subsys:event" -> its format file's text
        self.kernel_symbols = kernel_symbols or {}  # name -> address
        self.cgroups = cgroups or {}                # cgroupfs path -> cgroup id

    def list_tracepoints(self, pattern: str) -> list[str]:
        """Sorted "subsys:event" names matching the glob ``pattern`` (with a colon, the two
        parts are matched separately)."""
        from fnmatch import fnmatchcase

        if ":" not in pattern:
            return sorted(n for n in self.tracepoints if fnmatchcase(n, pattern))
        sub, ev = pattern.split(":", 1)
        return sorted(n for n in self.tracepoints
                      if fnmatchcase(n.split(":", 1)[0], sub) and fnmatchcase(n.split(":", 1)[1], ev))

    def event_format(self, subsys: str, event: str) -> list:
        """The fields (``tpformat.TpField``) of a tracepoint's record."""
        from ptrace_lang.tpformat import parse_format

        try:
            return parse_format(self.tracepoints[f"{subsys}:{event}"])
        except KeyError:
            raise FileNotFoundError(2, f"no format recorded for {subsys}:{event}") from None

    def kernel_address(self, name: str) -> int | None:
        """A kernel symbol's address, None when there is none."""
        return self.kernel_symbols.get(name)

    def resolve_binary(self, binary: str) -> str:
        """The file a uprobe's binary names (a path, or a library found as the loader would);
        LookupError when there is none. Here: paths as given."""
        return binary

    def user_symbol_address(self, path: str, name: str) -> int:
        """The address of a symbol of an ELF file (LookupError when it has none)."""
        from ptrace_lang.elfsyms import symbol_address

        return symbol_address(path, name)

    def cgroup_id(self, path: str) -> int:
        """The id of a cgroupfs directory (OSError when it does not exist)."""
        try:
            return self.cgroups[path]
        except KeyError:
            raise FileNotFoundError(2, f"no such cgroup: {path}") from None


@dataclass
class Machine:
    """A Target and its Host, as the driver passes them on."""

    target: Target = field(default_factory=Target)
    host: Host = field(default_factory=Host)
