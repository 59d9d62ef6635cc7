"""Web checkout through the local stack over HTTP, as a browser would walk it (docs/local-stack.md's web flow).

Order (``channel: page``/``wap``) → GET ``payment_url`` (the sandbox's cashier) → POST Pay → 302 to
``/alipay/return`` with Alipay's signed query → the result page shows the server-side status; one ``OrderPaid``.
A tampered return gets the error page and changes nothing.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import LocalStack
from tests.e2e.walkthroughs import run_walkthrough, walkthrough

CASHIER_ACTION = re.compile(r'<form method="post" action="([^"]+)"><button id="pay"')
STATUS = re.compile(r'id="order-status" data-status="([A-Z_]+)">([A-Z_]+)<')


def create_web_order(stack: LocalStack, channel: str, amount: str = "12.34") -> dict[str, Any]:
    """The merchant's backend creates the web order (signed ``POST /merchant/orders``) for its checkout page."""
    order = stack.create_order(
        amount, "USD", subject="Web T-shirt", channel=channel, return_url=f"{stack.api}/alipay/return"
    )
    assert "order_info" not in order
    assert order["payment_url"].startswith(f"{stack.sandbox}/gateway.do?")
    return order


def pay_at_the_cashier(stack: LocalStack, payment_url: str, amount: str = "12.34") -> str:
    """Open the cashier from ``payment_url``, click Pay; the ``Location`` Alipay sends the browser to."""
    cashier = stack.http.get(payment_url)
    assert cashier.status_code == 200, cashier.text
    assert f'<p id="cashier-amount">{amount} USD</p>' in cashier.text
    assert '<p id="cashier-subject">Web T-shirt</p>' in cashier.text
    action = CASHIER_ACTION.search(cashier.text)
    assert action is not None, cashier.text
    paid = stack.http.post(f"{stack.sandbox}{action.group(1)}", allow_redirects=False)
    assert paid.status_code == 302, paid.text
    return str(paid.headers["Location"])


def result_status(html: str) -> str:
    match = STATUS.search(html)
    assert match is not None, html
    assert match.group(1) == match.group(2)
    return match.group(1)


def web_flow(stack: LocalStack, channel: str, expected_status: str, expected_events: list[str]) -> None:
    order = create_web_order(stack, channel)
    number = order["out_trade_no"]
    location = pay_at_the_cashier(stack, order["payment_url"])
    assert location.startswith(f"{stack.api}/alipay/return?")

    page = stack.http.get(location, allow_redirects=False)
    assert page.status_code == 200, page.text
    assert page.headers["Content-Type"].startswith("text/html")
    assert f'id="out-trade-no">{number}<' in page.text
    # The return itself marks nothing paid: the active query (or the notification, whichever came first) did.
    assert result_status(page.text) == expected_status
    stack.wait_for_acknowledged(number)
    stack.wait_for_status(number, expected_status)
    events = stack.tap.settled(number, expected_events)
    assert Counter(e["detail-type"] for e in events) == Counter(expected_events)

    again = stack.http.get(location)  # the shopper reloads the result page
    assert result_status(again.text) == expected_status

    tampered = stack.http.get(location.replace("12.34", "0.01"))
    assert tampered.status_code == 400
    assert 'id="error"' in tampered.text
    assert "order-status" not in tampered.text


@pytest.mark.parametrize("channel", ["page", "wap"])
def test_an_open_platform_web_payment_lands_on_the_result_page_paid_with_one_order_paid(
    openapi_stack: LocalStack, channel: str
) -> None:
    web_flow(openapi_stack, channel, "TRADE_SUCCESS", ["OrderPaid"])


@pytest.mark.parametrize("channel", ["page", "wap"])
def test_a_legacy_web_payment_lands_on_the_result_page_finished_with_one_paid_and_one_finished(
    mapi_stack: LocalStack, channel: str
) -> None:
    web_flow(mapi_stack, channel, "TRADE_FINISHED", ["OrderPaid", "OrderFinished"])


def test_a_forged_return_for_a_real_order_is_the_error_page_and_the_order_waits(openapi_stack: LocalStack) -> None:
    order = create_web_order(openapi_stack, "page", "3.00")
    number = order["out_trade_no"]
    forged = (
        f"{openapi_stack.api}/alipay/return?charset=utf-8&method=alipay.trade.page.pay.return&out_trade_no={number}"
        "&total_amount=3.00&trade_no=1&app_id=x&sign_type=RSA2&sign=AAAA"
    )
    response = openapi_stack.http.get(forged)
    assert response.status_code == 400
    assert 'id="error"' in response.text
    assert openapi_stack.order(number)["status"] == "WAIT_BUYER_PAY"


def test_cancelling_at_the_cashier_notifies_nothing_and_the_order_waits(openapi_stack: LocalStack) -> None:
    order = create_web_order(openapi_stack, "page", "4.00")
    cashier = openapi_stack.http.get(order["payment_url"])
    action = re.search(r'action="([^"]+)"><button id="cancel"', cashier.text)
    assert action is not None
    cancelled = openapi_stack.http.post(f"{openapi_stack.sandbox}{action.group(1)}", allow_redirects=False)
    assert cancelled.status_code == 200
    assert "Payment cancelled" in cancelled.text
    host = urlsplit(openapi_stack.api).netloc
    assert f'href="http://{host}/"' in cancelled.text
    assert openapi_stack.trade(order["out_trade_no"])["attempts"] == []
    assert openapi_stack.order(order["out_trade_no"])["status"] == "WAIT_BUYER_PAY"


@pytest.mark.skipif(shutil.which("curl") is None, reason="the walk-through uses curl")
def test_the_local_stack_docs_web_walkthrough_pays_and_refuses_a_tampered_return(openapi_stack: LocalStack) -> None:
    script = walkthrough("tests/e2e/test_web_checkout.py")

    result = run_walkthrough(script, openapi_stack.api, openapi_stack.sandbox, openapi_stack.state_dir / "stack.json")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ['data-status="TRADE_SUCCESS"', "400"]
