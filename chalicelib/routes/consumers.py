"""Handlers of the event sources, as plain functions over raw Lambda events (Lambda and local workers call them).

Per-record failures come back as ``batchItemFailures`` (Powertools' batch processor, imported on first use):
only the failed records are retried, and nothing that succeeded is applied or published twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from chalicelib.bootstrap import services

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
    from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord


class EventsNotPublished(Exception):
    """Some events of this stream record were not published; the record is reported for a retry."""


def handle_sqs_event(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Apply each queued notification to its order; report the records that failed."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from chalicelib.observability import correlation, logger
    from chalicelib.services.ports import QueuedNotification, Unavailable

    consumer = services().consumer
    log = logger()

    def apply_record(record: SQSRecord) -> None:
        try:
            message = QueuedNotification.from_json(record.body)
        except (ValueError, KeyError, TypeError):
            log.exception("unreadable queued message", extra={"message_id": record.message_id})
            raise
        with correlation(notify_id=message.notify_id, out_trade_no=message.out_trade_no):
            try:
                outcome = consumer.apply(message)
            except Unavailable as exc:
                log.warning("notification not applied, will retry: %s", exc)
                raise
            except Exception:
                log.exception("notification not applied")
                raise
            log.info("notification %s", outcome, extra={"outcome": str(outcome)})

    # Reporting every record when all fail retries exactly the same as raising would, and keeps one answer shape.
    processor = BatchProcessor(EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(dict(event), apply_record, processor, context))


def handle_stream_event(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """Publish the events of a batch of order changes; report the records whose events did not all go out."""
    from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

    from chalicelib.observability import logger
    from chalicelib.services.events import StreamRecord

    records = event.get("Records") or []
    # The relay publishes the whole batch at once (PutEvents takes 10 events a call); the processor then
    # reports, per record, whether its events went out.
    result = services().relay.handle([StreamRecord.from_lambda(record) for record in records])
    logger().info("order events relayed", extra={"published": result.published, "failed": len(result.failed)})

    def check_record(record: DynamoDBRecord) -> None:
        sequence_number = record.dynamodb.sequence_number if record.dynamodb else None
        if sequence_number in result.failed:
            raise EventsNotPublished(sequence_number)

    processor = BatchProcessor(EventType.DynamoDBStreams, raise_on_entire_batch_failure=False)
    return dict(process_partial_response(dict(event), check_record, processor, context))


def handle_schedule_event(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """One reconciliation run: waiting orders checked at Alipay, settled through the state machine."""
    from chalicelib.observability import logger

    report = services().reconciler.run()
    # One line per run that found something; an idle run (nothing waiting long enough) is only a debug line.
    log = logger()
    (log.info if report.examined or report.failed else log.debug)("reconciliation run", extra=report.as_json())
    # Certificate mode: the days the first certificate to expire has left, a metric the expiry alarm watches.
    expiry = services().certificates.report()
    if expiry.expiring:
        log.warning("certificates expire soon", extra=expiry.as_json())
    return report.as_json()
