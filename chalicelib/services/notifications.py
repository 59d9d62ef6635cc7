"""Alipay's notifications: the webhook verifies and enqueues (``NotificationIntake``); the consumer applies them.

The webhook answers ``success`` only once a verified notification is durably queued. The consumer moves the
order with one conditional write (``NotificationApplier``); duplicates, late and out-of-order notifications
change nothing, and authentic ones that must not touch an order are quarantined for an operator.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from chalicelib.alipay import params
from chalicelib.alipay.errors import CharsetError, OrderError, VerificationError
from chalicelib.alipay.forms import codec_for
from chalicelib.alipay.notifications import AlipayProtocol, check_addressee, verify_notification
from chalicelib.alipay.signing import AlipayPublicKeys, SignType
from chalicelib.orders.model import (
    REFUNDABLE_STATUSES,
    Apply,
    Duplicate,
    Order,
    OrderStatus,
    PaymentUpdate,
    Quarantine,
    Stale,
    decide,
    plan_transition,
)

from .clock import Clock, iso_utc
from .errors import NotificationRejected, PayloadTooLarge, PoisonMessage, UnsupportedMediaType
from .ports import (
    AlipayGateway,
    Metrics,
    NotificationQueue,
    OrderRepository,
    QuarantineRecord,
    QuarantineStore,
    QueuedNotification,
    Unavailable,
)

log = logging.getLogger(__name__)

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
# The field that carries the amount, per protocol (as in chalicelib.alipay.notifications).
AMOUNT_FIELD = {AlipayProtocol.OPENAPI: "total_amount", AlipayProtocol.MAPI: "total_fee"}


def count_by_reason(metrics: Metrics, name: str, reason: str) -> None:
    """Count ``name`` and ``name.<reason>``: the EMF adapter turns the suffix into a ``reason`` dimension."""
    metrics.count(name)
    metrics.count(f"{name}.{reason}")


# --- the webhook ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accepted:
    """A verified notification, durably queued: the webhook may now answer ``success``."""

    notify_id: str
    out_trade_no: str
    trade_status: str


@dataclass
class NotificationIntake:
    """Verify a notification from its raw bytes, check it is ours, and queue it."""

    protocol: AlipayProtocol
    alipay_keys: AlipayPublicKeys
    sign_type: SignType
    queue: NotificationQueue
    metrics: Metrics
    now: Clock
    max_bytes: int = 65536
    app_id: str | None = None
    seller_id: str | None = None
    partner: str | None = None
    gateway: AlipayGateway | None = None  # the legacy protocol's notify_verify; unused by Open Platform

    def __post_init__(self) -> None:
        if self.protocol is AlipayProtocol.MAPI and (self.gateway is None or not self.partner):
            raise ValueError("the legacy protocol needs the partner id and a gateway for notify_verify")
        if self.protocol is AlipayProtocol.OPENAPI and not self.app_id:
            raise ValueError("Open Platform notifications are checked against the app_id")

    def accept(self, body: bytes, content_type: str | None) -> Accepted:
        """Raise ``UnsupportedMediaType``/``PayloadTooLarge`` (before any crypto), ``NotificationRejected`` or
        ``Unavailable``; return ``Accepted`` once the notification is queued."""
        charset = self._form_charset(content_type)
        if len(body) > self.max_bytes:
            self._reject("too_large")
            raise PayloadTooLarge(f"notification over {self.max_bytes} bytes")
        try:
            notification = verify_notification(
                body,
                protocol=self.protocol,
                keys=self.alipay_keys,
                sign_type=self.sign_type,
                default_charset=charset,
            )
            if self.protocol is AlipayProtocol.OPENAPI:
                check_addressee(notification, app_id=self.app_id, seller_id=self.seller_id)
            else:
                check_addressee(notification, seller_id=self.seller_id or self.partner, partner=self.partner)
        except VerificationError as exc:
            self._reject(exc.check)
            raise NotificationRejected(exc.check, str(exc)) from exc
        # The legacy protocol also asks Alipay whether it sent this notify_id (Unavailable propagates: 503).
        legacy = self.protocol is AlipayProtocol.MAPI
        if legacy and self.gateway is not None and not self.gateway.notify_verify(notification.notify_id):
            self._reject("notify_verify")
            raise NotificationRejected("notify_verify", "Alipay does not confirm this notify_id")
        self.queue.send(
            QueuedNotification(
                protocol=str(self.protocol),
                notify_id=notification.notify_id,
                out_trade_no=notification.out_trade_no,
                fields=dict(notification.fields),
                received_at=iso_utc(self.now()),
            )
        )
        self.metrics.count("NotificationsAccepted")
        return Accepted(notification.notify_id, notification.out_trade_no, notification.trade_status)

    def _form_charset(self, content_type: str | None) -> str | None:
        """Check the media type; return the header's charset when it names one Alipay uses (else None)."""
        media_type, *parameters = (content_type or "").split(";")
        if media_type.strip().lower() != FORM_CONTENT_TYPE:
            self._reject("content_type")
            raise UnsupportedMediaType(f"expected {FORM_CONTENT_TYPE}, got {(content_type or 'none')[:80]!r}")
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "charset":
                try:
                    # Only a fallback: the body's own charset field, when sent, always wins.
                    return codec_for(value.strip().strip('"'))
                except CharsetError:
                    return None
        return None

    def _reject(self, reason: str) -> None:
        count_by_reason(self.metrics, "NotificationsRejected", reason)


