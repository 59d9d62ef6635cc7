"""The order status machine: the transitions table, and what ``decide`` does with every kind of update."""

from __future__ import annotations

import itertools
from decimal import Decimal
from types import MappingProxyType

import pytest

from chalicelib.alipay.notifications import AlipayProtocol, Notification
from chalicelib.orders import (
    ALLOWED_PREDECESSORS,
    ALLOWED_TRANSITIONS,
    PAID_STATUSES,
    Apply,
    ClosedReason,
    Decision,
    Duplicate,
    Order,
    OrderStatus,
    PaymentUpdate,
    Quarantine,
    QuarantineReason,
    Stale,
    decide,
)
from chalicelib.orders.events import events_for_change
from chalicelib.orders.model import (
    LEGACY_REFUNDABLE_STATUSES,
    REFUNDABLE_STATUSES,
    RefundKind,
    RefundStatus,
    ReturnLatePayment,
    return_request_no,
)
from tests.order_fixtures import (
    CLOSED,
    CREATED,
    FINISHED,
    NOW,
    SUCCESS,
    TOTAL,
    TRADE_NO,
    WAIT,
    a_new_order,
    an_order,
    an_update,
)

TIMEOUT = ClosedReason.TIMEOUT
REFUNDED = ClosedReason.REFUNDED

# The spec, written out rather than derived from the code under test.
LEGAL_EDGES = {
    (WAIT, SUCCESS),
    (WAIT, FINISHED),
    (WAIT, CLOSED),
    (SUCCESS, FINISHED),
    (SUCCESS, CLOSED),
}
# How far along the lifecycle a status is; the two terminals are equally far.
RANK = {WAIT: 0, SUCCESS: 1, FINISHED: 2, CLOSED: 2}


def kind(decision: Decision) -> str:
    match decision:
        case Apply():
            return "apply"
        case Duplicate():
            return "duplicate"
        case Stale():
            return "stale"
        case Quarantine(reason=reason):
            return f"quarantine:{reason}"
        case ReturnLatePayment():
            return "return"


def applied(decision: Decision) -> Order:
    assert isinstance(decision, Apply), decision
    return decision.new_order


# --- the table -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), list(itertools.product(OrderStatus, OrderStatus)))
def test_the_transitions_table_allows_exactly_the_documented_edges(old: OrderStatus, new: OrderStatus) -> None:
    assert (new in ALLOWED_TRANSITIONS[old]) == ((old, new) in LEGAL_EDGES)


@pytest.mark.parametrize(("old", "new"), list(itertools.product(OrderStatus, OrderStatus)))
def test_the_predecessors_table_is_the_transitions_table_read_backwards(old: OrderStatus, new: OrderStatus) -> None:
    assert (old in ALLOWED_PREDECESSORS[new]) == (new in ALLOWED_TRANSITIONS[old])


def test_every_status_has_a_row_in_both_tables() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(OrderStatus) == set(ALLOWED_PREDECESSORS)


def test_the_tables_cannot_be_changed_at_runtime() -> None:
    assert isinstance(ALLOWED_TRANSITIONS, MappingProxyType)
    assert isinstance(ALLOWED_PREDECESSORS, MappingProxyType)
    assert all(isinstance(v, frozenset) for v in [*ALLOWED_TRANSITIONS.values(), *ALLOWED_PREDECESSORS.values()])


@pytest.mark.parametrize(("old", "new"), sorted(LEGAL_EDGES))
def test_every_legal_edge_moves_forward(old: OrderStatus, new: OrderStatus) -> None:
    assert RANK[new] > RANK[old]


@pytest.mark.parametrize("status", [FINISHED, CLOSED])
def test_finished_and_closed_are_terminal(status: OrderStatus) -> None:
    assert ALLOWED_TRANSITIONS[status] == frozenset()


def test_paid_statuses_are_success_and_finished() -> None:
    assert frozenset({SUCCESS, FINISHED}) == PAID_STATUSES


def test_a_paid_predecessor_set_is_what_the_adapter_conditions_a_close_on() -> None:
    assert ALLOWED_PREDECESSORS[CLOSED] == {WAIT, SUCCESS}
    assert ALLOWED_PREDECESSORS[WAIT] == frozenset()


