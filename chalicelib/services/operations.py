"""Operator actions (merchant routes under ``/merchant/``): quarantine, event replay, DLQ redrive, the audit log.

Every action is asked for by a merchant IAM identity with a reason, and is recorded in the audit log (who, when, what,
why, what came of it) and logged. Nothing here is reachable by a buyer or the public: the routes sit behind AWS IAM.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from chalicelib.alipay.errors import VerificationError
from chalicelib.orders.events import events_from_history
from chalicelib.orders.model import (
    PAID_STATUSES,
    Order,
    Quarantine,
    Refund,
    RefundKind,
    RefundStatus,
    return_request_no,
)

from .clock import Clock, iso_utc
from .errors import (
    AlreadyResolved,
    BadRequest,
    NotConfigured,
    NothingToReturn,
    NotReplayable,
    PoisonMessage,
    QuarantineEntryNotFound,
    RefundNotFound,
    ValidationError,
)
from .evidence import AskedBy, Evidence, GatewayAnswer, Payment, update_of
from .notifications import OrderUpdater, Outcome, QueueConsumer
from .ports import (
    AlipayGateway,
    AuditEntry,
    AuditLog,
    DeadLetters,
    EventPublisher,
    NotSupported,
    OrderRepository,
    QuarantineRecord,
    QuarantineStore,
    QueuedNotification,
    RefundRefused,
    Resolution,
)
from .protocols import AlipayFlavour, refund_notice
from .views import find_order

if TYPE_CHECKING:
    from .refunds import RefundService

log = logging.getLogger(__name__)

MAX_REASON = 500
DEFAULT_REDRIVE_BATCH = 100
# A redrive runs inside one API request (API Gateway gives up after 29 s): at most this many messages per call;
# `python -m ops redrive` calls again until the DLQ is empty.
MAX_REDRIVE_BATCH = 500
_ENTRY_ID = re.compile(r"[A-Za-z0-9_-]{1,512}")
_POSITION = re.compile(r"\d{4}-\d{2}-\d{2}T[0-9:.]+Z#.+", re.DOTALL)


@dataclass(frozen=True, slots=True)
class OperatorRequest:
    """Who asks for an operator action and why: each action is recorded with both."""

    by: str  # the caller's IAM identity (chalicelib/routes/callers.py)
    reason: str

    @classmethod
    def from_json(cls, by: str, body: object, allowed: frozenset[str] = frozenset()) -> OperatorRequest:
        """``{"reason": "..."}`` (plus ``allowed`` fields); ``ValidationError`` naming the field otherwise."""
        if not isinstance(body, Mapping):
            raise BadRequest("the body must be a JSON object")
        for name in body:
            if name != "reason" and name not in allowed:
                raise ValidationError(str(name)[:64], "not a field of this request")
        reason = body.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            raise ValidationError("reason", "required: say why (it is recorded with your identity)")
        if len(reason) > MAX_REASON:
            raise ValidationError("reason", f"at most {MAX_REASON} characters")
        return cls(by=by, reason=reason.strip())


def entry_id(notify_id: str) -> str:
    """A quarantined entry's id in paths: its notify_id, base64url without padding (path-safe, any notify_id)."""
    return base64.urlsafe_b64encode(notify_id.encode("utf-8")).decode("ascii").rstrip("=")


