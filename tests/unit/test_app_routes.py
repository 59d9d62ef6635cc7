"""The HTTP API through Chalice's test client, over services built from fakes (``bootstrap.use``)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.alipay.signing import SignType
from chalicelib.http_errors import http_error
from chalicelib.services.errors import (
    BadRequest,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    NotificationRejected,
    OrderNotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationError,
)
from chalicelib.services.ports import OrderExists, PortError, QueuedNotification, TradeQueryResult, Unavailable
from tests.alipay_fixtures import (
    OUT_TRADE_NO,
    alipay_key,
    app_pay_response,
    form_body,
    mapi_notification_fields,
    notification_body,
    openapi_notification_fields,
    sign_fields,
    signed_json_response,
)
from tests.gateway_client import BUYER
from tests.gateway_client import GatewayClient as Gateway
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, ThrottledSigner, make_kit

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
JSON = {"Content-Type": "application/json"}
ORDER = {"subject": "Coffee beans", "total_amount": "12.34", "currency": "USD"}


@pytest.fixture
def kit() -> Iterator[Kit]:
    kit = make_kit()
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


@pytest.fixture
def client() -> Gateway:
    return Gateway(app)


def post_json(client: Gateway, path: str, body: Any, **headers: str) -> Any:
    return client.http.post(path, headers={**JSON, **headers}, body=json.dumps(body).encode())


def test_health_is_ok(client: Gateway) -> None:
    response = client.http.get("/health")
    assert (response.status_code, response.json_body) == (200, {"status": "ok"})


# --- POST /orders, GET /orders/{out_trade_no} -----------------------------------------------------------------


def test_creating_an_order_answers_201_with_the_order_string(kit: Kit, client: Gateway) -> None:
    response = post_json(client, "/merchant/orders", ORDER)
    assert response.status_code == 201
    body = response.json_body
    assert set(body) == {"out_trade_no", "order_info", "status", "total_amount", "currency", "subject"}
    assert (body["status"], body["total_amount"], body["currency"]) == ("WAIT_BUYER_PAY", "12.34", "USD")
    assert kit.order(body["out_trade_no"]).version == 1


def test_a_repeated_idempotency_key_replays_the_same_status_and_body(kit: Kit, client: Gateway) -> None:
    first = post_json(client, "/merchant/orders", ORDER, **{"Idempotency-Key": "k-1"})
    again = post_json(client, "/merchant/orders", ORDER, **{"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json_body) == (first.status_code, first.json_body) == (201, first.json_body)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(kit.orders.orders) == 1


def test_the_same_idempotency_key_with_another_body_is_409(kit: Kit, client: Gateway) -> None:
    post_json(client, "/merchant/orders", ORDER, **{"Idempotency-Key": "k-1"})
    response = post_json(client, "/merchant/orders", {**ORDER, "total_amount": "1.00"}, **{"Idempotency-Key": "k-1"})
    assert response.status_code == 409
    assert response.json_body["code"] == "idempotency_key_reused"


def test_an_existing_out_trade_no_is_409(kit: Kit, client: Gateway) -> None:
    post_json(client, "/merchant/orders", {**ORDER, "out_trade_no": "ORDER-1"})
    response = post_json(client, "/merchant/orders", {**ORDER, "out_trade_no": "ORDER-1"})
    assert (response.status_code, response.json_body["code"]) == (409, "order_exists")


def test_an_invalid_field_is_422_naming_the_field(kit: Kit, client: Gateway) -> None:
    response = post_json(client, "/merchant/orders", {**ORDER, "total_amount": "12.345"})
    assert response.status_code == 422
    assert response.json_body["code"] == "invalid_field"
    assert response.json_body["message"].startswith("total_amount: ")
    assert response.json_body["field"] == "total_amount"
    assert set(response.json_body) == {"code", "message", "field"}


@pytest.mark.parametrize("body", [b"", b"{not json", b"[1, 2]"])
def test_a_body_that_is_no_json_object_is_400(kit: Kit, client: Gateway, body: bytes) -> None:
    response = client.http.post("/merchant/orders", headers=JSON, body=body)
    assert (response.status_code, response.json_body["code"]) == (400, "bad_request")


def test_a_non_json_content_type_is_415_in_the_apis_error_format(kit: Kit, client: Gateway) -> None:
    text = {"Content-Type": "text/plain"}
    response = client.http.post("/merchant/orders", headers=text, body=json.dumps(ORDER).encode())
    assert (response.status_code, response.json_body["code"]) == (415, "unsupported_media_type")


def test_kms_throttling_is_503_with_retry_after_and_no_order_left_behind(client: Gateway) -> None:
    kit = make_kit(signer=ThrottledSigner(times=1))
    bootstrap.use(kit.services)
    try:
        response = post_json(client, "/merchant/orders", {**ORDER, "out_trade_no": "ORDER-1"})
    finally:
        bootstrap.use(None)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "2"
    assert response.json_body["code"] == "unavailable"
    assert kit.orders.orders == {}


def test_a_buyer_reads_their_own_order(kit: Kit, client: Gateway) -> None:
    kit.add_order(buyer=BUYER)
    response = client.http.get(f"/orders/{OUT_TRADE_NO}")
    assert response.status_code == 200
    assert response.json_body == {
        "out_trade_no": OUT_TRADE_NO,
        "status": "WAIT_BUYER_PAY",
        "total_amount": "88.88",
        "currency": "USD",
        "subject": "Coffee",
        "created_at": "2026-11-26T16:00:00.000Z",
        "updated_at": "2026-11-26T16:00:00.000Z",
    }


def test_the_merchant_reads_any_order_in_full(kit: Kit, client: Gateway) -> None:
    kit.add_order(buyer=BUYER)
    response = client.http.get(f"/merchant/orders/{OUT_TRADE_NO}")
    assert response.status_code == 200
    assert response.json_body == {
        "out_trade_no": OUT_TRADE_NO,
        "status": "WAIT_BUYER_PAY",
        "total_amount": "88.88",
        "currency": "USD",
        "subject": "Coffee",
        "buyer": BUYER,
        "refunds": [],
        "history": [],
        "money": [],
        "created_at": "2026-11-26T16:00:00.000Z",
        "updated_at": "2026-11-26T16:00:00.000Z",
    }


def test_another_buyers_order_answers_exactly_as_an_unknown_one(kit: Kit, client: Gateway) -> None:
    kit.add_order(buyer="bob")
    theirs = client.http.get(f"/orders/{OUT_TRADE_NO}")
    unknown = client.http.get("/orders/NOPE")
    assert (theirs.status_code, theirs.json_body["code"]) == (404, "not_found")
    assert (unknown.status_code, unknown.json_body["code"]) == (404, "not_found")
    assert set(theirs.json_body) == set(unknown.json_body) == {"code", "message"}


def test_reading_an_unknown_order_is_404(kit: Kit, client: Gateway) -> None:
    response = client.http.get("/merchant/orders/NOPE")
    assert (response.status_code, response.json_body["code"]) == (404, "not_found")


# --- POST /orders/{out_trade_no}/client-result ------------------------------------------------------------------


def test_a_verified_client_result_reports_the_servers_status(kit: Kit, client: Gateway) -> None:
    kit.add_order(buyer=BUYER)
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(found=False)
    result = signed_json_response("alipay_trade_app_pay_response", app_pay_response(), alipay_key())
    response = post_json(client, f"/orders/{OUT_TRADE_NO}/client-result", {"resultStatus": "9000", "result": result})
    assert (response.status_code, response.json_body) == (200, {"verified": True, "status": "WAIT_BUYER_PAY"})


def test_a_forged_client_9000_is_answered_unverified_and_the_order_is_unchanged(kit: Kit, client: Gateway) -> None:
    kit.add_order(buyer=BUYER)
    forged = signed_json_response("alipay_trade_app_pay_response", app_pay_response(), rsa_key("other"))
    response = post_json(client, f"/orders/{OUT_TRADE_NO}/client-result", {"resultStatus": "9000", "result": forged})
    assert response.status_code == 200
    assert response.json_body == {"verified": False, "status": "WAIT_BUYER_PAY", "reason": "signature"}
    assert kit.order().version == 1


def test_a_client_result_for_an_unknown_order_is_404(kit: Kit, client: Gateway) -> None:
    response = post_json(client, "/orders/NOPE/client-result", {"resultStatus": "6001"})
    assert response.status_code == 404


# --- POST /alipay/notify -----------------------------------------------------------------------------------------


def notify(client: Gateway, body: bytes, headers: dict[str, str] | None = None) -> Any:
    return client.http.post("/alipay/notify", headers=FORM if headers is None else headers, body=body)


def test_a_valid_notification_is_answered_with_exactly_success_in_plain_text(kit: Kit, client: Gateway) -> None:
    response = notify(client, notification_body(openapi_notification_fields(), alipay_key()))
    assert (response.status_code, response.body) == (200, b"success")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert len(kit.queue.messages) == 1


def test_a_tampered_notification_is_400_fail_and_nothing_is_queued(kit: Kit, client: Gateway) -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["trade_status"] = "TRADE_FINISHED"
    response = notify(client, form_body(signed))
    assert (response.status_code, response.body) == (400, b"fail")
    assert kit.queue.messages == []


@pytest.mark.parametrize(
    "body",
    [b"", b"a=1&a=2", b"a=%G1", b"sign=***&notify_id=1", b"\xff\xfe", b"notify_id"],
    ids=["empty", "duplicate-fields", "bad-percent", "non-base64-sign", "binary", "truncated"],
)
def test_malformed_notifications_are_4xx_fail_never_500_never_success(kit: Kit, client: Gateway, body: bytes) -> None:
    response = notify(client, body)
    assert 400 <= response.status_code < 500
    assert response.body == b"fail"
    assert kit.queue.messages == []


def test_an_oversized_notification_is_413_fail_before_any_crypto(client: Gateway) -> None:
    kit = make_kit(MAX_NOTIFICATION_BYTES="64")
    bootstrap.use(kit.services)
    try:
        response = notify(client, b"%zz" * 100)  # would be a 400 had it been parsed
    finally:
        bootstrap.use(None)
    assert (response.status_code, response.body) == (413, b"fail")


def test_a_wrong_content_type_is_415_fail(kit: Kit, client: Gateway) -> None:
    body = notification_body(openapi_notification_fields(), alipay_key())
    response = notify(client, body, {"Content-Type": "application/json"})
    assert (response.status_code, response.body) == (415, b"fail")
    assert kit.queue.messages == []


def test_a_queue_outage_is_503_fail_so_alipay_retries(kit: Kit, client: Gateway) -> None:
    kit.queue.fail_with(Unavailable("SQS throttled", retry_after=2))
    body = notification_body(openapi_notification_fields(), alipay_key())
    response = notify(client, body)
    assert (response.status_code, response.body) == (503, b"fail")
    assert kit.queue.messages == []
    assert notify(client, body).body == b"success"


class BrokenQueue:
    """A queue with a bug in it: raises something no adapter should."""

    def send(self, message: QueuedNotification) -> None:
        raise RuntimeError("bug")


def test_an_unexpected_error_is_500_fail_in_plain_text_never_chalices_own_500(client: Gateway) -> None:
    kit = make_kit()
    broken = Kit(config=kit.config, signer=kit.signer, queue=BrokenQueue())  # type: ignore[arg-type]
    bootstrap.use(broken.services)
    try:
        response = notify(client, notification_body(openapi_notification_fields(), alipay_key()))
    finally:
        bootstrap.use(None)
    assert (response.status_code, response.body) == (500, b"fail")


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequest("x"), 400, "bad_request"),
        (NotificationRejected("signature", "x"), 400, "rejected"),
        (OrderNotFound("x"), 404, "not_found"),
        (OrderExists("x"), 409, "order_exists"),
        (IdempotencyKeyReused("x"), 409, "idempotency_key_reused"),
        (IdempotencyKeyInProgress("x"), 409, "idempotency_key_in_progress"),
        (PayloadTooLarge("x"), 413, "payload_too_large"),
        (UnsupportedMediaType("x"), 415, "unsupported_media_type"),
        (ValidationError("subject", "x"), 422, "invalid_field"),
        (Unavailable("x", retry_after=7), 503, "unavailable"),
        (PortError("x"), 502, "dependency_failed"),
        (KeyError("x"), 500, "internal_error"),
    ],
)
def test_each_error_type_maps_to_one_status_in_one_table(error: Exception, status: int, code: str) -> None:
    mapped = http_error(error)
    assert (mapped.status, mapped.code) == (status, code)
    assert ("Retry-After" in mapped.headers) == (status == 503)


def test_a_legacy_notify_verify_refused_by_alipays_gateway_is_502_fail(client: Gateway) -> None:
    kit = make_kit("mapi")
    kit.gateway.fail_with(PortError("Alipay gateway error HTTP 403"))
    bootstrap.use(kit.services)
    try:
        body = notification_body(mapi_notification_fields(), alipay_key(), sign_type=SignType.RSA)
        response = notify(client, body)
    finally:
        bootstrap.use(None)
    assert (response.status_code, response.body) == (502, b"fail")
    assert kit.queue.messages == []
