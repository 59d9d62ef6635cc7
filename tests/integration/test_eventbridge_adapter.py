"""The EventBridge publisher against moto: batching, delivery through a rule, and retrying failed entries.

Partial failures are injected with a botocore ``after-call`` hook that rewrites the parsed PutEvents response
(marks chosen entries with an ``ErrorCode``, sets ``FailedEntryCount``), since moto never fails an entry. moto
has already delivered those entries to the tap by then, so delivery assertions here count distinct event ids.
Whole-call errors are raised by a ``before-parameter-build`` hook (conftest.fail_calls).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.adapters.eventbridge import EventBridgePublisher
from chalicelib.orders.events import EventType, OrderEvent
from chalicelib.orders.model import OrderStatus
from chalicelib.services.ports import PublishFailed
from tests.integration.conftest import client_error, connection_error, fail_calls, queue_arn, record_calls

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sqs.client import SQSClient

BUS = "alipay-global-events"


def _event(i: int, detail_type: EventType = EventType.ORDER_PAID) -> OrderEvent:
    return OrderEvent(
        detail_type=detail_type,
        out_trade_no=f"o-{i}",
        trade_no=f"t-{i}",
        status=OrderStatus.TRADE_SUCCESS,
        previous_status=OrderStatus.WAIT_BUYER_PAY,
        total_amount=Decimal("12.30"),
        currency="USD",
        refund_fee=None,
        notify_id=f"n-{i}",
        occurred_at="2026-11-26T08:00:00Z",
    )


EVENTS = [_event(i) for i in range(25)]


@pytest.fixture
def tap(events: EventBridgeClient, sqs: SQSClient) -> Callable[[], list[dict[str, Any]]]:
    """A bus with a rule sending every alipay-global event to an SQS queue; returns a drain of that queue."""
    events.create_event_bus(Name=BUS)
    url = sqs.create_queue(QueueName="events-tap")["QueueUrl"]
    events.put_rule(Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": ["alipay-global"]}))
    events.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": queue_arn(sqs, url)}])

    def drain() -> list[dict[str, Any]]:
        received: list[dict[str, Any]] = []
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received += [json.loads(m["Body"]) for m in messages]
            sqs.delete_message_batch(
                QueueUrl=url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
        return received

    return drain


class Sleeps(list[float]):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def publisher(events: EventBridgeClient, tap: object, sleeps: Sleeps) -> EventBridgePublisher:
    return EventBridgePublisher(events, BUS, max_attempts=3, sleep=sleeps)


def _event_ids(entries: list[Any]) -> list[str]:
    return [json.loads(entry["Detail"])["event_id"] for entry in entries]


def fail_entries(client: EventBridgeClient, fails: Callable[[int, str], bool]) -> list[dict[str, Any]]:
    """Mark as failed each entry for which ``fails(call_number, event_id)``; returns the calls' parameters."""
    calls = record_calls(client, "PutEvents")

    def mark(parsed: dict[str, Any], **_: Any) -> None:
        failed = 0
        for i, event_id in enumerate(_event_ids(calls[-1]["Entries"])):
            if fails(len(calls), event_id):
                parsed["Entries"][i] = {"ErrorCode": "InternalFailure", "ErrorMessage": "injected"}
                failed += 1
        parsed["FailedEntryCount"] = failed

    client.meta.events.register("after-call.eventbridge.PutEvents", mark)
    return calls


def test_publishes_25_events_in_three_calls_of_at_most_ten(
    events: EventBridgeClient, publisher: EventBridgePublisher, tap: Callable[[], list[dict[str, Any]]]
) -> None:
    calls = record_calls(events, "PutEvents")
    publisher.publish(EVENTS)
    assert [len(call["Entries"]) for call in calls] == [10, 10, 5]
    assert publisher.put_events_calls == 3
    assert sorted(e["detail"]["event_id"] for e in tap()) == sorted(e.event_id for e in EVENTS)


def test_an_event_reaches_a_rule_target_with_its_source_type_and_detail(
    publisher: EventBridgePublisher, tap: Callable[[], list[dict[str, Any]]]
) -> None:
    finished = _event(7, EventType.ORDER_FINISHED)
    publisher.publish([finished])
    [delivered] = tap()
    assert (delivered["source"], delivered["detail-type"]) == ("alipay-global", "OrderFinished")
    assert delivered["detail"] == finished.detail()
    assert delivered["detail"]["total_amount"] == "12.30"


def test_publishing_nothing_makes_no_call(publisher: EventBridgePublisher) -> None:
    publisher.publish([])
    assert publisher.put_events_calls == 0


def test_retries_only_the_entries_that_failed(
    events: EventBridgeClient,
    publisher: EventBridgePublisher,
    sleeps: Sleeps,
    tap: Callable[[], list[dict[str, Any]]],
) -> None:
    flaky = {"o-1:OrderPaid", "o-3:OrderPaid"}
    calls = fail_entries(events, lambda call, event_id: call == 1 and event_id in flaky)
    publisher.publish(EVENTS[:5])
    assert [sorted(_event_ids(call["Entries"])) for call in calls] == [
        sorted(e.event_id for e in EVENTS[:5]),
        sorted(flaky),
    ]
    assert sleeps == [0.1]
    assert {e["detail"]["event_id"] for e in tap()} == {e.event_id for e in EVENTS[:5]}


def test_entries_that_keep_failing_are_reported_after_the_last_attempt(
    events: EventBridgeClient, publisher: EventBridgePublisher, sleeps: Sleeps
) -> None:
    calls = fail_entries(events, lambda call, event_id: event_id == "o-2:OrderPaid")
    with pytest.raises(PublishFailed) as raised:
        publisher.publish(EVENTS[:5])
    assert raised.value.failed == [EVENTS[2]]
    assert [len(call["Entries"]) for call in calls] == [5, 1, 1]
    assert sleeps == [0.1, 0.2]


def test_a_throttled_call_is_retried_whole(
    events: EventBridgeClient, publisher: EventBridgePublisher, tap: Callable[[], list[dict[str, Any]]]
) -> None:
    fail_calls(events, "PutEvents", client_error("PutEvents", "ThrottlingException"), times=2)
    publisher.publish(EVENTS[:3])
    assert publisher.put_events_calls == 3
    assert len(tap()) == 3


def test_a_batch_that_stays_throttled_fails_alone(
    events: EventBridgeClient, publisher: EventBridgePublisher, tap: Callable[[], list[dict[str, Any]]]
) -> None:
    fail_calls(events, "PutEvents", client_error("PutEvents", "ThrottlingException"), times=3)
    with pytest.raises(PublishFailed) as raised:
        publisher.publish(EVENTS)
    assert raised.value.failed == EVENTS[:10]
    assert publisher.put_events_calls == 5
    assert len(tap()) == 15


def test_an_unreachable_endpoint_is_retried_then_reported(
    events: EventBridgeClient, publisher: EventBridgePublisher
) -> None:
    fail_calls(events, "PutEvents", connection_error())
    with pytest.raises(PublishFailed) as raised:
        publisher.publish(EVENTS[:2])
    assert raised.value.failed == EVENTS[:2]
    assert publisher.put_events_calls == 3


def test_a_permanent_error_is_not_retried(events: EventBridgeClient, publisher: EventBridgePublisher) -> None:
    fail_calls(events, "PutEvents", client_error("PutEvents", "AccessDeniedException"))
    with pytest.raises(PublishFailed) as raised:
        publisher.publish(EVENTS[:2])
    assert raised.value.failed == EVENTS[:2]
    assert publisher.put_events_calls == 1
