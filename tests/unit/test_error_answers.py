"""Every refusal in the error shape ``{"code", "message", "field"?}``, its message giving the real reason, and nothing
stored: the app's own refusals and the local API Gateway's, through the gateway as the local stack runs it."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.orders.catalogue import Product
from devstack import api_server
from tests.gateway_client import Answer, GatewayClient
from tests.unit.services_kit import Kit, make_kit

JSON = {"Content-Type": "application/json"}
TSHIRT = Product("tshirt", "T-shirt", {"USD": Decimal("12.50")})


@pytest.fixture
def kit() -> Iterator[Kit]:
    kit = make_kit()
    kit.catalogue.put(TSHIRT)
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def post(path: str, body: bytes, **headers: str) -> Answer:
    return GatewayClient(app).http.post(path, headers={**JSON, **headers}, body=body)


def merchant_order(body: dict[str, Any], key: str | None = None) -> Answer:
    return post("/merchant/orders", json.dumps(body).encode(), **{"Idempotency-Key": key or uuid.uuid4().hex})


def assert_error(answer: Answer, status: int, code: str, field: str | None = None) -> str:
    """The answer is the error shape with this status and code (and ``field``); its message."""
    body = answer.json_body
    assert answer.status_code == status, answer.body
    assert set(body) <= {"code", "message", "field"}
    assert (body["code"], body.get("field")) == (code, field)
    assert isinstance(body["message"], str)
    return str(body["message"])


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        ("-1.00", "must not be negative"),
        ("-0.01", "must not be negative"),
        ("100000000000.00", "must be at most 100000000: too large"),
        ("100000000.01", "must be at most 100000000: too large"),
        ("0.00", "must be at least 0.01 (the range is 0.01 to 100000000)"),
        ("1.005", "at most 2 decimal places"),
        ("12,34", 'a decimal string such as "12.34"'),
    ],
)
def test_an_amount_is_refused_with_what_is_wrong_with_it_and_nothing_stored(kit: Kit, amount: str, says: str) -> None:
    answer = merchant_order({"subject": "Mug", "total_amount": amount, "currency": "USD"})
    message = assert_error(answer, 422, "invalid_field", "total_amount")
    assert message.startswith("total_amount: ")
    assert says in message
    assert kit.orders.orders == {}


def test_a_taken_out_trade_no_is_refused_naming_the_conflict_and_the_first_order_is_unchanged(kit: Kit) -> None:
    first = merchant_order({"subject": "Mug", "total_amount": "1.00", "currency": "USD", "out_trade_no": "shop-1"})
    assert first.status_code == 201
    again = merchant_order({"subject": "Hat", "total_amount": "2.00", "currency": "USD", "out_trade_no": "shop-1"})
    message = assert_error(again, 409, "order_exists", "out_trade_no")
    assert "'shop-1' already exists" in message
    assert "another out_trade_no" in message
    assert (kit.order("shop-1").subject, kit.order("shop-1").total_amount) == ("Mug", Decimal("1.00"))


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/merchant/orders", b'{"subject": "Caf\xe9", "total_amount": "1.00", "currency": "USD"}'),  # Latin-1
        ("/merchant/orders", b'{"subject": "\xff\xfe", "total_amount": "1.00", "currency": "USD"}'),
        ("/orders", b'{"items": [{"sku": "tshirt\xc3", "quantity": 1}]}'),  # a truncated sequence
    ],
)
def test_a_json_body_that_is_not_utf8_is_refused_with_400_invalid_utf8_and_nothing_stored(
    kit: Kit, path: str, body: bytes
) -> None:
    message = assert_error(post(path, body, **{"Idempotency-Key": uuid.uuid4().hex}), 400, "invalid_utf8")
    assert "not valid UTF-8" in message
    assert kit.orders.orders == {}


def test_u_fffd_escaped_in_json_is_still_accepted(kit: Kit) -> None:
    body = b'{"subject": "Mug \\ufffd", "total_amount": "1.00", "currency": "USD"}'
    answer = post("/merchant/orders", body, **{"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code == 201, answer.body
    assert kit.order(answer.json_body["out_trade_no"]).subject == "Mug \ufffd"


def test_a_buyers_forbidden_and_unknown_fields_are_422_naming_the_field(kit: Kit) -> None:
    sent = post("/orders", json.dumps({"items": [{"sku": "tshirt", "quantity": 1}], "total_amount": "0.01"}).encode())
    assert "may not be sent by a buyer" in assert_error(sent, 422, "invalid_field", "total_amount")
    unknown = post("/orders", json.dumps({"items": [{"sku": "tshirt", "quantity": 1}, {"sku": "nope"}]}).encode())
    assert_error(unknown, 422, "invalid_field", "items[1].sku")
    assert kit.orders.orders == {}


@pytest.mark.parametrize(("method", "path"), [("GET", "/nope"), ("PATCH", "/orders"), ("DELETE", "/health")])
def test_an_unknown_route_or_method_is_403_forbidden_in_the_error_shape_naming_it(method: str, path: str) -> None:
    answer = GatewayClient(app, anonymous=True).http.request(method, path)
    assert f"no route {method} {path}" in assert_error(answer, 403, "forbidden")


def test_a_body_over_api_gateways_limit_is_413_payload_too_large_in_the_error_shape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(api_server, "MAX_PAYLOAD_BYTES", 1024)
    answer = GatewayClient(app, anonymous=True).http.post("/orders", JSON, b"{" + b" " * 1024 + b"}")
    assert "Request Too Long" in assert_error(answer, 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/health", "/orders", "/alipay/return"])
def test_a_content_type_on_a_route_without_a_body_is_ignored_not_refused_in_chalices_shape(kit: Kit, path: str) -> None:
    answer = GatewayClient(app).http.get(path, headers={"Content-Type": "multipart/form-data"})
    assert answer.status_code != 415, answer.body
    assert b"UnsupportedMediaType" not in answer.body


def test_a_json_route_refuses_another_content_type_with_415_in_the_error_shape(kit: Kit) -> None:
    body = json.dumps({"items": [{"sku": "tshirt", "quantity": 1}]}).encode()
    answer = GatewayClient(app).http.post("/orders", headers={"Content-Type": "text/plain"}, body=body)
    assert "text/plain" in assert_error(answer, 415, "unsupported_media_type")
    assert kit.orders.orders == {}


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "the body is empty: expected a JSON object"),
        (b'{"items": [}', "the body is not valid JSON: Expecting value at line 1, column 12"),
        (b'{"items": 1,}', "the body is not valid JSON: Expecting property name enclosed in double quotes"),
    ],
)
def test_a_body_that_is_not_json_is_400_saying_where_it_breaks(kit: Kit, body: bytes, says: str) -> None:
    assert says in assert_error(post("/orders", body), 400, "bad_request")
    assert kit.orders.orders == {}


def test_a_function_that_fails_is_api_gateways_502_in_the_error_shape() -> None:
    from chalice import Chalice

    from tests.gateway_client import authorizers

    broken = Chalice("broken")

    @broken.route("/health")
    def health() -> dict[str, object]:
        return {"unserializable": object()}  # the function raises while answering, as a bug would

    answer = api_server.ApiGateway(broken, authorizers()).handle("GET", "/health", [("Host", "x")], b"", "1.2.3.4")
    assert answer.status == 502
    assert json.loads(answer.body) == {"code": "internal_error", "message": "Internal server error"}
