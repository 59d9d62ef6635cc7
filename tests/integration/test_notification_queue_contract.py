"""The NotificationQueue contract, run on the in-memory fake and on the SQS adapter (moto)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from chalicelib.adapters.sqs import SqsNotificationQueue
from chalicelib.services.ports import NotificationQueue, QueuedNotification
from tests.fakes import InMemoryNotificationQueue

MESSAGE = QueuedNotification(
    protocol="mapi",
    notify_id="n-1",
    out_trade_no="o-1",
    fields={"trade_status": "TRADE_SUCCESS", "subject": "咖啡 & 茶", "total_fee": "12.30", "body": ""},
    received_at="2026-11-26T08:00:00Z",
)


@dataclass
class Queue:
    queue: NotificationQueue
    received: Callable[[], list[QueuedNotification]]


@pytest.fixture(params=["in_memory", "sqs"])
def queue(request: pytest.FixtureRequest) -> Queue:
    if request.param == "in_memory":
        fake = InMemoryNotificationQueue()
        return Queue(fake, lambda: list(fake.messages))
    sqs = request.getfixturevalue("sqs")
    url = sqs.create_queue(QueueName="notifications")["QueueUrl"]

    def received() -> list[QueuedNotification]:
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        return [QueuedNotification.from_json(m["Body"]) for m in messages]

    return Queue(SqsNotificationQueue(sqs, url), received)


def test_a_sent_notification_arrives_exactly_as_sent(queue: Queue) -> None:
    queue.queue.send(MESSAGE)
    assert queue.received() == [MESSAGE]


def test_every_send_is_a_separate_message(queue: Queue) -> None:
    queue.queue.send(MESSAGE)
    queue.queue.send(MESSAGE)
    assert queue.received() == [MESSAGE, MESSAGE]
