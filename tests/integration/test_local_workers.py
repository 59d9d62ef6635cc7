"""The local stack's event-source mappings against moto: Lambda's rules for batches, failures, retries and the DLQ."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import pytest

from devstack.workers import SqsMapping, StreamMapping, WholeBatchFailed, failed_item_ids
from tests.integration.conftest import queue_arn

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient


class Recorder:
    """A handler that records each event and answers with the failures it is told to report (or raises)."""

    def __init__(self, fail: set[str] | None = None, raise_error: bool = False) -> None:
        self.events: list[dict[str, Any]] = []
        self.fail = fail or set()
        self.raise_error = raise_error

    def sqs(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        if self.raise_error:
            raise RuntimeError("boom")
        failed = [r["messageId"] for r in event["Records"] if r["body"] in self.fail]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}

    def stream(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        self.events.append(event)
        failed = [
            r["dynamodb"]["SequenceNumber"] for r in event["Records"] if r["dynamodb"]["Keys"]["pk"]["S"] in self.fail
        ]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in failed]}


@pytest.fixture
def queues(sqs: SQSClient) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName="work-dlq")["QueueUrl"]
    queue = sqs.create_queue(
        QueueName="work",
        Attributes={
            "VisibilityTimeout": "1",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": queue_arn(sqs, dlq), "maxReceiveCount": "2"}),
        },
    )["QueueUrl"]
    return queue, dlq


def sqs_mapping(sqs: SQSClient, queue: str, handler: Any) -> SqsMapping:
    return SqsMapping(sqs, queue, handler, function_name="consumer", wait_seconds=0)


def bodies(sqs: SQSClient, queue: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return sorted(m["Body"] for m in messages)


def test_lambda_reads_no_batch_item_failures_as_success() -> None:
    assert failed_item_ids(None, ["a"]) == set()
    assert failed_item_ids({"batchItemFailures": []}, ["a"]) == set()
    assert failed_item_ids({"batchItemFailures": [{"itemIdentifier": "a"}]}, ["a", "b"]) == {"a"}


@pytest.mark.parametrize("identifier", [None, "", "not-in-the-batch", 7])
def test_lambda_fails_the_whole_batch_for_an_identifier_it_cannot_match(identifier: object) -> None:
    with pytest.raises(WholeBatchFailed):
        failed_item_ids({"batchItemFailures": [{"itemIdentifier": identifier}]}, ["a", "b"])


def test_sqs_mapping_deletes_every_message_but_the_reported_failures(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, _ = queues
    for body in ("good-1", "bad", "good-2"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)
    handler = Recorder(fail={"bad"})

    assert sqs_mapping(sqs, queue, handler.sqs).poll() == 3

    (event,) = handler.events
    record = event["Records"][0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn(sqs, queue)
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    time.sleep(1.1)  # the failed message comes back after the visibility timeout; the others are gone
    assert bodies(sqs, queue) == ["bad"]


def test_sqs_mapping_leaves_the_whole_batch_when_the_function_raises(sqs: SQSClient, queues: tuple[str, str]) -> None:
    queue, _ = queues
    for body in ("one", "two"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    sqs_mapping(sqs, queue, Recorder(raise_error=True).sqs).poll()

    time.sleep(1.1)
    assert bodies(sqs, queue) == ["one", "two"]


def test_a_message_that_always_fails_reaches_the_dlq_after_max_receive_count(
    sqs: SQSClient, queues: tuple[str, str]
) -> None:
    queue, dlq = queues
    sqs.send_message(QueueUrl=queue, MessageBody="poison")
    handler = Recorder(fail={"poison"})
    mapping = sqs_mapping(sqs, queue, handler.sqs)

    deadline = time.monotonic() + 10
    while not bodies(sqs, dlq) and time.monotonic() < deadline:
        mapping.poll()
        time.sleep(0.2)

    assert len(handler.events) == 2  # maxReceiveCount deliveries, then SQS moved it instead
    assert [e["Records"][0]["attributes"]["ApproximateReceiveCount"] for e in handler.events] == ["1", "2"]


@pytest.fixture
def stream_arn(dynamodb: DynamoDBClient) -> str:
    """A table with a stream; its stream ARN."""
    from chalicelib.adapters.dynamodb import create_table

    return create_table(dynamodb, "stream-table")


def put(dynamodb: DynamoDBClient, *keys: str) -> None:
    for key in keys:
        dynamodb.put_item(TableName="stream-table", Item={"pk": {"S": key}})


def keys_of(event: dict[str, Any]) -> list[str]:
    return [r["dynamodb"]["Keys"]["pk"]["S"] for r in event["Records"]]


def stream_mapping(dynamodbstreams: Any, arn: str, handler: Any, max_retries: int = 2) -> StreamMapping:
    mapping = StreamMapping(
        dynamodbstreams,
        arn,
        handler,
        function_name="relay",
        starting_position="TRIM_HORIZON",
        max_retries=max_retries,
        retry_backoff_seconds=(0.0,),
    )
    mapping.start()
    return mapping


def test_stream_mapping_hands_over_lambda_shaped_records_in_order(
    dynamodb: DynamoDBClient, dynamodbstreams: Any, stream_arn: str
) -> None:
    put(dynamodb, "a", "b", "c")
    handler = Recorder()

    assert stream_mapping(dynamodbstreams, stream_arn, handler.stream).poll() == 3

    (event,) = handler.events
    assert keys_of(event) == ["a", "b", "c"]
    record = event["Records"][0]
    assert (record["eventName"], record["eventSource"]) == ("INSERT", "aws:dynamodb")
    assert record["eventSourceARN"] == stream_arn
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)  # epoch seconds, as Lambda sends
    assert record["dynamodb"]["NewImage"] == {"pk": {"S": "a"}}


def test_stream_mapping_retries_from_the_first_failed_record(
    dynamodb: DynamoDBClient, dynamodbstreams: Any, stream_arn: str
) -> None:
    put(dynamodb, "a", "b", "c")
    handler = Recorder(fail={"b"})
    mapping = stream_mapping(dynamodbstreams, stream_arn, handler.stream)

    mapping.poll()
    handler.fail.clear()  # the cause goes away
    mapping.poll()
    put(dynamodb, "d")
    mapping.poll()

    assert [keys_of(e) for e in handler.events] == [["a", "b", "c"], ["b", "c"], ["d"]]


def test_stream_mapping_skips_a_record_that_keeps_failing_and_goes_on(
    dynamodb: DynamoDBClient, dynamodbstreams: Any, stream_arn: str
) -> None:
    put(dynamodb, "a", "poison", "c")
    handler = Recorder(fail={"poison"})
    mapping = stream_mapping(dynamodbstreams, stream_arn, handler.stream, max_retries=2)

    for _ in range(5):
        mapping.poll()

    assert [keys_of(e) for e in handler.events] == [
        ["a", "poison", "c"],
        ["poison", "c"],  # retry 1
        ["poison", "c"],  # retry 2: still failing, so it is skipped
        ["c"],
    ]
