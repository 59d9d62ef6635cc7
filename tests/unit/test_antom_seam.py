"""Antom through the same services: orders created at Antom, refunds by paymentId, unsigned results only prompting an
inquiry, refund notifications settling their refund, and the configuration that selects it all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.config import Config, ConfigError
from chalicelib.orders.model import OrderStatus, RefundStatus
from chalicelib.services.clock import iso_utc
from chalicelib.services.commands import BuyerOrder, CreateOrder
from chalicelib.services.errors import ValidationError
from chalicelib.services.ports import PaymentRefused, TradeQueryResult, Unavailable
from tests.fakes import FakeAntomGateway
from tests.gateway_client import GatewayClient
from tests.unit.services_kit import ANTOM_CLIENT_ID, NOW, Kit, env, make_kit

ORDER = {"subject": "Coffee beans", "total_amount": "12.34", "currency": "USD", "os_type": "IOS"}


@pytest.fixture
def kit() -> Kit:
    return make_kit("antom")


def gateway(kit: Kit) -> FakeAntomGateway:
    assert isinstance(kit.gateway, FakeAntomGateway)
    return kit.gateway


def create(kit: Kit, **overrides: Any) -> dict[str, Any]:
    command = CreateOrder.from_json({**ORDER, **overrides})
    return dict(kit.services.orders.create(command, created_by="arn:aws:iam::000000000000:user/shop").body)


# --- configuration -------------------------------------------------------------------------------------------


def test_an_antom_stage_needs_its_client_id_and_no_app_id() -> None:
    config = Config.from_env(env("antom"))
    assert (config.antom_client_id, config.app_id) == (ANTOM_CLIENT_ID, None)
    assert config.gateway_url == "https://open-sea-global.alipay.com"
    assert config.antom_payment_methods == ("ALIPAY_CN", "ALIPAY_HK")
    with pytest.raises(ConfigError) as missing:
        Config.from_env(env("antom", ANTOM_CLIENT_ID=""))
    assert missing.value.variable == "ANTOM_CLIENT_ID"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"ALIPAY_SIGN_TYPE": "RSA", "MERCHANT_PRIVATE_KEY_FILE": "/k.pem"}, "ALIPAY_SIGN_TYPE"),
        ({"ALIPAY_KEY_MODE": "cert"}, "ALIPAY_KEY_MODE"),
        ({"ANTOM_PAYMENT_METHODS": "ALIPAY_CN,alipay hk"}, "ANTOM_PAYMENT_METHODS"),
        ({"SIGNING_KEY_ID": ""}, "SIGNING_KEY_ID"),
    ],
)
def test_an_antom_stage_refuses_what_antom_cannot_do(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as refused:
        Config.from_env(env("antom", **overrides))
    assert refused.value.variable == variable


# --- orders --------------------------------------------------------------------------------------------------


def test_an_app_order_is_created_at_antom_and_answered_with_where_the_buyer_pays(kit: Kit) -> None:
    body = create(kit, out_trade_no="shop-1001", timeout="15m")

    [payment] = gateway(kit).payments
    assert (payment.out_trade_no, payment.amount, payment.currency) == ("shop-1001", Decimal("12.34"), "USD")
    assert (payment.terminal_type, payment.os_type, payment.payment_method_type) == ("APP", "IOS", "ALIPAY_CN")
    # paymentExpiryTime is absolute: the order's own pay_by, so Antom refuses a payment after the order closed here.
    assert payment.expiry == NOW + timedelta(minutes=15)
    assert kit.order("shop-1001").pay_by == iso_utc(payment.expiry)
    # Antom adds nothing to paymentRedirectUrl: the order's number travels in it, so the return page knows the order.
    redirect = urlsplit(payment.redirect_url)
    assert redirect.netloc == "shop.example.com"
    assert parse_qs(redirect.query) == {"out_trade_no": ["shop-1001"]}
    assert "order_info" not in body
    assert body["normal_url"].startswith("https://")
    assert body["scheme_url"].startswith("alipays://")
    assert body["payment_id"] == kit.gateway.trades["shop-1001"].trade_no
    assert body["status"] == "WAIT_BUYER_PAY"
    assert kit.order("shop-1001").status is OrderStatus.WAIT_BUYER_PAY


def test_a_web_order_answers_the_cashier_page_as_its_payment_url(kit: Kit) -> None:
    body = create(kit, channel="page", os_type=None, payment_method="ALIPAY_HK")
    [payment] = gateway(kit).payments
    assert (payment.terminal_type, payment.os_type, payment.payment_method_type) == ("WEB", None, "ALIPAY_HK")
    assert body["channel"] == "page"
    assert body["payment_url"] == body["normal_url"]
    assert "payment_form" not in body


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"os_type": None}, "os_type"),  # an app order: Antom opens the wallet by the OS
        ({"os_type": "WINDOWS"}, "os_type"),
        ({"payment_method": "GCASH"}, "payment_method"),  # not one ANTOM_PAYMENT_METHODS enables
    ],
)
def test_an_antom_order_antom_would_refuse_is_refused_here_and_never_sent(
    kit: Kit, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        create(kit, **overrides)
    assert refused.value.field == field
    assert gateway(kit).payments == []
    assert kit.orders.orders == {}


def test_antom_options_are_refused_on_another_protocol() -> None:
    kit = make_kit("openapi")
    with pytest.raises(ValidationError) as refused:
        kit.services.orders.create(CreateOrder.from_json(ORDER))
    assert refused.value.field == "os_type"


@pytest.mark.parametrize("failure", ["refused", "reply lost"])
def test_a_payment_antom_did_not_create_for_us_leaves_no_order_behind(kit: Kit, failure: str) -> None:
    if failure == "refused":
        gateway(kit).refuse_payments_with = "CURRENCY_NOT_SUPPORT"
        expected: type[Exception] = PaymentRefused
    else:
        gateway(kit).lose_pay_replies = 1
        expected = Unavailable
    with pytest.raises(expected):
        create(kit, out_trade_no="shop-1002")
    # Nobody was handed a URL to pay with, so no order may wait here for a payment that cannot come.
    assert "shop-1002" not in kit.orders.orders


def test_a_buyers_order_is_priced_here_and_created_at_antom(kit: Kit) -> None:
    from chalicelib.orders.catalogue import Product

    kit.catalogue.put(Product("tshirt", "T-shirt", {"USD": Decimal("20.00")}))
    command = BuyerOrder.from_json({"items": [{"sku": "tshirt", "quantity": 2}], "os_type": "ANDROID"})
    body = kit.services.orders.create_for_buyer(command, "buyer-1").body
    [payment] = gateway(kit).payments
    assert (payment.amount, payment.os_type) == (Decimal("40.00"), "ANDROID")
    assert body["normal_url"]
    assert body["buyer"] == "buyer-1"


# --- the app's result and the return page only prompt an inquiry ---------------------------------------------------


def test_an_app_result_of_9000_is_not_believed_but_antoms_own_answer_is(kit: Kit) -> None:
    create(kit, out_trade_no="shop-1003")
    result = kit.services.client_results.check("shop-1003", {"resultStatus": "9000", "result": "{}"})
    # Antom has not confirmed the payment: the app's word changes nothing.
    assert (result.verified, result.status, result.reason) == (False, "WAIT_BUYER_PAY", "unsigned_result")
    assert kit.gateway.queries == ["shop-1003"]
    trade = kit.gateway.trades["shop-1003"]
    kit.gateway.trades["shop-1003"] = TradeQueryResult(True, "TRADE_SUCCESS", trade.trade_no, Decimal("12.34"), "USD")
    kit.clock.advance(seconds=10)  # past the active query's cooldown
    result = kit.services.client_results.check("shop-1003", {"resultStatus": "6001", "result": ""})
    assert result.status == "TRADE_SUCCESS"
    assert kit.order("shop-1003").history[-1].applied_by == "client_result"


def test_the_return_page_names_its_order_and_only_prompts_an_inquiry(kit: Kit) -> None:
    create(kit, out_trade_no="shop-1004", channel="wap", os_type=None)
    returned = kit.services.web_returns.handle({"out_trade_no": ["shop-1004"]})
    assert (returned.out_trade_no, returned.status) == ("shop-1004", "WAIT_BUYER_PAY")
    assert kit.gateway.queries == ["shop-1004"]


# --- refunds -------------------------------------------------------------------------------------------------


def paid(kit: Kit, out_trade_no: str) -> str:
    create(kit, out_trade_no=out_trade_no)
    trade = kit.gateway.trades[out_trade_no]
    kit.gateway.trades[out_trade_no] = TradeQueryResult(True, "TRADE_SUCCESS", trade.trade_no, Decimal("12.34"), "USD")
    kit.clock.advance(seconds=10)
    kit.services.client_results.check(out_trade_no, {"resultStatus": "9000", "result": ""})
    assert kit.order(out_trade_no).status is OrderStatus.TRADE_SUCCESS
    assert trade.trade_no is not None
    return trade.trade_no


def test_a_refund_names_antoms_payment_id(kit: Kit) -> None:
    payment_id = paid(kit, "shop-1005")
    view = kit.services.refunds.refund("shop-1005", {"amount": "2.34", "out_request_no": "rf-1"})
    assert view["status"] == "REFUND_SUCCESS"
    assert kit.gateway.refund_trade_nos == [payment_id]


def test_a_refund_notification_settles_its_pending_refund_once_and_is_a_duplicate_after(kit: Kit) -> None:
    paid(kit, "shop-1006")
    kit.gateway.slow_refunds = True  # Antom answers U: accepted, not done
    view = kit.services.refunds.refund("shop-1006", {"amount": "2.34", "out_request_no": "rf-2"})
    assert view["status"] == "REFUND_PENDING"
    refunds = kit.services.refunds
    # notifyRefund names no order: the pending refunds are searched for its refundRequestId.
    assert refunds.notified("", "rf-2", succeeded=True) == "applied"
    refund = kit.order("shop-1006").refunds["rf-2"]
    assert refund.status is RefundStatus.SUCCEEDED
    assert kit.order("shop-1006").refund_fee == Decimal("2.34")
    assert refunds.notified("shop-1006", "rf-2", succeeded=True) == "duplicate"
    assert refunds.notified("shop-1006", "rf-2", succeeded=False) == "conflict"
    assert refunds.notified("", "rf-unknown", succeeded=True) == "unknown"
    assert kit.order("shop-1006").refund_fee == Decimal("2.34")


def test_a_failed_refund_notification_frees_the_amount(kit: Kit) -> None:
    paid(kit, "shop-1007")
    kit.gateway.slow_refunds = True
    kit.services.refunds.refund("shop-1007", {"amount": "12.34", "out_request_no": "rf-3"})
    assert kit.services.refunds.notified("shop-1007", "rf-3", succeeded=False) == "applied"
    order = kit.order("shop-1007")
    assert order.refunds["rf-3"].status is RefundStatus.FAILED
    assert order.refundable == Decimal("12.34")


# --- the routes ----------------------------------------------------------------------------------------------


@pytest.fixture
def openapi_stage() -> Iterator[Kit]:
    kit = make_kit("openapi")
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


@pytest.fixture
def antom_stage(kit: Kit) -> Iterator[Kit]:
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def test_antoms_route_answers_404_on_another_protocols_stage(openapi_stage: Kit) -> None:
    response = GatewayClient(app).http.post(
        "/antom/notify", headers={"Content-Type": "application/json"}, body=b'{"notifyType":"PAYMENT_RESULT"}'
    )
    assert response.status_code == 404
    assert json.loads(response.body)["code"] == "not_found"
    assert openapi_stage.queue.messages == []


def test_alipays_route_answers_404_fail_on_an_antom_stage(antom_stage: Kit) -> None:
    response = GatewayClient(app).http.post(
        "/alipay/notify", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"a=b"
    )
    assert (response.status_code, response.body) == (404, b"fail")
    assert antom_stage.queue.messages == []


def test_antoms_route_refuses_a_form_before_reading_it(antom_stage: Kit) -> None:
    response = GatewayClient(app).http.post(
        "/antom/notify", headers={"Content-Type": "application/x-www-form-urlencoded"}, body=b"a=b"
    )
    assert response.status_code == 415
    assert json.loads(response.body)["code"] == "unsupported_media_type"
