"""EventBridge adapter: publishes order events in batches, retrying only the entries that failed."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from chalicelib.adapters._aws_errors import aws_errors, is_transient
from chalicelib.orders.events import SOURCE, OrderEvent
from chalicelib.services.ports import PublishFailed

if TYPE_CHECKING:
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

PUT_EVENTS_LIMIT = 10  # entries per PutEvents call (an EventBridge limit)
BACKOFF_SECONDS = 0.1

logger = logging.getLogger(__name__)


class EventBridgePublisher:
    """``EventPublisher`` over an EventBridge bus; ``put_events_calls`` counts the API calls made."""

    def __init__(
        self,
        client: EventBridgeClient,
        bus_name: str,
        max_attempts: int = 3,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._client = client
        self._bus = bus_name
        self._max_attempts = max_attempts
        self._sleep = sleep
        self.put_events_calls = 0

    def publish(self, events: Sequence[OrderEvent]) -> None:
        """Publish ``events``; ``PublishFailed`` with those still failing after ``max_attempts`` tries."""
        failed: list[OrderEvent] = []
        for start in range(0, len(events), PUT_EVENTS_LIMIT):
            failed += self._publish_batch(events[start : start + PUT_EVENTS_LIMIT])
        if failed:
            raise PublishFailed(failed)

    def _entry(self, event: OrderEvent) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": SOURCE,
            "DetailType": event.detail_type.value,
            "Detail": json.dumps(event.detail(), ensure_ascii=False, separators=(",", ":")),
            "EventBusName": self._bus,
        }

    def _publish_batch(self, batch: Sequence[OrderEvent]) -> list[OrderEvent]:
        """Put one batch of at most 10 events; the events that still failed after the last attempt."""
        pending = list(batch)
        for attempt in range(self._max_attempts):
            if attempt:
                self._sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            self.put_events_calls += 1
            try:
                response = self._client.put_events(Entries=[self._entry(event) for event in pending])
            except aws_errors() as exc:
                if not is_transient(exc):
                    # Denied, missing bus, invalid entry: retrying the same call cannot help.
                    logger.warning("PutEvents failed for %d event(s): %s", len(pending), exc)
                    return pending
                logger.info("PutEvents attempt %d failed transiently: %s", attempt + 1, exc)
                continue
            # Entries come back in request order; only those with an ErrorCode failed. Retrying just those
            # avoids duplicating the rest (event_id lets consumers dedupe anyway, but fewer is better).
            pending = [
                event for event, entry in zip(pending, response["Entries"], strict=True) if entry.get("ErrorCode")
            ]
            if not pending:
                return []
            logger.info("PutEvents attempt %d: %d entr(ies) failed", attempt + 1, len(pending))
        return pending
