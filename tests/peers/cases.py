"""Keys, order and notification inputs, and wire helpers shared by the peer cross-checks (no peer imports)."""

from __future__ import annotations

import binascii
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import openapi
from chalicelib.alipay.notifications import notification_content
from chalicelib.alipay.signing import (
    AlipayPublicKeys,
    LocalKeySigner,
    SignType,
    b64encode,
    decode_signature,
    verify_signature,
)
from tests.keygen import rsa_key

APP_ID = "2021000123456789"
SELLER_ID = "2088102177649450"
NOTIFY_URL = "https://pay.example.com/alipay/notify?tenant=a&x=1"
# 2024-03-09 16:30:05 UTC is 2024-03-10 00:30:05 in Beijing: the date rolls over, so a UTC timestamp shows.
NOW = datetime(2024, 3, 9, 16, 30, 5, tzinfo=UTC)
BEIJING_NOW = "2024-03-10 00:30:05"


def merchant_key() -> rsa.RSAPrivateKey:
    """The merchant's app key: signs order strings; the peer verifies them with its public half."""
    return rsa_key("merchant")


def alipay_key() -> rsa.RSAPrivateKey:
    """Stands in for Alipay's key: signs notifications and responses; we verify with its public half."""
    return rsa_key("alipay")


def other_key() -> rsa.RSAPrivateKey:
    return rsa_key("other")


def alipay_keys() -> AlipayPublicKeys:
    return AlipayPublicKeys.of(alipay_key().public_key())


def private_pem(key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8) -> str:
    return key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode("ascii")


def public_pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def bare_base64(pem: str) -> str:
    """The single-line base64 body of a PEM, as merchants paste keys into SDK configs."""
    body = "".join(line for line in pem.strip().splitlines() if not line.startswith("-----"))
    binascii.a2b_base64(body, strict_mode=True)  # sanity: it is base64
    return body


def parse_order_string(order: str) -> dict[str, str]:
    """Decode an order string back to its parameters with the standard library (independent of our code)."""
    pairs = parse_qsl(order, keep_blank_values=True, strict_parsing=True, encoding="utf-8", errors="strict")
    params = dict(pairs)
    assert len(params) == len(pairs), "duplicate parameter in order string"
    return params


def sorted_order_string(order: str) -> str:
    """Our order string with its parameters in the peer's (sorted) order, ``sign`` last; bytes untouched."""
    parts = order.split("&")
    assert parts[-1].startswith("sign=")
    return "&".join([*sorted(parts[:-1], key=lambda p: p.split("=", 1)[0]), parts[-1]])


def form_body(fields: Mapping[str, str], charset: str = "utf-8") -> bytes:
    """``application/x-www-form-urlencoded`` as Alipay POSTs it: values percent-encoded in ``charset``."""
    return urlencode(list(fields.items()), encoding=charset).encode("ascii")


# Values that break naive signers: JSON and form metacharacters, quotes, spaces, '+', '%', non-ASCII.
ORDER_CASES: list[dict[str, Any]] = [
    {
        "out_trade_no": "ORDER-2024_0001",
        "subject": '{"sku":"A& B=C"} 大乐透 "quoted" 😀',
        "total_amount": "88.88",
        "body": "x+y%20z {} & = ?",
        "passback_params": "merchantBizType%3d3C%26merchantBizNo%3d2016010101111",
        "timeout_express": "30m",
    },
    {
        "out_trade_no": "o" * 64,
        "subject": "Café & Crème = « très » {bon} \\ back\\slash",
        "total_amount": "100000000.00",
        "body": "ÄÖÜ ß — ‘curly’ “quotes” \u2028 line separator",
        "extra_biz": {"extend_params": {"note": "a}b{c", "list": ["x&y", 1]}, "currency": "USD"},
    },
    {"out_trade_no": "1", "subject": "  padded  with  spaces  ", "total_amount": "0.01", "timeout_express": "15d"},
    {"out_trade_no": "A-B_C", "subject": "%E4%B8%AD already-encoded-looking +plus+", "total_amount": "1.5"},
]


