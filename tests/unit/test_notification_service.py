"""Notifications end to end over fakes: the webhook's intake, the consumer's applier, and the events that follow.

Each reliability scenario (docs/reliability.md) is named in the test that shows it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from chalicelib.alipay.keys import public_key_base64
from chalicelib.alipay.notifications import notification_content
from chalicelib.alipay.signing import SignType, b64encode
from chalicelib.orders.model import ClosedReason, Order, OrderStatus
from chalicelib.services.errors import NotificationRejected, PayloadTooLarge, PoisonMessage, UnsupportedMediaType
from chalicelib.services.notifications import Outcome
from chalicelib.services.ports import QueuedNotification, Unavailable
from tests.alipay_fixtures import (
    OUT_TRADE_NO,
    PARTNER,
    alipay_key,
    form_body,
    mapi_notification_fields,
    notification_body,
    openapi_notification_fields,
    sign_fields,
)
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, StreamingOrderRepository, make_kit

FORM = "application/x-www-form-urlencoded"


def openapi_body(**overrides: str | None) -> bytes:
    return notification_body(openapi_notification_fields(**overrides), alipay_key())


def mapi_body(**overrides: str | None) -> bytes:
    return notification_body(mapi_notification_fields(**overrides), alipay_key(), sign_type=SignType.RSA)


def deliver(kit: Kit, body: bytes) -> Outcome:
    """What Alipay's POST and the queue's consumer together do with one notification."""
    kit.services.intake.accept(body, FORM)
    return kit.services.consumer.apply(kit.queue.messages[-1])


@pytest.fixture
def kit() -> Kit:
    kit = make_kit()
    kit.add_order()
    return kit


# --- 1: the happy path ---------------------------------------------------------------------------------------


def test_valid_notification_is_verified_and_queued_exactly_once(kit: Kit) -> None:
    accepted = kit.services.intake.accept(openapi_body(), FORM)
    assert (accepted.out_trade_no, accepted.trade_status) == (OUT_TRADE_NO, "TRADE_SUCCESS")
    assert len(kit.queue.messages) == 1
    message = kit.queue.messages[0]
    assert (message.notify_id, message.out_trade_no, message.protocol) == (accepted.notify_id, OUT_TRADE_NO, "openapi")
    # No fields of its own: the consumer reads those Alipay's signature over the kept body vouches for.
    assert message.fields == {}
    assert kit.services.consumer.verified(message).fields["total_amount"] == "88.88"
    assert kit.metrics.counts["NotificationsAccepted"] == 1


def test_a_queued_payment_moves_the_order_with_one_write_and_emits_order_paid(kit: Kit) -> None:
    outcome = deliver(kit, openapi_body())
    kit.relay_stream()
    assert outcome is Outcome.APPLIED
    order = kit.order()
    assert order.status is OrderStatus.TRADE_SUCCESS
    assert order.trade_no == "2024010122001400000000000001"
    assert order.version == 2
    assert kit.orders.writes_of(OUT_TRADE_NO) == 1
    assert kit.event_types() == ["OrderPaid"]
    assert kit.metrics.counts["NotificationsApplied"] == 1


def test_the_happy_path_writes_without_reading_the_order_first(kit: Kit) -> None:
    kit.services.intake.accept(openapi_body(), FORM)
    calls_before = kit.orders.calls
    kit.services.consumer.apply(kit.queue.messages[0])
    assert kit.orders.calls - calls_before == 1  # one conditional write, no get


# --- 2, 3, 4, 12: duplicates -----------------------------------------------------------------------------------


def test_same_notification_twice_is_acked_twice_but_changes_the_order_once_with_one_event(kit: Kit) -> None:
    body = openapi_body()
    first, second = deliver(kit, body), deliver(kit, body)
    kit.relay_stream()
    assert (first, second) == (Outcome.APPLIED, Outcome.DUPLICATE)
    assert len(kit.queue.messages) == 2
    assert kit.orders.writes_of(OUT_TRADE_NO) == 1
    assert kit.event_types() == ["OrderPaid"]
    assert kit.metrics.counts["NotificationsDuplicate"] == 1


def test_duplicates_applied_concurrently_by_two_consumers_change_the_order_once(kit: Kit) -> None:
    body = openapi_body()
    kit.services.intake.accept(body, FORM)
    kit.services.intake.accept(body, FORM)
    start = threading.Barrier(2)
    outcomes: list[Outcome] = []

    def consume(message: QueuedNotification) -> None:
        start.wait()
        outcomes.append(kit.services.consumer.apply(message))

    threads = [threading.Thread(target=consume, args=(m,)) for m in kit.queue.messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kit.relay_stream()
    assert sorted(outcomes) == sorted([Outcome.APPLIED, Outcome.DUPLICATE])
    assert kit.orders.writes_of(OUT_TRADE_NO) == 1
    assert kit.event_types() == ["OrderPaid"]


def test_same_trade_and_status_with_a_different_notify_id_changes_nothing_more(kit: Kit) -> None:
    deliver(kit, openapi_body(notify_id="first-notify-id"))
    outcome = deliver(kit, openapi_body(notify_id="second-notify-id"))
    kit.relay_stream()
    assert outcome is Outcome.DUPLICATE
    assert kit.order().notify_id == "first-notify-id"
    assert kit.orders.writes_of(OUT_TRADE_NO) == 1
    assert kit.event_types() == ["OrderPaid"]


def test_a_replayed_old_notification_after_its_dedup_horizon_changes_nothing(kit: Kit) -> None:
    deliver(kit, openapi_body(notify_id="n-paid"))
    deliver(kit, openapi_body(notify_id="n-finished", trade_status="TRADE_FINISHED"))
    kit.relay_stream()
    kit.clock.advance(days=30)  # no dedup store is consulted: the state machine alone absorbs the replay
    outcome = deliver(kit, openapi_body(notify_id="n-paid"))
    kit.relay_stream()
    assert outcome is Outcome.STALE
    assert kit.order().status is OrderStatus.TRADE_FINISHED
    assert kit.event_types() == ["OrderPaid", "OrderFinished"]


# --- 5, 6: out of order, and the two meanings of TRADE_CLOSED -------------------------------------------------


def test_trade_finished_before_trade_success_ends_finished_and_the_late_success_changes_nothing(kit: Kit) -> None:
    finished = deliver(kit, openapi_body(notify_id="n-2", trade_status="TRADE_FINISHED"))
    late = deliver(kit, openapi_body(notify_id="n-1", trade_status="TRADE_SUCCESS"))
    kit.relay_stream()
    assert (finished, late) == (Outcome.APPLIED, Outcome.STALE)
    assert kit.order().status is OrderStatus.TRADE_FINISHED
    assert kit.event_types() == ["OrderPaid", "OrderFinished"]


def test_trade_closed_after_payment_is_a_refund_and_emits_order_closed_once(kit: Kit) -> None:
    deliver(kit, openapi_body(notify_id="n-paid"))
    outcome = deliver(kit, openapi_body(notify_id="n-closed", trade_status="TRADE_CLOSED", refund_fee="88.88"))
    kit.relay_stream()
    assert outcome is Outcome.APPLIED
    order = kit.order()
    assert (order.status, order.closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.REFUNDED)
    assert order.refund_fee == Decimal("88.88")
    assert kit.event_types() == ["OrderPaid", "OrderRefunded", "OrderClosed"]


def test_a_partial_refund_notification_keeps_the_order_paid_and_emits_order_refunded_once(kit: Kit) -> None:
    deliver(kit, openapi_body(notify_id="n-paid"))
    partial = openapi_body(notify_id="n-refund", refund_fee="10.00")
    assert deliver(kit, partial) is Outcome.APPLIED
    assert deliver(kit, partial) is Outcome.DUPLICATE
    kit.relay_stream()
    assert (kit.order().status, kit.order().refund_fee) == (OrderStatus.TRADE_SUCCESS, Decimal("10.00"))
    assert kit.event_types() == ["OrderPaid", "OrderRefunded"]


def test_trade_closed_after_payment_without_refund_fee_is_still_a_refund_never_closed_unpaid(kit: Kit) -> None:
    deliver(kit, openapi_body(notify_id="n-paid"))
    outcome = deliver(kit, openapi_body(notify_id="n-closed", trade_status="TRADE_CLOSED"))
    assert outcome is Outcome.APPLIED  # the optimistic write's condition fails; decide() keeps the payment
    assert kit.order().closed_reason is ClosedReason.REFUNDED


def test_trade_closed_on_an_unpaid_order_is_a_timeout_and_emits_only_order_closed(kit: Kit) -> None:
    outcome = deliver(kit, openapi_body(trade_status="TRADE_CLOSED"))
    kit.relay_stream()
    assert outcome is Outcome.APPLIED
    order = kit.order()
    assert (order.status, order.closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.TIMEOUT)
    assert kit.event_types() == ["OrderClosed"]


def test_a_payment_for_an_order_closed_unpaid_is_recorded_to_be_returned_not_quarantined(kit: Kit) -> None:
    deliver(kit, openapi_body(notify_id="n-closed", trade_status="TRADE_CLOSED"))
    outcome = deliver(kit, openapi_body(notify_id="n-paid"))
    assert outcome is Outcome.RETURNING
    assert kit.quarantine.records == {}
    order = kit.order()
    assert order.closed_reason is ClosedReason.TIMEOUT
    assert [(r.kind, r.status) for r in order.refunds.values()] == [("return", "REFUND_PENDING")]
    assert kit.metrics.counts["LatePaymentsCaptured"] == 1


# --- 7, 9, 10, 13, 14: what never reaches the queue -----------------------------------------------------------


def test_a_tampered_field_with_the_original_sign_is_rejected_and_nothing_is_queued(kit: Kit) -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key())
    signed["total_amount"] = "0.01"
    with pytest.raises(NotificationRejected) as caught:
        kit.services.intake.accept(form_body(signed), FORM)
    assert caught.value.reason == "signature"
    assert kit.queue.messages == []
    assert kit.metrics.counts["NotificationsRejected.signature"] == 1


@pytest.mark.parametrize("declared", ["RSA", "MD5"])
def test_rejects_a_weaker_sign_type_sent_to_an_rsa2_merchant(kit: Kit, declared: str) -> None:
    signed = sign_fields(openapi_notification_fields(), alipay_key(), sign_type=SignType.RSA)
    signed["sign_type"] = declared
    with pytest.raises(NotificationRejected) as caught:
        kit.services.intake.accept(form_body(signed), FORM)
    assert caught.value.reason == "sign_type"
    assert kit.queue.messages == []


def test_rejects_a_sha1_signature_labelled_rsa2(kit: Kit) -> None:
    fields = openapi_notification_fields()
    signed = sign_fields(fields, alipay_key(), sign_type=SignType.RSA)
    signed["sign_type"] = "RSA2"
    with pytest.raises(NotificationRejected) as caught:
        kit.services.intake.accept(form_body(signed), FORM)
    assert caught.value.reason == "signature"
    assert kit.queue.messages == []


@pytest.mark.parametrize(("field", "value"), [("app_id", "2021000000009999"), ("seller_id", "2088000000009999")])
def test_rejects_a_notification_validly_signed_for_another_merchant(kit: Kit, field: str, value: str) -> None:
    with pytest.raises(NotificationRejected) as caught:
        kit.services.intake.accept(openapi_body(**{field: value}), FORM)
    assert caught.value.reason == "mismatch"
    assert kit.queue.messages == []
    assert kit.metrics.counts["NotificationsRejected.mismatch"] == 1


def test_rejects_a_notification_signed_by_a_key_that_is_not_alipays(kit: Kit) -> None:
    body = notification_body(openapi_notification_fields(), rsa_key("other"))
    with pytest.raises(NotificationRejected):
        kit.services.intake.accept(body, FORM)
    assert kit.queue.messages == []


def test_verifies_a_gbk_notification_with_a_chinese_subject_and_queues_it_decoded(kit: Kit) -> None:
    fields = openapi_notification_fields(charset="gbk", subject="咖啡豆 两袋")
    kit.services.intake.accept(notification_body(fields, alipay_key(), charset="gbk"), FORM)
    assert kit.services.consumer.verified(kit.queue.messages[0]).fields["subject"] == "咖啡豆 两袋"


def test_the_same_gbk_bytes_labelled_utf_8_do_not_verify(kit: Kit) -> None:
    fields = openapi_notification_fields(charset="gbk", subject="咖啡豆 两袋")
    body = notification_body(fields, alipay_key(), charset="gbk").replace(b"charset=gbk", b"charset=utf-8")
    with pytest.raises(NotificationRejected):
        kit.services.intake.accept(body, FORM)
    assert kit.queue.messages == []


def test_uses_the_content_type_charset_when_the_body_names_none(kit: Kit) -> None:
    fields = openapi_notification_fields(charset=None, subject="咖啡豆")
    body = notification_body(fields, alipay_key(), charset="utf-8")
    kit.services.intake.accept(body, f"{FORM}; charset=UTF-8")
    assert kit.services.consumer.verified(kit.queue.messages[0]).fields["subject"] == "咖啡豆"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"notify_id=1&notify_id=2&sign=AAAA",
        b"notify_id=%zz&sign=AAAA",
        b"just some text",
        openapi_body()[:-40],
        openapi_body().replace(b"&sign=", b"&sign=%21%21"),
    ],
    ids=["empty", "duplicate-fields", "bad-percent-encoding", "not-a-form", "truncated", "non-base64-sign"],
)
def test_malformed_bodies_are_rejected_never_queued(kit: Kit, body: bytes) -> None:
    with pytest.raises(NotificationRejected):
        kit.services.intake.accept(body, FORM)
    assert kit.queue.messages == []


# --- 15: limits before crypto ----------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_before_it_is_parsed_or_verified() -> None:
    kit = make_kit(MAX_NOTIFICATION_BYTES="1024")
    # Garbage: had it been parsed or verified it would be a 400 (NotificationRejected), not a 413.
    with pytest.raises(PayloadTooLarge):
        kit.services.intake.accept(b"%zz" * 1000, FORM)
    assert kit.metrics.counts["NotificationsRejected.too_large"] == 1
    assert "NotificationsRejected.malformed" not in kit.metrics.counts


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain; charset=utf-8", "multipart/form-data"])
def test_a_wrong_content_type_is_refused_before_the_body_is_read(kit: Kit, content_type: str | None) -> None:
    with pytest.raises(UnsupportedMediaType):
        kit.services.intake.accept(b"%zz", content_type)
    assert kit.metrics.counts["NotificationsRejected.content_type"] == 1


def test_accepts_the_form_content_type_with_a_charset_parameter_in_any_case(kit: Kit) -> None:
    kit.services.intake.accept(openapi_body(), "Application/X-WWW-Form-URLEncoded; Charset=GBK")
    assert len(kit.queue.messages) == 1


# --- 16: the queue is down -------------------------------------------------------------------------------------


def test_a_queue_failure_propagates_so_the_webhook_never_says_success_and_alipays_retry_succeeds(kit: Kit) -> None:
    kit.queue.fail_with(Unavailable("SQS throttled", retry_after=2))
    with pytest.raises(Unavailable):
        kit.services.intake.accept(openapi_body(), FORM)
    assert kit.queue.messages == []
    assert "NotificationsAccepted" not in kit.metrics.counts
    kit.services.intake.accept(openapi_body(), FORM)  # Alipay's retry
    assert len(kit.queue.messages) == 1


# --- 8, 11: authentic, but must not touch an order --------------------------------------------------------------


def test_a_validly_signed_amount_mismatch_is_quarantined_with_its_reason_and_an_alarm_metric(kit: Kit) -> None:
    outcome = deliver(kit, openapi_body(total_amount="8.88"))
    kit.relay_stream()
    assert outcome is Outcome.QUARANTINED
    record = kit.quarantine.records["ac05099524730693a8b330c5ecf72da9786"]
    assert record.reason == "amount_mismatch"
    assert "8.88" in record.detail
    assert record.message.fields["total_amount"] == "8.88"
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    assert kit.publisher.events == []
    assert kit.metrics.counts["NotificationsQuarantined"] == 1
    assert kit.metrics.counts["NotificationsQuarantined.amount_mismatch"] == 1


def test_an_unknown_order_is_quarantined_and_acked_so_it_cannot_crash_loop() -> None:
    kit = make_kit()  # no order stored
    outcome = deliver(kit, openapi_body())
    assert outcome is Outcome.QUARANTINED
    assert kit.quarantine.records["ac05099524730693a8b330c5ecf72da9786"].reason == "unknown_order"
    assert kit.metrics.counts["NotificationsQuarantined.unknown_order"] == 1


def test_a_quarantined_notification_delivered_again_is_kept_once() -> None:
    kit = make_kit()
    deliver(kit, openapi_body())
    deliver(kit, openapi_body())
    assert len(kit.quarantine.records) == 1


def test_a_quarantine_store_failure_propagates_so_the_record_is_retried() -> None:
    kit = make_kit()
    kit.services.intake.accept(openapi_body(), FORM)
    kit.quarantine.fail_with(Unavailable("DynamoDB throttled"))
    with pytest.raises(Unavailable):
        kit.services.consumer.apply(kit.queue.messages[0])
    assert kit.services.consumer.apply(kit.queue.messages[0]) is Outcome.QUARANTINED


# --- 17: the table throttles the consumer -----------------------------------------------------------------------


def test_a_throttled_write_propagates_and_the_retry_applies_the_notification_once(kit: Kit) -> None:
    kit.services.intake.accept(openapi_body(), FORM)
    kit.orders.fail_with(Unavailable("DynamoDB throttled"))
    with pytest.raises(Unavailable):
        kit.services.consumer.apply(kit.queue.messages[0])
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    assert kit.services.consumer.apply(kit.queue.messages[0]) is Outcome.APPLIED
    assert kit.services.consumer.apply(kit.queue.messages[0]) is Outcome.DUPLICATE
    assert kit.orders.writes_of(OUT_TRADE_NO) == 1


class RivalBeforeReplace(StreamingOrderRepository):
    """A repository where another consumer's work lands between our read and our replace, once."""

    def __init__(self) -> None:
        super().__init__()
        self.rival: Callable[[], None] | None = None

    def replace(self, order: Order, *, expected_version: int) -> bool:
        rival, self.rival = self.rival, None
        if rival is not None:
            rival()
        return super().replace(order, expected_version=expected_version)


