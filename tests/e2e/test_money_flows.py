"""Beyond the first payment, through the local stack: lost notifications found by reconciliation, and refunds."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.e2e.conftest import LocalStack, wait_for


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    return openapi_stack


def test_a_payment_whose_notifications_are_all_dropped_is_found_by_reconciliation(stack: LocalStack) -> None:
    order = stack.create_order("31.00", "USD")
    number = order["out_trade_no"]
    # The first delivery is held back, then every scheduled delivery is dropped: Alipay never reaches us.
    assert stack.pay(order["order_info"], notify_delay=30)["resultStatus"] == "9000"
    assert stack.http.post(f"{stack.sandbox}/sandbox/stop-retries").status_code == 200

    paid = stack.wait_for_status(number, "TRADE_SUCCESS")

    assert paid["trade_no"] == stack.trade(number)["trade_no"]
    assert stack.trade(number)["attempts"] == []
    events = stack.tap.settled(number, ["OrderPaid"])
    assert Counter(e["detail-type"] for e in events) == {"OrderPaid": 1}
    assert events[0]["detail"]["notify_id"] is None  # applied from Alipay's query answer


def test_a_partial_then_a_full_refund_each_emit_one_order_refunded_and_the_full_one_closes(stack: LocalStack) -> None:
    order = stack.create_order("20.00", "USD")
    number = order["out_trade_no"]
    stack.pay(order["order_info"])
    stack.wait_for_status(number, "TRADE_SUCCESS")
    url = f"{stack.api}/orders/{number}/refunds"

    partial = stack.http.post(url, json={"amount": "5.00", "reason": "one cup", "out_request_no": "r1"})
    again = stack.http.post(url, json={"amount": "5.00", "reason": "one cup", "out_request_no": "r1"})
    too_much = stack.http.post(url, json={"amount": "15.01"})
    full = stack.http.post(url, json={"amount": "15.00", "out_request_no": "r2"})

    assert (partial.status_code, again.status_code, too_much.status_code, full.status_code) == (201, 201, 422, 201)
    assert partial.json() == again.json()
    assert partial.json() == {
        "out_trade_no": number,
        "out_request_no": "r1",
        "refund_amount": "5.00",
        "refund_fee": "5.00",
        "status": "REFUND_SUCCESS",
        "reason": "one cup",
    }
    assert full.json()["refund_fee"] == "20.00"
    expected = ["OrderPaid", "OrderRefunded", "OrderRefunded", "OrderClosed"]
    events = stack.tap.settled(number, expected)
    assert Counter(e["detail-type"] for e in events) == Counter(expected)
    refunds = sorted(e["detail"]["event_id"] for e in events if e["detail-type"] == "OrderRefunded")
    assert refunds == [f"{number}:OrderRefunded:20.00", f"{number}:OrderRefunded:5.00"]
    # The sandbox's refund notifications were delivered and acknowledged, and changed nothing a second time.
    wait_for("the refund notifications", lambda: len(stack.trade(number)["attempts"]) >= 3 or None)
    shown = stack.order(number)
    assert (shown["status"], shown["closed_reason"], shown["refund_fee"]) == ("TRADE_CLOSED", "refunded", "20.00")
    assert [r["out_request_no"] for r in shown["refunds"]] == ["r1", "r2"]
    assert stack.http.post(url, json={"amount": "1.00"}).status_code == 409
