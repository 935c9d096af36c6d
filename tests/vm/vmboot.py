"""Booting the VM tier's guest from a pytest fixture (conftest.py, test_vm_probes2.py)."""
from __future__ import annotations

import sys
import warnings

import pytest

import run_vm


def boot_or_skip(batch_args: list[str] | None = None, label: str = "") -> dict:
    """Boot the guest with ``guest_batch.py`` (given ``batch_args``) and return its results;
    skip loudly, saying why, where the tier cannot run; fail when the guest returns nothing."""
    reason = run_vm.unavailable()
    if reason:
        msg = f"VM tier SKIPPED: {reason}"
        print(f"\n{'!' * 78}\n{msg}\n{'!' * 78}", file=sys.stderr)
        warnings.warn(msg)
        pytest.skip(msg)
    r = run_vm.boot(batch_args=batch_args) if batch_args else run_vm.boot()
    if r["results"] is None and run_vm.died_before_init(r["console"]):
        # the guest kernel itself died before running a line of ours: boot once more, loudly
        msg = (f"VM tier{label}: the guest kernel panicked before its init ran; booting again "
               "(console tail below)\n" + "\n".join(r["console"].splitlines()[-12:]))
        print(f"\n{'!' * 78}\n{msg}\n{'!' * 78}", file=sys.stderr)
        warnings.warn(msg.splitlines()[0])
        r = run_vm.boot(batch_args=batch_args) if batch_args else run_vm.boot()
    sys.stderr.write(f"\nVM tier{label}: {r['kernel']}: boot + batch + power-off {r['boot_secs']}s\n")
    if r["results"] is None:
        tail = "\n".join(r["console"].splitlines()[-60:])
        pytest.fail(f"the guest returned no results (qemu exit status {r['qemu_rc']}"
                    f"{', timed out' if r.get('timed_out') else ''}); console:\n{tail}", pytrace=False)
    return r
