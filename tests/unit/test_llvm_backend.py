"""The llvm backend (llvmbackend/) without a kernel: scripts compiled for the recorded machine
give programs whose map relocations name the maps the direct backend's name, the same events
and user maps (the ObjectSpec contract the runtime reads); constructs it lacks are located
errors naming them; and the default path never imports llvmlite or pyelftools."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ptrace_lang import spec as S
from ptrace_lang.bpf import opcodes as op
from ptrace_lang.bpf import uapi as U
from ptrace_lang.bpf.insn import decode
from ptrace_lang.driver import Options, compile_script
from ptrace_lang.errors import CompileError

sys.path.insert(0, str(Path(__file__).parent))
from recorded_machine import recorded_machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def test_the_default_path_never_imports_llvmlite():
    code = ("import sys; sys.path.insert(0, 'tests/unit')\n"
            "from recorded_machine import recorded_machine\n"
            "from ptrace_lang.driver import Options, compile_script\n"
            "compile_script('tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); "
            "printf(\"%d\\\\n\", pid); }', 'x.bt', Options(stages=('asm',)), recorded_machine())\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('llvmlite', 'elftools')"
            " or m.startswith('ptrace_lang.llvmbackend')]\n"
            "assert not bad, bad\n")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


REASON = "llvmlite is not installed (pip install 'ptrace-lang[llvm]'): the llvm backend is not tested"
llvmlite = pytest.importorskip("llvmlite", reason=REASON)
pytest.importorskip("elftools", reason="pyelftools is not installed: the llvm backend reads "
                                       "its ELF objects with it")

ONE_LINERS = [
    "tracepoint:syscalls:sys_enter_getppid { @[comm] = count(); }",
    "tracepoint:syscalls:sys_enter_read { @bytes = hist(args.count); }",
    "tracepoint:syscalls:sys_enter_getppid { @s = sum(pid); @a = avg(pid); }",
    'tracepoint:syscalls:sys_enter_getppid { printf("%d %s\\n", pid, comm); }',
    'tracepoint:syscalls:sys_enter_getppid { printf("first\\n"); exit(); }',
    'tracepoint:syscalls:sys_enter_openat /pid > 1/ { @[comm, str(args.filename)] = count(); '
    '@m = max(args.flags); @n = min(args.flags); @l = lhist(args.mode, 0, 100, 10); }',
    'BEGIN { $x = 7; if ($x % 2 == 1) { printf("odd %d\\n", $x / 2); } else { exit(); } '
    '@t[1, "a"] = 3; @t[1, "a"] += 2; @u++; time("%H\\n"); print(@t); clear(@t); }',
]


def both(text: str):
    direct = compile_script(text, "x.bt", Options(), recorded_machine()).spec
    llvm = compile_script(text, "x.bt", Options(backend="llvm"), recorded_machine()).spec
    return direct, llvm


@pytest.mark.parametrize("text", ONE_LINERS)
def test_same_object_contract(text):
    direct, llvm = both(text)
    # (the direct backend keeps big temporaries in a per-CPU "scratch" map; LLVM on the stack)
    assert [m.name for m in llvm.maps] == [m.name for m in direct.maps if m.name != "scratch"]
    assert llvm.user_maps == direct.user_maps
    assert [(e.kind, e.fmt, e.args) for e in llvm.events] == \
        [(e.kind, e.fmt, e.args) for e in direct.events]
    assert [(p.name, p.prog_type) for p in llvm.programs] == \
        [(p.name, p.prog_type) for p in direct.programs]
    assert llvm.attachments == direct.attachments
    for dp, lp in zip(direct.programs, llvm.programs):
        assert {n for _, n in lp.map_relocs} == {n for _, n in dp.map_relocs} - {"scratch"}
        insns = decode(lp.insns)
        assert len(lp.spans) == len(insns)
        for i, name in lp.map_relocs:       # every relocation is a map load the loader patches
            assert insns[i].is_ld_imm64 and insns[i].src in (op.BPF_PSEUDO_MAP_FD,
                                                              op.BPF_PSEUDO_MAP_VALUE)
        loads = [i for i, x in enumerate(insns) if x.is_ld_imm64 and x.src]
        assert loads == [i for i, _ in lp.map_relocs]


def test_counters_are_map_value_loads():
    _, llvm = both("tracepoint:syscalls:sys_enter_getppid { @[pid] = count(); }")
    p = llvm.programs[0]
    insns = decode(p.insns)
    vals = [(insns[i].src, insns[i + 1].imm) for i, n in p.map_relocs if n == "counters"]
    assert vals == [(op.BPF_PSEUDO_MAP_VALUE, 8 * S.COUNTER_MAP_FULL)]


def test_dumps_llvm_ir_and_asm():
    c = compile_script("tracepoint:syscalls:sys_enter_getppid { @ = count(); }", "x.bt",
                       Options(backend="llvm", stages=("llvm-ir", "asm")), recorded_machine())
    assert "section \"ptrace/prog\"" in c.dumps["llvm-ir"]
    assert "inttoptr (i64 1 to ptr)" in c.dumps["llvm-ir"]      # bpf_map_lookup_elem
    assert "call bpf_map_lookup_elem" in c.dumps["asm"]


@pytest.mark.parametrize("text, construct", [
    ("BEGIN { for ($i : 0..3) { printf(\"%d\\n\", $i); } }", None),
    ("BEGIN { @x = stats(1); }", None),
    ("BEGIN { printf(\"%s\\n\", kstack); }", None),
    ("BEGIN { $s = strftime(\"%H\", nsecs); print($s); }", None),
    ("kprobe:do_nanosleep { printf(\"%d\\n\", ((struct task_struct *)arg0)->pid); }", None),
    ("BEGIN { @m[1] = 1; for ($kv : @m) { print($kv); } }", None),
    ("BEGIN { @x = tseries(5, 1s, 10); @m[1] = 1; print(len(@m)); }", None),
    ("BEGIN { print(len(kstack)); }", "len() of a stack"),
])
def test_unsupported_constructs_are_located_errors(text, construct):
    if construct is None:         # supported: must compile
        both(text)
        return
    with pytest.raises(CompileError) as ei:
        compile_script(text, "x.bt", Options(backend="llvm"), recorded_machine())
    assert f"{construct} is not supported by the llvm backend" in ei.value.message
    assert ei.value.span.line == 1


def stack_depth(prog) -> int:
    """The deepest byte below r10 the program's stores and loads reach."""
    deepest = 0
    for ins in decode(prog.insns):
        cls = ins.opcode & 7
        if cls in (op.BPF_STX, op.BPF_ST) and ins.dst == 10 or cls == op.BPF_LDX and ins.src == 10:
            deepest = min(deepest, ins.off)
    return -deepest


