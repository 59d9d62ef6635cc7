"""Legacy Alipay Global gateway replies: ``single_trade_query`` and ``forex_refund`` (XML, parsed without a DTD).

A successful ``single_trade_query`` reply is signed: ``<sign>`` covers the sorted ``k=v`` of the ``<trade>`` leaves
(empty ones left out), joined with ``&``, with the request's sign type (``<sign_type>``). A genuine, Alipay-signed
reply recorded in a public integration verifies exactly so (``tests/vectors/genuine_samples.json``). It is verified
before any field of it is read. Its failure replies (``is_success=F`` and an ``error``) carry no signature; "not
found" among them is read as such (it comes as ``TRADE_NOT_EXIST`` and as ``TRADE_IS_NOT_EXIST``), and every other
error is only reported. ``forex_refund``'s reply (``is_success``/``error``) is unsigned in every recorded sample.
What protects the unsigned replies: TLS to Alipay's gateway with certificate and hostname verification (the gateway
adapter refuses plain ``http`` except to a loopback sandbox), and callers still compare amounts with the stored order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree
from xml.parsers import expat

from .errors import (
    CharsetError,
    ErrorReply,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    OrderMismatch,
    RefundRefusal,
    RetryableReply,
    SignTypeMismatch,
)
from .forms import codec_for, signed_content
from .openapi import beijing_timestamp
from .replies import CHARSET, MAX_REPLY_BYTES, RefundReply, TradeQueryReply, reply_amount
from .signing import AlipayPublicKeys, SignType, decode_signature, verify_signature

if TYPE_CHECKING:
    from datetime import datetime

SINGLE_TRADE_QUERY_SERVICE = "single_trade_query"
FOREX_REFUND_SERVICE = "forex_refund"
MAPI_TRADE_NOT_EXIST = "TRADE_NOT_EXIST"
# "Not found" comes under both names in recorded replies.
MAPI_NOT_FOUND_ERRORS = frozenset({MAPI_TRADE_NOT_EXIST, "TRADE_IS_NOT_EXIST"})

# forex_refund, legacy cross-border refunds (docs/protocols.md §2.4). What Alipay's pages say, and what they do not:
# - is_sync=Y: the synchronous reply carries the refund's own result and no notification follows (Alipay's refund
#   guide; with N, the reply only acknowledges the request and a notification with refund_status follows).
# - product_code: the product the trade was paid with. NEW_OVERSEAS_SELLER for create_forex_trade (desktop web),
#   NEW_WAP_OVERSEAS_SELLER for create_forex_trade_wap and mobile.securitypay.pay (the app).
# - gmt_return: Beijing time. Alipay Global's English page and its own Global SDK give "yyyy-MM-dd HH:mm:ss"; the
#   Chinese page gives yyyyMMddHHmmss. Alipay's documentation and SDK agree on the first, which is the default; the
#   other stays a setting (FOREX_REFUND_GMT_RETURN_FORMAT), since Alipay's own pages disagree.
# - reason: String(100) (bytes, per the Chinese page), and no '"' in any value (English page).
# - Error codes: none is in the pages we could read; the names below are those published integrations handle.
#   UNCONFIRMED, and so is what a second request with the same out_return_no gets (REPEATED_REFUNDMENT_REQUEST
#   by those integrations): it is never taken as a success or a refusal, and the refund stays pending for an operator.
# The product code of each channel's payments (services/commands.py CHANNELS; None: an app order stored before them).
FOREX_REFUND_PRODUCT_CODES = {
    "app": "NEW_WAP_OVERSEAS_SELLER",
    "wap": "NEW_WAP_OVERSEAS_SELLER",
    "page": "NEW_OVERSEAS_SELLER",
}
# gmt_return's two documented forms: the English page and the Global SDK's (the default), and the Chinese page's.
GMT_RETURN_FORMATS = ("yyyy-MM-dd HH:mm:ss", "yyyyMMddHHmmss")
FOREX_REFUND_REASON_BYTES = 100
MAPI_REFUND_REFUSALS = frozenset(
    {
        "PURCHASE_TRADE_NOT_EXIST",  # no such (paid) trade
        "RETURN_AMOUNT_EXCEED",  # more than what is left to refund
        "REFUNDMENT_VALID_DATE_EXCEED",  # the refund period is over
        "CURRENCY_NOT_SAME",  # not the trade's currency
        "TRADE_HAS_CLOSE",
        "TRADE_STATUS_ERROR",
    }
)
MAPI_REFUND_REPEATED = "REPEATED_REFUNDMENT_REQUEST"
_MAPI_RETRYABLE_ERRORS = frozenset({"SYSTEM_EXCEPTION", "SYSTEM_ERROR"})
# <?xml version="1.0" encoding="GBK"?> at the very start (after an optional UTF-8 byte order mark).
_XML_DECLARATION = re.compile(rb"\A(?:\xef\xbb\xbf)?<\?xml\s[^>]{0,200}\?>")
_XML_ENCODING = re.compile(rb"""\sencoding\s*=\s*["']([A-Za-z0-9._-]{1,40})["']""")
_UTF8_BOM = b"\xef\xbb\xbf"


def beijing_compact_timestamp(now: datetime) -> str:
    """``yyyyMMddHHmmss`` in Beijing time (UTC+8): the Chinese page's form of ``gmt_return``."""
    return beijing_timestamp(now).replace("-", "").replace(" ", "").replace(":", "")


def gmt_return(now: datetime, form: str = GMT_RETURN_FORMATS[0]) -> str:
    """forex_refund's ``gmt_return`` in Beijing time, in one of ``GMT_RETURN_FORMATS`` (see FOREX_REFUND_* above)."""
    if form not in GMT_RETURN_FORMATS:
        raise ValueError(f"gmt_return format must be one of {', '.join(GMT_RETURN_FORMATS)}, not {form!r}")
    return beijing_timestamp(now) if form == GMT_RETURN_FORMATS[0] else beijing_compact_timestamp(now)


def forex_refund_product_code(channel: str | None) -> str:
    """The product code of the payment being refunded: the one its order was paid with."""
    code = FOREX_REFUND_PRODUCT_CODES.get(channel or "app")
    if code is None:
        raise ValueError(f"no forex_refund product code for channel {channel!r}")
    return code


def forex_refund_reason(reason: str) -> str:
    """The reason as forex_refund takes it: no '"', at most 100 bytes of UTF-8 (cut on a character boundary)."""
    text = reason.replace('"', "'")
    return text.encode(CHARSET)[:FOREX_REFUND_REASON_BYTES].decode(CHARSET, "ignore")


def parse_single_trade_query(
    data: bytes, out_trade_no: str, *, keys: AlipayPublicKeys, sign_type: SignType
) -> TradeQueryReply:
    """The legacy ``single_trade_query`` XML reply, its ``<trade>`` verified with Alipay's key before it is read."""
    root = parse_xml(data)
    if root.tag != "alipay":
        raise MalformedMessage(f"expected <alipay>, got <{root.tag}>")
    top = _leaf_texts(root)
    is_success = top.get("is_success")
    if is_success == "F":
        error = top.get("error") or "UNKNOWN"
        if error in MAPI_NOT_FOUND_ERRORS:
            return TradeQueryReply(found=False, raw=top)
        raise ErrorReply(error)
    if is_success != "T":
        raise MalformedMessage(f"is_success is {is_success!r}, not T or F")
    trade = _leaf_texts(_only_child(_only_child(root, "response"), "trade"))
    verify_trade_signature(trade, top, keys=keys, sign_type=sign_type)
    echoed = trade.get("out_trade_no", "")
    if echoed != out_trade_no:
        raise OrderMismatch("out_trade_no", out_trade_no, echoed)
    status = trade.get("trade_status")
    if not status:
        raise InvalidField("trade_status is missing")
    total_fee = trade.get("total_fee")
    return TradeQueryReply(
        found=True,
        trade_status=status,
        trade_no=trade.get("trade_no") or None,
        # UNCONFIRMED for forex trades: whether total_fee is in the order currency or in CNY; raw keeps all.
        total_amount=reply_amount(total_fee, "total_fee") if total_fee else None,
        currency=trade.get("currency") or None,
        raw=trade,
    )


def verify_trade_signature(
    trade: Mapping[str, str], top: Mapping[str, str], *, keys: AlipayPublicKeys, sign_type: SignType
) -> None:
    """``<sign>`` over the sorted ``k=v`` of the ``<trade>`` leaves, with the request's (the merchant's) sign type."""
    declared = top.get("sign_type")
    if declared is not None and declared != sign_type.value:
        raise SignTypeMismatch(f"sign_type {declared[:16]!r} but the merchant uses {sign_type.value}")
    sign = top.get("sign")
    if not sign:
        raise MissingSignature("single_trade_query reply carries no sign")
    content = signed_content(trade, ()).encode(CHARSET)
    verify_signature(keys, content, decode_signature(sign), sign_type)


def parse_forex_refund(data: bytes, out_return_no: str) -> RefundReply:
    """The synchronous ``forex_refund`` XML reply (``is_sync=Y``), unsigned (see the module docstring).

    ``T``: refunded. ``F``: a refusal (``RefundRefusal``), a transient failure (``RetryableReply``), or an error
    that says nothing about the money (``ErrorReply``: the refund stays pending). Alipay does not report its
    running total here.
    """
    root = parse_xml(data)
    if root.tag != "alipay":
        raise MalformedMessage(f"expected <alipay>, got <{root.tag}>")
    top = _leaf_texts(root)
    is_success = top.get("is_success")
    if is_success == "T":
        return RefundReply(out_request_no=out_return_no, refund_fee=None, fund_change=True, raw=top)
    if is_success != "F":
        raise MalformedMessage(f"is_success is {is_success!r}, not T or F")
    error = top.get("error") or "UNKNOWN"
    if error in _MAPI_RETRYABLE_ERRORS:
        raise RetryableReply(f"forex_refund error {error}")
    if error in MAPI_REFUND_REFUSALS:
        raise RefundRefusal(error)
    # Signature, partner or argument errors, REPEATED_REFUNDMENT_REQUEST, anything unknown: not a refusal we could
    # record as failed (the money may have moved), not a success either.
    raise ErrorReply(error)


# --- XML -------------------------------------------------------------------------------------------------------


def decode_xml(data: bytes) -> str:
    """The reply's text, decoded by the encoding its XML declaration names (UTF-8 without one), declaration removed.

    Alipay declares ``encoding="GBK"`` on some legacy replies (``forex_refund``'s success, for one), and expat
    parses no multi-byte encoding but UTF-8 (it raises a bare ``ValueError``). So the bytes are decoded here, with
    the charsets Alipay uses (``forms.codec_for``), and expat gets UTF-8 with no declaration left to contradict it.
    """
    match = _XML_DECLARATION.match(data)
    encoding = _XML_ENCODING.search(match.group()) if match else None
    declared = encoding.group(1).decode("ascii") if encoding else CHARSET
    try:
        codec = codec_for(declared)
    except CharsetError as exc:
        raise CharsetError(f"XML reply declares encoding {declared[:32]!r}, not one Alipay uses") from exc
    body = data[match.end() :] if match else data.removeprefix(_UTF8_BOM)
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        raise CharsetError(f"XML reply does not decode as its declared {declared[:32]!r}") from exc


def parse_xml(data: bytes) -> ElementTree.Element:
    """Parse a small XML reply with expat, refusing any DTD; decoded first by its declared encoding (``decode_xml``).

    Alipay's replies never carry a DTD. Refusing one up front means no entity can be declared, so neither
    entity expansion ("billion laughs") nor external entities can occur; only XML's five predefined entities
    and character references remain. The size is bounded before parsing (``MAX_REPLY_BYTES``). Whatever fails is a
    ``VerificationError`` (``malformed`` or ``charset``), never a bare error.
    """
    if len(data) > MAX_REPLY_BYTES:
        raise MalformedMessage(f"XML reply larger than {MAX_REPLY_BYTES} bytes")
    text = decode_xml(data)
    builder = ElementTree.TreeBuilder()
    # The encoding given here overrides any the document declares: the text is UTF-8 now, whatever it said.
    parser = expat.ParserCreate(encoding="UTF-8")

    def refuse_dtd(*_: object) -> None:
        raise MalformedMessage("XML reply declares a DTD; Alipay's replies have none")

    def start(tag: str, attrs: Any) -> None:
        builder.start(tag, dict(attrs))

    def end(tag: str) -> None:
        builder.end(tag)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(text.encode("utf-8"), True)
    except (expat.ExpatError, ValueError) as exc:
        raise MalformedMessage(f"gateway reply is not well-formed XML: {exc}") from exc
    return builder.close()


def _leaf_texts(element: ElementTree.Element) -> dict[str, str]:
    """Text of each childless child element; a name twice is refused (which one would be meant?)."""
    out: dict[str, str] = {}
    for child in element:
        if len(child):
            continue
        if child.tag in out:
            raise MalformedMessage(f"duplicate <{child.tag}> in gateway reply")
        out[child.tag] = (child.text or "").strip()
    return out


def _only_child(element: ElementTree.Element, tag: str) -> ElementTree.Element:
    found = element.findall(tag)
    if len(found) != 1:
        raise MalformedMessage(f"expected exactly one <{tag}> in gateway reply, found {len(found)}")
    return found[0]
