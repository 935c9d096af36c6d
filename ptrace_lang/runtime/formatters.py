"""The complete table of user-space formatters: ``uvalues.FORMATTERS`` once every module that
registers into it is imported (``uvalues`` itself imports none of them: it stays a leaf the
registering modules can import)."""
from __future__ import annotations

from ptrace_lang.runtime import cvalues, symbols, ufuncs  # noqa: F401  (they register themselves)
from ptrace_lang.runtime.uvalues import FORMATTERS  # noqa: F401
