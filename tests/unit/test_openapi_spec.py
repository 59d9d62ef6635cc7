"""docs/openapi.yaml is the API the app serves: a valid OpenAPI 3.1 document with exactly the app's routes, each
guarded as its path prefix says, and every error code the app or API Gateway can answer, with its status."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import app
from chalicelib import http_errors, topology
from devstack.authorizers import forbidden, unauthorized

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# API Gateway's own refusals, in the product's error shape: the local emulation's (devstack/authorizers.py) and the
# deployed gateway responses' (infra/stacks/api_access.py, which alone adds throttling).
GATEWAY_REFUSALS = {unauthorized("").code: 401, forbidden("").code: 403, "throttled": 429}
SCHEME_BY_CALLER = {"buyer": "cognito", "merchant": "sigv4"}


@cache
def spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
    return loaded


def operations() -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in spec()["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """``node``, or what its local ``$ref`` points at."""
    while "$ref" in node:
        target: Any = spec()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def caller(path: str) -> str:
    """Which caller a path is for, by its first segment, as API Gateway's authorizers are wired."""
    for prefix, kind in ((topology.BUYER_PREFIX, "buyer"), (topology.MERCHANT_PREFIX, "merchant")):
        if path == prefix or path.startswith(prefix + "/"):
            return kind
    return "public"


def table_codes() -> dict[str, int]:
    """Every ``code`` the app answers, with its status: the error table, and its answer to anything not in it."""
    codes: dict[str, int] = {}
    for _, status, code in http_errors._table():
        assert codes.setdefault(code, status) == status, f"{code} is answered with two statuses"
    fallback = http_errors.http_error(RuntimeError("a bug"))
    codes[fallback.code] = fallback.status
    return codes


def documented_codes(response: dict[str, Any]) -> list[str]:
    """The codes an error response says it answers: its JSON schema's ``code`` enum, or ``x-error-codes``."""
    codes = list(response.get("x-error-codes", []))
    for content in response.get("content", {}).values():
        schema = content.get("schema", {})
        # The narrowing parts only: the shared Error schema they extend lists every code there is.
        for part in [schema, *schema.get("allOf", [])]:
            if "$ref" not in part:
                codes.extend(part.get("properties", {}).get("code", {}).get("enum", []))
    return codes


def error_responses() -> list[tuple[str, str, int, dict[str, Any]]]:
    return [
        (method, path, int(status), resolve(response))
        for method, path, operation in operations()
        for status, response in operation["responses"].items()
        if int(status) >= 400
    ]


def test_the_spec_is_a_valid_openapi_3_1_document() -> None:
    from openapi_spec_validator import validate

    assert spec()["openapi"].startswith("3.1.")
    validate(spec())


def test_the_spec_has_every_route_of_the_app_and_no_other() -> None:
    served = {(method, path) for path, entries in app.routes.items() for method in entries}
    documented = {(method, path) for method, path, _ in operations()}
    assert sorted(served - documented) == []
    assert sorted(documented - served) == []


@pytest.mark.parametrize(("method", "path"), [(m, p) for m, p, _ in operations()], ids=lambda v: str(v))
def test_each_routes_security_follows_its_path_prefix(method: str, path: str) -> None:
    operation = spec()["paths"][path][method.lower()]
    security = operation.get("security", spec().get("security", []))
    scheme = SCHEME_BY_CALLER.get(caller(path))
    assert security == ([{scheme: []}] if scheme else [])


def test_buyers_send_a_bearer_jwt_and_merchants_sign_with_sigv4() -> None:
    schemes = spec()["components"]["securitySchemes"]
    assert set(schemes) == {"cognito", "sigv4"}
    assert (schemes["cognito"]["type"], schemes["cognito"]["scheme"], schemes["cognito"]["bearerFormat"]) == (
        "http",
        "bearer",
        "JWT",
    )
    sigv4 = schemes["sigv4"]
    assert (sigv4["type"], sigv4["in"], sigv4["name"], sigv4["x-amazon-apigateway-authtype"]) == (
        "apiKey",
        "header",
        "Authorization",
        "awsSigv4",
    )


def test_the_error_schema_lists_every_code_of_the_table_and_of_api_gateway_and_no_other() -> None:
    listed = spec()["components"]["schemas"]["Error"]["properties"]["code"]["enum"]
    assert len(listed) == len(set(listed))
    assert set(listed) == set(table_codes()) | set(GATEWAY_REFUSALS)


def test_every_documented_error_response_names_its_codes_each_with_the_status_it_is_answered_with() -> None:
    statuses = {**table_codes(), **GATEWAY_REFUSALS}
    wrong = []
    for method, path, status, response in error_responses():
        codes = documented_codes(response)
        if not codes:
            wrong.append(f"{method} {path} {status}: no code")
        wrong.extend(f"{method} {path} {status}: {c} is {statuses.get(c)}" for c in codes if statuses.get(c) != status)
    assert wrong == []


def test_every_code_is_answered_by_some_route() -> None:
    answered = {code for _, _, _, response in error_responses() for code in documented_codes(response)}
    # not_supported: settling a refund on the legacy protocol, which has no refund query.
    assert (set(table_codes()) | set(GATEWAY_REFUSALS)) - answered == set()


def test_invalid_field_answers_name_the_field() -> None:
    for method, path, _, response in error_responses():
        if "invalid_field" in documented_codes(response):
            schema = response["content"]["application/json"]["schema"]
            required = {name for part in schema["allOf"] for name in resolve(part).get("required", [])}
            assert {"code", "message", "field"} <= required, f"{method} {path}"


def test_every_buyer_route_can_answer_401_and_every_merchant_route_403() -> None:
    missing = []
    for method, path, operation in operations():
        expected = {"buyer": "401", "merchant": "403"}.get(caller(path))
        if expected and expected not in operation["responses"]:
            missing.append(f"{method} {path}")
    assert missing == []


def test_the_webhook_answers_success_or_fail_in_plain_text() -> None:
    responses = spec()["paths"]["/alipay/notify"]["post"]["responses"]
    assert responses["200"]["content"]["text/plain"]["schema"]["const"] == "success"
    for status, response in responses.items():
        if status != "200" and "$ref" not in response:
            assert resolve(response["content"]["text/plain"]["schema"])["const"] == "fail"


def test_unavailable_answers_carry_retry_after_and_order_creation_idempotency_headers() -> None:
    for method, path, _, response in error_responses():
        if "unavailable" in documented_codes(response):
            assert "Retry-After" in response["headers"], f"{method} {path}"
    for path in ("/orders", "/merchant/orders"):
        operation = spec()["paths"][path]["post"]
        assert any(resolve(p)["name"] == "Idempotency-Key" for p in operation["parameters"])
        assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]


def test_every_route_admits_any_content_type() -> None:
    """Chalice answers a content type a route does not list with its own 415 {"Code", "Message"}, outside the error
    shape: every route lists them all (*/*), and a JSON route refuses a wrong one with the product's own 415."""
    from app import app as chalice_app

    for path, methods in chalice_app.routes.items():
        for method, entry in methods.items():
            assert "*/*" in entry.content_types, f"{method} {path}: {entry.content_types}"
