"""Reconciliation over fakes: lost payments applied, unpaid orders closed after their timeout, within a budget."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.orders.model import ClosedReason, OrderStatus
from chalicelib.services.ports import TradeQueryResult, Unavailable
from tests.unit.services_kit import Kit, make_kit

TRADE_NO = "2026112622001400000000000001"


@pytest.fixture
def kit() -> Kit:
    kit = make_kit()
    # Created 16:00 with a 30-minute timeout; the kit's clock says 16:30:05, so it is due for a close at 16:31.
    kit.add_order("ORDER-1", amount="88.88")
    kit.orders.orders["ORDER-1"] = replace(kit.order("ORDER-1"), pay_by="2026-11-26T16:30:00.000Z")
    return kit


def trade(status: str, amount: str = "88.88") -> TradeQueryResult:
    return TradeQueryResult(True, status, TRADE_NO, Decimal(amount), "USD", raw={"trade_status": status})


def test_a_payment_whose_notifications_were_lost_is_applied_once_with_one_order_paid(kit: Kit) -> None:
    kit.gateway.trades["ORDER-1"] = trade("TRADE_SUCCESS")
    report = kit.services.reconciler.run()
    assert (report.examined, report.applied) == (1, 1)
    assert (kit.order("ORDER-1").status, kit.order("ORDER-1").trade_no) == (OrderStatus.TRADE_SUCCESS, TRADE_NO)
    assert kit.services.reconciler.run().examined == 0  # paid orders are no longer waiting
    kit.relay_stream()
    assert kit.event_types() == ["OrderPaid"]


def test_a_paid_amount_that_differs_is_quarantined_not_applied(kit: Kit) -> None:
    kit.gateway.trades["ORDER-1"] = trade("TRADE_SUCCESS", amount="0.01")
    kit.services.reconciler.run()
    assert kit.order("ORDER-1").status is OrderStatus.WAIT_BUYER_PAY
    [record] = kit.quarantine.records.values()
    assert (record.reason, record.notify_id) == ("amount_mismatch", "reconcile:ORDER-1:TRADE_SUCCESS")


def test_an_order_younger_than_the_minimum_age_is_not_asked_about(kit: Kit) -> None:
    kit.clock.advance(minutes=-27)  # 16:03: the order is 3 minutes old
    assert kit.services.reconciler.run().examined == 0
    assert kit.gateway.queries == []


def test_an_unpaid_order_within_its_timeout_is_left_waiting(kit: Kit) -> None:
    kit.gateway.trades["ORDER-1"] = trade("WAIT_BUYER_PAY")
    report = kit.services.reconciler.run()  # 16:30:05 is before 16:30 + 1 minute of grace
    assert (report.waiting, kit.gateway.closes) == (1, [])


@pytest.mark.parametrize("known", [True, False], ids=["waiting at Alipay", "unknown to Alipay"])
def test_an_unpaid_order_past_its_timeout_is_closed_at_alipay_then_closed_by_timeout(kit: Kit, known: bool) -> None:
    if known:
        kit.gateway.trades["ORDER-1"] = trade("WAIT_BUYER_PAY")
    kit.clock.advance(minutes=5)
    report = kit.services.reconciler.run()
    assert (report.closed, kit.gateway.closes) == (1, ["ORDER-1"])
    order = kit.order("ORDER-1")
    assert (order.status, order.closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.TIMEOUT)
    kit.services.reconciler.run()
    kit.relay_stream()
    assert kit.event_types() == ["OrderClosed"]


def test_a_trade_alipay_already_closed_is_applied_without_a_close_call(kit: Kit) -> None:
    kit.gateway.trades["ORDER-1"] = trade("TRADE_CLOSED")
    kit.services.reconciler.run()
    assert kit.order("ORDER-1").closed_reason is ClosedReason.TIMEOUT
    assert kit.gateway.closes == []


def test_legacy_closes_an_order_alipay_never_created_only_after_its_deadline_and_a_margin() -> None:
    kit = make_kit("mapi")
    kit.add_order("ORDER-1", amount="88.88")
    kit.clock.advance(minutes=5)  # past the order's own deadline, within the margin
    assert (kit.services.reconciler.run().closed, kit.order("ORDER-1").status) == (0, OrderStatus.WAIT_BUYER_PAY)
    kit.clock.advance(hours=1)
    report = kit.services.reconciler.run()
    assert (report.closed, kit.gateway.closes) == (1, [])
    assert kit.order("ORDER-1").closed_reason is ClosedReason.TIMEOUT


def test_legacy_never_closes_while_alipay_says_the_trade_waits_and_applies_alipays_own_close() -> None:
    """Issue 15 #1: it_b_pay counts from Alipay's trade creation; a WAIT_BUYER_PAY there can still be paid."""
    kit = make_kit("mapi")
    kit.add_order("ORDER-1", amount="88.88")
    kit.gateway.trades["ORDER-1"] = trade("WAIT_BUYER_PAY")
    kit.clock.advance(hours=3)
    report = kit.services.reconciler.run()
    assert (report.closed, report.waiting, kit.order("ORDER-1").status) == (0, 1, OrderStatus.WAIT_BUYER_PAY)
    assert kit.metrics.counts["ReconciliationWaitingPastExpiry"] == 1  # an alarm, if it persists
    kit.gateway.trades["ORDER-1"] = trade("TRADE_CLOSED")  # Alipay's own expiry
    kit.clock.advance(minutes=10)  # the order's next check is due
    kit.services.reconciler.run()
    assert kit.order("ORDER-1").closed_reason is ClosedReason.TIMEOUT


