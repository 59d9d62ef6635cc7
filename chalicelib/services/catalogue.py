"""The merchant's catalogue: products and their prices, kept by the merchant's backend (merchant routes only)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from chalicelib.alipay import params
from chalicelib.alipay.errors import OrderError
from chalicelib.orders.catalogue import SKU, Product
from chalicelib.orders.money import currency_message, fits_currency

from .clock import Clock, iso_utc
from .errors import BadRequest, ProductNotFound, ValidationError
from .ports import Catalogue

_FIELDS = frozenset({"subject", "body", "prices"})


@dataclass
class CatalogueService:
    """Put, read, list and remove products; every change records who made it."""

    catalogue: Catalogue
    currencies: Collection[str]
    now: Clock

    def put(self, sku: str, payload: object, by: str | None) -> tuple[Product, bool]:
        """Create or replace the product ``sku``; the product and whether it is new."""
        product = self._parse(_checked_sku(sku), payload, by)
        return product, self.catalogue.put(product)

    def get(self, sku: str) -> Product:
        product = self.catalogue.get(_checked_sku(sku))
        if product is None:
            raise ProductNotFound(f"no product {sku!r}")
        return product

    def all(self) -> list[Product]:
        return self.catalogue.all()

    def delete(self, sku: str) -> None:
        if not self.catalogue.delete(_checked_sku(sku)):
            raise ProductNotFound(f"no product {sku!r}")

    def _parse(self, sku: str, payload: object, by: str | None) -> Product:
        if not isinstance(payload, dict):
            raise BadRequest("the body must be a JSON object")
        for name in payload:
            if name not in _FIELDS:
                raise ValidationError(str(name), "unknown field")
        subject, body, prices = payload.get("subject"), payload.get("body"), payload.get("prices")
        if not isinstance(subject, str):
            raise ValidationError("subject", "is required: a string")
        if body is not None and not isinstance(body, str):
            raise ValidationError("body", "must be a string")
        try:
            subject = params.check_text("subject", subject, 256)
            body = params.check_text("body", body, 128, required=False) if body else None
        except OrderError as exc:
            raise ValidationError(exc.field, str(exc).removeprefix(f"{exc.field}: ")) from exc
        if not isinstance(prices, dict) or not prices:
            raise ValidationError("prices", 'is required: {"USD": "12.34", ...}')
        parsed: dict[str, Decimal] = {}
        for currency, value in prices.items():
            where = f"prices.{currency}"
            if currency not in self.currencies:
                raise ValidationError(where, f"currency must be one of {', '.join(sorted(self.currencies))}")
            if not isinstance(value, str):
                raise ValidationError(where, 'must be a string, e.g. "12.34"')
            try:
                parsed[currency] = params.parse_amount(value, where)
            except OrderError as exc:
                raise ValidationError(where, str(exc).removeprefix(f"{exc.field}: ")) from exc
            if not fits_currency(parsed[currency], currency):
                raise ValidationError(where, currency_message(currency))
        return Product(
            sku=sku,
            subject=subject,
            body=body,
            prices=MappingProxyType(parsed),
            updated_at=iso_utc(self.now()),
            updated_by=by,
        )


def _checked_sku(sku: str) -> str:
    if not SKU.fullmatch(sku):
        raise ProductNotFound(f"no product {sku[:64]!r}")
    return sku
