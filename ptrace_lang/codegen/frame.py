"""Stack slots of one program: handed out with a stack discipline, reused once released.

Lowering marks the frame before a statement and releases to the mark after it, so the
temporaries of one statement (map keys, values, strings) reuse the space of the previous
one. ``max_depth`` is what the program needs; the register allocator puts its spill slots
below it. Offsets are negative, relative to r10.
"""
from __future__ import annotations

from ptrace_lang.errors import NO_SPAN, Span

STACK_LIMIT = 512


class Frame:
    def __init__(self) -> None:
        self.depth = 0
        self.max_depth = 0
        self.deepest_span: Span = NO_SPAN

    def alloc(self, size: int, span: Span = NO_SPAN) -> int:
        size = (size + 7) // 8 * 8
        self.depth += size
        if self.depth > self.max_depth:
            self.max_depth = self.depth
            self.deepest_span = span
        return -self.depth

    def mark(self) -> int:
        return self.depth

    def release(self, mark: int) -> None:
        self.depth = mark
