"""Lowering of the string, network and miscellaneous functions and of the builtins
``username jiffies ncpus numaid usermode`` and ``nsecs(clock)`` (see sema/fn_funcs.py).

``FuncsLowering`` is a base of ``codegen.lower.Lowering``: ``call_<name>`` returns a scalar in
a register, ``into_<name>`` writes a value in memory, ``stmt_<name>`` is a statement,
``builtin_<name>`` a builtin variable.

String scans are unrolled over the string's buffer (its type's length), except a search for a
needle that is not a literal, which is a bounded loop over stack offsets (the verifier walks
its iterations).
"""
from __future__ import annotations

from ptrace_lang import spec as S
from ptrace_lang.bpf.uapi import (
    AF_INET, AF_INET6, FN_D_PATH, FN_GET_CURRENT_UID_GID, FN_GET_NUMA_NODE_ID, FN_JIFFIES64,
    FN_KTIME_GET_BOOT_NS, FN_KTIME_GET_NS, FN_KTIME_GET_TAI_NS, FN_OVERRIDE_RETURN,
    BPF_MAP_TYPE_PERF_EVENT_ARRAY, FN_PROBE_READ_KERNEL, FN_PROBE_READ_USER, FN_SEND_SIGNAL,
    FN_SKB_OUTPUT,
)
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import FP, R0
from ptrace_lang.errors import NotSupportedYet
from ptrace_lang.frontend import ast
from ptrace_lang.sema.fn_funcs import array_field, pton_bytes
from ptrace_lang.signals import SIGNALS
from ptrace_lang.sema.types import ArrayT, IntT, StrT, UserT

ENOSPC = 28
PT_REGS_CS = 136          # x86-64 struct pt_regs: cs


