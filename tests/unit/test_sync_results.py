"""The SDK's synchronous results (both protocols) and signed gateway responses."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import mapi, openapi
from chalicelib.alipay.errors import (
    InvalidField,
    MalformedMessage,
    MissingSignature,
    NotSuccessful,
    OrderMismatch,
    SignatureEncodingError,
    SignatureMismatch,
    SignTypeMismatch,
)
from chalicelib.alipay.signing import LocalKeySigner, SignType
from tests.alipay_fixtures import (
    APP_ID,
    OUT_TRADE_NO,
    SELLER_ID,
    alipay_key,
    alipay_keys,
    app_pay_response,
    securitypay_result,
    signed_json_response,
)

APP_PAY = openapi.APP_PAY_RESPONSE
PARTNER = "2088000000000003"


def signed(
    content: str | dict[str, str], *, sign_type: SignType = SignType.RSA2, declared_sign_type: str | None = None
) -> str:
    return signed_json_response(
        APP_PAY, content, alipay_key(), sign_type=sign_type, declared_sign_type=declared_sign_type
    )


def verify(result: str) -> openapi.AppPayResult:
    return openapi.verify_app_pay_result(result, alipay_keys())


# --- Open Platform: extraction of the signed content ---------------------------------------------------


def test_accepts_a_signed_app_pay_result_and_types_it() -> None:
    result = verify(signed(app_pay_response()))
    assert (result.code, result.app_id, result.seller_id) == ("10000", APP_ID, SELLER_ID)
    assert result.out_trade_no == OUT_TRADE_NO
    assert result.total_amount == Decimal("88.88")


def test_verifies_the_raw_substring_even_when_values_hold_braces_quotes_and_escapes() -> None:
    # Whitespace, a "}" before the end, an escaped quote, \\u escapes and a backslash: a naive brace counter
    # stops early, and re-serializing the parsed JSON would not give these bytes back.
    raw = (
        '{ "code": "10000", "msg": "}{ \\"quoted\\" }", "app_id": "'
        + APP_ID
        + '", "out_trade_no": "'
        + OUT_TRADE_NO
        + '", "total_amount": "88.88", "seller_id": "'
        + SELLER_ID
        + '", '
        '"subject": "\\u4e2d\\u6587 \\\\ {x}", "nested": {"a": ["}", {"b": "{"}]}}'
    )
    text = signed(raw)
    response = openapi.verify_response(text, alipay_keys(), name=APP_PAY)
    assert response.content == raw
    assert response.body["msg"] == '}{ "quoted" }'
    assert response.body["subject"] == "中文 \\ {x}"
    assert verify(text).out_trade_no == OUT_TRADE_NO


def test_verifies_a_result_whose_sign_comes_before_the_response() -> None:
    response = openapi.extract_response(signed(app_pay_response()))
    reordered = f'{{"sign":"{response.sign}","sign_type":"RSA2","{APP_PAY}":{response.content}}}'
    assert verify(reordered).out_trade_no == OUT_TRADE_NO


def test_the_format_sample_vector_extracts_the_documented_substring(vectors: dict[str, object]) -> None:
    sample = vectors["openapi_sync_result_format_sample"]
    assert isinstance(sample, dict)
    response = openapi.extract_response(sample["result"])
    assert response.name == APP_PAY
    assert response.content.startswith('{"code":"10000"')
    assert response.content.endswith('"2016-10-11 17:43:36"}')


def test_rejects_a_duplicate_key_inside_the_response() -> None:
    raw = json.dumps(app_pay_response(), separators=(",", ":"))[:-1] + ',"code":"40004"}'
    with pytest.raises(MalformedMessage, match="duplicate JSON key 'code'"):
        verify(signed(raw))


def test_rejects_a_duplicate_top_level_member() -> None:
    text = signed(app_pay_response())
    with pytest.raises(MalformedMessage, match="duplicate JSON key 'sign'"):
        verify(text[:-1] + ',"sign":"QUJD"}')


def test_rejects_a_duplicate_response_member() -> None:
    text = signed(app_pay_response())
    with pytest.raises(MalformedMessage, match=f"duplicate JSON key '{APP_PAY}'"):
        verify(text[:-1] + f',"{APP_PAY}":{{}}}}')


@pytest.mark.parametrize("garbage", ["x", "{}", ",", "]"])
def test_rejects_trailing_garbage_after_the_json_object(garbage: str) -> None:
    with pytest.raises(MalformedMessage, match="trailing data"):
        verify(signed(app_pay_response()) + " " + garbage)


def test_tolerates_trailing_whitespace() -> None:
    assert verify(signed(app_pay_response()) + "\r\n").code == "10000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a JSON object"),
        ("[1]", "not a JSON object"),
        ("resultStatus=9000", "not a JSON object"),
        ('{"a":1', "expected ',' or '}'"),
        ('{"a" 1}', "expected ':'"),
        ('{"a":1,}', "expected a JSON member name"),
        ('{"a":tru}', "invalid JSON"),
        ('{"a":"unterminated}', "invalid JSON"),
    ],
    ids=repr,
)
def test_rejects_text_that_is_not_a_json_object(text: str, message: str) -> None:
    with pytest.raises(MalformedMessage, match=message):
        verify(text)


def test_rejects_a_response_member_that_is_not_an_object() -> None:
    with pytest.raises(MalformedMessage, match="is not a JSON object"):
        verify(signed('"a string"'))


def test_rejects_a_sign_that_is_not_a_json_string() -> None:
    text = '{"' + APP_PAY + '":{"code":"10000"},"sign":12}'
    with pytest.raises(MalformedMessage, match="sign is not a string"):
        verify(text)


def test_rejects_a_result_without_the_app_pay_response() -> None:
    with pytest.raises(MalformedMessage, match=f"no {APP_PAY} in response"):
        verify(signed_json_response("alipay_trade_query_response", app_pay_response(), alipay_key()))


# --- Open Platform: signature ------------------------------------------------------------------------------


def test_rejects_a_result_without_sign() -> None:
    text = '{"' + APP_PAY + '":' + json.dumps(app_pay_response()) + ',"sign_type":"RSA2"}'
    with pytest.raises(MissingSignature, match="carries no sign"):
        verify(text)


def test_rejects_a_result_with_a_non_base64_sign() -> None:
    text = signed(app_pay_response())
    body = json.loads(text)
    with pytest.raises(SignatureEncodingError, match="not valid base64"):
        verify(text.replace(body["sign"], "not*base64"))


def test_rejects_a_result_labelled_rsa_when_rsa2_is_configured() -> None:
    with pytest.raises(SignTypeMismatch, match="sign_type 'RSA' but the merchant uses RSA2"):
        verify(signed(app_pay_response(), sign_type=SignType.RSA))


def test_rejects_a_sha1_result_signature_labelled_rsa2() -> None:
    with pytest.raises(SignatureMismatch):
        verify(signed(app_pay_response(), sign_type=SignType.RSA, declared_sign_type="RSA2"))


def test_a_result_without_sign_type_is_verified_with_the_configured_algorithm() -> None:
    assert verify(signed(app_pay_response(), declared_sign_type="")).code == "10000"


def test_rejects_a_result_signed_with_the_merchants_own_key(merchant_private_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(SignatureMismatch):
        verify(signed_json_response(APP_PAY, app_pay_response(), merchant_private_key))


def test_rejects_a_tampered_result_under_the_original_sign() -> None:
    text = signed(app_pay_response(total_amount="88.88"))
    with pytest.raises(SignatureMismatch):
        verify(text.replace('"total_amount":"88.88"', '"total_amount":"0.01"'))


def test_rejects_a_result_reformatted_after_signing() -> None:
    text = signed(app_pay_response())
    with pytest.raises(SignatureMismatch):
        verify(text.replace('"code":"10000"', '"code": "10000"'))


# --- Open Platform: outcome and business checks -------------------------------------------------------------


def test_a_signed_error_response_is_not_successful() -> None:
    error = {"code": "40002", "msg": "Invalid Arguments", "sub_code": "isv.invalid-app-id"}
    text = signed_json_response(openapi.ERROR_RESPONSE, error, alipay_key())
    with pytest.raises(NotSuccessful, match=r"error_response: 40002 isv\.invalid-app-id"):
        verify(text)


def test_a_signed_result_with_a_business_failure_code_is_not_successful() -> None:
    text = signed(app_pay_response(code="40004", msg="Business Failed", sub_code="ACQ.TRADE_NOT_EXIST"))
    with pytest.raises(NotSuccessful, match=r"code 40004: ACQ\.TRADE_NOT_EXIST"):
        verify(text)


def test_a_signed_result_without_code_is_not_successful() -> None:
    with pytest.raises(NotSuccessful, match="code :"):
        verify(signed(app_pay_response(code=None)))


@pytest.mark.parametrize("amount", ["", "0.00", "1e3", "88.888"])
def test_a_signed_result_with_a_bad_total_amount_is_an_invalid_field(amount: str) -> None:
    with pytest.raises(InvalidField, match="total_amount"):
        verify(signed(app_pay_response(total_amount=amount)))


def test_a_signed_result_with_a_numeric_total_amount_is_an_invalid_field() -> None:
    raw = json.dumps(app_pay_response(), separators=(",", ":"))
    raw = raw.replace('"total_amount":"88.88"', '"total_amount":88.88')
    with pytest.raises(InvalidField, match="total_amount is not a string"):
        verify(signed(raw))


def test_check_app_pay_result_accepts_the_expected_order() -> None:
    result = verify(signed(app_pay_response()))
    openapi.check_app_pay_result(
        result, app_id=APP_ID, out_trade_no=OUT_TRADE_NO, total_amount=Decimal("88.880"), seller_id=SELLER_ID
    )


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("app_id", {"app_id": "2021999999999999"}),
        ("out_trade_no", {"out_trade_no": "OTHER-ORDER"}),
        ("total_amount", {"total_amount": Decimal("88.87")}),
        ("seller_id", {"seller_id": "2088999999999999"}),
    ],
)
def test_check_app_pay_result_rejects_a_result_for_another_order(field: str, expected: dict[str, object]) -> None:
    result = verify(signed(app_pay_response()))
    kwargs: dict[str, object] = {
        "app_id": APP_ID,
        "out_trade_no": OUT_TRADE_NO,
        "total_amount": Decimal("88.88"),
        "seller_id": SELLER_ID,
    }
    kwargs.update(expected)
    with pytest.raises(OrderMismatch, match=f"{field} mismatch") as caught:
        openapi.check_app_pay_result(result, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


# --- gateway responses ----------------------------------------------------------------------------------


def test_a_gateway_response_is_found_by_its_suffix() -> None:
    body = {"code": "10000", "msg": "Success", "trade_status": "TRADE_SUCCESS", "out_trade_no": OUT_TRADE_NO}
    text = signed_json_response("alipay_trade_query_response", body, alipay_key())
    response = openapi.verify_response(text, alipay_keys())
    assert (response.name, response.body["trade_status"]) == ("alipay_trade_query_response", "TRADE_SUCCESS")


def test_a_reply_with_two_response_members_is_ambiguous() -> None:
    text = signed_json_response("alipay_trade_query_response", {"code": "10000"}, alipay_key())
    with pytest.raises(MalformedMessage, match="exactly one \\*_response member, found 2"):
        openapi.verify_response(text[:-1] + ',"error_response":{"code":"40004"}}', alipay_keys())


# --- legacy (MAPI) results --------------------------------------------------------------------------------


def order_string(merchant_private_key: rsa.RSAPrivateKey, **overrides: str | None) -> str:
    kwargs: dict[str, str | None] = {
        "partner": PARTNER,
        "notify_url": "https://api.example.com/alipay/notify",
        "out_trade_no": OUT_TRADE_NO,
        "subject": "Coffee & {beans} 中文",
        "body": "Arabica=1kg",
        "currency": "USD",
        "total_fee": "12.50",
    }
    kwargs.update(overrides)
    pairs = mapi.securitypay_order_params(**kwargs)  # type: ignore[arg-type]
    return mapi.sign_securitypay_order(pairs, LocalKeySigner(merchant_private_key, SignType.RSA))


def verify_legacy(result: str) -> mapi.SecuritypayResult:
    return mapi.verify_securitypay_result(result, alipay_keys())


@pytest.fixture
def legacy_order(merchant_private_key: rsa.RSAPrivateKey) -> str:
    return order_string(merchant_private_key)


def test_accepts_a_legacy_result_signed_over_everything_before_sign_type(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key())
    assert mapi.securitypay_result_content(text).endswith('&success="true"')
    result = verify_legacy(text)
    assert (result.partner, result.seller_id, result.out_trade_no) == (PARTNER, PARTNER, OUT_TRADE_NO)
    assert (result.total_fee, result.rmb_fee, result.currency) == (Decimal("12.50"), None, "USD")
    assert result.fields["subject"] == "Coffee & {beans} 中文"


def test_accepts_a_legacy_result_whose_sign_is_url_encoded(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key(), url_encode_sign=True)
    assert "%" in text.rpartition('&sign="')[2]
    assert verify_legacy(text).out_trade_no == OUT_TRADE_NO


def test_rejects_a_legacy_result_without_sign_type(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key()).replace('&sign_type="RSA"', "")
    with pytest.raises(MissingSignature, match="no &sign_type="):
        verify_legacy(text)


def test_rejects_a_legacy_result_without_sign(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key())
    with pytest.raises(MissingSignature, match="carries no sign"):
        verify_legacy(text[: text.index('&sign="')])


def test_rejects_a_legacy_result_labelled_rsa2(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key(), declared_sign_type="RSA2")
    with pytest.raises(SignTypeMismatch, match="sign_type 'RSA2' but the merchant uses RSA"):
        verify_legacy(text)


def test_rejects_a_legacy_result_with_a_non_base64_sign(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key())
    with pytest.raises(SignatureEncodingError):
        verify_legacy(text[: text.index('&sign="')] + '&sign="not*base64"')


def test_a_signed_legacy_result_with_success_false_is_not_successful(legacy_order: str) -> None:
    with pytest.raises(NotSuccessful, match="success is 'false'"):
        verify_legacy(securitypay_result(legacy_order, alipay_key(), success="false"))


def test_rejects_a_legacy_result_whose_success_was_flipped_after_signing(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key(), success="false")
    with pytest.raises(SignatureMismatch):
        verify_legacy(text.replace('success="false"', 'success="true"'))


def test_rejects_a_legacy_result_with_a_tampered_fee(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key())
    with pytest.raises(SignatureMismatch):
        verify_legacy(text.replace('total_fee="12.50"', 'total_fee="0.01"'))


def test_rejects_a_legacy_result_signed_with_the_merchants_own_key(
    legacy_order: str, merchant_private_key: rsa.RSAPrivateKey
) -> None:
    with pytest.raises(SignatureMismatch):
        verify_legacy(securitypay_result(legacy_order, merchant_private_key))


def test_rejects_a_legacy_result_with_a_duplicate_field(legacy_order: str) -> None:
    text = securitypay_result(legacy_order, alipay_key())
    with pytest.raises(MalformedMessage, match="duplicate field 'total_fee'"):
        verify_legacy('total_fee="0.01"&' + text)


@pytest.mark.parametrize(
    "text", ['partner=2088&sign_type="RSA"&sign="QUJD"', 'partner="2088"&&sign_type="RSA"&sign="QUJD"']
)
def test_rejects_a_legacy_result_that_is_not_quoted_pairs(text: str) -> None:
    with pytest.raises(MalformedMessage, match='not a k="v" pair'):
        verify_legacy(text)


def test_a_signed_legacy_result_with_a_bad_fee_is_an_invalid_field(legacy_order: str) -> None:
    tampered_order = legacy_order.replace('total_fee="12.50"', 'total_fee="12.5.0"')
    with pytest.raises(InvalidField, match="total_fee"):
        verify_legacy(securitypay_result(tampered_order, alipay_key()))


def test_check_securitypay_result_accepts_the_expected_order(legacy_order: str) -> None:
    result = verify_legacy(securitypay_result(legacy_order, alipay_key()))
    mapi.check_securitypay_result(
        result, partner=PARTNER, out_trade_no=OUT_TRADE_NO, total_amount=Decimal("12.5"), currency="USD"
    )


def test_check_securitypay_result_compares_rmb_fee_when_the_order_used_it(
    merchant_private_key: rsa.RSAPrivateKey,
) -> None:
    text = securitypay_result(order_string(merchant_private_key, total_fee=None, rmb_fee="80"), alipay_key())
    result = verify_legacy(text)
    mapi.check_securitypay_result(
        result, partner=PARTNER, out_trade_no=OUT_TRADE_NO, total_amount=Decimal("80"), currency="USD"
    )


@pytest.mark.parametrize(
    ("field", "expected"),
    [
        ("partner", {"partner": "2088999999999999"}),
        ("seller_id", {"seller_id": "2088999999999999"}),
        ("out_trade_no", {"out_trade_no": "OTHER-ORDER"}),
        ("total_fee", {"total_amount": Decimal("12.49")}),
        ("currency", {"currency": "HKD"}),
    ],
)
def test_check_securitypay_result_rejects_a_result_for_another_order(
    legacy_order: str, field: str, expected: dict[str, object]
) -> None:
    result = verify_legacy(securitypay_result(legacy_order, alipay_key()))
    kwargs: dict[str, object] = {
        "partner": PARTNER,
        "out_trade_no": OUT_TRADE_NO,
        "total_amount": Decimal("12.50"),
        "currency": "USD",
    }
    kwargs.update(expected)
    with pytest.raises(OrderMismatch, match=f"{field} mismatch") as caught:
        mapi.check_securitypay_result(result, **kwargs)  # type: ignore[arg-type]
    assert caught.value.field == field


def test_rejects_a_field_appended_after_the_signature(merchant_private_key: rsa.RSAPrivateKey) -> None:
    # Everything after &sign_type= is unsigned: a total_fee added there must not stand in for the signed rmb_fee.
    text = securitypay_result(order_string(merchant_private_key, total_fee=None, rmb_fee="80"), alipay_key())
    with pytest.raises(MalformedMessage, match="unsigned field\\(s\\) after &sign_type=: total_fee"):
        verify_legacy(text + '&total_fee="0.01"')


def test_the_fields_of_a_legacy_result_are_the_signed_ones(legacy_order: str) -> None:
    result = verify_legacy(securitypay_result(legacy_order, alipay_key()))
    assert "sign" not in result.fields
    assert "sign_type" not in result.fields
    assert result.fields["success"] == "true"
