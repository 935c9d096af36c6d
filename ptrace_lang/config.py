"""Config variables: ``config = { key = value; ... }`` in a script and ``BPFTRACE_<KEY>`` in the
environment (the environment wins, as in bpftrace), with bpftrace's keys and defaults.

``KEYS`` maps each key to (kind, default): kind "int" (a positive integer, 0 allowed where
noted), "bool" (true/false/1/0), "str", or a tuple of the accepted words. ``settings(program,
environ)`` returns the values that differ from the defaults; ``driver`` applies them (see
docs/statements.md for what each key does here; some are accepted and have no effect, with the
reason). Imported on every compile: no ``re``, no ``typing``.
"""
from __future__ import annotations

from ptrace_lang.errors import NO_SPAN, CompileError
from ptrace_lang.messages import say

KEYS: dict[str, tuple] = {
    "cache_user_symbols": (("PER_PROGRAM", "PER_PID", "NONE"), "PER_PROGRAM"),
    "cpp_demangle": ("bool", True),
    "lazy_symbolication": ("bool", False),
    "license": ("str", "GPL"),
    "log_size": ("int", 1000000),
    "max_bpf_progs": ("int", 1024),
    "max_cat_bytes": ("int", 10240),
    "max_map_keys": ("int", 4096),
    "max_probes": ("int", 1024),
    "max_strlen": ("int", 64),
    "max_type_res_iterations": ("int0", 0),
    "missing_probes": (("error", "warn", "ignore"), "error"),
    "on_stack_limit": ("int0", 32),
    "perf_rb_pages": ("int", 64),
    "print_maps_on_exit": ("bool", True),
    "show_debug_info": ("bool", False),
    "stack_mode": (("bpftrace", "perf", "raw"), "bpftrace"),
    "str_trunc_trailer": ("str", ".."),
    "symbol_source": (("dwarf", "symbol_table"), "dwarf"),
    "use_blazesym": ("bool", False),
    "unstable_macro": (("enable", "warn", "error"), "enable"),
    "unstable_import": (("enable", "warn", "error"), "enable"),
    "unstable_map_decl": (("enable", "warn", "error"), "enable"),
    "unstable_tseries": (("enable", "warn", "error"), "enable"),
    "unstable_addr": (("enable", "warn", "error"), "enable"),
    "unstable_typeinfo": (("enable", "warn", "error"), "enable"),
    # ptrace-lang's own: the output of stats/hist/lhist as the newest bpftrace or as 0.17
    "stats_style": (("new", "old"), "new"),
    # ptrace-lang's own: label names of map keys as metrics (--serve; docs/exporter.md)
    "metric_labels": ("str", ""),
}
# bpftrace 0.17's names for some of them
LEGACY_ENV = {"BPFTRACE_STRLEN": "max_strlen", "BPFTRACE_MAP_KEYS_MAX": "max_map_keys",
              "BPFTRACE_CAT_BYTES_MAX": "max_cat_bytes"}
INVERTED_ENV = {"BPFTRACE_NO_CPP_DEMANGLE": "cpp_demangle"}


# what the runtime reads from ObjectSpec.config
RUNTIME_KEYS = ("print_maps_on_exit", "max_cat_bytes", "license", "stats_style", "stack_mode",
                "str_trunc_trailer", "cache_user_symbols", "cpp_demangle", "lazy_symbolication", "metric_labels")


def check_limits(obj, values: dict) -> None:
    """max_bpf_progs and max_probes: bpftrace's refusal of a script that loads more programs
    or makes more attachments than allowed."""
    progs = len(obj.programs)
    limit = values.get("max_bpf_progs", KEYS["max_bpf_progs"][1])
    # located at the attach point that makes the most attachments (a wildcard, usually)
    counts: dict = {}
    for a in obj.attachments:
        counts[a.span] = counts.get(a.span, 0) + 1
    span = max(counts, key=counts.get) if counts else NO_SPAN
    if progs > limit:
        raise CompileError(f"Your program is trying to generate more than {progs} BPF programs, "
                           f"which exceeds the current limit of {limit}.", span,
                           hints=["You can increase the limit through the BPFTRACE_MAX_BPF_PROGS "
                                  "environment variable or the max_bpf_progs config variable."])
    probes = len(obj.attachments)
    limit = values.get("max_probes", KEYS["max_probes"][1])
    if probes > limit:
        raise CompileError(f"Can't attach to {probes} probes because it exceeds the current "
                           f"limit of {limit} probes.", span,
                           hints=["You can increase the limit through the BPFTRACE_MAX_PROBES "
                                  "environment variable or the max_probes config variable."])


def _kind_name(kind) -> str:
    if kind in ("int", "int0"):
        return "integer"
    if kind == "bool":
        return "boolean"
    return "string"


