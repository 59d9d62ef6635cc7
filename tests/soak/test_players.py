"""The Antom soak's notifications are what the product verifies and reads as intended (quick tier, no stack): signed
for the notify URL's path with the sandbox's Antom key, for the order's payment and amount, and each kind's
notifications standing for the statuses the soak expects the order to end in."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib.alipay import antom
from chalicelib.alipay.errors import VerificationError
from chalicelib.alipay.signing import AlipayPublicKeys
from chalicelib.services.protocols import antom_trade_status
from devstack.resources import ANTOM_PRIVATE_KEY_FILE
from tests.keygen import rsa_key
from tests.soak.players import ANTOM_KINDS, PENDING, RESULT_F, RESULT_S, AntomPlayer, Order

INFO = {"api_url": "http://127.0.0.1:8000", "antom_client_id": "SANDBOX_SOAK"}


@pytest.fixture
def player(tmp_path: Path) -> tuple[AntomPlayer, AlipayPublicKeys]:
    key = rsa_key("antom-sandbox")
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (tmp_path / ANTOM_PRIVATE_KEY_FILE).write_bytes(pem)
    played = AntomPlayer()
    played.load(tmp_path, INFO)
    return played, AlipayPublicKeys([key.public_key()])


@pytest.mark.parametrize(
    ("status", "notify_type", "trade_status"),
    [
        (RESULT_S, "PAYMENT_RESULT", "TRADE_SUCCESS"),
        (RESULT_F, "PAYMENT_RESULT", "TRADE_CLOSED"),
        (PENDING, "PAYMENT_PENDING", "WAIT_BUYER_PAY"),
    ],
)
def test_a_notification_verifies_for_the_notify_path_and_carries_the_orders_payment_and_amount(
    player: tuple[AntomPlayer, AlipayPublicKeys], status: str, notify_type: str, trade_status: str
) -> None:
    played, keys = player
    order = Order("SOAK-1", "12.34", "paid", "20260101114010800100000000000001")

    body, headers = played.sign(order, status, "note-1")
    verified = antom.verify_notification(headers, body, path="/antom/notify", client_id="SANDBOX_SOAK", keys=keys)

    assert (verified.out_trade_no, verified.payment_id, str(verified.amount), verified.currency) == (
        "SOAK-1",
        order.trade_no,
        "12.34",
        "USD",
    )
    assert verified.notify_type == notify_type
    assert antom_trade_status(verified.notify_type, verified.result_status) == trade_status


def test_a_notification_signed_for_another_path_or_client_is_refused(
    player: tuple[AntomPlayer, AlipayPublicKeys],
) -> None:
    played, keys = player
    body, headers = played.sign(Order("SOAK-1", "1.00", "paid", "p1"), RESULT_S, "note-1")

    with pytest.raises(VerificationError):
        antom.verify_notification(headers, body, path="/alipay/notify", client_id="SANDBOX_SOAK", keys=keys)
    with pytest.raises(VerificationError):
        antom.verify_notification(headers, body, path="/antom/notify", client_id="SANDBOX_OTHER", keys=keys)


@pytest.mark.parametrize("kind", sorted(ANTOM_KINDS.statuses))
def test_each_kinds_last_moving_notification_is_the_status_it_must_end_in(kind: str) -> None:
    moves = [antom_trade_status(*_wire(status)) for status in ANTOM_KINDS.statuses[kind]]
    final = [m for m in moves if m != "WAIT_BUYER_PAY"]  # a pending notice moves nothing

    assert final == [ANTOM_KINDS.final[kind]]


def _wire(status: str) -> tuple[str, str]:
    return {RESULT_S: ("PAYMENT_RESULT", "S"), RESULT_F: ("PAYMENT_RESULT", "F"), PENDING: ("PAYMENT_PENDING", "U")}[
        status
    ]
