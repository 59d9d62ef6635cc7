"""Validation and formatting of the order parameters both protocols share."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from .errors import OrderError

MIN_AMOUNT = Decimal("0.01")
MAX_AMOUNT = Decimal("100000000")
_CENT = Decimal("0.01")
# "&name=" inside a value would let Alipay's unescaped k=v&k=v signed content be re-split into other fields.
INJECTED_FIELD = re.compile(r"&[A-Za-z0-9_.\-]{1,64}=")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Any plain decimal (ASCII digits, a minus sign), so that a refusal can say what is wrong with it.
_AMOUNT = re.compile(r"(-?)([0-9]+)(?:\.([0-9]+))?")
_MAX_INTEGER_DIGITS = len(str(int(MAX_AMOUNT)))
_OUT_TRADE_NO = re.compile(r"[A-Za-z0-9_\-]{1,64}")
_TIMEOUT = re.compile(r"([1-9][0-9]{0,4})([mhd])")
_TIMEOUT_MINUTES = {"m": 1, "h": 60, "d": 1440}
_MAX_TIMEOUT_MINUTES = 15 * 1440


def parse_amount(value: str | Decimal, field: str = "total_amount", *, minimum: Decimal = MIN_AMOUNT) -> Decimal:
    """An amount with at most 2 decimal places, within Alipay's range (0.01–100000000 by default)."""
    if isinstance(value, Decimal):
        amount = value
    else:
        shape = _AMOUNT.fullmatch(value.strip()) if isinstance(value, str) else None
        if shape is None:
            raise OrderError(field, 'must be a decimal string such as "12.34" (digits, at most 2 decimal places)')
        sign, whole, decimals = shape.groups()
        if sign:
            raise OrderError(field, f"must not be negative (the range is {minimum} to {MAX_AMOUNT})")
        if decimals is not None and len(decimals) > 2:
            raise OrderError(field, 'must have at most 2 decimal places, e.g. "12.34"')
        if len(whole.lstrip("0")) > _MAX_INTEGER_DIGITS:
            raise OrderError(field, f"must be at most {MAX_AMOUNT}: too large")
        amount = Decimal(value.strip())
    if not amount.is_finite():
        raise OrderError(field, "must be finite")
    try:
        cents = amount.quantize(_CENT)
    except InvalidOperation as exc:  # too many digits to hold cents at all
        raise OrderError(field, f"must be at most {MAX_AMOUNT}: too large") from exc
    if cents != amount:
        raise OrderError(field, "must have at most 2 decimal places")
    if cents < 0:
        raise OrderError(field, f"must not be negative (the range is {minimum} to {MAX_AMOUNT})")
    if cents < minimum:
        raise OrderError(field, f"must be at least {minimum} (the range is {minimum} to {MAX_AMOUNT})")
    if cents > MAX_AMOUNT:
        raise OrderError(field, f"must be at most {MAX_AMOUNT}: too large")
    return cents


def format_amount(value: str | Decimal, field: str = "total_amount") -> str:
    """The amount as Alipay expects it on the wire: two decimal places."""
    return str(parse_amount(value, field))


def check_out_trade_no(value: str) -> str:
    """Letters, digits, ``_`` and ``-``, at most 64 characters (Alipay's merchant order number)."""
    if not isinstance(value, str) or not _OUT_TRADE_NO.fullmatch(value):
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
    if "&" in value and INJECTED_FIELD.search(value):
        raise OrderError(field, "must not contain '&' directly followed by a name and '=' (e.g. '&a=')")
    if _CONTROL.search(value):
        raise OrderError(field, "must not contain control characters")
    return value


def timeout_minutes(value: str, field: str = "timeout_express") -> int:
    """How many minutes a valid timeout such as ``30m`` stands for."""
    match = _TIMEOUT.fullmatch(check_timeout(value, field))
    assert match is not None  # check_timeout accepted it
    return int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)]


def check_timeout(value: str, field: str = "timeout_express") -> str:
    """An unpaid-order timeout such as ``30m``, ``2h`` or ``1d``, between 1m and 15d."""
    match = _TIMEOUT.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise OrderError(field, "must look like 30m, 2h or 1d")
    minutes = int(match.group(1)) * _TIMEOUT_MINUTES[match.group(2)]
    if minutes > _MAX_TIMEOUT_MINUTES:
        raise OrderError(field, "must be between 1m and 15d")
    return value


MAX_RETURN_URL_LENGTH = 256
_URL_SCHEME = re.compile(r"https?://[^/?#\s]+", re.IGNORECASE)


def check_return_url(value: str, field: str = "return_url", max_length: int = MAX_RETURN_URL_LENGTH) -> str:
    """An absolute ``http(s)`` URL for Alipay to send the shopper back to: no whitespace, no query, no fragment.

    Alipay appends its signed parameters to ``return_url``: a query of the URL's own would reach the return page
    beside them, unsigned, and break the verification of every return.
    """
    if not isinstance(value, str) or not value:
        raise OrderError(field, "is required")
    if len(value) > max_length:
        raise OrderError(field, f"at most {max_length} characters")
    if any(c.isspace() for c in value) or _CONTROL.search(value):
        raise OrderError(field, "must not contain whitespace or control characters")
    if not _URL_SCHEME.match(value):
        raise OrderError(field, "must be an absolute http or https URL, e.g. https://shop.example.com/paid")
    if "?" in value or "#" in value:
        raise OrderError(field, "must not carry a query or fragment: Alipay appends its signed parameters to it")
    return value
