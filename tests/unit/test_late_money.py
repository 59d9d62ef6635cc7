"""Money at the edges of expiry (issue 15 #1): captured for an order closed here, it is given back automatically;
captured for an order we have no record of, it waits in quarantine for an operator and never expires."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.orders.model import ClosedReason, OrderStatus, RefundKind, RefundStatus, return_request_no
from chalicelib.services.notifications import Outcome
from chalicelib.services.ports import QueuedNotification, TradeQueryResult, Unavailable
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.unit.services_kit import Kit, make_kit

TRADE_NO = "2026112622001400000000000009"


def late_payment(protocol: str, out_trade_no: str = OUT_TRADE_NO, notify_id: str = "n-late") -> QueuedNotification:
    openapi = protocol == "openapi"
    status, amount_field = ("TRADE_SUCCESS", "total_amount") if openapi else ("TRADE_FINISHED", "total_fee")
    fields = {
        "out_trade_no": out_trade_no,
        "trade_status": status,
        amount_field: "88.88",
        "trade_no": TRADE_NO,
        "notify_id": notify_id,
    }
    return QueuedNotification(protocol, notify_id, out_trade_no, fields, "now")


def closed_unpaid(protocol: str) -> Kit:
    kit = make_kit(protocol)
    kit.add_order(amount="88.88")
    order = kit.order()
    kit.orders.orders[OUT_TRADE_NO] = replace(
        order, status=OrderStatus.TRADE_CLOSED, closed_reason=ClosedReason.TIMEOUT, version=2
    )
    # Alipay captured anyway: its trade outlived the order (legacy it_b_pay, or a trade created late).
    status = "TRADE_SUCCESS" if protocol == "openapi" else "TRADE_FINISHED"
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, status, TRADE_NO, Decimal("88.88"), "USD")
    kit.gateway.legacy = protocol == "mapi"
    return kit


@pytest.mark.parametrize("protocol", ["openapi", "mapi"])
def test_money_captured_for_an_order_closed_here_is_returned_once_with_one_payment_returned(protocol: str) -> None:
    kit = closed_unpaid(protocol)

    assert kit.services.updater.apply(late_payment(protocol)) is Outcome.RETURNING
    assert kit.services.updater.apply(late_payment(protocol, notify_id="n-late-again")) is Outcome.DUPLICATE
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    kit.services.reconciler.run()

    number = return_request_no(OUT_TRADE_NO, TRADE_NO)
    assert kit.gateway.refunds[OUT_TRADE_NO] == {number: Decimal("88.88")}  # returned at Alipay, once
    order = kit.order()
    assert order.refunds[number].status is RefundStatus.SUCCEEDED
    assert order.refunds[number].kind is RefundKind.RETURN
    assert (order.status, order.closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.TIMEOUT)
    assert order.refund_fee is None
    kit.relay_stream()
    assert kit.event_types() == ["PaymentReturned"]  # no OrderPaid, no OrderRefunded: the sale never happened
    [event] = kit.publisher.events
    detail = event.detail()
    assert detail["event_id"] == f"{OUT_TRADE_NO}:PaymentReturned:{number}"
    assert (detail["amount"], detail["currency"], detail["trade_no"], detail["out_request_no"]) == (
        "88.88",
        "USD",
        TRADE_NO,
        number,
    )
    assert detail["reason"] == "paid after the order closed"
    assert (kit.metrics.counts["LatePaymentsCaptured"], kit.metrics.counts["PaymentsReturned"]) == (1, 1)
    assert kit.quarantine.records == {}


def test_a_legacy_return_whose_reply_is_lost_is_asked_once_automatically_then_left_to_an_operator() -> None:
    kit = closed_unpaid("mapi")
    kit.services.updater.apply(late_payment("mapi"))
    kit.clock.advance(minutes=10)
    kit.gateway.lose_refund_replies = 1  # forex_refund returned the money; its reply never arrived
    kit.services.reconciler.run()
    kit.services.reconciler.run()
    kit.clock.advance(hours=2)
    report = kit.services.reconciler.run()

    assert len(kit.gateway.refund_currencies) == 1  # asked once: never a second time by itself
    assert kit.order().pending_refunds[0].attempts == 1
    assert report.refunds_overdue == 1  # RefundsPendingTooLong: an operator settles it


def test_money_for_an_order_we_have_no_record_of_is_quarantined_never_returned_and_never_expires() -> None:
    kit = make_kit()
    assert kit.services.updater.apply(late_payment("openapi", out_trade_no="NOT-OURS")) is Outcome.QUARANTINED
    [record] = kit.quarantine.records.values()
    assert (record.reason, record.holds_money) == ("unknown_order", True)
    kit.clock.advance(hours=1)
    kit.services.reconciler.run()
    assert kit.gateway.refunds == {}


def test_the_merchant_view_shows_the_late_capture_and_its_return() -> None:
    from chalicelib.services.views import merchant_order_view

    kit = closed_unpaid("openapi")
    kit.services.updater.apply(late_payment("openapi"))
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()

    money = merchant_order_view(kit.order())["money"]

    number = return_request_no(OUT_TRADE_NO, TRADE_NO)
    assert [(m["kind"], m["out_request_no"], m["amount"], m["trade_no"]) for m in money] == [
        ("captured_after_close", number, "88.88", TRADE_NO),
        ("returned", number, "88.88", TRADE_NO),
    ]


@pytest.mark.parametrize("protocol", ["openapi", "mapi"])
def test_a_replay_from_history_dates_the_payment_returned_at_the_return_not_at_the_capture(protocol: str) -> None:
    from chalicelib.orders.events import EventType, events_from_history

    kit = closed_unpaid(protocol)
    kit.services.updater.apply(late_payment(protocol))
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    kit.services.reconciler.run()
    kit.relay_stream()
    [published] = kit.publisher.events
    rebuilt = [e for e in events_from_history(kit.order()) if e.detail_type is EventType.PAYMENT_RETURNED]
    assert [(e.event_id, e.occurred_at) for e in rebuilt] == [(published.event_id, published.occurred_at)]


@pytest.mark.parametrize("protocol", ["openapi", "mapi"])
def test_a_late_payment_alipay_gave_back_already_is_returned_once_without_asking_again(protocol: str) -> None:
    """The close on expiry crossed the payment (Antom's cancel of a payment that had just succeeded refunds it in
    full): Alipay refuses the return because its trade is closed. The money is back with the buyer: the return is
    recorded done, with its PaymentReturned, and no alarm that money is stuck."""
    kit = closed_unpaid(protocol)
    kit.services.updater.apply(late_payment(protocol))
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_CLOSED", TRADE_NO, Decimal("88.88"), "USD")
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    kit.services.reconciler.run()

    number = return_request_no(OUT_TRADE_NO, TRADE_NO)
    assert kit.gateway.refunds.get(OUT_TRADE_NO, {}) == {}  # nothing refunded by us: Alipay had done it
    order = kit.order()
    assert order.refunds[number].status is RefundStatus.SUCCEEDED
    assert order.history[-1].applied_by == "reconciliation"
    kit.relay_stream()
    assert kit.event_types() == ["PaymentReturned"]
    assert kit.metrics.counts["PaymentsReturned"] == 1
    assert kit.metrics.counts.get("PaymentReturnsRefused", 0) == 0


def test_a_return_alipay_refuses_while_it_still_holds_the_money_stays_failed_and_is_counted() -> None:
    kit = closed_unpaid("openapi")  # Alipay's trade: TRADE_SUCCESS, the money is still captured
    kit.services.updater.apply(late_payment("openapi"))
    kit.gateway.refuse_refunds_with = "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()

    number = return_request_no(OUT_TRADE_NO, TRADE_NO)
    assert kit.order().refunds[number].status is RefundStatus.FAILED
    assert kit.metrics.counts["PaymentReturnsRefused"] == 1
    assert kit.metrics.counts.get("PaymentsReturned", 0) == 0


def test_a_return_refused_while_alipay_does_not_answer_the_query_is_not_taken_for_given_back() -> None:
    kit = closed_unpaid("openapi")
    kit.services.updater.apply(late_payment("openapi"))
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_CLOSED", TRADE_NO, Decimal("88.88"), "USD")
    kit.gateway.refuse_refunds_with = "ACQ.TRADE_STATUS_ERROR"

    def no_answer(out_trade_no: str) -> TradeQueryResult:
        raise Unavailable("the trade query timed out")

    kit.gateway.query_trade = no_answer  # type: ignore[method-assign]
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()

    number = return_request_no(OUT_TRADE_NO, TRADE_NO)
    assert kit.order().refunds[number].status is not RefundStatus.SUCCEEDED
