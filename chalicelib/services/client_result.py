"""The app's report of the SDK callback: verified against Alipay's keys, never trusted to mark an order paid.

Only Alipay's own word moves an order: its notification, or an active query made here when the app's
report is inconclusive (8000/6002/6004) or says paid while the order still waits. A query's answer is
applied through the same state machine as a notification. Each active query costs a KMS signature and a call to
Alipay, and anyone can replay a report or a return link: an order is asked about at most once per cooldown.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from chalicelib.alipay.errors import MalformedMessage, VerificationError
from chalicelib.alipay.signing import AlipayPublicKeys
from chalicelib.orders.model import Order, OrderStatus

from .clock import Clock, utc_now
from .errors import BadRequest, OrderNotFound, ValidationError
from .evidence import AskedBy, GatewayAnswer, Payment
from .notifications import OrderUpdater
from .ports import AlipayGateway, IdempotencyStore, OrderRepository, PortError, TradeQueryResult, Unavailable
from .protocols import AlipayFlavour
from .views import find_order

log = logging.getLogger(__name__)

PAID = "9000"
# Processing, network error, unknown: the payment may have gone through, so ask Alipay.
UNKNOWN_OUTCOMES = frozenset({"8000", "6002", "6004"})
# The cooldown's record, beside the idempotency records: the separator is no printable character, so no client's
# Idempotency-Key can ever name it.
_COOLDOWN_KEY = "active-query\x1f{}"


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

    flavour: AlipayFlavour
    alipay_keys: AlipayPublicKeys
    orders: OrderRepository
    updater: OrderUpdater
    gateway: AlipayGateway
    # At most one active query per order per cooldown_seconds (claims in the idempotency store); None: no limit.
    cooldown: IdempotencyStore | None = None
    cooldown_seconds: int = 5
    now: Clock = utc_now

    def check(self, out_trade_no: str, payload: object, buyer: str | None = None) -> ClientResult:
        """Verify the app's report; ``OrderNotFound`` for an unknown order, or one not ``buyer``'s (the same answer).
        Never marks an order paid itself."""
        order = find_order(self.orders, out_trade_no)
        if buyer is not None and order.buyer != buyer:
            raise OrderNotFound(f"no order {out_trade_no!r}")
        sdk = SdkResult.from_json(payload)
        verified, reason = False, None
        if not self.flavour.signs_app_result:
            # Antom: nothing the app reports is signed. Whatever it says, it only prompts an inquiry (rate-limited),
            # and only Antom's own answer moves the order.
            reason = "unsigned_result"
        elif sdk.result_status == PAID:
            try:
                self._verify(sdk.result, order)
                verified = True
            except VerificationError as exc:
                # A forged or foreign "9000": reported, and nothing else happens (no query on its word).
                reason = exc.check
        else:
            reason = f"result_status_{sdk.result_status}"
        waiting = order.status is OrderStatus.WAIT_BUYER_PAY
        prompted = verified or not self.flavour.signs_app_result
        if sdk.result_status in UNKNOWN_OUTCOMES or (prompted and waiting):
            order = self._reconcile(order)
        return ClientResult(verified, str(order.status), reason)

    def _verify(self, result: str, order: Order) -> None:
        if not result:
            raise MalformedMessage("result is empty")
        self.flavour.verify_app_result(result, self.alipay_keys, order)

    def confirm_with_alipay(self, order: Order, via: str = "client_result") -> Order:
        """The active query (for a caller told of a payment Alipay has not confirmed yet); the order afterwards."""
        return self._reconcile(order, via)

    def _reconcile(self, order: Order, via: str = "client_result") -> Order:
        """Ask Alipay about the trade and apply what it confirms; the stored order, current, afterwards."""
        if not self._may_query(order.out_trade_no):
            return order
        try:
            trade = self.gateway.query_trade(order.out_trade_no)
        except (PortError, VerificationError) as exc:
            # The app's report is advisory: answer with what is stored; the notification is still on its way.
            log.warning("trade query failed: %s", exc, extra={"out_trade_no": order.out_trade_no})
            return order
        try:
            return self._apply(order, trade, via)
        except Unavailable as exc:
            log.warning("confirmed trade status not stored yet: %s", exc, extra={"out_trade_no": order.out_trade_no})
            return order

    def _may_query(self, out_trade_no: str) -> bool:
        """Whether this order may be asked about now: no query for it in the last ``cooldown_seconds``."""
        if self.cooldown is None:
            return True
        seconds = self.cooldown_seconds
        try:
            earlier = self.cooldown.claim(
                _COOLDOWN_KEY.format(out_trade_no),
                "active-query",
                now=int(self.now().timestamp()),
                ttl=seconds,
                lock_seconds=seconds,  # a claim older than the cooldown is taken over: the next query may go
            )
        except PortError as exc:
            # Advisory either way: without the store, answer with what is stored rather than query unbounded.
            log.warning("active query skipped, cooldown unknown: %s", exc, extra={"out_trade_no": out_trade_no})
            return False
        if earlier is not None:
            log.info("active query skipped: one in the last %ss", seconds, extra={"out_trade_no": out_trade_no})
            return False
        return True

    def _apply(self, order: Order, trade: TradeQueryResult, via: str) -> Order:
        payment = Payment.from_query(order.out_trade_no, trade)
        if payment is None:
            return order
        self.updater.apply(GatewayAnswer(payment, AskedBy.QUERY, trade.raw, via))
        return self.orders.get(order.out_trade_no) or order
