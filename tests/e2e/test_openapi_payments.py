"""Open Platform payments through the local stack: one stack for the module, each test its own orders."""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections import Counter

import pytest

from chalicelib.alipay.keys import load_private_key
from tests.alipay_fixtures import notification_body, openapi_notification_fields
from tests.e2e.conftest import LocalStack, wait_for
from tests.e2e.walkthroughs import run_walkthrough, walkthrough

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    return openapi_stack


def event_types(events: list[dict[str, object]]) -> Counter[object]:
    return Counter(e["detail-type"] for e in events)


def test_a_payment_marks_the_order_paid_and_emits_order_paid_once(stack: LocalStack) -> None:
    order = stack.create_order("12.34", "USD")
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

    checked = stack.http.post(f"{stack.api}/orders/{number}/client-result", json=result)

    assert checked.status_code == 200
    assert checked.json() == {"verified": True, "status": "TRADE_SUCCESS"}


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

    result = run_walkthrough(script, stack.api, stack.sandbox)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == ["9000", "success", "TRADE_SUCCESS"]
    assert json.loads(lines[3]) == {"verified": True, "status": "TRADE_SUCCESS"}
