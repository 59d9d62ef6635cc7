"""Operators and money at the edges (merchant SigV4 routes): refunds left pending, settled now; money captured for an
order we have no record of, returned only on an operator's word. Each action audited; each refusal changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.orders.model import RefundStatus, return_request_no
from chalicelib.services.operations import entry_id
from chalicelib.services.ports import TradeQueryResult, Unavailable
from tests.alipay_fixtures import alipay_key, notification_body, openapi_notification_fields
from tests.gateway_client import GatewayClient
from tests.unit.services_kit import Kit, make_kit

FORM = "application/x-www-form-urlencoded"
JSON = {"Content-Type": "application/json"}
UNKNOWN = "o-unknown-7"
TRADE = "2026112622007"
REASON = {"reason": "the shop has no such order: give the buyer's money back"}


@pytest.fixture
def kit() -> Iterator[Kit]:
    kit = make_kit()
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def post(path: str, body: object) -> Any:
    return GatewayClient(app).http.post(path, headers=JSON, body=json.dumps(body).encode())


def get(path: str) -> Any:
    return GatewayClient(app).http.get(path)


def quarantined_payment(kit: Kit, status: str = "TRADE_SUCCESS", notify_id: str = "n-unknown-7") -> str:
    """A genuine notification for an order the table does not have (Alipay holds the trade): its entry id."""
    kit.gateway.trades[UNKNOWN] = TradeQueryResult(True, status, TRADE, Decimal("12.30"), "USD")
    fields = openapi_notification_fields(
        out_trade_no=UNKNOWN, notify_id=notify_id, total_amount="12.30", trade_no=TRADE, trade_status=status
    )
    kit.services.intake.accept(notification_body(fields, alipay_key()), FORM)
    kit.services.consumer.apply(kit.queue.messages[-1])
    assert kit.quarantine.records[notify_id].reason == "unknown_order"
    return entry_id(notify_id)


def test_money_for_an_unknown_order_is_returned_once_on_an_operators_word(kit: Kit) -> None:
    entry = quarantined_payment(kit)
    assert kit.quarantine.records["n-unknown-7"].holds_money
    assert kit.gateway.refunds == {}  # never automatic

    answer = post(f"/merchant/quarantine/{entry}/return", REASON)
    assert answer.status_code == 200, answer.json_body
    number = return_request_no(UNKNOWN, TRADE)
    assert answer.json_body["status"] == "REFUND_SUCCESS"
    assert (answer.json_body["out_request_no"], answer.json_body["amount"]) == (number, "12.30")
    assert answer.json_body["resolution"]["action"] == "returned"
    assert kit.gateway.refunds == {UNKNOWN: {number: Decimal("12.30")}}
    [audit] = kit.audit.entries
    assert (audit.action, audit.reason) == ("quarantine.return", REASON["reason"])
    assert audit.result["status"] == "REFUND_SUCCESS"

    again = post(f"/merchant/quarantine/{entry}/return", REASON)
    assert (again.status_code, again.json_body["code"]) == (409, "already_resolved")
    assert kit.gateway.refunds == {UNKNOWN: {number: Decimal("12.30")}}  # returned once


def test_a_return_alipay_has_not_carried_out_leaves_the_entry_open_and_the_retry_returns_nothing_twice(
    kit: Kit,
) -> None:
    entry = quarantined_payment(kit)
    kit.gateway.slow_refunds = True  # fund_change=N: accepted, money not moved yet
    first = post(f"/merchant/quarantine/{entry}/return", REASON).json_body
    assert (first["status"], first["resolved"]) == ("REFUND_PENDING", False)
    assert kit.quarantine.records["n-unknown-7"].resolution is None
    kit.gateway.slow_refunds = False
    kit.gateway.settle_processing()
    second = post(f"/merchant/quarantine/{entry}/return", REASON).json_body
    assert (second["status"], second["resolved"]) == ("REFUND_SUCCESS", True)
    assert sum(kit.gateway.refunds[UNKNOWN].values()) == Decimal("12.30")  # one return, by one out_request_no


def test_nothing_is_returned_for_an_entry_without_money(kit: Kit) -> None:
    entry = quarantined_payment(kit, status="WAIT_BUYER_PAY")
    answer = post(f"/merchant/quarantine/{entry}/return", REASON)
    assert (answer.status_code, answer.json_body["code"]) == (409, "nothing_to_return")
    assert kit.gateway.refunds == {}


def test_nothing_is_returned_once_the_order_exists_again_a_replay_applies_it_instead(kit: Kit) -> None:
    entry = quarantined_payment(kit, notify_id="n-unknown-8")
    kit.add_order(UNKNOWN, "12.30")
    answer = post(f"/merchant/quarantine/{entry}/return", REASON)
    assert (answer.status_code, answer.json_body["code"]) == (409, "nothing_to_return")
    assert "replay" in answer.json_body["message"]
    assert kit.gateway.refunds == {}
    assert kit.audit.entries == []


def test_a_tampered_entry_returns_nothing(kit: Kit) -> None:
    import base64
    from dataclasses import replace

    entry = quarantined_payment(kit)
    record = kit.quarantine.records["n-unknown-7"]
    assert record.message.body is not None
    raw = base64.b64decode(record.message.body).replace(b"12.30", b"99.99")  # Alipay's signature no longer holds
    tampered = replace(record.message, body=base64.b64encode(raw).decode())
    kit.quarantine.records["n-unknown-7"] = replace(record, message=tampered)
    answer = post(f"/merchant/quarantine/{entry}/return", REASON)
    assert (answer.status_code, answer.json_body["code"]) == (409, "not_replayable")
    assert kit.gateway.refunds == {}
    [attempt] = kit.audit.entries
    assert "refused" in attempt.result


def test_a_pending_refund_is_listed_and_an_operator_settles_it_now(kit: Kit) -> None:
    order = kit.add_order("o-refund-1", "30.00")
    kit.gateway.trades[order.out_trade_no] = TradeQueryResult(True, "TRADE_SUCCESS", "t-r1", Decimal("30.00"), "USD")
    kit.services.client_results.confirm_with_alipay(order)  # paid
    kit.gateway.lose_refund_replies = 1  # done at Alipay, the reply lost: 503, the refund left pending
    lost = post(f"/merchant/orders/{order.out_trade_no}/refunds", {"amount": "10.00", "out_request_no": "rq-1"})
    assert (lost.status_code, lost.json_body["out_request_no"]) == (503, "rq-1")

    listed = get("/merchant/refunds/pending").json_body["refunds"]
    assert [(r["out_trade_no"], r["out_request_no"], r["amount"], r["kind"]) for r in listed] == [
        ("o-refund-1", "rq-1", "10.00", "refund")
    ]
    settled = post(f"/merchant/orders/{order.out_trade_no}/refunds/rq-1/settle", {"reason": "customer called"})
    assert settled.json_body == {"out_trade_no": "o-refund-1", "out_request_no": "rq-1", "status": "REFUND_SUCCESS"}
    assert kit.order(order.out_trade_no).refunds["rq-1"].status is RefundStatus.SUCCEEDED
    assert sum(kit.gateway.refunds[order.out_trade_no].values()) == Decimal("10.00")  # never twice
    assert get("/merchant/refunds/pending").json_body["refunds"] == []
    assert [a.action for a in kit.audit.entries] == ["refund.settle"]


def test_settling_an_unknown_refund_is_not_found_and_changes_nothing(kit: Kit) -> None:
    order = kit.add_order("o-refund-2", "30.00")
    answer = post(f"/merchant/orders/{order.out_trade_no}/refunds/rq-none/settle", {"reason": "checking"})
    assert (answer.status_code, answer.json_body["code"]) == (404, "not_found")
    assert kit.gateway.refund_queries == []


def test_a_store_outage_while_listing_is_a_503(kit: Kit) -> None:
    kit.orders.fail_with(Unavailable("DynamoDB throttled"))
    answer = get("/merchant/refunds/pending")
    assert answer.status_code == 503
