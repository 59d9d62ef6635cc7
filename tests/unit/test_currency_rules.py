"""Currency rules (issue 15 #10): Open Platform notifications have their trans_currency checked, and every amount has
no more decimal places than its currency (JPY none)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.config import Config, ConfigError
from chalicelib.orders.model import ClosedReason, OrderStatus, PaymentUpdate, read_in_currency
from chalicelib.orders.money import fits_currency, minor_units
from chalicelib.services.commands import CreateOrder
from chalicelib.services.errors import ValidationError
from chalicelib.services.evidence import AskedBy, GatewayAnswer, Payment
from chalicelib.services.notifications import Outcome
from chalicelib.services.operations import OperatorRequest, entry_id
from chalicelib.services.ports import QueuedNotification
from tests.alipay_fixtures import OUT_TRADE_NO, alipay_key, notification_body, openapi_notification_fields
from tests.unit.services_kit import Kit, env, make_kit

FORM = "application/x-www-form-urlencoded"


def openapi_payment(trans_currency: str | None) -> QueuedNotification:
    fields = {"out_trade_no": OUT_TRADE_NO, "trade_status": "TRADE_SUCCESS", "total_amount": "88.88", "notify_id": "n"}
    if trans_currency is not None:
        fields["trans_currency"] = trans_currency
    return QueuedNotification("openapi", "n", OUT_TRADE_NO, fields, "now")


def test_an_open_platform_payment_in_another_currency_is_quarantined_not_applied() -> None:
    kit = make_kit()
    kit.add_order(amount="88.88", currency="USD")
    assert kit.services.updater.apply(openapi_payment("HKD")) is Outcome.QUARANTINED
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    [record] = kit.quarantine.records.values()
    assert record.reason == "currency_mismatch"


@pytest.mark.parametrize("trans_currency", ["USD", None], ids=["same currency", "not sent"])
def test_an_open_platform_payment_in_the_orders_currency_applies(trans_currency: str | None) -> None:
    kit = make_kit()
    kit.add_order(amount="88.88", currency="USD")
    assert kit.services.updater.apply(openapi_payment(trans_currency)) is Outcome.APPLIED


# --- REQUIRE_TRANS_CURRENCY: a payment naming no currency is Alipay's CNY ----------------------------------------


def deliver(kit: Kit, **fields: str | None) -> Outcome:
    """A signed Open Platform notification through the webhook and the queue's consumer."""
    body = notification_body(openapi_notification_fields(**fields), alipay_key())
    kit.services.intake.accept(body, FORM)
    return kit.services.consumer.apply(kit.queue.messages[-1])


@pytest.mark.parametrize(
    "payment",
    [{}, {"refund_fee": "0.00"}, {"trade_status": "TRADE_FINISHED"}],
    ids=["TRADE_SUCCESS", "refund_fee 0.00", "TRADE_FINISHED"],
)
def test_with_require_trans_currency_a_foreign_order_paid_without_trans_currency_is_quarantined_not_paid(
    payment: dict[str, str],
) -> None:
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    assert deliver(kit, trans_currency=None, **payment) is Outcome.QUARANTINED
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    [record] = kit.quarantine.records.values()
    assert (record.reason, record.detail) == ("currency_mismatch", "CNY != order USD")
    # An operator's replay is refused again, for the same reason, and the entry stays open.
    replayed = kit.services.operations.replay(entry_id(record.notify_id), OperatorRequest("arn:operator", "checked"))
    assert (replayed["outcome"], replayed["resolved"], replayed["still"]) == ("quarantined", False, "currency_mismatch")
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    # The same notification on a stage without the parameter: applied on its amount alone (the documented gap).
    unguarded = make_kit()
    unguarded.add_order(amount="88.88", currency="USD")
    assert deliver(unguarded, trans_currency=None) is Outcome.APPLIED


@pytest.mark.parametrize(
    ("currency", "trans_currency"),
    [("USD", "USD"), ("CNY", None), ("CNY", "CNY")],
    ids=["USD named", "CNY", "CNY named"],
)
def test_with_require_trans_currency_a_payment_in_the_orders_currency_applies(
    currency: str, trans_currency: str | None
) -> None:
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency=currency)
    assert deliver(kit, trans_currency=trans_currency) is Outcome.APPLIED
    assert kit.order().status is OrderStatus.TRADE_SUCCESS


