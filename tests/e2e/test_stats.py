"""`python -m ops stats` on the local stack: the dashboard's funnel and backlog from the table, after a scripted mix.

Payments (one delivered three times, one finished), a partial then a full refund, an order never paid, a payment for
an order the shop lost (quarantined), a refund Alipay accepted without moving the money yet (pending), and a late
payment for an order closed unpaid (returned): every figure is asserted exactly, in JSON and in the table, and the
relay's metrics add up to the same funnel; a window that ends before any of it counts nothing of the funnel.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.e2e.conftest import LocalStack, wait_for
from tests.e2e.test_money_flows import age_order


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    return openapi_stack


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def stats(stack: LocalStack, *args: str) -> dict[str, Any]:
    answer = stack.cli("stats", "--json", *args)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    report: dict[str, Any] = json.loads(answer.stdout)
    return report


def emf_counts(output: str) -> dict[str, float]:
    """Every EMF count the stack's processes printed, summed by metric name (dimensions aside)."""
    totals: dict[str, float] = {}
    decoder = json.JSONDecoder()
    # Each EMF record is printed whole, but the threads of one process may print between a record and its newline:
    # every record is read where it starts, whatever shares its line.
    starts = (match.start() for match in re.finditer(r'\{"_aws":', output))
    for start in starts:
        record, _ = decoder.raw_decode(output, start)
        for directive in record["_aws"]["CloudWatchMetrics"]:
            for metric in directive["Metrics"]:
                name = metric["Name"]
                values = record[name] if isinstance(record[name], list) else [record[name]]
                totals[name] = totals.get(name, 0) + sum(values)
    return totals


def paid(stack: LocalStack, total: str, **controls: Any) -> str:
    order = stack.create_order(total, "USD")
    number: str = order["out_trade_no"]
    assert stack.pay(order["order_info"], **controls)["resultStatus"] == "9000"
    return number


