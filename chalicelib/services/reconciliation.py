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
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from chalicelib.alipay.errors import VerificationError
from chalicelib.orders.model import Order, OrderStatus

from .clock import Clock, iso_utc
from .evidence import AskedBy, GatewayAnswer, Payment
from .notifications import OrderUpdater, Outcome
from .ports import AlipayGateway, Metrics, OrderRepository, PortError, TradeQueryResult

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
    failed: int = 0
    budget_left: bool = True

    def as_json(self) -> dict[str, Any]:
        return {
            "examined": self.examined,
            "applied": self.applied,
            "closed": self.closed,
            "waiting": self.waiting,
            "failed": self.failed,
            "budget_left": self.budget_left,
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
    sleep: Callable[[float], None] = time.sleep
    monotonic: Callable[[], float] = time.monotonic
    _last_call: float | None = field(default=None, init=False)
    _calls: int = field(default=0, init=False)

    def run(self) -> ReconciliationReport:
        """One pass over the waiting orders, oldest first, within this run's budget of gateway calls."""
        self._calls, self._last_call = 0, None
        report = ReconciliationReport()
        started = self.now()
        for order in self.orders.waiting(iso_utc(started - self.min_age)):
            if self._calls >= self.max_queries:
                report.budget_left = False
                break
            report.examined += 1
            try:
                self._reconcile(order, started, report)
            except (PortError, VerificationError) as exc:
                # One trade's failure must not stop the others: it is simply looked at again next run.
                report.failed += 1
                log.warning("order not reconciled: %s", exc, extra={"out_trade_no": order.out_trade_no})
        for name, value in (("Applied", report.applied), ("Closed", report.closed), ("Failed", report.failed)):
            if value:
                self.metrics.count(f"Reconciliation{name}", value)
        if report.examined:  # the runs themselves are the function's invocations (AWS/Lambda)
            self.metrics.count("ReconciliationExamined", report.examined)
        return report

    def _reconcile(self, order: Order, now: datetime, report: ReconciliationReport) -> None:
        trade = self._call(lambda: self.gateway.query_trade(order.out_trade_no))
        status = _status(trade)
        if status in _CONFIRMED:
            # Alipay's own word: paid (the notifications were lost) or already closed.
            amount = trade.total_amount if trade.total_amount is not None else order.total_amount
            if status is not OrderStatus.TRADE_CLOSED and trade.total_amount is None:
                raise VerificationError("a paid trade query without total_amount")  # never apply a payment unchecked
            paid = Payment(order.out_trade_no, status, amount, trade.currency, trade.trade_no)
            report.applied += self._apply(paid, trade.raw) is Outcome.APPLIED
            return
        if now < self._deadline(order):
            report.waiting += 1
            return
        if self.can_close:
            if self._calls >= self.max_queries:
                report.waiting += 1  # the close waits for the next run's budget
                return
            closing = self._call(lambda: self.gateway.close_trade(order.out_trade_no))
            if not (closing.closed or not closing.found):
                # Not closable (most likely paid meanwhile): the next run's query tells which.
                report.waiting += 1
                return
            raw = closing.raw
        else:
            # No close API: Alipay itself closes the trade when it_b_pay expires; its query just said unpaid.
            raw = trade.raw
        closed = Payment(order.out_trade_no, OrderStatus.TRADE_CLOSED, order.total_amount, trade_no=trade.trade_no)
        report.closed += self._apply(closed, raw) is Outcome.APPLIED

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
