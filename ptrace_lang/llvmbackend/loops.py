"""``LoopsLowering``, a mixin of ``llvmbackend.lower.Lowering``: ``for ($kv : @map)`` as a
bpf_for_each_map_elem callback, a second LLVM function in the program's section.

The caller passes a context struct on its stack (as the direct backend, codegen/lower_loops.py,
with addresses instead of copies):

    +0   the probe's context pointer
    +8   a flag the callback raises when the body returns from the probe (return, exit())
    +16  the address of each probe variable the body uses (8 bytes each)

so the body reads and writes the probe's variables in place (the verifier follows a pointer to
the caller's stack kept in it). The body's own variables (sema's body_locals) live in the
callback's frame, zeroed for each element. The callback returns 0 for the next element, 1 to
stop (``break``, or a return from the probe, after which the caller returns too).
compile.py turns the callback's address (an ld_imm64 relocated against its symbol) into a
BPF_PSEUDO_FUNC load and lists the function for its BTF func_info.
"""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang.bpf import opcodes as op
from ptrace_lang.bpf import uapi as U
from ptrace_lang.codegen.lower_loops import used_vars
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.errors import CompileError
from ptrace_lang.llvmbackend.irbase import FUNCTION, I64, PTR, SECTION, c64

CTX_OFF, FLAG_OFF, VARS_OFF = 0, 8, 16
STACK_LIMIT = 512
STATE = ("fn", "b", "ab", "allocas", "ctx", "vars", "exit_block", "loops", "free_slots",
         "live_slots", "scope")


class LoopsLowering:
    def lower_ForMap(self, s: ast.ForMap) -> None:
        layout = self.maps["@" + s.map.name]
        used, _ = used_vars(s.body)
        passed = [n for n in sorted(used) if n in self.vars and n != s.var.name
                  and n not in s.body_locals]
        cs = self.alloca(VARS_OFF + 8 * len(passed))
        self.store(cs, CTX_OFF, self.b.ptrtoint(self.ctx, I64))
        self.store(cs, FLAG_OFF, 0)
        for i, name in enumerate(passed):
            self.store(cs, VARS_OFF + 8 * i, self.b.ptrtoint(self.vars[name], I64))
        cb = self.callback(s, layout, passed)
        self.call(U.FN_FOR_EACH_MAP_ELEM, I64, self.map_ref(layout.kernel_name), cb, cs, c64(0))
        self.next_if(self.b.icmp_unsigned("==", self.load(cs, FLAG_OFF), c64(0)),
                     self.exit_block)

    def callback(self, s: ast.ForMap, layout, passed: list[str]) -> ir.Function:
        n = sum(1 for f in self.module.functions if f.name.startswith("for_each_"))
        fn = ir.Function(self.module, ir.FunctionType(I64, [PTR] * 4), f"for_each_{n}")
        self.callers[fn.name] = (self.fn.name, s.span)
        fn.linkage = "internal"
        fn.section = SECTION
        saved = {k: getattr(self, k) for k in STATE}
        try:
            self.fn = fn
            self.scope = self.debug.subprogram(fn)
            self.allocas = fn.append_basic_block("allocas")
            self.ab = ir.IRBuilder(self.allocas)
            self.b = ir.IRBuilder(fn.append_basic_block("entry"))
            self.b.debug_metadata = self.debug.location(self.scope, s.span)
            self.free_slots, self.live_slots, self.loops = {}, [], []
            _map, key, value, cs = fn.args
            self.ctx = self.b.inttoptr(self.load(cs, CTX_OFF), PTR)
            self.vars = {name: self.b.inttoptr(self.load(cs, VARS_OFF + 8 * i), PTR)
                         for i, name in enumerate(passed)}
            for name in sorted(s.body_locals):
                if name in self.var_types:
                    self.var_slot(name, self.var_types[name])
                    self.clear_var(name)
            kv = self.var_slot(s.var.name, s.var.type)
            kt, vt = s.var.type.elems
            ko, vo = s.var.type.offsets()
            self.copy(kv, ko, key, 0, kt.size())
            if layout.agg is not None:
                self.store(kv, vo, self.agg_value(layout, key))
            else:
                self.copy(kv, vo, value, 0, vt.size())
            blocks = [fn.append_basic_block(n) for n in ("next", "stop", "leave")]
            self.exit_block = blocks[2]
            self.loops = [(blocks[0], blocks[1])]
            self.block(s.body)
            if not self.b.block.is_terminated:
                self.b.branch(blocks[0])
            for blk, rv in zip(blocks, (0, 1, 1)):
                self.b.position_at_end(blk)
                if blk is blocks[2]:
                    self.store(cs, FLAG_OFF, 1)
                self.b.ret(c64(rv))
            self.ab.branch(fn.basic_blocks[1])
        finally:
            for k, v in saved.items():
                setattr(self, k, v)
        return fn

    def check_stack(self, insns: list, functions: list, span) -> None:
        """The verifier adds up the frames of a chain of calls (the probe, a loop body, a loop
        inside it), each rounded up to 32 bytes, against BPF's 512: a located error here
        rather than the verifier's unlocated one."""
        starts = [0] + [start for start, _, _ in functions] + [len(insns)]
        names = [FUNCTION] + [name for _, name, _ in functions]
        chain: dict[str, int] = {}
        for name, lo, hi in zip(names, starts, starts[1:]):
            depth = frame_depth(insns[lo:hi])
            caller, where = self.callers.get(name, (None, span))
            chain[name] = (depth + 31) // 32 * 32 + chain.get(caller, 0)
            if chain[name] > STACK_LIMIT:
                raise CompileError(f"The probe with its loop bodies needs {chain[name]} bytes "
                                   f"of stack, more than BPF's {STACK_LIMIT}", where,
                                   hints=["use shorter strings (config max_strlen) or fewer "
                                          "string values in a loop's body"])

    def call_len(self, e: ast.Call) -> ir.Value:
        """len(@map): the number of entries, which bpf_for_each_map_elem returns (with a
        callback that only continues)."""
        ref = e.args[0]
        if not isinstance(ref, ast.MapRef):
            raise unsupported("len() of a stack", e.span)
        layout = self.maps["@" + ref.name]
        if layout.info.key_type is None:
            return c64(1)
        fn = self.module.globals.get("count_elems")
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(I64, [PTR] * 4), "count_elems")
            self.callers[fn.name] = (self.fn.name, e.span)
            fn.linkage = "internal"
            fn.section = SECTION
            ir.IRBuilder(fn.append_basic_block("entry")).ret(c64(0))
        return self.call(U.FN_FOR_EACH_MAP_ELEM, I64, self.map_ref(layout.kernel_name), fn,
                         ir.Constant(PTR, None), c64(0))


def frame_depth(insns: list) -> int:
    """The deepest byte below r10 a function reaches: loads and stores through r10, and the
    addresses LLVM computes as ``rX = r10; rX += -N`` for helpers."""
    deepest = 1
    for prev, x in zip([None] + insns, insns):
        cls = x.opcode & 7
        if cls in (op.BPF_ST, op.BPF_STX) and x.dst == 10 or cls == op.BPF_LDX and x.src == 10:
            deepest = max(deepest, -x.off)
        elif (x.opcode == op.BPF_ALU64 | op.BPF_ADD | op.BPF_K and prev is not None
              and prev.opcode == op.BPF_ALU64 | op.BPF_MOV | op.BPF_X and prev.src == 10
              and prev.dst == x.dst):
            deepest = max(deepest, -x.imm)
    return deepest
