"""What Alipay's gateway answers to a trade query, a close or a refund, in either protocol: plain values.

``openapi_replies`` and ``mapi_replies`` parse the wire formats into these; the gateway adapter turns them into the
service ports' results, so this package knows nothing of the services.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from . import params as p
from .errors import InvalidField, OrderError

# Every gateway request declares this charset, so the reply comes in it too.
CHARSET = "utf-8"
# A trade-query reply is a few KB; anything far larger is not Alipay and is not worth parsing.
MAX_REPLY_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class TradeQueryReply:
    """A trade query's answer: ``found`` False when Alipay has no such trade (yet)."""

    found: bool
    trade_status: str | None = None
    trade_no: str | None = None
    total_amount: Decimal | None = None
    currency: str | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TradeCloseReply:
    """A close's answer: ``closed`` once the trade is closed, ``found`` False when Alipay has no such trade."""

    closed: bool
    found: bool = True
    sub_code: str | None = None  # why not closed (e.g. ``ACQ.TRADE_STATUS_ERROR``: the buyer paid meanwhile)
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundReply:
    """An accepted refund; ``refund_fee`` is the trade's running refunded total, None when not reported (legacy)."""

    out_request_no: str
    refund_fee: Decimal | None
    fund_change: bool  # False: this out_request_no was refunded before and Alipay answered it again
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundQueryReply:
    """A refund query's answer: ``refunded`` only when Alipay says the money moved (``REFUND_SUCCESS``)."""

    refunded: bool
    refund_amount: Decimal | None = None
    found: bool = True  # False: Alipay knows no such trade
    raw: Mapping[str, str] = field(default_factory=dict)


def reply_amount(value: str, name: str, minimum: Decimal | None = None) -> Decimal:
    """An amount field of a reply; an unusable one is ``InvalidField`` (a check of what Alipay sent)."""
    try:
        return p.parse_amount(value, name) if minimum is None else p.parse_amount(value, name, minimum=minimum)
    except OrderError as exc:
        raise InvalidField(str(exc)) from exc
