"""The compiler as a list of passes: text -> AST -> typed AST -> IR -> BPF -> ObjectSpec.

    compile_script(text, filename, opts, machine):
        program = parse_program(text, filename, opts)          # preprocess, parse, config
        deps    = resolve_program(program, filename, opts)     # imports, macros, C definitions
        groups  = expand_attach_points(program, opts, machine)  # targets, grouped by shared code
        sema    = analyze(...)                                 # types, checked
        obj     = plan_maps(sema, program, opts)               # kernel maps, user-map layouts
        compile_group(...) for every group                     # lower, allocate, encode
        finish_object(obj, opts)                               # scratch and ring-buffer sizes

Each pass takes data and returns data. Nothing here makes a system call: lookups in the
machine (tracepoint formats, kernel symbols, cgroup ids) go through ``machine.host``
(target.Host), which the caller supplies; loading and attaching are the runtime's.
"""
from __future__ import annotations

import os
from ptrace_lang.records import dataclass, field, replace

from ptrace_lang import config
from ptrace_lang import spec as S
from ptrace_lang.bpf import uapi as U
from ptrace_lang.errors import CompileError, SOURCES, Span
from ptrace_lang.frontend import ast

DEFAULT_MAX_MAP_KEYS = 4096
DEFAULT_RINGBUF_BYTES = 8 << 20
# programs whose only events are rare control records (exit, time, clear, print of a map)
# get a small ring buffer: its pages are mapped into our address space
SMALL_RINGBUF_BYTES = 256 << 10

# the map types a program's maps have (uapi bpf.h, named in bpf/uapi.py)
MAP_TYPES = {"hash": U.BPF_MAP_TYPE_HASH, "array": U.BPF_MAP_TYPE_ARRAY,
             "percpu_hash": U.BPF_MAP_TYPE_PERCPU_HASH, "percpu_array": U.BPF_MAP_TYPE_PERCPU_ARRAY,
             "stack_trace": U.BPF_MAP_TYPE_STACK_TRACE, "lru_hash": U.BPF_MAP_TYPE_LRU_HASH,
             "lru_percpu_hash": U.BPF_MAP_TYPE_LRU_PERCPU_HASH, "ringbuf": U.BPF_MAP_TYPE_RINGBUF}
MAP_DECL_KINDS = ("hash", "lruhash", "percpuhash", "percpulruhash")



def _map_decls(program, opts) -> dict:
    """``let @m = KIND(N);`` declarations by map name ("@m"), checked."""
    out: dict = {}
    for d in program.map_decls:
        name = "@" + d.name
        if opts.settings.get("unstable_map_decl") == "error":
            raise CompileError("map declarations are disabled (config unstable_map_decl = error)", d.span)
        if d.kind not in MAP_DECL_KINDS:
            raise CompileError(f"Invalid map kind: {d.kind}", d.span,
                               ["map kinds: " + ", ".join(f"{k}(N)" for k in MAP_DECL_KINDS)])
        if not 1 <= d.size <= 0xFFFFFFFF:
            raise CompileError(f"{name}: a map holds 1 to 4294967295 entries ({d.size} given)", d.span)
        if name in out:
            raise CompileError(f"{name} is declared twice", d.span)
        out[name] = d
    return out


