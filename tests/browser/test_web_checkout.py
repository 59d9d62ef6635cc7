"""The web checkout in a real browser (issue 7): a shopper on the merchant's site is sent to Alipay's cashier (the
sandbox's), pays or cancels there, and comes back to the verified return page, ``GET /alipay/return``.

Each test runs once per protocol (Open Platform and legacy Global), each against a local stack of its own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
import requests

from tests.browser.harness import CHROMIUM, MerchantSite, screenshot
from tests.e2e.conftest import WAIT_SECONDS, LocalStack

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

SUBJECT = "Browser T-shirt"
AMOUNT = "12.34"
CURRENCY = "USD"
# What the return query carries the amount in: Open Platform, then legacy Global (create_forex_trade).
AMOUNT_KEYS = ("total_amount", "total_fee")
# A paid order's status: legacy Global's forex trades are paid as TRADE_FINISHED (as in tests/e2e/test_mapi_payments).
PAID_STATUS = {"openapi": "TRADE_SUCCESS", "mapi": "TRADE_FINISHED"}


def create_web_order(stack: LocalStack, channel: str) -> dict[str, Any]:
    """The merchant's backend creates the web order (signed ``POST /merchant/orders``), returning to the API's own
    result page."""
    order = stack.create_order(
        AMOUNT, CURRENCY, subject=SUBJECT, channel=channel, return_url=f"{stack.api}/alipay/return"
    )
    assert order["channel"] == channel
    assert order["payment_url"], order
    assert "<form" in order["payment_form"].lower(), order["payment_form"]
    return order


def assert_cashier_shows_order(page: Page) -> None:
    page.wait_for_selector("#pay")
    assert page.inner_text("#cashier-subject").strip() == SUBJECT
    assert page.inner_text("#cashier-amount").strip() == f"{AMOUNT} {CURRENCY}"
    assert page.is_visible("#pay")
    assert page.is_visible("#cancel")


def result_status(page: Page, out_trade_no: str, paid: str) -> str:
    """The result page's server-side status, reloading it until it says ``paid`` (or the wait is over)."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        status_element = page.wait_for_selector("#order-status")
        assert status_element is not None
        status = status_element.get_attribute("data-status") or ""
        assert page.inner_text("#out-trade-no").strip() == out_trade_no
        if status == paid or time.monotonic() > deadline:
            return status
        time.sleep(0.5)
        page.reload()


def pay_in_browser(stack: LocalStack, page: Page) -> tuple[dict[str, Any], str]:
    """A ``page`` order paid through the cashier; the order and the return URL the browser landed on."""
    order = create_web_order(stack, "page")
    out_trade_no = order["out_trade_no"]
    page.goto(order["payment_url"])
    assert_cashier_shows_order(page)
    screenshot(page, f"{stack.info['protocol']}-cashier-{out_trade_no}")
    page.click("#pay")
    page.wait_for_selector("#order-status")
    landed = page.url
    assert landed.startswith(f"{stack.api}/alipay/return?"), landed
    return order, landed


def test_chromium_renders_the_api(stack: LocalStack, page: Page) -> None:
    """The install and the launch: Debian's Chromium, headless, loads a page of the local API."""
    response = page.goto(f"{stack.api}/health")
    assert response is not None
    assert response.status == 200, response.text()
    assert "ok" in page.inner_text("body"), "the health page did not render"
    screenshot(page, f"{stack.info['protocol']}-health")
    print(f"{CHROMIUM}: {stack.api}/health rendered")


def test_page_order_paid_in_the_cashier_lands_on_a_verified_result_page(stack: LocalStack, page: Page) -> None:
    order, landed = pay_in_browser(stack, page)
    out_trade_no = order["out_trade_no"]
    paid = PAID_STATUS[stack.info["protocol"]]
    status = result_status(page, out_trade_no, paid)
    screenshot(page, f"{stack.info['protocol']}-result-{out_trade_no}")
    assert status == paid, f"the result page says {status!r} at {landed}"
    assert page.inner_text("#order-status").strip(), "the status element has no text"
    assert not page.query_selector("#error")
    # The server side agrees: the notification went through the webhook, the queue and the consumer.
    assert stack.wait_for_status(out_trade_no, paid)["status"] == paid


def test_wap_order_cancelled_in_the_cashier_stays_unpaid(
    stack: LocalStack, page: Page, merchant_site: MerchantSite
) -> None:
    order = create_web_order(stack, "wap")
    out_trade_no = order["out_trade_no"]
    # The merchant's page is the auto-submitting form: the browser POSTs it to the gateway and lands on the cashier.
    merchant_site.html = f"<!doctype html><html><body>{order['payment_form']}</body></html>"
    page.goto(merchant_site.url)
    assert_cashier_shows_order(page)
    assert not page.url.startswith(merchant_site.url), "the form did not submit itself"
    page.click("#cancel")
    page.wait_for_selector("#pay", state="detached")  # the cashier is gone: whatever page cancelling leads to
    page.wait_for_load_state()
    time.sleep(2.0)  # a notification, if cancelling wrongly sent one, would arrive now
    screenshot(page, f"{stack.info['protocol']}-cancelled-{out_trade_no}")
    status_element = page.query_selector("#order-status")
    if status_element is not None:
        assert status_element.get_attribute("data-status") not in PAID_STATUS.values(), page.url
    assert stack.order(out_trade_no)["status"] == "WAIT_BUYER_PAY"
    # Nothing was paid at the sandbox either: no notification was ever acknowledged.
    trade = stack.http.get(f"{stack.sandbox}/sandbox/trades/{out_trade_no}")
    if trade.status_code == 200:
        assert not any(attempt["acknowledged"] for attempt in trade.json().get("attempts", [])), trade.text


def test_tampered_return_shows_an_error_page(stack: LocalStack, page: Page) -> None:
    order, landed = pay_in_browser(stack, page)
    parts = urlsplit(landed)
    query = parse_qsl(parts.query, keep_blank_values=True)
    keys = [key for key, _ in query]
    amount_key = next((key for key in AMOUNT_KEYS if key in keys), None)
    assert amount_key, f"the return URL carries no amount ({AMOUNT_KEYS}): {keys}"
    tampered_query = [(key, "0.01" if key == amount_key else value) for key, value in query]
    tampered = urlunsplit(parts._replace(query=urlencode(tampered_query)))
    response = page.goto(tampered)
    assert response is not None
    page.wait_for_selector("#error")
    screenshot(page, f"{stack.info['protocol']}-tampered-{order['out_trade_no']}")
    assert not page.query_selector("#order-status"), "a tampered return must not show an order status"
    assert 400 <= response.status < 500, f"a tampered return answered HTTP {response.status}"
    # The untampered URL still verifies: it was the change that was refused.
    assert requests.get(landed, timeout=10).status_code == 200
