"""Antom end to end through the local stack (``ALIPAY_PROTOCOL=antom``): orders created at the sandbox's Antom,
payments notified (with duplicates and reordering), refunds to the end, lost notifications and expiry settled by
reconciliation, and forged notifications refused. The sandbox plays Antom (docs/local-stack.md, "Antom")."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest
import requests

from tests.e2e.conftest import BUYER, LocalStack, wait_for
from tests.e2e.test_money_flows import SCHEDULE_SECONDS, age_order, quarantined

ACK = {"result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}}


@pytest.fixture(scope="module")
def stack(antom_stack: LocalStack) -> LocalStack:
    return antom_stack


def create(stack: LocalStack, amount: str = "12.34", **fields: str) -> dict[str, Any]:
    return stack.create_order(amount, "USD", os_type="IOS", **fields)


def pay(stack: LocalStack, out_trade_no: str, outcome: str = "success", **controls: Any) -> dict[str, Any]:
    """The shopper pays at the sandbox's Antom cashier (``POST /sandbox/pay``)."""
    response = stack.http.post(
        f"{stack.sandbox}/sandbox/pay", json={"out_trade_no": out_trade_no, "outcome": outcome, **controls}, timeout=10
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def detail_types(events: list[dict[str, Any]]) -> Counter[object]:
    return Counter(e["detail-type"] for e in events)


def paid_order(stack: LocalStack, amount: str) -> str:
    number = str(create(stack, amount)["out_trade_no"])
    pay(stack, number)
    stack.wait_for_status(number, "TRADE_SUCCESS")
    return number


def test_an_order_is_created_at_antom_paid_notified_and_acknowledged_with_antoms_ack(stack: LocalStack) -> None:
    order = stack.create_order("12.34", "USD", buyer=BUYER, os_type="ANDROID", payment_method="ALIPAY_HK")
    number = order["out_trade_no"]
    assert "order_info" not in order
    assert order["normal_url"].startswith(stack.sandbox)  # the sandbox's cashier page
    trade = stack.trade(number)
    assert (trade["payment_id"], trade["payment_method_type"], trade["terminal_type"]) == (
        order["payment_id"],
        "ALIPAY_HK",
        "APP",
    )
    assert trade["notify_url"] == f"{stack.api}/antom/notify"

    pay(stack, number)

    attempts = stack.wait_for_acknowledged(number)
    assert [(a["status"], json.loads(a["body"])) for a in attempts] == [(200, ACK)]
    paid = stack.wait_for_status(number, "TRADE_SUCCESS")
    assert paid["trade_no"] == order["payment_id"]
    assert [(c["status"], c["applied_by"]) for c in paid["history"]] == [("TRADE_SUCCESS", "notification")]
    events = stack.tap.settled(number, ["OrderPaid"])
    assert detail_types(events) == {"OrderPaid": 1}
    # The app's report is unsigned on Antom: it only prompts an inquiry, and the order is what Antom says.
    checked = stack.client_result(number, {"resultStatus": "9000"})
    assert checked.status_code == 200
    assert checked.json() == {"verified": False, "status": "TRADE_SUCCESS", "reason": "unsigned_result"}


def test_duplicates_and_a_stale_pending_after_the_result_change_the_order_once(stack: LocalStack) -> None:
    number = create(stack, "8.80")["out_trade_no"]

    # Three deliveries of the result, one PAYMENT_PENDING before it and a stale one after it.
    pay(stack, number, duplicates=2, pending_first=True, reorder=True)

    stack.wait_for_acknowledged(number, deliveries=5)
    stack.wait_for_status(number, "TRADE_SUCCESS")
    time.sleep(1.0)  # anything still queued has been applied by now
    assert detail_types(stack.tap.settled(number, ["OrderPaid"])) == {"OrderPaid": 1}
    order = stack.order(number)
    assert [c["status"] for c in order["history"]] == ["TRADE_SUCCESS"]


def test_a_failed_payment_closes_the_order(stack: LocalStack) -> None:
    number = create(stack, "3.00")["out_trade_no"]
    pay(stack, number, outcome="fail")
    closed = stack.wait_for_status(number, "TRADE_CLOSED")
    assert closed["closed_reason"] == "timeout"
    assert detail_types(stack.tap.settled(number, ["OrderClosed"])) == {"OrderClosed": 1}


def test_a_forged_or_misaddressed_notification_is_refused_and_changes_nothing(stack: LocalStack) -> None:
    number = create(stack, "4.00")["out_trade_no"]
    trade = stack.trade(number)
    body = json.dumps(
        {
            "notifyType": "PAYMENT_RESULT",
            "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
            "paymentRequestId": number,
            "paymentId": trade["payment_id"],
            "paymentAmount": {"currency": "USD", "value": "400"},
            "paymentTime": "2026-12-05T10:00:00+08:00",
        }
    ).encode()
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "client-id": stack.info["antom_client_id"],
        "request-time": str(int(time.time() * 1000)),
        "signature": "algorithm=RSA256,keyVersion=1,signature=" + "A" * 344,
    }
    forged = requests.post(f"{stack.api}/antom/notify", data=body, headers=headers, timeout=10)
    other_client = requests.post(
        f"{stack.api}/antom/notify", data=body, headers={**headers, "client-id": "SANDBOX_SOMEONE_ELSE"}, timeout=10
    )
    unsigned = requests.post(
        f"{stack.api}/antom/notify",
        data=body,
        headers={k: v for k, v in headers.items() if k != "signature"},
        timeout=10,
    )
    as_form = requests.post(
        f"{stack.api}/antom/notify",
        data=b"a=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )

    assert (forged.status_code, forged.json()["code"]) == (400, "rejected")
    assert (other_client.status_code, other_client.json()["code"]) == (400, "rejected")
    assert (unsigned.status_code, unsigned.json()["code"]) == (400, "rejected")
    assert as_form.status_code == 415
    assert stack.order(number)["status"] == "WAIT_BUYER_PAY"


def test_a_payment_whose_notifications_are_all_dropped_is_found_by_reconciliation(stack: LocalStack) -> None:
    number = create(stack, "31.00")["out_trade_no"]
    pay(stack, number, notify_delay=30)
    assert stack.http.post(f"{stack.sandbox}/sandbox/stop-retries", timeout=10).status_code == 200

    paid = stack.wait_for_status(number, "TRADE_SUCCESS")

    assert stack.trade(number)["attempts"] == []
    assert [(c["status"], c["applied_by"]) for c in paid["history"]] == [("TRADE_SUCCESS", "reconciliation")]
    assert detail_types(stack.tap.settled(number, ["OrderPaid"])) == {"OrderPaid": 1}


def test_an_expired_order_is_cancelled_at_antom_and_closed_once(stack: LocalStack) -> None:
    number = create(stack, "7.00")["out_trade_no"]
    time.sleep(2 * SCHEDULE_SECONDS)
    assert stack.order(number)["status"] == "WAIT_BUYER_PAY"  # asked, still waiting and in time: left alone

    age_order(stack, number)

    closed = stack.wait_for_status(number, "TRADE_CLOSED")
    assert closed["closed_reason"] == "timeout"
    assert stack.trade(number)["status"] == "CANCELLED"  # payments/cancel at Antom
    assert detail_types(stack.tap.settled(number, ["OrderClosed"])) == {"OrderClosed": 1}


def returns(stack: LocalStack, number: str) -> list[tuple[str, str, str]]:
    return [(r["kind"], r["status"], r["refund_amount"]) for r in stack.order(number)["refunds"]]


def test_a_payment_made_after_the_order_was_cancelled_at_antom_is_returned_once(stack: LocalStack) -> None:
    number = create(stack, "9.00")["out_trade_no"]
    age_order(stack, number)
    stack.wait_for_status(number, "TRADE_CLOSED")

    # The shopper pays the cancelled payment anyway and Antom captures (the sandbox, told to): the reconciler gives
    # it back under a number of its own, once (the sweep finds Antom knows no such refund yet and asks for it).
    late = stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/late-payment", timeout=10).json()
    assert late["trade_status"] == "SUCCESS"
    events = stack.tap.settled(number, ["OrderClosed", "PaymentReturned"])

    assert detail_types(events) == {"OrderClosed": 1, "PaymentReturned": 1}
    assert returns(stack, number) == [("return", "REFUND_SUCCESS", "9.00")]
    trade = stack.trade(number)
    assert [(r["refund_amount"], r["refund_status"]) for r in trade["refunds"]] == [("9.00", "SUCCESS")]  # once
    assert quarantined(stack, late["notify_id"]) is None


def test_a_cancel_that_crossed_the_payment_is_recorded_as_the_return_and_nothing_is_refunded_twice(
    stack: LocalStack,
) -> None:
    """The shopper pays just as the order expires: inquiryPayment still said PROCESSING, the reconciler cancels, and
    Antom's cancel of the payment that had just succeeded refunds it. The payment's S notification then arrives for a
    closed order: the return it calls for is refused by Antom (the payment is CANCELLED), and inquiryPayment shows
    the money was given back by the cancel: one PaymentReturned, no second refund, no alarm."""
    number = create(stack, "8.00")["out_trade_no"]
    answer = stack.http.post(
        f"{stack.sandbox}/sandbox/trades/{number}/answer-status", json={"trade_status": "PROCESSING"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    pay(stack, number, notify_delay=3600)  # paid at Antom; its notification held back
    age_order(stack, number)
    stack.wait_for_status(number, "TRADE_CLOSED")
    assert stack.trade(number)["status"] == "CANCELLED"  # Antom refunded the payment with the cancel
    stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/answer-status", json={"trade_status": None}, timeout=10)

    notified = stack.http.post(
        f"{stack.sandbox}/sandbox/trades/{number}/notify", json={"trade_status": "SUCCESS"}, timeout=10
    )
    assert notified.status_code == 200, notified.text
    events = stack.tap.settled(number, ["OrderClosed", "PaymentReturned"])

    assert detail_types(events) == {"OrderClosed": 1, "PaymentReturned": 1}
    assert returns(stack, number) == [("return", "REFUND_SUCCESS", "8.00")]
    trade = stack.trade(number)
    assert (trade["status"], trade["refund_fee"], trade["refunds"]) == ("CANCELLED", "8.00", [])  # the cancel's only


def test_refunds_to_the_end_each_give_one_order_refunded_and_their_notifications_change_nothing(
    stack: LocalStack,
) -> None:
    number = paid_order(stack, "20.00")

    partial = stack.refund(number, {"amount": "5.00", "out_request_no": "ar1"})
    again = stack.refund(number, {"amount": "5.00", "out_request_no": "ar1"})
    full = stack.refund(number, {"amount": "15.00", "out_request_no": "ar2"})

    assert (partial.status, again.status, full.status) == (201, 201, 201)
    assert partial.json()["status"] == "REFUND_SUCCESS"
    trade = stack.trade(number)
    assert trade["refund_fee"] == "20.00"  # Antom refunded each once
    # Each refund's notifyRefund (matched to its order by the metadata we gave) was acknowledged and was a duplicate.
    wait_for(
        "both refund notifications to be acknowledged",
        lambda: sum(a["acknowledged"] for a in stack.trade(number)["attempts"]) >= 3 or None,
    )
    events = stack.tap.settled(number, ["OrderPaid", "OrderRefunded", "OrderRefunded", "OrderClosed"])
    assert detail_types(events) == {"OrderPaid": 1, "OrderRefunded": 2, "OrderClosed": 1}
    order = stack.order(number)
    assert (order["status"], order["closed_reason"], order["refund_fee"]) == ("TRADE_CLOSED", "refunded", "20.00")
    for status in ("SUCCESS",):
        assert quarantined(stack, f"REFUND_RESULT:ar1:{status}") is None


def test_a_refund_in_process_is_202_until_antom_notifies_it(stack: LocalStack) -> None:
    number = paid_order(stack, "14.00")
    answer = stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/refunds", json={"slow": True}, timeout=10)
    assert answer.status_code == 200

    pending = stack.refund(number, {"amount": "4.00", "out_request_no": "ar-slow"})
    assert (pending.status, pending.json()["status"]) == (202, "REFUND_PENDING")
    settled = stack.http.post(
        f"{stack.sandbox}/sandbox/trades/{number}/refunds/settle", json={"outcome": "SUCCESS"}, timeout=10
    )
    assert settled.status_code == 200

    def confirmed() -> dict[str, Any] | None:
        order = stack.order(number)
        return order if order["refunds"][0]["status"] == "REFUND_SUCCESS" else None

    done = wait_for("the refund to be confirmed", confirmed, timeout=60)
    assert done["refund_fee"] == "4.00"
    assert detail_types(stack.tap.settled(number, ["OrderPaid", "OrderRefunded"])) == {
        "OrderPaid": 1,
        "OrderRefunded": 1,
    }


def test_a_refund_antom_fails_is_recorded_failed_and_its_amount_freed(stack: LocalStack) -> None:
    number = paid_order(stack, "9.00")
    stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/refunds", json={"slow": True}, timeout=10)
    assert stack.refund(number, {"amount": "9.00", "out_request_no": "ar-fail"}).status == 202
    stack.http.post(f"{stack.sandbox}/sandbox/trades/{number}/refunds/settle", json={"outcome": "FAIL"}, timeout=10)

    def failed() -> dict[str, Any] | None:
        order = stack.order(number)
        return order if order["refunds"][0]["status"] == "REFUND_FAILED" else None

    order = wait_for("the refund to be recorded failed", failed, timeout=60)
    assert (order["status"], order.get("refund_fee")) == ("TRADE_SUCCESS", None)
    assert stack.trade(number)["refund_fee"] == "0.00"
