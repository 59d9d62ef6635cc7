"""The SQS adapter against moto: message attributes, failures that must never look like success, DLQ redrive."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.adapters.sqs import RedriveReport, SqsNotificationQueue, redrive_messages
from chalicelib.services.ports import QueuedNotification, Unavailable
from tests.integration.conftest import client_error, connection_error, fail_calls

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

MESSAGE = QueuedNotification(
    protocol="openapi",
    notify_id="n-1",
    out_trade_no="o-1",
    fields={"trade_status": "TRADE_SUCCESS", "subject": "咖啡"},
    received_at="2026-11-26T08:00:00Z",
)


@pytest.fixture
def queues(sqs: SQSClient) -> tuple[str, str]:
    """The notifications queue and its DLQ."""
    dlq = sqs.create_queue(QueueName="notifications-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    return queue, dlq


def _drain(sqs: SQSClient, url: str) -> list[MessageTypeDef]:
    received: list[MessageTypeDef] = []
    while messages := sqs.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], VisibilityTimeout=60
    ).get("Messages", []):
        received += messages
    return received


def _count(sqs: SQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight) messages in the queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(attributes["ApproximateNumberOfMessagesNotVisible"])


def _notification(i: int) -> QueuedNotification:
    return replace(MESSAGE, notify_id=f"n-{i}", out_trade_no=f"o-{i}")


# --- send --------------------------------------------------------------------------------------------------


def test_a_sent_message_carries_the_order_and_notification_ids_as_attributes(
    sqs: SQSClient, queues: tuple[str, str]
) -> None:
    queue, _ = queues
    SqsNotificationQueue(sqs, queue).send(MESSAGE)
    [message] = _drain(sqs, queue)
    assert json.loads(message["Body"])["v"] == 1
    assert {name: value["StringValue"] for name, value in message["MessageAttributes"].items()} == {
        "out_trade_no": "o-1",
        "notify_id": "n-1",
    }


def test_sending_to_a_missing_queue_is_unavailable_never_success(sqs: SQSClient) -> None:
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    with pytest.raises(Unavailable):
        SqsNotificationQueue(sqs, url).send(MESSAGE)


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (client_error("SendMessage", "RequestThrottled"), 2),
        (client_error("SendMessage", "KMS.ThrottlingException"), 2),
        (client_error("SendMessage", "InternalError", 500), 1),
        (connection_error(), 1),
    ],
    ids=["throttled", "kms throttled", "server error", "unreachable"],
)
def test_send_failures_become_unavailable(
    sqs: SQSClient, queues: tuple[str, str], error: Exception, retry_after: int
) -> None:
    queue, _ = queues
    fail_calls(sqs, "SendMessage", error)
    with pytest.raises(Unavailable) as raised:
        SqsNotificationQueue(sqs, queue).send(MESSAGE)
    assert raised.value.retry_after == retry_after
    assert raised.value.__cause__ is error
    assert _count(sqs, queue) == (0, 0)


# --- redrive -----------------------------------------------------------------------------------------------


def test_redrive_moves_every_dlq_message_back_to_the_queue_intact(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, dlq = queues
    for i in range(13):
        SqsNotificationQueue(sqs, dlq).send(_notification(i))
    report = redrive_messages(sqs, source_queue_url=dlq, target_queue_url=queue, wait_time_seconds=0)
    assert report == RedriveReport(moved=13, failed=0)
    assert _count(sqs, dlq) == (0, 0)
    moved = _drain(sqs, queue)
    assert sorted(QueuedNotification.from_json(m["Body"]).notify_id for m in moved) == sorted(
        f"n-{i}" for i in range(13)
    )
    assert all(m["MessageAttributes"]["notify_id"]["StringValue"].startswith("n-") for m in moved)


def test_redrive_stops_after_max_messages(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, dlq = queues
    for i in range(13):
        SqsNotificationQueue(sqs, dlq).send(_notification(i))
    report = redrive_messages(sqs, source_queue_url=dlq, target_queue_url=queue, max_messages=5, wait_time_seconds=0)
    assert report == RedriveReport(moved=5, failed=0)
    assert _count(sqs, queue) == (5, 0)
    assert _count(sqs, dlq) == (8, 0)


def test_redrive_of_an_empty_dlq_moves_nothing(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, dlq = queues
    assert redrive_messages(sqs, source_queue_url=dlq, target_queue_url=queue, wait_time_seconds=0) == RedriveReport(
        0, 0
    )


def test_redrive_keeps_in_the_dlq_every_message_whose_send_failed(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, dlq = queues
    for i in range(4):
        SqsNotificationQueue(sqs, dlq).send(_notification(i))

    def fail_two(parsed: dict[str, Any], **_: Any) -> None:
        # moto sent them all; report two as failed, as SQS does for entries it rejects.
        failed = parsed["Successful"][:2]
        parsed["Successful"] = parsed["Successful"][2:]
        parsed["Failed"] = [{"Id": e["Id"], "SenderFault": False, "Code": "InternalError"} for e in failed]

    sqs.meta.events.register("after-call.sqs.SendMessageBatch", fail_two)
    report = redrive_messages(sqs, source_queue_url=dlq, target_queue_url=queue, wait_time_seconds=0)
    assert report == RedriveReport(moved=2, failed=2)
    assert _count(sqs, dlq) == (0, 2)  # still there, invisible until the redrive's visibility timeout ends


def test_redrive_to_a_missing_queue_deletes_nothing(sqs: SQSClient, queues: tuple[str, str]) -> None:
    _, dlq = queues
    for i in range(3):
        SqsNotificationQueue(sqs, dlq).send(_notification(i))
    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    report = redrive_messages(sqs, source_queue_url=dlq, target_queue_url=missing, wait_time_seconds=0)
    assert report == RedriveReport(moved=0, failed=3)
    assert _count(sqs, dlq) == (0, 3)


def test_redrive_reports_an_unreadable_dlq_as_unavailable(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, dlq = queues
    fail_calls(sqs, "ReceiveMessage", client_error("ReceiveMessage", "RequestThrottled"))
    with pytest.raises(Unavailable):
        redrive_messages(sqs, source_queue_url=dlq, target_queue_url=queue, wait_time_seconds=0)


def test_the_dead_letters_port_redrives_in_bounded_batches_and_counts_what_still_waits(
    sqs: SQSClient, queues: tuple[str, str]
) -> None:
    from chalicelib.adapters.sqs import SqsDeadLetters

    queue, dlq = queues
    for i in range(7):
        SqsNotificationQueue(sqs, dlq).send(_notification(i))
    dead_letters = SqsDeadLetters(sqs, dlq_url=dlq, queue_url=queue)

    assert dead_letters.waiting() == 7
    assert dead_letters.redrive(5) == RedriveReport(moved=5, failed=0)
    assert dead_letters.waiting() == 2
    assert dead_letters.redrive(5) == RedriveReport(moved=2, failed=0)
    assert (dead_letters.waiting(), _count(sqs, queue)) == (0, (7, 0))


def test_the_dead_letters_count_of_a_missing_dlq_is_unavailable(sqs: SQSClient) -> None:
    from chalicelib.adapters.sqs import SqsDeadLetters

    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/missing"
    with pytest.raises(Unavailable):
        SqsDeadLetters(sqs, dlq_url=missing, queue_url=missing).waiting()
