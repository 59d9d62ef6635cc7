"""Legacy ``mobile.securitypay.pay`` payments through the local stack (RSA, ``notify_verify``, TRADE_FINISHED)."""

from __future__ import annotations

import time
import uuid
from collections import Counter

import pytest

from chalicelib.alipay.keys import load_private_key
from chalicelib.alipay.signing import SignType
from tests.alipay_fixtures import mapi_notification_fields, notification_body
from tests.e2e.conftest import BUYER, LocalStack

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}


@pytest.fixture(scope="module")
def stack(mapi_stack: LocalStack) -> LocalStack:
    return mapi_stack


def event_types(events: list[dict[str, object]]) -> Counter[object]:
    return Counter(e["detail-type"] for e in events)


def test_a_legacy_payment_finishes_the_order_with_one_paid_and_one_finished_event(stack: LocalStack) -> None:
    order = stack.create_order("12.34", "USD", buyer=BUYER)
    number = order["out_trade_no"]
    assert order["order_info"].startswith('_input_charset="utf-8"')

    result = stack.pay(order["order_info"])

    assert result["resultStatus"] == "9000"
    attempts = stack.wait_for_acknowledged(number)
    assert [(a["trade_status"], a["status"], a["body"]) for a in attempts] == [("TRADE_FINISHED", 200, "success")]
    stack.wait_for_status(number, "TRADE_FINISHED")
    events = stack.tap.settled(number, ["OrderPaid", "OrderFinished"])
    assert event_types(events) == {"OrderPaid": 1, "OrderFinished": 1}
    assert {e["detail"]["previous_status"] for e in events} == {"WAIT_BUYER_PAY"}
    checked = stack.client_result(number, result)
    assert checked.status_code == 200
    assert checked.json() == {"verified": True, "status": "TRADE_FINISHED"}


def test_duplicate_legacy_deliveries_change_the_order_once(stack: LocalStack) -> None:
    order = stack.create_order("8.80", "USD")
    number = order["out_trade_no"]

    stack.pay(order["order_info"], duplicates=2)

    stack.wait_for_acknowledged(number, deliveries=3)
    stack.wait_for_status(number, "TRADE_FINISHED")
    assert event_types(stack.tap.settled(number, ["OrderPaid", "OrderFinished"])) == {
        "OrderPaid": 1,
        "OrderFinished": 1,
    }


def test_a_tampered_or_unsent_legacy_notification_is_answered_fail(stack: LocalStack) -> None:
    order = stack.create_order("12.34", "USD")
    number = order["out_trade_no"]
    alipay_key = load_private_key((stack.state_dir / "alipay_sandbox_private_key.pem").read_bytes())
    fields = mapi_notification_fields(
        seller_id=stack.info["partner_id"], out_trade_no=number, notify_id=uuid.uuid4().hex, total_fee="12.34"
    )
    genuine = notification_body(fields, alipay_key, sign_type=SignType.RSA)
    tampered = genuine.replace(b"total_fee=12.34", b"total_fee=0.01")
    assert tampered != genuine

    rejected = stack.http.post(f"{stack.api}/alipay/notify", data=tampered, headers=FORM)
    # Signed with Alipay's key but never sent by Alipay: notify_verify at the sandbox's gateway says so.
    unsent = stack.http.post(f"{stack.api}/alipay/notify", data=genuine, headers=FORM)

    assert (rejected.status_code, rejected.text) == (400, "fail")
    assert (unsent.status_code, unsent.text) == (400, "fail")
    time.sleep(2.0)  # had anything been queued, the consumer would have applied it by now
    assert stack.order(number)["status"] == "WAIT_BUYER_PAY"
    assert stack.tap.events(number) == []


# --- Alipay as it really answers (issue 16): the sandbox sends the genuine field sets ----------------------------


def test_a_legacy_web_payment_in_alipays_genuine_shapes_is_shown_paid_and_refunded_as_the_product_it_was(
    stack: LocalStack,
) -> None:
    from urllib.parse import parse_qs, urlsplit

    from tests.e2e.test_web_checkout import create_web_order, pay_at_the_cashier, result_status

    order = create_web_order(stack, "page")
    number = order["out_trade_no"]
    request = parse_qs(urlsplit(order["payment_url"]).query)
    assert request["timeout_rule"] == ["12h"]  # the default 30m is not a rule Alipay enables by default
    location = pay_at_the_cashier(stack, order["payment_url"])

    # The return carries exactly what genuine create_forex_trade returns carry: no is_success, no notify_id.
    returned = parse_qs(urlsplit(location).query)
    genuine = ["currency", "out_trade_no", "sign", "sign_type", "total_fee", "trade_no", "trade_status"]
    assert sorted(returned) == genuine
    page = stack.http.get(location, allow_redirects=False)
    assert page.status_code == 200, page.text
    assert result_status(page.text) == "TRADE_FINISHED"  # the notification's or a verified single_trade_query's word
    stack.wait_for_acknowledged(number)  # the notification, without seller_id or partner, was answered success
    stack.wait_for_status(number, "TRADE_FINISHED")

    # forex_refund names NEW_OVERSEAS_SELLER and gmt_return as Alipay's pages give it; the reply declares GBK.
    refunded = stack.refund(number, {"amount": "2.34", "out_request_no": "g1"})
    assert refunded.status == 201, refunded.body
    assert refunded.json()["refund_fee"] == "2.34"
    assert stack.trade(number)["refund_fee"] == "2.34"


def test_a_verified_single_trade_query_confirms_a_payment_whose_notification_is_late(stack: LocalStack) -> None:
    order = stack.create_order("7.70", "USD", buyer=BUYER)
    number = order["out_trade_no"]
    stack.pay(order["order_info"], notify_delay=30.0)  # paid at Alipay; its notification not sent yet

    # "8000, processing": the product asks Alipay (single_trade_query, its signed answer verified) and applies it.
    checked = stack.client_result(number, {"resultStatus": "8000", "result": "", "memo": ""})

    assert checked.status_code == 200, checked.text
    assert checked.json()["status"] == "TRADE_FINISHED"
    assert stack.trade(number)["attempts"] == []  # nothing was delivered: Alipay's query answer moved the order
    assert event_types(stack.tap.settled(number, ["OrderPaid", "OrderFinished"])) == {
        "OrderPaid": 1,
        "OrderFinished": 1,
    }
