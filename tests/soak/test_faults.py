"""The soak's injected consumer crash (quick tier, no stack): mid-batch, at the plan's exact rate, in batches
delivered for the first time only, so that a crashed batch that comes back is not crashed again on its way to the
DLQ, and the crash is counted."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from devstack import faults


def batch(size: int, *, receive_count: int = 1) -> dict[str, Any]:
    return {
        "Records": [
            {"messageId": f"m{i}", "body": "{}", "attributes": {"ApproximateReceiveCount": str(receive_count)}}
            for i in range(size)
        ]
    }


class Handler:
    """The real consumer's stand-in: it records which messages ran through it."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.ran += [record["messageId"] for record in event["Records"]]
        return {"batchItemFailures": []}


@pytest.fixture
def crashing(tmp_path: Path) -> tuple[Handler, faults.Handler, Path]:
    plan = faults.FaultPlan(log_dir=str(tmp_path), consumer_crash_rate=0.1)
    plan.write(tmp_path / "plan.json")
    handler = Handler()
    wrapped = faults.consumer_handler(handler, {faults.PLAN_ENV: str(tmp_path / "plan.json")})
    return handler, wrapped, tmp_path


def test_without_a_plan_the_consumer_is_the_handler_itself() -> None:
    handler = Handler()
    assert faults.consumer_handler(handler, {}) is handler


def test_a_first_delivery_crashes_mid_batch_once_per_window_after_running_the_records_before(
    crashing: tuple[Handler, faults.Handler, Path],
) -> None:
    handler, wrapped, log_dir = crashing
    crashes = 0
    for _ in range(10):  # 10 batches of 2: 10 candidates (record 1 of each), one window at 0.1
        handler.ran.clear()
        try:
            wrapped(batch(2), None)
        except faults.ConsumerCrashed:
            crashes += 1
            assert handler.ran == ["m0"]  # record 0 was applied, record 1 never ran
        else:
            assert handler.ran == ["m0", "m1"]
    assert crashes == 1
    assert faults.crashes_recorded(log_dir) == 1


def test_a_batch_holding_a_redelivered_message_never_crashes(crashing: tuple[Handler, faults.Handler, Path]) -> None:
    handler, wrapped, log_dir = crashing
    for _ in range(30):  # 270 candidates at 0.1 would crash 27 first deliveries
        wrapped(batch(10, receive_count=2), None)
        mixed = batch(10)
        mixed["Records"][5]["attributes"]["ApproximateReceiveCount"] = "2"
        wrapped(mixed, None)
    assert len(handler.ran) == 600
    assert faults.crashes_recorded(log_dir) == 0


def test_a_single_record_batch_is_never_a_candidate(crashing: tuple[Handler, faults.Handler, Path]) -> None:
    handler, wrapped, log_dir = crashing
    for _ in range(50):
        wrapped(batch(1), None)
    assert len(handler.ran) == 50
    assert faults.crashes_recorded(log_dir) == 0


@pytest.mark.parametrize("rate", [0.5, 0.1, 0.03])
def test_the_rate_gate_fires_exactly_once_in_every_window(rate: float) -> None:
    gate = faults.RateGate(rate, random.Random(7))
    window = round(1 / rate)
    fired = [gate.fire() for _ in range(window * 20)]
    assert [sum(fired[i : i + window]) for i in range(0, len(fired), window)] == [1] * 20