@dataclass
class Options:
    positional: list[str] = field(default_factory=list)
    program_opts: tuple[str, ...] = ()   # the program's "--name[=value]" after "--" (getopt())
    helper_checks: int = 0           # -k: failed reads reported per event, located
    max_map_keys: int = DEFAULT_MAX_MAP_KEYS
    max_strlen: int = 64
    ringbuf_bytes: int = DEFAULT_RINGBUF_BYTES
    missing_probes: str = "error"
    stages: tuple[str, ...] = ()     # -d: ast types ir asm
    # script maps listed first, in this order, in ObjectSpec.user_maps (whose indexes the code
    # of print/clear/zero records carries): the REPL keeps the indexes of loaded programs' maps
    map_order: tuple[str, ...] = ()
    # -p PID / -c CMD: the process uprobes and USDT probes attach in (-c: the held child)
    pid: int | None = None
    cpid: int | None = None          # -c: the child's pid, the value of `cpid`
    unsafe: bool = False             # --unsafe: system() and the other unsafe functions allowed
    include_dirs: tuple[str, ...] = ()   # -I DIR: the search path of #include (ptrace_lang.includes)
    includes: tuple[str, ...] = ()       # --include FILE: headers included before the program
    stack_mode: str | None = None    # config stack_mode / BPFTRACE_STACK_MODE: kstack/ustack's default
    str_trunc_trailer: str = ".."    # printed after a string read from memory that was cut
    # every config variable set by the script or the environment (ptrace_lang.config.KEYS)
    settings: dict = field(default_factory=dict)
    backend: str = "direct"          # --backend: "direct" (codegen/) or "llvm" (llvmbackend/)


@dataclass
class Compiled:
    spec: S.ObjectSpec
    program: ast.Program
    dumps: dict[str, str] = field(default_factory=dict)
    deps: list[str] = field(default_factory=list)   # files the result depends on (uprobe binaries)


def env_options(opts: Options) -> Options:
    """Apply BPFTRACE_* environment variables (config keys in upper case)."""
    apply_settings(opts, config.from_env(os.environ))
    return opts


def apply_config(program: ast.Program, opts: Options) -> None:
    """Apply the script's config block, then the environment (which wins, ptrace_lang.config)."""
    apply_settings(opts, config.settings(program, os.environ))


def apply_settings(opts: Options, values: dict) -> None:
    for key, value in values.items():
        if key == "perf_rb_pages":
            opts.ringbuf_bytes = _rb_bytes(value)
        elif key in ("max_map_keys", "max_strlen", "missing_probes", "stack_mode",
                     "str_trunc_trailer"):
            setattr(opts, key, value)
        opts.settings[key] = value


def _rb_bytes(pages: int) -> int:
    """bpftrace's perf_rb_pages is per CPU; our one ring buffer gets that much for every CPU."""
    return max(1, pages) * 4096 * max(os.cpu_count() or 1, 1)


def _ringbuf_size(n: int) -> int:
    size = 4096
    while size < n:
        size <<= 1
    return size


def compile_script(text: str, filename: str, opts: Options, machine=None) -> Compiled:
    """Compile a script for ``machine`` (a ``target.Machine``: the facts and lookups of the
    machine it will run on; by default the running one)."""
    if machine is None:
        from ptrace_lang.kernel.host import running

        machine = running()
    from ptrace_lang.sema import btftypes
    from ptrace_lang.sema.analyze import analyze

    btftypes.use_disk_cache(machine.host.btf_cache)
    forget = getattr(machine.host, "forget", None)    # (kernel.host.LiveHost: per-compile answers)
    if forget is not None:
        forget()
    program = parse_program(text, filename, opts)
    deps, decls = resolve_program(program, filename, opts)
    groups, popts = expand_attach_points(program, opts, machine)
    sema = analyze(program, [[g[2] for g in gs] for gs in groups], opts.positional, opts.max_strlen,
                   cpid=opts.cpid, unsafe=opts.unsafe, host=machine.host,
                   stack_mode=opts.stack_mode, program_opts=opts.program_opts)
    popts.deps.extend(getattr(sema.analyzer, "deps", ()))   # files sema read (cgroupid paths)
    dumps: dict[str, str] = {}
    if "ast" in opts.stages:
        dumps["ast"] = ast.dump(program)
    if opts.missing_probes == "ignore":
        popts.warnings.clear()
    obj, layouts = plan_maps(sema, decls, opts,
                             popts.warnings + getattr(sema.analyzer, "warnings", []))
    stages: dict[str, list[str]] = {"types": [], "ir": [], "llvm-ir": [], "asm": []}
    scratch = 0      # the per-CPU scratch value big temporaries live in (lower_values)
    # (once per compile, not per group: with a map or two per block that was quadratic)
    user_map_index = {um.name: i for i, um in enumerate(obj.user_maps)}
    for pi, (probe, gs) in enumerate(zip(program.probes, groups)):
        for gi, group in enumerate(gs):
            scratch = max(scratch, compile_group(obj, layouts, sema, probe, pi, gi, group, opts,
                                                 machine.target, stages, user_map_index))
    finish_object(obj, opts, scratch)
    btftypes.flush()        # kernel types resolved by this compile, for the next one
    dumps.update((k, "".join(v) if k == "types" else "\n".join(v))
                 for k, v in stages.items() if v)
    return Compiled(obj, program, dumps, popts.deps + deps)


