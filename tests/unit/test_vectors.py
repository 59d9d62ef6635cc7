"""The published known-answer vectors, reproduced byte for byte."""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import mapi, openapi
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType, decode_signature, verify_signature


def test_legacy_order_string_signed_in_insertion_order_matches_the_vector(
    vectors: dict[str, Any], merchant_private_key: rsa.RSAPrivateKey
) -> None:
    vector = vectors["legacy_order_string_unsorted"]
    pairs = [(k, v) for k, v in vector["params_in_order"]]
    signer = LocalKeySigner(merchant_private_key, SignType.RSA)
    assert mapi.sign_securitypay_order(pairs, signer, sort=False) == vector["order_string"]


def test_legacy_vector_signature_verifies_over_the_part_before_sign(
    vectors: dict[str, Any], merchant_public_key: rsa.RSAPublicKey
) -> None:
    order = vectors["legacy_order_string_unsorted"]["order_string"]
    content, _, tail = order.partition('&sign="')
    sign = tail.split('"', 1)[0].replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    verify_signature(
        AlipayPublicKeys.of(merchant_public_key), content.encode(), decode_signature(sign), SignType.RSA
    )


def test_openapi_cert_mode_signed_content_and_sign_match_the_vector(
    vectors: dict[str, Any], merchant_private_key: rsa.RSAPrivateKey
) -> None:
    vector = vectors["openapi_order_string_cert_mode"]
    params = vector["params"]
    assert openapi.request_signed_content(params) == vector["signed_content"]
    assert openapi.sign_request(params, LocalKeySigner(merchant_private_key)) == vector["sign"]


def test_openapi_order_string_encodes_exactly_as_the_sdk_emits_it(
    vectors: dict[str, Any], merchant_private_key: rsa.RSAPrivateKey
) -> None:
    vector = vectors["openapi_order_string_cert_mode"]
    emitted = vector["order_string_as_one_sdk_emits_it"]
    in_sdk_order = {k.split("=", 1)[0]: vector["params"][k.split("=", 1)[0]] for k in emitted.split("&")[:-1]}
    sign = openapi.sign_request(in_sdk_order, LocalKeySigner(merchant_private_key))
    assert openapi.encode_params(in_sdk_order, sign) == emitted


def test_notification_format_sample_content_rule(vectors: dict[str, Any]) -> None:
    expected = vectors["openapi_notification_format_sample"]["signed_content"]
    fields = dict(pair.split("=", 1) for pair in expected.split("&"))
    fields.update({"sign": "c2lnbg==", "sign_type": "RSA2", "gmt_refund": ""})
    from chalicelib.alipay.notifications import notification_content

    assert notification_content(fields) == expected


def test_sync_result_sample_signed_content_is_the_raw_response_substring(vectors: dict[str, Any]) -> None:
    result = vectors["openapi_sync_result_format_sample"]["result"]
    response = openapi.extract_response(result, openapi.APP_PAY_RESPONSE)
    start = result.index('{"code"')
    assert response.content == result[start : result.index("},") + 1]
    assert response.sign == "NGfStJf3..."
    assert response.sign_type == "RSA2"
