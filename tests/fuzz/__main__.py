"""``python -m tests.fuzz [pytest args]``: every fuzz target under the random ``fuzz`` profile (``make fuzz``).

At least ``MIN_FUZZ_CASES`` cases run in total (counted as they run); the figures are printed at the end. The targets
are every ``test_fuzz_*.py`` here: the webhook (``test_fuzz_webhook``), client results (``test_fuzz_client_result``),
the web return page (``test_fuzz_web_return``) and Antom's webhook, reader and verifier (``test_fuzz_antom``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    # Logging capture is off: a run logs a line per request, and pytest would hold them all in memory.
    args = ["-q", "-p", "no:cacheprovider", "-p", "no:logging", "--hypothesis-profile=fuzz", str(here), *argv]
    return int(pytest.main(args))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