def notification_fields(**overrides: str | None) -> dict[str, str]:
    """An Open Platform payment notification's fields (``sign``/``sign_type`` added by the signer)."""
    fields: dict[str, str | None] = {
        "gmt_create": "2024-03-10 00:30:06",
        "charset": "utf-8",
        "seller_email": "merchant@example.com",
        "subject": '大乐透 {"a":"b& c=d"} + 100% "ok"',
        "buyer_id": "2088102177846880",
        "invoice_amount": "88.88",
        "notify_id": "2024031000222003007014671234567890",
        "fund_bill_list": '[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]',
        "notify_type": "trade_status_sync",
        "trade_status": "TRADE_SUCCESS",
        "receipt_amount": "88.88",
        "app_id": APP_ID,
        "buyer_pay_amount": "88.88",
        "seller_id": SELLER_ID,
        "gmt_payment": "2024-03-10 00:30:09",
        "notify_time": "2024-03-10 00:30:10",
        "passback_params": "merchantBizType%3d3C%26merchantBizNo%3d2016010101111",
        "version": "1.0",
        "out_trade_no": "ORDER-2024_0001",
        "total_amount": "88.88",
        "trade_no": "2024031022001446880512345678",
        "auth_app_id": APP_ID,
        "buyer_logon_id": "159****5620",
        "point_amount": "0.00",
        "body": "x+y%20z {} & = ?",
        "refund_fee": "0.00",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def mapi_notification_fields(**overrides: str | None) -> dict[str, str]:
    """A legacy Alipay Global (MAPI) notification's fields."""
    fields: dict[str, str | None] = {
        "notify_time": "2024-03-10 00:30:10",
        "notify_type": "trade_status_sync",
        "notify_id": "b84f8a0ba2f7f3b3f0a2c6e5e0f0c1d2e3",
        "out_trade_no": "LEGACY_0001",
        "trade_no": "2024031021001003030200089909",
        "trade_status": "TRADE_FINISHED",
        "total_fee": "12.34",
        "currency": "USD",
        "subject": "Tee & cap = {2} \"x\" ü",
        "seller_id": "2088101122136241",
        "buyer_id": "2088102169481075",
        "gmt_create": "2024-03-10 00:30:06",
        "gmt_payment": "2024-03-10 00:30:09",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def our_order(case: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
    return openapi.build_app_pay_order_string(
        LocalKeySigner(key or merchant_key()),
        app_id=APP_ID,
        notify_url=NOTIFY_URL,
        now=NOW,
        out_trade_no=case["out_trade_no"],
        subject=case["subject"],
        total_amount=case["total_amount"],
        body=case.get("body"),
        timeout_express=case.get("timeout_express"),
        passback_params=case.get("passback_params"),
        extra_biz=case.get("extra_biz"),
    )


def we_verify_request(params: dict[str, str], key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> None:
    """Our check of a request's signature: our signed-content rule, the key's public half, RSA2."""
    pub = key.public_key() if isinstance(key, rsa.RSAPrivateKey) else key
    content = openapi.request_signed_content(params).encode(params.get("charset") or "utf-8")
    verify_signature(AlipayPublicKeys.of(pub), content, decode_signature(params["sign"]), SignType.RSA2)


def we_sign_notification(fields: dict[str, str], key: rsa.RSAPrivateKey, sign_type: SignType = SignType.RSA2,
                         charset: str = "utf-8") -> dict[str, str]:
    """Sign as Alipay does: our notification content, in the notification's charset, with ``key``."""
    sign = b64encode(LocalKeySigner(key, sign_type).sign(notification_content(fields).encode(charset)))
    return {**fields, "sign_type": sign_type.value, "sign": sign}
