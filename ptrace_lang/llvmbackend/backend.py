"""``driver.compile_group`` for ``Options.backend == "llvm"``: one group of a probe's targets
lowered to LLVM IR, compiled by LLVM, and added to the ObjectSpec as the direct backend adds
it (program names, probe ids, attachments, provider load attributes)."""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.bpf import uapi as U
from ptrace_lang.errors import SOURCES
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported

KNOWN_LOWERING_OPTIONS = ("arg_offsets", "retval_offset")


def compile_group(obj: S.ObjectSpec, layouts: dict, sema, probe, pi: int, gi: int, group: tuple,
                  opts, target, stages: dict, user_map_index: dict | None = None) -> int:
    """``user_map_index``: as driver.compile_group's (made once per compile; here when not
    given)."""
    from ptrace_lang.bpf.disasm import disassemble
    from ptrace_lang.bpf.insn import encode
    from ptrace_lang.llvmbackend.compile import compile_module
    from ptrace_lang.llvmbackend.debug import spans_of
    from ptrace_lang.llvmbackend.lower import Lowering

    prov, targets, ctx = group
    if prov.program_per_target or prov.prog_type_name == "BPF_PROG_TYPE_TRACING":
        raise unsupported(f"the probe type '{prov.name}'", probe.attach_points[0].span)
    lopts = prov.lowering_options(targets[0])
    for k in lopts:
        if k not in KNOWN_LOWERING_OPTIONS:
            raise unsupported(f"the probe type '{prov.name}'", probe.attach_points[0].span)
    if user_map_index is None:
        user_map_index = {um.name: i for i, um in enumerate(obj.user_maps)}
    var_types = sema.retype(probe, ctx)
    probe_ids = []
    for t in targets:
        probe_ids.append(len(obj.probe_names))
        obj.probe_names.append(t.probe_name)
    low = Lowering(maps=layouts, events=obj.events, user_map_index=user_map_index,
                   args=ctx.args, probe_ids=probe_ids, positional=opts.positional,
                   var_types=var_types, max_strlen=opts.max_strlen,
                   uses_cookie=len(targets) > 1 and not prov.runs_by_test_run,
                   cpid=opts.cpid, target=target, str_trunc_trailer=opts.str_trunc_trailer,
                   arg_offsets=getattr(prov, "arg_offsets", None),
                   retval_offset=getattr(prov, "retval_offset", 0), **{"extra_options": lopts})
    for k, v in lopts.items():
        setattr(low, k, v)
    module = low.lower_probe(probe)
    for sname, vsize in low.stack_maps.items():       # kstack/ustack
        if not any(m.name == sname for m in obj.maps):
            obj.maps.append(S.MapSpec(sname, U.BPF_MAP_TYPE_STACK_TRACE, 4, vsize,
                                      opts.max_map_keys))
    if "types" in opts.stages and gi == 0:
        stages["types"].append(ast.dump(probe) + "\n")
    name = f"p{pi}_{gi}_{prov.name}"[:15]
    dumps: dict = {}
    cpu = "v4" if target.sdiv else "v3"
    insns, relocs, functions, lines = compile_module(module, probe.span, cpu, dumps)
    if functions:
        low.check_stack(insns, functions, probe.span)
    if "llvm-ir" in opts.stages:
        stages.setdefault("llvm-ir", []).append(
            f"; program {name}: {targets[0].probe_name}\n{dumps['llvm-ir'].rstrip()}")
    spans = spans_of(len(insns), lines, low.debug.spans, probe.span)
    ps = S.ProgramSpec(name, getattr(U, prov.prog_type_name), encode(insns), relocs, spans)
    if functions:           # callbacks: the verifier wants their BTF and func_info
        from ptrace_lang.bpf import funcbtf

        ps.functions = functions
        ps.func_btf, type_ids = funcbtf.func_btf([(name, 1)] + [(n, k) for _, n, k in functions])
        ps.func_info = funcbtf.func_info([0] + [start for start, _, _ in functions], type_ids)
    if "asm" in opts.stages:
        ps.asm = disassemble(insns, spans, SOURCES.line, dict(relocs),
                             functions={start: n for start, n, _ in functions})
        stages["asm"].append(f"; program {name}: {targets[0].probe_name}\n{ps.asm}")
    S.set_program_attrs(ps, prov.program_attrs(targets[0]))
    obj.programs.append(ps)
    for t, pid in zip(targets, probe_ids):
        obj.attachments.append(S.AttachSpec(t.provider, name, t.target, pid, t.probe_name,
                                            probe.attach_points[0].span))
    return 0
