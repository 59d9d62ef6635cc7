"""An operator's replay of a quarantined Antom refund notification (notifyRefund): it settles the refund exactly as the
queue's consumer would have, once, audited; what still matches no refund stays quarantined and says why.

A notifyRefund is quarantined when it matches no refund as recorded: most often one that names no order (Antom sends
our metadata back, but may not) while the pending-refunds index, eventually consistent, does not show its refund yet.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from chalicelib.orders.model import OrderStatus, RefundStatus
from chalicelib.services.commands import CreateOrder
from chalicelib.services.errors import AlreadyResolved, NothingToReturn
from chalicelib.services.operations import OperatorRequest, entry_id
from chalicelib.services.ports import TradeQueryResult
from tests.alipay_fixtures import alipay_key
from tests.antom_kit import refund_notification, sign
from tests.unit.services_kit import ANTOM_CLIENT_ID, Kit, LaggingPendingIndex, make_kit

ORDER = "shop-2001"
OPERATOR = OperatorRequest(by="arn:aws:iam::000000000000:user/ops", reason="the refund shows in the table now")
JSON = "application/json"


@pytest.fixture
def orders() -> LaggingPendingIndex:
    return LaggingPendingIndex()


@pytest.fixture
def kit(orders: LaggingPendingIndex) -> Kit:
    kit = make_kit("antom", orders=orders)
    kit.services.orders.create(_create({"out_trade_no": ORDER}), created_by="arn:aws:iam::000000000000:user/shop")
    trade = kit.gateway.trades[ORDER]
    kit.gateway.trades[ORDER] = TradeQueryResult(True, "TRADE_SUCCESS", trade.trade_no, Decimal("12.34"), "USD")
    kit.clock.advance(seconds=10)
    kit.services.client_results.check(ORDER, {"resultStatus": "9000", "result": ""})
    assert kit.order(ORDER).status is OrderStatus.TRADE_SUCCESS
    kit.gateway.slow_refunds = True  # Antom answers U: accepted, not done; its notifyRefund says when it is
    return kit


def _create(overrides: dict[str, Any]) -> CreateOrder:
    return CreateOrder.from_json(
        {"subject": "Coffee beans", "total_amount": "12.34", "currency": "USD", "os_type": "IOS", **overrides}
    )


def notify_refund(kit: Kit, out_request_no: str, status: str = "SUCCESS", *, names_order: bool = False) -> str:
    """Antom's signed notifyRefund through the webhook and the queue's consumer; its notify_id."""
    body = refund_notification(out_request_no, status, metadata=ORDER if names_order else "")
    kit.services.intake.accept(body, JSON, sign(body, key=alipay_key(), client_id=ANTOM_CLIENT_ID))
    kit.services.consumer.apply(kit.queue.messages[-1])
    return f"REFUND_RESULT:{out_request_no}:{status}"


def refund_pending(kit: Kit, out_request_no: str) -> None:
    view = kit.services.refunds.refund(ORDER, {"amount": "2.34", "out_request_no": out_request_no})
    assert view["status"] == "REFUND_PENDING"


def quarantined_while_the_index_lags(kit: Kit, orders: LaggingPendingIndex, status: str = "SUCCESS") -> str:
    """The refund is pending, but its notifyRefund (naming no order) finds it nowhere: quarantined; its entry id."""
    refund_pending(kit, "rf-1")
    orders.lagging = True
    notify_id = notify_refund(kit, "rf-1", status)
    orders.lagging = False
    record = kit.quarantine.records[notify_id]
    assert (record.reason, record.out_trade_no) == ("unknown_order", "")
    assert kit.order(ORDER).refunds["rf-1"].status is RefundStatus.PENDING
    return entry_id(notify_id)


def test_a_replay_settles_the_refund_once_as_the_consumer_would_and_resolves_the_entry(
    kit: Kit, orders: LaggingPendingIndex
) -> None:
    entry = quarantined_while_the_index_lags(kit, orders)
    kit.clock.advance(minutes=5)

    result = kit.services.operations.replay(entry, OPERATOR)

    assert (result["outcome"], result["resolved"]) == ("applied", True)
    order = kit.order(ORDER)
    assert order.refunds["rf-1"].status is RefundStatus.SUCCEEDED
    assert order.refund_fee == Decimal("2.34")
    assert order.history[-1].applied_by == "operator"
    resolution = kit.quarantine.records["REFUND_RESULT:rf-1:SUCCESS"].resolution
    assert resolution is not None
    assert (resolution.action, resolution.by, resolution.outcome) == ("replayed", OPERATOR.by, "applied")
    [audit] = kit.audit.entries
    assert (audit.action, audit.by, audit.target, audit.reason) == (
        "quarantine.replay",
        OPERATOR.by,
        "REFUND_RESULT:rf-1:SUCCESS",
        OPERATOR.reason,
    )
    assert audit.result["outcome"] == "applied"
    assert kit.gateway.refund_trade_nos == [order.trade_no]  # Antom was asked for the refund once, by the merchant
    kit.relay_stream()
    assert kit.event_types().count("OrderRefunded") == 1


def test_a_second_replay_is_already_resolved_and_moves_no_money_again(kit: Kit, orders: LaggingPendingIndex) -> None:
    entry = quarantined_while_the_index_lags(kit, orders)
    kit.services.operations.replay(entry, OPERATOR)
    writes = kit.orders.writes_of(ORDER)

    with pytest.raises(AlreadyResolved) as again:
        kit.services.operations.replay(entry, OPERATOR)

    assert OPERATOR.by in str(again.value)
    assert kit.orders.writes_of(ORDER) == writes
    assert kit.order(ORDER).refund_fee == Decimal("2.34")
    assert len(kit.gateway.refund_trade_nos) == 1


def test_a_replay_after_the_sweep_settled_the_refund_moves_nothing_and_says_no_refund_is_pending(
    kit: Kit, orders: LaggingPendingIndex
) -> None:
    entry = quarantined_while_the_index_lags(kit, orders)
    kit.gateway.settle_processing()  # Antom's refund inquiry now says SUCCESS
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    assert kit.order(ORDER).refunds["rf-1"].status is RefundStatus.SUCCEEDED
    writes = kit.orders.writes_of(ORDER)

    result = kit.services.operations.replay(entry, OPERATOR)

    # Naming no order, the notification is matched against pending refunds only: the operator is told so, and
    # dismisses it; the refund's money was counted once, by the sweep.
    assert (result["outcome"], result["resolved"], result["still"]) == ("quarantined", False, "unknown_order")
    assert "pending on no order" in result["detail"]
    assert kit.orders.writes_of(ORDER) == writes
    assert kit.order(ORDER).refund_fee == Decimal("2.34")


def test_a_replayed_failure_frees_the_amount_for_another_refund(kit: Kit, orders: LaggingPendingIndex) -> None:
    entry = quarantined_while_the_index_lags(kit, orders, status="FAIL")

    result = kit.services.operations.replay(entry, OPERATOR)

    assert (result["outcome"], result["resolved"]) == ("applied", True)
    order = kit.order(ORDER)
    assert order.refunds["rf-1"].status is RefundStatus.FAILED
    assert (order.refund_fee or Decimal(0), order.refundable) == (Decimal(0), Decimal("12.34"))


def test_a_replay_of_a_refund_still_unknown_stays_quarantined_and_says_why(kit: Kit) -> None:
    notify_id = notify_refund(kit, "rf-nobody-asked", names_order=True)
    writes = kit.orders.writes_of(ORDER)

    result = kit.services.operations.replay(entry_id(notify_id), OPERATOR)

    assert (result["outcome"], result["resolved"], result["still"]) == ("quarantined", False, "unknown_order")
    assert "rf-nobody-asked" in result["detail"]
    assert kit.quarantine.records[notify_id].resolution is None
    assert kit.orders.writes_of(ORDER) == writes
    assert [a.action for a in kit.audit.entries] == ["quarantine.replay"]  # the attempt is on record


def test_a_replay_contradicting_the_refunds_recorded_outcome_stays_quarantined(kit: Kit) -> None:
    refund_pending(kit, "rf-2")
    assert kit.services.refunds.notified(ORDER, "rf-2", succeeded=False) == "applied"  # recorded FAIL
    notify_id = notify_refund(kit, "rf-2", "SUCCESS", names_order=True)
    assert kit.quarantine.records[notify_id].reason == "illegal_transition"

    result = kit.services.operations.replay(entry_id(notify_id), OPERATOR)

    assert (result["outcome"], result["resolved"], result["still"]) == ("quarantined", False, "illegal_transition")
    assert kit.order(ORDER).refunds["rf-2"].status is RefundStatus.FAILED
    assert not kit.order(ORDER).refund_fee


def test_a_refunds_notification_is_never_returned_as_money_held(kit: Kit) -> None:
    notify_id = notify_refund(kit, "rf-nobody-asked")
    assert kit.quarantine.records[notify_id].holds_money  # a SUCCESS: money moved, so it never expires unseen

    with pytest.raises(NothingToReturn):
        kit.services.operations.return_money(entry_id(notify_id), OPERATOR)

    assert len(kit.gateway.refund_trade_nos) == 0
    assert kit.quarantine.records[notify_id].resolution is None
