"""``make soak [N=20000] [PROTOCOL=antom]``: the soak at full size; exit 1 if any figure that must hold does not."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from tests.soak.harness import SoakFailed, run_soak
from tests.soak.players import PLAYERS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.soak", description=__doc__)
    parser.add_argument("-n", type=int, default=20000, help="notifications to send (deliveries, duplicates included)")
    parser.add_argument(
        "--protocol",
        choices=sorted(PLAYERS),
        default="openapi",
        help="the stack's ALIPAY_PROTOCOL, and whom the soak plays: Alipay's Open Platform, or Antom",
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="state, logs, fault records (default: temporary)")
    args = parser.parse_args(argv)
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        run_soak(args.n, work_dir, player=PLAYERS[args.protocol](), out=lambda line: print(line, flush=True))
    except SoakFailed as exc:
        # Kept: the processes' logs, the fault records and the events are what explains a failure.
        print(
            f"soak FAILED: {exc} (logs in {work_dir}/state/logs, events in {work_dir}/events.jsonl, the orders "
            f"that failed in {work_dir}/anomalies.json)",
            file=sys.stderr,
        )
        return 1
    if args.work_dir is None:
        shutil.rmtree(work_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
