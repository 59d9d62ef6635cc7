"""``make demo``: one Alipay payment through a fresh local stack, over HTTP, told step by step.

Each step is taken by the caller the API admits for it: the merchant's backend (SigV4-signed with the stack's
``merchant_credentials``) prices a product in the catalogue; a buyer (an ID token from the stack's identity
provider) orders it, pays in the sandbox and reads their own order; the merchant then reads the full order.
On Antom (``ALIPAY_PROTOCOL=antom``) the order is created at the sandbox's Antom and paid there, and the merchant
refunds it (``pay_one_order_at_antom``).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import urllib3

from devstack.stack import StackError, StackProcess
from ops.client import MerchantClient

T = TypeVar("T")

STEP_TIMEOUT_SECONDS = 20.0
# Open Platform reports a payment as TRADE_SUCCESS; the legacy service, whose trades cannot be refunded
# in the same way, reports it as TRADE_FINISHED straight away.
PAID = ("TRADE_SUCCESS", "TRADE_FINISHED")
SKU = "tshirt"
PRODUCT = {"subject": "Demo T-shirt", "prices": {"USD": "12.34"}}
BUYER = "demo-buyer"  # the buyer's ``sub`` in the stack's user pool
ANTOM_OS_TYPE = "IOS"  # an Antom app order names the shopper's OS: Antom opens the wallet by it


class DemoFailed(Exception):
    """A step of the payment did not happen as it should."""


def http_json(method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """One JSON request: the status and the decoded answer (error statuses included)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - loopback http URLs we built
    if data is not None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = STEP_TIMEOUT_SECONDS) -> T:
    """Poll ``probe`` until it returns something; ``DemoFailed`` naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise DemoFailed(f"no {what} within {timeout:.0f} s")
        time.sleep(0.2)


def tap_events(stack: dict[str, Any]) -> Callable[[], list[dict[str, Any]]]:
    """A reader of the events tap queue: each call returns the EventBridge events received since the last."""
    import boto3

    sqs = boto3.client(
        "sqs",
        endpoint_url=stack["aws_endpoint_url"],
        region_name=stack["region"],
        aws_access_key_id="local",
        aws_secret_access_key="local",  # noqa: S106 - the emulator's dummy credentials
    )

    def read() -> list[dict[str, Any]]:
        response = sqs.receive_message(QueueUrl=stack["events_tap_queue_url"], MaxNumberOfMessages=10)
        messages = response.get("Messages", [])
        for message in messages:
            sqs.delete_message(QueueUrl=stack["events_tap_queue_url"], ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"]) for m in messages]

    return read


def _shorten(text: str, width: int = 96) -> str:
    return text if len(text) <= width else f"{text[: width - 30]}...{text[-24:]} ({len(text)} chars)"


def pay_one_order(stack: dict[str, Any], say: Callable[[str], None]) -> None:
    """The merchant prices a product; a buyer orders it, pays it in the sandbox and follows it to the paid event and
    the verified client result; the merchant reads the full order. On Antom: ``pay_one_order_at_antom``."""
    if stack.get("protocol") == "antom":
        pay_one_order_at_antom(stack, say)
        return
    api, sandbox = stack["api_url"], stack["sandbox_url"]
    read_events = tap_events(stack)
    merchant = MerchantClient.from_stack(stack)

    _price(merchant, say)
    as_buyer = _as_buyer(stack)
    order = _order(api, as_buyer, {}, say)
    number = order["out_trade_no"]
    say(f"3. order string       {_shorten(order['order_info'])}")

    status, paid = http_json(
        "POST", f"{sandbox}/sandbox/pay", {"order_info": order["order_info"], "outcome": "success"}
    )
    if status != 200 or paid.get("resultStatus") != "9000":
        raise DemoFailed(f"the sandbox did not pay: {status} {paid}")
    say('4. sandbox pays       POST /sandbox/pay -> resultStatus 9000 (the SDK\'s result, signed by "Alipay")')

    attempt = _acknowledged(sandbox, number, lambda a: True)
    say(
        f"5. notification       {attempt['trade_status']} POSTed to /alipay/notify, attempt {attempt['attempt']}"
        f" -> {attempt['status']} {attempt['body']!r}"
    )
    current = _paid(api, number, as_buyer)
    say(
        f"6. order paid         GET /orders/{number} -> {current['status']}, trade_no {current['trade_no']}"
        " (the buyer's own order)"
    )
    seen: list[dict[str, Any]] = []
    event = _event(read_events, seen, "OrderPaid", number)
    say(f"7. event              OrderPaid on the bus (seen on the tap queue), event_id {event['detail']['event_id']}")

    status, checked = http_json("POST", f"{api}/orders/{number}/client-result", paid, as_buyer)
    if status != 200 or checked.get("verified") is not True:
        raise DemoFailed(f"the client result was not verified: {status} {checked}")
    say(f"8. client result      POST /orders/{number}/client-result -> verified true, status {checked['status']}")

    full = _merchant_view(merchant, number)
    lines = ", ".join(f"{item['quantity']} x {item['sku']}" for item in full.get("items", []))
    say(
        f"9. merchant's view    GET /merchant/orders/{number} -> {full['status']} as the merchant (SigV4): "
        f"buyer {full['buyer']}, {lines}, {len(full.get('refunds', []))} refunds"
    )


def pay_one_order_at_antom(stack: dict[str, Any], say: Callable[[str], None]) -> None:
    """The same payment on Antom: the order is created at Antom (its cashier URL and paymentId are the answer), the
    shopper pays at the sandbox's Antom, notifyPayment reaches ``/antom/notify``; then the merchant refunds it in full
    and Antom's notifyRefund is acknowledged. Antom's app result is unsigned, so there is no client-result step."""
    api, sandbox = stack["api_url"], stack["sandbox_url"]
    read_events = tap_events(stack)
    merchant = MerchantClient.from_stack(stack)

    _price(merchant, say)
    as_buyer = _as_buyer(stack)
    order = _order(api, as_buyer, {"os_type": ANTOM_OS_TYPE}, say)
    number = order["out_trade_no"]
    say(
        f"3. created at Antom   payments/pay -> paymentId {order['payment_id']}, "
        f"normal_url {_shorten(order['normal_url'])}"
    )

    status, paid = http_json("POST", f"{sandbox}/sandbox/pay", {"out_trade_no": number, "outcome": "success"})
    if status != 200 or paid.get("status") != "SUCCESS":
        raise DemoFailed(f"the sandbox's Antom did not pay: {status} {paid}")
    say(f"4. sandbox pays       POST /sandbox/pay {{out_trade_no, outcome success}} -> {paid['status']} at Antom")

    attempt = _acknowledged(sandbox, number, lambda a: str(a.get("trade_status", "")).startswith("PAYMENT_RESULT"))
    say(
        f"5. notification       notifyPayment {attempt['trade_status']} POSTed to /antom/notify, attempt "
        f"{attempt['attempt']} -> {attempt['status']} {attempt['body']}"
    )
    current = _paid(api, number, as_buyer)
    if current.get("trade_no") != order["payment_id"]:
        raise DemoFailed(f"the paid order names trade_no {current.get('trade_no')}, not {order['payment_id']}")
    say(
        f"6. order paid         GET /orders/{number} -> {current['status']}, trade_no {current['trade_no']}"
        " (Antom's paymentId; the buyer's own order)"
    )
    seen: list[dict[str, Any]] = []
    event = _event(read_events, seen, "OrderPaid", number)
    say(f"7. event              OrderPaid on the bus (seen on the tap queue), event_id {event['detail']['event_id']}")

    refunded = merchant.request(
        "POST", f"/merchant/orders/{number}/refunds", {"amount": order["total_amount"], "reason": "make demo"}
    )
    refund = refunded.json() if refunded.body else None
    if refunded.status != 201 or not isinstance(refund, dict) or refund.get("status") != "REFUND_SUCCESS":
        raise DemoFailed(f"POST /merchant/orders/{number}/refunds answered {refunded.status}: {refunded.body[:300]!r}")
    say(
        f"8. refund             POST /merchant/orders/{number}/refunds -> 201 {refund['status']} as the merchant, "
        f"{refund['refund_amount']} {order['currency']}, out_request_no {refund['out_request_no']} "
        "(payments/refund by paymentId)"
    )
    note = _acknowledged(sandbox, number, lambda a: str(a.get("trade_status", "")).startswith("REFUND_RESULT"))
    refund_event = _event(read_events, seen, "OrderRefunded", number)
    say(
        f"9. refund notified    notifyRefund {note['trade_status']} POSTed to /antom/notify -> {note['status']}; "
        f"OrderRefunded on the bus, event_id {refund_event['detail']['event_id']}"
    )

    full = _merchant_view(merchant, number)
    lines = ", ".join(f"{item['quantity']} x {item['sku']}" for item in full.get("items", []))
    say(
        f"10. merchant's view   GET /merchant/orders/{number} -> {full['status']} as the merchant (SigV4): "
        f"buyer {full['buyer']}, {lines}, refund_fee {full.get('refund_fee')}, {len(full.get('refunds', []))} refund"
    )


def _price(merchant: MerchantClient, say: Callable[[str], None]) -> None:
    priced = merchant.request("PUT", f"/merchant/products/{SKU}", PRODUCT)
    if priced.status not in (200, 201):
        raise DemoFailed(f"PUT /merchant/products/{SKU} answered {priced.status}: {priced.body[:300]!r}")
    say(f"1. product priced     PUT /merchant/products/{SKU} -> {priced.status} as the merchant (SigV4), 12.34 USD")


def _as_buyer(stack: dict[str, Any]) -> dict[str, str]:
    """The buyer's headers: an ID token from the stack's identity provider."""
    status, token = http_json("POST", f"{stack['identity_url']}/token", {"sub": BUYER})
    if status != 200:
        raise DemoFailed(f"the identity provider answered {status}: {token}")
    return {"Authorization": f"Bearer {token['id_token']}"}


def _order(api: str, as_buyer: dict[str, str], options: dict[str, str], say: Callable[[str], None]) -> dict[str, Any]:
    status, order = http_json("POST", f"{api}/orders", {"items": [{"sku": SKU, "quantity": 1}], **options}, as_buyer)
    if status != 201:
        raise DemoFailed(f"POST /orders answered {status}: {order}")
    say(
        f"2. order created      POST /orders -> 201 as buyer {BUYER} (ID token), 1 x {SKU}, "
        f"out_trade_no {order['out_trade_no']}, {order['status']}, {order['total_amount']} {order['currency']} "
        "priced by the server"
    )
    return dict(order)


def _acknowledged(sandbox: str, number: str, wanted: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """The first delivery of a wanted notification that the API acknowledged (the sandbox records each attempt)."""

    def delivered() -> dict[str, Any] | None:
        _, trade = http_json("GET", f"{sandbox}/sandbox/trades/{number}")
        return next((a for a in (trade or {}).get("attempts", []) if a.get("acknowledged") and wanted(a)), None)

    return wait_for("acknowledged notification", delivered)


def _paid(api: str, number: str, as_buyer: dict[str, str]) -> dict[str, Any]:
    def order_paid() -> dict[str, Any] | None:
        _, current = http_json("GET", f"{api}/orders/{number}", headers=as_buyer)
        return current if current.get("status") in PAID else None

    return wait_for("paid status on the order", order_paid)


def _event(
    read_events: Callable[[], list[dict[str, Any]]], seen: list[dict[str, Any]], detail_type: str, number: str
) -> dict[str, Any]:
    """The ``detail_type`` event of order ``number`` on the tap queue (``seen`` keeps what was read before)."""

    def found() -> dict[str, Any] | None:
        seen.extend(read_events())
        return next(
            (e for e in seen if e.get("detail-type") == detail_type and e["detail"]["out_trade_no"] == number), None
        )

    return wait_for(f"{detail_type} event on the tap queue", found)


def _merchant_view(merchant: MerchantClient, number: str) -> dict[str, Any]:
    answer = merchant.get(f"/merchant/orders/{number}")
    full = answer.json() if answer.body else None
    if answer.status != 200 or not isinstance(full, dict) or full.get("buyer") != BUYER:
        raise DemoFailed(f"GET /merchant/orders/{number} answered {answer.status}: {answer.body[:300]!r}")
    return full


def main() -> int:
    """Run the demo; 0 when the payment went all the way through."""
    protocol = os.environ.get("ALIPAY_PROTOCOL") or "openapi"

    def say(line: str) -> None:
        print(line, flush=True)

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="alipay-demo-") as state:
        process = StackProcess(Path(state), protocol=protocol, time_scale=os.environ.get("SANDBOX_TIME_SCALE"))
        say(f"make demo: one payment through a local stack ({protocol}), state in {state}")
        try:
            stack = process.start()
            say(
                f"   stack ready         API {stack['api_url']}, sandbox {stack['sandbox_url']}, "
                f"identity {stack['identity_url']}, AWS {stack['aws_endpoint_url']} "
                f"({time.monotonic() - started:.1f} s)"
            )
            pay_one_order(stack, say)
        except (StackError, DemoFailed, OSError, urllib3.exceptions.HTTPError) as exc:
            say(f"make demo FAILED: {exc}")
            output = process.output().splitlines()
            if output:
                say("--- the end of the stack's output ---")
                say("\n".join(output[-40:]))
            return 1
        finally:
            status = process.stop()
        say(f"   stack stopped       (exit status {status}); the whole demo took {time.monotonic() - started:.1f} s")
    return 0
