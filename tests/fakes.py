"""In-memory fakes of the ports: the same semantics as the real adapters, asserted on end state.

Each fake can be told to fail (``fail_with``) so tests can show what happens when a dependency is down.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from chalicelib.orders.catalogue import Product
from chalicelib.orders.events import OrderEvent
from chalicelib.orders.model import Order, OrderStatus, TransitionPlan
from chalicelib.services.ports import (
    AuditEntry,
    CashierPayment,
    ConditionFailed,
    IdempotencyRecord,
    NotSupported,
    OrderExists,
    PaymentPage,
    PaymentRefused,
    PortError,
    PublishFailed,
    QuarantineRecord,
    QueuedNotification,
    RedriveReport,
    RefundQueryResult,
    RefundRefused,
    RefundResult,
    Resolution,
    TradeCloseResult,
    TradeQueryResult,
    Unavailable,
)


class _Failing:
    """Mixin: ``fail_with(exc, times)`` makes the next ``times`` calls raise ``exc``."""

    def __init__(self) -> None:
        self._failures: list[PortError] = []
        self.calls = 0

    def fail_with(self, exc: PortError, times: int = 1) -> None:
        self._failures.extend([exc] * times)

    def _call(self) -> None:
        self.calls += 1
        if self._failures:
            raise self._failures.pop(0)


class InMemoryOrderRepository(_Failing):
    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, Order] = {}
        self._lock = threading.Lock()

    def add(self, order: Order) -> None:
        self._call()
        with self._lock:
            if order.out_trade_no in self.orders:
                raise OrderExists(order.out_trade_no)
            self.orders[order.out_trade_no] = order

    def get(self, out_trade_no: str) -> Order | None:
        self._call()
        return self.orders.get(out_trade_no)

    def remove_unsigned(self, out_trade_no: str) -> None:
        self._call()
        with self._lock:
            order = self.orders.get(out_trade_no)
            if order is not None and order.version == 1 and order.status is OrderStatus.WAIT_BUYER_PAY:
                del self.orders[out_trade_no]

    def apply_plan(self, plan: TransitionPlan) -> Order | ConditionFailed:
        self._call()
        with self._lock:
            order = self.orders.get(plan.out_trade_no)
            if order is None or not plan.admits(order):
                return ConditionFailed(order)
            new = plan.applied_to(order)
            self.orders[plan.out_trade_no] = new
            return new

    def replace(self, order: Order, *, expected_version: int) -> bool:
        self._call()
        with self._lock:
            current = self.orders.get(order.out_trade_no)
            if current is None or current.version != expected_version:
                return False
            self.orders[order.out_trade_no] = order
            return True

    def reschedule(self, order: Order) -> bool:
        self._call()
        with self._lock:
            current = self.orders.get(order.out_trade_no)
            if current is None or current.version != order.version or current.status is not OrderStatus.WAIT_BUYER_PAY:
                return False
            self.orders[order.out_trade_no] = replace(
                current, next_check_at=order.next_check_at, checks=order.checks, parked=order.parked
            )
            return True

    def waiting(self, created_before: str) -> Iterator[Order]:
        self._call()
        with self._lock:
            found = [o for o in self.orders.values() if o.status is OrderStatus.WAIT_BUYER_PAY]
        # As the index: sorted by when each order is next due (its creation until the reconciler scheduled a check).
        due = sorted((o.next_check_at or o.created_at, o.out_trade_no, o) for o in found)
        yield from (o for at, _, o in due if at < created_before)

    def with_pending_refunds(self, requested_before: str) -> Iterator[Order]:
        self._call()
        with self._lock:
            found = [
                o for o in self.orders.values() if o.pending_refunds and o.status is not OrderStatus.WAIT_BUYER_PAY
            ]
        since = sorted((o.pending_refunds[0].requested_at, o.out_trade_no, o) for o in found)
        yield from (o for at, _, o in since if at < requested_before)

    def for_buyer(self, buyer: str, limit: int, after: str | None = None) -> tuple[list[Order], str | None]:
        self._call()
        with self._lock:
            mine = [o for o in self.orders.values() if o.buyer == buyer]
        keyed = sorted(((f"{o.created_at}#{o.out_trade_no}", o) for o in mine), key=lambda pair: pair[0], reverse=True)
        if after is not None:
            keyed = [(key, o) for key, o in keyed if key < after]
        page = keyed[:limit]
        more = len(keyed) > limit
        return [o for _, o in page], (page[-1][0] if more and page else None)


class InMemoryCatalogue(_Failing):
    def __init__(self, *products: Product) -> None:
        super().__init__()
        self.products: dict[str, Product] = {p.sku: p for p in products}

    def put(self, product: Product) -> bool:
        self._call()
        new = product.sku not in self.products
        self.products[product.sku] = product
        return new

    def get(self, sku: str) -> Product | None:
        self._call()
        return self.products.get(sku)

    def get_many(self, skus: Iterable[str]) -> dict[str, Product]:
        self._call()
        return {sku: self.products[sku] for sku in skus if sku in self.products}

    def delete(self, sku: str) -> bool:
        self._call()
        return self.products.pop(sku, None) is not None

    def all(self) -> list[Product]:
        self._call()
        return [self.products[sku] for sku in sorted(self.products)]


@dataclass
class _Claim:
    record: IdempotencyRecord
    claimed_at: int
    expires_at: int


class InMemoryIdempotencyStore(_Failing):
    def __init__(self) -> None:
        super().__init__()
        self.claims: dict[str, _Claim] = {}
        self._lock = threading.Lock()

    def claim(self, key: str, request_hash: str, *, now: int, ttl: int, lock_seconds: int) -> IdempotencyRecord | None:
        self._call()
        with self._lock:
            existing = self.claims.get(key)
            if existing is not None and existing.expires_at > now:
                stale_lock = existing.record.response is None and existing.claimed_at + lock_seconds <= now
                if not stale_lock:
                    return existing.record
            self.claims[key] = _Claim(IdempotencyRecord(key, request_hash, None), now, now + ttl)
            return None

    def complete(self, key: str, response: Mapping[str, Any], status_code: int) -> None:
        self._call()
        with self._lock:
            claim = self.claims[key]
            record = IdempotencyRecord(key, claim.record.request_hash, dict(response), status_code)
            self.claims[key] = _Claim(record, claim.claimed_at, claim.expires_at)

    def release(self, key: str) -> None:
        self._call()
        with self._lock:
            claim = self.claims.get(key)
            if claim is not None and claim.record.response is None:
                del self.claims[key]


class InMemoryNotificationQueue(_Failing):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[QueuedNotification] = []

    def send(self, message: QueuedNotification) -> None:
        self._call()
        # Round-trip through JSON like the real queue, so nothing unserialisable slips through.
        self.messages.append(QueuedNotification.from_json(message.to_json()))


class InMemoryQuarantineStore(_Failing):
    def __init__(self) -> None:
        super().__init__()
        self.records: dict[str, QuarantineRecord] = {}

    def put(self, record: QuarantineRecord) -> None:
        self._call()
        self.records.setdefault(record.notify_id, record)

    def get(self, notify_id: str) -> QuarantineRecord | None:
        self._call()
        return self.records.get(notify_id)

    def listing(
        self, *, resolved: bool, limit: int, after: str | None = None
    ) -> tuple[list[QuarantineRecord], str | None]:
        self._call()
        chosen = [r for r in self.records.values() if (r.resolution is not None) == resolved]
        return _page(chosen, lambda r: f"{r.recorded_at}#{r.notify_id}", limit, after)

    def resolve(self, notify_id: str, resolution: Resolution) -> bool:
        self._call()
        record = self.records.get(notify_id)
        if record is None or record.resolution is not None:
            return False
        self.records[notify_id] = replace(record, resolution=resolution)
        return True


def _page(items: list[Any], position: Any, limit: int, after: str | None) -> tuple[list[Any], str | None]:
    """A listing index's page: newest (largest position) first, after ``after``, and the position it ended at."""
    ordered = sorted(items, key=position, reverse=True)
    if after is not None:
        ordered = [i for i in ordered if position(i) < after]
    page = ordered[:limit]
    return page, (position(page[-1]) if len(ordered) > limit else None)


