"""The API: who may call what (Cognito on the buyer routes, SigV4 on the merchant routes, the rest public), the
merchant's invoke policy and the API's resource policy, gateway refusals in the product's error shape, throttling."""

from __future__ import annotations

import re
from typing import Any

import pytest

from conftest import MERCHANT_ACCOUNT, MERCHANT_ROLE_ARN, POOL_ARN, Synthesized, statements
from stacks import topology

AUTHORIZER = "CognitoUserPool"
SIGV4 = "sigv4"


def definition(stack: Synthesized) -> dict[str, Any]:
    body: dict[str, Any] = stack.json["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    return body


def operations(stack: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): op for path, ops in definition(stack)["paths"].items() for method, op in ops.items()}


def kind(path: str) -> str:
    """Who may call a path, by the prefixes of chalicelib/topology.py."""
    for prefix, caller in ((topology.BUYER_PREFIX, "buyer"), (topology.MERCHANT_PREFIX, "merchant")):
        if path == prefix or path.startswith(f"{prefix}/"):
            return caller
    return "public"


def test_every_route_has_the_authorizer_of_its_prefix_and_every_other_route_none(every_stack: Synthesized) -> None:
    buyer_security = None if every_stack.settings.orders_auth == "none" else [{AUTHORIZER: []}]
    expected = {"buyer": buyer_security, "merchant": [{SIGV4: []}], "public": None}
    for (path, method), op in operations(every_stack).items():
        assert op.get("security") == expected[kind(path)], (path, method)


def test_the_public_routes_are_public_and_the_buyer_routes_need_a_cognito_user(prod: Synthesized) -> None:
    ops = operations(prod)
    for public in (("/health", "get"), ("/alipay/notify", "post"), ("/alipay/return", "get")):
        assert "security" not in ops[public], public
    for buyer in (
        ("/orders", "post"),
        ("/orders/{out_trade_no}", "get"),
        ("/orders/{out_trade_no}/client-result", "post"),
    ):
        assert ops[buyer]["security"] == [{AUTHORIZER: []}], buyer
    scheme = definition(prod)["securityDefinitions"][AUTHORIZER]
    assert scheme["x-amazon-apigateway-authtype"] == "cognito_user_pools"
    pool = prod.logical_id("AWS::Cognito::UserPool", "UserPool")
    assert scheme["x-amazon-apigateway-authorizer"] == {
        "type": "cognito_user_pools",
        "providerARNs": [{"Fn::GetAtt": [pool, "Arn"]}],
    }


