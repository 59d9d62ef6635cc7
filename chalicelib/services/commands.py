"""``POST /orders``'s command: the body as the client sent it (``CreateOrder``); validated, an ``OrderDraft``."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from decimal import Decimal

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

    @property
    def web(self) -> bool:
        """Whether the shopper pays in a browser (page or wap) rather than in an app."""
        return self.channel in WEB_CHANNELS
