"""``FlowLowering``, a mixin of ``llvmbackend.lower.Lowering``: loops, block expressions,
``let`` and records.

``while`` and ``for ($i : a..b)`` are plain LLVM loops (the verifier proves them bounded; the
direct backend runs a range's body as a bpf_loop callback instead, with the same result: the
bounds are computed once, the probe's variables are the body's, the body's own variables start
afresh in each iteration). ``break``/``continue`` branch to the innermost loop's exit/latch.
``for ($kv : @map)`` needs a callback (bpf_for_each_map_elem) and stays unsupported here.
"""
from __future__ import annotations

from ptrace_lang.codegen.lower import is_scalar
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend import unsupported
from ptrace_lang.llvmbackend.irbase import c64
from ptrace_lang.sema.types import StrT, TupleT, Type, c_layout


class FlowLowering:
    def var_slot(self, name: str, typ: Type):
        """The stack slot of variable ``name`` (made on first use, as a loop's own variable)."""
        slot = self.vars.get(name)
        if slot is None:
            if not (is_scalar(typ) or hasattr(typ, "size")):
                raise unsupported(f"a variable of type '{typ}' (${name.lstrip('$')})", self.span)
            slot = self.vars[name] = self.alloca(8 if is_scalar(typ) else typ.size(),
                                                     permanent=True)
            self.var_types.setdefault(name, typ)
        return slot

    def clear_var(self, name: str) -> None:
        typ = self.var_types.get(name)
        if name in self.vars and typ is not None:
            self.zero(self.vars[name], 0, 8 if is_scalar(typ) else typ.size())

    def loop(self, cond_fn, body: ast.Block, step_fn=None, fresh=()) -> None:
        """while cond_fn(): body; step_fn() -- ``continue`` goes to the step."""
        head = self.fn.append_basic_block("loop")
        latch = self.fn.append_basic_block("latch")
        end = self.fn.append_basic_block("endloop")
        self.b.branch(head)
        self.b.position_at_end(head)
        nxt = self.fn.append_basic_block("loopbody")
        self.b.cbranch(cond_fn(), nxt, end)
        self.b.position_at_end(nxt)
        for name in fresh:
            self.clear_var(name)
        self.loops.append((latch, end))
        self.block(body)
        self.loops.pop()
        if not self.b.block.is_terminated:
            self.b.branch(latch)
        self.b.position_at_end(latch)
        if step_fn is not None:
            step_fn()
        self.b.branch(head)
        self.b.position_at_end(end)

    def lower_While(self, s: ast.While) -> None:
        self.loop(lambda: self.cond(s.cond), s.body)

    def lower_ForRange(self, s: ast.ForRange) -> None:
        start, end = self.scalar(s.start), self.scalar(s.end)
        for name in s.body_locals:
            if name in self.var_types:
                self.var_slot(name, self.var_types[name])
        i = self.var_slot(s.var.name, s.var.type)
        self.store(i, 0, start)
        self.loop(lambda: self.b.icmp_signed("<", self.load(i, 0), end), s.body,
                  lambda: self.store(i, 0, self.b.add(self.load(i, 0), c64(1))),
                  fresh=sorted(s.body_locals))

    def lower_Break(self, s: ast.Break) -> None:
        self.b.branch(self.loops[-1][1])

    def lower_Continue(self, s: ast.Continue) -> None:
        self.b.branch(self.loops[-1][0])

    def lower_Let(self, s: ast.Let) -> None:
        if s.value is not None:
            self.assign_var(s.var, s.value)
        else:
            self.clear_var(s.var.name)

    # ------------------------------------------------------------------ block expressions
    def block_stmts(self, e: ast.BlockExpr) -> None:
        self.block(ast.Block(e.stmts, span=e.span))

    def scalar_BlockExpr(self, e: ast.BlockExpr):
        self.block_stmts(e)
        return self.scalar(e.value)

    def into_node_BlockExpr(self, e: ast.BlockExpr, base, off: int, typ, in_record) -> None:
        self.block_stmts(e)
        self.into(e.value, base, off, typ, in_record)

    # ------------------------------------------------------------------ tuples and records
    def into_node_RecordExpr(self, e: ast.RecordExpr, base, off: int, typ, in_record) -> None:
        dst = typ if isinstance(typ, TupleT) and typ.names else e.type
        offs = dst.offsets()
        for name, value in e.fields:        # in source order: values have side effects
            i = dst.names.index(name)
            self.into(value, base, off + offs[i], dst.elems[i], in_record)

    def tuple_copy(self, base, off: int, dst: TupleT, src, soff: int, st: TupleT) -> None:
        """A tuple/record held in memory copied into the layout ``dst`` (records by name),
        element by element in the C layout of each (TuplesLowering)."""
        if dst == st:
            self.copy_exact(base, off, src, soff, dst.size())
            return
        soffs = st.offsets()
        for i, (dt, (do, span)) in enumerate(zip(dst.elems, dst.spans())):
            j = st.names.index(dst.names[i]) if dst.names and st.names else i
            et, so = st.elems[j], soffs[j]
            if isinstance(dt, TupleT) and isinstance(et, TupleT):
                self.tuple_copy(base, off + do, dt, src, soff + so, et)
                self.pad_exact(base, off + do + dt.size(), span - dt.size())
            elif is_scalar(dt) and is_scalar(et):
                self.elem_store(self.elem_load(src, soff + so, et), base, off + do, dt, span)
            elif isinstance(dt, StrT) and isinstance(et, StrT) or dt.size() == et.size():
                n = min(c_layout(dt)[0], c_layout(et)[0], span)
                self.copy_exact(base, off + do, src, soff + so, n)
                self.pad_exact(base, off + do + n, span - n)
            else:
                raise unsupported(f"a tuple converted from '{st}' to '{dst}'", self.span)

