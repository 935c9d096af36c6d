"""The arguments of USDT probes: stapsdt notes give each as ``[-]SIZE@OPERAND`` in GNU
assembler (AT&T) syntax, x86-64 registers and memory operands.

    parse_usdt_arg("-4@-20(%rbp)")  -> UsdtArg(4, True, "mem", offset=-20, base_reg="rbp")
    canonical_reg("eax")            -> "rax" (the pt_regs field)
"""
from __future__ import annotations

import re

from ptrace_lang.records import dataclass


@dataclass(frozen=True)
class UsdtArg:
    size: int               # bytes (1, 2, 4, 8)
    signed: bool
    kind: str               # 'reg' | 'mem' | 'const' | 'unknown' (text kept for the error)
    reg: str | None = None          # 'reg': the register as written, without '%' (e.g. 'eax')
    offset: int = 0                 # 'mem': displacement
    base_reg: str | None = None     # 'mem': base register (e.g. 'rbp', 'rip'), None if absent
    index_reg: str | None = None    # 'mem': index register
    scale: int = 1                  # 'mem': index scale
    value: int = 0                  # 'const': the immediate
    symbol: str | None = None       # 'mem': symbol of `sym+off(%rip)` / `sym` forms
    address: int | None = None      # 'mem' with symbol: link-time vaddr = st_value + offset
    text: str = ""                  # the operand as it appeared in the note


_ARG = re.compile(r"^(?:(-?\d+)@)?(.+)$")
_REG = r"%([a-z][a-z0-9]*)"
_NUM = r"-?(?:0[xX][0-9a-fA-F]+|\d+)"
_MEM = re.compile(r"^(?P<disp>[^()]*)\((?:%(?P<base>[a-z][a-z0-9]*))?"
                  r"(?:\s*,\s*%(?P<index>[a-z][a-z0-9]*)(?:\s*,\s*(?P<scale>\d+))?)?\)$")
_SYMDISP = re.compile(r"^(?P<sym>[A-Za-z_.$][\w.$@]*)?"
                      r"\s*(?P<off>[-+]\s*(?:0[xX][0-9a-fA-F]+|\d+))?$")


def _int(text: str) -> int:
    return int(text.replace(" ", ""), 0)


def parse_usdt_arg(text: str) -> UsdtArg:
    """One x86-64 stapsdt argument: ``[-]SIZE@OPERAND`` in GNU assembler (AT&T) syntax.

    ``8@%rax`` reg; ``-4@$5`` const; ``-4@-20(%rbp)``, ``8@8(%rdi,%rsi,8)``, ``4@sym+4(%rip)``,
    ``8@(,%rax,8)`` mem. A missing size means 8 bytes unsigned. Unparsable operands give
    kind 'unknown' (the caller reports them when the argument is used)."""
    m = _ARG.match(text.strip())
    if not m:
        return UsdtArg(8, False, "unknown", text=text)
    size_text, op = m.group(1), m.group(2).strip()
    size = abs(int(size_text)) if size_text else 8
    signed = bool(size_text) and size_text.startswith("-")
    if size == 0:
        size = 8
    if op.startswith("%") and re.fullmatch(_REG, op):
        return UsdtArg(size, signed, "reg", reg=op[1:], text=text)
    if op.startswith("$"):
        try:
            return UsdtArg(size, signed, "const", value=_int(op[1:]), text=text)
        except ValueError:
            return UsdtArg(size, signed, "unknown", text=text)
    mm = _MEM.match(op)
    if mm:
        disp = mm.group("disp").strip()
        sym, off = None, 0
        if disp:
            if re.fullmatch(_NUM, disp):
                off = _int(disp)
            else:
                sd = _SYMDISP.match(disp)
                if not sd or not sd.group("sym"):
                    return UsdtArg(size, signed, "unknown", text=text)
                sym = sd.group("sym")
                off = _int(sd.group("off")) if sd.group("off") else 0
        if mm.group("base") is None and mm.group("index") is None:
            return UsdtArg(size, signed, "unknown", text=text)
        return UsdtArg(size, signed, "mem", offset=off, base_reg=mm.group("base"),
                       index_reg=mm.group("index"),
                       scale=int(mm.group("scale")) if mm.group("scale") else 1,
                       symbol=sym, text=text)
    # absolute memory: `sym`, `sym+8`, `0x601040`
    if re.fullmatch(_NUM, op):
        return UsdtArg(size, signed, "mem", offset=_int(op), address=_int(op), text=text)
    sd = _SYMDISP.match(op)
    if sd and sd.group("sym"):
        off = _int(sd.group("off")) if sd.group("off") else 0
        return UsdtArg(size, signed, "mem", offset=off, symbol=sd.group("sym"), text=text)
    return UsdtArg(size, signed, "unknown", text=text)


_X86_CANON = {}
for _full, _subs in {
    "rax": ("eax", "ax", "al", "ah"), "rbx": ("ebx", "bx", "bl", "bh"),
    "rcx": ("ecx", "cx", "cl", "ch"), "rdx": ("edx", "dx", "dl", "dh"),
    "rsi": ("esi", "si", "sil"), "rdi": ("edi", "di", "dil"), "rbp": ("ebp", "bp", "bpl"),
    "rsp": ("esp", "sp", "spl"), "rip": ("eip", "ip"),
}.items():
    _X86_CANON[_full] = _full
    for _s in _subs:
        _X86_CANON[_s] = _full
for _n in range(8, 16):
    for _suffix in ("", "d", "w", "b", "l"):
        _X86_CANON[f"r{_n}{_suffix}"] = f"r{_n}"


def canonical_reg(name: str) -> str:
    """The 64-bit x86 register (pt_regs field) a register name is part of: 'eax' -> 'rax',
    'r8d' -> 'r8'. Unknown names come back unchanged. Note 'ah'/'bh'/... are bits 8-15."""
    return _X86_CANON.get(name.lstrip("%"), name.lstrip("%"))
