"""Antom (Alipay's global acquiring API, ``/ams/api/v1/...``): signatures, bodies, notifications, replies. Pure.

Every message, both ways, is JSON signed with RSA SHA-256 (PKCS#1 v1.5) over
``<METHOD> <path>\\n<client-id>.<time>.<raw body>`` and carries ``client-id``, a time header (``request-time`` on
requests and notifications, ``response-time`` on replies) and ``signature: algorithm=RSA256,keyVersion=1,
signature=<URL-encoded base64>``. The byte-level reference, with the official SDK files each rule was read from, is
docs/protocols.md §7; ``tests/vectors/antom_vectors.json`` holds answers the official SDK's own signing code gave.

Nothing here does I/O or reads a clock: times and keys come in as arguments.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from chalicelib.orders.money import minor_units

from . import params as p
from .errors import (
    ClientIdMismatch,
    InvalidField,
    MalformedMessage,
    MalformedSignature,
    MissingHeader,
    OrderError,
    OrderMismatch,
    UnsupportedAlgorithm,
)
from .signing import AlipayPublicKeys, Signer, SignType, b64encode, verify_signature

PAY_PATH = "/ams/api/v1/payments/pay"
INQUIRY_PAYMENT_PATH = "/ams/api/v1/payments/inquiryPayment"
CANCEL_PATH = "/ams/api/v1/payments/cancel"
REFUND_PATH = "/ams/api/v1/payments/refund"
INQUIRY_REFUND_PATH = "/ams/api/v1/payments/inquiryRefund"

# The one answer that stops Antom resending a notification (anything else, or no answer, and it comes again).
ACK_BODY = b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
# Antom resends an unacknowledged notification at these delays after the first attempt's, within 24 hours.
RETRY_DELAYS_SECONDS = (0, 120, 600, 600, 3600, 7200, 21600, 54000)

CLIENT_ID_HEADER = "client-id"
REQUEST_TIME_HEADER = "request-time"
RESPONSE_TIME_HEADER = "response-time"
SIGNATURE_HEADER = "signature"
CONTENT_TYPE = "application/json; charset=UTF-8"
ALGORITHM = "RSA256"
# A client id of Antom's test mode; the SDKs then call /ams/sandbox/api/... instead of /ams/api/...
SANDBOX_CLIENT_PREFIX = "SANDBOX_"

PAYMENT_NOTIFY_TYPES = frozenset({"PAYMENT_RESULT", "PAYMENT_PENDING"})
REFUND_NOTIFY_TYPE = "REFUND_RESULT"
RESULT_STATUSES = frozenset({"S", "F", "U"})
PAYMENT_STATUSES = frozenset({"SUCCESS", "FAIL", "PROCESSING", "CANCELLED", "PENDING"})
REFUND_STATUSES = frozenset({"SUCCESS", "PROCESSING", "FAIL"})
NOTIFIED_REFUND_STATUSES = frozenset({"SUCCESS", "FAIL"})
TERMINAL_TYPES = frozenset({"WEB", "WAP", "APP"})
OS_TYPES = frozenset({"IOS", "ANDROID"})
# Answers meaning "Antom has no such payment (or refund)", not a failure of the call.
NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST"})
REFUND_NOT_FOUND_CODES = frozenset({"REFUND_NOT_EXIST", "ORDER_NOT_EXIST"})

# ISO 4217 currencies whose minor unit is not two places and that chalicelib/orders/money.py does not list: Antom
# reads their amounts in their own minor unit, so a 2-place assumption would charge 100 times (or a tenth) the
# amount. They are refused until money.py knows them.
_UNLISTED_MINOR_UNITS = frozenset(
    {"BIF", "CLP", "DJF", "GNF", "ISK", "KMF", "PYG", "RWF", "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"}
    | {"BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND", "CLF", "UYW"}
)
_CURRENCY = re.compile(r"[A-Z]{3}")
# Antom's Amount.value: a positive integer in the currency's minor unit, at most 16 characters, sent as a string.
_MINOR_VALUE = re.compile(r"[1-9][0-9]{0,15}")
_MAX_ID_LENGTH = 128
_MAX_TEXT_LENGTH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ORDER_DESCRIPTION_LENGTH = 256
_REFUND_REASON_LENGTH = 256
_URL_LENGTH = 1024


# --- signatures -----------------------------------------------------------------------------------------------


def signed_content(method: str, path: str, client_id: str, time: str, body: bytes) -> bytes:
    """The bytes Antom signs: ``<METHOD> <path>\\n<client-id>.<time>.<raw body>`` (UTF-8)."""
    return f"{method} {path}\n{client_id}.{time}.".encode() + body


def signature_header(signature: bytes, key_version: str = "1") -> str:
    """``algorithm=RSA256,keyVersion=<v>,signature=<URL-encoded base64>`` (``+ / =`` as ``%2B %2F %3D``)."""
    return f"algorithm={ALGORITHM},keyVersion={key_version},signature={quote(b64encode(signature), safe='')}"


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    """A parsed ``signature`` header."""

    algorithm: str
    key_version: str | None
    signature: bytes


def parse_signature_header(value: str) -> SignatureHeader:
    """Read ``algorithm=RSA256,keyVersion=1,signature=...``: pairs split by commas (spaces around them allowed).

    ``MalformedSignature`` for what cannot be read; ``UnsupportedAlgorithm`` for anything but ``RSA256``.
    """
    pairs: dict[str, str] = {}
    for part in value.split(","):
        name, eq, text = part.strip().partition("=")
        if not eq or not name:
            raise MalformedSignature(f"signature header part {part.strip()[:32]!r} is not name=value")
        if name in pairs:
            raise MalformedSignature(f"signature header names {name} twice")
        pairs[name] = text.strip()
    algorithm = pairs.get("algorithm")
    encoded = pairs.get("signature")
    if not algorithm:
        raise MalformedSignature("signature header names no algorithm")
    if algorithm != ALGORITHM:
        raise UnsupportedAlgorithm(f"signature algorithm {algorithm[:32]!r}; Antom signs with {ALGORITHM} only")
    if not encoded:
        raise MalformedSignature("signature header carries no signature=")
    # The SDKs URL-decode the value (unquote_plus, URLDecoder). A '+' that was never encoded is read as '+', not
    # as a space: no genuine header carries a bare '+', and base64 has no space to mean.
    raw = unquote(encoded)
    try:
        signature = binascii.a2b_base64(raw.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise MalformedSignature("signature= is not URL-encoded base64") from exc
    if not signature:
        raise MalformedSignature("signature= is empty")
    return SignatureHeader(algorithm=algorithm, key_version=pairs.get("keyVersion") or None, signature=signature)


def request_headers(
    signer: Signer, *, path: str, client_id: str, body: bytes, request_time: str, key_version: str = "1"
) -> dict[str, str]:
    """The headers of one signed merchant request (``POST``): Content-Type, client-id, request-time, signature."""
    if signer.sign_type is not SignType.RSA2:
        raise ValueError(f"Antom signs with SHA256withRSA (RSA2); the signer signs {signer.sign_type}")
    signature = signer.sign(signed_content("POST", path, client_id, request_time, body))
    return {
        "Content-Type": CONTENT_TYPE,
        CLIENT_ID_HEADER: client_id,
        REQUEST_TIME_HEADER: request_time,
        SIGNATURE_HEADER: signature_header(signature, key_version),
    }


def _lowered(headers: Mapping[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in out and out[key] != value:
            raise MalformedMessage(f"header {key} is sent twice with different values")
        out[key] = value
    return out


def verify_message(
    headers: Mapping[str, str],
    body: bytes,
    *,
    method: str,
    path: str,
    client_id: str,
    keys: AlipayPublicKeys,
    time_header: str = REQUEST_TIME_HEADER,
) -> None:
    """Verify a signed Antom message exactly as it arrived; raise a ``VerificationError`` naming the failed check.

    ``path`` is the path the message was signed for: for a notification the path of the notify URL as registered
    with Antom (``path_of``), never the path the request reached us by. Several keys: a rotation, any one verifies.
    """
    lowered = _lowered(headers)
    values: dict[str, str] = {}
    for name in (CLIENT_ID_HEADER, time_header.lower(), SIGNATURE_HEADER):
        value = lowered.get(name, "").strip()
        if not value:
            raise MissingHeader(name)
        values[name] = value
    if values[CLIENT_ID_HEADER] != client_id:
        raise ClientIdMismatch(f"client-id {values[CLIENT_ID_HEADER][:64]!r}, expected {client_id!r}")
    parsed = parse_signature_header(values[SIGNATURE_HEADER])
    # The time is signed verbatim, as sent (milliseconds from Java, ISO 8601 from Python): never reformatted.
    content = signed_content(method, path, client_id, values[time_header.lower()], body)
    verify_signature(keys, content, parsed.signature, SignType.RSA2)


# --- paths and amounts ----------------------------------------------------------------------------------------


def path_of(url: str) -> str:
    """The path (and ``?query``) of an absolute ``http(s)`` URL, as written: what Antom signs for that URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    path = parts.path or "/"
    return f"{path}?{parts.query}" if parts.query else path


