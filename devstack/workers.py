"""Lambda's event-source mappings, emulated: they poll the queue and the stream and call the app's handlers.

They call the handler functions Lambda calls (``app.handle_sqs_event``, ``app.handle_stream_event``) with
Lambda-shaped events, using the batch sizes and batching window the app declares (``app.event_sources``) and
the rest of the deployed mappings' settings (``infra/``), ``ReportBatchItemFailures`` included:

SQS: up to ``batch_size`` messages per invocation, gathered for at most the batching window, by five concurrent
pollers (``LOCAL_SQS_POLLERS``), each invoking its own process: Lambda's five initial concurrent batches. A
normal return deletes every message except those named in ``batchItemFailures``; an exception, or a response
naming a message that is not in the batch, fails the whole batch (Lambda's rules). Failed messages are not touched:
they stay invisible for the queue's visibility timeout, come back with a higher receive count, and SQS itself
(the queue's redrive policy, which moto implements) moves a message to the DLQ after ``maxReceiveCount``.

DynamoDB stream: every shard is read in order, one batch at a time, parents before children; new shards are
found by describing the stream. A normal return checkpoints after the batch; ``batchItemFailures`` (or an
exception: all of them) moves the checkpoint to the first failed record, and the records from there are
retried with backoff. After ``max_retries`` retries of the same record it is skipped and logged: what a
mapping with ``MaximumRetryAttempts``, ``BisectBatchOnFunctionError`` and an on-failure destination ends up
doing (bisecting narrows a persistent failure down to one record before discarding it).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from devstack.lambda_runtime import REGION, LambdaContext, fork_environments, stop_environments

if TYPE_CHECKING:
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger("workers")

Handler = Callable[[dict[str, Any], Any], Any]

SQS_RECEIVE_LIMIT = 10  # messages per ReceiveMessage call
SQS_POLLERS_ENV = "LOCAL_SQS_POLLERS"
DEFAULT_SQS_POLLERS = 5  # Lambda's SQS mapping starts with five concurrent batches
STREAM_POLL_SECONDS = 0.25  # Lambda polls each shard about four times a second
SHARD_DISCOVERY_SECONDS = 10.0
RETRY_BACKOFF_SECONDS = (0.1, 0.2, 0.4, 0.8, 1.0)  # then 1 s between retries
# The deployed stream mapping (infra/stacks/alipay_global.py): it starts at TRIM_HORIZON, whatever the app's
# decorator says (the stream is the outbox: no change may be skipped), and retries a failing batch 10 times,
# bisecting it, before handing it to its on-failure destination.
STREAM_STARTING_POSITION = "TRIM_HORIZON"
STREAM_MAX_RETRY_ATTEMPTS = 10


class WholeBatchFailed(Exception):
    """The invocation failed as a whole: the function raised, or its response is one Lambda rejects."""


def failed_item_ids(response: Any, batch_ids: Sequence[str]) -> set[str]:
    """The identifiers a handler reported in ``batchItemFailures``; ``WholeBatchFailed`` where Lambda fails all."""
    # Lambda's rules: no batchItemFailures (or an empty list, or no response) is success; an identifier that is
    # empty, missing or not in the batch makes the whole batch fail.
    if not isinstance(response, Mapping):
        return set()
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        raise WholeBatchFailed(f"batchItemFailures is not a list: {failures!r:.100}")
    known = set(batch_ids)
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
        if not isinstance(identifier, str) or identifier not in known:
            raise WholeBatchFailed(f"batchItemFailures names {identifier!r}, which is not in the batch")
        failed.add(identifier)
    return failed


def invoke(handler: Handler, event: dict[str, Any], function_name: str, batch_ids: Sequence[str]) -> set[str]:
    """Call ``handler`` as Lambda does; the identifiers of the records that failed (``WholeBatchFailed``: all)."""
    context = LambdaContext(function_name=function_name)
    try:
        response = handler(event, context)
    except Exception as exc:
        log.exception("%s raised: the whole batch failed", function_name)
        raise WholeBatchFailed(str(exc)) from exc
    return failed_item_ids(response, batch_ids)


# --- SQS ---------------------------------------------------------------------------------------------------


def sqs_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    """One SQS message as a record of Lambda's SQS event."""
    attributes: dict[str, Any] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        binary = value.get("BinaryValue")
        attributes[name] = {
            "stringValue": value.get("StringValue"),
            "binaryValue": base64.b64encode(binary).decode("ascii") if binary is not None else None,
            "stringListValues": list(value.get("StringListValues", [])),
            "binaryListValues": [base64.b64encode(v).decode("ascii") for v in value.get("BinaryListValues", [])],
            "dataType": value.get("DataType"),
        }
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": attributes,
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


