"""A scope of scratch variables (the probe's, a block's, a loop body's): name -> type."""
from __future__ import annotations

from ptrace_lang.records import dataclass, field

TYPE_CHECKING = False     # (importing typing costs start-up time)
if TYPE_CHECKING:
    from ptrace_lang.sema.types import Type


@dataclass
class Scope:
    vars: dict[str, Type] = field(default_factory=dict)
