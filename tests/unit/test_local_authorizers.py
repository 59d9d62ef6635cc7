"""The local stack's API Gateway authorizers refuse exactly what API Gateway's refuse, and fill the same context."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devstack.authorizers import Authorizers, MerchantCredential, Refused, caller_kind
from devstack.identity import issue_token

ISSUER = "http://127.0.0.1:8002"
REGION = "us-east-1"
ARN = "arn:aws:iam::123456789012:role/merchant-backend"
ACCESS_KEY = "AKIALOCALTEST"
SECRET = "local-secret"
HOST = "127.0.0.1:8000"


def _pem_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


PRIVATE, PUBLIC = _pem_pair()
OTHER_PRIVATE, _ = _pem_pair()
AUTHORIZERS = Authorizers(PUBLIC, ISSUER, REGION, {ACCESS_KEY: MerchantCredential(SECRET, ARN, "123456789012")})
NOW = datetime.now(UTC)


def token(sub: str = "alice", *, key: bytes = PRIVATE, issuer: str = ISSUER, expires_in: int = 3600) -> str:
    return issue_token(key, issuer, sub, "some-app-client", expires_in, NOW.timestamp())


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/orders", "buyer"),
        ("/orders/T1/client-result", "buyer"),
        ("/merchant/orders/T1/refunds", "merchant"),
        ("/merchant", "merchant"),
        ("/alipay/notify", "public"),
        ("/ordersx", "public"),
        ("/health", "public"),
    ],
)
def test_each_path_has_the_authorizer_of_its_prefix(path: str, kind: str) -> None:
    assert caller_kind(path) == kind


def test_a_valid_id_token_gives_its_claims_with_or_without_bearer() -> None:
    for header in (token(), f"Bearer {token()}"):
        claims = AUTHORIZERS.buyer_claims({"Authorization": header}, NOW)
        assert (claims["sub"], claims["token_use"], claims["iss"]) == ("alice", "id", ISSUER)


def test_the_audience_is_left_to_the_function_as_api_gateway_leaves_it() -> None:
    claims = AUTHORIZERS.buyer_claims({"Authorization": token()}, NOW)
    assert claims["aud"] == "some-app-client"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "not-a-jwt",
        token(expires_in=-10),
        token(key=OTHER_PRIVATE),
        token(issuer="http://elsewhere"),
    ],
    ids=["missing", "empty", "garbage", "expired", "wrong-key", "wrong-issuer"],
)
def test_a_buyer_route_refuses_a_missing_or_bad_token_with_401(header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    with pytest.raises(Refused) as refused:
        AUTHORIZERS.buyer_claims(headers, NOW)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")


def test_an_access_token_is_not_an_id_token() -> None:
    import jwt

    access = jwt.encode(
        {"sub": "alice", "iss": ISSUER, "exp": int(NOW.timestamp()) + 60, "token_use": "access"},
        PRIVATE,
        algorithm="RS256",
    )
    with pytest.raises(Refused) as refused:
        AUTHORIZERS.buyer_claims({"Authorization": access}, NOW)
    assert refused.value.status == 401


def signed(
    method: str = "POST",
    path: str = "/merchant/orders",
    body: bytes = b'{"a": 1}',
    *,
    secret: str = SECRET,
    access_key: str = ACCESS_KEY,
    region: str = REGION,
    service: str = "execute-api",
) -> dict[str, str]:
    request = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body, headers={"Host": HOST})
    SigV4Auth(Credentials(access_key, secret), service, region).add_auth(request)
    return dict(request.headers.items())


def test_a_sigv4_signed_call_gives_the_callers_identity() -> None:
    identity = AUTHORIZERS.merchant_identity("POST", "/merchant/orders", "", signed(), b'{"a": 1}', NOW)
    assert (identity["userArn"], identity["accessKey"], identity["accountId"]) == (ARN, ACCESS_KEY, "123456789012")


def test_a_signed_call_with_a_query_string_verifies() -> None:
    headers = signed("GET", "/merchant/orders?limit=5&cursor=a%2Fb", b"")
    assert AUTHORIZERS.merchant_identity("GET", "/merchant/orders", "limit=5&cursor=a%2Fb", headers, b"", NOW)


@pytest.mark.parametrize(
    ("headers", "method", "body"),
    [
        ({}, "POST", b'{"a": 1}'),
        ({"Authorization": f"Bearer {token()}"}, "POST", b'{"a": 1}'),
        (signed(), "POST", b'{"a": 2}'),
        (signed(), "PUT", b'{"a": 1}'),
        (signed(secret="wrong"), "POST", b'{"a": 1}'),
        (signed(access_key="AKIAUNKNOWN"), "POST", b'{"a": 1}'),
        (signed(region="eu-west-1"), "POST", b'{"a": 1}'),
        (signed(service="s3"), "POST", b'{"a": 1}'),
    ],
    ids=["unsigned", "buyer-token", "tampered-body", "other-method", "bad-secret", "unknown-key", "region", "service"],
)
def test_a_merchant_route_refuses_what_is_not_a_valid_sigv4_call_with_403(
    headers: dict[str, str], method: str, body: bytes
) -> None:
    with pytest.raises(Refused) as refused:
        AUTHORIZERS.merchant_identity(method, "/merchant/orders", "", headers, body, NOW)
    assert (refused.value.status, refused.value.code) == (403, "forbidden")


def test_a_stale_signature_is_refused() -> None:
    later = NOW + timedelta(minutes=16)
    with pytest.raises(Refused) as refused:
        AUTHORIZERS.merchant_identity("POST", "/merchant/orders", "", signed(), b'{"a": 1}', later)
    assert "expired" in refused.value.message
