"""Who may call what on the REST API, as pure functions over the swagger ``chalice package`` generates.

Three kinds of caller, told apart by path prefix (``chalicelib/topology.py``): buyers under ``BUYER_PREFIX`` (a
Cognito user pool authorizer), the merchant's backend and operators under ``MERCHANT_PREFIX`` (AWS IAM: SigV4), and
everything else public (Alipay's webhook, the browser's return, health). The functions here work over whatever
routes the app has, so a route added under a prefix is guarded without a change here; CDK tokens in the swagger
(the integration URIs, the user pool ARN) are plain strings to them and pass through untouched.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

COGNITO = "CognitoUserPool"
SIGV4 = "sigv4"  # the name Chalice itself gives an IAMAuthorizer's scheme
# A swagger path item's operations (the rest of its keys, e.g. "parameters", are not operations). OPTIONS is CORS's
# preflight, which carries no credentials and which API Gateway answers itself: it never gets an authorizer.
OPERATIONS = frozenset({"get", "put", "post", "delete", "patch", "head", "x-amazon-apigateway-any-method"})
PREFLIGHT = "options"
INVOKE = "execute-api:Invoke"
_PATH_PARAMETER = re.compile(r"\{[^}/]+\}")


@dataclass(frozen=True)
class Authorizer:
    """A swagger security scheme, by the name the operations refer to it by."""

    name: str
    scheme: Mapping[str, Any]


def cognito_authorizer(user_pool_arn: str) -> Authorizer:
    """API Gateway's Cognito user pool authorizer: the ID token in ``Authorization`` (signature, issuer, expiry)."""
    return Authorizer(
        COGNITO,
        {
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "x-amazon-apigateway-authtype": "cognito_user_pools",
            "x-amazon-apigateway-authorizer": {"type": "cognito_user_pools", "providerARNs": [user_pool_arn]},
        },
    )


SIGV4_AUTHORIZER = Authorizer(
    SIGV4,
    {"type": "apiKey", "name": "Authorization", "in": "header", "x-amazon-apigateway-authtype": "awsSigv4"},
)


def under(path: str, prefix: str) -> bool:
    """``path`` is ``prefix`` itself or below it (``/orders`` and ``/orders/x``, never ``/ordersx``)."""
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def authorizer_of(path: str, authorizers: Mapping[str, Authorizer | None]) -> Authorizer | None:
    """The authorizer of the longest prefix ``path`` is under; None: public."""
    prefixes = sorted((p for p in authorizers if under(path, p)), key=len, reverse=True)
    return authorizers[prefixes[0]] if prefixes else None


def authorize_by_prefix(definition: Mapping[str, Any], authorizers: Mapping[str, Authorizer | None]) -> dict[str, Any]:
    """A copy of ``definition`` in which every operation needs exactly its prefix's authorizer, and any other none.

    ``authorizers`` maps a path prefix to its authorizer; None leaves the prefix public (``orders_auth=none``). The
    result is the whole truth: a ``security`` the app's own swagger carried on a public route is removed.
    """
    result = copy.deepcopy(dict(definition))
    used: dict[str, Authorizer] = {}
    for path, item in result.get("paths", {}).items():
        authorizer = authorizer_of(path, authorizers)
        for method, operation in item.items():
            if method not in OPERATIONS:
                continue
            if authorizer is None:
                operation.pop("security", None)
            else:
                operation["security"] = [{authorizer.name: []}]
                used[authorizer.name] = authorizer
    if used:
        definitions = dict(result.get("securityDefinitions", {}))
        definitions.update({name: dict(a.scheme) for name, a in used.items()})
        result["securityDefinitions"] = definitions
    return result


def invoke_resource(stage: str, method: str, path: str) -> str:
    """The ``execute-api:Invoke`` resource of one operation as a resource policy names it (path parameters: ``*``)."""
    verb = "*" if method == "x-amazon-apigateway-any-method" else method.upper()
    return f"execute-api:/{stage}/{verb}{_PATH_PARAMETER.sub('*', path)}"


