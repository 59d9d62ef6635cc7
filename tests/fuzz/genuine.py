"""Genuine messages, signed with Alipay's (test) key over content built by the oracle, not by the code under test.

Each is signed once per process; the fuzz targets mutate them and ask the oracle whether what is left must
still be accepted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from urllib.parse import quote_plus

from chalicelib.alipay.signing import SignType, b64encode
from tests.alipay_fixtures import (
    APP_ID,
    OUT_TRADE_NO,
    PARTNER,
    SELLER_ID,
    TRADE_NO,
    app_pay_response,
    mapi_notification_fields,
    openapi_notification_fields,
)
from tests.fuzz import oracle
from tests.fuzz.harness import alipay_sign

APP_PAY_RESPONSE = "alipay_trade_app_pay_response"


@dataclass(frozen=True)
class GenuineNotification:
    """A signed notification: its fields in wire order (``sign_type`` and ``sign`` last) and how it was sent."""

    name: str
    protocol: str
    pairs: tuple[tuple[str, str], ...]
    codec: str
    content_type: str
    genuine: oracle.Genuine

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.pairs)

    def body(self) -> bytes:
        return encode_pairs(self.pairs, self.codec)


def encode_pairs(pairs: tuple[tuple[str, str], ...] | list[tuple[str, str]], codec: str) -> bytes:
    """What Alipay puts on the wire: ``k=quote_plus(v)`` in ``codec``, joined by ``&``."""
    return "&".join(f"{k}={quote_plus(v, safe='', encoding=codec)}" for k, v in pairs).encode("ascii")


def _signed(
    name: str, protocol: str, fields: dict[str, str], codec: str, *, header_charset: str = "", drop_blank: bool = False
) -> GenuineNotification:
    sign_type = SignType.RSA2 if protocol == "openapi" else SignType.RSA
    # Alipay drops empty values from what it signs (and, its Java StringUtils being what it is, blank ones).
    content = oracle.canonical(fields, drop_blank=drop_blank).encode(codec)
    signature = alipay_sign(content, sign_type)
    pairs = (*fields.items(), ("sign_type", sign_type.value), ("sign", b64encode(signature)))
    content_type = "application/x-www-form-urlencoded" + (f"; charset={header_charset}" if header_charset else "")
    return GenuineNotification(name, protocol, pairs, codec, content_type, oracle.Genuine(content, signature))


@cache
def genuine_notifications(protocol: str) -> tuple[GenuineNotification, ...]:
    """A few real-looking notifications of each protocol: charsets, Chinese text, empty and blank fields, and
    one subject holding ``&k=`` (which is what the re-split finding needs)."""
    if protocol == "openapi":
        return (
            _signed("openapi-utf8", protocol, openapi_notification_fields(), "utf-8", header_charset="utf-8"),
            _signed(
                "openapi-gbk-chinese",
                protocol,
                openapi_notification_fields(charset="gbk", subject="咖啡豆 一公斤", body="深烘"),
                "gbk",
            ),
            _signed(
                "openapi-no-charset-closed-refund",
                protocol,
                openapi_notification_fields(charset=None, trade_status="TRADE_CLOSED", refund_fee="88.88"),
                "gbk",
            ),
            _signed(
                "openapi-empty-and-blank-values",
                protocol,
                openapi_notification_fields(body="", passback_params=" "),
                "utf-8",
                drop_blank=True,
            ),
            _signed(
                "openapi-subject-with-ampersand",
                protocol,
                openapi_notification_fields(subject="Tea & cakes&t=1", trade_status="TRADE_CLOSED"),
                "utf-8",
            ),
        )
    # The field set of genuine cross-border notifications: no seller_id, partner, subject or dates.
    cross_border = mapi_notification_fields(subject=None, seller_id=None, buyer_id=None, gmt_create=None,
                                            gmt_payment=None)  # fmt: skip
    return (
        _signed("mapi-cross-border-field-set", protocol, cross_border, "utf-8"),
        _signed("mapi-utf8-chinese", protocol, mapi_notification_fields(subject="咖啡豆"), "utf-8"),
        _signed(
            "mapi-gbk-declared",
            protocol,
            mapi_notification_fields(_input_charset="gbk", subject="绿茶", currency="HKD"),
            "gbk",
        ),
        _signed(
            "mapi-header-charset-gbk",
            protocol,
            mapi_notification_fields(subject="乌龙茶"),
            "gbk",
            header_charset="gbk",
        ),
    )


@dataclass(frozen=True)
class GenuineResult:
    """A client result as the SDK hands it over, and what Alipay signed in it."""

    name: str
    text: str
    genuine: oracle.Genuine


@cache
def genuine_app_pay_results() -> tuple[GenuineResult, ...]:
    """Alipay's JSON result for an app payment: compact, and with whitespace and Chinese inside the member."""
    compact = json.dumps(app_pay_response(), ensure_ascii=False, separators=(",", ":"))
    spaced = json.dumps(app_pay_response(msg="成功 {ok}"), ensure_ascii=False, indent=1)
    out = []
    for name, content, layout in (
        ("compact", compact, '{{"{name}":{content},"sign":"{sign}","sign_type":"RSA2"}}'),
        ("spaced", spaced, '{{ "sign": "{sign}",\n  "{name}" : {content} }}'),
    ):
        signature = alipay_sign(content.encode("utf-8"), SignType.RSA2)
        text = layout.format(name=APP_PAY_RESPONSE, content=content, sign=b64encode(signature))
        out.append(GenuineResult(name, text, oracle.Genuine(content.encode("utf-8"), signature)))
    return tuple(out)


