"""The shopper's return from Alipay (web checkout): verified, never trusted to mark an order paid.

Alipay redirects the browser to ``return_url`` with a signed query. A verified return for a known order, with the
order's amount, only says "look now": when the order still waits, Alipay is asked (the same active query as an
inconclusive app result, applied through the same state machine); the shopper is then shown the order's status as
stored. A forged, tampered or malformed return is refused (``ReturnRejected``), and nothing is queried on its word.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from chalicelib.alipay.errors import VerificationError
from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.signing import AlipayPublicKeys, SignType
from chalicelib.orders.model import OrderStatus

from .client_result import ClientResultService
from .errors import OrderNotFound, ReturnRejected
from .orders import find_order
from .ports import OrderRepository

log = logging.getLogger(__name__)

# A return's query is a few hundred bytes; far more is not Alipay.
MAX_RETURN_QUERY_BYTES = 8192


@dataclass(frozen=True, slots=True)
class ReturnedOrder:
    """Which order the shopper came back for, and its status on the server (after any active query)."""

    out_trade_no: str
    status: str


@dataclass
class WebReturnService:
    """Verify a return's query for the configured protocol, then report the order's server-side status."""

    protocol: AlipayProtocol
    alipay_keys: AlipayPublicKeys
    sign_type: SignType
    orders: OrderRepository
    client_results: ClientResultService
    app_id: str | None = None
    seller_id: str | None = None
    partner: str | None = None

    def handle(self, query: Mapping[str, Sequence[str]]) -> ReturnedOrder:
        """``ReturnRejected`` unless the query is Alipay's, for a known order and its amount."""
        from chalicelib.alipay.web import check_return, encode_query, verify_return

        try:
            raw = encode_query(query, self.protocol)
            if len(raw) > MAX_RETURN_QUERY_BYTES:
                raise ReturnRejected("too_large", f"the return's query is over {MAX_RETURN_QUERY_BYTES} bytes")
            verified = verify_return(raw, protocol=self.protocol, keys=self.alipay_keys, sign_type=self.sign_type)
        except VerificationError as exc:
            raise ReturnRejected(exc.check, f"the return does not verify: {exc}") from exc
        try:
            order = find_order(self.orders, verified.out_trade_no)
        except OrderNotFound as exc:
            # Signed by Alipay for an order we never made: someone else's return, never a success page.
            raise ReturnRejected("unknown_order", str(exc)) from exc
        try:
            check_return(
                verified,
                total_amount=order.total_amount,
                currency=order.currency,
                app_id=self.app_id,
                # As for notifications: a legacy merchant's seller is its partner unless one is configured (else a
                # return Alipay signed for another seller, same order number and amount, would show this order).
                seller_id=self.seller_id or (self.partner if self.protocol is AlipayProtocol.MAPI else None),
                partner=self.partner,
            )
        except VerificationError as exc:
            raise ReturnRejected(exc.check, f"the return does not match the order: {exc}") from exc
        if order.status is OrderStatus.WAIT_BUYER_PAY:
            # The notification may still be on its way: Alipay's own answer now (its failure leaves the order as is).
            order = self.client_results.confirm_with_alipay(order)
        log.info("web return", extra={"out_trade_no": order.out_trade_no, "status": str(order.status)})
        return ReturnedOrder(order.out_trade_no, str(order.status))
