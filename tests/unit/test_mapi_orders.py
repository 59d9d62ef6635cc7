"""Legacy Alipay Global ``mobile.securitypay.pay`` order strings: validation, quoting, SHA1withRSA."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import mapi
from chalicelib.alipay.errors import OrderError
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, decode_signature, verify_signature

PARTNER = "2088000000000003"


class KmsLikeSigner:
    """A ``Signer`` that, like AWS KMS, can only do SHA256withRSA; it must never be asked to sign here."""

    @property
    def sign_type(self) -> SignType:
        return SignType.RSA2

    def sign(self, message: bytes) -> bytes:
        raise AssertionError("the legacy protocol must refuse an RSA2-only signer before signing")


def params(**overrides: Any) -> list[tuple[str, str]]:
    kwargs: dict[str, Any] = {
        "partner": PARTNER,
        "notify_url": "https://api.example.com/alipay/notify",
        "out_trade_no": "ORDER-1",
        "subject": "Coffee beans",
        "body": "Arabica, 1 kg",
        "currency": "USD",
        "total_fee": "12.5",
    }
    kwargs.update(overrides)
    return mapi.securitypay_order_params(**kwargs)


@pytest.fixture
def signer(merchant_private_key: rsa.RSAPrivateKey) -> LocalKeySigner:
    return LocalKeySigner(merchant_private_key, SignType.RSA)


def test_the_parameters_carry_the_fixed_values_of_the_service() -> None:
    fields = dict(params(it_b_pay="30m", appenv="system=android^version=3.0.1.2"))
    assert fields["service"] == "mobile.securitypay.pay"
    assert fields["payment_type"] == "1"
    assert fields["seller_id"] == PARTNER
    assert fields["forex_biz"] == "FP"
    assert fields["product_code"] == "NEW_WAP_OVERSEAS_SELLER"
    assert fields["_input_charset"] == "utf-8"
    assert fields["total_fee"] == "12.50"
    assert "rmb_fee" not in fields
    assert fields["it_b_pay"] == "30m"


def test_the_order_string_is_sorted_quoted_content_then_the_encoded_sign(
    signer: LocalKeySigner, merchant_public_key: rsa.RSAPublicKey
) -> None:
    text = mapi.sign_securitypay_order(params(subject="Tea & cake = 中文"), signer)
    content, _, tail = text.partition('&sign="')
    keys = [part.split("=", 1)[0] for part in content.split('"&')]
    assert keys == sorted(keys)
    assert 'subject="Tea & cake = 中文"' in content  # neither escaped nor URL-encoded
    sign, _, sign_type = tail.partition('"')
    assert sign_type == '&sign_type="RSA"'
    assert "+" not in sign  # the base64 is URL-encoded inside its quotes
    assert "/" not in sign
    verify_signature(
        AlipayPublicKeys.of(merchant_public_key),
        content.encode("utf-8"),
        decode_signature(unquote(sign)),
        SignType.RSA,
    )


def test_empty_optional_values_are_neither_sent_nor_signed(signer: LocalKeySigner) -> None:
    text = mapi.sign_securitypay_order([*params(), ("return_url", "")], signer)
    assert "return_url" not in text


def test_rmb_fee_is_an_alternative_to_total_fee() -> None:
    fields = dict(params(total_fee=None, rmb_fee="100"))
    assert fields["rmb_fee"] == "100.00"
    assert "total_fee" not in fields


def test_refuses_both_total_fee_and_rmb_fee() -> None:
    with pytest.raises(OrderError, match="total_fee: exactly one of total_fee"):
        params(total_fee="1.00", rmb_fee="7.00")


def test_refuses_neither_total_fee_nor_rmb_fee() -> None:
    with pytest.raises(OrderError, match="total_fee: exactly one of total_fee"):
        params(total_fee=None)


@pytest.mark.parametrize(
    "partner", ["", "1000000000000000", "208800000000000", "20880000000000031", "2088abcdefghijkl"]
)
def test_refuses_a_partner_that_is_not_a_16_digit_2088_pid(partner: str) -> None:
    with pytest.raises(OrderError, match="partner: must be the 16-digit PID"):
        params(partner=partner)


@pytest.mark.parametrize("currency", ["", "usd", "US", "USDT", "U$D"])
def test_refuses_a_currency_that_is_not_an_iso_code(currency: str) -> None:
    with pytest.raises(OrderError, match="currency: must be an ISO 4217 code"):
        params(currency=currency)


@pytest.mark.parametrize("fee", ["0", "1.001", "abc", "1e3", "-1"])
def test_refuses_an_invalid_total_fee(fee: str) -> None:
    with pytest.raises(OrderError, match="total_fee: must"):
        params(total_fee=fee)


def test_refuses_an_invalid_rmb_fee() -> None:
    with pytest.raises(OrderError, match="rmb_fee: must"):
        params(total_fee=None, rmb_fee="0.001")


def test_refuses_an_invalid_it_b_pay() -> None:
    with pytest.raises(OrderError, match="it_b_pay: must"):
        params(it_b_pay="16d")


@pytest.mark.parametrize(
    ("field", "value"),
    [("subject", 'say "hi"'), ("body", 'a"b'), ("notify_url", 'https://x/"y'), ("trade_information", '{"a":1}')],
)
def test_refuses_a_double_quote_in_any_value_at_signing(signer: LocalKeySigner, field: str, value: str) -> None:
    with pytest.raises(OrderError, match=f"{field}: must not contain '\"'"):
        mapi.sign_securitypay_order(params(**{field: value}), signer)


@pytest.mark.parametrize("marker", ["&sign=", "&sign_type="])
def test_refuses_the_signature_markers_inside_a_value(signer: LocalKeySigner, marker: str) -> None:
    # Past the builder's own check (which refuses any "&name=" already), straight to the signing guard.
    pairs = [(k, f"x{marker}y" if k == "body" else v) for k, v in params()]
    with pytest.raises(OrderError, match=f"body: must not contain '{marker}'"):
        mapi.sign_securitypay_order(pairs, signer)


def test_the_builder_refuses_a_value_that_would_inject_a_field() -> None:
    with pytest.raises(OrderError, match="body: must not contain '&' directly followed by a name"):
        params(body="tea&total_fee=0.01")


def test_a_kms_like_rsa2_signer_is_refused_for_the_legacy_protocol() -> None:
    with pytest.raises(OrderError, match=r"sign_type: mobile\.securitypay\.pay needs an RSA \(SHA1withRSA\) key"):
        mapi.sign_securitypay_order(params(), KmsLikeSigner())


def test_a_local_rsa2_signer_is_refused_for_the_legacy_protocol(merchant_private_key: rsa.RSAPrivateKey) -> None:
    with pytest.raises(OrderError, match="KMS cannot sign SHA-1"):
        mapi.sign_securitypay_order(params(), LocalKeySigner(merchant_private_key, SignType.RSA2))


def test_an_unsorted_order_is_signed_as_written(signer: LocalKeySigner) -> None:
    pairs = [("service", mapi.SECURITYPAY_SERVICE), ("partner", PARTNER), ("_input_charset", "utf-8")]
    text = mapi.sign_securitypay_order(pairs, signer, sort=False)
    assert text.startswith('service="mobile.securitypay.pay"&partner="2088000000000003"&_input_charset="utf-8"&sign=')


def test_notify_verify_url_and_its_strict_answer() -> None:
    url = mapi.notify_verify_url("https://intlmapi.alipay.com/gateway.do", partner=PARTNER, notify_id="a b&c")
    assert url == (
        "https://intlmapi.alipay.com/gateway.do?service=notify_verify&partner=2088000000000003&notify_id=a+b%26c"
    )
    assert mapi.parse_notify_verify("true\n")
    assert not mapi.parse_notify_verify("false")
    assert not mapi.parse_notify_verify("TRUE")
    assert not mapi.parse_notify_verify("<html>true</html>")
