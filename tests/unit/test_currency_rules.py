"""Currency rules (issue 15 #10): Open Platform notifications have their trans_currency checked, and every amount has
no more decimal places than its currency (JPY none)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from chalicelib.orders.model import OrderStatus
from chalicelib.orders.money import fits_currency, minor_units
from chalicelib.services.commands import CreateOrder
from chalicelib.services.errors import ValidationError
from chalicelib.services.notifications import Outcome
from chalicelib.services.ports import QueuedNotification
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.unit.services_kit import make_kit


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
