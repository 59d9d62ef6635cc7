"""Open Platform gateway replies: ``alipay.trade.query``, ``alipay.trade.close`` and ``alipay.trade.refund``.

Each JSON reply is verified with Alipay's public key over the exact raw ``*_response`` text before any field is
read. A reply then becomes a value of ``replies`` or one of the errors of ``errors``: ``RetryableReply`` (send
the same request again), ``ErrorReply``, ``RefundRefusal``, or a ``VerificationError`` naming the failed check.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from . import openapi
from .errors import (
    ErrorReply,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    OrderMismatch,
    RefundRefusal,
    RetryableReply,
    VerificationError,
)
from .replies import CHARSET, RefundQueryReply, RefundReply, TradeCloseReply, TradeQueryReply, reply_amount
from .signing import AlipayPublicKeys, SignType

TRADE_QUERY_METHOD = "alipay.trade.query"
TRADE_QUERY_RESPONSE = "alipay_trade_query_response"
TRADE_CLOSE_METHOD = "alipay.trade.close"
TRADE_CLOSE_RESPONSE = "alipay_trade_close_response"
TRADE_REFUND_METHOD = "alipay.trade.refund"
TRADE_REFUND_RESPONSE = "alipay_trade_refund_response"
REFUND_QUERY_METHOD = "alipay.trade.fastpay.refund.query"
REFUND_QUERY_RESPONSE = "alipay_trade_fastpay_refund_query_response"
REFUND_SUCCESS = "REFUND_SUCCESS"

CODE_SUCCESS = openapi.SUCCESS_CODE
CODE_SERVICE_UNAVAILABLE = "20000"  # Alipay: "service currently unavailable", retry later
CODE_BUSINESS_FAILED = "40004"
SUB_CODE_TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
# alipay.trade.query documents ACQ.SYSTEM_ERROR as "system error: send the request again".
_RETRYABLE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR"})


def parse_trade_query(
    reply: bytes, out_trade_no: str, *, keys: AlipayPublicKeys, sign_type: SignType
) -> TradeQueryReply:
    """The verified ``alipay.trade.query`` reply for ``out_trade_no``; ``found`` False for ``ACQ.TRADE_NOT_EXIST``."""
    response = _verified(reply, TRADE_QUERY_RESPONSE, keys, sign_type)
    body = response.body
    code = _field(body, "code")
    sub_code = _field(body, "sub_code") or None
    if code == CODE_SUCCESS and response.name == TRADE_QUERY_RESPONSE:
        return _trade(body, out_trade_no)
    if code == CODE_SERVICE_UNAVAILABLE or sub_code in _RETRYABLE_SUB_CODES:
        raise RetryableReply(f"code {code} {sub_code or ''}".strip())
    if code == CODE_BUSINESS_FAILED and sub_code == SUB_CODE_TRADE_NOT_EXIST:
        return TradeQueryReply(found=False, raw=_flat(body))
    raise ErrorReply(code or "?", sub_code, _field(body, "sub_msg") or _field(body, "msg"))


def parse_trade_close(
    reply: bytes, out_trade_no: str, *, keys: AlipayPublicKeys, sign_type: SignType
) -> TradeCloseReply:
    """The verified ``alipay.trade.close`` reply: closed, not found, or not closed with the ``sub_code`` saying why."""
    body = _verified_body(reply, TRADE_CLOSE_RESPONSE, keys, sign_type)
    code, sub_code = _field(body, "code"), _field(body, "sub_code") or None
    if code == CODE_SUCCESS:
        _echoed(body, out_trade_no)
        return TradeCloseReply(closed=True, raw=_flat(body))
    if code == CODE_BUSINESS_FAILED and sub_code == SUB_CODE_TRADE_NOT_EXIST:
        return TradeCloseReply(closed=False, found=False, sub_code=sub_code, raw=_flat(body))
    if code == CODE_BUSINESS_FAILED and sub_code:
        # Most often ACQ.TRADE_STATUS_ERROR: the buyer paid (or it closed) meanwhile; a query tells which.
        return TradeCloseReply(closed=False, sub_code=sub_code, raw=_flat(body))
    raise ErrorReply(code or "?", sub_code, _field(body, "sub_msg") or _field(body, "msg"))


def parse_trade_refund(
    reply: bytes, out_trade_no: str, out_request_no: str, *, keys: AlipayPublicKeys, sign_type: SignType
) -> RefundReply:
    """The verified ``alipay.trade.refund`` reply; ``RefundRefusal`` for a ``40004`` with a ``sub_code``."""
    body = _verified_body(reply, TRADE_REFUND_RESPONSE, keys, sign_type)
    code, sub_code = _field(body, "code"), _field(body, "sub_code") or None
    if code == CODE_SUCCESS:
        _echoed(body, out_trade_no)
        return RefundReply(
            out_request_no=out_request_no,
            # 0.00 when nothing is refunded yet (a fund_change=N reply to a refund still being carried out).
            refund_fee=reply_amount(_field(body, "refund_fee"), "refund_fee", minimum=Decimal(0)),
            fund_change=_field(body, "fund_change") == "Y",
            raw=_flat(body),
        )
    if code == CODE_BUSINESS_FAILED and sub_code:
        raise RefundRefusal(sub_code, _field(body, "sub_msg"))
    raise ErrorReply(code or "?", sub_code, _field(body, "sub_msg") or _field(body, "msg"))


def parse_refund_query(
    reply: bytes, out_trade_no: str, out_request_no: str, *, keys: AlipayPublicKeys, sign_type: SignType
) -> RefundQueryReply:
    """The verified ``alipay.trade.fastpay.refund.query`` reply for one refund.

    Alipay's rule: a refund is done only when the query says ``refund_status`` ``REFUND_SUCCESS``. A ``10000`` without
    it (no refund_status, no refund_amount) means Alipay has no finished refund under this ``out_request_no``: not
    received, or still being carried out; both stay pending.
    """
    body = _verified_body(reply, REFUND_QUERY_RESPONSE, keys, sign_type)
    code, sub_code = _field(body, "code"), _field(body, "sub_code") or None
    if code == CODE_SUCCESS:
        _echoed(body, out_trade_no)
        echoed = _field(body, "out_request_no")
        if echoed and echoed != out_request_no:
            raise OrderMismatch("out_request_no", out_request_no, echoed)
        refunded = _field(body, "refund_status") == REFUND_SUCCESS and bool(echoed)
        amount = _field(body, "refund_amount")
        return RefundQueryReply(
            refunded=refunded,
            refund_amount=reply_amount(amount, "refund_amount") if amount else None,
            raw=_flat(body),
        )
    if code == CODE_BUSINESS_FAILED and sub_code == SUB_CODE_TRADE_NOT_EXIST:
        return RefundQueryReply(refunded=False, found=False, raw=_flat(body))
    raise ErrorReply(code or "?", sub_code, _field(body, "sub_msg") or _field(body, "msg"))


# --- shared by the three -------------------------------------------------------------------------------------


def _verified(reply: bytes, name: str, keys: AlipayPublicKeys, sign_type: SignType) -> openapi.SignedResponse:
    """The reply's ``name`` member (or ``error_response``), verified over its raw text."""
    text = _decode(reply)
    try:
        return openapi.verify_response(text, keys, sign_type=sign_type, name=name)
    except MissingSignature as exc:
        # Never acted on, but the unverified code tells an operator why (e.g. isv.invalid-app-id).
        raise MissingSignature(f"{exc}{_unverified_summary(text, name)}") from exc