@cache
def genuine_securitypay_results() -> tuple[GenuineResult, ...]:
    """The legacy result: the merchant's order string (sans sign), ``&success="true"``, then Alipay's sign."""
    pairs = [
        ("_input_charset", "utf-8"),
        ("body", "Coffee"),
        ("currency", "USD"),
        ("forex_biz", "FP"),
        ("notify_url", "https://pay.example.com/alipay/notify"),
        ("out_trade_no", OUT_TRADE_NO),
        ("partner", PARTNER),
        ("payment_type", "1"),
        ("product_code", "NEW_WAP_OVERSEAS_SELLER"),
        ("seller_id", PARTNER),
        ("service", "mobile.securitypay.pay"),
        ("subject", "咖啡豆"),
        ("total_fee", "88.88"),
    ]
    content = "&".join(f'{k}="{v}"' for k, v in pairs) + '&success="true"'
    signature = alipay_sign(content.encode("utf-8"), SignType.RSA)
    sign = b64encode(signature)
    return (
        GenuineResult("plain", f'{content}&sign_type="RSA"&sign="{sign}"', oracle.Genuine(content.encode(), signature)),
        GenuineResult(
            "url-encoded-sign",
            f'{content}&sign_type="RSA"&sign="{quote_plus(sign, safe="")}"',
            oracle.Genuine(content.encode(), signature),
        ),
    )


# --- web returns (GET /alipay/return) ------------------------------------------------------------------------

# The orders a return may name, as the return target's kit holds them: (amount, currency, status before the return,
# what Alipay's trade query answers). Only the active query may move one (PAID_AT_ALIPAY, to TRADE_SUCCESS).
WAITING = OUT_TRADE_NO  # waiting; Alipay knows no trade yet (the return arrived first)
PAID_AT_ALIPAY = "ORDER-WEB-PAID-0002"  # waiting here; Alipay's query says TRADE_SUCCESS
CLOSED = "ORDER-WEB-CLOSED-0003"  # closed here (unpaid timeout) before the return arrives
RETURN_ORDERS = {
    WAITING: ("88.88", "USD", "WAIT_BUYER_PAY", None),
    PAID_AT_ALIPAY: ("12.34", "USD", "WAIT_BUYER_PAY", "TRADE_SUCCESS"),
    CLOSED: ("0.01", "HKD", "TRADE_CLOSED", "TRADE_CLOSED"),
}
OTHER_APP_ID = "2021000000009999"
OTHER_PARTNER = "2088000000009999"


@dataclass(frozen=True)
class GenuineReturn:
    """A query Alipay appended to ``return_url``: its fields in wire order (``sign_type`` and ``sign`` last), and
    whether it is for this merchant's order as held (``foreign``: genuinely signed, yet for another order, merchant
    or amount, so it must get the error page all the same)."""

    name: str
    protocol: str
    pairs: tuple[tuple[str, str], ...]
    codec: str
    genuine: oracle.Genuine
    foreign: bool = False

    @property
    def fields(self) -> dict[str, str]:
        return dict(self.pairs)

    def query(self) -> str:
        return encode_pairs(self.pairs, self.codec).decode("ascii")


