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
from chalicelib.alipay.signing import AlipayPublicKeys
from chalicelib.orders.model import OrderStatus

from .client_result import ClientResultService
from .errors import OrderNotFound, ReturnRejected
from .ports import OrderRepository
from .protocols import AlipayFlavour
from .views import find_order

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

    flavour: AlipayFlavour
    alipay_keys: AlipayPublicKeys
    orders: OrderRepository
    client_results: ClientResultService

    def handle(self, query: Mapping[str, Sequence[str]]) -> ReturnedOrder:
        """``ReturnRejected`` unless the query is Alipay's, for a known order and its amount."""
        try:
            raw = self.flavour.return_query(query)
            if len(raw) > MAX_RETURN_QUERY_BYTES:
                raise ReturnRejected("too_large", f"the return's query is over {MAX_RETURN_QUERY_BYTES} bytes")
            verified = self.flavour.verify_return(raw, self.alipay_keys)
        except VerificationError as exc:
            raise ReturnRejected(exc.check, f"the return does not verify: {exc}") from exc
        try:
            order = find_order(self.orders, verified.out_trade_no)
        except OrderNotFound as exc:
            # Signed by Alipay for an order we never made: someone else's return, never a success page.
            raise ReturnRejected("unknown_order", str(exc)) from exc
        try:
            self.flavour.check_return(verified, order)
        except VerificationError as exc:
            raise ReturnRejected(exc.check, f"the return does not match the order: {exc}") from exc
        if order.status is OrderStatus.WAIT_BUYER_PAY:
            # The notification may still be on its way: Alipay's own answer now (its failure leaves the order as is).
            order = self.client_results.confirm_with_alipay(order, via="return_page")
        log.info("web return", extra={"out_trade_no": order.out_trade_no, "status": str(order.status)})
        return ReturnedOrder(order.out_trade_no, str(order.status))
