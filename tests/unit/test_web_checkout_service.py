"""Web checkout's use cases and routes over fakes: page/wap orders, and the shopper's return (GET /alipay/return)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlsplit

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.alipay.forms import signed_content
from chalicelib.alipay.openapi import request_signed_content
from chalicelib.alipay.signing import AlipayPublicKeys, SignType, decode_signature, verify_signature
from chalicelib.config import ConfigError
from chalicelib.orders.model import OrderStatus
from chalicelib.services.commands import CreateOrder
from chalicelib.services.errors import IdempotencyKeyReused, ReturnRejected, ValidationError
from chalicelib.services.ports import TradeQueryResult, Unavailable
from tests.alipay_fixtures import APP_ID, OUT_TRADE_NO, PARTNER, SELLER_ID, TRADE_NO, alipay_key, form_body, sign_fields
from tests.gateway_client import GatewayClient
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, make_kit

RETURN_URL = "https://shop.example.com/alipay/return"
RESULT_PAGE = "https://shop.example.com/orders/result"
PAGE_ORDER = {
    "subject": "T-shirt",
    "total_amount": "88.88",
    "currency": "USD",
    "channel": "page",
    "return_url": RETURN_URL,
}
WEB_ANSWER = {"out_trade_no", "channel", "payment_url", "payment_form", "status", "total_amount", "currency", "subject"}


def merchant_public_keys() -> AlipayPublicKeys:
    return AlipayPublicKeys((rsa_key("merchant").public_key(),))


def create(kit: Kit, body: dict[str, Any], key: str | None = None) -> dict[str, Any]:
    created = kit.services.orders.create(CreateOrder.from_json(body), key)
    assert created.status_code == 201
    return dict(created.body)


def payment_params(created: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(created["payment_url"]).query, keep_blank_values=True, strict_parsing=True))


# --- POST /orders with a web channel -----------------------------------------------------------------------------


@pytest.mark.parametrize(("channel", "method"), [("page", "alipay.trade.page.pay"), ("wap", "alipay.trade.wap.pay")])
def test_a_web_order_answers_a_signed_payment_url_and_form_not_an_order_string(channel: str, method: str) -> None:
    kit = make_kit()
    created = create(kit, {**PAGE_ORDER, "channel": channel})
    assert set(created) == WEB_ANSWER
    assert (created["channel"], created["status"]) == (channel, "WAIT_BUYER_PAY")
    assert created["payment_url"].startswith(kit.config.gateway_url + "?")
    params = payment_params(created)
    assert (params["method"], params["return_url"], params["notify_url"]) == (method, RETURN_URL, kit.config.notify_url)
    assert json.loads(params["biz_content"])["out_trade_no"] == created["out_trade_no"]
    verify_signature(
        merchant_public_keys(),
        request_signed_content(params).encode(),
        decode_signature(params["sign"]),
        SignType.RSA2,
    )
    assert f'value="{params["sign"]}"' in created["payment_form"]
    order = kit.order(created["out_trade_no"])
    assert (order.channel, order.return_url, order.status) == (channel, RETURN_URL, OrderStatus.WAIT_BUYER_PAY)


def test_an_app_order_is_unchanged_and_stored_as_the_app_channel() -> None:
    kit = make_kit()
    created = create(kit, {"subject": "T-shirt", "total_amount": "88.88", "currency": "USD"})
    assert set(created) == {"out_trade_no", "order_info", "status", "total_amount", "currency", "subject"}
    assert (kit.order(created["out_trade_no"]).channel, kit.order(created["out_trade_no"]).return_url) == ("app", None)


def test_a_web_order_without_a_return_url_takes_the_configured_default() -> None:
    kit = make_kit(RETURN_URL="https://pay.example.com/alipay/return")
    created = create(kit, {k: v for k, v in PAGE_ORDER.items() if k != "return_url"})
    assert payment_params(created)["return_url"] == "https://pay.example.com/alipay/return"


def test_with_return_url_hosts_configured_a_return_url_elsewhere_is_refused_and_the_listed_ones_pass() -> None:
    kit = make_kit(RETURN_URL_HOSTS="shop.example.com, Pay.Example.com", RETURN_URL="https://default.example.net/r")

    with pytest.raises(ValidationError, match=r"'evil\.example' is not one of the configured RETURN_URL_HOSTS"):
        kit.services.orders.create(CreateOrder.from_json({**PAGE_ORDER, "return_url": "https://evil.example/back"}))
    assert not kit.orders.orders
    for allowed in ("https://shop.example.com/back", "https://PAY.example.com/alipay/return"):
        created = create(kit, {**PAGE_ORDER, "return_url": allowed})
        assert payment_params(created)["return_url"] == allowed
    # The configured default is the operator's own choice: it is not checked against the list.
    created = create(kit, {k: v for k, v in PAGE_ORDER.items() if k != "return_url"})
    assert payment_params(created)["return_url"] == "https://default.example.net/r"


@pytest.mark.parametrize(
    ("body", "field", "reason"),
    [
        ({"return_url": None}, "return_url", "required for the page channel"),
        ({"return_url": "https://shop.example.com/back?x=1"}, "return_url", "query"),
        ({"return_url": "shop.example.com/back"}, "return_url", "absolute http"),
        ({"return_url": "https://shop.example.com/a b"}, "return_url", "whitespace"),
        ({"return_url": "https://shop.example.com/" + "x" * 250}, "return_url", "at most 256"),
        ({"channel": "pos"}, "channel", "app, page, wap"),
        ({"channel": "app"}, "return_url", "only for the page and wap channels"),
        ({"channel": 3}, "channel", "must be a string"),
    ],
)
def test_an_invalid_channel_or_return_url_is_refused_naming_the_field(
    body: dict[str, Any], field: str, reason: str
) -> None:
    kit = make_kit()
    request = {k: v for k, v in {**PAGE_ORDER, **body}.items() if v is not None}
    with pytest.raises(ValidationError, match=reason) as caught:
        kit.services.orders.create(CreateOrder.from_json(request))
    assert caught.value.field == field
    assert not kit.orders.orders


def test_a_repeated_idempotency_key_replays_the_web_order_and_a_changed_channel_is_refused() -> None:
    kit = make_kit()
    first = create(kit, PAGE_ORDER, "key-1")
    again = kit.services.orders.create(CreateOrder.from_json(PAGE_ORDER), "key-1")
    assert (again.replayed, dict(again.body)) == (True, first)
    assert len(kit.orders.orders) == 1
    with pytest.raises(IdempotencyKeyReused):
        kit.services.orders.create(CreateOrder.from_json({**PAGE_ORDER, "channel": "wap"}), "key-1")


def test_a_legacy_web_order_is_a_create_forex_trade_signed_sha1_rsa() -> None:
    kit = make_kit("mapi", ALIPAY_GATEWAY_URL="https://mapi.alipaydev.com/gateway.do")
    created = create(kit, {**PAGE_ORDER, "channel": "wap"})
    assert created["payment_url"].startswith("https://mapi.alipaydev.com/gateway.do?")
    params = payment_params(created)
    assert (params["service"], params["partner"], params["total_fee"]) == ("create_forex_trade_wap", PARTNER, "88.88")
    # The default 30m is not a timeout_rule Alipay enables by default: the order takes 12h (docs/protocols.md §5).
    assert (params["timeout_rule"], params["sign_type"]) == ("12h", "RSA")
    content = signed_content(params, ("sign", "sign_type")).encode()
    verify_signature(merchant_public_keys(), content, decode_signature(params["sign"]), SignType.RSA)


def test_a_legacy_web_order_with_a_timeout_create_forex_trade_cannot_take_names_the_timeout() -> None:
    kit = make_kit("mapi")
    with pytest.raises(ValidationError, match="must be one of 5m, 10m") as caught:
        kit.services.orders.create(CreateOrder.from_json({**PAGE_ORDER, "timeout": "45m"}))
    assert caught.value.field == "timeout"


# --- the return --------------------------------------------------------------------------------------------------


def return_fields(**overrides: str) -> dict[str, str]:
    fields = {
        "charset": "utf-8",
        "out_trade_no": OUT_TRADE_NO,
        "method": "alipay.trade.page.pay.return",
        "total_amount": "88.88",
        "trade_no": TRADE_NO,
        "auth_app_id": APP_ID,
        "version": "1.0",
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "timestamp": "2026-11-27 00:31:00",
    }
    return {**fields, **overrides}


def return_query(fields: dict[str, str] | None = None, key: Any = None) -> dict[str, list[str]]:
    signed = sign_fields(fields or return_fields(), key or alipay_key())
    return {k: [v] for k, v in signed.items()}


def paid(amount: str = "88.88") -> TradeQueryResult:
    return TradeQueryResult(True, "TRADE_SUCCESS", TRADE_NO, Decimal(amount), raw={"trade_status": "TRADE_SUCCESS"})


@pytest.fixture
def kit() -> Kit:
    kit = make_kit()
    kit.add_order()
    return kit


def test_a_genuine_return_for_a_waiting_order_asks_alipay_and_applies_what_it_confirms_once(kit: Kit) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = paid()
    returned = kit.services.web_returns.handle(return_query())
    kit.relay_stream()
    assert (returned.out_trade_no, returned.status) == (OUT_TRADE_NO, "TRADE_SUCCESS")
    assert kit.gateway.queries == [OUT_TRADE_NO]
    assert kit.event_types() == ["OrderPaid"]
    kit.services.web_returns.handle(return_query())  # the shopper reloads the page
    kit.relay_stream()
    assert kit.gateway.queries == [OUT_TRADE_NO]  # paid now: nothing more to ask
    assert kit.event_types() == ["OrderPaid"]


def test_a_genuine_return_never_marks_the_order_paid_on_its_own_word(kit: Kit) -> None:
    returned = kit.services.web_returns.handle(return_query())  # Alipay's query knows no such trade (yet)
    assert returned.status == "WAIT_BUYER_PAY"
    assert kit.order().version == 1


def test_a_query_outage_during_the_return_shows_the_stored_status(kit: Kit) -> None:
    kit.gateway.fail_with(Unavailable("gateway down"))
    assert kit.services.web_returns.handle(return_query()).status == "WAIT_BUYER_PAY"


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (lambda: {**return_query(), "total_amount": ["0.01"]}, "signature"),
        (lambda: return_query(key=rsa_key("forger")), "signature"),
        (lambda: return_query(return_fields(total_amount="1.00")), "mismatch"),
        (lambda: return_query(return_fields(app_id="2021000000009999")), "mismatch"),
        (lambda: return_query(return_fields(out_trade_no="NO-SUCH-ORDER")), "unknown_order"),
        (lambda: {k: v for k, v in return_query().items() if k != "sign"}, "missing_sign"),
        (lambda: {**return_query(), "sign_type": ["RSA"]}, "sign_type"),
        (lambda: {}, "malformed"),
    ],
)
def test_a_forged_tampered_foreign_or_malformed_return_is_rejected_and_nothing_is_asked(
    kit: Kit, query: Any, reason: str
) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = paid()
    with pytest.raises(ReturnRejected) as caught:
        kit.services.web_returns.handle(query())
    assert caught.value.reason == reason
    assert kit.gateway.queries == []
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY


def test_a_genuine_legacy_return_is_verified_sha1_rsa() -> None:
    kit = make_kit("mapi")
    kit.add_order()
    fields = {"out_trade_no": OUT_TRADE_NO, "total_fee": "88.88", "trade_status": "TRADE_FINISHED",
              "trade_no": TRADE_NO, "currency": "USD"}  # fmt: skip
    signed = sign_fields(fields, alipay_key(), sign_type=SignType.RSA)
    assert kit.services.web_returns.handle({k: [v] for k, v in signed.items()}).status == "WAIT_BUYER_PAY"
    assert kit.gateway.queries == [OUT_TRADE_NO]
    with pytest.raises(ReturnRejected, match="does not verify"):
        kit.services.web_returns.handle({**{k: [v] for k, v in signed.items()}, "is_success": ["F"]})


# --- the routes ------------------------------------------------------------------------------------------------


@pytest.fixture
def installed(kit: Kit) -> Iterator[Kit]:
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def get_return(client: GatewayClient, query: dict[str, list[str]]) -> Any:
    body = form_body({k: v[0] for k, v in query.items()})
    return client.http.get("/alipay/return?" + body.decode())


def test_post_orders_with_the_page_channel_answers_201_with_the_payment_url(installed: Kit) -> None:
    response = GatewayClient(app).http.post(
        "/merchant/orders", headers={"Content-Type": "application/json"}, body=json.dumps(PAGE_ORDER).encode()
    )
    assert response.status_code == 201
    assert response.json_body["payment_url"].startswith(installed.config.gateway_url)


def test_a_bad_return_url_is_422_naming_it(installed: Kit) -> None:
    response = GatewayClient(app).http.post(
        "/merchant/orders",
        headers={"Content-Type": "application/json"},
        body=json.dumps({**PAGE_ORDER, "return_url": "nope"}).encode(),
    )
    assert (response.status_code, response.json_body["code"]) == (422, "invalid_field")
    assert response.json_body["message"].startswith("return_url:")


def test_the_return_page_shows_the_server_side_status_in_a_minimal_result_page(installed: Kit) -> None:
    installed.gateway.trades[OUT_TRADE_NO] = paid()
    response = get_return(GatewayClient(app), return_query())
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/html")
    html = response.body.decode()
    assert '<strong id="order-status" data-status="TRADE_SUCCESS">TRADE_SUCCESS</strong>' in html
    assert f'<code id="out-trade-no">{OUT_TRADE_NO}</code>' in html
    assert 'id="error"' not in html


def test_with_a_result_page_configured_the_return_redirects_there_with_the_order_only() -> None:
    kit = make_kit(RESULT_PAGE_URL=RESULT_PAGE + "?shop=1")
    kit.add_order()
    bootstrap.use(kit.services)
    try:
        response = get_return(GatewayClient(app), return_query())
    finally:
        bootstrap.use(None)
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RESULT_PAGE
    # No status: the link is public and unsigned, so the merchant's page asks its backend for the order's status.
    assert parse_qs(location.query) == {"shop": ["1"], "out_trade_no": [OUT_TRADE_NO]}


def test_a_tampered_return_gets_the_html_error_page_with_400_never_a_result_page(installed: Kit) -> None:
    installed.gateway.trades[OUT_TRADE_NO] = paid()
    response = get_return(GatewayClient(app), {**return_query(), "total_amount": ["0.01"]})
    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("text/html")
    html = response.body.decode()
    assert 'id="error"' in html
    assert "order-status" not in html
    assert installed.order().status is OrderStatus.WAIT_BUYER_PAY


def test_a_return_without_any_query_is_the_error_page(installed: Kit) -> None:
    response = GatewayClient(app).http.get("/alipay/return")
    assert response.status_code == 400
    assert 'id="error"' in response.body.decode()


def test_an_outage_reading_the_order_is_a_503_error_page(installed: Kit) -> None:
    installed.orders.fail_with(Unavailable("DynamoDB throttled", retry_after=2))
    response = get_return(GatewayClient(app), return_query())
    assert (response.status_code, response.headers["Retry-After"]) == (503, "2")
    assert 'id="error"' in response.body.decode()


def test_a_return_naming_another_destination_never_redirects_there() -> None:
    """The only Location is RESULT_PAGE_URL: a field the request adds is unsigned, so the return is refused."""
    kit = make_kit(RESULT_PAGE_URL=RESULT_PAGE)
    kit.add_order()
    bootstrap.use(kit.services)
    try:
        response = get_return(GatewayClient(app), {**return_query(), "return_url": ["https://evil.example/"]})
    finally:
        bootstrap.use(None)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "evil.example" not in response.body.decode()


def test_the_pages_escape_every_value_they_show() -> None:
    from chalicelib.routes.pages import error_page, result_page

    markup = '"><script>alert(1)</script>'
    for html in (result_page(markup, markup), error_page(400, markup)):
        assert "<script>" not in html
        assert "&quot;&gt;&lt;script&gt;" in html  # an attribute cannot be closed either


def test_a_deployed_stage_refuses_plain_http_and_unlisted_return_urls() -> None:
    kit = make_kit(STRICT_RETURN_URLS="true", RETURN_URL="https://default.example.net/r")
    for url, reason in (
        ("http://shop.example.com/back", r"must be an https:// URL"),
        ("https://shop.example.com/back", r"no RETURN_URL_HOSTS are configured"),
    ):
        with pytest.raises(ValidationError, match=reason):
            kit.services.orders.create(CreateOrder.from_json({**PAGE_ORDER, "return_url": url}))
    assert not kit.orders.orders
    # The default return page still works; with hosts listed, those are allowed (https only).
    created = create(kit, {k: v for k, v in PAGE_ORDER.items() if k != "return_url"})
    assert payment_params(created)["return_url"] == "https://default.example.net/r"
    listed = make_kit(STRICT_RETURN_URLS="true", RETURN_URL_HOSTS="shop.example.com")
    created = create(listed, {**PAGE_ORDER, "return_url": "https://shop.example.com/back"})
    assert payment_params(created)["return_url"] == "https://shop.example.com/back"
    with pytest.raises(ValidationError, match="https://"):
        listed.services.orders.create(CreateOrder.from_json({**PAGE_ORDER, "return_url": "http://shop.example.com/b"}))
    with pytest.raises(ConfigError, match="RETURN_URL"):
        make_kit(STRICT_RETURN_URLS="true", RETURN_URL="http://default.example.net/r")