def parse_program(text: str, filename: str, opts: Options) -> ast.Program:
    """The script's AST: ``#if`` lines preprocessed, parsed, its config block applied."""
    from ptrace_lang.frontend.parser import parse

    if "#if" in text:
        from ptrace_lang.sema.cdefs import preprocess

        text = preprocess(text)
    program = parse(text, filename)
    apply_config(program, opts)
    return program


def resolve_program(program: ast.Program, filename: str, opts: Options) -> tuple[list[str], dict]:
    """Imports (and the standard library's automatic ones) merged in, macros expanded, map
    declarations checked, C definitions and #includes read, kernel enum names substituted.
    Returns the files read (the compile cache checks them) and the map declarations."""
    from ptrace_lang.frontend.macros import auto_imports, expand_macros, resolve_imports
    from ptrace_lang.sema import btftypes, cdefs

    deps = resolve_imports(program, filename)
    deps += auto_imports(program, filename)
    expand_macros(program)
    decls = _map_decls(program, opts)
    if program.c_definitions or opts.includes:
        from ptrace_lang.includes import expand_includes

        # -I DIR / --include FILE: the script's own headers are read in place of their
        # #include lines (system and kernel headers stay directives: types come from BTF)
        deps += expand_includes(program, filename, opts.include_dirs, opts.includes)
    if program.c_definitions:
        cdefs.substitute(program, cdefs.load(program))
    else:
        btftypes.define_script_types(None)
        cdefs.substitute(program, {})      # kernel enum members used by name
    if not program.probes:
        raise CompileError("No probes in the program", Span(filename, 1, 1, 1, 2))
    return deps, decls


