"""Errors map to HTTP once, by type, here: one table for the JSON API and the webhook alike.

JSON routes answer ``{"code", "message"}``; the webhook answers the same status with the text ``fail``
(Alipay reads only the body). Anything not in the table is a bug: logged with its traceback, answered 500.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from functools import cache
from typing import NamedTuple, ParamSpec

from chalice import Response

P = ParamSpec("P")

TEXT: dict[str, str | list[str]] = {"Content-Type": "text/plain; charset=utf-8"}


class HttpError(NamedTuple):
    """How one error is answered (a NamedTuple: ``dataclasses`` would cost ``import app`` ~5 ms of ``inspect``)."""

    status: int
    code: str
    message: str
    headers: dict[str, str | list[str]]  # built per answer: chalice may add to them
    field: str | None = None  # invalid_field: which field, as the request named it (e.g. items[0].sku)
    out_request_no: str | None = None  # a refund's answer: the refund the error interrupted, for the retry to reuse


@cache
def _table() -> tuple[tuple[type[Exception], int, str], ...]:
    # Imported on the first error, not with app.py: the ports pull in the whole domain.
    from chalicelib.services import errors as e
    from chalicelib.services.ports import (
        NotSupported,
        OrderExists,
        PaymentRefused,
        PortError,
        RefundRefused,
        Unavailable,
    )

    return (
        (e.BadRequest, 400, "bad_request"),
        (e.InvalidUtf8, 400, "invalid_utf8"),
        (e.NotificationRejected, 400, "rejected"),
        (e.ReturnRejected, 400, "return_rejected"),
        (e.Unauthenticated, 401, "unauthorized"),
        (e.OrderNotFound, 404, "not_found"),
        (e.ProductNotFound, 404, "not_found"),
        (e.QuarantineEntryNotFound, 404, "not_found"),
        (e.RefundNotFound, 404, "not_found"),
        (e.OtherProtocolsRoute, 404, "not_found"),
        (e.NothingToReturn, 409, "nothing_to_return"),
        (e.AlreadyResolved, 409, "already_resolved"),
        (e.NotReplayable, 409, "not_replayable"),
        (e.NotConfigured, 501, "not_configured"),
        (OrderExists, 409, "order_exists"),
        (e.IdempotencyKeyReused, 409, "idempotency_key_reused"),
        (e.IdempotencyKeyInProgress, 409, "idempotency_key_in_progress"),
        (e.NotRefundable, 409, "not_refundable"),
        (e.RefundRequestConflict, 409, "out_request_no_reused"),
        (e.PayloadTooLarge, 413, "payload_too_large"),
        (e.UnsupportedMediaType, 415, "unsupported_media_type"),
        (e.ValidationError, 422, "invalid_field"),
        (RefundRefused, 409, "refund_refused"),
        (PaymentRefused, 502, "payment_refused"),
        (NotSupported, 501, "not_supported"),
        (Unavailable, 503, "unavailable"),
        # Any other failure a dependency reported (e.g. Alipay's gateway refusing a call): not ours to fix, and
        # never a success; Alipay retries a notification answered this way.
        (PortError, 502, "dependency_failed"),
    )


def http_error(exc: Exception) -> HttpError:
    """The answer to ``exc``: by its type; 500 for anything unexpected."""
    from chalicelib.services.ports import Unavailable

    for error_type, status, code in _table():
        if isinstance(exc, error_type):
            headers: dict[str, str | list[str]] = {}
            if isinstance(exc, Unavailable):
                headers["Retry-After"] = str(max(1, exc.retry_after))
            return HttpError(
                status, code, str(exc), headers, getattr(exc, "field", None), getattr(exc, "out_request_no", None)
            )
    return HttpError(500, "internal_error", "an internal error occurred", {})


def _log(exc: Exception, error: HttpError) -> None:
    from chalicelib.observability import logger

    log = logger()
    extra = {"status": error.status, "code": error.code, "reason": getattr(exc, "reason", None)}
    if error.status == 500:
        log.exception("unexpected error", extra=extra)
    elif error.status >= 500:
        log.warning("dependency unavailable: %s", exc, extra=extra)
    else:
        log.info("request refused: %s", exc, extra=extra)


def _answering(view: Callable[P, Response], render: Callable[[HttpError], Response]) -> Callable[P, Response]:
    """``view``, with every exception answered by the table and shaped by ``render``."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Response:
        try:
            return view(*args, **kwargs)
        except Exception as exc:
            error = http_error(exc)
            _log(exc, error)
            return render(error)

    return wrapper


def json_errors(view: Callable[P, Response]) -> Callable[P, Response]:
    """Answer every exception of a JSON route by the table, as ``{"code", "message"}``."""
    return _answering(view, _json_answer)


def text_errors(view: Callable[P, Response]) -> Callable[P, Response]:
    """Answer every exception of the webhook by the table, with the body ``fail`` (never an unhandled 500)."""
    return _answering(view, _text_answer)


def html_errors(view: Callable[P, Response]) -> Callable[P, Response]:
    """Answer every exception of a browser-facing route by the table, as an HTML error page (never a success page)."""
    return _answering(view, _html_answer)


def _json_answer(error: HttpError) -> Response:
    body = {"code": error.code, "message": error.message}
    if error.field is not None:
        body["field"] = error.field
    if error.out_request_no is not None:
        body["out_request_no"] = error.out_request_no
    return Response(body=body, status_code=error.status, headers=error.headers)


def _text_answer(error: HttpError) -> Response:
    return Response(body="fail", status_code=error.status, headers={**TEXT, **error.headers})


def _html_answer(error: HttpError) -> Response:
    from chalicelib.routes.pages import HTML_HEADERS, error_page

    return Response(
        body=error_page(error.status, error.code),
        status_code=error.status,
        headers={**HTML_HEADERS, **error.headers},
    )
