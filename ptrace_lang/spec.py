"""ObjectSpec: what the compiler hands the runtime. Plain data, no file descriptors.

The compiler (frontend -> sema -> codegen) produces one ``ObjectSpec``; the runtime creates
the maps, loads the programs (patching map fds into ``map_relocs``), attaches every
``AttachSpec``, runs ``begin`` programs with BPF_PROG_TEST_RUN, consumes the ring buffer
(records described by ``EventSpec``), and at exit reads and prints the user maps described
by ``UserMapSpec``.

Value layouts (all little-endian, as the kernel stores them):

* ``Field`` describes one value inside a key, a record or a map value: offset, size and a
  ``kind``: "int" (signed per ``signed``), "bool", "str" (NUL-padded bytes of ``size``),
  "tuple" (``fields`` holds its members), "record" (``fields`` with names), "buf"
  (u8 length + bytes), "ksym"/"usym" (u64 address), "kstack"/"ustack" (u64 stack id),
  "probe" (u64 probe id: index into ``ObjectSpec.probe_names``), "none", "user" (bytes turned
  into text in user space by ``runtime.uvalues.FORMATTERS[fmt]``, given ``aux``).
"""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

from ptrace_lang.errors import NO_SPAN, Span

# ring buffer record kinds: every record starts with an 8-byte header whose first u32 is
# kind | id << 8 (one store instruction); its other 4 bytes are padding, never written or read
EV_PRINTF = 1      # id = index into ObjectSpec.events; payload laid out by EventSpec.args
EV_PRINT_VALUE = 2  # id = index into ObjectSpec.events; payload is one value (EventSpec.args[0])
EV_EXIT = 3        # payload: i64 exit code
EV_TIME = 4        # id = index into ObjectSpec.events (fmt only); payload: none (user space reads the clock)
EV_PRINT_MAP = 5   # id = index into ObjectSpec.user_maps; payload: i64 top, i64 div
EV_CLEAR_MAP = 6   # id = index into ObjectSpec.user_maps (clear from user space, after printing)
EV_ZERO_MAP = 7    # id = index into ObjectSpec.user_maps
EV_CAT = 8         # like EV_PRINTF; the formatted text names a file whose contents are printed
EV_SYSTEM = 9      # like EV_PRINTF; the formatted text is a shell command whose output is printed
EV_WARNING = 32    # fmt: a located warning rendered at compile time, written to stderr
EV_JOIN = 10       # fmt = the delimiter; payload: u64 count, then JOIN_MAX strings of equal size
EV_ERRORF = 21     # like EV_PRINTF; printed on stderr as "file:L:C-E: ERROR: text"
EV_WARNF = 22      # like EV_PRINTF; printed on stderr as "file:L:C-E: WARNING: text"
EV_DEBUGF = 23     # like EV_PRINTF; printed on stderr as "file:L:C-E: DEBUG: text"
EV_SKBOUTPUT = 24  # skboutput(): fmt = the pcap file's path, skb_offset the bytes left out; its
# packets come through the SKB_OUTPUT_MAP perf event array (runtime.perfbuf), never the ring
# buffer: each record is SKB_HEADER (u64 id: index into ObjectSpec.events, u64 boot-clock ns,
# u64 bytes asked for), then the packet's bytes
SKB_OUTPUT_MAP = "skb_output"
SKB_HEADER = 24
JOIN_MAX = 16      # elements of the array join() reads

RECORD_HEADER = 8
MAX_RECORD_ID = (1 << 23) - 1    # kind | id << 8 is stored as a (sign-extended) 32-bit immediate


@dataclass
class Field:
    kind: str
    offset: int
    size: int
    signed: bool = False
    name: str = ""
    fields: list["Field"] = field(default_factory=list)
    fmt: str = ""              # kind "user": the formatter's name
    aux: tuple = ()            # kind "user": plain data for the formatter


@dataclass
class MapSpec:
    """A kernel map to create. ``name`` is unique within the object (≤ 15 chars sent to the kernel)."""

    name: str
    map_type: int          # BPF_MAP_TYPE_*
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0


@dataclass
class UserMapSpec:
    """A script map (``@name``), how to read it and how to print it.

    ``kind``: "count" "sum" "min" "max" "avg" "stats" "hist" "lhist" "value".
    ``kernel_map`` names the MapSpec holding it. For scalar maps ``key`` is None and the kernel
    key is a u64 constant (``codegen.lower_maps.KEYLESS_KEY``, ignored when read). hist/lhist maps use the script key followed by a u64 bucket index, tseries maps by
    a u64 slot (the interval number modulo num_intervals).
    Aggregation values are per-CPU and merged when read:
      count/sum: i64 per CPU, summed. min/max: (i64 value, u64 seen) per CPU.
      avg/stats: (i64 count, i64 total) per CPU. hist/lhist: u64 count per CPU per bucket.
      tseries: (u64 interval number (monotonic ns // interval), a, b) per CPU per slot: sum (sum, -),
      avg (count, total), min/max (value, -), the last value (value, monotonic ns of the write).
    ``value`` describes a "value" map's stored value (not per-CPU).
    """

    name: str                   # as the user wrote it, with the "@": "@", "@x"
    kind: str
    kernel_map: str
    key: Field | None = None    # the script-level key (a tuple key is one Field of kind "tuple")
    value: Field | None = None
    signed: bool = True         # sum/min/max/avg/stats: interpret as signed
    hist_k: int = 0
    lhist: tuple[int, int, int] | None = None   # (min, max, step)
    # (interval_ns, num_intervals, aggregator: "avg" "max" "min" "sum" or "" for the last value)
    tseries: tuple[int, int, str] | None = None