def expand_attach_points(program: ast.Program, opts: Options, machine):
    """Every attach point expanded into its targets; the targets of one probe grouped by what
    their code depends on. Returns, per probe kept, its groups ``(provider, targets, context)``,
    and the providers' options (files read, warnings). Probes whose every attach point is
    missing (config missing_probes = warn/ignore) are dropped from ``program``."""
    from ptrace_lang import providers
    from ptrace_lang.sema.analyze import ProbeContext

    # missing_probes = "ignore": as "warn", the warnings dropped
    popts = providers.Options(positional=opts.positional,
                              missing_probes="warn" if opts.missing_probes == "ignore"
                              else opts.missing_probes)
    popts.host = machine.host
    popts.unsafe = opts.unsafe       # (uprobe: an address inside no function is forced)
    # (attributes the uprobe and usdt providers read: the process to attach in, and the one
    # whose /proc/PID/maps names libraries — not the -c child, which has not exec'd yet)
    popts.pid = opts.pid
    popts.maps_pid = opts.pid if opts.cpid is None else None
    groups: list[list[tuple]] = []
    kept = []
    from ptrace_lang.frontend.literals import split_attach_point, substitute_attach_point

    for probe in program.probes:
        # `BEG$1`, `tracepoint:$1:*`: bpftrace substitutes positional parameters in the attach
        # point's text before splitting it into provider and parts
        for ap in probe.attach_points:
            if "$" in ap.raw:
                raw = substitute_attach_point(ap.raw, opts.positional, ap.span)
                ap.raw = raw
                ap.provider, ap.parts = split_attach_point(raw)
    for probe in program.probes:
        by_key: dict[object, tuple] = {}
        read = {n.name for n in ast.walk(probe) if isinstance(n, ast.Builtin)}
        uses_args = "args" in read
        popts.uses_args = uses_args      # (rawtracepoint: BTF-typed args need a tp_btf program)
        for ap in probe.attach_points:
            prov = providers.lookup(ap)
            # argN of a USDT site is read as its own note says: sites share code only when
            # their argument specs are equal (Provider.site_builtins)
            by_site = uses_args or bool(prov.site_builtins & read)
            for t in prov.expand(ap, popts):
                # code that never reads args is the same whatever the event's layout
                # (a provider with a program per target keys its own groups: fexit's retval
                # slot depends on the function's parameters even when args is not read)
                k = (prov.name, t.share_key if by_site or prov.program_per_target else None)
                if k not in by_key:
                    by_key[k] = (prov, [], ProbeContext(prov.name, prov.builtins, t.args,
                                                             prov.pt_regs_context, prov.user_space))
                by_key[k][1].append(t)
        if not by_key:
            if popts.warnings and opts.missing_probes in ("warn", "ignore"):
                continue        # every attach point was warned about: the block is left out
            raise CompileError("No attach points matched: the probe would never fire",
                               probe.attach_points[0].span)
        if opts.pid is not None and opts.cpid is None:
            _pid_filter(probe, {k[0] for k in by_key}, opts.pid)
        kept.append(probe)
        groups.append(list(by_key.values()))
    if not kept:
        raise CompileError("No probes left to attach: every attach point was missing",
                           program.probes[0].span)
    program.probes = kept
    return groups, popts


# -p PID: probes of these providers fire in every process; bpftrace counts only PID's events
_PID_FILTERED = frozenset(("profile", "software", "hardware", "tracepoint", "rawtracepoint"))
_IN_PID_ALREADY = frozenset(("uprobe", "uretprobe", "usdt"))   # (attached in PID only)


def _pid_filter(probe, provider_names: set, pid: int) -> None:
    """-p PID: ``pid == PID &&`` before the predicate of a probe whose providers fire in
    every process (a block mixing in others, interval or BEGIN, is left as it is)."""
    if not provider_names & _PID_FILTERED or not provider_names <= _PID_FILTERED | _IN_PID_ALREADY:
        return
    sp = probe.attach_points[0].span
    test = ast.Binary("==", ast.Builtin("pid", span=sp), ast.IntLit(pid, span=sp), span=sp)
    probe.predicate = test if probe.predicate is None else \
        ast.Binary("&&", test, probe.predicate, span=sp)


