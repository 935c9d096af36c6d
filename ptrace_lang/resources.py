"""Where the grammar and the stdlib live: inside the installed package, or in the checkout."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _locate(subpackage: str) -> str:
    installed = os.path.join(_HERE, subpackage)          # never: package-dir maps it elsewhere
    try:
        import importlib.util
        spec = importlib.util.find_spec(f"ptrace_lang.{subpackage}")
        if spec is not None and spec.submodule_search_locations:
            return list(spec.submodule_search_locations)[0]
    except ImportError:
        pass
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_HERE), subpackage)  # running from a checkout


def grammar_dir() -> str:
    return _locate("grammar")


def stdlib_dir() -> str:
    return _locate("stdlib")
