"""Antom's known answers (tests/vectors/antom_vectors.json, made with the official SDK's signing), byte for byte."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import antom
from chalicelib.alipay.errors import SignatureMismatch
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "antom_vectors.json").read_text(encoding="utf-8"))
CLIENT_ID: str = VECTORS["client_id"]


def by_name(section: str) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in VECTORS[section]}


REQUESTS = by_name("requests")
REPLIES = by_name("replies")
NOTIFICATIONS = by_name("notifications")


def test_the_vectors_name_the_sdk_commit_they_were_made_with() -> None:
    assert VECTORS["sdk"] == "github.com/alipay/global-open-sdk-python"
    assert len(VECTORS["sdk_commit"]) == 40


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_signed_content_is_the_sdks(name: str) -> None:
    v = REQUESTS[name]
    content = antom.signed_content(v["method"], v["path"], CLIENT_ID, v["request_time"], v["body"].encode())
    assert content == v["signed_content"].encode("utf-8")


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_headers_carry_the_sdks_signature_header_byte_for_byte(
    name: str, merchant_private_key: rsa.RSAPrivateKey
) -> None:
    v = REQUESTS[name]
    headers = antom.request_headers(
        LocalKeySigner(merchant_private_key),
        path=v["path"],
        client_id=CLIENT_ID,
        body=v["body"].encode(),
        request_time=v["request_time"],
    )
    assert headers["signature"] == v["signature_header"]
    assert headers["client-id"] == CLIENT_ID
    assert headers["request-time"] == v["request_time"]
    assert headers["Content-Type"] == "application/json; charset=UTF-8"


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_what_the_sdk_signed_verifies_as_a_request(name: str, merchant_public_key: rsa.RSAPublicKey) -> None:
    v = REQUESTS[name]
    headers = {"Signature": v["signature_header"], "Request-Time": v["request_time"], "client-id": CLIENT_ID}
    antom.verify_message(
        headers,
        v["body"].encode(),
        method="POST",
        path=v["path"],
        client_id=CLIENT_ID,
        keys=AlipayPublicKeys.of(merchant_public_key),
    )


BODY_BUILDERS: dict[str, Callable[[dict[str, Any]], bytes]] = {
    "pay": lambda i: antom.pay_body(
        out_trade_no=i["out_trade_no"],
        subject=i["subject"],
        amount=Decimal(i["amount"]),
        currency=i["currency"],
        payment_method_type=i["payment_method_type"],
        redirect_url=i["redirect_url"],
        notify_url=i["notify_url"],
        expiry=datetime.fromisoformat(i["expiry"]),
        terminal_type=i["terminal_type"],
        os_type=i["os_type"],
    ),
    "inquiry_payment": lambda i: antom.inquiry_payment_body(i["out_trade_no"]),
    "sandbox_path": lambda i: antom.inquiry_payment_body(i["out_trade_no"]),
    "cancel_iso_time": lambda i: antom.cancel_body(i["out_trade_no"]),
    "refund_jpy": lambda i: antom.refund_body(
        out_request_no=i["out_request_no"],
        payment_id=i["payment_id"],
        amount=Decimal(i["amount"]),
        currency=i["currency"],
        reason=i["reason"],
        notify_url=i["notify_url"],
    ),
    "inquiry_refund": lambda i: antom.inquiry_refund_body(i["out_request_no"]),
}


@pytest.mark.parametrize("name", sorted(REQUESTS))
def test_request_bodies_are_the_vectors_bytes(name: str) -> None:
    v = REQUESTS[name]
    assert BODY_BUILDERS[name](v["inputs"]) == v["body"].encode("utf-8")


def test_a_sandbox_client_calls_the_sandbox_path_as_the_sdk_does() -> None:
    assert antom.api_path(antom.INQUIRY_PAYMENT_PATH, CLIENT_ID) == REQUESTS["sandbox_path"]["path"]
    assert antom.api_path(antom.INQUIRY_PAYMENT_PATH, "2188120000000001") == antom.INQUIRY_PAYMENT_PATH


def reply_headers(v: dict[str, Any]) -> dict[str, str]:
    return {"signature": v["signature_header"], "response-time": v["response_time"], "client-id": CLIENT_ID}


def test_pay_reply_signed_as_the_sdk_verifies_it_is_read(merchant_public_key: rsa.RSAPublicKey) -> None:
    v = REPLIES["pay_in_process"]
    reply = antom.read_pay(
        reply_headers(v), v["body"].encode(), client_id=CLIENT_ID, keys=AlipayPublicKeys.of(merchant_public_key)
    )
    assert reply.accepted
    assert reply.payment_id == "20261205114010800100188000000001"
    assert reply.normal_url == "https://open-sea-global.alipay.com/cashier?token=abc%2Bdef"
    assert reply.scheme_url == "alipays://platformapi/startapp?appId=20000067"
    assert reply.applink_url == "https://render.alipay.com/p/s/x"


def test_inquiry_replies_signed_as_the_sdk_verifies_them_are_read(merchant_public_key: rsa.RSAPublicKey) -> None:
    keys = AlipayPublicKeys.of(merchant_public_key)
    v = REPLIES["inquiry_payment_success"]
    paid = antom.read_inquiry_payment(reply_headers(v), v["body"].encode(), client_id=CLIENT_ID, keys=keys)
    assert (paid.found, paid.payment_status, paid.amount, paid.currency) == (True, "SUCCESS", Decimal("12.34"), "USD")
    v = REPLIES["inquiry_payment_not_found"]
    missing = antom.read_inquiry_payment(reply_headers(v), v["body"].encode(), client_id=CLIENT_ID, keys=keys)
    assert missing.found is False
    v = REPLIES["cancel_success"]
    assert antom.read_cancel(reply_headers(v), v["body"].encode(), client_id=CLIENT_ID, keys=keys).cancelled
    v = REPLIES["refund_success"]
    refund = antom.read_refund(reply_headers(v), v["body"].encode(), client_id=CLIENT_ID, keys=keys)
    assert (refund.result_status, refund.amount, refund.currency) == ("S", Decimal(500), "JPY")
    v = REPLIES["inquiry_refund_success"]
    inquiry = antom.read_inquiry_refund(reply_headers(v), v["body"].encode(), client_id=CLIENT_ID, keys=keys)
    assert (inquiry.found, inquiry.status, inquiry.amount) == (True, "SUCCESS", Decimal(500))


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_notifications_signed_for_the_notify_urls_path_verify(name: str, merchant_public_key: rsa.RSAPublicKey) -> None:
    v = NOTIFICATIONS[name]
    headers = {"signature": v["signature_header"], "request-time": v["request_time"], "client-id": CLIENT_ID}
    path = antom.path_of(v["notify_url"])
    assert path == v["path"]
    notification = antom.verify_notification(
        headers, v["body"].encode(), path=path, client_id=CLIENT_ID, keys=AlipayPublicKeys.of(merchant_public_key)
    )
    assert notification.fields["result.resultStatus"] == "S"


@pytest.mark.parametrize("name", sorted(NOTIFICATIONS))
def test_a_notification_checked_against_the_path_it_arrived_by_fails_as_in_the_sdk(
    name: str, merchant_public_key: rsa.RSAPublicKey
) -> None:
    v = NOTIFICATIONS[name]
    assert v["sdk_accepts_other_path"] is False
    headers = {"signature": v["signature_header"], "request-time": v["request_time"], "client-id": CLIENT_ID}
    with pytest.raises(SignatureMismatch):
        antom.verify_notification(
            headers,
            v["body"].encode(),
            path="/antom/notify",
            client_id=CLIENT_ID,
            keys=AlipayPublicKeys.of(merchant_public_key),
        )