def test_statements_share_their_temporaries_stack():
    """capable.bt's BEGIN stores 41 strings into a map: each statement's key and value slots
    are reused by the next statement (LLVM alone kept all 41 pairs: over 512 bytes)."""
    text = "BEGIN {\n" + "".join(f'  @name[{i}] = "CAP_{i:02d}_{"X" * 20}";\n'
                                 for i in range(41)) + "}\n"
    _, llvm = both(text)
    assert 0 < stack_depth(llvm.programs[0]) <= 128



def test_map_loop_is_a_callback_with_func_info():
    """for ($kv : @m): the body is a second function of the section, its address a
    BPF_PSEUDO_FUNC load pointing at it, and it has BTF and func_info as the direct
    backend's callbacks."""
    _, llvm = both("BEGIN { @m[1] = 2; $t = 0; for ($kv : @m) { $t += $kv.1; } print($t); }")
    p = llvm.programs[0]
    insns = decode(p.insns)
    assert [(n, k) for _, n, k in p.functions] == [("for_each_0", 4)]
    start = p.functions[0][0]
    funcs = [i for i, x in enumerate(insns) if x.is_ld_imm64 and x.src == op.BPF_PSEUDO_FUNC]
    assert len(funcs) == 1 and funcs[0] + 1 + insns[funcs[0]].imm == start
    assert insns[start - 1].opcode in (op.BPF_JMP | op.BPF_EXIT, op.BPF_JMP | op.BPF_JA)
    assert p.func_btf and len(p.func_info) == 2 * 8


def test_instructions_carry_their_statements_spans():
    """LLVM's line table (debug locations per statement) gives each instruction the span of
    the statement it came from, as the direct backend's spans do (verifier rejections and
    -d asm name the script line): the map update of line 2, the ring buffer record of line 3,
    the predicate's pid of line 1; a callback's body its own lines."""
    text = ("tracepoint:syscalls:sys_enter_getppid /pid > 1/ {\n"
            "  @a[tid] = 1;\n"
            "  printf(\"%d\\n\", cpu);\n"
            "  for ($kv : @a) {\n"
            "    @b = $kv.1; }\n"
            "}\n")
    _, llvm = both(text)
    p = llvm.programs[0]
    insns = decode(p.insns)

    def lines_of(helper, lo=0, hi=None):
        return {p.spans[i].line for i, x in enumerate(insns[:hi], 0) if i >= lo and
                x.opcode == op.BPF_JMP | op.BPF_CALL and x.src == 0 and x.imm == helper}

    start = p.functions[0][0]
    assert lines_of(U.FN_GET_CURRENT_PID_TGID, hi=start) == {1, 2}
    assert lines_of(U.FN_MAP_UPDATE_ELEM, hi=start) == {2}
    assert lines_of(U.FN_RINGBUF_RESERVE, hi=start) == {3}
    assert lines_of(U.FN_FOR_EACH_MAP_ELEM, hi=start) == {4}
    assert lines_of(U.FN_MAP_UPDATE_ELEM, lo=start) == {5}


def test_loop_bodies_over_the_stack_are_a_located_error():
    """A probe and a loop body whose frames together pass 512 bytes (the verifier's check of
    a chain of calls, which names no instruction): a located error at the loop."""
    text = ("BEGIN {\n  @m[1] = 1;\n"
            "  $a = str(nsecs); $b = str(nsecs); $c = str(nsecs); $d = str(nsecs); $e = str(nsecs);\n"
            "  for ($kv : @m) {\n"
            "    $p = str(nsecs); $q = str(nsecs); $r = str(nsecs); $s = str(nsecs); $t = str(nsecs);\n"
            "    printf(\"%s %s %s %s %s\\n\", $p, $q, $r, $s, $t);\n  }\n"
            "  printf(\"%s %s %s %s %s\\n\", $a, $b, $c, $d, $e);\n}\n")
    with pytest.raises(CompileError) as ei:
        compile_script(text, "x.bt", Options(backend="llvm"), recorded_machine())
    assert "with its loop bodies needs" in ei.value.message and "more than BPF's 512" in \
        ei.value.message
    assert ei.value.span.line == 4
    # with strings half as long it fits
    compile_script("config = { max_strlen = 32 }\n" + text, "x.bt", Options(backend="llvm"),
                   recorded_machine())
