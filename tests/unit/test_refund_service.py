"""Refunds over fakes: reserved, asked of Alipay, applied through the state machine, once per out_request_no."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.orders.model import ClosedReason, Order, OrderStatus, RefundStatus
from chalicelib.services.errors import NotRefundable, RefundRequestConflict, ValidationError
from chalicelib.services.ports import RefundRefused, TradeQueryResult, Unavailable
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.unit.services_kit import Kit, make_kit


@pytest.fixture
def kit() -> Kit:
    kit = make_kit()
    kit.add_order(amount="88.88")
    paid = TradeQueryResult(True, "TRADE_SUCCESS", "2026112622001", Decimal("88.88"), "USD")
    kit.gateway.trades[OUT_TRADE_NO] = paid
    return kit


def pay(kit: Kit, status: OrderStatus = OrderStatus.TRADE_SUCCESS) -> None:
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=status, version=2)


def refund(kit: Kit, amount: str, out_request_no: str | None = None, **extra: str) -> dict[str, str]:
    body = {"amount": amount, **extra}
    if out_request_no:
        body["out_request_no"] = out_request_no
    return kit.services.refunds.refund(OUT_TRADE_NO, body)


def test_a_partial_refund_is_recorded_and_emits_one_order_refunded(kit: Kit) -> None:
    pay(kit)
    answer = refund(kit, "10.00", "r-1", reason="size")
    assert answer == {
        "out_trade_no": OUT_TRADE_NO,
        "out_request_no": "r-1",
        "refund_amount": "10.00",
        "refund_fee": "10.00",
        "status": "REFUND_SUCCESS",
        "reason": "size",
    }
    order = kit.order()
    assert (order.status, order.refund_fee) == (OrderStatus.TRADE_SUCCESS, Decimal("10.00"))
    assert order.refunds["r-1"].status is RefundStatus.SUCCEEDED
    kit.relay_stream()
    assert kit.event_types() == ["OrderRefunded"]


def test_the_same_out_request_no_answers_the_same_and_refunds_once(kit: Kit) -> None:
    pay(kit)
    first = refund(kit, "10.00", "r-1")
    calls = kit.gateway.calls
    assert refund(kit, "10.00", "r-1") == first
    assert kit.gateway.calls == calls  # answered from the order, Alipay not asked again
    kit.relay_stream()
    assert kit.event_types() == ["OrderRefunded"]


def test_the_same_out_request_no_for_another_amount_is_a_conflict(kit: Kit) -> None:
    pay(kit)
    refund(kit, "10.00", "r-1")
    with pytest.raises(RefundRequestConflict):
        refund(kit, "11.00", "r-1")


def test_without_out_request_no_the_server_makes_one(kit: Kit) -> None:
    pay(kit)
    answer = refund(kit, "1.00")
    assert answer["out_request_no"] in kit.order().refunds


def test_partial_then_full_refund_closes_the_order_as_refunded_with_one_event_each(kit: Kit) -> None:
    pay(kit)
    refund(kit, "10.00", "r-1")
    answer = refund(kit, "78.88", "r-2")
    assert answer["refund_fee"] == "88.88"
    order = kit.order()
    assert (order.status, order.closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.REFUNDED)
    kit.relay_stream()
    assert kit.event_types() == ["OrderRefunded", "OrderRefunded", "OrderClosed"]
    assert len({e.event_id for e in kit.publisher.events}) == 3


def test_more_than_what_is_left_is_refused_before_alipay_is_asked(kit: Kit) -> None:
    pay(kit)
    refund(kit, "80.00", "r-1")
    calls = kit.gateway.calls
    with pytest.raises(ValidationError) as raised:
        refund(kit, "8.89", "r-2")
    assert raised.value.field == "amount"
    assert kit.gateway.calls == calls


@pytest.mark.parametrize("status", [OrderStatus.WAIT_BUYER_PAY, OrderStatus.TRADE_FINISHED])
def test_only_a_paid_refundable_order_can_be_refunded(kit: Kit, status: OrderStatus) -> None:
    if status is not OrderStatus.WAIT_BUYER_PAY:
        pay(kit, status)
    with pytest.raises(NotRefundable):
        refund(kit, "1.00", "r-1")


def test_a_refused_refund_is_recorded_as_failed_and_frees_its_amount(kit: Kit) -> None:
    pay(kit)
    kit.gateway.refuse_refunds_with = "ACQ.SELLER_BALANCE_NOT_ENOUGH"
    with pytest.raises(RefundRefused):
        refund(kit, "88.88", "r-1")
    assert kit.order().refunds["r-1"].status is RefundStatus.FAILED
    assert kit.order().refundable == Decimal("88.88")


def test_alipay_unavailable_leaves_the_refund_pending_and_a_retry_completes_it(kit: Kit) -> None:
    pay(kit)
    kit.gateway.fail_with(Unavailable("gateway down"))
    with pytest.raises(Unavailable):
        refund(kit, "5.00", "r-1")
    assert kit.order().refunds["r-1"].status is RefundStatus.PENDING
    assert refund(kit, "5.00", "r-1")["status"] == "REFUND_SUCCESS"
    kit.relay_stream()
    assert kit.event_types() == ["OrderRefunded"]


def test_the_refund_notification_that_follows_changes_nothing(kit: Kit) -> None:
    from chalicelib.services.notifications import Outcome
    from chalicelib.services.ports import QueuedNotification

    pay(kit)
    refund(kit, "10.00", "r-1")
    fields = {
        "out_trade_no": OUT_TRADE_NO,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "88.88",
        "refund_fee": "10.00",
        "notify_id": "n-r",
    }
    notification = QueuedNotification("openapi", "n-r", OUT_TRADE_NO, fields, "now")
    assert kit.services.updater.apply(notification) is Outcome.DUPLICATE


@pytest.mark.parametrize(
    ("body", "field"),
    [({}, "amount"), ({"amount": 1}, "amount"), ({"amount": "0"}, "amount"), ({"amount": "1", "x": "y"}, "x")],
)
def test_an_invalid_body_names_the_field(kit: Kit, body: dict[str, object], field: str) -> None:
    pay(kit)
    with pytest.raises(ValidationError) as raised:
        kit.services.refunds.refund(OUT_TRADE_NO, body)
    assert raised.value.field == field


# --- legacy (mapi): forex_refund reports no running total, and a paid order is TRADE_FINISHED -------------------


@pytest.fixture
def legacy() -> Kit:
    kit = make_kit("mapi")
    kit.add_order(amount="88.88")
    kit.gateway.legacy = True
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(True, "TRADE_FINISHED", "2026112622001", Decimal("88.88"))
    pay(kit, OrderStatus.TRADE_FINISHED)
    return kit


def test_a_legacy_partial_then_full_refund_of_a_finished_order_emits_one_event_each_and_closes_it(
    legacy: Kit,
) -> None:
    partial = refund(legacy, "10.00", "r-1")
    assert (partial["refund_fee"], legacy.order().status) == ("10.00", OrderStatus.TRADE_FINISHED)
    full = refund(legacy, "78.88", "r-2")

    assert full["refund_fee"] == "88.88"
    order = legacy.order()
    assert (order.status, order.closed_reason, order.refund_fee) == (
        OrderStatus.TRADE_CLOSED,
        ClosedReason.REFUNDED,
        Decimal("88.88"),
    )
    assert [r.status for r in order.refunds.values()] == [RefundStatus.SUCCEEDED] * 2
    assert legacy.gateway.refund_currencies == ["USD", "USD"]  # forex_refund names the trade's currency
    legacy.relay_stream()
    assert legacy.event_types() == ["OrderRefunded", "OrderRefunded", "OrderClosed"]
    refunded = [e for e in legacy.publisher.events if str(e.detail_type) == "OrderRefunded"]
    assert [(e.refund_amount, e.refund_fee) for e in refunded] == [
        (Decimal("10.00"), Decimal("10.00")),
        (Decimal("78.88"), Decimal("88.88")),
    ]


def test_a_legacy_repeat_is_answered_from_the_order_without_asking_alipay_again(legacy: Kit) -> None:
    first = refund(legacy, "10.00", "r-1")
    calls = legacy.gateway.calls
    assert refund(legacy, "10.00", "r-1") == first
    assert legacy.gateway.calls == calls
    with pytest.raises(ValidationError):
        refund(legacy, "78.89", "r-2")


def test_a_legacy_reply_that_says_nothing_about_the_money_leaves_the_refund_pending(legacy: Kit) -> None:
    from chalicelib.services.ports import PortError

    legacy.gateway.fail_with(PortError("REPEATED_REFUNDMENT_REQUEST"))
    with pytest.raises(PortError):
        refund(legacy, "10.00", "r-1")
    order = legacy.order()
    assert (order.refunds["r-1"].status, order.refund_fee) == (RefundStatus.PENDING, None)
    assert order.refundable == Decimal("78.88")  # still reserved: an operator settles it


def test_a_legacy_total_is_recomputed_when_another_refund_lands_between_read_and_write(legacy: Kit) -> None:
    """A concurrent refund applied while this one computes its total is added to, never overwritten."""
    racing = RacingOrders(legacy)
    legacy.services.refunds.orders = racing
    legacy.services.updater.orders = racing

    refund(legacy, "10.00", "r-1")

    assert racing.raced
    assert legacy.order().refund_fee == Decimal("15.00")  # 5.00 landed first, then this 10.00 on top


class WrappedOrders:
    """The kit's repository, with ``replace`` for a subclass to intercept."""

    def __init__(self, kit: Kit) -> None:
        self.inner = kit.orders

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


