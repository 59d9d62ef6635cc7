"""What Alipay has told us about a trade, by the path it came: a queued notification, a gateway answer, a refund answer.

Each is honest about its origin; ``OrderUpdater`` turns any of them into one ``PaymentUpdate`` for the state machine,
and a quarantine keeps it under an id that names its path (``query:``, ``reconcile:``, ``refund:``, or the notify_id).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, TypeAlias

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.alipay.notifications import AMOUNT_FIELD, AlipayProtocol
from chalicelib.orders.model import OrderStatus, PaymentUpdate

from .errors import PoisonMessage
from .ports import QueuedNotification, TradeQueryResult


@dataclass(frozen=True, slots=True)
class Payment:
    """A trade as Alipay describes it: its status and its money, travelling as one value."""

    out_trade_no: str
    status: OrderStatus
    total_amount: Decimal
    currency: str | None = None  # the legacy protocol sends it; Open Platform may not
    trade_no: str | None = None
    refund_fee: Decimal | None = None  # Alipay's running refunded total, when it says

    @classmethod
    def from_query(cls, out_trade_no: str, trade: TradeQueryResult) -> Payment | None:
        """What a trade query confirms, or None when it confirms nothing (no trade, unknown status, no amount)."""
        status = trade.trade_status
        if not trade.found or status is None or status not in OrderStatus.__members__ or trade.total_amount is None:
            return None
        return cls(out_trade_no, OrderStatus(status), trade.total_amount, trade.currency, trade.trade_no)

    def update(self, *, notify_id: str | None, occurred_at: str, applied_by: str) -> PaymentUpdate:
        """The state machine's input: these facts, from ``notify_id`` (None: not a notification), seen at a time."""
        return PaymentUpdate(
            out_trade_no=self.out_trade_no,
            trade_status=self.status,
            total_amount=self.total_amount,
            currency=self.currency,
            trade_no=self.trade_no,
            notify_id=notify_id,
            refund_fee=self.refund_fee,
            occurred_at=occurred_at,
            applied_by=applied_by,
        )


class AskedBy(StrEnum):
    """Which path asked Alipay's gateway: the id a quarantine keeps the answer under starts with it."""

    QUERY = "query"  # the active query after an app's result or a web return
    RECONCILE = "reconcile"  # the scheduled reconciler (a query, or a close)


@dataclass(frozen=True, slots=True)
class GatewayAnswer:
    """What Alipay's gateway answered about a trade when asked (a query, or a close), and who asked."""

    payment: Payment
    asked_by: AskedBy
    raw: Mapping[str, Any]
    via: str = "client_result"  # the active query's reason: the app's result, or the browser's return page

    @property
    def applied_by(self) -> str:
        return "reconciliation" if self.asked_by is AskedBy.RECONCILE else self.via

    @property
    def evidence_id(self) -> str:
        """Stable for this trade and status, so a repeat is kept once."""
        return f"{self.asked_by}:{self.payment.out_trade_no}:{self.payment.status}"


@dataclass(frozen=True, slots=True)
class RefundAnswer:
    """Alipay's acceptance of a refund: the trade afterwards (its running total), under the refund's request number."""

    payment: Payment
    out_request_no: str
    raw: Mapping[str, Any]

    @property
    def evidence_id(self) -> str:
        return f"refund:{self.payment.out_trade_no}:{self.out_request_no}"


Evidence: TypeAlias = QueuedNotification | GatewayAnswer | RefundAnswer


CURRENCY_FIELD = {AlipayProtocol.OPENAPI: "trans_currency", AlipayProtocol.MAPI: "currency"}


def payment_update(message: QueuedNotification, occurred_at: str) -> PaymentUpdate:
    """Re-read the facts of a queued notification with the protocol's rules; ``PoisonMessage`` if unreadable."""
    fields: Mapping[str, str] = message.fields
    if message.protocol == AlipayProtocol.ANTOM:
        return _antom_update(message, occurred_at)
    try:
        amount_field = AMOUNT_FIELD[AlipayProtocol(message.protocol)]
        refund_fee = fields.get("refund_fee")
        update = PaymentUpdate(
            out_trade_no=message.out_trade_no,
            trade_status=OrderStatus(fields.get("trade_status", "")),
            total_amount=params.parse_amount(fields.get(amount_field, ""), amount_field),
            # Legacy notifications name the currency in currency, Open Platform's in trans_currency (the currency of
            # total_amount, sent for a foreign-currency order): either is checked against the order's.
            currency=fields.get(CURRENCY_FIELD[AlipayProtocol(message.protocol)]) or None,
            trade_no=fields.get("trade_no") or None,
            notify_id=message.notify_id,
            # refund_fee is sent as 0.00 on payments without refunds.
            refund_fee=params.parse_amount(refund_fee, "refund_fee", minimum=Decimal(0)) if refund_fee else None,
            occurred_at=occurred_at,
            # Open Platform names the refund a refund notification is about (its out_request_no) in out_biz_no.
            out_request_no=(fields.get("out_biz_no") or None) if refund_fee else None,
        )
    except (ValueError, OrderError) as exc:
        raise PoisonMessage(f"unreadable queued notification: {exc}") from exc
    if fields.get("out_trade_no") != message.out_trade_no:
        raise PoisonMessage("queued out_trade_no differs from the notification's")
    return update


def _antom_update(message: QueuedNotification, occurred_at: str) -> PaymentUpdate:
    """An Antom payment notification's facts: its JSON kept flattened (``paymentAmount.value`` in minor units)."""
    from chalicelib.alipay.antom import from_minor
    from chalicelib.alipay.errors import VerificationError

    from .protocols import antom_trade_status

    fields: Mapping[str, str] = message.fields
    currency = fields.get("paymentAmount.currency", "")
    try:
        update = PaymentUpdate(
            out_trade_no=message.out_trade_no,
            trade_status=OrderStatus(
                antom_trade_status(fields.get("notifyType", ""), fields.get("result.resultStatus", ""))
            ),
            total_amount=from_minor(fields.get("paymentAmount.value", ""), currency),
            currency=currency or None,
            trade_no=fields.get("paymentId") or None,
            notify_id=message.notify_id,
            refund_fee=None,  # Antom notifies refunds on their own (notifyRefund: the consumer settles the refund)
            occurred_at=occurred_at,
        )
    except (ValueError, VerificationError) as exc:
        raise PoisonMessage(f"unreadable queued notification: {exc}") from exc
    if fields.get("paymentRequestId") != message.out_trade_no:
        raise PoisonMessage("queued out_trade_no differs from the notification's paymentRequestId")
    return update


def update_of(evidence: Evidence, now: str) -> PaymentUpdate:
    """The state machine's input for ``evidence``: only a notification carries a ``notify_id``."""
    if isinstance(evidence, QueuedNotification):
        return payment_update(evidence, now)
    if isinstance(evidence, GatewayAnswer):
        return evidence.payment.update(notify_id=None, occurred_at=now, applied_by=evidence.applied_by)
    update = evidence.payment.update(notify_id=None, occurred_at=now, applied_by="refund")
    return replace(update, out_request_no=evidence.out_request_no)


def kept_as(evidence: Evidence, protocol: AlipayProtocol, now: str) -> QueuedNotification:
    """What a quarantine record keeps: the notification itself, or Alipay's answer under an id naming its path."""
    if isinstance(evidence, QueuedNotification):
        return evidence
    return QueuedNotification(
        protocol=str(protocol),
        notify_id=evidence.evidence_id,
        out_trade_no=evidence.payment.out_trade_no,
        fields={str(k): str(v) for k, v in evidence.raw.items()},
        received_at=now,
    )
