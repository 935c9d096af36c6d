"""The VM tier's one boot, shared by every test module of tests/vm (test_vm.py,
test_vm_tools.py): the guest runs the whole batch of guest_batch.py once per session."""
from __future__ import annotations

import os
import sys
import warnings

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run_vm  # noqa: E402


@pytest.fixture(scope="session")
def vm():
    reason = run_vm.unavailable()
    if reason:
        msg = f"VM tier SKIPPED: {reason}"
        print(f"\n{'!' * 78}\n{msg}\n{'!' * 78}", file=sys.stderr)
        warnings.warn(msg)
        pytest.skip(msg)
    r = run_vm.boot()
    sys.stderr.write(f"\nVM tier: {r['kernel']}: boot + batch + power-off {r['boot_secs']}s\n")
    if r["results"] is None:
        tail = "\n".join(r["console"].splitlines()[-60:])
        pytest.fail(f"the guest returned no results (qemu exit status {r['qemu_rc']}"
                    f"{', timed out' if r['timed_out'] else ''}); console:\n{tail}", pytrace=False)
    return r