def test_with_require_trans_currency_a_query_that_names_no_currency_does_not_pay_a_foreign_order() -> None:
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    unnamed = Payment(OUT_TRADE_NO, OrderStatus.TRADE_SUCCESS, Decimal("88.88"), None, "2026120622001")
    assert kit.services.updater.apply(GatewayAnswer(unnamed, AskedBy.RECONCILE, {})) is Outcome.QUARANTINED
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    named = replace(unnamed, currency="USD")
    assert kit.services.updater.apply(GatewayAnswer(named, AskedBy.RECONCILE, {})) is Outcome.APPLIED
    assert kit.order().status is OrderStatus.TRADE_SUCCESS


def test_with_require_trans_currency_a_close_and_a_paid_orders_refund_figures_are_not_read_as_cny() -> None:
    # A close carries no money and a refund's figures are the merchant's own request: neither is held up.
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    assert deliver(kit, notify_id="n-closed", trade_status="TRADE_CLOSED") is Outcome.APPLIED
    assert (kit.order().status, kit.order().closed_reason) == (OrderStatus.TRADE_CLOSED, ClosedReason.TIMEOUT)
    paid = make_kit(REQUIRE_TRANS_CURRENCY="true")
    paid.add_order(amount="88.88", currency="USD")
    assert deliver(paid, notify_id="n-paid", trans_currency="USD") is Outcome.APPLIED
    assert deliver(paid, notify_id="n-refund", refund_fee="10.00") is Outcome.APPLIED
    assert (paid.order().status, paid.order().refund_fee) == (OrderStatus.TRADE_SUCCESS, Decimal("10.00"))
    assert not paid.quarantine.records


@pytest.mark.parametrize(
    "refund",
    [{"refund_fee": "10.00"}, {"trade_status": "TRADE_CLOSED", "refund_fee": "88.88"}],
    ids=["partial", "full"],
)
def test_with_require_trans_currency_a_refund_without_trans_currency_does_not_make_a_waiting_order_paid(
    refund: dict[str, str],
) -> None:
    # After the payment was quarantined (charged as CNY), the merchant refunds that trade in Alipay's portal: its
    # notification names no currency either, and must not make the USD order paid and refunded (events OrderPaid...).
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    assert deliver(kit, notify_id="n-paid") is Outcome.QUARANTINED
    assert deliver(kit, notify_id="n-refund", **refund) is Outcome.QUARANTINED
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY
    kept = kit.quarantine.records["n-refund"]
    assert (kept.reason, kept.holds_money) == ("currency_mismatch", refund.get("trade_status") is None)
    kit.relay_stream()
    assert kit.event_types() == []


def test_with_require_trans_currency_a_query_saying_still_waiting_is_a_duplicate_not_a_mismatch() -> None:
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    waiting = Payment(OUT_TRADE_NO, OrderStatus.WAIT_BUYER_PAY, Decimal("88.88"), None, None)
    assert kit.services.updater.apply(GatewayAnswer(waiting, AskedBy.QUERY, {})) is Outcome.DUPLICATE
    assert not kit.quarantine.records


ORDER_STATES = {
    "waiting": {},
    "paid": {"status": OrderStatus.TRADE_SUCCESS},
    "closed unpaid": {"status": OrderStatus.TRADE_CLOSED, "closed_reason": ClosedReason.TIMEOUT},
}


