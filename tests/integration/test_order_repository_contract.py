"""The OrderRepository contract, run on the in-memory fake and on the DynamoDB adapter (moto)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.adapters.dynamodb import DynamoDBOrderRepository
from chalicelib.orders.model import (
    ClosedReason,
    Order,
    OrderStatus,
    PaymentUpdate,
    Refund,
    RefundStatus,
    TransitionPlan,
    plan_transition,
)
from chalicelib.services.ports import ConditionFailed, OrderExists, OrderRepository
from tests.fakes import InMemoryOrderRepository

NOW = "2026-11-26T08:00:00Z"
LATER = "2026-11-26T09:00:00Z"


@pytest.fixture(params=["in_memory", "dynamodb"])
def repo(request: pytest.FixtureRequest) -> OrderRepository:
    if request.param == "in_memory":
        return InMemoryOrderRepository()
    table = request.getfixturevalue("table")
    return DynamoDBOrderRepository(request.getfixturevalue("dynamodb"), table)


def _order(out_trade_no: str = "o-1", amount: str = "12.34", currency: str = "USD") -> Order:
    return Order.create(
        out_trade_no=out_trade_no, total_amount=Decimal(amount), currency=currency, subject="咖啡 x2", now=NOW
    )


def _plan(
    status: OrderStatus = OrderStatus.TRADE_SUCCESS,
    *,
    amount: str = "12.34",
    currency: str | None = "USD",
    trade_no: str | None = "2026112622001",
    notify_id: str | None = "n-1",
    refund_fee: str | None = None,
) -> TransitionPlan:
    update = PaymentUpdate(
        out_trade_no="o-1",
        trade_status=status,
        total_amount=Decimal(amount),
        currency=currency,
        trade_no=trade_no,
        notify_id=notify_id,
        refund_fee=Decimal(refund_fee) if refund_fee else None,
        occurred_at=LATER,
    )
    return plan_transition(update, LATER)


# --- add / get ---------------------------------------------------------------------------------------------


def test_stores_a_new_order_and_reads_it_back_unchanged(repo: OrderRepository) -> None:
    order = replace(_order(), body="两杯咖啡")
    repo.add(order)
    stored = repo.get("o-1")
    assert stored == order
    assert stored is not None
    assert isinstance(stored.total_amount, Decimal)


def test_reads_none_for_an_unknown_order(repo: OrderRepository) -> None:
    assert repo.get("nope") is None


def test_refuses_to_overwrite_an_existing_order(repo: OrderRepository) -> None:
    repo.add(_order())
    with pytest.raises(OrderExists):
        repo.add(_order(amount="99.00"))
    stored = repo.get("o-1")
    assert stored is not None
    assert stored.total_amount == Decimal("12.34")


# --- apply_plan --------------------------------------------------------------------------------------------


def test_applies_a_plan_to_a_waiting_order_in_one_write(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    plan = _plan()
    result = repo.apply_plan(plan)
    assert result == plan.applied_to(order)
    assert repo.get("o-1") == result
    assert isinstance(result, Order)
    assert (result.status, result.trade_no, result.notify_id, result.version) == (
        OrderStatus.TRADE_SUCCESS,
        "2026112622001",
        "n-1",
        2,
    )


def test_applies_a_plan_only_once_when_the_same_update_arrives_twice(repo: OrderRepository) -> None:
    repo.add(_order())
    first = repo.apply_plan(_plan())
    second = repo.apply_plan(_plan())
    assert second == ConditionFailed(first if isinstance(first, Order) else None)
    stored = repo.get("o-1")
    assert stored is not None
    assert stored.version == 2


def test_keeps_the_stored_trade_no_when_the_plan_has_none(repo: OrderRepository) -> None:
    repo.add(_order())
    repo.apply_plan(_plan())
    paid = repo.get("o-1")
    assert paid is not None
    finish = _plan(OrderStatus.TRADE_FINISHED, trade_no=None, notify_id="n-2")
    result = repo.apply_plan(finish)
    assert result == finish.applied_to(paid)
    assert isinstance(result, Order)
    assert (result.trade_no, result.status) == ("2026112622001", OrderStatus.TRADE_FINISHED)
    assert repo.get("o-1") == result


def test_a_refund_notice_is_never_written_unread(repo: OrderRepository) -> None:
    repo.add(_order())
    repo.apply_plan(_plan())
    paid = repo.get("o-1")
    close = _plan(OrderStatus.TRADE_CLOSED, trade_no=None, notify_id="n-2", refund_fee="12.34")
    assert repo.apply_plan(close) == ConditionFailed(paid)
    assert repo.get("o-1") == paid


def test_orders_with_pending_refunds_are_found_oldest_refund_first_and_leave_once_settled(
    repo: OrderRepository,
) -> None:
    for no, at in (("o-1", "2026-11-26T09:00:00Z"), ("o-2", "2026-11-26T08:30:00Z")):
        repo.add(replace(_order(), out_trade_no=no))
        stored = repo.get(no)
        assert stored is not None
        paid = replace(stored, status=OrderStatus.TRADE_SUCCESS, version=stored.version + 1)
        assert repo.replace(paid, expected_version=stored.version)
        asked = paid.with_refund(Refund(f"r-{no}", Decimal("1.00"), RefundStatus.PENDING, at), at)
        assert repo.replace(asked, expected_version=paid.version)
    assert [o.out_trade_no for o in repo.with_pending_refunds("2026-11-27T00:00:00Z")] == ["o-2", "o-1"]
    assert [o.out_trade_no for o in repo.with_pending_refunds("2026-11-26T08:45:00Z")] == ["o-2"]
    pending = repo.get("o-2")
    assert pending is not None
    done = pending.with_refund_confirmed("r-o-2", LATER, applied_by="refund", reported_fee=Decimal("1.00"))
    assert repo.replace(done, expected_version=pending.version)
    assert [o.out_trade_no for o in repo.with_pending_refunds("2026-11-27T00:00:00Z")] == ["o-1"]


def test_a_reconciliation_plan_without_notify_id_clears_the_stored_one(repo: OrderRepository) -> None:
    repo.add(replace(_order(), notify_id="n-0"))
    result = repo.apply_plan(_plan(OrderStatus.TRADE_FINISHED, notify_id=None))
    assert isinstance(result, Order)
    assert result.notify_id is None
    assert repo.get("o-1") == result


def test_closes_a_waiting_order_on_timeout_with_its_reason(repo: OrderRepository) -> None:
    repo.add(_order())
    result = repo.apply_plan(_plan(OrderStatus.TRADE_CLOSED, trade_no=None))
    assert isinstance(result, Order)
    assert (result.status, result.closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.TIMEOUT)
    assert repo.get("o-1") == result


def test_a_plan_for_an_unknown_order_fails_and_creates_nothing(repo: OrderRepository) -> None:
    assert repo.apply_plan(_plan()) == ConditionFailed(None)
    assert repo.get("o-1") is None


def test_a_plan_with_another_amount_fails_and_returns_the_order_unchanged(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    assert repo.apply_plan(_plan(amount="12.35")) == ConditionFailed(order)
    assert repo.get("o-1") == order


@pytest.mark.parametrize(("stored", "notified"), [("12.30", "12.3"), ("12.3", "12.30"), ("100", "100.00")])
def test_amounts_compare_as_numbers_so_trailing_zeros_do_not_matter(
    repo: OrderRepository, stored: str, notified: str
) -> None:
    repo.add(_order(amount=stored))
    result = repo.apply_plan(_plan(amount=notified))
    assert isinstance(result, Order)
    assert result.status is OrderStatus.TRADE_SUCCESS
    assert result.total_amount == Decimal(stored)


def test_a_plan_with_another_currency_fails_and_returns_the_order_unchanged(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    assert repo.apply_plan(_plan(currency="EUR")) == ConditionFailed(order)
    assert repo.get("o-1") == order


def test_a_plan_without_currency_applies_whatever_the_order_currency(repo: OrderRepository) -> None:
    repo.add(_order(currency="JPY"))
    result = repo.apply_plan(_plan(currency=None))
    assert isinstance(result, Order)
    assert result.status is OrderStatus.TRADE_SUCCESS


def test_a_plan_from_a_status_that_is_not_a_predecessor_fails_and_returns_the_current_order(
    repo: OrderRepository,
) -> None:
    repo.add(_order())
    finished = repo.apply_plan(_plan(OrderStatus.TRADE_FINISHED))
    assert isinstance(finished, Order)
    assert repo.apply_plan(_plan(OrderStatus.TRADE_SUCCESS, notify_id="n-late")) == ConditionFailed(finished)
    assert repo.get("o-1") == finished


def test_a_plain_close_of_a_paid_order_is_not_written_unread(repo: OrderRepository) -> None:
    repo.add(_order())
    paid = repo.apply_plan(_plan())
    assert isinstance(paid, Order)
    assert repo.apply_plan(_plan(OrderStatus.TRADE_CLOSED)) == ConditionFailed(paid)


def test_a_plan_back_to_waiting_has_no_predecessor_and_never_writes(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    assert repo.apply_plan(_plan(OrderStatus.WAIT_BUYER_PAY)) == ConditionFailed(order)
    assert repo.apply_plan(replace(_plan(OrderStatus.WAIT_BUYER_PAY), out_trade_no="nope")) == ConditionFailed(None)


# --- replace -----------------------------------------------------------------------------------------------


def test_replaces_an_order_whose_version_is_still_the_expected_one(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    moved = replace(
        order, status=OrderStatus.TRADE_CLOSED, closed_reason=ClosedReason.REFUNDED, refund_fee=Decimal("1"), version=2
    )
    assert repo.replace(moved, expected_version=1) is True
    assert repo.get("o-1") == moved


def test_does_not_replace_an_order_someone_else_moved(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    paid = repo.apply_plan(_plan())
    assert repo.replace(replace(order, subject="stale", version=2), expected_version=1) is False
    assert repo.get("o-1") == paid


def test_does_not_replace_a_missing_order(repo: OrderRepository) -> None:
    assert repo.replace(_order(), expected_version=1) is False
    assert repo.get("o-1") is None


# --- remove_unsigned ---------------------------------------------------------------------------------------


def test_removes_an_untouched_order_whose_signing_failed(repo: OrderRepository) -> None:
    repo.add(_order())
    repo.remove_unsigned("o-1")
    assert repo.get("o-1") is None


def test_keeps_an_order_that_a_notification_already_moved(repo: OrderRepository) -> None:
    repo.add(_order())
    paid = repo.apply_plan(_plan())
    repo.remove_unsigned("o-1")
    assert repo.get("o-1") == paid


def test_keeps_a_waiting_order_that_was_already_rewritten(repo: OrderRepository) -> None:
    order = _order()
    repo.add(order)
    rewritten = replace(order, updated_at=LATER, version=2)
    assert repo.replace(rewritten, expected_version=1)
    repo.remove_unsigned("o-1")
    assert repo.get("o-1") == rewritten


def test_removing_an_unknown_order_is_a_no_op(repo: OrderRepository) -> None:
    repo.remove_unsigned("nope")
    assert repo.get("nope") is None


def test_a_reschedule_keeps_the_version_and_only_lands_on_the_version_read_while_waiting(repo: OrderRepository) -> None:
    repo.add(_order())
    stored = repo.get("o-1")
    assert stored is not None
    due = replace(stored, next_check_at="2026-11-26T10:00:00Z", checks=1, parked="quarantined")
    assert repo.reschedule(due)
    assert repo.get("o-1") == due  # same version: bookkeeping, not a change of the order
    assert [o.out_trade_no for o in repo.waiting("2026-11-26T10:00:01Z")] == ["o-1"]
    assert list(repo.waiting("2026-11-26T10:00:00Z")) == []  # not due before its next check
    assert repo.reschedule(replace(due, parked=None))
    unparked = repo.get("o-1")
    assert unparked is not None
    assert unparked.parked is None
    repo.apply_plan(_plan())  # paid meanwhile: a schedule read before that must not land
    assert not repo.reschedule(replace(due, checks=2))
    paid = repo.get("o-1")
    assert paid is not None
    assert paid.status is OrderStatus.TRADE_SUCCESS