class InMemoryAuditLog(_Failing):
    def __init__(self) -> None:
        super().__init__()
        self.entries: list[AuditEntry] = []

    def record(self, entry: AuditEntry) -> None:
        self._call()
        self.entries.append(entry)

    def listing(self, limit: int, after: str | None = None) -> tuple[list[AuditEntry], str | None]:
        self._call()
        return _page(self.entries, lambda e: f"{e.at}#{e.entry_id}", limit, after)


class InMemoryDeadLetters(_Failing):
    """A DLQ and its queue: ``redrive`` moves bodies from ``dlq`` to ``queue``; ``refuse_sends`` makes sends fail."""

    def __init__(self, *bodies: str) -> None:
        super().__init__()
        self.dlq: list[str] = list(bodies)
        self.queue: list[str] = []
        self.refuse_sends = False

    def redrive(self, max_messages: int) -> RedriveReport:
        self._call()
        if self.refuse_sends:
            return RedriveReport(moved=0, failed=min(max_messages, len(self.dlq)))
        moving, self.dlq = self.dlq[:max_messages], self.dlq[max_messages:]
        self.queue.extend(moving)
        return RedriveReport(moved=len(moving), failed=0)

    def waiting(self) -> int:
        self._call()
        return len(self.dlq)


class InMemoryEventPublisher(_Failing):
    def __init__(self) -> None:
        super().__init__()
        self.events: list[OrderEvent] = []
        self.reject_ids: set[str] = set()  # events with these ids fail (PublishFailed), the others go out

    def publish(self, events: Sequence[OrderEvent]) -> None:
        self._call()
        failed = [e for e in events if e.event_id in self.reject_ids]
        self.events.extend(e for e in events if e.event_id not in self.reject_ids)
        if failed:
            raise PublishFailed(failed)


