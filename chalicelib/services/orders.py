"""Creating an order: validation at the edge, one stored order, its signed order string, idempotency."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import secrets
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.orders.catalogue import PricingError, price
from chalicelib.orders.model import Order
from chalicelib.orders.money import currency_message, fits_currency

from .clock import Clock, iso_utc
from .commands import APP_CHANNEL, BUYER_ID, CHANNELS, BuyerOrder, CreateOrder, OrderDraft
from .errors import BadRequest, IdempotencyKeyInProgress, IdempotencyKeyReused, OrderNotFound, ValidationError
from .ports import Catalogue, IdempotencyRecord, IdempotencyStore, Metrics, OrderRepository, Unavailable
from .protocols import OrderStrings
from .views import amount_text, find_order, items_view

log = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# A crashed request's claim may be taken over after this long: longer than API Gateway's 29 s timeout.
IDEMPOTENCY_LOCK_SECONDS = 60
# The protocols' own names for the request's fields, as their validation errors name them.
_REQUEST_FIELD = {
    "it_b_pay": "timeout",
    "timeout_express": "timeout",
    "timeout_rule": "timeout",
    "total_fee": "total_amount",
}


@dataclass(frozen=True, slots=True)
class CreatedOrder:
    """The answer to ``POST /orders``; ``replayed`` when it is the stored answer to an earlier request."""

    status_code: int
    body: Mapping[str, Any]
    replayed: bool = False


@dataclass
class OrderService:
    """Create an order (stored and signed concurrently) and read one back."""

    orders: OrderRepository
    idempotency: IdempotencyStore
    order_strings: OrderStrings
    metrics: Metrics
    currencies: Collection[str]
    now: Clock
    catalogue: Catalogue
    default_currency: str = "USD"
    default_timeout: str = "30m"
    idempotency_ttl_seconds: int = 86400
    default_return_url: str | None = None  # page and wap orders without a return_url of their own
    # The hosts a request's own return_url may name (empty: any). Alipay's cashier sends the shopper there.
    return_url_hosts: Collection[str] = ()
    # A deployed stage: https only (Alipay's signed query must not travel in clear), and a request's own return_url only
    # on a listed host, none listed meaning only the default: no open redirect through Alipay's cashier.
    strict_return_urls: bool = False
    # Reused across invocations: a warm container pays for its threads once.
    executor: Executor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="orders"))

    def get(self, out_trade_no: str) -> Order:
        """The stored order; ``OrderNotFound`` if there is none."""
        return find_order(self.orders, out_trade_no)

    def get_for_buyer(self, out_trade_no: str, buyer: str) -> Order:
        """The buyer's own order; another buyer's answers exactly as an unknown one (``OrderNotFound``)."""
        order = find_order(self.orders, out_trade_no)
        if order.buyer != buyer:
            raise OrderNotFound(f"no order {out_trade_no[:64]!r}")
        return order

    def list_for_buyer(self, buyer: str, limit: int, cursor: str | None) -> tuple[list[Order], str | None]:
        """One page of the buyer's orders, newest first, and the cursor of the next (None: no more)."""
        after = _decode_cursor(cursor) if cursor else None
        orders, last = self.orders.for_buyer(buyer, limit, after)
        return orders, (_encode_cursor(last) if last else None)

    def create_for_buyer(self, command: BuyerOrder, buyer: str, idempotency_key: str | None = None) -> CreatedOrder:
        """Price the buyer's lines from the catalogue, number the order, store and sign it."""
        now = self.now()
        currency = command.currency or self.default_currency
        if currency not in self.currencies:
            raise ValidationError("currency", f"must be one of {', '.join(sorted(self.currencies))}")
        products = self.catalogue.get_many(line.sku for line in command.lines)
        try:
            priced = price(command.lines, products, currency)
        except PricingError as exc:
            raise ValidationError(f"items[{exc.index}].sku", str(exc)) from exc
        channel, return_url = self._channel(command.channel, command.return_url)
        draft = OrderDraft(
            out_trade_no=_new_out_trade_no(now),
            subject=priced.subject,
            body=priced.body,
            total_amount=priced.total_amount,
            currency=currency,
            timeout=self.order_strings.default_timeout(channel, self.default_timeout),
            channel=channel,
            return_url=return_url,
            buyer=buyer,
            items=priced.items,
            created_by=buyer,
            payment_method=command.payment_method,
            os_type=command.os_type,
        )
        self._check_draft(draft)
        return self._idempotent(draft, now, _scoped("buyer", buyer, idempotency_key), command.request_hash)

    def create(
        self, command: CreateOrder, idempotency_key: str | None = None, *, created_by: str | None = None
    ) -> CreatedOrder:
        """Validate, then store and sign; with an ``Idempotency-Key`` (scoped to the caller), a repeat gets the first
        answer."""
        now = self.now()
        draft = self._validate(command, now, created_by)
        return self._idempotent(draft, now, _scoped("merchant", created_by, idempotency_key), command.request_hash)

    def _idempotent(
        self, draft: OrderDraft, now: datetime, idempotency_key: str | None, hash_request: Callable[[], str]
    ) -> CreatedOrder:
        if idempotency_key is None:
            return self._create(draft, now)
        request_hash = hash_request()  # only with a key: a request without one is never compared
        record = self.idempotency.claim(
            idempotency_key,
            request_hash,
            now=int(now.timestamp()),
            ttl=self.idempotency_ttl_seconds,
            lock_seconds=IDEMPOTENCY_LOCK_SECONDS,
        )
        if record is not None:
            return _replay(record, request_hash)
        try:
            created = self._create(draft, now)
        except BaseException:
            self._release(idempotency_key)
            raise
        try:
            self.idempotency.complete(idempotency_key, created.body, created.status_code)
        except Unavailable:
            # The order is stored and signed: the client gets its answer. A retry inside the lock window
            # hears "in progress"; after it, the retry runs again (and a client-chosen out_trade_no gets 409).
            log.warning("idempotency record not completed", extra={"out_trade_no": draft.out_trade_no})
        return created

    def _validate(self, command: CreateOrder, now: datetime, created_by: str | None = None) -> OrderDraft:
        try:
            subject = params.check_text("subject", command.subject, 256)
            body = params.check_text("body", command.body, 128, required=False) if command.body else None
            amount = params.parse_amount(command.total_amount, "total_amount")
            timeout = params.check_timeout(command.timeout, "timeout") if command.timeout else None
            out_trade_no = (
                params.check_out_trade_no(command.out_trade_no) if command.out_trade_no else _new_out_trade_no(now)
            )
        except OrderError as exc:
            raise ValidationError(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from exc
        if command.currency not in self.currencies:
            raise ValidationError("currency", f"must be one of {', '.join(sorted(self.currencies))}")
        if not fits_currency(amount, command.currency):
            raise ValidationError("total_amount", currency_message(command.currency))
        if command.buyer is not None and not BUYER_ID.fullmatch(command.buyer):
            raise ValidationError("buyer", "must be the buyer's id (the user pool's sub): 1-128 printable characters")
        channel, return_url = self._channel(command.channel, command.return_url)
        if timeout is None:
            timeout = self.order_strings.default_timeout(channel, self.default_timeout)
        draft = OrderDraft(
            out_trade_no,
            subject,
            body,
            amount,
            command.currency,
            timeout,
            channel,
            return_url,
            buyer=command.buyer,
            created_by=created_by,
            payment_method=command.payment_method,
            os_type=command.os_type,
        )
        self._check_draft(draft)
        return draft

    def _check_draft(self, draft: OrderDraft) -> None:
        try:
            # The protocol's own rules (e.g. the legacy string cannot carry a '"'), before anything is stored.
            self.order_strings.check(draft)
        except OrderError as exc:
            field_name = _REQUEST_FIELD.get(exc.field, exc.field)
            raise ValidationError(field_name, str(exc).removeprefix(f"{exc.field}: ")) from exc

    def _channel(self, requested: str | None, requested_return_url: str | None) -> tuple[str, str | None]:
        """The order's channel and, for a web channel, its return_url (the request's, else the configured one)."""
        channel = requested or APP_CHANNEL
        if channel not in CHANNELS:
            raise ValidationError("channel", f"must be one of {', '.join(CHANNELS)}")
        if channel == APP_CHANNEL:
            if requested_return_url:
                raise ValidationError("return_url", "only for the page and wap channels (an app gets no redirect)")
            return channel, None
        return_url = requested_return_url or self.default_return_url
        if not return_url:
            raise ValidationError("return_url", f"is required for the {channel} channel (no default is configured)")
        try:
            checked = params.check_return_url(return_url)
        except OrderError as exc:
            raise ValidationError("return_url", str(exc).removeprefix(f"{exc.field}: ")) from exc
        if self.strict_return_urls and not checked.startswith("https://"):
            raise ValidationError("return_url", "must be an https:// URL")
        if requested_return_url and (self.return_url_hosts or self.strict_return_urls):
            from urllib.parse import urlsplit

            host = (urlsplit(checked).hostname or "").lower()
            if host not in self.return_url_hosts:
                if not self.return_url_hosts:
                    raise ValidationError("return_url", "must not be sent: no RETURN_URL_HOSTS are configured")
                raise ValidationError("return_url", f"host {host!r} is not one of the configured RETURN_URL_HOSTS")
        return channel, checked

    def _create(self, draft: OrderDraft, now: datetime) -> CreatedOrder:
        order = Order.create(
            out_trade_no=draft.out_trade_no,
            total_amount=draft.total_amount,
            currency=draft.currency,
            subject=draft.subject,
            body=draft.body,
            now=iso_utc(now),
            # When Alipay closes the unpaid trade: reconciliation closes the order only after this.
            pay_by=iso_utc(now + timedelta(minutes=params.timeout_minutes(draft.timeout, "timeout"))),
            channel=draft.channel,
            return_url=draft.return_url,
            buyer=draft.buyer,
            items=draft.items,
            created_by=draft.created_by,
        )
        # The put and the payment (a KMS signature; Antom: its payments/pay) do not depend on each other: run them
        # together, so a request costs about the slower of the two. The put goes to the pool; the payment is made here.
        stored = self.executor.submit(self.orders.add, order)
        try:
            signed = self.order_strings.payment(draft, now)
        except Exception:
            # Whatever failed (KMS throttled, most likely), no order may stay behind without an order string.
            # exception() waits for the put: only an order that was stored is rolled back.
            if stored.exception() is None:
                self._roll_back(draft.out_trade_no)
            raise
        # Not stored (taken, or the table is down): the signature is simply discarded.
        stored.result()
        self.metrics.count("OrdersCreated")
        body: dict[str, Any] = {
            "out_trade_no": order.out_trade_no,
            **signed,
            "status": str(order.status),
            "total_amount": amount_text(order.total_amount),
            "currency": order.currency,
            "subject": order.subject,
        }
        if order.items:
            body["items"] = items_view(order.items)
        if order.buyer is not None:
            body["buyer"] = order.buyer
        return CreatedOrder(201, body)

    def _roll_back(self, out_trade_no: str) -> None:
        """Delete an order nobody can pay (it has no signed order string), so no half-created order remains."""
        try:
            self.orders.remove_unsigned(out_trade_no)
        except Unavailable:
            # Harmless but worth a look: without an order string the order can never be paid.
            log.error("unsigned order left behind: rollback failed", extra={"out_trade_no": out_trade_no})

    def _release(self, key: str) -> None:
        try:
            self.idempotency.release(key)
        except Unavailable:
            # The claim expires after IDEMPOTENCY_LOCK_SECONDS; until then a retry hears "in progress".
            log.warning("idempotency claim not released")


def _replay(record: IdempotencyRecord, request_hash: str) -> CreatedOrder:
    if record.request_hash != request_hash:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body")
    if record.response is None or record.status_code is None:
        raise IdempotencyKeyInProgress("a request with this Idempotency-Key is still in progress")
    return CreatedOrder(record.status_code, record.response, replayed=True)


def _scoped(kind: str, caller: str | None, key: str | None) -> str | None:
    """An ``Idempotency-Key`` as stored: scoped to its caller, so one caller's key never replays another's order."""
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationError("Idempotency-Key", "1-255 printable ASCII characters")
    if caller is None:
        return key
    # Hashed: an ARN or a sub of any length makes a key of fixed length; the kind keeps buyers and merchants apart.
    return hashlib.sha256(f"{kind}\0{caller}".encode()).hexdigest()[:32] + ":" + key


_CURSOR = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z#[A-Za-z0-9_-]{1,64}")


def _encode_cursor(position: str) -> str:
    return base64.urlsafe_b64encode(position.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    """The position a cursor names; ``BadRequest`` for anything this API did not hand out."""
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor: not a cursor this API handed out") from None
    if not _CURSOR.fullmatch(position):
        raise BadRequest("cursor: not a cursor this API handed out")
    return position


def _new_out_trade_no(now: datetime) -> str:
    """Time-ordered (to the millisecond, UTC) then 48 random bits: sortable, and unique without a lookup."""
    utc = now.astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S") + f"{utc.microsecond // 1000:03d}" + secrets.token_hex(6)
