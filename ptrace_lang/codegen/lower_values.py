"""Lowering of values: per-CPU scratch memory for big values, records, ``buf()``, integer-array
casts, ``==``/``!=`` on memory values and division/modulo with bpftrace's zero check.

Big values (strings of a large ``max_strlen``, buffers, tuples holding them) do not fit the
512-byte BPF stack. A value bigger than ``ON_STACK_LIMIT`` bytes gets its slot in ``scratch``,
a per-CPU array of one value, with the same stack discipline as the frame (released after the
statement). The program looks its CPU's scratch value up once, at its start, and keeps the
address in a register; slots are ``(register, offset)`` pairs, so the rest of the lowering
writes through them as it writes through ``r10``. Values still go straight to their final place
(map key slot, ring buffer record) where they can.

A mixin of ``lower.Lowering``.
"""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import FN_MAP_LOOKUP_ELEM, FN_PROBE_READ
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.frame import Frame
from ptrace_lang.codegen.ir import FP, R0, VReg
from ptrace_lang.errors import NO_SPAN, Diagnostic, NotSupportedYet, Span
from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import PROBE, BufT, IntArrayT, IntT, StrT, Type

ON_STACK_LIMIT = 72      # bytes: bigger values live in the per-CPU scratch value (a str() of
#                          the default max_strlen, 64 characters and the NUL, stays on the stack)
SCRATCH_MAP = "scratch"
SCRATCH_LIMIT = 32768    # bytes: the kernel's largest per-CPU value (and 16-bit offsets)
EV_WARNING = S.EV_WARNING
DIV_ZERO_MESSAGE = ("Divide or modulo by 0 detected. This can lead to unexpected results. "
                    "1 is being used as the result.")


class Frames(Frame):
    """The stack frame plus the scratch value, marked and released together."""

    def __init__(self) -> None:
        super().__init__()
        self.sdepth = 0
        self.scratch_max = 0

    def salloc(self, size: int) -> int:
        off = self.sdepth
        self.sdepth += (size + 7) // 8 * 8
        self.scratch_max = max(self.scratch_max, self.sdepth)
        return off

    def mark(self):
        return (self.depth, self.sdepth)

    def release(self, mark) -> None:
        if isinstance(mark, tuple):
            self.depth, self.sdepth = mark
        else:
            self.depth = mark