def key_of(name: str) -> str | None:
    """The config key a script or environment name means (``BPFTRACE_MAX_STRLEN`` and
    ``max_strlen`` are both accepted in a config block, as bpftrace does)."""
    k = name.lower()
    if k.startswith("bpftrace_"):
        k = k[9:]
    return k if k in KEYS else None


def _expected(kind) -> str:
    if isinstance(kind, tuple):
        return ", ".join(kind)
    return {"int": "a positive integer", "int0": "an integer >= 0",
            "bool": "true, false, 1 or 0", "str": "a string"}[kind]


# bpftrace's keys that only its environment sets (BPFTRACE_BTF ...), refused in a config block
ENV_ONLY = frozenset({"btf", "debug_output", "kernel_build", "kernel_source", "vmlinux"})


def from_script(program) -> dict:
    """The config block's values: key -> value; a located error for an unknown key or a value
    of the wrong type."""
    from ptrace_lang.frontend import ast

    out: dict = {}
    if program.config is None:
        return out
    for item in program.config.items:
        key = key_of(item.key)
        if key is None:     # bpftrace's words (messages.py): env-only keys said as such
            env_only = item.key.lower().removeprefix("bpftrace_") in ENV_ONLY
            raise CompileError(say("config_env_only", key=item.key.lower().removeprefix("bpftrace_"))
                               if env_only else say("config_unknown", key=item.key), item.span)
        kind, _ = KEYS[key]
        v = item.value
        if isinstance(v, ast.IntLit):
            got, value = "integer", v.value
        elif isinstance(v, ast.BoolLit):
            got, value = "boolean", v.value
        elif isinstance(v, ast.StrLit):
            got, value = "string", v.value
        elif isinstance(v, ast.Builtin):          # a bare word: stack_mode = perf
            got, value = "string", v.name
        elif isinstance(v, ast.Unary) and v.op == "-" and isinstance(v.operand, ast.IntLit):
            got, value = "integer", -v.operand.value
        else:
            raise CompileError(f"Invalid value for {key}: expected {_expected(kind)}", v.span)
        if kind == "bool" and got == "integer":
            if value not in (0, 1):
                raise CompileError(say("config_bool_value", key=key, value=value), v.span)
            got, value = "boolean", bool(value)
        if got != _kind_name(kind):
            raise CompileError(f"Invalid type for {key}. Type: {got}. Expected Type: "
                               f"{_kind_name(kind)}", v.span, hints=[f"{key} = {_expected(kind)}"])
        problem = _check(key, kind, value)
        if problem:
            raise CompileError(problem, v.span, hints=[f"{key} = {_expected(kind)}"])
        out[key] = value
    return out


def _check(key: str, kind, value) -> str | None:
    if kind == "int" and value <= 0 or kind == "int0" and value < 0:
        return f"Invalid value for {key}: {value}: expected {_expected(kind)}"
    if isinstance(kind, tuple):
        if value not in kind:
            return f"Invalid value for {key}: {value}. Valid values: {', '.join(kind)}"
    return None


def from_env(environ) -> dict:
    """``BPFTRACE_<KEY>`` (and 0.17's names) from ``environ``: key -> value; an error (no
    location) for a value that does not parse."""
    out: dict = {}
    for var, text in environ.items():
        if not var.startswith("BPFTRACE_") or text == "":
            continue
        if var in LEGACY_ENV:
            key = LEGACY_ENV[var]
        elif var in INVERTED_ENV:
            key = INVERTED_ENV[var]
        else:
            key = key_of(var)
            if key is None or var != "BPFTRACE_" + key.upper():
                continue        # BPFTRACE_BTF, BPFTRACE_VMLINUX ...: not config variables
        kind, _ = KEYS[key]
        if kind in ("int", "int0"):
            try:
                value = int(text, 0)
            except ValueError:
                value = -1
            if value < 0 or (kind == "int" and value == 0):
                raise CompileError(f"Env var '{var}' did not contain a valid uint64_t, "
                                   "or was zero-valued.")
        elif kind == "bool":
            low = text.lower()
            if low not in ("1", "0", "true", "false"):
                raise CompileError(f"Env var '{var}' did not contain a valid boolean value: "
                                   f"{text} (true, false, 1 or 0)")
            value = low in ("1", "true")
            if var in INVERTED_ENV:
                value = not value
        else:
            value = text
            if isinstance(kind, tuple):
                match = [w for w in kind if w.lower() == text.lower()]
                if not match:
                    raise CompileError(f"Env var '{var}' has an invalid value: {text}. "
                                       f"Valid values: {', '.join(kind)}")
                value = match[0]
        out[key] = value
    return out


def settings(program, environ) -> dict:
    """The config block's values overridden by the environment's."""
    values = from_script(program) if program is not None else {}
    values.update(from_env(environ))
    return values
