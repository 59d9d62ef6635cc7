"""The merchant's catalogue: products with a price per currency, from which a buyer's order is priced.

A buyer names products and quantities; the server prices them here. A price a buyer could send is never read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from chalicelib.orders.model import OrderItem

SKU = re.compile(r"[A-Za-z0-9_-]{1,64}")  # a path parameter: SigV4 canonical paths never differ for it
MAX_LINES = 50
MAX_QUANTITY = 999
SUBJECT_BYTES = 256  # Alipay's subject: at most 256 characters


@dataclass(frozen=True, slots=True)
class Product:
    """One product the merchant sells: what Alipay's cashier shows (subject, body) and its prices."""

    sku: str
    subject: str
    prices: Mapping[str, Decimal]  # currency -> unit price
    body: str | None = None
    updated_at: str = ""
    updated_by: str | None = None  # the merchant identity that last changed it (audit)


@dataclass(frozen=True, slots=True)
class Line:
    """A line of a buyer's request: which product, how many."""

    sku: str
    quantity: int


class PricingError(ValueError):
    """A line cannot be priced; ``index`` names it (``items[index].sku``)."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class Priced:
    """A buyer's lines priced from the catalogue: the items, their total, and the subject Alipay shows."""

    items: tuple[OrderItem, ...]
    total_amount: Decimal
    subject: str
    body: str | None


def price(lines: Sequence[Line], products: Mapping[str, Product], currency: str) -> Priced:
    """Price ``lines`` in ``currency``; ``PricingError`` for an unknown product or one with no price there."""
    items = []
    for index, line in enumerate(lines):
        product = products.get(line.sku)
        if product is None:
            raise PricingError(index, f"no product {line.sku!r} in the catalogue")
        unit_price = product.prices.get(currency)
        if unit_price is None:
            raise PricingError(index, f"product {line.sku!r} has no price in {currency}")
        items.append(OrderItem(line.sku, line.quantity, unit_price))
    first = products[lines[0].sku]
    subject = first.subject if len(lines) == 1 else f"{first.subject} and {len(lines) - 1} more"
    return Priced(
        items=tuple(items),
        total_amount=sum((item.amount for item in items), Decimal(0)),
        subject=subject[:SUBJECT_BYTES],
        body=first.body if len(lines) == 1 else None,
    )