@pytest.mark.parametrize("protocol", ["openapi", "mapi"])
def test_a_status_alipay_answers_that_the_product_does_not_know_never_closes_the_order(protocol: str) -> None:
    """Issue 15 #2: asked again next run, counted for the alarm, never closed on."""
    kit = make_kit(protocol)
    kit.add_order("ORDER-1", amount="88.88")
    kit.gateway.trades["ORDER-1"] = trade("TRADE_PENDING_REVIEW")
    kit.clock.advance(hours=3)
    report = kit.services.reconciler.run()
    assert (report.unknown_status, report.closed, kit.gateway.closes) == (1, 0, [])
    assert kit.order("ORDER-1").status is OrderStatus.WAIT_BUYER_PAY
    assert kit.metrics.counts["ReconciliationUnknownStatus"] == 1


def test_a_run_asks_alipay_at_most_max_queries_times_oldest_first() -> None:
    kit = make_kit(RECONCILE_MAX_QUERIES="3")
    for i in range(5):
        kit.add_order(f"ORDER-{i}")
    report = kit.services.reconciler.run()
    assert (report.examined, report.budget_left) == (3, False)
    assert kit.gateway.queries == ["ORDER-0", "ORDER-1", "ORDER-2"]


def test_gateway_calls_are_spaced_by_the_minimum_interval() -> None:
    kit = make_kit(RECONCILE_INTERVAL_MS="250")
    for i in range(3):
        kit.add_order(f"ORDER-{i}")
    slept: list[float] = []
    reconciler = kit.services.reconciler
    reconciler.sleep = slept.append
    reconciler.monotonic = lambda: 100.0  # no time passes between calls
    reconciler.run()
    assert slept == [0.25, 0.25]


def test_one_failing_query_does_not_stop_the_others(kit: Kit) -> None:
    kit.add_order("ORDER-2", amount="88.88")
    kit.gateway.trades["ORDER-2"] = trade("TRADE_SUCCESS")
    kit.gateway.fail_with(Unavailable("Alipay down"))
    report = kit.services.reconciler.run()
    assert (report.failed, report.applied) == (1, 1)
    assert kit.metrics.counts["ReconciliationFailed"] == 1