class RacingOrders(WrappedOrders):
    """The kit's repository; on the first refund write, another refund of 5.00 lands just before it."""

    raced = False

    def replace(self, order: Order, *, expected_version: int) -> bool:
        if order.refund_fee is not None and not self.raced:
            self.raced = True
            stored = self.inner.orders[order.out_trade_no]
            other = replace(stored, refund_fee=Decimal("5.00"), version=stored.version + 1)
            assert self.inner.replace(other, expected_version=stored.version)
        return self.inner.replace(order, expected_version=expected_version)


def test_a_legacy_refund_is_recorded_done_in_the_same_write_as_the_total_it_adds_to(legacy: Kit) -> None:
    """A crash right after the running total is written cannot leave the refund pending, to be asked and added again.

    forex_refund reports no total: the service adds the refund to the order's. Were the refund marked done in a later
    write, a crash between the two would leave it pending with its amount already counted, and a retry would ask
    Alipay again: a ``REPEATED_REFUNDMENT_REQUEST`` (502, stuck for an operator) or, if Alipay answers ``T`` to a
    repeat (UNCONFIRMED), the amount added twice.
    """
    crashing = CrashAfterTotal(legacy)
    legacy.services.refunds.orders = legacy.services.updater.orders = crashing
    with contextlib.suppress(RuntimeError):
        refund(legacy, "10.00", "r-1")
    legacy.services.refunds.orders = legacy.services.updater.orders = legacy.orders  # the next invocation
    calls = legacy.gateway.calls

    retried = refund(legacy, "10.00", "r-1")

    assert (retried["status"], retried["refund_fee"]) == ("REFUND_SUCCESS", "10.00")
    order = legacy.order()
    assert (order.refunds["r-1"].status, order.refund_fee) == (RefundStatus.SUCCEEDED, Decimal("10.00"))
    assert legacy.gateway.calls == calls  # answered from the order: Alipay is not asked again


class CrashAfterTotal(WrappedOrders):
    """The kit's repository; the process dies on the first write after one that changed the refunded total."""

    total_written = False

    def replace(self, order: Order, *, expected_version: int) -> bool:
        if self.total_written:
            raise RuntimeError("the function timed out")
        stored = self.inner.orders[order.out_trade_no]
        written = self.inner.replace(order, expected_version=expected_version)
        self.total_written = written and order.refund_fee != stored.refund_fee
        return written