class ValuesLowering:
    """Methods mixed into ``Lowering`` (``self`` is a ``Lowering``)."""

    _scratch: VReg | None = None
    record_base = None      # the ring buffer record being written (no zero padding needed)

    # ------------------------------------------------------------------ scratch memory
    def alloc_mem(self, size: int, span: Span = NO_SPAN) -> tuple[object, int]:
        """Memory for a value of ``size`` bytes: a stack slot, or a slot of the scratch value."""
        if size <= ON_STACK_LIMIT or not isinstance(self.frame, Frames):
            # (a loop body is a function of its own, with a plain frame: its values stay on the
            # stack, as the scratch address is the probe's)
            return FP, self.frame.alloc(size, span)
        if self._scratch is None:
            self._scratch = self.vreg()
        return self._scratch, self.frame.salloc(size)

    # ------------------------------------------------------------------ &$var
    addr_slots: dict = {}

    def addr_slots_for(self, node: ast.Node) -> dict:
        """A stack slot for every scalar variable whose address ``node`` (a probe, a loop body
        lowered as a function of its own) takes (``&$x``): the variable stays in its register
        and each write is copied into the slot, which the pointer addresses (``*$p`` reads the
        variable's present value). Returns the slots in force before, for the caller to put
        back after a loop body."""
        outer, self.addr_slots = self.addr_slots, {}
        for n in ast.walk(node):
            if (isinstance(n, ast.Unary) and n.op == "&" and isinstance(n.operand, ast.Var)
                    and n.operand.name not in self.addr_slots
                    and not isinstance(self.vars.get(n.operand.name), tuple)):
                self.addr_slots[n.operand.name] = (self.frame, self.frame.alloc(8, n.span))
                if n.operand.name in self.vars:      # a variable passed into a loop body
                    self.sync_var_slot(n.operand.name)
        return outer

    def var_address(self, e: ast.Unary) -> VReg:
        """The value of ``&$x``: the address of the variable's memory."""
        name = e.operand.name
        mem = self.vars.get(name)
        if isinstance(mem, tuple):
            return self.address_of(*mem)
        frame, off = self.addr_slots.get(name, (None, 0))
        if frame is not self.frame:
            raise NotSupportedYet("the address of this variable here", e.span)
        self.sync_var_slot(name)
        return self.address_of(FP, off)

    def sync_var_slot(self, name: str) -> None:
        """After a write to a scalar variable whose address is taken: its slot follows."""
        frame, off = self.addr_slots.get(name, (None, 0))
        if frame is self.frame:
            self.emit(ir.Store(FP, off, self.var_reg(name), 8))

    def assigned_first(self, name: str, probe: ast.Probe) -> bool:
        """Whether the first top-level statement that mentions ``$name`` assigns all of it
        (``$s = ...`` not reading it): then zeroing its memory at the start is wasted."""
        if probe.predicate is not None and _mentions(probe.predicate, name):
            return False
        for s in probe.body.stmts:
            if not _mentions(s, name):
                continue
            if isinstance(s, ast.Assign) and s.op is None and isinstance(s.target, ast.Var):
                return s.target.name == name and not _mentions(s.value, name)
            if isinstance(s, ast.Let) and s.var.name == name and s.value is not None:
                return not _mentions(s.value, name)
            return False
        return False

    def var_as_key(self, ref: ast.MapRef, layout) -> object:
        """``@m[$s]`` with ``$s`` held in memory in exactly the key's layout: the variable's own
        bytes are the key (no copy). Returns a stack offset or an address register, or None."""
        if ref.keys is None or len(ref.keys) != 1:
            return None
        k = ref.keys[0]
        slot = self.vars.get(k.name) if isinstance(k, ast.Var) else None
        if not isinstance(slot, tuple) or k.type != layout.info.key_type:
            return None
        base, off = slot
        return off if base == FP else self.address_of(base, off)

    def address_of(self, base, off: int) -> VReg:
        r = self.vreg()
        self.mov(r, base)
        if off:
            self.emit(ir.Alu("add", r, off))
        return r

    def finish_scratch(self, at: int = 1) -> None:
        """Put the scratch lookup at the start of the program (after ``ctx`` is saved) when any
        slot was handed out: the address is in ``_scratch`` for the whole program."""
        if self._scratch is None:
            return
        body, self.insns = self.insns, []
        saved = self.span
        self.span = None
        key = self.frame.alloc(8)
        self.emit(ir.Store(FP, key, 0, 8))
        self.call(FN_MAP_LOOKUP_ELEM, ("map", SCRATCH_MAP), ("fp", key))
        self.mov(self._scratch, R0)
        self.emit(ir.CondJump("jeq", self._scratch, 0, self.exit_label))
        self.insns = body[:at] + self.insns + body[at:]
        self.span = saved

    # ------------------------------------------------------------------ buf()
    def into_buf(self, e: ast.Call, base, off: int, typ: Type) -> None:
        """buf(src[, n]): a u64 length, then the bytes (zero padded so keys compare exactly)."""
        t: BufT = e.type
        room = typ.length if isinstance(typ, BufT) else t.length
        n = min(t.length, room)
        src = e.args[0]
        if base is not self.record_base:     # keys and comparisons see the bytes past the length
            self.zero_mem(base, off + 8, (room + 7) // 8 * 8)
        if isinstance(src.type, (StrT, IntArrayT)):
            sb, so = self.mem_of(src)
            copy = min((n + 7) // 8 * 8, src.type.size())
            self.copy_mem(base, off + 8, sb, so, copy)
            if copy > n:     # bytes past the length are zero
                self.zero_mem_bytes(base, off + 8 + n, copy - n)
            self.emit(ir.Store(base, off, n, 8))
            return
        ptr = self.scalar(src)
        const_len = self.const_len(e)
        if const_len is not None:
            self.checked_read(FN_PROBE_READ, base, off + 8, n, ptr)
            self.emit(ir.Store(base, off, n, 8))
            return
        ln = self.vreg()
        self.mov(ln, self.scalar(e.args[1]))
        ok = self.label("buflen")
        self.emit(ir.CondJump("jle", ln, n, ok))     # unsigned: a negative length is too big too
        self.mov(ln, n)
        self.emit(ir.Label(ok))
        self.emit(ir.Store(base, off, ln, 8))
        self.checked_read(FN_PROBE_READ, base, off + 8, ln, ptr)

    def const_len(self, e: ast.Call) -> int | None:
        if len(e.args) < 2:
            return e.type.length
        a = e.args[1]
        if isinstance(a, ast.IntLit) or isinstance(a, ast.PositionalParam) or (
                isinstance(a, ast.Unary) and isinstance(a.operand, ast.IntLit)):
            return self.const_value(a)
        return None

    def zero_mem_bytes(self, base, off: int, size: int) -> None:
        for o in range(size):
            self.emit(ir.Store(base, off + o, 0, 1))

    # ------------------------------------------------------------------ integer arrays
    def intarray_into(self, e: ast.Cast, base, off: int, typ: Type) -> None:
        """(uint8[4])x: the integer's bytes (little endian) as the array; (int8[])"abc" and
        (int16[2])arr: the bytes of the string or array."""
        size = e.type.size()
        if isinstance(e.operand.type, (StrT, IntArrayT)):
            sb, so = self.mem_of(e.operand)
            n = min(size, e.operand.type.size())
            self.copy_mem(base, off, sb, so, n)
            if n < size:
                self.zero_mem(base, off + n, size - n)
            return
        v = self.scalar(e.operand)
        self.zero_mem(base, off, size)
        nbytes = e.type.elem.bits // 8 * e.type.count
        for w in (8, 4, 2, 1):
            if nbytes >= w:
                self.emit(ir.Store(base, off, v, w))
                break

    def intarray_element(self, e: ast.Index) -> VReg:
        t: IntArrayT = e.base.type
        if isinstance(t, StrT):            # $s[i]: a char
            t = IntArrayT(IntT(8, True), t.size())
        sb, so = self.mem_of(e.base)
        width = t.elem.bits // 8
        out = self.vreg()
        self.emit(ir.Load(out, sb, so + e.array_index * width, width))
        if t.elem.signed and width < 8:
            shift = 64 - 8 * width
            self.emit(ir.Alu("lsh", out, shift))
            self.emit(ir.Alu("arsh", out, shift))
        return out

    def intarray_to_int(self, e: ast.Cast) -> VReg:
        """(uint32)arr: the array's bytes read back as one integer; (bool)str: whether the
        string is not empty."""
        sb, so = self.mem_of(e.operand)
        if isinstance(e.operand.type, StrT):
            first = self.vreg()
            self.emit(ir.Load(first, sb, so, 1))
            return self.truncate(first, e.type)
        nbytes = e.operand.type.elem.bits // 8 * e.operand.type.count
        out = self.vreg()
        self.emit(ir.Load(out, sb, so, nbytes if nbytes in (1, 2, 4, 8) else 8))
        if isinstance(e.type, IntT) and e.type.signed and nbytes < 8:
            shift = 64 - 8 * nbytes
            self.emit(ir.Alu("lsh", out, shift))
            self.emit(ir.Alu("arsh", out, shift))
        return out

    # ------------------------------------------------------------------ == / != on memory
    def memory_compare(self, e: ast.Binary, false_label: str) -> None:
        """Strings, tuples, buffers and integer arrays compare byte for byte (all are zero padded
        to their slots); both sides are laid out in the wider of the two types."""
        from ptrace_lang.sema.types import widen

        lt, rt = e.left.type, e.right.type
        if isinstance(lt, StrT):
            self.string_equal(e, false_label)
            return
        typ = widen(lt, rt)
        size = typ.size()
        mark = self.frame.mark()
        la, lo = self.alloc_mem(size, e.span)
        self.expr_into(e.left, la, lo, typ)
        lb, lbo = self.alloc_mem(size, e.span)
        self.expr_into(e.right, lb, lbo, typ)
        differ = false_label if e.op == "==" else self.label("memne")
        a, b = self.vreg(), self.vreg()
        for o in range(0, size, 8):
            self.emit(ir.Load(a, la, lo + o, 8))
            self.emit(ir.Load(b, lb, lbo + o, 8))
            self.emit(ir.CondJump("jne", a, b, differ))
        if e.op == "!=":
            self.emit(ir.Jump(false_label))
            self.emit(ir.Label(differ))
        self.frame.release(mark)

    def probe_name_compare(self, e: ast.Binary, false_label: str) -> None:
        """``probe == "name"``: the probe's id against the ids of this program's probes that
        have that name (known when compiling; begin/end match either case)."""
        probe, lit = (e.left, e.right) if e.left.type == PROBE else (e.right, e.left)
        names = getattr(self, "probe_id_names", None) or []

        def same(pid: int) -> bool:
            name = names[pid] if pid < len(names) else ""
            if name.lower() in ("begin", "end"):
                return name.lower() == lit.value.lower()
            return name == lit.value

        ids = [pid for pid in self.probe_ids if same(pid)]
        v = self.scalar(probe)
        equal = self.label("probeq")
        for pid in ids:
            self.emit(ir.CondJump("jeq", v, pid, equal))
        if e.op == "==":
            self.emit(ir.Jump(false_label))
            self.emit(ir.Label(equal))
        else:
            done = self.label("probene")
            self.emit(ir.Jump(done))
            self.emit(ir.Label(equal))
            self.emit(ir.Jump(false_label))
            self.emit(ir.Label(done))

    def string_equal(self, e: ast.Binary, false_label: str) -> None:
        """Two strings are equal when their words agree up to the shorter buffer's end: both are
        zero-padded after their NUL, and the shorter one's NUL is inside its buffer. A literal
        side is compared as constants, a variable in place; nothing is copied to compare."""
        mark = self.frame.mark()
        sides = []
        for x in (e.left, e.right):
            if isinstance(x, ast.StrLit):
                data = x.value.encode("utf-8", "surrogateescape") + b"\0"
                sides.append(data.ljust((len(data) + 7) // 8 * 8, b"\0"))
            else:
                sides.append(self.mem_of(x))
        size = min(len(s) if isinstance(s, bytes) else t.size()
                   for s, t in zip(sides, (e.left.type, e.right.type)))
        differ = false_label if e.op == "==" else self.label("strne")
        if isinstance(sides[0], bytes) and isinstance(sides[1], bytes):
            if (sides[0].rstrip(b"\0") == sides[1].rstrip(b"\0")) != (e.op == "=="):
                self.emit(ir.Jump(false_label))
            self.frame.release(mark)
            return
        if isinstance(sides[0], bytes):
            sides.reverse()
        a, b = self.vreg(), self.vreg()
        for o in range(0, size, 8):
            self.emit(ir.Load(a, sides[0][0], sides[0][1] + o, 8))
            if isinstance(sides[1], bytes):
                word = int.from_bytes(sides[1][o:o + 8], "little", signed=True)
                if -(1 << 31) <= word < (1 << 31):
                    self.emit(ir.CondJump("jne", a, word, differ))
                    continue
                self.emit(ir.LoadImm64(b, word & ((1 << 64) - 1)))
            else:
                self.emit(ir.Load(b, sides[1][0], sides[1][1] + o, 8))
            self.emit(ir.CondJump("jne", a, b, differ))
        if e.op == "!=":
            self.emit(ir.Jump(false_label))
            self.emit(ir.Label(differ))
        self.frame.release(mark)

    # ------------------------------------------------------------------ / and %
    def divide(self, name: str, out: VReg, b, signed: bool, span: Span | None) -> None:
        """out = out / b (or %): by a register that may be zero, the result is 1 and a warning
        is printed, as the newest bpftrace does. Signed operands divide as C does (toward zero)."""
        if isinstance(b, int):
            self.div_op(name, out, b, signed)
            return
        zero, done = self.label("divzero"), self.label("divdone")
        self.emit(ir.CondJump("jeq", b, 0, zero))
        self.div_op(name, out, b, signed)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(zero))
        self.mov(out, 1)
        self.warning(DIV_ZERO_MESSAGE, span)
        self.emit(ir.Label(done))

    def div_op(self, name: str, out: VReg, b, signed: bool) -> None:
        if not signed:
            self.emit(ir.Alu(name, out, b))
            return
        if self.target.sdiv:
            self.emit(ir.Alu("s" + name, out, b))
            return
        # kernels before 6.6 have no signed division: divide the magnitudes, then fix the sign
        # (quotient negative when the signs differ, remainder has the dividend's sign)
        neg_a, neg_r = self.vreg(), self.vreg()
        self.mov(neg_a, out)
        self.emit(ir.Alu("rsh", neg_a, 63))
        bb = self.vreg()
        self.mov(bb, b)
        for r, neg in ((out, neg_a), (bb, None)):
            pos = self.label("abs")
            self.emit(ir.CondJump("jsge", r, 0, pos))
            self.emit(ir.Alu("neg", r))
            self.emit(ir.Label(pos))
        self.emit(ir.Alu(name, out, bb))
        self.mov(neg_r, neg_a)
        if name == "div" and isinstance(b, int):
            if b < 0:
                self.emit(ir.Alu("xor", neg_r, 1))
        elif name == "div":
            sb = self.vreg()
            self.mov(sb, b)
            self.emit(ir.Alu("rsh", sb, 63))
            self.emit(ir.Alu("xor", neg_r, sb))
        keep = self.label("sign")
        self.emit(ir.CondJump("jeq", neg_r, 0, keep))
        self.emit(ir.Alu("neg", out))
        self.emit(ir.Label(keep))

    # ------------------------------------------------------------------ located warnings
    def warning(self, message: str, span: Span | None) -> None:
        """A record that makes user space print ``file:L:C-E: WARNING: message`` (rendered now,
        with its source line, so a cached program prints it the same)."""
        from ptrace_lang.errors import render

        text = render(Diagnostic(message, span or NO_SPAN, [], "WARNING")) + "\n"
        ev_id = len(self.events)
        self.events.append(S.EventSpec(EV_WARNING, text, [], span or NO_SPAN))
        rec = self.reserve(S.RECORD_HEADER)
        self.header(rec, EV_WARNING, ev_id)
        self.submit(rec)


def str_field(t: StrT, off: int, name: str = "", trailer: str = "..") -> S.Field:
    """A string's layout for the runtime; a string read from memory (str(), a tracepoint's
    string) carries its length and the trailer printed after it when it filled its buffer."""
    if t.trunc and trailer:
        return S.Field("str", off, t.size(), name=name, aux=(t.length, trailer))
    return S.Field("str", off, t.size(), name=name)


def _mentions(node: ast.Node, name: str) -> bool:
    return any(isinstance(n, ast.Var) and n.name == name for n in ast.walk(node))
