"""One order and the updates that move it: what the domain tests (transitions, events) build their cases from."""

from __future__ import annotations

from decimal import Decimal

from chalicelib.orders import ClosedReason, Order, OrderStatus, PaymentUpdate

WAIT = OrderStatus.WAIT_BUYER_PAY
SUCCESS = OrderStatus.TRADE_SUCCESS
FINISHED = OrderStatus.TRADE_FINISHED
CLOSED = OrderStatus.TRADE_CLOSED

OUT_TRADE_NO = "ORDER-1"
CREATED = "2025-01-01T00:00:00Z"
NOW = "2025-01-01T00:05:00Z"
TOTAL = Decimal("12.34")
TRADE_NO = "2025010122001400000000000001"


def a_new_order(total_amount: Decimal = TOTAL) -> Order:
    """The order as ``POST /orders`` creates it: waiting, version 1."""
    return Order.create(
        out_trade_no=OUT_TRADE_NO, total_amount=total_amount, currency="USD", subject="Tea", now=CREATED
    )


def an_order(status: OrderStatus = WAIT, closed_reason: ClosedReason | None = None, **changes: object) -> Order:
    """The order as stored in ``status`` (paid ones carry a trade_no and the notify_id that moved them)."""
    fields: dict[str, object] = {
        "out_trade_no": OUT_TRADE_NO,
        "total_amount": TOTAL,
        "currency": "USD",
        "subject": "Tea",
        "body": None,
        "status": status,
        "created_at": CREATED,
        "updated_at": CREATED,
        "trade_no": None if status is WAIT else TRADE_NO,
        "closed_reason": closed_reason,
        "notify_id": None if status is WAIT else "n-earlier",
        "version": 1 if status is WAIT else 2,
    }
    fields.update(changes)
    return Order(**fields)  # type: ignore[arg-type]


def an_update(
    status: OrderStatus, notify_id: str | None = "n-1", refund_fee: Decimal | None = None, **changes: object
) -> PaymentUpdate:
    """A notification's facts about the order: ``status``, its amount, by default no refund."""
    fields: dict[str, object] = {
        "out_trade_no": OUT_TRADE_NO,
        "trade_status": status,
        "total_amount": TOTAL,
        "currency": "USD",
        "trade_no": TRADE_NO,
        "notify_id": notify_id,
        "refund_fee": refund_fee,
        "occurred_at": NOW,
    }
    fields.update(changes)
    return PaymentUpdate(**fields)  # type: ignore[arg-type]
