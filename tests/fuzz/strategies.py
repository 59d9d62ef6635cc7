"""Hypothesis strategies: hostile form bodies, signs, charsets and encodings; mutations of genuine messages;
JSON-ish and ``k="v"`` text. Each mutation carries a description, so a failure says what was done."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TypeVar
from urllib.parse import quote, quote_from_bytes, quote_plus, unquote_plus

from hypothesis import strategies as st

from chalicelib.alipay.signing import SignType, b64encode
from tests.alipay_fixtures import openapi_notification_fields
from tests.fuzz import oracle
from tests.fuzz.genuine import GenuineAntom, GenuineNotification, GenuineResult, GenuineReturn, encode_pairs
from tests.fuzz.harness import alipay_sign

FORM = "application/x-www-form-urlencoded"
T = TypeVar("T")

# --- building blocks ----------------------------------------------------------------------------------------

TRICKY = [
    "&", "=", "%", "+", " ", "%26", "%3D", "%25", "%00", "%zz", "%4", "%%", "\\", "\\x41", '"', "'", "#", "?",
    "中文", "咖啡", "€", "😀", "\u3000", "\xa0", "\t", "\n", "\r\n", "&sign=", "&sign_type=", "a=b&c=d",
    "TRADE_SUCCESS", "88.88", "0.01", "2088000000000002", "{", "}", "[", "]",
]  # fmt: skip
NO_SURROGATE = st.characters(exclude_categories=("Cs",))
texts = st.lists(st.one_of(st.sampled_from(TRICKY), NO_SURROGATE), max_size=10).map("".join)

KNOWN_NAMES = [
    "notify_id", "notify_time", "notify_type", "trade_status", "out_trade_no", "trade_no", "total_amount",
    "total_fee", "refund_fee", "currency", "app_id", "seller_id", "partner", "charset", "_input_charset", "sign",
    "sign_type", "subject", "body", "version", "buyer_id", "gmt_payment", "passback_params", "receipt_amount",
]  # fmt: skip
KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-"
ODD_NAMES = ["", " ", "a b", "%61", "a%3Db", "中", "x" * 64, "x" * 65, "a\x00b", "a.b-c_d", "SIGN", "Sign", "sign "]
names = st.one_of(
    st.sampled_from(KNOWN_NAMES),
    st.text(alphabet=KEY_ALPHABET, min_size=1, max_size=12),
    st.sampled_from(ODD_NAMES),
    st.text(max_size=8),
)
CHARSETS = [
    "utf-8", "UTF-8", "utf8", " utf-8 ", "gbk", "GBK", "gb2312", "gb18030", "latin-1", "iso-8859-1", "bogus", "",
    "utf-16", "rot13", "ascii", "big5", "中文", "utf-8\x00",
]  # fmt: skip
CODECS = ["utf-8", "gbk", "gb18030", "latin-1", "utf-16"]
CONSUMED_NAMES = ["currency", "refund_fee", "trade_no", "trade_status", "total_amount", "total_fee", "partner"]
STATUSES = ["TRADE_SUCCESS", "TRADE_FINISHED", "TRADE_CLOSED", "WAIT_BUYER_PAY", "trade_success", "TRADE_SUCCESS "]
AMOUNTS = ["0.01", "0", "0.00", "88.880", "88.8", "-88.88", "1e2", " 88.88", "88,88", "100000000.01", "８８.８８"]


def one(draw: st.DrawFn, options: Sequence[T]) -> T:
    """``draw(st.sampled_from(options))`` without building a strategy per call (that dominated generation)."""
    return options[draw(st.integers(0, len(options) - 1))]


def shuffled(draw: st.DrawFn, items: Sequence[T]) -> list[T]:
    """A drawn permutation of ``items`` (Fisher-Yates over drawn indices)."""
    out = list(items)
    for i in range(len(out) - 1, 0, -1):
        j = draw(st.integers(0, i))
        out[i], out[j] = out[j], out[i]
    return out


def percent_every(raw: bytes, *, lower: bool = False) -> bytes:
    return "".join(f"%{b:02x}" if lower else f"%{b:02X}" for b in raw).encode("ascii")


def _broken(raw: bytes, where: int, how: str) -> bytes:
    encoded = quote_plus(raw, safe="").encode("ascii")
    at = where % (len(encoded) + 1)
    return encoded[:at] + how.encode("latin-1") + encoded[at:]


# Percent-encoding styles: valid (several spellings), none at all, double, and broken.
STYLES: dict[str, Callable[[bytes, int, str], bytes]] = {
    "plus": lambda raw, _w, _h: quote_plus(raw, safe="").encode("ascii"),
    "percent20": lambda raw, _w, _h: quote(raw, safe="").encode("ascii"),
    "every-byte": lambda raw, _w, _h: percent_every(raw),
    "lower-hex": lambda raw, _w, _h: percent_every(raw, lower=True),
    "raw": lambda raw, _w, _h: raw,
    "double": lambda raw, _w, _h: quote_plus(quote_plus(raw, safe=""), safe="").encode("ascii"),
    "broken": _broken,
}
STYLE_NAMES = sorted(STYLES)
BROKEN_ESCAPES = ["%", "%G", "%4", "%zz", "%%", "%0", "%\x00", "%-1", "%+1", "% 1"]


def encoded_values(draw: st.DrawFn, style: str | None = None) -> bytes:
    """A value's bytes on the wire: text in some charset (or raw bytes), percent-encoded in some style."""
    if draw(st.integers(0, 4)) == 0:
        raw = draw(st.binary(max_size=24))
    else:
        raw = draw(texts).encode(one(draw, CODECS), "replace")
    chosen = style or one(draw, STYLE_NAMES)
    return STYLES[chosen](raw, draw(st.integers(0, 64)), one(draw, BROKEN_ESCAPES))


@st.composite
def signs(draw: st.DrawFn) -> str:
    """A ``sign`` value: valid base64 of random bytes (RSA-sized or not), its near misses, or junk."""
    kind = one(draw, ["b64", "b64-256", "urlsafe", "unpadded", "with-newline", "junk", "empty"])
    data = draw(st.binary(min_size=256, max_size=256) if kind == "b64-256" else st.binary(max_size=300))
    encoded = base64.b64encode(data).decode("ascii")
    if kind == "urlsafe":
        return base64.urlsafe_b64encode(data).decode("ascii")
    if kind == "unpadded":
        return encoded.rstrip("=")
    if kind == "with-newline":
        at = draw(st.integers(0, len(encoded)))
        return encoded[:at] + one(draw, ["\n", " ", "\r\n", "="]) + encoded[at:]
    if kind == "junk":
        return draw(st.text(alphabet="ABCDEFabcdef0123456789+/=*-_. \n中", max_size=400))
    if kind == "empty":
        return ""
    return encoded


