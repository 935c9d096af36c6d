"""Values the kernel stores as raw bytes and user space turns into text (``sema.types.UserT``,
``spec.Field`` kind "user"): symbols, stacks, errno names, addresses, timestamps...

``FORMATTERS[name](raw: bytes, aux: tuple) -> str`` formats one value; ``raw`` is the value's
bytes as stored (``Field.size`` of them), ``aux`` the plain data the compiler attached. A
formatter may return a ``str`` subclass. Register one with ``@formatter("name")``.

A leaf: the modules defining formatters import this one; ``runtime.formatters`` imports them
all and is where the complete table is looked up.
"""
from __future__ import annotations

import struct

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

FORMATTERS: dict[str, Callable[[bytes, tuple], str]] = {}

_U64 = struct.Struct("<Q")
_I64 = struct.Struct("<q")


def formatter(name: str):
    def register(fn):
        FORMATTERS[name] = fn
        return fn
    return register


def u64(raw: bytes, off: int = 0) -> int:
    return _U64.unpack_from(raw, off)[0]


def i64(raw: bytes, off: int = 0) -> int:
    return _I64.unpack_from(raw, off)[0]

