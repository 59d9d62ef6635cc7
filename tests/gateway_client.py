"""The app behind the local stack's API Gateway emulation, authorizers included, without a server or a socket.

Tests call it like Chalice's test client (``client.http.post(path, headers=..., body=...)``), and each request is
authenticated as API Gateway would require for its route: an ID token of the local user pool for buyer routes
(``/orders...``, as ``buyer``), a SigV4 signature with the merchant's key for merchant routes (``/merchant/...``).
``anonymous=True`` sends requests as they are, to show the refusals.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from chalice import Chalice
from cryptography.hazmat.primitives import serialization

from devstack.api_server import ApiGateway
from devstack.authorizers import Authorizers, MerchantCredential, caller_kind
from devstack.identity import issue_token
from tests.keygen import rsa_key

BUYER = "alice"
CLIENT_ID = "test-buyer-app"
ISSUER = "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_TestPool"
REGION = "us-east-1"
MERCHANT_ARN = "arn:aws:iam::123456789012:role/merchant-backend"
MERCHANT_KEY = ("AKIATESTMERCHANT", "test-merchant-secret")
HOST = "pay.example.com"


@cache
def _pool_key_pem() -> tuple[bytes, bytes]:
    key = rsa_key("user-pool")
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def authorizers() -> Authorizers:
    credential = MerchantCredential(MERCHANT_KEY[1], MERCHANT_ARN, "123456789012")
    return Authorizers(_pool_key_pem()[1], ISSUER, REGION, {MERCHANT_KEY[0]: credential})


def id_token(sub: str = BUYER, audience: str = CLIENT_ID, expires_in: int = 3600) -> str:
    return issue_token(_pool_key_pem()[0], ISSUER, sub, audience, expires_in, time.time())


def sigv4_headers(method: str, path: str, body: bytes, headers: dict[str, str]) -> dict[str, str]:
    request = AWSRequest(method=method, url=f"https://{HOST}{path}", data=body, headers={"Host": HOST, **headers})
    SigV4Auth(Credentials(*MERCHANT_KEY), "execute-api", REGION).add_auth(request)
    return dict(request.headers.items())


@dataclass
class Answer:
    status_code: int
    headers: dict[str, str]
    body: bytes

    @property
    def json_body(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class _Http:
    gateway: ApiGateway
    buyer: str
    anonymous: bool
    audience: str = CLIENT_ID

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        sent = {"Host": HOST, **(headers or {})}
        route = path.split("?", 1)[0]
        if not self.anonymous:
            kind = caller_kind(route)
            if kind == "buyer" and "Authorization" not in sent:
                sent["Authorization"] = id_token(self.buyer, self.audience)
            elif kind == "merchant" and "Authorization" not in sent:
                sent = sigv4_headers(method, path, body, sent)
        answer = self.gateway.handle(method, path, list(sent.items()), body, "203.0.113.7")
        return Answer(answer.status, dict(answer.headers), answer.body)

    def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("GET", path, headers)

    def delete(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        return self.request("DELETE", path, headers)

    def post(self, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        return self.request("POST", path, headers, body)

    def put(self, path: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Answer:
        return self.request("PUT", path, headers, body)


@dataclass
class GatewayClient:
    """``GatewayClient(app).http.post(...)``: the app behind API Gateway, as ``buyer`` or the merchant by route."""

    app: Chalice
    buyer: str = BUYER
    anonymous: bool = False
    audience: str = CLIENT_ID
    http: _Http = field(init=False)

    def __post_init__(self) -> None:
        self.http = _Http(ApiGateway(self.app, authorizers()), self.buyer, self.anonymous, self.audience)