SIGNS = signs()


CONTENT_TYPES = [
    FORM, f"{FORM}; charset=utf-8", f"{FORM}; charset=UTF-8", f"{FORM};charset=gbk", f'{FORM}; charset="gbk"',
    f"{FORM}; charset=bogus", f"{FORM}; charset=", f"{FORM}; charset=gb18030; charset=utf-8", FORM.upper(),
    f" {FORM} ; charset=utf-8", "application/json", "text/plain", "multipart/form-data; boundary=x", "",
    f"{FORM}, text/plain", "*/*", "application/x-www-form-urlencoded-foo", "application/octet-stream",
]  # fmt: skip
content_types = st.one_of(st.sampled_from(CONTENT_TYPES), st.none(), st.text(max_size=40))
FORM_OR_ANY_CONTENT_TYPE = st.one_of(st.just(FORM), st.just(f"{FORM}; charset=utf-8"), content_types)
header_names = st.sampled_from(["Content-Type", "content-type", "CONTENT-TYPE"])


# --- (a) the webhook: bodies from nothing ----------------------------------------------------------------------


@dataclass(frozen=True)
class RawRequest:
    body: bytes | None
    content_type: str | None
    as_base64: bool
    header: str


@st.composite
def form_bodies(draw: st.DrawFn) -> bytes:
    """A form-ish body from random fields: known and odd names (often repeated), any charset, any
    percent-encoding, random ``sign``/``sign_type``/charset fields, stray separators and parts without ``=``."""
    pool = draw(st.lists(names, min_size=1, max_size=5))
    parts: list[bytes] = []
    for _ in range(draw(st.integers(0, 9))):
        name = one(draw, pool) if draw(st.booleans()) else draw(names)
        kind = draw(st.integers(0, 9))
        if kind == 0:
            parts.append(name.encode("utf-8", "surrogatepass"))  # no '='
        elif kind == 1:
            parts.append(name.encode("utf-8", "surrogatepass") + b"=" + encoded_values(draw, "raw") + b"=x")
        else:
            parts.append(name.encode("utf-8", "surrogatepass") + b"=" + encoded_values(draw))
    if draw(st.booleans()):
        parts.append(b"sign=" + quote_plus(draw(SIGNS), safe="").encode("ascii"))
    if draw(st.booleans()):
        parts.append(b"sign_type=" + one(draw, [b"RSA2", b"RSA", b"MD5", b"rsa2", b"", b"RSA2+"]))
    if draw(st.booleans()):
        field = one(draw, [b"charset", b"_input_charset"])
        parts.append(field + b"=" + quote_plus(one(draw, CHARSETS), safe="").encode("ascii"))
    parts = shuffled(draw, parts)
    separator = one(draw, [b"&", b"&", b"&", b"&&", b"&amp;", b";"])
    body = separator.join(parts)
    return one(draw, [b"", b"&"]) + body + one(draw, [b"", b"&", b"\n", b"\r\n"])


@st.composite
def random_requests(draw: st.DrawFn) -> RawRequest:
    body = draw(form_bodies())
    content_type = draw(FORM_OR_ANY_CONTENT_TYPE)
    return RawRequest(body, content_type, draw(st.booleans()), draw(header_names))


@st.composite
def raw_requests(draw: st.DrawFn) -> RawRequest:
    """Arbitrary bytes and text as the body (some with API Gateway's ``isBase64Encoded``), or no body."""
    body = draw(
        st.one_of(
            st.binary(max_size=2048),
            st.text(max_size=512).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.lists(st.sampled_from([*TRICKY, "sign", "notify_id", "="]), max_size=40).map(
                lambda xs: "".join(xs).encode("utf-8")
            ),
            st.sampled_from([b"", b" ", b"\t\n", b"&", b"=", b"&=&", b"a=", b"=a", b"\x00", b"\xef\xbb\xbfa=1"]),
            st.none(),
        )
    )
    content_type = draw(FORM_OR_ANY_CONTENT_TYPE)
    return RawRequest(body, content_type, draw(st.booleans()), draw(header_names))


@dataclass(frozen=True)
class HugeRequest:
    body: bytes
    description: str
    genuine: oracle.Genuine | None


PADDING_UNITS = {"plain": ("a", b"a"), "escaped": ("A", b"%41"), "chinese": ("中", b"%E4%B8%AD"), "spaces": (" ", b"+")}


