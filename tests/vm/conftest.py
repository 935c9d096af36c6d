"""The VM tier's one boot, shared by every test module of tests/vm (test_vm.py,
test_vm_tools.py): the guest runs the whole batch of guest_batch.py once per session."""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from vmboot import boot_or_skip  # noqa: E402


@pytest.fixture(scope="session")
def vm():
    return boot_or_skip()
