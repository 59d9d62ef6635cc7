"""The optimistic one-write plan agrees with decide() for every order state its condition admits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chalicelib.orders.model import (
    Apply,
    ClosedReason,
    Order,
    OrderStatus,
    PaymentUpdate,
    decide,
    plan_transition,
)

NOW = "2026-11-26T08:00:00Z"
LATER = "2026-11-26T09:00:00Z"


def _order(status: OrderStatus, closed_reason: ClosedReason | None = None, refund: str | None = None) -> Order:
    return Order(
        out_trade_no="o-1",
        total_amount=Decimal("12.34"),
        currency="USD",
        subject="s",
        body=None,
        status=status,
        created_at=NOW,
        updated_at=NOW,
        trade_no="t-1" if status is not OrderStatus.WAIT_BUYER_PAY else None,
        refund_fee=Decimal(refund) if refund else None,
        notify_id="n-0",
        closed_reason=closed_reason,
        version=3,
    )


ORDERS = [
    _order(OrderStatus.WAIT_BUYER_PAY),
    _order(OrderStatus.TRADE_SUCCESS),
    _order(OrderStatus.TRADE_SUCCESS, refund="1.00"),
    _order(OrderStatus.TRADE_SUCCESS, refund="8.00"),
    _order(OrderStatus.TRADE_FINISHED),
    _order(OrderStatus.TRADE_CLOSED, ClosedReason.TIMEOUT),
    _order(OrderStatus.TRADE_CLOSED, ClosedReason.REFUNDED, refund="12.34"),
]
UPDATES = [
    PaymentUpdate("o-1", status, Decimal("12.34"), currency, trade_no, "n-1", refund, LATER)
    for status in OrderStatus
    for currency in (None, "USD")
    for trade_no in (None, "t-1")
    for refund in (None, Decimal("0.00"), Decimal("5.00"), Decimal("12.34"), Decimal("99.00"))
]


@pytest.mark.parametrize("update", UPDATES)
@pytest.mark.parametrize("order", ORDERS)
def test_plan_writes_what_decide_would_for_every_admitted_order(order: Order, update: PaymentUpdate) -> None:
    plan = plan_transition(update, LATER)
    decision = decide(order, update, LATER)
    if plan.admits(order):
        assert isinstance(decision, Apply)
        assert plan.applied_to(order) == decision.new_order
    else:
        # Outside the condition the write fails and the consumer falls back to decide(): never a silent skip.
        # What decide() then applies is a paid order's close, or a refund notice: those are always decided on the
        # order as read (a refund confirms one refund of the order's map by its number).
        assert not isinstance(decision, Apply) or order.status is OrderStatus.TRADE_SUCCESS or bool(update.refund_fee)


def test_a_refund_notice_for_a_paid_order_is_decided_on_the_read_order() -> None:
    update = PaymentUpdate("o-1", OrderStatus.TRADE_SUCCESS, Decimal("12.34"), None, "t-1", "n-9", Decimal("5"), LATER)
    assert not plan_transition(update, LATER).admits(_order(OrderStatus.TRADE_SUCCESS))


def test_a_refund_total_above_the_order_total_is_never_written_unread() -> None:
    update = PaymentUpdate("o-1", OrderStatus.TRADE_CLOSED, Decimal("12.34"), None, "t-1", "n-9", Decimal("99"), LATER)
    assert plan_transition(update, LATER).predecessors == frozenset()


def test_the_unread_write_never_lowers_a_refund_total() -> None:
    update = PaymentUpdate("o-1", OrderStatus.TRADE_CLOSED, Decimal("12.34"), None, "t-1", "n-9", Decimal("5"), LATER)
    assert not plan_transition(update, LATER).admits(_order(OrderStatus.TRADE_SUCCESS, refund="8.00"))


def test_plain_close_of_a_paid_order_is_not_written_unread_as_a_timeout() -> None:
    update = PaymentUpdate("o-1", OrderStatus.TRADE_CLOSED, Decimal("12.34"), None, "t-1", "n-9", None, LATER)
    plan = plan_transition(update, LATER)
    assert plan.predecessors == {OrderStatus.WAIT_BUYER_PAY}
    decision = decide(_order(OrderStatus.TRADE_SUCCESS), update, LATER)
    assert isinstance(decision, Apply)
    assert decision.new_order.closed_reason is ClosedReason.REFUNDED