def test_a_run_counts_the_orders_it_examined() -> None:
    kit = make_kit(RECONCILE_MAX_QUERIES="3")
    for i in range(5):
        kit.add_order(f"ORDER-{i}")
    kit.services.reconciler.run()
    assert kit.metrics.counts["ReconciliationExamined"] == 3
    empty = make_kit()
    empty.services.reconciler.run()
    assert "ReconciliationExamined" not in empty.metrics.counts  # nothing to say (a run is a Lambda invocation)


# --- a reconciler that cannot starve (issue 15 #8) ---------------------------------------------------------------


def test_a_lost_payment_behind_sixty_unsettleable_orders_is_found_within_two_runs() -> None:
    """50 calls a run, oldest first, nothing parked: 60 orders Alipay cannot settle used to hide every newer one."""
    kit = make_kit(RECONCILE_MAX_QUERIES="50", RECONCILE_INTERVAL_MS="1")
    for i in range(60):
        kit.add_order(f"STUCK-{i:02}", amount="88.88")
        kit.gateway.trades[f"STUCK-{i:02}"] = trade("WAIT_BUYER_PAY")  # a buyer's long-timeout orders
        kit.orders.orders[f"STUCK-{i:02}"] = replace(kit.order(f"STUCK-{i:02}"), pay_by="2026-11-27T16:00:00.000Z")
    kit.clock.advance(minutes=1)
    kit.add_order("LOST", amount="88.88")  # the newest, paid at Alipay, its notifications lost
    kit.gateway.trades["LOST"] = trade("TRADE_SUCCESS")
    kit.clock.advance(minutes=10)

    first = kit.services.reconciler.run()
    kit.clock.advance(minutes=5)  # the schedule's rate
    kit.services.reconciler.run()

    assert first.budget_left is False
    assert kit.metrics.counts["ReconciliationStarved"] == 1
    assert kit.order("LOST").status is OrderStatus.TRADE_SUCCESS
    assert kit.gateway.queries.count("LOST") == 1


def test_a_waiting_order_is_checked_soon_then_less_often_then_at_its_expiry(kit: Kit) -> None:
    kit.orders.orders["ORDER-1"] = replace(kit.order("ORDER-1"), pay_by="2026-11-26T17:40:00.000Z")
    kit.gateway.trades["ORDER-1"] = trade("WAIT_BUYER_PAY")
    due = []
    for minutes in (0, 6, 11, 21, 34):  # each run just after the previous due time: 16:30:05, 16:36:05, ...
        kit.clock.advance(minutes=minutes)
        kit.services.reconciler.run()
        due.append(kit.order("ORDER-1").next_check_at)
    # 5 min after the first check, then 10, 20 backing off; 40 would pass the expiry (17:40 + 1 min): at expiry.
    assert due[:4] == [
        "2026-11-26T16:35:05.000Z",
        "2026-11-26T16:46:05.000Z",
        "2026-11-26T17:07:05.000Z",
        "2026-11-26T17:41:00.000Z",
    ]
    assert kit.gateway.queries.count("ORDER-1") == 5  # one check per due time, none in between
    assert (kit.order("ORDER-1").status, kit.gateway.closes) == (OrderStatus.TRADE_CLOSED, ["ORDER-1"])


def test_an_order_whose_answer_cannot_apply_is_parked_with_its_reason(kit: Kit) -> None:
    kit.gateway.trades["ORDER-1"] = trade("TRADE_SUCCESS", amount="0.01")  # quarantined: another amount
    kit.services.reconciler.run()
    kit.clock.advance(minutes=30)
    kit.services.reconciler.run()
    order = kit.order("ORDER-1")
    assert (order.parked, order.next_check_at) == ("quarantined", "2026-11-26T22:30:05.000Z")
    assert kit.gateway.queries.count("ORDER-1") == 1
