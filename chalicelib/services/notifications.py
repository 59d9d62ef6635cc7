"""Alipay's notifications: the webhook verifies and enqueues (``NotificationIntake``); the consumer applies them.

The webhook answers ``success`` only once a verified notification is durably queued. The consumer moves the
order with one conditional write (``OrderUpdater``, which applies Alipay's gateway answers the same way); duplicates,
late and out-of-order notifications change nothing, and authentic ones that must not touch an order are quarantined
for an operator.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from chalicelib.alipay.errors import CharsetError, VerificationError
from chalicelib.alipay.forms import codec_for
from chalicelib.alipay.signing import AlipayPublicKeys
from chalicelib.orders.model import (
    PAID_STATUSES,
    Apply,
    Decision,
    Duplicate,
    Order,
    PaymentUpdate,
    Quarantine,
    QuarantineReason,
    ReturnLatePayment,
    Stale,
    decide,
    plan_transition,
    read_in_currency,
)

from .clock import Clock, iso_utc
from .errors import NotificationRejected, PayloadTooLarge, UnsupportedMediaType
from .evidence import Evidence, kept_as, update_of
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
from .protocols import JSON_MEDIA_TYPE, AlipayFlavour, refund_notice

log = logging.getLogger(__name__)

# The headers Antom's signature is checked with: kept with the queued message, so the consumer verifies it again.
ANTOM_SIGNED_HEADERS = ("client-id", "request-time", "signature")
MAX_SIGNED_HEADER_LENGTH = 2048


def _signed_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The signed headers among ``headers``, by lower-case name (HTTP names are case-insensitive); others dropped."""
    found: dict[str, str] = {}
    for name, value in (headers or {}).items():
        lowered = name.lower()
        if lowered in ANTOM_SIGNED_HEADERS:
            found[lowered] = value[:MAX_SIGNED_HEADER_LENGTH]
    return found


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

    flavour: AlipayFlavour
    alipay_keys: AlipayPublicKeys
    queue: NotificationQueue
    metrics: Metrics
    now: Clock
    max_bytes: int = 65536
    gateway: AlipayGateway | None = None  # only for a protocol that confirms notify_ids with Alipay

    def __post_init__(self) -> None:
        if self.flavour.confirms_notify_id and self.gateway is None:
            raise ValueError(f"{self.flavour.name} notifications are confirmed with Alipay: a gateway is needed")

    def accept(self, body: bytes, content_type: str | None, headers: Mapping[str, str] | None = None) -> Accepted:
        """Raise ``UnsupportedMediaType``/``PayloadTooLarge`` (before any crypto), ``NotificationRejected`` or
        ``Unavailable``; return ``Accepted`` once the notification is queued.

        ``headers``: the request's (Antom signs in them); only the signed ones are kept with the queued message.
        """
        charset = self._charset(content_type)
        if len(body) > self.max_bytes:
            self._reject("too_large")
            raise PayloadTooLarge(f"notification over {self.max_bytes} bytes")
        signed_headers = _signed_headers(headers) if self.flavour.media_type == JSON_MEDIA_TYPE else None
        try:
            notification = self.flavour.verify_notification(body, self.alipay_keys, charset, signed_headers)
        except VerificationError as exc:
            self._reject(exc.check)
            raise NotificationRejected(exc.check, str(exc)) from exc
        # The legacy protocol also asks Alipay whether it sent this notify_id (Unavailable propagates: 503).
        confirming = self.gateway if self.flavour.confirms_notify_id else None
        if confirming is not None and not confirming.notify_verify(notification.notify_id):
            self._reject("notify_verify")
            raise NotificationRejected("notify_verify", "Alipay does not confirm this notify_id")
        # The message carries no fields: the consumer reads only those Alipay's signature over the kept body vouches
        # for (``QueueConsumer.verified``), so a copy here would be JSON nobody trusts (~10 us of the webhook's ~40).
        self.queue.send(
            QueuedNotification(
                protocol=str(self.flavour.name),
                notify_id=notification.notify_id,
                out_trade_no=notification.out_trade_no,
                fields={},
                received_at=iso_utc(self.now()),
                body=base64.b64encode(body).decode("ascii"),
                charset=charset,
                headers=signed_headers,
            )
        )
        self.metrics.count("NotificationsAccepted")
        return Accepted(notification.notify_id, notification.out_trade_no, notification.trade_status)

    def _charset(self, content_type: str | None) -> str | None:
        """Check the media type; return the header's charset when it names one Alipay uses (else None)."""
        media_type, *parameters = (content_type or "").split(";")
        expected = self.flavour.media_type
        if media_type.strip().lower() != expected:
            self._reject("content_type")
            raise UnsupportedMediaType(f"expected {expected}, got {(content_type or 'none')[:80]!r}")
        if expected == JSON_MEDIA_TYPE:
            return None  # JSON is UTF-8 (RFC 8259): Antom signs the body's bytes as sent
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


