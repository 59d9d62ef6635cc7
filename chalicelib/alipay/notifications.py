"""Verification of Alipay's asynchronous notifications (both protocols) from the raw POSTed bytes."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, NamedTuple

from . import params as p
from .errors import (
    CharsetError,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    OrderError,
    OrderMismatch,
    SignatureMismatch,
    SignTypeMismatch,
)
from .forms import joined_content, parse_form_text_and_bytes, signed_content
from .records import LazyRecord
from .signing import AlipayPublicKeys, SignType, decode_signature, verify_signature

if TYPE_CHECKING:
    from decimal import Decimal  # imported by params.parse_amount on first use: ~0.8 ms off every cold start


class AlipayProtocol(StrEnum):
    """The wire protocols: Open Platform (``app_id``), legacy Global MAPI (``partner``) and Antom (``client-id``).

    Antom's JSON messages are read by ``chalicelib.alipay.antom``; the form tables below are the other two's.
    """

    OPENAPI = "openapi"
    MAPI = "mapi"
    ANTOM = "antom"


TRADE_STATUSES = frozenset({"WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"})
# Notifications exclude both sign and sign_type from the signed content (requests include sign_type).
NOTIFICATION_UNSIGNED = ("sign", "sign_type")
# Open Platform: the default charset when none was sent is GBK. Legacy: the request's _input_charset.
DEFAULT_CHARSET = {AlipayProtocol.OPENAPI: "gbk", AlipayProtocol.MAPI: "utf-8"}
# The field naming the amount, and the one declaring the charset, of each protocol's signed forms.
AMOUNT_FIELD = {AlipayProtocol.OPENAPI: "total_amount", AlipayProtocol.MAPI: "total_fee"}
CHARSET_FIELD = {AlipayProtocol.OPENAPI: "charset", AlipayProtocol.MAPI: "_input_charset"}


# A record typed as a NamedTuple for mypy, a collections.namedtuple at run time defined on first use (records.py):
# typing.NamedTuple would compile() each (PEP 563 string) annotation, and a process's first compile() builds every
# AST type (~0.7 ms).
if TYPE_CHECKING:

    class Notification(NamedTuple):
        """A verified notification: the fields the product acts on, typed, and every raw field kept."""

        protocol: AlipayProtocol
        notify_id: str
        notify_type: str
        notify_time: str
        trade_status: str
        out_trade_no: str
        trade_no: str
        total_amount: Decimal
        currency: str | None
        refund_fee: Decimal | None
        app_id: str | None
        seller_id: str | None
        charset: str
        fields: Mapping[str, str]

else:
    Notification = LazyRecord(
        "Notification",
        "protocol notify_id notify_type notify_time trade_status out_trade_no trade_no total_amount currency "
        "refund_fee app_id seller_id charset fields",
        __name__,
    )


def _amount(value: str, key: str, minimum: Decimal | None = None) -> Decimal:
    try:
        return p.parse_amount(value, key, minimum=minimum)
    except OrderError as exc:
        raise InvalidField(str(exc)) from exc


def _required(fields: Mapping[str, str], key: str) -> str:
    value = fields.get(key, "")
    if not value:
        raise InvalidField(f"missing {key}")
    return value


def notification_content(fields: Mapping[str, str]) -> str:
    """The content Alipay signs: drop ``sign`` and ``sign_type`` and empty values, sort, ``k=v`` with ``&``."""
    return signed_content(fields, NOTIFICATION_UNSIGNED)


def _blank_readings(fields: Mapping[str, str]) -> list[dict[str, str]]:
    """Other readings of the content when values are empty or whitespace-only: the fields each covers."""
    unsigned = {k: v for k, v in fields.items() if k not in NOTIFICATION_UNSIGNED}
    if all(v.strip() for v in unsigned.values()):
        return []
    # Alipay's signing drops empty values (its Java StringUtils counts whitespace-only as empty too), while
    # its SDKs' verifiers keep them as "k=". Such fields are not supposed to be sent; if one is, accept a
    # signature over either form rather than reject a genuine notification on every retry.
    return [unsigned, {k: v for k, v in unsigned.items() if v.strip()}]


def _verify_covered(
    covered: dict[str, str], codec: str, keys: AlipayPublicKeys, signature: bytes, sign_type: SignType
) -> None:
    try:
        content = joined_content(covered).encode(codec)
    except UnicodeEncodeError as exc:
        raise CharsetError(f"content does not encode in {codec}") from exc
    verify_signature(keys, content, signature, sign_type)


def _verified_fields(
    fields: dict[str, str], codec: str, keys: AlipayPublicKeys, signature: bytes, sign_type: SignType
) -> dict[str, str]:
    """The fields the signature covers (plus sign and sign_type): nothing unsigned is handed on.

    ``fields`` is the caller's own dict: sign and sign_type are taken out of it, and when no value is empty (nearly
    always) the signature covers the rest, which is handed back with them, without a copy.
    """
    unsigned = {key: fields.pop(key) for key in NOTIFICATION_UNSIGNED if key in fields}
    covered = fields if "" not in fields.values() else {k: v for k, v in fields.items() if v}
    try:
        _verify_covered(covered, codec, keys, signature, sign_type)
    except SignatureMismatch:
        alternatives = _blank_readings(fields)
        if not alternatives:
            raise
        for index, reading in enumerate(alternatives, start=1):
            try:
                _verify_covered(reading, codec, keys, signature, sign_type)
            except SignatureMismatch:
                if index == len(alternatives):
                    raise
                continue
            covered = reading
            break
    covered.update(unsigned)
    return covered


def verify_notification(
    body: bytes,
    *,
    protocol: AlipayProtocol,
    keys: AlipayPublicKeys,
    sign_type: SignType,
    default_charset: str | None = None,
) -> Notification:
    """Verify a notification exactly as it arrived; raise a ``VerificationError`` naming the failed check.

    The algorithm is the merchant's configured ``sign_type``; the request's own ``sign_type`` can only
    agree with it (a downgrade to ``RSA`` or ``MD5`` is rejected, never followed).
    """
    if type(protocol) is not AlipayProtocol:  # the enum's call costs more than the rest of this function
        protocol = AlipayProtocol(protocol)
    signed, codec = verify_signed_form(
        body, protocol=protocol, keys=keys, sign_type=sign_type, default_charset=default_charset, what="notification"
    )
    return _typed(protocol, signed, codec)


def verify_signed_form(
    body: bytes,
    *,
    protocol: AlipayProtocol,
    keys: AlipayPublicKeys,
    sign_type: SignType,
    default_charset: str | None = None,
    what: str = "message",
) -> tuple[dict[str, str], str]:
    """Verify form-encoded fields Alipay signed (a notification, a return page's query); ``(fields, codec)``.

    The fields handed on are only those the signature covers (plus ``sign`` and ``sign_type``). Same rules as a
    notification: the charset field declared (else the protocol's default), the merchant's sign type only.
    """
    fields, codec, form = parse_form_text_and_bytes(
        body, CHARSET_FIELD[protocol], default_charset or DEFAULT_CHARSET[protocol]
    )
    declared = fields.get("sign_type")
    if declared is not None and declared != sign_type:  # a StrEnum: compared as its text, without .value's lookup
        raise SignTypeMismatch(f"sign_type {declared!r} but the merchant uses {sign_type.value}")
    sign = fields.get("sign")
    if not sign:
        raise MissingSignature(f"{what} carries no sign")
    signature = decode_signature(sign)
    signed = _verified_fields(fields, codec, keys, signature, sign_type)
    # Alipay joins k=v with '&' unescaped, so a value holding "&name=" could be re-split into other fields
    # under the very same signature (a subject chosen at order creation could forge a status). No genuine
    # notification of ours carries one: orders refuse such text (params.check_text).
    # Only a value holding '&' (decoded from %26: a raw '&' separates fields) can: one byte search over the whole
    # decoded form first (a memchr, cheaper than joining the texts or searching the body for "%26").
    if b"&" in form:
        for key, value in signed.items():
            if "&" in value and p.injected_field().search(value):
                raise MalformedMessage(f"field {key!r} holds '&name=': the signed content would be ambiguous")
    return signed, codec


def _typed(protocol: AlipayProtocol, fields: dict[str, str], codec: str) -> Notification:
    status = _required(fields, "trade_status")
    if status not in TRADE_STATUSES:
        raise InvalidField(f"unknown trade_status {status[:32]!r}")
    amount_field = AMOUNT_FIELD[protocol]
    get = fields.get
    refund_fee = get("refund_fee")
    # Positional, in the record's field order (named in each comment): half the cost of keywords on every request.
    return Notification(
        protocol,  # protocol
        _required(fields, "notify_id"),  # notify_id
        get("notify_type", ""),  # notify_type
        get("notify_time", ""),  # notify_time
        status,  # trade_status
        _required(fields, "out_trade_no"),  # out_trade_no
        get("trade_no", ""),  # trade_no
        _amount(_required(fields, amount_field), amount_field),  # total_amount
        get("currency") or None,  # currency
        # refund_fee is sent as 0.00 on payments without refunds.
        _amount(refund_fee, "refund_fee", p.ZERO) if refund_fee else None,  # refund_fee
        get("app_id") or None,  # app_id
        get("seller_id") or None,  # seller_id
        codec,  # charset
        MappingProxyType(fields),  # fields
    )


def check_addressee(
    notification: Notification,
    *,
    app_id: str | None = None,
    seller_id: str | None = None,
    partner: str | None = None,
) -> None:
    """Reject a correctly signed notification addressed to another merchant (app, seller or partner).

    Open Platform notifications always name the app and the seller, so a missing one is a mismatch. Genuine legacy
    cross-border notifications carry neither ``seller_id`` nor ``partner`` (docs/protocols.md §2.2): there only a
    field that is present is compared, and ``notify_verify`` with our partner id binds the notification to us.
    """
    openapi = notification.protocol is AlipayProtocol.OPENAPI
    if openapi and app_id and notification.app_id != app_id:
        raise OrderMismatch("app_id", app_id, notification.app_id)
    if seller_id and (openapi or notification.seller_id is not None) and notification.seller_id != seller_id:
        raise OrderMismatch("seller_id", seller_id, notification.seller_id)
    if partner and notification.fields.get("partner", partner) != partner:
        raise OrderMismatch("partner", partner, notification.fields.get("partner"))
