"""The business facts downstream services hear about (docs/events.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any

from chalicelib.topology import EVENT_SOURCE

from .model import ClosedReason, Order, OrderItem, OrderStatus, Refund, RefundKind, RefundStatus

SOURCE = EVENT_SOURCE  # chalicelib/topology.py: infra's rules and the local tap match on it


class EventType(StrEnum):
    """The EventBridge detail-types this package emits."""

    ORDER_PAID = "OrderPaid"
    ORDER_FINISHED = "OrderFinished"
    ORDER_CLOSED = "OrderClosed"
    ORDER_REFUNDED = "OrderRefunded"
    PAYMENT_RETURNED = "PaymentReturned"


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One business fact about one order, as published on the bus."""

    detail_type: EventType
    out_trade_no: str
    trade_no: str | None
    status: OrderStatus
    previous_status: OrderStatus
    total_amount: Decimal
    currency: str
    refund_fee: Decimal | None
    notify_id: str | None
    occurred_at: str
    refund_amount: Decimal | None = None  # OrderRefunded: this refund's own amount (refund_fee is the running total)
    buyer: str | None = None  # whose order it is, where known: fulfilment needs it
    items: tuple[OrderItem, ...] = ()  # what was bought, where known
    out_request_no: str | None = None  # OrderRefunded: the refund's own number (Alipay's idempotency key for it)
    reason: str | None = None  # PaymentReturned: why the money went back

    @property
    def source(self) -> str:
        """The EventBridge source."""
        return SOURCE

    @property
    def event_id(self) -> str:
        """``<out_trade_no>:<detail_type>``, the same on every retry so consumers can dedupe."""
        # Unique per fact because each of these facts happens at most once per order. Not
        # <out_trade_no>:<status>: a direct WAIT_BUYER_PAY -> TRADE_FINISHED would give that id to both
        # OrderPaid and OrderFinished. OrderRefunded happens once per refund, named by its out_request_no whichever
        # path confirmed it and in whatever order; a refund we only know as a grown running total (a notice that does
        # not name it) is named by that total, which only grows.
        if self.detail_type is EventType.PAYMENT_RETURNED:
            return f"{self.out_trade_no}:{self.detail_type}:{self.out_request_no}"
        if self.detail_type is EventType.ORDER_REFUNDED:
            if self.out_request_no is not None:
                return f"{self.out_trade_no}:{self.detail_type}:{self.out_request_no}"
            if self.refund_fee is not None:
                return f"{self.out_trade_no}:{self.detail_type}:{_amount(self.refund_fee)}"
        return f"{self.out_trade_no}:{self.detail_type}"

    def detail(self) -> dict[str, Any]:
        """The event's ``detail``, JSON-ready: amounts as decimal strings, never floats."""
        detail: dict[str, Any] = {
            "event_id": self.event_id,
            "out_trade_no": self.out_trade_no,
            "trade_no": self.trade_no,
            "status": str(self.status),
            "previous_status": str(self.previous_status),
            "total_amount": _amount(self.total_amount),
            "currency": self.currency,
            "notify_id": self.notify_id,
            "occurred_at": self.occurred_at,
        }
        if self.refund_fee is not None:
            detail["refund_fee"] = _amount(self.refund_fee)
        if self.detail_type is EventType.PAYMENT_RETURNED and self.refund_amount is not None:
            detail["amount"] = _amount(self.refund_amount)  # the whole captured amount, given back
            detail["reason"] = self.reason
        elif self.refund_amount is not None:
            detail["refund_amount"] = _amount(self.refund_amount)
        if self.out_request_no is not None:
            detail["out_request_no"] = self.out_request_no
        if self.buyer is not None:
            detail["buyer"] = self.buyer
        if self.items:
            detail["items"] = [
                {"sku": i.sku, "quantity": i.quantity, "unit_price": _amount(i.unit_price), "amount": _amount(i.amount)}
                for i in self.items
            ]
        return detail


_CENT = Decimal("0.01")


def _amount(value: Decimal) -> str:
    # Always two places, fixed-point: DynamoDB hands back 12.30 as 12.3 and may give 1E+2 for 100.
    return format(value.quantize(_CENT), "f")


