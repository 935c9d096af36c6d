"""A tracepoint's record layout, parsed from the text of its tracefs ``format`` file: pure, so
the compiler can type ``args`` from a recorded format as well as from the running kernel's."""
from __future__ import annotations

from ptrace_lang.records import dataclass


@dataclass
class TpField:
    """One field of a tracepoint's record, as tracefs' format file says.

    type_text is the C element type with any ``__data_loc`` prefix and array
    brackets removed ("char", "unsigned int", "char *"); data_loc marks a
    ``__data_loc T[]`` field (a u32: length << 16 | offset of the data);
    array_len is the fixed array length (0 for a flexible ``T[]`` that is not
    data_loc), None when not an array.  decl is the raw declaration.
    """
    name: str
    type_text: str
    offset: int
    size: int
    signed: bool
    data_loc: bool
    array_len: int | None
    is_pointer: bool
    decl: str = ""
    rel_loc: bool = False


# regular expressions are compiled on first use (by re's own cache): attaching needs none
_FIELD = (
    r"^\s*field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);"
    r"(?:\s*signed:(?P<signed>-?\d+);)?")
_DECL = r"^(?P<type>.*?)(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<arr>\[[^\]]*\])?\s*$"
_ELEM_SIZES = {
    "char": 1, "signed char": 1, "unsigned char": 1, "u8": 1, "s8": 1, "__u8": 1, "__s8": 1,
    "bool": 1, "_Bool": 1,
    "short": 2, "unsigned short": 2, "u16": 2, "s16": 2, "__u16": 2, "__s16": 2,
    "int": 4, "unsigned int": 4, "u32": 4, "s32": 4, "__u32": 4, "__s32": 4, "pid_t": 4,
    "long": 8, "unsigned long": 8, "u64": 8, "s64": 8, "__u64": 8, "__s64": 8,
    "long long": 8, "unsigned long long": 8, "size_t": 8,
}


def _parse_field(line: str) -> TpField | None:
    import re

    m = re.match(_FIELD, line)
    if not m:
        return None
    decl = m.group("decl").strip()
    offset, size = int(m.group("off")), int(m.group("size"))
    signed = m.group("signed") not in (None, "0")
    data_loc = rel_loc = False
    body = decl
    if body.startswith("__data_loc "):
        data_loc, body = True, body[len("__data_loc "):]
    elif body.startswith("__rel_loc "):
        rel_loc, body = True, body[len("__rel_loc "):]
    # "__data_loc char[] name": brackets sit on the type, not the name
    arr_txt = None
    d = re.match(_DECL, body)
    if d is None:
        return TpField(body, body, offset, size, signed, data_loc, None, False, decl, rel_loc)
    type_text = d.group("type").strip()
    name = d.group("name")
    if d.group("arr"):
        arr_txt = d.group("arr")[1:-1].strip()
    if type_text.endswith("]"):
        i = type_text.rindex("[")
        arr_txt = arr_txt if arr_txt is not None else type_text[i + 1:-1].strip()
        type_text = type_text[:i].strip()
    type_text = re.sub(r"\s+", " ", type_text)
    type_text = re.sub(r"\s*\*", " *", type_text).replace("* *", "**")
    array_len = None
    if arr_txt is not None and not (data_loc or rel_loc):
        if arr_txt == "":
            array_len = 0
        elif arr_txt.isdigit():
            array_len = int(arr_txt)
        else:  # an unexpanded macro: derive from the sizes
            esz = _ELEM_SIZES.get(type_text)
            if "*" in type_text:
                esz = 8
            array_len = size // esz if esz else None
    is_pointer = "*" in type_text
    return TpField(name, type_text, offset, size, signed, data_loc, array_len, is_pointer,
                   decl, rel_loc)


def parse_format(text: str) -> list[TpField]:
    """Fields of an event's record from its format file's text, common_* fields skipped."""
    fields = []
    for line in text.splitlines():
        if "field:" not in line:
            continue
        fld = _parse_field(line)
        if fld is None or fld.name.startswith("common_"):
            continue
        fields.append(fld)
    return fields
