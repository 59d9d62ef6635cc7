"""The soak on a stack started with ``ALIPAY_PROTOCOL=antom`` (``make test-long``): the same harness as
``test_soak.py``, playing Antom (``players.AntomPlayer``), 1,000 notifications with 20 refund orders and 10 late
payments beside them. ``make soak PROTOCOL=antom`` runs it at full size; ``SOAK_ANTOM_TEST_N`` overrides the size.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.soak.harness import run_soak
from tests.soak.players import AntomPlayer

pytestmark = pytest.mark.soak

DEFAULT_N = 1000


def test_antom_soak_with_injected_faults_loses_nothing_and_applies_nothing_twice(tmp_path: Path) -> None:
    n = int(os.environ.get("SOAK_ANTOM_TEST_N") or DEFAULT_N)
    lines: list[str] = []

    run_soak(n, tmp_path, player=AntomPlayer(), out=lines.append)  # raises SoakFailed naming every bad figure

    print("\n".join(lines))  # shown with -s or -rA: the figures of this run