# --- decide over the full matrix --------------------------------------------------------------------

# The order's status (and, when closed, why) x the update's status. A closed order is listed twice
# because its path matters: closed by refund it has been paid, closed by timeout it never was.
DECISIONS = {
    (WAIT, None, WAIT): "duplicate",
    (WAIT, None, SUCCESS): "apply",
    (WAIT, None, FINISHED): "apply",
    (WAIT, None, CLOSED): "apply",
    (SUCCESS, None, WAIT): "stale",
    (SUCCESS, None, SUCCESS): "duplicate",
    (SUCCESS, None, FINISHED): "apply",
    (SUCCESS, None, CLOSED): "apply",
    (FINISHED, None, WAIT): "stale",
    (FINISHED, None, SUCCESS): "stale",
    (FINISHED, None, FINISHED): "duplicate",
    (FINISHED, None, CLOSED): "quarantine:illegal_transition",
    (CLOSED, TIMEOUT, WAIT): "stale",
    (CLOSED, TIMEOUT, SUCCESS): "return",  # money captured after the order closed: given back
    (CLOSED, TIMEOUT, FINISHED): "return",
    (CLOSED, TIMEOUT, CLOSED): "duplicate",
    (CLOSED, REFUNDED, WAIT): "stale",
    (CLOSED, REFUNDED, SUCCESS): "stale",
    (CLOSED, REFUNDED, FINISHED): "quarantine:illegal_transition",
    (CLOSED, REFUNDED, CLOSED): "duplicate",
}


def test_the_decision_matrix_covers_every_order_state_and_every_update_status() -> None:
    states = {(s, r) for s, r, _ in DECISIONS}
    assert states == {(WAIT, None), (SUCCESS, None), (FINISHED, None), (CLOSED, TIMEOUT), (CLOSED, REFUNDED)}
    assert len(DECISIONS) == len(states) * len(OrderStatus)


@pytest.mark.parametrize(
    ("status", "closed_reason", "incoming", "expected"),
    [(s, r, i, e) for (s, r, i), e in DECISIONS.items()],
    ids=[f"{s}({r})<-{i}" if r else f"{s}<-{i}" for s, r, i in DECISIONS],
)
def test_decide_treats_each_update_status_as_the_matrix_says(
    status: OrderStatus, closed_reason: ClosedReason | None, incoming: OrderStatus, expected: str
) -> None:
    order = an_order(status, closed_reason)
    refund = TOTAL if incoming is CLOSED and order.was_paid else None
    assert kind(decide(order, an_update(incoming, refund_fee=refund), NOW)) == expected


@pytest.mark.parametrize(("old", "new"), sorted(LEGAL_EDGES))
def test_every_legal_edge_is_applied_as_one_versioned_change(old: OrderStatus, new: OrderStatus) -> None:
    order = an_order(old)
    moved = applied(decide(order, an_update(new, notify_id="n-new"), NOW))
    assert moved.status is new
    assert moved.version == order.version + 1
    assert moved.updated_at == NOW
    assert moved.created_at == CREATED
    assert moved.notify_id == "n-new"


# --- duplicates and reordering ------------------------------------------------------------------------


def test_the_same_notification_twice_changes_the_order_once() -> None:
    update = an_update(SUCCESS)
    paid = applied(decide(an_order(), update, NOW))
    assert decide(paid, update, "2025-01-01T00:06:00Z") == Duplicate()


def test_the_same_trade_and_status_with_a_different_notify_id_is_a_duplicate() -> None:
    paid = applied(decide(an_order(), an_update(SUCCESS, notify_id="n-1"), NOW))
    assert decide(paid, an_update(SUCCESS, notify_id="n-2"), NOW) == Duplicate()


def test_finished_before_success_ends_finished_and_the_late_success_is_stale() -> None:
    finished = applied(decide(an_order(), an_update(FINISHED, notify_id="n-fin"), NOW))
    assert finished.status is FINISHED
    assert decide(finished, an_update(SUCCESS, notify_id="n-suc"), NOW) == Stale()