@cache
def huge_sizes(limit: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from([limit - 1, limit, limit + 1]),
        st.integers(limit - 512, limit + 512),
        st.integers(limit + 1, 2 * limit),
        st.integers(limit // 2, limit),
    )


# Thousands of tiny fields are the dearest shape (about 25x the time of one huge field): a third of the cases.
HUGE_KINDS = ["signed-padding", "signed-padding", "signed-many-fields", "garbage-padding", "garbage-many-fields"]


@st.composite
def huge_requests(draw: st.DrawFn, limit: int) -> HugeRequest:
    """A body of a drawn size near or over ``limit``: a genuine notification padded by one huge signed field
    or by thousands of small ones, or unsigned garbage of the same shapes."""
    size = draw(huge_sizes(limit))
    kind = one(draw, HUGE_KINDS)
    text_unit, wire_unit = PADDING_UNITS[one(draw, sorted(PADDING_UNITS))]
    fields = openapi_notification_fields()
    head = encode_pairs(list(fields.items()), "utf-8")
    # The sign is sent with every byte percent-encoded, so the body's length does not depend on its value.
    overhead = len(head) + len("&sign_type=RSA2&sign=") + 3 * 344
    if kind.endswith("many-fields"):
        count = max(0, (size - overhead) // len("&x00000=1"))
        extra = {f"x{i:05d}": "1" for i in range(count)}
        wire_extra = b"".join(b"&%s=1" % k.encode() for k in extra)
    else:
        count = max(0, (size - overhead - len("&passback_params=")) // len(wire_unit))
        extra = {"passback_params": text_unit * count}
        wire_extra = b"&passback_params=" + wire_unit * count
    genuine = None
    if kind.startswith("signed"):
        content = oracle.canonical({**fields, **extra}).encode("utf-8")
        genuine = oracle.Genuine(content, alipay_sign(content, SignType.RSA2))
        signature = genuine.signature
    else:
        signature = draw(st.binary(min_size=256, max_size=256))
    body = head + wire_extra + b"&sign_type=RSA2&sign=" + percent_every(b64encode(signature).encode("ascii"))
    return HugeRequest(body, f"{kind} x{count} {wire_unit!r} ({len(body)} bytes, limit {limit})", genuine)


# --- (a) the webhook: mutations of a genuine notification ------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    original: GenuineNotification
    body: bytes
    content_type: str | None
    as_base64: bool
    steps: tuple[str, ...]


Pairs = list[tuple[str, str]]
_BOUNDARY = re.compile(r"&([A-Za-z0-9_.\-]{1,64})=")


def _new_value(draw: st.DrawFn, old: str) -> str:
    how = one(draw, ["random", "edit", "status", "amount", "empty", "blank", "append", "case"])
    if how == "random":
        return draw(texts)
    if how == "edit" and old:
        at = draw(st.integers(0, len(old) - 1))
        return old[:at] + draw(NO_SURROGATE) + old[at + 1 :]
    if how == "status":
        return one(draw, STATUSES)
    if how == "amount":
        return one(draw, AMOUNTS)
    if how == "empty":
        return ""
    if how == "blank":
        return one(draw, [" ", "  ", "\t", "\u3000", "\xa0", "\n"])
    if how == "case":
        return old.swapcase()
    return old + one(draw, [" ", "0", "中", "&x=1", "\n"])


def field_steps(draw: st.DrawFn, pairs: Pairs, codec: str) -> tuple[Pairs, str]:
    """One field-level mutation of ``pairs``; returns the new pairs and a description."""
    pairs = list(pairs)
    kind = one(draw, [
                "value", "drop", "add", "add-empty", "add-blank", "duplicate", "sign_type", "sign", "reorder",
                "merge", "resplit", "charset",
            ])  # fmt: skip
    if kind in ("value", "drop", "duplicate") and pairs:
        i = draw(st.integers(0, len(pairs) - 1))
        key, old = pairs[i]
        if kind == "value":
            pairs[i] = (key, _new_value(draw, old))
            return pairs, f"value {key}: {old!r} -> {pairs[i][1]!r}"
        if kind == "drop":
            del pairs[i]
            return pairs, f"drop {key}"
        value = old if draw(st.booleans()) else _new_value(draw, old)
        pairs.insert(draw(st.integers(0, len(pairs))), (key, value))
        return pairs, f"duplicate {key}={value!r}"
    if kind in ("add", "add-empty", "add-blank"):
        # Half the time one of the fields the consumer reads, which is where an unsigned addition would matter.
        key = one(draw, CONSUMED_NAMES) if draw(st.booleans()) else draw(names)
        value = {"add": None, "add-empty": "", "add-blank": one(draw, [" ", "\t", "\u3000", "\xa0"])}[kind]
        value = draw(texts) if value is None else value
        pairs.insert(draw(st.integers(0, len(pairs))), (key, value))
        return pairs, f"add {key!r}={value!r}"
    if kind == "sign_type":
        new = one(draw, ["RSA", "MD5", "rsa2", "", " RSA2", "RSA2", "HMAC-SHA256", None])
        pairs = [(k, v) for k, v in pairs if k != "sign_type"]
        if new is not None:
            pairs.insert(draw(st.integers(0, len(pairs))), ("sign_type", new))
        return pairs, f"sign_type -> {new!r}"
    if kind == "sign":
        old = dict(pairs).get("sign", "")
        new = draw(SIGNS) if draw(st.booleans()) else _same_bytes_other_spelling(old, draw(st.integers(1, 15)))
        pairs = [(k, new if k == "sign" else v) for k, v in pairs]
        return pairs, f"sign -> {new[:24]!r}..."
    if kind == "reorder":
        return list(shuffled(draw, pairs)), "reorder"
    if kind == "merge":
        signed = sorted((k, v) for k, v in pairs if k not in ("sign", "sign_type") and v)
        if len(signed) < 2:
            return pairs, "merge (nothing to merge)"
        j = draw(st.integers(0, len(signed) - 2))
        (k1, v1), (k2, v2) = signed[j], signed[j + 1]
        merged = [(k, f"{v1}&{k2}={v2}" if k == k1 else v) for k, v in pairs if k != k2]
        return merged, f"merge {k2} into {k1}"
    if kind == "resplit":
        for i, (key, value) in enumerate(pairs):
            match = _BOUNDARY.search(value)
            if match and match.group(1) not in dict(pairs):
                head, tail = value[: match.start()], value[match.end() :]
                pairs[i : i + 1] = [(key, head), (match.group(1), tail)]
                return pairs, f"resplit {key} at &{match.group(1)}="
        return pairs, "resplit (no '&k=' in any value)"
    field = "charset" if "charset" in dict(pairs) or draw(st.booleans()) else "_input_charset"
    new = one(draw, [*CHARSETS, codec])
    pairs = [(k, v) for k, v in pairs if k != field]
    pairs.insert(draw(st.integers(0, len(pairs))), (field, new))
    return pairs, f"{field} -> {new!r}"


def _same_bytes_other_spelling(sign: str, bits: int) -> str:
    """The same signature bytes spelled differently: base64's unused trailing bits set (strict mode allows it)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = sign.rstrip("=")
    unused = {1: 2, 2: 4}.get(len(sign) - len(stripped), 0)
    if not unused or not stripped or stripped[-1] not in alphabet:
        return sign
    last = alphabet.index(stripped[-1])
    return stripped[:-1] + alphabet[last | (bits % (1 << unused))] + sign[len(stripped) :]


INTERESTING_BYTES = [b"&", b"=", b"%", b"+", b"%26", b"%3D", b"%00", b"\x00", b"\xff", b" ", b"%25", b"a", b"\n", b"%"]
BYTE_INSERTS = st.one_of(st.sampled_from(INTERESTING_BYTES), st.binary(min_size=1, max_size=4))


def byte_steps(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    """One byte-level mutation of ``body``."""
    kind = one(draw, ["flip", "insert", "delete", "truncate", "swap", "dup", "amp", "hexcase"])
    at = draw(st.integers(0, max(0, len(body) - 1)))
    if kind == "flip" and body:
        new = draw(st.integers(0, 255))
        return body[:at] + bytes([new]) + body[at + 1 :], f"byte {at}: {body[at]:#04x} -> {new:#04x}"
    if kind == "insert":
        chunk = draw(BYTE_INSERTS)
        return body[:at] + chunk + body[at:], f"insert {chunk!r} at {at}"
    if kind == "delete":
        n = draw(st.integers(1, 4))
        return body[:at] + body[at + n :], f"delete {n} at {at}"
    if kind == "truncate":
        return body[:at], f"truncate at {at}"
    parts = body.split(b"&")
    if kind == "swap" and len(parts) > 1:
        i, j = draw(st.integers(0, len(parts) - 1)), draw(st.integers(0, len(parts) - 1))
        parts[i], parts[j] = parts[j], parts[i]
        return b"&".join(parts), f"swap parts {i} and {j}"
    if kind == "dup" and body:
        n = draw(st.integers(1, 40))
        return body[:at] + body[at : at + n] + body[at:], f"duplicate {n} bytes at {at}"
    if kind == "amp" and len(parts) > 1:
        i = draw(st.integers(0, len(parts) - 2))
        return b"&".join(parts[: i + 1]) + b"%26" + b"&".join(parts[i + 1 :]), f"'&' after part {i} -> %26"
    escapes = [m.start() for m in re.finditer(rb"%[0-9A-Fa-f]{2}", body)]
    if kind == "hexcase" and escapes:
        k = escapes[draw(st.integers(0, len(escapes) - 1))]
        return body[:k] + body[k : k + 3].swapcase() + body[k + 3 :], f"hex case of escape at {k}"
    return body, f"{kind} (not applicable)"


@st.composite
def mutants(draw: st.DrawFn, originals: tuple[GenuineNotification, ...]) -> Mutant:
    """A genuine notification after 0-3 field-level and 0-3 byte-level mutations, re-encoded in some style,
    sent with its own content type (mostly) or another, as text or base64."""
    original = one(draw, originals)
    pairs: Pairs = list(original.pairs)
    steps: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        pairs, step = field_steps(draw, pairs, original.codec)
        steps.append(step)
    codec = original.codec if draw(st.integers(0, 5)) else one(draw, CODECS)
    style = "plus" if draw(st.integers(0, 2)) else one(draw, STYLE_NAMES)
    if codec != original.codec or style != "plus":
        steps.append(f"encoded {codec}/{style}")
    encoded = []
    for key, value in pairs:
        raw = value.encode(codec, "replace")
        wire = STYLES[style](raw, draw(st.integers(0, 64)), one(draw, BROKEN_ESCAPES))
        encoded.append(key.encode("utf-8", "surrogatepass") + b"=" + wire)
    body = b"&".join(encoded)
    for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
        body, step = byte_steps(draw, body)
        steps.append(step)
    content_type = original.content_type if draw(st.integers(0, 7)) else draw(content_types)
    if content_type != original.content_type:
        steps.append(f"content type {content_type!r}")
    return Mutant(original, body, content_type, draw(st.booleans()), tuple(steps))


# --- (b) client results ----------------------------------------------------------------------------------------

JSON_STRING_PIECES = [
    '\\"', "\\\\", "\\/", "\\b", "\\f", "\\n", "\\r", "\\t", "\\u0041", "\\u4e2d", "\\ud800", "\\udc00",
    "\\ud83d\\ude00", "\\u0000", "\\x41", "\\u12", "\\", "{", "}", "[", "]", ",", ":", "'", "中", "\x00", "\x1f",
    "\ud800", "\udfff", "😀", " ",
]  # fmt: skip
json_strings = st.lists(
    st.one_of(st.sampled_from(JSON_STRING_PIECES), st.characters()), max_size=8
).map(lambda xs: '"' + "".join(xs) + '"')
json_numbers = st.one_of(
    st.integers().map(str),
    st.floats(allow_nan=False).map(repr),
    st.sampled_from(["1e999999", "-0", "01", "0x10", "NaN", "Infinity", "-Infinity", "1.", ".5", "1e", "+1"]),
    st.just("9" * 5000),  # over Python's 4300-digit int limit
)
json_literals = st.sampled_from(["true", "false", "null", "tru", "nul", "True", "None", "undefined"])
RESULT_KEYS = [
    "alipay_trade_app_pay_response", "sign", "sign_type", "alipay_cert_sn", "error_response", "other_response",
    "code", "total_amount", "out_trade_no", "app_id",
]  # fmt: skip
json_keys = st.one_of(st.sampled_from([f'"{k}"' for k in RESULT_KEYS]), json_strings)
json_values = st.recursive(
    st.one_of(json_strings, json_numbers, json_literals),
    lambda children: st.one_of(
        st.lists(children, max_size=5).map(lambda xs: "[" + ",".join(xs) + "]"),
        st.lists(st.tuples(json_keys, children), max_size=5).map(
            lambda kvs: "{" + ",".join(f"{k}:{v}" for k, v in kvs) + "}"
        ),
    ),
    max_leaves=8,
)
DEPTHS = [2, 50, 200, 500, 900, 990, 1000, 2000, 10000]


@st.composite
def deep(draw: st.DrawFn) -> str:
    depth = one(draw, DEPTHS)
    opener = one(draw, ["[", '{"a":'])
    closer = "]" if opener == "[" else "}"
    return opener * depth + one(draw, ["1", "", '"x"']) + closer * depth


JSON_VALUE_OR_DEEP = st.one_of(json_values, deep())


@st.composite
def json_documents(draw: st.DrawFn) -> str:
    """JSON-ish text: an object of result-like members (nested, escaped, deeply nested), sometimes broken."""
    members = draw(st.lists(st.tuples(json_keys, st.one_of(json_values, deep())), max_size=5))
    ws = st.sampled_from(["", " ", "\n", "\t", "\r\n", "\x0b", "\u3000"])
    text = "{" + ",".join(f"{draw(ws)}{k}{draw(ws)}:{draw(ws)}{v}" for k, v in members) + draw(ws) + "}"
    how = one(draw, ["as-is", "as-is", "truncate", "prefix", "suffix", "not-object"])
    if how == "truncate":
        return text[: draw(st.integers(0, len(text)))]
    if how == "prefix":
        return one(draw, ["\ufeff", " ", "x", "[", "{{", "\x00"]) + text
    if how == "suffix":
        return text + one(draw, [" ", "}", ",", "\n", "x", "{}", "\x00"])
    if how == "not-object":
        return draw(JSON_VALUE_OR_DEEP)
    return text


TEXT_INSERTS = [
    '"', "\\", "{", "}", "[", "]", ",", ":", " ", "\n", '\\"', "\\u0041", "\ud800", "\x00", "中", "null", '"sign"',
    ',"sign":"QUJD"', ',"sign_type":"RSA"', ',"alipay_cert_sn":"1"', ',"alipay_trade_app_pay_response":{}',
    "&", '&sign_type="RSA"', '&sign="QUJD"', '"&x="', '&_input_charset="gbk"', '&success="true"', "\n",
]  # fmt: skip
CHAR_FLIPS = st.one_of(st.characters(), st.sampled_from(['"', "\\", "{", "}", "&", "="]))
TEXT_INSERT_CHUNKS = st.one_of(st.sampled_from(TEXT_INSERTS), st.text(min_size=1, max_size=3))


def text_steps(draw: st.DrawFn, text: str) -> tuple[str, str]:
    """One character-level mutation of a result string."""
    kind = one(draw, ["flip", "insert", "delete", "truncate", "dup", "replace-token"])
    at = draw(st.integers(0, max(0, len(text) - 1)))
    if kind == "flip" and text:
        new = draw(CHAR_FLIPS)
        return text[:at] + new + text[at + 1 :], f"char {at}: {text[at]!r} -> {new!r}"
    if kind == "insert":
        chunk = draw(TEXT_INSERT_CHUNKS)
        return text[:at] + chunk + text[at:], f"insert {chunk!r} at {at}"
    if kind == "delete":
        n = draw(st.integers(1, 6))
        return text[:at] + text[at + n :], f"delete {n} at {at}"
    if kind == "truncate":
        return text[:at], f"truncate at {at}"
    if kind == "dup" and text:
        n = draw(st.integers(1, 60))
        return text[:at] + text[at : at + n] + text[at:], f"duplicate {n} chars at {at}"
    old, new = one(draw, [
                ("88.88", "0.01"), ("10000", "40004"), ('"RSA2"', '"RSA"'), ('"RSA"', '"RSA2"'), ('"true"', '"false"'),
                ("2021000000000001", "2021000000000009"), (":", " : "), (",", " ,"), ('"code"', '"c\\u006fde"'),
                ("USD", "CNY"), ('"sign"', '"sign "'), ('"sign_type"', '"Sign_type"'), ("&sign=", "&sign=\n"),
            ])  # fmt: skip
    return text.replace(old, new, 1), f"replace {old!r} -> {new!r}"


def json_structure_steps(draw: st.DrawFn, text: str) -> tuple[str, str]:
    """Rearrange a JSON result's top-level members: reorder, duplicate, drop, add, or re-serialize one."""
    import json

    try:
        members = list(json.loads(text).items())
    except (ValueError, AttributeError, RecursionError):
        return text, "restructure (not an object)"
    kind = one(draw, ["reorder", "duplicate", "drop", "add", "reserialize"])
    if kind == "reorder":
        members = list(shuffled(draw, members))
    elif kind == "duplicate" and members:
        key, value = members[draw(st.integers(0, len(members) - 1))]
        members.insert(draw(st.integers(0, len(members))), (key, one(draw, [value, {}, "x", None])))
    elif kind == "drop" and members:
        del members[draw(st.integers(0, len(members) - 1))]
    elif kind == "add":
        key = one(draw, [*RESULT_KEYS, "memo", "x"])
        members.insert(draw(st.integers(0, len(members))), (key, one(draw, ["", "RSA2", "1", None, {}, 0])))
    # Re-serializing changes the raw member text unless Alipay happened to sign exactly that spelling.
    separators = (",", ":") if kind != "reserialize" else one(draw, [(", ", ": "), (",", ":")])
    ascii_only = kind == "reserialize" and draw(st.booleans())
    body = ",".join(
        json.dumps(k) + separators[1] + json.dumps(v, separators=separators, ensure_ascii=ascii_only)
        for k, v in members
    )
    return "{" + body + "}", f"restructure: {kind}"


@dataclass(frozen=True)
class ResultMutant:
    original: GenuineResult
    text: str
    steps: tuple[str, ...]


@st.composite
def result_mutants(draw: st.DrawFn, originals: tuple[GenuineResult, ...], *, structural: bool) -> ResultMutant:
    original = one(draw, originals)
    text = original.text
    steps: list[str] = []
    if structural and draw(st.booleans()):
        text, step = json_structure_steps(draw, text)
        steps.append(step)
    for _ in range(draw(st.integers(0, 3))):
        text, step = text_steps(draw, text)
        steps.append(step)
    return ResultMutant(original, text, tuple(steps))


QUOTED_KEYS = [
    "partner", "seller_id", "out_trade_no", "subject", "body", "total_fee", "rmb_fee", "currency", "success",
    "_input_charset", "sign", "sign_type", "service",
]  # fmt: skip
quoted_values = st.lists(
    st.one_of(
        st.sampled_from(['"', "&", "=", '"&x="', "&sign=", "&sign_type=", "\n", "\ud800", "中", "%", *CHARSETS]),
        st.characters(),
    ),
    max_size=10,
).map("".join)


@st.composite
def quoted_texts(draw: st.DrawFn) -> str:
    """``k="v"&...`` text as a legacy result: odd keys and values, broken quoting, often a signature tail."""
    pieces = []
    for _ in range(draw(st.integers(0, 8))):
        key = draw(
            st.one_of(st.sampled_from(QUOTED_KEYS), st.text(alphabet=KEY_ALPHABET[:-2], min_size=1, max_size=12), names)
        )
        value = draw(quoted_values)
        quoting = one(draw, ['{k}="{v}"', '{k}="{v}"', '{k}="{v}"', "{k}={v}", "{k}='{v}'", '{k}="{v}'])
        pieces.append(quoting.format(k=key, v=value))
    text = one(draw, ["&", "&", "&&", ""]).join(pieces)
    if draw(st.booleans()):
        sign = draw(SIGNS)
        text += f'&sign_type="{one(draw, ["RSA", "RSA2", "", "MD5"])}"&sign="{sign}"'
    return text


def sdk_payloads(draw: st.DrawFn, results: st.SearchStrategy[str]) -> dict[str, object]:
    """The JSON the app posts: ``{"resultStatus", "result", "memo"}`` with odd types and values."""
    status = one(draw, ["9000", "9000", "9000", "8000", "6001", "6002", "6004", "4000", "", "abc", "９０００", 9000,
                         9000.0, True, None, -1, "90 00"])  # fmt: skip
    payload: dict[str, object] = {"resultStatus": status}
    payload["result"] = draw(results) if draw(st.integers(0, 5)) else one(draw, [None, 1, [], {}, ""])
    if draw(st.booleans()):
        payload["memo"] = draw(texts) if draw(st.booleans()) else one(draw, [None, 1, []])
    if draw(st.integers(0, 9)) == 0:
        payload = {k: v for k, v in payload.items() if k != one(draw, ["resultStatus", "result"])}
    return payload


# --- (c) the web return: query strings --------------------------------------------------------------------------

# What a browser leaves unescaped in a query: printable ASCII but space and '#' (the fragment never reaches the API).
QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "#")
RETURN_NAMES = [
    "method", "is_success", "out_trade_no", "trade_no", "trade_status", "total_amount", "total_fee", "rmb_fee",
    "currency", "app_id", "auth_app_id", "seller_id", "partner", "charset", "_input_charset", "sign", "sign_type",
    "timestamp", "version", "notify_id", "return_url", "status",
]  # fmt: skip
RETURN_VALUES = [
    "alipay.trade.page.pay.return", "alipay.trade.wap.pay.return", "alipay.trade.app.pay", "T", "F", "88.88",
    "12.34", "0.01", "USD", "HKD", "ORDER-20240101-0001", "ORDER-WEB-PAID-0002", "ORDER-WEB-CLOSED-0003",
    "2021000000000001", "2088000000000002", "2088000000000003", "RSA2", "RSA", "utf-8", "gbk", *STATUSES,
]  # fmt: skip


def as_query(raw: bytes) -> str:
    """Bytes as a URL's query string: what a browser leaves as is stays, every other byte is ``%XX``."""
    return quote_from_bytes(raw, safe=QUERY_SAFE)


@dataclass(frozen=True)
class ReturnQuery:
    """A query string for ``GET /alipay/return``; ``original`` and ``steps`` say how it was made from a genuine
    return, and ``signed`` is one more genuine signature it may carry (a huge return signed on the spot)."""

    query: str
    kind: str
    original: GenuineReturn | None = None
    steps: tuple[str, ...] = ()
    signed: oracle.Genuine | None = None


@st.composite
def raw_return_queries(draw: st.DrawFn) -> ReturnQuery:
    """Random bytes (or text) percent-encoded as a query: wholly, or keeping some or all separators as they are."""
    raw = draw(
        st.one_of(
            st.binary(max_size=1024),
            st.text(max_size=256).map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.lists(st.sampled_from([*TRICKY, "sign", "out_trade_no", "="]), max_size=30).map(
                lambda xs: "".join(xs).encode("utf-8")
            ),
        )
    )
    safe = one(draw, ["", "&=", "&=+%", QUERY_SAFE])
    return ReturnQuery(quote_from_bytes(raw, safe=safe), f"raw bytes (safe {safe[:8]!r})")


@st.composite
def random_return_queries(draw: st.DrawFn) -> ReturnQuery:
    """Random parameter maps: the webhook's random form bodies as a query, or a return's names with plausible and
    hostile values (repeated names, odd charsets), with a random ``sign``."""
    if draw(st.booleans()):
        return ReturnQuery(as_query(draw(form_bodies())), "random form")
    pairs: list[tuple[str, str]] = []
    for _ in range(draw(st.integers(0, 12))):
        name = one(draw, RETURN_NAMES) if draw(st.integers(0, 3)) else draw(names)
        value = one(draw, RETURN_VALUES) if draw(st.booleans()) else draw(texts)
        pairs.append((name, value))
    if draw(st.booleans()):
        pairs.append(("sign", draw(SIGNS)))
    codec = one(draw, CODECS)
    query = "&".join(
        f"{quote_plus(k, encoding=codec, errors='replace')}={quote_plus(v, encoding=codec, errors='replace')}"
        for k, v in pairs
    )
    return ReturnQuery(query, f"random params ({codec})")


def genuine_return_query(original: GenuineReturn) -> ReturnQuery:
    return ReturnQuery(original.query(), "genuine", original)


def return_steps(draw: st.DrawFn, pairs: Pairs, limit: int) -> tuple[Pairs, str]:
    """The return's own mutations: a sign truncated or garbled, a value made huge (near and past ``limit``)."""
    pairs = list(pairs)
    kind = one(draw, ["truncate-sign", "garble-sign", "huge"])
    sign = dict(pairs).get("sign", "")
    if kind == "truncate-sign":
        new = sign[: draw(st.integers(0, max(0, len(sign) - 1)))]
        return [(k, new if k == "sign" else v) for k, v in pairs], f"sign truncated to {len(new)} chars"
    if kind == "garble-sign" and sign:
        at = draw(st.integers(0, len(sign) - 1))
        new = sign[:at] + one(draw, ["A", "/", "+", "=", "-", "_", " ", "%"]) + sign[at + 1 :]
        return [(k, new if k == "sign" else v) for k, v in pairs], f"sign char {at} garbled"
    i = draw(st.integers(0, max(0, len(pairs) - 1)))
    key, old = pairs[i] if pairs else ("x", "")
    size = draw(st.integers(limit - 600, 2 * limit))
    new = old + one(draw, ["a", "中", "%", " "]) * max(0, size // 3)
    pairs[i : i + 1] = [(key, new)]
    return pairs, f"value {key} made huge ({len(new)} chars)"


@st.composite
def return_mutants(draw: st.DrawFn, originals: tuple[GenuineReturn, ...], limit: int) -> ReturnQuery:
    """A genuine return after 0-3 mutations (a field changed, added, removed, duplicated; ``sign`` truncated or
    garbled; ``sign_type`` swapped; the charset declared differently; a value made huge), re-encoded in some
    charset and style, then 0-3 byte-level mutations."""
    original = one(draw, originals)
    pairs: Pairs = list(original.pairs)
    steps: list[str] = []
    for _ in range(draw(st.integers(0, 3))):
        pairs, step = return_steps(draw, pairs, limit) if draw(st.integers(0, 3)) == 0 else field_steps(
            draw, pairs, original.codec
        )
        steps.append(step)
    codec = original.codec if draw(st.integers(0, 5)) else one(draw, CODECS)
    style = "plus" if draw(st.integers(0, 2)) else one(draw, STYLE_NAMES)
    if codec != original.codec or style != "plus":
        steps.append(f"encoded {codec}/{style}")
    encoded = []
    for key, value in pairs:
        wire = STYLES[style](value.encode(codec, "replace"), draw(st.integers(0, 64)), one(draw, BROKEN_ESCAPES))
        encoded.append(key.encode("utf-8", "surrogatepass") + b"=" + wire)
    body = b"&".join(encoded)
    for _ in range(draw(st.integers(0, 3)) if draw(st.booleans()) else 0):
        body, step = byte_steps(draw, body)
        steps.append(step)
    return ReturnQuery(as_query(body), "mutant", original, tuple(steps))


@st.composite
def huge_returns(draw: st.DrawFn, originals: tuple[GenuineReturn, ...], limit: int) -> ReturnQuery:
    """A genuine return padded by one more signed field, signed on the spot, so its query lands near ``limit``."""
    original = one(draw, [o for o in originals if not o.foreign])
    fields = {k: v for k, v in original.pairs if k not in oracle.UNSIGNED}
    base = len(original.query()) + len("&extra_common_param=")
    unit = one(draw, ["a", "%", "中", " "])
    wire = len(quote_plus(unit, encoding=original.codec))
    size = draw(st.one_of(st.integers(limit - 64, limit + 64), st.integers(limit // 2, limit + 2048)))
    fields["extra_common_param"] = unit * max(1, (size - base) // wire)
    sign_type = SignType.RSA2 if original.protocol == "openapi" else SignType.RSA
    content = oracle.canonical(fields).encode(original.codec)
    genuine = oracle.Genuine(content, alipay_sign(content, sign_type))
    pairs = (*fields.items(), ("sign_type", sign_type.value), ("sign", b64encode(genuine.signature)))
    query = encode_pairs(pairs, original.codec).decode("ascii")
    return ReturnQuery(query, "huge genuine", original, (f"{len(query)} bytes {unit!r} padding",), genuine)


@cache
def return_queries(originals: tuple[GenuineReturn, ...], limit: int) -> st.SearchStrategy[ReturnQuery]:
    """Every source of a return query, mutants weighted most (they are where a forgery would hide)."""
    return st.one_of(
        raw_return_queries(),
        random_return_queries(),
        st.sampled_from(originals).map(genuine_return_query),
        return_mutants(originals, limit),
        return_mutants(originals, limit),
        huge_returns(originals, limit),
    )


# --- (d) Antom notifications: raw bytes and headers ------------------------------------------------------------

JSON_CONTENT_TYPES = [
    "application/json; charset=UTF-8", "application/json", "Application/JSON", " application/json ;charset=utf-8",
    "application/json;charset=GBK", "application/jsonp", "text/json", "text/plain", FORM, "application/json\x00", "",
]  # fmt: skip
antom_content_types = st.one_of(st.sampled_from(JSON_CONTENT_TYPES), st.none(), st.text(max_size=40))
PADDING = [" ", "\t", "  ", "\x0b", "\x0c", "\u3000", "\xa0", "\n", "\r\n", " " * 2100]
ANTOM_HEADER_NAMES = ["client-id", "request-time", "signature"]
ODD_SIGNATURE_HEADERS = [
    "", "algorithm=RSA256", "signature=QUJD", "algorithm=RSA256,signature=", "algorithm=RSA256,signature=QUJD",
    "algorithm=RSA2,keyVersion=1,signature=QUJD", "algorithm=,signature=QUJD", ",,", "=", "algorithm=RSA256,,x",
    "algorithm=RSA256,keyVersion=1,signature=%ZZ", "algorithm=RSA256,signature=" + "A" * 344,
    "algorithm=RSA256,signature=中文", "algorithm=RSA256,signature=%E4%B8%AD",
]  # fmt: skip


@dataclass(frozen=True)
class AntomRequest:
    """A POST to /antom/notify: raw body, the headers as API Gateway hands them over, how it was mutated."""

    body: bytes | None
    headers: dict[str, str]
    content_type: str | None
    as_base64: bool
    steps: tuple[str, ...] = ()
    original: str = ""


def signature_steps(draw: st.DrawFn, header: str) -> tuple[str, str]:
    """One mutation of a ``signature`` header: its pairs, spacing, algorithm, percent-encoding or base64."""
    parts = header.split(",")
    kind = one(draw, ["reorder", "space", "dup", "drop", "algorithm", "unknown", "escape-case", "unescape",
                      "plus", "trim", "bits", "key-version", "odd"])  # fmt: skip
    if kind == "reorder":
        return ",".join(shuffled(draw, parts)), "signature pairs reordered"
    if kind == "space":
        pad = one(draw, [" ", "  ", "\t", "\u3000"])
        joined = (pad + ",").join(parts) if draw(st.booleans()) else ("," + pad).join(parts)
        return joined, f"signature {pad!r} at commas"
    if kind == "dup":
        part = one(draw, parts)
        return ",".join([*parts, part]), f"signature pair {part[:12]!r} twice"
    if kind == "drop":
        i = draw(st.integers(0, len(parts) - 1))
        return ",".join(parts[:i] + parts[i + 1 :]), f"signature pair {i} dropped"
    if kind == "algorithm":
        name = one(draw, ["rsa256", "RSA2", "RSA256 ", "SHA256withRSA", "", "RSA", "RSA2048"])
        return header.replace("algorithm=RSA256", f"algorithm={name}", 1), f"algorithm={name!r}"
    if kind == "unknown":
        return header + one(draw, [",x=1", ",keyVersion=2", ",signature=QUJD", ", ", ","]), "signature extra pair"
    if kind == "escape-case":
        return re.sub(r"%[0-9A-F]{2}", lambda m: m.group(0).lower(), header), "signature escapes in lower case"
    if kind == "unescape":
        return header.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="), "signature unescaped"
    if kind == "plus":
        return header.replace("%2B", " ", 1), "signature %2B as a space"
    if kind == "trim":
        n = draw(st.integers(1, 6))
        return header[:-n], f"signature trimmed by {n}"
    if kind == "bits" and "signature=" in header:
        start = header.index("signature=") + len("signature=")
        encoded = unquote_plus(header[start:])
        other = _same_bytes_other_spelling(encoded, draw(st.integers(1, 15)))
        return header[:start] + quote_plus(other, safe=""), "signature: same bytes, other base64 spelling"
    if kind == "key-version":
        return header.replace("keyVersion=1", one(draw, ["keyVersion=2", "keyVersion=", "keyVersion"])), "keyVersion"
    return one(draw, ODD_SIGNATURE_HEADERS), "signature replaced"


def antom_header_steps(draw: st.DrawFn, headers: dict[str, str], client_id: str) -> tuple[dict[str, str], str]:
    """One mutation of the signed headers: a name's case, a value's padding, a value changed, a header dropped."""
    out = dict(headers)
    name = one(draw, list(out)) if out else "signature"
    kind = one(draw, ["case", "pad", "drop", "client", "time", "signature", "signature", "empty", "extra"])
    if kind == "case" and name in out:
        new = one(draw, [name.upper(), name.title(), name.lower(), name.swapcase()])
        out[new] = out.pop(name)
        return out, f"header {name} named {new}"
    if kind == "pad" and name in out:
        before, after = one(draw, ["", *PADDING]), one(draw, ["", *PADDING])
        out[name] = before + out[name] + after
        return out, f"header {name} padded {before[:4]!r}..{after[:4]!r} ({len(before) + len(after)} chars)"
    if kind == "drop" and name in out:
        del out[name]
        return out, f"header {name} dropped"
    keys = {key.lower(): key for key in out}
    if kind == "client":
        other = one(draw, [client_id + "1", client_id.lower(), "", "SANDBOX_OTHER", client_id[:-1]])
        out[keys.get("client-id", "client-id")] = other
        return out, f"client-id {other!r}"
    if kind == "time" and "request-time" in keys:
        value = out[keys["request-time"]]
        other = one(draw, [value + "1", value[:-1], str(int(value) + 1) if value.isdigit() else value + " ", "0"])
        out[keys["request-time"]] = other
        return out, f"request-time {other!r}"
    if kind == "signature" and "signature" in keys:
        out[keys["signature"]], step = signature_steps(draw, out[keys["signature"]])
        return out, step
    if kind == "empty":
        out[name] = one(draw, ["", " ", "\t"])
        return out, f"header {name} blank"
    extra = one(draw, ["response-time", "x-signature", "signature2", "client_id", "host"])
    out[extra] = "1"
    return out, f"extra header {extra}"


ANTOM_TEXT_SWAPS = [
    ('"8888"', '"8889"'), ('"8888"', '"88880"'), ('"8888"', '"08888"'), ('"8888"', '"88.88"'), ('"8888"', "8888"),
    ('"S"', '"F"'), ('"S"', '"U"'), ('"S"', '"\\u0053"'), ('"USD"', '"JPY"'), ('"USD"', '"usd"'),
    ('"PAYMENT_RESULT"', '"PAYMENT_PENDING"'), ('"PAYMENT_RESULT"', '"REFUND_RESULT"'), ('"SUCCESS"', '"FAIL"'),
    (":", " : "), (",", ", "), ("{", "{ "), ('"paymentRequestId"', '"paymentRequestID"'),
    ('"ORDER-20240101-0001"', '"ORDER-20240101-0002"'), ('"1000"', '"100000"'), ('"r-1"', '"r-2"'),
]  # fmt: skip


def antom_body_steps(draw: st.DrawFn, body: bytes) -> tuple[bytes, str]:
    """One mutation of a JSON body: a token swapped, its members restructured, or bytes changed."""
    kind = one(draw, ["swap", "swap", "structure", "bytes", "trailing", "bom"])
    if kind == "swap":
        old, new = one(draw, ANTOM_TEXT_SWAPS)
        return body.replace(old.encode(), new.encode(), 1), f"replace {old!r} -> {new!r}"
    if kind == "structure":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            return body, "restructure (not UTF-8)"
        restructured, step = json_structure_steps(draw, text)
        return restructured.encode("utf-8", "surrogatepass"), step
    if kind == "trailing":
        tail = one(draw, [b" ", b"\n", b"\r\n", b"\x00", b"}", b",", b"{}"])
        return body + tail, f"append {tail!r}"
    if kind == "bom":
        return b"\xef\xbb\xbf" + body, "UTF-8 BOM"
    return byte_steps(draw, body)


@st.composite
def antom_mutants(draw: st.DrawFn, originals: tuple[GenuineAntom, ...], client_id: str) -> AntomRequest:
    """A genuine Antom notification after 0-3 body and 0-3 header mutations, with its own content type (mostly)."""
    original = one(draw, originals)
    body, headers, steps = original.body, dict(original.headers), []
    for _ in range(draw(st.integers(0, 3))):
        body, step = antom_body_steps(draw, body)
        steps.append(step)
    for _ in range(draw(st.integers(0, 3))):
        headers, step = antom_header_steps(draw, headers, client_id)
        steps.append(step)
    content_type = original.content_type if draw(st.integers(0, 7)) else draw(antom_content_types)
    if content_type != original.content_type:
        steps.append(f"content type {content_type!r}")
    return AntomRequest(body, headers, content_type, draw(st.booleans()), tuple(steps), original.name)


@st.composite
def antom_random_requests(draw: st.DrawFn, client_id: str) -> AntomRequest:
    """Arbitrary bodies (bytes, text, JSON-ish documents) with random or plausible headers."""
    body = draw(
        st.one_of(
            st.binary(max_size=2048),
            st.text(max_size=512).map(lambda t: t.encode("utf-8", "surrogatepass")),
            json_documents().map(lambda t: t.encode("utf-8", "surrogatepass")),
            st.sampled_from([b"", b"{}", b"[]", b"null", b'{"notifyType":"PAYMENT_RESULT"}', b"\xef\xbb\xbf{}"]),
            st.none(),
        )
    )
    headers: dict[str, str] = {}
    for name in ANTOM_HEADER_NAMES:
        if draw(st.integers(0, 4)):
            plausible = {"client-id": client_id, "request-time": "1795710605000"}.get(name)
            headers[name] = plausible if plausible and draw(st.booleans()) else draw(
                st.one_of(st.text(max_size=40), st.sampled_from(ODD_SIGNATURE_HEADERS))
            )
    content_type = draw(st.one_of(st.just("application/json; charset=UTF-8"), antom_content_types))
    return AntomRequest(body, headers, content_type, draw(st.booleans()))


ANTOM_KEYS = [
    "notifyType", "result", "resultStatus", "resultCode", "resultMessage", "paymentRequestId", "paymentId",
    "paymentAmount", "currency", "value", "paymentTime", "refundStatus", "refundRequestId", "refundId",
    "refundAmount", "refundTime", "metadata",
]  # fmt: skip
ANTOM_VALUES = [
    '"PAYMENT_RESULT"', '"PAYMENT_PENDING"', '"REFUND_RESULT"', '"S"', '"F"', '"U"', '"SUCCESS"', '"FAIL"', '"USD"',
    '"JPY"', '"KRW"', '"BHD"', '"XXX"', '"8888"', '"0"', '"1"', '"9999999999999999"', '"99999999999999999"', '""',
    "null", "1", "[]", "{}", '"\\u0000"', '"' + "x" * 129 + '"',
]  # fmt: skip


@st.composite
def antom_documents(draw: st.DrawFn) -> str:
    """A notification-like JSON object: Antom's member names with its values or hostile ones, nested as Antom nests
    them, sometimes with a member nested as deep as the JSON reader allows."""
    def member(name: str) -> str:
        if name in ("result", "paymentAmount", "refundAmount") and draw(st.integers(0, 3)):
            inner = draw(st.lists(st.sampled_from(ANTOM_KEYS), max_size=4, unique=True))
            return "{" + ",".join(f'"{k}":{one(draw, ANTOM_VALUES)}' for k in inner) + "}"
        return one(draw, ANTOM_VALUES) if draw(st.integers(0, 5)) else draw(json_values)

    names = draw(st.lists(st.sampled_from(ANTOM_KEYS), max_size=9, unique=True))
    members = [f'"{name}":{member(name)}' for name in names]
    if not draw(st.integers(0, 7)):
        depth = draw(st.integers(1, 1100))
        opener = one(draw, ["[", '{"a":'])
        members.append('"deep":' + opener * depth + "1" + ("]" if opener == "[" else "}") * depth)
    return "{" + ",".join(shuffled(draw, members)) + "}"
