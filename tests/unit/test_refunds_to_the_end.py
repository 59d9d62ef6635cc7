"""Refunds to the end (issue 15): each refund confirmed by Alipay once, by its out_request_no, whatever the path.

Each test names the numbered case of the issue it shows; each fails on the code before the fix.
"""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.orders.model import ClosedReason, OrderStatus, RefundStatus
from chalicelib.services.evidence import AskedBy, GatewayAnswer, Payment
from chalicelib.services.notifications import Outcome
from chalicelib.services.ports import QueuedNotification, RefundRefused, TradeQueryResult, Unavailable
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.unit.services_kit import Kit, make_kit

TOTAL = Decimal("88.88")


@pytest.fixture
def kit() -> Kit:
    kit = make_kit()
    kit.add_order(amount="88.88")
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_SUCCESS", "2026112622001", TOTAL, "USD")
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.TRADE_SUCCESS, version=2)
    return kit


def refund(kit: Kit, amount: str, out_request_no: str | None = None) -> dict[str, str]:
    body = {"amount": amount} | ({"out_request_no": out_request_no} if out_request_no else {})
    return kit.services.refunds.refund(OUT_TRADE_NO, body)


def refund_notification(refund_fee: str, out_biz_no: str, status: str = "TRADE_SUCCESS") -> QueuedNotification:
    fields = {
        "out_trade_no": OUT_TRADE_NO,
        "trade_status": status,
        "total_amount": "88.88",
        "refund_fee": refund_fee,
        "out_biz_no": out_biz_no,
        "notify_id": f"n-{out_biz_no}",
    }
    return QueuedNotification("openapi", f"n-{out_biz_no}", OUT_TRADE_NO, fields, "now")


def refunded_events(kit: Kit) -> list[tuple[str, str | None, str]]:
    kit.relay_stream()
    return [
        (e.event_id, e.out_request_no, e.detail()["refund_amount"])
        for e in kit.publisher.events
        if str(e.detail_type) == "OrderRefunded"
    ]


def sweep(kit: Kit) -> None:
    kit.clock.advance(minutes=10)  # past the sweep's minimum age
    kit.services.reconciler.run()


# --- 4: a refund retried after a 503 refunds once ---------------------------------------------------------------


def test_4_the_503_after_a_reservation_names_the_server_made_out_request_no_and_its_retry_refunds_once(
    kit: Kit,
) -> None:
    kit.gateway.lose_refund_replies = 1  # Alipay refunds, its reply is lost
    with pytest.raises(Unavailable) as raised:
        refund(kit, "10.00")
    out_request_no = raised.value.out_request_no
    assert out_request_no is not None
    assert kit.order().refunds[out_request_no].status is RefundStatus.PENDING

    retried = refund(kit, "10.00", out_request_no)

    assert (retried["out_request_no"], retried["status"]) == (out_request_no, "REFUND_SUCCESS")
    assert kit.gateway.refunds[OUT_TRADE_NO] == {out_request_no: Decimal("10.00")}  # refunded once at Alipay
    assert kit.order().refund_fee == Decimal("10.00")
    assert refunded_events(kit) == [(f"{OUT_TRADE_NO}:OrderRefunded:{out_request_no}", out_request_no, "10.00")]


def test_4_every_refund_error_names_the_out_request_no_it_was_about(kit: Kit) -> None:
    from chalicelib.services.errors import ValidationError

    with pytest.raises(ValidationError) as raised:
        refund(kit, "99.00", "r-too-much")
    assert raised.value.out_request_no == "r-too-much"


# --- 5: a pending refund is completed by Alipay's notification or by the sweep -----------------------------------


def test_5_the_refund_notification_completes_a_pending_refund(kit: Kit) -> None:
    kit.gateway.lose_refund_replies = 1
    with pytest.raises(Unavailable):
        refund(kit, "10.00", "r-1")

    assert kit.services.updater.apply(refund_notification("10.00", "r-1")) is Outcome.APPLIED

    order = kit.order()
    assert (order.refunds["r-1"].status, order.refund_fee) == (RefundStatus.SUCCEEDED, Decimal("10.00"))
    assert order.refundable == Decimal("78.88")
    assert [n for _, n, _ in refunded_events(kit)] == ["r-1"]


