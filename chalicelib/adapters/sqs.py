"""SQS adapters: the durable hand-off from the webhook to the consumer, and the DLQ redrive."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from chalicelib.adapters._aws_errors import aws_errors, unavailable
from chalicelib.services.ports import QueuedNotification, RedriveReport

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

SQS_BATCH_LIMIT = 10

logger = logging.getLogger(__name__)


class SqsNotificationQueue:
    """``NotificationQueue`` over an SQS queue: the body is the ``QueuedNotification`` JSON."""

    def __init__(self, client: SQSClient, queue_url: str) -> None:
        self._client = client
        self._queue_url = queue_url

    def send(self, message: QueuedNotification) -> None:
        """Enqueue durably; ``Unavailable`` on any failure, so the webhook answers 5xx and Alipay retries."""
        # Attributes let an operator find a message in the DLQ without parsing bodies; SQS rejects empty values.
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            name: {"DataType": "String", "StringValue": value}
            for name, value in (("out_trade_no", message.out_trade_no), ("notify_id", message.notify_id))
            if value
        }
        try:
            self._client.send_message(
                QueueUrl=self._queue_url, MessageBody=message.to_json(), MessageAttributes=attributes
            )
        except aws_errors() as exc:
            # Any failure, even a missing queue: "success" must never be sent for a notification not stored.
            raise unavailable(exc, "SQS SendMessage") from exc


def redrive_messages(
    client: SQSClient,
    *,
    source_queue_url: str,
    target_queue_url: str,
    max_messages: int | None = None,
    wait_time_seconds: int = 1,
    visibility_timeout: int = 60,
) -> RedriveReport:
    """Move messages from ``source_queue_url`` (the DLQ) to ``target_queue_url``, deleting each only once sent."""
    moved = failed = 0
    seen: set[str] = set()
    while max_messages is None or moved + failed < max_messages:
        wanted = SQS_BATCH_LIMIT if max_messages is None else min(SQS_BATCH_LIMIT, max_messages - moved - failed)
        try:
            response = client.receive_message(
                QueueUrl=source_queue_url,
                MaxNumberOfMessages=wanted,
                # Short polls sample a subset of SQS's servers and can come back empty while messages wait;
                # a brief long poll makes "nothing received" mean "DLQ drained".
                WaitTimeSeconds=wait_time_seconds,
                # Long enough for this run to finish: a message whose send failed must not come round again.
                VisibilityTimeout=visibility_timeout,
                MessageAttributeNames=["All"],
            )
        except aws_errors() as exc:
            raise unavailable(exc, "SQS ReceiveMessage") from exc
        # A message seen already failed to send earlier in this run and became visible again: we are done.
        messages = [m for m in response.get("Messages", []) if m["MessageId"] not in seen]
        if not messages:
            break
        seen.update(m["MessageId"] for m in messages)
        sent, send_failed = _send_batch(client, target_queue_url, messages)
        # Deleted only after the send succeeded: a crash in between leaves a copy in both queues, which is safe
        # (applying a notification twice changes nothing), while the other order could lose it.
        _delete_batch(client, source_queue_url, sent)
        moved += len(sent)
        failed += send_failed
        if send_failed == len(messages):
            break  # the target refuses everything (missing, denied): stop instead of cycling through the DLQ
    return RedriveReport(moved=moved, failed=failed)


def _copied_attributes(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    """The message's attributes as SendMessage takes them (received ones carry extra empty list fields)."""
    copied: dict[str, MessageAttributeValueTypeDef] = {}
    received: Mapping[str, Any] = message.get("MessageAttributes", {})
    for name, value in received.items():
        attribute: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            attribute["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            attribute["BinaryValue"] = value["BinaryValue"]
        copied[name] = attribute
    return copied


def _send_batch(client: SQSClient, queue_url: str, messages: Sequence[MessageTypeDef]) -> tuple[list[str], int]:
    """Send ``messages``; the receipt handles of those sent, and how many failed."""
    try:
        response = client.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": _copied_attributes(m)}
                for i, m in enumerate(messages)
            ],
        )
    except aws_errors() as exc:
        logger.warning("redrive: SendMessageBatch to %s failed: %s", queue_url, exc)
        return [], len(messages)
    for entry in response.get("Failed", []):
        logger.warning("redrive: message %s not sent: %s", messages[int(entry["Id"])]["MessageId"], entry["Code"])
    sent = [messages[int(entry["Id"])]["ReceiptHandle"] for entry in response.get("Successful", [])]
    return sent, len(messages) - len(sent)


def _delete_batch(client: SQSClient, queue_url: str, receipt_handles: Sequence[str]) -> None:
    """Delete sent messages from the DLQ; a failed delete only means a harmless duplicate on a later redrive."""
    if not receipt_handles:
        return
    try:
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(receipt_handles)],
        )
    except aws_errors() as exc:
        # The copy is in the queue already; the DLQ one reappears and is redriven (and absorbed) again.
        logger.warning("redrive: DeleteMessageBatch on %s failed: %s", queue_url, exc)


class SqsDeadLetters:
    """``DeadLetters`` over the notifications DLQ and its queue (``redrive_messages`` with a bound per call)."""

    def __init__(self, client: SQSClient, *, dlq_url: str, queue_url: str) -> None:
        self._client = client
        self._dlq_url = dlq_url
        self._queue_url = queue_url

    def redrive(self, max_messages: int) -> RedriveReport:
        """Move up to ``max_messages`` from the DLQ to the queue: receive, send, and only then delete."""
        return redrive_messages(
            self._client, source_queue_url=self._dlq_url, target_queue_url=self._queue_url, max_messages=max_messages
        )

    def waiting(self) -> int:
        """SQS's approximate count of messages waiting in the DLQ (visible ones)."""
        try:
            response = self._client.get_queue_attributes(
                QueueUrl=self._dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        except aws_errors() as exc:
            raise unavailable(exc, "SQS GetQueueAttributes") from exc
        return int(response.get("Attributes", {}).get("ApproximateNumberOfMessages", "0"))
