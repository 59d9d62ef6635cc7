"""Antom test helpers: a key playing Antom's, and messages signed as Antom signs them.

The signer is written from the protocol text with ``cryptography`` alone, not with ``antom.signed_content``, so that
a mistake there cannot confirm itself.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chalicelib.alipay.signing import AlipayPublicKeys
from tests.keygen import rsa_key

CLIENT_ID = "2188120000000001"
NOTIFY_URL = "https://pay.example.com/prod/antom/notify"
PATH = "/prod/antom/notify"
TIME = "1764930640000"


def antom_key() -> rsa.RSAPrivateKey:
    return rsa_key("antom")


def keys() -> AlipayPublicKeys:
    return AlipayPublicKeys.of(antom_key().public_key())


def sign(
    body: bytes,
    *,
    key: rsa.RSAPrivateKey | None = None,
    path: str = PATH,
    client_id: str = CLIENT_ID,
    time: str = TIME,
    time_header: str = "request-time",
    algorithm: str = "RSA256",
) -> dict[str, str]:
    """Headers of a message signed as Antom signs: ``POST <path>\\n<client-id>.<time>.<body>``, SHA256withRSA."""
    content = b"POST " + path.encode() + b"\n" + client_id.encode() + b"." + time.encode() + b"." + body
    signature = (key or antom_key()).sign(content, padding.PKCS1v15(), hashes.SHA256())
    encoded = quote(base64.b64encode(signature).decode(), safe="")
    return {
        "client-id": client_id,
        time_header: time,
        "signature": f"algorithm={algorithm},keyVersion=1,signature={encoded}",
    }


def refund_notification(
    out_request_no: str, status: str = "SUCCESS", *, value: str = "234", currency: str = "USD", metadata: str = ""
) -> bytes:
    """A notifyRefund's body (``metadata``: the order's number we gave the refund request; Antom may leave it out)."""
    data: dict[str, Any] = {
        "notifyType": "REFUND_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "refundStatus": status,
        "refundRequestId": out_request_no,
        "refundId": f"20261126114010800100188000000{out_request_no}",
        "refundAmount": {"currency": currency, "value": value},
        "refundTime": "2026-11-27T00:40:00+08:00",
    }
    if metadata:
        data["metadata"] = metadata
    return json.dumps(data, separators=(",", ":")).encode()
