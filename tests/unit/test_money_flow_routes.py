"""The refund route and the scheduled reconciliation, wired through ``app.py`` to services over fakes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest

from app import app, handle_schedule_event
from chalicelib import bootstrap
from chalicelib.orders.model import OrderStatus
from chalicelib.services.ports import TradeQueryResult
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.gateway_client import MERCHANT_ARN, GatewayClient
from tests.unit.services_kit import Kit, make_kit

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def kit() -> Iterator[Kit]:
    kit = make_kit()
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def paid(kit: Kit) -> None:
    kit.add_order(amount="88.88")
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.TRADE_SUCCESS, version=2)
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_SUCCESS", "t-1", Decimal("88.88"), "USD")


def post_refund(body: object, out_trade_no: str = OUT_TRADE_NO) -> tuple[int, object]:
    path = f"/merchant/orders/{out_trade_no}/refunds"
    response = GatewayClient(app).http.post(path, headers=JSON, body=json.dumps(body).encode())
    return response.status_code, response.json_body


def test_a_refund_is_201_and_the_order_shows_it(kit: Kit) -> None:
    paid(kit)
    status, body = post_refund({"amount": "8.88", "out_request_no": "r-1"})
    assert (status, body) == (
        201,
        {
            "out_trade_no": OUT_TRADE_NO,
            "out_request_no": "r-1",
            "refund_amount": "8.88",
            "refund_fee": "8.88",
            "status": "REFUND_SUCCESS",
            "requested_by": MERCHANT_ARN,  # who asked: the caller's IAM identity, as API Gateway vouched for it
        },
    )
    shown = GatewayClient(app).http.get(f"/merchant/orders/{OUT_TRADE_NO}").json_body
    assert (shown["refund_fee"], shown["refunds"]) == ("8.88", [body])


@pytest.mark.parametrize(
    ("setup", "body", "status", "code"),
    [
        ("paid", {"amount": "88.89"}, 422, "invalid_field"),
        ("paid", {"amount": 1}, 422, "invalid_field"),
        ("waiting", {"amount": "1.00"}, 409, "not_refundable"),
        ("none", {"amount": "1.00"}, 404, "not_found"),
    ],
)
def test_a_refund_that_cannot_be_made_is_answered_by_type(
    kit: Kit, setup: str, body: object, status: int, code: str
) -> None:
    if setup == "paid":
        paid(kit)
    elif setup == "waiting":
        kit.add_order()
    answered, answer = post_refund(body)
    assert (answered, answer["code"]) == (status, code)  # type: ignore[index]


def test_the_legacy_protocol_refunds_a_finished_order_through_forex_refund() -> None:
    kit = make_kit("mapi")
    bootstrap.use(kit.services)
    try:
        kit.add_order(amount="88.88")
        kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.TRADE_FINISHED, version=2)
        kit.gateway.legacy = True
        kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_FINISHED", "t-1", Decimal("88.88"), "USD")
        status, answer = post_refund({"amount": "1.00", "out_request_no": "r-1"})
        repeat, _ = post_refund({"amount": "1.00", "out_request_no": "r-1"})
    finally:
        bootstrap.use(None)
    assert (status, repeat) == (201, 201)
    assert answer == {
        "out_trade_no": OUT_TRADE_NO,
        "out_request_no": "r-1",
        "refund_amount": "1.00",
        "refund_fee": "1.00",
        "status": "REFUND_SUCCESS",
        "requested_by": MERCHANT_ARN,
    }
    assert kit.gateway.calls == 1


def test_the_scheduled_handler_runs_one_reconciliation_and_reports_it(kit: Kit) -> None:
    kit.add_order()
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_SUCCESS", "t-1", Decimal("88.88"), "USD")
    report = handle_schedule_event({"detail-type": "Scheduled Event"}, None)
    assert (report["examined"], report["applied"]) == (1, 1)
    assert kit.order().status is OrderStatus.TRADE_SUCCESS


def test_a_503_after_the_reservation_names_the_out_request_no_and_the_retry_with_it_refunds_once(kit: Kit) -> None:
    paid(kit)
    kit.gateway.lose_refund_replies = 1  # Alipay refunds; its reply is lost
    status, body = post_refund({"amount": "8.88"})
    assert (status, body["code"]) == (503, "unavailable")  # type: ignore[index]
    out_request_no = body["out_request_no"]  # type: ignore[index]
    assert kit.order().refunds[out_request_no].amount == Decimal("8.88")

    status, retried = post_refund({"amount": "8.88", "out_request_no": out_request_no})

    assert (status, retried["status"]) == (201, "REFUND_SUCCESS")  # type: ignore[index]
    assert kit.gateway.refunds[OUT_TRADE_NO] == {out_request_no: Decimal("8.88")}


def test_a_refund_alipay_has_not_carried_out_yet_is_202_pending(kit: Kit) -> None:
    paid(kit)
    kit.gateway.slow_refunds = True  # fund_change=N, and the refund query says not yet
    status, body = post_refund({"amount": "8.88", "out_request_no": "r-1"})
    assert (status, body["status"], body["out_request_no"]) == (202, "REFUND_PENDING", "r-1")  # type: ignore[index]