@dataclass
class FakeAlipayGateway(_Failing):
    trades: dict[str, TradeQueryResult] = field(default_factory=dict)
    verified_notify_ids: set[str] = field(default_factory=set)
    queries: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        _Failing.__init__(self)

    def notify_verify(self, notify_id: str) -> bool:
        self._call()
        return notify_id in self.verified_notify_ids

    closes: list[str] = field(default_factory=list)
    refunds: dict[str, dict[str, Decimal]] = field(default_factory=dict)  # out_trade_no -> out_request_no -> amount
    refuse_refunds_with: str | None = None  # a sub_code: every refund is refused with it
    legacy: bool = False  # forex_refund: TRADE_FINISHED is refundable, no running total, currency required
    refund_currencies: list[str | None] = field(default_factory=list)
    refund_channels: list[str | None] = field(default_factory=list)
    refund_trade_nos: list[str | None] = field(default_factory=list)
    # fund_change=N: Alipay accepted these refunds but has not moved the money yet (refund query: not refunded)
    slow_refunds: bool = False
    processing: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    lose_refund_replies: int = 0  # this many refunds are done at Alipay, but their reply never arrives (Unavailable)
    refund_queries: list[str] = field(default_factory=list)

    def query_trade(self, out_trade_no: str) -> TradeQueryResult:
        self._call()
        self.queries.append(out_trade_no)
        return self.trades.get(out_trade_no, TradeQueryResult(found=False))

    def close_trade(self, out_trade_no: str) -> TradeCloseResult:
        """Closes a known waiting trade, as alipay.trade.close does; anything else is not closable."""
        self._call()
        self.closes.append(out_trade_no)
        trade = self.trades.get(out_trade_no)
        if trade is None:
            return TradeCloseResult(closed=False, found=False, sub_code="ACQ.TRADE_NOT_EXIST")
        if trade.trade_status != "WAIT_BUYER_PAY":
            return TradeCloseResult(closed=False, sub_code="ACQ.TRADE_STATUS_ERROR")
        self.trades[out_trade_no] = TradeQueryResult(True, "TRADE_CLOSED", trade.trade_no, trade.total_amount)
        return TradeCloseResult(closed=True)

    def refund(
        self,
        out_trade_no: str,
        refund_amount: Decimal,
        out_request_no: str,
        reason: str | None,
        currency: str | None = None,
        channel: str | None = None,
        trade_no: str | None = None,
    ) -> RefundResult:
        """Refunds a paid trade once per out_request_no, never above its total, as alipay.trade.refund does.

        ``legacy``: as forex_refund does (as far as documented): a finished trade is refundable too, the reply has no
        running total, and a repeated out_return_no is an error that says nothing about the money.
        """
        self._call()
        self.refund_currencies.append(currency)
        self.refund_channels.append(channel)
        self.refund_trade_nos.append(trade_no)
        if self.refuse_refunds_with:
            raise RefundRefused(self.refuse_refunds_with)
        trade = self.trades.get(out_trade_no)
        done = self.refunds.setdefault(out_trade_no, {})
        if out_request_no in done:
            if self.legacy:
                raise PortError("REPEATED_REFUNDMENT_REQUEST")
            return RefundResult(out_request_no, sum(done.values(), Decimal(0)), fund_change=False)
        refundable = ("TRADE_SUCCESS", "TRADE_FINISHED") if self.legacy else ("TRADE_SUCCESS",)
        if trade is None or trade.trade_status not in refundable or trade.total_amount is None:
            raise RefundRefused("ACQ.TRADE_STATUS_ERROR")
        if sum(done.values(), Decimal(0)) + refund_amount > trade.total_amount:
            raise RefundRefused("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")
        if self.slow_refunds:
            self.processing.setdefault(out_trade_no, {})[out_request_no] = refund_amount
            return RefundResult(out_request_no, sum(done.values(), Decimal(0)), fund_change=False)
        done[out_request_no] = refund_amount
        total = sum(done.values(), Decimal(0))
        if self.lose_refund_replies:
            self.lose_refund_replies -= 1
            if total == trade.total_amount:
                self.trades[out_trade_no] = TradeQueryResult(True, "TRADE_CLOSED", trade.trade_no, trade.total_amount)
            raise Unavailable("the refund's reply was lost")
        if total == trade.total_amount:
            self.trades[out_trade_no] = TradeQueryResult(True, "TRADE_CLOSED", trade.trade_no, trade.total_amount)
        if self.legacy:
            return RefundResult(out_request_no, None, fund_change=True, raw={"is_success": "T"})
        return RefundResult(out_request_no, total, fund_change=True, raw={"trade_no": trade.trade_no or ""})

    def settle_processing(self) -> None:
        """The slow refunds' money moves: each is refunded now (as the refund query will say)."""
        for out_trade_no, pending in self.processing.items():
            done = self.refunds.setdefault(out_trade_no, {})
            done.update(pending)
            trade = self.trades[out_trade_no]
            if sum(done.values(), Decimal(0)) == trade.total_amount:
                self.trades[out_trade_no] = TradeQueryResult(True, "TRADE_CLOSED", trade.trade_no, trade.total_amount)
        self.processing.clear()

    def query_refund(self, out_trade_no: str, out_request_no: str) -> RefundQueryResult:
        """As alipay.trade.fastpay.refund.query: refunded with its amount once the money moved, else nothing."""
        self._call()
        self.refund_queries.append(out_request_no)
        if self.legacy:
            raise NotSupported("the legacy protocol has no refund query")
        if out_trade_no not in self.trades:
            return RefundQueryResult(refunded=False, found=False)
        amount = self.refunds.get(out_trade_no, {}).get(out_request_no)
        if amount is None:
            return RefundQueryResult(refunded=False)
        return RefundQueryResult(True, amount, raw={"refund_status": "REFUND_SUCCESS"})


