"""Strict parsing of ``application/x-www-form-urlencoded`` bodies and Alipay's canonical signed content."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from functools import cache

from .errors import CharsetError, MalformedMessage

_KEY = rb"[A-Za-z0-9_.\-]{1,64}"


# Alipay sends these charsets; GB2312 and GBK bodies both decode as GB18030's GBK subset.
_CHARSETS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "gbk": "gbk",
    "gb2312": "gbk",
    "gb18030": "gb18030",
}


def codec_for(charset: str) -> str:
    """The Python codec for an Alipay ``charset`` value (case-insensitive); ``CharsetError`` if unknown."""
    codec = _CHARSETS.get(charset.strip().lower())
    if codec is None:
        raise CharsetError(f"unsupported charset {charset!r}")
    return codec


class RawForm:
    """A form body split into field names and percent-decoded value bytes, in the order sent."""

    # A plain class: a namedtuple would cost ~0.1 ms at every cold start, and no Lambda function parses a raw form.
    __slots__ = ("keys", "values")

    def __init__(self, keys: list[str], values: list[bytes]) -> None:
        self.keys = keys
        self.values = values

    def get(self, key: str) -> bytes | None:
        try:
            return self.values[self.keys.index(key)]
        except ValueError:
            return None

    def decode(self, codec: str) -> dict[str, str]:
        """Decode every value with ``codec``, strictly."""
        names = [key.encode("ascii") for key in self.keys]
        return _decode_form(b"\x00".join(b"%s\x00%s" % pair for pair in zip(names, self.values, strict=True)), codec)


def _decode_form(form: bytes, codec: str) -> dict[str, str]:
    """Decode a split form (``_split_form``) with ``codec``, strictly, into a dict by field name; no name twice."""
    # NUL cannot occur in a name or a value (refused by _split_form) nor inside a UTF-8/GBK/GB18030 character, so the
    # whole form is decoded in one call and split again.
    try:
        text = form.decode(codec)
    except UnicodeDecodeError as exc:
        raw = form.split(b"\x00")
        bad = next((k for k, v in zip(raw[0::2], raw[1::2], strict=True) if not _decodes(v, codec)), b"?")
        raise CharsetError(f"field {bad.decode('ascii')!r} is not valid {codec}") from exc
    items = text.split("\x00")
    pairs = iter(items)
    fields = dict(zip(pairs, pairs, strict=True))  # name, value, name, value, ...
    if len(fields) << 1 != len(items):  # the dict is built anyway: cheaper than a set of the names first
        _refuse_duplicates(items[0::2])
    return fields


def _refuse_duplicates(keys: list[str]) -> None:
    if len(set(keys)) != len(keys):
        duplicate = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise MalformedMessage(f"duplicate field {duplicate!r}")


def _decodes(value: bytes, codec: str) -> bool:
    try:
        value.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


# Every byte but the separators and NUL: deleting them leaves a body's shape, "=&=&...=" when each part holds one '='
# and the body no NUL.
_NOT_SEPARATORS = bytes(range(256)).translate(None, b"&=\x00")
# Both separators to NUL: a body of that shape becomes "name NUL value NUL name NUL value ...".
_SEPARATORS_TO_NUL = bytes.maketrans(b"&=", b"\x00\x00")


def parse_form(body: bytes) -> RawForm:
    """Split a form body strictly: every part ``k=v``, valid percent escapes, no NUL, no duplicate or odd keys."""
    items = _split_form(body).split(b"\x00")
    keys = [name.decode("ascii") for name in items[0::2]]
    _refuse_duplicates(keys)
    return RawForm(keys, items[1::2])


# The pattern and the escape table are built on first use (~0.25 ms at import otherwise, on every cold start).
@cache
def _split_pattern() -> re.Pattern[bytes]:
    """A split form of valid names (possessive: neither a name nor a value holds NUL, so never backtrack)."""
    name, value = _KEY + rb"+\x00", rb"[^\x00]*+"
    return re.compile(rb"(?:" + name + value + rb"\x00)*+" + name + value)


def _split_form(body: bytes) -> bytes:
    """``parse_form``'s work: the names and the percent-decoded values, each followed by NUL but the last (which none
    can hold): ``b"name\\0value\\0name\\0value"``.

    Done in a handful of C-level passes (this is the webhook's hot path): the shape by one ``bytes.translate``, both
    separators made NUL by another, every name checked by one regex, the whole form percent-decoded at once. A name
    sent twice is left to the caller, which builds a dict of the fields anyway (``_decode_form``).
    """
    if not body or body.isspace():
        raise MalformedMessage("empty body")
    # Fast path: Alipay percent-encodes '=' and '&' inside values, so the separators alone read "=&=&...=": each
    # part holds exactly one '=' and none is empty, and no NUL was kept. Anything else takes the exact path.
    shape = body.translate(None, _NOT_SEPARATORS)
    if shape == b"=&" * (len(shape) >> 1) + b"=":
        form = body.translate(_SEPARATORS_TO_NUL)
        separators = len(shape)
    else:
        parts = _split_parts(body)
        if b"\x00" in body:
            raise MalformedMessage(_why_malformed(body))
        form = b"\x00".join(parts)
        separators = len(parts) - 1
    if _split_pattern().fullmatch(form) is None:  # names are checked before percent-decoding: "%41" is no name
        raise MalformedMessage(_why_malformed(body))
    if b"%" in form or b"+" in form:
        # '+' is a space; %XX becomes \xXX for the C escape decoder, literal backslashes are doubled first.
        escaped = form.replace(b"\\", b"\\\\").replace(b"+", b" ").replace(b"%", b"\\x")
        try:
            form = codecs.escape_decode(escaped)[0]
        except ValueError as exc:  # a '%' not followed by two hex digits
            raise MalformedMessage("bad percent-encoding") from exc
        # The body holds no NUL, so a form holding one more came from %00: one count instead of a search for it.
        if form.count(b"\x00") != separators:
            raise MalformedMessage("bad percent-encoding: %00")
    return form


def _split_parts(body: bytes) -> list[bytes]:
    """Names and raw values part by part, alternating: empty parts skipped ("a=1&&b=2", a trailing '&'), '=' inside
    values."""
    parts = [part for part in body.split(b"&") if part]
    if not parts:
        raise MalformedMessage("empty body")
    triples = [part.partition(b"=") for part in parts]
    if any(not eq for _, eq, _ in triples):
        raise MalformedMessage(_why_malformed(body))
    return [item for name, _, value in triples for item in (name, value)]


def _why_malformed(body: bytes) -> str:
    """Name the first offending part (off the hot path: only once the fast split has failed)."""
    for part in body.split(b"&"):
        if not part:
            continue
        key, eq, _ = part.partition(b"=")
        if b"\x00" in part:
            return "NUL byte in the body"
        if not eq:
            return "form part without '=' (truncated or not a form body)"
        try:
            name = key.decode("ascii")
        except UnicodeDecodeError:
            return "non-ASCII field name"
        if "%" in name:
            return "non-ASCII or percent-encoded field name (Alipay's field names are plain ASCII)"
        if not re.fullmatch(_KEY.decode(), name):
            return f"invalid field name {name[:64]!r}"
    return "not a form body"


def parse_form_text(body: bytes, *, charset_field: str, default_charset: str) -> tuple[dict[str, str], str]:
    """Parse and decode a form body: the declared ``charset_field`` wins, else ``default_charset``."""
    fields, codec, _ = parse_form_text_and_bytes(body, charset_field, default_charset)
    return fields, codec


def parse_form_text_and_bytes(
    body: bytes, charset_field: str, default_charset: str
) -> tuple[dict[str, str], str, bytes]:
    """``parse_form_text``, and the split form's bytes (``_split_form``): a verifier searches them for a byte in one
    C-level pass: for ``&``, the same answer as searching the decoded values (no name holds one, and no byte of a
    multibyte UTF-8, GBK or GB18030 character is below 0x30)."""
    form = _split_form(body)
    if form.isascii():  # nearly always: then the text is the same in every charset Alipay uses, so decode it first
        fields = _decode_form(form, "ascii")
        return fields, codec_for(fields.get(charset_field) or default_charset), form
    declared = None
    items = form.split(b"\x00")
    names = items[0::2]
    if len(set(names)) != len(names):  # before the charset is read: a duplicate is malformed, whatever its charset
        _refuse_duplicates([name.decode("ascii") for name in names])
    name = charset_field.encode("ascii")
    if name in names:
        declared = items[2 * names.index(name) + 1]
    if declared:
        try:
            charset = declared.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CharsetError("charset value is not ASCII") from exc
    else:
        charset = default_charset
    codec = codec_for(charset)
    return _decode_form(form, codec), codec, form


def signed_content(fields: Mapping[str, str], exclude: Iterable[str]) -> str:
    """Alipay's canonical content: drop ``exclude`` and empty values, sort keys, join ``k=v`` with ``&``."""
    return joined_content(covered_fields(fields, exclude))


def covered_fields(fields: Mapping[str, str], exclude: Iterable[str]) -> dict[str, str]:
    """The fields Alipay's signature covers: a new dict without ``exclude`` and without empty values."""
    kept = dict(fields)
    for key in exclude:
        kept.pop(key, None)
    if "" in kept.values():
        kept = {k: v for k, v in kept.items() if v}
    return kept


def joined_content(covered: Mapping[str, str]) -> str:
    """Sort ``covered`` and join ``k=v`` with ``&``: no copy and no filtering (``covered_fields`` did that).

    For a verifier that tries several readings of the same fields without rebuilding each.
    """
    # Sorting the keys alone and looking each value up is cheaper than sorting (key, value) pairs.
    return "&".join([f"{key}={covered[key]}" for key in sorted(covered)])


def quoted_content(pairs: Iterable[tuple[str, str]]) -> str:
    """The legacy order-string form: ``k="v"`` joined with ``&``, values neither escaped nor encoded."""
    return "&".join(f'{k}="{v}"' for k, v in pairs)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


@cache
def _form_escapes() -> list[str]:
    """One entry per byte value: itself when unreserved, '+' for a space, else %XX (what quote_plus(safe="") gives)."""
    return [chr(b) if b in _UNRESERVED else "+" if b == 0x20 else f"%{b:02X}" for b in range(256)]


_UNRESERVED_BYTES = bytes(sorted(_UNRESERVED))
# Codecs in which ASCII text is its own bytes (Alipay's charsets): there, text can be escaped as text.
_ASCII_COMPATIBLE = frozenset({"utf-8", "utf8", "gbk", "gb2312", "gb18030", "ascii"})
_PERCENT, _PLUS = ord("%"), ord("+")
_PERCENT_AND_PLUS = (_PERCENT, _PLUS)


@cache
def _ascii_escapes() -> dict[int, tuple[str, str]]:
    """Each reserved ASCII byte but '%' and '+': the character and what it is replaced with."""
    escapes = _form_escapes()
    return {b: (chr(b), escapes[b]) for b in range(128) if b not in _UNRESERVED and b not in _PERCENT_AND_PLUS}


def form_quote(value: str, encoding: str = "utf-8") -> str:
    """``urllib.parse.quote_plus(value, safe="")``, faster on the order-signing path.

    ASCII text (nearly every value we send: the sign, the JSON of ``biz_content``, URLs, timestamps) is escaped by one
    ``str.replace`` per distinct reserved character (found by one ``bytes.translate`` deleting the unreserved ones):
    C-level passes instead of a Python step per byte. ``%`` goes first (every escape adds one) and ``+`` before the
    space (which becomes ``+``). Other text takes the table, byte by byte.
    """
    if value.isascii() and (encoding in _ASCII_COMPATIBLE or encoding.lower() in _ASCII_COMPATIBLE):
        reserved = value.encode("ascii").translate(None, _UNRESERVED_BYTES)
        if not reserved:
            return value
        if _PERCENT in reserved:
            value = value.replace("%", "%25")
        if _PLUS in reserved:
            value = value.replace("+", "%2B")
        escapes = _ascii_escapes()
        for byte in set(reserved).difference(_PERCENT_AND_PLUS):
            char, escape = escapes[byte]
            value = value.replace(char, escape)
        return value
    return "".join(map(_form_escapes().__getitem__, value.encode(encoding)))
