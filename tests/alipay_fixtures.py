"""Messages signed the way Alipay signs them: notifications, JSON results and legacy results.

Every builder takes Alipay's *private* key (a throwaway from ``tests.keygen.rsa_key``, see ``alipay_key``);
the code under test only ever sees the public half (``alipay_keys``). The builders sign with
``LocalKeySigner`` and the canonical-content functions of ``chalicelib.alipay``, then encode exactly as
Alipay puts the message on the wire, so a test can tamper with the dict or the bytes in between.

Typical use::

    key = alipay_key()
    body = notification_body(openapi_notification_fields(total_amount="9.90"), key)
    verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(key), sign_type=SignType.RSA2)
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from chalicelib.alipay.forms import codec_for
from chalicelib.alipay.notifications import notification_content
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, b64encode
from tests.keygen import rsa_key

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000002"
PARTNER = "2088000000000003"
OUT_TRADE_NO = "ORDER-20240101-0001"
TRADE_NO = "2024010122001400000000000001"
# The issuer of the spec's certificate-SN vector: RFC 4514 renders it "CN=Test,OU=Test,O=Test,C=BE".
TEST_ISSUER = x509.Name(
    [
        x509.NameAttribute(NameOID.COUNTRY_NAME, "BE"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Test"),
        x509.NameAttribute(NameOID.COMMON_NAME, "Test"),
    ]
)


def alipay_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    """Alipay's (throwaway) signing key; cached, so every test in a run shares it."""
    return rsa_key("alipay", bits)


def alipay_keys(*private_keys: rsa.RSAPrivateKey) -> AlipayPublicKeys:
    """The ``AlipayPublicKeys`` a merchant configures for these private keys (default: ``alipay_key()``)."""
    return AlipayPublicKeys(tuple(k.public_key() for k in (private_keys or (alipay_key(),))))


def _with(base: dict[str, str], overrides: Mapping[str, str | None]) -> dict[str, str]:
    out = dict(base)
    for key, value in overrides.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def openapi_notification_fields(**overrides: str | None) -> dict[str, str]:
    """A typical Open Platform ``TRADE_SUCCESS`` notification (unsigned); ``field=None`` removes a field."""
    base = {
        "notify_time": "2024-01-01 12:00:05",
        "notify_type": "trade_status_sync",
        "notify_id": "ac05099524730693a8b330c5ecf72da9786",
        "app_id": APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": TRADE_NO,
        "out_trade_no": OUT_TRADE_NO,
        "buyer_id": "2088102122524333",
        "seller_id": SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "88.88",
        "receipt_amount": "88.88",
        "buyer_pay_amount": "88.88",
        "subject": "Coffee beans",
        "gmt_create": "2024-01-01 11:59:50",
        "gmt_payment": "2024-01-01 12:00:04",
        "fund_bill_list": '[{"amount":"88.88","fundChannel":"ALIPAYACCOUNT"}]',
    }
    return _with(base, overrides)


def mapi_notification_fields(**overrides: str | None) -> dict[str, str]:
    """A typical legacy (MAPI) cross-border ``TRADE_FINISHED`` notification (unsigned)."""
    base = {
        "notify_time": "2024-01-01 12:00:05",
        "notify_type": "trade_status_sync",
        "notify_id": "91722adff935e8cfa58b3aabf4dead6ibe",
        "out_trade_no": OUT_TRADE_NO,
        "trade_no": TRADE_NO,
        "trade_status": "TRADE_FINISHED",
        "total_fee": "12.50",
        "currency": "USD",
        "subject": "Coffee beans",
        "seller_id": PARTNER,
        "buyer_id": "2088102122524333",
        "gmt_create": "2024-01-01 11:59:50",
        "gmt_payment": "2024-01-01 12:00:04",
    }
    return _with(base, overrides)


def sign_fields(
    fields: Mapping[str, str],
    private_key: rsa.RSAPrivateKey,
    *,
    sign_type: SignType = SignType.RSA2,
    charset: str = "utf-8",
) -> dict[str, str]:
    """``fields`` plus ``sign_type`` and ``sign``, signed as Alipay signs a notification.

    The content is ``notification_content(fields)`` (no sign/sign_type, no empty values, sorted, ``k=v``)
    encoded in ``charset``. A test may change the returned dict (e.g. ``sign_type``) before encoding it.
    """
    signed = {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}
    signed["sign_type"] = SignType(sign_type).value
    content = notification_content(signed).encode(codec_for(charset))
    signed["sign"] = b64encode(LocalKeySigner(private_key, sign_type).sign(content))
    return signed


