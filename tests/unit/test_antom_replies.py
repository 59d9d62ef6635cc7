"""Antom's reply readers: every reply verified (``response-time``) before it is read; each status read as it means."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.alipay import antom
from chalicelib.alipay.errors import (
    ClientIdMismatch,
    InvalidField,
    MalformedMessage,
    MissingHeader,
    OrderMismatch,
    SignatureMismatch,
)
from tests.antom_kit import CLIENT_ID, keys, sign
from tests.keygen import rsa_key

RESPONSE_TIME = "2026-12-05T18:30:00+08:00"
Reader = Callable[..., Any]
READERS: dict[str, tuple[Reader, str]] = {
    "pay": (antom.read_pay, antom.PAY_PATH),
    "inquiry_payment": (antom.read_inquiry_payment, antom.INQUIRY_PAYMENT_PATH),
    "cancel": (antom.read_cancel, antom.CANCEL_PATH),
    "refund": (antom.read_refund, antom.REFUND_PATH),
    "inquiry_refund": (antom.read_inquiry_refund, antom.INQUIRY_REFUND_PATH),
}


def result(status: str, code: str, message: str = "") -> dict[str, str]:
    return {"resultStatus": status, "resultCode": code, "resultMessage": message}


def reply(name: str, data: dict[str, Any], **options: Any) -> Any:
    """Sign ``data`` as Antom's reply to ``name`` (over the request's path, with response-time), then read it."""
    reader, path = READERS[name]
    body = json.dumps(data, separators=(",", ":")).encode()
    headers = sign(body, path=path, time=RESPONSE_TIME, time_header="response-time")
    return reader(headers, body, client_id=CLIENT_ID, keys=keys(), **options)


# --- every reply is verified first ---------------------------------------------------------------------------

MINIMAL = {name: {"result": result("U", "UNKNOWN_EXCEPTION")} for name in READERS}


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_reply_is_refused_when_its_body_was_changed(name: str) -> None:
    reader, path = READERS[name]
    body = json.dumps(MINIMAL[name]).encode()
    headers = sign(body, path=path, time=RESPONSE_TIME, time_header="response-time")
    tampered = body.replace(b'"U"', b'"S"')
    with pytest.raises(SignatureMismatch):
        reader(headers, tampered, client_id=CLIENT_ID, keys=keys())


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_reply_is_refused_when_signed_by_another_key(name: str) -> None:
    reader, path = READERS[name]
    body = json.dumps(MINIMAL[name]).encode()
    headers = sign(body, key=rsa_key("other"), path=path, time=RESPONSE_TIME, time_header="response-time")
    with pytest.raises(SignatureMismatch):
        reader(headers, body, client_id=CLIENT_ID, keys=keys())


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_reply_is_refused_when_signed_for_another_api(name: str) -> None:
    reader, path = READERS[name]
    other = antom.PAY_PATH if path != antom.PAY_PATH else antom.REFUND_PATH
    body = json.dumps(MINIMAL[name]).encode()
    headers = sign(body, path=other, time=RESPONSE_TIME, time_header="response-time")
    with pytest.raises(SignatureMismatch):
        reader(headers, body, client_id=CLIENT_ID, keys=keys())


@pytest.mark.parametrize("name", sorted(READERS))
def test_each_reply_needs_its_response_time(name: str) -> None:
    reader, path = READERS[name]
    body = json.dumps(MINIMAL[name]).encode()
    headers = sign(body, path=path, time=RESPONSE_TIME, time_header="request-time")
    with pytest.raises(MissingHeader) as caught:
        reader(headers, body, client_id=CLIENT_ID, keys=keys())
    assert caught.value.header == "response-time"


@pytest.mark.parametrize("name", sorted(READERS))
def test_an_unsigned_reply_is_refused(name: str) -> None:
    reader, _ = READERS[name]
    body = json.dumps({"result": result("S", "SUCCESS")}).encode()
    with pytest.raises(MissingHeader):
        reader({"response-time": RESPONSE_TIME, "client-id": CLIENT_ID}, body, client_id=CLIENT_ID, keys=keys())


def test_a_reply_for_another_client_is_refused() -> None:
    body = json.dumps(MINIMAL["pay"]).encode()
    headers = sign(body, path=antom.PAY_PATH, client_id="OTHER", time=RESPONSE_TIME, time_header="response-time")
    with pytest.raises(ClientIdMismatch):
        antom.read_pay(headers, body, client_id=CLIENT_ID, keys=keys())


def test_a_signed_reply_without_result_is_refused() -> None:
    with pytest.raises(InvalidField):
        reply("pay", {"paymentId": "P1"})


def test_a_signed_reply_that_is_not_json_is_malformed() -> None:
    body = b"<html>busy</html>"
    headers = sign(body, path=antom.PAY_PATH, time=RESPONSE_TIME, time_header="response-time")
    with pytest.raises(MalformedMessage):
        antom.read_pay(headers, body, client_id=CLIENT_ID, keys=keys())


def test_a_reply_path_prefix_is_honoured_when_given() -> None:
    body = json.dumps(MINIMAL["pay"]).encode()
    path = "/ams/sandbox/api/v1/payments/pay"
    headers = sign(body, path=path, time=RESPONSE_TIME, time_header="response-time")
    assert antom.read_pay(headers, body, client_id=CLIENT_ID, keys=keys(), path=path).result_status == "U"


# --- pay ----------------------------------------------------------------------------------------------------


def test_pay_in_process_is_the_accepted_answer_with_the_urls() -> None:
    answer = reply(
        "pay",
        {
            "result": result("U", "PAYMENT_IN_PROCESS", "payment in process"),
            "paymentRequestId": "ORDER-1",
            "paymentId": "P1",
            "normalUrl": "https://cashier.example/x",
            "schemeUrl": "alipays://x",
            "applinkUrl": "https://applink.example/x",
            "paymentActionForm": '{"method":"GET"}',
        },
        out_trade_no="ORDER-1",
    )
    assert answer.accepted is True
    assert (answer.payment_id, answer.normal_url, answer.scheme_url) == (
        "P1",
        "https://cashier.example/x",
        "alipays://x",
    )
    assert answer.applink_url == "https://applink.example/x"
    assert answer.raw["paymentActionForm"] == '{"method":"GET"}'


def test_pay_urls_may_be_absent() -> None:
    answer = reply("pay", {"result": result("U", "PAYMENT_IN_PROCESS"), "normalUrl": "https://cashier.example/x"})
    assert answer.accepted
    assert (answer.scheme_url, answer.applink_url, answer.payment_id) == (None, None, None)


@pytest.mark.parametrize(
    ("status", "code"), [("F", "PARAM_ILLEGAL"), ("F", "REPEAT_REQ_INCONSISTENT"), ("U", "UNKNOWN_EXCEPTION")]
)
def test_pay_refused_or_unknown_is_not_accepted(status: str, code: str) -> None:
    answer = reply("pay", {"result": result(status, code)})
    assert answer.accepted is False
    assert (answer.result_status, answer.result_code) == (status, code)


def test_a_pay_reply_for_another_order_is_refused() -> None:
    with pytest.raises(OrderMismatch):
        reply(
            "pay", {"result": result("U", "PAYMENT_IN_PROCESS"), "paymentRequestId": "ORDER-2"}, out_trade_no="ORDER-1"
        )


# --- inquiryPayment ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["SUCCESS", "FAIL", "PROCESSING", "CANCELLED", "PENDING"])
def test_inquiry_reads_each_payment_status(status: str) -> None:
    answer = reply(
        "inquiry_payment",
        {
            "result": result("S", "SUCCESS"),
            "paymentStatus": status,
            "paymentRequestId": "ORDER-1",
            "paymentId": "P1",
            "paymentAmount": {"currency": "JPY", "value": "500"},
        },
        out_trade_no="ORDER-1",
    )
    assert (answer.found, answer.payment_status, answer.payment_id) == (True, status, "P1")
    assert (answer.amount, answer.currency) == (Decimal(500), "JPY")


def test_inquiry_of_a_payment_antom_does_not_know_is_not_found() -> None:
    answer = reply("inquiry_payment", {"result": result("F", "ORDER_NOT_EXIST", "order not exist")})
    assert answer.found is False
    assert answer.payment_status is None


@pytest.mark.parametrize(("status", "code"), [("F", "ACCESS_DENIED"), ("U", "UNKNOWN_EXCEPTION")])
def test_inquiry_failures_other_than_not_found_keep_found_true_and_name_the_code(status: str, code: str) -> None:
    answer = reply("inquiry_payment", {"result": result(status, code)})
    assert (answer.found, answer.payment_status, answer.result_status, answer.result_code) == (True, None, status, code)


@pytest.mark.parametrize(
    "data",
    [{"paymentStatus": "PAID"}, {}, {"paymentStatus": "SUCCESS", "paymentAmount": {"currency": "USD", "value": "1.5"}}],
)
def test_an_inquiry_success_without_a_usable_status_or_amount_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidField):
        reply("inquiry_payment", {"result": result("S", "SUCCESS"), **data})


def test_an_inquiry_answer_for_another_order_is_refused() -> None:
    with pytest.raises(OrderMismatch):
        reply(
            "inquiry_payment",
            {"result": result("S", "SUCCESS"), "paymentStatus": "SUCCESS", "paymentRequestId": "ORDER-2"},
            out_trade_no="ORDER-1",
        )


# --- cancel ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code", "cancelled", "found"),
    [("S", "SUCCESS", True, True), ("F", "ORDER_STATUS_INVALID", False, True), ("F", "ORDER_NOT_EXIST", False, False),
     ("U", "UNKNOWN_EXCEPTION", False, True)],
)  # fmt: skip
def test_cancel_answers(status: str, code: str, cancelled: bool, found: bool) -> None:
    answer = reply("cancel", {"result": result(status, code), "paymentRequestId": "ORDER-1"}, out_trade_no="ORDER-1")
    assert (answer.cancelled, answer.found, answer.result_code) == (cancelled, found, code)


def test_a_cancel_success_for_another_order_is_refused() -> None:
    with pytest.raises(OrderMismatch):
        reply("cancel", {"result": result("S", "SUCCESS"), "paymentRequestId": "ORDER-2"}, out_trade_no="ORDER-1")


# --- refund ---------------------------------------------------------------------------------------------------


def test_refund_success_names_the_refund() -> None:
    answer = reply(
        "refund",
        {
            "result": result("S", "SUCCESS"),
            "refundRequestId": "R-1",
            "refundId": "RF1",
            "refundAmount": {"currency": "KRW", "value": "15000"},
            "refundTime": "2026-12-05T18:40:00+08:00",
        },
        out_request_no="R-1",
    )
    assert (answer.result_status, answer.refund_id, answer.amount, answer.currency) == (
        "S",
        "RF1",
        Decimal(15000),
        "KRW",
    )


@pytest.mark.parametrize(
    ("status", "code"), [("U", "REFUND_IN_PROCESS"), ("U", "UNKNOWN_EXCEPTION"), ("F", "REFUND_AMOUNT_EXCEED")]
)
def test_refund_not_known_yet_or_refused_is_read_as_such(status: str, code: str) -> None:
    answer = reply("refund", {"result": result(status, code)})
    assert (answer.result_status, answer.result_code, answer.amount) == (status, code, None)


def test_a_refund_success_for_another_refund_is_refused() -> None:
    with pytest.raises(OrderMismatch):
        reply("refund", {"result": result("S", "SUCCESS"), "refundRequestId": "R-2"}, out_request_no="R-1")


# --- inquiryRefund ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["SUCCESS", "PROCESSING", "FAIL"])
def test_refund_inquiry_reads_each_status(status: str) -> None:
    answer = reply(
        "inquiry_refund",
        {
            "result": result("S", "SUCCESS"),
            "refundRequestId": "R-1",
            "refundId": "RF1",
            "refundStatus": status,
            "refundAmount": {"currency": "USD", "value": "250"},
        },
        out_request_no="R-1",
    )
    assert (answer.found, answer.status, answer.amount, answer.refund_id) == (True, status, Decimal("2.50"), "RF1")


@pytest.mark.parametrize("code", ["REFUND_NOT_EXIST", "ORDER_NOT_EXIST"])
def test_refund_inquiry_of_a_refund_antom_does_not_know_is_not_found(code: str) -> None:
    answer = reply("inquiry_refund", {"result": result("F", code)})
    assert (answer.found, answer.status) == (False, None)


def test_refund_inquiry_with_an_unknown_status_is_refused() -> None:
    with pytest.raises(InvalidField):
        reply("inquiry_refund", {"result": result("S", "SUCCESS"), "refundStatus": "DONE"})
