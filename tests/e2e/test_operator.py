"""An operator at work on the local stack, with `python -m ops` as they run it (signed operator routes).

A payment arrives for an order the table does not have (the shop's backend lost it): Alipay's notification is
genuine, so it is acknowledged and quarantined, and no order moves. The operator finds it, creates the order from
the shop's records, replays the entry (applied through the verified path, resolved, audited), and re-publishes the
order's events for a consumer that lost them: the same event ids and times as first published.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter

import pytest

from tests.e2e.conftest import LocalStack, wait_for


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    return openapi_stack


def quarantine_line(stack: LocalStack, out_trade_no: str) -> str | None:
    listed = stack.cli("quarantine", "list")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return next((line for line in listed.stdout.splitlines() if f"  {out_trade_no}  " in line), None)


def two_events(stack: LocalStack, out_trade_no: str) -> list[dict[str, object]] | None:
    events = stack.tap.events(out_trade_no)
    return events if len(events) >= 2 else None


def test_a_payment_for_a_lost_order_is_quarantined_then_replayed_by_an_operator_and_its_events_replayed(
    stack: LocalStack,
) -> None:
    number = f"lost-{uuid.uuid4().hex[:12]}"
    order = stack.create_order("23.00", "USD", out_trade_no=number)
    # The shop's backend loses the order (here: its item is deleted) while the buyer is at Alipay's cashier.
    stack.dynamodb.delete_item(TableName=stack.info["orders_table"], Key={"pk": {"S": f"order#{number}"}})
    assert stack.pay(order["order_info"])["resultStatus"] == "9000"
    stack.wait_for_acknowledged(number)  # genuine: acknowledged to Alipay, and kept for an operator

    line = wait_for("the payment to be quarantined", lambda: quarantine_line(stack, number))
    entry = line.split("  ")[0]
    assert "  unknown_order  " in line
    shown = stack.cli("quarantine", "show", entry)
    assert json.loads(shown.stdout)["state"] == "open"
    assert stack.tap.events(number) == []  # no order, no event

    # The operator creates the order from the shop's records and replays the kept notification.
    answer = stack.merchant.post(
        "/merchant/orders", {"subject": "E2E order", "total_amount": "23.00", "currency": "USD", "out_trade_no": number}
    )
    assert answer.status == 201, answer.body
    replayed = stack.cli("quarantine", "replay", entry, "--reason", "recreated the order from the shop's records")

    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    result = json.loads(replayed.stdout)
    assert (result["outcome"], result["resolved"]) == ("applied", True)
    assert result["resolution"]["by"] == stack.info["merchant_arn"]
    paid = stack.order(number)
    assert paid["status"] == "TRADE_SUCCESS"
    assert [(c["status"], c["applied_by"]) for c in paid["history"]] == [("TRADE_SUCCESS", "operator")]
    timeline = stack.cli("order", number)
    assert f"TRADE_SUCCESS  operator  notify_id={paid['history'][0]['notify_id']}" in timeline.stdout
    [first] = stack.tap.settled(number, ["OrderPaid"])

    # Replaying again changes nothing: the entry is resolved, and the order was written once.
    again = stack.cli("quarantine", "replay", entry, "--reason", "once more")
    assert again.returncode == 1
    assert again.stderr.startswith("409 already_resolved: ")
    assert stack.order(number)["history"] == paid["history"]
    assert quarantine_line(stack, number) is None  # no longer open

    # A consumer lost the event: the operator publishes it again, with its original id and time.
    events = stack.cli("events", "replay", number, "--reason", "the ERP lost it")
    assert events.returncode == 0, events.stdout + events.stderr
    assert events.stdout.split() == [first["detail"]["event_id"]]
    copies = wait_for("the replayed event", lambda: two_events(stack, number))
    assert Counter(e["detail-type"] for e in copies) == {"OrderPaid": 2}
    assert copies[1]["detail"] == first["detail"]

    audit = stack.cli("audit")
    actions = [line.split("  ")[1] for line in audit.stdout.splitlines()[:2]]
    assert actions == ["events.replay", "quarantine.replay"]
    assert f"by {stack.info['merchant_arn']}" in audit.stdout