def api_path(path: str, client_id: str) -> str:
    """The path to call for ``client_id``: Antom's test mode serves ``/ams/sandbox/api/...`` (the SDKs' rule)."""
    if client_id.startswith(SANDBOX_CLIENT_PREFIX):
        return path.replace("/ams/api", "/ams/sandbox/api", 1)
    return path


def _places(currency: str) -> int:
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise InvalidField(f"currency {str(currency)[:8]!r} is not an ISO 4217 code")
    if currency in _UNLISTED_MINOR_UNITS:
        raise InvalidField(f"currency {currency}: its minor unit is not known to the product (orders/money.py)")
    return minor_units(currency)


def to_minor(amount: Decimal, currency: str) -> str:
    """``amount`` (major units) as Antom's ``value``: a positive integer count of the currency's minor unit."""
    places = _places(currency)
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise InvalidField(f"amount {amount!r} must be a positive finite Decimal")
    try:
        minor = amount.scaleb(places)
        whole = minor.to_integral_value()
    except InvalidOperation as exc:
        raise InvalidField(f"amount {amount} is too large") from exc
    if whole != minor:
        raise InvalidField(f"amount {amount} does not fit {currency} ({places} decimal places)")
    value = str(int(whole))
    if not _MINOR_VALUE.fullmatch(value):
        raise InvalidField(f"amount {amount} is out of Antom's range")
    return value


