"""The business facts an order change establishes, and that each is emitted once however Alipay repeats itself."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.orders import (
    ALLOWED_TRANSITIONS,
    SOURCE,
    Apply,
    ClosedReason,
    Decision,
    EventType,
    Order,
    OrderEvent,
    OrderStatus,
    PaymentUpdate,
    Quarantine,
    Refund,
    RefundStatus,
    decide,
    events_for_change,
)
from chalicelib.orders.events import events_from_history
from chalicelib.orders.model import LEGACY_REFUNDABLE_STATUSES, REFUNDABLE_STATUSES
from tests.order_fixtures import CLOSED, FINISHED, NOW, SUCCESS, TOTAL, TRADE_NO, WAIT, a_new_order, an_update

PAID = EventType.ORDER_PAID
FINISH = EventType.ORDER_FINISHED
CLOSE = EventType.ORDER_CLOSED
REFUND = EventType.ORDER_REFUNDED

START = datetime(2025, 1, 1, tzinfo=UTC)


def moved(order: Order, update: PaymentUpdate, now: str = NOW) -> Order:
    decision = decide(order, update, now)
    assert isinstance(decision, Apply), decision
    return decision.new_order


def types(events: Sequence[OrderEvent]) -> list[EventType]:
    return [e.detail_type for e in events]


def run(updates: Sequence[PaymentUpdate]) -> tuple[Order, list[OrderEvent], list[Decision]]:
    """Feed updates one by one, as the consumer does, collecting what the stream handler would publish."""
    order, events, decisions = a_new_order(), [], []
    for i, update in enumerate(updates):
        decision = decide(order, update, (START + timedelta(seconds=i + 1)).isoformat())
        decisions.append(decision)
        if isinstance(decision, Apply):
            events += events_for_change(order, decision.new_order, update.notify_id)
            order = decision.new_order
    return order, events, decisions


# --- which facts each change establishes -------------------------------------------------------------------


def test_a_newly_created_order_emits_nothing() -> None:
    assert events_for_change(None, a_new_order(), None) == []


def test_a_change_that_keeps_the_status_emits_nothing() -> None:
    paid = moved(a_new_order(), an_update(SUCCESS))
    assert events_for_change(paid, paid, "n-2") == []


@pytest.mark.parametrize(
    ("path", "close_refund", "expected"),
    [
        ([SUCCESS], None, [PAID]),
        ([FINISHED], None, [PAID, FINISH]),
        ([CLOSED], None, [CLOSE]),
        ([CLOSED], TOTAL, [PAID, REFUND, CLOSE]),
        ([SUCCESS, FINISHED], None, [FINISH]),
        ([SUCCESS, CLOSED], TOTAL, [REFUND, CLOSE]),
    ],
    ids=[
        "waiting->paid: OrderPaid",
        "waiting->finished: OrderPaid then OrderFinished",
        "waiting->closed unpaid: OrderClosed",
        "waiting->closed by refund: OrderPaid, OrderRefunded, OrderClosed",
        "paid->finished: OrderFinished",
        "paid->closed by refund: OrderRefunded then OrderClosed",
    ],
)
def test_the_last_change_emits_the_facts_it_establishes_in_order(
    path: list[OrderStatus], close_refund: Decimal | None, expected: list[EventType]
) -> None:
    old = a_new_order()
    for status in path[:-1]:
        old = moved(old, an_update(status))
    new = moved(old, an_update(path[-1], refund_fee=close_refund if path[-1] is CLOSED else None))
    assert types(events_for_change(old, new, "n-1")) == expected


def test_the_paid_event_detail_is_exactly_the_contract() -> None:
    paid = moved(a_new_order(), an_update(SUCCESS, notify_id="n-pay"), now=NOW)
    [event] = events_for_change(a_new_order(), paid, "n-pay")
    assert event.source == SOURCE == "alipay-global"
    assert event.detail_type == "OrderPaid"
    assert event.detail() == {
        "event_id": "ORDER-1:OrderPaid",
        "out_trade_no": "ORDER-1",
        "trade_no": TRADE_NO,
        "status": "TRADE_SUCCESS",
        "previous_status": "WAIT_BUYER_PAY",
        "total_amount": "12.34",
        "currency": "USD",
        "notify_id": "n-pay",
        "occurred_at": NOW,
    }


def test_a_direct_finish_gives_its_two_facts_distinct_event_ids() -> None:
    events = events_for_change(a_new_order(), moved(a_new_order(), an_update(FINISHED)), "n-1")
    assert [e.event_id for e in events] == ["ORDER-1:OrderPaid", "ORDER-1:OrderFinished"]


def test_event_ids_and_details_are_the_same_when_the_stream_record_is_retried() -> None:
    old = a_new_order()
    new = moved(old, an_update(FINISHED))
    first, again = events_for_change(old, new, "n-1"), events_for_change(old, new, "n-1")
    assert [e.detail() for e in first] == [e.detail() for e in again]


def test_a_refund_close_reports_the_refund_fee_and_the_payment_fact_does_not() -> None:
    closed = moved(a_new_order(), an_update(CLOSED, refund_fee=TOTAL))
    paid_event, _, closed_event = events_for_change(a_new_order(), closed, "n-1")
    assert "refund_fee" not in paid_event.detail()
    assert closed_event.detail()["refund_fee"] == "12.34"
    assert closed_event.detail()["status"] == "TRADE_CLOSED"


def test_a_close_unpaid_carries_no_refund_fee() -> None:
    [event] = events_for_change(a_new_order(), moved(a_new_order(), an_update(CLOSED)), "n-1")
    assert "refund_fee" not in event.detail()


def test_amounts_are_fixed_point_strings_never_exponents_or_floats() -> None:
    order = a_new_order(total_amount=Decimal("1E+2"))
    paid = moved(order, PaymentUpdate("ORDER-1", SUCCESS, Decimal("100.00"), "USD", TRADE_NO, "n-1", None, NOW))
    [event] = events_for_change(order, paid, "n-1")
    assert event.detail()["total_amount"] == "100.00"


def test_an_event_says_when_the_change_was_stored_and_which_notification_made_it() -> None:
    paid = moved(a_new_order(), an_update(SUCCESS), now="2025-02-03T04:05:06Z")
    [event] = events_for_change(a_new_order(), paid, "n-given")
    assert (event.occurred_at, event.notify_id) == ("2025-02-03T04:05:06Z", "n-given")


# --- sequences: duplicates and reordering --------------------------------------------------------------------


def test_the_same_notification_twice_gives_one_event() -> None:
    _, events, _ = run([an_update(SUCCESS, "n-1"), an_update(SUCCESS, "n-1")])
    assert types(events) == [PAID]


def test_the_same_status_with_a_different_notify_id_gives_no_second_event() -> None:
    _, events, _ = run([an_update(SUCCESS, "n-1"), an_update(SUCCESS, "n-2")])
    assert types(events) == [PAID]


def test_finished_before_success_ends_finished_with_order_paid_once() -> None:
    order, events, _ = run([an_update(FINISHED, "n-1"), an_update(SUCCESS, "n-2"), an_update(SUCCESS, "n-3")])
    assert order.status is FINISHED
    assert types(events) == [PAID, FINISH]


def test_success_then_finished_gives_order_paid_then_order_finished() -> None:
    order, events, _ = run([an_update(SUCCESS, "n-1"), an_update(FINISHED, "n-2")])
    assert order.status is FINISHED
    assert types(events) == [PAID, FINISH]
    assert [e.previous_status for e in events] == [WAIT, SUCCESS]


def test_a_refund_close_before_its_payment_notice_gives_order_paid_once_and_order_closed() -> None:
    order, events, _ = run([an_update(CLOSED, "n-1", TOTAL), an_update(SUCCESS, "n-2")])
    assert (order.status, order.closed_reason) == (CLOSED, ClosedReason.REFUNDED)
    assert types(events) == [PAID, REFUND, CLOSE]


def test_a_partial_then_a_full_refund_each_give_one_order_refunded_with_its_own_id_and_amount() -> None:
    partial, full = an_update(SUCCESS, "n-r1", Decimal("5.00")), an_update(CLOSED, "n-r2", TOTAL)
    order, events, _ = run([an_update(SUCCESS, "n-1"), partial, partial, full, partial, full])
    assert types(events) == [PAID, REFUND, REFUND, CLOSE]
    first, second = events[1], events[2]
    assert (first.event_id, first.detail()["refund_amount"], first.detail()["refund_fee"]) == (
        "ORDER-1:OrderRefunded:5.00",
        "5.00",
        "5.00",
    )
    assert (second.event_id, second.detail()["refund_amount"], second.detail()["refund_fee"]) == (
        "ORDER-1:OrderRefunded:12.34",
        "7.34",
        "12.34",
    )
    assert (order.status, order.closed_reason) == (CLOSED, ClosedReason.REFUNDED)


def test_recording_a_refund_request_alone_emits_nothing() -> None:
    paid = moved(a_new_order(), an_update(SUCCESS))
    requested = paid.with_refund(Refund("r-1", Decimal("1.00"), RefundStatus.PENDING, NOW), NOW)
    assert events_for_change(paid, requested, None) == []


# --- properties ------------------------------------------------------------------------------------------------

# The histories Alipay can actually produce for one trade, as chains of statuses. Any sub-multiset of a
# chain, in any order, with repeats, is what a merchant may receive. (FINISHED or CLOSED without SUCCESS
# are covered: the drawn sequence simply lacks SUCCESS.)
HISTORIES = {
    "paid then finished": (WAIT, SUCCESS, FINISHED),
    "paid then fully refunded": (WAIT, SUCCESS, CLOSED),
    "closed unpaid": (WAIT, CLOSED),
}
NOTIFY_IDS = st.sampled_from(["n-1", "n-2", "n-3", None])
NO_REFUND = st.sampled_from([None, Decimal("0.00")])


@st.composite
def trade_histories(draw: st.DrawFn) -> tuple[tuple[OrderStatus, ...], list[PaymentUpdate]]:
    chain = HISTORIES[draw(st.sampled_from(sorted(HISTORIES)))]
    refunded = SUCCESS in chain and CLOSED in chain
    statuses = draw(st.lists(st.sampled_from(chain), min_size=1, max_size=12))
    updates = [an_update(s, draw(NOTIFY_IDS), TOTAL if s is CLOSED and refunded else draw(NO_REFUND)) for s in statuses]
    return chain, updates


@given(trade_histories())
def test_any_delivery_of_a_real_history_ends_at_its_furthest_status_with_each_fact_once(
    history: tuple[tuple[OrderStatus, ...], list[PaymentUpdate]],
) -> None:
    chain, updates = history
    order, events, decisions = run(updates)
    seen = {u.trade_status for u in updates} | {WAIT}

    assert not any(isinstance(d, Quarantine) for d in decisions)
    assert order.status is max(seen, key=chain.index)
    if order.status is CLOSED:
        refunded = SUCCESS in chain
        assert order.closed_reason is (ClosedReason.REFUNDED if refunded else ClosedReason.TIMEOUT)

    counts = Counter(types(events))
    paid_seen = bool(seen & {SUCCESS, FINISHED}) or (CLOSED in seen and SUCCESS in chain)
    assert counts[PAID] == int(paid_seen)
    assert counts[FINISH] == int(FINISHED in seen)
    assert counts[CLOSE] == int(CLOSED in seen)
    assert len({e.event_id for e in events}) == len(events)
    if paid_seen:
        assert events[0].detail_type is PAID
    assert order.version == 1 + sum(isinstance(d, Apply) for d in decisions)


@given(st.lists(st.tuples(st.sampled_from(list(OrderStatus)), NOTIFY_IDS, st.sampled_from([None, TOTAL])), max_size=12))
def test_any_sequence_at_all_only_moves_forward_and_emits_each_fact_at_most_once(
    raw: list[tuple[OrderStatus, str | None, Decimal | None]],
) -> None:
    # Adversarial: statuses no real trade produces together (FINISHED and CLOSED) are allowed here too.
    updates = [an_update(status, notify_id, refund) for status, notify_id, refund in raw]
    order = a_new_order()
    events: list[OrderEvent] = []
    for i, update in enumerate(updates):
        decision = decide(order, update, (START + timedelta(seconds=i + 1)).isoformat())
        if isinstance(decision, Apply):
            new = decision.new_order
            # A move forward, or a refund that keeps the status (its running total grew).
            assert new.status in ALLOWED_TRANSITIONS[order.status] or new.refunded > order.refunded
            assert new.was_paid or not order.was_paid  # a paid order never becomes "closed unpaid"
            events += events_for_change(order, new, update.notify_id)
            order = new

    counts = Counter(types(events))
    assert all(n == 1 for n in counts.values())
    assert counts[PAID] == int(order.was_paid)


@given(trade_histories())
def test_replaying_every_update_already_seen_changes_nothing(
    history: tuple[tuple[OrderStatus, ...], list[PaymentUpdate]],
) -> None:
    _, updates = history
    order, _, _ = run(updates)
    assert not any(isinstance(decide(order, u, NOW), Apply) for u in updates)


# --- events rebuilt from the order's history (an operator's events replay) ----------------------------------------

UPDATES = st.tuples(
    st.sampled_from([SUCCESS, FINISHED, CLOSED, SUCCESS]),
    st.sampled_from([None, Decimal("0.00"), Decimal("1.00"), Decimal("5.00"), TOTAL, Decimal("20.00")]),
)


@pytest.mark.parametrize("refundable", [REFUNDABLE_STATUSES, LEGACY_REFUNDABLE_STATUSES], ids=["openapi", "mapi"])
@given(updates=st.lists(UPDATES, max_size=8))
def test_events_rebuilt_from_history_are_exactly_those_the_relay_published_ids_and_times_included(
    refundable: frozenset[OrderStatus], updates: list[tuple[OrderStatus, Decimal | None]]
) -> None:
    order = a_new_order()
    published: list[OrderEvent] = []
    for step, (status, refund_fee) in enumerate(updates):
        now = (START + timedelta(minutes=step + 1)).isoformat().replace("+00:00", "Z")
        decision = decide(order, an_update(status, f"n-{step}", refund_fee, occurred_at=now), now, refundable)
        if isinstance(decision, Apply):
            published += events_for_change(order, decision.new_order, decision.new_order.notify_id)
            order = decision.new_order
    rebuilt = events_from_history(order)
    assert rebuilt == published
    assert [(e.event_id, e.occurred_at) for e in rebuilt] == [(e.event_id, e.occurred_at) for e in published]


def test_an_order_without_history_has_no_events_to_rebuild() -> None:
    assert events_from_history(a_new_order()) == []
