"""Hypothesis profiles of the fuzz targets, and the figures printed at the end of a run.

``fuzz-ci`` (the default here, inside ``make test``): a few hundred derandomized examples per target, so CI is
reproducible. ``fuzz`` (``make fuzz``, i.e. ``python -m tests.fuzz``): random, and enough examples that at least
``MIN_FUZZ_CASES`` cases run in total; the run fails if fewer did. Neither profile is loaded globally: each
target picks one (``harness.fuzz_settings``), so the rest of the suite keeps its own settings.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import settings

from tests.fuzz.harness import HEALTH_CHECKS_THAT_DO_NOT_APPLY, MIN_FUZZ_CASES

settings.register_profile(
    "fuzz-ci",
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=HEALTH_CHECKS_THAT_DO_NOT_APPLY,
)
settings.register_profile(
    "fuzz",
    max_examples=11_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=HEALTH_CHECKS_THAT_DO_NOT_APPLY,
)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.fuzz.harness import STATS

    if settings.get_current_profile_name() == "fuzz" and exitstatus == 0 and STATS.cases < MIN_FUZZ_CASES:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        STATS.shortfall = True


def pytest_terminal_summary(terminalreporter: Any) -> None:
    from tests.fuzz.harness import STATS

    if not STATS.cases:
        return
    terminalreporter.section("fuzz")
    for line in STATS.report():
        terminalreporter.write_line(line)
    if STATS.shortfall:
        terminalreporter.write_line(f"FAILED: fewer than {MIN_FUZZ_CASES:,} cases ran")