def test_a_concurrent_change_between_read_and_replace_is_decided_again() -> None:
    orders = RivalBeforeReplace()
    kit = make_kit(orders=orders)
    kit.add_order()
    deliver(kit, openapi_body(notify_id="n-paid"))
    # TRADE_CLOSED without refund_fee on a paid order: the one-write plan fails, decide() chooses a replace...
    kit.services.intake.accept(openapi_body(notify_id="n-closed", trade_status="TRADE_CLOSED"), FORM)
    closed = kit.queue.messages[-1]

    def rival_finishes_the_trade() -> None:  # ...and just before it, another consumer finishes the trade
        deliver(kit, openapi_body(notify_id="n-finished", trade_status="TRADE_FINISHED"))

    orders.rival = rival_finishes_the_trade
    outcome = kit.services.consumer.apply(closed)
    assert outcome is Outcome.QUARANTINED  # re-read and re-decided: TRADE_CLOSED after TRADE_FINISHED is illegal
    assert kit.order().status is OrderStatus.TRADE_FINISHED
    assert kit.quarantine.records["n-closed"].reason == "illegal_transition"


# --- 18: poison ---------------------------------------------------------------------------------------------------


def test_a_queued_message_that_cannot_be_read_is_poison_not_a_silent_ack(kit: Kit) -> None:
    message = QueuedNotification("openapi", "n-1", OUT_TRADE_NO, {"out_trade_no": OUT_TRADE_NO}, "2026-11-26T16:30:05Z")
    with pytest.raises(PoisonMessage):
        kit.services.updater.apply(message)
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY


