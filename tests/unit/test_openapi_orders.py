"""Open Platform ``alipay.trade.app.pay`` order strings: validation, signing, encoding."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import openapi
from chalicelib.alipay.errors import OrderError
from chalicelib.alipay.forms import parse_form
from chalicelib.alipay.params import check_timeout, format_amount, parse_amount
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, decode_signature, verify_signature

NOW = datetime(2024, 1, 1, 16, 30, 5, tzinfo=UTC)  # 2024-01-02 00:30:05 in Beijing
APP_ID = "2021000000000001"
NOTIFY_URL = "https://api.example.com/alipay/notify"


def order(signer: LocalKeySigner, **overrides: Any) -> str:
    kwargs: dict[str, Any] = {
        "app_id": APP_ID,
        "notify_url": NOTIFY_URL,
        "now": NOW,
        "out_trade_no": "ORDER-1",
        "subject": "Coffee beans",
        "total_amount": "88.80",
    }
    kwargs.update(overrides)
    return openapi.build_app_pay_order_string(signer, **kwargs)


def decoded(order_string: str) -> dict[str, str]:
    form = parse_form(order_string.encode("ascii"))
    return form.decode("utf-8")


@pytest.fixture
def signer(merchant_private_key: rsa.RSAPrivateKey) -> LocalKeySigner:
    return LocalKeySigner(merchant_private_key)


# --- the order string ---------------------------------------------------------------------------------


def test_the_order_string_carries_every_parameter_and_a_signature_over_them(
    signer: LocalKeySigner, merchant_public_key: rsa.RSAPublicKey
) -> None:
    params = decoded(order(signer, body="Arabica, 1 kg", timeout_express="30m", passback_params="a%3D1"))
    sign = params.pop("sign")
    assert params == {
        "app_id": APP_ID,
        "method": "alipay.trade.app.pay",
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": "2024-01-02 00:30:05",
        "version": "1.0",
        "notify_url": NOTIFY_URL,
        "biz_content": params["biz_content"],
    }
    assert json.loads(params["biz_content"]) == {
        "out_trade_no": "ORDER-1",
        "total_amount": "88.80",
        "subject": "Coffee beans",
        "product_code": "QUICK_MSECURITY_PAY",
        "body": "Arabica, 1 kg",
        "timeout_express": "30m",
        "passback_params": "a%3D1",
    }
    content = openapi.request_signed_content(params)
    assert "&sign_type=RSA2&" in content  # requests sign over sign_type (notifications do not)
    verify_signature(AlipayPublicKeys.of(merchant_public_key), content.encode(), decode_signature(sign), SignType.RSA2)


def test_the_timestamp_is_beijing_time_whatever_the_zone_of_now(signer: LocalKeySigner) -> None:
    new_york = NOW.astimezone(timezone(timedelta(hours=-5)))
    assert decoded(order(signer, now=new_york))["timestamp"] == "2024-01-02 00:30:05"


def test_a_naive_now_is_refused_rather_than_guessed(signer: LocalKeySigner) -> None:
    with pytest.raises(OrderError, match="timestamp: needs a timezone-aware datetime"):
        order(signer, now=datetime(2024, 1, 1, 16, 30))  # naive on purpose


def test_values_are_url_encoded_after_signing_with_spaces_as_plus(signer: LocalKeySigner) -> None:
    text = order(signer, subject='Tea & {cake} "x" 中文')
    assert "timestamp=2024-01-02+00%3A30%3A05" in text
    assert "%7B" in text
    assert "&cake" not in text
    assert decoded(text)["biz_content"].count('\\"x\\"') == 1
    assert json.loads(decoded(text)["biz_content"])["subject"] == 'Tea & {cake} "x" 中文'


def test_non_ascii_stays_literal_in_the_signed_biz_content(signer: LocalKeySigner) -> None:
    assert '"subject":"中文"' in decoded(order(signer, subject="中文"))["biz_content"]


def test_cert_mode_parameters_are_sent_and_signed(
    signer: LocalKeySigner, merchant_public_key: rsa.RSAPublicKey
) -> None:
    params = decoded(order(signer, app_cert_sn="a" * 32, alipay_root_cert_sn="b" * 32 + "_" + "c" * 32))
    sign = params.pop("sign")
    content = openapi.request_signed_content(params)
    assert content.startswith(f"alipay_root_cert_sn={'b' * 32}_{'c' * 32}&app_cert_sn={'a' * 32}&app_id=")
    verify_signature(AlipayPublicKeys.of(merchant_public_key), content.encode(), decode_signature(sign), SignType.RSA2)


def test_extra_biz_content_is_added_but_cannot_override_validated_fields(signer: LocalKeySigner) -> None:
    biz = json.loads(decoded(order(signer, extra_biz={"currency": "USD"}))["biz_content"])
    assert biz["currency"] == "USD"
    with pytest.raises(OrderError, match="total_amount: is set by the builder"):
        order(signer, extra_biz={"total_amount": "0.01"})


def test_a_missing_app_id_is_refused(signer: LocalKeySigner) -> None:
    with pytest.raises(OrderError, match="app_id: is required"):
        order(signer, app_id="")


def test_sign_request_refuses_a_signer_whose_algorithm_differs_from_sign_type(
    merchant_private_key: rsa.RSAPrivateKey,
) -> None:
    params = openapi.request_params(
        app_id=APP_ID, method=openapi.APP_PAY_METHOD, biz_content="{}", timestamp="t", sign_type=SignType.RSA2
    )
    with pytest.raises(OrderError, match="sign_type: is 'RSA2' but the signer signs RSA"):
        openapi.sign_request(params, LocalKeySigner(merchant_private_key, SignType.RSA))


def test_an_rsa_signer_produces_an_order_labelled_rsa(merchant_private_key: rsa.RSAPrivateKey) -> None:
    assert decoded(order(LocalKeySigner(merchant_private_key, SignType.RSA)))["sign_type"] == "RSA"


def test_encode_params_skips_empty_values_which_the_signature_also_skips() -> None:
    assert openapi.encode_params({"a": "1 2", "b": "", "c": "x/y"}, "s+/=") == "a=1+2&c=x%2Fy&sign=s%2B%2F%3D"


# --- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "message"),
    [
        ("0", "must be at least 0.01 \\(the range is 0.01 to 100000000\\)"),
        ("0.00", "must be at least 0.01"),
        ("-1.00", "must not be negative"),
        ("1.005", "at most 2 decimal places"),
        ("100000000.01", "must be at most 100000000: too large"),
        ("999999999", "must be at most 100000000: too large"),
        ("abc", "decimal string"),
        ("100000000000.00", "must be at most 100000000: too large"),
        ("-0.00", "must not be negative"),
        ("+1.00", "decimal string"),
        ("1e3", "decimal string"),
        ("", "decimal string"),
        ("1,00", "decimal string"),
        ("１２", "decimal string"),  # full-width digits are not ASCII digits
        (Decimal("1.005"), "at most 2 decimal places"),
        (Decimal("-5"), "must not be negative"),
        (Decimal("NaN"), "must be finite"),
        (Decimal("Infinity"), "must be finite"),
        (12.5, "decimal string"),
    ],
    ids=repr,
)
def test_rejects_an_invalid_total_amount(signer: LocalKeySigner, amount: Any, message: str) -> None:
    with pytest.raises(OrderError, match=f"total_amount: .*{message}") as caught:
        order(signer, total_amount=amount)
    assert caught.value.field == "total_amount"


@pytest.mark.parametrize(
    ("amount", "wire"),
    [("0.01", "0.01"), ("1", "1.00"), (" 12.3 ", "12.30"), ("100000000", "100000000.00"), (Decimal("1E+2"), "100.00")],
)
def test_formats_a_valid_amount_with_two_decimals(amount: str | Decimal, wire: str) -> None:
    assert format_amount(amount) == wire
    assert parse_amount(wire) == Decimal(wire)


@pytest.mark.parametrize("amount", ["100000000", "99999999.99", Decimal("100000000")])
def test_an_amount_too_long_for_a_narrow_decimal_context_is_an_order_error(amount: str | Decimal) -> None:
    # A text amount is quantized without the Decimal branch's checks: a context of under 11 digits still refuses it
    # as an order error, as it did with them.
    with localcontext(prec=9), pytest.raises(OrderError, match="too large"):
        parse_amount(amount)


@pytest.mark.parametrize(
    "out_trade_no",
    ["", "a" * 65, "has space", "订单1", "a/b", "a.b", "a\nb"],
    ids=["empty", "65", "space", "cjk", "slash", "dot", "newline"],
)
def test_rejects_an_invalid_out_trade_no(signer: LocalKeySigner, out_trade_no: str) -> None:
    with pytest.raises(OrderError, match="out_trade_no: 1-64 characters"):
        order(signer, out_trade_no=out_trade_no)


def test_accepts_a_64_character_out_trade_no(signer: LocalKeySigner) -> None:
    assert "o" * 64 in decoded(order(signer, out_trade_no="o" * 64))["biz_content"]


def test_rejects_a_subject_longer_than_256_characters(signer: LocalKeySigner) -> None:
    order(signer, subject="字" * 256)
    with pytest.raises(OrderError, match="subject: at most 256 characters"):
        order(signer, subject="字" * 257)


@pytest.mark.parametrize("subject", ["", "   "])
def test_rejects_a_blank_subject(signer: LocalKeySigner, subject: str) -> None:
    with pytest.raises(OrderError, match="subject: is required"):
        order(signer, subject=subject)


@pytest.mark.parametrize("subject", ["a\nb", "a\x00b", "a\x7fb"], ids=["newline", "nul", "del"])
def test_rejects_control_characters_in_the_subject(signer: LocalKeySigner, subject: str) -> None:
    with pytest.raises(OrderError, match="subject: must not contain control characters"):
        order(signer, subject=subject)


def test_rejects_a_body_longer_than_128_characters(signer: LocalKeySigner) -> None:
    order(signer, body="b" * 128)
    with pytest.raises(OrderError, match="body: at most 128 characters"):
        order(signer, body="b" * 129)


@pytest.mark.parametrize("timeout", ["0m", "16d", "361h", "21601m", "30", "m", "1.5h", "30M", "-1m", " 30m", "1c"])
def test_rejects_an_invalid_timeout_express(signer: LocalKeySigner, timeout: str) -> None:
    with pytest.raises(OrderError, match="timeout_express: must"):
        order(signer, timeout_express=timeout)


@pytest.mark.parametrize("timeout", ["1m", "90m", "2h", "15d", "360h", "21600m"])
def test_accepts_a_timeout_express_between_1m_and_15d(timeout: str) -> None:
    assert check_timeout(timeout) == timeout


@pytest.mark.parametrize("field", ["body", "passback_params"])
def test_a_blank_optional_text_is_refused_rather_than_sent(signer: LocalKeySigner, field: str) -> None:
    with pytest.raises(OrderError, match=f"{field}: is required"):
        order(signer, **{field: "   "})


def test_encode_params_encodes_values_in_the_request_charset() -> None:
    encoded = openapi.encode_params({"charset": "GBK", "subject": "中 文"}, "s")
    assert encoded == "charset=GBK&subject=%D6%D0+%CE%C4&sign=s"