def test_a_late_wait_buyer_pay_for_a_paid_order_is_stale() -> None:
    assert decide(an_order(SUCCESS), an_update(WAIT), NOW) == Stale()


def test_a_decision_depends_only_on_its_inputs() -> None:
    order, update = an_order(), an_update(SUCCESS)
    assert decide(order, update, NOW) == decide(order, update, NOW)
    assert order == an_order()


# --- closing: unpaid vs refunded (docs/reliability.md scenario 6) -----------------------------------------------------


def test_a_waiting_order_that_closes_is_closed_unpaid_by_timeout() -> None:
    closed = applied(decide(an_order(), an_update(CLOSED, trade_no=None), NOW))
    assert (closed.status, closed.closed_reason, closed.was_paid) == (CLOSED, TIMEOUT, False)


def test_a_zero_refund_fee_on_a_close_still_means_closed_unpaid() -> None:
    closed = applied(decide(an_order(), an_update(CLOSED, refund_fee=Decimal("0.00")), NOW))
    assert closed.closed_reason is TIMEOUT
    assert closed.refund_fee is None


def test_a_paid_order_that_closes_is_closed_by_refund() -> None:
    closed = applied(decide(an_order(SUCCESS), an_update(CLOSED, refund_fee=TOTAL), NOW))
    assert (closed.status, closed.closed_reason, closed.was_paid) == (CLOSED, REFUNDED, True)
    assert closed.refund_fee == TOTAL


@pytest.mark.parametrize("applied_by", ["reconciliation", "client_result", "return_page"])
def test_a_gateway_answers_plain_close_never_closes_a_paid_order(applied_by: str) -> None:
    """A query's TRADE_CLOSED (or the reconciler's close) without refund figures: the refunds confirm themselves."""
    plain_close = an_update(CLOSED, notify_id=None, applied_by=applied_by)
    assert kind(decide(an_order(SUCCESS), plain_close, NOW)) == "stale"
    assert kind(decide(an_order(), plain_close, NOW)) == "apply"  # a waiting order is closed unpaid


def test_a_paid_order_closes_by_refund_even_when_the_close_carries_no_refund_fee() -> None:
    assert applied(decide(an_order(SUCCESS), an_update(CLOSED), NOW)).closed_reason is REFUNDED


def test_a_close_carrying_a_refund_for_a_waiting_order_is_a_refund_whose_payment_notice_was_lost() -> None:
    closed = applied(decide(an_order(), an_update(CLOSED, refund_fee=TOTAL), NOW))
    assert closed.closed_reason is REFUNDED
    assert decide(closed, an_update(SUCCESS), NOW) == Stale()


def test_a_payment_for_an_order_closed_unpaid_records_its_return_under_a_number_derived_from_the_trade() -> None:
    """Issue 15 #1: the money goes back automatically; the order stays closed unpaid and emits no OrderPaid."""
    closed = an_order(CLOSED, TIMEOUT)
    decision = decide(closed, an_update(SUCCESS), NOW)
    assert isinstance(decision, ReturnLatePayment)
    order = decision.new_order
    [give_back] = order.refunds.values()
    assert (give_back.kind, give_back.status, give_back.amount) == (RefundKind.RETURN, RefundStatus.PENDING, TOTAL)
    assert give_back.out_request_no == return_request_no(closed.out_trade_no, TRADE_NO)
    assert (order.status, order.closed_reason, order.refund_fee) == (CLOSED, TIMEOUT, None)
    assert kind(decide(order, an_update(SUCCESS, notify_id="n-again"), NOW)) == "duplicate"  # returned once
    assert events_for_change(closed, order, "n-1") == []  # the event comes when Alipay confirms the return


def test_a_close_after_the_order_finished_is_quarantined_because_a_finished_trade_cannot_be_refunded() -> None:
    assert kind(decide(an_order(FINISHED), an_update(CLOSED, refund_fee=TOTAL), NOW)) == "quarantine:illegal_transition"


# --- money and identity --------------------------------------------------------------------------------


