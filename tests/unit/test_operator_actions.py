"""Operator actions through the app behind API Gateway (merchant SigV4): quarantine, event replay, redrive, audit.

Each action is shown with its audit record (who, when, why), and each refusal with nothing changed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest

from app import app
from chalicelib import bootstrap
from chalicelib.config import Config
from chalicelib.orders.model import OrderStatus
from chalicelib.services.operations import entry_id
from chalicelib.services.ports import QuarantineRecord, QueuedNotification, Resolution, TradeQueryResult
from tests.alipay_fixtures import alipay_key, notification_body, openapi_notification_fields
from tests.fakes import InMemoryQuarantineStore
from tests.gateway_client import MERCHANT_ARN, GatewayClient
from tests.unit.services_kit import Kit, env, make_kit, merchant_signer

FORM = "application/x-www-form-urlencoded"
JSON = {"Content-Type": "application/json"}
UNKNOWN = "o-unknown-1"


@pytest.fixture
def kit() -> Iterator[Kit]:
    kit = make_kit()
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


def merchant() -> GatewayClient:
    return GatewayClient(app)


def post(path: str, body: object) -> Any:
    return merchant().http.post(path, headers=JSON, body=json.dumps(body).encode())


def deliver(kit: Kit, **fields: str) -> QueuedNotification:
    """Alipay's notification through the webhook and the queue's consumer; the message as queued."""
    body = notification_body(openapi_notification_fields(**fields), alipay_key())
    kit.services.intake.accept(body, FORM)
    message = kit.queue.messages[-1]
    kit.services.consumer.apply(message)
    return message


def quarantined_payment_for_an_unknown_order(kit: Kit) -> str:
    """A genuine payment notification for an order the table does not have: quarantined; its entry id."""
    message = deliver(kit, out_trade_no=UNKNOWN, notify_id="n-unknown-1", total_amount="12.30")
    assert kit.quarantine.records[message.notify_id].reason == "unknown_order"
    return entry_id(message.notify_id)


def create_the_missing_order(kit: Kit, amount: str = "12.30") -> None:
    answer = post(
        "/merchant/orders", {"subject": "Coffee", "total_amount": amount, "currency": "USD", "out_trade_no": UNKNOWN}
    )
    assert answer.status_code == 201, answer.json_body


# --- quarantine: list, show ------------------------------------------------------------------------------------


def test_an_operator_lists_open_entries_newest_first_page_by_page(kit: Kit) -> None:
    for n in range(3):
        kit.clock.advance(seconds=1)
        deliver(kit, out_trade_no=f"o-lost-{n}", notify_id=f"n-lost-{n}", total_amount="1.00")
    first = merchant().http.get("/merchant/quarantine?limit=2").json_body
    assert [e["out_trade_no"] for e in first["entries"]] == ["o-lost-2", "o-lost-1"]
    assert first["entries"][0]["state"] == "open"
    assert first["entries"][0]["reason"] == "unknown_order"
    second = merchant().http.get(f"/merchant/quarantine?limit=2&cursor={first['next_cursor']}").json_body
    assert ([e["out_trade_no"] for e in second["entries"]], second["next_cursor"]) == (["o-lost-0"], None)


def test_a_cursor_this_api_did_not_hand_out_is_a_bad_request(kit: Kit) -> None:
    forged = base64.urlsafe_b64encode(b"anything").decode()
    answer = merchant().http.get(f"/merchant/quarantine?cursor={forged}")
    assert (answer.status_code, answer.json_body["code"]) == (400, "bad_request")


def test_an_unknown_state_is_an_invalid_field(kit: Kit) -> None:
    answer = merchant().http.get("/merchant/quarantine?state=all")
    assert (answer.status_code, answer.json_body["field"]) == (422, "state")


def test_one_entry_shows_why_it_was_kept_and_what_alipay_said(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    view = merchant().http.get(f"/merchant/quarantine/{entry}").json_body
    assert (view["id"], view["notify_id"], view["state"], view["signed_body_kept"]) == (
        entry,
        "n-unknown-1",
        "open",
        True,
    )
    assert view["fields"]["total_amount"] == "12.30"


@pytest.mark.parametrize("entry", ["bm8tc3VjaA", "not*an*id", "x" * 600])
def test_an_unknown_or_impossible_entry_is_not_found(kit: Kit, entry: str) -> None:
    answer = merchant().http.get(f"/merchant/quarantine/{entry}")
    assert (answer.status_code, answer.json_body["code"]) == (404, "not_found")


# --- quarantine: replay -------------------------------------------------------------------------------------------


def test_once_the_missing_order_exists_a_replay_applies_the_payment_and_resolves_the_entry(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    create_the_missing_order(kit)
    kit.clock.advance(minutes=5)

    answer = post(f"/merchant/quarantine/{entry}/replay", {"reason": "created the order from the shop's records"})

    assert answer.status_code == 200, answer.json_body
    assert (answer.json_body["outcome"], answer.json_body["resolved"]) == ("applied", True)
    order = kit.order(UNKNOWN)
    assert order.status is OrderStatus.TRADE_SUCCESS
    assert (order.history[-1].applied_by, order.history[-1].notify_id) == ("operator", "n-unknown-1")
    resolution = kit.quarantine.records["n-unknown-1"].resolution
    assert resolution is not None
    assert (resolution.action, resolution.by, resolution.reason, resolution.outcome) == (
        "replayed",
        MERCHANT_ARN,
        "created the order from the shop's records",
        "applied",
    )
    [audit] = kit.audit.entries
    assert (audit.action, audit.by, audit.target, audit.reason) == (
        "quarantine.replay",
        MERCHANT_ARN,
        "n-unknown-1",
        "created the order from the shop's records",
    )
    assert audit.at == "2026-11-26T16:35:05.000Z"
    kit.relay_stream()
    assert kit.event_types() == ["OrderPaid"]


def test_a_replay_before_the_cause_is_fixed_changes_nothing_and_leaves_the_entry_open(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    answer = post(f"/merchant/quarantine/{entry}/replay", {"reason": "trying"})
    assert answer.status_code == 200
    assert (answer.json_body["outcome"], answer.json_body["resolved"], answer.json_body["still"]) == (
        "quarantined",
        False,
        "unknown_order",
    )
    assert kit.quarantine.records["n-unknown-1"].resolution is None
    assert UNKNOWN not in kit.orders.orders
    assert [a.action for a in kit.audit.entries] == ["quarantine.replay"]  # the attempt is on record too


def test_a_replay_against_an_order_of_another_amount_is_refused_again_and_names_why(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    create_the_missing_order(kit, amount="99.00")
    answer = post(f"/merchant/quarantine/{entry}/replay", {"reason": "created it"})
    assert (answer.json_body["outcome"], answer.json_body["still"]) == ("quarantined", "amount_mismatch")
    assert kit.order(UNKNOWN).status is OrderStatus.WAIT_BUYER_PAY


def test_replaying_twice_applies_once_and_the_second_is_told_who_resolved_it(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    create_the_missing_order(kit)
    assert post(f"/merchant/quarantine/{entry}/replay", {"reason": "fixed"}).status_code == 200
    writes = kit.orders.writes_of(UNKNOWN)

    again = post(f"/merchant/quarantine/{entry}/replay", {"reason": "fixed"})

    assert (again.status_code, again.json_body["code"]) == (409, "already_resolved")
    assert MERCHANT_ARN in again.json_body["message"]
    assert kit.orders.writes_of(UNKNOWN) == writes


def test_a_replay_needs_a_reason_and_without_one_changes_nothing(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    create_the_missing_order(kit)
    for body in ({}, {"reason": "  "}, {"reason": "x", "force": True}):
        answer = post(f"/merchant/quarantine/{entry}/replay", body)
        assert (answer.status_code, answer.json_body["code"]) == (422, "invalid_field")
    assert kit.order(UNKNOWN).status is OrderStatus.WAIT_BUYER_PAY
    assert kit.quarantine.records["n-unknown-1"].resolution is None
    assert kit.audit.entries == []


def test_a_kept_notification_whose_body_no_longer_verifies_is_not_replayable(kit: Kit) -> None:
    message = deliver(kit, out_trade_no=UNKNOWN, notify_id="n-unknown-1", total_amount="12.30")
    tampered = base64.b64decode(message.body or "").replace(b"12.30", b"99.99")
    record = kit.quarantine.records["n-unknown-1"]
    kit.quarantine.records["n-unknown-1"] = replace(
        record, message=replace(message, body=base64.b64encode(tampered).decode())
    )
    create_the_missing_order(kit, amount="99.99")
    answer = post(f"/merchant/quarantine/{entry_id('n-unknown-1')}/replay", {"reason": "fixed"})
    assert (answer.status_code, answer.json_body["code"]) == (409, "not_replayable")
    assert kit.order(UNKNOWN).status is OrderStatus.WAIT_BUYER_PAY


def test_a_forged_queue_message_refused_by_the_consumer_can_never_be_replayed_into_an_order(kit: Kit) -> None:
    create_the_missing_order(kit)
    fields = openapi_notification_fields(out_trade_no=UNKNOWN, total_amount="12.30")
    forged = QueuedNotification("openapi", "n-forged", UNKNOWN, fields, "2026-11-26T16:30:05Z", body="bm90IHNpZ25lZA==")
    kit.services.consumer.apply(forged)
    [notify_id] = kit.quarantine.records
    answer = post(f"/merchant/quarantine/{entry_id(notify_id)}/replay", {"reason": "looks fine to me"})
    assert (answer.status_code, answer.json_body["code"]) == (409, "not_replayable")
    assert kit.order(UNKNOWN).status is OrderStatus.WAIT_BUYER_PAY
    [attempt] = kit.audit.entries  # the attempt is on record, with who made it
    assert (
        attempt.action,
        attempt.by,
        attempt.result["refused"].startswith("the kept notification does not verify"),
    ) == (
        "quarantine.replay",
        MERCHANT_ARN,
        True,
    )


def test_a_kept_gateway_answer_is_replayed_by_asking_alipay_afresh(kit: Kit) -> None:
    kept = QueuedNotification(
        "openapi", f"query:{UNKNOWN}:TRADE_SUCCESS", UNKNOWN, {"trade_status": "TRADE_SUCCESS"}, "t"
    )
    kit.quarantine.put(QuarantineRecord(kept.notify_id, UNKNOWN, "unknown_order", "", kept, "2026-11-26T16:00:00.000Z"))
    create_the_missing_order(kit)
    entry = entry_id(kept.notify_id)

    nothing = post(f"/merchant/quarantine/{entry}/replay", {"reason": "fixed"})
    assert (nothing.status_code, nothing.json_body["code"]) == (409, "not_replayable")

    kit.gateway.trades[UNKNOWN] = TradeQueryResult(True, "TRADE_SUCCESS", "2026112622001", Decimal("12.30"), "USD")
    answer = post(f"/merchant/quarantine/{entry}/replay", {"reason": "fixed"})
    assert (answer.status_code, answer.json_body["outcome"]) == (200, "applied")
    assert kit.order(UNKNOWN).history[-1].applied_by == "operator"


# --- quarantine: dismiss ------------------------------------------------------------------------------------------


def test_a_dismissed_entry_is_resolved_without_touching_any_order_and_stays_readable(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    answer = post(f"/merchant/quarantine/{entry}/dismiss", {"reason": "a test payment from the sandbox"})
    assert (answer.status_code, answer.json_body["resolution"]["action"]) == (200, "dismissed")
    assert UNKNOWN not in kit.orders.orders
    assert merchant().http.get("/merchant/quarantine").json_body["entries"] == []
    [resolved] = merchant().http.get("/merchant/quarantine?state=resolved").json_body["entries"]
    assert resolved["resolution"]["by"] == MERCHANT_ARN
    assert merchant().http.get(f"/merchant/quarantine/{entry}").json_body["state"] == "resolved"
    replay = post(f"/merchant/quarantine/{entry}/replay", {"reason": "changed my mind"})
    assert (replay.status_code, replay.json_body["code"]) == (409, "already_resolved")
    assert [a.action for a in kit.audit.entries] == ["quarantine.dismiss"]


# --- events replay ------------------------------------------------------------------------------------------------


def test_events_replay_republishes_the_orders_events_with_their_original_ids_and_times(kit: Kit) -> None:
    kit.add_order()
    deliver(kit, notify_id="n-paid")
    kit.clock.advance(seconds=30)
    deliver(kit, notify_id="n-refund-1", refund_fee="10.00")
    kit.clock.advance(seconds=30)
    deliver(kit, notify_id="n-closed", trade_status="TRADE_CLOSED", refund_fee="88.88")
    kit.relay_stream()
    original = [(e.event_id, e.occurred_at, e.detail()) for e in kit.publisher.events]
    assert [e.detail_type for e in kit.publisher.events] == [
        "OrderPaid",
        "OrderRefunded",
        "OrderRefunded",
        "OrderClosed",
    ]
    kit.clock.advance(days=3)

    answer = post(f"/merchant/orders/{kit.order().out_trade_no}/events/replay", {"reason": "the ERP lost them"})

    assert answer.status_code == 200
    assert answer.json_body["event_ids"] == [event_id for event_id, _, _ in original]
    replayed = [(e.event_id, e.occurred_at, e.detail()) for e in kit.publisher.events[len(original) :]]
    assert replayed == original
    [audit] = kit.audit.entries
    assert (audit.action, audit.target, audit.by) == ("events.replay", kit.order().out_trade_no, MERCHANT_ARN)
    kit.relay_stream()
    assert len(kit.publisher.events) == 2 * len(original)  # the replay wrote nothing to the order: no new event


def test_events_replay_of_an_unknown_order_is_not_found_and_audits_nothing(kit: Kit) -> None:
    answer = post("/merchant/orders/o-nobody/events/replay", {"reason": "x"})
    assert (answer.status_code, answer.json_body["code"]) == (404, "not_found")
    assert kit.audit.entries == []
    assert kit.publisher.events == []


# --- redrive ------------------------------------------------------------------------------------------------------


def test_redrive_moves_the_dlq_back_in_bounded_calls_and_loses_nothing(kit: Kit) -> None:
    kit.dead_letters.dlq.extend(["m1", "m2", "m3"])
    first = post("/merchant/redrive", {"reason": "consumer fixed", "max_messages": 2}).json_body
    assert first == {"moved": 2, "failed": 0, "remaining": 1}
    second = post("/merchant/redrive", {"reason": "consumer fixed", "max_messages": 2}).json_body
    assert second == {"moved": 1, "failed": 0, "remaining": 0}
    assert (kit.dead_letters.queue, kit.dead_letters.dlq) == (["m1", "m2", "m3"], [])
    assert [(a.action, a.result["moved"]) for a in kit.audit.entries] == [("redrive", 2), ("redrive", 1)]


def test_a_redrive_whose_sends_fail_leaves_every_message_in_the_dlq(kit: Kit) -> None:
    kit.dead_letters.dlq.extend(["m1", "m2"])
    kit.dead_letters.refuse_sends = True
    answer = post("/merchant/redrive", {"reason": "consumer fixed"}).json_body
    assert answer == {"moved": 0, "failed": 2, "remaining": 2}
    assert kit.dead_letters.dlq == ["m1", "m2"]


@pytest.mark.parametrize("wanted", [0, 501, "10", True])
def test_redrive_refuses_an_impossible_batch_size(kit: Kit, wanted: object) -> None:
    kit.dead_letters.dlq.append("m1")
    answer = post("/merchant/redrive", {"reason": "x", "max_messages": wanted})
    assert (answer.status_code, answer.json_body["field"]) == (422, "max_messages")
    assert kit.dead_letters.dlq == ["m1"]
    assert kit.audit.entries == []


# --- the audit log ------------------------------------------------------------------------------------------------


def test_the_audit_log_lists_every_action_newest_first_with_who_when_and_why(kit: Kit) -> None:
    entry = quarantined_payment_for_an_unknown_order(kit)
    post(f"/merchant/quarantine/{entry}/dismiss", {"reason": "first"})
    kit.clock.advance(seconds=1)
    post("/merchant/redrive", {"reason": "second"})
    page = merchant().http.get("/merchant/audit").json_body
    assert [(e["action"], e["reason"], e["by"]) for e in page["entries"]] == [
        ("redrive", "second", MERCHANT_ARN),
        ("quarantine.dismiss", "first", MERCHANT_ARN),
    ]
    assert page["next_cursor"] is None


# --- who may call them: merchant callers only ----------------------------------------------------------------------

OPERATOR_ROUTES = [
    ("GET", "/merchant/quarantine", None),
    ("GET", "/merchant/quarantine/{entry}", None),
    ("POST", "/merchant/quarantine/{entry}/replay", {"reason": "fixed"}),
    ("POST", "/merchant/quarantine/{entry}/dismiss", {"reason": "fixed"}),
    ("POST", "/merchant/quarantine/{entry}/return", {"reason": "fixed"}),
    ("GET", "/merchant/refunds/pending", None),
    ("POST", "/merchant/orders/{out_trade_no}/refunds/{out_request_no}/settle", {"reason": "fixed"}),
    ("POST", "/merchant/orders/{out_trade_no}/events/replay", {"reason": "fixed"}),
    ("POST", "/merchant/redrive", {"reason": "fixed"}),
    ("GET", "/merchant/audit", None),
]


def test_every_operator_route_of_the_app_is_in_the_capability_table() -> None:
    served = {
        (method, path)
        for path, entries in app.routes.items()
        for method in entries
        if path.startswith(("/merchant/quarantine", "/merchant/redrive", "/merchant/audit", "/merchant/refunds/"))
        or "/events/" in path
        or path.endswith("/settle")
    }
    assert served == {(method, path) for method, path, _ in OPERATOR_ROUTES}


@pytest.mark.parametrize("caller", ["buyer", "public"])
@pytest.mark.parametrize(("method", "template", "body"), OPERATOR_ROUTES, ids=lambda v: str(v))
def test_a_buyer_or_the_public_is_refused_every_operator_route_and_nothing_changes(
    kit: Kit, caller: str, method: str, template: str, body: object
) -> None:
    from tests.gateway_client import id_token

    kit.add_order()
    deliver(kit, notify_id="n-paid")
    entry = quarantined_payment_for_an_unknown_order(kit)
    create_the_missing_order(kit)
    kit.dead_letters.dlq.append("m1")
    kit.relay_stream()
    before = (
        dict(kit.orders.orders),
        dict(kit.quarantine.records),
        list(kit.dead_letters.dlq),
        len(kit.publisher.events),
    )
    path = template.format(entry=entry, out_trade_no=kit.order().out_trade_no, out_request_no="rq-1")
    headers = {**JSON, "Authorization": id_token()} if caller == "buyer" else dict(JSON)
    data = b"" if body is None else json.dumps(body).encode()

    response = GatewayClient(app, anonymous=True).http.request(method, path, headers, data)

    assert (response.status_code, response.json_body["code"]) == (403, "forbidden")
    kit.relay_stream()
    after = (
        dict(kit.orders.orders),
        dict(kit.quarantine.records),
        list(kit.dead_letters.dlq),
        len(kit.publisher.events),
    )
    assert after == before
    assert kit.audit.entries == []


class _AnotherOperatorFirst(InMemoryQuarantineStore):
    """The quarantine as a second operator races the first: their dismissal lands just before this resolution."""

    def resolve(self, notify_id: str, resolution: Resolution) -> bool:
        super().resolve(notify_id, replace(resolution, action="dismissed", by="arn:aws:iam::1:role/other"))
        return super().resolve(notify_id, resolution)


def test_two_operators_at_once_apply_the_payment_once_and_the_first_resolution_stands() -> None:
    kit = Kit(config=Config.from_env(env()), signer=merchant_signer(), quarantine=_AnotherOperatorFirst())
    bootstrap.use(kit.services)
    try:
        entry = quarantined_payment_for_an_unknown_order(kit)
        create_the_missing_order(kit)
        answer = post(f"/merchant/quarantine/{entry}/replay", {"reason": "fixed"})
    finally:
        bootstrap.use(None)
    assert (answer.status_code, answer.json_body["code"]) == (409, "already_resolved")
    assert kit.order(UNKNOWN).status is OrderStatus.TRADE_SUCCESS  # applied once, whoever records it
    resolution = kit.quarantine.records["n-unknown-1"].resolution
    assert resolution is not None
    assert resolution.by == "arn:aws:iam::1:role/other"
    [attempt] = kit.audit.entries
    assert (attempt.by, attempt.result["outcome"], attempt.result["resolved"]) == (MERCHANT_ARN, "applied", False)
