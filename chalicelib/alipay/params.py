"""Validation and formatting of the order parameters both protocols share."""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING

from .errors import OrderError

if TYPE_CHECKING:
    from decimal import Decimal, InvalidOperation

# decimal (~0.8 ms) and the patterns' compilation (~0.3 ms) wait for their first use, not every cold start: the
# amounts below are built by ``__getattr__`` on first access, the patterns by the cached functions that return them.
MIN_AMOUNT: Decimal  # 0.01
MAX_AMOUNT: Decimal  # 100000000
ZERO: Decimal  # the least refund_fee (a payment without refunds reports 0.00)
_MAX_AMOUNT_TEXT = "100000000"
_MAX_INTEGER_DIGITS = len(_MAX_AMOUNT_TEXT)
# "&name=" inside a value would let Alipay's unescaped k=v&k=v signed content be re-split into other fields.
INJECTED_FIELD: re.Pattern[str]
_TIMEOUT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_MAX_TIMEOUT_MINUTES = 15 * 1440


@cache
def _amount_rules() -> tuple[type[Decimal], type[InvalidOperation], re.Pattern[str], Decimal, Decimal]:
    """What ``parse_amount`` uses, in one call: ``Decimal``, ``InvalidOperation``, the shape, one cent, the maximum."""
    from decimal import Decimal, InvalidOperation

    # Any plain decimal (ASCII digits, a minus sign), so that a refusal can say what is wrong with it.
    shape = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
    return Decimal, InvalidOperation, shape, Decimal("0.01"), Decimal(_MAX_AMOUNT_TEXT)


@cache
def injected_field() -> re.Pattern[str]:
    """``INJECTED_FIELD``: a ``&name=`` inside a value."""
    return re.compile(r"&[A-Za-z0-9_.\-]{1,64}=")


@cache
def _control() -> re.Pattern[str]:
    return re.compile(r"[\x00-\x1f\x7f]")


@cache
def _out_trade_no() -> re.Pattern[str]:
    return re.compile(r"[A-Za-z0-9_\-]{1,64}")


@cache
def _timeout() -> re.Pattern[str]:
    return re.compile(r"([1-9][0-9]{0,4})([mhd])")


def __getattr__(name: str) -> object:
    """``MIN_AMOUNT``, ``MAX_AMOUNT``, ``ZERO`` and ``INJECTED_FIELD``, built on first access and then kept."""
    if name == "INJECTED_FIELD":
        value: object = injected_field()
    elif name in ("ZERO", "MIN_AMOUNT", "MAX_AMOUNT"):
        decimal_class, _, _, cent, max_amount = _amount_rules()
        value = {"ZERO": decimal_class(0), "MIN_AMOUNT": cent, "MAX_AMOUNT": max_amount}[name]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def parse_amount(value: str | Decimal, field: str = "total_amount", *, minimum: Decimal | None = None) -> Decimal:
    """An amount with at most 2 decimal places, within Alipay's range (0.01–100000000 by default)."""
    decimal_class, invalid_operation, amount_shape, cent, max_amount = _amount_rules()
    if minimum is None:
        minimum = cent
    if not isinstance(value, decimal_class):
        shape = amount_shape.fullmatch(value.strip()) if isinstance(value, str) else None
        if shape is None:
            raise OrderError(field, 'must be a decimal string such as "12.34" (digits, at most 2 decimal places)')
        sign, whole, decimals = shape.groups()
        if sign:
            raise OrderError(field, f"must not be negative (the range is {minimum} to {max_amount})")
        if decimals is not None and len(decimals) > 2:
            raise OrderError(field, 'must have at most 2 decimal places, e.g. "12.34"')
        if len(whole.lstrip("0")) > _MAX_INTEGER_DIGITS:
            raise OrderError(field, f"must be at most {max_amount}: too large")
        # The stripped text the shape matched: finite, unsigned, at most 9 + 2 digits, so quantizing is exact (it can
        # fail only in a decimal context of fewer than 11 digits).
        try:
            cents = decimal_class(shape.string).quantize(cent)
        except invalid_operation as exc:
            raise OrderError(field, f"must be at most {max_amount}: too large") from exc
    else:
        cents = _decimal_cents(value, field, minimum, max_amount)
    if cents < minimum:
        raise OrderError(field, f"must be at least {minimum} (the range is {minimum} to {max_amount})")
    if cents > max_amount:
        raise OrderError(field, f"must be at most {max_amount}: too large")
    return cents


