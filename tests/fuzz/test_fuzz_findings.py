"""Minimal reproducers of what the fuzzing found (K1-K8), kept as regression tests now that each is fixed."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from chalicelib.alipay import antom
from chalicelib.alipay.errors import AlipayError, VerificationError
from chalicelib.alipay.mapi import verify_securitypay_result
from chalicelib.alipay.openapi import verify_app_pay_result
from chalicelib.alipay.signing import SignType
from chalicelib.orders.model import OrderStatus
from tests.alipay_fixtures import (
    OUT_TRADE_NO,
    PARTNER,
    alipay_key,
    form_body,
    openapi_notification_fields,
    sign_fields,
)
from tests.fuzz.harness import (
    alipay_public_keys,
    client_result_event,
    invoke,
    make_fuzz_kit,
    notify_event,
    rest_event,
    return_event,
)

FORM = "application/x-www-form-urlencoded; charset=utf-8"
JSON = {"Content-Type": "application/json"}


def test_a_genuine_closed_notification_re_split_at_an_ampersand_in_its_subject_cannot_mark_the_order_paid() -> None:
    kit = make_fuzz_kit("openapi")
    # The buyer chose this subject when creating the order; Alipay later sends a genuine TRADE_CLOSED.
    subject = "x&total_amount=88.88&trade_no=1&trade_status=TRADE_SUCCESS&trade_status0="
    genuine = sign_fields(openapi_notification_fields(trade_status="TRADE_CLOSED", subject=subject), alipay_key())
    tail = f"&total_amount=88.88&trade_no={genuine['trade_no']}&trade_status=TRADE_CLOSED"
    forged = {**genuine, "subject": "x", "trade_no": "1", "trade_status": "TRADE_SUCCESS", "trade_status0": tail}
    reply = invoke(kit, notify_event(form_body(forged), FORM))
    for message in kit.queue.messages:
        kit.services.consumer.apply(message)
    # Before the fix: 200 success, and the consumer moved the unpaid order to TRADE_SUCCESS.
    assert (reply.status, reply.body) == (400, "fail")
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY


def test_a_genuine_value_holding_ampersand_name_cannot_be_born_so_its_undetectable_split_cannot_happen() -> None:
    # K1b, found by make fuzz after the K1 fix: a genuine subject "Tea & cakes&t=1", re-sent as subject="Tea & cakes"
    # and t="1", has the same signed content and no "&name=" left in any value, so the webhook cannot tell. The
    # guard is at the source: an order whose text holds "&name=" is never created, so Alipay never signs one.
    kit = make_fuzz_kit("openapi")
    for subject, status in (("Tea & cakes&t=1", 422), ("Tea & cakes", 201)):
        body = json.dumps({"subject": subject, "total_amount": "12.34", "currency": "USD"}).encode()
        path = "/merchant/orders"
        event = rest_event("POST", path, path, body=body.decode(), is_base64=False, headers=JSON)
        assert invoke(kit, event).status == status, subject


def test_an_unsigned_blank_currency_added_to_a_genuine_notification_is_not_read() -> None:
    kit = make_fuzz_kit("openapi")
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    reply = invoke(kit, notify_event(form_body({**signed, "currency": " "}), FORM))
    for message in kit.queue.messages:
        kit.services.consumer.apply(message)  # verifies the kept body, as in production
    # Before the fix: 200 success, then quarantined as currency_mismatch although Alipay signed no currency.
    # Now the unsigned blank field is not handed on: applied as the genuine payment it carries.
    if reply.status == 200:
        assert kit.order().status is OrderStatus.TRADE_SUCCESS
        assert kit.quarantine.records == {}
    else:
        assert (reply.status, kit.queue.messages) == (400, [])


def verify_open_platform(text: str) -> object:
    return verify_app_pay_result(text, alipay_public_keys(), sign_type=SignType.RSA2)


def verify_legacy(text: str) -> object:
    return verify_securitypay_result(text, alipay_public_keys(), sign_type=SignType.RSA)


def test_deeply_nested_json_in_an_app_pay_result_is_refused_with_an_alipay_error_at_every_depth() -> None:
    escaped = []
    for depth in [*range(1, 2500), 100_000]:
        text = '{"alipay_trade_app_pay_response":{"a":' + "[" * depth + "]" * depth + '},"sign":"QUFB"}'
        try:
            verify_open_platform(text)
        except AlipayError:
            continue
        except RecursionError:
            escaped.append(depth)
    assert escaped == []


@pytest.mark.parametrize(
    ("verify", "text"),
    [
        (verify_open_platform, '{"alipay_trade_app_pay_response":{"code":"\ud800"},"sign":"QUFB"}'),
        (verify_legacy, 'subject="\ud800"&sign_type="RSA"&sign="QUFB"'),
    ],
    ids=["app-pay-result", "legacy-result"],
)
def test_a_lone_surrogate_in_a_client_result_is_refused_with_an_alipay_error(
    verify: Callable[[str], object], text: str
) -> None:
    with pytest.raises(AlipayError):
        verify(text)


@pytest.mark.parametrize(
    ("charset", "subject"),
    [("bogus", "tea"), ("rot13", "tea"), ("hex", "tea"), ("utf-8\x00", "tea"), ("ascii", "茶"), ("gbk", "😀")],
)
def test_a_legacy_result_declaring_an_odd_input_charset_is_refused_with_an_alipay_error(
    charset: str, subject: str
) -> None:
    with pytest.raises(AlipayError):
        verify_legacy(f'_input_charset="{charset}"&subject="{subject}"&sign_type="RSA"&sign="QUFB"')


@pytest.mark.parametrize(
    ("protocol", "body"),
    [
        ("openapi", json.dumps({"resultStatus": "9000", "result": '{"alipay_trade_app_pay_response":{"a":"\ud800"}'
                                ',"sign":"QUFB"}'})),
        ("openapi", json.dumps({"resultStatus": "9000", "result": '{"x_response":' + "[" * 5000 + "]" * 5000 + "}"})),
        ("mapi", json.dumps({"resultStatus": "9000", "result": '_input_charset="bogus"&sign_type="RSA"&sign="QUFB"'})),
        ("openapi", "[" * 100_000 + "]" * 100_000),
    ],
    ids=["K4-surrogate", "K3-deep-result", "K5-input-charset", "K6-deep-body"],
)  # fmt: skip
def test_a_hostile_client_result_is_answered_without_a_500(protocol: str, body: str) -> None:
    kit = make_fuzz_kit(protocol)
    reply = invoke(kit, client_result_event(OUT_TRADE_NO, body.encode("ascii"), "application/json"))
    assert reply.status < 500, reply
    assert kit.order().version == 1


def test_a_legacy_return_alipay_signed_for_another_seller_gets_the_error_page_not_this_orders_status() -> None:
    # K7, found by the return page's fuzzing: a legacy merchant configures its partner, not a seller id, so the
    # return's seller_id went unchecked; a return Alipay signed for another seller, naming the same order number and
    # amount, showed this order's result page. A notification is held to the partner as seller; now a return too.
    kit = make_fuzz_kit("mapi")
    fields = {"is_success": "T", "out_trade_no": OUT_TRADE_NO, "trade_no": "2024010122001400000000000001",
              "trade_status": "TRADE_FINISHED", "total_fee": "88.88", "currency": "USD"}  # fmt: skip
    for seller_id, status in (("2088000000009999", 400), (PARTNER, 200)):
        signed = sign_fields({**fields, "seller_id": seller_id}, alipay_key(), sign_type=SignType.RSA)
        reply = invoke(kit, return_event(form_body(signed).decode("ascii")))
        assert reply.status == status, seller_id
        assert ('id="order-status"' in reply.body) is (status == 200), reply.body
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY


def test_an_antom_notification_nested_just_within_the_json_readers_depth_is_refused_with_a_typed_error() -> None:
    # K8, found while writing the Antom target (by reading, then reproduced here): json.loads nests as deep as the
    # interpreter's recursion limit allows, and flattening the document recursed once more per level, so a body just
    # within the reader's depth escaped parse_notification as RecursionError (a 500 at the webhook, a poison message
    # at the consumer) instead of being read or refused. Which depth does it depends on the stack: every one is tried.
    head = (
        '{"notifyType":"PAYMENT_RESULT","result":{"resultCode":"SUCCESS","resultStatus":"S"},"paymentRequestId":"o-1",'
        '"paymentId":"p-1","paymentAmount":{"currency":"USD","value":"100"},"deep":'
    )

    def parse(depth: int) -> str:
        body = (head + "[" * depth + "1" + "]" * depth + "}").encode()
        try:
            return antom.parse_notification(body).notify_id
        except VerificationError as exc:
            return f"refused: {exc}"

    # The reader's own limit, to the nearest 25 levels; then every depth just below it (where K8 lay) and at it.
    limit = next(d for d in range(25, 5000, 25) if "maximum recursion depth" in parse(d))
    outcomes = {parse(depth).split(":")[0] for depth in range(limit - 50, limit + 1)}
    assert outcomes == {"PAYMENT_RESULT", "refused"}
