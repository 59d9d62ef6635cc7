"""Antom test helpers: a key playing Antom's, and messages signed as Antom signs them.

The signer is written from the protocol text with ``cryptography`` alone, not with ``antom.signed_content``, so that
a mistake there cannot confirm itself.
"""

from __future__ import annotations

import base64
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