def merchant_operations(stack: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    merchant = {key: op for key, op in operations(stack).items() if kind(key[0]) == "merchant"}
    if not merchant:
        pytest.skip(f"the app has no {topology.MERCHANT_PREFIX} routes yet")
    return merchant


def test_the_merchant_routes_need_sigv4_whatever_orders_auth_says(every_stack: Synthesized) -> None:
    for key, op in merchant_operations(every_stack).items():
        assert op["security"] == [{SIGV4: []}], key
    assert definition(every_stack)["securityDefinitions"][SIGV4] == {
        "type": "apiKey",
        "name": "Authorization",
        "in": "header",
        "x-amazon-apigateway-authtype": "awsSigv4",
    }


def test_the_created_user_pool_has_a_public_mobile_client(prod: Synthesized) -> None:
    prod.template.has_resource_properties(
        "AWS::Cognito::UserPoolClient", {"GenerateSecret": False, "PreventUserExistenceErrors": "ENABLED"}
    )
    prod.template.has_resource_properties("AWS::Cognito::UserPool", {"DeletionProtection": "ACTIVE"})


def test_the_apps_own_user_pool_can_be_used_instead(prod_configured: Synthesized) -> None:
    assert not prod_configured.resources("AWS::Cognito::UserPool")
    scheme = definition(prod_configured)["securityDefinitions"][AUTHORIZER]
    assert scheme["x-amazon-apigateway-authorizer"]["providerARNs"] == [POOL_ARN]
    assert operations(prod_configured)[("/orders", "post")]["security"] == [{AUTHORIZER: []}]


def test_the_buyers_authorizer_can_be_turned_off_outside_production(unauthenticated: Synthesized) -> None:
    assert AUTHORIZER not in definition(unauthenticated).get("securityDefinitions", {})
    for (path, method), op in operations(unauthenticated).items():
        if kind(path) != "merchant":
            assert "security" not in op, (path, method)
    assert not unauthenticated.resources("AWS::Cognito::UserPool")


def test_the_stage_is_throttled(prod: Synthesized, prod_configured: Synthesized) -> None:
    for stack, (rate, burst) in ((prod, (50, 100)), (prod_configured, (20, 40))):
        settings = stack.json["Resources"]["RestAPI"]["Properties"]["MethodSettings"][0]
        assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
        assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (rate, burst)


def test_gateway_refusals_answer_in_the_apis_error_format(every_stack: Synthesized) -> None:
    responses = definition(every_stack)["x-amazon-apigateway-gateway-responses"]
    assert {kind: r.get("statusCode") for kind, r in responses.items()} == {
        "UNAUTHORIZED": "401",
        "ACCESS_DENIED": "403",
        "MISSING_AUTHENTICATION_TOKEN": "403",
        "INVALID_SIGNATURE": "403",
        "EXPIRED_TOKEN": "403",
        "THROTTLED": "429",
        "REQUEST_TOO_LARGE": "413",
        "DEFAULT_5XX": None,  # API Gateway's own 502 or 504 is kept; only the body takes the API's shape
    }
    codes = {"401": "unauthorized", "403": "forbidden", "429": "throttled", "413": "payload_too_large"}
    for kind, response in responses.items():
        assert response["responseParameters"] == {"gatewayresponse.header.Content-Type": "'application/json'"}
        code = codes[response["statusCode"]] if "statusCode" in response else "internal_error"
        assert response["responseTemplates"] == {
            "application/json": f'{{"code": "{code}", "message": $context.error.messageString}}'
        }, kind


def test_the_merchant_invoke_policy_allows_exactly_the_merchant_routes_and_is_an_output(
    every_stack: Synthesized,
) -> None:
    logical_id = every_stack.logical_id("AWS::IAM::ManagedPolicy", "MerchantInvokePolicy")
    policy = every_stack.json["Resources"][logical_id]
    (statement,) = statements(policy["Properties"]["PolicyDocument"])
    assert (statement["Effect"], statement["Action"]) == ("Allow", "execute-api:Invoke")
    routes = [part["Fn::Join"][1] for part in statement["Resource"]]
    for route in routes:
        assert route[:7] == ["arn:", {"Ref": "AWS::Partition"}, ":execute-api:", {"Ref": "AWS::Region"}, ":",
                             {"Ref": "AWS::AccountId"}, ":"]  # fmt: skip
        assert route[7] == {"Ref": "RestAPI"}
    assert [route[8] for route in routes] == ["/api/*/merchant", "/api/*/merchant/*"]
    assert every_stack.json["Outputs"]["MerchantInvokePolicyArn"]["Value"] == {"Ref": logical_id}


def test_without_merchant_principals_the_api_has_no_resource_policy(prod: Synthesized, dev: Synthesized) -> None:
    for stack in (prod, dev):
        assert "x-amazon-apigateway-policy" not in definition(stack)
        assert "Policy" not in stack.json["Resources"]["RestAPI"]["Properties"]


def test_the_resource_policy_admits_other_accounts_to_the_merchant_routes_and_locks_no_one_out(
    prod_configured: Synthesized,
) -> None:
    policy = definition(prod_configured)["x-amazon-apigateway-policy"]
    by_sid = {s["Sid"]: s for s in statements(policy)}
    assert set(by_sid) == {"AnyoneCallsThePublicAndBuyerRoutes", "MerchantPrincipalsCallTheMerchantRoutes"}
    assert all(s["Effect"] == "Allow" and s["Action"] == "execute-api:Invoke" for s in by_sid.values())

    opened = by_sid["AnyoneCallsThePublicAndBuyerRoutes"]
    assert opened["Principal"] == "*"
    # Alipay's webhook, the browser's return and health stay callable by anyone, and so does every buyer route
    # (its Cognito authorizer still wants the token): each operation of the template that needs no SigV4.
    for public in ("POST/alipay/notify", "GET/alipay/return", "GET/health", "POST/orders", "GET/orders/*"):
        assert f"execute-api:/api/{public}" in opened["Resource"], public
    unsigned = {
        f"execute-api:/api/{method.upper()}{re.sub(r'{[^}]+}', '*', path)}"
        for (path, method), op in operations(prod_configured).items()
        if op.get("security") != [{SIGV4: []}]
    }
    assert set(opened["Resource"]) == unsigned
    assert not [r for r in opened["Resource"] if "/merchant" in r and "/OPTIONS/" not in r]

    merchant = by_sid["MerchantPrincipalsCallTheMerchantRoutes"]
    assert merchant["Principal"] == {
        "AWS": [
            {"Fn::Join": ["", ["arn:", {"Ref": "AWS::Partition"}, f":iam::{MERCHANT_ACCOUNT}:root"]]},
            MERCHANT_ROLE_ARN,
        ]
    }
    assert merchant["Resource"] == ["execute-api:/api/*/merchant", "execute-api:/api/*/merchant/*"]


def test_the_web_checkout_return_is_public_on_its_own_function_in_every_stack(every_stack: Synthesized) -> None:
    # Alipay sends the shopper's browser here: it carries no Cognito token, only Alipay's signed query.
    route = operations(every_stack)[("/alipay/return", "get")]
    assert "security" not in route
    assert "ReturnPage" in str(route["x-amazon-apigateway-integration"]["uri"])
