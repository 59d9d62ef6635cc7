"""Open Platform's certificate mode through the local stack (``ALIPAY_KEY_MODE=cert make run``): the stack issues
a local root, Alipay's and the app's certificates; every request carries the SNs the sandbox checks; every gateway
reply names the sandbox's certificate, and one naming a certificate the stack does not know is refused."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from chalicelib.alipay import certs
from devstack.stack import StackProcess
from tests.e2e.conftest import TIME_SCALE, LocalStack, wait_for

UNKNOWN_SN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    environ = dict(os.environ, ALIPAY_KEY_MODE="cert")
    process = StackProcess(tmp_path_factory.mktemp("cert-stack"), time_scale=TIME_SCALE, environ=environ)
    process.start()
    try:
        yield LocalStack(process)
    finally:
        status = process.stop()
        assert status == 0, f"the stack did not stop cleanly ({status}):\n{process.output()[-3000:]}"


def set_reply_cert_sn(stack: LocalStack, sn: str | None) -> None:
    response = stack.http.post(f"{stack.sandbox}/sandbox/reply-cert-sn", json={"alipay_cert_sn": sn})
    assert response.status_code == 200, response.text


def test_the_state_directory_holds_the_contracts_certificates(stack: LocalStack) -> None:
    state: Path = stack.state_dir
    assert json.loads((state / "stack.json").read_text())["key_mode"] == "cert"
    root = (state / "alipay_root_cert.pem").read_text()
    alipay = (state / "alipay_sandbox_cert.pem").read_text()
    app = (state / "app_cert.pem").read_text()
    # Alipay's certificate is for the sandbox's key pair and chains to the root; the app's is for the KMS key.
    loaded = certs.load_certificate_mode(app, [alipay], root)
    public = (state / "alipay_sandbox_public_key.pem").read_bytes()
    from chalicelib.alipay.keys import load_public_key, same_public_key

    assert same_public_key(loaded.alipay_certificates[0].key, load_public_key(public))


def test_a_payment_and_a_refund_in_certificate_mode(stack: LocalStack) -> None:
    order = stack.create_order("20.00", "USD")
    number = order["out_trade_no"]
    app_sn = certs.app_cert_sn((stack.state_dir / "app_cert.pem").read_text())
    assert f"app_cert_sn={app_sn}" in order["order_info"]  # the sandbox refuses an order string without it

    assert stack.pay(order["order_info"])["resultStatus"] == "9000"
    stack.wait_for_status(number, "TRADE_SUCCESS")  # the notification verified with Alipay's certificate

    refund = stack.refund(number, {"amount": "5.00", "out_request_no": "r1"})

    assert refund.status == 201, refund.body  # the sandbox checked the SNs; the reply named its certificate
    assert refund.json()["refund_fee"] == "5.00"


def test_a_reply_naming_an_unknown_certificate_is_refused_and_moves_no_money(stack: LocalStack) -> None:
    order = stack.create_order("9.00", "USD")
    number = order["out_trade_no"]
    stack.pay(order["order_info"])
    stack.wait_for_status(number, "TRADE_SUCCESS")
    set_reply_cert_sn(stack, UNKNOWN_SN)
    try:
        refused = stack.refund(number, {"amount": "9.00", "out_request_no": "r1"})
    finally:
        set_reply_cert_sn(stack, None)

    assert refused.status == 502, refused.body
    assert UNKNOWN_SN in refused.json()["message"]
    # Alipay did refund (its reply was not believed, its notification may still close the order): the refund is
    # not recorded as done from the unverified reply.
    assert [r["out_request_no"] for r in stack.order(number)["refunds"]] == ["r1"]
    # Asked again with the same out_request_no, Alipay refunds it once: the money moved once in all.
    again = stack.refund(number, {"amount": "9.00", "out_request_no": "r1"})
    assert again.status == 201, again.body
    assert again.json()["refund_fee"] == "9.00"
    closed = wait_for("the full refund to close the order", lambda: stack._order_in(number, "TRADE_CLOSED"))
    assert closed["refund_fee"] == "9.00"
    assert [(r["out_request_no"], r["status"]) for r in closed["refunds"]] == [("r1", "REFUND_SUCCESS")]
    assert stack.trade(number)["refund_fee"] == "9.00"  # at "Alipay", too: refunded once


def test_the_sandbox_refuses_an_order_string_without_the_app_certificate_sn(stack: LocalStack) -> None:
    order = stack.create_order("3.00", "USD")
    without = "&".join(part for part in order["order_info"].split("&") if not part.startswith("app_cert_sn="))

    result = stack.pay(without)

    assert result["resultStatus"] == "4000"
    assert "invalid-app-cert-sn" in result["memo"]


def test_ops_csr_makes_a_csr_for_the_kms_key_signed_through_kms(stack: LocalStack) -> None:
    from cryptography import x509

    from chalicelib.alipay.keys import same_public_key

    done = stack.cli("csr", "--organization", "Example Ltd")

    assert done.returncode == 0, done.stdout + done.stderr
    csr = x509.load_pem_x509_csr(done.stdout.encode())
    assert csr.is_signature_valid
    app = certs.public_key_from_certificate((stack.state_dir / "app_cert.pem").read_text())[1]
    assert same_public_key(csr.public_key(), app)  # type: ignore[arg-type]  # the key the app certificate is for


@pytest.mark.parametrize("channel", ["page", "wap"])
def test_a_web_payment_in_certificate_mode_lands_paid(stack: LocalStack, channel: str) -> None:
    # The cashier checks the web payment's SNs; the return page's active query is signed with them and its reply
    # verified by the certificate it names; the return and the notification by any valid certificate.
    from tests.e2e.test_web_checkout import web_flow

    web_flow(stack, channel, "TRADE_SUCCESS", ["OrderPaid"])