@pytest.mark.parametrize(
    ("state", "status", "refund_fee", "read"),
    [
        (None, "TRADE_SUCCESS", None, True),  # the unread write: a payment
        (None, "TRADE_FINISHED", "0.00", True),
        (None, "TRADE_SUCCESS", "10.00", False),  # a refund's figures are decided on the order as read
        (None, "TRADE_CLOSED", None, False),
        ("waiting", "TRADE_SUCCESS", None, True),
        ("waiting", "TRADE_SUCCESS", "10.00", True),
        ("waiting", "TRADE_CLOSED", "88.88", True),
        ("waiting", "TRADE_CLOSED", "0.00", False),  # a close, with Alipay's zero running total
        ("waiting", "WAIT_BUYER_PAY", None, False),
        ("paid", "TRADE_FINISHED", None, False),
        ("paid", "TRADE_SUCCESS", "10.00", False),
        ("closed unpaid", "TRADE_SUCCESS", None, False),  # a late payment: returned whole
    ],
)
def test_read_in_currency_reads_only_money_for_a_waiting_order(
    state: str | None, status: str, refund_fee: str | None, read: bool
) -> None:
    order = None if state is None else replace(make_kit().add_order(currency="USD"), **ORDER_STATES[state])
    update = PaymentUpdate(
        OUT_TRADE_NO,
        OrderStatus(status),
        Decimal("88.88"),
        None,
        None,
        "n",
        Decimal(refund_fee) if refund_fee is not None else None,
        "now",
    )
    assert read_in_currency(update, "CNY", order).currency == ("CNY" if read else None)
    assert read_in_currency(update, None, order) is update
    assert read_in_currency(replace(update, currency="USD"), "CNY", order).currency == "USD"


def test_with_require_trans_currency_a_paid_orders_later_news_is_not_read_as_cny() -> None:
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    assert deliver(kit, notify_id="n-paid", trans_currency="USD") is Outcome.APPLIED
    assert deliver(kit, notify_id="n-finished", trade_status="TRADE_FINISHED") is Outcome.APPLIED
    assert kit.order().status is OrderStatus.TRADE_FINISHED
    assert not kit.quarantine.records


def test_with_require_trans_currency_a_late_payment_is_still_returned_whole() -> None:
    # Money for an order closed unpaid is given back whatever its currency: reading it as CNY would strand it in the
    # quarantine (the order exists, so the quarantine's return refuses it).
    kit = make_kit(REQUIRE_TRANS_CURRENCY="true")
    kit.add_order(amount="88.88", currency="USD")
    assert deliver(kit, notify_id="n-closed", trade_status="TRADE_CLOSED") is Outcome.APPLIED
    assert deliver(kit, notify_id="n-late") is Outcome.RETURNING
    assert not kit.quarantine.records


@pytest.mark.parametrize("protocol", ["mapi", "antom"])
def test_require_trans_currency_is_refused_on_a_stage_that_is_not_open_platform(protocol: str) -> None:
    with pytest.raises(ConfigError, match="REQUIRE_TRANS_CURRENCY"):
        Config.from_env(env(protocol, REQUIRE_TRANS_CURRENCY="true"))


@pytest.mark.parametrize(
    ("amount", "currency", "fits"),
    [
        ("100", "JPY", True),
        ("100.00", "JPY", True),
        ("100.50", "JPY", False),
        ("1.5", "KRW", False),
        ("1.05", "USD", True),
    ],
)
def test_an_amount_fits_its_currencys_minor_units(amount: str, currency: str, fits: bool) -> None:
    assert fits_currency(Decimal(amount), currency) is fits
    assert minor_units("USD") == 2


def test_a_jpy_order_with_a_fraction_is_refused_naming_total_amount() -> None:
    kit = make_kit(CURRENCIES="USD,JPY")
    order = {"subject": "Tea", "total_amount": "100.50", "currency": "JPY"}
    with pytest.raises(ValidationError) as raised:
        kit.services.orders.create(CreateOrder.from_json(order))
    assert raised.value.field == "total_amount"
    created = kit.services.orders.create(CreateOrder.from_json({**order, "total_amount": "100"}))
    assert created.status_code == 201


def test_a_jpy_price_with_a_fraction_is_refused_naming_the_price() -> None:
    kit = make_kit(CURRENCIES="USD,JPY")
    with pytest.raises(ValidationError) as raised:
        kit.services.catalogue.put("tea", {"subject": "Tea", "prices": {"JPY": "100.50"}}, "arn:merchant")
    assert raised.value.field == "prices.JPY"


def test_a_jpy_refund_with_a_fraction_is_refused_before_alipay_is_asked() -> None:
    kit = make_kit(CURRENCIES="USD,JPY")
    kit.add_order(amount="1000", currency="JPY")
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.TRADE_SUCCESS, version=2)
    with pytest.raises(ValidationError) as raised:
        kit.services.refunds.refund(OUT_TRADE_NO, {"amount": "10.50"})
    assert raised.value.field == "amount"
    assert kit.gateway.calls == 0
