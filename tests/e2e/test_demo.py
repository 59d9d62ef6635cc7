"""`make demo`, the README's first command: one payment through a fresh local stack, told step by step, exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

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


# On Antom: the order is created at Antom and paid there; the merchant refunds it and Antom notifies the refund.
ANTOM_STEPS = (
    "product priced",
    "order created",
    "created at Antom",
    "sandbox pays",
    "notification",
    "order paid",
    "event",
    "refund",
    "refund notified",
    "merchant's view",
)


def run_demo(protocol: str | None = None) -> subprocess.CompletedProcess[str]:
    """What `make demo` runs once .venv exists; the demo picks free ports and a state directory of its own."""
    environ = {k: v for k, v in os.environ.items() if k not in ("ALIPAY_PROTOCOL", "SANDBOX_TIME_SCALE")}
    if protocol is not None:
        environ["ALIPAY_PROTOCOL"] = protocol
    return subprocess.run(
        [sys.executable, "-m", "devstack", "demo"],
        cwd=PROJECT_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def steps_told(stdout: str) -> list[str]:
    return [line.split(maxsplit=1)[1] for line in stdout.splitlines() if re.match(r"\d+\. ", line)]


def test_the_demo_pays_one_order_through_every_step_and_exits_0() -> None:
    demo = run_demo()

    assert demo.returncode == 0, demo.stdout + demo.stderr
    told = steps_told(demo.stdout)
    assert [step for step in STEPS if not any(line.startswith(step) for line in told)] == []
    assert len(told) == len(STEPS)
    assert "-> 201 as buyer demo-buyer (ID token), 1 x tshirt" in demo.stdout
    assert "12.34 USD priced by the server" in demo.stdout
    assert "verified true, status TRADE_SUCCESS" in demo.stdout
    assert "-> TRADE_SUCCESS as the merchant (SigV4): buyer demo-buyer, 1 x tshirt" in demo.stdout
    assert "stack stopped       (exit status 0)" in demo.stdout


@pytest.mark.antom_stack
def test_the_demo_on_antom_pays_at_antom_refunds_and_exits_0() -> None:
    demo = run_demo("antom")

    assert demo.returncode == 0, demo.stdout + demo.stderr
    told = steps_told(demo.stdout)
    assert [re.split(r"\s{2,}", line, maxsplit=1)[0] for line in told] == list(ANTOM_STEPS)
    assert "make demo: one payment through a local stack (antom)" in demo.stdout
    assert "order_info" not in demo.stdout
    [created] = [line for line in told if line.startswith("created at Antom")]
    payment_id = re.search(r"paymentId (\S+),", created)
    assert payment_id is not None
    assert "/sandbox/antom/checkout/" in created
    assert f"-> TRADE_SUCCESS, trade_no {payment_id[1]} (Antom's paymentId" in demo.stdout
    assert "notifyPayment PAYMENT_RESULT:S POSTed to /antom/notify, attempt 1 -> 200" in demo.stdout
    assert "-> 201 REFUND_SUCCESS as the merchant, 12.34 USD" in demo.stdout
    assert "notifyRefund REFUND_RESULT:SUCCESS POSTed to /antom/notify -> 200" in demo.stdout
    assert "-> TRADE_CLOSED as the merchant (SigV4): buyer demo-buyer, 1 x tshirt, refund_fee 12.34, 1 refund" in (
        demo.stdout
    )
    assert "stack stopped       (exit status 0)" in demo.stdout