def from_minor(value: str, currency: str) -> Decimal:
    """Antom's ``value`` (minor units, a string of digits) as an amount in major units with the currency's places."""
    places = _places(currency)
    if not isinstance(value, str) or not _MINOR_VALUE.fullmatch(value):
        raise InvalidField(f"amount value {str(value)[:20]!r} is not a positive integer of minor units")
    return Decimal(value).scaleb(-places) if places else Decimal(value)


# --- request bodies -------------------------------------------------------------------------------------------


def _dump(data: Mapping[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def _amount(amount: Decimal, currency: str) -> dict[str, str]:
    return {"currency": currency, "value": to_minor(amount, currency)}


def _url(field_name: str, value: str) -> str:
    if not isinstance(value, str) or len(value) > _URL_LENGTH or any(c.isspace() for c in value):
        raise OrderError(field_name, f"must be a URL of at most {_URL_LENGTH} characters without whitespace")
    try:
        path_of(value)
    except ValueError as exc:
        raise OrderError(field_name, "must be an absolute http or https URL") from exc
    return value


def pay_body(
    *,
    out_trade_no: str,
    subject: str,
    amount: Decimal,
    currency: str,
    payment_method_type: str,
    redirect_url: str,
    notify_url: str,
    expiry: datetime,
    terminal_type: str,
    os_type: str | None,
    settlement_currency: str | None = None,
) -> bytes:
    """``payments/pay`` for a cashier payment (``CASHIER_PAYMENT``): the exact bytes to sign and send."""
    p.check_out_trade_no(out_trade_no)
    p.check_text("subject", subject, _ORDER_DESCRIPTION_LENGTH)
    if not re.fullmatch(r"[A-Z0-9_]{1,64}", payment_method_type or ""):
        raise OrderError("payment_method_type", "must be an Antom payment method type such as ALIPAY_CN")
    if terminal_type not in TERMINAL_TYPES:
        raise OrderError("terminal_type", f"must be one of {', '.join(sorted(TERMINAL_TYPES))}")
    if terminal_type in ("APP", "WAP") and os_type not in OS_TYPES:
        raise OrderError("os_type", f"is required for {terminal_type}: IOS or ANDROID")
    if terminal_type == "WEB" and os_type is not None:
        raise OrderError("os_type", "is only sent for APP and WAP")
    if expiry.tzinfo is None or expiry.utcoffset() is None:
        raise OrderError("expiry", "must carry a time zone (Antom takes ISO 8601 with an offset)")
    money = _amount(amount, currency)
    env: dict[str, str] = {"terminalType": terminal_type}
    if os_type is not None:
        env["osType"] = os_type
    body: dict[str, Any] = {
        "productCode": "CASHIER_PAYMENT",
        "paymentRequestId": out_trade_no,
        "order": {"referenceOrderId": out_trade_no, "orderDescription": subject, "orderAmount": money},
        "paymentAmount": money,
        "paymentMethod": {"paymentMethodType": payment_method_type},
        "paymentRedirectUrl": _url("redirect_url", redirect_url),
        "paymentNotifyUrl": _url("notify_url", notify_url),
        "paymentExpiryTime": expiry.isoformat(timespec="seconds"),
        "env": env,
    }
    if settlement_currency is not None:
        _places(settlement_currency)
        body["settlementStrategy"] = {"settlementCurrency": settlement_currency}
    return _dump(body)


def inquiry_payment_body(out_trade_no: str) -> bytes:
    """``payments/inquiryPayment`` by our number."""
    return _dump({"paymentRequestId": p.check_out_trade_no(out_trade_no)})


def cancel_body(out_trade_no: str) -> bytes:
    """``payments/cancel`` by our number."""
    return _dump({"paymentRequestId": p.check_out_trade_no(out_trade_no)})


def refund_body(
    *,
    out_request_no: str,
    payment_id: str,
    amount: Decimal,
    currency: str,
    reason: str | None,
    notify_url: str | None,
    out_trade_no: str | None = None,
) -> bytes:
    """``payments/refund`` of Antom's ``payment_id``; ``refundRequestId`` (ours) makes a resend idempotent.

    ``out_trade_no`` travels as ``metadata``, which Antom returns in the refund's ``notifyRefund``: that notification
    names no payment, and the order must be found even when the refund is no longer pending.
    """
    try:
        p.check_out_trade_no(out_request_no)
    except OrderError as exc:
        raise OrderError("out_request_no", "1-64 characters from A-Z a-z 0-9 _ -") from exc
    if not isinstance(payment_id, str) or not payment_id or len(payment_id) > 64 or _CONTROL.search(payment_id):
        raise OrderError("payment_id", "Antom's paymentId (1-64 characters) is required to refund")
    body: dict[str, Any] = {
        "refundRequestId": out_request_no,
        "paymentId": payment_id,
        "refundAmount": _amount(amount, currency),
    }
    if reason:
        body["refundReason"] = p.check_text("reason", reason, _REFUND_REASON_LENGTH)
    if notify_url:
        body["refundNotifyUrl"] = _url("notify_url", notify_url)
    if out_trade_no:
        body["metadata"] = p.check_out_trade_no(out_trade_no)
    return _dump(body)


def inquiry_refund_body(out_request_no: str) -> bytes:
    """``payments/inquiryRefund`` by our refund number."""
    try:
        p.check_out_trade_no(out_request_no)
    except OrderError as exc:
        raise OrderError("out_request_no", "1-64 characters from A-Z a-z 0-9 _ -") from exc
    return _dump({"refundRequestId": out_request_no})


# --- reading signed JSON --------------------------------------------------------------------------------------


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedMessage(f"JSON names {key[:32]!r} twice")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise MalformedMessage(f"JSON holds {name}, which is not JSON")


def parse_json(body: bytes) -> dict[str, Any]:
    """A signed body as a JSON object: UTF-8, no duplicate names, no NaN; anything else is ``MalformedMessage``."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedMessage("body is not UTF-8") from exc
    try:
        data = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        if isinstance(exc, MalformedMessage):
            raise
        raise MalformedMessage(f"body is not JSON: {str(exc)[:80]}") from exc
    if not isinstance(data, dict):
        raise MalformedMessage("body is not a JSON object")
    return data


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Every leaf as ``dotted.name`` -> text (strings as is, other values as JSON; list items by index), in order.

    A stack of its own, not recursion: ``json.loads`` nests as deep as the interpreter's recursion limit allows, so
    recursing once more per level here would overflow on a document just within that depth (RecursionError, not a
    refusal). Leaves are scalars, so ``json.dumps`` of one never nests.
    """
    out: dict[str, str] = {}
    pending: list[tuple[Any, str]] = [(dict(data), prefix)]
    while pending:
        value, name = pending.pop()
        if isinstance(value, dict):
            children = [(item, f"{name}.{key}" if name else str(key)) for key, item in value.items()]
            pending.extend(reversed(children))  # popped in the document's order
        elif isinstance(value, list):
            pending.extend(reversed([(item, f"{name}.{index}") for index, item in enumerate(value)]))
        elif isinstance(value, str):
            out[name] = value
        elif value is not None:
            out[name] = json.dumps(value)
    return out


def _text(data: Mapping[str, Any], key: str, *, required: bool = True, limit: int = _MAX_ID_LENGTH) -> str:
    value = data.get(key)
    if value is None or value == "":
        if required:
            raise InvalidField(f"missing {key}")
        return ""
    if not isinstance(value, str):
        raise InvalidField(f"{key} is not a string")
    if len(value) > limit or _CONTROL.search(value):
        raise InvalidField(f"{key} is longer than {limit} characters or holds control characters")
    return value


def _object(data: Mapping[str, Any], key: str, *, required: bool = True) -> dict[str, Any] | None:
    value = data.get(key)
    if value is None:
        if required:
            raise InvalidField(f"missing {key}")
        return None
    if not isinstance(value, dict):
        raise InvalidField(f"{key} is not an object")
    return value


def _money(data: Mapping[str, Any], key: str, *, required: bool = True) -> tuple[Decimal, str] | None:
    amount = _object(data, key, required=required)
    if amount is None:
        return None
    currency = _text(amount, "currency", limit=3)
    value = _text(amount, "value", limit=32)
    try:
        return from_minor(value, currency), currency
    except InvalidField as exc:
        raise InvalidField(f"{key}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Result:
    """Antom's ``result``: ``S`` success, ``F`` failure (``code`` says why), ``U`` unknown (ask again)."""

    status: str
    code: str
    message: str


def _result(data: Mapping[str, Any]) -> Result:
    result = _object(data, "result")
    assert result is not None
    status = _text(result, "resultStatus", limit=1)
    if status not in RESULT_STATUSES:
        raise InvalidField(f"unknown result.resultStatus {status!r}")
    return Result(
        status=status,
        code=_text(result, "resultCode", limit=64),
        message=_text(result, "resultMessage", required=False, limit=_MAX_TEXT_LENGTH),
    )


# --- notifications ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AntomNotification:
    """A verified ``notifyPayment`` (``kind`` "payment") or ``notifyRefund`` (``kind`` "refund").

    Paid means ``notify_type == "PAYMENT_RESULT"`` and ``result_status == "S"`` (``paid``). ``amount`` is in major
    units (``paymentAmount`` or ``refundAmount`` read in the currency's minor unit). ``notify_id`` is derived, the
    same for every resend of one notification: ``<notifyType>:<paymentId>:<resultStatus>`` for payments,
    ``REFUND_RESULT:<refundRequestId>:<refundStatus>`` for refunds. A refund notification carries no
    ``paymentRequestId``: ``out_trade_no`` is "" then, and the order is found from ``refund_request_id``.
    """

    kind: str
    notify_type: str
    result_status: str
    result_code: str
    out_trade_no: str
    payment_id: str
    amount: Decimal
    currency: str
    refund_request_id: str
    refund_id: str
    refund_status: str
    occurred_at: str
    notify_id: str
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def paid(self) -> bool:
        return self.kind == "payment" and self.notify_type == "PAYMENT_RESULT" and self.result_status == "S"


def parse_notification(body: bytes) -> AntomNotification:
    """Parse a notification body that has been verified: strictly (JSON object, required fields, minor units)."""
    data = parse_json(body)
    notify_type = _text(data, "notifyType", required=False, limit=64)
    result = _result(data)
    fields = MappingProxyType(flatten(data))
    if notify_type in PAYMENT_NOTIFY_TYPES:
        money = _money(data, "paymentAmount")
        assert money is not None
        payment_id = _text(data, "paymentId")
        return AntomNotification(
            kind="payment",
            notify_type=notify_type,
            result_status=result.status,
            result_code=result.code,
            out_trade_no=_text(data, "paymentRequestId"),
            payment_id=payment_id,
            amount=money[0],
            currency=money[1],
            refund_request_id="",
            refund_id="",
            refund_status="",
            occurred_at=_text(data, "paymentTime", required=False, limit=64),
            notify_id=f"{notify_type}:{payment_id}:{result.status}",
            fields=fields,
        )
    # notifyRefund names notifyType REFUND_RESULT; one without a notifyType but with a refund is read as one too.
    if notify_type == REFUND_NOTIFY_TYPE or (not notify_type and "refundRequestId" in data):
        status = _status(data, "refundStatus", NOTIFIED_REFUND_STATUSES)
        money = _money(data, "refundAmount")
        assert money is not None
        refund_request_id = _text(data, "refundRequestId")
        return AntomNotification(
            kind="refund",
            notify_type=REFUND_NOTIFY_TYPE,
            result_status=result.status,
            result_code=result.code,
            # Not named by notifyRefund: the metadata we gave the refund request (refund_body) is its order's number.
            out_trade_no=_text(data, "paymentRequestId", required=False) or _text(data, "metadata", required=False),
            payment_id=_text(data, "paymentId", required=False),
            amount=money[0],
            currency=money[1],
            refund_request_id=refund_request_id,
            refund_id=_text(data, "refundId", required=False),
            refund_status=status,
            occurred_at=_text(data, "refundTime", required=False, limit=64),
            notify_id=f"{REFUND_NOTIFY_TYPE}:{refund_request_id}:{status}",
            fields=fields,
        )
    raise InvalidField(f"not a payment or refund notification (notifyType {notify_type[:32]!r})")


def verify_notification(
    headers: Mapping[str, str], body: bytes, *, path: str, client_id: str, keys: AlipayPublicKeys
) -> AntomNotification:
    """Verify a POSTed notification (signed for ``path``, the notify URL's path), then parse it strictly."""
    verify_message(headers, body, method="POST", path=path, client_id=client_id, keys=keys)
    return parse_notification(body)


# --- replies ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayReply:
    """``payments/pay``'s answer. Success for a cashier payment is ``U`` + ``PAYMENT_IN_PROCESS`` (``accepted``)."""

    result_status: str
    result_code: str
    message: str
    payment_id: str | None = None
    normal_url: str | None = None
    scheme_url: str | None = None
    applink_url: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)

    @property
    def accepted(self) -> bool:
        return self.result_status == "U" and self.result_code == "PAYMENT_IN_PROCESS"


@dataclass(frozen=True, slots=True)
class PaymentInquiry:
    """``payments/inquiryPayment``'s answer: ``found`` False when Antom has no such payment (``ORDER_NOT_EXIST``)."""

    result_status: str
    result_code: str
    message: str
    found: bool
    payment_status: str | None = None
    payment_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    payment_time: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CancelReply:
    """``payments/cancel``'s answer: ``cancelled`` on ``S``; else ``result_code`` says why (``found`` False: none)."""

    result_status: str
    result_code: str
    message: str
    cancelled: bool
    found: bool = True
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundReplyA:
    """``payments/refund``'s answer: ``S`` refunded, ``U`` not known yet, ``F`` refused (``result_code``)."""

    result_status: str
    result_code: str
    message: str
    refund_request_id: str | None = None
    refund_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    refund_time: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundInquiry:
    """``payments/inquiryRefund``'s answer: ``status`` SUCCESS / PROCESSING / FAIL once ``found``."""

    result_status: str
    result_code: str
    message: str
    found: bool
    status: str | None = None
    refund_id: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


def _verified_reply(
    headers: Mapping[str, str], body: bytes, *, path: str, client_id: str, keys: AlipayPublicKeys
) -> tuple[dict[str, Any], Result, Mapping[str, str]]:
    """Verify a reply's signature (``response-time``) over its raw bytes, then read it as a JSON object.

    Returns the object, its ``result`` and every leaf flattened (the reply's ``raw``).
    """
    verify_message(
        headers, body, method="POST", path=path, client_id=client_id, keys=keys, time_header=RESPONSE_TIME_HEADER
    )
    data = parse_json(body)
    return data, _result(data), MappingProxyType(flatten(data))


def _check_echo(data: Mapping[str, Any], key: str, expected: str | None) -> None:
    """A reply that names another request than ours (a replayed genuine reply) is never read as ours."""
    got = data.get(key)
    if expected is not None and got is not None and got != expected:
        raise OrderMismatch(key, expected, got)


def _succeeded(data: Mapping[str, Any], result: Result, echo_key: str, expected: str | None) -> bool:
    """Whether the call succeeded (``S``); a success is read only once it names our request (``_check_echo``)."""
    if result.status != "S":
        return False
    _check_echo(data, echo_key, expected)
    return True


def _found(result: Result, not_found_codes: frozenset[str]) -> bool:
    """False only for an ``F`` whose code says Antom has no such payment (or refund); any other answer is found."""
    return not (result.status == "F" and result.code in not_found_codes)


def _status(data: Mapping[str, Any], key: str, known: frozenset[str]) -> str:
    """A required status field, one of ``known``."""
    status = _text(data, key, limit=16)
    if status not in known:
        raise InvalidField(f"unknown {key} {status!r}")
    return status


def _optional_money(data: Mapping[str, Any], key: str) -> tuple[Decimal | None, str | None]:
    """The amount and currency of an Amount object that may be absent (then both None)."""
    return _money(data, key, required=False) or (None, None)


def _optional(data: Mapping[str, Any], key: str, limit: int = _URL_LENGTH * 4) -> str | None:
    return _text(data, key, required=False, limit=limit) or None


def read_pay(
    headers: Mapping[str, str],
    body: bytes,
    *,
    client_id: str,
    keys: AlipayPublicKeys,
    path: str = PAY_PATH,
    out_trade_no: str | None = None,
) -> PayReply:
    """Verify and read ``payments/pay``'s reply (``path``: the path the request was signed for)."""
    data, result, raw = _verified_reply(headers, body, path=path, client_id=client_id, keys=keys)
    # Whatever the status: a U (PAYMENT_IN_PROCESS) is pay's success, and an F must not be read as another's.
    _check_echo(data, "paymentRequestId", out_trade_no)
    return PayReply(
        result_status=result.status,
        result_code=result.code,
        message=result.message,
        payment_id=_optional(data, "paymentId", _MAX_ID_LENGTH),
        normal_url=_optional(data, "normalUrl"),
        scheme_url=_optional(data, "schemeUrl"),
        applink_url=_optional(data, "applinkUrl"),
        raw=raw,
    )


def read_inquiry_payment(
    headers: Mapping[str, str],
    body: bytes,
    *,
    client_id: str,
    keys: AlipayPublicKeys,
    path: str = INQUIRY_PAYMENT_PATH,
    out_trade_no: str | None = None,
) -> PaymentInquiry:
    """Verify and read ``payments/inquiryPayment``'s reply; ``paymentStatus`` is required on ``S``."""
    data, result, raw = _verified_reply(headers, body, path=path, client_id=client_id, keys=keys)
    if not _succeeded(data, result, "paymentRequestId", out_trade_no):
        return PaymentInquiry(
            result.status, result.code, result.message, found=_found(result, NOT_FOUND_CODES), raw=raw
        )
    status = _status(data, "paymentStatus", PAYMENT_STATUSES)
    amount, currency = _optional_money(data, "paymentAmount")
    return PaymentInquiry(
        result.status,
        result.code,
        result.message,
        found=True,
        payment_status=status,
        payment_id=_optional(data, "paymentId", _MAX_ID_LENGTH),
        amount=amount,
        currency=currency,
        payment_time=_optional(data, "paymentTime", 64),
        raw=raw,
    )


def read_cancel(
    headers: Mapping[str, str],
    body: bytes,
    *,
    client_id: str,
    keys: AlipayPublicKeys,
    path: str = CANCEL_PATH,
    out_trade_no: str | None = None,
) -> CancelReply:
    """Verify and read ``payments/cancel``'s reply."""
    data, result, raw = _verified_reply(headers, body, path=path, client_id=client_id, keys=keys)
    return CancelReply(
        result_status=result.status,
        result_code=result.code,
        message=result.message,
        cancelled=_succeeded(data, result, "paymentRequestId", out_trade_no),
        found=_found(result, NOT_FOUND_CODES),
        raw=raw,
    )


def read_refund(
    headers: Mapping[str, str],
    body: bytes,
    *,
    client_id: str,
    keys: AlipayPublicKeys,
    path: str = REFUND_PATH,
    out_request_no: str | None = None,
) -> RefundReplyA:
    """Verify and read ``payments/refund``'s reply."""
    data, result, raw = _verified_reply(headers, body, path=path, client_id=client_id, keys=keys)
    amount, currency = None, None
    if _succeeded(data, result, "refundRequestId", out_request_no):
        amount, currency = _optional_money(data, "refundAmount")
    return RefundReplyA(
        result_status=result.status,
        result_code=result.code,
        message=result.message,
        refund_request_id=_optional(data, "refundRequestId", _MAX_ID_LENGTH),
        refund_id=_optional(data, "refundId", _MAX_ID_LENGTH),
        amount=amount,
        currency=currency,
        refund_time=_optional(data, "refundTime", 64),
        raw=raw,
    )


def read_inquiry_refund(
    headers: Mapping[str, str],
    body: bytes,
    *,
    client_id: str,
    keys: AlipayPublicKeys,
    path: str = INQUIRY_REFUND_PATH,
    out_request_no: str | None = None,
) -> RefundInquiry:
    """Verify and read ``payments/inquiryRefund``'s reply; ``refundStatus`` is required on ``S``."""
    data, result, raw = _verified_reply(headers, body, path=path, client_id=client_id, keys=keys)
    if not _succeeded(data, result, "refundRequestId", out_request_no):
        return RefundInquiry(
            result.status, result.code, result.message, found=_found(result, REFUND_NOT_FOUND_CODES), raw=raw
        )
    status = _status(data, "refundStatus", REFUND_STATUSES)
    amount, currency = _optional_money(data, "refundAmount")
    return RefundInquiry(
        result.status,
        result.code,
        result.message,
        found=True,
        status=status,
        refund_id=_optional(data, "refundId", _MAX_ID_LENGTH),
        amount=amount,
        currency=currency,
        raw=raw,
    )