def plan_maps(sema, decls: dict, opts: Options, warnings: list):
    """The ObjectSpec's maps: one kernel map per script map (its type and size from its use and
    its ``let @m = KIND(N)`` declaration), its user-space layout, and the ring buffer, counters
    and globals every program shares. Returns the ObjectSpec begun and the maps' layouts."""
    from ptrace_lang.codegen import lower as L

    obj = S.ObjectSpec()
    obj.config = {"max_map_keys": opts.max_map_keys}
    # run-time settings (session: print_maps_on_exit, max_cat_bytes, license, stats_style ...)
    obj.config.update((k, v) for k, v in opts.settings.items()
                      if k in config.RUNTIME_KEYS)
    warnings = list(warnings)
    decls = dict(decls)
    layouts: dict[str, L.MapLayout] = {}
    first = {n: i for i, n in enumerate(opts.map_order)}
    for name in sorted(sema.maps, key=lambda n: (first.get(n, len(first)), n)):
        info = sema.maps[name]
        layout = L.map_layout(info)
        layouts[name] = layout
        kind = layout.agg.kind if layout.agg is not None else "value"
        # per-CPU hash maps are not preallocated: preallocating max_map_keys entries per CPU
        # costs ~3 ms of start-up on 2 CPUs (and grows with the CPU count), while run-time
        # allocation (bpf_mem_alloc, Linux >= 6.1) only costs on a key's first update
        decl = decls.pop(name, None)
        map_type = "percpu_hash" if layout.percpu else "hash"
        entries, flags = opts.max_map_keys, U.BPF_F_NO_PREALLOC if layout.percpu else 0
        if decl is not None:     # let @m = hash(N) | lruhash(N) | percpuhash(N) | percpulruhash(N)
            entries = decl.size
            obj.config["declared_maps"] = True
            if decl.kind.startswith("percpu") and not layout.percpu:
                raise CompileError(f"{name} is declared {decl.kind}() but holds a value that is not "
                                   "an aggregation (count(), sum(), avg(), min(), max(), stats(), "
                                   "hist(), lhist())", decl.span,
                                   [f"declare it with let {name} = "
                                    f"{decl.kind[len('percpu'):]}({decl.size});"])
            if decl.kind.endswith("lruhash"):     # LRU maps are always preallocated
                map_type, flags = "lru_percpu_hash" if layout.percpu else "lru_hash", 0
        obj.maps.append(S.MapSpec(layout.kernel_name, MAP_TYPES[map_type],
                                  layout.kernel_key_size, layout.value_size, entries, flags))
        trailer = opts.str_trunc_trailer
        key_field = L.value_field(info.key_type, 0, trailer=trailer) \
            if info.key_type is not None else None
        value_field = None if layout.agg is not None \
            else L.value_field(info.value_type, 0, trailer=trailer)
        agg = layout.agg
        obj.user_maps.append(S.UserMapSpec(
            name, kind, layout.kernel_name, key_field, value_field,
            signed=agg.signed if agg is not None else True,
            hist_k=agg.hist_k if agg is not None else 0,
            lhist=agg.lhist if agg is not None else None,
            tseries=agg.tseries if agg is not None else None))
    from ptrace_lang.errors import Diagnostic, render

    for name, decl in decls.items():     # (bpftrace: a warning, the map is not created)
        warnings.append(Diagnostic(f"Unused map: {name}", decl.span, [], "WARNING"))
    if warnings:      # rendered now (the compile cache keeps them with the program)
        obj.config["warnings"] = [render(d) for d in warnings]
    obj.maps.append(S.MapSpec("ringbuf", MAP_TYPES["ringbuf"], 0, 0, _ringbuf_size(opts.ringbuf_bytes)))
    obj.maps.append(S.MapSpec("counters", MAP_TYPES["array"], 4, 8 * S.NUM_COUNTERS, 1))
    obj.maps.append(S.MapSpec("globals", MAP_TYPES["array"], 4, 8, 1))
    return obj, layouts