def notify_id_of(entry: str) -> str:
    """The notify_id an entry id names; ``QuarantineEntryNotFound`` for anything no entry could have."""
    if not _ENTRY_ID.fullmatch(entry):
        raise QuarantineEntryNotFound(f"no quarantined entry {entry[:64]!r}")
    try:
        return base64.urlsafe_b64decode(entry + "=" * (-len(entry) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise QuarantineEntryNotFound(f"no quarantined entry {entry[:64]!r}") from None


def encode_cursor(position: str | None) -> str | None:
    return base64.urlsafe_b64encode(position.encode("utf-8")).decode("ascii") if position else None


def decode_cursor(cursor: str | None) -> str | None:
    """The listing position a cursor names; ``BadRequest`` for anything this API did not hand out."""
    if not cursor:
        return None
    try:
        position = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8")
    except (binascii.Error, ValueError):
        raise BadRequest("cursor: not a cursor this API handed out") from None
    if not _POSITION.fullmatch(position):
        raise BadRequest("cursor: not a cursor this API handed out")
    return position


@dataclass
class OperatorService:
    """What operators do to fix what the automatic paths could not: each action audited."""

    orders: OrderRepository
    quarantine: QuarantineStore
    audit: AuditLog
    consumer: QueueConsumer
    updater: OrderUpdater
    gateway: AlipayGateway
    publisher: EventPublisher
    flavour: AlipayFlavour
    now: Clock
    dead_letters: DeadLetters | None = None  # None: this stage has no DLQ configured
    refunds: RefundService | None = None  # settling pending refunds (the sweep's step, on an operator's word)

    # --- quarantine ---------------------------------------------------------------------------------------------

    def list_quarantine(
        self, *, resolved: bool, limit: int, cursor: str | None
    ) -> tuple[list[QuarantineRecord], str | None]:
        """One page of open (or resolved) entries, newest first, and the next page's cursor (None: no more)."""
        records, last = self.quarantine.listing(resolved=resolved, limit=limit, after=decode_cursor(cursor))
        return records, encode_cursor(last)

    def entry(self, entry: str) -> QuarantineRecord:
        record = self.quarantine.get(notify_id_of(entry))
        if record is None:
            raise QuarantineEntryNotFound(f"no quarantined entry {entry[:64]!r}")
        return record

    def replay(self, entry: str, request: OperatorRequest) -> dict[str, Any]:
        """Apply the kept evidence again through the verified path; resolve the entry unless it is refused again.

        A kept notification is verified again from the raw body Alipay signed (as the queue's consumer does); a kept
        gateway answer carries no signature to check again, so Alipay is asked afresh and its answer is applied. For
        when an operator fixed the cause (created the missing order, ...). The order's history names ``operator``.
        A refund's own notification (Antom's notifyRefund) settles its pending refund, as the consumer would have.
        """
        record = self.entry(entry)
        if record.resolution is not None:
            raise AlreadyResolved(_resolved_message(record))
        try:
            evidence = self._evidence(record)
        except NotReplayable as exc:
            # Nothing applied; the attempt is on record (replaying a forged message is worth knowing about).
            self._audit("quarantine.replay", request, record.notify_id, {"id": entry, "refused": str(exc)})
            raise
        try:
            outcome, still = self._apply_again(record, evidence)
        except PoisonMessage as exc:  # it verifies, but its fields cannot be read: nothing was applied
            self._audit("quarantine.replay", request, record.notify_id, {"id": entry, "refused": str(exc)})
            raise NotReplayable(str(exc)) from exc
        result: dict[str, Any] = {"id": entry, "notify_id": record.notify_id, "outcome": str(outcome)}
        if outcome is Outcome.QUARANTINED:
            # The cause is not fixed: the entry stays open, and the answer says what stops it now.
            result |= still
            result["resolved"] = False
        else:
            resolution = Resolution("replayed", request.by, iso_utc(self.now()), request.reason, str(outcome))
            if not self.quarantine.resolve(record.notify_id, resolution):
                # Applying twice changes nothing (the order's conditional write): a race only loses this resolution,
                # and the attempt stays on record.
                self._audit("quarantine.replay", request, record.notify_id, result | {"resolved": False})
                raise AlreadyResolved(f"entry {entry} was resolved meanwhile by another operator")
            result |= {"resolved": True, "resolution": resolution_view(resolution)}
        self._audit("quarantine.replay", request, record.notify_id, result)
        return result

    def _apply_again(self, record: QuarantineRecord, evidence: Evidence) -> tuple[Outcome, dict[str, str]]:
        """Apply verified evidence as its own path would, by the operator; the outcome, and what stops it if refused.

        A refund's notification (Antom's notifyRefund) settles its refund as the queue's consumer does; anything else
        goes through the state machine. The entry itself is never quarantined again here: it stays as it is.
        """
        if isinstance(evidence, QueuedNotification):
            settled = self.consumer.settle_refund(evidence, applied_by="operator")
            if settled is not None:
                still = {"still": str(settled.reason), "detail": settled.detail} if settled.reason is not None else {}
                return settled.outcome, still
        outcome = self.updater.apply(evidence, applied_by="operator")
        if outcome is not Outcome.QUARANTINED:
            return outcome, {}
        now = iso_utc(self.now())
        decision = self.updater.decision(self.orders.get(record.out_trade_no), update_of(evidence, now), now)
        if not isinstance(decision, Quarantine):
            return outcome, {}
        return outcome, {"still": str(decision.reason), "detail": decision.detail}

    def dismiss(self, entry: str, request: OperatorRequest) -> dict[str, Any]:
        """Resolve the entry without applying anything (audited); it stays readable with its resolution."""
        record = self.entry(entry)
        if record.resolution is not None:
            raise AlreadyResolved(_resolved_message(record))
        resolution = Resolution("dismissed", request.by, iso_utc(self.now()), request.reason)
        if not self.quarantine.resolve(record.notify_id, resolution):
            raise AlreadyResolved(f"entry {entry} was resolved meanwhile by another operator")
        result = {
            "id": entry,
            "notify_id": record.notify_id,
            "resolved": True,
            "resolution": resolution_view(resolution),
        }
        self._audit("quarantine.dismiss", request, record.notify_id, result)
        return result

    def return_money(self, entry: str, request: OperatorRequest) -> dict[str, Any]:
        """Give back money Alipay captured for an order we have no record of: never automatic (a restored table or a
        second system on the same app id would make that return a real sale lost), always an operator's decision.

        The kept evidence is verified again first (a forged entry returns nothing); the refund's ``out_request_no``
        derives from the trade, so a retry never returns twice. The entry is resolved ``returned`` once Alipay
        confirms the money moved; until then it stays open and the answer says ``REFUND_PENDING``.
        """
        record = self.entry(entry)
        if record.resolution is not None:
            raise AlreadyResolved(_resolved_message(record))
        if not record.holds_money:
            raise NothingToReturn(f"entry {entry} holds no captured money: there is nothing to return")
        if self.orders.get(record.out_trade_no) is not None:
            # With the order back, replay applies the payment, and a late one that matches is returned by the
            # reconciler itself. Money that disagrees with an existing order is not returned from here: the return
            # would not be recorded on the order (docs/operations.md, the quarantine).
            raise NothingToReturn(
                f"order {record.out_trade_no!r} exists: replay the entry once its cause is fixed; money that"
                " disagrees with the order is refunded in Alipay's portal, then the entry dismissed"
            )
        try:
            evidence = self._evidence(record)
        except NotReplayable as exc:
            self._audit("quarantine.return", request, record.notify_id, {"id": entry, "refused": str(exc)})
            raise
        if isinstance(evidence, QueuedNotification) and refund_notice(evidence) is not None:
            # Antom's notifyRefund: money that went back to the buyer, not money held here for an order.
            raise NothingToReturn(
                f"entry {entry} is a refund's notification: no money is held to return; replay it or dismiss it"
            )
        update = update_of(evidence, iso_utc(self.now()))
        if update.trade_status not in PAID_STATUSES:
            raise NothingToReturn(f"Alipay says {update.trade_status} for {record.out_trade_no!r}: no money to return")
        out_request_no = return_request_no(record.out_trade_no, update.trade_no)
        result: dict[str, Any] = {
            "id": entry,
            "notify_id": record.notify_id,
            "out_trade_no": record.out_trade_no,
            "out_request_no": out_request_no,
            "amount": f"{update.total_amount:.2f}",
        }
        try:
            answer = self.gateway.refund(
                record.out_trade_no,
                update.total_amount,
                out_request_no,
                request.reason,
                update.currency,
                trade_no=update.trade_no,  # Antom returns by its paymentId
            )
        except RefundRefused as exc:
            self._audit("quarantine.return", request, record.notify_id, result | {"refused": str(exc)})
            raise
        confirmed = answer.fund_change or answer.refund_fee is None  # legacy: forex_refund's synchronous T
        if not confirmed:
            # fund_change=N: accepted, not yet moved; asking again with the same out_request_no is safe.
            confirmed = self.gateway.query_refund(record.out_trade_no, out_request_no).refunded
        if not confirmed:
            result |= {"status": RefundStatus.PENDING.value, "resolved": False}
            self._audit("quarantine.return", request, record.notify_id, result)
            return result
        resolution = Resolution("returned", request.by, iso_utc(self.now()), request.reason, out_request_no)
        resolved = self.quarantine.resolve(record.notify_id, resolution)
        result |= {"status": RefundStatus.SUCCEEDED.value, "resolved": resolved}
        if resolved:
            result["resolution"] = resolution_view(resolution)
        self._audit("quarantine.return", request, record.notify_id, result)
        return result

    # --- refunds left pending ------------------------------------------------------------------------------------

    def pending_refunds(self, limit: int) -> list[dict[str, Any]]:
        """Refunds and returns Alipay has not confirmed yet, oldest first (the sweep's own index, never a scan)."""
        found: list[dict[str, Any]] = []
        # Every refund pending now, however recent (the sweep itself waits a while before it asks).
        for order in self.orders.with_pending_refunds(iso_utc(self.now() + timedelta(days=1))):
            for refund in sorted(order.refunds.values(), key=lambda r: r.requested_at):
                if refund.status is RefundStatus.PENDING:
                    found.append(pending_view(order, refund))
            if len(found) >= limit:
                break
        return found[:limit]

    def settle_refund(self, out_trade_no: str, out_request_no: str, request: OperatorRequest) -> dict[str, Any]:
        """Settle one pending refund now, as the sweep would: ask Alipay's refund query, record what it confirms, and
        ask for the refund again when Alipay knows none (idempotent by ``out_request_no``)."""
        if self.refunds is None:
            raise NotConfigured("refunds are not configured on this stage")
        order = find_order(self.orders, out_trade_no)
        refund = order.refunds.get(out_request_no)
        if refund is None:
            raise RefundNotFound(f"order {out_trade_no} has no refund {out_request_no!r}")
        status = refund.status
        if status is RefundStatus.PENDING:
            try:
                status = self.refunds.settle(order, refund, resend=True)
            except NotSupported as exc:
                refused = {"out_request_no": out_request_no, "refused": str(exc)}
                self._audit("refund.settle", request, out_trade_no, refused)
                raise NotSupported(
                    f"{exc}; the legacy protocol has no refund query: check the refund in Alipay's portal, then retry "
                    "it with its out_request_no if it never happened"
                ) from exc
        result = {"out_trade_no": out_trade_no, "out_request_no": out_request_no, "status": status.value}
        self._audit("refund.settle", request, out_trade_no, result)
        return result

    def _evidence(self, record: QuarantineRecord) -> Evidence:
        message = record.message
        if message.body is not None:
            try:
                return self.consumer.verified(message)
            except VerificationError as exc:
                raise NotReplayable(f"the kept notification does not verify ({exc.check}): {exc}") from exc
        # A kept gateway answer (or a v1 queue message) has no signed body: what Alipay says now is the evidence.
        trade = self.gateway.query_trade(record.out_trade_no)
        payment = Payment.from_query(record.out_trade_no, trade)
        if payment is None:
            raise NotReplayable(f"Alipay confirms nothing about trade {record.out_trade_no!r} now; nothing applied")
        return GatewayAnswer(payment, AskedBy.QUERY, trade.raw, via="operator")

    # --- events -------------------------------------------------------------------------------------------------

    def replay_events(self, out_trade_no: str, request: OperatorRequest) -> dict[str, Any]:
        """Publish the order's business events again, with their original ids and times (consumers dedupe)."""
        order = find_order(self.orders, out_trade_no)
        events = events_from_history(order)
        if events:
            self.publisher.publish(events)  # PublishFailed: nothing is recorded as replayed, the operator retries
        result: dict[str, Any] = {"out_trade_no": order.out_trade_no, "event_ids": [e.event_id for e in events]}
        self._audit("events.replay", request, order.out_trade_no, result)
        return result

    # --- the notifications DLQ ----------------------------------------------------------------------------------

    def redrive(self, request: OperatorRequest, max_messages: int = DEFAULT_REDRIVE_BATCH) -> dict[str, Any]:
        """Move up to ``max_messages`` from the DLQ back to the queue; counts, and about how many still wait."""
        if self.dead_letters is None:
            raise NotConfigured("this stage has no notifications DLQ configured (NOTIFICATIONS_DLQ_URL)")
        report = self.dead_letters.redrive(max_messages)
        result = {"moved": report.moved, "failed": report.failed, "remaining": self.dead_letters.waiting()}
        self._audit("redrive", request, "notifications-dlq", result)
        return result

    # --- the audit log ------------------------------------------------------------------------------------------

    def audit_log(self, limit: int, cursor: str | None) -> tuple[list[AuditEntry], str | None]:
        entries, last = self.audit.listing(limit, decode_cursor(cursor))
        return entries, encode_cursor(last)

    def _audit(self, action: str, request: OperatorRequest, target: str, result: Mapping[str, Any]) -> None:
        entry = AuditEntry(
            entry_id=uuid.uuid4().hex,
            at=iso_utc(self.now()),
            by=request.by,
            action=action,
            target=target,
            reason=request.reason,
            result=dict(result),
        )
        # Logged first: if the audit write fails, the log still says who did what (and the caller gets a 5xx).
        log.warning(
            "operator action",
            extra={"action": action, "by": request.by, "target": target, "reason": request.reason, "result": result},
        )
        self.audit.record(entry)


def _resolved_message(record: QuarantineRecord) -> str:
    r = record.resolution
    assert r is not None
    return f"entry {entry_id(record.notify_id)} was {r.action} by {r.by} at {r.at}: {r.reason}"


def pending_view(order: Order, refund: Refund) -> dict[str, Any]:
    """One refund or return still waiting for Alipay's confirmation, as operators list them."""
    view: dict[str, Any] = {
        "out_trade_no": order.out_trade_no,
        "out_request_no": refund.out_request_no,
        "kind": "return" if refund.kind is RefundKind.RETURN else "refund",
        "amount": f"{refund.amount:.2f}",
        "currency": order.currency,
        "requested_at": refund.requested_at,
        "attempts": refund.attempts,
    }
    if refund.requested_by:
        view["requested_by"] = refund.requested_by
    if refund.reason:
        view["reason"] = refund.reason
    return view


def resolution_view(resolution: Resolution) -> dict[str, str]:
    view = {"action": resolution.action, "by": resolution.by, "at": resolution.at, "reason": resolution.reason}
    if resolution.outcome is not None:
        view["outcome"] = resolution.outcome
    return view


def quarantine_view(record: QuarantineRecord) -> dict[str, Any]:
    """One quarantined entry as operators see it: why it was kept, what Alipay said, and how it was resolved."""
    fields = record.message.fields
    view: dict[str, Any] = {
        "id": entry_id(record.notify_id),
        "notify_id": record.notify_id,
        "out_trade_no": record.out_trade_no,
        "reason": record.reason,
        "detail": record.detail,
        "recorded_at": record.recorded_at,
        "state": "resolved" if record.resolution is not None else "open",
        "signed_body_kept": record.message.body is not None,
        "fields": dict(fields),
    }
    if record.resolution is not None:
        view["resolution"] = resolution_view(record.resolution)
    return view


def audit_view(entry: AuditEntry) -> dict[str, Any]:
    return {
        "id": entry.entry_id,
        "at": entry.at,
        "by": entry.by,
        "action": entry.action,
        "target": entry.target,
        "reason": entry.reason,
        "result": dict(entry.result),
    }
