"""Web checkout, both protocols: the signed request that sends a shopper's browser to Alipay, and the signed return.

Open Platform: ``alipay.trade.page.pay`` (desktop, ``FAST_INSTANT_TRADE_PAY``) and ``alipay.trade.wap.pay`` (mobile
browser, ``QUICK_WAP_WAY``) are signed exactly like ``alipay.trade.app.pay`` (``openapi.signed_pay_request``), with
``return_url`` among the common parameters. Legacy Alipay Global: ``create_forex_trade`` (desktop) and
``create_forex_trade_wap`` (mobile) are signed like the legacy gateway APIs: every non-empty parameter but ``sign``
and ``sign_type``, sorted, ``k=v`` unquoted, SHA1withRSA (``sign_type=RSA``).

Either becomes a ``payment_url`` (GET) or an equivalent auto-submitting HTML form (POST) to the gateway.

When the shopper has paid, Alipay redirects the browser to ``return_url`` with a signed query string. It is
verified like a notification (``notifications.verify_signed_form``): drop ``sign`` and ``sign_type``, sort, ``k=v``,
the merchant's sign type only. A verified return still only says where to look: the order is marked paid by the
notification or an active query, never by the return.

Sources for the legacy web services: Alipay Global's ``create_forex_trade`` reference (service address, ``partner``,
``_input_charset``, ``sign_type``, ``notify_url``, ``return_url`` (URL(200)), ``subject`` (256), ``body`` (400),
``out_trade_no`` (64), ``currency``, ``total_fee`` / ``rmb_fee``), Alipay Global's help centre on ``timeout_rule``
(the values below; only ``12h`` unless Alipay enables the others for the merchant), public SDK samples
(``product_code=NEW_OVERSEAS_SELLER`` for ``create_forex_trade``; ``create_forex_trade_wap`` as the mobile service
with the same parameters).

UNCONFIRMED (no authoritative text found; what is assumed here):

- ``product_code`` of ``create_forex_trade_wap``: ``NEW_WAP_OVERSEAS_SELLER`` (the code of the mobile legacy
  products, as ``mobile.securitypay.pay`` uses it).
- That ``create_forex_trade_wap`` takes exactly ``create_forex_trade``'s parameters.
- The legacy return's signature: over every field but ``sign`` and ``sign_type``, sorted, unquoted ``k=v``, with the
  request's sign type (SHA1withRSA here). Its fields are known from returns recorded in public integrations:
  ``out_trade_no``, ``total_fee`` (or ``rmb_fee``), ``trade_status``, ``trade_no``, ``currency``, ``sign_type``,
  ``sign``; no ``is_success`` and no ``notify_id`` (an ``is_success`` that is sent must be ``T``).
- Whether Alipay takes the legacy request as a GET query and as a POST form alike (both are built; the local sandbox
  accepts both).
- ``timeout_rule`` is the order's timeout, one of the documented values. Alipay's help centre says a value other
  than ``12h`` needs Alipay to enable it for the merchant (else ``INVALID_PARAMETER``): the legacy flavour
  (``services/protocols.py``) sends only the values the merchant configured as enabled (``FOREX_TIMEOUT_RULES``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from . import params as p
from .errors import CharsetError, InvalidField, NotSuccessful, OrderError, OrderMismatch
from .forms import codec_for, form_quote, signed_content
from .notifications import (
    AMOUNT_FIELD,
    CHARSET_FIELD,
    DEFAULT_CHARSET,
    TRADE_STATUSES,
    AlipayProtocol,
    verify_signed_form,
)
from .openapi import pay_biz_content, signed_pay_request
from .signing import AlipayPublicKeys, Signer, SignType, b64encode

if TYPE_CHECKING:
    from datetime import datetime


class WebChannel(StrEnum):
    """Where the shopper pays: a desktop browser (``page``) or a mobile one (``wap``)."""

    PAGE = "page"
    WAP = "wap"


PAGE_PAY_METHOD = "alipay.trade.page.pay"
WAP_PAY_METHOD = "alipay.trade.wap.pay"
OPENAPI_METHODS = {WebChannel.PAGE: PAGE_PAY_METHOD, WebChannel.WAP: WAP_PAY_METHOD}
OPENAPI_PRODUCT_CODES = {WebChannel.PAGE: "FAST_INSTANT_TRADE_PAY", WebChannel.WAP: "QUICK_WAP_WAY"}
# The ``method`` of the query Alipay appends to return_url.
RETURN_METHODS = frozenset(f"{method}.return" for method in OPENAPI_METHODS.values())

FOREX_TRADE_SERVICE = "create_forex_trade"
FOREX_TRADE_WAP_SERVICE = "create_forex_trade_wap"
FOREX_SERVICES = {WebChannel.PAGE: FOREX_TRADE_SERVICE, WebChannel.WAP: FOREX_TRADE_WAP_SERVICE}
FOREX_PRODUCT_CODES = {WebChannel.PAGE: "NEW_OVERSEAS_SELLER", WebChannel.WAP: "NEW_WAP_OVERSEAS_SELLER"}
# Alipay Global's help centre lists these; only 12h works unless Alipay enables the others for the merchant.
FOREX_TIMEOUT_RULES = ("5m", "10m", "15m", "30m", "1h", "2h", "3h", "5h", "10h", "12h", "1d", "3d", "7d", "15d")
FOREX_URL_MAX_LENGTH = 200  # notify_url and return_url are URL(200) in create_forex_trade's reference
LEGACY_SUCCESS = "T"

# The page/wap biz_content starts with these keys, in this order (python-alipay-sdk's order: the key order means
# nothing to Alipay, which verifies the text as sent, and it lets the two outputs be compared byte for byte).
_WEB_BIZ_LEAD = ("subject", "out_trade_no", "total_amount", "product_code")
_LEGACY_UNSIGNED = ("sign", "sign_type")


@dataclass(frozen=True, slots=True)
class WebPayment:
    """A signed web-payment request: every parameter sent (``sign`` included) and where it goes."""

    gateway_url: str
    params: tuple[tuple[str, str], ...]
    charset: str = "utf-8"

    @property
    def query(self) -> str:
        """``k=urlencode(v)`` joined with ``&`` (spaces as ``+``), in the order of ``params``."""
        codec = codec_for(self.charset)
        return "&".join(f"{k}={form_quote(v, codec)}" for k, v in self.params)

    @property
    def payment_url(self) -> str:
        """The GET form of the request: the gateway URL, then the signed query."""
        separator = "&" if "?" in self.gateway_url else "?"
        return f"{self.gateway_url}{separator}{self.query}"

    def form_html(self) -> str:
        """The POST form of the request: an HTML page whose form submits itself (a button without JavaScript)."""
        from html import escape

        inputs = "\n".join(
            f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">' for k, v in self.params
        )
        return (
            "<!DOCTYPE html>\n"
            f'<html><head><meta charset="{escape(self.charset)}"><title>Alipay</title></head><body>\n'
            f'<form id="alipay-submit" name="alipaysubmit" method="post" action="{escape(self.gateway_url)}" '
            f'accept-charset="{escape(self.charset)}">\n'
            f"{inputs}\n"
            '<noscript><button type="submit">Continue to Alipay</button></noscript>\n'
            "</form>\n"
            '<script>document.getElementById("alipay-submit").submit();</script>\n'
            "</body></html>\n"
        )


# --- Open Platform: alipay.trade.page.pay / alipay.trade.wap.pay ---------------------------------------------------


def web_pay_biz_content(
    channel: WebChannel,
    *,
    out_trade_no: str,
    subject: str,
    total_amount: str | Decimal,
    body: str | None = None,
    timeout_express: str | None = None,
    passback_params: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validated ``biz_content`` of page or wap pay: app pay's fields and rules, the channel's ``product_code``."""
    biz = pay_biz_content(
        OPENAPI_PRODUCT_CODES[WebChannel(channel)],
        out_trade_no=out_trade_no,
        subject=subject,
        total_amount=total_amount,
        body=body,
        timeout_express=timeout_express,
        passback_params=passback_params,
        extra=extra,
    )
    lead = {key: biz.pop(key) for key in _WEB_BIZ_LEAD}
    return {**lead, **biz}


