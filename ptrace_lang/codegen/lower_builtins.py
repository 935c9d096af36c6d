"""``BuiltinsLowering``, a mixin of ``codegen.lower.Lowering``: the builtin variables read as
scalars (pid, tid, uid, gid, nsecs, elapsed, cpu, rand, cgroup, cpid, probe/func, argN, retval),
the rest dispatched to ``builtin_<name>`` of the other mixins or to ``c_builtin``."""
from __future__ import annotations

from ptrace_lang.bpf.uapi import (
    FN_GET_ATTACH_COOKIE, FN_GET_CURRENT_CGROUP_ID, FN_GET_CURRENT_PID_TGID,
    FN_GET_CURRENT_UID_GID, FN_GET_PRANDOM_U32, FN_GET_SMP_PROCESSOR_ID, FN_KTIME_GET_NS,
)
from ptrace_lang.codegen import ir
from ptrace_lang.codegen.ir import VReg
from ptrace_lang.errors import NotSupportedYet
from ptrace_lang.frontend import ast
from ptrace_lang.sema.types import PtrT, UsdtArgsT
from ptrace_lang.spec import GLOBALS_START_NS


# builtins whose value cannot change while the program runs (the task, its ids, the CPU: a
# BPF program runs with migration disabled): computed once where the value can be kept
# (Lowering.remember), later uses read the register
_STEADY = frozenset(("pid", "tid", "uid", "gid", "cpu", "cgroup"))


class BuiltinsLowering:
    def builtin(self, name: str, e: ast.Expr, keep: bool = True) -> VReg:
        if keep and name in _STEADY:
            key = ("builtin", name)
            got = self.kept_value(key)
            return got if got is not None else self.remember(key, self.builtin(name, e, False))
        handler = getattr(self, "builtin_" + name, None)
        if handler is not None:            # builtins of mixins (kstack...)
            return handler(e)
        if name == "cpid":
            return self.const(self.cpid or 0)
        if name in ("pid", "tid", "uid", "gid"):
            # two ids in one helper's u64: the upper half (pid, gid) or the lower (tid, uid)
            helper = FN_GET_CURRENT_PID_TGID if name in ("pid", "tid") else FN_GET_CURRENT_UID_GID
            both = self.kept_value(("helper", helper))
            if both is None:
                self.call(helper)
                both = self.remember(("helper", helper), self.result())
            out = self.vreg()
            if name in ("pid", "gid"):
                self.mov(out, both)
                self.emit(ir.Alu("rsh", out, 32))
            else:
                self.mov(out, both, 32)
            return out
        if name == "nsecs":
            self.call(FN_KTIME_GET_NS)
            return self.result()
        if name == "elapsed":
            self.call(FN_KTIME_GET_NS)
            out = self.result()
            g = self.vreg()
            self.emit(ir.LoadMapFd(g, "globals", GLOBALS_START_NS))
            self.emit(ir.Load(g, g, 0, 8))
            self.emit(ir.Alu("sub", out, g))
            return out
        if name == "cpu":
            self.call(FN_GET_SMP_PROCESSOR_ID)
            return self.result()
        if name == "rand":
            self.call(FN_GET_PRANDOM_U32)
            return self.result()
        if name == "cgroup":
            self.call(FN_GET_CURRENT_CGROUP_ID)
            return self.result()
        if name in ("probe", "func"):
            if self.uses_cookie:
                self.call(FN_GET_ATTACH_COOKIE, self.ctx)
                return self.result()
            return self.const(self.probe_ids[0])
        if name.startswith("arg") and name[3:].isdigit() and isinstance(self.args, UsdtArgsT):
            return self.usdt_arg(self.args.args[int(name[3:])], e.span)
        if name.startswith("arg") and name[3:].isdigit():
            # raw tracepoints: an array of u64; kprobe-type programs: argument registers in pt_regs
            n = int(name[3:])
            off = self.arg_offsets[n] if self.arg_offsets is not None else 8 * n
            out = self.vreg()
            self.emit(ir.Load(out, self.ctx, off, 8))
            return out
        if name == "retval":
            out = self.vreg()
            self.emit(ir.Load(out, self.ctx, self.retval_offset, 8))
            rt = getattr(self.args, "ret", None)    # fexit: an int's upper half is not set
            if rt is not None and not rt.is_int:
                return out
            if isinstance(rt, PtrT):
                self.null_checked(out)              # a returned pointer may be NULL
                return out
            return self.truncate(out, rt) if rt is not None else out
        got = self.c_builtin(name, e)
        if got is not None:
            return got
        raise NotSupportedYet(f"the builtin '{name}' as a value", e.span)
