"""The soak's money figures can fail: each bad figure is shown non-zero on records that hold it (quick tier, no stack);
and the merchant's retry the soak plays never makes a second refund of its own.

The soak itself (``test_soak.py``) only meets a product that keeps the money right; these feed ``MoneyDriver.figures``
the sandbox's records and the merchant's views of the wrong outcomes the soak is there to catch.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal
from typing import Any

import pytest

from ops.client import ApiAnswer
from tests.soak.money import LATE, PARTIAL, MoneyDriver, MoneyOrder


class Records:
    """What the sandbox (its trades) and the API (the merchant's order views) answer, per order."""

    def __init__(self) -> None:
        self.trades: dict[str, dict[str, Any]] = {}
        self.views: dict[str, dict[str, Any]] = {}

    def refund_order(self, no: str, total: str, at_alipay: dict[str, str], product: dict[str, str]) -> None:
        refunded = sum((Decimal(a) for a in at_alipay.values()), Decimal(0))
        closed = refunded == Decimal(total)
        self.trades[no] = _trade(total, at_alipay, paid=True)
        self.views[no] = {
            "status": "TRADE_CLOSED" if closed else "TRADE_SUCCESS",
            "refund_fee": str(refunded),
            "refunds": [{"out_request_no": r, "status": s, "kind": "refund"} for r, s in product.items()],
        }

    def late_order(self, no: str, total: str, at_alipay: dict[str, str]) -> None:
        self.trades[no] = _trade(total, at_alipay, paid=True)
        self.views[no] = {
            "status": "TRADE_CLOSED",
            "refunds": [{"out_request_no": r, "status": "REFUND_SUCCESS", "kind": "return"} for r in at_alipay],
        }


def _trade(total: str, at_alipay: dict[str, str], *, paid: bool) -> dict[str, Any]:
    refunded = sum((Decimal(a) for a in at_alipay.values()), Decimal(0))
    return {
        "total_amount": total,
        "refund_fee": f"{refunded:.2f}",
        "gmt_payment": "2026-12-05 10:00:00" if paid else None,
        "refunds": [{"out_request_no": r, "refund_amount": a} for r, a in at_alipay.items()],
        "refunds_processing": [],
    }


def driver(records: Records, orders: list[MoneyOrder]) -> MoneyDriver:
    money = MoneyDriver(
        [o.plan for o in orders],
        random.Random(1),
        merchant=None,  # type: ignore[arg-type]  # replaced below: no API here
        sandbox_url="http://sandbox.invalid",
        dynamodb=None,
        table="orders",
        say=print,
    )
    money.orders = orders
    money.counts.update({"refunds retried after a lost reply": 1, "refunds left to the sweep": 1})
    money.trade = records.trades.__getitem__  # type: ignore[method-assign, assignment]

    def merchant(method: str, path: str, *args: Any, **kwargs: Any) -> ApiAnswer:
        return ApiAnswer(200, {}, json.dumps(records.views[path.rsplit("/", 1)[-1]]).encode())

    money._merchant = merchant  # type: ignore[method-assign]
    return money


def events(*ids: str) -> list[dict[str, Any]]:
    return [{"detail": {"event_id": i}} for i in ids]


def figure(lines: list[tuple[str, str]], name: str) -> str:
    return dict(lines)[name]


def test_a_refund_carried_out_once_and_a_late_payment_returned_once_give_no_problem() -> None:
    records = Records()
    records.refund_order("o1", "10.00", {"r1": "3.00"}, {"r1": "REFUND_SUCCESS"})
    records.late_order("o2", "7.00", {"return-abc": "7.00"})
    orders = [
        MoneyOrder("o1", Decimal("10.00"), PARTIAL, asked={"r1": Decimal("3.00")}),
        MoneyOrder("o2", Decimal("7.00"), LATE),
    ]

    lines, problems = driver(records, orders).figures(
        events("o1:OrderPaid", "o1:OrderRefunded:r1", "o2:OrderClosed", "o2:PaymentReturned:return-abc")
    )

    assert problems == []
    assert figure(lines, "refunds confirmed (REFUND_SUCCESS)") == "1"
    assert figure(lines, "double-refunded (at the sandbox)") == "0"
    assert figure(lines, "money left captured on closed orders") == "0.00"
    assert figure(lines, "OrderRefunded / PaymentReturned (by event_id)") == "1 of 1 / 1 of 1"


def test_a_retry_that_made_a_second_refund_at_alipay_is_double_refunded() -> None:
    records = Records()
    # The merchant's retry of r1 reached Alipay under another number: the buyer got 3.00 twice.
    records.refund_order("o1", "10.00", {"r1": "3.00", "r1-again": "3.00"}, {"r1": "REFUND_SUCCESS"})
    orders = [MoneyOrder("o1", Decimal("10.00"), PARTIAL, asked={"r1": Decimal("3.00")})]

    lines, problems = driver(records, orders).figures(events("o1:OrderPaid", "o1:OrderRefunded:r1"))

    assert figure(lines, "double-refunded (at the sandbox)") == "1"
    assert "double-refunded 1" in problems


def test_a_late_payment_never_returned_is_money_left_captured_on_a_closed_order() -> None:
    records = Records()
    records.late_order("o2", "7.00", {})
    orders = [MoneyOrder("o2", Decimal("7.00"), LATE)]

    lines, problems = driver(records, orders).figures(events("o2:OrderClosed"))

    assert figure(lines, "money left captured on closed orders") == "7.00"
    assert "money left captured on closed orders: 7.00" in problems
    assert "1 late payments not returned" in problems


@pytest.mark.parametrize(
    ("tap", "why"),
    [
        (["o1:OrderPaid"], "1 missing, 0 unexpected"),  # the refund confirmed, its OrderRefunded never published
        (["o1:OrderPaid", "o1:OrderRefunded:r1", "o1:OrderRefunded:3.00"], "0 missing, 1 unexpected"),  # twice
    ],
)
def test_one_order_refunded_per_refund_or_the_soak_fails(tap: list[str], why: str) -> None:
    records = Records()
    records.refund_order("o1", "10.00", {"r1": "3.00"}, {"r1": "REFUND_SUCCESS"})
    orders = [MoneyOrder("o1", Decimal("10.00"), PARTIAL, asked={"r1": Decimal("3.00")})]

    _, problems = driver(records, orders).figures(events(*tap))

    assert f"money events: {why}" in problems


def test_a_refund_accepted_but_never_confirmed_is_left_unsettled() -> None:
    records = Records()
    # Answered 202 REFUND_PENDING; the sweep never settled it and Alipay never carried it out.
    records.refund_order("o1", "10.00", {}, {"s1": "REFUND_PENDING"})
    orders = [MoneyOrder("o1", Decimal("10.00"), PARTIAL, asked={"s1": Decimal("3.00")})]

    lines, problems = driver(records, orders).figures(events("o1:OrderPaid"))

    assert figure(lines, "refunds left unsettled") == "1"
    assert "1 orders with refunds left unsettled" in problems


def test_a_refund_sent_without_a_number_and_unanswered_is_resumed_under_the_number_the_order_shows() -> None:
    from tests.soak.money import LOST, Unanswered

    money = driver(Records(), [])
    order = MoneyOrder("o1", Decimal("10.00"), LOST)
    sent: list[object] = []

    def merchant(method: str, path: str, body: Any = None, *args: Any, **kwargs: Any) -> ApiAnswer:
        if method == "GET":  # the reservation was written before the API went down: the order shows it, pending
            view = {"refunds": [{"out_request_no": "srv-1", "refund_amount": "3.00", "status": "REFUND_PENDING"}]}
            return ApiAnswer(200, {}, json.dumps(view).encode())
        sent.append(dict(body))
        if len(sent) == 1:
            raise Unanswered("POST: no answer (ProtocolError)")
        return ApiAnswer(201, {}, json.dumps({"out_request_no": body["out_request_no"]}).encode())

    money._merchant = merchant  # type: ignore[method-assign]

    answer = money._refund(order, Decimal("3.00"), None)

    assert answer.status == 201
    first, resent = sent
    assert first == {"amount": "3.00", "reason": "soak"}
    assert resent == {"amount": "3.00", "reason": "soak", "out_request_no": "srv-1"}  # not a second refund
    assert (order.asked, order.resumed) == ({"srv-1": Decimal("3.00")}, 1)