class CountingMetrics:
    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


@dataclass
class FakeAntomGateway(FakeAlipayGateway):
    """Antom as the services see it: ``payments/pay`` besides the queries, cancels and refunds of the fake above."""

    payments: list[CashierPayment] = field(default_factory=list)
    refuse_payments_with: str | None = None  # a resultCode: every payment request is refused with it
    lose_pay_replies: int = 0  # this many payment requests reach Antom, but their reply never arrives

    def pay(self, payment: CashierPayment) -> PaymentPage:
        self._call()
        self.payments.append(payment)
        if self.refuse_payments_with:
            raise PaymentRefused(self.refuse_payments_with)
        payment_id = f"2026112619074101000{len(self.payments):05d}"
        self.trades.setdefault(
            payment.out_trade_no,
            TradeQueryResult(True, "WAIT_BUYER_PAY", payment_id, payment.amount, payment.currency),
        )
        if self.lose_pay_replies:
            self.lose_pay_replies -= 1
            raise Unavailable("the payment's reply was lost")
        base = "https://open-sea-global.alipay.com/cashier"
        return PaymentPage(
            payment_id=payment_id,
            normal_url=f"{base}?paymentId={payment_id}",
            scheme_url=f"alipays://platformapi/startapp?paymentId={payment_id}",
            applink_url=f"https://render.alipay.com/p/s/ulink?paymentId={payment_id}",
        )
