"""watchpoint: — hardware breakpoints on a data address of the traced process.

``watchpoint:ADDR:LEN:MODE`` (alias ``w``): ADDR an address in the process of ``-p PID`` /
``-c CMD`` (decimal or 0x hex), LEN 1, 2, 4 or 8 bytes, MODE ``w`` (writes), ``rw`` (reads
and writes) or ``x`` (execution, LEN 8): x86-64's debug registers cannot watch reads alone.
The program runs after the accessing instruction (a perf event of the breakpoint PMU opened
for that process on every CPU; the CPU has four debug registers, so at most four watchpoints).
"""
from __future__ import annotations

from ptrace_lang.errors import CompileError
from ptrace_lang.providers import Provider, Target, register, substitute_positional

# mode as written -> HW_BREAKPOINT_* (kernel.perf); "r" and "wx"/"rx"/"rwx" are refused
_MODES = {"w": 2, "rw": 3, "x": 4}      # (the mode sorted: wr is rw)
BREAKPOINT_PMU = "/sys/bus/event_source/devices/breakpoint"


def _number(text: str, message: str, span) -> int:
    """An unsigned integer of the attach point, else bpftrace 0.26's located error."""
    from ptrace_lang.messages import parse_uint, say

    try:
        return parse_uint(text)
    except ValueError as e:
        raise CompileError(say(message, reason=e, text=text), span) from None


class Watchpoint(Provider):
    kernel_feature = "breakpoint"
    name = "watchpoint"
    aliases = ("w",)
    prog_type_name = "BPF_PROG_TYPE_PERF_EVENT"
    pt_regs_context = True     # a perf event of the breakpoint PMU: reg() and usermode, as in bpftrace

    def expand(self, ap, opts):
        parts = [substitute_positional(p, opts, ap.span) for p in ap.parts]
        from ptrace_lang.messages import say

        if len(parts) != 3:
            raise CompileError(say("probe_arguments", provider=self.name, expected=3,
                                   found=len(parts)), ap.span,
                               hints=["write watchpoint:ADDRESS:LENGTH:MODE, e.g. "
                                      "watchpoint:0x404028:8:w"])
        addr_text, len_text, mode = parts
        addr = _number(addr_text, "watchpoint_address", ap.span)
        length = _number(len_text, "watchpoint_length_text", ap.span)
        if addr == 0:
            raise CompileError(say("watchpoint_zero"), ap.span)
        if length not in (1, 2, 4, 8):
            raise CompileError(say("watchpoint_length"), ap.span)
        if not mode or any(c not in "rwx" for c in mode):
            raise CompileError(say("watchpoint_mode"), ap.span)
        if len(set(mode)) != len(mode):
            raise CompileError(say("watchpoint_mode_twice"), ap.span)
        mode = "".join(sorted(mode))        # (bpftrace sorts the mode: wr is rw)
        bp_type = _MODES.get(mode)
        if bp_type is None:
            raise CompileError(say("watchpoint_mode_invalid", mode=mode), ap.span,
                               hints=[say("watchpoint_modes_hint", modes="rw,w,x")])
        if bp_type == 4 and length != 8:
            raise CompileError("an execution watchpoint (mode x) must have length 8", ap.span)
        if addr % length:
            raise CompileError(f"watchpoint address 0x{addr:x} is not aligned to its length "
                               f"{length}", ap.span,
                               hints=["the debug registers watch naturally aligned 1, 2, 4 or 8 bytes"])
        pid = getattr(opts, "pid", None)
        if pid is None:
            raise CompileError("-p PID or -c CMD required for watchpoint", ap.span,
                               hints=["the address is one of a process's: name it with -p PID, "
                                      "or start it with -c CMD"])
        return [Target(self.name, f"{self.name}:{addr_text}:{len_text}:{mode}",
                       f"{pid}:{addr}:{length}:{bp_type}", share_key=self.name)]

    def attach(self, target, prog_fd, cookie):
        import errno
        import os

        from ptrace_lang.kernel import links, perf

        pid, addr, length, bp_type = (int(x) for x in target.target.split(":"))
        try:
            fd = perf.breakpoint_event(addr, length, bp_type, pid=pid, cpu=-1)
        except OSError as e:
            if not os.path.isdir(BREAKPOINT_PMU) or e.errno in (errno.ENOENT, errno.EOPNOTSUPP,
                                                                errno.ENODEV):
                raise OSError(e.errno, "this machine has no hardware breakpoints (no breakpoint "
                              "PMU: the CPU or the hypervisor offers no debug registers)") from None
            if e.errno == errno.ENOSPC:
                raise OSError(e.errno, "every hardware debug register is in use (x86-64 has "
                              "four; a debugger or another watchpoint holds them)") from None
            if e.errno == errno.ESRCH:
                raise OSError(e.errno, f"process {pid} does not exist") from None
            if e.errno == errno.EINVAL:
                raise OSError(e.errno, f"the CPU cannot watch {length} bytes at 0x{addr:x} "
                              "this way (a kernel address, or an unsupported mode)") from None
            raise
        return [links.attach_perf_fd(prog_fd, fd, cookie)]


register(Watchpoint())
