"""Strict parsing of ``application/x-www-form-urlencoded`` bodies and Alipay's canonical signed content."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from .errors import CharsetError, MalformedMessage

_KEY = rb"[A-Za-z0-9_.\-]{1,64}"
# Every field name, joined by NUL, checked in one pass.
_KEYS = re.compile(_KEY + rb"(?:\x00" + _KEY + rb")*")
_KEY_NAME = re.compile(_KEY.decode())

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


class RawForm(NamedTuple):
    """A form body split into field names and percent-decoded value bytes, in the order sent."""

    keys: list[str]
    values: list[bytes]

    def get(self, key: str) -> bytes | None:
        try:
            return self.values[self.keys.index(key)]
        except ValueError:
            return None

    def decode(self, codec: str) -> dict[str, str]:
        """Decode every value with ``codec``, strictly."""
        # NUL cannot occur in a value (rejected in parse_form) nor inside a UTF-8/GBK multibyte sequence, so
        # the values can be decoded in one call and split again.
        try:
            text = b"\x00".join(self.values).decode(codec)
        except UnicodeDecodeError as exc:
            bad = next((k for k, v in zip(self.keys, self.values, strict=True) if not _decodes(v, codec)), "?")
            raise CharsetError(f"field {bad!r} is not valid {codec}") from exc
        return dict(zip(self.keys, text.split("\x00"), strict=True))


def _decodes(value: bytes, codec: str) -> bool:
    try:
        value.decode(codec)
    except UnicodeDecodeError:
        return False
    return True


def parse_form(body: bytes) -> RawForm:
    """Split a form body strictly: every part ``k=v``, valid percent escapes, no NUL, no duplicate or odd keys.

    Done in a handful of C-level passes (this is the webhook's hot path): names checked by one regex over them
    all, values percent-decoded all at once, joined by NUL, which no value can hold.
    """
    if not body or body.isspace():
        raise MalformedMessage("empty body")
    parts = body.split(b"&")
    if b"" in parts:  # tolerate "a=1&&b=2" and a trailing "&": no field is lost by it
        parts = [part for part in parts if part]
        if not parts:
            raise MalformedMessage("empty body")
        body = b"&".join(parts)
    # Fast path: Alipay percent-encodes '=' inside values, so each part holds exactly one '='; the rebuild
    # check proves it. Anything else takes the exact part-by-part path.
    flat = body.replace(b"=", b"&").split(b"&")
    names, values = flat[0::2], flat[1::2]
    if len(flat) != 2 * len(parts) or list(map(b"=".join, zip(names, values, strict=True))) != parts:
        triples = [part.partition(b"=") for part in parts]
        if any(not eq for _, eq, _ in triples):
            raise MalformedMessage(_why_malformed(body))
        names = [name for name, _, _ in triples]
        values = [value for _, _, value in triples]
    names_joined = b"\x00".join(names)
    if b"\x00" in body or _KEYS.fullmatch(names_joined) is None:
        raise MalformedMessage(_why_malformed(body))
    joined = b"\x00".join(values)
    keys = names_joined.decode("ascii").split("\x00")
    if len(set(keys)) != len(keys):
        duplicate = next(k for i, k in enumerate(keys) if k in keys[:i])
        raise MalformedMessage(f"duplicate field {duplicate!r}")
    if b"%" in joined or b"+" in joined:
        # '+' is a space; %XX becomes \xXX for the C escape decoder, literal backslashes are doubled first.
        escaped = joined.replace(b"\\", b"\\\\").replace(b"+", b" ").replace(b"%", b"\\x")
        try:
            joined = codecs.escape_decode(escaped)[0]
        except ValueError as exc:  # a '%' not followed by two hex digits
            raise MalformedMessage("bad percent-encoding") from exc
        decoded = joined.split(b"\x00")
        # The body holds no NUL, so a value that splits in two held %00: one count instead of a search for it.
        if len(decoded) != len(keys):
            raise MalformedMessage("bad percent-encoding: %00")
        return RawForm(keys, decoded)
    return RawForm(keys, joined.split(b"\x00"))


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
        if not _KEY_NAME.fullmatch(name):
            return f"invalid field name {name[:64]!r}"
    return "not a form body"


def parse_form_text(body: bytes, *, charset_field: str, default_charset: str) -> tuple[dict[str, str], str]:
    """Parse and decode a form body: the declared ``charset_field`` wins, else ``default_charset``."""
    form = parse_form(body)
    declared = form.get(charset_field)
    if declared:
        try:
            charset = declared.decode("ascii")
        except UnicodeDecodeError as exc:
            raise CharsetError("charset value is not ASCII") from exc
    else:
        charset = default_charset
    codec = codec_for(charset)
    return form.decode(codec), codec


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
    # Keys are unique, so sorting (key, value) pairs orders by key alone.
    return "&".join(map("=".join, sorted(covered.items())))


def quoted_content(pairs: Iterable[tuple[str, str]]) -> str:
    """The legacy order-string form: ``k="v"`` joined with ``&``, values neither escaped nor encoded."""
    return "&".join(f'{k}="{v}"' for k, v in pairs)


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
# One entry per byte value: itself when unreserved, '+' for a space, else %XX (what quote_plus(safe="") gives).
_FORM_ESCAPES = [chr(b) if b in _UNRESERVED else "+" if b == 0x20 else f"%{b:02X}" for b in range(256)]
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
            value = value.replace(chr(byte), _FORM_ESCAPES[byte])
        return value
    return "".join(map(_FORM_ESCAPES.__getitem__, value.encode(encoding)))
