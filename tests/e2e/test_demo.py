"""`make demo`, the README's first command: one payment through a fresh local stack, told step by step, exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from devstack.stack import PROJECT_DIR

# The merchant prices a product, a buyer orders and pays it and reads their order, the merchant reads it in full.
STEPS = (
    "product priced",
    "order created",
    "order string",
    "sandbox pays",
    "notification",
    "order paid",
    "event",
    "client result",
    "merchant's view",
)


def test_the_demo_pays_one_order_through_every_step_and_exits_0() -> None:
    # What `make demo` runs once .venv exists; the demo picks free ports and a state directory of its own.
    environ = {k: v for k, v in os.environ.items() if k not in ("ALIPAY_PROTOCOL", "SANDBOX_TIME_SCALE")}
    demo = subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=PROJECT_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert demo.returncode == 0, demo.stdout + demo.stderr
    told = [line.split(maxsplit=1)[1] for line in demo.stdout.splitlines() if re.match(r"\d\. ", line)]
    assert [step for step in STEPS if not any(line.startswith(step) for line in told)] == []
    assert len(told) == len(STEPS)
    assert "-> 201 as buyer demo-buyer (ID token), 1 x tshirt" in demo.stdout
    assert "12.34 USD priced by the server" in demo.stdout
    assert "verified true, status TRADE_SUCCESS" in demo.stdout
    assert "-> TRADE_SUCCESS as the merchant (SigV4): buyer demo-buyer, 1 x tshirt" in demo.stdout
    assert "stack stopped       (exit status 0)" in demo.stdout
