"""printf ``%gr``: GFP allocation flags as text (bpftrace 0.26), the way the kernel itself
names them (``%pGg``, the kmem tracepoints): composite flags first (``GFP_KERNEL``), then the
single ``__GFP_*`` bits left, joined by ``|``; bits no name covers as hex; 0 prints ``0``.

    gfp_text(0xcc0)            # -> "GFP_KERNEL" (this kernel's layout)
    gfp_text(0x820 | 0x2)      # -> "GFP_ATOMIC|__GFP_HIGHMEM"

The names and masks are the running kernel's: read once from the kmem tracepoints' print
format in tracefs (``__print_flags(REC->gfp_flags, "|", {mask, "NAME"}, ...)``, whose masks are
constant C expressions evaluated here). Without tracefs, the table of the 6.10+ layout below
(the ``___GFP_*_BIT`` enum without the debugging bits).
"""
from __future__ import annotations

import ast

_EVENTS = ("kmem/kmalloc", "kmem/mm_page_alloc", "kmem/kmem_cache_alloc")
_GFP_MASK = 0xFFFFFFFF          # gfp_t is an unsigned int

# (mask, name) in the kernel's order (include/trace/events/mmflags.h), bits of Linux 6.10+
_B = {"DMA": 0, "HIGHMEM": 1, "DMA32": 2, "MOVABLE": 3, "RECLAIMABLE": 4, "HIGH": 5, "IO": 6,
      "FS": 7, "ZERO": 8, "DIRECT_RECLAIM": 10, "KSWAPD_RECLAIM": 11, "WRITE": 12, "NOWARN": 13,
      "RETRY_MAYFAIL": 14, "NOFAIL": 15, "NORETRY": 16, "MEMALLOC": 17, "COMP": 18,
      "NOMEMALLOC": 19, "HARDWALL": 20, "THISNODE": 21, "ACCOUNT": 22, "ZEROTAGS": 23}


def _bits(*names: str) -> int:
    m = 0
    for n in names:
        m |= 1 << _B[n]
    return m


def _default_table() -> list[tuple[int, str]]:
    reclaim = _bits("DIRECT_RECLAIM", "KSWAPD_RECLAIM")
    user = reclaim | _bits("IO", "FS", "HARDWALL")
    highuser_movable = user | _bits("HIGHMEM", "MOVABLE")
    light = (highuser_movable | _bits("COMP", "NOMEMALLOC", "NOWARN")) & ~reclaim
    kernel = reclaim | _bits("IO", "FS")
    composite = [
        (light | _bits("DIRECT_RECLAIM"), "GFP_TRANSHUGE"), (light, "GFP_TRANSHUGE_LIGHT"),
        (highuser_movable, "GFP_HIGHUSER_MOVABLE"), (user | _bits("HIGHMEM"), "GFP_HIGHUSER"),
        (user, "GFP_USER"), (kernel | _bits("ACCOUNT"), "GFP_KERNEL_ACCOUNT"),
        (kernel, "GFP_KERNEL"), (reclaim | _bits("IO"), "GFP_NOFS"),
        (_bits("HIGH", "KSWAPD_RECLAIM"), "GFP_ATOMIC"), (reclaim, "GFP_NOIO"),
        (_bits("KSWAPD_RECLAIM", "NOWARN"), "GFP_NOWAIT"), (_bits("DMA"), "GFP_DMA"),
        (_bits("DMA32"), "GFP_DMA32"), (reclaim, "__GFP_RECLAIM"),
    ]
    return composite + [(1 << b, "__GFP_" + n) for n, b in _B.items()]


def parse_print_flags(fmt_text: str) -> list[tuple[int, str]]:
    """The ``{mask, "NAME"}`` pairs of the gfp_flags ``__print_flags`` in a tracepoint format's
    ``print fmt`` line; [] when there is none or a mask is not a constant expression."""
    at = fmt_text.find('__print_flags(REC->gfp_flags, "|",')
    if at < 0:
        return []
    out: list[tuple[int, str]] = []
    i = fmt_text.index('"|"', at) + 3
    while True:
        while i < len(fmt_text) and fmt_text[i] in " ,\t":
            i += 1
        if i >= len(fmt_text) or fmt_text[i] != "{":
            return out
        name_at = _entry_name_start(fmt_text, i)
        if name_at < 0:                 # the table's end: { -1, NULL }
            return out
        name_end = fmt_text.index('"', name_at + 1)
        mask = _constant(fmt_text[i + 1:fmt_text.rindex(",", i, name_at)])
        if mask is None:
            return []
        out.append((mask & _GFP_MASK, fmt_text[name_at + 1:name_end]))
        i = fmt_text.index("}", name_end) + 1


def _entry_name_start(text: str, brace: int) -> int:
    """Index of the opening quote of the name in the entry ``{mask, "NAME"}`` at ``brace``."""
    depth = 0
    for k in range(brace + 1, len(text)):
        c = text[k]
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == '"' and depth == 0:
            return k
        elif c == "}":
            return -1
    return -1


def _constant(expr: str) -> int | None:
    """A C constant expression of masks (``((1UL) << (10)) | ...``, ``~``, ``&``, casts to
    gfp_t and unsigned long), or None."""
    for cast in ("( gfp_t)", "(gfp_t)", "( unsigned long)", "(unsigned long)"):
        expr = expr.replace(cast, "")
    expr = expr.replace("1UL", "1").replace("1U", "1")
    try:
        tree = ast.parse(expr.strip(), mode="eval")
    except SyntaxError:
        return None
    return _eval(tree.body)


def _eval(n) -> int | None:
    if isinstance(n, ast.Constant) and isinstance(n.value, int):
        return n.value
    if isinstance(n, ast.UnaryOp) and isinstance(n.op, ast.Invert):
        v = _eval(n.operand)
        return None if v is None else ~v & ((1 << 64) - 1)
    if isinstance(n, ast.BinOp) and isinstance(n.op, (ast.BitOr, ast.BitAnd, ast.LShift)):
        a, b = _eval(n.left), _eval(n.right)
        if a is None or b is None or (isinstance(n.op, ast.LShift) and b > 63):
            return None
        if isinstance(n.op, ast.BitOr):
            return a | b
        if isinstance(n.op, ast.BitAnd):
            return a & b
        return (a << b) & ((1 << 64) - 1)
    return None


def _kernel_table() -> list[tuple[int, str]]:
    try:
        from ptrace_lang.kernel.tracefs import tracefs_root

        root = tracefs_root()
    except OSError:
        return []
    for ev in _EVENTS:
        try:
            with open(f"{root}/events/{ev}/format", encoding="utf-8", errors="replace") as f:
                table = parse_print_flags(f.read())
        except OSError:
            continue
        if table:
            return table
    return []


_TABLE: list = []


def table() -> list[tuple[int, str]]:
    """The running kernel's names (its tracefs), else the built-in 6.10+ table; read once."""
    if not _TABLE:
        _TABLE.append(_kernel_table() or _default_table())
    return _TABLE[0]


def gfp_text(value: int, names: list[tuple[int, str]] | None = None) -> str:
    """``%gr`` of ``value``: the names whose every bit is set, in the table's order, each
    taking its bits; what is left as hex."""
    flags = value & _GFP_MASK
    if flags == 0:
        return "0"
    out = []
    for mask, name in (names if names is not None else table()):
        if mask and flags & mask == mask:
            out.append(name)
            flags &= ~mask
            if not flags:
                break
    if flags:
        out.append(f"0x{flags:x}")
    return "|".join(out)
