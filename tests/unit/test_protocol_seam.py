"""The protocol seam and the evidence the order updater takes: what differs per protocol, and how each path is kept."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.signing import SignType
from chalicelib.orders.model import LEGACY_REFUNDABLE_STATUSES, REFUNDABLE_STATUSES, OrderStatus
from chalicelib.services.evidence import AskedBy, GatewayAnswer, Payment, RefundAnswer, kept_as, update_of
from chalicelib.services.notifications import NotificationIntake
from chalicelib.services.ports import QueuedNotification, TradeQueryResult
from chalicelib.services.protocols import LegacyGlobal, Merchant, OpenPlatform, flavour_for
from tests.alipay_fixtures import APP_ID, OUT_TRADE_NO, PARTNER, SELLER_ID
from tests.fakes import CountingMetrics, InMemoryNotificationQueue
from tests.unit.services_kit import FakeClock, make_kit

OPEN = Merchant(SignType.RSA2, "https://pay.example.com/alipay/notify", app_id=APP_ID, seller_id=SELLER_ID)
LEGACY = Merchant(SignType.RSA, "https://pay.example.com/alipay/notify", partner_id=PARTNER)
NOW = "2026-11-26T16:30:05.000Z"


def test_the_configured_protocol_picks_its_flavour_once_with_its_rules() -> None:
    assert isinstance(flavour_for(AlipayProtocol.OPENAPI, OPEN), OpenPlatform)
    assert isinstance(flavour_for(AlipayProtocol.MAPI, LEGACY), LegacyGlobal)
    assert isinstance(make_kit("mapi").services.flavour, LegacyGlobal)
    open_platform, legacy = OpenPlatform(OPEN), LegacyGlobal(LEGACY)
    assert (open_platform.refundable, open_platform.can_close, open_platform.confirms_notify_id) == (
        REFUNDABLE_STATUSES,
        True,
        False,
    )
    assert (legacy.refundable, legacy.can_close, legacy.confirms_notify_id) == (LEGACY_REFUNDABLE_STATUSES, False, True)


def test_a_flavour_refuses_a_merchant_without_the_id_its_messages_are_addressed_to() -> None:
    with pytest.raises(ValueError, match="app_id"):
        OpenPlatform(LEGACY)
    with pytest.raises(ValueError, match="partner"):
        LegacyGlobal(OPEN)


def test_the_legacy_webhook_is_refused_without_a_gateway_to_confirm_notify_ids() -> None:
    kit = make_kit("mapi")
    with pytest.raises(ValueError, match="gateway"):
        NotificationIntake(
            flavour=LegacyGlobal(LEGACY),
            alipay_keys=kit.services.alipay_keys,
            queue=InMemoryNotificationQueue(),
            metrics=CountingMetrics(),
            now=FakeClock(),
        )


def test_a_query_confirms_a_payment_only_with_a_known_status_and_an_amount() -> None:
    paid = TradeQueryResult(True, "TRADE_SUCCESS", "2026112622001", Decimal("88.88"), "USD")
    assert Payment.from_query(OUT_TRADE_NO, paid) == Payment(
        OUT_TRADE_NO, OrderStatus.TRADE_SUCCESS, Decimal("88.88"), "USD", "2026112622001"
    )
    assert Payment.from_query(OUT_TRADE_NO, TradeQueryResult(False)) is None
    assert Payment.from_query(OUT_TRADE_NO, TradeQueryResult(True, "TRADE_PENDING", None, Decimal("1"))) is None
    assert Payment.from_query(OUT_TRADE_NO, TradeQueryResult(True, "TRADE_SUCCESS")) is None


def test_gateway_and_refund_answers_carry_no_notify_id_and_are_kept_under_their_path() -> None:
    payment = Payment(OUT_TRADE_NO, OrderStatus.TRADE_SUCCESS, Decimal("88.88"), refund_fee=Decimal("5.00"))
    reconciled = GatewayAnswer(payment, AskedBy.RECONCILE, {"trade_no": "T1", "total_amount": Decimal("88.88")})
    refunded = RefundAnswer(payment, "r-1", {"fund_change": "Y"})
    assert update_of(reconciled, NOW).notify_id is None
    assert update_of(refunded, NOW).refund_fee == Decimal("5.00")
    kept = kept_as(reconciled, AlipayProtocol.OPENAPI, NOW)
    assert (kept.notify_id, kept.protocol, kept.fields) == (
        f"reconcile:{OUT_TRADE_NO}:TRADE_SUCCESS",
        "openapi",
        {"trade_no": "T1", "total_amount": "88.88"},
    )
    assert kept_as(GatewayAnswer(payment, AskedBy.QUERY, {}), AlipayProtocol.MAPI, NOW).notify_id.startswith("query:")
    assert kept_as(refunded, AlipayProtocol.MAPI, NOW).notify_id == f"refund:{OUT_TRADE_NO}:r-1"


def test_a_notification_is_kept_as_it_arrived() -> None:
    fields = {"out_trade_no": OUT_TRADE_NO, "trade_status": "TRADE_SUCCESS", "total_fee": "88.88", "currency": "USD"}
    message = QueuedNotification("mapi", "n-1", OUT_TRADE_NO, fields, NOW)
    assert kept_as(message, AlipayProtocol.OPENAPI, NOW) is message
    update = update_of(message, NOW)
    assert (update.notify_id, update.total_amount, update.currency) == ("n-1", Decimal("88.88"), "USD")