def compile_group(obj: S.ObjectSpec, layouts: dict, sema, probe, pi: int, gi: int, group: tuple,
                  opts: Options, target, stages: dict, user_map_index: dict | None = None) -> int:
    """One group of a probe's targets (those that share code): lowered to IR, registers and
    stack allocated, encoded; its programs and attachments added to ``obj``. Returns the
    scratch memory it needs; ``stages`` collects the -d dumps asked for; ``user_map_index``:
    the index of every user map in ``obj.user_maps`` by name (made here when not given)."""
    from ptrace_lang.bpf.disasm import disassemble
    from ptrace_lang.bpf.insn import encode
    from ptrace_lang.codegen import lower as L

    if opts.backend == "llvm":       # the cross-check backend (llvmbackend/, needs llvmlite)
        from ptrace_lang.llvmbackend.backend import compile_group as llvm_group

        return llvm_group(obj, layouts, sema, probe, pi, gi, group, opts, target, stages,
                          user_map_index)
    prov, targets, ctx = group
    if user_map_index is None:
        user_map_index = {um.name: i for i, um in enumerate(obj.user_maps)}
    var_types = sema.retype(probe, ctx)
    probe_ids = []
    for t in targets:
        probe_ids.append(len(obj.probe_names))
        obj.probe_names.append(t.probe_name)
    low = L.Lowering(maps=layouts, events=obj.events, user_map_index=user_map_index,
                     args=ctx.args, probe_ids=probe_ids, positional=opts.positional,
                     var_types=var_types, max_strlen=opts.max_strlen,
                     uses_cookie=len(targets) > 1 and not prov.runs_by_test_run,
                     var_spans=sema.var_spans,
                     cpid=opts.cpid, target=target,
                     str_trunc_trailer=opts.str_trunc_trailer,
                     **{"arg_offsets": getattr(prov, "arg_offsets", None),
                        "retval_offset": getattr(prov, "retval_offset", 0),
                        **prov.lowering_options(targets[0])})
    low.probe_id_names = obj.probe_names       # probe == "name" (Lowering.probe_name_compare)
    low.provider_name = targets[0].provider      # (probetype)
    low.helper_checks = opts.helper_checks
    insns = low.lower_probe(probe)
    if low.frame.scratch_max > L.SCRATCH_LIMIT:
        raise CompileError(f"The probe needs {low.frame.scratch_max} bytes of scratch "
                           f"memory for its values, more than the {L.SCRATCH_LIMIT} a "
                           "per-CPU map value holds", probe.span,
                           hints=["use shorter strings (config max_strlen) or fewer "
                                  "string values in one statement"])
    for sname, vsize in getattr(low, "stack_maps", {}).items():   # kstack/ustack
        if not any(m.name == sname for m in obj.maps):
            obj.maps.append(S.MapSpec(sname, MAP_TYPES["stack_trace"], 4, vsize,
                                      opts.max_map_keys))
    for ms in getattr(low, "extra_maps", ()):       # skboutput's perf event array
        if not any(m.name == ms.name for m in obj.maps):
            obj.maps.append(ms)
    if "types" in opts.stages and gi == 0:
        stages["types"].append(ast.dump(probe) + "\n")
    name = f"p{pi}_{gi}_{prov.name}"[:15]
    if "ir" in opts.stages:
        stages["ir"].extend(_ir_lines(f"program {name}: {targets[0].probe_name}", insns))
        for sb in getattr(low, "subprogs", None) or ():
            stages["ir"].extend(_ir_lines(f"function {sb.name}", sb.insns))
    em = _allocate_and_emit(low, insns, probe)
    ps = S.ProgramSpec(name, getattr(U, prov.prog_type_name), encode(em.insns),
                       list(em.map_relocs), list(em.spans))
    ps.functions = list(getattr(em, "functions", []))
    if "asm" in opts.stages:
        ps.asm = disassemble(em.insns, em.spans, SOURCES.line,
                             {i: n for i, n in em.map_relocs},
                             functions={start: n for start, n, _ in ps.functions})
        stages["asm"].append(f"; program {name}: {targets[0].probe_name}\n{ps.asm}")
    if not prov.program_per_target:
        S.set_program_attrs(ps, prov.program_attrs(targets[0]))
        obj.programs.append(_with_func_info(ps))
    for ti, (t, pid) in enumerate(zip(targets, probe_ids)):
        if prov.program_per_target:
            # one code, loaded once per target it is bound to (cookies give probe/func)
            pname = f"p{pi}_{gi}_{ti}_{prov.name}"[:15] if len(targets) > 1 else name
            obj.programs.append(_with_func_info(S.set_program_attrs(replace(ps, name=pname),
                                                                   prov.program_attrs(t))))
        else:
            pname = name
        obj.attachments.append(S.AttachSpec(t.provider, pname, t.target, pid, t.probe_name,
                                            probe.attach_points[0].span))
    return low.frame.scratch_max


