"""The BTF a program with subprograms needs: one ``FUNC`` per function for ``func_info``.

The verifier takes the address of a callback (``ld_imm64`` with ``BPF_PSEUDO_FUNC``, passed
to ``bpf_loop`` / ``bpf_for_each_map_elem``) only from a program that describes its functions
in BTF: each function a static ``FUNC`` whose prototype returns an integer. This builds that
blob (pure bytes; loading it is ``kernel.progs.load_btf``) and the ``func_info`` records.
"""
from __future__ import annotations

import struct

BTF_MAGIC = 0xEB9F
KIND_INT, KIND_FUNC, KIND_FUNC_PROTO = 1, 12, 13
INT_SIGNED = 1
FUNC_STATIC = 0


def func_btf(functions: list[tuple[str, int]]) -> tuple[bytes, bytes]:
    """``functions``: (name, number of arguments) of each function, in the program's order.

    Returns (BTF blob, func_info records without instruction offsets filled: the caller packs
    them with ``func_info``). Type 1 is ``long``; one prototype per arity, then one FUNC per
    function (type ids 1 + protos + i)."""
    strings = bytearray(b"\0")

    def name(s: str) -> int:
        off = len(strings)
        strings.extend(s.encode() + b"\0")
        return off

    types = bytearray()
    types += struct.pack("<III", name("long"), KIND_INT << 24, 8)
    types += struct.pack("<I", (INT_SIGNED << 24) | 64)
    arg_names = [name(f"a{i}") for i in range(5)]
    arities = sorted({n for _, n in functions})
    proto_id = {}
    for n in arities:
        proto_id[n] = 2 + len(proto_id)
        types += struct.pack("<III", 0, (KIND_FUNC_PROTO << 24) | n, 1)
        for i in range(n):
            types += struct.pack("<II", arg_names[i], 1)
    first_func = 2 + len(arities)
    for fname, n in functions:
        types += struct.pack("<III", name(fname), (KIND_FUNC << 24) | FUNC_STATIC, proto_id[n])
    header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(types), len(types), len(strings))
    type_ids = b"".join(struct.pack("<I", first_func + i) for i in range(len(functions)))
    return header + bytes(types) + bytes(strings), type_ids


def func_info(starts: list[int], blob_type_ids: bytes) -> bytes:
    """bpf_func_info records (insn_off, type_id) for functions starting at ``starts``."""
    out = bytearray()
    for i, start in enumerate(starts):
        out += struct.pack("<I", start) + blob_type_ids[4 * i: 4 * i + 4]
    return bytes(out)