@dataclass
class EventSpec:
    """A printf/print/time/... call site. ``args`` are laid out after the 8-byte record header."""

    kind: int                   # EV_*
    fmt: str = ""
    args: list[Field] = field(default_factory=list)
    span: Span = NO_SPAN
    # per argument: 32 for a signed integer of at most 32 bits (a conversion without a length
    # modifier reads 32 bits of it, as C's promotion to int), else 64 (runtime.printf)
    arg_bits: tuple = ()
    skb_offset: int = 0         # EV_SKBOUTPUT: the packet's first bytes left out of the file


@dataclass
class ProgramSpec:
    name: str
    prog_type: int               # BPF_PROG_TYPE_*
    insns: bytes                 # encoded instructions, map fd slots zero
    map_relocs: list[tuple[int, str]] = field(default_factory=list)  # (insn index, map name)
    spans: list[Span] = field(default_factory=list)                  # one per instruction slot
    expected_attach_type: int = 0
    asm: str = ""                # disassembly with source lines, for -d asm and error mapping
    # BPF_PROG_TYPE_TRACING (fentry/fexit, tp_btf, iter): the BTF id of the function, raw
    # tracepoint typedef or iterator the program is bound to, and the kernel module whose BTF
    # holds it ("" for vmlinux; the loader passes that BTF object's fd)
    attach_btf_id: int = 0
    attach_btf_module: str = ""
    # subprograms (loop bodies as callbacks): (first instruction, name, argument count), and
    # the BTF blob describing every function with its bpf_func_info records (bpf.funcbtf),
    # which the verifier requires for callbacks: the loader loads func_btf and passes both
    functions: list[tuple[int, str, int]] = field(default_factory=list)
    func_btf: bytes = b""
    func_info: bytes = b""


def set_program_attrs(ps: ProgramSpec, attrs: dict) -> ProgramSpec:
    """A provider's load attributes (``Provider.program_attrs``: ``prog_type_name``,
    ``expected_attach_type``, ``attach_btf_id``, ``attach_btf_module``) onto a program."""
    for k, v in attrs.items():
        if k == "prog_type_name":
            from ptrace_lang.bpf import uapi

            ps.prog_type = getattr(uapi, v)
        else:
            setattr(ps, k, v)
    return ps


@dataclass
class AttachSpec:
    """One attach point of one program. ``provider`` selects the attacher.

    ``target`` is provider-specific: tracepoint "subsys:event"; interval/profile
    (unit, value) as a string "hz:99" / "ms:100"; begin/end unused.
    ``cookie`` is the BPF cookie the program reads to recover ``probe``.
    """

    provider: str      # "begin" "end" "tracepoint" "interval" "profile" ...
    program: str       # ProgramSpec.name
    target: str = ""
    cookie: int = 0
    probe_name: str = ""  # full probe name as bpftrace prints it, e.g. "tracepoint:syscalls:sys_enter_read"
    span: Span = NO_SPAN


@dataclass
class ObjectSpec:
    maps: list[MapSpec] = field(default_factory=list)
    programs: list[ProgramSpec] = field(default_factory=list)
    attachments: list[AttachSpec] = field(default_factory=list)  # begin/end in declaration order
    user_maps: list[UserMapSpec] = field(default_factory=list)
    events: list[EventSpec] = field(default_factory=list)
    probe_names: list[str] = field(default_factory=list)   # indexed by probe id / cookie
    ringbuf_map: str = "ringbuf"
    counters_map: str = "counters"   # array of one value: a u64 per COUNTER_* below
    config: dict = field(default_factory=dict)


# the ``globals`` array's one value: the start time (CLOCK_MONOTONIC ns) ``elapsed`` subtracts,
# written by the session before the begin probes run
GLOBALS_START_NS = 0       # offset in that value

# counters kept by every program (atomic adds on error paths), reported at exit when non-zero
COUNTER_LOST_EVENTS = 0     # ring buffer reserve failed
COUNTER_MAP_FULL = 1        # a map update failed (map full)
COUNTER_READ_FAILED = 2     # a probe_read helper failed
COUNTER_STACK_FAILED = 3    # bpf_get_stackid failed (other than "no stack here"): kstack/ustack
NUM_COUNTERS = 4


# ---------------------------------------------------------------- plain data (the compile cache)
# An ObjectSpec as nested tuples of marshal-able values: a record is ("R", class name, field
# values...), a tuple ("T", items...), lists and dicts stay lists and dicts (dict keys are plain).
_RECORD_CLASSES = {c.__name__: c for c in (Field, MapSpec, UserMapSpec, EventSpec, ProgramSpec,
                                           AttachSpec, ObjectSpec, Span)}


def to_plain(v):
    cls = v.__class__
    if cls in (int, str, bytes, bool, float) or v is None:
        return v
    if cls is list:
        return [to_plain(x) for x in v]
    if cls is tuple:
        return ("T", *(to_plain(x) for x in v))
    if cls is dict:
        return {k: to_plain(x) for k, x in v.items()}
    if _RECORD_CLASSES.get(cls.__name__) is cls:
        return ("R", cls.__name__, *(to_plain(getattr(v, n)) for n in cls.__dataclass_fields__))
    raise TypeError(f"cannot store a {cls.__name__} in a compiled program")


def from_plain(v):
    cls = v.__class__
    if cls is list:
        return [from_plain(x) for x in v]
    if cls is dict:
        return {k: from_plain(x) for k, x in v.items()}
    if cls is not tuple:
        return v
    if v[0] == "T":
        return tuple(from_plain(x) for x in v[1:])
    if v[1] == "Span" and v[3] == 0:
        return NO_SPAN            # compared by identity
    rcls = _RECORD_CLASSES[v[1]]
    obj = rcls.__new__(rcls)
    obj.__dict__.update(zip(rcls.__dataclass_fields__, (from_plain(x) for x in v[2:])))
    return obj
