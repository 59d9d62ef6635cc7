"""Alipay's asynchronous notifications: acknowledged once verified and durably queued, refused otherwise.

``/alipay/notify`` takes Open Platform's and the legacy protocol's forms (answer ``success``, else ``fail``);
``/antom/notify`` takes Antom's signed JSON (answer its fixed JSON acknowledgement, else a JSON error). Each answers
``404 not_found`` on a stage of another protocol (nothing of that protocol listens there).
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

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
@text_errors
def alipay_notify() -> Response:
    request = notify.current_request
    _require_protocol(antom=False)
    raw = request.raw_body
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    accepted = services().intake.accept(body, request.headers.get("content-type"))
    _log_queued(accepted)
    # Exactly these 7 bytes: anything else makes Alipay send the notification again.
    return Response(body="success", status_code=200, headers=TEXT)


# Exactly what Antom expects back; anything else makes it send the notification again (chalicelib/alipay/antom.py).
ANTOM_ACK = '{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
JSON: dict[str, str | list[str]] = {"Content-Type": "application/json"}


@notify.route("/antom/notify", methods=["POST"], content_types=["application/json", "*/*"])
@json_errors
def antom_notify() -> Response:
    request = notify.current_request
    _require_protocol(antom=True)
    raw = request.raw_body
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    headers = dict(request.headers.items())
    accepted = services().intake.accept(body, request.headers.get("content-type"), headers)
    _log_queued(accepted)
    return Response(body=ANTOM_ACK, status_code=200, headers=JSON)


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
