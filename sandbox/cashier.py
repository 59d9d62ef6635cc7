"""The sandbox's web cashier: what Alipay shows a shopper's browser for page and wap pay (both protocols).

``GET /gateway.do?<signed params>`` (the product's ``payment_url``) or ``POST /gateway.do`` (its ``payment_form``) with
``method=alipay.trade.page.pay`` / ``alipay.trade.wap.pay`` (Open Platform) or ``service=create_forex_trade`` /
``create_forex_trade_wap`` (legacy): the merchant's signature is verified as Alipay verifies it (a bad one gets an
error page), the trade is opened, and a cashier page shows the subject and amount with Pay and Cancel buttons.

- ``POST /sandbox/cashier/<token>/pay``: the trade is paid, its notifications go out through the sandbox's sender
  (with Alipay's retries), and the browser is redirected (302) to ``return_url`` with a query signed as Alipay
  signs it.
- ``POST /sandbox/cashier/<token>/cancel``: a page saying the payment was cancelled, with a link back to the
  merchant's site; no notification, the trade stays waiting (Alipay closes it on timeout).

The page's element ids are an interface (the browser test clicks them): ``pay``, ``cancel``, ``cashier-subject``,
``cashier-amount`` (e.g. ``12.34 USD``); every error page has ``error``.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any
from urllib.parse import urlsplit

from chalicelib.alipay import params as p
from chalicelib.alipay.errors import AlipayError, OrderError
from chalicelib.alipay.forms import codec_for, form_quote, parse_form_text, signed_content
from chalicelib.alipay.notifications import NOTIFICATION_UNSIGNED, AlipayProtocol, notification_content
from chalicelib.alipay.openapi import request_signed_content
from chalicelib.alipay.signing import SignType, b64encode, decode_signature, verify_signature
from chalicelib.alipay.web import (
    FOREX_PRODUCT_CODES,
    FOREX_SERVICES,
    FOREX_TIMEOUT_RULES,
    OPENAPI_METHODS,
    OPENAPI_PRODUCT_CODES,
    WebChannel,
)

from .orders import MerchantOrder, check_cert_sns, merchant_keys
from .trades import PAID, AlipaySandbox, Trade, TradeError

# (HTTP status, Content-Type, body, extra headers)
CashierReply = tuple[int, str, bytes, dict[str, str]]

HTML_TYPE = "text/html; charset=utf-8"
CASHIER_PREFIX = "/sandbox/cashier/"
_METHOD_CHANNELS = {method: channel for channel, method in OPENAPI_METHODS.items()}
_SERVICE_CHANNELS = {service: channel for channel, service in FOREX_SERVICES.items()}
_CURRENCY_CNY = "CNY"


class CashierRejected(Exception):
    """Alipay refuses the web payment request before the cashier opens (shown as an error page)."""


@dataclass(frozen=True, slots=True)
class CashierSession:
    """One opened cashier: which trade, and where the shopper goes back to."""

    token: str
    out_trade_no: str
    channel: WebChannel
    return_url: str | None
    method: str  # openapi: the request's method (the return's is <method>.return); mapi: the service


def _page(title: str, content: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title></head>\n<body>\n{content}\n</body></html>\n"
    ).encode()


def error_page(message: str) -> bytes:
    """What Alipay shows when it refuses a request (the sandbox's version)."""
    return _page("Alipay sandbox: error", f'<h1 id="error">Payment request refused</h1>\n<p>{escape(message)}</p>')


class Cashier:
    """The web cashier over one sandbox: opened sessions by token."""

    def __init__(self, sandbox: AlipaySandbox) -> None:
        self.sandbox = sandbox
        self._lock = threading.Lock()
        self._sessions: dict[str, CashierSession] = {}

    # --- the payment request ------------------------------------------------------------------------------------

    def answer_gateway(self, query: bytes, body: bytes) -> CashierReply | None:
        """The cashier page for a web payment request; None when the request is no web payment (the gateway's)."""
        raw = b"&".join(part for part in (query, body) if part)
        legacy = raw.startswith(b"service=") or b"&service=" in raw
        try:
            params, _ = parse_form_text(
                raw, charset_field="_input_charset" if legacy else "charset", default_charset="utf-8"
            )
        except AlipayError:
            return None  # the gateway answers malformed requests in its own way
        if params.get("method") not in _METHOD_CHANNELS and params.get("service") not in _SERVICE_CHANNELS:
            return None
        try:
            if self.sandbox.protocol is AlipayProtocol.OPENAPI:
                order, session = self._openapi(params)
            else:
                order, session = self._mapi(params)
            self.sandbox.open_web_trade(order)
        except CashierRejected as exc:
            return 400, HTML_TYPE, error_page(str(exc)), {}
        except TradeError as exc:
            return 400, HTML_TYPE, error_page(f"{exc.sub_code}: {exc.sub_msg}"), {}
        with self._lock:
            self._sessions[session.token] = session
        return 200, HTML_TYPE, self._cashier_page(order, session), {}

    def _openapi(self, params: Mapping[str, str]) -> tuple[MerchantOrder, CashierSession]:
        settings = self.sandbox.settings
        if params.get("app_id") != settings.app_id:
            raise CashierRejected(f"invalid-app-id: {params.get('app_id', '')[:32]!r} is not the sandbox app")
        wrong_sn = check_cert_sns(params, settings.cert_sns)
        if wrong_sn:
            raise CashierRejected(wrong_sn)
        if params.get("sign_type") != SignType.RSA2.value:
            raise CashierRejected("invalid-signature: the sandbox app is configured for RSA2")
        codec = self._codec(params.get("charset") or "utf-8")
        # Signed content: every parameter but sign, sign_type included, sorted, k=v (as for app pay).
        self._verify(request_signed_content(params), codec, params.get("sign", ""), SignType.RSA2)
        method = params.get("method", "")
        channel = _METHOD_CHANNELS[method]
        try:
            biz = json.loads(params.get("biz_content") or "")
        except ValueError as exc:
            raise CashierRejected("biz_content is not JSON") from exc
        if not isinstance(biz, dict):
            raise CashierRejected("biz_content is not a JSON object")
        if biz.get("product_code") != OPENAPI_PRODUCT_CODES[channel]:
            raise CashierRejected(f"product_code must be {OPENAPI_PRODUCT_CODES[channel]} for {method}")
        currency = biz.get("trans_currency")
        if currency is not None and not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
            raise CashierRejected("ILLEGAL_ARGUMENT: trans_currency must be an ISO 4217 code")
        order = MerchantOrder(
            out_trade_no=_checked(p.check_out_trade_no, biz.get("out_trade_no")),
            total_amount=_checked(p.format_amount, str(biz.get("total_amount", "")), "total_amount"),
            amount_field="total_amount",
            currency=currency,
            subject=_checked(p.check_text, "subject", biz.get("subject"), 256),
            body=str(biz.get("body") or ""),
            notify_url=_url(params.get("notify_url"), "notify_url"),
            charset=params.get("charset") or "utf-8",
            seller_id=settings.seller_id,
            passback_params="",
            signed_part="",
        )
        return order, self._session(order, channel, params.get("return_url"), method)

    def _mapi(self, params: Mapping[str, str]) -> tuple[MerchantOrder, CashierSession]:
        settings = self.sandbox.settings
        if params.get("partner") != settings.partner_id:
            raise CashierRejected(f"ILLEGAL_PARTNER: {params.get('partner', '')[:32]!r} is not the sandbox partner")
        if params.get("sign_type") != SignType.RSA.value:
            raise CashierRejected("ILLEGAL_SIGN_TYPE: the sandbox partner signs with RSA")
        codec = self._codec(params.get("_input_charset") or "utf-8")
        # Legacy gateway requests: every parameter but sign and sign_type, sorted, unquoted k=v (SHA1withRSA).
        self._verify(signed_content(params, NOTIFICATION_UNSIGNED), codec, params.get("sign", ""), SignType.RSA)
        service = params.get("service", "")
        channel = _SERVICE_CHANNELS[service]
        if params.get("product_code") != FOREX_PRODUCT_CODES[channel]:
            raise CashierRejected(f"ILLEGAL_PRODUCT_CODE: {service} takes {FOREX_PRODUCT_CODES[channel]}")
        total_fee, rmb_fee = params.get("total_fee"), params.get("rmb_fee")
        if (total_fee is None) == (rmb_fee is None):
            raise CashierRejected("ILLEGAL_ARGUMENT: exactly one of total_fee and rmb_fee is required")
        amount_field = "total_fee" if total_fee is not None else "rmb_fee"
        timeout_rule = params.get("timeout_rule")
        if timeout_rule is not None and timeout_rule not in FOREX_TIMEOUT_RULES:
            raise CashierRejected(f"INVALID_PARAMETER: timeout_rule {timeout_rule[:16]!r}")
        if timeout_rule is not None and timeout_rule not in settings.timeout_rules:
            # A valid value Alipay has not enabled for this partner is refused all the same (docs/protocols.md §5).
            raise CashierRejected(f"INVALID_PARAMETER: timeout_rule {timeout_rule!r} is not enabled for the partner")
        currency = params.get("currency", "")
        if len(currency) != 3 or not currency.isupper():
            raise CashierRejected("ILLEGAL_ARGUMENT: currency must be an ISO 4217 code")
        order = MerchantOrder(
            out_trade_no=_checked(p.check_out_trade_no, params.get("out_trade_no")),
            total_amount=_checked(p.format_amount, params[amount_field], amount_field),
            amount_field=amount_field,
            currency=currency,
            subject=_checked(p.check_text, "subject", params.get("subject"), 256),
            body=params.get("body", ""),
            notify_url=_url(params.get("notify_url"), "notify_url"),
            charset=params.get("_input_charset") or "utf-8",
            seller_id=settings.partner_id,
            passback_params="",
            signed_part="",
            product_code=FOREX_PRODUCT_CODES[channel],
        )
        return order, self._session(order, channel, params.get("return_url"), service)

    @staticmethod
    def _session(order: MerchantOrder, channel: WebChannel, return_url: str | None, method: str) -> CashierSession:
        return CashierSession(
            token=secrets.token_urlsafe(12),
            out_trade_no=order.out_trade_no,
            channel=channel,
            return_url=_url(return_url, "return_url"),
            method=method,
        )

    def _verify(self, content: str, codec: str, sign: str, sign_type: SignType) -> None:
        if not sign:
            raise CashierRejected("missing-signature: the request carries no sign")
        try:
            keys = merchant_keys(self.sandbox.settings.merchant_public_key)
            verify_signature(keys, content.encode(codec), decode_signature(sign), sign_type)
        except (AlipayError, UnicodeEncodeError) as exc:
            raise CashierRejected(f"invalid-signature: the merchant signature does not verify ({exc})") from exc

    @staticmethod
    def _codec(charset: str) -> str:
        try:
            return codec_for(charset)
        except AlipayError as exc:
            raise CashierRejected(str(exc)) from exc

    def _cashier_page(self, order: MerchantOrder, session: CashierSession) -> bytes:
        amount = f"{order.total_amount} {order.currency or _CURRENCY_CNY}"
        action = f"{CASHIER_PREFIX}{session.token}"
        return _page(
            "Alipay sandbox cashier",
            "<h1>Alipay sandbox cashier</h1>\n"
            f'<p>Order <code id="cashier-out-trade-no">{escape(order.out_trade_no)}</code> '
            f"({escape(session.channel.value)})</p>\n"
            f'<p id="cashier-subject">{escape(order.subject)}</p>\n'
            f'<p id="cashier-amount">{escape(amount)}</p>\n'
            f'<form method="post" action="{escape(action)}/pay"><button id="pay" type="submit">Pay</button></form>\n'
            f'<form method="post" action="{escape(action)}/cancel">'
            '<button id="cancel" type="submit">Cancel</button></form>',
        )

    # --- the shopper's choice -----------------------------------------------------------------------------------

    def answer(self, method: str, path: str) -> CashierReply:
        """``POST /sandbox/cashier/<token>/pay`` or ``/cancel``."""
        token, _, action = path[len(CASHIER_PREFIX) :].partition("/")
        with self._lock:
            session = self._sessions.get(token)
        if method != "POST" or action not in ("pay", "cancel"):
            return 405, HTML_TYPE, error_page("the cashier takes POST .../pay or .../cancel"), {}
        if session is None:
            return 404, HTML_TYPE, error_page("no such cashier session"), {}
        if action == "cancel":
            return 200, HTML_TYPE, self._cancelled_page(session), {}
        trade = self.sandbox.find(out_trade_no=session.out_trade_no)
        if trade is None:
            return 404, HTML_TYPE, error_page("the trade is gone"), {}
        try:
            trade = self.sandbox.pay_web_trade(session.out_trade_no)
        except TradeError as exc:
            # Paid already (Pay clicked twice, or paid from another cashier): back to the merchant, nothing more.
            if trade.status not in PAID:
                return 409, HTML_TYPE, error_page(f"{exc.sub_code}: {exc.sub_msg}"), {}
        if session.return_url is None:
            return 200, HTML_TYPE, _page("Paid", '<h1 id="paid">Payment complete</h1>'), {}
        separator = "&" if "?" in session.return_url else "?"
        location = session.return_url + separator + self.signed_return_query(trade, session)
        return 302, HTML_TYPE, b"", {"Location": location}

    def _cancelled_page(self, session: CashierSession) -> bytes:
        link = ""
        if session.return_url:
            parts = urlsplit(session.return_url)
            site = f"{parts.scheme}://{parts.netloc}/"
            link = f'<p><a id="back-to-merchant" href="{escape(site)}">Back to the merchant</a></p>'
        return _page("Payment cancelled", f'<h1 id="cancelled">Payment cancelled</h1>\n{link}')

    # --- the signed return ----------------------------------------------------------------------------------------

    def signed_return_query(self, trade: Trade, session: CashierSession) -> str:
        """The query Alipay appends to ``return_url``: signed over every field but sign and sign_type, sorted, k=v."""
        sandbox = self.sandbox
        order = trade.order
        with sandbox.lock:
            if sandbox.protocol is AlipayProtocol.OPENAPI:
                fields = {
                    "charset": order.charset,
                    "out_trade_no": order.out_trade_no,
                    "method": f"{session.method}.return",
                    "total_amount": order.total_amount,
                    "trade_no": trade.trade_no,
                    "auth_app_id": sandbox.settings.app_id,
                    "version": "1.0",
                    "app_id": sandbox.settings.app_id,
                    "seller_id": order.seller_id,
                    "timestamp": sandbox.beijing_now(),
                }
            else:
                # Exactly the fields of genuine create_forex_trade returns: no is_success, no notify_id.
                fields = {
                    "out_trade_no": order.out_trade_no,
                    order.amount_field: order.total_amount,
                    "trade_status": trade.status,
                    "trade_no": trade.trade_no,
                    "currency": order.currency or "",
                }
        codec = codec_for(order.charset)
        fields = {k: v for k, v in fields.items() if v}
        fields["sign_type"] = sandbox.signer.sign_type.value
        fields["sign"] = b64encode(sandbox.signer.sign(notification_content(fields).encode(codec)))
        return "&".join(f"{k}={form_quote(v, codec)}" for k, v in fields.items())


def _checked(check: Callable[..., str], *args: Any) -> str:
    try:
        return check(*args)
    except OrderError as exc:
        raise CashierRejected(f"ILLEGAL_ARGUMENT: {exc}") from exc


def _url(value: str | None, field: str) -> str | None:
    if not value:
        return None
    # urlsplit silently drops CR, LF and TAB: checked first, or a CR LF would end up in the Location header.
    if any(c.isspace() or not c.isprintable() for c in value):
        raise CashierRejected(f"ILLEGAL_ARGUMENT: {field} holds whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CashierRejected(f"ILLEGAL_ARGUMENT: {field} {value[:200]!r} is not an http(s) URL")
    return value
