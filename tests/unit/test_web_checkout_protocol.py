"""Web checkout's protocol core: page/wap pay and create_forex_trade[_wap] requests, and the signed return."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from decimal import Decimal
from html.parser import HTMLParser
from urllib.parse import parse_qsl, urlsplit

import pytest

from chalicelib.alipay import web
from chalicelib.alipay.errors import (
    CharsetError,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    NotSuccessful,
    OrderError,
    OrderMismatch,
    SignatureMismatch,
    SignTypeMismatch,
)
from chalicelib.alipay.forms import signed_content
from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.openapi import request_signed_content
from chalicelib.alipay.params import check_return_url
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, decode_signature, verify_signature
from chalicelib.alipay.web import WebChannel
from tests.alipay_fixtures import (
    APP_ID,
    OUT_TRADE_NO,
    PARTNER,
    SELLER_ID,
    TRADE_NO,
    alipay_key,
    alipay_keys,
    sign_fields,
)
from tests.alipay_fixtures import form_body as encode_form
from tests.keygen import rsa_key

NOW = datetime(2026, 11, 26, 16, 30, 5, tzinfo=UTC)  # 00:30:05 the next day in Beijing
GATEWAY = "https://openapi.alipay.com/gateway.do"
LEGACY_GATEWAY = "https://intlmapi.alipay.com/gateway.do"
NOTIFY_URL = "https://pay.example.com/alipay/notify"
RETURN_URL = "https://pay.example.com/alipay/return"


def merchant_signer(sign_type: SignType = SignType.RSA2) -> LocalKeySigner:
    return LocalKeySigner(rsa_key("web-merchant"), sign_type)


def merchant_keys() -> AlipayPublicKeys:
    return AlipayPublicKeys((rsa_key("web-merchant").public_key(),))


def page_payment(channel: WebChannel = WebChannel.PAGE, **overrides: object) -> web.WebPayment:
    kwargs: dict[str, object] = {
        "gateway_url": GATEWAY,
        "app_id": APP_ID,
        "notify_url": NOTIFY_URL,
        "return_url": RETURN_URL,
        "now": NOW,
        "out_trade_no": OUT_TRADE_NO,
        "subject": "T-shirt",
        "total_amount": "12.34",
        "extra_biz": {"trans_currency": "USD"},
    }
    kwargs.update(overrides)
    return web.build_openapi_web_payment(merchant_signer(), channel, **kwargs)  # type: ignore[arg-type]


def forex_payment(channel: WebChannel = WebChannel.PAGE, **overrides: object) -> web.WebPayment:
    kwargs: dict[str, object] = {
        "partner": PARTNER,
        "notify_url": NOTIFY_URL,
        "return_url": RETURN_URL,
        "out_trade_no": OUT_TRADE_NO,
        "subject": "T-shirt",
        "currency": "USD",
        "total_fee": "12.34",
        "timeout_rule": "30m",
    }
    kwargs.update(overrides)
    params = web.forex_trade_params(channel, **kwargs)  # type: ignore[arg-type]
    return web.sign_forex_trade(params, merchant_signer(SignType.RSA), gateway_url=LEGACY_GATEWAY)


class _Inputs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[tuple[str, str]] = []
        self.form: dict[str, str | None] = {}
        self.scripts = 0
        self.noscript_button = False
        self._in_noscript = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "input" and values.get("type") == "hidden":
            self.inputs.append((values["name"] or "", values["value"] or ""))
        elif tag == "form":
            self.form = values
        elif tag == "script":
            self.scripts += 1
        elif tag == "noscript":
            self._in_noscript = True
        elif tag == "button" and self._in_noscript:
            self.noscript_button = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "noscript":
            self._in_noscript = False


# --- Open Platform requests --------------------------------------------------------------------------------------


def test_a_page_pay_request_is_signed_like_an_app_order_over_every_parameter_but_sign() -> None:
    payment = page_payment()
    params = dict(payment.params)
    assert [k for k, _ in payment.params] == [*sorted(k for k in params if k != "sign"), "sign"]
    assert params["method"] == "alipay.trade.page.pay"
    assert (params["timestamp"], params["sign_type"], params["charset"]) == ("2026-11-27 00:30:05", "RSA2", "utf-8")
    assert (params["return_url"], params["notify_url"]) == (RETURN_URL, NOTIFY_URL)
    assert "format" not in params  # a redirect gets a page, not a JSON reply
    biz = json.loads(params["biz_content"])
    assert list(biz)[:4] == ["subject", "out_trade_no", "total_amount", "product_code"]
    assert biz == {
        "subject": "T-shirt",
        "out_trade_no": OUT_TRADE_NO,
        "total_amount": "12.34",
        "product_code": "FAST_INSTANT_TRADE_PAY",
        "trans_currency": "USD",
    }
    content = request_signed_content(params).encode()
    verify_signature(merchant_keys(), content, decode_signature(params["sign"]), SignType.RSA2)


def test_a_wap_pay_request_names_its_own_method_and_product_code() -> None:
    params = dict(page_payment(WebChannel.WAP).params)
    assert params["method"] == "alipay.trade.wap.pay"
    assert json.loads(params["biz_content"])["product_code"] == "QUICK_WAP_WAY"


def test_the_payment_url_is_the_gateway_with_the_signed_query_and_decodes_back_to_the_same_parameters() -> None:
    payment = page_payment(subject="Tee & socks + 🧦 = 100%")
    url = urlsplit(payment.payment_url)
    assert f"{url.scheme}://{url.netloc}{url.path}" == GATEWAY
    assert parse_qsl(url.query, keep_blank_values=True, strict_parsing=True) == list(payment.params)
    assert " " not in payment.payment_url


def test_the_form_posts_the_same_parameters_html_escaped_submits_itself_and_has_a_noscript_button() -> None:
    payment = page_payment(subject='Quote " <b>bold</b> & \'apostrophe\'')
    html = payment.form_html()
    assert "<b>bold</b>" not in html
    parser = _Inputs()
    parser.feed(html)
    assert parser.inputs == list(payment.params)
    assert (parser.form.get("method"), parser.form.get("action")) == ("post", GATEWAY)
    assert parser.scripts == 1
    assert parser.noscript_button
    assert re.search(r"getElementById\(\"alipay-submit\"\)\.submit\(\)", html)


def test_a_tampered_page_pay_parameter_no_longer_verifies() -> None:
    params = dict(page_payment().params)
    params["return_url"] = "https://evil.example.com/return"
    with pytest.raises(SignatureMismatch, match="does not verify"):
        verify_signature(
            merchant_keys(), request_signed_content(params).encode(), decode_signature(params["sign"]), SignType.RSA2
        )


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "is required"),
        ("ftp://shop.example.com/x", "absolute http or https"),
        ("/relative/return", "absolute http or https"),
        ("https://", "absolute http or https"),
        ("https://shop.example.com/a b", "whitespace"),
        ("https://shop.example.com/\tx", "whitespace"),
        ("https://shop.example.com/paid?tenant=a", "query or fragment"),
        ("https://shop.example.com/paid#top", "query or fragment"),
        ("https://shop.example.com/" + "x" * 240, "at most 256"),
    ],
)
def test_a_return_url_must_be_an_absolute_http_url_without_query_or_whitespace(url: str, reason: str) -> None:
    with pytest.raises(OrderError, match=reason):
        check_return_url(url)


def test_a_page_pay_request_refuses_a_bad_return_url_and_a_bad_amount() -> None:
    with pytest.raises(OrderError, match="return_url"):
        page_payment(return_url="javascript:alert(1)")
    with pytest.raises(OrderError, match="total_amount"):
        page_payment(total_amount="12.345")


# --- legacy requests ---------------------------------------------------------------------------------------------


def test_create_forex_trade_is_signed_sha1_rsa_over_the_sorted_unquoted_parameters() -> None:
    payment = forex_payment()
    params = dict(payment.params)
    assert [k for k, _ in payment.params][-2:] == ["sign", "sign_type"]
    assert params == {
        "_input_charset": "utf-8",
        "currency": "USD",
        "notify_url": NOTIFY_URL,
        "out_trade_no": OUT_TRADE_NO,
        "partner": PARTNER,
        "product_code": "NEW_OVERSEAS_SELLER",
        "return_url": RETURN_URL,
        "service": "create_forex_trade",
        "subject": "T-shirt",
        "timeout_rule": "30m",
        "total_fee": "12.34",
        "sign": params["sign"],
        "sign_type": "RSA",
    }
    content = signed_content(params, ("sign", "sign_type"))
    assert '"' not in content
    assert content.startswith("_input_charset=utf-8&currency=USD&")
    verify_signature(merchant_keys(), content.encode(), decode_signature(params["sign"]), SignType.RSA)


def test_create_forex_trade_wap_names_its_own_service_and_product_code() -> None:
    params = dict(forex_payment(WebChannel.WAP, body="Cotton", rmb_fee="80.00", total_fee=None).params)
    assert (params["service"], params["product_code"]) == ("create_forex_trade_wap", "NEW_WAP_OVERSEAS_SELLER")
    assert (params["rmb_fee"], params["body"]) == ("80.00", "Cotton")
    assert "total_fee" not in params


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"timeout_rule": "45m"}, "timeout_rule"),
        ({"rmb_fee": "1.00"}, "total_fee"),
        ({"total_fee": None}, "total_fee"),
        ({"return_url": "https://shop.example.com/" + "r" * 180}, "return_url: at most 200"),
        ({"partner": "1234"}, "partner"),
        ({"currency": "usd"}, "currency"),
        ({"subject": "a&status=paid"}, "subject"),
    ],
)
def test_create_forex_trade_refuses_invalid_parameters(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(OrderError, match=field):
        forex_payment(**overrides)


def test_the_legacy_web_services_are_never_signed_with_rsa2() -> None:
    params = web.forex_trade_params(
        WebChannel.PAGE,
        partner=PARTNER,
        notify_url=NOTIFY_URL,
        return_url=RETURN_URL,
        out_trade_no=OUT_TRADE_NO,
        subject="T-shirt",
        currency="USD",
        total_fee="1.00",
    )
    with pytest.raises(OrderError, match="RSA"):
        web.sign_forex_trade(params, merchant_signer(SignType.RSA2), gateway_url=LEGACY_GATEWAY)


# --- the return ----------------------------------------------------------------------------------------------------


def openapi_return_fields(**overrides: str | None) -> dict[str, str]:
    fields = {
        "charset": "utf-8",
        "out_trade_no": OUT_TRADE_NO,
        "method": "alipay.trade.page.pay.return",
        "total_amount": "12.34",
        "trade_no": TRADE_NO,
        "auth_app_id": APP_ID,
        "version": "1.0",
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "timestamp": "2026-11-27 00:31:00",
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


def legacy_return_fields(**overrides: str | None) -> dict[str, str]:
    # The fields of genuine create_forex_trade returns (tests/vectors/genuine_samples.json): no is_success or notify_id.
    fields = {
        "out_trade_no": OUT_TRADE_NO,
        "total_fee": "12.34",
        "trade_status": "TRADE_FINISHED",
        "trade_no": TRADE_NO,
        "currency": "USD",
    }
    for key, value in overrides.items():
        if value is None:
            fields.pop(key, None)
        else:
            fields[key] = value
    return fields


def openapi_query(fields: dict[str, str] | None = None, key: object = None) -> bytes:
    return encode_form(sign_fields(fields or openapi_return_fields(), key or alipay_key()))  # type: ignore[arg-type]


def legacy_query(fields: dict[str, str] | None = None, key: object = None) -> bytes:
    signed = sign_fields(fields or legacy_return_fields(), key or alipay_key(), sign_type=SignType.RSA)  # type: ignore[arg-type]
    return encode_form(signed)


def verify_openapi(query: bytes) -> web.WebReturn:
    return web.verify_return(query, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2)


def verify_legacy(query: bytes) -> web.WebReturn:
    return web.verify_return(query, protocol=AlipayProtocol.MAPI, keys=alipay_keys(), sign_type=SignType.RSA)


def test_a_genuine_open_platform_return_verifies_and_hands_on_only_signed_fields() -> None:
    verified = verify_openapi(openapi_query())
    assert (verified.out_trade_no, verified.trade_no) == (OUT_TRADE_NO, TRADE_NO)
    assert verified.total_amount == Decimal("12.34")
    assert (verified.app_id, verified.seller_id, verified.trade_status) == (APP_ID, SELLER_ID, None)
    assert set(verified.fields) == {*openapi_return_fields(), "sign", "sign_type"}


def test_a_wap_return_verifies_too() -> None:
    verified = verify_openapi(openapi_query(openapi_return_fields(method="alipay.trade.wap.pay.return")))
    assert verified.fields["method"] == "alipay.trade.wap.pay.return"


def test_a_tampered_return_field_is_rejected() -> None:
    query = openapi_query().replace(b"total_amount=12.34", b"total_amount=0.01")
    with pytest.raises(SignatureMismatch, match="does not verify"):
        verify_openapi(query)


def test_a_field_added_to_a_genuine_return_is_rejected() -> None:
    with pytest.raises(SignatureMismatch, match="does not verify"):
        verify_openapi(openapi_query() + b"&trade_status=TRADE_SUCCESS")


def test_a_return_signed_with_a_forged_key_is_rejected() -> None:
    with pytest.raises(SignatureMismatch, match="does not verify"):
        verify_openapi(openapi_query(key=rsa_key("forger")))


def test_a_return_labelled_with_a_weaker_sign_type_is_rejected() -> None:
    signed = sign_fields(openapi_return_fields(), alipay_key(), sign_type=SignType.RSA)
    with pytest.raises(SignTypeMismatch, match="RSA2"):
        verify_openapi(encode_form(signed))


def test_a_return_without_a_sign_is_rejected() -> None:
    with pytest.raises(MissingSignature, match="return carries no sign"):
        verify_openapi(encode_form(openapi_return_fields()))


def test_an_empty_return_is_malformed() -> None:
    with pytest.raises(MalformedMessage, match="empty"):
        verify_openapi(b"")


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"out_trade_no": None}, "missing out_trade_no"),
        ({"total_amount": None}, "missing total_amount"),
        ({"total_amount": "12.345"}, "total_amount"),
        ({"method": "alipay.trade.app.pay"}, "not a page or wap pay return"),
        ({"trade_status": "PAID"}, "unknown trade_status"),
    ],
)
def test_a_signed_return_missing_or_misusing_a_field_is_rejected(overrides: dict[str, str | None], reason: str) -> None:
    with pytest.raises(InvalidField, match=reason):
        verify_openapi(openapi_query(openapi_return_fields(**overrides)))


def test_a_genuine_legacy_return_verifies_sha1_rsa_over_the_sorted_unquoted_fields() -> None:
    verified = verify_legacy(legacy_query())
    assert (verified.out_trade_no, verified.total_amount, verified.currency) == (OUT_TRADE_NO, Decimal("12.34"), "USD")
    assert verified.trade_status == "TRADE_FINISHED"


def test_a_legacy_return_in_rmb_reads_rmb_fee() -> None:
    verified = verify_legacy(legacy_query(legacy_return_fields(total_fee=None, rmb_fee="80.00")))
    assert verified.total_amount == Decimal("80.00")


def test_a_legacy_return_saying_is_success_f_is_not_successful() -> None:
    with pytest.raises(NotSuccessful, match="is_success"):
        verify_legacy(legacy_query(legacy_return_fields(is_success="F")))


def test_a_tampered_legacy_return_is_rejected() -> None:
    query = legacy_query().replace(b"out_trade_no=ORDER", b"out_trade_no=0RDER")
    with pytest.raises(SignatureMismatch, match="RSA"):
        verify_legacy(query)


def test_a_legacy_return_labelled_rsa2_is_rejected_for_an_rsa_merchant() -> None:
    signed = sign_fields(legacy_return_fields(), alipay_key(), sign_type=SignType.RSA2)
    with pytest.raises(SignTypeMismatch, match="merchant uses RSA"):
        verify_legacy(encode_form(signed))


def test_a_legacy_return_without_an_amount_is_rejected() -> None:
    with pytest.raises(InvalidField, match="missing total_fee"):
        verify_legacy(legacy_query(legacy_return_fields(total_fee=None)))


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"app_id": "2021000000009999", "auth_app_id": "2021000000009999"}, "app_id"),
        ({"seller_id": "2088000000009999"}, "seller_id"),
        ({"total_amount": "1.00"}, "total_amount"),
    ],
)
def test_a_genuine_return_for_another_merchant_or_amount_does_not_match(overrides: dict[str, str], field: str) -> None:
    verified = verify_openapi(openapi_query(openapi_return_fields(**overrides)))
    with pytest.raises(OrderMismatch, match=field):
        web.check_return(verified, total_amount=Decimal("12.34"), currency="USD", app_id=APP_ID, seller_id=SELLER_ID)


def test_a_legacy_return_in_another_currency_does_not_match() -> None:
    verified = verify_legacy(legacy_query(legacy_return_fields(currency="HKD")))
    with pytest.raises(OrderMismatch, match="currency"):
        web.check_return(verified, total_amount=Decimal("12.34"), currency="USD", partner=PARTNER)


def test_the_query_rebuilt_from_decoded_values_verifies_and_keeps_repeated_names_to_be_rejected() -> None:
    fields = sign_fields(openapi_return_fields(), alipay_key())
    decoded = {k: [v] for k, v in fields.items()}
    assert verify_openapi(web.encode_query(decoded, AlipayProtocol.OPENAPI)).out_trade_no == OUT_TRADE_NO
    decoded["out_trade_no"] = [OUT_TRADE_NO, "OTHER"]
    with pytest.raises(MalformedMessage, match="duplicate field 'out_trade_no'"):
        verify_openapi(web.encode_query(decoded, AlipayProtocol.OPENAPI))


def test_a_rebuilt_query_that_its_declared_charset_cannot_hold_is_a_charset_error() -> None:
    with pytest.raises(CharsetError, match="gbk"):
        web.encode_query({"charset": ["gbk"], "subject": ["🧦"]}, AlipayProtocol.OPENAPI)