def build_openapi_web_payment(
    signer: Signer,
    channel: WebChannel,
    *,
    gateway_url: str,
    app_id: str,
    notify_url: str,
    return_url: str,
    now: datetime,
    out_trade_no: str,
    subject: str,
    total_amount: str | Decimal,
    body: str | None = None,
    timeout_express: str | None = None,
    extra_biz: Mapping[str, Any] | None = None,
    app_cert_sn: str | None = None,
    alipay_root_cert_sn: str | None = None,
) -> WebPayment:
    """``alipay.trade.page.pay`` / ``alipay.trade.wap.pay``: signed like app pay, sent sorted with ``sign`` last.

    No ``format``: it names the format of a JSON reply, and these requests get a page, not a reply (it is optional).
    """
    channel = WebChannel(channel)
    biz = web_pay_biz_content(
        channel,
        out_trade_no=out_trade_no,
        subject=subject,
        total_amount=total_amount,
        body=body,
        timeout_express=timeout_express,
        extra=extra_biz,
    )
    params, sign = signed_pay_request(
        signer,
        app_id=app_id,
        method=OPENAPI_METHODS[channel],
        biz=biz,
        now=now,
        notify_url=notify_url,
        return_url=p.check_return_url(return_url),
        app_cert_sn=app_cert_sn,
        alipay_root_cert_sn=alipay_root_cert_sn,
        response_format=None,
    )
    ordered = tuple(sorted((k, v) for k, v in params.items() if v != ""))
    return WebPayment(gateway_url, (*ordered, ("sign", sign)), params.get("charset") or "utf-8")


