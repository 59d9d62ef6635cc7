"""Antom's wire protocol (chalicelib/alipay/antom.py): one test per failure branch, notifications, amounts, bodies.

Messages are signed by ``tests/antom_kit.py``, written from the protocol text and not with ``antom``'s own code.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.alipay import antom
from chalicelib.alipay.errors import (
    ClientIdMismatch,
    InvalidField,
    MalformedMessage,
    MalformedSignature,
    MissingHeader,
    OrderError,
    SignatureMismatch,
    UnsupportedAlgorithm,
    VerificationError,
)
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType
from tests.antom_kit import CLIENT_ID, NOTIFY_URL, PATH, TIME, antom_key, keys, sign
from tests.keygen import rsa_key


def payment(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "notifyType": "PAYMENT_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentRequestId": "ORDER-1",
        "paymentId": "2026120511401080010018800000000A",
        "paymentAmount": {"currency": "USD", "value": "1234"},
        "paymentCreateTime": "2026-12-05T18:30:00+08:00",
        "paymentTime": "2026-12-05T18:30:40+08:00",
    }
    data.update(overrides)
    return data


def refund(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "notifyType": "REFUND_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "refundStatus": "SUCCESS",
        "refundRequestId": "R-ORDER-1-1",
        "refundId": "2026120511401080010018800000000R",
        "refundAmount": {"currency": "USD", "value": "500"},
        "refundTime": "2026-12-05T18:40:00+08:00",
    }
    data.update(overrides)
    return data


def dump(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def verify(headers: dict[str, str], body: bytes, **options: Any) -> antom.AntomNotification:
    settings_: dict[str, Any] = {"path": PATH, "client_id": CLIENT_ID, "keys": keys()}
    settings_.update(options)
    return antom.verify_notification(headers, body, **settings_)


# --- verify_message: one test per failure branch ---------------------------------------------------------------


def test_a_genuine_notification_verifies() -> None:
    body = dump(payment())
    assert verify(sign(body), body).paid is True


@pytest.mark.parametrize("header", ["client-id", "request-time", "signature"])
def test_a_missing_header_is_named(header: str) -> None:
    body = dump(payment())
    headers = sign(body)
    del headers[header]
    with pytest.raises(MissingHeader) as caught:
        verify(headers, body)
    assert caught.value.check == "missing_header"
    assert caught.value.header == header


@pytest.mark.parametrize("header", ["client-id", "request-time", "signature"])
def test_an_empty_header_counts_as_missing(header: str) -> None:
    body = dump(payment())
    headers = sign(body) | {header: "  "}
    with pytest.raises(MissingHeader):
        verify(headers, body)


def test_another_merchants_client_id_is_refused_before_the_signature() -> None:
    body = dump(payment())
    with pytest.raises(ClientIdMismatch) as caught:
        verify(sign(body, client_id="2188120000000002"), body)
    assert caught.value.check == "client_id"


def test_a_signature_for_another_path_is_refused() -> None:
    body = dump(payment())
    with pytest.raises(SignatureMismatch) as caught:
        verify(sign(body, path="/antom/notify"), body)
    assert caught.value.check == "signature"


def test_a_changed_body_is_refused() -> None:
    body = dump(payment())
    headers = sign(body)
    with pytest.raises(SignatureMismatch):
        verify(headers, dump(payment(paymentAmount={"currency": "USD", "value": "1"})))


def test_a_changed_time_is_refused() -> None:
    body = dump(payment())
    headers = sign(body) | {"request-time": "1764930640001"}
    with pytest.raises(SignatureMismatch):
        verify(headers, body)


def test_a_signature_by_another_key_is_refused() -> None:
    body = dump(payment())
    with pytest.raises(SignatureMismatch):
        verify(sign(body, key=rsa_key("other")), body)


@pytest.mark.parametrize("algorithm", ["RSA", "rsa256", "RSA512", "HS256", "ECDSA"])
def test_an_algorithm_other_than_rsa256_is_refused(algorithm: str) -> None:
    body = dump(payment())
    with pytest.raises(UnsupportedAlgorithm) as caught:
        verify(sign(body, algorithm=algorithm), body)
    assert caught.value.check == "algorithm"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "algorithm=RSA256,keyVersion=1",  # no signature=
        "keyVersion=1,signature=c2lnbg%3D%3D",  # no algorithm
        "algorithm=RSA256,keyVersion=1,signature=",
        "algorithm=RSA256,keyVersion=1,signature=not*base64",
        "algorithm=RSA256,keyVersion=1,signature=c2lnbg%3D%3D,signature=c2lnbg%3D%3D",
        "algorithm=RSA256,,signature=c2lnbg%3D%3D",
    ],
)
def test_a_malformed_signature_header_is_refused(header: str) -> None:
    body = dump(payment())
    headers = sign(body) | {"signature": header}
    with pytest.raises(MalformedSignature) as caught:
        verify(headers, body)
    assert caught.value.check == "malformed_signature"


def test_headers_are_read_case_insensitively() -> None:
    body = dump(payment())
    headers = {name.upper() if name != "signature" else "Signature": value for name, value in sign(body).items()}
    assert set(headers) == {"CLIENT-ID", "REQUEST-TIME", "Signature"}
    assert verify(headers, body).paid


def test_one_header_sent_twice_with_different_values_is_refused() -> None:
    body = dump(payment())
    headers = sign(body) | {"Client-Id": "2188120000000002"}
    with pytest.raises(MalformedMessage):
        verify(headers, body)


def test_spaces_after_the_commas_as_in_antoms_documentation_are_read() -> None:
    body = dump(payment())
    headers = sign(body)
    headers["signature"] = headers["signature"].replace(",", ", ")
    assert verify(headers, body).paid


def test_a_signature_whose_base64_was_not_url_encoded_still_verifies() -> None:
    body = dump(payment())
    headers = sign(body)
    prefix, _, encoded = headers["signature"].partition("signature=")
    headers["signature"] = prefix + "signature=" + encoded.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=")
    assert verify(headers, body).paid


def test_during_a_key_rotation_either_key_verifies() -> None:
    rotation = AlipayPublicKeys((rsa_key("other").public_key(), antom_key().public_key()))
    body = dump(payment())
    assert verify(sign(body), body, keys=rotation).paid
    assert verify(sign(body, key=rsa_key("other")), body, keys=rotation).paid


def test_the_time_is_signed_verbatim_whatever_its_format() -> None:
    body = dump(payment())
    assert verify(sign(body, time="2026-12-05T10:30:40+00:00"), body).paid


def test_a_notification_signed_as_a_reply_lacks_its_request_time() -> None:
    body = dump(payment())
    with pytest.raises(MissingHeader) as caught:
        verify(sign(body, time_header="response-time"), body)
    assert caught.value.header == "request-time"


@settings(max_examples=40, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.data())
def test_any_changed_byte_of_the_body_is_refused(tail: bytes, data: st.DataObject) -> None:
    body = dump(payment()) + tail
    headers = sign(body)
    index = data.draw(st.integers(0, len(body) - 1))
    flip = data.draw(st.integers(1, 255))
    changed = body[:index] + bytes([body[index] ^ flip]) + body[index + 1 :]
    with pytest.raises(SignatureMismatch):
        antom.verify_message(headers, changed, method="POST", path=PATH, client_id=CLIENT_ID, keys=keys())


NAMED_CHECKS = {"missing_header", "client_id", "algorithm", "malformed_signature", "signature", "malformed"}


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["client-id", "Client-Id", "request-time", "signature", "Signature", "x"]),
        st.text(max_size=80),
    ),
    st.binary(max_size=64),
)
def test_arbitrary_headers_only_ever_fail_a_named_check(headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(VerificationError) as caught:
        antom.verify_message(headers, body, method="POST", path=PATH, client_id=CLIENT_ID, keys=keys())
    assert caught.value.check in NAMED_CHECKS


# --- notifications -------------------------------------------------------------------------------------------


def test_a_paid_payment_notification() -> None:
    body = dump(payment())
    n = verify(sign(body), body)
    assert n.kind == "payment"
    assert n.paid is True
    assert (n.out_trade_no, n.payment_id) == ("ORDER-1", "2026120511401080010018800000000A")
    assert (n.amount, n.currency) == (Decimal("12.34"), "USD")
    assert n.occurred_at == "2026-12-05T18:30:40+08:00"
    assert n.notify_id == "PAYMENT_RESULT:2026120511401080010018800000000A:S"
    assert n.fields["paymentAmount.value"] == "1234"
    assert n.fields["result.resultCode"] == "SUCCESS"


def test_a_failed_payment_notification_is_not_paid() -> None:
    body = dump(payment(result={"resultCode": "USER_BALANCE_NOT_ENOUGH", "resultStatus": "F", "resultMessage": "x"}))
    n = verify(sign(body), body)
    assert n.paid is False
    assert (n.result_status, n.result_code) == ("F", "USER_BALANCE_NOT_ENOUGH")
    assert n.notify_id == "PAYMENT_RESULT:2026120511401080010018800000000A:F"


def test_a_pending_payment_notification_is_not_paid_even_with_status_s() -> None:
    body = dump(payment(notifyType="PAYMENT_PENDING"))
    n = verify(sign(body), body)
    assert n.paid is False
    assert n.notify_type == "PAYMENT_PENDING"
    assert n.notify_id == "PAYMENT_PENDING:2026120511401080010018800000000A:S"


@pytest.mark.parametrize("status", ["SUCCESS", "FAIL"])
def test_refund_notifications(status: str) -> None:
    result = "S" if status == "SUCCESS" else "F"
    body = dump(refund(refundStatus=status, result={"resultCode": "X", "resultStatus": result}))
    n = verify(sign(body), body)
    assert n.kind == "refund"
    assert n.paid is False
    assert (n.refund_status, n.refund_request_id) == (status, "R-ORDER-1-1")
    assert n.refund_id == "2026120511401080010018800000000R"
    assert (n.amount, n.currency) == (Decimal("5.00"), "USD")
    assert n.out_trade_no == ""  # notifyRefund names no paymentRequestId: the order is found from the refund
    assert n.notify_id == f"REFUND_RESULT:R-ORDER-1-1:{status}"


def test_an_unknown_refund_status_is_refused() -> None:
    body = dump(refund(refundStatus="PROCESSING"))
    with pytest.raises(InvalidField):
        verify(sign(body), body)


@pytest.mark.parametrize(
    ("currency", "value", "amount"),
    [("USD", "1234", Decimal("12.34")), ("USD", "1", Decimal("0.01")), ("JPY", "1234", Decimal(1234)),
     ("KRW", "15000", Decimal(15000)), ("HKD", "100", Decimal("1.00"))],
)  # fmt: skip
def test_amounts_are_read_in_the_currencys_minor_unit(currency: str, value: str, amount: Decimal) -> None:
    body = dump(payment(paymentAmount={"currency": currency, "value": value}))
    n = verify(sign(body), body)
    assert (n.amount, n.currency) == (amount, currency)


def test_the_notify_id_is_the_same_for_every_resend() -> None:
    body = dump(payment())
    first = verify(sign(body, time="1764930640000"), body)
    again = verify(sign(body, time="1764930760000"), body)
    assert first.notify_id == again.notify_id


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1,2]", b'"text"', b'{"a":1,"a":2}', b'{"a":NaN}', b"\xff\xfe{}", b"{" * 100000],
)
def test_a_body_that_is_not_one_json_object_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedMessage):
        verify(sign(body), body)


@pytest.mark.parametrize("missing", ["paymentRequestId", "paymentId", "paymentAmount", "result"])
def test_a_payment_notification_missing_a_field_is_refused(missing: str) -> None:
    data = payment()
    del data[missing]
    body = dump(data)
    with pytest.raises(InvalidField) as caught:
        verify(sign(body), body)
    assert missing in str(caught.value)


@pytest.mark.parametrize(
    ("part", "value"),
    [("result", {"resultCode": "SUCCESS"}), ("result", {"resultStatus": "S"}), ("result", {"resultCode": "A",
     "resultStatus": "X"}), ("paymentAmount", {"value": "1234"}), ("paymentAmount", {"currency": "USD"}),
     ("paymentAmount", "1234"), ("paymentId", 12345), ("notifyType", "CAPTURE_RESULT")],
)  # fmt: skip
def test_a_notification_with_an_unusable_field_is_refused(part: str, value: object) -> None:
    body = dump(payment(**{part: value}))
    with pytest.raises(InvalidField):
        verify(sign(body), body)


@pytest.mark.parametrize(
    ("currency", "value"),
    [("USD", "12.34"), ("USD", "-5"), ("USD", "0"), ("USD", "0123"), ("USD", " 1234"), ("USD", "1e3"),
     ("USD", "12345678901234567"), ("usd", "100"), ("US", "100"), ("VND", "10000"), ("CLP", "500")],
)  # fmt: skip
def test_an_amount_that_does_not_fit_its_currency_is_refused(currency: str, value: str) -> None:
    body = dump(payment(paymentAmount={"currency": currency, "value": value}))
    with pytest.raises(InvalidField):
        verify(sign(body), body)


def test_an_amount_sent_as_a_json_number_is_refused() -> None:
    body = dump(payment(paymentAmount={"currency": "USD", "value": 1234}))
    with pytest.raises(InvalidField):
        verify(sign(body), body)


def test_the_ack_is_exactly_antoms_fixed_answer() -> None:
    assert json.loads(antom.ACK_BODY) == {
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}
    }
    assert b" " not in antom.ACK_BODY
    assert antom.RETRY_DELAYS_SECONDS == (0, 120, 600, 600, 3600, 7200, 21600, 54000)


# --- amounts -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "value"),
    [("12.34", "USD", "1234"), ("0.01", "USD", "1"), ("100", "JPY", "100"), ("100.00", "JPY", "100"),
     ("15000", "KRW", "15000"), ("1.5", "HKD", "150")],
)  # fmt: skip
def test_to_minor(amount: str, currency: str, value: str) -> None:
    assert antom.to_minor(Decimal(amount), currency) == value


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("100.5", "JPY"), ("0.001", "USD"), ("0", "USD"), ("-1", "USD"), ("NaN", "USD"), ("Infinity", "USD"),
     ("100", "VND"), ("1", "usd"), ("1E+20", "USD")],
)  # fmt: skip
def test_to_minor_refuses_what_does_not_fit(amount: str, currency: str) -> None:
    with pytest.raises(InvalidField):
        antom.to_minor(Decimal(amount), currency)


@given(st.integers(1, 10**14), st.sampled_from(["USD", "JPY", "KRW", "HKD", "EUR"]))
def test_minor_units_round_trip(minor: int, currency: str) -> None:
    amount = antom.from_minor(str(minor), currency)
    assert antom.to_minor(amount, currency) == str(minor)
    assert amount > 0


@given(st.text(max_size=20), st.sampled_from(["USD", "JPY"]))
def test_from_minor_reads_only_positive_integers(value: str, currency: str) -> None:
    try:
        amount = antom.from_minor(value, currency)
    except InvalidField:
        return
    assert value.isascii()
    assert value.isdigit()
    assert amount > 0


# --- paths ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "path"),
    [(NOTIFY_URL, PATH), ("https://pay.example.com/antom/notify", "/antom/notify"),
     ("https://pay.example.com/n?tenant=a&x=1", "/n?tenant=a&x=1"), ("https://pay.example.com", "/"),
     ("http://127.0.0.1:8000/local/antom/notify", "/local/antom/notify"), ("https://x.example/a%20b#frag", "/a%20b")],
)  # fmt: skip
def test_path_of_a_configured_url(url: str, path: str) -> None:
    assert antom.path_of(url) == path


@pytest.mark.parametrize("url", ["/antom/notify", "ftp://x.example/a", "pay.example.com/antom/notify", ""])
def test_path_of_refuses_what_is_not_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        antom.path_of(url)


# --- request bodies and headers ------------------------------------------------------------------------------


def pay(**overrides: Any) -> bytes:
    options: dict[str, Any] = {
        "out_trade_no": "ORDER-1",
        "subject": "Tea",
        "amount": Decimal("12.34"),
        "currency": "USD",
        "payment_method_type": "ALIPAY_HK",
        "redirect_url": "https://shop.example.com/paid",
        "notify_url": NOTIFY_URL,
        "expiry": datetime(2026, 12, 5, 18, 30, tzinfo=timezone(timedelta(hours=8))),
        "terminal_type": "APP",
        "os_type": "ANDROID",
    }
    options.update(overrides)
    return antom.pay_body(**options)


def test_pay_body_is_compact_json_with_the_absolute_expiry_and_env() -> None:
    body = pay()
    assert b" " not in body
    data = json.loads(body)
    assert data["productCode"] == "CASHIER_PAYMENT"
    assert data["paymentRequestId"] == data["order"]["referenceOrderId"] == "ORDER-1"
    assert data["paymentAmount"] == data["order"]["orderAmount"] == {"currency": "USD", "value": "1234"}
    assert data["paymentExpiryTime"] == "2026-12-05T18:30:00+08:00"
    assert data["env"] == {"terminalType": "APP", "osType": "ANDROID"}
    assert data["paymentMethod"] == {"paymentMethodType": "ALIPAY_HK"}
    assert "settlementStrategy" not in data


def test_pay_body_for_web_sends_no_os_type_and_may_name_a_settlement_currency() -> None:
    data = json.loads(pay(terminal_type="WEB", os_type=None, settlement_currency="USD"))
    assert data["env"] == {"terminalType": "WEB"}
    assert data["settlementStrategy"] == {"settlementCurrency": "USD"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"os_type": None}, "os_type"), ({"terminal_type": "WEB"}, "os_type"),
     ({"terminal_type": "MINI"}, "terminal_type"),
     ({"expiry": datetime(2026, 12, 5, 18, 30)}, "expiry"), ({"out_trade_no": "a b"}, "out_trade_no"),
     ({"subject": ""}, "subject"), ({"payment_method_type": "alipay cn"}, "payment_method_type"),
     ({"redirect_url": "/paid"}, "redirect_url"), ({"notify_url": "https://x.example/a b"}, "notify_url")],
)  # fmt: skip
def test_pay_body_refuses_bad_parameters(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(OrderError) as caught:
        pay(**overrides)
    assert caught.value.field == field


def test_pay_body_refuses_an_amount_its_currency_cannot_hold() -> None:
    with pytest.raises(InvalidField):
        pay(amount=Decimal("100.5"), currency="JPY")


def test_refund_body_needs_antoms_payment_id() -> None:
    with pytest.raises(OrderError) as caught:
        antom.refund_body(
            out_request_no="R-1", payment_id="", amount=Decimal(1), currency="USD", reason=None, notify_url=None
        )
    assert caught.value.field == "payment_id"
    body = antom.refund_body(
        out_request_no="R-1", payment_id="P1", amount=Decimal(1), currency="USD", reason=None, notify_url=None
    )
    assert body == b'{"refundRequestId":"R-1","paymentId":"P1","refundAmount":{"currency":"USD","value":"100"}}'


def test_request_headers_refuse_a_signer_that_is_not_sha256() -> None:
    with pytest.raises(ValueError, match="RSA2"):
        antom.request_headers(
            LocalKeySigner(antom_key(), SignType.RSA), path=antom.PAY_PATH, client_id=CLIENT_ID, body=b"{}",
            request_time=TIME,
        )  # fmt: skip


def test_request_headers_sign_what_antom_verifies() -> None:
    body = pay()
    headers = antom.request_headers(
        LocalKeySigner(antom_key()), path=antom.PAY_PATH, client_id=CLIENT_ID, body=body, request_time=TIME
    )
    content = f"POST {antom.PAY_PATH}\n{CLIENT_ID}.{TIME}.".encode() + body
    encoded = headers["signature"].split("signature=", 1)[1]
    signature = base64.b64decode(encoded.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))
    antom_key().public_key().verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    assert headers["signature"].startswith("algorithm=RSA256,keyVersion=1,signature=")


def test_the_five_paths() -> None:
    paths = [
        antom.PAY_PATH,
        antom.INQUIRY_PAYMENT_PATH,
        antom.CANCEL_PATH,
        antom.REFUND_PATH,
        antom.INQUIRY_REFUND_PATH,
    ]
    assert paths == [
        "/ams/api/v1/payments/pay", "/ams/api/v1/payments/inquiryPayment", "/ams/api/v1/payments/cancel",
        "/ams/api/v1/payments/refund", "/ams/api/v1/payments/inquiryRefund",
    ]  # fmt: skip


def test_now_is_never_read() -> None:
    # The expiry is the caller's: the body says exactly what it was given, in its offset.
    body = json.loads(pay(expiry=datetime(2030, 1, 1, tzinfo=UTC)))
    assert body["paymentExpiryTime"] == "2030-01-01T00:00:00+00:00"
