"""The QuarantineStore contract, run on the in-memory fake and on the DynamoDB adapter (moto)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from chalicelib.adapters.dynamodb import DynamoDBQuarantineStore
from chalicelib.orders.model import QuarantineReason
from chalicelib.services.ports import QuarantineRecord, QuarantineStore, QueuedNotification
from tests.fakes import InMemoryQuarantineStore

MESSAGE = QueuedNotification(
    protocol="openapi",
    notify_id="n-1",
    out_trade_no="o-unknown",
    fields={"trade_status": "TRADE_SUCCESS", "subject": "咖啡", "total_amount": "12.30"},
    received_at="2026-11-26T08:00:00Z",
)
RECORD = QuarantineRecord(
    notify_id="n-1",
    out_trade_no="o-unknown",
    reason=QuarantineReason.UNKNOWN_ORDER.value,
    detail="no order 'o-unknown'",
    message=MESSAGE,
    recorded_at="2026-11-26T08:00:01Z",
)


@dataclass
class Quarantine:
    store: QuarantineStore
    lookup: Callable[[str], QuarantineRecord | None]


@pytest.fixture(params=["in_memory", "dynamodb"])
def quarantine(request: pytest.FixtureRequest) -> Quarantine:
    if request.param == "in_memory":
        fake = InMemoryQuarantineStore()
        return Quarantine(fake, fake.records.get)
    real = DynamoDBQuarantineStore(request.getfixturevalue("dynamodb"), request.getfixturevalue("table"))
    return Quarantine(real, real.get)


def test_keeps_a_quarantined_notification_with_its_reason_and_message(quarantine: Quarantine) -> None:
    quarantine.store.put(RECORD)
    assert quarantine.lookup("n-1") == RECORD


def test_a_second_record_for_the_same_notification_keeps_the_first(quarantine: Quarantine) -> None:
    quarantine.store.put(RECORD)
    quarantine.store.put(replace(RECORD, reason=QuarantineReason.AMOUNT_MISMATCH.value, recorded_at="later"))
    assert quarantine.lookup("n-1") == RECORD


def test_records_for_different_notifications_are_kept_apart(quarantine: Quarantine) -> None:
    other = replace(RECORD, notify_id="n-2", message=replace(MESSAGE, notify_id="n-2"))
    quarantine.store.put(RECORD)
    quarantine.store.put(other)
    assert (quarantine.lookup("n-1"), quarantine.lookup("n-2")) == (RECORD, other)
    assert quarantine.lookup("n-3") is None
