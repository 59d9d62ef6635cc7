"""The legacy gateway's XML replies, parsed safely; a ``single_trade_query`` answer verified before it is read."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from chalicelib.alipay.errors import (
    ErrorReply,
    InvalidField,
    MalformedMessage,
    OrderError,
    OrderMismatch,
    RefundRefusal,
    RetryableReply,
)
from chalicelib.alipay.mapi_replies import (
    beijing_compact_timestamp,
    forex_refund_reason,
    parse_forex_refund,
    parse_single_trade_query,
)
from chalicelib.alipay.replies import RefundReply, TradeQueryReply
from chalicelib.alipay.signing import AlipayPublicKeys, SignType, b64encode
from tests.alipay_fixtures import alipay_key

ORDER = "ORDER-20240310-0001"

KEYS = AlipayPublicKeys.of(alipay_key().public_key())


def _trade_reply(out_trade_no: str = ORDER, *, status: str | None = "TRADE_FINISHED") -> bytes:
    """A ``single_trade_query`` answer signed as Alipay signs it: the sorted ``k=v`` of the ``<trade>`` leaves."""
    trade = {"out_trade_no": out_trade_no, "total_fee": "1.00"} | ({"trade_status": status} if status else {})
    content = "&".join(f"{k}={v}" for k, v in sorted(trade.items()))
    sign = b64encode(alipay_key().sign(content.encode(), padding.PKCS1v15(), hashes.SHA1()))  # noqa: S303 - Alipay's RSA
    leaves = "".join(f"<{k}>{v}</{k}>" for k, v in trade.items())
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n<alipay><is_success>T</is_success>'
        f"<response><trade>{leaves}</trade></response><sign>{sign}</sign><sign_type>RSA</sign_type></alipay>"
    ).encode()


def parse_query(xml: bytes, out_trade_no: str = ORDER) -> TradeQueryReply:
    return parse_single_trade_query(xml, out_trade_no, keys=KEYS, sign_type=SignType.RSA)


def _failure(error: str) -> bytes:
    return f"<alipay><is_success>F</is_success><error>{error}</error></alipay>".encode()


# --- single_trade_query ----------------------------------------------------------------------------------------


def test_a_legacy_reply_is_the_trade_it_names() -> None:
    reply = parse_query(_trade_reply())

    assert reply == TradeQueryReply(
        found=True,
        trade_status="TRADE_FINISHED",
        total_amount=Decimal("1.00"),
        raw={"out_trade_no": ORDER, "trade_status": "TRADE_FINISHED", "total_fee": "1.00"},
    )


def test_a_legacy_trade_not_exist_is_not_found() -> None:
    reply = parse_query(_failure("TRADE_NOT_EXIST"))

    assert (reply.found, reply.raw) == (False, {"is_success": "F", "error": "TRADE_NOT_EXIST"})


def test_a_legacy_reply_for_another_order_is_a_mismatch() -> None:
    with pytest.raises(OrderMismatch):
        parse_query(_trade_reply("ORDER-OTHER"))


def test_a_legacy_reply_without_a_trade_status_is_an_invalid_field() -> None:
    with pytest.raises(InvalidField, match="trade_status"):
        parse_query(_trade_reply(status=None))


@pytest.mark.parametrize(
    "xml",
    [
        b'<?xml version="1.0"?><!DOCTYPE alipay [<!ENTITY a "aaaa">]><alipay><is_success>&a;</is_success></alipay>',
        b'<!DOCTYPE alipay SYSTEM "http://attacker.example/x.dtd"><alipay><is_success>T</is_success></alipay>',
        b"<alipay><is_success>&xxe;</is_success></alipay>",
        b"<alipay><is_success>T</is_success><is_success>F</is_success></alipay>",
        b"<alipay><is_success>T</is_success></alipay>",  # no <response><trade>
        b"<alipay><is_success>T</is_success>",
        b"<html>not alipay</html>",
        b"x" * (256 * 1024 + 1),
    ],
    ids=["entity", "external-dtd", "undefined-entity", "duplicate-field", "no-trade", "truncated", "html", "huge"],
)
def test_a_legacy_reply_with_a_dtd_or_bad_shape_is_malformed(xml: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_query(xml)


def test_a_legacy_failure_other_than_trade_not_exist_is_a_gateway_error() -> None:
    with pytest.raises(ErrorReply, match="ILLEGAL_PARTNER") as failed:
        parse_query(b"<alipay><is_success>F</is_success><error>ILLEGAL_PARTNER</error></alipay>")
    assert (failed.value.code, failed.value.sub_code, failed.value.message) == ("ILLEGAL_PARTNER", None, "")


# --- forex_refund (synchronous, is_sync=Y); error replies recorded as integrations report them -------------------


def test_forex_refund_reason_is_cut_to_100_bytes_on_a_character_boundary() -> None:
    reason = forex_refund_reason("退" * 40)  # 3 bytes each
    assert (reason, len(reason.encode())) == ("退" * 33, 99)


def test_forex_refund_reason_carries_no_double_quote() -> None:
    assert forex_refund_reason('too "big"') == "too 'big'"


def test_gmt_return_is_beijing_time_in_fourteen_digits() -> None:
    # 16:30:05 UTC is 00:30:05 the next day in Beijing: a UTC timestamp would show.
    assert beijing_compact_timestamp(datetime(2024, 3, 9, 16, 30, 5, tzinfo=UTC)) == "20240310003005"


def test_gmt_return_needs_an_aware_datetime() -> None:
    with pytest.raises(OrderError, match="timezone"):
        beijing_compact_timestamp(datetime(2024, 3, 9, 16, 30, 5))  # naive: no zone to convert from


def test_a_forex_refund_success_is_a_refund_without_a_running_total() -> None:
    reply = parse_forex_refund(b"<alipay><is_success>T</is_success></alipay>", "RF-1")

    assert reply == RefundReply(out_request_no="RF-1", refund_fee=None, fund_change=True, raw={"is_success": "T"})


@pytest.mark.parametrize(
    "error",
    [
        "PURCHASE_TRADE_NOT_EXIST",
        "RETURN_AMOUNT_EXCEED",
        "REFUNDMENT_VALID_DATE_EXCEED",
        "CURRENCY_NOT_SAME",
        "TRADE_HAS_CLOSE",
        "TRADE_STATUS_ERROR",
    ],
)
def test_a_forex_refund_alipay_refuses_is_a_refusal_naming_its_error(error: str) -> None:
    with pytest.raises(RefundRefusal) as refused:
        parse_forex_refund(_failure(error), "RF-1")
    assert refused.value.sub_code == error


@pytest.mark.parametrize("error", ["SYSTEM_EXCEPTION", "SYSTEM_ERROR"])
def test_a_forex_refund_system_error_asks_for_the_same_request_again(error: str) -> None:
    with pytest.raises(RetryableReply, match=f"forex_refund error {error}"):
        parse_forex_refund(_failure(error), "RF-1")


@pytest.mark.parametrize(
    ("xml", "code"),
    [
        (_failure("REPEATED_REFUNDMENT_REQUEST"), "REPEATED_REFUNDMENT_REQUEST"),
        (_failure("ILLEGAL_SIGN"), "ILLEGAL_SIGN"),
        (b"<alipay><is_success>F</is_success></alipay>", "UNKNOWN"),
    ],
    ids=["repeated", "illegal-sign", "no-error"],
)
def test_a_forex_refund_error_that_says_nothing_about_the_money_is_neither_refused_nor_done(
    xml: bytes, code: str
) -> None:
    with pytest.raises(ErrorReply) as failed:
        parse_forex_refund(xml, "RF-1")
    assert failed.value.code == code
    assert not isinstance(failed.value, RefundRefusal)


@pytest.mark.parametrize(
    "xml",
    [
        b"<alipay><is_success>X</is_success></alipay>",
        b"<html>maintenance</html>",
        b"<alipay><is_success>T</is_success>",
    ],
    ids=["neither-T-nor-F", "html", "truncated"],
)
def test_a_forex_refund_reply_of_another_shape_is_malformed(xml: bytes) -> None:
    with pytest.raises(MalformedMessage):
        parse_forex_refund(xml, "RF-1")
