"""The sandbox's reading of an app's ``orderInfo`` (both protocols) and the synchronous result Alipay signs for it.

Alipay checks an order string before the cashier opens: it finds the merchant (``app_id`` or ``partner``), verifies
the merchant's signature with the public key registered for it, then the business parameters. A failure there is
what the SDK reports as ``resultStatus`` 4000. The checks here follow ``docs/protocols.md`` §1.1 and §2.1.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import params as p
from chalicelib.alipay.certs import CertSns
from chalicelib.alipay.errors import AlipayError, CharsetError, OrderError
from chalicelib.alipay.forms import codec_for, parse_form_text
from chalicelib.alipay.mapi import PRODUCT_CODE as SECURITYPAY_PRODUCT_CODE
from chalicelib.alipay.mapi import SECURITYPAY_SERVICE, parse_quoted
from chalicelib.alipay.openapi import APP_PAY_METHOD, APP_PAY_PRODUCT_CODE, APP_PAY_RESPONSE, request_signed_content
from chalicelib.alipay.signing import AlipayPublicKeys, Signer, SignType, b64encode, decode_signature, verify_signature

_CURRENCY = re.compile(r"[A-Z]{3}")


class OrderRejected(Exception):
    """Alipay refuses the order string; the SDK reports ``resultStatus`` 4000 with ``memo`` saying why."""


@dataclass(frozen=True, slots=True)
class MerchantOrder:
    """An order string the sandbox accepted: what a trade is created from, in either protocol."""

    out_trade_no: str
    total_amount: str  # two decimals, as Alipay echoes it
    amount_field: str  # total_amount (openapi), total_fee or rmb_fee (mapi)
    currency: str | None  # openapi: trans_currency (None means CNY); mapi: currency
    subject: str
    body: str
    notify_url: str | None  # None: the sandbox has no portal-configured URL to fall back on, so nothing is sent
    charset: str  # the charset name the merchant declared (echoed in results and notifications)
    seller_id: str
    passback_params: str
    signed_part: str  # mapi: the order string before ``&sign=``, verbatim (the result is built on it)
    product_code: str = ""  # mapi: the product paid with; a forex_refund must name it


def merchant_keys(public_key: rsa.RSAPublicKey) -> AlipayPublicKeys:
    """The merchant's public key as a key set (the verifier's type; here it holds the merchant's key, not Alipay's)."""
    return AlipayPublicKeys((public_key,))


def _verify(keys: AlipayPublicKeys, content: str, codec: str, sign: str, sign_type: SignType) -> None:
    try:
        verify_signature(keys, content.encode(codec), decode_signature(sign), sign_type)
    except (AlipayError, UnicodeEncodeError) as exc:
        raise OrderRejected(f"invalid-signature: the merchant signature does not verify ({exc})") from exc


def _notify_url(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OrderRejected(f"invalid notify_url {value[:200]!r}")
    return value


def _amount(value: object, field: str) -> str:
    # Alipay takes the amount as a JSON string or number; either way at most two decimals, 0.01-100000000.
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise OrderRejected(f'{field} must be an amount such as "12.34"')
    try:
        return p.format_amount(text, field)
    except OrderError as exc:
        raise OrderRejected(str(exc)) from exc


def _checked(check: Callable[..., str], *args: Any) -> str:
    """Run one of the shared parameter checks; its ``OrderError`` becomes the rejection."""
    try:
        return check(*args)
    except OrderError as exc:
        raise OrderRejected(str(exc)) from exc


# --- Open Platform: alipay.trade.app.pay --------------------------------------------------------------------


def check_cert_sns(params: Mapping[str, str], expected: CertSns | None) -> str | None:
    """What is wrong with a request's certificate SNs, as Alipay would say it; None when they are right.

    In certificate mode Alipay finds the app's key by ``app_cert_sn`` and checks ``alipay_root_cert_sn`` names the
    root bundle it issued; in public-key mode it ignores both. The sub-codes are the sandbox's own wording.
    """
    if expected is None:
        return None
    for name, sn in (("app_cert_sn", expected.app_cert_sn), ("alipay_root_cert_sn", expected.alipay_root_cert_sn)):
        given = params.get(name, "")
        if given != sn:
            return f"invalid-{name.replace('_', '-')}: {given[:80]!r} is not the SN of the configured certificate"
    return None


def parse_openapi_order(
    order_info: str, *, app_id: str, seller_id: str, merchant: AlipayPublicKeys, cert_sns: CertSns | None = None
) -> MerchantOrder:
    """Check an ``alipay.trade.app.pay`` order string as Alipay does; ``OrderRejected`` names the failed check."""
    try:
        params, codec = parse_form_text(order_info.encode("ascii"), charset_field="charset", default_charset="utf-8")
    except UnicodeEncodeError as exc:
        raise OrderRejected("the order string must be URL-encoded ASCII") from exc
    except AlipayError as exc:
        raise OrderRejected(f"malformed order string: {exc}") from exc
    # The app is found first: its registered public key is what the signature is checked with.
    if params.get("app_id") != app_id:
        raise OrderRejected(f"invalid-app-id: {params.get('app_id', '')[:32]!r} is not the sandbox app {app_id}")
    if params.get("sign_type") != SignType.RSA2.value:
        raise OrderRejected(f"sign_type {params.get('sign_type', '')[:16]!r}: the sandbox app is configured for RSA2")
    wrong_sn = check_cert_sns(params, cert_sns)
    if wrong_sn:
        raise OrderRejected(wrong_sn)
    sign = params.get("sign")
    if not sign:
        raise OrderRejected("missing-signature: the order string carries no sign")
    # Signed content: every parameter but sign, sign_type included, URL-decoded, sorted, k=v (§1.1).
    _verify(merchant, request_signed_content(params), codec, sign, SignType.RSA2)
    if params.get("method") != APP_PAY_METHOD:
        raise OrderRejected(f"invalid-method: {params.get('method', '')[:64]!r} is not {APP_PAY_METHOD}")
    if not params.get("timestamp"):
        raise OrderRejected("missing timestamp")
    biz = _biz_content(params.get("biz_content", ""))
    out_trade_no = _checked(p.check_out_trade_no, biz.get("out_trade_no"))
    subject = _checked(p.check_text, "subject", biz.get("subject"), 256)
    body = biz.get("body") or ""
    if body:
        _checked(p.check_text, "body", body, 128)
    product_code = biz.get("product_code")
    if product_code not in (None, APP_PAY_PRODUCT_CODE):
        raise OrderRejected(f"product_code must be {APP_PAY_PRODUCT_CODE}")
    timeout = biz.get("timeout_express")
    if timeout:
        _checked(p.check_timeout, timeout)
    currency = biz.get("trans_currency")
    if currency is not None and not (isinstance(currency, str) and _CURRENCY.fullmatch(currency)):
        raise OrderRejected("trans_currency must be an ISO 4217 code such as USD")
    passback = biz.get("passback_params") or ""
    return MerchantOrder(
        out_trade_no=out_trade_no,
        total_amount=_amount(biz.get("total_amount"), "total_amount"),
        amount_field="total_amount",
        currency=currency,
        subject=subject,
        body=body if isinstance(body, str) else "",
        notify_url=_notify_url(params.get("notify_url")),
        charset=params.get("charset") or "utf-8",
        seller_id=seller_id,
        passback_params=passback if isinstance(passback, str) else "",
        signed_part="",
    )


def _biz_content(text: str) -> dict[str, Any]:
    try:
        biz = json.loads(text)
    except ValueError as exc:
        raise OrderRejected("biz_content is not JSON") from exc
    if not isinstance(biz, dict):
        raise OrderRejected("biz_content is not a JSON object")
    return biz


def app_pay_result(order: MerchantOrder, *, app_id: str, trade_no: str, timestamp: str, signer: Signer) -> str:
    """The SDK's ``result`` for a paid order: the response JSON, signed over its exact raw text (§1.3)."""
    response = {
        "code": "10000",
        "msg": "Success",
        "app_id": app_id,
        "auth_app_id": app_id,
        "charset": order.charset,
        "timestamp": timestamp,
        "out_trade_no": order.out_trade_no,
        "trade_no": trade_no,
        "total_amount": order.total_amount,
        "seller_id": order.seller_id,
    }
    return signed_json(APP_PAY_RESPONSE, response, signer, charset=order.charset, declare_sign_type=True)


