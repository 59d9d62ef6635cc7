"""Open Platform gateway replies (``alipay.trade.query``, ``.close``, ``.refund``): verified, then read."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from chalicelib.alipay.errors import (
    ErrorReply,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    OrderMismatch,
    RefundRefusal,
    RetryableReply,
    SignatureMismatch,
)
from chalicelib.alipay.openapi_replies import parse_trade_close, parse_trade_query, parse_trade_refund
from chalicelib.alipay.replies import RefundReply, TradeCloseReply
from chalicelib.alipay.signing import SignType
from tests.alipay_fixtures import alipay_key, alipay_keys, signed_json_response
from tests.keygen import rsa_key

ORDER = "ORDER-20240310-0001"
QUERY = "alipay_trade_query_response"
CLOSE = "alipay_trade_close_response"
REFUND = "alipay_trade_refund_response"
VERIFY: dict[str, Any] = {"keys": alipay_keys(), "sign_type": SignType.RSA2}


def signed(name: str, body: dict[str, Any]) -> bytes:
    return signed_json_response(name, body, alipay_key()).encode("utf-8")


def unsigned(name: str, body: dict[str, Any]) -> bytes:
    return json.dumps({name: body}, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def failure(code: str, sub_code: str | None = None, sub_msg: str = "", **extra: str) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "msg": "Business Failed", **extra}
    if sub_code:
        body.update(sub_code=sub_code, sub_msg=sub_msg)
    return body


TRADE: dict[str, Any] = {
    "code": "10000",
    "msg": "Success",
    "out_trade_no": ORDER,
    "trade_no": "2024031022001400000000000001",
    "trade_status": "TRADE_SUCCESS",
    "total_amount": "12.34",
    "trans_currency": "USD",
    "fund_bill_list": [{"amount": "12.34", "fund_channel": "ALIPAYACCOUNT"}],
}


# --- alipay.trade.query ----------------------------------------------------------------------------------------


def test_a_verified_query_reply_is_the_trade_with_nested_values_kept_as_json_text() -> None:
    reply = parse_trade_query(signed(QUERY, TRADE), ORDER, **VERIFY)

    assert (reply.found, reply.trade_status, reply.trade_no) == (True, "TRADE_SUCCESS", TRADE["trade_no"])
    assert (reply.total_amount, reply.currency) == (Decimal("12.34"), "USD")
    assert reply.raw["fund_bill_list"] == '[{"amount":"12.34","fund_channel":"ALIPAYACCOUNT"}]'


def test_a_query_of_a_trade_alipay_does_not_know_is_not_found() -> None:
    reply = parse_trade_query(
        signed(QUERY, failure("40004", "ACQ.TRADE_NOT_EXIST", out_trade_no=ORDER)), ORDER, **VERIFY
    )

    assert (reply.found, reply.raw["sub_code"]) == (False, "ACQ.TRADE_NOT_EXIST")


def test_a_query_reply_for_another_order_is_a_mismatch() -> None:
    with pytest.raises(OrderMismatch):
        parse_trade_query(signed(QUERY, {**TRADE, "out_trade_no": "ORDER-OTHER"}), ORDER, **VERIFY)


@pytest.mark.parametrize(
    ("field", "value"),
    [("trade_status", ""), ("total_amount", "12.345"), ("trade_no", 42)],
    ids=["no-status", "bad-amount", "not-a-string"],
)
def test_a_query_reply_with_an_unusable_field_is_invalid(field: str, value: object) -> None:
    with pytest.raises(InvalidField):
        parse_trade_query(signed(QUERY, {**TRADE, field: value}), ORDER, **VERIFY)


@pytest.mark.parametrize(
    ("code", "sub_code"),
    [("20000", "isp.unknow-error"), ("40004", "ACQ.SYSTEM_ERROR")],
    ids=["service-unavailable", "system-error"],
)
def test_a_query_reply_asking_for_the_request_again_is_retryable(code: str, sub_code: str) -> None:
    with pytest.raises(RetryableReply, match=f"code {code} {sub_code}"):
        parse_trade_query(signed(QUERY, failure(code, sub_code)), ORDER, **VERIFY)


def test_any_other_query_failure_is_an_error_reply_naming_its_codes() -> None:
    with pytest.raises(ErrorReply) as failed:
        parse_trade_query(signed(QUERY, failure("40002", "isv.invalid-signature", "验签出错")), ORDER, **VERIFY)

    assert (failed.value.code, failed.value.sub_code, failed.value.message) == (
        "40002",
        "isv.invalid-signature",
        "验签出错",
    )


def test_an_unsigned_query_reply_is_never_read_but_its_code_is_reported_unverified() -> None:
    with pytest.raises(MissingSignature, match=r"\(unverified: 40002 isv\.invalid-app-id\)"):
        parse_trade_query(unsigned(QUERY, failure("40002", "isv.invalid-app-id")), ORDER, **VERIFY)


def test_a_query_reply_signed_by_another_key_is_rejected() -> None:
    reply = signed_json_response(QUERY, TRADE, rsa_key("other")).encode("utf-8")
    with pytest.raises(SignatureMismatch):
        parse_trade_query(reply, ORDER, **VERIFY)


@pytest.mark.parametrize("reply", [b"\xff{}", b"<html>busy</html>"], ids=["not-utf-8", "not-json"])
def test_a_query_reply_that_is_not_utf8_json_is_malformed(reply: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_trade_query(reply, ORDER, **VERIFY)


# --- alipay.trade.close ----------------------------------------------------------------------------------------


def test_a_close_alipay_confirms_is_closed() -> None:
    reply = parse_trade_close(
        signed(CLOSE, {"code": "10000", "msg": "Success", "out_trade_no": ORDER}), ORDER, **VERIFY
    )

    assert reply == TradeCloseReply(closed=True, raw={"code": "10000", "msg": "Success", "out_trade_no": ORDER})


def test_a_close_of_a_trade_alipay_does_not_know_is_not_found() -> None:
    reply = parse_trade_close(signed(CLOSE, failure("40004", "ACQ.TRADE_NOT_EXIST")), ORDER, **VERIFY)

    assert (reply.closed, reply.found, reply.sub_code) == (False, False, "ACQ.TRADE_NOT_EXIST")


def test_a_close_alipay_declines_says_why() -> None:
    reply = parse_trade_close(signed(CLOSE, failure("40004", "ACQ.TRADE_STATUS_ERROR")), ORDER, **VERIFY)

    assert (reply.closed, reply.found, reply.sub_code) == (False, True, "ACQ.TRADE_STATUS_ERROR")


def test_a_close_confirmed_for_another_order_is_a_mismatch() -> None:
    with pytest.raises(OrderMismatch):
        parse_trade_close(signed(CLOSE, {"code": "10000", "out_trade_no": "ORDER-OTHER"}), ORDER, **VERIFY)


def test_a_success_code_outside_the_close_response_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match=f"expected {CLOSE}, got error_response"):
        parse_trade_close(signed("error_response", {"code": "10000", "msg": "Success"}), ORDER, **VERIFY)


@pytest.mark.parametrize(
    ("code", "sub_code"),
    [("20000", "isp.unknow-error"), ("40004", "ACQ.SYSTEM_ERROR")],
    ids=["service-unavailable", "system-error"],
)
def test_a_close_reply_asking_for_the_request_again_is_retryable(code: str, sub_code: str) -> None:
    with pytest.raises(RetryableReply):
        parse_trade_close(signed(CLOSE, failure(code, sub_code)), ORDER, **VERIFY)


def test_a_close_failure_without_a_sub_code_is_an_error_reply() -> None:
    with pytest.raises(ErrorReply) as failed:
        parse_trade_close(signed(CLOSE, failure("40004")), ORDER, **VERIFY)

    assert (failed.value.code, failed.value.sub_code, failed.value.message) == ("40004", None, "Business Failed")


# --- alipay.trade.refund ---------------------------------------------------------------------------------------


def test_an_accepted_refund_reports_the_running_total_and_whether_money_moved() -> None:
    body = {"code": "10000", "msg": "Success", "out_trade_no": ORDER, "refund_fee": "2.00", "fund_change": "Y"}

    reply = parse_trade_refund(signed(REFUND, body), ORDER, "r-1", **VERIFY)

    assert reply == RefundReply(out_request_no="r-1", refund_fee=Decimal("2.00"), fund_change=True, raw=body)


def test_a_refund_answered_again_moved_no_money() -> None:
    body = {"code": "10000", "out_trade_no": ORDER, "refund_fee": "2.00", "fund_change": "N"}

    assert parse_trade_refund(signed(REFUND, body), ORDER, "r-1", **VERIFY).fund_change is False


def test_a_refund_alipay_refuses_is_a_refusal_naming_its_sub_code() -> None:
    with pytest.raises(RefundRefusal) as refused:
        parse_trade_refund(
            signed(REFUND, failure("40004", "ACQ.TRADE_STATUS_ERROR", "交易状态不合法")), ORDER, "r-1", **VERIFY
        )

    assert (refused.value.sub_code, refused.value.message) == ("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")


def test_a_refund_failure_that_is_not_a_business_refusal_is_an_error_reply() -> None:
    with pytest.raises(ErrorReply) as failed:
        parse_trade_refund(signed(REFUND, failure("40002", "isv.invalid-signature")), ORDER, "r-1", **VERIFY)

    assert not isinstance(failed.value, RefundRefusal)
    assert failed.value.code == "40002"


def test_a_refund_accepted_for_another_order_is_a_mismatch() -> None:
    body = {"code": "10000", "out_trade_no": "ORDER-OTHER", "refund_fee": "2.00", "fund_change": "Y"}
    with pytest.raises(OrderMismatch):
        parse_trade_refund(signed(REFUND, body), ORDER, "r-1", **VERIFY)


def test_an_accepted_refund_without_a_usable_total_is_invalid() -> None:
    with pytest.raises(InvalidField, match="refund_fee"):
        parse_trade_refund(signed(REFUND, {"code": "10000", "out_trade_no": ORDER}), ORDER, "r-1", **VERIFY)