def test_5_the_sweep_settles_a_pending_refund_with_the_refund_query(kit: Kit) -> None:
    kit.gateway.lose_refund_replies = 1
    with pytest.raises(Unavailable):
        refund(kit, "10.00", "r-1")

    sweep(kit)

    assert kit.gateway.refund_queries == ["r-1"]
    assert kit.order().refunds["r-1"].status is RefundStatus.SUCCEEDED
    assert kit.gateway.refunds[OUT_TRADE_NO] == {"r-1": Decimal("10.00")}
    assert [n for _, n, _ in refunded_events(kit)] == ["r-1"]
    assert kit.metrics.counts["RefundsSettled"] == 1


def test_5_the_sweep_asks_again_for_a_refund_that_never_reached_alipay_once(kit: Kit) -> None:
    kit.gateway.fail_with(Unavailable("gateway down"))
    with pytest.raises(Unavailable):
        refund(kit, "10.00", "r-1")
    assert OUT_TRADE_NO not in kit.gateway.refunds

    sweep(kit)
    sweep(kit)

    assert kit.gateway.refunds[OUT_TRADE_NO] == {"r-1": Decimal("10.00")}
    assert kit.order().refunds["r-1"].status is RefundStatus.SUCCEEDED
    assert len(refunded_events(kit)) == 1


def test_5_a_refund_pending_too_long_is_counted_for_the_alarm(kit: Kit) -> None:
    kit.gateway.slow_refunds = True
    refund(kit, "10.00", "r-1")
    kit.clock.advance(hours=2)
    report = kit.services.reconciler.run()
    assert (report.refunds_overdue, kit.order().refunds["r-1"].status) == (1, RefundStatus.PENDING)
    assert kit.metrics.counts["RefundsPendingTooLong"] == 1


# --- 6: fund_change=N is not "refunded" ------------------------------------------------------------------------


def test_6_fund_change_n_answers_pending_until_the_refund_query_confirms_the_money_moved(kit: Kit) -> None:
    kit.gateway.slow_refunds = True

    answer = refund(kit, "10.00", "r-1")

    assert (answer["status"], answer["out_request_no"]) == ("REFUND_PENDING", "r-1")
    assert "refund_fee" not in answer
    assert (kit.order().refund_fee, kit.order().refundable) == (None, Decimal("78.88"))
    assert kit.gateway.refund_queries == ["r-1"]  # asked, and Alipay has not refunded it yet
    assert refunded_events(kit) == []

    kit.gateway.settle_processing()
    sweep(kit)

    assert kit.order().refunds["r-1"].status is RefundStatus.SUCCEEDED
    assert refund(kit, "10.00", "r-1")["status"] == "REFUND_SUCCESS"
    assert [n for _, n, _ in refunded_events(kit)] == ["r-1"]


# --- 7: two refunds confirmed out of order give two OrderRefunded -----------------------------------------------


@pytest.mark.parametrize("path", ["notification", "refund reply"])
def test_7_two_refunds_confirmed_out_of_order_give_one_order_refunded_each(kit: Kit, path: str) -> None:
    kit.gateway.fail_with(Unavailable("gateway down"), times=2)
    for no, amount in (("r-1", "10.00"), ("r-2", "20.00")):
        with pytest.raises(Unavailable):
            refund(kit, amount, no)

    if path == "notification":
        # Alipay's running totals: r-1 made it 10.00, r-2 made it 30.00; r-2's notice arrives first.
        kit.services.updater.apply(refund_notification("30.00", "r-2"))
        kit.services.updater.apply(refund_notification("10.00", "r-1"))
    else:
        refund(kit, "20.00", "r-2")
        refund(kit, "10.00", "r-1")

    order = kit.order()
    assert order.refund_fee == Decimal("30.00")
    assert {r.status for r in order.refunds.values()} == {RefundStatus.SUCCEEDED}
    assert sorted(refunded_events(kit)) == [
        (f"{OUT_TRADE_NO}:OrderRefunded:r-1", "r-1", "10.00"),
        (f"{OUT_TRADE_NO}:OrderRefunded:r-2", "r-2", "20.00"),
    ]


def test_7_the_refund_that_empties_the_order_closes_it_even_when_confirmed_before_an_earlier_one(kit: Kit) -> None:
    kit.gateway.fail_with(Unavailable("gateway down"), times=2)
    for no, amount in (("r-1", "8.88"), ("r-2", "80.00")):
        with pytest.raises(Unavailable):
            refund(kit, amount, no)
    kit.services.updater.apply(refund_notification("88.88", "r-2", status="TRADE_CLOSED"))
    kit.services.updater.apply(refund_notification("8.88", "r-1"))
    order = kit.order()
    assert (order.status, order.closed_reason, order.refund_fee) == (
        OrderStatus.TRADE_CLOSED,
        ClosedReason.REFUNDED,
        TOTAL,
    )
    kit.relay_stream()
    assert sorted(str(e.detail_type) for e in kit.publisher.events) == ["OrderClosed", "OrderRefunded", "OrderRefunded"]