def _verified_body(reply: bytes, name: str, keys: AlipayPublicKeys, sign_type: SignType) -> Mapping[str, Any]:
    """The verified ``*_response`` body of a close or refund; ``RetryableReply`` for the codes a retry may fix."""
    response = _verified(reply, name, keys, sign_type)
    body = response.body
    code, sub_code = _field(body, "code"), _field(body, "sub_code") or None
    if code == CODE_SERVICE_UNAVAILABLE or sub_code in _RETRYABLE_SUB_CODES:
        raise RetryableReply(f"code {code} {sub_code or ''}".strip())
    if code == CODE_SUCCESS and response.name != name:
        raise MalformedMessage(f"expected {name}, got {response.name}")
    return body


def _decode(reply: bytes) -> str:
    try:
        return reply.decode(CHARSET)
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"gateway reply is not {CHARSET}") from exc


def _field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise InvalidField(f"{key} is not a string")
    return value


def _flat(body: Mapping[str, Any]) -> dict[str, str]:
    """The reply's fields as strings; nested values (e.g. ``fund_bill_list``) as compact JSON."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        for k, v in body.items()
    }


def _echoed(body: Mapping[str, Any], out_trade_no: str) -> None:
    echoed = _field(body, "out_trade_no")
    if echoed and echoed != out_trade_no:
        raise OrderMismatch("out_trade_no", out_trade_no, echoed)


def _unverified_summary(text: str, name: str) -> str:
    try:
        body = openapi.extract_response(text, name).body
    except VerificationError:
        return ""
    codes = " ".join(str(body[k]) for k in ("code", "sub_code") if body.get(k))
    return f" (unverified: {codes})" if codes else ""


def _trade(body: Mapping[str, Any], out_trade_no: str) -> TradeQueryReply:
    echoed = _field(body, "out_trade_no")
    if echoed != out_trade_no:
        raise OrderMismatch("out_trade_no", out_trade_no, echoed)
    status = _field(body, "trade_status")
    if not status:
        raise InvalidField("trade_status is missing")
    return TradeQueryReply(
        found=True,
        trade_status=status,
        trade_no=_field(body, "trade_no") or None,
        total_amount=reply_amount(_field(body, "total_amount"), "total_amount"),
        currency=_field(body, "trans_currency") or None,
        raw=_flat(body),
    )
