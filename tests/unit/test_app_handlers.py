"""The SQS consumer and the stream relay as Lambda invokes them (``client.lambda_.invoke``), over fakes."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

from app import app, handle_sqs_event, handle_stream_event
from chalicelib import bootstrap
from chalicelib.orders.model import Order, OrderStatus, TransitionPlan
from chalicelib.services.ports import ConditionFailed, QueuedNotification, Unavailable
from tests.alipay_fixtures import alipay_key, notification_body, openapi_notification_fields
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, StreamingOrderRepository, make_kit

EVENTS = Path(__file__).parent.parent / "events"
FORM = "application/x-www-form-urlencoded"
ORDERS = [f"ORDER-{n}" for n in range(1, 6)]


class ThrottledFor(StreamingOrderRepository):
    """DynamoDB throttling the writes to some orders only (``throttled`` out_trade_nos)."""

    def __init__(self) -> None:
        super().__init__()
        self.throttled: set[str] = set()

    def apply_plan(self, plan: TransitionPlan) -> Order | ConditionFailed:
        if plan.out_trade_no in self.throttled:
            raise Unavailable("DynamoDB throttled (ProvisionedThroughputExceededException)", retry_after=2)
        return super().apply_plan(plan)


@pytest.fixture
def orders() -> ThrottledFor:
    return ThrottledFor()


@pytest.fixture
def kit(orders: ThrottledFor) -> Iterator[Kit]:
    kit = make_kit(orders=orders)
    for number in ORDERS:
        kit.add_order(number)
    bootstrap.use(kit.services)
    yield kit
    bootstrap.use(None)


@pytest.fixture
def client() -> Client:
    return Client(app)


def queued(kit: Kit, out_trade_no: str, **fields: str) -> str:
    """The SQS body the webhook queues for a verified notification about ``out_trade_no``."""
    notify_id = fields.pop("notify_id", f"notify-{out_trade_no}")
    body = notification_body(
        openapi_notification_fields(out_trade_no=out_trade_no, notify_id=notify_id, **fields), alipay_key()
    )
    kit.services.intake.accept(body, FORM)
    return kit.queue.messages[-1].to_json()


def sqs_event(client: Client, bodies: list[str]) -> dict[str, Any]:
    event = client.events.generate_sqs_event(bodies)
    # Chalice's generator gives every record the same messageId; Lambda's are unique.
    for number, record in enumerate(event["Records"], start=1):
        record["messageId"] = f"m-{number}"
    return event


def failures(payload: dict[str, Any]) -> list[str]:
    return [item["itemIdentifier"] for item in payload["batchItemFailures"]]


# --- the SQS consumer -------------------------------------------------------------------------------------------


def test_a_batch_of_notifications_is_applied_and_reports_no_failures(kit: Kit, client: Client) -> None:
    event = sqs_event(client, [queued(kit, number) for number in ORDERS])
    payload = client.lambda_.invoke("apply_notifications", event).payload
    assert payload == {"batchItemFailures": []}
    assert all(kit.order(number).status is OrderStatus.TRADE_SUCCESS for number in ORDERS)
    assert kit.metrics.counts["NotificationsApplied"] == len(ORDERS)


def test_a_throttled_write_reports_only_that_record_and_its_retry_applies_it_once(
    kit: Kit, client: Client, orders: ThrottledFor
) -> None:
    bodies = [queued(kit, number) for number in ORDERS]
    orders.throttled.add("ORDER-3")
    payload = client.lambda_.invoke("apply_notifications", sqs_event(client, bodies)).payload
    assert failures(payload) == ["m-3"]
    assert kit.order("ORDER-3").status is OrderStatus.WAIT_BUYER_PAY
    # Lambda redelivers only m-3; the throttling is over.
    orders.throttled.clear()
    retry = sqs_event(client, [bodies[2]])
    assert client.lambda_.invoke("apply_notifications", retry).payload == {"batchItemFailures": []}
    assert all(kit.orders.writes_of(number) == 1 for number in ORDERS)


def test_a_poison_message_is_reported_every_time_so_it_reaches_the_dlq_while_the_rest_apply(
    kit: Kit, client: Client
) -> None:
    bodies = [queued(kit, "ORDER-1"), "{not json", queued(kit, "ORDER-2")]
    for _ in range(3):  # maxReceiveCount deliveries, then SQS moves it to the DLQ
        payload = client.lambda_.invoke("apply_notifications", sqs_event(client, bodies)).payload
        assert failures(payload) == ["m-2"]
    assert kit.orders.writes_of("ORDER-1") == kit.orders.writes_of("ORDER-2") == 1


def test_a_forged_queue_message_moves_no_order_and_is_quarantined(kit: Kit, client: Client) -> None:
    # Anything in the account that can send to the queue: a message claiming a payment, with no body Alipay signed.
    forged = QueuedNotification(
        protocol="openapi",
        notify_id="forged-1",
        out_trade_no="ORDER-1",
        fields={"out_trade_no": "ORDER-1", "trade_status": "TRADE_SUCCESS", "total_amount": "0.01"},
        received_at="2026-11-26T16:00:00.000Z",
    ).to_json()
    assert failures(client.lambda_.invoke("apply_notifications", sqs_event(client, [forged])).payload) == []
    assert kit.order("ORDER-1").status is OrderStatus.WAIT_BUYER_PAY
    assert kit.orders.writes_of("ORDER-1") == 0
    [record] = kit.quarantine.records.values()
    assert record.reason == "queue:queue_message_unsigned"
    assert kit.metrics.counts["QueueMessagesRefused"] == 1


def test_the_webhook_queues_the_signed_body_and_no_fields_of_its_own(kit: Kit) -> None:
    text = queued(kit, "ORDER-1", total_amount="88.88")
    message = QueuedNotification.from_json(text)
    assert '"fields":{}' in text
    assert "88.88" not in text  # only inside the base64 body
    assert kit.services.consumer.verified(message).fields["total_amount"] == "88.88"


def test_a_queue_message_whose_fields_were_changed_applies_what_alipay_signed(kit: Kit, client: Client) -> None:
    # As a release before the message dropped its fields queued it, with a field then changed by someone.
    genuine = QueuedNotification.from_json(queued(kit, "ORDER-1"))
    signed = kit.services.consumer.verified(genuine).fields
    tampered = dataclasses.replace(genuine, fields={**signed, "trade_status": "TRADE_FINISHED"}).to_json()
    assert '"trade_status":"TRADE_FINISHED"' in tampered
    assert failures(client.lambda_.invoke("apply_notifications", sqs_event(client, [tampered])).payload) == []
    assert kit.order("ORDER-1").status is OrderStatus.TRADE_SUCCESS  # the signed body's status, not the field's


def test_a_queued_body_signed_by_someone_else_is_quarantined(kit: Kit, client: Client) -> None:
    genuine = QueuedNotification.from_json(queued(kit, "ORDER-1"))
    forged_body = notification_body(openapi_notification_fields(out_trade_no="ORDER-1"), rsa_key("forger"))
    forged = dataclasses.replace(genuine, body=base64.b64encode(forged_body).decode())
    client.lambda_.invoke("apply_notifications", sqs_event(client, [forged.to_json()]))
    assert kit.order("ORDER-1").status is OrderStatus.WAIT_BUYER_PAY
    [record] = kit.quarantine.records.values()
    assert record.reason.startswith("queue:")


def test_a_redriven_message_after_a_fix_is_applied_once(kit: Kit, client: Client) -> None:
    message = QueuedNotification.from_json(queued(kit, "ORDER-1"))
    good = message.to_json()
    poison = good.replace('"notify_id":', '"notify":', 1)  # unreadable until the operator fixes it
    assert failures(client.lambda_.invoke("apply_notifications", sqs_event(client, [poison])).payload) == ["m-1"]
    # The operator fixes the cause and redrives the DLQ: the genuine message applies once.
    for _ in range(2):
        client.lambda_.invoke("apply_notifications", sqs_event(client, [good]))
    assert kit.orders.writes_of("ORDER-1") == 1


def test_a_failure_at_record_k_reports_only_k(kit: Kit, client: Client, orders: ThrottledFor) -> None:
    bodies = [queued(kit, number) for number in ORDERS]
    orders.throttled.add("ORDER-4")
    payload = client.lambda_.invoke("apply_notifications", sqs_event(client, bodies)).payload
    assert failures(payload) == ["m-4"]


def test_a_whole_batch_redelivered_after_a_crash_re_applies_nothing(kit: Kit, client: Client) -> None:
    bodies = [queued(kit, number) for number in ORDERS]
    # The first invocation applied records 1..2 and then the container died: no answer, so all 5 come back.
    first_two = sqs_event(client, bodies[:2])
    client.lambda_.invoke("apply_notifications", first_two)
    payload = client.lambda_.invoke("apply_notifications", sqs_event(client, bodies)).payload
    kit.relay_stream()
    assert payload == {"batchItemFailures": []}
    assert all(kit.orders.writes_of(number) == 1 for number in ORDERS)
    assert kit.metrics.counts["NotificationsDuplicate"] == 2
    assert kit.event_types() == ["OrderPaid"] * len(ORDERS)


def test_a_batch_where_every_record_fails_is_reported_not_raised(
    kit: Kit, client: Client, orders: ThrottledFor
) -> None:
    bodies = [queued(kit, number) for number in ORDERS[:2]]
    orders.throttled.update(ORDERS)
    payload = client.lambda_.invoke("apply_notifications", sqs_event(client, bodies)).payload
    assert failures(payload) == ["m-1", "m-2"]


def test_the_plain_sqs_handler_takes_a_raw_lambda_event(kit: Kit, client: Client) -> None:
    payload = handle_sqs_event(sqs_event(client, [queued(kit, "ORDER-1")]), None)
    assert payload == {"batchItemFailures": []}
    assert kit.order("ORDER-1").status is OrderStatus.TRADE_SUCCESS


# --- the stream relay -------------------------------------------------------------------------------------------


def lifecycle_event() -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "dynamodb_stream_order_lifecycle.json").read_text(encoding="utf-8"))
    return event


def test_the_stream_relay_publishes_each_business_fact_once_and_ignores_the_rest(kit: Kit, client: Client) -> None:
    payload = client.lambda_.invoke("relay_order_events", lifecycle_event()).payload
    assert payload == {"batchItemFailures": []}
    assert [e.event_id for e in kit.publisher.events] == [
        "ORDER-20261126-0001:OrderPaid",
        "ORDER-20261126-0001:OrderFinished",
    ]
    paid = kit.publisher.events[0].detail()
    assert paid["notify_id"] == "ac05099524730693a8b330c5ecf72da9786"
    assert paid["occurred_at"] == "2026-11-26T16:31:10.000Z"
    assert kit.publisher.calls == 1


def test_a_partial_put_events_failure_reports_that_records_sequence_number(kit: Kit, client: Client) -> None:
    kit.publisher.reject_ids.add("ORDER-20261126-0001:OrderFinished")
    payload = client.lambda_.invoke("relay_order_events", lifecycle_event()).payload
    assert failures(payload) == ["100000000000000000003"]
    assert [e.event_id for e in kit.publisher.events] == ["ORDER-20261126-0001:OrderPaid"]


def test_the_stream_retry_after_a_failure_delivers_the_missing_event_with_the_same_id(kit: Kit, client: Client) -> None:
    kit.publisher.reject_ids.add("ORDER-20261126-0001:OrderFinished")
    event = lifecycle_event()
    client.lambda_.invoke("relay_order_events", event)
    kit.publisher.reject_ids.clear()
    # Lambda retries from the failed record onwards.
    event["Records"] = event["Records"][2:]
    assert client.lambda_.invoke("relay_order_events", event).payload == {"batchItemFailures": []}
    assert [e.event_id for e in kit.publisher.events] == [
        "ORDER-20261126-0001:OrderPaid",
        "ORDER-20261126-0001:OrderFinished",
    ]


def test_a_stream_batch_replayed_after_a_crash_loses_nothing_and_duplicates_keep_their_ids(
    kit: Kit, client: Client
) -> None:
    event = lifecycle_event()
    client.lambda_.invoke("relay_order_events", event)  # published, then the handler died before answering
    client.lambda_.invoke("relay_order_events", event)
    ids = [e.event_id for e in kit.publisher.events]
    assert set(ids) == {"ORDER-20261126-0001:OrderPaid", "ORDER-20261126-0001:OrderFinished"}
    assert len(ids) == 4  # consumers dedupe on event_id, which is the same on the replay
    first, replay = kit.publisher.events[:2], kit.publisher.events[2:]
    assert [e.detail() for e in first] == [e.detail() for e in replay]


def test_an_unavailable_bus_reports_every_record_with_events(kit: Kit, client: Client) -> None:
    kit.publisher.fail_with(Unavailable("EventBridge throttled"))
    payload = client.lambda_.invoke("relay_order_events", lifecycle_event()).payload
    assert failures(payload) == ["100000000000000000002", "100000000000000000003"]


def test_the_plain_stream_handler_takes_a_raw_lambda_event(kit: Kit) -> None:
    assert handle_stream_event(lifecycle_event(), None) == {"batchItemFailures": []}
    assert len(kit.publisher.events) == 2


def test_the_pipeline_from_notification_to_event_through_both_handlers(kit: Kit, client: Client) -> None:
    body = queued(kit, "ORDER-1")
    client.lambda_.invoke("apply_notifications", sqs_event(client, [body, body]))
    stream = {"Records": kit.new_stream_records()}
    client.lambda_.invoke("relay_order_events", stream)
    assert kit.event_types() == ["OrderPaid"]
