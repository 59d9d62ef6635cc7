"""Strict parsing of ``application/x-www-form-urlencoded`` bodies and Alipay's canonical signed content."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from .errors import CharsetError, MalformedMessage

_BAD_PERCENT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,64}")

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


@dataclass(frozen=True, slots=True)
class RawForm:
    """A form body split into percent-decoded key/value bytes, in the order sent."""

    pairs: tuple[tuple[str, bytes], ...]

    def get(self, key: str) -> bytes | None:
        for k, v in self.pairs:
            if k == key:
                return v
        return None

    def decode(self, codec: str) -> dict[str, str]:
        """Decode every value with ``codec``, strictly."""
        out: dict[str, str] = {}
        try:
            for k, v in self.pairs:
                out[k] = v.decode(codec)
        except UnicodeDecodeError as exc:
            raise CharsetError(f"field {k!r} is not valid {codec}") from exc
        return out


def _unquote(value: bytes) -> bytes:
    if b"%" in value:
        if _BAD_PERCENT.search(value):
            raise MalformedMessage("bad percent-encoding")
        value = unquote_to_bytes(value.replace(b"+", b" "))
    elif b"+" in value:
        value = value.replace(b"+", b" ")
    return value


def parse_form(body: bytes) -> RawForm:
    """Split a form body strictly: every part ``k=v``, valid percent escapes, no duplicate or odd keys."""
    if not body or not body.strip():
        raise MalformedMessage("empty body")
    pairs: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    for part in body.split(b"&"):
        if not part:
            continue  # tolerate "a=1&&b=2" and a trailing "&": no field is lost by it
        key_raw, eq, value = part.partition(b"=")
        if not eq:
            raise MalformedMessage("form part without '=' (truncated or not a form body)")
        try:
            key = _unquote(key_raw).decode("ascii")
        except UnicodeDecodeError as exc:
            raise MalformedMessage("non-ASCII field name") from exc
        if not _KEY.fullmatch(key):
            raise MalformedMessage(f"invalid field name {key[:64]!r}")
        if key in seen:
            raise MalformedMessage(f"duplicate field {key!r}")
        seen.add(key)
        pairs.append((key, _unquote(value)))
    if not pairs:
        raise MalformedMessage("empty body")
    return RawForm(tuple(pairs))


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
    skip = frozenset(exclude)
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k not in skip and fields[k] != "")


def quoted_content(pairs: Iterable[tuple[str, str]]) -> str:
    """The legacy order-string form: ``k="v"`` joined with ``&``, values neither escaped nor encoded."""
    return "&".join(f'{k}="{v}"' for k, v in pairs)


def is_known_codec(name: str) -> bool:
    """Whether Python knows the codec (used by the signature doctor to try alternatives)."""
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True
