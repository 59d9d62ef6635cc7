"""Legacy Alipay Global (MAPI, partner PID): ``mobile.securitypay.pay`` order strings and results."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, NamedTuple

from . import params as p
from .errors import (
    CharsetError,
    InvalidField,
    MalformedMessage,
    MissingSignature,
    NotSuccessful,
    OrderError,
    OrderMismatch,
    SignTypeMismatch,
)
from .forms import codec_for, quoted_content
from .records import LazyRecord
from .signing import AlipayPublicKeys, Signer, SignType, b64encode, decode_signature, verify_signature

if TYPE_CHECKING:
    from decimal import Decimal  # imported where used (~0.8 ms), not at every cold start

SECURITYPAY_SERVICE = "mobile.securitypay.pay"
PRODUCT_CODE = "NEW_WAP_OVERSEAS_SELLER"
FOREX_BIZ = "FP"
# Compiled on first use (kept by re's own cache), not at import.
_PARTNER = r"2088[0-9]{12}"
_CURRENCY = r"[A-Z]{3}"
# A legacy value cannot carry a double quote (the format has no escape), and must not carry the markers
# that delimit the signature in Alipay's result string.
_FORBIDDEN_IN_VALUE = ('"', "&sign=", "&sign_type=")


def _check_value(key: str, value: str) -> None:
    for bad in _FORBIDDEN_IN_VALUE:
        if bad in value:
            raise OrderError(key, f"must not contain {bad!r} (the legacy order string cannot escape it)")


def check_partner(partner: str) -> str:
    """The merchant's partner id (PID): 16 digits starting with 2088."""
    if not re.fullmatch(_PARTNER, partner or ""):
        raise OrderError("partner", "must be the 16-digit PID starting with 2088")
    return partner


def check_currency(currency: str) -> str:
    """An ISO 4217 code in upper case, as the legacy services take it."""
    if not re.fullmatch(_CURRENCY, currency or ""):
        raise OrderError("currency", "must be an ISO 4217 code such as USD")
    return currency


def securitypay_order_params(
    *,
    partner: str,
    notify_url: str,
    out_trade_no: str,
    subject: str,
    body: str,
    currency: str,
    total_fee: str | Decimal | None = None,
    rmb_fee: str | Decimal | None = None,
    it_b_pay: str | None = None,
    seller_id: str | None = None,
    return_url: str | None = None,
    appenv: str | None = None,
    trade_information: str | None = None,
    payment_inst: str | None = None,
    input_charset: str = "utf-8",
) -> list[tuple[str, str]]:
    """Validated parameters of ``mobile.securitypay.pay`` (``total_fee`` xor ``rmb_fee``)."""
    if not re.fullmatch(_PARTNER, partner or ""):
        raise OrderError("partner", "must be the 16-digit PID starting with 2088")
    if (total_fee is None) == (rmb_fee is None):
        raise OrderError("total_fee", "exactly one of total_fee (foreign currency) and rmb_fee is required")
    if not re.fullmatch(_CURRENCY, currency or ""):
        raise OrderError("currency", "must be an ISO 4217 code such as USD")
    pairs: list[tuple[str, str]] = [
        ("service", SECURITYPAY_SERVICE),
        ("partner", partner),
        ("_input_charset", input_charset),
        ("notify_url", notify_url),
        ("out_trade_no", p.check_out_trade_no(out_trade_no)),
        ("subject", p.check_text("subject", subject, 256)),
        ("payment_type", "1"),
        ("seller_id", seller_id or partner),
        ("body", p.check_text("body", body, 400)),
        ("currency", currency),
        ("forex_biz", FOREX_BIZ),
        ("product_code", PRODUCT_CODE),
    ]
    if total_fee is not None:
        pairs.append(("total_fee", p.format_amount(total_fee, "total_fee")))
    if rmb_fee is not None:
        pairs.append(("rmb_fee", p.format_amount(rmb_fee, "rmb_fee")))
    optional = {
        "it_b_pay": p.check_timeout(it_b_pay, "it_b_pay") if it_b_pay else None,
        "return_url": return_url,
        "appenv": appenv,
        "trade_information": trade_information,
        "payment_inst": payment_inst,
    }
    pairs.extend((k, v) for k, v in optional.items() if v)
    return pairs


def securitypay_signed_content(pairs: Iterable[tuple[str, str]], *, sort: bool = True) -> str:
    """``k="v"`` for every non-empty parameter but ``sign``/``sign_type``; sorted unless ``sort=False``."""
    kept = [(k, v) for k, v in pairs if v != "" and k not in ("sign", "sign_type")]
    for k, v in kept:
        _check_value(k, v)
    if sort:
        kept.sort(key=lambda kv: kv[0])
    return quoted_content(kept)


def sign_securitypay_order(
    pairs: Iterable[tuple[str, str]] | Mapping[str, str], signer: Signer, *, sort: bool = True
) -> str:
    """The complete order string: the signed content, then ``&sign="<urlencoded>"&sign_type="RSA"``.

    Alipay verifies the part before ``&sign=`` exactly as sent, so that part is the signed content itself.
    """
    if signer.sign_type is not SignType.RSA:
        raise OrderError(
            "sign_type",
            "mobile.securitypay.pay needs an RSA (SHA1withRSA) key; KMS cannot sign SHA-1 PKCS#1 v1.5, "
            "so configure a locally held legacy key",
        )
    from urllib.parse import quote

    items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
    content = securitypay_signed_content(items, sort=sort)
    charset = dict(items).get("_input_charset") or "utf-8"
    sign = b64encode(signer.sign(content.encode(charset)))
    return f'{content}&sign="{quote(sign, safe="")}"&sign_type="RSA"'


