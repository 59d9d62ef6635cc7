"""The soak's short run in CI (``make test-long``): the same harness as ``make soak``, 2,000 notifications, with 40
refund orders and 20 late payments beside them (``tests/soak/money.py``).

About 3.5-4 minutes on a 2-CPU machine (the emulator, moto, is the limit). ``SOAK_TEST_N`` overrides the size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.soak.harness import run_soak

pytestmark = pytest.mark.soak

DEFAULT_N = 2000


def test_soak_with_injected_faults_loses_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    n = int(os.environ.get("SOAK_TEST_N") or DEFAULT_N)
    lines: list[str] = []

    run_soak(n, tmp_path, out=lines.append)  # raises SoakFailed naming every figure that does not hold

    print("\n".join(lines))  # shown with -s or -rA: the figures of this run
