"""Where the grammar and the stdlib live: inside the installed package, or in the checkout."""
from __future__ import annotations

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def _locate(subpackage: str) -> str:
    installed = os.path.join(_HERE, subpackage)          # pip install: ptrace_lang/grammar
    if os.path.isdir(installed):
        return installed
    return os.path.join(os.path.dirname(_HERE), subpackage)  # a checkout: ./grammar


def grammar_dir() -> str:
    return _locate("grammar")


def stdlib_dir() -> str:
    return _locate("stdlib")