def test_stats_count_each_fact_once_and_show_the_backlog(stack: LocalStack) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)

    # A payment Alipay delivered three times: paid once.
    tripled = paid(stack, "10.00", duplicates=2)
    stack.wait_for_acknowledged(tripled, deliveries=3)
    # A payment then a partial and a full refund: paid, refunded twice, closed (by the full refund).
    refunded = paid(stack, "20.00")
    stack.wait_for_status(refunded, "TRADE_SUCCESS")
    assert stack.refund(refunded, {"amount": "5.00", "out_request_no": "r1"}).status == 201
    assert stack.refund(refunded, {"amount": "15.00", "out_request_no": "r2"}).status == 201
    # A payment that finished: paid and finished.
    finished = paid(stack, "7.00", finish=True)
    # An order nobody paid: created only.
    stack.create_order("3.00", "USD")
    # A payment for an order the shop lost (its item deleted): nothing in the funnel, one open quarantine entry.
    lost = stack.create_order("23.00", "USD")
    stack.dynamodb.delete_item(TableName=stack.info["orders_table"], Key={"pk": {"S": f"order#{lost['out_trade_no']}"}})
    assert stack.pay(lost["order_info"])["resultStatus"] == "9000"
    # A payment with a refund of 1.00 made, and one of 2.00 Alipay accepted without moving the money yet
    # (fund_change=N): REFUND_PENDING until Alipay carries it out.
    pending = paid(stack, "4.00")
    stack.wait_for_status(pending, "TRADE_SUCCESS")
    assert stack.refund(pending, {"amount": "1.00", "out_request_no": "r3"}).status == 201
    edges = stack.http.post(f"{stack.sandbox}/sandbox/trades/{pending}/refunds", json={"slow": True, "notify": False})
    assert edges.status_code == 200, edges.text
    assert stack.refund(pending, {"amount": "2.00", "out_request_no": "r4"}).status == 202
    stored = stack.dynamodb.get_item(TableName=stack.info["orders_table"], Key={"pk": {"S": f"order#{pending}"}})
    requested_at = stored["Item"]["refunds"]["M"]["r4"]["M"]["requested_at"]["S"]
    # An order closed unpaid (its clock moved back past its timeout, so created before the window), then paid anyway:
    # a late payment, returned automatically. No sale: closed, and money returned.
    late = stack.create_order("6.00", "USD")
    assert stack.pay(late["order_info"], outcome="pending", notify_delay=3600)["resultStatus"] == "8000"
    age_order(stack, late["out_trade_no"])
    stack.wait_for_status(late["out_trade_no"], "TRADE_CLOSED")
    captured = stack.http.post(f"{stack.sandbox}/sandbox/trades/{late['out_trade_no']}/late-payment", timeout=10)
    assert captured.status_code == 200, captured.text
    stack.tap.settled(tripled, ["OrderPaid"])
    stack.tap.settled(refunded, ["OrderPaid", "OrderRefunded", "OrderClosed"])
    stack.tap.settled(finished, ["OrderPaid", "OrderFinished"])
    stack.tap.settled(pending, ["OrderPaid", "OrderRefunded"])
    stack.tap.settled(late["out_trade_no"], ["OrderClosed", "PaymentReturned"])
    wait_for("the lost order's payment to be quarantined", lambda: stats(stack)["backlog"]["quarantine_open"] or None)
    counted = datetime.now(UTC)

    report = stats(stack, "--since", iso(start))

    assert report["funnel"] == {"created": 5, "paid": 4, "finished": 1, "closed": 2, "refunded": 3, "returned": 1}
    assert report["money"] == {"paid": {"USD": "41.00"}, "refunded": {"USD": "21.00"}, "returned": {"USD": "6.00"}}
    assert (report["late_payments"], report["quarantined"]) == (1, 1)
    backlog = report["backlog"]
    assert (backlog["quarantine_open"], backlog["quarantine_open_by_reason"]) == (1, {"unknown_order": 1})
    assert (backlog["refunds_pending"], backlog["oldest_pending_refund_requested_at"]) == (1, requested_at)
    age = backlog["oldest_pending_refund_age_seconds"]
    assert 0 <= age <= (datetime.now(UTC) - datetime.fromisoformat(requested_at)).total_seconds() + 1
    assert report["window"]["since"] == start.isoformat(timespec="seconds").replace("+00:00", "Z")

    # What the dashboard would show: the relay's EMF counts in the stack's output (CloudWatch reads these lines in
    # Lambda) add up to the same funnel. OrdersCreated counts when the API created them: the lost order and the late
    # one (whose clock was moved back) too.
    emitted = emf_counts(stack.process.output())
    facts = ("OrderPaid", "OrderFinished", "OrderClosed", "OrderRefunded", "PaymentReturned")
    assert {name: emitted.get(name, 0) for name in facts} == {
        "OrderPaid": 4,
        "OrderFinished": 1,
        "OrderClosed": 2,
        "OrderRefunded": 3,
        "PaymentReturned": 1,
    }
    assert (emitted["OrdersCreated"], emitted["LatePaymentsCaptured"]) == (7, 1)

    # The same figures as a table.
    table = stack.cli("stats", "--since", iso(start))
    assert table.returncode == 0, table.stderr
    lines = [" ".join(line.split()) for line in table.stdout.splitlines()]
    assert "orders created 5" in lines
    assert "orders paid 4 41.00 USD" in lines
    assert "orders refunded 3 21.00 USD" in lines
    assert "orders returned 1 6.00 USD" in lines
    assert "late payments in the window (each returned automatically): 1" in lines
    assert "quarantine open 1 unknown_order 1" in lines
    assert any(line.startswith("refunds pending 1 oldest ") for line in lines)

    # A window that ended before all of it: nothing in the funnel; the backlog is the table's state now.
    before = stats(stack, "--since", iso(start - timedelta(hours=1)), "--until", iso(start))
    assert before["funnel"] == {"created": 0, "paid": 0, "finished": 0, "closed": 0, "refunded": 0, "returned": 0}
    assert (before["money"], before["quarantined"]) == ({"paid": {}, "refunded": {}, "returned": {}}, 0)
    assert before["late_payments"] == 0
    assert before["backlog"]["refunds_pending"] == 1
    # Only the window's own facts: from `counted` on, nothing happened.
    assert stats(stack, "--since", iso(counted))["funnel"]["paid"] == 0


def test_a_window_that_ends_before_it_starts_is_refused(stack: LocalStack) -> None:
    answer = stack.cli("stats", "--since", "2026-12-02T00:00:00Z", "--until", "2026-12-01T00:00:00Z")
    assert answer.returncode == 2
    assert "must be before --until" in answer.stderr
    answer = stack.cli("stats", "--since", "yesterday")
    assert answer.returncode == 2
    assert "not an ISO 8601 time" in answer.stderr