class RefundOutcomes(Protocol):
    """Where a refund's notification is recorded (``RefundService``)."""

    def notified(
        self, out_trade_no: str, out_request_no: str, succeeded: bool, applied_by: str = "notification"
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class RefundSettlement:
    """What a refund's notification did to its refund; ``reason`` and ``detail`` say why it was not applied."""

    outcome: Outcome
    succeeded: bool  # the notification says the money went back to the buyer (SUCCESS), not FAIL
    reason: QuarantineReason | None = None
    detail: str = ""


class QueueMessageRefused(VerificationError):
    """A queued message the consumer cannot verify by itself; ``check`` names why."""

    def __init__(self, check: str, message: str) -> None:
        super().__init__(message)
        self.check = check


@dataclass
class QueueConsumer:
    """The queue's consumer: verifies Alipay's signature over the queued raw body itself, then applies it.

    The queue is a door too: anything in the account that can send to it could otherwise move an order to paid.
    So the message's own fields are never trusted; the notification is verified again from the bytes Alipay sent,
    and what is applied is what that verification yields. A message that does not verify (forged, or a v1 message
    queued before messages carried their body) touches no order: it is quarantined for an operator, and the order,
    still waiting, is settled by reconciliation from Alipay's own answer.
    """

    flavour: AlipayFlavour
    alipay_keys: AlipayPublicKeys
    updater: OrderUpdater
    quarantine: QuarantineStore
    metrics: Metrics
    now: Clock
    refunds: RefundOutcomes | None = None  # Antom: a refund's own notification (notifyRefund) settles that refund

    def apply(self, message: QueuedNotification) -> Outcome:
        try:
            verified = self.verified(message)
        except VerificationError as exc:
            self._refuse(message, exc.check, str(exc))
            return Outcome.QUARANTINED
        settled = self.settle_refund(verified)
        if settled is None:
            return self.updater.apply(verified)
        if settled.outcome is Outcome.QUARANTINED:
            assert settled.reason is not None
            self.quarantine.put(
                QuarantineRecord(
                    notify_id=verified.notify_id,
                    out_trade_no=verified.out_trade_no,
                    reason=str(settled.reason),
                    detail=settled.detail,
                    message=verified,
                    recorded_at=iso_utc(self.now()),
                    holds_money=settled.succeeded,
                )
            )
            count_by_reason(self.metrics, "NotificationsQuarantined", str(settled.reason))
        return settled.outcome

    def settle_refund(self, verified: QueuedNotification, applied_by: str = "notification") -> RefundSettlement | None:
        """Settle the refund a verified refund notification is about (Antom's notifyRefund); None for any other
        notification. Nothing is quarantined here: ``QUARANTINED`` says it matches no refund as recorded, and why.

        The consumer and an operator's replay both come here, so a replay settles the refund exactly as the consumer
        would have: once (``RefundService.notified`` moves only a pending refund), never adding its amount twice.
        """
        notice = refund_notice(verified)
        if notice is None or self.refunds is None:
            return None
        out_request_no, succeeded = notice
        outcome = self.refunds.notified(verified.out_trade_no, out_request_no, succeeded, applied_by)
        if outcome == "applied":
            self.metrics.count("NotificationsApplied")
            return RefundSettlement(Outcome.APPLIED, succeeded)
        if outcome == "duplicate":
            self.metrics.count("NotificationsDuplicate")
            return RefundSettlement(Outcome.DUPLICATE, succeeded)
        if outcome == "unknown":
            detail = (
                f"refund {out_request_no!r} is not one of ours"
                if verified.out_trade_no
                # Without the order's number only the refunds still pending are searched: a settled one is not found.
                else f"refund {out_request_no!r} is pending on no order (the notification names no order)"
            )
            return RefundSettlement(Outcome.QUARANTINED, succeeded, QuarantineReason.UNKNOWN_ORDER, detail)
        detail = f"refund {out_request_no!r} was recorded otherwise than this notification says"
        return RefundSettlement(Outcome.QUARANTINED, succeeded, QuarantineReason.ILLEGAL_TRANSITION, detail)

    def verified(self, message: QueuedNotification) -> QueuedNotification:
        """The message as Alipay's signature over its kept raw body vouches for it; ``VerificationError`` if not."""
        if message.body is None:
            raise QueueMessageRefused("queue_message_unsigned", "the queued message carries no notification body")
        try:
            raw = base64.b64decode(message.body, validate=True)
        except ValueError:
            raise QueueMessageRefused("queue_message_malformed", "the queued body is not base64") from None
        notification = self.flavour.verify_notification(raw, self.alipay_keys, message.charset, message.headers)
        return QueuedNotification(
            protocol=str(self.flavour.name),
            notify_id=notification.notify_id,
            out_trade_no=notification.out_trade_no,
            fields=dict(notification.fields),
            received_at=message.received_at,
            body=message.body,
            charset=message.charset,
            headers=message.headers,
        )

    def _refuse(self, message: QueuedNotification, check: str, detail: str) -> None:
        count_by_reason(self.metrics, "QueueMessagesRefused", check)
        self.quarantine.put(
            QuarantineRecord(
                # Under its own key: a forged message must not take the place of a genuine notify_id's record.
                notify_id=f"refused:{message.notify_id}"[:256],
                out_trade_no=message.out_trade_no,
                reason=f"queue:{check}",
                detail=detail[:500],
                message=message,
                recorded_at=iso_utc(self.now()),
            )
        )


class Outcome(StrEnum):
    """What applying one update did."""

    APPLIED = "applied"
    DUPLICATE = "duplicate"  # the order already has this status (Alipay repeated itself)
    STALE = "stale"  # the order has moved past this status already (a late notification)
    QUARANTINED = "quarantined"
    RETURNING = "returning"  # money captured for an order closed unpaid: its return is recorded, the sweep makes it


@dataclass
class OrderUpdater:
    """Apply what Alipay said about a trade to its order: one conditional write on the happy path, no read.

    The evidence is what arrived, by its own path: a queued notification, a gateway answer (the active query, the
    reconciler's query or close), a refund answer. Each becomes one ``PaymentUpdate`` for the state machine.
    """

    orders: OrderRepository
    quarantine: QuarantineStore
    metrics: Metrics
    now: Clock
    flavour: AlipayFlavour  # which statuses are refundable; the protocol a kept answer is filed under
    max_attempts: int = 3

    def apply(self, evidence: Evidence, *, applied_by: str | None = None) -> Outcome:
        """Apply ``evidence``; ``PoisonMessage`` for an unreadable notification, ``Unavailable`` to retry later.

        ``applied_by`` names who applied it in the order's history when that is not the evidence's own path (an
        operator replaying a quarantined notification).
        """
        now = iso_utc(self.now())
        update = update_of(evidence, now)
        if applied_by is not None:
            update = replace(update, applied_by=applied_by)
        result = self.orders.apply_plan(plan_transition(read_in_currency(update, self._unstated_currency), now))
        if isinstance(result, Order):
            self.metrics.count("NotificationsApplied")
            return Outcome.APPLIED
        # The write's condition failed: the order is unknown, disagrees about money, or is elsewhere in its
        # life. Only now is it read (the failed write returned it) and decided on.
        current = result.current
        for _ in range(self.max_attempts):
            outcome = self._decide_and_write(current, update, evidence, now)
            if outcome is not None:
                return outcome
            current = self.orders.get(update.out_trade_no)  # someone else moved it meanwhile: look again
        raise Unavailable(f"order {update.out_trade_no} kept changing; retry later")

    def apply_over(self, order: Order, evidence: Evidence, now: str | None = None) -> Outcome | None:
        """Decide ``evidence`` against ``order`` as read, and write only over that version; None if it moved since.

        For evidence computed from the order itself (a legacy refund's running total, which Alipay does not report):
        written over a newer version, it could undo a concurrent change.
        """
        now = now or iso_utc(self.now())
        return self._decide_and_write(order, update_of(evidence, now), evidence, now)

    def decision(self, order: Order | None, update: PaymentUpdate, now: str) -> Decision:
        """What ``update`` does to ``order`` on this protocol: money that names no currency read in the merchant's
        ``unstated_currency`` (``REQUIRE_TRANS_CURRENCY``) when it would make the order paid."""
        return decide(order, read_in_currency(update, self._unstated_currency, order), now, self.flavour.refundable)

    @property
    def _unstated_currency(self) -> str | None:
        return self.flavour.merchant.unstated_currency

    def _decide_and_write(
        self, order: Order | None, update: PaymentUpdate, evidence: Evidence, now: str
    ) -> Outcome | None:
        decision = self.decision(order, update, now)
        if isinstance(decision, Apply):
            assert order is not None  # decide() applies only to an existing order
            if not self.orders.replace(decision.new_order, expected_version=order.version):
                return None
            self.metrics.count("NotificationsApplied")
            return Outcome.APPLIED
        if isinstance(decision, ReturnLatePayment):
            assert order is not None
            if not self.orders.replace(decision.new_order, expected_version=order.version):
                return None
            # Counted here (an alarm): money arrived for an order that was closed; the reconciler gives it back.
            self.metrics.count("LatePaymentsCaptured")
            log.warning("payment after the order closed: to be returned", extra={"out_trade_no": order.out_trade_no})
            return Outcome.RETURNING
        if isinstance(decision, Duplicate | Stale):
            self.metrics.count("NotificationsDuplicate")
            return Outcome.DUPLICATE if isinstance(decision, Duplicate) else Outcome.STALE
        self._quarantine(decision, update, kept_as(evidence, self.flavour.name, now), now)
        return Outcome.QUARANTINED

    def _quarantine(self, decision: Quarantine, update: PaymentUpdate, kept: QueuedNotification, now: str) -> None:
        self.quarantine.put(
            QuarantineRecord(
                notify_id=update.notify_id or kept.notify_id,
                out_trade_no=update.out_trade_no,
                reason=str(decision.reason),
                detail=decision.detail,
                message=kept,
                recorded_at=now,
                # A paid status is money Alipay holds (an unknown order's, or a mismatching one): never let it expire.
                holds_money=update.trade_status in PAID_STATUSES,
            )
        )
        count_by_reason(self.metrics, "NotificationsQuarantined", str(decision.reason))
        log.warning(
            "update quarantined",
            extra={"reason": str(decision.reason), "detail": decision.detail, "trade_status": update.trade_status},
        )
