"""Alipay's asynchronous notifications: acknowledged once verified and durably queued, refused otherwise.

``/alipay/notify`` takes Open Platform's and the legacy protocol's forms (answer ``success``, else ``fail``);
``/antom/notify`` takes Antom's signed JSON (answer its fixed JSON acknowledgement, else a JSON error). Each answers
``404 not_found`` on a stage of another protocol (nothing of that protocol listens there).
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.http_errors import TEXT, json_errors, text_errors

if TYPE_CHECKING:
    from aws_lambda_powertools.logging import Logger

    from chalicelib.services.notifications import Accepted

notify = Blueprint(__name__)

# Every content type reaches the view: the intake answers a wrong one with 415 and the body ``fail`` (Chalice's
# own 415 would be JSON), and checks it before reading a byte of the body.
FORM_AND_ANY = ["application/x-www-form-urlencoded", "*/*"]


@notify.route("/alipay/notify", methods=["POST"], content_types=FORM_AND_ANY)
def alipay_notify() -> Response:
    request = notify.current_request
    return answer_alipay(lambda: request.raw_body, request.headers.get("content-type"))


# Each protocol's acknowledgement is one answer, built once (its headers dict was already shared: TEXT, JSON).
ALIPAY_SUCCESS = Response(body="success", status_code=200, headers=TEXT)  # exactly these 7 bytes, else Alipay resends


@text_errors
def answer_alipay(read_body: Callable[[], str | bytes], content_type: str | None) -> Response:
    """A form notification's answer: ``success`` once verified and queued, else ``fail`` with the error's status."""
    _require_protocol(antom=False)
    raw = read_body()
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    accepted = services().intake.accept(body, content_type)
    _log_queued(accepted)
    return ALIPAY_SUCCESS


# Exactly what Antom expects back; anything else makes it send the notification again (chalicelib/alipay/antom.py).
ANTOM_ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}
ANTOM_SUCCESS = Response(body=ANTOM_ACK, status_code=200, headers=JSON)


@notify.route("/antom/notify", methods=["POST"], content_types=["application/json", "*/*"])
def antom_notify() -> Response:
    request = notify.current_request
    return answer_antom(lambda: request.raw_body, dict(request.headers.items()))  # names lower-cased by Chalice


@json_errors
def answer_antom(read_body: Callable[[], str | bytes], headers: dict[str, str]) -> Response:
    """An Antom notification's answer: its fixed acknowledgement once verified and queued, else a JSON error.

    ``headers``: the request's, by lower-case name."""
    _require_protocol(antom=True)
    raw = read_body()
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    accepted = services().intake.accept(body, headers.get("content-type"), headers)
    _log_queued(accepted)
    return ANTOM_SUCCESS


# The hot path, taken by every payment: answered from API Gateway's proxy event without Chalice's generic request
# handling (its request object, handler chain, content-type matching and response checks: ~17 us of the webhook's CPU,
# docs/testing.md). Same answer as through Chalice, byte for byte (tests/unit/test_direct_notify.py), while the app has
# no binary media types and no HTTP middleware (app.AlipayGlobal checks) and these routes admit every content type
# and no CORS. Chalice still declares the routes: API Gateway's resources and the local emulator's come from them.
DIRECT_ROUTES = {"/alipay/notify": False, "/antom/notify": True}  # resource path: whether it is Antom's


def answer_directly(event: Mapping[str, Any]) -> dict[str, Any] | None:
    """A notification's proxy response, or None for any other request (Chalice answers it)."""
    context = event.get("requestContext") or {}
    antom = DIRECT_ROUTES.get(context.get("resourcePath") or "")
    if antom is None or context.get("httpMethod") != "POST":
        return None
    # As Chalice reads a request: header names case-insensitive (the last of a name wins).
    headers = event.get("headers") or {}
    if antom:
        lowered = {name.lower(): value for name, value in headers.items()}
        response = answer_antom(lambda: _proxy_body(event), lowered)
    else:
        response = answer_alipay(lambda: _proxy_body(event), _content_type(headers))
    if response is ALIPAY_SUCCESS or response is ANTOM_SUCCESS:
        # What to_dict() makes of it (a text body, one value per header), without sorting its headers each time.
        return {"headers": dict(response.headers), "multiValueHeaders": {}, "statusCode": 200, "body": response.body}
    # Without binary types (the caller's condition) there is no body to base64-encode: no list to match against.
    return response.to_dict()


def _content_type(headers: dict[str, str]) -> str | None:
    """The last header named Content-Type in any case: what Chalice's lower-cased copy of them all would hold."""
    for name in reversed(headers):
        if name.lower() == "content-type":
            return headers[name]
    return None


def _proxy_body(event: Mapping[str, Any]) -> str | bytes:
    """The body as Chalice's ``Request.raw_body`` reads it: none is empty, a base64 one decoded."""
    raw: str | bytes | None = event.get("body")
    if raw is None:
        return b""
    if event.get("isBase64Encoded"):
        return base64.b64decode(raw.encode("ascii") if isinstance(raw, str) else raw)
    return raw


def _log_queued(accepted: Accepted) -> None:
    """One line per queued notification, its ids as keys of that line: no correlation keys to add and remove for
    a block holding a single line (Powertools' append_keys and remove_keys cost more than the line)."""
    notify_id, out_trade_no = accepted.notify_id, accepted.out_trade_no
    keys = {"notify_id": notify_id, "out_trade_no": out_trade_no, "trade_status": accepted.trade_status}
    if not (notify_id and out_trade_no):  # the ids as correlation() would add them: none empty
        keys = {name: value for name, value in keys.items() if value or name == "trade_status"}
    _logger().info("notification queued", extra=keys)


@cache
def _logger() -> Logger:
    """The JSON logger, found once: an import statement in every request costs more than the line's keys."""
    from chalicelib.observability import logger  # on first use: Powertools loads with it, not at import of app

    return logger()


def _require_protocol(*, antom: bool) -> None:
    protocol = services().config.protocol
    if (protocol == "antom") != antom:
        from chalicelib.services.errors import OtherProtocolsRoute

        where = "/antom/notify" if protocol == "antom" else "/alipay/notify"
        raise OtherProtocolsRoute(f"this stage runs the {protocol} protocol: its notifications go to {where}")