@dataclass
class SqsMapping:
    """Lambda's SQS event-source mapping for one queue and one function."""

    client: SQSClient
    queue_url: str
    handler: Handler
    function_name: str
    batch_size: int = 10
    batching_window_seconds: float = 0.0
    wait_seconds: int = 1  # long poll; short, so that stopping never waits long

    def __post_init__(self) -> None:
        attributes = self.client.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["All"])["Attributes"]
        self.queue_arn = attributes["QueueArn"]
        self.visibility_timeout = int(attributes.get("VisibilityTimeout", "30"))
        redrive = attributes.get("RedrivePolicy")
        self.max_receive_count = int(json.loads(redrive)["maxReceiveCount"]) if redrive else None

    def describe(self) -> str:
        """One line: what this mapping does."""
        dlq = f"DLQ after {self.max_receive_count} receives" if self.max_receive_count else "no DLQ"
        return (
            f"{self.queue_url} -> {self.function_name} (batch {self.batch_size}, window "
            f"{self.batching_window_seconds:g}s, visibility {self.visibility_timeout}s, {dlq})"
        )

    def poll(self) -> int:
        """Receive one batch and invoke the function with it; the number of messages handled."""
        messages = self._receive()
        if not messages:
            return 0
        by_id = {m["MessageId"]: m for m in messages}
        event = {"Records": [sqs_record(m, self.queue_arn) for m in messages]}
        log.info("sqs: %d message(s) -> %s", len(messages), self.function_name)
        try:
            failed = invoke(self.handler, event, self.function_name, list(by_id))
        except WholeBatchFailed as exc:
            log.warning("sqs: the whole batch failed (%s)", exc)
            failed = set(by_id)
        done = [m for m in messages if m["MessageId"] not in failed]
        self._delete(done)
        for message_id in sorted(failed):
            self._log_failure(by_id[message_id])
        if done:
            log.info("sqs: %d done and deleted, %d failed", len(done), len(failed))
        return len(messages)

    def _receive(self) -> list[MessageTypeDef]:
        messages = self._receive_some(self.wait_seconds, self.batch_size)
        if not messages or self.batching_window_seconds <= 0:
            return messages  # without a batching window Lambda invokes with what one poll brought
        # With a window, Lambda keeps gathering until the batch is full or the window closes.
        deadline = time.monotonic() + self.batching_window_seconds
        while len(messages) < self.batch_size and (remaining := deadline - time.monotonic()) > 0:
            messages += self._receive_some(min(self.wait_seconds, int(remaining)), self.batch_size - len(messages))
        return messages

    def _receive_some(self, wait_seconds: int, wanted: int) -> list[MessageTypeDef]:
        response = self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, wanted),
            WaitTimeSeconds=wait_seconds,
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return list(response.get("Messages", []))

    def _delete(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), SQS_RECEIVE_LIMIT):
            chunk = messages[start : start + SQS_RECEIVE_LIMIT]
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
            for failure in response.get("Failed", []):
                # The message comes back after the visibility timeout and is handled again: handlers are idempotent.
                log.warning("sqs: delete of %s failed: %s", chunk[int(failure["Id"])]["MessageId"], failure["Code"])

    def _log_failure(self, message: MessageTypeDef) -> None:
        count = int(message.get("Attributes", {}).get("ApproximateReceiveCount", "1"))
        if self.max_receive_count and count >= self.max_receive_count:
            log.warning(
                "sqs: message %s failed on receive %d of %d: SQS moves it to the DLQ instead of delivering it again",
                message["MessageId"],
                count,
                self.max_receive_count,
            )
        else:
            log.warning(
                "sqs: message %s failed (receive %d): visible again in %ds",
                message["MessageId"],
                count,
                self.visibility_timeout,
            )

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a failed poll (the emulator going away) is logged and retried."""
        while not stop.is_set():
            try:
                self.poll()
            except Exception:
                log.exception("sqs: poll failed")
                stop.wait(1.0)


# --- DynamoDB stream ---------------------------------------------------------------------------------------


def _wire_value(value: Any) -> Any:
    """boto3 decodes binary attributes to bytes; a Lambda event carries them base64, as on the wire."""
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, Mapping):
        return {k: _wire_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_wire_value(v) for v in value]
    return value


def stream_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """One ``GetRecords`` record as a record of Lambda's DynamoDB stream event."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()  # epoch seconds in Lambda's events
    return {
        "eventID": record.get("eventID"),
        "eventName": record.get("eventName"),
        "eventVersion": record.get("eventVersion"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", REGION),
        "dynamodb": _wire_value(change),
        "eventSourceARN": stream_arn,
    }


def _sequence_number(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


@dataclass
class _Shard:
    shard_id: str
    parent_id: str | None
    iterator: str | None = None
    closed: bool = False  # GetRecords returned no next iterator: nothing more will be written to it
    pending: list[Mapping[str, Any]] = field(default_factory=list)  # read, not yet checkpointed (retries)
    retry_sequence_number: str | None = None
    attempts: int = 0
    not_before: float = 0.0

    @property
    def finished(self) -> bool:
        return self.closed and not self.pending


@dataclass
class StreamMapping:
    """Lambda's DynamoDB-stream event-source mapping for one stream and one function."""

    client: Any  # botocore's dynamodbstreams client (no type stubs installed for it)
    stream_arn: str
    handler: Handler
    function_name: str
    batch_size: int = 100
    starting_position: str = STREAM_STARTING_POSITION
    max_retries: int = STREAM_MAX_RETRY_ATTEMPTS
    retry_backoff_seconds: tuple[float, ...] = RETRY_BACKOFF_SECONDS
    shards: dict[str, _Shard] = field(default_factory=dict)
    _discovered_at: float = 0.0

    def describe(self) -> str:
        """One line: what this mapping does."""
        return (
            f"{self.stream_arn} -> {self.function_name} (batch {self.batch_size}, from {self.starting_position}, "
            f"{self.max_retries} retries then skip)"
        )

    def start(self) -> None:
        """Find the shards and open each at the starting position (Lambda does this when the mapping is created)."""
        self._discover(self.starting_position)

    def _discover(self, position: str) -> None:
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            description = self.client.describe_stream(**kwargs)["StreamDescription"]
            for shard in description.get("Shards", []):
                shard_id = shard["ShardId"]
                if shard_id in self.shards:
                    continue
                state = _Shard(shard_id, shard.get("ParentShardId"))
                state.iterator = self.client.get_shard_iterator(
                    StreamArn=self.stream_arn, ShardId=shard_id, ShardIteratorType=position
                )["ShardIterator"]
                self.shards[shard_id] = state
                log.info("stream: reading shard %s from %s", shard_id, position)
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        self._discovered_at = time.monotonic()

    def poll(self) -> int:
        """Read and hand over one batch from every shard that is ready; the number of records handled."""
        if time.monotonic() - self._discovered_at > SHARD_DISCOVERY_SECONDS:
            # Shards that appear later (splits) are read from their beginning, after their parent.
            self._discover("TRIM_HORIZON")
        handled = 0
        for shard in list(self.shards.values()):
            parent = self.shards.get(shard.parent_id) if shard.parent_id else None
            if shard.finished or (parent is not None and not parent.finished):
                continue  # per-key order: a child shard waits until its parent is drained
            if time.monotonic() < shard.not_before:
                continue
            handled += self._poll_shard(shard)
        return handled

    def _poll_shard(self, shard: _Shard) -> int:
        if shard.pending:
            batch = shard.pending[: self.batch_size]
        else:
            if shard.iterator is None:
                shard.closed = True
                return 0
            response = self.client.get_records(ShardIterator=shard.iterator, Limit=self.batch_size)
            shard.iterator = response.get("NextShardIterator")
            if shard.iterator is None:
                shard.closed = True
            batch = response.get("Records", [])
            if not batch:
                return 0
            shard.pending = list(batch)
        numbers = [_sequence_number(r) for r in batch]
        event = {"Records": [stream_record(r, self.stream_arn) for r in batch]}
        log.info("stream: %d record(s) %s..%s -> %s", len(batch), numbers[0], numbers[-1], self.function_name)
        try:
            failed = invoke(self.handler, event, self.function_name, numbers)
        except WholeBatchFailed as exc:
            log.warning("stream: the whole batch failed (%s)", exc)
            failed = set(numbers)
        if not failed:
            shard.pending = shard.pending[len(batch) :]
            shard.retry_sequence_number, shard.attempts = None, 0
            return len(batch)
        # Lambda's checkpoint: everything before the first failed record is done; retry from it.
        checkpoint = min(numbers.index(n) for n in failed)
        shard.pending = shard.pending[checkpoint:]
        first = numbers[checkpoint]
        shard.attempts = shard.attempts + 1 if shard.retry_sequence_number == first else 1
        shard.retry_sequence_number = first
        if shard.attempts > self.max_retries:
            skipped = shard.pending.pop(0)
            log.error(
                "stream: record %s (%s %s) still failing after %d retries: skipped (on-failure destination)",
                first,
                skipped.get("eventName"),
                _wire_value(skipped["dynamodb"].get("Keys")),
                self.max_retries,
            )
            shard.retry_sequence_number, shard.attempts = None, 0
            return len(batch)
        backoff = self.retry_backoff_seconds
        delay = backoff[min(shard.attempts, len(backoff)) - 1]
        shard.not_before = time.monotonic() + delay
        log.warning(
            "stream: %d of %d record(s) failed; retry %d of %d from %s in %.1fs",
            len(failed),
            len(batch),
            shard.attempts,
            self.max_retries,
            first,
            delay,
        )
        return checkpoint

    def run(self, stop: threading.Event) -> None:
        """Poll until ``stop`` is set; a failed poll (the emulator going away) is logged and retried."""
        while not stop.is_set():
            try:
                if not self.poll():
                    stop.wait(STREAM_POLL_SECONDS)
            except Exception:
                log.exception("stream: poll failed")
                stop.wait(1.0)


# --- scheduled functions -------------------------------------------------------------------------------------

SCHEDULE_SECONDS_ENV = "LOCAL_SCHEDULE_SECONDS"
DEFAULT_SCHEDULE_SECONDS = 2.0  # deployed: every RECONCILE_RATE_MINUTES; locally fast, so lost payments show soon


@dataclass
class ScheduleMapping:
    """EventBridge's schedule rule: invokes the handler every ``interval`` seconds with a scheduled event."""

    handler: Handler
    interval: float
    function_name: str

    def describe(self) -> str:
        return f"{self.function_name} every {self.interval:g} s"

    def tick(self) -> None:
        """One invocation, with the event EventBridge sends for a schedule."""
        event = {
            "version": "0",
            "id": f"local-{time.monotonic_ns()}",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": datetime.now().astimezone().isoformat(timespec="seconds"),
            "region": REGION,
            "resources": [f"arn:aws:events:{REGION}:000000000000:rule/{self.function_name}"],
            "detail": {},
        }
        self.handler(event, LambdaContext(self.function_name))

    def run(self, stop: threading.Event) -> None:
        """Invoke until ``stop`` is set; a failed invocation is logged, and the next one comes on schedule."""
        while not stop.wait(self.interval):
            try:
                self.tick()
            except Exception:
                log.exception("schedule: %s failed", self.function_name)


# --- the worker process -------------------------------------------------------------------------------------


def serve(kind: str) -> None:
    """Run one mapping (``sqs`` or ``stream``) over the app's handlers until SIGTERM or SIGINT."""
    import signal

    import boto3
    from botocore.config import Config
    from chalice.app import DynamoDBEventConfig, SQSEventConfig

    import app as application
    from devstack.faults import consumer_handler

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    pollers: list[int] = []
    is_parent = True
    if kind == "sqs":
        # Lambda's SQS mapping polls with several concurrent pollers, each batch invoking its own execution
        # environment: one process each here, so that a batch stuck in the SDK's backoff holds up only itself.
        count = int(os.environ.get(SQS_POLLERS_ENV) or DEFAULT_SQS_POLLERS)
        pollers = fork_environments(count)
        is_parent = count == 1 or bool(pollers)
    session = boto3.session.Session()  # endpoint, region and credentials from the environment, as in Lambda
    mapping: SqsMapping | StreamMapping | ScheduleMapping
    if kind == "schedule":
        mapping = ScheduleMapping(
            application.handle_schedule_event,
            interval=float(os.environ.get(SCHEDULE_SECONDS_ENV) or DEFAULT_SCHEDULE_SECONDS),
            function_name="alipay-global-local-reconcile_waiting_orders",
        )
    elif kind == "sqs":
        sqs_config = next(s for s in application.app.event_sources if isinstance(s, SQSEventConfig))
        sqs = session.client("sqs")
        queue_url = sqs.get_queue_url(QueueName=sqs_config.queue or "")["QueueUrl"]
        mapping = SqsMapping(
            sqs,
            queue_url,
            # The soak harness's injected mid-batch crash, when a fault plan is given (else the handler itself).
            consumer_handler(application.handle_sqs_event),
            function_name=f"alipay-global-local-{sqs_config.name}",
            batch_size=sqs_config.batch_size,
            batching_window_seconds=float(sqs_config.maximum_batching_window_in_seconds),
        )
    else:
        stream_config = next(s for s in application.app.event_sources if isinstance(s, DynamoDBEventConfig))
        # botocore sends GetRecords & co. to account endpoints (<account>.streams-ddb...) unless told not to; the
        # regional endpoint is right in AWS too, and the only one moto's in-process mock routes.
        client = session.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))
        mapping = StreamMapping(
            client,
            stream_config.stream_arn,
            application.handle_stream_event,
            function_name=f"alipay-global-local-{stream_config.name}",
            batch_size=stream_config.batch_size,
            starting_position=STREAM_STARTING_POSITION,
            max_retries=STREAM_MAX_RETRY_ATTEMPTS,
        )
        mapping.start()
    if is_parent:
        concurrent = f" ({len(pollers) + 1} concurrent pollers)" if kind == "sqs" else ""
        print(f"{kind} mapping polling: {mapping.describe()}{concurrent}", flush=True)
    mapping.run(stop)
    stop_environments(pollers)
    log.info("%s mapping stopped", kind)