# --- the legacy protocol ----------------------------------------------------------------------------------------


@pytest.fixture
def legacy() -> Kit:
    kit = make_kit("mapi")
    kit.add_order(amount="12.50", currency="USD")
    kit.gateway.verified_notify_ids.add("91722adff935e8cfa58b3aabf4dead6ibe")
    return kit


def test_a_legacy_notification_confirmed_by_notify_verify_is_queued_and_applied(legacy: Kit) -> None:
    outcome = deliver(legacy, mapi_body())
    legacy.relay_stream()
    assert outcome is Outcome.APPLIED
    assert legacy.order().status is OrderStatus.TRADE_FINISHED
    assert legacy.event_types() == ["OrderPaid", "OrderFinished"]


def test_a_legacy_notification_alipay_does_not_confirm_is_rejected(legacy: Kit) -> None:
    legacy.gateway.verified_notify_ids.clear()
    with pytest.raises(NotificationRejected) as caught:
        legacy.services.intake.accept(mapi_body(), FORM)
    assert caught.value.reason == "notify_verify"
    assert legacy.queue.messages == []


def test_a_legacy_notify_verify_outage_is_transient(legacy: Kit) -> None:
    legacy.gateway.fail_with(Unavailable("gateway timed out"))
    with pytest.raises(Unavailable):
        legacy.services.intake.accept(mapi_body(), FORM)
    assert legacy.queue.messages == []