# --- the SDK's synchronous result -------------------------------------------------------------------


@cache
def _quoted_pair() -> re.Pattern[str]:
    return re.compile(r'([A-Za-z0-9_]+)="(.*?)"(?=&[A-Za-z0-9_]+="|$)', re.DOTALL)


def parse_quoted(text: str) -> dict[str, str]:
    """Parse ``k="v"&k2="v2"`` strictly: the whole string must be such pairs, no key twice."""
    out: dict[str, str] = {}
    quoted_pair = _quoted_pair()
    pos = 0
    while pos < len(text):
        match = quoted_pair.match(text, pos)
        if match is None:
            raise MalformedMessage(f'not a k="v" pair at offset {pos}')
        key, value = match.group(1), match.group(2)
        if key in out:
            raise MalformedMessage(f"duplicate field {key!r}")
        out[key] = value
        pos = match.end()
        if pos < len(text):
            pos += 1  # the '&' the lookahead saw
    if not out:
        raise MalformedMessage("empty result")
    return out


# A record typed as a NamedTuple for mypy, a collections.namedtuple at run time defined on first use (records.py):
# typing.NamedTuple would compile() each (PEP 563 string) annotation, and a process's first compile() builds every
# AST type (~0.7 ms).
if TYPE_CHECKING:

    class SecuritypayResult(NamedTuple):
        """A verified legacy synchronous result."""

        partner: str
        seller_id: str
        out_trade_no: str
        total_fee: Decimal | None
        rmb_fee: Decimal | None
        currency: str
        fields: dict[str, str]

else:
    SecuritypayResult = LazyRecord(
        "SecuritypayResult", "partner seller_id out_trade_no total_fee rmb_fee currency fields", __name__
    )


def securitypay_result_content(result: str) -> str:
    """Alipay's signed content of a legacy result: everything before the first ``&sign_type=``, verbatim."""
    index = result.find("&sign_type=")
    if index < 0:
        raise MissingSignature("result has no &sign_type=")
    return result[:index]


def verify_securitypay_result(
    result: str, keys: AlipayPublicKeys, *, sign_type: SignType = SignType.RSA
) -> SecuritypayResult:
    """Verify a legacy ``result``; paid only with ``success="true"`` and a valid SHA1withRSA signature."""
    content = securitypay_result_content(result)
    # Every field acted on must come from the signed part; after it, only sign_type and sign may follow.
    fields = parse_quoted(content)
    trailer = parse_quoted(result[len(content) + 1 :])
    unsigned = sorted(set(trailer) - {"sign_type", "sign"})
    if unsigned:
        raise MalformedMessage(f"unsigned field(s) after &sign_type=: {', '.join(unsigned)}")
    declared = trailer.get("sign_type")
    if declared != sign_type.value:
        raise SignTypeMismatch(f"sign_type {declared!r} but the merchant uses {sign_type.value}")
    sign = trailer.get("sign")
    if not sign:
        raise MissingSignature("result carries no sign")
    from urllib.parse import unquote

    # Alipay writes the base64 signature as is; tolerate a URL-encoded one (base64 never contains '%').
    signature = decode_signature(unquote(sign) if "%" in sign else sign)
    # The result's own _input_charset names the encoding, but only one Alipay uses (never any Python codec).
    codec = codec_for(fields.get("_input_charset") or "utf-8")
    try:
        data = content.encode(codec)
    except UnicodeEncodeError as exc:
        raise CharsetError(f"result does not encode in {codec}") from exc
    verify_signature(keys, data, signature, sign_type)
    if fields.get("success") != "true":
        raise NotSuccessful(f'success is {fields.get("success")!r}, not "true"')
    amounts: dict[str, Decimal | None] = {}
    for key in ("total_fee", "rmb_fee"):
        value = fields.get(key)
        try:
            amounts[key] = p.parse_amount(value, key) if value else None
        except OrderError as exc:
            raise InvalidField(str(exc)) from exc
    return SecuritypayResult(
        partner=fields.get("partner", ""),
        seller_id=fields.get("seller_id", ""),
        out_trade_no=fields.get("out_trade_no", ""),
        total_fee=amounts["total_fee"],
        rmb_fee=amounts["rmb_fee"],
        currency=fields.get("currency", ""),
        fields=fields,
    )


def check_securitypay_result(
    result: SecuritypayResult,
    *,
    partner: str,
    out_trade_no: str,
    total_amount: Decimal,
    currency: str,
    seller_id: str | None = None,
) -> None:
    """The business checks after the signature: partner, seller, order number, amount and currency."""
    from decimal import Decimal

    amount = result.total_fee if result.total_fee is not None else result.rmb_fee
    for field, want, got in (
        ("partner", partner, result.partner),
        ("seller_id", seller_id or partner, result.seller_id),
        ("out_trade_no", out_trade_no, result.out_trade_no),
        ("total_fee", Decimal(total_amount), amount),
        ("currency", currency, result.currency),
    ):
        if want != got:
            raise OrderMismatch(field, want, got)


# --- notify_verify -------------------------------------------------------------------------------------


def notify_verify_url(gateway: str, *, partner: str, notify_id: str) -> str:
    """``GET <gateway>?service=notify_verify&partner=<PID>&notify_id=<id>``; Alipay answers ``true``/``false``."""
    from urllib.parse import urlencode

    query = urlencode({"service": "notify_verify", "partner": partner, "notify_id": notify_id})
    return f"{gateway}?{query}"


def parse_notify_verify(body: str) -> bool:
    """Only the exact answer ``true`` confirms a notification."""
    return body.strip() == "true"
