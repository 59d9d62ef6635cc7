"""Refunds: ``POST /orders/{out_trade_no}/refunds``, idempotent by ``out_request_no``, never above what is left.

The refund is reserved on the order first (a versioned write, so two concurrent refunds cannot both spend the same
remainder), then asked of Alipay, whose answer is applied through the same state machine as a notification: the
refund notification that follows is then a duplicate, and ``OrderRefunded`` is published once, from the stream.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.orders.model import PAID_STATUSES, Order, OrderStatus, Refund, RefundStatus

from .clock import Clock, iso_utc
from .errors import BadRequest, NotRefundable, RefundRequestConflict, ValidationError
from .evidence import Payment, RefundAnswer
from .notifications import OrderUpdater
from .ports import AlipayGateway, OrderRepository, RefundRefused, RefundResult, Unavailable
from .views import find_order, refund_view

log = logging.getLogger(__name__)

_FIELDS = frozenset({"amount", "reason", "out_request_no"})
_MAX_REASON = 256


@dataclass(frozen=True, slots=True)
class RequestRefund:
    """The body of ``POST /orders/{out_trade_no}/refunds``, validated."""

    amount: Decimal
    reason: str | None
    out_request_no: str | None

    @classmethod
    def from_json(cls, data: object) -> RequestRefund:
        """Check the shape and each field; amounts are strings (``"1.00"``), never JSON numbers."""
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        for name in data:
            if name not in _FIELDS:
                raise ValidationError(str(name), "unknown field")
        for name, value in data.items():
            if value is not None and not isinstance(value, str):
                raise ValidationError(name, "must be a string" + (', e.g. "1.00"' if name == "amount" else ""))
        if data.get("amount") is None:
            raise ValidationError("amount", "is required")
        try:
            amount = params.parse_amount(data["amount"], "amount")
            reason = params.check_text("reason", data["reason"], _MAX_REASON) if data.get("reason") else None
            out_request_no = params.check_out_trade_no(data["out_request_no"]) if data.get("out_request_no") else None
        except OrderError as exc:
            name = "out_request_no" if exc.field == "out_trade_no" else exc.field
            raise ValidationError(name, str(exc).removeprefix(f"{exc.field}: ")) from exc
        return cls(amount, reason, out_request_no)


@dataclass
class RefundService:
    """Refund part or all of a paid order through Alipay, once per ``out_request_no``."""

    orders: OrderRepository
    gateway: AlipayGateway
    updater: OrderUpdater
    refundable: frozenset[OrderStatus]  # the protocol's: mapi refunds TRADE_FINISHED too
    now: Clock
    max_attempts: int = 5
    new_request_no: Callable[[], str] = lambda: "r" + secrets.token_hex(12)

    def refund(self, out_trade_no: str, payload: object, requested_by: str | None = None) -> dict[str, str]:
        """Reserve, ask Alipay, apply its answer; the refund's view. Repeats answer the same."""
        command = RequestRefund.from_json(payload)
        out_request_no = command.out_request_no or self.new_request_no()
        refund, order = self._reserve(out_trade_no, command, out_request_no, requested_by)
        if refund.status is RefundStatus.SUCCEEDED:
            return refund_view(out_trade_no, refund)
        if refund.status is RefundStatus.FAILED:
            raise RefundRefused("refused earlier", f"out_request_no {out_request_no!r} was refused by Alipay")
        try:
            # forex_refund names the trade's currency and the product it was paid with (the order's channel).
            result = self.gateway.refund(
                out_trade_no, refund.amount, out_request_no, refund.reason, order.currency, channel=order.channel
            )
        except RefundRefused:
            self._settle(out_trade_no, replace(refund, status=RefundStatus.FAILED))
            raise
        # Unavailable propagates (503) and leaves the refund pending: a retry with the same out_request_no resumes,
        # and Alipay refunds that out_request_no at most once. Any other PortError (e.g. a legacy reply that says
        # nothing about the money) also leaves it pending, for a retry or an operator.
        order, refund_fee = self._apply(out_trade_no, refund, result)
        done = replace(refund, status=RefundStatus.SUCCEEDED, refund_fee=refund_fee)
        self._settle(out_trade_no, done, order)
        return refund_view(out_trade_no, done)

    def _reserve(
        self, out_trade_no: str, command: RequestRefund, out_request_no: str, requested_by: str | None = None
    ) -> tuple[Refund, Order]:
        """The refund as recorded on the order (the earlier one for a repeat, else newly reserved); the order read."""
        for _ in range(self.max_attempts):
            order = find_order(self.orders, out_trade_no)
            existing = order.refunds.get(out_request_no)
            if existing is not None:
                if existing.amount != command.amount:
                    raise RefundRequestConflict(f"out_request_no {out_request_no!r} refunded {existing.amount} before")
                return existing, order
            if order.status not in self.refundable:
                allowed = " or ".join(sorted(self.refundable))
                raise NotRefundable(f"order {out_trade_no} is {order.status}; only {allowed} can be refunded")
            if command.amount > order.refundable:
                raise ValidationError("amount", f"more than the {order.refundable:.2f} left to refund")
            refund = Refund(
                out_request_no,
                command.amount,
                RefundStatus.PENDING,
                iso_utc(self.now()),
                command.reason,
                requested_by=requested_by,
            )
            # Versioned: a concurrent refund, notification or reservation makes this fail, and we look again.
            if self.orders.replace(order.with_refund(refund, iso_utc(self.now())), expected_version=order.version):
                return refund, order
        raise Unavailable(f"order {out_trade_no} kept changing; retry the refund")

    def _apply(self, out_trade_no: str, refund: Refund, result: RefundResult) -> tuple[Order, Decimal]:
        """Alipay's confirmation through the state machine: the running total, and a close when it is full."""
        if result.refund_fee is not None:
            order = find_order(self.orders, out_trade_no)
            self.updater.apply(_answer(order, result.refund_fee, result))
            return find_order(self.orders, out_trade_no), result.refund_fee
        # forex_refund reports no running total: this refund goes on top of the total the order holds, written only
        # over the version it was computed from, so that a concurrent refund is never overwritten. The refund is
        # marked done in that same write: were it marked later, a crash in between would leave it pending with its
        # amount counted, and a retry would ask Alipay again (a repeat's answer is UNCONFIRMED: an error, or a "T"
        # that would add it twice).
        for _ in range(self.max_attempts):
            order = find_order(self.orders, out_trade_no)
            refund_fee = order.refunded + refund.amount
            now = iso_utc(self.now())
            done = replace(refund, status=RefundStatus.SUCCEEDED, refund_fee=refund_fee)
            recorded = replace(order.with_refund(done, now), version=order.version)  # one write, not one more
            if self.updater.apply_over(recorded, _answer(order, refund_fee, result), now) is not None:
                return find_order(self.orders, out_trade_no), refund_fee
        raise Unavailable(f"order {out_trade_no} kept changing; retry the refund")

    def _settle(self, out_trade_no: str, refund: Refund, order: Order | None = None) -> None:
        """Record the refund's outcome on the order (a versioned write, retried on a concurrent change)."""
        for _ in range(self.max_attempts):
            current = order or find_order(self.orders, out_trade_no)
            order = None
            if current.refunds.get(refund.out_request_no) == refund:
                return
            if self.orders.replace(current.with_refund(refund, iso_utc(self.now())), expected_version=current.version):
                return
        # Alipay has the final word and the running total is stored; only this record's status lags.
        log.warning("refund outcome not recorded", extra={"out_trade_no": out_trade_no})


def _answer(order: Order, refund_fee: Decimal, result: RefundResult) -> RefundAnswer:
    """Alipay's acceptance as the trade it leaves: ``refund_fee`` refunded in all, closed once that is everything."""
    full = refund_fee >= order.total_amount
    # A partial refund keeps the paid status the order has (mapi: TRADE_FINISHED); the full one closes it.
    paid = order.status if order.status in PAID_STATUSES else OrderStatus.TRADE_SUCCESS
    payment = Payment(
        out_trade_no=order.out_trade_no,
        status=OrderStatus.TRADE_CLOSED if full else paid,
        total_amount=order.total_amount,
        trade_no=result.raw.get("trade_no") or None,
        refund_fee=refund_fee,
    )
    return RefundAnswer(payment, result.out_request_no, result.raw)
