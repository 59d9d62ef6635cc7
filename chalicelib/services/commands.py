"""``POST /orders``'s command: the body as the client sent it (``CreateOrder``); validated, an ``OrderDraft``."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass
from decimal import Decimal

from chalicelib.orders.catalogue import MAX_LINES, MAX_QUANTITY, SKU, Line
from chalicelib.orders.model import OrderItem

from .errors import BadRequest, ValidationError

APP_CHANNEL = "app"
WEB_CHANNELS = ("page", "wap")
CHANNELS = (APP_CHANNEL, *WEB_CHANNELS)


@dataclass(frozen=True, slots=True)
class CreateOrder:
    """The body of ``POST /orders`` as the client sent it (strings, not yet validated)."""

    subject: str
    total_amount: str
    currency: str
    body: str | None = None
    out_trade_no: str | None = None
    timeout: str | None = None
    channel: str | None = None  # app (the default), page or wap
    return_url: str | None = None  # page and wap: where Alipay sends the shopper back to
    buyer: str | None = None  # the merchant's route only: makes it this buyer's order (the user pool's ``sub``)
    payment_method: str | None = None  # Antom: the payment method type (ANTOM_PAYMENT_METHODS; default the first)
    os_type: str | None = None  # Antom: IOS or ANDROID, required for an app order

    @classmethod
    def from_json(cls, data: object) -> CreateOrder:
        """Check the shape of a decoded JSON body: an object of known string fields, the required ones present."""
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        for name in data:
            if name not in _FIELDS:
                raise ValidationError(str(name), "unknown field")
        for name in _REQUIRED:
            if data.get(name) is None:
                raise ValidationError(name, "is required")
        for name, value in data.items():
            if value is not None and not isinstance(value, str):
                # Amounts too: a JSON number is a binary float, and 0.1 + 0.2 is no price.
                hint = ', e.g. "12.34"' if name == "total_amount" else ""
                raise ValidationError(name, f"must be a string{hint}")
        return cls(**data)

    def request_hash(self) -> str:
        """SHA-256 of the canonical request (sorted keys, unset fields left out): equal bodies, equal hashes."""
        canonical = {k: v for k, v in asdict(self).items() if v is not None}
        text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


_FIELDS = frozenset(CreateOrder.__dataclass_fields__)
_REQUIRED = ("subject", "total_amount", "currency")
BUYER_ID = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True)
class BuyerOrder:
    """The body of a buyer's ``POST /orders``: products and quantities; the server prices, names and numbers it."""

    lines: tuple[Line, ...]
    currency: str | None = None
    channel: str | None = None
    return_url: str | None = None
    payment_method: str | None = None  # Antom only, as for CreateOrder
    os_type: str | None = None  # Antom only, as for CreateOrder

    @classmethod
    def from_json(cls, data: object) -> BuyerOrder:
        """Check the shape; a field only the merchant may send (an amount, a subject, a number) is refused by name."""
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        for name in data:
            if name in _FIELDS and name not in _BUYER_FIELDS:
                raise ValidationError(str(name), "may not be sent by a buyer: the server prices and numbers the order")
            if name not in _BUYER_FIELDS:
                raise ValidationError(str(name), "unknown field")
        for name in _BUYER_OPTIONS:
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise ValidationError(name, "must be a string")
        return cls(
            lines=_lines(data.get("items")),
            currency=data.get("currency"),
            channel=data.get("channel"),
            return_url=data.get("return_url"),
            payment_method=data.get("payment_method"),
            os_type=data.get("os_type"),
        )

    def request_hash(self) -> str:
        options = {name: getattr(self, name) for name in _BUYER_OPTIONS}
        lines = [[line.sku, line.quantity] for line in self.lines]
        canonical = {"items": lines, **{k: v for k, v in options.items() if v}}
        text = json.dumps(canonical, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


_BUYER_OPTIONS = ("currency", "channel", "return_url", "payment_method", "os_type")
_BUYER_FIELDS = frozenset({"items", *_BUYER_OPTIONS})


def _lines(items: object) -> tuple[Line, ...]:
    if not isinstance(items, list) or not items:
        raise ValidationError("items", 'is required: a list of {"sku", "quantity"}')
    if len(items) > MAX_LINES:
        raise ValidationError("items", f"at most {MAX_LINES} lines")
    lines: list[Line] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise ValidationError(where, 'must be an object {"sku", "quantity"}')
        for name in item:
            if name not in ("sku", "quantity"):
                message = "may not be sent by a buyer" if name in ("unit_price", "amount", "price") else "unknown field"
                raise ValidationError(f"{where}.{name}", message)
        sku, quantity = item.get("sku"), item.get("quantity", 1)
        if not isinstance(sku, str) or not SKU.fullmatch(sku):
            raise ValidationError(f"{where}.sku", "must be 1-64 characters of A-Z, a-z, 0-9, _ and -")
        if sku in seen:
            raise ValidationError(f"{where}.sku", "appears twice: give one line per product with its quantity")
        seen.add(sku)
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= MAX_QUANTITY:
            raise ValidationError(f"{where}.quantity", f"must be a whole number from 1 to {MAX_QUANTITY}")
        lines.append(Line(sku, quantity))
    return tuple(lines)


@dataclass(frozen=True, slots=True)
class OrderDraft:
    """A validated order, before it is stored and signed."""

    out_trade_no: str
    subject: str
    body: str | None
    total_amount: Decimal
    currency: str
    timeout: str
    channel: str = APP_CHANNEL
    return_url: str | None = None
    buyer: str | None = None
    items: tuple[OrderItem, ...] = ()
    created_by: str | None = None
    payment_method: str | None = None  # Antom only
    os_type: str | None = None  # Antom only

    @property
    def web(self) -> bool:
        """Whether the shopper pays in a browser (page or wap) rather than in an app."""
        return self.channel in WEB_CHANNELS
