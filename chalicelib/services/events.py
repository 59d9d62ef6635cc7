"""The outbox relay: order changes on the table's stream become business events on the bus."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from chalicelib.orders.events import OrderEvent, events_for_change
from chalicelib.orders.model import Order

from .ports import EventPublisher, Metrics, PublishFailed, Unavailable

log = logging.getLogger(__name__)

# Reads one stream image (DynamoDB's low-level AttributeValue format); None for an item that is no order.
OrderDecoder = Callable[[Mapping[str, Any]], Order | None]


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """One DynamoDB stream record (NEW_AND_OLD_IMAGES): its sequence number and both images."""

    sequence_number: str
    old_image: Mapping[str, Any] | None
    new_image: Mapping[str, Any] | None

    @classmethod
    def from_lambda(cls, record: Mapping[str, Any]) -> StreamRecord:
        """From a record of Lambda's DynamoDB stream event."""
        change = record["dynamodb"]
        return cls(change["SequenceNumber"], change.get("OldImage"), change.get("NewImage"))


@dataclass(frozen=True, slots=True)
class RelayResult:
    """What a batch did: events published, and the records whose events did not all go out."""

    published: int
    failed: frozenset[str]  # sequence numbers, to report in batchItemFailures


@dataclass
class EventRelay:
    """Publish the events of a batch of order changes; report the records whose events failed."""

    publisher: EventPublisher
    decode_order: OrderDecoder
    # The payment funnel (the stage's dashboard, infra/stacks/dashboard.py): each fact counted under its detail-type
    # (OrderPaid, OrderFinished, ...) once its event went out. Here, where facts are published, not where orders are
    # written: the relay is the one place each fact passes on its way out.
    metrics: Metrics

    def handle(self, records: Sequence[StreamRecord]) -> RelayResult:
        """Collect every record's events, publish them together (the publisher batches), map failures back."""
        result, owned = self._publish(records)
        # Only the events of records that succeeded: a failed record is retried whole (its events published again,
        # with the same ids) and counted then, so a fact is counted once however many tries it took.
        counts: dict[str, int] = {}
        for event, number in owned:
            if number not in result.failed:
                counts[event.detail_type] = counts.get(event.detail_type, 0) + 1
        for name, value in sorted(counts.items()):
            self.metrics.count(name, value)
        return result

    def _publish(self, records: Sequence[StreamRecord]) -> tuple[RelayResult, list[tuple[OrderEvent, str]]]:
        failed: set[str] = set()
        owned: list[tuple[OrderEvent, str]] = []
        for index, record in enumerate(records):
            try:
                events = self._events(record)
            except Exception:
                # An image that cannot be read stops the batch at that record. Lambda retries a stream from the
                # first failed record onwards, so a later record published now would be published again on every
                # retry (the e2e tier saw one OrderPaid six times): the later records wait, in order, and go out
                # once the unreadable one is retried away to the stream's failure destination.
                log.exception("stream record unreadable", extra={"sequence_number": record.sequence_number})
                failed.update(later.sequence_number for later in records[index:])
                break
            owned.extend((event, record.sequence_number) for event in events)
        if not owned:
            return RelayResult(0, frozenset(failed)), owned
        try:
            self.publisher.publish([event for event, _ in owned])
        except PublishFailed as exc:
            # The publisher already retried these. Event ids are stable, so re-publishing the whole record
            # later gives consumers duplicates they can drop, never a lost fact.
            not_published = set(exc.failed)
            failed.update(number for event, number in owned if event in not_published)
            return RelayResult(len(owned) - len(exc.failed), frozenset(failed)), owned
        except Unavailable:
            log.warning("event bus unavailable", exc_info=True)
            failed.update(number for _, number in owned)
            return RelayResult(0, frozenset(failed)), owned
        return RelayResult(len(owned), frozenset(failed)), owned

    def _events(self, record: StreamRecord) -> list[OrderEvent]:
        if record.new_image is None:  # a deleted item (an unsigned order rolled back): no business fact
            return []
        new = self.decode_order(record.new_image)
        if new is None:  # an item that is no order (idempotency or quarantine records share the table)
            return []
        old = self.decode_order(record.old_image) if record.old_image is not None else None
        return events_for_change(old, new, new.notify_id)
