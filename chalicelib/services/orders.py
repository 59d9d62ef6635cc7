"""Creating and reading orders: validation at the edge, one stored order, its signed order string, idempotency."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Collection, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.alipay.signing import Signer
from chalicelib.orders.model import Order, Refund

from .clock import Clock, iso_utc
from .errors import BadRequest, IdempotencyKeyInProgress, IdempotencyKeyReused, OrderNotFound, ValidationError
from .ports import IdempotencyRecord, IdempotencyStore, Metrics, OrderRepository, Unavailable

if TYPE_CHECKING:
    from chalicelib.alipay.web import WebPayment

log = logging.getLogger(__name__)

_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
# A crashed request's claim may be taken over after this long: longer than API Gateway's 29 s timeout.
IDEMPOTENCY_LOCK_SECONDS = 60
_CENT = Decimal("0.01")
# The protocols' own names for the request's fields, as their validation errors name them.
_REQUEST_FIELD = {
    "it_b_pay": "timeout",
    "timeout_express": "timeout",
    "timeout_rule": "timeout",
    "total_fee": "total_amount",
}
APP_CHANNEL = "app"
WEB_CHANNELS = ("page", "wap")
CHANNELS = (APP_CHANNEL, *WEB_CHANNELS)


@dataclass(frozen=True, slots=True)
class CreateOrder:
    """The body of ``POST /orders`` as the client sent it (strings, not yet validated)."""

    subject: str
    total_amount: str
    currency: str
    body: str | None = None
    out_trade_no: str | None = None
    timeout: str | None = None
    channel: str | None = None  # app (the default), page or wap
    return_url: str | None = None  # page and wap: where Alipay sends the shopper back to

    @classmethod
    def from_json(cls, data: object) -> CreateOrder:
        """Check the shape of a decoded JSON body: an object of known string fields, the required ones present."""
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        for name in data:
            if name not in _FIELDS:
                raise ValidationError(str(name), "unknown field")
        for name in _REQUIRED:
            if data.get(name) is None:
                raise ValidationError(name, "is required")
        for name, value in data.items():
            if value is not None and not isinstance(value, str):
                # Amounts too: a JSON number is a binary float, and 0.1 + 0.2 is no price.
                hint = ', e.g. "12.34"' if name == "total_amount" else ""
                raise ValidationError(name, f"must be a string{hint}")
        return cls(**data)

    def request_hash(self) -> str:
        """SHA-256 of the canonical request (sorted keys, unset fields left out): equal bodies, equal hashes."""
        canonical = {k: v for k, v in asdict(self).items() if v is not None}
        text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


_FIELDS = frozenset(CreateOrder.__dataclass_fields__)
_REQUIRED = ("subject", "total_amount", "currency")


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """A validated order, before it is stored and signed."""

    out_trade_no: str
    subject: str
    body: str | None
    total_amount: Decimal
    currency: str
    timeout: str
    channel: str = APP_CHANNEL
    return_url: str | None = None

    @property
    def web(self) -> bool:
        """Whether the shopper pays in a browser (page or wap) rather than in an app."""
        return self.channel in WEB_CHANNELS


@dataclass(frozen=True, slots=True)
class CreatedOrder:
    """The answer to ``POST /orders``; ``replayed`` when it is the stored answer to an earlier request."""

    status_code: int
    body: Mapping[str, Any]
    replayed: bool = False


class OrderStrings(Protocol):
    """Builds the signed ``orderInfo`` (app) or web payment (page, wap) for one protocol; ``check`` only validates."""

    def check(self, draft: OrderDraft) -> None: ...

    def sign(self, draft: OrderDraft, now: datetime) -> str: ...

    def sign_web(self, draft: OrderDraft, now: datetime) -> WebPayment: ...


@dataclass(frozen=True, slots=True)
class OpenApiOrderStrings:
    """``alipay.trade.app.pay`` order strings, signed by the merchant key (KMS, RSA2)."""

    signer: Signer
    app_id: str
    notify_url: str
    gateway_url: str = ""  # where web payments go (production or sandbox gateway)

    def check(self, draft: OrderDraft) -> None:
        if draft.web:
            from chalicelib.alipay.web import WebChannel, web_pay_biz_content

            web_pay_biz_content(WebChannel(draft.channel), **self._biz(draft))
            params.check_return_url(draft.return_url or "")
            return
        from chalicelib.alipay.openapi import app_pay_biz_content

        app_pay_biz_content(**self._biz(draft))

    def sign_web(self, draft: OrderDraft, now: datetime) -> WebPayment:
        from chalicelib.alipay.web import WebChannel, build_openapi_web_payment

        biz = self._biz(draft)
        extra = biz.pop("extra")
        return build_openapi_web_payment(
            self.signer,
            WebChannel(draft.channel),
            gateway_url=self.gateway_url,
            app_id=self.app_id,
            notify_url=self.notify_url,
            return_url=draft.return_url or "",
            now=now,
            extra_biz=extra,
            **biz,
        )

    def sign(self, draft: OrderDraft, now: datetime) -> str:
        from chalicelib.alipay.openapi import build_app_pay_order_string

        biz = self._biz(draft)
        extra = biz.pop("extra")
        return build_app_pay_order_string(
            self.signer, app_id=self.app_id, notify_url=self.notify_url, now=now, extra_biz=extra, **biz
        )

    @staticmethod
    def _biz(draft: OrderDraft) -> dict[str, Any]:
        # A price in a foreign currency is sent as trans_currency (the currency of total_amount); without it
        # Alipay would read the amount as CNY and charge the buyer a different sum.
        extra = {} if draft.currency == "CNY" else {"trans_currency": draft.currency}
        return {
            "out_trade_no": draft.out_trade_no,
            "subject": draft.subject,
            "total_amount": draft.total_amount,
            "body": draft.body,
            "timeout_express": draft.timeout,
            "extra": extra,
        }


@dataclass(frozen=True, slots=True)
class MapiOrderStrings:
    """Legacy ``mobile.securitypay.pay`` order strings, signed SHA1withRSA by a locally held key."""

    signer: Signer
    partner: str
    notify_url: str
    seller_id: str | None = None
    gateway_url: str = ""  # where web payments go (production or sandbox gateway)

    def check(self, draft: OrderDraft) -> None:
        if draft.web:
            self._forex_params(draft)
            return
        from chalicelib.alipay.mapi import securitypay_signed_content

        securitypay_signed_content(self._params(draft))

    def sign_web(self, draft: OrderDraft, now: datetime) -> WebPayment:
        from chalicelib.alipay.web import sign_forex_trade

        return sign_forex_trade(self._forex_params(draft), self.signer, gateway_url=self.gateway_url)

    def _forex_params(self, draft: OrderDraft) -> dict[str, str]:
        from chalicelib.alipay.web import WebChannel, forex_trade_params

        return forex_trade_params(
            WebChannel(draft.channel),
            partner=self.partner,
            notify_url=self.notify_url,
            return_url=draft.return_url or "",
            out_trade_no=draft.out_trade_no,
            subject=draft.subject,
            body=draft.body,
            currency=draft.currency,
            total_fee=draft.total_amount,
            timeout_rule=draft.timeout,
        )

    def sign(self, draft: OrderDraft, now: datetime) -> str:
        from chalicelib.alipay.mapi import sign_securitypay_order

        return sign_securitypay_order(self._params(draft), self.signer)

    def _params(self, draft: OrderDraft) -> list[tuple[str, str]]:
        from chalicelib.alipay.mapi import securitypay_order_params

        return securitypay_order_params(
            partner=self.partner,
            notify_url=self.notify_url,
            out_trade_no=draft.out_trade_no,
            subject=draft.subject,
            # The legacy service requires a body; the subject is the natural one when the client sent none.
            body=draft.body or draft.subject,
            currency=draft.currency,
            total_fee=draft.total_amount,
            it_b_pay=draft.timeout,
            seller_id=self.seller_id,
        )


def find_order(orders: OrderRepository, out_trade_no: str) -> Order:
    """The stored order; ``OrderNotFound`` also for a number no order could have (never sent to the table)."""
    try:
        params.check_out_trade_no(out_trade_no)
    except OrderError:
        raise OrderNotFound(f"no order {out_trade_no[:64]!r}") from None
    order = orders.get(out_trade_no)
    if order is None:
        raise OrderNotFound(f"no order {out_trade_no!r}")
    return order


def order_view(order: Order) -> dict[str, Any]:
    """``GET /orders/{out_trade_no}``'s body: amounts as decimal strings, optional fields only when known."""
    view: dict[str, Any] = {
        "out_trade_no": order.out_trade_no,
        "status": str(order.status),
        "total_amount": _amount(order.total_amount),
        "currency": order.currency,
        "updated_at": order.updated_at,
    }
    if order.trade_no:
        view["trade_no"] = order.trade_no
    if order.refund_fee is not None:
        view["refund_fee"] = _amount(order.refund_fee)
    if order.closed_reason is not None:
        view["closed_reason"] = str(order.closed_reason)
    if order.refunds:
        view["refunds"] = [refund_view(order.out_trade_no, r) for r in order.refunds.values()]
    return view


