"""Who may call what: each caller against each route, through API Gateway's authorizers as the local stack runs them.

Each refusal is shown with nothing changed; each allowed call with what it did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.orders.catalogue import Product
from chalicelib.orders.model import OrderStatus
from chalicelib.services.ports import QueuedNotification
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.gateway_client import BUYER, MERCHANT_ARN, GatewayClient, id_token
from tests.unit.services_kit import Kit, make_kit

JSON = {"Content-Type": "application/json"}
TSHIRT = Product("tshirt", "T-shirt", {"USD": Decimal("12.50"), "HKD": Decimal("98.00")}, body="Cotton")
MUG = Product("mug", "Mug", {"USD": Decimal("7.25")})


@pytest.fixture
def kit() -> Iterator[Kit]:
    kit = make_kit()
    kit.catalogue.put(TSHIRT)
    kit.catalogue.put(MUG)
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def alice() -> GatewayClient:
    return GatewayClient(app, buyer=BUYER)


def bob() -> GatewayClient:
    return GatewayClient(app, buyer="bob")


def anonymous() -> GatewayClient:
    return GatewayClient(app, anonymous=True)


def post(client: GatewayClient, path: str, body: object, **headers: str) -> Any:
    return client.http.post(path, headers={**JSON, **headers}, body=json.dumps(body).encode())


def buy(client: GatewayClient, **extra: object) -> Any:
    items = [{"sku": "tshirt", "quantity": 2}, {"sku": "mug", "quantity": 1}]
    return post(client, "/orders", {"items": items, **extra})


# --- buyers order from the catalogue; the server prices, names and numbers ---------------------------------------


def test_a_buyers_order_is_priced_named_and_numbered_by_the_server(kit: Kit) -> None:
    response = buy(alice())
    assert response.status_code == 201
    body = response.json_body
    assert (body["total_amount"], body["currency"], body["subject"]) == ("32.25", "USD", "T-shirt and 1 more")
    assert body["items"] == [
        {"sku": "tshirt", "quantity": 2, "unit_price": "12.50", "amount": "25.00"},
        {"sku": "mug", "quantity": 1, "unit_price": "7.25", "amount": "7.25"},
    ]
    order = kit.order(body["out_trade_no"])
    assert (order.buyer, order.total_amount, order.created_by) == (BUYER, Decimal("32.25"), BUYER)
    assert "order_info" in body


def test_a_buyer_orders_in_another_currency_at_that_currencys_price(kit: Kit) -> None:
    response = post(alice(), "/orders", {"items": [{"sku": "tshirt", "quantity": 1}], "currency": "HKD"})
    assert (response.status_code, response.json_body["total_amount"], response.json_body["currency"]) == (
        201,
        "98.00",
        "HKD",
    )


@pytest.mark.parametrize("field", ["total_amount", "subject", "body", "out_trade_no", "timeout", "buyer"])
def test_a_buyer_may_not_send_what_the_server_decides(kit: Kit, field: str) -> None:
    response = buy(alice(), **{field: "0.01" if field == "total_amount" else "X"})
    assert (response.status_code, response.json_body["code"], response.json_body["field"]) == (
        422,
        "invalid_field",
        field,
    )
    assert kit.orders.orders == {}


@pytest.mark.parametrize(
    ("items", "field"),
    [
        ([{"sku": "nope", "quantity": 1}], "items[0].sku"),
        ([{"sku": "tshirt", "quantity": 1}, {"sku": "mug", "unit_price": "0.01"}], "items[1].unit_price"),
        ([{"sku": "tshirt", "quantity": 0}], "items[0].quantity"),
        ([{"sku": "tshirt", "quantity": "2"}], "items[0].quantity"),
        ([{"sku": "../x", "quantity": 1}], "items[0].sku"),
        ([], "items"),
    ],
)
def test_an_order_that_cannot_be_priced_is_refused_naming_the_line(kit: Kit, items: list[object], field: str) -> None:
    response = post(alice(), "/orders", {"items": items})
    assert (response.status_code, response.json_body["field"]) == (422, field)
    assert kit.orders.orders == {}


def test_a_product_without_a_price_in_the_currency_is_refused(kit: Kit) -> None:
    response = post(alice(), "/orders", {"items": [{"sku": "mug", "quantity": 1}], "currency": "HKD"})
    assert (response.status_code, response.json_body["field"]) == (422, "items[0].sku")


# --- idempotency keys belong to their caller ---------------------------------------------------------------------


def test_one_buyers_idempotency_key_never_replays_another_buyers_order(kit: Kit) -> None:
    first = post(alice(), "/orders", {"items": [{"sku": "mug", "quantity": 1}]}, **{"Idempotency-Key": "k-1"})
    theirs = post(bob(), "/orders", {"items": [{"sku": "mug", "quantity": 1}]}, **{"Idempotency-Key": "k-1"})
    assert (first.status_code, theirs.status_code) == (201, 201)
    assert first.json_body["out_trade_no"] != theirs.json_body["out_trade_no"]
    assert "Idempotent-Replayed" not in theirs.headers
    assert kit.order(theirs.json_body["out_trade_no"]).buyer == "bob"


def test_the_same_key_with_another_body_is_a_conflict_and_creates_nothing(kit: Kit) -> None:
    post(alice(), "/orders", {"items": [{"sku": "mug", "quantity": 1}]}, **{"Idempotency-Key": "k-1"})
    again = post(alice(), "/orders", {"items": [{"sku": "mug", "quantity": 2}]}, **{"Idempotency-Key": "k-1"})
    assert (again.status_code, again.json_body["code"]) == (409, "idempotency_key_reused")
    assert len(kit.orders.orders) == 1


def test_a_repeat_with_the_same_key_replays_the_buyers_own_order(kit: Kit) -> None:
    body = {"items": [{"sku": "mug", "quantity": 1}]}
    first = post(alice(), "/orders", body, **{"Idempotency-Key": "k-1"})
    again = post(alice(), "/orders", body, **{"Idempotency-Key": "k-1"})
    assert again.json_body == first.json_body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert len(kit.orders.orders) == 1


# --- a buyer sees only their own orders ----------------------------------------------------------------------------


def test_a_buyer_lists_their_own_orders_newest_first_page_by_page(kit: Kit) -> None:
    mine = []
    for _ in range(3):
        kit.clock.advance(seconds=1)
        mine.append(post(alice(), "/orders", {"items": [{"sku": "mug", "quantity": 1}]}).json_body["out_trade_no"])
    post(bob(), "/orders", {"items": [{"sku": "mug", "quantity": 1}]})
    first = alice().http.get("/orders?limit=2").json_body
    assert [o["out_trade_no"] for o in first["orders"]] == [mine[2], mine[1]]
    rest = alice().http.get(f"/orders?limit=2&cursor={first['next_cursor']}").json_body
    assert ([o["out_trade_no"] for o in rest["orders"]], rest["next_cursor"]) == ([mine[0]], None)


@pytest.mark.parametrize("query", ["cursor=not-ours", "cursor=%%%", "limit=0", "limit=101", "limit=x"])
def test_a_bad_cursor_or_limit_is_refused(kit: Kit, query: str) -> None:
    response = alice().http.get(f"/orders?{query}")
    assert response.status_code in (400, 422)


def test_a_client_result_for_another_buyers_order_is_404_and_changes_nothing(kit: Kit) -> None:
    kit.add_order(buyer="bob")
    response = post(alice(), f"/orders/{OUT_TRADE_NO}/client-result", {"resultStatus": "9000", "result": "{}"})
    assert (response.status_code, response.json_body["code"]) == (404, "not_found")
    assert kit.order().version == 1


def test_the_merchant_may_make_an_order_for_a_buyer_who_then_sees_it(kit: Kit) -> None:
    merchant = GatewayClient(app)
    gift = {"subject": "Gift", "total_amount": "5.00", "currency": "USD", "buyer": BUYER}
    created = post(merchant, "/merchant/orders", gift)
    assert created.status_code == 201
    number = created.json_body["out_trade_no"]
    assert alice().http.get(f"/orders/{number}").status_code == 200
    assert bob().http.get(f"/orders/{number}").status_code == 404
    assert kit.order(number).created_by == MERCHANT_ARN


# --- the authorizers' refusals ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "garbage", id_token(expires_in=-60), id_token(audience="another-app")],
    ids=["none", "garbage", "expired", "other-audience"],
)
def test_a_buyer_route_without_a_valid_token_for_this_app_is_401(kit: Kit, authorization: str | None) -> None:
    headers = {**JSON} if authorization is None else {**JSON, "Authorization": authorization}
    body = json.dumps({"items": [{"sku": "mug", "quantity": 1}]}).encode()
    response = anonymous().http.post("/orders", headers=headers, body=body)
    assert (response.status_code, response.json_body["code"]) == (401, "unauthorized")
    assert kit.orders.orders == {}


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/merchant/orders", {"subject": "X", "total_amount": "0.01", "currency": "USD"}),
        ("POST", f"/merchant/orders/{OUT_TRADE_NO}/refunds", {"amount": "1.00"}),
        ("GET", f"/merchant/orders/{OUT_TRADE_NO}", None),
        ("PUT", "/merchant/products/tshirt", {"subject": "Free", "prices": {"USD": "0.01"}}),
        ("DELETE", "/merchant/products/tshirt", None),
    ],
)
def test_a_buyer_cannot_call_a_merchant_route_and_nothing_changes(
    kit: Kit, method: str, path: str, body: object
) -> None:
    kit.add_order(buyer=BUYER)
    before = (dict(kit.orders.orders), dict(kit.catalogue.products))
    data = b"" if body is None else json.dumps(body).encode()
    headers = {**JSON, "Authorization": id_token()}
    response = anonymous().http.request(method, path, headers, data)
    assert (response.status_code, response.json_body["code"]) == (403, "forbidden")
    assert (dict(kit.orders.orders), dict(kit.catalogue.products)) == before


def test_a_merchant_call_with_a_tampered_body_is_403_and_creates_nothing(kit: Kit) -> None:
    from tests.gateway_client import sigv4_headers

    signed_body = json.dumps({"subject": "X", "total_amount": "100.00", "currency": "USD"}).encode()
    headers = sigv4_headers("POST", "/merchant/orders", signed_body, dict(JSON))
    sent = json.dumps({"subject": "X", "total_amount": "0.01", "currency": "USD"}).encode()
    response = anonymous().http.post("/merchant/orders", headers=headers, body=sent)
    assert (response.status_code, response.json_body["code"]) == (403, "forbidden")
    assert kit.orders.orders == {}


def test_an_unknown_route_is_403_in_the_error_shape(kit: Kit) -> None:
    response = anonymous().http.get("/admin")
    assert (response.status_code, set(response.json_body)) == (403, {"code", "message"})
    assert response.json_body["code"] == "forbidden"


def test_the_webhook_the_return_and_health_stay_public(kit: Kit) -> None:
    assert anonymous().http.get("/health").status_code == 200
    # Public does not mean open: an unsigned notification is refused by its own verification.
    answer = anonymous().http.post(
        "/alipay/notify", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"a=b"
    )
    assert (answer.status_code, answer.body) == (400, b"fail")


# --- the catalogue is the merchant's ------------------------------------------------------------------------------


def test_the_merchant_keeps_the_catalogue_and_each_change_names_who_made_it(kit: Kit) -> None:
    merchant = GatewayClient(app)
    created = merchant.http.put(
        "/merchant/products/cap", headers=JSON, body=json.dumps({"subject": "Cap", "prices": {"USD": "9.00"}}).encode()
    )
    assert (created.status_code, created.json_body["prices"], created.json_body["updated_by"]) == (
        201,
        {"USD": "9.00"},
        MERCHANT_ARN,
    )
    changed = merchant.http.put(
        "/merchant/products/cap", headers=JSON, body=json.dumps({"subject": "Cap", "prices": {"USD": "8.00"}}).encode()
    )
    assert changed.status_code == 200
    assert [p["sku"] for p in merchant.http.get("/merchant/products").json_body["products"]] == ["cap", "mug", "tshirt"]
    assert merchant.http.delete("/merchant/products/cap").status_code == 204
    assert merchant.http.get("/merchant/products/cap").status_code == 404


def test_a_product_with_a_bad_price_is_refused_naming_it(kit: Kit) -> None:
    merchant = GatewayClient(app)
    response = merchant.http.put(
        "/merchant/products/cap", headers=JSON, body=json.dumps({"subject": "Cap", "prices": {"USD": 9}}).encode()
    )
    assert (response.status_code, response.json_body["field"]) == (422, "prices.USD")
    assert "cap" not in kit.catalogue.products


# --- events carry what fulfilment needs ---------------------------------------------------------------------------


def test_order_paid_carries_the_buyer_and_the_items(kit: Kit) -> None:
    number = buy(alice()).json_body["out_trade_no"]
    message = QueuedNotification(
        protocol="openapi",
        notify_id="n-1",
        out_trade_no=number,
        fields={
            "out_trade_no": number,
            "trade_status": "TRADE_SUCCESS",
            "total_amount": "32.25",
            "trade_no": "2026112622001",
            "app_id": kit.config.app_id or "",
        },
        received_at="2026-11-26T16:00:01.000Z",
    )
    kit.services.updater.apply(message)
    assert kit.order(number).status is OrderStatus.TRADE_SUCCESS
    kit.relay_stream()
    [paid] = [e for e in kit.publisher.events if str(e.detail_type) == "OrderPaid"]
    detail = paid.detail()
    assert (detail["buyer"], [i["sku"] for i in detail["items"]]) == (BUYER, ["tshirt", "mug"])


# --- the order's history says which path applied each change ----------------------------------------------------


def test_the_history_names_the_notification_the_reconciliation_and_the_refund_that_applied_each_change(
    kit: Kit,
) -> None:
    from chalicelib.services.evidence import AskedBy, GatewayAnswer, Payment, RefundAnswer

    number = buy(alice()).json_body["out_trade_no"]
    message = QueuedNotification(
        protocol="openapi",
        notify_id="n-1",
        out_trade_no=number,
        fields={"out_trade_no": number, "trade_status": "TRADE_SUCCESS", "total_amount": "32.25", "trade_no": "T1"},
        received_at="2026-11-26T16:00:01.000Z",
    )
    kit.services.updater.apply(message)
    paid = Payment(number, OrderStatus.TRADE_SUCCESS, Decimal("32.25"), trade_no="T1", refund_fee=Decimal("2.25"))
    kit.services.updater.apply(RefundAnswer(paid, "r-1", {}))
    finished = Payment(number, OrderStatus.TRADE_FINISHED, Decimal("32.25"), trade_no="T1")
    kit.services.updater.apply(GatewayAnswer(finished, AskedBy.RECONCILE, {}))
    history = GatewayClient(app).http.get(f"/merchant/orders/{number}").json_body["history"]
    assert [(c["status"], c["applied_by"]) for c in history] == [
        ("TRADE_SUCCESS", "notification"),
        ("TRADE_SUCCESS", "refund"),
        ("TRADE_FINISHED", "reconciliation"),
    ]
    assert (history[0]["notify_id"], history[1]["refund_fee"]) == ("n-1", "2.25")
