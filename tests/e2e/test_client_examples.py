"""The client examples of docs/clients.md, run where they can run: the APICloud example (docs/examples/apicloud/) and
the web checkout's script (docs/examples/web/) under Node against a local stack, with only the native alipayGlobal
module stubbed (it pays at the stack's Alipay sandbox over HTTP, as the native SDK pays at Alipay); every API call
is real. The outcome the example reports is checked against the order on the server."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any
from urllib.parse import urlencode

import pytest

from devstack.stack import PROJECT_DIR
from tests.e2e.conftest import BUYER, LocalStack
from tests.e2e.test_web_checkout import pay_at_the_cashier, result_status

HARNESSES = PROJECT_DIR / "tests" / "e2e" / "clients"
SKU = "example-tshirt"
NODE = shutil.which("node")
# Node 20 is what the examples are written for (fetch and crypto global); the machine's Node runs them.
pytestmark = pytest.mark.skipif(NODE is None, reason="the client examples run under Node.js, which is not installed")


@pytest.fixture(scope="module")
def stack(openapi_stack: LocalStack) -> LocalStack:
    """The stack with the product the examples order (its subject and price as the cashier helper expects)."""
    product = {"subject": "Web T-shirt", "prices": {"USD": "12.34"}}
    answer = openapi_stack.merchant.request("PUT", f"/merchant/products/{SKU}", product)
    assert answer.status in (200, 201), answer.body
    return openapi_stack


def node(harness: str, **given: Any) -> dict[str, Any]:
    """Run a harness with ``given`` as its input; its JSON output."""
    assert NODE is not None
    done = subprocess.run(
        [NODE, str(HARNESSES / harness)],
        env={**os.environ, "CHECKOUT": json.dumps(given)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def apicloud(stack: LocalStack, mode: str, **extra: Any) -> dict[str, Any]:
    return node(
        "apicloud_harness.js",
        apiUrl=stack.api,
        sandboxUrl=stack.sandbox,
        idToken=stack.buyer_token(BUYER),
        items=[{"sku": SKU, "quantity": 1}],
        mode=mode,
        **extra,
    )


def test_apicloud_a_paid_order_is_paid_because_the_server_says_so(stack: LocalStack) -> None:
    result = apicloud(stack, "success")
    assert "error" not in result, result
    assert result["moduleCalls"] == [["orderInfo"]]  # payOrder({orderInfo}), nothing else
    assert (result["resultStatus"], result["outcome"], result["report"]["verified"]) == ("9000", "paid", True)
    order = stack.order(result["outTradeNo"])
    assert (order["status"], order["buyer"], order["total_amount"]) == ("TRADE_SUCCESS", BUYER, "12.34")
    assert result["order"]["status"] == "TRADE_SUCCESS"


def test_apicloud_8000_waits_for_the_servers_word_then_paid(stack: LocalStack) -> None:
    result = apicloud(stack, "pending")
    assert (result["resultStatus"], result["outcome"]) == ("8000", "paid"), result
    assert stack.order(result["outTradeNo"])["status"] == "TRADE_SUCCESS"


def test_apicloud_6001_cancelled_leaves_the_order_waiting(stack: LocalStack) -> None:
    result = apicloud(stack, "cancel")
    assert (result["resultStatus"], result["outcome"]) == ("6001", "cancelled"), result
    assert result["report"]["status"] == "WAIT_BUYER_PAY"
    assert stack.order(result["outTradeNo"])["status"] == "WAIT_BUYER_PAY"


def test_apicloud_4000_an_order_alipay_refuses_is_failed_and_nothing_paid(stack: LocalStack) -> None:
    result = apicloud(stack, "tampered")
    assert (result["resultStatus"], result["outcome"]) == ("4000", "failed"), result
    assert "invalid-signature" in result["memo"]
    assert stack.order(result["outTradeNo"])["status"] == "WAIT_BUYER_PAY"


def test_apicloud_a_forged_9000_is_never_paid(stack: LocalStack) -> None:
    result = apicloud(stack, "forged", timeoutMs=1500)
    assert result["resultStatus"] == "9000"  # the module's number, read as the SDK's code
    assert (result["outcome"], result["report"]["verified"]) == ("pending", False), result
    assert stack.order(result["outTradeNo"])["status"] == "WAIT_BUYER_PAY"


def test_apicloud_an_api_refusal_reaches_the_app_with_its_code_and_message(stack: LocalStack) -> None:
    result = node(
        "apicloud_harness.js",
        apiUrl=stack.api,
        sandboxUrl=stack.sandbox,
        idToken=stack.buyer_token(BUYER),
        items=[{"sku": "no-such-product", "quantity": 1}],
        mode="success",
    )
    assert (result["status"], result["code"]) == (422, "invalid_field"), result
    assert "no-such-product" in result["error"]


@pytest.mark.parametrize("channel", ["page", "wap"])
def test_web_checkout_creates_the_order_pays_at_the_cashier_and_confirms_on_return(
    stack: LocalStack, channel: str
) -> None:
    token = stack.buyer_token(BUYER)
    order = node(
        "web_harness.js",
        step="create",
        apiUrl=stack.api,
        idToken=token,
        items=[{"sku": SKU, "quantity": 1}],
        channel=channel,
        returnUrl=f"{stack.api}/alipay/return",
    )
    assert "error" not in order, order
    assert order["payment_url"].startswith(f"{stack.sandbox}/gateway.do?")
    assert "<form" in order["payment_form"]
    # The browser at Alipay: the cashier, Pay, back to the product's return page.
    location = pay_at_the_cashier(stack, order["payment_url"])
    page = stack.http.get(location, allow_redirects=False)
    assert result_status(page.text) == "TRADE_SUCCESS"
    # RESULT_PAGE_URL's query, as /alipay/return appends it; the example asks the server all the same.
    search = "?" + urlencode({"out_trade_no": order["out_trade_no"], "status": "TRADE_SUCCESS"})
    confirmed = node("web_harness.js", step="confirm", apiUrl=stack.api, idToken=token, search=search)
    assert (confirmed["outcome"], confirmed["order"]["status"]) == ("paid", "TRADE_SUCCESS"), confirmed


def test_web_checkout_a_return_url_naming_an_unpaid_order_is_not_paid(stack: LocalStack) -> None:
    token = stack.buyer_token(BUYER)
    order = node(
        "web_harness.js",
        step="create",
        apiUrl=stack.api,
        idToken=token,
        items=[{"sku": SKU, "quantity": 1}],
        channel="page",
        returnUrl=f"{stack.api}/alipay/return",
    )
    # A hand-made result URL claiming success: the page believes the server, not the query.
    search = "?" + urlencode({"out_trade_no": order["out_trade_no"], "status": "TRADE_SUCCESS"})
    confirmed = node("web_harness.js", step="confirm", apiUrl=stack.api, idToken=token, search=search, timeoutMs=600)
    assert (confirmed["outcome"], confirmed["hint"], confirmed["order"]["status"]) == (
        "pending",
        "TRADE_SUCCESS",
        "WAIT_BUYER_PAY",
    )