@pytest.mark.parametrize("amount", ["12.35", "1234", "0.01", "12.340001"])
def test_an_amount_that_differs_from_the_order_is_quarantined(amount: str) -> None:
    decision = decide(an_order(), an_update(SUCCESS, total_amount=Decimal(amount)), NOW)
    assert isinstance(decision, Quarantine)
    assert decision.reason is QuarantineReason.AMOUNT_MISMATCH
    assert amount in decision.detail


def test_amounts_compare_as_decimals_so_trailing_zeros_match() -> None:
    order = an_order(total_amount=Decimal("12.30"))
    assert kind(decide(order, an_update(SUCCESS, total_amount=Decimal("12.3")), NOW)) == "apply"


def test_an_amount_mismatch_is_quarantined_even_when_the_status_is_a_duplicate() -> None:
    decision = decide(an_order(SUCCESS), an_update(SUCCESS, total_amount=Decimal("1.00")), NOW)
    assert kind(decision) == "quarantine:amount_mismatch"


def test_a_currency_that_differs_from_the_order_is_quarantined() -> None:
    assert kind(decide(an_order(), an_update(SUCCESS, currency="EUR"), NOW)) == "quarantine:currency_mismatch"


def test_an_update_without_a_currency_is_not_a_currency_mismatch() -> None:
    assert kind(decide(an_order(), an_update(SUCCESS, currency=None), NOW)) == "apply"


def test_an_update_for_an_unknown_order_is_quarantined() -> None:
    decision = decide(None, an_update(SUCCESS, out_trade_no="NOPE"), NOW)
    assert isinstance(decision, Quarantine)
    assert decision.reason is QuarantineReason.UNKNOWN_ORDER
    assert "NOPE" in decision.detail


def test_deciding_an_update_against_another_order_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="OTHER"):
        decide(an_order(), an_update(SUCCESS, out_trade_no="OTHER"), NOW)


# --- what an applied change records ---------------------------------------------------------------------


def test_a_payment_records_the_trade_no_and_the_notify_id_that_made_the_change() -> None:
    paid = applied(decide(an_order(), an_update(SUCCESS, notify_id="n-pay"), NOW))
    assert (paid.trade_no, paid.notify_id) == (TRADE_NO, "n-pay")


def test_an_update_without_a_trade_no_keeps_the_one_already_known() -> None:
    finished = applied(decide(an_order(SUCCESS), an_update(FINISHED, trade_no=None), NOW))
    assert finished.trade_no == TRADE_NO


def test_a_zero_refund_fee_on_a_payment_is_not_recorded() -> None:
    assert applied(decide(an_order(), an_update(SUCCESS, refund_fee=Decimal("0.00")), NOW)).refund_fee is None


def test_a_query_result_without_a_notify_id_moves_the_order_through_the_same_machine() -> None:
    paid = applied(decide(an_order(), an_update(SUCCESS, notify_id=None), NOW))
    assert (paid.status, paid.notify_id) == (SUCCESS, None)


# --- refunds: a TRADE_SUCCESS whose running refund_fee grew is a change that keeps the status -----------------

# (order status, closed reason, stored refund_fee) x (update status, update refund_fee) -> decision.
REFUND_DECISIONS = [
    (SUCCESS, None, None, SUCCESS, "5.00", "apply"),  # first partial refund
    (SUCCESS, None, "5.00", SUCCESS, "8.00", "apply"),  # a second partial refund
    (SUCCESS, None, "5.00", SUCCESS, "5.00", "duplicate"),  # the same refund notified again
    (SUCCESS, None, "8.00", SUCCESS, "5.00", "stale"),  # the first refund's notice arriving after the second
    (SUCCESS, None, None, SUCCESS, "0.00", "duplicate"),  # a payment notice that says "nothing refunded"
    (SUCCESS, None, "5.00", CLOSED, "12.34", "apply"),  # the refund that empties the trade closes it
    (WAIT, None, None, SUCCESS, "5.00", "apply"),  # paid notice lost: the refund notice proves the payment
    (FINISHED, None, None, FINISHED, "5.00", "duplicate"),  # a finished trade cannot be refunded
    (CLOSED, REFUNDED, "12.34", SUCCESS, "5.00", "stale"),  # a partial refund notice after the full refund
    (CLOSED, REFUNDED, "12.34", CLOSED, "12.34", "duplicate"),
    (CLOSED, TIMEOUT, None, SUCCESS, "5.00", "return"),
    (SUCCESS, None, None, SUCCESS, "12.35", "quarantine:refund_exceeds_total"),
    (SUCCESS, None, None, CLOSED, "99.00", "quarantine:refund_exceeds_total"),
]


