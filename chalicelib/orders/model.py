"""The order and its status machine: transitions as data, and one pure function deciding what an update does."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import TypeAlias

from chalicelib.alipay.notifications import Notification


class OrderStatus(StrEnum):
    """Alipay's trade statuses, which are also the order's (the API keeps Alipay's names: docs/openapi.yaml)."""

    WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
    TRADE_SUCCESS = "TRADE_SUCCESS"
    TRADE_FINISHED = "TRADE_FINISHED"
    TRADE_CLOSED = "TRADE_CLOSED"


class ClosedReason(StrEnum):
    """Why an order is ``TRADE_CLOSED``: the same status means "never paid" or "paid, then fully refunded"."""

    TIMEOUT = "timeout"
    REFUNDED = "refunded"


class RefundStatus(StrEnum):
    """Where one refund request stands: reserved before Alipay is asked, then what Alipay answered."""

    PENDING = "REFUND_PENDING"
    SUCCEEDED = "REFUND_SUCCESS"
    FAILED = "REFUND_FAILED"


class RefundKind(StrEnum):
    """Who asked for the money back: the merchant (a refund), or the product itself (a late payment returned)."""

    REFUND = "refund"
    RETURN = "return"  # money Alipay captured for an order closed unpaid here: given back automatically


class QuarantineReason(StrEnum):
    """Why an authentic update was kept for an operator instead of being applied."""

    UNKNOWN_ORDER = "unknown_order"
    AMOUNT_MISMATCH = "amount_mismatch"
    CURRENCY_MISMATCH = "currency_mismatch"
    ILLEGAL_TRANSITION = "illegal_transition"
    REFUND_EXCEEDS_TOTAL = "refund_exceeds_total"


PAID_STATUSES = frozenset({OrderStatus.TRADE_SUCCESS, OrderStatus.TRADE_FINISHED})

# The whole state machine. Nothing moves backwards; TRADE_FINISHED (paid, no longer refundable) and
# TRADE_CLOSED (unpaid timeout, or full refund) are terminal and mutually exclusive. The one exception is the
# legacy protocol's refund of a TRADE_FINISHED trade (REFUNDABLE_STATUSES below, and decide()).
ALLOWED_TRANSITIONS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType(
    {
        OrderStatus.WAIT_BUYER_PAY: frozenset(
            {OrderStatus.TRADE_SUCCESS, OrderStatus.TRADE_FINISHED, OrderStatus.TRADE_CLOSED}
        ),
        OrderStatus.TRADE_SUCCESS: frozenset({OrderStatus.TRADE_FINISHED, OrderStatus.TRADE_CLOSED}),
        OrderStatus.TRADE_FINISHED: frozenset(),
        OrderStatus.TRADE_CLOSED: frozenset(),
    }
)

# Where a refund may start. Open Platform: TRADE_SUCCESS only (its TRADE_FINISHED means the refund period is over).
# Legacy cross-border (mapi): a payment is notified as TRADE_FINISHED (docs/protocols.md §2.2) and forex_refund still
# refunds it within the contract's refund period, so there TRADE_FINISHED is refundable too, a full refund closes it.
REFUNDABLE_STATUSES = frozenset({OrderStatus.TRADE_SUCCESS})
LEGACY_REFUNDABLE_STATUSES = PAID_STATUSES

# The same table read backwards: the DynamoDB adapter conditions its one UpdateItem on
# "status IN ALLOWED_PREDECESSORS[new]", so a concurrent writer cannot move the order twice.
ALLOWED_PREDECESSORS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType(
    {new: frozenset(old for old, nexts in ALLOWED_TRANSITIONS.items() if new in nexts) for new in OrderStatus}
)


def _ancestors(status: OrderStatus) -> frozenset[OrderStatus]:
    """Every status that can come before ``status`` on some path through the table."""
    found: set[OrderStatus] = set()
    frontier = set(ALLOWED_PREDECESSORS[status])
    while frontier:
        found |= frontier
        frontier = {p for s in frontier for p in ALLOWED_PREDECESSORS[s]} - found
    return frozenset(found)


ANCESTORS: Mapping[OrderStatus, frozenset[OrderStatus]] = MappingProxyType({s: _ancestors(s) for s in OrderStatus})


@dataclass(frozen=True, slots=True)
class Refund:
    """One refund request of an order, keyed by its ``out_request_no`` (Alipay's idempotency key for it)."""

    out_request_no: str
    amount: Decimal
    status: RefundStatus
    requested_at: str
    reason: str | None = None
    refund_fee: Decimal | None = None  # Alipay's cumulative refunded total once this refund succeeded
    requested_by: str | None = None  # who asked for it: the merchant's IAM identity (audit)
    kind: RefundKind = RefundKind.REFUND
    attempts: int = 0  # a return's requests to Alipay so far (legacy: asked once automatically, then an operator)


def return_request_no(out_trade_no: str, trade_no: str | None) -> str:
    """The deterministic ``out_request_no`` of returning a late payment: the same on every retry and every path."""
    import hashlib

    digest = hashlib.sha256(f"{out_trade_no}:{trade_no or ''}".encode()).hexdigest()[:32]
    return f"return-{digest}"


@dataclass(frozen=True, slots=True)
class Change:
    """One change of an order as applied: when, to what, and which path applied it (the local stack and operators
    read this to tell a webhook from a reconciliation)."""

    at: str
    status: OrderStatus
    applied_by: str  # notification, reconciliation, client_result, return_page, refund
    notify_id: str | None = None
    refund_fee: Decimal | None = None  # the running refunded total after the change, when it moved
    out_request_no: str | None = None  # the refund this change confirmed, when it confirmed one


@dataclass(frozen=True, slots=True)
class OrderItem:
    """One line of a buyer's order, priced by the server from the merchant's catalogue when the order was made."""

    sku: str
    quantity: int
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return self.unit_price * self.quantity


@dataclass(frozen=True, slots=True)
class Order:
    """A merchant order as stored: Alipay's status plus what the notifications told us about the trade."""

    out_trade_no: str
    total_amount: Decimal
    currency: str
    subject: str
    body: str | None
    status: OrderStatus
    created_at: str
    updated_at: str
    trade_no: str | None = None
    refund_fee: Decimal | None = None
    notify_id: str | None = None
    closed_reason: ClosedReason | None = None
    version: int = 1
    pay_by: str | None = None  # when Alipay closes the unpaid trade (created_at + the order's timeout)
    refunds: Mapping[str, Refund] = field(default_factory=lambda: MappingProxyType({}))
    channel: str | None = None  # app, page or wap; None for orders stored before web checkout (app)
    return_url: str | None = None  # web channels: where Alipay sends the shopper back to
    buyer: str | None = None  # the buyer whose order it is (the user pool's ``sub``); None: the merchant's own
    items: tuple[OrderItem, ...] = ()  # what was bought, when the order was made from the catalogue
    created_by: str | None = None  # who asked for it: the buyer, or the merchant's IAM identity
    history: tuple[Change, ...] = ()  # every applied change, oldest first
    # The reconciler's own schedule for a waiting order: when to ask Alipay next, how often it asked, and why it set the
    # order aside (parked) if it did. Never part of the order's business state: no event follows from them.
    next_check_at: str | None = None
    checks: int = 0
    parked: str | None = None

    def __post_init__(self) -> None:
        # A closed order must say whether money moved (docs/reliability.md scenario 6); no other order claims a reason.
        if (self.status is OrderStatus.TRADE_CLOSED) != (self.closed_reason is not None):
            raise ValueError(f"closed_reason {self.closed_reason!r} does not fit status {self.status}")

    @classmethod
    def create(
        cls,
        *,
        out_trade_no: str,
        total_amount: Decimal,
        currency: str,
        subject: str,
        now: str,
        body: str | None = None,
        pay_by: str | None = None,
        channel: str | None = None,
        return_url: str | None = None,
        buyer: str | None = None,
        items: tuple[OrderItem, ...] = (),
        created_by: str | None = None,
    ) -> Order:
        """A new order waiting for the buyer to pay."""
        return cls(
            out_trade_no=out_trade_no,
            total_amount=total_amount,
            currency=currency,
            subject=subject,
            body=body,
            status=OrderStatus.WAIT_BUYER_PAY,
            created_at=now,
            updated_at=now,
            pay_by=pay_by,
            channel=channel,
            return_url=return_url,
            buyer=buyer,
            items=items,
            created_by=created_by,
        )

    @property
    def refunded(self) -> Decimal:
        """What Alipay says has been refunded so far (0 when nothing was)."""
        return self.refund_fee or Decimal(0)

    @property
    def refundable(self) -> Decimal:
        """What may still be refunded: the total less every refund already asked for (pending ones included)."""
        asked = sum(
            (
                r.amount
                for r in self.refunds.values()
                if r.status is not RefundStatus.FAILED and r.kind is RefundKind.REFUND
            ),
            Decimal(0),
        )
        # A refund made outside this API (Alipay's portal) shows only in refund_fee: count whichever is larger.
        return self.total_amount - max(asked, self.refunded)

    def with_refund(self, refund: Refund, now: str) -> Order:
        """The order with ``refund`` recorded (added or updated), as one versioned change."""
        refunds = dict(self.refunds)
        refunds[refund.out_request_no] = refund
        return replace(self, refunds=MappingProxyType(refunds), updated_at=now, version=self.version + 1)

    @property
    def pending_refunds(self) -> tuple[Refund, ...]:
        """The refunds asked of Alipay whose outcome is not known yet, oldest first."""
        pending = (r for r in self.refunds.values() if r.status is RefundStatus.PENDING)
        return tuple(sorted(pending, key=lambda r: (r.requested_at, r.out_request_no)))

    @property
    def confirmed_refunds(self) -> Decimal:
        """The sum of the refunds Alipay confirmed one by one."""
        confirmed = (r for r in self.refunds.values() if r.status is RefundStatus.SUCCEEDED)
        return sum((r.amount for r in confirmed if r.kind is RefundKind.REFUND), Decimal(0))

    def with_refund_confirmed(
        self,
        out_request_no: str,
        now: str,
        *,
        applied_by: str,
        reported_fee: Decimal | None = None,
        amount: Decimal | None = None,
        notify_id: str | None = None,
    ) -> Order:
        """The order once Alipay confirmed the refund ``out_request_no``: one versioned change, in any order.

        Confirmations arrive in any order and by any path (the refund call's reply, its query, a notification), so the
        running total is never taken from one of them alone: it is the largest of what the order held, what Alipay
        reported with this confirmation (``reported_fee``, a running total, when the path gives one) and the sum of the
        refunds confirmed one by one. A path without a total (legacy forex_refund, the refund query) adds this refund
        to the total held, which may include a refund made outside this API.
        The refund that empties the order closes it as refunded; nothing else changes the status, never backwards.
        ``amount``: for a refund not asked through this API (Alipay's portal), what it refunded.
        """
        existing = self.refunds.get(out_request_no)
        if existing is not None and existing.kind is RefundKind.RETURN:
            # A late payment given back: no refund of the order (it was closed unpaid), so no total and no status move.
            returned = {**self.refunds, out_request_no: replace(existing, status=RefundStatus.SUCCEEDED)}
            return replace(
                self,
                refunds=MappingProxyType(returned),
                updated_at=now,
                version=self.version + 1,
                history=(*self.history, Change(now, self.status, applied_by, notify_id, None, out_request_no)),
            )
        if existing is None:
            if amount is None:
                raise ValueError(f"no refund {out_request_no!r} on order {self.out_trade_no}, and no amount")
            existing = Refund(out_request_no, amount, RefundStatus.PENDING, now)
        done = replace(existing, status=RefundStatus.SUCCEEDED)
        refunds = {**self.refunds, out_request_no: done}
        confirmed = sum(
            (r.amount for r in refunds.values() if r.status is RefundStatus.SUCCEEDED and r.kind is RefundKind.REFUND),
            Decimal(0),
        )
        if reported_fee is not None:
            refund_fee = max(self.refunded, reported_fee, confirmed)
        else:
            refund_fee = max(self.refunded + existing.amount, confirmed)
        refunds[out_request_no] = replace(done, refund_fee=refund_fee)
        status, closed_reason = self.status, self.closed_reason
        if refund_fee >= self.total_amount:
            status, closed_reason = OrderStatus.TRADE_CLOSED, ClosedReason.REFUNDED
        change = Change(now, status, applied_by, notify_id, refund_fee, out_request_no)
        return replace(
            self,
            status=status,
            closed_reason=closed_reason,
            refund_fee=refund_fee,
            refunds=MappingProxyType(refunds),
            notify_id=notify_id if notify_id is not None else self.notify_id,
            updated_at=now,
            version=self.version + 1,
            history=(*self.history, change),
        )

    @property
    def was_paid(self) -> bool:
        """Whether the buyer paid at some point, including an order that was then fully refunded."""
        return self.status in PAID_STATUSES or self.closed_reason is ClosedReason.REFUNDED

    @property
    def passed_through(self) -> frozenset[OrderStatus]:
        """The statuses this order's trade has already been through, given the path it actually took."""
        if self.was_paid:
            return ANCESTORS[self.status]
        # Closed unpaid: the trade never saw a paid status, so a paid update is news, not history.
        return ANCESTORS[self.status] - PAID_STATUSES


@dataclass(frozen=True, slots=True)
class PaymentUpdate:
    """What Alipay says about a trade: the facts of a verified notification or of a confirmed query result."""

    out_trade_no: str
    trade_status: OrderStatus
    total_amount: Decimal
    currency: str | None  # the legacy protocol sends it; Open Platform may not
    trade_no: str | None
    notify_id: str | None  # None for an active query result (reconciliation), which has no notification
    refund_fee: Decimal | None
    occurred_at: str
    applied_by: str = "notification"  # the path the facts came by (Change.applied_by)
    out_request_no: str | None = None  # the refund these facts confirm, when they name one (out_biz_no)

    @classmethod
    def from_notification(cls, n: Notification, occurred_at: str) -> PaymentUpdate:
        """The facts of a verified notification; ``occurred_at`` is the caller's clock, not Beijing's notify_time."""
        return cls(
            out_trade_no=n.out_trade_no,
            trade_status=OrderStatus(n.trade_status),
            total_amount=n.total_amount,
            currency=n.currency,
            trade_no=n.trade_no or None,
            notify_id=n.notify_id,
            refund_fee=n.refund_fee,
            occurred_at=occurred_at,
        )


def read_in_currency(update: PaymentUpdate, unstated: str | None, order: Order | None = None) -> PaymentUpdate:
    """``update`` with ``unstated`` as its currency when it names none and would make ``order`` paid; else as it is.

    An Open Platform trade whose order string carried no ``trans_currency`` is priced in CNY, so money Alipay reports
    without one is, to Alipay, CNY: read so (``REQUIRE_TRANS_CURRENCY``), a foreign-currency order charged as CNY is
    a currency mismatch, never paid. ``unstated`` None: not compared.

    Without the order (the unread write) only a payment is read so; a refund's figures are always decided on the
    order as read. With it, only money for an order still waiting is: a payment, or a refund's figures (which would
    make it paid and refunded). A paid order's later news moves no money in; a payment for an order closed unpaid is
    given back whole, whatever its currency (``_late_payment``); a close carries no money.
    """
    if unstated is None or update.currency is not None:
        return update
    if order is None:
        reads = not update.refund_fee and update.trade_status in PAID_STATUSES
    else:
        reads = order.status is OrderStatus.WAIT_BUYER_PAY and (
            bool(update.refund_fee) or update.trade_status in PAID_STATUSES
        )
    return replace(update, currency=unstated) if reads else update


@dataclass(frozen=True, slots=True)
class Apply:
    """The update moves the order: store ``new_order`` (conditionally on the old status)."""

    new_order: Order


@dataclass(frozen=True, slots=True)
class Duplicate:
    """The order is already in the update's status: Alipay repeated itself (scenarios 2-4)."""


@dataclass(frozen=True, slots=True)
class Stale:
    """The order has already moved past the update's status along its own path (docs/reliability.md scenario 5)."""


@dataclass(frozen=True, slots=True)
class ReturnLatePayment:
    """Alipay captured money for an order closed unpaid here: store ``new_order``, which holds the return to make."""

    new_order: Order


@dataclass(frozen=True, slots=True)
class Quarantine:
    """The update must not touch the order; keep it where an operator can see and replay it."""

    reason: QuarantineReason
    detail: str


Decision: TypeAlias = Apply | Duplicate | Stale | Quarantine | ReturnLatePayment


def decide(
    order: Order | None,
    update: PaymentUpdate,
    now: str,
    refundable: frozenset[OrderStatus] = REFUNDABLE_STATUSES,
) -> Decision:
    """What ``update`` does to ``order``; pure, so the same inputs always give the same decision.

    ``refundable``: the paid statuses a refund may start from (``LEGACY_REFUNDABLE_STATUSES`` for mapi).
    """
    if order is None:
        return Quarantine(QuarantineReason.UNKNOWN_ORDER, f"no order {update.out_trade_no!r}")
    if update.out_trade_no != order.out_trade_no:
        # The caller looked the order up by the update's out_trade_no; anything else is a bug, not data.
        raise ValueError(f"update for {update.out_trade_no!r} decided against order {order.out_trade_no!r}")
    # Amount and currency are checked before status: a signed duplicate that disagrees about money
    # is still an alarm (docs/reliability.md scenario 8). Decimal equality, so "12.3" == "12.30".
    if update.total_amount != order.total_amount:
        return Quarantine(QuarantineReason.AMOUNT_MISMATCH, f"{update.total_amount} != order {order.total_amount}")
    if update.currency is not None and update.currency != order.currency:
        return Quarantine(QuarantineReason.CURRENCY_MISMATCH, f"{update.currency} != order {order.currency}")

    if update.refund_fee is not None and update.refund_fee > order.total_amount:
        return Quarantine(QuarantineReason.REFUND_EXCEEDS_TOTAL, f"{update.refund_fee} > order {order.total_amount}")

    confirmation = _refund_confirmation(order, update, now, refundable)
    if confirmation is not None:
        return confirmation
    new = update.trade_status
    if new is OrderStatus.TRADE_CLOSED and not update.refund_fee and update.notify_id is None and order.was_paid:
        # A gateway's close that carries no refund figures (a trade query's TRADE_CLOSED, the reconciler's close) never
        # closes a paid order: read as "refunded" it would swallow the refunds' figures, and the reconciler's close may
        # only mean the buyer paid just as it closed. Only WAIT_BUYER_PAY is closed this way; a paid order's refunds
        # are confirmed one by one, by their out_request_no (the refund query, the sweep, notifications).
        return Stale()
    if new == order.status:
        # A partial refund arrives as TRADE_SUCCESS (mapi: the order's own TRADE_FINISHED) with a larger refund_fee
        # (Alipay's running total): a change that keeps the status. The same or a smaller total is a repeat or a
        # late notice of an earlier refund.
        if new in refundable and update.refund_fee is not None:
            if update.refund_fee > order.refunded:
                return Apply(_applied(order, update, now))
            if update.refund_fee < order.refunded:
                return Stale()
        # Otherwise the same status is a duplicate whatever the notify_id (docs/reliability.md scenario 4).
        return Duplicate()
    # Stale vs illegal: an update is Stale when its status lies on the path this order already took,
    # so it is old news delivered late (WAIT_BUYER_PAY after payment, TRADE_SUCCESS after TRADE_FINISHED,
    # TRADE_SUCCESS after a refund closed the order). It is illegal when it contradicts that path:
    # the other terminal (TRADE_CLOSED after TRADE_FINISHED, or TRADE_FINISHED after a refund), or any
    # paid status for an order closed unpaid, which means money may have arrived for a dead order.
    # Stale is acked silently; illegal goes to an operator.
    if new in order.passed_through:
        return Stale()
    if order.closed_reason is ClosedReason.TIMEOUT and new in PAID_STATUSES:
        # Paid after the order closed here (Alipay's trade outlived ours): the money goes back to the buyer, never
        # kept and never left to a quarantine's expiry. The return is recorded here, under a number derived from the
        # trade, and carried out by the reconciler (which signs gateway requests; this consumer cannot).
        return _late_payment(order, update, now)
    # A refund that empties the trade closes it from any refundable status: for mapi that includes TRADE_FINISHED.
    # Without a refund, a close after TRADE_FINISHED stays illegal (a finished trade cannot expire).
    refund_close = new is OrderStatus.TRADE_CLOSED and bool(update.refund_fee) and order.status in refundable
    if new not in ALLOWED_TRANSITIONS[order.status] and not refund_close:
        return Quarantine(QuarantineReason.ILLEGAL_TRANSITION, f"{order.status} -> {new}")
    return Apply(_applied(order, update, now))


def _late_payment(order: Order, update: PaymentUpdate, now: str) -> ReturnLatePayment | Duplicate:
    number = return_request_no(order.out_trade_no, update.trade_no or order.trade_no)
    if number in order.refunds:
        return Duplicate()  # the same late payment told again: its return is recorded already
    give_back = Refund(
        number, order.total_amount, RefundStatus.PENDING, now, "paid after the order closed", kind=RefundKind.RETURN
    )
    refunds = MappingProxyType({**order.refunds, number: give_back})
    change = Change(now, order.status, update.applied_by, update.notify_id, None, number)
    return ReturnLatePayment(
        replace(
            order,
            trade_no=update.trade_no or order.trade_no,
            refunds=refunds,
            notify_id=update.notify_id,
            updated_at=now,
            version=order.version + 1,
            history=(*order.history, change),
        )
    )


def _refund_confirmation(
    order: Order, update: PaymentUpdate, now: str, refundable: frozenset[OrderStatus]
) -> Apply | None:
    """A refund notice that names a refund of a paid order not yet confirmed: that refund's confirmation."""
    if not update.refund_fee or not order.was_paid:
        return None
    if not order.refunds and order.status not in refundable:
        return None  # no refund of ours, and not refundable: decided as before (a stale or illegal notice)
    out_request_no = update.out_request_no
    if out_request_no is None:
        # A notice without the refund's number (the legacy protocol): it confirms the one pending refund whose amount
        # it adds to the total, if exactly one fits; otherwise it is read as a running total as before.
        grown = update.refund_fee - order.refunded
        fits = [r for r in order.pending_refunds if r.amount == grown]
        if len(fits) != 1:
            return None
        out_request_no = fits[0].out_request_no
    existing = order.refunds.get(out_request_no)
    if existing is not None and existing.status is RefundStatus.SUCCEEDED:
        return None  # already confirmed: a repeat, decided as before (duplicate or stale)
    if existing is None and update.refund_fee <= max(order.refunded, order.confirmed_refunds):
        return None  # a refund outside this API, told late: its amount cannot be known from a running total
    amount = None if existing is not None else update.refund_fee - max(order.refunded, order.confirmed_refunds)
    return Apply(
        order.with_refund_confirmed(
            out_request_no,
            now,
            applied_by=update.applied_by,
            reported_fee=update.refund_fee,
            amount=amount,
            notify_id=update.notify_id,
        )
    )


def _applied(order: Order, update: PaymentUpdate, now: str) -> Order:
    """The order after a legal status change."""
    # refund_fee is sent as 0.00 on payments without refunds: only a positive one is a fact worth keeping, and
    # it is a running total, so a smaller one (a late notice) never lowers what is stored.
    refund_fee = update.refund_fee if update.refund_fee and update.refund_fee > order.refunded else order.refund_fee
    closed_reason = None
    if update.trade_status is OrderStatus.TRADE_CLOSED:
        # A paid order never becomes "closed unpaid" (docs/reliability.md scenario 6): either we saw it paid, or the
        # close itself carries a refund (the paid notification was lost or is still on its way).
        refunded = order.was_paid or bool(update.refund_fee)
        closed_reason = ClosedReason.REFUNDED if refunded else ClosedReason.TIMEOUT
    moved = refund_fee if refund_fee != order.refund_fee else None
    change = Change(now, update.trade_status, update.applied_by, update.notify_id, moved)
    return replace(
        order,
        status=update.trade_status,
        trade_no=update.trade_no or order.trade_no,
        refund_fee=refund_fee,
        notify_id=update.notify_id,
        closed_reason=closed_reason,
        updated_at=now,
        version=order.version + 1,
        history=(*order.history, change),
    )


@dataclass(frozen=True, slots=True)
class TransitionPlan:
    """The one conditional write that applies an update without reading the order first.

    ``predecessors`` is the write's status condition. For every order whose status is in it (and whose
    amount and currency match), ``applied_to`` gives exactly what ``decide`` would: the happy path costs a
    single conditional UpdateItem, and only a failed condition needs the order read and ``decide``d.
    """

    out_trade_no: str
    predecessors: frozenset[OrderStatus]
    status: OrderStatus
    total_amount: Decimal
    currency: str | None  # part of the condition only when the update carries one
    trade_no: str | None  # None: keep the stored one
    refund_fee: Decimal | None  # None: keep the stored one
    closed_reason: ClosedReason | None
    notify_id: str | None
    updated_at: str
    applied_by: str = "notification"

    @property
    def change(self) -> Change:
        """The history entry this write appends."""
        return Change(self.updated_at, self.status, self.applied_by, self.notify_id, self.refund_fee)

    def admits(self, order: Order) -> bool:
        """Whether ``order`` meets the write's condition (the adapter's ConditionExpression, in Python)."""
        return (
            order.total_amount == self.total_amount
            and (self.currency is None or order.currency == self.currency)
            and order.status in self.predecessors
            # An order with a pending refund sits in the waiting index under its refund: only a full write keeps it.
            and not order.pending_refunds
            # refund_fee is a running total: the unread write may raise it, never lower it.
            and (self.refund_fee is None or order.refunded <= self.refund_fee)
        )

    def applied_to(self, order: Order) -> Order:
        """The order after the write, for an order that meets the write's condition."""
        return replace(
            order,
            status=self.status,
            trade_no=self.trade_no or order.trade_no,
            refund_fee=self.refund_fee if self.refund_fee is not None else order.refund_fee,
            notify_id=self.notify_id,
            closed_reason=self.closed_reason,
            updated_at=self.updated_at,
            version=order.version + 1,
            history=(*order.history, self.change),
        )


def plan_transition(update: PaymentUpdate, now: str) -> TransitionPlan:
    """The optimistic write for ``update``: the predecessor statuses from which it applies unread."""
    predecessors = ALLOWED_PREDECESSORS[update.trade_status]
    closed_reason = None
    if update.trade_status is OrderStatus.TRADE_CLOSED:
        if update.refund_fee:
            # A close carrying a refund is "refunded" from any predecessor (see _applied).
            closed_reason = ClosedReason.REFUNDED
        else:
            # Without a refund the reason depends on whether the order was paid: write unread only from
            # WAIT_BUYER_PAY (timeout); a paid order fails the condition and goes through decide().
            predecessors = frozenset({OrderStatus.WAIT_BUYER_PAY})
            closed_reason = ClosedReason.TIMEOUT
    if update.refund_fee:
        # A refund notice is decided on the order as read: it confirms one refund of the order's map by its
        # out_request_no (in whatever order they come), and more refunded than paid is an alarm, never a write.
        predecessors = frozenset()
    return TransitionPlan(
        out_trade_no=update.out_trade_no,
        predecessors=predecessors,
        status=update.trade_status,
        total_amount=update.total_amount,
        currency=update.currency,
        trade_no=update.trade_no,
        refund_fee=update.refund_fee if update.refund_fee else None,
        closed_reason=closed_reason,
        notify_id=update.notify_id,
        updated_at=now,
        applied_by=update.applied_by,
    )