def test_a_legacy_notification_for_another_partner_is_rejected_before_notify_verify(legacy: Kit) -> None:
    with pytest.raises(NotificationRejected) as caught:
        legacy.services.intake.accept(mapi_body(seller_id="2088000000009999"), FORM)
    assert caught.value.reason == "mismatch"
    assert legacy.gateway.calls == 0


def test_a_legacy_currency_mismatch_is_quarantined(legacy: Kit) -> None:
    outcome = deliver(legacy, mapi_body(currency="HKD"))
    assert outcome is Outcome.QUARANTINED
    assert legacy.quarantine.records["91722adff935e8cfa58b3aabf4dead6ibe"].reason == "currency_mismatch"


def test_a_legacy_rsa2_labelled_notification_is_rejected_by_an_rsa_merchant(legacy: Kit) -> None:
    signed = sign_fields(mapi_notification_fields(), alipay_key(), sign_type=SignType.RSA2)
    with pytest.raises(NotificationRejected) as caught:
        legacy.services.intake.accept(form_body(signed), FORM)
    assert caught.value.reason == "sign_type"


def test_the_legacy_amount_is_read_from_total_fee(legacy: Kit) -> None:
    legacy.services.intake.accept(mapi_body(), FORM)
    message = legacy.services.consumer.verified(legacy.queue.messages[0])
    assert "total_amount" not in message.fields
    assert message.fields["seller_id"] == PARTNER
    assert legacy.services.consumer.apply(message) is Outcome.APPLIED
    assert legacy.order().total_amount == Decimal("12.50")