@pytest.mark.parametrize(
    ("status", "closed_reason", "stored", "incoming", "refund_fee", "expected"),
    REFUND_DECISIONS,
    ids=[f"{s}({f})<-{i}({r})" for s, _, f, i, r, _ in REFUND_DECISIONS],
)
def test_decide_treats_each_refund_notice_as_the_table_says(
    status: OrderStatus,
    closed_reason: ClosedReason | None,
    stored: str | None,
    incoming: OrderStatus,
    refund_fee: str,
    expected: str,
) -> None:
    order = an_order(status, closed_reason, refund_fee=Decimal(stored) if stored else None)
    assert kind(decide(order, an_update(incoming, refund_fee=Decimal(refund_fee)), NOW)) == expected


def test_a_partial_refund_keeps_the_status_and_records_the_running_total() -> None:
    order = an_order(SUCCESS)
    refunded = applied(decide(order, an_update(SUCCESS, refund_fee=Decimal("5.00"), notify_id="n-r1"), NOW))
    assert (refunded.status, refunded.refund_fee, refunded.closed_reason) == (SUCCESS, Decimal("5.00"), None)
    assert (refunded.version, refunded.notify_id) == (order.version + 1, "n-r1")


def test_the_full_refund_closes_the_order_as_refunded() -> None:
    order = an_order(SUCCESS, refund_fee=Decimal("5.00"))
    closed = applied(decide(order, an_update(CLOSED, refund_fee=TOTAL), NOW))
    assert (closed.status, closed.closed_reason, closed.refund_fee) == (CLOSED, REFUNDED, TOTAL)


def test_a_smaller_refund_total_never_lowers_the_stored_one() -> None:
    order = an_order(SUCCESS, refund_fee=Decimal("8.00"))
    closed = applied(decide(order, an_update(CLOSED, refund_fee=Decimal("5.00")), NOW))
    assert closed.refund_fee == Decimal("8.00")


# --- legacy cross-border (mapi): payments end TRADE_FINISHED, and forex_refund still refunds them -------------

# The same notices as REFUND_DECISIONS where they differ or matter, decided with LEGACY_REFUNDABLE_STATUSES.
LEGACY_REFUND_DECISIONS = [
    (FINISHED, None, None, FINISHED, "5.00", "apply"),  # a partial refund keeps TRADE_FINISHED
    (FINISHED, None, "5.00", FINISHED, "8.00", "apply"),
    (FINISHED, None, "5.00", FINISHED, "5.00", "duplicate"),
    (FINISHED, None, "8.00", FINISHED, "5.00", "stale"),
    (FINISHED, None, "5.00", CLOSED, "12.34", "apply"),  # the refund that empties it closes it
    (FINISHED, None, None, CLOSED, None, "quarantine:illegal_transition"),  # a finished trade never expires
    (FINISHED, None, None, CLOSED, "99.00", "quarantine:refund_exceeds_total"),
    (SUCCESS, None, None, SUCCESS, "5.00", "apply"),  # TRADE_SUCCESS is accepted for legacy too (§2.2)
    (CLOSED, REFUNDED, "12.34", FINISHED, "5.00", "quarantine:illegal_transition"),
    (CLOSED, TIMEOUT, None, CLOSED, "12.34", "duplicate"),
]


@pytest.mark.parametrize(
    ("status", "closed_reason", "stored", "incoming", "refund_fee", "expected"),
    LEGACY_REFUND_DECISIONS,
    ids=[f"{s}({f})<-{i}({r})" for s, _, f, i, r, _ in LEGACY_REFUND_DECISIONS],
)
def test_decide_with_the_legacy_refundable_statuses_refunds_a_finished_order(
    status: OrderStatus,
    closed_reason: ClosedReason | None,
    stored: str | None,
    incoming: OrderStatus,
    refund_fee: str | None,
    expected: str,
) -> None:
    order = an_order(status, closed_reason, refund_fee=Decimal(stored) if stored else None)
    update = an_update(incoming, refund_fee=Decimal(refund_fee) if refund_fee else None)
    assert kind(decide(order, update, NOW, LEGACY_REFUNDABLE_STATUSES)) == expected