def refund_view(out_trade_no: str, refund: Refund) -> dict[str, str]:
    """One refund as the API shows it; the same answer for every repeat of its ``out_request_no``."""
    view = {
        "out_trade_no": out_trade_no,
        "out_request_no": refund.out_request_no,
        "refund_amount": _amount(refund.amount),
        "status": str(refund.status),
    }
    if refund.refund_fee is not None:
        view["refund_fee"] = _amount(refund.refund_fee)
    if refund.reason:
        view["reason"] = refund.reason
    return view


def _amount(value: Decimal) -> str:
    # Two places, fixed-point: DynamoDB hands 12.30 back as 12.3, and str(Decimal) may say 1E+2.
    return format(value.quantize(_CENT), "f")


@dataclass
class OrderService:
    """Create an order (stored and signed concurrently) and read one back."""

    orders: OrderRepository
    idempotency: IdempotencyStore
    order_strings: OrderStrings
    metrics: Metrics
    currencies: Collection[str]
    now: Clock
    default_timeout: str = "30m"
    idempotency_ttl_seconds: int = 86400
    default_return_url: str | None = None  # page and wap orders without a return_url of their own
    # The hosts a request's own return_url may name (empty: any). Alipay's cashier sends the shopper there.
    return_url_hosts: Collection[str] = ()
    # Reused across invocations: a warm container pays for its threads once.
    executor: Executor = field(default_factory=lambda: ThreadPoolExecutor(max_workers=4, thread_name_prefix="orders"))

    def get(self, out_trade_no: str) -> Order:
        """The stored order; ``OrderNotFound`` if there is none."""
        return find_order(self.orders, out_trade_no)

    def create(self, command: CreateOrder, idempotency_key: str | None = None) -> CreatedOrder:
        """Validate, then store and sign; with an ``Idempotency-Key``, a repeat gets the first answer."""
        now = self.now()
        draft = self._validate(command, now)
        if idempotency_key is None:
            return self._create(draft, now)
        if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
            raise ValidationError("Idempotency-Key", "1-255 printable ASCII characters")
        request_hash = command.request_hash()
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

    def _validate(self, command: CreateOrder, now: datetime) -> OrderDraft:
        try:
            subject = params.check_text("subject", command.subject, 256)
            body = params.check_text("body", command.body, 128, required=False) if command.body else None
            amount = params.parse_amount(command.total_amount, "total_amount")
            timeout = params.check_timeout(command.timeout, "timeout") if command.timeout else self.default_timeout
            out_trade_no = (
                params.check_out_trade_no(command.out_trade_no) if command.out_trade_no else _new_out_trade_no(now)
            )
        except OrderError as exc:
            raise ValidationError(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from exc
        if command.currency not in self.currencies:
            raise ValidationError("currency", f"must be one of {', '.join(sorted(self.currencies))}")
        channel, return_url = self._channel(command)
        draft = OrderDraft(out_trade_no, subject, body, amount, command.currency, timeout, channel, return_url)
        try:
            # The protocol's own rules (e.g. the legacy string cannot carry a '"'), before anything is stored.
            self.order_strings.check(draft)
        except OrderError as exc:
            field_name = _REQUEST_FIELD.get(exc.field, exc.field)
            raise ValidationError(field_name, str(exc).removeprefix(f"{exc.field}: ")) from exc
        return draft

    def _channel(self, command: CreateOrder) -> tuple[str, str | None]:
        """The order's channel and, for a web channel, its return_url (the request's, else the configured one)."""
        channel = command.channel or APP_CHANNEL
        if channel not in CHANNELS:
            raise ValidationError("channel", f"must be one of {', '.join(CHANNELS)}")
        if channel == APP_CHANNEL:
            if command.return_url:
                raise ValidationError("return_url", "only for the page and wap channels (an app gets no redirect)")
            return channel, None
        return_url = command.return_url or self.default_return_url
        if not return_url:
            raise ValidationError("return_url", f"is required for the {channel} channel (no default is configured)")
        try:
            checked = params.check_return_url(return_url)
        except OrderError as exc:
            raise ValidationError("return_url", str(exc).removeprefix(f"{exc.field}: ")) from exc
        if command.return_url and self.return_url_hosts:
            from urllib.parse import urlsplit

            host = (urlsplit(checked).hostname or "").lower()
            if host not in self.return_url_hosts:
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
        )
        # The put and the KMS signature do not depend on each other: run them together, so a request costs
        # about the slower of the two. The put goes to the pool; the signature is made on this thread.
        stored = self.executor.submit(self.orders.add, order)
        try:
            signed: dict[str, str]
            if draft.web:
                payment = self.order_strings.sign_web(draft, now)
                signed = {
                    "channel": draft.channel,
                    "payment_url": payment.payment_url,
                    "payment_form": payment.form_html(),
                }
            else:
                signed = {"order_info": self.order_strings.sign(draft, now)}
        except Exception:
            # Whatever failed (KMS throttled, most likely), no order may stay behind without an order string.
            # exception() waits for the put: only an order that was stored is rolled back.
            if stored.exception() is None:
                self._roll_back(draft.out_trade_no)
            raise
        # Not stored (taken, or the table is down): the signature is simply discarded.
        stored.result()
        self.metrics.count("OrdersCreated")
        body = {
            "out_trade_no": order.out_trade_no,
            **signed,
            "status": str(order.status),
            "total_amount": _amount(order.total_amount),
            "currency": order.currency,
        }
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


def _new_out_trade_no(now: datetime) -> str:
    """Time-ordered (to the millisecond, UTC) then 48 random bits: sortable, and unique without a lookup."""
    utc = now.astimezone(UTC)
    return utc.strftime("%Y%m%d%H%M%S") + f"{utc.microsecond // 1000:03d}" + secrets.token_hex(6)