def events_for_change(old: Order | None, new: Order, notify_id: str | None) -> list[OrderEvent]:
    """The facts a stored change establishes, in the order they happened; none for a new or unchanged order."""
    if old is None:
        return []
    confirmed = [
        r
        for r in new.refunds.values()
        if r.status is RefundStatus.SUCCEEDED
        and (old.refunds.get(r.out_request_no) is None or old.refunds[r.out_request_no].status is not r.status)
    ]
    returned = [r for r in confirmed if r.kind is RefundKind.RETURN]
    confirmed = [r for r in confirmed if r.kind is RefundKind.REFUND]
    refunded = new.refunded > old.refunded
    if old.status == new.status and not refunded and not confirmed and not returned:
        return []  # a duplicate, or only a refund request recorded: no business fact yet
    facts: list[tuple[EventType, Refund | None]] = []
    # was_paid, not status: a direct WAIT_BUYER_PAY -> TRADE_FINISHED was paid too, and a close that
    # carries a refund proves a payment whose own notification was lost.
    if new.was_paid and not old.was_paid:
        facts.append((EventType.ORDER_PAID, None))
    # One OrderRefunded per refund Alipay confirmed in this change; a grown total that no refund of ours explains
    # (a notice without the refund's number) is one refund too, named by that total.
    facts.extend((EventType.ORDER_REFUNDED, r) for r in sorted(confirmed, key=lambda r: r.out_request_no))
    if refunded and not confirmed:
        facts.append((EventType.ORDER_REFUNDED, None))
    if new.status is OrderStatus.TRADE_FINISHED and old.status is not OrderStatus.TRADE_FINISHED:
        facts.append((EventType.ORDER_FINISHED, None))
    if new.status is OrderStatus.TRADE_CLOSED and old.status is not OrderStatus.TRADE_CLOSED:
        facts.append((EventType.ORDER_CLOSED, None))
    # Money captured after the order closed, given back: once the return is confirmed, one event per return.
    facts.extend((EventType.PAYMENT_RETURNED, r) for r in returned)
    return [_event(detail_type, refund, old, new, notify_id) for detail_type, refund in facts]


def _event(detail_type: EventType, refund: Refund | None, old: Order, new: Order, notify_id: str | None) -> OrderEvent:
    refund_amount = None
    if detail_type in (EventType.ORDER_REFUNDED, EventType.PAYMENT_RETURNED):
        refund_amount = refund.amount if refund is not None else new.refunded - old.refunded
    return OrderEvent(
        detail_type=detail_type,
        out_trade_no=new.out_trade_no,
        trade_no=new.trade_no,
        status=new.status,
        previous_status=old.status,
        total_amount=new.total_amount,
        currency=new.currency,
        # OrderPaid is about the payment; the terminal facts report what was refunded, if anything.
        refund_fee=None if detail_type is EventType.ORDER_PAID else new.refund_fee,
        notify_id=notify_id,
        # The moment the change was stored: read from the stream image, so stable across retries.
        occurred_at=new.updated_at,
        refund_amount=refund_amount,
        buyer=new.buyer,
        items=new.items,
        out_request_no=refund.out_request_no if refund is not None else None,
        reason=refund.reason if detail_type is EventType.PAYMENT_RETURNED and refund is not None else None,
    )


def events_from_history(order: Order) -> list[OrderEvent]:
    """Every event the order's stored changes established, as the relay first published them (ids, ``occurred_at``).

    The order is rebuilt change by change from its history (each entry is one stored write of a status, a refund
    total or a refund's confirmation) and each step is given to ``events_for_change``, as the relay gave it the
    stream's old and new images. So a replay carries the original ``event_id`` and ``occurred_at`` and consumers drop
    what they already have. A refund counts as confirmed from the change that names it (``out_request_no``); until
    then it is as requested. An order stored before it kept a history has nothing to replay.
    """
    requested = {no: replace(r, status=RefundStatus.PENDING) for no, r in order.refunds.items()}
    state = replace(
        order,
        status=OrderStatus.WAIT_BUYER_PAY,
        refund_fee=None,
        notify_id=None,
        closed_reason=None,
        updated_at=order.created_at,
        history=(),
        refunds=requested,
    )
    events: list[OrderEvent] = []
    for change in order.history:
        closed_reason: ClosedReason | None = None
        if change.status is OrderStatus.TRADE_CLOSED:
            # TRADE_CLOSED is terminal, so the order's own reason is the one this change wrote.
            closed_reason = order.closed_reason or ClosedReason.TIMEOUT
        refunds = state.refunds
        confirmed = order.refunds.get(change.out_request_no or "")
        if confirmed is not None and confirmed.status is RefundStatus.SUCCEEDED:
            refunds = {**refunds, confirmed.out_request_no: confirmed}
        new = replace(
            state,
            status=change.status,
            refund_fee=change.refund_fee if change.refund_fee is not None else state.refund_fee,
            notify_id=change.notify_id,
            closed_reason=closed_reason,
            updated_at=change.at,
            refunds=refunds,
        )
        events.extend(events_for_change(state, new, new.notify_id))
        state = new
    return events
