"""The part of ctypes the kernel layer uses, made from ctypes' C module without its package.

``import ctypes`` costs ~2 ms of a ~20 ms start: its ``__init__`` defines every C type and
function prototype, loads ``ctypes._endian`` and the ``types`` module, and opens libpython.
The bpf(2) and perf_event_open(2) wrappers need a dozen names; they are made here from
``_ctypes`` the way ``ctypes/__init__.py`` makes them (fixed-width integers, ``c_char``,
``create_string_buffer``, ``memmove``, ``string_at``, a libc function with errno kept). The
kernel modules import it as ``cty``; its names are those of ctypes.

Where ``_ctypes`` lacks a name (another Python), everything comes from ctypes itself.
"""
from __future__ import annotations

import os

try:
    from _ctypes import (
        FUNCFLAG_CDECL,
        FUNCFLAG_PYTHONAPI,
        FUNCFLAG_USE_ERRNO,
        RTLD_LOCAL,
        Array,
        CFuncPtr,
        Structure,
        Union,
        _memmove_addr,
        _SimpleCData,
        _string_at_addr,
        addressof,
        byref,
        dlopen,
        dlsym,
        get_errno,
        set_errno,
        sizeof,
    )
except ImportError:  # pragma: no cover - not CPython's _ctypes as we know it
    from ctypes import (  # noqa: F401
        Array,
        Structure,
        Union,
        addressof,
        byref,
        c_char,
        c_char_p,
        c_int,
        c_int8,
        c_int16,
        c_int32,
        c_int64,
        c_long,
        c_size_t,
        c_uint,
        c_uint8,
        c_uint16,
        c_uint32,
        c_uint64,
        c_ulong,
        c_void_p,
        create_string_buffer,
        get_errno,
        memmove,
        set_errno,
        sizeof,
        string_at,
    )
    import ctypes as _real

    def libc_function(name: str, restype, argtypes):
        """libc's ``name`` with its types, errno kept for ``get_errno``."""
        fn = getattr(_real.CDLL(None, use_errno=True), name)
        fn.restype = restype
        fn.argtypes = list(argtypes)
        return fn
else:
    class c_char(_SimpleCData):
        _type_ = "c"

    class c_char_p(_SimpleCData):
        _type_ = "z"

    class c_void_p(_SimpleCData):
        _type_ = "P"

    class c_int8(_SimpleCData):
        _type_ = "b"

    class c_uint8(_SimpleCData):
        _type_ = "B"

    class c_int16(_SimpleCData):
        _type_ = "h"

    class c_uint16(_SimpleCData):
        _type_ = "H"

    class c_int32(_SimpleCData):
        _type_ = "i"

    class c_uint32(_SimpleCData):
        _type_ = "I"

    class c_int64(_SimpleCData):
        _type_ = "q"

    class c_uint64(_SimpleCData):
        _type_ = "Q"

    class c_long(_SimpleCData):
        _type_ = "l"

    class c_ulong(_SimpleCData):
        _type_ = "L"

    class _py_object(_SimpleCData):
        _type_ = "O"

    c_int, c_uint, c_size_t = c_int32, c_uint32, c_ulong

    def _prototype(restype, argtypes, flags):
        class Fn(CFuncPtr):
            _restype_ = restype
            _argtypes_ = tuple(argtypes)
            _flags_ = flags
        return Fn

    memmove = _prototype(c_void_p, (c_void_p, c_void_p, c_size_t), FUNCFLAG_CDECL)(_memmove_addr)
    _string_at = _prototype(_py_object, (c_void_p, c_int), FUNCFLAG_CDECL | FUNCFLAG_PYTHONAPI)(
        _string_at_addr)

    def string_at(ptr, size: int = -1) -> bytes:
        """The bytes at address ``ptr`` (up to a NUL when ``size`` is -1)."""
        return _string_at(ptr, size)

    def create_string_buffer(init, size: int | None = None):
        """A mutable ``c_char`` array: of ``init`` bytes, or holding the bytes ``init`` (one
        NUL more unless ``size`` is given), as ``ctypes.create_string_buffer``."""
        if isinstance(init, int):
            return (c_char * init)()
        if size is None:
            size = len(init) + 1
        buf = (c_char * size)()
        buf.value = init
        return buf

    _LIBC = None

    def libc_function(name: str, restype, argtypes):
        """libc's ``name`` with its types, errno kept for ``get_errno``."""
        global _LIBC
        if _LIBC is None:
            _LIBC = dlopen(None, RTLD_LOCAL)
        return _prototype(restype, argtypes, FUNCFLAG_CDECL | FUNCFLAG_USE_ERRNO)(
            dlsym(_LIBC, name))


_MACHINE = os.uname().machine
if _MACHINE in ("x86_64", "amd64"):
    NR_BPF = 321
    NR_PERF_EVENT_OPEN = 298
elif _MACHINE in ("aarch64", "arm64"):
    NR_BPF = 280
    NR_PERF_EVENT_OPEN = 241
else:  # pragma: no cover - unsupported architecture
    NR_BPF = -1
    NR_PERF_EVENT_OPEN = -1

_SYSCALL = None


def syscall():
    """libc's syscall(2) taking six longs, errno kept (made once)."""
    global _SYSCALL
    if _SYSCALL is None:
        _SYSCALL = libc_function("syscall", c_long, [c_long] * 6)
    return _SYSCALL
