"""The stream relay over fakes: one event per business fact, failures reported per record, ids stable."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.adapters.dynamodb import order_from_item
from chalicelib.orders.model import ClosedReason, Order, OrderStatus
from chalicelib.services.events import EventRelay, StreamRecord
from chalicelib.services.ports import Unavailable
from tests.fakes import CountingMetrics, InMemoryEventPublisher
from tests.unit.services_kit import stream_record

CREATED = Order.create(
    out_trade_no="o-1", total_amount=Decimal("12.34"), currency="USD", subject="s", now="2026-11-26T08:00:00.000Z"
)


def moved(order: Order, status: OrderStatus, version: int, **changes: object) -> Order:
    return replace(
        order,
        status=status,
        version=version,
        trade_no="t-1",
        notify_id=f"n-{version}",
        updated_at=f"2026-11-26T08:0{version}:00.000Z",
        **changes,  # type: ignore[arg-type]
    )


PAID = moved(CREATED, OrderStatus.TRADE_SUCCESS, 2)
FINISHED = moved(PAID, OrderStatus.TRADE_FINISHED, 3)


def records(*changes: tuple[Order | None, Order | None]) -> list[StreamRecord]:
    return [StreamRecord.from_lambda(stream_record(f"{i:03d}", old, new)) for i, (old, new) in enumerate(changes, 1)]


@pytest.fixture
def publisher() -> InMemoryEventPublisher:
    return InMemoryEventPublisher()


@pytest.fixture
def metrics() -> CountingMetrics:
    return CountingMetrics()


@pytest.fixture
def relay(publisher: InMemoryEventPublisher, metrics: CountingMetrics) -> EventRelay:
    return EventRelay(publisher=publisher, decode_order=order_from_item, metrics=metrics)


def test_a_payment_becomes_one_order_paid_event_with_the_contracts_detail(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    result = relay.handle(records((CREATED, PAID)))
    assert (result.published, result.failed) == (1, frozenset())
    (event,) = publisher.events
    assert event.detail_type == "OrderPaid"
    assert event.detail() == {
        "event_id": "o-1:OrderPaid",
        "out_trade_no": "o-1",
        "trade_no": "t-1",
        "status": "TRADE_SUCCESS",
        "previous_status": "WAIT_BUYER_PAY",
        "total_amount": "12.34",
        "currency": "USD",
        "notify_id": "n-2",
        "occurred_at": "2026-11-26T08:02:00.000Z",
    }


def test_a_new_order_a_deleted_order_and_an_unchanged_status_emit_nothing(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    result = relay.handle(records((None, CREATED), (CREATED, None), (PAID, replace(PAID, version=3))))
    assert (result.published, result.failed) == (0, frozenset())
    assert publisher.calls == 0


def test_items_that_are_not_orders_are_ignored(relay: EventRelay, publisher: InMemoryEventPublisher) -> None:
    record = stream_record("001", CREATED, PAID)
    idempotency_item = {"pk": {"S": "idempotency#key-1"}, "type": {"S": "idempotency"}}
    record["dynamodb"]["OldImage"] = record["dynamodb"]["NewImage"] = idempotency_item
    assert relay.handle([StreamRecord.from_lambda(record)]).published == 0
    assert publisher.events == []


def test_every_event_of_a_batch_goes_out_in_one_publish_call_in_stream_order(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    other = replace(CREATED, out_trade_no="o-2")
    relay.handle(records((CREATED, PAID), (PAID, FINISHED), (other, moved(other, OrderStatus.TRADE_FINISHED, 2))))
    assert publisher.calls == 1
    assert [e.event_id for e in publisher.events] == [
        "o-1:OrderPaid",
        "o-1:OrderFinished",
        "o-2:OrderPaid",
        "o-2:OrderFinished",
    ]


def test_a_refund_close_emits_order_refunded_then_order_closed_with_the_refund(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    closed = moved(PAID, OrderStatus.TRADE_CLOSED, 3, refund_fee=Decimal("12.34"), closed_reason=ClosedReason.REFUNDED)
    relay.handle(records((PAID, closed)))
    refunded, event = publisher.events
    assert (refunded.detail_type, refunded.event_id) == ("OrderRefunded", "o-1:OrderRefunded:12.34")
    assert (event.detail_type, event.detail()["refund_fee"]) == ("OrderClosed", "12.34")


def test_a_partial_put_events_failure_reports_only_the_records_whose_events_failed(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    publisher.reject_ids.add("o-1:OrderFinished")
    other = replace(CREATED, out_trade_no="o-2")
    other_paid = moved(other, OrderStatus.TRADE_SUCCESS, 2)
    result = relay.handle(records((CREATED, PAID), (PAID, FINISHED), (other, other_paid)))
    assert result.failed == {"002"}
    assert result.published == 2
    # The retry of record 002 publishes the missing fact under the same id.
    publisher.reject_ids.clear()
    relay.handle(records((CREATED, PAID), (PAID, FINISHED))[1:])
    assert [e.event_id for e in publisher.events].count("o-1:OrderFinished") == 1


def test_an_unavailable_bus_reports_every_record_that_had_events(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    publisher.fail_with(Unavailable("EventBridge throttled"))
    result = relay.handle(records((None, CREATED), (CREATED, PAID), (PAID, FINISHED)))
    assert result.failed == {"002", "003"}


def test_an_unreadable_image_holds_back_the_records_after_it_so_none_is_published_twice(
    relay: EventRelay, publisher: InMemoryEventPublisher
) -> None:
    before = stream_record("001", CREATED, PAID)
    broken = stream_record("002", PAID, FINISHED)
    broken["dynamodb"]["NewImage"]["status"] = {"S": "NOT_A_STATUS"}
    after = stream_record("003", PAID, FINISHED)
    records = [StreamRecord.from_lambda(r) for r in (before, broken, after)]
    result = relay.handle(records)
    # Lambda retries from 002 on: 003 is reported with it and not published now, so it goes out once, later.
    assert result.failed == {"002", "003"}
    assert [e.event_id for e in publisher.events] == ["o-1:OrderPaid"]
    relay.handle(records[2:])  # the retry once 002 went to the failure destination
    assert [e.event_id for e in publisher.events] == ["o-1:OrderPaid", "o-1:OrderFinished"]


# --- the funnel's metrics (infra/stacks/dashboard.py reads them) ------------------------------------------------


def test_each_published_fact_is_counted_once_by_detail_type(relay: EventRelay, metrics: CountingMetrics) -> None:
    other = replace(CREATED, out_trade_no="o-2")
    closed = moved(PAID, OrderStatus.TRADE_CLOSED, 3, refund_fee=Decimal("12.34"), closed_reason=ClosedReason.REFUNDED)
    relay.handle(
        records((None, CREATED), (CREATED, PAID), (PAID, closed), (other, moved(other, OrderStatus.TRADE_FINISHED, 2)))
    )
    assert metrics.counts == {"OrderPaid": 2, "OrderRefunded": 1, "OrderClosed": 1, "OrderFinished": 1}


def test_a_fact_that_failed_to_go_out_is_counted_when_its_retry_succeeds_not_before(
    relay: EventRelay, publisher: InMemoryEventPublisher, metrics: CountingMetrics
) -> None:
    publisher.reject_ids.add("o-1:OrderFinished")
    batch = records((CREATED, PAID), (PAID, FINISHED))
    relay.handle(batch)
    assert metrics.counts == {"OrderPaid": 1}
    publisher.reject_ids.clear()
    relay.handle(batch[1:])
    assert metrics.counts == {"OrderPaid": 1, "OrderFinished": 1}


def test_nothing_is_counted_while_the_bus_is_unavailable(
    relay: EventRelay, publisher: InMemoryEventPublisher, metrics: CountingMetrics
) -> None:
    publisher.fail_with(Unavailable("EventBridge throttled"))
    relay.handle(records((CREATED, PAID)))
    assert metrics.counts == {}
