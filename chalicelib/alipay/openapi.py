"""Alipay Open Platform (``app_id``, RSA2): order strings, gateway requests and signed responses."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from . import params as p
from .errors import (
    CharsetError,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    NotSuccessful,
    OrderError,
    OrderMismatch,
    SignatureMismatch,
    SignTypeMismatch,
)
from .forms import form_quote, joined_content, signed_content
from .records import LazyRecord
from .signing import (
    AlipayPublicKeys,
    Signer,
    SignType,
    b64encode,
    decode_signature,
    verify_signature,
)

if TYPE_CHECKING:
    import json
    from datetime import datetime, tzinfo
    from decimal import Decimal
    from json import JSONEncoder

# json, datetime, decimal and urllib.parse are imported where used: together they would add ~11 ms to every cold start
# of a function (the webhook) that never needs them.

APP_PAY_METHOD = "alipay.trade.app.pay"
APP_PAY_PRODUCT_CODE = "QUICK_MSECURITY_PAY"
APP_PAY_RESPONSE = "alipay_trade_app_pay_response"
ERROR_RESPONSE = "error_response"
SUCCESS_CODE = "10000"
BEIJING_UTC_OFFSET_HOURS = 8

# The request's signed content includes sign_type (unlike notifications, which exclude it).
_REQUEST_UNSIGNED = ("sign",)


def beijing_timestamp(now: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Beijing time (UTC+8) for an aware ``now``; Lambda's clock is UTC."""
    if now.tzinfo is None or now.utcoffset() is None:
        raise OrderError("timestamp", "needs a timezone-aware datetime")
    # The ISO form to the second, cut before the offset: a third of strftime's cost.
    return now.astimezone(_beijing()).isoformat(" ", "seconds")[:19]


@cache
def _beijing() -> tzinfo:
    """Beijing's fixed offset, built once (per order it cost as much as the rest of the timestamp)."""
    from datetime import timedelta, timezone

    return timezone(timedelta(hours=BEIJING_UTC_OFFSET_HOURS), "Asia/Shanghai")


def dump_biz_content(biz: Mapping[str, Any]) -> str:
    """The exact JSON text sent (and signed) as ``biz_content``: compact, UTF-8 kept as is."""
    return _compact_json().encode(biz)