def test_signature_helpers_agree_with_the_fixture_signing() -> None:
    # Guards the fixtures themselves: a hand-made RSA2 signature over the canonical content verifies.
    fields = openapi_notification_fields()
    content = notification_content(fields).encode()
    sign = b64encode(alipay_key().sign(content, padding.PKCS1v15(), hashes.SHA256()))
    kit = make_kit()
    kit.services.intake.accept(form_body({**fields, "sign_type": "RSA2", "sign": sign}), FORM)
    assert len(kit.queue.messages) == 1


def test_during_a_key_rotation_the_old_and_the_new_alipay_key_both_verify_and_a_retired_one_does_not() -> None:
    old, new, retired = rsa_key("alipay"), rsa_key("alipay-rotated"), rsa_key("alipay-retired")
    kit = make_kit(ALIPAY_PUBLIC_KEYS=",".join(public_key_base64(k.public_key()) for k in (old, new)))
    kit.services.intake.accept(notification_body(openapi_notification_fields(notify_id="n-old"), old), FORM)
    kit.services.intake.accept(notification_body(openapi_notification_fields(notify_id="n-new"), new), FORM)
    with pytest.raises(NotificationRejected):
        kit.services.intake.accept(notification_body(openapi_notification_fields(), retired), FORM)
    assert [m.notify_id for m in kit.queue.messages] == ["n-old", "n-new"]
