"""The sandbox plays Antom (Alipay's global acquiring API, ``/ams/api/v1/...``) for the stack's merchant.

Written from Antom's public documentation and its official SDKs (``alipay/global-open-sdk-python``,
``com/alipay/ams/api/tools/signature_tool.py``), independently of the product's ``chalicelib.alipay.antom``, so that
a test through the sandbox checks the product against a second reading of the wire, not against itself.

The wire:

- Every message (request, reply, notification) is JSON signed with RSA PKCS#1 v1.5 SHA-256 over
  ``<METHOD> <path>\\n<client-id>.<time>.<raw body>`` (UTF-8), where ``<time>`` is the ``request-time`` header of a
  request or notification, the ``response-time`` header of a reply, used verbatim. The header is
  ``signature: algorithm=RSA256,keyVersion=1,signature=<base64, URL-encoded>`` (the SDK URL-encodes with
  ``quote_plus``; ``+``, ``/`` and ``=`` become ``%2B``, ``%2F``, ``%3D``).
- The merchant's requests are verified with the merchant's public key (the local stack's Antom KMS key) and must
  name the merchant's ``client-id``; a request that does not verify gets ``result F INVALID_SIGNATURE``, one for
  another client ``F KEY_NOT_FOUND`` (unsigned: Antom has no key to sign for a client it does not know). Every other
  reply is signed with the sandbox's Antom key (headers ``client-id``, ``response-time``, ``signature``).
- Notifications (``notifyPayment``, ``notifyRefund``) are POSTed to the notify URL the merchant gave
  (``paymentNotifyUrl``, ``refundNotifyUrl``), signed over that URL's path (query included), and sent again on
  Antom's schedule (0 s, then 2 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h; times the sandbox's time scale) until the
  answer is HTTP 200 with a body whose JSON equals ``ACK`` (compared parsed: whitespace and member order do not
  matter; anything else, another status or body, a timeout, is a failed delivery).

The APIs (``PAY_PATH`` ...): ``pay`` (``CASHIER_PAYMENT``) opens a payment and answers ``U PAYMENT_IN_PROCESS``
with ``paymentId``, ``normalUrl`` (the sandbox's cashier page, where the shopper pays), and for ``WAP``/``APP``
``schemeUrl`` and ``applinkUrl``; ``inquiryPayment``, ``cancel``, ``refund`` and ``inquiryRefund`` as
``docs/local-stack.md`` ("Antom") describes, with the assumptions it lists.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from html import escape
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from .notify import Notification, NotificationSender
from .trades import PayControls, RefundEdges, SandboxSettings

API_PREFIX = "/ams/api/v1/payments/"
# Antom's official SDKs send a SANDBOX_ client's requests to /ams/sandbox/api/... instead of /ams/api/...
# (global-open-sdk-python, default_alipay_client.py, adjust_sandbox_url): both are answered, each signed as sent.
SANDBOX_API_PREFIX = "/ams/sandbox/api/v1/payments/"
PAY_PATH = API_PREFIX + "pay"
INQUIRY_PAYMENT_PATH = API_PREFIX + "inquiryPayment"
CANCEL_PATH = API_PREFIX + "cancel"
REFUND_PATH = API_PREFIX + "refund"
INQUIRY_REFUND_PATH = API_PREFIX + "inquiryRefund"
CHECKOUT_PREFIX = "/sandbox/antom/checkout/"
API_NAMES = ("pay", "inquiryPayment", "cancel", "refund", "inquiryRefund")

# The only answer that ends a notification's retries (compared as JSON).
ACK: dict[str, Any] = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}
# Antom's schedule: the first delivery at once, then these seconds between one failed delivery and the next.
RETRY_INTERVALS = (120, 600, 600, 3600, 7200, 21600, 54000)
JSON_TYPE = "application/json; charset=UTF-8"
HTML_TYPE = "text/html; charset=utf-8"
ALGORITHM = "RSA256"
KEY_VERSION = "1"

PRODUCT_CODE = "CASHIER_PAYMENT"
# Antom's cashier payment methods for Alipay and Alipay+ wallets the sandbox accepts.
PAYMENT_METHODS = frozenset(
    {
        "ALIPAY_CN",
        "ALIPAY_HK",
        "GCASH",
        "DANA",
        "TRUEMONEY",
        "TNG",
        "KAKAOPAY",
        "BOOST",
        "BPI",
        "RABBIT_LINE_PAY",
        "NAVER_PAY",
        "TOSS_PAY",
        "EASYPAISA",
    }
)
TERMINAL_TYPES = frozenset({"WEB", "WAP", "APP"})
OS_TYPES = frozenset({"IOS", "ANDROID"})
# paymentStatus values (inquiryPayment).
PROCESSING, SUCCESS, FAIL, CANCELLED = "PROCESSING", "SUCCESS", "FAIL", "CANCELLED"
# What a control may ask (POST /sandbox/trades/<id>/notify {"trade_status": ...}): one more notifyPayment.
NOTIFY_STATUSES = ("SUCCESS", "FAIL", "PENDING")
OUTCOMES = ("success", "fail", "cancel", "pending")
FAIL_CODE = "USER_PAYMENT_FAILED"  # the sandbox's resultCode of a failed payment's notification (an assumption)
CANCEL_PAID = ("refund", "refuse")
# Minor units per currency (ISO 4217 exponents): the Amount.value Antom sends is an integer string in them.
_EXPONENTS = {"JPY": 0, "KRW": 0, "VND": 0, "IDR": 0, "CLP": 0, "ISK": 0, "BHD": 3, "KWD": 3, "OMR": 3, "JOD": 3}
_ANTOM_TZ = timezone(timedelta(hours=8))  # Antom writes its times with +08:00
_MAX_ID = 64


def _utc_now() -> datetime:
    return datetime.now(UTC)


# --- signatures ---------------------------------------------------------------------------------------------------


def signed_content(method: str, path: str, client_id: str, time: str, body: bytes) -> bytes:
    """``<METHOD> <path>\\n<client-id>.<time>.<body>``: what Antom and the merchant sign."""
    return f"{method} {path}\n{client_id}.{time}.".encode() + body


def sign(key: rsa.RSAPrivateKey, content: bytes) -> str:
    """The ``signature`` header's value for ``content``."""
    raw = key.sign(content, padding.PKCS1v15(), hashes.SHA256())
    encoded = quote(base64.b64encode(raw).decode("ascii"), safe="")
    return f"algorithm={ALGORITHM},keyVersion={KEY_VERSION},signature={encoded}"