def prefix_resources(prefix: str) -> tuple[str, str]:
    """A prefix and everything under it, for any method, below a stage: ``*/merchant`` and ``*/merchant/*``."""
    prefix = prefix.rstrip("/")
    return f"*{prefix}", f"*{prefix}/*"


def resource_policy(
    definition: Mapping[str, Any], *, stage: str, merchant_prefix: str, merchant_principals: Sequence[Any]
) -> dict[str, Any]:
    """The REST API's resource policy: other accounts' merchant roles admitted, every other route still open.

    With a resource policy, API Gateway refuses whatever it does not allow to a caller without IAM credentials, so
    every operation that needs no SigV4 (the public routes, Alipay's webhook among them, the buyer routes, whose
    Cognito authorizer still checks the token, and CORS preflights) is allowed to anyone, one operation at a time.
    The SigV4 routes are allowed to ``merchant_principals`` only: an allow to anyone there would admit any
    signed caller of any account. Same-account callers need no statement here: their IAM policy is enough.
    """
    open_to_anyone: list[str] = []
    for path, item in definition.get("paths", {}).items():
        for method, operation in item.items():
            if method not in OPERATIONS and method != PREFLIGHT:
                continue
            if {SIGV4: []} in operation.get("security", []):
                continue
            open_to_anyone.append(invoke_resource(stage, method, path))
    statements: list[dict[str, Any]] = []
    if open_to_anyone:
        statements.append(
            {
                "Sid": "AnyoneCallsThePublicAndBuyerRoutes",
                "Effect": "Allow",
                "Principal": "*",
                "Action": INVOKE,
                "Resource": sorted(open_to_anyone),
            }
        )
    if merchant_principals:
        statements.append(
            {
                "Sid": "MerchantPrincipalsCallTheMerchantRoutes",
                "Effect": "Allow",
                "Principal": {"AWS": list(merchant_principals)},
                "Action": INVOKE,
                "Resource": [f"execute-api:/{stage}/{r}" for r in prefix_resources(merchant_prefix)],
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


# API Gateway's own refusals (before any function runs), in the product's error shape {"code", "message"}.
# $context.error.messageString is API Gateway's message already quoted as a JSON string, so the body stays JSON.
REFUSALS: Mapping[str, tuple[str, str]] = {
    # a buyer route without a valid Cognito token (none, expired, badly signed)
    "UNAUTHORIZED": ("401", "unauthorized"),
    # a SigV4 caller whose IAM or resource policy does not allow the route, or a Cognito/Lambda authorizer's deny
    "ACCESS_DENIED": ("403", "forbidden"),
    # a merchant route without SigV4 (a buyer's token included, which API Gateway reads as an incomplete
    # signature), and any unknown route or method
    "MISSING_AUTHENTICATION_TOKEN": ("403", "forbidden"),
    # a SigV4 signature that does not match
    "INVALID_SIGNATURE": ("403", "forbidden"),
    # expired AWS credentials (a stale session token)
    "EXPIRED_TOKEN": ("403", "forbidden"),
    "THROTTLED": ("429", "throttled"),
    # a request body over API Gateway's 10 MB payload limit
    "REQUEST_TOO_LARGE": ("413", "payload_too_large"),
    # the function failed or answered malformed (502), or timed out (504): API Gateway's status is kept ("")
    "DEFAULT_5XX": ("", "internal_error"),
}


def gateway_responses(refusals: Mapping[str, tuple[str, str]] = REFUSALS) -> dict[str, Any]:
    """``x-amazon-apigateway-gateway-responses`` for ``refusals`` (response type -> status, code); an empty status
    keeps the one API Gateway chose."""
    return {
        kind: {
            **({"statusCode": status} if status else {}),
            "responseParameters": {"gatewayresponse.header.Content-Type": "'application/json'"},
            "responseTemplates": {
                "application/json": f'{{"code": "{code}", "message": $context.error.messageString}}'
            },
        }
        for kind, (status, code) in refusals.items()
    }