@cache
def _compact_json() -> JSONEncoder:
    """``json.dumps(..., ensure_ascii=False, separators=(",", ":"))``'s encoder, built once: dumps with any argument
    builds a new one per call, a third of the cost of a biz_content."""
    from json import JSONEncoder

    return JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def app_pay_biz_content(
    *,
    out_trade_no: str,
    subject: str,
    total_amount: str | Decimal,
    body: str | None = None,
    timeout_express: str | None = None,
    passback_params: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validated ``biz_content`` of ``alipay.trade.app.pay``; ``extra`` carries contract-specific keys."""
    return pay_biz_content(
        APP_PAY_PRODUCT_CODE,
        out_trade_no=out_trade_no,
        subject=subject,
        total_amount=total_amount,
        body=body,
        timeout_express=timeout_express,
        passback_params=passback_params,
        extra=extra,
    )


def pay_biz_content(
    product_code: str,
    *,
    out_trade_no: str,
    subject: str,
    total_amount: str | Decimal,
    body: str | None = None,
    timeout_express: str | None = None,
    passback_params: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Validated ``biz_content`` of a payment request (app, page or wap pay): the same fields and rules."""
    biz: dict[str, Any] = {
        "out_trade_no": p.check_out_trade_no(out_trade_no),
        "total_amount": p.format_amount(total_amount),
        "subject": p.check_text("subject", subject, 256),
        "product_code": product_code,
    }
    if body:
        biz["body"] = p.check_text("body", body, 128)
    if timeout_express:
        biz["timeout_express"] = p.check_timeout(timeout_express)
    if passback_params:
        biz["passback_params"] = p.check_text("passback_params", passback_params, 512)
    for key, value in (extra or {}).items():
        if key in biz:
            raise OrderError(key, "is set by the builder and cannot be overridden")
        biz[key] = value
    return biz


def request_params(
    *,
    app_id: str,
    method: str,
    biz_content: str,
    timestamp: str,
    sign_type: SignType,
    notify_url: str | None = None,
    charset: str = "utf-8",
    app_cert_sn: str | None = None,
    alipay_root_cert_sn: str | None = None,
    extra: Mapping[str, str] | None = None,
    return_url: str | None = None,
    response_format: str | None = "JSON",
) -> dict[str, str]:
    """The common request parameters of every Open Platform call, in a stable order.

    ``response_format`` is the optional ``format`` parameter (the format of a JSON reply); None leaves it out.
    """
    if not app_id:
        raise OrderError("app_id", "is required")
    out = {"app_id": app_id, "method": method}
    if response_format:
        out["format"] = response_format
    out.update(
        {
            "charset": charset,
            # _value_, the member's documented value attribute: .value is a property lookup, and the call is skipped
            # for a member; the two cost as much as the rest of these parameters.
            "sign_type": (sign_type if type(sign_type) is SignType else SignType(sign_type))._value_,
            "timestamp": timestamp,
            "version": "1.0",
        }
    )
    if notify_url:
        out["notify_url"] = notify_url
    if return_url:
        out["return_url"] = return_url
    if app_cert_sn:
        out["app_cert_sn"] = app_cert_sn
    if alipay_root_cert_sn:
        out["alipay_root_cert_sn"] = alipay_root_cert_sn
    out.update(extra or {})
    out["biz_content"] = biz_content
    return out


def request_signed_content(params: Mapping[str, str]) -> str:
    """Signed content of a request: every non-empty parameter but ``sign``, ``sign_type`` included, sorted."""
    if "sign" in params or "" in params.values():
        return signed_content(params, _REQUEST_UNSIGNED)
    return joined_content(params)  # nothing to leave out (nearly always: the sign is added after): no copy


def sign_request(params: Mapping[str, str], signer: Signer) -> str:
    """Sign request parameters; return the base64 ``sign``. The signer's algorithm must match ``sign_type``."""
    if params.get("sign_type") != signer.sign_type:  # a StrEnum: compared as its text
        raise OrderError("sign_type", f"is {params.get('sign_type')!r} but the signer signs {signer.sign_type}")
    charset = params.get("charset") or "utf-8"
    return b64encode(signer.sign(request_signed_content(params).encode(charset)))


def encode_params(params: Mapping[str, str], sign: str) -> str:
    """``k=urlencode(v)`` for every non-empty parameter, in the given order, then ``sign``; spaces as ``+``."""
    charset = params.get("charset") or "utf-8"
    parts = [f"{k}={form_quote(v, charset)}" for k, v in params.items() if v != ""]
    parts.append(f"sign={form_quote(sign)}")
    return "&".join(parts)


def build_app_pay_order_string(
    signer: Signer,
    *,
    app_id: str,
    notify_url: str,
    now: datetime,
    out_trade_no: str,
    subject: str,
    total_amount: str | Decimal,
    body: str | None = None,
    timeout_express: str | None = None,
    passback_params: str | None = None,
    extra_biz: Mapping[str, Any] | None = None,
    app_cert_sn: str | None = None,
    alipay_root_cert_sn: str | None = None,
) -> str:
    """The signed ``orderInfo`` string an app passes to the SDK's ``payOrder``."""
    biz = pay_biz_content(  # app_pay_biz_content's one call, without its layer of keyword arguments
        APP_PAY_PRODUCT_CODE,
        out_trade_no=out_trade_no,
        subject=subject,
        total_amount=total_amount,
        body=body,
        timeout_express=timeout_express,
        passback_params=passback_params,
        extra=extra_biz,
    )
    params, sign = signed_pay_request(
        signer,
        app_id=app_id,
        method=APP_PAY_METHOD,
        biz=biz,
        now=now,
        notify_url=notify_url,
        app_cert_sn=app_cert_sn,
        alipay_root_cert_sn=alipay_root_cert_sn,
    )
    return encode_params(params, sign)


def signed_pay_request(
    signer: Signer,
    *,
    app_id: str,
    method: str,
    biz: Mapping[str, Any],
    now: datetime,
    notify_url: str,
    return_url: str | None = None,
    app_cert_sn: str | None = None,
    alipay_root_cert_sn: str | None = None,
    response_format: str | None = "JSON",
) -> tuple[dict[str, str], str]:
    """A payment request's parameters (``biz`` dumped as sent) and their ``sign``: what app, page and wap pay share."""
    params = request_params(
        app_id=app_id,
        method=method,
        biz_content=dump_biz_content(biz),
        timestamp=beijing_timestamp(now),
        sign_type=signer.sign_type,
        notify_url=notify_url,
        app_cert_sn=app_cert_sn,
        alipay_root_cert_sn=alipay_root_cert_sn,
        return_url=return_url,
        response_format=response_format,
    )
    return params, sign_request(params, signer)


# --- signed JSON responses (the SDK's synchronous result and every gateway reply) ---------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise MalformedMessage(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _decode(text: str) -> Any:
    """Decode JSON strictly; anything the decoder refuses (or recurses too deep on) is ``MalformedMessage``."""
    try:
        return _decoder().decode(text)
    except ValueError as exc:
        if isinstance(exc, MalformedMessage):
            raise
        raise MalformedMessage(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise MalformedMessage("JSON nested too deeply") from exc


@cache
def _decoder() -> json.JSONDecoder:
    import json

    return json.JSONDecoder(object_pairs_hook=_reject_duplicates)


_WS = " \t\n\r"


def top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Raw ``(start, end)`` span of every top-level member value of a JSON object.

    Each value's end comes from the JSON decoder itself, so quotes, escapes and braces inside strings are
    handled exactly; the signed content is then the untouched substring (never re-serialized JSON).
    """
    import json

    decoder = _decoder()
    spans: dict[str, tuple[int, int]] = {}
    n = len(text)
    i = 0
    while i < n and text[i] in _WS:
        i += 1
    if i >= n or text[i] != "{":
        raise MalformedMessage("response is not a JSON object")
    i += 1
    try:
        while True:
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] == "}" and not spans:
                i += 1
                break
            if i >= n or text[i] != '"':
                raise MalformedMessage("expected a JSON member name")
            key, i = json.decoder.scanstring(text, i + 1)  # type: ignore[attr-defined]
            while i < n and text[i] in _WS:
                i += 1
            if i >= n or text[i] != ":":
                raise MalformedMessage("expected ':' in JSON object")
            i += 1
            while i < n and text[i] in _WS:
                i += 1
            _, end = decoder.raw_decode(text, i)
            if key in spans:
                raise MalformedMessage(f"duplicate JSON key {key!r}")
            spans[key] = (i, end)
            i = end
            while i < n and text[i] in _WS:
                i += 1
            if i < n and text[i] == ",":
                i += 1
                continue
            if i < n and text[i] == "}":
                i += 1
                break
            raise MalformedMessage("expected ',' or '}' in JSON object")
    except ValueError as exc:  # json.JSONDecodeError and scanstring's errors
        if isinstance(exc, MalformedMessage):
            raise
        raise MalformedMessage(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:  # the C scanner's answer to deep nesting
        raise MalformedMessage("JSON nested too deeply") from exc
    if text[i:].strip(_WS):
        raise MalformedMessage("trailing data after JSON object")
    return spans


# A record typed as a NamedTuple for mypy, a collections.namedtuple at run time defined on first use (records.py):
# typing.NamedTuple would compile() each (PEP 563 string) annotation, and a process's first compile() builds every
# AST type (~0.7 ms).
if TYPE_CHECKING:

    class SignedResponse(NamedTuple):
        """One ``*_response`` member of an Alipay JSON reply, its exact raw text and the signature over it."""

        name: str
        content: str
        body: dict[str, Any]
        sign: str | None
        sign_type: str | None
        cert_sn: str | None

else:
    SignedResponse = LazyRecord("SignedResponse", "name content body sign sign_type cert_sn", __name__)


def _string_member(text: str, spans: Mapping[str, tuple[int, int]], key: str) -> str | None:
    span = spans.get(key)
    if span is None:
        return None
    value = _decode(text[span[0] : span[1]])
    if not isinstance(value, str):
        raise MalformedMessage(f"{key} is not a string")
    return value


def extract_response(text: str, name: str | None = None) -> SignedResponse:
    """Find the ``name`` member (default: the only ``*_response``, or ``error_response``) and its ``sign``."""
    spans = top_level_spans(text)
    if name is None:
        names = [k for k in spans if k.endswith("_response")]
        if len(names) != 1:
            raise MalformedMessage(f"expected exactly one *_response member, found {len(names)}")
        name = names[0]
    elif name not in spans:
        if ERROR_RESPONSE in spans:
            name = ERROR_RESPONSE
        else:
            raise MalformedMessage(f"no {name} in response")
    start, end = spans[name]
    content = text[start:end]
    body = _decode(content)
    if not isinstance(body, dict):
        raise MalformedMessage(f"{name} is not a JSON object")
    return SignedResponse(
        name=name,
        content=content,
        body=body,
        sign=_string_member(text, spans, "sign"),
        sign_type=_string_member(text, spans, "sign_type"),
        cert_sn=_string_member(text, spans, "alipay_cert_sn"),
    )


def verify_response(
    text: str,
    keys: AlipayPublicKeys,
    *,
    sign_type: SignType = SignType.RSA2,
    name: str | None = None,
    charset: str = "utf-8",
) -> SignedResponse:
    """Extract and verify a signed JSON reply; raise a ``VerificationError`` naming the failed check."""
    response = extract_response(text, name)
    if response.sign_type is not None and response.sign_type != sign_type.value:
        raise SignTypeMismatch(f"sign_type {response.sign_type!r} but the merchant uses {sign_type.value}")
    if not response.sign:
        raise MissingSignature(f"{response.name} carries no sign")
    signature = decode_signature(response.sign)
    try:
        content = response.content.encode(charset)
    except UnicodeEncodeError as exc:  # e.g. a lone surrogate from a \ud800 escape: nothing Alipay signs
        raise CharsetError(f"{response.name} does not encode in {charset}") from exc
    try:
        verify_signature(keys, content, signature, sign_type, response.cert_sn)
    except SignatureMismatch:
        if ESCAPED_SLASH not in response.content:
            raise
        _verify_unescaped_slashes(response, signature, keys, sign_type, charset)
    return response


# JSON may escape "/" as "\/". Alipay signs the text before that escaping, so a reply whose slashes were escaped on the
# way fails over its raw text. Alipay's Java SDK then verifies once more with every "\/" read as "/"; so does this.
ESCAPED_SLASH = "\\/"


def _verify_unescaped_slashes(
    response: SignedResponse, signature: bytes, keys: AlipayPublicKeys, sign_type: SignType, charset: str
) -> None:
    """The second reading of Alipay's Java SDK; accepted only if it means exactly what the raw text means."""
    unescaped = response.content.replace(ESCAPED_SLASH, "/")
    verify_signature(keys, unescaped.encode(charset), signature, sign_type, response.cert_sn)
    # A blind replace turns the JSON text \\/ (a backslash, then a slash) into \/ (a slash). The fields acted on
    # are parsed from the raw text, so the signed text must decode to the very same fields.
    try:
        same = _decoder().decode(unescaped) == response.body
    except ValueError:
        same = False
    if not same:
        raise SignatureMismatch(f"{response.name}: the slash-unescaped signed text does not mean what the reply says")


if TYPE_CHECKING:

    class AppPayResult(NamedTuple):
        """A verified ``alipay_trade_app_pay_response`` from the SDK's synchronous result."""

        code: str
        app_id: str
        seller_id: str
        out_trade_no: str
        trade_no: str
        total_amount: Decimal
        body: dict[str, Any]

else:
    AppPayResult = LazyRecord("AppPayResult", "code app_id seller_id out_trade_no trade_no total_amount body", __name__)


def _text(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise InvalidField(f"{key} is not a string")
    return value


def verify_app_pay_result(result: str, keys: AlipayPublicKeys, *, sign_type: SignType = SignType.RSA2) -> AppPayResult:
    """Verify the SDK's ``result`` string for an app payment (Alipay's signature over the raw response)."""
    response = verify_response(result, keys, sign_type=sign_type, name=APP_PAY_RESPONSE)
    body = response.body
    if response.name != APP_PAY_RESPONSE:
        raise NotSuccessful(f"{response.name}: {_text(body, 'code')} {_text(body, 'sub_code')}".strip())
    code = _text(body, "code")
    if code != SUCCESS_CODE:
        raise NotSuccessful(f"code {code}: {_text(body, 'sub_code') or _text(body, 'msg')}")
    try:
        amount = p.parse_amount(_text(body, "total_amount"))
    except OrderError as exc:
        raise InvalidField(f"total_amount: {exc}") from exc
    return AppPayResult(
        code=code,
        app_id=_text(body, "app_id"),
        seller_id=_text(body, "seller_id"),
        out_trade_no=_text(body, "out_trade_no"),
        trade_no=_text(body, "trade_no"),
        total_amount=amount,
        body=body,
    )


def check_app_pay_result(
    result: AppPayResult,
    *,
    app_id: str,
    out_trade_no: str,
    total_amount: Decimal,
    seller_id: str | None = None,
) -> None:
    """The business checks after the signature: the result belongs to this merchant and this order."""
    from decimal import Decimal

    expected: list[tuple[str, object, object]] = [
        ("app_id", app_id, result.app_id),
        ("out_trade_no", out_trade_no, result.out_trade_no),
        ("total_amount", Decimal(total_amount), result.total_amount),
    ]
    if seller_id:
        expected.append(("seller_id", seller_id, result.seller_id))
    for field, want, got in expected:
        if want != got:
            raise OrderMismatch(field, want, got)