class SignatureRefused(Exception):
    """A message's signature is missing, malformed, not RSA256, or does not verify."""


def verify(key: rsa.RSAPublicKey, content: bytes, header: str | None) -> None:
    """Check a ``signature`` header over ``content``; ``SignatureRefused`` says why not."""
    if not header:
        raise SignatureRefused("no signature header")
    parts: dict[str, str] = {}
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise SignatureRefused(f"malformed signature header item {item[:40]!r}")
        parts[name.strip()] = value.strip()
    if parts.get("algorithm") != ALGORITHM:
        raise SignatureRefused(f"algorithm {parts.get('algorithm', '')[:16]!r} is not {ALGORITHM}")
    try:
        raw = base64.b64decode(unquote(parts.get("signature", "")), validate=True)
    except ValueError as exc:
        raise SignatureRefused("the signature is not base64") from exc
    if not raw:
        raise SignatureRefused("empty signature")
    try:
        key.verify(raw, content, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature as exc:
        raise SignatureRefused("the signature does not verify") from exc


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, case-insensitively."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def path_of(url: str) -> str:
    """The path (and ``?query``) of a URL: what a message to it is signed over."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def antom_time(moment: datetime) -> str:
    """ISO 8601 with Antom's +08:00 offset, whole seconds."""
    return moment.astimezone(_ANTOM_TZ).isoformat(timespec="seconds")


def exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def major(value: int, currency: str) -> str:
    """Minor units as a major-unit amount, e.g. ``1234`` USD -> ``12.34``."""
    places = exponent(currency)
    return str((Decimal(value).scaleb(-places)).quantize(Decimal(1).scaleb(-places)))


def _dump(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def acknowledged(status: int | None, reply: bytes) -> bool:
    """Antom's rule: HTTP 200 and a body that is ``ACK`` (JSON-equal)."""
    if status != 200:
        return False
    try:
        return bool(json.loads(reply) == ACK)
    except ValueError:
        return False


# --- the payments Antom holds ---------------------------------------------------------------------------------


@dataclass
class AntomRefund:
    """One refund, by ``refundRequestId``."""

    refund_request_id: str
    refund_id: str
    value: int  # minor units
    currency: str
    status: str  # SUCCESS | PROCESSING | FAIL
    notify_url: str
    created: str
    refund_time: str = ""
    metadata: str | None = None  # the merchant's, given with the refund and returned in its notifyRefund


@dataclass
class AntomPayment:
    """One payment, by ``paymentRequestId`` (the merchant's ``out_trade_no``)."""

    payment_request_id: str
    payment_id: str
    currency: str
    value: int  # minor units
    subject: str
    method_type: str
    terminal_type: str
    redirect_url: str
    notify_url: str
    expiry: datetime | None
    created: str
    request: dict[str, Any]  # the pay request's body: a repeated pay must carry the same
    status: str = PROCESSING
    payment_time: str = ""
    cancel_time: str = ""
    refunds: dict[str, AntomRefund] = field(default_factory=dict)
    edges: RefundEdges = field(default_factory=lambda: RefundEdges())
    answer_status: str | None = None
    cancel_paid: str = "refund"

    @property
    def refunded(self) -> int:
        """Minor units refunded or being refunded (a failed refund gives its amount back)."""
        return sum(r.value for r in self.refunds.values() if r.status != FAIL)


class Refused(Exception):
    """An API call Antom answers ``F`` with this ``resultCode``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# (HTTP status, headers, body)
Reply = tuple[int, dict[str, str], bytes]


class AntomSandbox:
    """Plays Antom for one merchant: its five APIs, the cashier, notifications, and the test controls."""

    def __init__(
        self,
        settings: SandboxSettings,
        *,
        sender: NotificationSender | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings
        self.sender = sender or NotificationSender(settings.time_scale)
        self._clock = clock
        self._lock = threading.RLock()
        self._payments: dict[str, AntomPayment] = {}
        self._payment_ids: dict[str, str] = {}
        self._refund_ids: dict[str, tuple[str, str]] = {}  # refundId -> (paymentRequestId, refundRequestId)
        self._lost: dict[str, int] = {}  # API name -> how many of its next replies are lost (after the work is done)

    @property
    def protocol(self) -> str:
        return str(self.settings.protocol)

    @property
    def client_id(self) -> str:
        return self.settings.antom_client_id

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def close(self) -> None:
        self.sender.close()

    # --- the wire ---------------------------------------------------------------------------------------------

    def answer_api(self, path: str, headers: Mapping[str, str], body: bytes, base_url: str) -> Reply:
        """One merchant request to ``/ams/api/v1/payments/...``; ``base_url`` is where the cashier is served."""
        handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            PAY_PATH: lambda request: self.pay(request, base_url),
            INQUIRY_PAYMENT_PATH: self.inquiry_payment,
            CANCEL_PATH: self.cancel,
            REFUND_PATH: self.refund,
            INQUIRY_REFUND_PATH: self.inquiry_refund,
        }
        if header(headers, "client-id") != self.client_id:
            # No key registered for this client: Antom cannot sign the answer.
            return self._reply(path, _result("F", "KEY_NOT_FOUND", "The key is not found."), signed=False)
        request_time = header(headers, "request-time")
        if not request_time:
            return self._reply(path, _result("F", "PARAM_ILLEGAL", "request-time is required."))
        content = signed_content("POST", path, self.client_id, request_time, body)
        try:
            verify(self.settings.merchant_public_key, content, header(headers, "signature"))
        except SignatureRefused as exc:
            return self._reply(path, _result("F", "INVALID_SIGNATURE", f"The signature is invalid: {exc}."))
        # Signed over the path as sent (query included); routed without the query, the sandbox prefix as the other.
        route = urlsplit(path).path.replace(SANDBOX_API_PREFIX, API_PREFIX, 1)
        handler = handlers.get(route)
        if handler is None:
            return self._reply(path, _result("F", "NO_INTERFACE_DEF", "API is not defined."))
        try:
            request = json.loads(body)
        except ValueError:
            request = None
        if not isinstance(request, dict):
            return self._reply(path, _result("F", "PARAM_ILLEGAL", "The body is not a JSON object."))
        try:
            answer = handler(request)
        except Refused as exc:
            answer = _result("F", exc.code, exc.message)
        except _LostReply:
            return _lost_reply()
        if self._take_lost(route[len(API_PREFIX) :]):
            return _lost_reply()
        return self._reply(path, answer)

    def lose_replies(self, api: str, count: int) -> None:
        """The next ``count`` replies of ``api`` (``pay``, ``inquiryPayment``, ``cancel``, ``refund``,
        ``inquiryRefund``) are lost (504) after Antom did what was asked."""
        if api not in API_NAMES:
            raise ValueError(f"api must be one of {', '.join(API_NAMES)}")
        with self._lock:
            self._lost[api] = count

    def _take_lost(self, api: str) -> bool:
        with self._lock:
            if self._lost.get(api, 0) <= 0:
                return False
            self._lost[api] -= 1
            return True

    def _reply(self, path: str, answer: Mapping[str, Any], *, signed: bool = True) -> Reply:
        body = _dump(answer)
        headers = {"Content-Type": JSON_TYPE}
        if signed:
            response_time = antom_time(self._clock())
            content = signed_content("POST", path, self.client_id, response_time, body)
            headers.update(
                {
                    "client-id": self.client_id,
                    "response-time": response_time,
                    "signature": sign(self.settings.alipay_key, content),
                }
            )
        return 200, headers, body

    # --- pay ----------------------------------------------------------------------------------------------------

    def pay(self, request: dict[str, Any], base_url: str) -> dict[str, Any]:
        """``payments/pay`` (CASHIER_PAYMENT): ``U PAYMENT_IN_PROCESS`` with where the shopper pays."""
        if request.get("productCode") != PRODUCT_CODE:
            raise Refused("PARAM_ILLEGAL", f"productCode must be {PRODUCT_CODE}.")
        request_id = _id(request, "paymentRequestId")
        currency, value = _amount(request.get("paymentAmount"), "paymentAmount")
        order = request.get("order")
        if not isinstance(order, dict):
            raise Refused("PARAM_ILLEGAL", "order is required.")
        if (
            order.get("orderAmount") is not None
            and _amount(order.get("orderAmount"), "order.orderAmount")[0] != currency
        ):
            raise Refused("PARAM_ILLEGAL", "order.orderAmount must be in the payment's currency.")
        subject = order.get("orderDescription")
        if not isinstance(subject, str) or not subject or len(subject) > 256:
            raise Refused("PARAM_ILLEGAL", "order.orderDescription is required (at most 256 characters).")
        method = request.get("paymentMethod")
        method_type = method.get("paymentMethodType") if isinstance(method, dict) else None
        if method_type not in PAYMENT_METHODS:
            raise Refused(
                "PARAM_ILLEGAL", f"paymentMethod.paymentMethodType {str(method_type)[:32]!r} is not supported."
            )
        redirect_url = _url(request.get("paymentRedirectUrl"), "paymentRedirectUrl", required=True)
        notify_url = _url(request.get("paymentNotifyUrl"), "paymentNotifyUrl", required=False)
        env = request.get("env")
        terminal = env.get("terminalType") if isinstance(env, dict) else None
        if terminal not in TERMINAL_TYPES:
            raise Refused("PARAM_ILLEGAL", "env.terminalType must be WEB, WAP or APP.")
        if terminal in ("WAP", "APP") and isinstance(env, dict) and env.get("osType") not in OS_TYPES:
            raise Refused("PARAM_ILLEGAL", "env.osType must be IOS or ANDROID for WAP and APP.")
        expiry = _expiry(request.get("paymentExpiryTime"))
        now = self._clock()
        if expiry is not None and expiry <= now:
            raise Refused("PARAM_ILLEGAL", "paymentExpiryTime is in the past.")
        with self._lock:
            payment = self._payments.get(request_id)
            if payment is None:
                payment = AntomPayment(
                    payment_request_id=request_id,
                    payment_id=self._new_id(self._payment_ids),
                    currency=currency,
                    value=value,
                    subject=subject,
                    method_type=str(method_type),
                    terminal_type=str(terminal),
                    redirect_url=redirect_url,
                    notify_url=notify_url,
                    expiry=expiry,
                    created=antom_time(now),
                    request=request,
                )
                self._payments[request_id] = payment
                self._payment_ids[payment.payment_id] = request_id
            elif payment.request != request:
                # Idempotent by paymentRequestId: the same request again is answered again; another one is refused.
                raise Refused("REPEAT_REQ_INCONSISTENT", "The paymentRequestId was used with other parameters.")
            self._check_expiry(payment)
            if payment.status == SUCCESS:
                return {
                    "result": _ok(),
                    "paymentRequestId": request_id,
                    "paymentId": payment.payment_id,
                    "paymentAmount": _money(payment.value, payment.currency),
                    "paymentCreateTime": payment.created,
                    "paymentTime": payment.payment_time,
                }
            if payment.status != PROCESSING:
                raise Refused("ORDER_IS_CLOSED", f"The payment is {payment.status}.")
            answer: dict[str, Any] = {
                "result": {
                    "resultCode": "PAYMENT_IN_PROCESS",
                    "resultStatus": "U",
                    "resultMessage": "payment in process",
                },
                "paymentRequestId": request_id,
                "paymentId": payment.payment_id,
                "paymentAmount": _money(payment.value, payment.currency),
                "paymentCreateTime": payment.created,
                "normalUrl": f"{base_url}{CHECKOUT_PREFIX}{payment.payment_id}",
            }
            if payment.terminal_type in ("WAP", "APP"):
                answer["schemeUrl"] = "alipays://platformapi/startapp?appId=20000067&url=" + quote(
                    answer["normalUrl"], safe=""
                )
                answer["applinkUrl"] = f"{base_url}{CHECKOUT_PREFIX}{payment.payment_id}?applink=1"
            return answer

    # --- inquiryPayment, cancel -------------------------------------------------------------------------------

    def _payment(self, request: Mapping[str, Any]) -> AntomPayment:
        """The payment a request names (``paymentId`` wins over ``paymentRequestId``); ``Refused`` if none."""
        payment_id, request_id = request.get("paymentId"), request.get("paymentRequestId")
        if not isinstance(payment_id, str) and not isinstance(request_id, str):
            raise Refused("PARAM_ILLEGAL", "paymentId or paymentRequestId is required.")
        with self._lock:
            key = self._payment_ids.get(payment_id) if isinstance(payment_id, str) else request_id
            payment = self._payments.get(key or "")
            if payment is None:
                raise Refused("ORDER_NOT_EXIST", "The order does not exist.")
            return payment

    def inquiry_payment(self, request: dict[str, Any]) -> dict[str, Any]:
        """``payments/inquiryPayment``: ``paymentStatus`` SUCCESS | FAIL | PROCESSING | CANCELLED."""
        payment = self._payment(request)
        with self._lock:
            self._check_expiry(payment)
            answer: dict[str, Any] = {
                "result": _ok(),
                "paymentStatus": payment.answer_status or payment.status,
                "paymentRequestId": payment.payment_request_id,
                "paymentId": payment.payment_id,
                "paymentAmount": _money(payment.value, payment.currency),
                "paymentCreateTime": payment.created,
                "paymentMethodType": payment.method_type,
            }
            if payment.payment_time:
                answer["paymentTime"] = payment.payment_time
            if payment.status == FAIL:
                answer["paymentResultCode"] = "ORDER_IS_CLOSED"
                answer["paymentResultMessage"] = "The payment was not made in time."
            return answer

    def cancel(self, request: dict[str, Any]) -> dict[str, Any]:
        """``payments/cancel``: a waiting payment is closed; a paid one is refunded in full (Antom's documented
        behaviour within its cancellation window) unless the trade's ``cancel_paid`` control says ``refuse``."""
        payment = self._payment(request)
        with self._lock:
            self._check_expiry(payment)
            if payment.status == SUCCESS:
                if payment.refunds:
                    raise Refused("PROCESS_FAIL", "A refunded payment cannot be cancelled.")
                if payment.cancel_paid == "refuse":
                    raise Refused("ORDER_STATUS_INVALID", "The payment is paid: past its cancellation window.")
            if payment.status in (PROCESSING, SUCCESS, FAIL):
                payment.status = CANCELLED
                payment.cancel_time = antom_time(self._clock())
            return {
                "result": _ok(),
                "paymentId": payment.payment_id,
                "paymentRequestId": payment.payment_request_id,
                "cancelTime": payment.cancel_time,
            }

    # --- refund, inquiryRefund ---------------------------------------------------------------------------------

    def refund(self, request: dict[str, Any]) -> dict[str, Any]:
        """``payments/refund``: S (done), U ``REFUND_IN_PROCESS`` (a slow trade), or F; idempotent by
        ``refundRequestId``."""
        refund_request_id = _id(request, "refundRequestId")
        payment_id = request.get("paymentId")
        if not isinstance(payment_id, str) or not payment_id:
            raise Refused("PARAM_ILLEGAL", "paymentId is required.")
        currency, value = _amount(request.get("refundAmount"), "refundAmount")
        notify_url = _url(request.get("refundNotifyUrl"), "refundNotifyUrl", required=False)
        notes: list[Notification] = []
        with self._lock:
            key = self._payment_ids.get(payment_id)
            payment = self._payments.get(key or "")
            if payment is None:
                raise Refused("ORDER_NOT_EXIST", "The payment does not exist.")
            done = payment.refunds.get(refund_request_id)
            if done is not None:
                if (done.value, done.currency) != (value, currency):
                    raise Refused("REPEAT_REQ_INCONSISTENT", "The refundRequestId was used with another amount.")
            else:
                if payment.status != SUCCESS:
                    raise Refused("ORDER_STATUS_INVALID", f"The payment is {payment.status}: nothing to refund.")
                if currency != payment.currency:
                    raise Refused("CURRENCY_NOT_SUPPORT", "The refund's currency is not the payment's.")
                if value <= 0:
                    raise Refused("PARAM_ILLEGAL", "refundAmount.value must be positive.")
                if value > payment.value - payment.refunded:
                    raise Refused("REFUND_AMOUNT_EXCEED", "The refund amount exceeds what is left to refund.")
                now = antom_time(self._clock())
                done = AntomRefund(
                    refund_request_id=refund_request_id,
                    refund_id=self._new_id(self._refund_ids),
                    value=value,
                    currency=currency,
                    status=PROCESSING,
                    notify_url=notify_url,
                    created=now,
                    metadata=request.get("metadata") if isinstance(request.get("metadata"), str) else None,
                )
                payment.refunds[refund_request_id] = done
                self._refund_ids[done.refund_id] = (payment.payment_request_id, refund_request_id)
                if not payment.edges.slow:
                    notes = self._finish_refund(payment, done, SUCCESS)
            answer = self._refund_answer(payment, done)
        self.sender.send(notes)
        if self.take_lost_reply(payment):
            raise _LostReply
        return answer

    def _refund_answer(self, payment: AntomPayment, refund: AntomRefund) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "refundRequestId": refund.refund_request_id,
            "refundId": refund.refund_id,
            "paymentId": payment.payment_id,
            "refundAmount": _money(refund.value, refund.currency),
        }
        if refund.status == SUCCESS:
            answer["result"] = _ok()
            answer["refundTime"] = refund.refund_time
        elif refund.status == PROCESSING:
            answer["result"] = {
                "resultCode": "REFUND_IN_PROCESS",
                "resultStatus": "U",
                "resultMessage": "refund in process",
            }
        else:
            answer = {"result": _result("F", "REFUND_FAILED", "The refund failed.")["result"]}
        return answer

    def inquiry_refund(self, request: dict[str, Any]) -> dict[str, Any]:
        """``payments/inquiryRefund``: ``refundStatus`` SUCCESS | PROCESSING | FAIL (``refundId`` wins)."""
        refund_id, refund_request_id = request.get("refundId"), request.get("refundRequestId")
        with self._lock:
            refund: AntomRefund | None = None
            if isinstance(refund_id, str) and refund_id:
                request_id, refund_request_id = self._refund_ids.get(refund_id, ("", ""))
                refund = self._payments[request_id].refunds.get(refund_request_id) if request_id else None
            elif isinstance(refund_request_id, str) and refund_request_id:
                for payment in self._payments.values():
                    refund = payment.refunds.get(refund_request_id) or refund
            else:
                raise Refused("PARAM_ILLEGAL", "refundId or refundRequestId is required.")
            if refund is None:
                raise Refused("REFUND_NOT_EXIST", "The refund does not exist.")
            answer: dict[str, Any] = {
                "result": _ok(),
                "refundId": refund.refund_id,
                "refundRequestId": refund.refund_request_id,
                "refundAmount": _money(refund.value, refund.currency),
                "refundStatus": refund.status,
            }
            if refund.status == SUCCESS:
                answer["refundTime"] = refund.refund_time
            return answer

    def _finish_refund(self, payment: AntomPayment, refund: AntomRefund, status: str) -> list[Notification]:
        """Settle a refund SUCCESS or FAIL; its notifyRefund unless held back (the caller holds the lock)."""
        refund.status = status
        refund.refund_time = antom_time(self._clock())
        if not payment.edges.notify or not refund.notify_url:
            return []
        ok = status == SUCCESS
        body = {
            "notifyType": "REFUND_RESULT",
            "result": _ok() if ok else _result("F", "REFUND_FAILED", "The refund failed.")["result"],
            "refundStatus": status,
            "refundRequestId": refund.refund_request_id,
            "refundId": refund.refund_id,
            "refundAmount": _money(refund.value, refund.currency),
            "refundTime": refund.refund_time,
        }
        if refund.metadata is not None:
            body["metadata"] = refund.metadata  # Antom returns the refund request's metadata in its notification
        return [self._notification(payment, refund.notify_url, body, f"REFUND_RESULT:{status}")]

    # --- the shopper -------------------------------------------------------------------------------------------

    def shopper_pays(self, payment_id: str, outcome: str, controls: PayControls, *, pending_first: bool = False) -> str:
        """The shopper's outcome for a payment (by ``paymentId`` or ``paymentRequestId``); its status afterwards.

        ``success``: paid, notifyPayment S; ``fail``: the payment fails, notifyPayment F; ``cancel``: the shopper
        leaves the cashier (nothing happens: the payment waits until it expires); ``pending``: a PAYMENT_PENDING
        notification now, the payment completes ``notify_delay`` (default 1 Antom second x 1000) later.
        ``controls.reorder``: a PAYMENT_PENDING is delivered after the result (a stale notice arriving late);
        ``pending_first``: a PAYMENT_PENDING delivered before it. ``Refused`` if the payment cannot be paid.
        """
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        with self._lock:
            payment = self._find(payment_id)
            if payment is None:
                raise Refused("ORDER_NOT_EXIST", "The order does not exist.")
            self._check_expiry(payment)
            if payment.status != PROCESSING:
                raise Refused(
                    "ORDER_IS_CLOSED" if payment.status != SUCCESS else "ORDER_STATUS_INVALID",
                    f"The payment is {payment.status}.",
                )
            if outcome == "cancel":
                return payment.status
            if outcome == "pending":
                delay = controls.notify_delay if controls.notify_delay is not None else 1000 * self.settings.time_scale
                request_id = payment.payment_request_id
                note = self._payment_notification(payment, "PENDING")
                self.sender.call_later(
                    delay, lambda: self._complete_pending(request_id, PayControls(duplicates=controls.duplicates))
                )
                pending_notes = [note] if note else []
                self.sender.send(pending_notes, duplicates=controls.duplicates)
                return payment.status
            notes = self._settle(payment, SUCCESS if outcome == "success" else FAIL)
            pending = self._payment_notification(payment, "PENDING")
            if pending is not None and controls.reorder:
                notes = [*notes, pending]
            elif pending is not None and pending_first:
                notes = [pending, *notes]
            status = payment.status
        self.sender.send(notes, duplicates=controls.duplicates, delay=controls.notify_delay or 0.0)
        return status

    def _complete_pending(self, request_id: str, controls: PayControls) -> None:
        with self._lock:
            payment = self._payments[request_id]
            if payment.status != PROCESSING:  # cancelled or expired meanwhile
                return
            notes = self._settle(payment, SUCCESS)
        self.sender.send(notes, duplicates=controls.duplicates)

    def _settle(self, payment: AntomPayment, status: str) -> list[Notification]:
        """The payment succeeds or fails; its notifyPayment (the caller holds the lock)."""
        payment.status = status
        if status == SUCCESS:
            payment.payment_time = antom_time(self._clock())
        note = self._payment_notification(payment, status)
        return [note] if note else []

    def _check_expiry(self, payment: AntomPayment) -> None:
        """A waiting payment past its ``paymentExpiryTime`` is closed (FAIL), unnotified (the caller holds the lock)."""
        if payment.status == PROCESSING and payment.expiry is not None and self._clock() >= payment.expiry:
            payment.status = FAIL

    # --- the cashier page --------------------------------------------------------------------------------------

    def answer_checkout(self, method: str, path: str) -> tuple[int, str, bytes, dict[str, str]]:
        """``GET /sandbox/antom/checkout/<paymentId>`` (the page) and ``POST .../pay`` | ``.../cancel``."""
        payment_id, _, action = path[len(CHECKOUT_PREFIX) :].partition("/")
        with self._lock:
            payment = self._find(payment_id) if payment_id in self._payment_ids else None
            if payment is not None:
                self._check_expiry(payment)
        if payment is None:
            return 404, HTML_TYPE, _error_page("no such payment"), {}
        if method == "GET" and not action:
            return 200, HTML_TYPE, self._checkout_page(payment), {}
        if method != "POST" or action not in ("pay", "cancel"):
            return 405, HTML_TYPE, _error_page("the cashier takes POST .../pay or .../cancel"), {}
        if action == "cancel":
            return 200, HTML_TYPE, _page("Payment cancelled", '<h1 id="cancelled">Payment cancelled</h1>'), {}
        try:
            self.shopper_pays(payment_id, "success", PayControls())
        except Refused as exc:
            if payment.status != SUCCESS:
                return 409, HTML_TYPE, _error_page(f"{exc.code}: {exc.message}"), {}
        # Antom sends the shopper back to paymentRedirectUrl as given: no result in it (the merchant inquires).
        return 302, HTML_TYPE, b"", {"Location": payment.redirect_url}

    def _checkout_page(self, payment: AntomPayment) -> bytes:
        action = f"{CHECKOUT_PREFIX}{payment.payment_id}"
        amount = f"{major(payment.value, payment.currency)} {payment.currency}"
        return _page(
            "Antom sandbox checkout",
            "<h1>Antom sandbox checkout</h1>\n"
            f'<p>Payment <code id="cashier-out-trade-no">{escape(payment.payment_request_id)}</code> '
            f"({escape(payment.method_type)}, {escape(payment.terminal_type)})</p>\n"
            f'<p id="cashier-subject">{escape(payment.subject)}</p>\n'
            f'<p id="cashier-amount">{escape(amount)}</p>\n'
            f'<form method="post" action="{escape(action)}/pay"><button id="pay" type="submit">Pay</button></form>\n'
            f'<form method="post" action="{escape(action)}/cancel">'
            '<button id="cancel" type="submit">Cancel</button></form>',
        )

    # --- the test controls (the same endpoints as Alipay's: sandbox/server.py) ----------------------------------

    def _find(self, key: str) -> AntomPayment | None:
        """By paymentRequestId (the merchant's out_trade_no) or by paymentId (the caller holds the lock)."""
        return self._payments.get(key) or self._payments.get(self._payment_ids.get(key, ""))

    def trade_view(self, out_trade_no: str) -> dict[str, Any] | None:
        """``GET /sandbox/trades/<out_trade_no>``: the payment, its refunds and every delivery made for it."""
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return None
            self._check_expiry(payment)
            refunded = sum(r.value for r in payment.refunds.values() if r.status == SUCCESS)
            if payment.status == CANCELLED and payment.payment_time and not payment.refunds:
                refunded = payment.value  # cancelled after payment: Antom gave the money back
            view: dict[str, Any] = {
                "out_trade_no": payment.payment_request_id,
                "trade_no": payment.payment_id,
                "payment_id": payment.payment_id,
                "status": payment.status,
                "total_amount": major(payment.value, payment.currency),
                "currency": payment.currency,
                "payment_amount": _money(payment.value, payment.currency),
                "payment_method_type": payment.method_type,
                "terminal_type": payment.terminal_type,
                "refund_fee": major(refunded, payment.currency),
                "notify_url": payment.notify_url or None,
                "redirect_url": payment.redirect_url,
                "expiry": antom_time(payment.expiry) if payment.expiry else None,
                "gmt_create": payment.created,
                "gmt_payment": payment.payment_time or None,
                "gmt_close": payment.cancel_time or None,
                "refunds": [
                    {
                        "out_request_no": r.refund_request_id,
                        "refund_id": r.refund_id,
                        "refund_amount": major(r.value, r.currency),
                        "refund_status": r.status,
                        "gmt_refund": r.refund_time or None,
                    }
                    for r in payment.refunds.values()
                    if r.status == SUCCESS
                ],
                "refunds_processing": sorted(
                    r.refund_request_id for r in payment.refunds.values() if r.status == PROCESSING
                ),
                "refunds_failed": sorted(r.refund_request_id for r in payment.refunds.values() if r.status == FAIL),
            }
            key = payment.payment_request_id
        view["notifications"] = self.sender.notifications(key)
        view["attempts"] = [a.as_json() for a in self.sender.attempts(key)]
        return view

    def notify(
        self,
        out_trade_no: str,
        trade_status: str,
        *,
        refund_fee: str | None = None,
        controls: PayControls | None = None,
    ) -> dict[str, str] | None:
        """One more notifyPayment (``SUCCESS``: result S, ``FAIL``: F, ``PENDING``: PAYMENT_PENDING); a waiting
        payment moves to SUCCESS or FAIL with it, another stays where it is (a late or repeated notice)."""
        if trade_status not in NOTIFY_STATUSES:
            raise ValueError(f"trade_status must be one of {', '.join(NOTIFY_STATUSES)} (Antom)")
        if refund_fee is not None:
            raise ValueError("refund_fee is Alipay's: Antom notifies refunds with notifyRefund (refunds/settle)")
        controls = controls or PayControls()
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return None
            if payment.status == PROCESSING and trade_status in (SUCCESS, FAIL):
                payment.status = trade_status
                if trade_status == SUCCESS:
                    payment.payment_time = antom_time(self._clock())
            note = self._payment_notification(payment, trade_status)
        if note is None:
            raise ValueError("the payment has no paymentNotifyUrl: nowhere to notify")
        self.sender.send([note], duplicates=controls.duplicates, delay=controls.notify_delay or 0.0)
        return {"notify_id": note.notify_id, "trade_status": trade_status}

    def expire(self, out_trade_no: str) -> str | None:
        """The payment's expiry comes now: a waiting payment closes (FAIL), unnotified. Its status (None: unknown)."""
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return None
            if payment.status == PROCESSING:
                payment.status = FAIL
            return payment.status

    def pay_late(self, out_trade_no: str) -> dict[str, str] | None:
        """The shopper pays a payment that failed (expired) or was cancelled: captured and notified anyway."""
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return None
            payment.cancel_time = ""
            notes = self._settle(payment, SUCCESS)
        self.sender.send(notes)
        return {"notify_id": notes[0].notify_id if notes else "", "trade_status": SUCCESS}

    def set_answer_status(self, out_trade_no: str, status: str | None) -> bool:
        """inquiryPayment answers ``paymentStatus`` ``status`` (None: the real one); False when unknown."""
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return False
            payment.answer_status = status
            return True

    def set_cancel_paid(self, out_trade_no: str, behaviour: str) -> bool:
        """How ``cancel`` treats the payment once paid: ``refund`` (documented) or ``refuse``; False when unknown."""
        if behaviour not in CANCEL_PAID:
            raise ValueError(f"cancel_paid must be one of {', '.join(CANCEL_PAID)}")
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return False
            payment.cancel_paid = behaviour
            return True

    def set_refund_edges(self, out_trade_no: str, edges: RefundEdges) -> bool:
        """``lose_replies``: refund replies lost (504) after the refund is done; ``slow``: refunds answer U and stay
        PROCESSING until ``settle_refunds``; ``notify``: send notifyRefund. False when unknown."""
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return False
            payment.edges = edges
            return True

    def settle_refunds(self, out_trade_no: str, *, outcome: str = SUCCESS) -> list[str] | None:
        """Settle the PROCESSING refunds as ``SUCCESS`` or ``FAIL``; their refundRequestIds (None: unknown)."""
        if outcome not in (SUCCESS, FAIL):
            raise ValueError("outcome must be SUCCESS or FAIL")
        notes: list[Notification] = []
        with self._lock:
            payment = self._find(out_trade_no)
            if payment is None:
                return None
            settled = [r for r in payment.refunds.values() if r.status == PROCESSING]
            for refund in settled:
                notes.extend(self._finish_refund(payment, refund, outcome))
        self.sender.send(notes)
        return [r.refund_request_id for r in settled]

    def take_lost_reply(self, payment: AntomPayment) -> bool:
        with self._lock:
            if payment.edges.lose_replies <= 0:
                return False
            payment.edges.lose_replies -= 1
            return True

    def stop_retries(self) -> int:
        return self.sender.stop_retries()

    # --- notifications -------------------------------------------------------------------------------------------

    def _payment_notification(self, payment: AntomPayment, status: str) -> Notification | None:
        """notifyPayment for ``status`` SUCCESS | FAIL | PENDING; None without a notify URL (caller holds the lock)."""
        if not payment.notify_url:
            return None
        body: dict[str, Any] = {"notifyType": "PAYMENT_PENDING" if status == "PENDING" else "PAYMENT_RESULT"}
        if status == SUCCESS:
            body["result"] = _ok()
        elif status == FAIL:
            body["result"] = _result("F", FAIL_CODE, "The payment failed.")["result"]
        else:
            body["result"] = {
                "resultCode": "PAYMENT_IN_PROCESS",
                "resultStatus": "U",
                "resultMessage": "payment in process",
            }
        body.update(
            paymentRequestId=payment.payment_request_id,
            paymentId=payment.payment_id,
            paymentAmount=_money(payment.value, payment.currency),
            paymentCreateTime=payment.created,
        )
        if status == SUCCESS:
            body["paymentTime"] = payment.payment_time
        kind = f"{body['notifyType']}:{body['result']['resultStatus']}"
        return self._notification(payment, payment.notify_url, body, kind)

    def _notification(self, payment: AntomPayment, url: str, data: Mapping[str, Any], kind: str) -> Notification:
        """A notification to ``url``, signed over its path, retried on Antom's schedule until ``ACK``."""
        body = _dump(data)
        request_time = antom_time(self._clock())
        content = signed_content("POST", path_of(url), self.client_id, request_time, body)
        return Notification(
            out_trade_no=payment.payment_request_id,
            notify_id=f"{kind}:{secrets.token_hex(6)}",
            trade_status=kind,
            url=url,
            body=body,
            content_type=JSON_TYPE,
            headers={
                "client-id": self.client_id,
                "request-time": request_time,
                "signature": sign(self.settings.alipay_key, content),
            },
            retry_intervals=RETRY_INTERVALS,
            acknowledged_by=acknowledged,
        )

    def _new_id(self, taken: Mapping[str, Any]) -> str:
        """``yyyyMMdd`` (+08:00) + 24 digits, like Antom's paymentId / refundId; unique in this sandbox."""
        day = self._clock().astimezone(_ANTOM_TZ).strftime("%Y%m%d")
        while True:
            new = f"{day}1140108001{secrets.randbelow(10**14):014d}"
            if new not in taken:
                return new


class _LostReply(Exception):
    """The sandbox drops this reply (a payment's ``RefundEdges.lose_replies``)."""


def _lost_reply() -> Reply:
    return 504, {"Content-Type": "text/plain; charset=utf-8"}, b"gateway timeout (sandbox: the reply was lost)"


# --- helpers ---------------------------------------------------------------------------------------------------


def _ok() -> dict[str, str]:
    return {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}


def _result(status: str, code: str, message: str) -> dict[str, Any]:
    return {"result": {"resultCode": code, "resultStatus": status, "resultMessage": message}}


def _money(value: int, currency: str) -> dict[str, str]:
    return {"currency": currency, "value": str(value)}


def _id(request: Mapping[str, Any], name: str) -> str:
    value = request.get(name)
    if not isinstance(value, str) or not value or len(value) > _MAX_ID:
        raise Refused("PARAM_ILLEGAL", f"{name} is required (at most {_MAX_ID} characters).")
    return value


def _amount(value: object, name: str) -> tuple[str, int]:
    """``{"currency", "value"}``: an ISO 4217 code and a positive whole number of minor units, as a string."""
    if not isinstance(value, dict):
        raise Refused("PARAM_ILLEGAL", f"{name} is required.")
    currency, minor = value.get("currency"), value.get("value")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha() and currency.isupper()):
        raise Refused("PARAM_ILLEGAL", f"{name}.currency must be an ISO 4217 code.")
    if not (isinstance(minor, str) and minor.isdigit() and minor.isascii() and len(minor) <= 16):
        raise Refused("PARAM_ILLEGAL", f"{name}.value must be a whole number of minor units, as a string.")
    if int(minor) <= 0:
        raise Refused("PARAM_ILLEGAL", f"{name}.value must be positive.")
    return currency, int(minor)


def _url(value: object, name: str, *, required: bool) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value) or len(value) > 2048:
        raise Refused("PARAM_ILLEGAL", f"{name} must be an http(s) URL.")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Refused("PARAM_ILLEGAL", f"{name} must be an http(s) URL.")
    return value


def _expiry(value: object) -> datetime | None:
    """``paymentExpiryTime``: absolute, ISO 8601 with an offset (a time without one is refused)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Refused("PARAM_ILLEGAL", "paymentExpiryTime must be an ISO 8601 time with an offset.")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise Refused("PARAM_ILLEGAL", "paymentExpiryTime must be an ISO 8601 time with an offset.") from exc
    if moment.tzinfo is None:
        raise Refused("PARAM_ILLEGAL", "paymentExpiryTime must carry an offset (e.g. +08:00).")
    return moment


def _page(title: str, content: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>\n<body>\n{content}\n</body></html>\n"
    ).encode()


def _error_page(message: str) -> bytes:
    return _page("Antom sandbox: error", f'<h1 id="error">Payment refused</h1>\n<p>{escape(message)}</p>')
