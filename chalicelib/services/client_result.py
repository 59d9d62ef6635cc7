"""The app's report of the SDK callback: verified against Alipay's keys, never trusted to mark an order paid.

Only Alipay's own word moves an order: its notification, or an active query made here when the app's
report is inconclusive (8000/6002/6004) or says paid while the order still waits. A query's answer is
applied through the same state machine as a notification.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from chalicelib.alipay.errors import MalformedMessage, VerificationError
from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.signing import AlipayPublicKeys, SignType
from chalicelib.orders.model import Order, OrderStatus, PaymentUpdate

from .clock import Clock, iso_utc
from .errors import BadRequest, ValidationError
from .notifications import NotificationApplier
from .orders import find_order
from .ports import AlipayGateway, OrderRepository, PortError, QueuedNotification, TradeQueryResult, Unavailable

log = logging.getLogger(__name__)

PAID = "9000"
# Processing, network error, unknown: the payment may have gone through, so ask Alipay.
UNKNOWN_OUTCOMES = frozenset({"8000", "6002", "6004"})
_STATUSES = frozenset(status.value for status in OrderStatus)


@dataclass(frozen=True, slots=True)
class SdkResult:
    """The SDK callback as the app forwards it: ``{"resultStatus", "result", "memo"}``."""

    result_status: str
    result: str
    memo: str

    @classmethod
    def from_json(cls, data: object) -> SdkResult:
        """Check the shape; ``resultStatus`` may come as a number from some app frameworks."""
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        status = data.get("resultStatus")
        if isinstance(status, int) and not isinstance(status, bool):
            status = str(status)
        if not isinstance(status, str) or not status.isdigit():
            raise ValidationError("resultStatus", "must be the SDK's status code, e.g. \"9000\"")
        texts = {}
        for name in ("result", "memo"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValidationError(name, "must be a string")
            texts[name] = value or ""
        return cls(status, texts["result"], texts["memo"])


@dataclass(frozen=True, slots=True)
class ClientResult:
    """The answer: whether Alipay's signature and the order's fields verified, and the order's status now."""

    verified: bool
    status: str
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"verified": self.verified, "status": self.status}
        if self.reason:
            body["reason"] = self.reason
        return body


@dataclass
class ClientResultService:
    """Verify an SDK result for an order; query Alipay when the result leaves the outcome open."""

    protocol: AlipayProtocol
    alipay_keys: AlipayPublicKeys
    sign_type: SignType
    orders: OrderRepository
    applier: NotificationApplier
    gateway: AlipayGateway
    now: Clock
    app_id: str | None = None
    seller_id: str | None = None
    partner: str | None = None

    def check(self, out_trade_no: str, payload: object) -> ClientResult:
        """Verify the app's report; ``OrderNotFound`` for an unknown order. Never marks an order paid itself."""
        order = find_order(self.orders, out_trade_no)
        sdk = SdkResult.from_json(payload)
        verified, reason = False, None
        if sdk.result_status == PAID:
            try:
                self._verify(sdk.result, order)
                verified = True
            except VerificationError as exc:
                # A forged or foreign "9000": reported, and nothing else happens (no query on its word).
                reason = exc.check
        else:
            reason = f"result_status_{sdk.result_status}"
        waiting = order.status is OrderStatus.WAIT_BUYER_PAY
        if sdk.result_status in UNKNOWN_OUTCOMES or (verified and waiting):
            order = self._reconcile(order)
        return ClientResult(verified, str(order.status), reason)

    def _verify(self, result: str, order: Order) -> None:
        if not result:
            raise MalformedMessage("result is empty")
        if self.protocol is AlipayProtocol.OPENAPI:
            from chalicelib.alipay.openapi import check_app_pay_result, verify_app_pay_result

            verified = verify_app_pay_result(result, self.alipay_keys, sign_type=self.sign_type)
            check_app_pay_result(
                verified,
                app_id=self.app_id or "",
                out_trade_no=order.out_trade_no,
                total_amount=order.total_amount,
                seller_id=self.seller_id,
            )
        else:
            from chalicelib.alipay.mapi import check_securitypay_result, verify_securitypay_result

            legacy = verify_securitypay_result(result, self.alipay_keys, sign_type=self.sign_type)
            check_securitypay_result(
                legacy,
                partner=self.partner or "",
                out_trade_no=order.out_trade_no,
                total_amount=order.total_amount,
                currency=order.currency,
                seller_id=self.seller_id,
            )

    def confirm_with_alipay(self, order: Order) -> Order:
        """The active query (for a caller told of a payment Alipay has not confirmed yet); the order afterwards."""
        return self._reconcile(order)

    def _reconcile(self, order: Order) -> Order:
        """Ask Alipay about the trade and apply what it confirms; the stored order, current, afterwards."""
        try:
            trade = self.gateway.query_trade(order.out_trade_no)
        except (PortError, VerificationError) as exc:
            # The app's report is advisory: answer with what is stored; the notification is still on its way.
            log.warning("trade query failed: %s", exc, extra={"out_trade_no": order.out_trade_no})
            return order
        try:
            return self._apply(order, trade)
        except Unavailable as exc:
            log.warning("confirmed trade status not stored yet: %s", exc, extra={"out_trade_no": order.out_trade_no})
            return order

    def _apply(self, order: Order, trade: TradeQueryResult) -> Order:
        if not trade.found or trade.trade_status not in _STATUSES or trade.total_amount is None:
            return order
        now = iso_utc(self.now())
        status = OrderStatus(trade.trade_status or "")
        update = PaymentUpdate(
            out_trade_no=order.out_trade_no,
            trade_status=status,
            total_amount=trade.total_amount,
            currency=trade.currency,
            trade_no=trade.trade_no,
            notify_id=None,  # a query result has no notification
            refund_fee=None,
            occurred_at=now,
        )
        # What a quarantine keeps: Alipay's answer, under an id that is stable for this trade and status.
        source = QueuedNotification(
            protocol=str(self.protocol),
            notify_id=f"query:{order.out_trade_no}:{status}",
            out_trade_no=order.out_trade_no,
            fields=_text_fields(trade.raw),
            received_at=now,
        )
        self.applier.apply_update(update, source, now)
        return self.orders.get(order.out_trade_no) or order


def _text_fields(raw: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in raw.items()}
