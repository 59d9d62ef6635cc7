"""The small interfaces the services depend on; real adapters and in-memory fakes both implement them.

Adapters translate vendor errors into the errors below (``from exc``): services never see ``ClientError``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

from chalicelib.orders.catalogue import Product
from chalicelib.orders.events import OrderEvent
from chalicelib.orders.model import Order, TransitionPlan

# --- errors -------------------------------------------------------------------------------------------------


class PortError(Exception):
    """Base of the errors adapters raise."""

    # The refund an error interrupted, once it has a number: the answer names it, so a retry reuses it (never a second
    # refund). Set by the refund service on the way out; None for every other use.
    out_request_no: str | None = None


class Unavailable(PortError):
    """A dependency failed transiently (throttled, timed out, 5xx): retry later. ``retry_after`` in seconds."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class OrderExists(PortError):
    """An order with this ``out_trade_no`` is already stored (orders are never overwritten)."""

    def __init__(self, out_trade_no: str) -> None:
        super().__init__(
            f"out_trade_no: an order numbered {out_trade_no!r} already exists (orders are never overwritten); "
            "send another out_trade_no, or none to have the server number the order"
        )
        self.out_trade_no = out_trade_no
        self.field = "out_trade_no"


# --- orders -------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConditionFailed:
    """A conditional write did not apply; ``current`` is the order as stored then (None: no such order)."""

    current: Order | None


class OrderRepository(Protocol):
    """Orders, keyed by ``out_trade_no``. Every write is conditional; none overwrites blindly."""

    def add(self, order: Order) -> None:
        """Store a new order; ``OrderExists`` if the ``out_trade_no`` is taken."""

    def get(self, out_trade_no: str) -> Order | None:
        """The stored order, or None."""

    def remove_unsigned(self, out_trade_no: str) -> None:
        """Roll back a just-created order whose signing failed: delete it only while still untouched."""

    def apply_plan(self, plan: TransitionPlan) -> Order | ConditionFailed:
        """One conditional write: the order exists, amount (and currency if given) match, status is a predecessor."""

    def replace(self, order: Order, *, expected_version: int) -> bool:
        """Write ``order`` if the stored version is still ``expected_version``; False if someone else moved it."""

    def reschedule(self, order: Order) -> bool:
        """Store a waiting order's reconciliation schedule (``next_check_at``, ``checks``, ``parked``) if its stored
        version is still ``order.version`` and it still waits; the version stays (bookkeeping, not a change)."""

    def waiting(self, created_before: str) -> Iterator[Order]:
        """Orders still ``WAIT_BUYER_PAY`` due before ``created_before``, most overdue first (an index, never a scan).

        Due: the reconciler's ``next_check_at``, or the order's creation until it scheduled one.
        """

    def with_pending_refunds(self, requested_before: str) -> Iterator[Order]:
        """Paid orders with a refund pending since before ``requested_before``, oldest refund first (the same index)."""

    def for_buyer(self, buyer: str, limit: int, after: str | None = None) -> tuple[list[Order], str | None]:
        """One page of ``buyer``'s orders, newest first, and the position after it (None: no more)."""


class Catalogue(Protocol):
    """The merchant's products (prices per currency)."""

    def put(self, product: Product) -> bool:
        """Create or replace; True when the product is new."""

    def get(self, sku: str) -> Product | None:
        """The product, or None."""

    def get_many(self, skus: Iterable[str]) -> dict[str, Product]:
        """Those of ``skus`` that exist, by sku."""

    def delete(self, sku: str) -> bool:
        """Remove; False when there was none."""

    def all(self) -> list[Product]:
        """Every product, by sku."""


# --- idempotency of POST /orders -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    """A claimed ``Idempotency-Key``: which request claimed it and, once done, the response it got."""

    key: str
    request_hash: str
    response: Mapping[str, Any] | None  # None while the first request is still in progress
    status_code: int | None = None


class IdempotencyStore(Protocol):
    """Remembers responses by ``Idempotency-Key`` for ``ttl`` seconds (longer than clients retry)."""

    def claim(self, key: str, request_hash: str, *, now: int, ttl: int, lock_seconds: int) -> IdempotencyRecord | None:
        """Claim ``key`` for this request (None) or return the existing record.

        An in-progress claim older than ``lock_seconds`` (a crashed request) may be taken over.
        """

    def complete(self, key: str, response: Mapping[str, Any], status_code: int) -> None:
        """Record the response of the request that holds the claim."""

    def release(self, key: str) -> None:
        """Drop an in-progress claim after a failure, so that a retry can run."""