def signed_return(
    name: str, protocol: str, fields: dict[str, str], *, codec: str = "utf-8", foreign: bool = False
) -> GenuineReturn:
    """Signed as the sandbox's cashier signs a return: empty fields dropped, content by the oracle, Alipay's key."""
    signed = _signed(name, protocol, {k: v for k, v in fields.items() if v}, codec)
    return GenuineReturn(name, protocol, signed.pairs, codec, signed.genuine, foreign)


def openapi_return_fields(out_trade_no: str = WAITING, **overrides: str) -> dict[str, str]:
    """The fields of an Open Platform page/wap pay return, in the sandbox cashier's order."""
    amount = RETURN_ORDERS.get(out_trade_no, ("88.88",))[0]
    fields = {
        "charset": "utf-8",
        "out_trade_no": out_trade_no,
        "method": "alipay.trade.page.pay.return",
        "total_amount": amount,
        "trade_no": TRADE_NO,
        "auth_app_id": APP_ID,
        "version": "1.0",
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "timestamp": "2026-11-27 00:31:00",
    }
    return {**fields, **overrides}


def mapi_return_fields(out_trade_no: str = WAITING, **overrides: str) -> dict[str, str]:
    """The fields of a legacy ``create_forex_trade`` return, as genuine ones come (no is_success, no notify_id)."""
    amount, currency = RETURN_ORDERS.get(out_trade_no, ("88.88", "USD"))[:2]
    fields = {
        "out_trade_no": out_trade_no,
        "total_fee": amount,
        "trade_status": "TRADE_FINISHED",
        "trade_no": TRADE_NO,
        "currency": currency,
    }
    return {**fields, **overrides}


@cache
def genuine_returns(protocol: str) -> tuple[GenuineReturn, ...]:
    """Returns signed with Alipay's (test) key: for each order held (some claiming a status the server does not
    hold), and foreign ones (another order, merchant, amount or currency) that must be refused all the same."""
    if protocol == "openapi":
        f = openapi_return_fields
        return (
            signed_return("openapi-page-waiting", protocol, f()),
            signed_return("openapi-wap-paid-at-alipay", protocol,
                          f(PAID_AT_ALIPAY, method="alipay.trade.wap.pay.return")),
            signed_return("openapi-closed-claims-success", protocol, f(CLOSED, trade_status="TRADE_SUCCESS")),
            signed_return("openapi-no-charset-claims-finished", protocol,
                          f(charset="", trade_status="TRADE_FINISHED"), codec="gbk"),
            signed_return("openapi-foreign-order", protocol, f("ORDER-ELSEWHERE-0009"), foreign=True),
            signed_return("openapi-foreign-app", protocol, f(app_id=OTHER_APP_ID, auth_app_id=OTHER_APP_ID),
                          foreign=True),
            signed_return("openapi-foreign-seller", protocol, f(seller_id=OTHER_PARTNER), foreign=True),
            signed_return("openapi-foreign-amount", protocol, f(total_amount="0.01"), foreign=True),
            signed_return("openapi-app-pay-not-a-return", protocol, f(method="alipay.trade.app.pay"), foreign=True),
        )  # fmt: skip
    f = mapi_return_fields
    return (
        signed_return("mapi-waiting-claims-finished", protocol, f()),
        signed_return("mapi-paid-at-alipay-claims-success", protocol, f(PAID_AT_ALIPAY, trade_status="TRADE_SUCCESS")),
        signed_return("mapi-closed-claims-finished", protocol, f(CLOSED)),
        signed_return("mapi-gbk-declared", protocol, f(_input_charset="gbk"), codec="gbk"),
        signed_return("mapi-foreign-order", protocol, f("ORDER-ELSEWHERE-0009"), foreign=True),
        signed_return("mapi-foreign-seller", protocol, f(seller_id=OTHER_PARTNER), foreign=True),
        signed_return("mapi-foreign-partner", protocol, f(partner=OTHER_PARTNER), foreign=True),
        signed_return("mapi-foreign-currency", protocol, f(currency="HKD"), foreign=True),
        signed_return("mapi-foreign-amount", protocol, f(total_fee="0.01"), foreign=True),
        signed_return("mapi-says-is-success-t", protocol, f(is_success="T")),
        signed_return("mapi-not-successful", protocol, f(is_success="F"), foreign=True),
    )


