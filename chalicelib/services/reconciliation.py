"""Reconciliation: orders still waiting after a while are asked about at Alipay, and closed once past their timeout.

Notifications do get lost (a wrong ``notify_url``, an outage longer than Alipay's ~25 h of retries). A scheduled run
reads the waiting orders from a sparse index (never a scan), queries each at Alipay, and applies what Alipay confirms
through ``OrderUpdater.apply``: the same state machine, the same events, the same idempotency as a
notification. It asks at most ``max_queries`` times per run, ``min_interval`` seconds apart, so it cannot flood Alipay.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

from chalicelib.alipay.errors import VerificationError
from chalicelib.orders.model import Order, OrderStatus, Refund, RefundStatus

from .clock import Clock, iso_utc
from .errors import ServiceError
from .evidence import AskedBy, GatewayAnswer, Payment
from .notifications import OrderUpdater, Outcome
from .ports import AlipayGateway, Metrics, NotSupported, OrderRepository, PortError, TradeQueryResult
from .refunds import RefundService

log = logging.getLogger(__name__)

T = TypeVar("T")
_CONFIRMED = frozenset({OrderStatus.TRADE_SUCCESS, OrderStatus.TRADE_FINISHED, OrderStatus.TRADE_CLOSED})


@dataclass
class ReconciliationReport:
    """What one run did, for its log line and its metrics."""

    examined: int = 0
    applied: int = 0
    closed: int = 0
    waiting: int = 0
    unknown_status: int = 0  # Alipay answered a status outside its enum: never closed on, asked again next run
    past_expiry: int = 0  # legacy: Alipay still says WAIT_BUYER_PAY an hour after the order's own deadline
    failed: int = 0
    budget_left: bool = True
    refunds_examined: int = 0
    refunds_settled: int = 0  # confirmed (or refused) at Alipay by this run
    refunds_overdue: int = 0  # still pending longer than the alarm's threshold

    def as_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "applied": self.applied,
            "closed": self.closed,
            "waiting": self.waiting,
            "unknown_status": self.unknown_status,
            "past_expiry": self.past_expiry,
            "failed": self.failed,
            "budget_left": self.budget_left,
            "refunds_examined": self.refunds_examined,
            "refunds_settled": self.refunds_settled,
            "refunds_overdue": self.refunds_overdue,
        }


@dataclass
class Reconciler:
    """Find waiting orders older than ``min_age`` and settle them with what Alipay confirms."""

    orders: OrderRepository
    gateway: AlipayGateway
    updater: OrderUpdater
    metrics: Metrics
    now: Clock
    can_close: bool  # the protocol's: Open Platform closes through alipay.trade.close; the legacy service only expires
    min_age: timedelta = timedelta(minutes=5)
    close_grace: timedelta = timedelta(minutes=1)
    max_queries: int = 50
    min_interval: float = 0.1
    default_timeout: timedelta = timedelta(minutes=30)  # for orders stored before pay_by was recorded
    # Legacy only (no close API, and it_b_pay counts from when Alipay creates the trade, which may be long after the
    # order was made here): an order Alipay has no trade for is closed only this long after its own deadline.
    legacy_margin: timedelta = timedelta(hours=1)
    # Pending refunds: settled with the refund query once a while old, on their own budget of gateway calls so that
    # neither sweep can starve the other; a refund pending longer than refund_overdue is counted for the alarm.
    refunds: RefundService | None = None
    refund_min_age: timedelta = timedelta(minutes=2)
    refund_overdue: timedelta = timedelta(hours=1)
    max_refund_queries: int = 20
    # Each waiting order's own schedule, so that orders Alipay cannot settle never starve the others: checked soon
    # after creation (min_age), then backing off (doubling up to max_backoff), and once more at its expiry; set aside
    # for park_interval with a reason when Alipay's answer cannot be applied (quarantined, unknown status).
    max_backoff: timedelta = timedelta(hours=1)
    park_interval: timedelta = timedelta(hours=6)
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    _last_call: float | None = field(default=None, init=False)
    _calls: int = field(default=0, init=False)

    def run(self) -> ReconciliationReport:
        """One pass over the waiting orders that are due, most overdue first, within this run's budget of calls."""
        self._calls, self._last_call = 0, None
        report = ReconciliationReport()
        started = self.now()
        young = iso_utc(started - self.min_age)
        for order in self.orders.waiting(iso_utc(started)):
            if order.next_check_at is None and order.created_at >= young:
                continue  # never checked and younger than min_age: its first check is not due yet
            if self._calls >= self.max_queries:
                # Due orders are left over: a starved run (an alarm). The schedule makes the next run reach them.
                report.budget_left = False
                break
            report.examined += 1
            try:
                waiting, parked = self._reconcile(order, started, report)
            except (PortError, VerificationError) as exc:
                # One trade's failure must not stop the others: it backs off and is looked at again later.
                report.failed += 1
                log.warning("order not reconciled: %s", exc, extra={"out_trade_no": order.out_trade_no})
                waiting, parked = True, None
            if waiting:
                self._schedule(order, started, parked)
        if not report.budget_left:
            self.metrics.count("ReconciliationStarved")
        counts = (
            ("Applied", report.applied),
            ("Closed", report.closed),
            ("Failed", report.failed),
            ("UnknownStatus", report.unknown_status),
            ("WaitingPastExpiry", report.past_expiry),
        )
        for name, value in counts:
            if value:
                self.metrics.count(f"Reconciliation{name}", value)
        if report.examined:  # the runs themselves are the function's invocations (AWS/Lambda)
            self.metrics.count("ReconciliationExamined", report.examined)
        self._sweep_refunds(started, report)
        return report

    def _sweep_refunds(self, started: datetime, report: ReconciliationReport) -> None:
        """Settle pending refunds with Alipay's refund query, oldest first, within their own budget of calls."""
        if self.refunds is None:
            return
        calls = 0
        overdue_before = iso_utc(started - self.refund_overdue)
        for order in self.orders.with_pending_refunds(iso_utc(started - self.refund_min_age)):
            for refund in order.pending_refunds:
                if refund.requested_at < overdue_before:
                    report.refunds_overdue += 1  # counted whether or not this run can settle it
                if calls >= self.max_refund_queries:
                    continue
                report.refunds_examined += 1
                calls += 1
                try:
                    status = self._call(partial(self._settle, order, refund))
                except NotSupported:
                    # Legacy: no refund query, so the refund waits for an operator (RefundsPendingTooLong's alarm).
                    continue
                except (PortError, VerificationError, ServiceError) as exc:
                    report.failed += 1
                    log.warning("refund not settled: %s", exc, extra={"out_trade_no": order.out_trade_no})
                    continue
                report.refunds_settled += status is not RefundStatus.PENDING
        if report.refunds_settled:
            self.metrics.count("RefundsSettled", report.refunds_settled)
        # Emitted every run (0 included), so the alarm on it also sees a sweep that stopped running.
        self.metrics.count("RefundsPendingTooLong", report.refunds_overdue)

    def _settle(self, order: Order, refund: Refund) -> RefundStatus:
        assert self.refunds is not None
        return self.refunds.settle(order, refund, resend=True)

    def _reconcile(self, order: Order, now: datetime, report: ReconciliationReport) -> tuple[bool, str | None]:
        """Settle ``order`` if Alipay says how; whether it is still waiting afterwards, and why to park it if so."""
        trade = self._call(lambda: self.gateway.query_trade(order.out_trade_no))
        status = _status(trade)
        if trade.found and status is None:
            # A status this product does not know is no reason to close (money may be on its way): ask again later,
            # and count it (ReconciliationUnknownStatus has an alarm) so that a persisting one gets looked at.
            report.unknown_status += 1
            extra = {"out_trade_no": order.out_trade_no, "status": trade.trade_status}
            log.warning("unknown trade status", extra=extra)
            return True, f"unknown_status:{trade.trade_status}"[:64]
        if status in _CONFIRMED:
            # Alipay's own word: paid (the notifications were lost) or already closed.
            amount = trade.total_amount if trade.total_amount is not None else order.total_amount
            if status is not OrderStatus.TRADE_CLOSED and trade.total_amount is None:
                raise VerificationError("a paid trade query without total_amount")  # never apply a payment unchecked
            paid = Payment(order.out_trade_no, status, amount, trade.currency, trade.trade_no)
            return self._settled(self._apply(paid, trade.raw), report, "applied")
        if now < self._deadline(order):
            report.waiting += 1
            return True, None
        if self.can_close:
            if self._calls >= self.max_queries:
                report.waiting += 1  # the close waits for the next run's budget
                return True, None
            closing = self._call(lambda: self.gateway.close_trade(order.out_trade_no))
            if not (closing.closed or not closing.found):
                # Not closable (most likely paid meanwhile): the next query tells which.
                report.waiting += 1
                return True, None
            raw = closing.raw
        else:
            # No close API: Alipay itself closes the trade when it_b_pay expires, counted from when it created the
            # trade. While its query says WAIT_BUYER_PAY the trade is open there: closing here would be a guess that a
            # later payment proves wrong. Only a trade Alipay never created is closed, and only after a margin.
            if now < self._deadline(order) + self.legacy_margin:
                report.waiting += 1
                return True, None
            if status is OrderStatus.WAIT_BUYER_PAY:
                # Still open at Alipay long after its own deadline here (a trade created late): asked again on the
                # schedule, counted so that one that persists gets looked at (ReconciliationWaitingPastExpiry).
                report.waiting += 1
                report.past_expiry += 1
                return True, None
            raw = trade.raw
        closed = Payment(order.out_trade_no, OrderStatus.TRADE_CLOSED, order.total_amount, trade_no=trade.trade_no)
        return self._settled(self._apply(closed, raw), report, "closed")

    @staticmethod
    def _settled(outcome: Outcome, report: ReconciliationReport, counter: str) -> tuple[bool, str | None]:
        if outcome is Outcome.APPLIED:
            setattr(report, counter, getattr(report, counter) + 1)
            return False, None
        if outcome is Outcome.QUARANTINED:
            return True, "quarantined"  # Alipay's answer cannot apply (another amount): an operator's, not each run's
        return True, None  # a duplicate or stale answer: the order moved meanwhile, or the next check tells

    def _schedule(self, order: Order, now: datetime, parked: str | None) -> None:
        """When to ask about ``order`` next: backing off, at its expiry, or parked; written over the version read."""
        deadline = self._deadline(order)
        if parked is not None:
            due = now + self.park_interval
        else:
            due = now + min(self.min_age * 2 ** min(order.checks, 16), self.max_backoff)
            if now < deadline < due:
                due = deadline  # asked once more as soon as it expires, so it is closed on time
        scheduled = replace(order, next_check_at=iso_utc(due), checks=order.checks + 1, parked=parked)
        # Bookkeeping, not a change of the order: its version stays. The index may lag the table: a version that moved
        # meanwhile just leaves the order due, to be looked at again.
        self.orders.reschedule(scheduled)

    def _deadline(self, order: Order) -> datetime:
        pay_by = datetime.fromisoformat(order.pay_by) if order.pay_by else None
        created = datetime.fromisoformat(order.created_at)
        return (pay_by or created + self.default_timeout) + self.close_grace

    def _apply(self, payment: Payment, raw: Mapping[str, Any]) -> Outcome:
        return self.updater.apply(GatewayAnswer(payment, AskedBy.RECONCILE, raw))

    def _call(self, call: Callable[[], T]) -> T:
        """One gateway call, at least ``min_interval`` after the previous one (a simple rate limit)."""
        if self._last_call is not None:
            wait = self._last_call + self.min_interval - self.monotonic()
            if wait > 0:
                self.sleep(wait)
        self._calls += 1
        try:
            return call()
        finally:
            self._last_call = self.monotonic()


def _status(trade: TradeQueryResult) -> OrderStatus | None:
    status = trade.trade_status
    if not trade.found or status is None or status not in OrderStatus.__members__:
        return None
    return OrderStatus(status)
