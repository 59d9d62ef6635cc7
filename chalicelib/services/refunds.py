"""Refunds: ``POST /merchant/orders/{out_trade_no}/refunds``, idempotent by ``out_request_no``, never above the rest.

The refund is reserved on the order first (a versioned write, so two concurrent refunds cannot both spend the same
remainder), then asked of Alipay. It is recorded done only once Alipay confirmed the money moved: a reply with
``fund_change=Y`` (legacy: forex_refund's synchronous ``T``), the refund query's ``REFUND_SUCCESS``, or a refund
notification naming it (``out_biz_no``, decided in ``orders/model.py``). Until then it is ``REFUND_PENDING`` (202), its
amount reserved, and the scheduled sweep (``RefundSweep``) asks the refund query. ``OrderRefunded`` is published once
per refund, from the stream, keyed by its ``out_request_no``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.orders.model import Order, OrderStatus, Refund, RefundKind, RefundStatus
from chalicelib.orders.money import currency_message, fits_currency

from .clock import Clock, iso_utc
from .errors import BadRequest, NotRefundable, RefundRequestConflict, ServiceError, ValidationError
from .ports import AlipayGateway, Metrics, NotSupported, OrderRepository, PortError, RefundRefused, Unavailable
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
    """Refund part or all of a paid order through Alipay, once per ``out_request_no``, and see each refund through."""

    orders: OrderRepository
    gateway: AlipayGateway
    refundable: frozenset[OrderStatus]  # the protocol's: mapi refunds TRADE_FINISHED too
    now: Clock
    metrics: Metrics | None = None
    max_attempts: int = 5
    new_request_no: Callable[[], str] = lambda: "r" + secrets.token_hex(12)

    def refund(self, out_trade_no: str, payload: object, requested_by: str | None = None) -> dict[str, str]:
        """Reserve, ask Alipay, record what it confirmed; the refund's view (``REFUND_SUCCESS`` or ``REFUND_PENDING``).

        Every answer names the refund's ``out_request_no``, errors included (``exc.out_request_no``): a client that
        retries with it reaches the same refund, which Alipay carries out at most once.
        """
        command = RequestRefund.from_json(payload)
        out_request_no = command.out_request_no or self.new_request_no()
        try:
            refund, order = self._reserve(out_trade_no, command, out_request_no, requested_by)
            if refund.status is RefundStatus.SUCCEEDED:
                return refund_view(out_trade_no, refund)
            if refund.status is RefundStatus.FAILED:
                raise RefundRefused("refused earlier", f"out_request_no {out_request_no!r} was refused by Alipay")
            return refund_view(out_trade_no, self._ask(out_trade_no, refund, order))
        except (ServiceError, PortError) as exc:
            exc.out_request_no = out_request_no
            raise

    def settle(self, order: Order, refund: Refund, *, resend: bool) -> RefundStatus:
        """The sweep's step for one pending refund: ask Alipay's refund query, and record what it confirms.

        ``resend``: when the query knows no such refund, ask for it again (the refund call is idempotent by its
        ``out_request_no`` on Open Platform, so a request that never reached Alipay is made once, never twice).
        ``NotSupported`` when the protocol has no refund query (legacy): an operator settles it.
        """
        try:
            query = self.gateway.query_refund(order.out_trade_no, refund.out_request_no)
        except NotSupported:
            # Legacy has no refund query. A late payment's return is asked once, automatically (the attempt is
            # recorded first, so a crash cannot make it twice); what a repeated forex_refund gets is UNCONFIRMED, so
            # anything after that is an operator's, like a merchant's refund left pending.
            if refund.kind is RefundKind.RETURN and refund.attempts == 0 and resend:
                asked = self._record_attempt(order.out_trade_no, refund)
                if asked is not None:
                    return self._ask(order.out_trade_no, asked, order).status
            raise
        if query.refunded:
            return self._confirm(order.out_trade_no, refund, None, "reconciliation").status
        if query.failed:
            # Antom's inquiryRefund: FAIL is final, no money moved (the merchant may refund again, with a new number).
            self._record(order.out_trade_no, replace(refund, status=RefundStatus.FAILED))
            return RefundStatus.FAILED
        if resend and query.found:
            return self._ask(order.out_trade_no, refund, order).status
        return RefundStatus.PENDING

    def notified(
        self, out_trade_no: str, out_request_no: str, succeeded: bool, applied_by: str = "notification"
    ) -> str:
        """Record what a verified refund notification says of one refund (Antom's ``notifyRefund``: a final SUCCESS or
        FAIL, with this refund's amount only); ``applied``, ``duplicate``, or ``unknown`` / ``conflict`` (for an
        operator: a refund nobody here asked for, or one whose recorded outcome the notification contradicts).

        ``out_trade_no`` may be empty (the notification did not name the order): the pending refunds are searched.
        ``applied_by`` names who applied it in the order's history (``operator`` for a replayed notification).
        """
        order = self._order_of_refund(out_trade_no, out_request_no)
        recorded = order.refunds.get(out_request_no) if order is not None else None
        if order is None or recorded is None:
            return "unknown"
        final = RefundStatus.SUCCEEDED if succeeded else RefundStatus.FAILED
        if recorded.status is final:
            return "duplicate"
        if recorded.status is not RefundStatus.PENDING:
            return "conflict"
        if succeeded:
            done = self._confirm(order.out_trade_no, recorded, None, applied_by)
            return "applied" if done.status is RefundStatus.SUCCEEDED else "duplicate"
        self._record(order.out_trade_no, replace(recorded, status=RefundStatus.FAILED))
        return "applied"

    def _order_of_refund(self, out_trade_no: str, out_request_no: str) -> Order | None:
        if out_trade_no:
            return self.orders.get(out_trade_no)
        # Only a refund still pending can be settled by a notification; the index holds exactly those.
        far_future = "9999-12-31T23:59:59Z"
        return next((o for o in self.orders.with_pending_refunds(far_future) if out_request_no in o.refunds), None)

    def _ask(self, out_trade_no: str, refund: Refund, order: Order) -> Refund:
        """Ask Alipay for ``refund`` and record what it confirmed; the refund as recorded afterwards."""
        try:
            # forex_refund names the trade's currency and the product it was paid with (the order's channel).
            result = self.gateway.refund(
                out_trade_no,
                refund.amount,
                refund.out_request_no,
                refund.reason,
                order.currency,
                channel=order.channel,
                trade_no=order.trade_no,  # Antom refunds by its paymentId
            )
        except RefundRefused:
            if refund.kind is RefundKind.RETURN and self._given_back_already(out_trade_no):
                # The late payment was given back at Alipay before we asked: Antom's cancel of a payment that had just
                # succeeded refunds it in full (the close on expiry crossed the payment), and a trade refunded in
                # full by other means is closed too. The return is done; asking again is what Alipay refused.
                log.info("late payment already given back at Alipay", extra={"out_trade_no": out_trade_no})
                return self._confirm(out_trade_no, refund, None, "reconciliation")
            self._record(out_trade_no, replace(refund, status=RefundStatus.FAILED))
            if refund.kind is RefundKind.RETURN:
                self._count("PaymentReturnsRefused")  # money captured for a closed order that Alipay will not return
            raise
        # Unavailable propagates (503, naming the out_request_no) and leaves the refund pending: a retry with the same
        # out_request_no resumes, and Alipay refunds that out_request_no at most once; the sweep settles it otherwise.
        # Any other PortError (e.g. a legacy reply that says nothing about the money) also leaves it pending.
        if not result.fund_change:
            # Open Platform's fund_change=N (Antom's U): the request is known, but this reply does not say the money
            # moved (a repeat, or a refund still being carried out). Only the refund query's success confirms it.
            try:
                query = self.gateway.query_refund(out_trade_no, refund.out_request_no)
            except Unavailable:
                return refund  # pending: the sweep asks again
            if not query.refunded:
                return refund
            return self._confirm(out_trade_no, refund, None, "refund")
        # fund_change=Y, or legacy forex_refund's synchronous T (is_sync=Y: the reply is the refund's own result).
        return self._confirm(out_trade_no, refund, result.refund_fee, "refund")

    def _given_back_already(self, out_trade_no: str) -> bool:
        """Whether Alipay's trade, known paid (a verified payment made us return it), is now closed: given back in full.

        A paid trade closes only when all of it is refunded (Open Platform and legacy: TRADE_CLOSED; Antom: a payment
        cancelled after it succeeded, which Antom refunds). No answer is no proof: the return is then refused as before.
        """
        try:
            trade = self.gateway.query_trade(out_trade_no)
        except PortError:
            return False
        return trade.found and trade.trade_status == OrderStatus.TRADE_CLOSED

    def _record_attempt(self, out_trade_no: str, refund: Refund) -> Refund | None:
        """Record one more request for ``refund`` before it is made; None when the order moved meanwhile."""
        order = find_order(self.orders, out_trade_no)
        current = order.refunds.get(refund.out_request_no)
        if current != refund:
            return None
        attempted = replace(refund, attempts=refund.attempts + 1)
        written = self.orders.replace(order.with_refund(attempted, iso_utc(self.now())), expected_version=order.version)
        return attempted if written else None

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
            if not fits_currency(command.amount, order.currency):
                raise ValidationError("amount", currency_message(order.currency))
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

    def _confirm(self, out_trade_no: str, refund: Refund, reported_fee: Decimal | None, applied_by: str) -> Refund:
        """Record Alipay's confirmation of ``refund`` on its order, in one versioned write; the refund as recorded.

        The refund is marked done in the same write that raises the running total (``Order.with_refund_confirmed``):
        were it marked later, a crash in between would leave it pending with its amount counted, and a retry would ask
        Alipay again (for forex_refund a repeat's answer is UNCONFIRMED: an error, or a "T" that would add it twice).
        Confirmations of several refunds may come in any order: each is recorded, and each gives one OrderRefunded.
        """
        for _ in range(self.max_attempts):
            order = find_order(self.orders, out_trade_no)
            recorded = order.refunds.get(refund.out_request_no, refund)
            if recorded.status is not RefundStatus.PENDING:
                return recorded  # confirmed meanwhile (a notification, the sweep) or refused: nothing to add
            if reported_fee is not None and reported_fee > order.total_amount:
                # Alipay reports more refunded than was paid: an alarm, never a write. The refund stays pending.
                self._count("RefundAnswersRejected")
                log.error("refund answer over the order's total", extra={"out_trade_no": out_trade_no})
                return recorded
            now = iso_utc(self.now())
            done = order.with_refund_confirmed(
                refund.out_request_no, now, applied_by=applied_by, reported_fee=reported_fee
            )
            if self.orders.replace(done, expected_version=order.version):
                self._count("PaymentsReturned" if recorded.kind is RefundKind.RETURN else "RefundsConfirmed")
                return done.refunds[refund.out_request_no]
        raise Unavailable(f"order {out_trade_no} kept changing; retry the refund")

    def _count(self, name: str) -> None:
        if self.metrics is not None:
            self.metrics.count(name)

    def _record(self, out_trade_no: str, refund: Refund) -> None:
        """Record the refund's outcome on the order (a versioned write, retried on a concurrent change)."""
        for _ in range(self.max_attempts):
            current = find_order(self.orders, out_trade_no)
            if current.refunds.get(refund.out_request_no) == refund:
                return
            if self.orders.replace(current.with_refund(refund, iso_utc(self.now())), expected_version=current.version):
                return
        # Alipay has the final word; only this record's status lags, and the sweep looks again.
        log.warning("refund outcome not recorded", extra={"out_trade_no": out_trade_no})
