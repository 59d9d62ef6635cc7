"""Beyond the first payment, through the local stack: lost notifications found by reconciliation, refunds (both
protocols), and unpaid orders closed on timeout."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import LocalStack, wait_for

SCHEDULE_SECONDS = 2.0  # the local schedule worker's default interval (LOCAL_SCHEDULE_SECONDS)


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
    history = stack.order(number)["history"]
    assert [(c["status"], c["applied_by"]) for c in history] == [("TRADE_SUCCESS", "reconciliation")]


def test_a_partial_then_a_full_refund_each_emit_one_order_refunded_and_the_full_one_closes(stack: LocalStack) -> None:
    order = stack.create_order("20.00", "USD")
    number = order["out_trade_no"]
    stack.pay(order["order_info"])
    stack.wait_for_status(number, "TRADE_SUCCESS")

    partial = stack.refund(number, {"amount": "5.00", "reason": "one cup", "out_request_no": "r1"})
    again = stack.refund(number, {"amount": "5.00", "reason": "one cup", "out_request_no": "r1"})
    too_much = stack.refund(number, {"amount": "15.01"})
    full = stack.refund(number, {"amount": "15.00", "out_request_no": "r2"})

    assert (partial.status, again.status, too_much.status, full.status) == (201, 201, 422, 201)
    assert partial.json() == again.json()
    assert partial.json() == {
        "out_trade_no": number,
        "out_request_no": "r1",
        "refund_amount": "5.00",
        "refund_fee": "5.00",
        "status": "REFUND_SUCCESS",
        "reason": "one cup",
        "requested_by": stack.info["merchant_arn"],  # the signed caller, as API Gateway's IAM check names it
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
    assert stack.refund(number, {"amount": "1.00"}).status == 409


# --- close on timeout: the test ages the order, the stack's scheduled reconciliation closes it ------------------


def age_order(stack: LocalStack, out_trade_no: str, hours: int = 2) -> None:
    """Move the order's clock back, as an operator or a fixture would edit the table: created ``hours`` ago and
    already past its own timeout (``pay_by``), instead of waiting out Alipay's minimum of one minute."""
    then = datetime.now(UTC) - timedelta(hours=hours)
    created, pay_by = (f"{t.isoformat(timespec='milliseconds').removesuffix('+00:00')}Z" for t in (then, then))
    stack.dynamodb.update_item(
        TableName=stack.info["orders_table"],
        Key={"pk": {"S": f"order#{out_trade_no}"}},
        UpdateExpression="SET #created = :created, #pay_by = :pay_by, #since = :created",
        ConditionExpression="#status = :waiting",
        ExpressionAttributeNames={
            "#created": "created_at",
            "#pay_by": "pay_by",
            "#since": "waiting_since",
            "#status": "status",
        },
        ExpressionAttributeValues={
            ":created": {"S": created},
            ":pay_by": {"S": pay_by},
            ":waiting": {"S": "WAIT_BUYER_PAY"},
        },
    )


def quarantined(stack: LocalStack, notify_id: str) -> dict[str, Any] | None:
    """The quarantine record of a notification, read from the table as an operator would."""
    item = stack.dynamodb.get_item(
        TableName=stack.info["orders_table"], Key={"pk": {"S": f"quarantine#{notify_id}"}}, ConsistentRead=True
    ).get("Item")
    return {k: v.get("S") for k, v in item.items()} if item else None


