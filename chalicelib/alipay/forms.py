"""Strict parsing of ``application/x-www-form-urlencoded`` bodies and Alipay's canonical signed content."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from functools import cache

from .errors import CharsetError, MalformedMessage

_KEY = rb"[A-Za-z0-9_.\-]{1,64}"


# The patterns and the escape table are built on first use (~0.25 ms at import otherwise, on every cold start).
@cache
def _keys() -> re.Pattern[bytes]:
    """Every field name, joined by NUL, checked in one pass."""
    return re.compile(_KEY + rb"(?:\x00" + _KEY + rb")*")


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
        return _decode_joined(self.keys, b"\x00".join(self.values), codec)


def _decode_joined(keys: list[str], joined: bytes, codec: str) -> dict[str, str]:
    """Decode the NUL-joined values with ``codec``, strictly, into a dict by field name."""
    # NUL cannot occur in a value (rejected in _split_form) nor inside a UTF-8/GBK multibyte sequence, so the
    # values are decoded in one call and split again.
    try:
        text = joined.decode(codec)
    except UnicodeDecodeError as exc:
        values = joined.split(b"\x00")
        bad = next((k for k, v in zip(keys, values, strict=True) if not _decodes(v, codec)), "?")
        raise CharsetError(f"field {bad!r} is not valid {codec}") from exc
    return dict(zip(keys, text.split("\x00"), strict=True))


def _decodes(value: bytes, codec: str) -> bool:
    try:
        value.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


# Every byte but the separators: deleting them leaves a body's shape, "=&=&...=" when each part holds one '='.
_NOT_SEPARATORS = bytes(range(256)).translate(None, b"&=")


def parse_form(body: bytes) -> RawForm:
    """Split a form body strictly: every part ``k=v``, valid percent escapes, no NUL, no duplicate or odd keys."""
    keys, joined = _split_form(body)
    return RawForm(keys, joined.split(b"\x00"))


def _split_form(body: bytes) -> tuple[list[str], bytes]:
    """``parse_form``'s work: the field names, and the percent-decoded values joined by NUL (which none can hold).

    Done in a handful of C-level passes (this is the webhook's hot path): the shape by one ``bytes.translate``,
    names checked by one regex over them all, values percent-decoded all at once.
    """
    if not body or body.isspace():
        raise MalformedMessage("empty body")
    # Fast path: Alipay percent-encodes '=' and '&' inside values, so the separators alone read "=&=&...=": each
    # part holds exactly one '=' and none is empty. Anything else takes the exact part-by-part path.
    shape = body.translate(None, _NOT_SEPARATORS)
    if shape == b"=&" * (len(shape) >> 1) + b"=":
        flat = body.replace(b"=", b"&").split(b"&")
        names, values = flat[0::2], flat[1::2]
    else:
        names, values = _split_parts(body)
    names_joined = b"\x00".join(names)
    if b"\x00" in body or _keys().fullmatch(names_joined) is None:
        raise MalformedMessage(_why_malformed(body))
    keys = names_joined.decode("ascii").split("\x00")
    if len(set(keys)) != len(keys):
        duplicate = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise MalformedMessage(f"duplicate field {duplicate!r}")
    joined = b"\x00".join(values)
    if b"%" in joined or b"+" in joined:
        # '+' is a space; %XX becomes \xXX for the C escape decoder, literal backslashes are doubled first.
        escaped = joined.replace(b"\\", b"\\\\").replace(b"+", b" ").replace(b"%", b"\\x")
        try:
            joined = codecs.escape_decode(escaped)[0]
        except ValueError as exc:  # a '%' not followed by two hex digits
            raise MalformedMessage("bad percent-encoding") from exc
        # The body holds no NUL, so a value holding one more came from %00: one count instead of a search for it.
        if joined.count(b"\x00") != len(keys) - 1:
            raise MalformedMessage("bad percent-encoding: %00")
    return keys, joined


def _split_parts(body: bytes) -> tuple[list[bytes], list[bytes]]:
    """Names and raw values part by part: empty parts skipped ("a=1&&b=2", a trailing '&'), '=' inside values."""
    parts = [part for part in body.split(b"&") if part]
    if not parts:
        raise MalformedMessage("empty body")
    triples = [part.partition(b"=") for part in parts]
    if any(not eq for _, eq, _ in triples):
        raise MalformedMessage(_why_malformed(body))
    return [name for name, _, _ in triples], [value for _, _, value in triples]


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
    keys, joined = _split_form(body)
    declared = None
    if charset_field in keys:
        index = keys.index(charset_field)
        declared = joined.split(b"\x00", index + 1)[index]
    if declared:
        try:
            charset = declared.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CharsetError("charset value is not ASCII") from exc
    else:
        charset = default_charset
    codec = codec_for(charset)
    return _decode_joined(keys, joined, codec), codec


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


def form_quote(value: str, encoding: str = "utf-8") -> str:
    """``urllib.parse.quote_plus(value, safe="")``, faster on the order-signing path.

    ASCII text (nearly every value we send: the sign, the JSON of ``biz_content``, URLs, timestamps) is escaped by one
    ``str.replace`` per distinct reserved character (found by one ``bytes.translate`` deleting the unreserved ones):
    C-level passes instead of a Python step per byte. ``%`` goes first (every escape adds one) and ``+`` before the
    space (which becomes ``+``). Other text takes the table, byte by byte.
    """
    if value.isascii() and encoding.lower() in _ASCII_COMPATIBLE:
        reserved = value.encode("ascii").translate(None, _UNRESERVED_BYTES)
        if not reserved:
            return value
        if _PERCENT in reserved:
            value = value.replace("%", "%25")
        if _PLUS in reserved:
            value = value.replace("+", "%2B")
        for byte in set(reserved).difference((_PERCENT, _PLUS)):
            value = value.replace(chr(byte), _form_escapes()[byte])
        return value
    return "".join(map(_form_escapes().__getitem__, value.encode(encoding)))