# --- the consumer --------------------------------------------------------------------------------------------


class Outcome(StrEnum):
    """What applying one update did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the order already has this status (Alipay repeated itself)
    STALE = "stale"  # the order has moved past this status already (a late notification)
    QUARANTINED = "quarantined"


def payment_update(message: QueuedNotification, occurred_at: str) -> PaymentUpdate:
    """Re-read the facts of a queued notification with the protocol's rules; ``PoisonMessage`` if unreadable."""
    fields: Mapping[str, str] = message.fields
    try:
        protocol = AlipayProtocol(message.protocol)
        amount_field = AMOUNT_FIELD[protocol]
        refund_fee = fields.get("refund_fee")
        update = PaymentUpdate(
            out_trade_no=message.out_trade_no,
            trade_status=OrderStatus(fields.get("trade_status", "")),
            total_amount=params.parse_amount(fields.get(amount_field, ""), amount_field),
            currency=fields.get("currency") or None,
            trade_no=fields.get("trade_no") or None,
            notify_id=message.notify_id,
            # refund_fee is sent as 0.00 on payments without refunds.
            refund_fee=params.parse_amount(refund_fee, "refund_fee", minimum=Decimal(0)) if refund_fee else None,
            occurred_at=occurred_at,
        )
    except (ValueError, OrderError) as exc:
        raise PoisonMessage(f"unreadable queued notification: {exc}") from exc
    if fields.get("out_trade_no") != message.out_trade_no:
        raise PoisonMessage("queued out_trade_no differs from the notification's")
    return update


@dataclass
class NotificationApplier:
    """Apply one verified update to its order: one conditional write on the happy path, no read."""

    orders: OrderRepository
    quarantine: QuarantineStore
    metrics: Metrics
    now: Clock
    max_attempts: int = 3
    refundable: frozenset[OrderStatus] = REFUNDABLE_STATUSES  # mapi: LEGACY_REFUNDABLE_STATUSES

    def apply(self, message: QueuedNotification) -> Outcome:
        """Apply a queued notification. ``Unavailable`` propagates, so the record is retried."""
        now = iso_utc(self.now())
        return self.apply_update(payment_update(message, now), message, now)

    def apply_update(self, update: PaymentUpdate, source: QueuedNotification, now: str | None = None) -> Outcome:
        """Apply ``update`` (from a notification or a confirmed query); ``source`` is what a quarantine keeps."""
        now = now or iso_utc(self.now())
        result = self.orders.apply_plan(plan_transition(update, now))
        if isinstance(result, Order):
            self.metrics.count("NotificationsApplied")
            return Outcome.APPLIED
        # The write's condition failed: the order is unknown, disagrees about money, or is elsewhere in its
        # life. Only now is it read (the failed write returned it) and decided on.
        current = result.current
        for _ in range(self.max_attempts):
            outcome = self.apply_on(current, update, source, now)
            if outcome is not None:
                return outcome
            current = self.orders.get(update.out_trade_no)  # someone else moved it meanwhile: look again
        raise Unavailable(f"order {update.out_trade_no} kept changing; retry later")

    def apply_on(
        self, order: Order | None, update: PaymentUpdate, source: QueuedNotification, now: str
    ) -> Outcome | None:
        """Decide ``update`` against ``order`` as read, and write only over that version; None if it moved since.

        Also for an update computed from the order itself (a legacy refund's running total, which Alipay does not
        report): written over a newer version, it could undo a concurrent change.
        """
        decision = decide(order, update, now, self.refundable)
        if isinstance(decision, Apply):
            assert order is not None  # decide() applies only to an existing order
            if not self.orders.replace(decision.new_order, expected_version=order.version):
                return None
            self.metrics.count("NotificationsApplied")
            return Outcome.APPLIED
        if isinstance(decision, Duplicate | Stale):
            self.metrics.count("NotificationsDuplicate")
            return Outcome.DUPLICATE if isinstance(decision, Duplicate) else Outcome.STALE
        self._quarantine(decision, update, source, now)
        return Outcome.QUARANTINED

    def _quarantine(self, decision: Quarantine, update: PaymentUpdate, source: QueuedNotification, now: str) -> None:
        self.quarantine.put(
            QuarantineRecord(
                notify_id=update.notify_id or source.notify_id,
                out_trade_no=update.out_trade_no,
                reason=str(decision.reason),
                detail=decision.detail,
                message=source,
                recorded_at=now,
            )
        )
        count_by_reason(self.metrics, "NotificationsQuarantined", str(decision.reason))
        log.warning(
            "update quarantined",
            extra={"reason": str(decision.reason), "detail": decision.detail, "trade_status": update.trade_status},
        )