# --- notifications ------------------------------------------------------------------------------------------


# Built once: json.dumps with arguments builds an encoder per call (a webhook's message is encoded on every request).
_MESSAGE_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
_JSON_STRING = json.encoder.encode_basestring  # what that encoder (ensure_ascii=False) writes for a str
# The printable ASCII characters a JSON string holds as they are (all but '"' and '\'): base64 is made of them.
_JSON_PLAIN_ASCII = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')


def _plain_json_text(text: str) -> bool:
    """Whether ``text`` is its own JSON string body: nothing in it to escape (one C pass, no copy kept)."""
    return text.isascii() and not text.encode("ascii").translate(None, _JSON_PLAIN_ASCII)


@dataclass(frozen=True, slots=True)
class QueuedNotification:
    """What the webhook enqueues once a notification is verified, and what the consumer's verification of it yields.

    ``fields``: the notification's fields, decoded, as its signature vouches for them. The webhook queues none (an
    empty map: the consumer reads them from the kept body, never from the message); the consumer's verified copy and
    the quarantine's records carry them. Messages queued before this release carry them too: nothing acts on those,
    and an operator sees them only on the entry of a message the consumer refused (``refused:<notify_id>``).
    """

    protocol: str
    notify_id: str
    out_trade_no: str
    fields: Mapping[str, str]
    received_at: str
    # The notification exactly as it arrived (base64) and the charset its Content-Type named: the consumer verifies
    # Alipay's signature over these itself and trusts nothing else of the message (v2). None: a v1 message.
    body: str | None = None
    charset: str | None = None
    # Antom signs in headers: the ones its signature is checked with (client-id, request-time, signature), as sent.
    headers: Mapping[str, str] | None = None

    def to_json(self) -> str:
        body = self.body
        if body is None or not _plain_json_text(body):
            return self._to_json_by_encoder()
        # The webhook's message, on every request: the same JSON as the encoder's, put together from its pieces so
        # that the body (base64, most of the message) is copied in as it is instead of scanned for escapes.
        encode = _MESSAGE_JSON.encode
        fields = self.fields if type(self.fields) is dict else dict(self.fields)
        headers = "" if self.headers is None else ',"headers":' + encode(dict(self.headers))
        text = _JSON_STRING  # a str's JSON: json's own C function, without the encoder's dispatch on the type
        try:
            return "".join(
                (
                    '{"v":2,"protocol":',
                    text(self.protocol),
                    ',"notify_id":',
                    text(self.notify_id),
                    ',"out_trade_no":',
                    text(self.out_trade_no),
                    ',"fields":',
                    encode(fields) if fields else "{}",  # the webhook's message carries none (the body vouches)
                    ',"received_at":',
                    text(self.received_at),
                    ',"body":"',
                    body,
                    '","charset":',
                    "null" if self.charset is None else text(self.charset),
                    headers,
                    "}",
                )
            )
        except TypeError:  # a message read back from the queue may hold a value that is not text: as json writes it
            return self._to_json_by_encoder()

    def _to_json_by_encoder(self) -> str:
        data: dict[str, Any] = {
            "v": 2 if self.body is not None else 1,
            "protocol": self.protocol,
            "notify_id": self.notify_id,
            "out_trade_no": self.out_trade_no,
            "fields": self.fields if type(self.fields) is dict else dict(self.fields),
            "received_at": self.received_at,
        }
        if self.body is not None:
            data["body"] = self.body
            data["charset"] = self.charset
        if self.headers is not None:
            data["headers"] = dict(self.headers)
        return _MESSAGE_JSON.encode(data)

    @classmethod
    def from_json(cls, text: str) -> QueuedNotification:
        data = json.loads(text)
        return cls(
            protocol=data["protocol"],
            notify_id=data["notify_id"],
            out_trade_no=data["out_trade_no"],
            fields=data["fields"],
            received_at=data["received_at"],
            body=data.get("body"),
            charset=data.get("charset"),
            headers=data.get("headers"),
        )