@pytest.mark.parametrize(
    ("protocol", "late_status", "alipay_status"),
    [("openapi", "TRADE_SUCCESS", "TRADE_CLOSED"), ("mapi", "TRADE_FINISHED", "TRADE_FINISHED")],
    ids=["openapi-trade-close", "mapi-expiry"],
)
def test_an_unpaid_order_is_closed_on_timeout_once_and_a_late_payment_is_quarantined(
    request: pytest.FixtureRequest, protocol: str, late_status: str, alipay_status: str
) -> None:
    stack: LocalStack = request.getfixturevalue(f"{protocol}_stack")
    order = stack.create_order("7.00", "USD")
    number = order["out_trade_no"]
    # The buyer opened the cashier and never paid: Alipay holds the trade, waiting (the payment would come in an hour).
    assert stack.pay(order["order_info"], outcome="pending", notify_delay=3600)["resultStatus"] == "8000"
    time.sleep(2 * SCHEDULE_SECONDS)
    assert stack.order(number)["status"] == "WAIT_BUYER_PAY"  # queried, still unpaid and in time: left alone

    age_order(stack, number)

    closed = stack.wait_for_status(number, "TRADE_CLOSED")
    assert closed["closed_reason"] == "timeout"
    events = stack.tap.settled(number, ["OrderClosed"])
    assert Counter(e["detail-type"] for e in events) == {"OrderClosed": 1}
    assert events[0]["detail"]["previous_status"] == "WAIT_BUYER_PAY"
    # openapi: closed at Alipay by alipay.trade.close (whose TRADE_CLOSED notification then changes nothing);
    # mapi: no close API, Alipay's query said unpaid after it_b_pay, and the sandbox's trade is left as it was.
    if protocol == "openapi":
        assert stack.trade(number)["status"] == "TRADE_CLOSED"
        stack.wait_for_acknowledged(number)

    # Alipay (here: the sandbox, told to) notifies a payment for the closed order: genuine, but money for a dead
    # order, so it is acknowledged and quarantined for an operator, never applied.
    late = stack.notify(number, late_status)
    record = wait_for("the late payment to be quarantined", lambda: quarantined(stack, late["notify_id"]))

    assert record["reason"] == "illegal_transition"
    assert "TRADE_CLOSED" in record["detail"]
    shown = stack.order(number)
    assert (shown["status"], shown["closed_reason"]) == ("TRADE_CLOSED", "timeout")
    assert stack.trade(number)["status"] == alipay_status
    assert Counter(e["detail-type"] for e in stack.tap.settled(number, [])) == {"OrderClosed": 1}


# --- legacy refunds: forex_refund --------------------------------------------------------------------------------


def test_a_legacy_partial_then_full_refund_each_emit_one_order_refunded_and_the_full_one_closes(
    mapi_stack: LocalStack,
) -> None:
    stack = mapi_stack
    order = stack.create_order("20.00", "USD")
    number = order["out_trade_no"]
    stack.pay(order["order_info"])
    stack.wait_for_status(number, "TRADE_FINISHED")  # cross-border payments end here, and stay refundable

    partial = stack.refund(number, {"amount": "5.00", "reason": "one cup", "out_request_no": "r1"})
    again = stack.refund(number, {"amount": "5.00", "reason": "one cup", "out_request_no": "r1"})
    too_much = stack.refund(number, {"amount": "15.01"})
    after_partial = stack.order(number)
    full = stack.refund(number, {"amount": "15.00", "out_request_no": "r2"})

    assert (partial.status, again.status, too_much.status, full.status) == (201, 201, 422, 201)
    assert partial.json() == again.json()
    assert partial.json() == {
        "out_trade_no": number,
        "out_request_no": "r1",
        "refund_amount": "5.00",
        "refund_fee": "5.00",
        "status": "REFUND_SUCCESS",
        "reason": "one cup",
        "requested_by": stack.info["merchant_arn"],  # the signed caller, as API Gateway's IAM check names it
    }
    assert (after_partial["status"], after_partial["refund_fee"]) == ("TRADE_FINISHED", "5.00")
    assert full.json()["refund_fee"] == "20.00"
    expected = ["OrderPaid", "OrderFinished", "OrderRefunded", "OrderRefunded", "OrderClosed"]
    events = stack.tap.settled(number, expected)
    assert Counter(e["detail-type"] for e in events) == Counter(expected)
    refunds = sorted(e["detail"]["event_id"] for e in events if e["detail-type"] == "OrderRefunded")
    assert refunds == [f"{number}:OrderRefunded:20.00", f"{number}:OrderRefunded:5.00"]
    shown = stack.order(number)
    assert (shown["status"], shown["closed_reason"], shown["refund_fee"]) == ("TRADE_CLOSED", "refunded", "20.00")
    assert [r["out_request_no"] for r in shown["refunds"]] == ["r1", "r2"]
    trade = stack.trade(number)
    assert (trade["status"], trade["refund_fee"]) == ("TRADE_CLOSED", "20.00")
    # is_sync=Y: Alipay's reply was the refund's result; no refund notification followed, only the payment's.
    assert [a["trade_status"] for a in trade["attempts"]] == ["TRADE_FINISHED"]
    assert stack.refund(number, {"amount": "1.00"}).status == 409