# --- legacy Global: create_forex_trade / create_forex_trade_wap ---------------------------------------------------


def forex_trade_params(
    channel: WebChannel,
    *,
    partner: str,
    notify_url: str,
    return_url: str,
    out_trade_no: str,
    subject: str,
    currency: str,
    body: str | None = None,
    total_fee: str | Decimal | None = None,
    rmb_fee: str | Decimal | None = None,
    timeout_rule: str | None = None,
    input_charset: str = "utf-8",
) -> dict[str, str]:
    """Validated parameters of ``create_forex_trade`` / ``create_forex_trade_wap`` (``total_fee`` xor ``rmb_fee``)."""
    from .mapi import check_currency, check_partner

    channel = WebChannel(channel)
    if (total_fee is None) == (rmb_fee is None):
        raise OrderError("total_fee", "exactly one of total_fee (foreign currency) and rmb_fee is required")
    if timeout_rule is not None and timeout_rule not in FOREX_TIMEOUT_RULES:
        raise OrderError("timeout_rule", f"must be one of {', '.join(FOREX_TIMEOUT_RULES)}")
    if len(notify_url) > FOREX_URL_MAX_LENGTH:
        raise OrderError("notify_url", f"at most {FOREX_URL_MAX_LENGTH} characters")
    params = {
        "service": FOREX_SERVICES[channel],
        "partner": check_partner(partner),
        "_input_charset": input_charset,
        "notify_url": notify_url,
        "return_url": p.check_return_url(return_url, max_length=FOREX_URL_MAX_LENGTH),
        "out_trade_no": p.check_out_trade_no(out_trade_no),
        "subject": p.check_text("subject", subject, 256),
        "body": p.check_text("body", body, 400, required=False) if body else "",
        "currency": check_currency(currency),
        "product_code": FOREX_PRODUCT_CODES[channel],
        "total_fee": p.format_amount(total_fee, "total_fee") if total_fee is not None else "",
        "rmb_fee": p.format_amount(rmb_fee, "rmb_fee") if rmb_fee is not None else "",
        "timeout_rule": timeout_rule or "",
    }
    return {k: v for k, v in params.items() if v}


def legacy_request_content(params: Mapping[str, str]) -> str:
    """Signed content of a legacy gateway request: every non-empty parameter but ``sign``/``sign_type``, sorted."""
    return signed_content(params, _LEGACY_UNSIGNED)


def sign_forex_trade(params: Mapping[str, str], signer: Signer, *, gateway_url: str) -> WebPayment:
    """Sign legacy web-payment parameters (SHA1withRSA): sent sorted, then ``sign`` and ``sign_type``."""
    if signer.sign_type is not SignType.RSA:
        raise OrderError("sign_type", "the legacy web services are signed with RSA (SHA1withRSA) by a local key")
    charset = params.get("_input_charset") or "utf-8"
    try:
        content = legacy_request_content(params).encode(codec_for(charset))
    except UnicodeEncodeError as exc:
        raise OrderError("_input_charset", f"the parameters do not encode in {charset}") from exc
    sign = b64encode(signer.sign(content))
    ordered = tuple(sorted((k, v) for k, v in params.items() if v != "" and k not in _LEGACY_UNSIGNED))
    return WebPayment(gateway_url, (*ordered, ("sign", sign), ("sign_type", signer.sign_type.value)), charset)


# --- the return to return_url -------------------------------------------------------------------------------------


