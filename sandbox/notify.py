"""Delivery of the sandbox's asynchronous notifications with Alipay's retry behaviour, time-scaled.

Alipay POSTs a notification to ``notify_url`` and is satisfied only by HTTP 200 with the body exactly ``success``.
Anything else (another body or status, a timeout, a refused connection) makes it try again, about 8 deliveries
over ~25 h: intervals 4m, 10m, 10m, 1h, 2h, 6h, 15h (``docs/protocols.md`` §1.2). Here every interval is
multiplied by the time scale, so the whole schedule fits in seconds.

A notification may carry its own headers, retry intervals and acknowledgement rule: Antom's (``sandbox/antom.py``)
are signed headers, 2m, 10m, 10m, 1h, 2h, 6h, 15h, and a JSON ack.
"""

from __future__ import annotations

import heapq
import http.client
import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from chalicelib.alipay.forms import form_quote

log = logging.getLogger(__name__)

# Seconds between one failed delivery and the next (Alipay's schedule, before scaling): 8 deliveries in all.
RETRY_INTERVALS = (240, 600, 600, 3600, 7200, 21600, 54000)
ACKNOWLEDGEMENT = b"success"
DELIVERY_TIMEOUT_SECONDS = 5.0
_MAX_REPLY_BYTES = 4096
_RECORDED_REPLY_CHARS = 200

# (status, reply body, error): status is None when no HTTP answer came back at all.
PostResult = tuple[int | None, bytes, str | None]
Poster = Callable[[str, bytes, str, float, Mapping[str, str]], PostResult]


def alipay_acknowledged(status: int | None, reply: bytes) -> bool:
    """Alipay's rule: HTTP 200 and the body exactly ``success``."""
    return status == 200 and reply == ACKNOWLEDGEMENT


def form_body(fields: Mapping[str, str], codec: str) -> bytes:
    """``application/x-www-form-urlencoded`` bytes, values encoded in ``codec``; empty values are not sent."""
    return "&".join(f"{k}={form_quote(v, codec)}" for k, v in fields.items() if v != "").encode("ascii")