class FuncsLowering:
    """call_/into_/stmt_/builtin_ methods for Lowering (see the module doc)."""

    provider_name = ""       # the canonical provider of the program (set by the driver)

    # ------------------------------------------------------------------ helpers
    def _str_mem(self, e: ast.Expr):
        """(base, offset, length) of a string value in memory."""
        base, off = self.mem_of(e)
        return base, off, e.type.length

    def _byte(self, base, off: int) -> ir.VReg:
        v = self.vreg()
        self.emit(ir.Load(v, base, off, 1))
        return v

    def _flag(self, found: str, end: str, out: ir.VReg) -> None:
        """out = 0 on fall-through, 1 at label ``found``; both continue at ``end``."""
        self.mov(out, 0)
        self.emit(ir.Jump(end))
        self.emit(ir.Label(found))
        self.mov(out, 1)
        self.emit(ir.Label(end))

    # ------------------------------------------------------------------ strings
    def call_strlen(self, e: ast.Call) -> ir.VReg:
        base, off, n = self._str_mem(e.args[0])
        out = self.vreg()
        done = self.label("strlen")
        self.mov(out, 0)
        for i in range(n):
            c = self._byte(base, off + i)
            self.emit(ir.CondJump("jeq", c, 0, done))
            self.mov(out, i + 1)
        self.emit(ir.Label(done))
        return out

    def call_strncmp(self, e: ast.Call) -> ir.VReg:
        n = self.const_value(e.args[2])
        a, b = e.args[0], e.args[1]
        abase, aoff, alen = self._str_mem(a)
        blit = b.value.encode() + b"\0" if isinstance(b, ast.StrLit) else None
        if blit is None:
            bbase, boff, blen = self._str_mem(b)
        else:
            blen = len(blit)
        out = self.vreg()
        differ, same, end = self.label("strne"), self.label("streq"), self.label("strncmp")
        for i in range(n):
            ca = self._byte(abase, aoff + i) if i < alen else None
            if blit is not None:
                cb = blit[i] if i < blen else 0
            else:
                cb = self._byte(bbase, boff + i) if i < blen else 0
            if ca is None:                     # a ended (its buffer): equal only if b has ended
                if isinstance(cb, int):
                    if cb != 0:
                        self.emit(ir.Jump(differ))
                    else:
                        self.emit(ir.Jump(same))
                    break
                self.emit(ir.CondJump("jne", cb, 0, differ))
                self.emit(ir.Jump(same))
                break
            self.emit(ir.CondJump("jne", ca, cb, differ))
            self.emit(ir.CondJump("jeq", ca, 0, same))
        self.emit(ir.Label(same))
        self.mov(out, 0)
        self.emit(ir.Jump(end))
        self.emit(ir.Label(differ))
        self.mov(out, 1)
        self.emit(ir.Label(end))
        return out

    def _strsearch(self, e: ast.Call) -> tuple[ir.VReg, ir.VReg]:
        """(found 0/1, index or -1) of the first occurrence of args[1] in args[0]."""
        hbase, hoff, hlen = self._str_mem(e.args[0])
        needle = e.args[1]
        found, idx = self.vreg(), self.vreg()
        hit, miss, end = self.label("found"), self.label("notfound"), self.label("search")
        self.mov(idx, 0)
        if isinstance(needle, ast.StrLit):
            nb = needle.value.encode()
            if nb:
                for i in range(hlen - len(nb) + 1):
                    nxt = self.label("next")
                    for j, ch in enumerate(nb):
                        c = self._byte(hbase, hoff + i + j)
                        if j == 0:
                            self.emit(ir.CondJump("jeq", c, 0, miss))    # the haystack ended
                        self.emit(ir.CondJump("jne", c, ch, nxt))
                    self.mov(idx, i)
                    self.emit(ir.Jump(hit))
                    self.emit(ir.Label(nxt))
                self.emit(ir.Jump(miss))
            else:
                self.emit(ir.Jump(hit))
        else:
            self._search_loop(hbase, hoff, hlen, needle, idx, hit, miss)
        self.emit(ir.Label(miss))
        self.mov(found, 0)
        self.mov(idx, -1)
        self.emit(ir.Jump(end))
        self.emit(ir.Label(hit))
        self.mov(found, 1)
        self.emit(ir.Label(end))
        return found, idx

    def _search_loop(self, hbase, hoff: int, hlen: int, needle: ast.Expr, idx, hit: str,
                     miss: str) -> None:
        """A needle known only at run time: a loop over the haystack's positions (``idx``)
        whose body compares the needle's bytes, unrolled over the needle's buffer. The
        haystack is read at a variable stack offset, bounded by a compare before each read,
        so the verifier walks one iteration per position."""
        nbase, noff, nlen = self._str_mem(needle)
        c, h, q = self.vreg(), self.vreg(), self.vreg()
        outer, step = self.label("outer"), self.label("step")
        self.emit(ir.Load(c, nbase, noff, 1))
        self.emit(ir.CondJump("jeq", c, 0, hit))          # the empty needle is at 0
        self.emit(ir.Label(outer))
        self.emit(ir.CondJump("jge", idx, hlen, miss))
        self.mov(q, hbase)
        self.emit(ir.Alu("add", q, idx))
        self.emit(ir.Load(h, q, hoff, 1))
        self.emit(ir.CondJump("jeq", h, 0, miss))         # the haystack ended
        for j in range(nlen):
            if j:
                self.emit(ir.Load(c, nbase, noff + j, 1))
                self.emit(ir.CondJump("jeq", c, 0, hit))  # the whole needle matched
                if j >= hlen:
                    self.emit(ir.Jump(step))              # past the haystack's buffer
                    break
                self.emit(ir.CondJump("jge", idx, hlen - j, step))
                self.emit(ir.Load(h, q, hoff + j, 1))
            else:
                self.emit(ir.Load(c, nbase, noff, 1))
            self.emit(ir.CondJump("jne", h, c, step))
        else:
            self.emit(ir.Jump(hit))                        # a needle filling its buffer
        self.emit(ir.Label(step))
        self.emit(ir.Alu("add", idx, 1))
        self.emit(ir.Jump(outer))

    def call_strcontains(self, e: ast.Call) -> ir.VReg:
        return self._strsearch(e)[0]

    def call_strstr(self, e: ast.Call) -> ir.VReg:
        return self._strsearch(e)[1]

    def call_strftime(self, e: ast.Call) -> ir.VReg:
        return self.scalar(e.args[1])

    def call_strerror(self, e: ast.Call) -> ir.VReg:
        return self.scalar(e.args[0])

    call_syscall_name = call_strerror

    def _digit(self, base, off: int, n) -> None:
        """The byte at base+off = the decimal digit of n (0..9), n changed."""
        self.emit(ir.Alu("add", n, ord("0")))
        self.emit(ir.Store(base, off, n, 1))

    def into_signal_name(self, e: ast.Call, base, off: int, typ) -> None:
        """signal_name(n) as a string: a constant when sema knew n (``e.address``), else the
        program's table of texts: a compare per number below the real-time signals, "Real-time
        signal K" written from K's digits, "N/A" for the rest (n taken as an int32)."""
        from ptrace_lang.signals import (
            REALTIME_FIRST, REALTIME_PREFIX, SIGNAL_TEXTS, signal_text)

        size = typ.size() if isinstance(typ, StrT) else e.type.size()
        if e.address is not None:
            self.store_bytes(base, off, signal_text(e.address).encode() + b"\0", size)
            return
        n = self.vreg()
        self.mov(n, self.scalar(e.args[0]), width=32)       # the low 32 bits, zero-extended
        done, other = self.label("signame_done"), self.label("signame_na")
        for k in range(REALTIME_FIRST):
            nxt = self.label("signame_next")
            self.emit(ir.CondJump("jne", n, k, nxt))
            self.store_bytes(base, off, SIGNAL_TEXTS[k].encode() + b"\0", size)
            self.emit(ir.Jump(done))
            self.emit(ir.Label(nxt))
        self.emit(ir.CondJump("jgt", n, len(SIGNAL_TEXTS) - 1, other))   # (an int32 below 0 too)
        self.store_bytes(base, off, REALTIME_PREFIX.encode() + b"\0", size)
        at = off + len(REALTIME_PREFIX)
        if at + 2 < size:                   # room for two digits and the NUL
            self.emit(ir.Alu("sub", n, REALTIME_FIRST))
            one = self.label("signame_digit")
            self.emit(ir.CondJump("jlt", n, 10, one))
            tens = self.vreg()
            self.mov(tens, n)
            self.emit(ir.Alu("div", tens, 10))
            self.emit(ir.Alu("add", tens, ord("0")))
            self.emit(ir.Store(base, at, tens, 1))
            self.emit(ir.Alu("mod", n, 10))
            self._digit(base, at + 1, n)
            self.emit(ir.Jump(done))
            self.emit(ir.Label(one))
            self._digit(base, at, n)
        self.emit(ir.Jump(done))
        self.emit(ir.Label(other))
        self.store_bytes(base, off, b"N/A\0", size)
        self.emit(ir.Label(done))

    def call_cgroup_path(self, e: ast.Call) -> ir.VReg:
        return self.scalar(e.args[0])

    # ------------------------------------------------------------------ network
    def _read_ctx_bytes(self, f, base, off: int, n: int) -> None:
        """``n`` bytes of the tracepoint field ``f`` (a byte array in the context) to base+off."""
        src = self.vreg()
        self.mov(src, self.ctx)
        self.emit(ir.Alu("add", src, f.offset))
        self.checked_read(FN_PROBE_READ_KERNEL, base, off, n, src)

    def into_ntop(self, e: ast.Call, base, off: int, typ) -> None:
        """ntop([af, ]addr): the address family (8 bytes), then the address's bytes (16, zero
        padded) for user space to print. The family, when not given, follows from the address:
        4 bytes (or an integer) are IPv4, 16 are IPv6."""
        addr = e.args[-1]
        t = addr.type
        af = self.scalar(e.args[0]) if len(e.args) == 2 else None
        self.zero_mem(base, off + 8, 16)
        if isinstance(t, ArrayT) and isinstance(t.elem, IntT) and t.elem.bits == 8:
            # a C byte array (an address member): its bytes read into the address part
            self.expr_into(addr, base, off + 8, ArrayT(t.elem, min(t.n, 16)))
            default_af = AF_INET if t.n == 4 else AF_INET6
        elif (f := array_field(addr)) is not None:
            n = min(f.size, 16)
            self._read_ctx_bytes(f, base, off + 8, n)
            default_af = AF_INET if n == 4 else AF_INET6
        elif isinstance(t, UserT) and t.kind == "bytes":
            self.expr_into(addr, base, off + 8, t)
            default_af = AF_INET if t.nbytes == 4 else AF_INET6
        else:
            v = self.scalar(addr)
            self.emit(ir.Store(base, off + 8, v, 8))
            default_af = AF_INET
        self.emit(ir.Store(base, off, af if af is not None else default_af, 8))

    def call_pton(self, e: ast.Call) -> ir.VReg:
        """An IPv4 address (4 bytes): a register holding its bytes."""
        raw = pton_bytes(e.args[0].value) or b""
        return self.const(int.from_bytes(raw[:8], "little", signed=True))

    def into_pton(self, e: ast.Call, base, off: int, typ) -> None:
        raw = pton_bytes(e.args[0].value) or b""
        self.store_bytes(base, off, raw, typ.size() if typ is not None else len(raw))

    def call_macaddr(self, e: ast.Call) -> ir.VReg:
        a = e.args[0]
        slot = self.frame.alloc(8, e.span)
        self.emit(ir.Store(FP, slot, 0, 8))
        f = array_field(a)
        out = self.vreg()
        if f is not None:
            self._read_ctx_bytes(f, FP, slot, 6)
            self.emit(ir.Load(out, FP, slot, 8))
        elif isinstance(a.type, (StrT, UserT)):
            base, off = self.mem_of(a)
            self.emit(ir.Load(out, base, off, 8))
        else:
            # a pointer: kernel memory, else user memory
            ptr = self.scalar(a)
            ok = self.label("macok")
            self.call(FN_PROBE_READ_KERNEL, ("fp", slot), 6, ptr)
            self.emit(ir.CondJump("jeq", R0, 0, ok))
            self.checked_read(FN_PROBE_READ_USER, FP, slot, 6, ptr)
            self.emit(ir.Label(ok))
            self.emit(ir.Load(out, FP, slot, 8))
        self.emit(ir.Alu("lsh", out, 16))
        self.emit(ir.Alu("rsh", out, 16))
        return out

    # ------------------------------------------------------------------ misc
    def call_bswap(self, e: ast.Call) -> ir.VReg:
        t = e.args[0].type
        bits = t.bits if isinstance(t, IntT) else 64
        v = self.scalar(e.args[0])
        n = bits // 8
        out, b = self.vreg(), self.vreg()
        self.mov(out, 0)
        for i in range(n):
            self.mov(b, v)
            if i:
                self.emit(ir.Alu("rsh", b, 8 * i))
            self.emit(ir.Alu("and", b, 0xFF))
            if n - 1 - i:
                self.emit(ir.Alu("lsh", b, 8 * (n - 1 - i)))
            self.emit(ir.Alu("or", out, b))
        return out

    def call_has_key(self, e: ast.Call) -> ir.VReg:
        m = e.args[0]
        layout = self.maps["@" + m.name]
        if layout.agg is not None and layout.agg.kind in ("hist", "lhist"):
            raise NotSupportedYet("has_key() on a hist/lhist map", e.span)
        ref = ast.MapRef(m.name, [e.args[1]], span=e.span)
        key = self.build_key(ref, layout)
        v = self.lookup(layout, key)
        out = self.vreg()
        yes, end = self.label("haskey"), self.label("haskeyend")
        self.emit(ir.CondJump("jne", v, 0, yes))
        self._flag(yes, end, out)
        return out

    def call_cgroupid(self, e: ast.Call) -> ir.VReg:
        return self.const(e.address or 0)     # (sema resolved the path)

    def _message(self, kind: int, e: ast.Call) -> None:
        self.record(kind, e.args[0].value, e.args[1:], e.span)

    def stmt_errorf(self, e: ast.Call) -> None:
        self._message(S.EV_ERRORF, e)

    def stmt_warnf(self, e: ast.Call) -> None:
        self._message(S.EV_WARNF, e)

    def stmt_debugf(self, e: ast.Call) -> None:
        self._message(S.EV_DEBUGF, e)

    def stmt_signal(self, e: ast.Call) -> None:
        a = e.args[0]
        if isinstance(a, ast.StrLit) or (isinstance(a, ast.Builtin) and a.name.startswith("SIG")):
            name = a.value if isinstance(a, ast.StrLit) else a.name
            sig = SIGNALS["SIG" + name if not name.startswith("SIG") else name]
            self.call(FN_SEND_SIGNAL, sig)
        else:
            self.call(FN_SEND_SIGNAL, self.scalar(a))

    def stmt_override(self, e: ast.Call) -> None:
        self.call(FN_OVERRIDE_RETURN, self.ctx, self.scalar(e.args[0]))

    def call_skboutput(self, e: ast.Call) -> ir.VReg:
        """bpf_skb_output(skb, map, BPF_F_CURRENT_CPU | cap_len << 32, &header, 24): the
        header (spec.SKB_HEADER: the call's event id, the boot clock, cap_len) then cap_len
        bytes of the packet, into this CPU's ring of the perf event array; the helper's result
        (0, -EFAULT when the packet is shorter than cap_len, -ENOSPC when the ring is full). The tracing programs' variant
        takes the BTF-typed skb where the uapi comment says ctx."""
        ev = len(self.events)
        self.events.append(S.EventSpec(S.EV_SKBOUTPUT, e.args[0].value, [], e.span,
                                       skb_offset=e.args[3].value))
        maps = self.__dict__.setdefault("extra_maps", [])
        if not maps:        # one ring per possible CPU id (BPF_F_CURRENT_CPU indexes it)
            maps.append(S.MapSpec(S.SKB_OUTPUT_MAP, BPF_MAP_TYPE_PERF_EVENT_ARRAY, 4, 4,
                                  self.target.cpu_id_limit))
        skb = self.scalar(e.args[1])
        cap = self.scalar(e.args[2])
        slot = self.frame.alloc(S.SKB_HEADER, e.span)
        self.emit(ir.Store(FP, slot, ev, 8))
        self.emit(ir.Store(FP, slot + 16, cap, 8))
        self.call(FN_KTIME_GET_BOOT_NS)
        self.emit(ir.Store(FP, slot + 8, R0, 8))
        flags = self.vreg()
        self.mov(flags, cap)
        self.emit(ir.Alu("lsh", flags, 32))
        self.emit(ir.Alu("or", flags, self.const(0xFFFFFFFF)))     # BPF_F_CURRENT_CPU
        self.call(FN_SKB_OUTPUT, skb, ("map", S.SKB_OUTPUT_MAP), flags, ("fp", slot),
                  S.SKB_HEADER)
        out = self.result()
        # -ENOSPC: this CPU's ring was full. Counted as a lost event at once (the kernel's own
        # PERF_RECORD_LOST only comes with the ring's next record, which may never come)
        ok = self.label("skbout")
        self.emit(ir.CondJump("jne", out, -ENOSPC, ok))
        self.count_error(S.COUNTER_LOST_EVENTS)
        self.emit(ir.Label(ok))
        return out

    # ------------------------------------------------------------------ builtins
    def call_nsecs(self, e: ast.Call) -> ir.VReg:
        clock = e.args[0].name if e.args else "monotonic"
        self.call({"monotonic": FN_KTIME_GET_NS, "boot": FN_KTIME_GET_BOOT_NS, "tai": FN_KTIME_GET_TAI_NS,
                   "sw_tai": FN_KTIME_GET_TAI_NS}[clock])
        return self.result()

    def call_comm(self, e: ast.Call) -> ir.VReg:
        """comm(pid): the pid, named in user space (runtime/ufuncs ``comm_of_pid``). (``comm()``
        without an argument is a string and never comes here: it is written in place.)"""
        return self.scalar(e.args[0])

    def builtin_username(self, e) -> ir.VReg:
        self.call(FN_GET_CURRENT_UID_GID)
        out = self.result()
        self.mov(out, out, 32)
        return out

    def builtin_jiffies(self, e) -> ir.VReg:
        self.call(FN_JIFFIES64)
        return self.result()

    def builtin_ncpus(self, e) -> ir.VReg:
        return self.const(self.target.ncpus)

    def builtin_numaid(self, e) -> ir.VReg:
        self.call(FN_GET_NUMA_NODE_ID)
        return self.result()

    def call_getopt(self, e: ast.Call) -> ir.VReg:
        return self.scalar(e.args[1])        # (sema made it the option's literal)

    def into_getopt(self, e: ast.Call, base, off: int, typ) -> None:
        self.expr_into(e.args[1], base, off, typ)

    def into_probetype(self, e, base, off: int, typ) -> None:
        """The provider's canonical name, a constant of the program (one per provider)."""
        size = typ.size() if isinstance(typ, StrT) else e.type.size()
        self.store_bytes(base, off, self.provider_name.encode()[:size - 1] + b"\0", size)

    def builtin_usermode(self, e) -> ir.VReg:
        if self.provider_name in ("begin", "end"):
            return self.const(1)
        out = self.vreg()
        self.emit(ir.Load(out, self.ctx, PT_REGS_CS, 8))
        self.emit(ir.Alu("and", out, 3))
        yes, end = self.label("user"), self.label("userend")
        self.emit(ir.CondJump("jeq", out, 3, yes))
        self._flag(yes, end, out)
        return out

    def into_path(self, e: ast.Call, base, off: int, typ) -> None:
        """path(p): bpf_d_path writes the NUL-terminated path into the zeroed destination (so
        it compares and keys by bytes); a null pointer or a failure (a path longer than the
        buffer) leaves it empty and is counted. (A pointer below 4096 is skipped: a BTF pointer from the context that was
        null is a plain number past its null check, which the helper must not be given.)"""
        size = typ.size() if isinstance(typ, StrT) else e.type.size()
        ptr = self.scalar(e.args[0])
        self.zero_mem(base, off, size)
        fail, done = self.label("pathfail"), self.label("pathok")
        self.emit(ir.CondJump("jlt", ptr, 4096, fail))
        self.call(FN_D_PATH, ptr, self.ptr_arg(base, off), min(size, e.type.length))
        self.emit(ir.CondJump("jsge", R0, 0, done))
        self.emit(ir.Label(fail))
        self.zero_mem(base, off, size)      # (a path too long for the buffer left its tail there)
        self.count_error(S.COUNTER_READ_FAILED)
        self.emit(ir.Label(done))