class WebReturn(NamedTuple):
    """A verified return: the fields the signature covers, typed; it says which order to look at, nothing more."""

    protocol: AlipayProtocol
    out_trade_no: str
    trade_no: str
    total_amount: Decimal
    currency: str | None
    trade_status: str | None
    app_id: str | None
    seller_id: str | None
    fields: Mapping[str, str]


def encode_query(params: Mapping[str, Sequence[str]], protocol: AlipayProtocol) -> bytes:
    """A query string rebuilt from decoded values (API Gateway hands over only those), in the charset it declares.

    Every value of a repeated name is kept, so the strict parser still sees (and rejects) the repetition.
    """
    declared = params.get(CHARSET_FIELD[AlipayProtocol(protocol)]) or ()
    codec = codec_for(declared[0] if declared and declared[0] else DEFAULT_CHARSET[protocol])
    try:
        return "&".join(f"{k}={form_quote(v, codec)}" for k, values in params.items() for v in values).encode("ascii")
    except UnicodeEncodeError as exc:
        raise CharsetError(f"the query does not encode in {codec}") from exc


def verify_return(
    query: bytes,
    *,
    protocol: AlipayProtocol,
    keys: AlipayPublicKeys,
    sign_type: SignType,
    default_charset: str | None = None,
) -> WebReturn:
    """Verify the query Alipay appended to ``return_url``; raise a ``VerificationError`` naming the failed check."""
    protocol = AlipayProtocol(protocol)
    fields, _ = verify_signed_form(
        query, protocol=protocol, keys=keys, sign_type=sign_type, default_charset=default_charset, what="return"
    )
    if protocol is AlipayProtocol.OPENAPI:
        method = fields.get("method", "")
        if method not in RETURN_METHODS:
            raise InvalidField(f"method {method[:64]!r} is not a page or wap pay return")
    else:
        # Genuine create_forex_trade returns carry no is_success (docs/protocols.md §5); one that is present must be T.
        success = fields.get("is_success")
        if success is not None and success != LEGACY_SUCCESS:
            raise NotSuccessful(f"is_success is {success!r}, not {LEGACY_SUCCESS!r}")
    status = fields.get("trade_status") or None
    if status is not None and status not in TRADE_STATUSES:
        raise InvalidField(f"unknown trade_status {status[:32]!r}")
    amount_field = AMOUNT_FIELD[protocol]
    if protocol is AlipayProtocol.MAPI and not fields.get(amount_field) and fields.get("rmb_fee"):
        amount_field = "rmb_fee"
    try:
        amount = p.parse_amount(_required(fields, amount_field), amount_field)
    except OrderError as exc:
        raise InvalidField(str(exc)) from exc
    return WebReturn(
        protocol=protocol,
        out_trade_no=_required(fields, "out_trade_no"),
        trade_no=fields.get("trade_no", ""),
        total_amount=amount,
        currency=fields.get("currency") or None,
        trade_status=status,
        app_id=fields.get("app_id") or None,
        seller_id=fields.get("seller_id") or None,
        fields=fields,
    )


def check_return(
    verified: WebReturn,
    *,
    total_amount: Decimal,
    currency: str,
    app_id: str | None = None,
    seller_id: str | None = None,
    partner: str | None = None,
) -> None:
    """The business checks after the signature: addressed to this merchant, about this order's amount."""
    if verified.protocol is AlipayProtocol.OPENAPI and app_id and verified.app_id != app_id:
        raise OrderMismatch("app_id", app_id, verified.app_id)
    # An Open Platform return always names the seller; a legacy one may not (UNCONFIRMED), but must not name another.
    named = verified.seller_id is not None or verified.protocol is AlipayProtocol.OPENAPI
    if seller_id and named and verified.seller_id != seller_id:
        raise OrderMismatch("seller_id", seller_id, verified.seller_id)
    if partner and verified.fields.get("partner", partner) != partner:
        raise OrderMismatch("partner", partner, verified.fields.get("partner"))
    if verified.total_amount != total_amount:
        raise OrderMismatch("total_amount", total_amount, verified.total_amount)
    if verified.currency is not None and verified.protocol is AlipayProtocol.MAPI and verified.currency != currency:
        raise OrderMismatch("currency", currency, verified.currency)


def _required(fields: Mapping[str, str], key: str) -> str:
    value = fields.get(key, "")
    if not value:
        raise InvalidField(f"missing {key}")
    return value
