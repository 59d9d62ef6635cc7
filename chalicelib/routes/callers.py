"""Who is calling: read only from the request context API Gateway fills in, never from a header a client could send.

Buyer routes sit behind a Cognito user pool authorizer: API Gateway has checked the ID token's signature, issuer and
expiry and put its claims in ``requestContext.authorizer.claims``; it has not checked the audience, so this does.
Merchant routes sit behind AWS IAM: API Gateway has checked the SigV4 signature and put the caller in
``requestContext.identity``. An assumed role's ARN is reduced to the role (``arn:aws:sts::1:assumed-role/R``,
without the session name), so that idempotency and audit survive a new session.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from chalice.app import Request

from chalicelib.services.errors import Unauthenticated


def buyer(request: Request, client_ids: Collection[str]) -> str:
    """The signed-in buyer's ``sub``; ``Unauthenticated`` for a token of another app client or none at all."""
    context: Mapping[str, Any] = request.context or {}
    claims = (context.get("authorizer") or {}).get("claims") or {}
    sub, audience = claims.get("sub"), claims.get("aud") or claims.get("client_id")
    if not isinstance(sub, str) or not sub:
        # Only reachable when the route has no authorizer: a deployment mistake, never a buyer's.
        raise Unauthenticated("no buyer identity: this route must sit behind the user pool authorizer")
    if audience not in client_ids:
        raise Unauthenticated("the ID token was issued to another app client")
    return sub


def merchant(request: Request) -> str:
    """The calling IAM identity's ARN (an assumed role without its session name)."""
    context: Mapping[str, Any] = request.context or {}
    arn = (context.get("identity") or {}).get("userArn")
    if not isinstance(arn, str) or not arn.startswith("arn:"):
        raise Unauthenticated("no IAM identity: this route must sit behind AWS IAM authorization")
    prefix, _, rest = arn.partition(":assumed-role/")
    if rest:
        role = rest.split("/", 1)[0]
        return f"{prefix}:assumed-role/{role}"
    return arn
