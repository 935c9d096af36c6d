"""The VM tier's boot logic that needs no guest: when a failed boot is retried."""
from __future__ import annotations

import run_vm

PANIC = """SeaBIOS (version 1.16.2)
[    2.23] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI
[    2.24] Kernel panic - not syncing: Fatal exception in interrupt
"""


def test_a_panic_before_init_is_retried_and_one_after_is_not():
    assert run_vm.died_before_init(PANIC)
    after = f"{run_vm.MARK}: init: kernel 6.12, 2 cpus, uptime 2.6s\n" + PANIC
    assert not run_vm.died_before_init(after)           # our code ran: a real failure
    assert not run_vm.died_before_init("SeaBIOS\n")     # no panic (a hang, a timeout)


def test_the_guest_runs_under_single_threaded_tcg():
    import inspect

    assert '"-accel", "tcg,thread=single"' in inspect.getsource(run_vm.boot)