def _decimal_cents(amount: Decimal, field: str, minimum: Decimal, max_amount: Decimal) -> Decimal:
    """A ``Decimal`` amount in cents: finite, not negative, at most 2 decimal places (the range is checked after)."""
    _, invalid_operation, _, cent, _ = _amount_rules()
    if not amount.is_finite():
        raise OrderError(field, "must be finite")
    try:
        cents = amount.quantize(cent)
    except invalid_operation as exc:  # too many digits to hold cents at all
        raise OrderError(field, f"must be at most {max_amount}: too large") from exc
    if cents != amount:
        raise OrderError(field, "must have at most 2 decimal places")
    if cents < 0:
        raise OrderError(field, f"must not be negative (the range is {minimum} to {max_amount})")
    return cents


def format_amount(value: str | Decimal, field: str = "total_amount") -> str:
    """The amount as Alipay expects it on the wire: two decimal places."""
    return str(parse_amount(value, field))


def check_out_trade_no(value: str) -> str:
    """Letters, digits, ``_`` and ``-``, at most 64 characters (Alipay's merchant order number)."""
    if not isinstance(value, str) or not _out_trade_no().fullmatch(value):
        raise OrderError("out_trade_no", "1-64 characters from A-Z a-z 0-9 _ -")
    return value


def check_text(field: str, value: str, max_length: int, *, required: bool = True) -> str:
    """A free-text field: non-blank when required, at most ``max_length`` characters, no control characters."""
    if not isinstance(value, str):
        raise OrderError(field, "must be a string")
    if required and not value.strip():
        raise OrderError(field, "is required")
    if len(value) > max_length:
        raise OrderError(field, f"at most {max_length} characters")
    if "&" in value and injected_field().search(value):
        raise OrderError(field, "must not contain '&' directly followed by a name and '=' (e.g. '&a=')")
    if _control().search(value):
        raise OrderError(field, "must not contain control characters")
    return value


def timeout_minutes(value: str, field: str = "timeout_express") -> int:
    """How many minutes a valid timeout such as ``30m`` stands for."""
    match = _timeout().fullmatch(check_timeout(value, field))
    assert match is not None  # check_timeout accepted it
    return int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)]


def check_timeout(value: str, field: str = "timeout_express") -> str:
    """An unpaid-order timeout such as ``30m``, ``2h`` or ``1d``, between 1m and 15d."""
    match = _timeout().fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise OrderError(field, "must look like 30m, 2h or 1d")
    minutes = int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)]
    if minutes > _MAX_TIMEOUT_MINUTES:
        raise OrderError(field, "must be between 1m and 15d")
    return value


MAX_RETURN_URL_LENGTH = 256


@cache
def _url_scheme() -> re.Pattern[str]:
    return re.compile(r"https?://[^/?#\s]+", re.IGNORECASE)


def check_return_url(value: str, field: str = "return_url", max_length: int = MAX_RETURN_URL_LENGTH) -> str:
    """An absolute ``http(s)`` URL for Alipay to send the shopper back to: no whitespace, no query, no fragment.

    Alipay appends its signed parameters to ``return_url``: a query of the URL's own would reach the return page
    beside them, unsigned, and break the verification of every return.
    """
    if not isinstance(value, str) or not value:
        raise OrderError(field, "is required")
    if len(value) > max_length:
        raise OrderError(field, f"at most {max_length} characters")
    if any(c.isspace() for c in value) or _control().search(value):
        raise OrderError(field, "must not contain whitespace or control characters")
    if not _url_scheme().match(value):
        raise OrderError(field, "must be an absolute http or https URL, e.g. https://shop.example.com/paid")
    if "?" in value or "#" in value:
        raise OrderError(field, "must not carry a query or fragment: Alipay appends its signed parameters to it")
    return value