def form_body(fields: Mapping[str, str], charset: str = "utf-8") -> bytes:
    """``application/x-www-form-urlencoded`` bytes of ``fields`` (in order), values encoded in ``charset``."""
    return urlencode(list(fields.items()), encoding=codec_for(charset)).encode("ascii")


def notification_body(
    fields: Mapping[str, str],
    private_key: rsa.RSAPrivateKey,
    *,
    sign_type: SignType = SignType.RSA2,
    charset: str = "utf-8",
) -> bytes:
    """The POST body of a signed notification: ``form_body(sign_fields(...), charset)``.

    ``charset`` is the wire charset; the ``charset`` *field* (if any) is whatever ``fields`` holds.
    """
    return form_body(sign_fields(fields, private_key, sign_type=sign_type, charset=charset), charset)


def app_pay_response(**overrides: str | None) -> dict[str, str]:
    """A successful ``alipay_trade_app_pay_response`` body; ``field=None`` removes a field."""
    base = {
        "code": "10000",
        "msg": "Success",
        "app_id": APP_ID,
        "out_trade_no": OUT_TRADE_NO,
        "trade_no": TRADE_NO,
        "total_amount": "88.88",
        "seller_id": SELLER_ID,
        "charset": "utf-8",
        "timestamp": "2024-01-01 12:00:05",
    }
    return _with(base, overrides)


def signed_json_response(
    name: str,
    content: str | Mapping[str, Any],
    private_key: rsa.RSAPrivateKey,
    *,
    sign_type: SignType = SignType.RSA2,
    declared_sign_type: str | None = None,
    cert_sn: str | None = None,
) -> str:
    """An Alipay JSON reply ``{"<name>":<content>,"sign":"...","sign_type":"..."[,"alipay_cert_sn":"..."]}``.

    ``content`` is the raw JSON text of the member and is signed byte for byte as given (a mapping is
    dumped compactly first). ``declared_sign_type`` is the ``sign_type`` member written (default: the
    algorithm used; ``""`` omits the member).
    """
    raw = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False, separators=(",", ":"))
    sign = b64encode(LocalKeySigner(private_key, sign_type).sign(raw.encode("utf-8")))
    declared = SignType(sign_type).value if declared_sign_type is None else declared_sign_type
    members = [f"{json.dumps(name)}:{raw}", f'"sign":{json.dumps(sign)}']
    if declared:
        members.append(f'"sign_type":{json.dumps(declared)}')
    if cert_sn:
        members.append(f'"alipay_cert_sn":{json.dumps(cert_sn)}')
    return "{" + ",".join(members) + "}"


def securitypay_result(
    order_string: str,
    private_key: rsa.RSAPrivateKey,
    *,
    success: str = "true",
    url_encode_sign: bool = False,
    declared_sign_type: str = "RSA",
) -> str:
    """The legacy SDK ``result`` Alipay returns for a ``mobile.securitypay.pay`` order string.

    The merchant's order string without its ``&sign=...&sign_type=...`` tail, then ``&success="<success>"``;
    Alipay signs that text (SHA1withRSA, UTF-8) and appends ``&sign_type="RSA"&sign="<base64>"``, the
    signature not URL-encoded unless ``url_encode_sign``.
    """
    content = order_string.split('&sign="', 1)[0] + f'&success="{success}"'
    sign = b64encode(LocalKeySigner(private_key, SignType.RSA).sign(content.encode("utf-8")))
    if url_encode_sign:
        sign = quote(sign, safe="")
    return f'{content}&sign_type="{declared_sign_type}"&sign="{sign}"'


def certificate(
    subject_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    issuer: x509.Name = TEST_ISSUER,
    subject: x509.Name | None = None,
    serial: int = 1,
) -> bytes:
    """A PEM certificate for ``subject_key``'s public key, signed with SHA-256 by ``issuer_key`` (default: itself).

    An EC ``issuer_key`` gives an ECDSA-signed certificate (the kind the root SN skips).
    """
    signer = issuer_key or subject_key
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject or issuer)
        .issuer_name(issuer)
        .public_key(subject_key.public_key())
        .serial_number(serial)
        .not_valid_before(datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2034, 1, 1, tzinfo=datetime.UTC))
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)
