"""API Gateway's two authorizers, as the local stack runs them in front of the Chalice app.

- Buyers: a Cognito user pool authorizer. The ``Authorization`` header carries an ID token (with or without
  ``Bearer ``); API Gateway checks its signature against the pool's keys, its issuer, its expiry and that it is an ID
  token, but not its audience (the function does: chalicelib/routes/callers.py). The claims go into
  ``requestContext.authorizer.claims``.
- The merchant's backend and operators: AWS IAM. The request is signed with SigV4 (service ``execute-api``, the
  stack's region); API Gateway recomputes the signature with the caller's secret and refuses a stale date (more than
  15 minutes off). The caller goes into ``requestContext.identity`` (``userArn``, ``caller``, ``accessKey``).

Refusals are what API Gateway answers, in the product's error shape (infra/ sets the same gateway responses):
``401 unauthorized`` for a buyer route, ``403 forbidden`` for a merchant route or an unknown route.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from chalicelib import topology

SIGV4_ALGORITHM = "AWS4-HMAC-SHA256"
SIGV4_SERVICE = "execute-api"
MAX_CLOCK_SKEW = timedelta(minutes=15)  # API Gateway: "Signature expired" beyond this
TOKEN_LEEWAY_SECONDS = 0


class Refused(Exception):
    """API Gateway refuses the request before the function runs."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def unauthorized(message: str) -> Refused:
    return Refused(401, "unauthorized", message)


def forbidden(message: str) -> Refused:
    return Refused(403, "forbidden", message)


def caller_kind(path: str) -> str:
    """Which authorizer guards a path: ``buyer``, ``merchant`` or ``public`` (infra/ wires the same prefixes)."""
    for prefix, kind in ((topology.BUYER_PREFIX, "buyer"), (topology.MERCHANT_PREFIX, "merchant")):
        if path == prefix or path.startswith(prefix + "/"):
            return kind
    return "public"


@dataclass(frozen=True, slots=True)
class MerchantCredential:
    """One IAM access key the local stack knows: its secret and the identity it stands for."""

    secret_access_key: str
    arn: str
    account_id: str


@dataclass(frozen=True, slots=True)
class Authorizers:
    """The authorizers' settings: the user pool's signing key and issuer, the IAM keys, the region."""

    identity_public_key_pem: bytes
    issuer: str
    region: str
    credentials: Mapping[str, MerchantCredential] = field(default_factory=dict)

    def buyer_claims(self, headers: Mapping[str, str], now: datetime) -> dict[str, Any]:
        """The verified claims of the request's ID token, or ``Refused`` (401)."""
        import jwt  # PyJWT: the local identity provider's tokens are RS256 JWTs, as Cognito's are

        token = _header(headers, "authorization")
        if not token:
            raise unauthorized("Unauthorized: no token in the Authorization header")
        token = token.removeprefix("Bearer ").strip()
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.identity_public_key_pem,
                algorithms=["RS256"],
                issuer=self.issuer,
                options={"verify_aud": False, "require": ["exp", "iss", "sub", "token_use"], "verify_iat": False},
                leeway=TOKEN_LEEWAY_SECONDS,
            )
        except jwt.ExpiredSignatureError:
            raise unauthorized("Unauthorized: the token has expired") from None
        except jwt.PyJWTError as exc:
            raise unauthorized(f"Unauthorized: {exc}") from None
        if claims.get("token_use") != "id":
            raise unauthorized("Unauthorized: not an ID token")
        del now  # PyJWT checks expiry against the clock, as API Gateway does
        return {name: str(value) for name, value in claims.items()}

    def merchant_identity(
        self, method: str, raw_path: str, query: str, headers: Mapping[str, str], body: bytes, now: datetime
    ) -> dict[str, str]:
        """The IAM caller of a SigV4-signed request, or ``Refused`` (403)."""
        authorization = _header(headers, "authorization")
        if not authorization or not authorization.startswith(SIGV4_ALGORITHM + " "):
            raise forbidden("Missing Authentication Token: this route needs a SigV4-signed request (AWS IAM)")
        parts = _sigv4_parts(authorization)
        scope = parts["Credential"].split("/")
        if len(scope) != 5 or scope[4] != "aws4_request":
            raise forbidden("Authorization header requires a valid Credential")
        access_key, date, region, service = scope[0], scope[1], scope[2], scope[3]
        if region != self.region or service != SIGV4_SERVICE:
            raise forbidden(f"Credential should be scoped to a valid region ({self.region}) and service execute-api")
        credential = self.credentials.get(access_key)
        if credential is None:
            raise forbidden("The security token included in the request is invalid")
        amz_date = _header(headers, "x-amz-date")
        try:
            signed_at = datetime.strptime(amz_date or "", "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        except ValueError:
            raise forbidden("Authorization header requires an X-Amz-Date header") from None
        if abs(now - signed_at) > MAX_CLOCK_SKEW:
            raise forbidden("Signature expired: the request's date is more than 15 minutes from the server's")
        if not amz_date or not amz_date.startswith(date):
            raise forbidden("Credential date does not match X-Amz-Date")
        signed_headers = parts["SignedHeaders"].split(";")
        if "host" not in signed_headers:
            raise forbidden("The host header must be signed")
        expected = _sigv4_signature(
            method, raw_path, query, headers, signed_headers, body, amz_date, access_key, credential, self.region
        )
        if not hmac.compare_digest(expected, parts["Signature"]):
            raise forbidden(
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method."
            )
        return {
            "accountId": credential.account_id,
            "caller": access_key,
            "accessKey": access_key,
            "userArn": credential.arn,
            "user": access_key,
        }


def _header(headers: Mapping[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name), None)


def _sigv4_parts(authorization: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for item in authorization[len(SIGV4_ALGORITHM) + 1 :].split(","):
        name, _, value = item.strip().partition("=")
        parts[name] = value
    for required in ("Credential", "SignedHeaders", "Signature"):
        if not parts.get(required):
            raise forbidden(f"Authorization header requires '{required}' parameter")
    return parts


def _sigv4_signature(
    method: str,
    raw_path: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: list[str],
    body: bytes,
    amz_date: str,
    access_key: str,
    credential: MerchantCredential,
    region: str,
) -> str:
    """The signature botocore's SigV4 signer gives the same request: the signer itself recomputes it."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    host = _header(headers, "host") or ""
    url = f"http://{host}{raw_path}" + (f"?{query}" if query else "")
    signed = {name: (_header(headers, name) or "") for name in signed_headers}
    request = AWSRequest(method=method, url=url, data=body, headers=signed)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(access_key, credential.secret_access_key), SIGV4_SERVICE, region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    return str(signer.signature(string_to_sign, request))
