"""``FuncsLowering``, a mixin of ``llvmbackend.lower.Lowering``: the functions the llvm backend
lowers beyond the core (records of cat/system/join, ntop, bswap, buf, strncmp, strftime and the
other values user space formats), with the direct backend's layouts (codegen/lower_funcs.py,
lower_events.py, lower_values.py) so that the runtime reads both alike.

``call_<name>`` gives a scalar, ``into_<name>`` writes a value into memory, ``stmt_<name>`` is
a statement; ``Lowering`` dispatches on these names.
"""
from __future__ import annotations

from llvmlite import ir

from ptrace_lang import spec as S
from ptrace_lang.bpf import uapi as U
from ptrace_lang.codegen.lower_events import join_event
from ptrace_lang.frontend import ast
from ptrace_lang.llvmbackend.irbase import I8, I64, PTR, c64
from ptrace_lang.sema.fn_funcs import array_field, pton_bytes
from ptrace_lang.sema.types import ArrayT, BufT, IntT, StrT, UserT


class FuncsLowering:
    # ------------------------------------------------------------------ records
    def stmt_cat(self, e: ast.Call) -> None:
        self.record(S.EV_CAT, e.args[0].value, e.args[1:], e.span)

    def stmt_system(self, e: ast.Call) -> None:
        self.record(S.EV_SYSTEM, e.args[0].value, e.args[1:], e.span)

    def stmt_join(self, e: ast.Call) -> None:
        """join(arr[, delim]): the count of strings read, then up to JOIN_MAX strings, each
        read from the user array's pointers straight into the record."""
        size = self.max_strlen
        ev_id = len(self.events)
        self.events.append(join_event(e, size))
        arr = self.scalar(e.args[0])
        slot = self.alloca(8)
        count = self.alloca(8)

        def write(rec):
            self.store(count, 0, 0)
            end = self.fn.append_basic_block("joined")
            for i in range(S.JOIN_MAX):
                src = self.b.inttoptr(self.b.add(arr, c64(8 * i)), PTR)
                r = self.call(U.FN_PROBE_READ_USER, I64, slot, c64(8), src)
                self.next_if(self.b.icmp_unsigned("==", r, c64(0)), end)
                p = self.load(slot, 0)
                self.next_if(self.b.icmp_unsigned("!=", p, c64(0)), end)
                self.call(U.FN_PROBE_READ_USER_STR, I64, self.gep(rec, 16 + i * size),
                          c64(size), self.b.inttoptr(p, PTR))
                self.store(count, 0, self.b.add(self.load(count, 0), c64(1)))
            self.b.branch(end)
            self.b.position_at_end(end)
            self.store(rec, 8, self.load(count, 0))

        self.send(S.EV_JOIN, ev_id, 16 + S.JOIN_MAX * size - S.RECORD_HEADER, write)

    def next_if(self, cond, otherwise) -> None:
        """Go on in a new block when ``cond`` holds, else branch to ``otherwise``."""
        nxt = self.fn.append_basic_block("next")
        self.b.cbranch(cond, nxt, otherwise)
        self.b.position_at_end(nxt)

    # ------------------------------------------------------------------ scalars
    def call_bswap(self, e: ast.Call) -> ir.Value:
        t = e.args[0].type
        bits = t.bits if isinstance(t, IntT) else 64
        v = self.scalar(e.args[0])
        if bits == 8:
            return self.b.and_(v, c64(0xFF))
        if bits == 64:
            return self.b.bswap(v)
        return self.b.zext(self.b.bswap(self.b.trunc(v, ir.IntType(bits))), I64)

    def call_strftime(self, e: ast.Call) -> ir.Value:
        return self.scalar(e.args[1])      # the time; the format travels in the type

    def call_strerror(self, e: ast.Call) -> ir.Value:
        return self.scalar(e.args[0])

    call_syscall_name = call_cgroup_path = call_strerror

    def call_pton(self, e: ast.Call) -> ir.Value:
        raw = pton_bytes(e.args[0].value) or b""
        return c64(int.from_bytes(raw[:8], "little"))

    def call_strncmp(self, e: ast.Call) -> ir.Value:
        """0 when the first n characters agree (up to a NUL in both), else 1."""
        n = self.const_value(e.args[2])
        a, b = e.args[0], e.args[1]
        am, alen = self.mem_of(a), a.type.length
        blit = b.value.encode() + b"\0" if isinstance(b, ast.StrLit) else None
        bm, blen = (None, len(blit)) if blit is not None else (self.mem_of(b), b.type.length)
        out = self.alloca(8)
        self.store(out, 0, 1)
        same = self.fn.append_basic_block("strsame")
        end = self.fn.append_basic_block("strncmp")

        def byte(m, i):
            ld = self.b.load(self.gep(m, i), typ=I8)
            return self.b.zext(ld, I64)

        for i in range(n):
            cb = (c64(blit[i] if i < blen else 0) if blit is not None
                  else byte(bm, i) if i < blen else c64(0))
            if i >= alen:                  # a's buffer ended: equal only when b has too
                self.b.cbranch(self.b.icmp_unsigned("==", cb, c64(0)), same, end)
                break
            ca = byte(am, i)
            self.next_if(self.b.icmp_unsigned("==", ca, cb), end)
            self.next_if(self.b.icmp_unsigned("!=", ca, c64(0)), same)
        if not self.b.block.is_terminated:
            self.b.branch(same)
        self.b.position_at_end(same)
        self.store(out, 0, 0)
        self.b.branch(end)
        self.b.position_at_end(end)
        return self.load(out, 0)

    # ------------------------------------------------------------------ values in memory
    def into_ntop(self, e: ast.Call, base, off: int, typ, in_record: bool = False) -> None:
        """ntop([af, ]addr): the family (8 bytes), then the address (16 bytes, zero padded)."""
        addr = e.args[-1]
        t = addr.type
        af = self.scalar(e.args[0]) if len(e.args) == 2 else None
        self.zero(base, off + 8, 16)
        if isinstance(t, ArrayT) and isinstance(t.elem, IntT) and t.elem.bits == 8:
            self.into(addr, base, off + 8, ArrayT(t.elem, min(t.n, 16)))
            default = U.AF_INET if t.n == 4 else U.AF_INET6
        elif (f := array_field(addr)) is not None:
            n = min(f.size, 16)
            self.checked_read(U.FN_PROBE_READ_KERNEL, self.gep(base, off + 8), n,
                              self.gep(self.ctx, f.offset))
            default = U.AF_INET if n == 4 else U.AF_INET6
        elif isinstance(t, UserT) and t.kind == "bytes":
            self.into(addr, base, off + 8, t)
            default = U.AF_INET if t.nbytes == 4 else U.AF_INET6
        else:
            self.store(base, off + 8, self.scalar(addr))
            default = U.AF_INET
        self.store(base, off, af if af is not None else c64(default))

    def into_pton(self, e: ast.Call, base, off: int, typ, in_record: bool = False) -> None:
        raw = pton_bytes(e.args[0].value) or b""
        self.store_bytes(base, off, raw, typ.size() if typ is not None else len(raw))

    def into_buf(self, e: ast.Call, base, off: int, typ, in_record: bool = False) -> None:
        """buf(src[, n]): a u64 length, then the bytes (zero padded so keys compare exactly)."""
        t: BufT = e.type
        room = typ.length if isinstance(typ, BufT) else t.length
        n = min(t.length, room)
        src = e.args[0]
        if not in_record:
            self.zero(base, off + 8, (room + 7) // 8 * 8)
        if isinstance(src.type, StrT):
            sm = self.mem_of(src)
            for i in range(min(n, src.type.size())):
                self.b.store(self.b.load(self.gep(sm, i), typ=I8), self.gep(base, off + 8 + i))
            self.store(base, off, c64(n))
            return
        ptr = self.b.inttoptr(self.scalar(src), PTR)
        if len(e.args) < 2 or isinstance(e.args[1], (ast.IntLit, ast.PositionalParam)):
            self.checked_read(U.FN_PROBE_READ, self.gep(base, off + 8), n, ptr)
            self.store(base, off, c64(n))
            return
        ln = self.scalar(e.args[1])
        ln = self.b.select(self.b.icmp_unsigned("<=", ln, c64(n)), ln, c64(n))
        self.store(base, off, ln)
        self.checked_read(U.FN_PROBE_READ, self.gep(base, off + 8), ln, ptr)
