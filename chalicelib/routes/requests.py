"""Reading a JSON request: one place for the content type, the body and the paging parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping

from chalice.app import Request

# Every route admits every content type, so that Chalice never answers 415 in its own shape ({"Code", "Message"}):
# a JSON route refuses another type in this API's error format (415, below); a route without a body ignores it.
ANY_CONTENT_TYPE = ["application/json", "*/*"]
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
REPLACEMENT_CHARACTER = "\ufffd".encode()


def json_body(request: Request) -> object:
    """The decoded JSON body; ``UnsupportedMediaType`` or ``BadRequest`` otherwise."""
    from chalicelib.services.errors import BadRequest, InvalidUtf8, UnsupportedMediaType

    content_type = request.headers.get("content-type")
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"expected application/json, got {content_type[:80]!r}")
    raw = request.raw_body or b""
    # API Gateway passes a text body to the function as a string, each byte that is not UTF-8 replaced by U+FFFD:
    # the function never sees the bytes, only the replacement. Refused, rather than stored and signed as U+FFFD;
    # a client that means U+FFFD can send it escaped (\ufffd), which JSON reads as the same character.
    if REPLACEMENT_CHARACTER in raw:
        raise InvalidUtf8("the body is not valid UTF-8 (a byte sequence that is not UTF-8, or a raw U+FFFD)")
    if not raw.strip():
        raise BadRequest("the body is empty: expected a JSON object")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except (ValueError, RecursionError):  # RecursionError: json's answer to absurdly deep nesting
        raise BadRequest("the body is not valid JSON") from None


def limit_param(query: Mapping[str, str]) -> int:
    """``?limit=``: 1 to 100, default 20; ``ValidationError`` otherwise."""
    from chalicelib.services.errors import ValidationError

    text = query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValidationError("limit", f"must be a whole number from 1 to {MAX_LIMIT}")
    return int(text)
