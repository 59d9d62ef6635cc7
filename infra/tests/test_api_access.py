"""Who may call what, on a synthetic swagger: one authorizer per path prefix, the resource policy, the refusals."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from stacks import api_access
from stacks.api_access import COGNITO, SIGV4

POOL = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
# Every value of AWS::ApiGateway::GatewayResponse ResponseType (API Gateway's GatewayResponse.responseType).
RESPONSE_TYPES = frozenset(
    {
        "DEFAULT_4XX", "DEFAULT_5XX", "RESOURCE_NOT_FOUND", "UNAUTHORIZED", "INVALID_API_KEY", "ACCESS_DENIED",
        "AUTHORIZER_FAILURE", "AUTHORIZER_CONFIGURATION_ERROR", "INVALID_SIGNATURE", "EXPIRED_TOKEN",
        "MISSING_AUTHENTICATION_TOKEN", "INTEGRATION_FAILURE", "INTEGRATION_TIMEOUT", "API_CONFIGURATION_ERROR",
        "UNSUPPORTED_MEDIA_TYPE", "BAD_REQUEST_PARAMETERS", "BAD_REQUEST_BODY", "REQUEST_TOO_LARGE", "THROTTLED",
        "QUOTA_EXCEEDED", "WAF_FILTERED",
    }
)  # fmt: skip


def operation(**extra: Any) -> dict[str, Any]:
    return {"x-amazon-apigateway-integration": {"type": "aws_proxy", "uri": "${Token[TOKEN.1]}"}, **extra}


def swagger() -> dict[str, Any]:
    """Buyer, merchant and public routes as Chalice generates them, with the app's own quirks."""
    return {
        "swagger": "2.0",
        "paths": {
            "/health": {"get": operation()},
            # A public route the app itself put an authorizer on: the prefixes are the whole truth.
            "/alipay/notify": {"post": operation(security=[{"SomethingElse": []}])},
            "/alipay/return": {"get": operation()},
            "/orders": {"get": operation(), "post": operation()},
            "/orders/{out_trade_no}": {"get": operation(), "options": operation()},
            "/orders/{out_trade_no}/client-result": {"post": operation()},
            "/merchant/products": {"get": operation()},
            "/merchant/products/{sku}": {
                "parameters": [{"name": "sku", "in": "path"}],
                "get": operation(),
                "put": operation(),
                "delete": operation(),
                "options": operation(),
            },
            "/merchant/orders": {"post": operation()},
            "/merchant/orders/{out_trade_no}/refunds": {"post": operation()},
            "/merchant/dlq/redrive": {"x-amazon-apigateway-any-method": operation()},
            # Not under a prefix: a segment must match as a whole.
            "/ordersx": {"get": operation()},
            "/merchants": {"get": operation()},
        },
    }


def authorized(buyer: api_access.Authorizer | None = None) -> dict[str, Any]:
    buyer = buyer or api_access.cognito_authorizer(POOL)
    return api_access.authorize_by_prefix(swagger(), {"/orders": buyer, "/merchant": api_access.SIGV4_AUTHORIZER})


def security(definition: dict[str, Any]) -> dict[tuple[str, str], Any]:
    return {
        (path, method): op.get("security")
        for path, item in definition["paths"].items()
        for method, op in item.items()
        if method != "parameters"
    }


def test_buyer_routes_get_cognito_merchant_routes_sigv4_and_every_other_route_none() -> None:
    found = security(authorized())
    assert {key for key, value in found.items() if value == [{COGNITO: []}]} == {
        ("/orders", "get"),
        ("/orders", "post"),
        ("/orders/{out_trade_no}", "get"),
        ("/orders/{out_trade_no}/client-result", "post"),
    }
    assert {key for key, value in found.items() if value == [{SIGV4: []}]} == {
        ("/merchant/products", "get"),
        ("/merchant/products/{sku}", "get"),
        ("/merchant/products/{sku}", "put"),
        ("/merchant/products/{sku}", "delete"),
        ("/merchant/orders", "post"),
        ("/merchant/orders/{out_trade_no}/refunds", "post"),
        ("/merchant/dlq/redrive", "x-amazon-apigateway-any-method"),
    }
    public = {key for key, value in found.items() if value is None}
    assert {("/health", "get"), ("/alipay/notify", "post"), ("/alipay/return", "get")} <= public
    assert {("/ordersx", "get"), ("/merchants", "get")} <= public


def test_the_webhook_loses_an_authorizer_the_app_put_on_it() -> None:
    assert "security" not in authorized()["paths"]["/alipay/notify"]["post"]


def test_cors_preflights_and_path_item_keys_that_are_not_operations_are_left_alone() -> None:
    definition = authorized()
    assert "security" not in definition["paths"]["/orders/{out_trade_no}"]["options"]
    assert "security" not in definition["paths"]["/merchant/products/{sku}"]["options"]
    assert definition["paths"]["/merchant/products/{sku}"]["parameters"] == [{"name": "sku", "in": "path"}]


def test_the_sigv4_scheme_is_api_gateways_aws_iam_authorization_and_cognito_names_the_pool() -> None:
    schemes = authorized()["securityDefinitions"]
    assert schemes[SIGV4] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }
    assert schemes[COGNITO]["x-amazon-apigateway-authtype"] == "cognito_user_pools"
    assert schemes[COGNITO]["x-amazon-apigateway-authorizer"] == {"type": "cognito_user_pools", "providerARNs": [POOL]}