def signed_json(
    name: str,
    response: Mapping[str, Any],
    signer: Signer | None,
    *,
    charset: str = "utf-8",
    declare_sign_type: bool = False,
    cert_sn: str | None = None,
) -> str:
    """``{"<name>":<response>,"sign":"..."}``: the signature covers the member's text exactly as written here.

    ``cert_sn`` (certificate mode) adds ``alipay_cert_sn``: the SN of the certificate whose key signed it.
    """
    content = json.dumps(response, ensure_ascii=False, separators=(",", ":"))
    members = [f"{json.dumps(name)}:{content}"]
    if cert_sn:
        members.append(f'"alipay_cert_sn":{json.dumps(cert_sn)}')
    if signer is not None:
        sign = b64encode(signer.sign(content.encode(codec_for(charset))))
        members.append(f'"sign":{json.dumps(sign)}')
        if declare_sign_type:
            members.append(f'"sign_type":{json.dumps(signer.sign_type.value)}')
    return "{" + ",".join(members) + "}"


# --- legacy Global: mobile.securitypay.pay ------------------------------------------------------------------


def parse_mapi_order(
    order_info: str, *, partner: str, seller_ids: frozenset[str], merchant: AlipayPublicKeys
) -> MerchantOrder:
    """Check a ``mobile.securitypay.pay`` order string as Alipay does; ``OrderRejected`` names the failed check."""
    index = order_info.find("&sign=")
    if index < 0:
        raise OrderRejected("missing-signature: the order string has no &sign=")
    # Alipay verifies the part before &sign= exactly as sent (§2.1); only sign and sign_type may follow it.
    signed_part = order_info[:index]
    try:
        fields = parse_quoted(signed_part)
        trailer = parse_quoted(order_info[index + 1 :])
    except AlipayError as exc:
        raise OrderRejected(f"malformed order string: {exc}") from exc
    if set(trailer) != {"sign", "sign_type"} or "sign" in fields or "sign_type" in fields:
        raise OrderRejected('the order string must end with &sign="..."&sign_type="RSA"')
    if fields.get("partner") != partner:
        raise OrderRejected(f"ILLEGAL_PARTNER: {fields.get('partner', '')[:32]!r} is not the sandbox partner")
    if trailer["sign_type"] != SignType.RSA.value:
        raise OrderRejected(f"sign_type {trailer['sign_type'][:16]!r}: mobile.securitypay.pay is signed with RSA")
    try:
        codec = codec_for(fields.get("_input_charset") or "utf-8")
    except CharsetError as exc:
        raise OrderRejected(str(exc)) from exc
    # The merchant URL-encodes the base64 signature inside the quotes.
    _verify(merchant, signed_part, codec, unquote(trailer["sign"]), SignType.RSA)
    if fields.get("service") != SECURITYPAY_SERVICE:
        raise OrderRejected(f"ILLEGAL_SERVICE: {fields.get('service', '')[:64]!r} is not {SECURITYPAY_SERVICE}")
    if fields.get("payment_type") != "1":
        raise OrderRejected('payment_type must be "1"')
    seller_id = fields.get("seller_id") or partner
    if seller_id not in seller_ids:
        raise OrderRejected(f"seller_id {seller_id[:32]!r} is not the partner's account")
    total_fee, rmb_fee = fields.get("total_fee"), fields.get("rmb_fee")
    if (total_fee is None) == (rmb_fee is None):
        raise OrderRejected("exactly one of total_fee and rmb_fee is required")
    amount_field = "total_fee" if total_fee is not None else "rmb_fee"
    currency = fields.get("currency", "")
    if not _CURRENCY.fullmatch(currency):
        raise OrderRejected("currency must be an ISO 4217 code such as USD")
    if fields.get("it_b_pay"):
        _checked(p.check_timeout, fields["it_b_pay"], "it_b_pay")
    # The legacy order string carries values unencoded; some merchants URL-encode the notify_url anyway.
    notify_url = fields.get("notify_url") or ""
    if notify_url and not notify_url.startswith(("http://", "https://")):
        notify_url = unquote(notify_url)
    return MerchantOrder(
        out_trade_no=_checked(p.check_out_trade_no, fields.get("out_trade_no")),
        total_amount=_amount(fields[amount_field], amount_field),
        amount_field=amount_field,
        currency=currency,
        subject=_checked(p.check_text, "subject", fields.get("subject"), 256),
        body=_checked(p.check_text, "body", fields.get("body"), 400),
        notify_url=_notify_url(notify_url),
        charset=fields.get("_input_charset") or "utf-8",
        seller_id=seller_id,
        passback_params="",
        signed_part=signed_part,
        product_code=fields.get("product_code") or SECURITYPAY_PRODUCT_CODE,
    )


def securitypay_result(order: MerchantOrder, signer: Signer) -> str:
    """The SDK's ``result`` for a paid legacy order: the merchant's signed part, ``&success="true"``, Alipay's sign.

    Signed content = everything before ``&sign_type=`` (SHA1withRSA); the signature is appended as plain base64.
    """
    content = f'{order.signed_part}&success="true"'
    sign = b64encode(signer.sign(content.encode(codec_for(order.charset))))
    return f'{content}&sign_type="{signer.sign_type.value}"&sign="{sign}"'