def test_a_legacy_full_refund_of_a_finished_order_closes_it_as_refunded() -> None:
    order = an_order(FINISHED, refund_fee=Decimal("5.00"))
    closed = applied(decide(order, an_update(CLOSED, refund_fee=TOTAL), NOW, LEGACY_REFUNDABLE_STATUSES))
    assert (closed.status, closed.closed_reason, closed.refund_fee) == (CLOSED, REFUNDED, TOTAL)


def test_open_platform_keeps_a_finished_order_unrefundable() -> None:
    assert {SUCCESS} == REFUNDABLE_STATUSES
    assert LEGACY_REFUNDABLE_STATUSES == PAID_STATUSES
    partial = an_update(FINISHED, refund_fee=Decimal("5.00"))
    assert kind(decide(an_order(FINISHED), partial, NOW)) == "duplicate"
    full = an_update(CLOSED, refund_fee=TOTAL)
    assert kind(decide(an_order(FINISHED), full, NOW)) == "quarantine:illegal_transition"


# --- the order value -------------------------------------------------------------------------------------


def test_a_created_order_waits_for_payment_at_version_one() -> None:
    order = a_new_order()
    assert order == an_order()


@pytest.mark.parametrize(
    ("status", "closed_reason"),
    [(CLOSED, None), (WAIT, TIMEOUT), (SUCCESS, REFUNDED), (FINISHED, REFUNDED)],
)
def test_an_order_refuses_a_closed_reason_that_does_not_fit_its_status(
    status: OrderStatus, closed_reason: ClosedReason | None
) -> None:
    with pytest.raises(ValueError, match="closed_reason"):
        an_order(status, closed_reason)


@pytest.mark.parametrize(
    ("status", "closed_reason", "was_paid"),
    [
        (WAIT, None, False),
        (SUCCESS, None, True),
        (FINISHED, None, True),
        (CLOSED, TIMEOUT, False),
        (CLOSED, REFUNDED, True),
    ],
)
def test_an_order_knows_whether_it_was_ever_paid(
    status: OrderStatus, closed_reason: ClosedReason | None, was_paid: bool
) -> None:
    assert an_order(status, closed_reason).was_paid is was_paid


# --- from a notification ----------------------------------------------------------------------------------


def a_notification(**changes: object) -> Notification:
    fields: dict[str, object] = {
        "protocol": AlipayProtocol.OPENAPI,
        "notify_id": "n-1",
        "notify_type": "trade_status_sync",
        "notify_time": "2025-01-01 08:05:00",
        "trade_status": "TRADE_SUCCESS",
        "out_trade_no": "ORDER-1",
        "trade_no": TRADE_NO,
        "total_amount": TOTAL,
        "currency": None,
        "refund_fee": None,
        "app_id": "2021000000000000",
        "seller_id": "2088000000000000",
        "charset": "utf-8",
        "fields": MappingProxyType({}),
    }
    fields.update(changes)
    return Notification(**fields)  # type: ignore[arg-type]


def test_an_update_from_a_notification_carries_its_facts_and_the_callers_clock() -> None:
    update = PaymentUpdate.from_notification(a_notification(refund_fee=Decimal("0.00")), occurred_at=NOW)
    assert update == an_update(SUCCESS, currency=None, refund_fee=Decimal("0.00"))
    assert update.trade_status is SUCCESS


def test_an_update_from_a_legacy_notification_keeps_its_currency() -> None:
    notification = a_notification(protocol=AlipayProtocol.MAPI, currency="USD", app_id=None)
    assert PaymentUpdate.from_notification(notification, occurred_at=NOW).currency == "USD"


def test_an_empty_trade_no_in_a_notification_becomes_none() -> None:
    assert PaymentUpdate.from_notification(a_notification(trade_no=""), occurred_at=NOW).trade_no is None