def test_a_buyer_prefix_without_an_authorizer_is_public_and_the_merchant_routes_stay_signed() -> None:
    definition = api_access.authorize_by_prefix(swagger(), {"/orders": None, "/merchant": api_access.SIGV4_AUTHORIZER})
    found = security(definition)
    assert found[("/orders", "post")] is None
    assert found[("/merchant/orders", "post")] == [{SIGV4: []}]
    assert set(definition["securityDefinitions"]) == {SIGV4}


def test_a_swagger_without_routes_under_a_prefix_gets_no_scheme_for_it() -> None:
    definition = {"paths": {"/health": {"get": operation()}, "/orders": {"post": operation()}}}
    authorized_definition = api_access.authorize_by_prefix(
        definition, {"/orders": api_access.cognito_authorizer(POOL), "/merchant": api_access.SIGV4_AUTHORIZER}
    )
    assert set(authorized_definition["securityDefinitions"]) == {COGNITO}


def test_the_transform_returns_a_copy_and_leaves_its_input_alone() -> None:
    original = swagger()
    kept = copy.deepcopy(original)
    api_access.authorize_by_prefix(original, {"/orders": api_access.cognito_authorizer(POOL)})
    assert original == kept


def test_the_longest_prefix_decides() -> None:
    nested = {"/merchant": api_access.SIGV4_AUTHORIZER, "/merchant/public": None}
    assert api_access.authorizer_of("/merchant/public/x", nested) is None
    assert api_access.authorizer_of("/merchant/x", nested) == api_access.SIGV4_AUTHORIZER
    assert api_access.authorizer_of("/", nested) is None


def resource_policy(principals: list[Any]) -> dict[str, Any]:
    return api_access.resource_policy(
        authorized(), stage="api", merchant_prefix="/merchant", merchant_principals=principals
    )


def test_the_resource_policy_leaves_every_route_without_sigv4_open_to_anyone() -> None:
    opened, _ = resource_policy(["111122223333"])["Statement"]
    assert (opened["Effect"], opened["Principal"], opened["Action"]) == ("Allow", "*", "execute-api:Invoke")
    assert set(opened["Resource"]) == {
        "execute-api:/api/GET/health",
        "execute-api:/api/POST/alipay/notify",  # Alipay's webhook: never locked out
        "execute-api:/api/GET/alipay/return",
        "execute-api:/api/GET/orders",
        "execute-api:/api/POST/orders",
        "execute-api:/api/GET/orders/*",  # the Cognito authorizer still checks the buyer's token
        "execute-api:/api/OPTIONS/orders/*",
        "execute-api:/api/POST/orders/*/client-result",
        "execute-api:/api/OPTIONS/merchant/products/*",  # a preflight carries no credentials
        "execute-api:/api/GET/ordersx",
        "execute-api:/api/GET/merchants",
    }


def test_the_resource_policy_admits_only_the_named_principals_to_the_merchant_routes() -> None:
    _, merchant = resource_policy(["111122223333", "arn:aws:iam::111122223333:role/Backend"])["Statement"]
    assert merchant["Principal"] == {"AWS": ["111122223333", "arn:aws:iam::111122223333:role/Backend"]}
    assert merchant["Resource"] == ["execute-api:/api/*/merchant", "execute-api:/api/*/merchant/*"]
    # An allow to anyone on a SigV4 route would admit any signed caller of any account.
    opened = resource_policy(["111122223333"])["Statement"][0]
    assert not [r for r in opened["Resource"] if "/merchant/" in r and "OPTIONS" not in r]


@pytest.mark.parametrize(
    ("method", "path", "resource"),
    [
        ("post", "/alipay/notify", "execute-api:/api/POST/alipay/notify"),
        ("get", "/orders/{out_trade_no}", "execute-api:/api/GET/orders/*"),
        ("put", "/merchant/products/{sku}", "execute-api:/api/PUT/merchant/products/*"),
        ("x-amazon-apigateway-any-method", "/x/{proxy+}", "execute-api:/api/*/x/*"),
    ],
)
def test_an_operation_is_named_as_api_gateway_expands_it(method: str, path: str, resource: str) -> None:
    assert api_access.invoke_resource("api", method, path) == resource


def test_every_refusal_is_an_api_gateway_response_type_and_renders_the_products_error_shape() -> None:
    responses = api_access.gateway_responses()
    assert set(responses) <= RESPONSE_TYPES
    assert "statusCode" not in responses["DEFAULT_5XX"]
    for kind, response in responses.items():
        assert response["responseParameters"] == {"gatewayresponse.header.Content-Type": "'application/json'"}
        (template,) = response["responseTemplates"].values()
        # API Gateway renders $context.error.messageString as a quoted JSON string, quotes in it escaped.
        body = template.replace("$context.error.messageString", json.dumps('Invalid "key" \\ value'))
        rendered = json.loads(body)
        assert rendered == {"code": api_access.REFUSALS[kind][1], "message": 'Invalid "key" \\ value'}


def test_refusals_are_401_for_a_buyer_and_403_forbidden_for_a_merchant_route_or_an_unknown_route() -> None:
    statuses = {kind: status for kind, (status, _) in api_access.REFUSALS.items()}
    assert statuses.pop("UNAUTHORIZED") == "401"
    assert statuses.pop("THROTTLED") == "429"
    assert statuses.pop("REQUEST_TOO_LARGE") == "413"
    assert statuses.pop("DEFAULT_5XX") == ""  # the function's failure keeps API Gateway's 502 or 504
    assert set(statuses) == {"ACCESS_DENIED", "MISSING_AUTHENTICATION_TOKEN", "INVALID_SIGNATURE", "EXPIRED_TOKEN"}
    assert set(statuses.values()) == {"403"}
    assert {api_access.REFUSALS[kind][1] for kind in statuses} == {"forbidden"}