def _with_func_info(ps: S.ProgramSpec) -> S.ProgramSpec:
    """A program with callbacks gets the BTF of its functions and their func_info records
    (the verifier requires them); compiled here, so the loader only loads them."""
    if ps.functions:
        from ptrace_lang.bpf import funcbtf

        funcs = [(ps.name.replace(".", "_"), 1)] + [(n, k) for _, n, k in ps.functions]
        ps.func_btf, type_ids = funcbtf.func_btf(funcs)
        ps.func_info = funcbtf.func_info([0] + [start for start, _, _ in ps.functions], type_ids)
    return ps


def _ir_lines(title: str, insns: list) -> list[str]:
    from ptrace_lang.codegen import ir
    from ptrace_lang.codegen.ir import format_insn

    return [f"; {title}"] + [("  " if not isinstance(i, ir.Label) else "") + format_insn(i)
                             for i in insns]


def _allocate_and_emit(low, insns: list, probe):
    """Registers and stack slots allocated (a program with subprograms is linked whole), then
    the instructions emitted."""
    if getattr(low, "subprogs", None):
        from ptrace_lang.codegen.subprogs import link

        return link(low, insns, probe.span)
    from ptrace_lang.codegen.emit import emit
    from ptrace_lang.codegen.regalloc import allocate_registers

    allocated, depth = allocate_registers(insns, low.frame.max_depth)
    if depth > 512:
        raise CompileError(f"The probe needs {depth} bytes of stack, more than BPF's 512",
                           low.frame.deepest_span if low.frame.deepest_span.line else probe.span,
                           hints=["use shorter strings (config max_strlen) or fewer "
                                  "string values in one statement"])
    return emit(allocated)


def _attach_order(obj: S.ObjectSpec) -> None:
    """Blocks on one event run in declaration order, as in bpftrace. The kernel runs the
    consumers of one uprobe last-attached first, so the attachments of those providers
    (``Provider.runs_last_attached_first``) are attached in reverse, in the places they hold."""
    from ptrace_lang import providers

    slots = [i for i, a in enumerate(obj.attachments)
             if getattr(providers.get(a.provider), "runs_last_attached_first", False)]
    if len(slots) > 1:
        moved = [obj.attachments[i] for i in reversed(slots)]
        for i, a in zip(slots, moved):
            obj.attachments[i] = a


def finish_object(obj: S.ObjectSpec, opts: Options, scratch_bytes: int) -> None:
    """The maps whose size depends on every program: the scratch value, and the ring buffer
    (dropped when no program writes records, small when only rare control records do, and
    always big enough for two of the largest record)."""
    from ptrace_lang.codegen import lower as L

    if scratch_bytes:
        # always the largest size, so that a REPL entry needing more finds the same map loaded
        obj.maps.append(S.MapSpec(L.SCRATCH_MAP, MAP_TYPES["percpu_array"], 4, L.SCRATCH_LIMIT, 1))
    config.check_limits(obj, opts.settings)
    _attach_order(obj)
    ringbuf = next(m for m in obj.maps if m.name == "ringbuf")
    if not any(name == "ringbuf" for p in obj.programs for _, name in p.map_relocs):
        obj.maps.remove(ringbuf)
        obj.ringbuf_map = ""
        return
    if (not any(ev.kind in (S.EV_PRINTF, S.EV_PRINT_VALUE) for ev in obj.events)
            and opts.ringbuf_bytes == DEFAULT_RINGBUF_BYTES):
        ringbuf.max_entries = _ringbuf_size(min(opts.ringbuf_bytes, SMALL_RINGBUF_BYTES))
    # the biggest record must fit (a huge max_strlen): room for two, or none would ever be
    # reserved and every one of them would be "lost"
    largest = max((8 + max((f.offset + f.size for f in ev.args), default=0)
                   for ev in obj.events), default=0)
    if ringbuf.max_entries < 2 * largest:
        ringbuf.max_entries = _ringbuf_size(2 * largest)