class NotificationQueue(Protocol):
    """The durable hand-off between the webhook and the consumer."""

    def send(self, message: QueuedNotification) -> None:
        """Enqueue durably before returning; ``Unavailable`` if that cannot be promised."""


@dataclass(frozen=True, slots=True)
class Resolution:
    """How an operator resolved a quarantined entry: what was done, by whom, when, why, and what came of it."""

    action: str  # replayed | dismissed
    by: str  # the operator's IAM identity
    at: str
    reason: str
    outcome: str | None = None  # replayed: what applying the update did (applied, duplicate, stale)


@dataclass(frozen=True, slots=True)
class QuarantineRecord:
    """An authentic notification that must not touch an order: kept with its reason for an operator."""

    notify_id: str
    out_trade_no: str
    reason: str
    detail: str
    message: QueuedNotification
    recorded_at: str
    resolution: Resolution | None = None  # None: still waiting for an operator
    holds_money: bool = False  # a paid status: kept until an operator resolves it, never expired


class QuarantineStore(Protocol):
    """Where unknown-order and mismatching notifications wait for an operator (idempotent by notify_id).

    An entry stays until an operator resolves it; a resolved entry stays readable, with its resolution.
    """

    def put(self, record: QuarantineRecord) -> None: ...

    def get(self, notify_id: str) -> QuarantineRecord | None:
        """The entry kept under ``notify_id``, or None."""

    def listing(
        self, *, resolved: bool, limit: int, after: str | None = None
    ) -> tuple[list[QuarantineRecord], str | None]:
        """One page of open (or resolved) entries, newest first, and the position after it (None: no more)."""

    def resolve(self, notify_id: str, resolution: Resolution) -> bool:
        """Mark the entry resolved; False when it is missing or was resolved already (by someone else)."""


# --- operator actions ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action: who asked, when, what for (the target), why, and what it did."""

    entry_id: str
    at: str
    by: str
    action: str  # quarantine.replay, quarantine.dismiss, events.replay, redrive
    target: str
    reason: str
    result: Mapping[str, Any]


class AuditLog(Protocol):
    """Where operator actions are recorded for operators to read back (kept, never expired)."""

    def record(self, entry: AuditEntry) -> None:
        """Store ``entry`` durably; ``Unavailable`` if that cannot be promised."""

    def listing(self, limit: int, after: str | None = None) -> tuple[list[AuditEntry], str | None]:
        """One page of entries, newest first, and the position after it (None: no more)."""


@dataclass(frozen=True, slots=True)
class RedriveReport:
    """What a redrive did: messages moved back to the queue, and messages left in the DLQ after a failed send."""

    moved: int
    failed: int


class DeadLetters(Protocol):
    """The notifications DLQ: messages the consumer gave up on, moved back to the queue once the cause is fixed."""

    def redrive(self, max_messages: int) -> RedriveReport:
        """Move up to ``max_messages`` back: each is deleted from the DLQ only once the queue has it."""

    def waiting(self) -> int:
        """About how many messages wait in the DLQ (SQS's approximate count)."""


# --- events -------------------------------------------------------------------------------------------------


class EventPublisher(Protocol):
    """Publishes business events; retries failed entries itself and raises ``PublishFailed`` for the rest."""

    def publish(self, events: Sequence[OrderEvent]) -> None: ...


class PublishFailed(PortError):
    """Some events could not be published after retries; ``failed`` lists them."""

    def __init__(self, failed: Sequence[OrderEvent]) -> None:
        super().__init__(f"{len(failed)} event(s) not published")
        self.failed = list(failed)


# --- Alipay's gateway ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TradeQueryResult:
    """Alipay's answer to a trade query: ``found`` False when Alipay has no such trade (yet)."""

    found: bool
    trade_status: str | None = None
    trade_no: str | None = None
    total_amount: Decimal | None = None
    currency: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TradeCloseResult:
    """Alipay's answer to a close: ``closed`` once the trade is closed, ``found`` False when Alipay has no trade."""

    closed: bool
    found: bool = True
    sub_code: str | None = None  # why not closed (e.g. ``ACQ.TRADE_STATUS_ERROR``: the buyer paid meanwhile)
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundResult:
    """Alipay's answer to a refund it accepted; ``refund_fee`` is the trade's running refunded total.

    ``refund_fee`` is None when Alipay does not report it (legacy ``forex_refund``): the caller adds this refund to
    the total it holds.
    """

    out_request_no: str
    refund_fee: Decimal | None
    fund_change: bool  # False: this out_request_no was refunded before and Alipay answered it again
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundQueryResult:
    """Alipay's answer to a refund query for one ``out_request_no``: ``refunded`` only once the money moved."""

    refunded: bool
    refund_amount: Decimal | None = None  # this refund's amount, as Alipay recorded it
    found: bool = True  # False: Alipay knows no such trade
    raw: Mapping[str, str] = field(default_factory=dict)
    failed: bool = False  # Antom: the refund failed for good (inquiryRefund's FAIL); no money moved


