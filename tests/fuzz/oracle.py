"""Reference implementations of the documented rules, written apart from ``chalicelib`` so they can judge it.

Nothing here imports the code under test's parsers: the form rules come from ``forms.py``'s docstring and
Alipay's spec (strict ``k=v`` parts, ``%XX`` and ``+``, no NUL, no duplicate or odd names), the notification
content from Alipay's signing rule (drop ``sign``/``sign_type`` and empty values, sort, ``k=v`` with ``&``), and
the JSON member span from a character scanner rather than a JSON decoder.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote_plus, unquote, unquote_to_bytes

_KEY = re.compile(rb"[A-Za-z0-9_.\-]{1,64}")
_BAD_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_ASCII_WHITESPACE = b" \t\n\r\x0b\x0c"
# The charsets Alipay sends, and the Python codec each is read with.
CODECS = {"utf-8": "utf-8", "utf8": "utf-8", "gbk": "gbk", "gb2312": "gbk", "gb18030": "gb18030"}
FORM = "application/x-www-form-urlencoded"
UNSIGNED = ("sign", "sign_type")
TRADE_STATUSES = frozenset({"WAIT_BUYER_PAY", "TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED"})
_AMOUNT = re.compile(r"[0-9]{1,9}(\.[0-9]{1,2})?")


def percent_decode(raw: bytes) -> bytes | None:
    """``%XX`` to a byte and ``+`` to a space; None when a ``%`` is not followed by two hex digits."""
    if _BAD_ESCAPE.search(raw):
        return None
    return unquote_to_bytes(raw.replace(b"+", b" "))


def parse_form(body: bytes) -> list[tuple[str, bytes]] | None:
    """The fields of a strict form body in order (empty parts tolerated); None if it is not one."""
    if not body.strip(_ASCII_WHITESPACE) or b"\x00" in body:
        return None
    pairs: list[tuple[str, bytes]] = []
    for part in body.split(b"&"):
        if not part:
            continue
        name, eq, raw = part.partition(b"=")
        if not eq or _KEY.fullmatch(name) is None:
            return None
        value = percent_decode(raw) if b"%" in raw or b"+" in raw else raw
        if value is None or b"\x00" in value:
            return None
        pairs.append((name.decode("ascii"), value))
    names = [name for name, _ in pairs]
    if not pairs or len(set(names)) != len(names):
        return None
    return pairs


def header_charset(content_type: str | None) -> tuple[bool, str | None]:
    """(whether the media type is the form type, the header's codec when its first charset is known)."""
    media_type, *parameters = (content_type or "").split(";")
    if media_type.strip().lower() != FORM:
        return False, None
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset":
            return True, CODECS.get(value.strip().strip('"').strip().lower())
    return True, None


_INJECTED = re.compile(r"&[A-Za-z0-9_.\-]{1,64}=")


def canonical(fields: Mapping[str, str], *, drop_blank: bool = False, keep_empty: bool = False) -> str:
    """Alipay's notification content: no sign/sign_type, no empty (or blank) values, sorted, ``k=v`` with ``&``."""
    kept = {
        k: v
        for k, v in fields.items()
        if k not in UNSIGNED and (keep_empty or v != "") and not (drop_blank and not v.strip())
    }
    return "&".join(f"{k}={kept[k]}" for k in sorted(kept))


def content_readings(fields: Mapping[str, str]) -> list[tuple[str, dict[str, str]]]:
    """Every content the verifier may accept a signature over, in the order it tries them, with the fields each
    covers (plus sign and sign_type): the strict one, and (only when some value is blank) the one keeping empty
    values as ``k=`` and the one dropping whitespace-only values. Only covered fields are handed on."""

    def covered(keep_empty: bool = False, drop_blank: bool = False) -> dict[str, str]:
        return {
            k: v
            for k, v in fields.items()
            if k in UNSIGNED or ((keep_empty or v != "") and not (drop_blank and not v.strip()))
        }

    readings = [(canonical(fields), covered())]
    if any(not v.strip() for k, v in fields.items() if k not in UNSIGNED):
        readings += [
            (canonical(fields, keep_empty=True), covered(keep_empty=True)),
            (canonical(fields, drop_blank=True), covered(drop_blank=True)),
        ]
    return readings


def strict_b64(sign: str) -> bytes | None:
    try:
        raw = binascii.a2b_base64(sign.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError):
        return None
    return raw or None


def amount_ok(value: str, minimum: Decimal) -> bool:
    text = value.strip()
    if not _AMOUNT.fullmatch(text):
        return False
    return minimum <= Decimal(text) <= Decimal(100000000)


@dataclass(frozen=True)
class Merchant:
    """What the webhook under test is configured with, and the one genuine message it may accept."""

    protocol: str  # "openapi" or "mapi"
    sign_type: str
    max_bytes: int
    app_id: str | None
    seller_id: str | None
    partner: str | None

    @property
    def charset_field(self) -> str:
        return "charset" if self.protocol == "openapi" else "_input_charset"

    @property
    def default_codec(self) -> str:
        return "gbk" if self.protocol == "openapi" else "utf-8"

    @property
    def amount_field(self) -> str:
        return "total_amount" if self.protocol == "openapi" else "total_fee"


@dataclass(frozen=True)
class Genuine:
    """A message Alipay signed: its signed content bytes and signature bytes."""

    content: bytes
    signature: bytes


@dataclass(frozen=True)
class Verdict:
    """What the webhook must answer; ``fields`` are what it must queue when it accepts."""

    status: int
    why: str
    fields: dict[str, str] | None = None

    @property
    def accepted(self) -> bool:
        return self.status == 200


def notification_verdict(
    body: bytes, content_type: str | None, merchant: Merchant, genuine: Sequence[Genuine]
) -> Verdict:
    """The webhook's answer by the documented rules, in their documented order."""
    is_form, fallback = header_charset(content_type)
    if not is_form:
        return Verdict(415, "content type")
    if len(body) > merchant.max_bytes:
        return Verdict(413, "too large")
    signed = signed_form_fields(body, fallback, merchant, genuine)
    if isinstance(signed, Verdict):
        return signed
    fields = signed
    for key in ("trade_status", "notify_id", "out_trade_no", merchant.amount_field):
        if not fields.get(key):
            return Verdict(400, f"missing {key}")
    if fields["trade_status"] not in TRADE_STATUSES:
        return Verdict(400, "trade_status")
    if not amount_ok(fields[merchant.amount_field], Decimal("0.01")):
        return Verdict(400, "amount")
    if fields.get("refund_fee") and not amount_ok(fields["refund_fee"], Decimal(0)):
        return Verdict(400, "refund_fee")
    if merchant.protocol == "openapi" and merchant.app_id and (fields.get("app_id") or None) != merchant.app_id:
        return Verdict(400, "app_id")
    # A legacy notification is compared on the addressee fields it carries (genuine ones carry none; notify_verify
    # binds them to the partner); an Open Platform one always names its seller.
    seller = merchant.seller_id or (merchant.partner if merchant.protocol == "mapi" else None)
    named = fields.get("seller_id") or None
    if seller and (merchant.protocol == "openapi" or named is not None) and named != seller:
        return Verdict(400, "seller_id")
    if merchant.partner and fields.get("partner", merchant.partner) != merchant.partner:
        return Verdict(400, "partner")
    return Verdict(200, "genuine", fields)


def signed_form_fields(
    body: bytes, fallback: str | None, merchant: Merchant, genuine: Sequence[Genuine]
) -> dict[str, str] | Verdict:
    """The fields a genuine signature covers in a form body (``fallback``: the header's codec), or the refusal:
    strict form, declared charset (else ``fallback``, else the protocol's default), the merchant's sign type,
    strict base64, Alipay's content under one of its readings, no ambiguous ``&name=`` in a signed value."""
    pairs = parse_form(body)
    if pairs is None:
        return Verdict(400, "not a strict form body")
    raw = dict(pairs)
    declared = raw.get(merchant.charset_field)
    if declared:
        try:
            charset: str | None = declared.decode("ascii")
        except UnicodeDecodeError:
            return Verdict(400, "charset not ascii")
        codec = CODECS.get((charset or "").strip().lower())
    else:
        codec = fallback or merchant.default_codec
    if codec is None:
        return Verdict(400, "unknown charset")
    try:
        fields = {k: v.decode(codec) for k, v in pairs}
    except UnicodeDecodeError:
        return Verdict(400, f"not {codec}")
    if "sign_type" in fields and fields["sign_type"] != merchant.sign_type:
        return Verdict(400, "sign_type")
    signature = strict_b64(fields.get("sign", ""))
    if signature is None:
        return Verdict(400, "sign missing or not base64")
    signed = next(
        (
            cover
            for content, cover in content_readings(fields)
            if any(g.signature == signature and g.content == content.encode(codec) for g in genuine)
        ),
        None,
    )
    if signed is None:
        return Verdict(400, "signature")
    # Only what the signature covers is read and handed on. Alipay's content joins k=v unescaped: a value holding
    # "&name=" is refused as ambiguous (a decoded '&' can only have come from %26).
    if b"%26" in body and any(_INJECTED.search(v) for v in signed.values()):
        return Verdict(400, "ambiguous")
    return signed



# --- web returns (GET /alipay/return) ------------------------------------------------------------------------

RETURN_MAX_BYTES = 8192
RETURN_METHODS = frozenset({"alipay.trade.page.pay.return", "alipay.trade.wap.pay.return"})


@dataclass(frozen=True)
class KnownOrder:
    """An order the merchant holds: what a return for it must carry."""

    amount: Decimal
    currency: str


def rebuilt_query(params: Mapping[str, Sequence[str]], merchant: Merchant) -> bytes | Verdict:
    """The query the return is judged on: API Gateway hands over decoded values only, so they are encoded again
    (``k=quote_plus(v)``, every value of a repeated name kept) in the charset the query declares (its first value),
    else the protocol's default; an unknown charset, or a name or value that does not encode, is a refusal."""
    declared = params.get(merchant.charset_field) or ()
    charset = declared[0] if declared and declared[0] else None
    codec = CODECS.get(charset.strip().lower()) if charset is not None else merchant.default_codec
    if codec is None:
        return Verdict(400, "unknown charset")
    try:
        return b"&".join(
            name.encode("ascii") + b"=" + quote_plus(value, safe="", encoding=codec, errors="strict").encode("ascii")
            for name, values in params.items()
            for value in values
        )
    except UnicodeEncodeError:
        return Verdict(400, f"not {codec}")


def return_verdict(
    params: Mapping[str, Sequence[str]],
    merchant: Merchant,
    genuine: Sequence[Genuine],
    orders: Mapping[str, KnownOrder],
) -> Verdict:
    """The return page's answer by the documented rules: 400 (the error page) unless the query verifies like a
    notification, is a page/wap pay return (legacy: ``is_success``, if sent, is ``T``) with a known ``trade_status``
    if any, and is for a known order of this merchant with the order's amount (legacy: and currency, when named)."""
    body = rebuilt_query(params, merchant)
    if isinstance(body, Verdict):
        return body
    if len(body) > RETURN_MAX_BYTES:
        return Verdict(400, "too large")
    signed = signed_form_fields(body, None, merchant, genuine)
    if isinstance(signed, Verdict):
        return signed
    fields = signed
    if merchant.protocol == "openapi" and fields.get("method", "") not in RETURN_METHODS:
        return Verdict(400, "method")
    if merchant.protocol == "mapi" and fields.get("is_success", "T") != "T":
        return Verdict(400, "is_success")
    if fields.get("trade_status") and fields["trade_status"] not in TRADE_STATUSES:
        return Verdict(400, "trade_status")
    amount_field = merchant.amount_field
    if merchant.protocol == "mapi" and not fields.get(amount_field) and fields.get("rmb_fee"):
        amount_field = "rmb_fee"
    if not fields.get(amount_field):
        return Verdict(400, f"missing {amount_field}")
    if not amount_ok(fields[amount_field], Decimal("0.01")):
        return Verdict(400, "amount")
    if not fields.get("out_trade_no"):
        return Verdict(400, "missing out_trade_no")
    order = orders.get(fields["out_trade_no"])
    if order is None:
        return Verdict(400, "unknown order")
    if merchant.protocol == "openapi" and merchant.app_id and (fields.get("app_id") or None) != merchant.app_id:
        return Verdict(400, "app_id")
    # An Open Platform return always names the seller; a legacy one may not, but must not name another (as for
    # notifications, a legacy merchant's seller is its partner unless configured).
    seller = merchant.seller_id or (merchant.partner if merchant.protocol == "mapi" else None)
    named = merchant.protocol == "openapi" or bool(fields.get("seller_id"))
    if seller and named and (fields.get("seller_id") or None) != seller:
        return Verdict(400, "seller_id")
    if merchant.partner and fields.get("partner", merchant.partner) != merchant.partner:
        return Verdict(400, "partner")
    if Decimal(fields[amount_field].strip()) != order.amount:
        return Verdict(400, "amount mismatch")
    if merchant.protocol == "mapi" and fields.get("currency") and fields["currency"] != order.currency:
        return Verdict(400, "currency mismatch")
    return Verdict(200, "genuine", fields)

# --- JSON results ------------------------------------------------------------------------------------------

_JSON_WS = " \t\n\r"


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def strict_json(text: str) -> Any:
    """``json.loads`` refusing duplicate keys at any depth; raises ValueError (or RecursionError)."""
    return json.loads(text, object_pairs_hook=_no_duplicates)


def member_texts(text: str) -> dict[str, str]:
    """The raw text of each top-level member value of a *valid* JSON object, by scanning characters."""
    out: dict[str, str] = {}
    depth = 0
    i = 0
    key: str | None = None
    expect_key = False
    start: int | None = None
    while i < len(text):
        char = text[i]
        if char == '"':
            j = i + 1
            while text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if depth == 1 and expect_key:
                key = json.loads(text[i : j + 1])
                expect_key = False
            i = j + 1
            continue
        if char in "{[":
            depth += 1
            expect_key = depth == 1
        elif char in "}]":
            if depth == 1 and start is not None and key is not None:
                out[key] = text[start:i].strip(_JSON_WS)
                start = None
            depth -= 1
        elif depth == 1 and char == ":":
            start = i + 1
        elif depth == 1 and char == ",":
            if start is not None and key is not None:
                out[key] = text[start:i].strip(_JSON_WS)
            start = None
            expect_key = True
        i += 1
    return out


def app_pay_result_accepted(text: str, response_name: str, genuine: Genuine) -> bool:
    """Whether a JSON result carries exactly the genuine signed member and its signature (RSA2, no cert SN)."""
    try:
        document = strict_json(text)
    except (ValueError, RecursionError):
        return False
    if not isinstance(document, dict) or response_name not in document:
        return False
    if not isinstance(document[response_name], dict):
        return False
    sign, sign_type, cert_sn = (document.get(k, "") for k in ("sign", "sign_type", "alipay_cert_sn"))
    if not all(isinstance(v, str) for v in (sign, sign_type, cert_sn)):
        return False
    if "sign_type" in document and sign_type != "RSA2":
        return False
    if cert_sn:
        return False
    try:
        content = member_texts(text)[response_name].encode("utf-8")
    except UnicodeEncodeError:
        return False
    return content == genuine.content and strict_b64(sign) == genuine.signature


# --- legacy k="v" results ----------------------------------------------------------------------------------

_PAIR = re.compile(r'([A-Za-z0-9_]+)="')
_NEXT = re.compile(r'&[A-Za-z0-9_]+="')


def quoted_pairs(text: str) -> dict[str, str] | None:
    """``k="v"&k2="v2"``: a value ends at the first ``"`` followed by ``&k="`` or by the end (or, as Python's
    ``$`` allows, by one final newline); None if the text is not such pairs or repeats a key."""
    out: dict[str, str] = {}
    pos = 0
    while pos < len(text):
        head = _PAIR.match(text, pos)
        if head is None:
            return None
        end = head.end()
        while True:
            end = text.find('"', end)
            if end < 0:
                return None
            after = text[end + 1 :]
            if after in ("", "\n") or _NEXT.match(text, end + 1):
                break
            end += 1
        if head.group(1) in out:
            return None
        out[head.group(1)] = text[head.end() : end]
        pos = end + 2
    return out or None


def securitypay_result_accepted(text: str, genuine: Genuine) -> bool:
    """Whether a legacy result is the genuine signed text plus exactly ``sign_type="RSA"`` and its ``sign``."""
    index = text.find("&sign_type=")
    if index < 0:
        return False
    content, trailer = text[:index], quoted_pairs(text[index + 1 :])
    if trailer is None or set(trailer) - set(UNSIGNED) or trailer.get("sign_type") != "RSA":
        return False
    if quoted_pairs(content) is None:
        return False
    sign = trailer.get("sign", "")
    try:
        encoded = content.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return encoded == genuine.content and strict_b64(unquote(sign) if "%" in sign else sign) == genuine.signature


def nesting_depth(text: str) -> int:
    """The deepest bracket nesting outside strings (for triaging RecursionError)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# --- Antom notifications (POST /antom/notify) -----------------------------------------------------------------
# From docs/protocols.md §7.1-7.5: JSON signed with SHA256withRSA over "POST <notify path>\n<client-id>.<time>.<body>",
# the signature in a "signature: algorithm=RSA256,keyVersion=1,signature=<URL-encoded base64>" header.

JSON_MEDIA_TYPE = "application/json"
ANTOM_SIGNED_HEADERS = ("client-id", "request-time", "signature")
ANTOM_HEADER_LIMIT = 2048
ANTOM_PAYMENT_TYPES = frozenset({"PAYMENT_RESULT", "PAYMENT_PENDING"})
# The places of the currencies the fuzzing draws (ISO 4217); any other currency is not judged on its amount.
ANTOM_PLACES = {"USD": 2, "HKD": 2, "CNY": 2, "EUR": 2, "JPY": 0, "KRW": 0}
_ANTOM_VALUE = re.compile(r"[1-9][0-9]{0,15}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class AntomMerchant:
    """What an Antom stage's webhook is configured with."""

    client_id: str
    path: str  # the path of the notify URL registered with Antom: the one it signs
    max_bytes: int


def antom_signature(value: str) -> bytes | str:
    """The signature bytes a ``signature`` header carries, or why it carries none: pairs split at commas (spaces
    around them allowed), no name twice, ``algorithm`` exactly ``RSA256``, ``signature=`` percent-decoded ('+' stays
    '+') and strict base64, not empty."""
    pairs: dict[str, str] = {}
    for part in value.split(","):
        name, eq, text = part.strip().partition("=")
        if not eq or not name or name in pairs:
            return "malformed_signature"
        pairs[name] = text.strip()
    if not pairs.get("algorithm"):
        return "malformed_signature"
    if pairs["algorithm"] != "RSA256":
        return "algorithm"
    try:
        raw = binascii.a2b_base64(unquote_to_bytes(pairs.get("signature", "")), strict_mode=True)
    except binascii.Error:
        return "malformed_signature"
    return raw or "malformed_signature"


def antom_flatten(data: Any, name: str = "") -> dict[str, str]:
    """Every leaf of a (shallow) JSON document as ``dotted.name`` -> text: strings as they are, numbers, booleans and
    nested values as JSON, nulls left out, list items by their index."""
    out: dict[str, str] = {}
    if isinstance(data, dict):
        for key, item in data.items():
            out |= antom_flatten(item, f"{name}.{key}" if name else key)
    elif isinstance(data, list):
        for index, item in enumerate(data):
            out |= antom_flatten(item, f"{name}.{index}")
    elif isinstance(data, str):
        out[name] = data
    elif data is not None:
        out[name] = json.dumps(data)
    return out


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def antom_document(body: bytes) -> dict[str, Any] | None:
    """The body as one strict JSON object (UTF-8, no name twice, no NaN or Infinity), or None."""
    try:
        data = json.loads(body.decode("utf-8"), object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _antom_text(data: Any, key: str, limit: int = 128) -> str | None:
    """A required text field: a non-empty string of at most ``limit`` characters, no control characters."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, str) or not value or len(value) > limit or _CONTROL.search(value):
        return None
    return value


@dataclass(frozen=True)
class AntomReading:
    """What a readable Antom notification says (docs/protocols.md §7.3): its kind, order, id and amount."""

    kind: str
    out_trade_no: str
    notify_id: str
    value: int  # minor units
    currency: str


# Optional text fields, and their bounds: absent, null or "" is fine, anything else must be text within them.
_ANTOM_OPTIONAL: dict[str, dict[tuple[str | None, str], int]] = {
    "payment": {(None, "paymentTime"): 64},
    "refund": {(None, "paymentRequestId"): 128, (None, "metadata"): 128, (None, "paymentId"): 128,
               (None, "refundId"): 128, (None, "refundTime"): 64},
}  # fmt: skip


def antom_reading(document: dict[str, Any]) -> AntomReading | str | None:
    """How a notification must be read: an ``AntomReading``, or why it must be refused, or None when these rules
    do not settle it (an optional field out of bounds, a currency the fuzzing does not judge)."""
    notify_type = document.get("notifyType")
    result = document.get("result")
    status = _antom_text(result, "resultStatus", 1)
    if not isinstance(result, dict) or status not in ("S", "F", "U") or _antom_text(result, "resultCode", 64) is None:
        return "result"
    if notify_type in ANTOM_PAYMENT_TYPES:
        money, number, payment_id = document.get("paymentAmount"), "paymentRequestId", "paymentId"
        ids = (_antom_text(document, number), _antom_text(document, payment_id))
        kind = "payment"
    elif notify_type == "REFUND_RESULT" or (notify_type in (None, "") and "refundRequestId" in document):
        money, kind = document.get("refundAmount"), "refund"
        refund_status = _antom_text(document, "refundStatus", 16)
        if refund_status not in ("SUCCESS", "FAIL"):
            return "refundStatus"
        ids = (_antom_text(document, "refundRequestId"), refund_status)
    else:
        return "notifyType"
    if None in ids:
        return "ids"
    currency, value = _antom_text(money, "currency", 3), _antom_text(money, "value", 32)
    if currency is None or not re.fullmatch(r"[A-Z]{3}", currency):
        return "currency"
    if value is None or not _ANTOM_VALUE.fullmatch(value):
        return "amount"
    optional = _ANTOM_OPTIONAL[kind] | {("result", "resultMessage"): 1024}
    for (parent, key), limit in optional.items():
        holder = document if parent is None else document.get(parent)
        item = holder.get(key) if isinstance(holder, dict) else None
        if item not in (None, "") and _antom_text(holder, key, limit) is None:
            return f"optional {key}"
    if currency not in ANTOM_PLACES:
        return None
    first, second = ids
    if kind == "payment":
        return AntomReading(kind, str(first), f"{notify_type}:{second}:{status}", int(value), currency)
    order = document.get("paymentRequestId") or document.get("metadata") or ""
    return AntomReading(kind, str(order), f"REFUND_RESULT:{first}:{second}", int(value), currency)


def antom_verdict(
    body: bytes,
    content_type: str | None,
    headers: Mapping[str, str],
    merchant: AntomMerchant,
    genuine: Sequence[Genuine],
    header_limit: int | None = ANTOM_HEADER_LIMIT,
) -> Verdict:
    """The Antom webhook's answer by the documented rules, in their documented order: the media type, the size,
    the three headers (names without regard to case, surrounding whitespace not part of a value), the client id,
    the signature header, a genuine signature over this exact content, then a readable notification.

    ``header_limit``: how much of each signed header the webhook reads (None: all of it, as ``verify_message``)."""
    if (content_type or "").split(";")[0].strip().lower() != JSON_MEDIA_TYPE:
        return Verdict(415, "content type")
    if len(body) > merchant.max_bytes:
        return Verdict(413, "too large")
    lowered = {name.lower(): value for name, value in headers.items()}
    # Each signed header is read from its first 2,048 characters, which are what is kept for the queue's consumer.
    values = {name: lowered.get(name, "")[:header_limit].strip() for name in ANTOM_SIGNED_HEADERS}
    missing = [name for name in ANTOM_SIGNED_HEADERS if not values[name]]
    if missing:
        return Verdict(400, f"missing {missing[0]}")
    if values["client-id"] != merchant.client_id:
        return Verdict(400, "client_id")
    signature = antom_signature(values["signature"])
    if isinstance(signature, str):
        return Verdict(400, signature)
    content = f"POST {merchant.path}\n{values['client-id']}.{values['request-time']}.".encode() + body
    if not any(g.content == content and g.signature == signature for g in genuine):
        return Verdict(400, "signature")
    document = antom_document(body)
    if document is None:
        return Verdict(400, "not a JSON object")
    reading = antom_reading(document)
    if isinstance(reading, str):
        return Verdict(400, reading)
    return Verdict(200, "genuine", antom_flatten(document))
