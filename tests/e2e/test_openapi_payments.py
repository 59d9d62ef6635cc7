"""Open Platform payments through the local stack: one stack for the module, each test its own orders."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter
from typing import Any

import pytest

from chalicelib.alipay.keys import load_private_key
from tests.alipay_fixtures import notification_body, openapi_notification_fields
from tests.e2e.conftest import BUYER, LocalStack, wait_for
from tests.e2e.walkthroughs import run_walkthrough, walkthrough

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    return openapi_stack


def event_types(events: list[dict[str, object]]) -> Counter[object]:
    return Counter(e["detail-type"] for e in events)


def test_a_payment_marks_the_order_paid_and_emits_order_paid_once(stack: LocalStack) -> None:
    order = stack.create_order("12.34", "USD", buyer=BUYER)
    number = order["out_trade_no"]
    assert order["status"] == "WAIT_BUYER_PAY"

    result = stack.pay(order["order_info"])

    assert result["resultStatus"] == "9000"
    attempts = stack.wait_for_acknowledged(number)
    assert [(a["attempt"], a["status"], a["body"]) for a in attempts] == [(1, 200, "success")]
    paid = stack.wait_for_status(number, "TRADE_SUCCESS")
    assert paid["trade_no"] == stack.trade(number)["trade_no"]
    events = stack.tap.settled(number, ["OrderPaid"])
    assert event_types(events) == {"OrderPaid": 1}
    detail = events[0]["detail"]
    assert detail["event_id"] == f"{number}:OrderPaid"
    assert (detail["status"], detail["previous_status"]) == ("TRADE_SUCCESS", "WAIT_BUYER_PAY")
    assert (detail["total_amount"], detail["currency"], detail["trade_no"]) == ("12.34", "USD", paid["trade_no"])
    assert events[0]["source"] == "alipay-global"

    checked = stack.client_result(number, result)

    assert checked.status_code == 200
    assert checked.json() == {"verified": True, "status": "TRADE_SUCCESS"}


def test_a_buyer_orders_from_the_catalogue_pays_and_reads_only_their_own_order(stack: LocalStack) -> None:
    sku = f"mug-{uuid.uuid4().hex[:8]}"
    product = stack.merchant.request("PUT", f"/merchant/products/{sku}", {"subject": "Mug", "prices": {"USD": "4.50"}})
    assert product.status == 201, product.body
    buyer = f"buyer-{uuid.uuid4().hex[:8]}"
    created = stack.http.post(
        f"{stack.api}/orders", json={"items": [{"sku": sku, "quantity": 2}]}, headers=stack.buyer_headers(buyer)
    )
    assert created.status_code == 201, created.text
    order = created.json()
    number = order["out_trade_no"]
    assert (order["status"], order["total_amount"], order["currency"]) == ("WAIT_BUYER_PAY", "9.00", "USD")
    assert order["items"] == [{"sku": sku, "quantity": 2, "unit_price": "4.50", "amount": "9.00"}]

    result = stack.pay(order["order_info"])

    assert result["resultStatus"] == "9000"
    stack.wait_for_status(number, "TRADE_SUCCESS")
    own = stack.http.get(f"{stack.api}/orders/{number}", headers=stack.buyer_headers(buyer))
    assert own.status_code == 200, own.text
    assert (own.json()["status"], own.json()["total_amount"]) == ("TRADE_SUCCESS", "9.00")
    listed = stack.http.get(f"{stack.api}/orders", headers=stack.buyer_headers(buyer))
    assert [o["out_trade_no"] for o in listed.json()["orders"]] == [number]
    checked = stack.client_result(number, result, sub=buyer)
    assert (checked.status_code, checked.json()) == (200, {"verified": True, "status": "TRADE_SUCCESS"})
    full = stack.order(number)
    assert (full["buyer"], full["total_amount"], full["items"]) == (buyer, "9.00", order["items"])
    assert [c["status"] for c in full["history"]] == ["TRADE_SUCCESS"]  # the buyer's report changed nothing
    paid = stack.tap.settled(number, ["OrderPaid"])
    assert event_types(paid) == {"OrderPaid": 1}
    assert paid[0]["detail"]["buyer"] == buyer


def test_each_route_answers_only_the_caller_it_is_for(stack: LocalStack) -> None:
    order = stack.create_order("5.00", "USD", buyer=BUYER)
    number = order["out_trade_no"]
    mine, theirs = stack.buyer_headers(BUYER), stack.buyer_headers("someone-else")
    result = {"resultStatus": "6001", "result": "", "memo": "cancelled"}

    # Merchant routes: SigV4 or nothing; a buyer's token is no signature.
    merchant_calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", f"/merchant/orders/{number}", None),
        ("POST", "/merchant/orders", {"subject": "x", "total_amount": "0.01", "currency": "USD"}),
        ("POST", f"/merchant/orders/{number}/refunds", {"amount": "1.00"}),
        ("PUT", "/merchant/products/tshirt", {"subject": "x", "prices": {"USD": "0.01"}}),
    ]
    for headers in ({}, mine):
        for method, path, body in merchant_calls:
            refused = stack.http.request(method, f"{stack.api}{path}", json=body, headers=headers)
            assert (refused.status_code, refused.json()["code"]) == (403, "forbidden"), (path, headers)
    # Buyer routes: no token is 401; the order-with-an-amount body of old is the merchant's to send.
    for method, path, body in (
        ("POST", "/orders", {"subject": "x", "total_amount": "0.01", "currency": "USD"}),
        ("GET", f"/orders/{number}", None),
        ("POST", f"/orders/{number}/client-result", result),
    ):
        anonymous = stack.http.request(method, f"{stack.api}{path}", json=body)
        assert (anonymous.status_code, anonymous.json()["code"]) == (401, "unauthorized"), path
    priced_by_buyer = stack.http.post(
        f"{stack.api}/orders", json={"items": [{"sku": "tshirt", "quantity": 1}], "total_amount": "0.01"}, headers=mine
    )
    assert (priced_by_buyer.status_code, priced_by_buyer.json()["field"]) == (422, "total_amount")
    # Another buyer's order is as unknown as one that does not exist.
    unknown = stack.http.get(f"{stack.api}/orders/NO-SUCH-ORDER", headers=theirs)
    for answer in (
        stack.http.get(f"{stack.api}/orders/{number}", headers=theirs),
        stack.client_result(number, result, sub="someone-else"),
    ):
        assert (answer.status_code, answer.json()["code"]) == (404, "not_found")
        assert answer.json().keys() == unknown.json().keys()
    assert stack.http.get(f"{stack.api}/orders/{number}", headers=mine).json()["status"] == "WAIT_BUYER_PAY"
    # A route the API does not have: API Gateway's 403, in the API's error shape.
    for method, path in (("GET", "/nowhere"), ("DELETE", f"/orders/{number}")):
        missing = stack.http.request(method, f"{stack.api}{path}")
        assert missing.status_code == 403, path
        assert missing.json()["code"] == "forbidden"
        assert missing.json()["message"]
    assert stack.order(number)["status"] == "WAIT_BUYER_PAY"
    assert stack.tap.events(number) == []


def test_duplicate_deliveries_are_all_acknowledged_and_change_the_order_once(stack: LocalStack) -> None:
    order = stack.create_order("20.00", "HKD")
    number = order["out_trade_no"]

    stack.pay(order["order_info"], duplicates=3)

    attempts = stack.wait_for_acknowledged(number, deliveries=4)
    assert len({a["notify_id"] for a in attempts}) == 1
    assert all(a["body"] == "success" for a in attempts)
    stack.wait_for_status(number, "TRADE_SUCCESS")
    assert event_types(stack.tap.settled(number, ["OrderPaid"])) == {"OrderPaid": 1}


def test_finished_before_success_ends_finished_with_each_event_once(stack: LocalStack) -> None:
    order = stack.create_order("7.50", "EUR")
    number = order["out_trade_no"]

    stack.pay(order["order_info"], reorder=True)

    attempts = stack.wait_for_acknowledged(number, deliveries=2)
    assert [a["trade_status"] for a in attempts] == ["TRADE_FINISHED", "TRADE_SUCCESS"]
    stack.wait_for_status(number, "TRADE_FINISHED")
    time.sleep(1.0)  # the late TRADE_SUCCESS has been applied (or absorbed) by now: the status must not go back
    assert stack.order(number)["status"] == "TRADE_FINISHED"
    assert event_types(stack.tap.settled(number, ["OrderPaid", "OrderFinished"])) == {
        "OrderPaid": 1,
        "OrderFinished": 1,
    }


def test_every_transition_emits_exactly_one_event_however_often_alipay_repeats_it(stack: LocalStack) -> None:
    finished = stack.create_order("30.00", "USD")
    refunded = stack.create_order("45.60", "USD")
    for order in (finished, refunded):
        stack.pay(order["order_info"], duplicates=1)
        stack.wait_for_status(order["out_trade_no"], "TRADE_SUCCESS")

    stack.notify(finished["out_trade_no"], "TRADE_FINISHED", duplicates=2)
    stack.notify(refunded["out_trade_no"], "TRADE_CLOSED", refund_fee="45.60", duplicates=2)

    stack.wait_for_status(finished["out_trade_no"], "TRADE_FINISHED")
    stack.wait_for_status(refunded["out_trade_no"], "TRADE_CLOSED")
    finished_events = stack.tap.settled(finished["out_trade_no"], ["OrderPaid", "OrderFinished"])
    closed_events = stack.tap.settled(refunded["out_trade_no"], ["OrderPaid", "OrderRefunded", "OrderClosed"])
    assert event_types(finished_events) == {"OrderPaid": 1, "OrderFinished": 1}
    assert event_types(closed_events) == {"OrderPaid": 1, "OrderRefunded": 1, "OrderClosed": 1}
    closed = next(e for e in closed_events if e["detail-type"] == "OrderClosed")["detail"]
    assert (closed["previous_status"], closed["status"]) == ("TRADE_SUCCESS", "TRADE_CLOSED")
    assert closed["refund_fee"] == "45.60"


def test_a_tampered_notification_is_answered_fail_and_changes_nothing(stack: LocalStack) -> None:
    order = stack.create_order("12.34", "USD")
    number = order["out_trade_no"]
    alipay_key = load_private_key((stack.state_dir / "alipay_sandbox_private_key.pem").read_bytes())
    fields = openapi_notification_fields(
        app_id=stack.info["app_id"],
        seller_id=stack.info["seller_id"],
        out_trade_no=number,
        trade_no="2026010122001400000000000001",
        notify_id=uuid.uuid4().hex,
        total_amount="12.34",
        receipt_amount="12.34",
        buyer_pay_amount="12.34",
    )
    genuine = notification_body(fields, alipay_key)
    tampered = genuine.replace(b"total_amount=12.34", b"total_amount=0.01")
    assert tampered != genuine

    rejected = stack.http.post(f"{stack.api}/alipay/notify", data=tampered, headers=FORM)

    assert rejected.status_code == 400
    assert rejected.text == "fail"
    time.sleep(2.0)  # had anything been queued, the consumer would have applied it by now
    assert stack.order(number)["status"] == "WAIT_BUYER_PAY"
    assert stack.tap.events(number) == []
    # The same notification untouched is accepted: the tampered field was the only thing wrong with it.
    accepted = stack.http.post(f"{stack.api}/alipay/notify", data=genuine, headers=FORM)
    assert (accepted.status_code, accepted.text) == (200, "success")
    stack.wait_for_status(number, "TRADE_SUCCESS")


def test_alipays_retries_deliver_a_notification_sent_while_the_api_was_down(stack: LocalStack) -> None:
    order = stack.create_order("99.00", "USD")
    number = order["out_trade_no"]
    stack.process.toggle_api()
    wait_for("the API to go down", lambda: not stack.api_is_up())

    try:
        assert stack.pay(order["order_info"])["resultStatus"] == "9000"
        def three_attempts() -> list[dict[str, object]] | None:
            attempts: list[dict[str, object]] = stack.trade(number)["attempts"]
            return attempts if len(attempts) >= 3 else None

        failed = wait_for("three failed deliveries", three_attempts)
        assert not any(a["acknowledged"] for a in failed)
        assert all(a["status"] is None and a["error"] for a in failed)  # nothing listening: connection refused
    finally:
        stack.process.toggle_api()
    wait_for("the API to come back", stack.api_is_up)

    stack.wait_for_status(number, "TRADE_SUCCESS")
    attempts = stack.wait_for_acknowledged(number)
    assert attempts[-1]["acknowledged"]
    assert attempts[-1]["attempt"] > 3
    assert sum(a["acknowledged"] for a in attempts) == 1
    assert event_types(stack.tap.settled(number, ["OrderPaid"])) == {"OrderPaid": 1}


def test_a_poison_message_reaches_the_dlq_and_redrive_applies_it_once_after_the_fix(stack: LocalStack) -> None:
    """Poison, here: a verified notification the consumer cannot apply however often it tries, because the
    order's record is broken (a status this release does not know, as a bad migration or a hand edit leaves
    it). The webhook has answered ``success`` (the notification is durably queued), so Alipay stops retrying;
    the consumer fails it ``maxReceiveCount`` times, SQS moves it to the DLQ, and it waits there. Once the
    record is repaired, ``redrive`` puts it back and it is applied exactly once."""
    order = stack.create_order("12.34", "USD")
    number = order["out_trade_no"]
    key = {"pk": {"S": f"order#{number}"}}
    dlq = stack.info["notifications_dlq_url"]
    assert stack.queue_depth(dlq) == 0
    stack.dynamodb.update_item(
        TableName=stack.info["orders_table"],
        Key=key,
        UpdateExpression="SET #status = :broken",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":broken": {"S": "MIGRATING"}},
    )

    stack.pay(order["order_info"])

    stack.wait_for_acknowledged(number)  # the webhook queued it: Alipay is done
    wait_for("the notification to reach the DLQ", lambda: stack.queue_depth(dlq) == 1, timeout=45)
    assert stack.queue_depth(stack.info["notifications_queue_url"]) == 0

    stack.dynamodb.update_item(
        TableName=stack.info["orders_table"],
        Key=key,
        UpdateExpression="SET #status = :waiting",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":waiting": {"S": "WAIT_BUYER_PAY"}},
    )
    redrive = stack.cli("redrive")

    assert redrive.returncode == 0, redrive.stdout + redrive.stderr
    assert redrive.stdout.strip() == "moved 1, failed 0"
    stack.wait_for_status(number, "TRADE_SUCCESS")
    assert event_types(stack.tap.settled(number, ["OrderPaid"])) == {"OrderPaid": 1}
    assert stack.queue_depth(dlq) == 0
    # A second redrive finds nothing: the message was moved, not copied.
    assert stack.cli("redrive").stdout.strip() == "moved 0, failed 0"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")
def test_the_local_stack_docs_curl_walkthrough_pays_an_order(stack: LocalStack) -> None:
    script = walkthrough("tests/e2e/test_openapi_payments.py")

    result = run_walkthrough(script, stack.api, stack.sandbox, stack.state_dir / "stack.json")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["12.34", "9000", "success", "TRADE_SUCCESS"]
    assert json.loads(lines[4]) == {"verified": True, "status": "TRADE_SUCCESS"}
    assert lines[5:] == ["alice"]