# --- 3: a close learnt from a query never swallows the refund ---------------------------------------------------


def test_3_a_close_learnt_from_a_query_leaves_the_pending_refund_to_be_recorded_with_its_figures(kit: Kit) -> None:
    kit.gateway.lose_refund_replies = 1
    with pytest.raises(Unavailable):
        refund(kit, "88.88", "r-1")
    # The app's result (or a web return) asks the trade: Alipay says TRADE_CLOSED, with no refund figures.
    closed = Payment(OUT_TRADE_NO, OrderStatus.TRADE_CLOSED, TOTAL, "USD", "2026112622001")
    kit.services.updater.apply(GatewayAnswer(closed, AskedBy.QUERY, {}))

    retried = refund(kit, "88.88", "r-1")

    assert (retried["status"], retried["refund_fee"]) == ("REFUND_SUCCESS", "88.88")
    order = kit.order()
    assert (order.status, order.closed_reason, order.refund_fee) == (
        OrderStatus.TRADE_CLOSED,
        ClosedReason.REFUNDED,
        TOTAL,
    )
    kit.relay_stream()
    assert [str(e.detail_type) for e in kit.publisher.events] == ["OrderRefunded", "OrderClosed"]


# --- 9: the reconciler's close applies only from WAIT_BUYER_PAY -------------------------------------------------


def test_9_the_reconcilers_close_never_closes_an_order_paid_meanwhile_as_refunded(kit: Kit) -> None:
    paid = kit.order()
    kit.orders.orders[OUT_TRADE_NO] = replace(paid, status=OrderStatus.WAIT_BUYER_PAY, version=3)
    kit.gateway.trades.pop(OUT_TRADE_NO)  # Alipay has no trade yet: the reconciler closes locally
    kit.clock.advance(hours=2)

    class PaidJustNow:
        """Alipay's close answers "no such trade" while the buyer's payment is applied."""

        def __init__(self, inner: object) -> None:
            self.inner = inner

        def __getattr__(self, name: str) -> object:
            return getattr(self.inner, name)

        def close_trade(self, out_trade_no: str) -> object:
            answer = kit.gateway.close_trade(out_trade_no)
            current = kit.order()
            kit.orders.orders[OUT_TRADE_NO] = replace(
                current, status=OrderStatus.TRADE_SUCCESS, version=current.version + 1
            )
            return answer

    kit.services.reconciler.gateway = PaidJustNow(kit.gateway)  # type: ignore[assignment]
    kit.services.reconciler.run()

    order = kit.order()
    assert (order.status, order.closed_reason) == (OrderStatus.TRADE_SUCCESS, None)


# --- the money history the merchant's order view shows (issue 15, "a money history per order") ------------------


def test_the_merchant_view_shows_every_movement_of_money_keyed_by_alipays_numbers() -> None:
    from chalicelib.services.views import merchant_order_view

    kit = make_kit()
    kit.add_order(amount="88.88")
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_SUCCESS", "2026112622001", TOTAL, "USD")
    paid = {"out_trade_no": OUT_TRADE_NO, "trade_status": "TRADE_SUCCESS", "total_amount": "88.88"}
    paid |= {"trade_no": "2026112622001", "notify_id": "n-paid"}
    kit.services.updater.apply(QueuedNotification("openapi", "n-paid", OUT_TRADE_NO, paid, "now"))
    kit.clock.advance(minutes=1)
    refund(kit, "10.00", "r-1")
    kit.clock.advance(minutes=1)
    kit.gateway.refuse_refunds_with = "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    with pytest.raises(RefundRefused):
        refund(kit, "5.00", "r-2")

    money = merchant_order_view(kit.order())["money"]

    assert [(m["kind"], m.get("out_request_no"), m["amount"], m.get("refund_fee")) for m in money] == [
        ("captured", None, "88.88", None),
        ("refund_requested", "r-1", "10.00", None),
        ("refund_confirmed", "r-1", "10.00", "10.00"),
        ("refund_requested", "r-2", "5.00", None),
        ("refund_refused", "r-2", "5.00", None),
    ]
    assert money[0]["trade_no"] == "2026112622001"
