"""A reconciler that cannot starve (issue 15 #8), through its own local stack: 60 orders Alipay cannot settle (a
buyer's long-timeout orders, still waiting at Alipay) are ahead of a lost payment in the waiting index; each run makes
at most 50 gateway calls. Oldest first and nothing set aside, the lost payment was never reached; with each order's
own schedule, the second run reaches it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.e2e.conftest import LocalStack, wait_for

STUCK = 60


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    return openapi_stack


def test_a_lost_payment_behind_sixty_unsettleable_orders_is_found(stack: LocalStack) -> None:
    def stuck_order(_: int) -> str:
        order = stack.create_order("3.00", "USD", timeout="1d")
        # The buyer opened the cashier and left: Alipay holds the trade waiting for a day.
        assert stack.pay(order["order_info"], outcome="pending", notify_delay=3600)["resultStatus"] == "8000"
        return str(order["out_trade_no"])

    with ThreadPoolExecutor(max_workers=4) as pool:
        stuck = list(pool.map(stuck_order, range(STUCK)))
    lost = stack.create_order("31.00", "USD")
    # Paid, but every notification is dropped (and the stuck orders' pending payments with them): only the reconciler
    # can find this payment.
    assert stack.pay(lost["order_info"], notify_delay=30)["resultStatus"] == "9000"
    assert stack.http.post(f"{stack.sandbox}/sandbox/stop-retries").status_code == 200

    paid = wait_for("the lost payment to be found", lambda: stack._order_in(lost["out_trade_no"], "TRADE_SUCCESS"), 90)

    assert [c["applied_by"] for c in paid["history"]] == ["reconciliation"]
    waiting = [stack.order(number) for number in stuck[:5]]
    assert {o["status"] for o in waiting} == {"WAIT_BUYER_PAY"}  # left waiting, each on its own schedule