class RefundRefused(PortError):
    """Alipay refused the refund for good (``40004`` + ``sub_code``, e.g. the trade is not refundable)."""

    def __init__(self, sub_code: str, message: str = "") -> None:
        super().__init__(f"Alipay refused the refund: {sub_code}" + (f": {message}" if message else ""))
        self.sub_code = sub_code


class NotSupported(PortError):
    """The configured protocol has no such gateway call (e.g. no close API for legacy cross-border app pay)."""


class AlipayGateway(Protocol):
    """The Alipay gateway calls the product makes (signed requests, verified responses)."""

    def notify_verify(self, notify_id: str) -> bool:
        """Legacy protocol: whether Alipay confirms ``notify_id`` (``true``)."""

    def query_trade(self, out_trade_no: str) -> TradeQueryResult:
        """``alipay.trade.query`` / ``single_trade_query`` by merchant order number."""

    def close_trade(self, out_trade_no: str) -> TradeCloseResult:
        """``alipay.trade.close``; ``NotSupported`` for the legacy protocol (its trades expire by ``it_b_pay``)."""

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
        """``alipay.trade.refund`` / ``forex_refund`` (needs ``currency``, and the order's ``channel``: the product
        the trade was paid with) / Antom's ``payments/refund`` (needs ``trade_no``: Antom's paymentId);
        ``RefundRefused`` if Alipay says no.

        Idempotent by ``out_request_no`` on Open Platform; UNCONFIRMED for ``forex_refund`` (see the adapter).
        """

    def query_refund(self, out_trade_no: str, out_request_no: str) -> RefundQueryResult:
        """``alipay.trade.fastpay.refund.query``; ``NotSupported`` for the legacy protocol (it has no refund query)."""


# --- Antom's cashier payments -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CashierPayment:
    """A payment request for Antom's cashier (``payments/pay``): ours by ``out_trade_no`` (its paymentRequestId)."""

    out_trade_no: str
    subject: str
    amount: Decimal
    currency: str
    payment_method_type: str  # ALIPAY_CN, ALIPAY_HK, or another Alipay+ wallet Antom enabled
    redirect_url: str  # where the buyer is sent after paying (paymentRedirectUrl)
    expiry: datetime  # paymentExpiryTime: Antom closes the payment then
    terminal_type: str  # APP, WEB or WAP
    os_type: str | None = None  # IOS or ANDROID, for an app


@dataclass(frozen=True, slots=True)
class PaymentPage:
    """Where Antom lets the buyer pay: a web page, an app scheme, an app link (any may be absent)."""

    payment_id: str | None
    normal_url: str | None
    scheme_url: str | None = None
    applink_url: str | None = None


class PaymentRefused(PortError):
    """Antom refused the payment request for good (``F`` + ``resultCode``): nothing was created there."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"Antom refused the payment: {code}" + (f": {message}" if message else ""))
        self.code = code


class CashierPayments(Protocol):
    """Antom's ``payments/pay``: a payment created at Antom, and where the buyer pays it."""

    def pay(self, payment: CashierPayment) -> PaymentPage:
        """``PaymentRefused`` if Antom says no; ``Unavailable`` if it cannot be told whether it created it."""


# --- operations ---------------------------------------------------------------------------------------------


class Metrics(Protocol):
    """Counts business metrics (EMF in Lambda)."""

    def count(self, name: str, value: int = 1) -> None: ...


class Gauges(Protocol):
    """Reports a level (not a count): an alarm watches its minimum (EMF in Lambda)."""

    def gauge(self, name: str, value: float) -> None: ...
