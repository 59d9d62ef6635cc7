"""The local emulator's fixes to moto: they change how fast moto answers, never what it answers."""

from __future__ import annotations

import json
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from devstack.emulator import (
    make_dynamodb_writes_atomic,
    make_event_delivery_parse_once,
    make_sqs_receive_linear,
)
from tests.integration.conftest import queue_arn

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_sqs.client import SQSClient

RETENTION_SECONDS = 60  # SQS's minimum


def _age_every_message(queue_url: str, seconds: float) -> None:
    """Move every message's send time ``seconds`` into the past, as if they had waited that long."""
    from moto.sqs.models import sqs_backends

    queue: Any = sqs_backends["123456789012"]["us-east-1"].get_queue(queue_url.rsplit("/", 1)[1])
    for message in queue._messages:
        message.sent_timestamp -= int(seconds * 1000)


def _receive_all(sqs: SQSClient, queue_url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0)
    return sorted(m["Body"] for m in messages.get("Messages", []))


@pytest.mark.parametrize("fixed", [False, True], ids=["moto as released", "with the fix"])
def test_receive_still_honours_the_retention_period(
    sqs: SQSClient, monkeypatch: pytest.MonkeyPatch, fixed: bool
) -> None:
    if fixed:
        make_sqs_receive_linear(patch=monkeypatch.setattr)
    url = sqs.create_queue(QueueName="retention", Attributes={"MessageRetentionPeriod": str(RETENTION_SECONDS)})[
        "QueueUrl"
    ]
    for body in ("a", "b", "c"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    assert _receive_all(sqs, url) == ["a", "b", "c"]  # within the retention period

    _age_every_message(url, RETENTION_SECONDS - 5)
    assert _receive_all(sqs, url) == ["a", "b", "c"]

    _age_every_message(url, 10)  # now past it
    assert _receive_all(sqs, url) == []


def test_the_fix_reads_the_retention_period_without_recomputing_the_queue_attributes(
    sqs: SQSClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.sqs.models import Queue

    url = sqs.create_queue(QueueName="backlog")["QueueUrl"]
    for i in range(20):
        sqs.send_message(QueueUrl=url, MessageBody=str(i))
    computed = 0
    attributes = Queue.attributes

    def counting(self: Queue) -> Any:
        nonlocal computed
        computed += 1
        return attributes.fget(self)  # type: ignore[attr-defined]

    monkeypatch.setattr(Queue, "attributes", property(counting))
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)
    as_released = computed  # every message handed out recomputed every attribute, each a walk of the queue

    make_sqs_receive_linear(patch=monkeypatch.setattr)
    computed = 0
    sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)

    assert as_released >= 10
    assert computed == 0


def test_events_reach_an_sqs_target_unchanged_when_input_paths_are_parsed_once(
    events: EventBridgeClient, sqs: SQSClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    import jsonpath_ng.ext

    make_event_delivery_parse_once(patch=monkeypatch.setattr)
    url = sqs.create_queue(QueueName="tap")["QueueUrl"]
    events.create_event_bus(Name="bus")
    events.put_rule(Name="all", EventBusName="bus", EventPattern=json.dumps({"source": ["alipay-global"]}))
    events.put_targets(Rule="all", EventBusName="bus", Targets=[{"Id": "tap", "Arn": queue_arn(sqs, url)}])

    for n in range(3):
        detail = {"event_id": f"o{n}:OrderPaid", "n": n}
        entry = {"Source": "alipay-global", "DetailType": "OrderPaid", "Detail": json.dumps(detail)}
        events.put_events(Entries=[{**entry, "EventBusName": "bus"}])
    received = []
    deadline = time.monotonic() + 5
    while len(received) < 3 and time.monotonic() < deadline:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
            received.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])

    assert sorted(e["detail"]["n"] for e in received) == [0, 1, 2]
    assert {e["detail-type"] for e in received} == {"OrderPaid"}
    assert all(e["source"] == "alipay-global" and e["detail"]["event_id"].endswith(":OrderPaid") for e in received)
    parse: Any = jsonpath_ng.ext.parse  # type: ignore[attr-defined]
    assert parse.cache_info().hits > 0  # the second and third events reused the parsed expressions


@pytest.mark.parametrize("fixed", [False, True], ids=["moto as released", "with the fix"])
def test_two_concurrent_conditional_writes_on_one_item_cannot_both_succeed_with_the_fix(
    dynamodb: DynamoDBClient, monkeypatch: pytest.MonkeyPatch, fixed: bool
) -> None:
    from moto.dynamodb.parsing.validators import UpdateExpressionValidator

    if fixed:
        make_dynamodb_writes_atomic(patch=monkeypatch.setattr)
    dynamodb.create_table(
        TableName="orders",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.put_item(TableName="orders", Item={"pk": {"S": "order#1"}, "status": {"S": "WAIT_BUYER_PAY"}})
    # Widen the window between moto checking the condition and applying the update (it validates the expression
    # in between), so that the race the soak hit once in 8,287 orders happens every time here.
    validate = UpdateExpressionValidator.validate

    def slow_validate(self: UpdateExpressionValidator) -> Any:
        time.sleep(0.2)
        return validate(self)

    monkeypatch.setattr(UpdateExpressionValidator, "validate", slow_validate)
    outcomes: list[str] = []

    def pay() -> None:
        try:
            dynamodb.update_item(
                TableName="orders",
                Key={"pk": {"S": "order#1"}},
                UpdateExpression="SET #s = :paid",
                ConditionExpression="#s = :waiting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":paid": {"S": "TRADE_SUCCESS"}, ":waiting": {"S": "WAIT_BUYER_PAY"}},
            )
            outcomes.append("applied")
        except dynamodb.exceptions.ConditionalCheckFailedException:
            outcomes.append("condition failed")

    threads = [threading.Thread(target=pay) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    expected = ["applied", "condition failed"] if fixed else ["applied", "applied"]  # moto's race, reproduced
    assert sorted(outcomes) == expected
