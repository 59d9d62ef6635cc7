"""Minor units per currency: how many decimal places an amount in a currency may have (pure, no I/O).

Alipay takes amounts with at most two decimal places, and fewer where the currency has fewer: its cross-border pages
say a JPY amount must be an integer ("100 JPY"; "100.50" is an error), and ISO 4217 gives KRW no minor unit either.
Every amount the product accepts (an order's total, a catalogue price, a refund) is checked against its currency here,
so that no amount Alipay would refuse, or read differently, is ever signed.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType

DEFAULT_MINOR_UNITS = 2
MINOR_UNITS: Mapping[str, int] = MappingProxyType({"JPY": 0, "KRW": 0})


def minor_units(currency: str) -> int:
    """The decimal places an amount in ``currency`` may have."""
    return MINOR_UNITS.get(currency, DEFAULT_MINOR_UNITS)


def fits_currency(amount: Decimal, currency: str) -> bool:
    """Whether ``amount`` has no more decimal places than ``currency`` allows (``100.00`` JPY fits, ``100.50`` not)."""
    places = minor_units(currency)
    return amount == amount.quantize(Decimal(1).scaleb(-places))


def currency_message(currency: str) -> str:
    """What a refusal says about ``currency``'s decimal places."""
    places = minor_units(currency)
    return f"{currency} amounts have {places} decimal places" if places else f"{currency} amounts are whole numbers"
