"""The API: a Cognito authorizer on the orders routes (configurable), the webhook public, stage throttling."""

from __future__ import annotations

from typing import Any

from conftest import POOL_ARN, Synthesized

AUTHORIZER = "CognitoUserPool"


def definition(stack: Synthesized) -> dict[str, Any]:
    body: dict[str, Any] = stack.json["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]
    return body


def operations(stack: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    return {(path, method): op for path, ops in definition(stack)["paths"].items() for method, op in ops.items()}


def test_the_orders_routes_need_a_cognito_user_and_the_webhook_and_health_do_not(prod: Synthesized) -> None:
    ops = operations(prod)
    assert set(ops) == {
        ("/orders", "post"),
        ("/orders/{out_trade_no}", "get"),
        ("/orders/{out_trade_no}/client-result", "post"),
        ("/orders/{out_trade_no}/refunds", "post"),
        ("/alipay/notify", "post"),
        ("/alipay/return", "get"),
        ("/health", "get"),
    }
    for (path, _), op in ops.items():
        if path.startswith("/orders"):
            assert op["security"] == [{AUTHORIZER: []}], path
        else:
            assert "security" not in op, path
    scheme = definition(prod)["securityDefinitions"][AUTHORIZER]
    assert scheme["x-amazon-apigateway-authtype"] == "cognito_user_pools"
    pool = prod.logical_id("AWS::Cognito::UserPool", "UserPool")
    assert scheme["x-amazon-apigateway-authorizer"] == {
        "type": "cognito_user_pools",
        "providerARNs": [{"Fn::GetAtt": [pool, "Arn"]}],
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


def test_the_authorizer_can_be_turned_off(unauthenticated: Synthesized) -> None:
    assert "securityDefinitions" not in definition(unauthenticated)
    assert all("security" not in op for op in operations(unauthenticated).values())
    assert not unauthenticated.resources("AWS::Cognito::UserPool")


def test_the_stage_is_throttled(prod: Synthesized, prod_configured: Synthesized) -> None:
    for stack, (rate, burst) in ((prod, (50, 100)), (prod_configured, (20, 40))):
        (settings,) = stack.json["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
        assert (settings["ResourcePath"], settings["HttpMethod"]) == ("/*", "*")
        assert (settings["ThrottlingRateLimit"], settings["ThrottlingBurstLimit"]) == (rate, burst)


def test_gateway_refusals_answer_in_the_apis_error_format(prod: Synthesized) -> None:
    responses = definition(prod)["x-amazon-apigateway-gateway-responses"]
    assert {kind: r["statusCode"] for kind, r in responses.items()} == {
        "UNAUTHORIZED": "401",
        "ACCESS_DENIED": "403",
        "THROTTLED": "429",
    }
    template = responses["UNAUTHORIZED"]["responseTemplates"]["application/json"]
    assert template == '{"code": "unauthorized", "message": $context.error.messageString}'


def test_the_web_checkout_return_is_public_on_the_api_handler_in_every_stack(every_stack: Synthesized) -> None:
    # Alipay sends the shopper's browser here: it carries no Cognito token, only Alipay's signed query.
    route = operations(every_stack)[("/alipay/return", "get")]
    assert "security" not in route
    assert "APIHandler.Arn" in str(route["x-amazon-apigateway-integration"]["uri"])
