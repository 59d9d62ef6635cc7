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
    assert refunds == [f"{number}:OrderRefunded:r1", f"{number}:OrderRefunded:r2"]  # one per refund, by its number
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
    [("openapi", "TRADE_SUCCESS", "TRADE_CLOSED"), ("mapi", "TRADE_FINISHED", "TRADE_CLOSED")],
    ids=["openapi-trade-close", "mapi-expiry"],
)
def test_an_unpaid_order_is_closed_on_timeout_once_and_a_late_payment_is_returned_once(
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
    if protocol == "mapi":
        # No close API, and it_b_pay counts from Alipay's trade: while Alipay says WAIT_BUYER_PAY the order waits.
        time.sleep(2 * SCHEDULE_SECONDS)
        assert stack.order(number)["status"] == "WAIT_BUYER_PAY"
        expired = stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/expire", timeout=10).json()
        assert expired == {"status": "TRADE_CLOSED"}  # Alipay's own expiry; the next query says so

    closed = stack.wait_for_status(number, "TRADE_CLOSED")
    assert closed["closed_reason"] == "timeout"
    events = stack.tap.settled(number, ["OrderClosed"])
    assert Counter(e["detail-type"] for e in events) == {"OrderClosed": 1}
    assert events[0]["detail"]["previous_status"] == "WAIT_BUYER_PAY"
    # openapi: closed at Alipay by alipay.trade.close (whose TRADE_CLOSED notification then changes nothing);
    # mapi: no close API, the order closed once Alipay's query said its trade had expired.
    if protocol == "openapi":
        assert stack.trade(number)["status"] == "TRADE_CLOSED"
        stack.wait_for_acknowledged(number)

    # The buyer pays the closed trade anyway and Alipay captures (the sandbox, told to): genuine money for a dead
    # order. It is never applied as a sale and never left in quarantine: the reconciler gives it back, once.
    late = stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/late-payment", timeout=10).json()
    assert late["trade_status"] == late_status
    events = stack.tap.settled(number, ["OrderClosed", "PaymentReturned"])

    assert Counter(e["detail-type"] for e in events) == {"OrderClosed": 1, "PaymentReturned": 1}
    [returned] = [e["detail"] for e in events if e["detail-type"] == "PaymentReturned"]
    assert (returned["amount"], returned["currency"]) == ("7.00", "USD")
    assert returned["reason"] == "paid after the order closed"
    assert returned["out_request_no"].startswith("return-")
    assert quarantined(stack, late["notify_id"]) is None
    shown = stack.order(number)
    assert (shown["status"], shown["closed_reason"]) == ("TRADE_CLOSED", "timeout")
    assert [(r["kind"], r["status"], r["refund_amount"]) for r in shown["refunds"]] == [
        ("return", "REFUND_SUCCESS", "7.00")
    ]
    trade = stack.trade(number)
    assert (trade["status"], trade["refund_fee"]) == (alipay_status, "7.00")  # returned at Alipay, once


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
    assert refunds == [f"{number}:OrderRefunded:r1", f"{number}:OrderRefunded:r2"]  # one per refund, by its number
    shown = stack.order(number)
    assert (shown["status"], shown["closed_reason"], shown["refund_fee"]) == ("TRADE_CLOSED", "refunded", "20.00")
    assert [r["out_request_no"] for r in shown["refunds"]] == ["r1", "r2"]
    trade = stack.trade(number)
    assert (trade["status"], trade["refund_fee"]) == ("TRADE_CLOSED", "20.00")
    # is_sync=Y: Alipay's reply was the refund's result; no refund notification followed, only the payment's.
    assert [a["trade_status"] for a in trade["attempts"]] == ["TRADE_FINISHED"]
    assert stack.refund(number, {"amount": "1.00"}).status == 409


# --- refunds to the end: a lost refund reply, fund_change=N ------------------------------------------------------


def refund_edges(stack: LocalStack, out_trade_no: str, **edges: Any) -> None:
    """Tell the sandbox how this trade's refunds go wrong (its README: POST /sandbox/trades/<no>/refunds)."""
    answer = stack.http.post(f"{stack.sandbox}/sandbox/trades/{out_trade_no}/refunds", json=edges, timeout=10)
    assert answer.status_code == 200, answer.text


def refund_confirmed(stack: LocalStack, out_trade_no: str) -> dict[str, Any] | None:
    """The order once its (only) refund is confirmed; None before."""
    order = stack.order(out_trade_no)
    return order if order["refunds"][0]["status"] == "REFUND_SUCCESS" else None


def paid_order(stack: LocalStack, amount: str) -> str:
    order = stack.create_order(amount, "USD")
    stack.pay(order["order_info"])
    stack.wait_for_status(order["out_trade_no"], "TRADE_SUCCESS")
    return str(order["out_trade_no"])


def test_a_lost_refund_reply_is_a_503_naming_the_refund_and_the_retry_refunds_once(stack: LocalStack) -> None:
    number = paid_order(stack, "12.00")
    # Alipay refunds, but every reply (the adapter's retries included) is lost; its refund notification too.
    refund_edges(stack, number, lose_replies=10, notify=False)

    lost = stack.refund(number, {"amount": "2.00"})

    assert (lost.status, lost.json()["code"]) == (503, "unavailable")
    out_request_no = lost.json()["out_request_no"]
    refund_edges(stack, number)  # the gateway answers again
    retried = stack.refund(number, {"amount": "2.00", "out_request_no": out_request_no})
    assert (retried.status, retried.json()["status"], retried.json()["refund_fee"]) == (201, "REFUND_SUCCESS", "2.00")
    assert stack.trade(number)["refund_fee"] == "2.00"  # Alipay refunded once
    events = stack.tap.settled(number, ["OrderPaid", "OrderRefunded"])
    refunded = [e["detail"] for e in events if e["detail-type"] == "OrderRefunded"]
    assert [(e["event_id"], e["refund_amount"]) for e in refunded] == [
        (f"{number}:OrderRefunded:{out_request_no}", "2.00")
    ]


def test_a_refund_whose_reply_is_lost_and_never_retried_is_settled_by_the_sweep(stack: LocalStack) -> None:
    number = paid_order(stack, "13.00")
    refund_edges(stack, number, lose_replies=10, notify=False)
    assert stack.refund(number, {"amount": "3.00", "out_request_no": "r-lost"}).status == 503
    assert stack.order(number)["refunds"][0]["status"] == "REFUND_PENDING"

    # Nobody retries: the scheduled sweep asks alipay.trade.fastpay.refund.query and records the refund.
    settled = wait_for(
        "the sweep to settle the refund",
        lambda: refund_confirmed(stack, number),
        timeout=60,
    )

    assert settled["refund_fee"] == "3.00"
    assert [c.get("out_request_no") for c in settled["history"] if c["applied_by"] == "reconciliation"] == ["r-lost"]
    events = stack.tap.settled(number, ["OrderPaid", "OrderRefunded"])
    assert Counter(e["detail-type"] for e in events) == {"OrderPaid": 1, "OrderRefunded": 1}
    assert stack.trade(number)["refund_fee"] == "3.00"


def test_fund_change_n_is_202_pending_until_alipay_moves_the_money(stack: LocalStack) -> None:
    number = paid_order(stack, "14.00")
    refund_edges(stack, number, slow=True)

    pending = stack.refund(number, {"amount": "4.00", "out_request_no": "r-slow"})

    assert (pending.status, pending.json()["status"]) == (202, "REFUND_PENDING")
    assert stack.refund(number, {"amount": "4.00", "out_request_no": "r-slow"}).status == 202  # still not moved
    settled = stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/refunds/settle", timeout=10).json()
    assert settled == {"settled": ["r-slow"]}
    # The refund notification (out_biz_no r-slow) or the sweep, whichever comes first, completes it.
    done = wait_for(
        "the refund to be confirmed",
        lambda: refund_confirmed(stack, number),
        timeout=60,
    )
    assert done["refund_fee"] == "4.00"
    assert stack.refund(number, {"amount": "4.00", "out_request_no": "r-slow"}).status == 201
    events = stack.tap.settled(number, ["OrderPaid", "OrderRefunded"])
    assert Counter(e["detail-type"] for e in events) == {"OrderPaid": 1, "OrderRefunded": 1}
