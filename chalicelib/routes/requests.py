"""Reading a JSON request: one place for the content type, the body and the paging parameters."""

from __future__ import annotations

import json
from collections.abc import Mapping

from chalice.app import Request

# Every content type reaches the view, so that a wrong one is answered in this API's error format (415).
ANY_CONTENT_TYPE = ["application/json", "*/*"]
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def json_body(request: Request) -> object:
    """The decoded JSON body; ``UnsupportedMediaType`` or ``BadRequest`` otherwise."""
    from chalicelib.services.errors import BadRequest, UnsupportedMediaType

    content_type = request.headers.get("content-type")
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"expected application/json, got {content_type[:80]!r}")
    try:
        return json.loads(request.raw_body or b"")
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
