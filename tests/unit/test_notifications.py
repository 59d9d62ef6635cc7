"""Asynchronous notifications of both protocols, verified from the raw bytes: one test per failure branch."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import quote

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chalicelib.alipay.errors import (
    CharsetError,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    OrderMismatch,
    SignatureEncodingError,
    SignatureMismatch,
    SignTypeMismatch,
)
from chalicelib.alipay.notifications import (
    AlipayProtocol,
    Notification,
    check_addressee,
    notification_content,
    verify_notification,
)
from chalicelib.alipay.signing import AlipayPublicKeys, SignType, b64encode
from tests.alipay_fixtures import (
    APP_ID,
    OUT_TRADE_NO,
    PARTNER,
    SELLER_ID,
    alipay_key,
    alipay_keys,
    form_body,
    mapi_notification_fields,
    notification_body,
    openapi_notification_fields,
    sign_fields,
)
from tests.keygen import rsa_key

OPENAPI = AlipayProtocol.OPENAPI
MAPI = AlipayProtocol.MAPI


def verify_openapi(body: bytes, keys: AlipayPublicKeys | None = None) -> Notification:
    return verify_notification(body, protocol=OPENAPI, keys=keys or alipay_keys(), sign_type=SignType.RSA2)


def verify_mapi(body: bytes) -> Notification:
    return verify_notification(body, protocol=MAPI, keys=alipay_keys(), sign_type=SignType.RSA)


# --- the happy path ------------------------------------------------------------------------------------


def test_accepts_a_correctly_signed_open_platform_notification_and_types_its_fields() -> None:
    fields = openapi_notification_fields(refund_fee="0.00")
    notification = verify_openapi(notification_body(fields, alipay_key()))
    assert notification.protocol is OPENAPI
    assert notification.trade_status == "TRADE_SUCCESS"
    assert notification.out_trade_no == OUT_TRADE_NO
    assert notification.total_amount == Decimal("88.88")
    assert notification.refund_fee == Decimal("0.00")
    assert notification.app_id == APP_ID
    assert notification.seller_id == SELLER_ID
    assert notification.charset == "utf-8"
    assert notification.fields["fund_bill_list"] == fields["fund_bill_list"]


def test_every_typed_field_of_the_record_holds_its_own_value() -> None:
    # The record is built positionally (the verifier's hot path): each field gets a value no other field has.
    fields = openapi_notification_fields(refund_fee="1.25") | {
        "notify_id": "nid-1",
        "notify_type": "trade_status_sync",
        "notify_time": "2026-12-06 10:00:00",
        "trade_no": "tn-2",
        "currency": "USD",
    }
    notification = verify_openapi(notification_body(fields, alipay_key()))
    record = notification._asdict()
    assert record.pop("fields") == notification.fields
    assert record == {
        "protocol": OPENAPI,
        "notify_id": "nid-1",
        "notify_type": "trade_status_sync",
        "notify_time": "2026-12-06 10:00:00",
        "trade_status": "TRADE_SUCCESS",
        "out_trade_no": OUT_TRADE_NO,
        "trade_no": "tn-2",
        "total_amount": Decimal("88.88"),
        "currency": "USD",
        "refund_fee": Decimal("1.25"),
        "app_id": APP_ID,
        "seller_id": SELLER_ID,
        "charset": "utf-8",
    }


def test_accepts_a_notification_without_sign_type_using_the_configured_algorithm() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    del signed["sign_type"]
    assert verify_openapi(form_body(signed)).trade_status == "TRADE_SUCCESS"


def test_accepts_a_charset_field_in_upper_case() -> None:
    fields = openapi_notification_fields(charset="UTF-8")
    assert verify_openapi(notification_body(fields, alipay_key())).charset == "utf-8"


@pytest.mark.parametrize("status", ["WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"])
def test_accepts_every_documented_trade_status(status: str) -> None:
    body = notification_body(openapi_notification_fields(trade_status=status), alipay_key())
    assert verify_openapi(body).trade_status == status


# --- form syntax ---------------------------------------------------------------------------------------


def test_rejects_an_empty_body() -> None:
    with pytest.raises(MalformedMessage, match="empty body"):
        verify_openapi(b"")


def test_rejects_a_body_of_only_separators() -> None:
    with pytest.raises(MalformedMessage, match="empty body"):
        verify_openapi(b"&&&")


def test_rejects_a_form_part_without_an_equals_sign() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&truncated"
    with pytest.raises(MalformedMessage, match="without '='"):
        verify_openapi(body)


def test_rejects_an_invalid_percent_escape() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&memo=%zz"
    with pytest.raises(MalformedMessage, match="bad percent-encoding"):
        verify_openapi(body)


def test_rejects_a_truncated_percent_escape_at_the_end_of_the_body() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&memo=abc%4"
    with pytest.raises(MalformedMessage, match="bad percent-encoding"):
        verify_openapi(body)


def test_rejects_an_encoded_nul_byte() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&memo=a%00b"
    with pytest.raises(MalformedMessage, match="bad percent-encoding"):
        verify_openapi(body)


def test_rejects_a_raw_nul_byte() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&memo=a\x00b"
    with pytest.raises(MalformedMessage, match="NUL"):
        verify_openapi(body)


def test_rejects_a_duplicate_field_even_when_both_values_are_equal() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key())
    with pytest.raises(MalformedMessage, match="duplicate field 'out_trade_no'"):
        verify_openapi(body + b"&out_trade_no=" + quote(OUT_TRADE_NO).encode())


def test_rejects_a_second_sign_field() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key())
    with pytest.raises(MalformedMessage, match="duplicate field 'sign'"):
        verify_openapi(body + b"&sign=AAAA")


@pytest.mark.parametrize(
    "part",
    [b"=value", b"a+b=1", b"a%20b=1", b"%3Cscript%3E=1", b"k" * 65 + b"=1", b"a/b=1"],
    ids=["empty", "space-as-plus", "space-escaped", "markup", "too-long", "slash"],
)
def test_rejects_an_invalid_field_name(part: bytes) -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&" + part
    with pytest.raises(MalformedMessage, match="field name"):
        verify_openapi(body)


def test_rejects_a_non_ascii_field_name() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&%E4%B8%AD=1"
    with pytest.raises(MalformedMessage, match="non-ASCII"):
        verify_openapi(body)


# --- charsets ------------------------------------------------------------------------------------------


def test_rejects_an_unknown_charset() -> None:
    body = notification_body(openapi_notification_fields(charset="latin-1"), alipay_key())
    with pytest.raises(CharsetError, match="unsupported charset 'latin-1'"):
        verify_openapi(body)


def test_rejects_a_non_ascii_charset_value() -> None:
    body = b"charset=%FF&" + notification_body(openapi_notification_fields(charset=None), alipay_key())
    with pytest.raises(CharsetError, match="charset value is not ASCII"):
        verify_openapi(body)


def test_rejects_a_body_that_does_not_decode_in_its_declared_charset() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key()) + b"&memo=%FF%FE"
    with pytest.raises(CharsetError, match="'memo' is not valid utf-8"):
        verify_openapi(body)


def test_accepts_a_gbk_notification_with_a_chinese_subject() -> None:
    fields = openapi_notification_fields(charset="gbk", subject="大乐透2.1", body="咖啡豆 一袋")
    body = notification_body(fields, alipay_key(), charset="gbk")
    assert "%B4%F3" in body.decode("ascii")  # 大 in GBK, so the bytes really are GBK
    notification = verify_openapi(body)
    assert notification.charset == "gbk"
    assert notification.fields["subject"] == "大乐透2.1"
    assert notification.fields["body"] == "咖啡豆 一袋"


def test_rejects_the_same_gbk_bytes_relabelled_as_utf8() -> None:
    fields = openapi_notification_fields(charset="gbk", subject="大乐透2.1")
    body = notification_body(fields, alipay_key(), charset="gbk")
    relabelled = body.replace(b"charset=gbk", b"charset=utf-8")
    assert relabelled != body
    with pytest.raises(CharsetError, match="not valid utf-8"):
        verify_openapi(relabelled)


def test_rejects_a_gbk_notification_relabelled_utf8_even_when_its_bytes_decode_as_utf8() -> None:
    # The classic mojibake: GBK text whose bytes are the UTF-8 of "你好". The charset field is signed.
    mojibake = "你好".encode().decode("gbk")
    body = notification_body(openapi_notification_fields(charset="gbk", subject=mojibake), alipay_key(), charset="gbk")
    assert quote("你好").encode() in body
    with pytest.raises(SignatureMismatch):
        verify_openapi(body.replace(b"charset=gbk", b"charset=utf-8"))


def test_decodes_an_open_platform_notification_without_charset_as_gbk() -> None:
    fields = openapi_notification_fields(charset=None, subject="大乐透")
    notification = verify_openapi(notification_body(fields, alipay_key(), charset="gbk"))
    assert notification.charset == "gbk"
    assert notification.fields["subject"] == "大乐透"


def test_a_utf8_notification_without_charset_fails_under_the_gbk_default() -> None:
    fields = openapi_notification_fields(charset=None, subject="大乐透")
    with pytest.raises(CharsetError, match="not valid gbk"):
        verify_openapi(notification_body(fields, alipay_key(), charset="utf-8"))


def test_a_caller_may_override_the_default_charset() -> None:
    fields = openapi_notification_fields(charset=None, subject="大乐透")
    body = notification_body(fields, alipay_key(), charset="utf-8")
    notification = verify_notification(
        body, protocol=OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2, default_charset="utf-8"
    )
    assert notification.fields["subject"] == "大乐透"


# --- the signature -------------------------------------------------------------------------------------


def test_rejects_a_notification_without_sign() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    del signed["sign"]
    with pytest.raises(MissingSignature, match="no sign"):
        verify_openapi(form_body(signed))


def test_rejects_a_notification_with_an_empty_sign() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["sign"] = ""
    with pytest.raises(MissingSignature, match="no sign"):
        verify_openapi(form_body(signed))


@pytest.mark.parametrize(
    "sign",
    ["not base64!", "QUJDRA", "QUJD RA==", "QUJD\nRA==", "QUJD-_==", "签名"],
    ids=["punctuation", "no-padding", "space", "newline", "urlsafe-alphabet", "non-ascii"],
)
def test_rejects_a_sign_that_is_not_strict_base64(sign: str) -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["sign"] = sign
    with pytest.raises(SignatureEncodingError, match="not valid base64"):
        verify_openapi(form_body(signed))


def test_rejects_a_sign_whose_plus_signs_arrived_unencoded() -> None:
    # A raw '+' in a form body means a space: the base64 breaks, and that is reported as such.
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["sign"] = "ab+c"
    body = form_body(signed).replace(b"%2B", b"+")
    with pytest.raises(SignatureEncodingError, match="not valid base64"):
        verify_openapi(body)


def test_rejects_a_well_encoded_sign_of_the_wrong_length() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["sign"] = "QUJD"
    with pytest.raises(SignatureMismatch):
        verify_openapi(form_body(signed))


def test_rejects_notification_signed_with_rsa_when_rsa2_is_configured() -> None:
    body = notification_body(openapi_notification_fields(), alipay_key(), sign_type=SignType.RSA)
    with pytest.raises(SignTypeMismatch, match="sign_type 'RSA' but the merchant uses RSA2"):
        verify_openapi(body)


def test_rejects_a_notification_labelled_md5_when_rsa2_is_configured() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["sign_type"] = "MD5"
    with pytest.raises(SignTypeMismatch, match="sign_type 'MD5'"):
        verify_openapi(form_body(signed))


def test_rejects_a_sha1_signature_labelled_rsa2() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key(), sign_type=SignType.RSA)
    signed["sign_type"] = "RSA2"
    with pytest.raises(SignatureMismatch, match=r"does not verify \(RSA2\)"):
        verify_openapi(form_body(signed))


def test_rejects_a_notification_signed_with_the_merchants_own_key(merchant_private_key: rsa.RSAPrivateKey) -> None:
    body = notification_body(openapi_notification_fields(), merchant_private_key)
    with pytest.raises(SignatureMismatch, match="any configured Alipay key"):
        verify_openapi(body)


def test_rejects_a_tampered_amount_under_the_original_sign() -> None:
    signed = sign_fields(openapi_notification_fields(total_amount="88.88"), alipay_key())
    signed["total_amount"] = "0.01"
    with pytest.raises(SignatureMismatch):
        verify_openapi(form_body(signed))


def test_rejects_a_tampered_trade_status_under_the_original_sign() -> None:
    signed = sign_fields(openapi_notification_fields(trade_status="TRADE_CLOSED"), alipay_key())
    signed["trade_status"] = "TRADE_SUCCESS"
    with pytest.raises(SignatureMismatch):
        verify_openapi(form_body(signed))


# --- the typed fields, after a valid signature -----------------------------------------------------------


@pytest.mark.parametrize("field", ["trade_status", "notify_id", "out_trade_no", "total_amount"])
def test_rejects_a_signed_notification_missing_a_required_field(field: str) -> None:
    body = notification_body(openapi_notification_fields(**{field: None}), alipay_key())
    with pytest.raises(InvalidField, match=f"missing {field}"):
        verify_openapi(body)


def test_treats_an_empty_required_field_as_missing() -> None:
    body = notification_body(openapi_notification_fields(notify_id=""), alipay_key())
    with pytest.raises(InvalidField, match="missing notify_id"):
        verify_openapi(body)


def test_rejects_an_unknown_trade_status() -> None:
    body = notification_body(openapi_notification_fields(trade_status="TRADE_PAID"), alipay_key())
    with pytest.raises(InvalidField, match="unknown trade_status 'TRADE_PAID'"):
        verify_openapi(body)


@pytest.mark.parametrize("amount", ["abc", "1e3", "-1.00", "0.00", "1.001", "100000000.01", "1,00"])
def test_rejects_a_signed_notification_with_a_bad_amount(amount: str) -> None:
    body = notification_body(openapi_notification_fields(total_amount=amount), alipay_key())
    with pytest.raises(InvalidField, match="total_amount"):
        verify_openapi(body)


def test_rejects_a_signed_notification_with_a_bad_refund_fee() -> None:
    body = notification_body(openapi_notification_fields(refund_fee="-1"), alipay_key())
    with pytest.raises(InvalidField, match="refund_fee"):
        verify_openapi(body)


# --- canonical content: values, empty fields, extra fields ------------------------------------------------


def test_values_with_json_and_form_metacharacters_survive_sign_encode_verify() -> None:
    tricky = 'a{b}c& d=e"f%20g+h 中文 ñ'  # '&' and '=' both, but no "&name=" (refused: it would be ambiguous)
    fields = openapi_notification_fields(body=tricky, passback_params="x%3Dy%26z", subject='say "hi" & {go}')
    notification = verify_openapi(notification_body(fields, alipay_key()))
    assert notification.fields["body"] == tricky
    assert notification.fields["passback_params"] == "x%3Dy%26z"  # decoded once, exactly as Alipay does
    assert notification.fields["subject"] == 'say "hi" & {go}'


def test_empty_values_are_left_out_of_the_signed_content() -> None:
    fields = openapi_notification_fields(gmt_refund="", body="")
    content = notification_content({**fields, "sign": "x", "sign_type": "RSA2"})
    assert "gmt_refund" not in content
    assert "&body=" not in content
    assert "sign=" not in content
    assert "sign_type" not in content
    # Sent anyway (Alipay does not, a proxy might): they neither break nor join the signature, and being
    # unsigned they are not handed on.
    notification = verify_openapi(notification_body(fields, alipay_key()))
    assert "gmt_refund" not in notification.fields


def test_an_unknown_extra_field_is_kept_and_signed_over() -> None:
    fields = openapi_notification_fields(new_field_2030="surprise")
    signed = sign_fields(fields, alipay_key())
    assert verify_openapi(form_body(signed)).fields["new_field_2030"] == "surprise"
    del signed["new_field_2030"]
    with pytest.raises(SignatureMismatch):
        verify_openapi(form_body(signed))


def test_an_added_unsigned_field_fails_verification() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["refund_fee"] = "88.88"
    with pytest.raises(SignatureMismatch):
        verify_openapi(form_body(signed))


def test_field_order_on_the_wire_does_not_matter() -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    reordered = dict(reversed(list(signed.items())))
    assert verify_openapi(form_body(reordered)).out_trade_no == OUT_TRADE_NO


# --- key rotation ---------------------------------------------------------------------------------------


def test_during_a_rotation_both_the_old_and_the_new_key_verify() -> None:
    old, new = rsa_key("alipay-old", 1024), rsa_key("alipay-new", 1024)
    keys = alipay_keys(old, new)
    for key in (old, new):
        assert verify_openapi(notification_body(openapi_notification_fields(), key), keys).out_trade_no


def test_after_a_rotation_a_notification_signed_with_the_old_key_fails() -> None:
    old, new = rsa_key("alipay-old", 1024), rsa_key("alipay-new", 1024)
    body = notification_body(openapi_notification_fields(), old)
    with pytest.raises(SignatureMismatch):
        verify_openapi(body, alipay_keys(new))


# --- legacy (MAPI) notifications --------------------------------------------------------------------------


def test_accepts_a_legacy_notification_signed_sha1_over_unquoted_content() -> None:
    fields = mapi_notification_fields()
    signed = sign_fields(fields, alipay_key(), sign_type=SignType.RSA)
    content = notification_content(signed)
    assert '"' not in content
    assert content.startswith("buyer_id=2088102122524333&currency=USD&gmt_create=")
    notification = verify_mapi(form_body(signed))
    assert notification.protocol is MAPI
    assert notification.trade_status == "TRADE_FINISHED"
    assert notification.total_amount == Decimal("12.50")  # from total_fee
    assert notification.currency == "USD"
    assert notification.app_id is None
    assert notification.charset == "utf-8"


def test_rejects_a_legacy_notification_labelled_rsa2_for_an_rsa_merchant() -> None:
    body = notification_body(mapi_notification_fields(), alipay_key(), sign_type=SignType.RSA2)
    with pytest.raises(SignTypeMismatch, match="sign_type 'RSA2' but the merchant uses RSA"):
        verify_mapi(body)


def test_rejects_a_legacy_notification_without_total_fee() -> None:
    fields = mapi_notification_fields(total_fee=None, total_amount="12.50")
    body = notification_body(fields, alipay_key(), sign_type=SignType.RSA)
    with pytest.raises(InvalidField, match="missing total_fee"):
        verify_mapi(body)


def test_decodes_a_legacy_notification_in_its_input_charset() -> None:
    fields = mapi_notification_fields(_input_charset="gbk", subject="咖啡")
    notification = verify_mapi(notification_body(fields, alipay_key(), sign_type=SignType.RSA, charset="gbk"))
    assert notification.fields["subject"] == "咖啡"


# --- addressee ------------------------------------------------------------------------------------------


def test_check_addressee_accepts_our_app_and_seller() -> None:
    notification = verify_openapi(notification_body(openapi_notification_fields(), alipay_key()))
    check_addressee(notification, app_id=APP_ID, seller_id=SELLER_ID)


def test_check_addressee_rejects_another_app_id() -> None:
    notification = verify_openapi(notification_body(openapi_notification_fields(), alipay_key()))
    with pytest.raises(OrderMismatch, match="app_id mismatch") as caught:
        check_addressee(notification, app_id="2021999999999999", seller_id=SELLER_ID)
    assert caught.value.field == "app_id"


def test_check_addressee_rejects_a_notification_without_app_id_when_one_is_expected() -> None:
    notification = verify_openapi(notification_body(openapi_notification_fields(app_id=None), alipay_key()))
    with pytest.raises(OrderMismatch, match="app_id mismatch"):
        check_addressee(notification, app_id=APP_ID)


def test_check_addressee_rejects_another_seller_id() -> None:
    notification = verify_openapi(notification_body(openapi_notification_fields(), alipay_key()))
    with pytest.raises(OrderMismatch, match="seller_id mismatch") as caught:
        check_addressee(notification, app_id=APP_ID, seller_id="2088999999999999")
    assert caught.value.field == "seller_id"


def test_check_addressee_rejects_another_partner_on_a_legacy_notification() -> None:
    fields = mapi_notification_fields(partner="2088999999999999")
    notification = verify_mapi(notification_body(fields, alipay_key(), sign_type=SignType.RSA))
    with pytest.raises(OrderMismatch, match="partner mismatch") as caught:
        check_addressee(notification, partner=PARTNER)
    assert caught.value.field == "partner"


def test_check_addressee_checks_a_legacy_seller_id_against_the_partner() -> None:
    notification = verify_mapi(notification_body(mapi_notification_fields(), alipay_key(), sign_type=SignType.RSA))
    check_addressee(notification, app_id="ignored-for-legacy", seller_id=PARTNER, partner=PARTNER)
    with pytest.raises(OrderMismatch, match="seller_id mismatch"):
        check_addressee(notification, seller_id="2088999999999999")


def test_a_key_set_needs_at_least_one_key() -> None:
    with pytest.raises(ValueError, match="at least one Alipay public key"):
        AlipayPublicKeys(())


def test_a_key_set_can_be_built_from_one_key_or_many() -> None:
    old, new = rsa_key("alipay-old", 1024).public_key(), rsa_key("alipay-new", 1024).public_key()
    assert AlipayPublicKeys.of(old).keys == (old,)
    assert AlipayPublicKeys.of([old, new]).keys == (old, new)
    keys = AlipayPublicKeys.of([old])
    assert AlipayPublicKeys.of(keys) is keys


def _signed_over(fields: dict[str, str], content: str) -> bytes:
    sign = b64encode(alipay_key().sign(content.encode(), padding.PKCS1v15(), hashes.SHA256()))
    return form_body({**fields, "sign_type": "RSA2", "sign": sign})


def test_accepts_an_empty_field_signed_as_k_equals_nothing_like_the_alipay_sdk_verifiers() -> None:
    fields = openapi_notification_fields(gmt_close="")
    content = "&".join(f"{k}={fields[k]}" for k in sorted(fields))
    assert "&gmt_close=&" in content
    assert verify_openapi(_signed_over(fields, content)).fields["gmt_close"] == ""


def test_accepts_a_whitespace_only_field_left_out_like_alipays_signing_does() -> None:
    fields = openapi_notification_fields(body=" ")
    content = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if fields[k].strip())
    # The signature does not cover the blank field, so it is not handed on (a forger could add one).
    assert "body" not in verify_openapi(_signed_over(fields, content)).fields


def test_a_blank_field_does_not_open_a_way_around_a_tampered_one() -> None:
    fields = openapi_notification_fields(gmt_close="")
    body = _signed_over(fields, "&".join(f"{k}={fields[k]}" for k in sorted(fields)))
    with pytest.raises(SignatureMismatch):
        verify_openapi(body.replace(b"total_amount=", b"total_amount=1"))


def test_a_value_holding_an_injected_field_is_refused_as_ambiguous() -> None:
    # Alipay's content joins k=v with '&' unescaped: "x&trade_status=..." could be re-split under one signature.
    body = notification_body(openapi_notification_fields(subject="x&trade_status=TRADE_SUCCESS"), alipay_key())
    with pytest.raises(MalformedMessage, match="field 'subject' holds '&name='"):
        verify_openapi(body)