def post_form(
    url: str, body: bytes, content_type: str, timeout: float, headers: Mapping[str, str] | None = None
) -> PostResult:
    """One HTTP POST (``headers`` added to it); never raises for what a receiver can do wrong (a failed delivery)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(host, parts.port, timeout=timeout)
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=timeout)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Content-Type": content_type, "User-Agent": "alipay-sandbox", **(headers or {})},
        )
        response = connection.getresponse()
        return response.status, response.read(_MAX_REPLY_BYTES), None
    except (OSError, http.client.HTTPException) as exc:
        return None, b"", f"{type(exc).__name__}: {exc}"
    finally:
        connection.close()


def _utc_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class Notification:
    """One notification (one ``notify_id``): the exact bytes every delivery of it sends."""

    out_trade_no: str
    notify_id: str
    trade_status: str
    url: str
    body: bytes
    content_type: str
    headers: Mapping[str, str] = field(default_factory=dict)  # sent with every delivery (Antom: the signature)
    retry_intervals: Sequence[float] = RETRY_INTERVALS  # seconds before each retry, before scaling
    acknowledged_by: Callable[[int | None, bytes], bool] = alipay_acknowledged  # what ends the retries
    deliveries: int = 0
    retries_used: int = 0
    acknowledged: bool = False


@dataclass(frozen=True, slots=True)
class Attempt:
    """One delivery as the receiver answered it."""

    attempt: int  # this notification's delivery number, 1-based (duplicates included)
    notify_id: str
    trade_status: str
    at: str
    status: int | None
    body: str
    error: str | None
    duplicate: bool
    acknowledged: bool

    def as_json(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "notify_id": self.notify_id,
            "trade_status": self.trade_status,
            "at": self.at,
            "status": self.status,
            "body": self.body,
            "error": self.error,
            "duplicate": self.duplicate,
            "acknowledged": self.acknowledged,
        }


@dataclass(order=True)
class _Job:
    due: float
    seq: int
    run: Callable[[], None] = field(compare=False)


class NotificationSender:
    """Schedules deliveries and retries on one timer thread; each delivery round runs on its own daemon thread."""

    def __init__(
        self,
        time_scale: float,
        *,
        post: Poster = post_form,
        timeout: float = DELIVERY_TIMEOUT_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self.time_scale = time_scale
        self._post = post
        self._timeout = timeout
        self._monotonic = monotonic
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._attempts: dict[str, list[Attempt]] = {}
        self._notifications: dict[str, list[Notification]] = {}
        self._timer = threading.Thread(target=self._run, name="sandbox-notify-timer", daemon=True)
        self._timer.start()

    # --- scheduling ------------------------------------------------------------------------------------------

    def call_later(self, delay: float, run: Callable[[], None]) -> None:
        """Run ``run`` on its own daemon thread after ``delay`` real seconds (unless stopped first)."""
        with self._cond:
            if self._closed:
                return
            heapq.heappush(self._jobs, _Job(self._monotonic() + max(delay, 0.0), next(self._seq), run))
            self._cond.notify()

    def send(self, notifications: Sequence[Notification], *, duplicates: int = 0, delay: float = 0.0) -> None:
        """Deliver ``notifications`` in this order (each ``duplicates`` extra times), then retry each until acked."""
        # An order without notify_url gets no notification: the sandbox has no portal-configured URL to use.
        notifications = [n for n in notifications if n.url]
        if not notifications:
            return
        with self._cond:
            for note in notifications:
                self._notifications.setdefault(note.out_trade_no, []).append(note)
        self.call_later(delay, lambda: self._first_round(notifications, duplicates))

    def stop_retries(self) -> int:
        """Drop every scheduled delivery, retry and pending payment; return how many were dropped."""
        with self._cond:
            dropped = len(self._jobs)
            self._jobs.clear()
            self._cond.notify()
        return dropped

    def close(self) -> None:
        """Stop the timer; deliveries in flight finish on their daemon threads or die with the process."""
        with self._cond:
            self._closed = True
            self._jobs.clear()
            self._cond.notify()
        self._timer.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._jobs or self._jobs[0].due > self._monotonic()):
                    wait = self._jobs[0].due - self._monotonic() if self._jobs else None
                    self._cond.wait(timeout=wait)
                if self._closed:
                    return
                job = heapq.heappop(self._jobs)
            # A slow receiver must not hold up anyone else's deliveries.
            threading.Thread(target=job.run, name="sandbox-notify-delivery", daemon=True).start()

    # --- delivery --------------------------------------------------------------------------------------------

    def _first_round(self, notifications: Sequence[Notification], duplicates: int) -> None:
        # One thread delivers them in order, so a test can rely on which status the receiver sees first.
        for note in notifications:
            self._deliver(note, duplicate=False)
            for _ in range(duplicates):
                self._deliver(note, duplicate=True)

    def _retry(self, note: Notification) -> None:
        with self._cond:
            if note.acknowledged:  # a duplicate delivery was acknowledged in the meantime
                return
        self._deliver(note, duplicate=False)

    def _deliver(self, note: Notification, *, duplicate: bool) -> None:
        status, reply, error = self._post(note.url, note.body, note.content_type, self._timeout, note.headers)
        ok = note.acknowledged_by(status, reply)
        with self._cond:
            note.deliveries += 1
            attempt = Attempt(
                attempt=note.deliveries,
                notify_id=note.notify_id,
                trade_status=note.trade_status,
                at=_utc_iso(),
                status=status,
                body=reply[:_RECORDED_REPLY_CHARS].decode("utf-8", "replace"),
                error=error,
                duplicate=duplicate,
                acknowledged=ok,
            )
            self._attempts.setdefault(note.out_trade_no, []).append(attempt)
            note.acknowledged = note.acknowledged or ok
            retry = not duplicate and not note.acknowledged and note.retries_used < len(note.retry_intervals)
            if retry:
                interval = note.retry_intervals[note.retries_used]
                note.retries_used += 1
        log.info(
            "notify %s %s attempt %d -> %s",
            note.out_trade_no,
            note.trade_status,
            attempt.attempt,
            status if error is None else error,
        )
        if retry:
            self.call_later(interval * self.time_scale, lambda: self._retry(note))

    # --- inspection ------------------------------------------------------------------------------------------

    def attempts(self, out_trade_no: str) -> list[Attempt]:
        """Every delivery made for this trade, oldest first."""
        with self._cond:
            return list(self._attempts.get(out_trade_no, ()))

    def notifications(self, out_trade_no: str) -> list[dict[str, Any]]:
        """Each notification sent for this trade: its id, status, deliveries and whether it was acknowledged."""
        with self._cond:
            return [
                {
                    "notify_id": n.notify_id,
                    "trade_status": n.trade_status,
                    "deliveries": n.deliveries,
                    "acknowledged": n.acknowledged,
                }
                for n in self._notifications.get(out_trade_no, ())
            ]
