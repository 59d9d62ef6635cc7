"""The QuarantineStore contract, run on the in-memory fake and on the DynamoDB adapter (moto)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from chalicelib.adapters.dynamodb import DynamoDBQuarantineStore
from chalicelib.orders.model import QuarantineReason
from chalicelib.services.ports import QuarantineRecord, QuarantineStore, QueuedNotification, Resolution
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


RESOLUTION = Resolution("dismissed", "arn:aws:iam::1:role/ops", "2026-11-26T09:00:00.000Z", "a sandbox test payment")


def entry(n: int) -> QuarantineRecord:
    notify_id = f"n-{n}"
    return replace(
        RECORD,
        notify_id=notify_id,
        message=replace(MESSAGE, notify_id=notify_id),
        recorded_at=f"2026-11-26T08:00:{n:02d}.000Z",
    )


def test_lists_open_entries_newest_first_page_by_page(quarantine: Quarantine) -> None:
    for n in range(5):
        quarantine.store.put(entry(n))
    first, after = quarantine.store.listing(resolved=False, limit=2)
    second, after2 = quarantine.store.listing(resolved=False, limit=2, after=after)
    third, end = quarantine.store.listing(resolved=False, limit=2, after=after2)
    assert [r.notify_id for r in first + second + third] == ["n-4", "n-3", "n-2", "n-1", "n-0"]
    assert end is None or quarantine.store.listing(resolved=False, limit=2, after=end)[0] == []


def test_a_resolved_entry_moves_from_the_open_listing_to_the_resolved_one_and_keeps_its_resolution(
    quarantine: Quarantine,
) -> None:
    quarantine.store.put(entry(1))
    quarantine.store.put(entry(2))
    assert quarantine.store.resolve("n-1", RESOLUTION) is True
    assert [r.notify_id for r in quarantine.store.listing(resolved=False, limit=10)[0]] == ["n-2"]
    assert quarantine.store.listing(resolved=True, limit=10)[0] == [replace(entry(1), resolution=RESOLUTION)]
    assert quarantine.lookup("n-1") == replace(entry(1), resolution=RESOLUTION)


def test_an_entry_is_resolved_once_and_the_first_resolution_stands(quarantine: Quarantine) -> None:
    quarantine.store.put(entry(1))
    assert quarantine.store.resolve("n-1", RESOLUTION) is True
    assert quarantine.store.resolve("n-1", replace(RESOLUTION, by="arn:aws:iam::1:role/other")) is False
    record = quarantine.lookup("n-1")
    assert record is not None
    assert record.resolution == RESOLUTION


def test_resolving_a_missing_entry_invents_nothing(quarantine: Quarantine) -> None:
    assert quarantine.store.resolve("n-404", RESOLUTION) is False
    assert quarantine.lookup("n-404") is None


def test_a_repeat_of_a_resolved_notification_does_not_reopen_it(quarantine: Quarantine) -> None:
    quarantine.store.put(entry(1))
    quarantine.store.resolve("n-1", RESOLUTION)
    quarantine.store.put(entry(1))
    record = quarantine.lookup("n-1")
    assert record is not None
    assert record.resolution == RESOLUTION