# --- Antom notifications ----------------------------------------------------------------------------------------

ANTOM_NOTIFY_PATH = "/prod/antom/notify"  # the path of NOTIFY_URL in the Antom kit (tests/unit/services_kit.py)
ANTOM_PAYMENT_ID = "2026112611401080010018800000001A"


@dataclass(frozen=True)
class GenuineAntom:
    """An Antom notification as Antom sends it: its raw body, its headers in wire order, and what Antom signed."""

    name: str
    body: bytes
    headers: tuple[tuple[str, str], ...]
    content_type: str
    genuine: oracle.Genuine


def antom_payment(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "notifyType": "PAYMENT_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentRequestId": OUT_TRADE_NO,
        "paymentId": ANTOM_PAYMENT_ID,
        "paymentAmount": {"currency": "USD", "value": "8888"},
        "paymentCreateTime": "2026-11-27T00:20:00+08:00",
        "paymentTime": "2026-11-27T00:30:05+08:00",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def antom_refund(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "notifyType": "REFUND_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "refundStatus": "SUCCESS",
        "refundRequestId": "r-1",
        "refundId": "2026112611401080010018800000001R",
        "refundAmount": {"currency": "USD", "value": "1000"},
        "refundTime": "2026-11-27T00:40:00+08:00",
        "metadata": OUT_TRADE_NO,
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def antom_signed(
    name: str,
    client_id: str,
    data: dict[str, object],
    *,
    time: str = "1795710605000",
    names: tuple[str, str, str] = ("client-id", "request-time", "signature"),
    spacing: tuple[str, str] = (",", ":"),
    content_type: str = "application/json; charset=UTF-8",
) -> GenuineAntom:
    """Signed as docs/protocols.md §7.1 says, over content the oracle's rule builds (not the product's code)."""
    body = json.dumps(data, separators=spacing, ensure_ascii=False).encode("utf-8")
    content = f"POST {ANTOM_NOTIFY_PATH}\n{client_id}.{time}.".encode() + body
    signature = alipay_sign(content, SignType.RSA2)
    encoded = quote_plus(b64encode(signature), safe="")
    header = f"algorithm=RSA256,keyVersion=1,signature={encoded}"
    headers = ((names[0], client_id), (names[1], time), (names[2], header))
    return GenuineAntom(name, body, headers, content_type, oracle.Genuine(content, signature))


@cache
def genuine_antom_notifications(client_id: str) -> tuple[GenuineAntom, ...]:
    """Notifications Antom could send the Antom kit: payments (result, failure, pending), refunds (with and without
    our metadata, without a notifyType), Chinese text, the Java SDK's header names and an ISO 8601 time, spaced
    JSON; and two it signed that are not readable (an unknown notifyType, an amount that is not minor units)."""
    return (
        antom_signed("antom-paid", client_id, antom_payment()),
        antom_signed("antom-failed", client_id, antom_payment(result={
            "resultCode": "PAYMENT_FAILED", "resultStatus": "F", "resultMessage": "失败"})),
        antom_signed("antom-pending", client_id, antom_payment(notifyType="PAYMENT_PENDING", paymentTime=None, result={
            "resultCode": "PAYMENT_IN_PROCESS", "resultStatus": "U", "resultMessage": "payment in process"})),
        antom_signed("antom-java-headers-iso-time", client_id, antom_payment(), time="2026-11-27T00:30:05+08:00",
                     names=("Client-Id", "Request-Time", "Signature")),
        antom_signed("antom-spaced-json", client_id, antom_payment(memo="咖啡豆 一公斤", extra=[1, True, None]),
                     spacing=(", ", ": "), content_type="application/json"),
        antom_signed("antom-refund", client_id, antom_refund()),
        antom_signed("antom-refund-failed-no-type-no-metadata", client_id, antom_refund(
            notifyType=None, metadata=None, refundStatus="FAIL",
            result={"resultCode": "REFUND_FAILED", "resultStatus": "F", "resultMessage": "failed"})),
        antom_signed("antom-unknown-type", client_id, antom_payment(notifyType="DISPUTE_NOTIFY")),
        antom_signed("antom-major-units", client_id,
                     antom_payment(paymentAmount={"currency": "USD", "value": "88.88"})),
    )  # fmt: skip
