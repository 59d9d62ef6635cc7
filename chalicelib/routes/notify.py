"""Alipay's asynchronous notifications: ``success`` once verified and durably queued, ``fail`` otherwise."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.http_errors import TEXT, text_errors

notify = Blueprint(__name__)

# Every content type reaches the view: the intake answers a wrong one with 415 and the body ``fail`` (Chalice's
# own 415 would be JSON), and checks it before reading a byte of the body.
FORM_AND_ANY = ["application/x-www-form-urlencoded", "*/*"]


@notify.route("/alipay/notify", methods=["POST"], content_types=FORM_AND_ANY)
@text_errors
def alipay_notify() -> Response:
    from chalicelib.observability import correlation, logger

    request = notify.current_request
    raw = request.raw_body
    body = raw.encode("utf-8") if isinstance(raw, str) else raw
    accepted = services().intake.accept(body, request.headers.get("content-type"))
    with correlation(notify_id=accepted.notify_id, out_trade_no=accepted.out_trade_no):
        logger().info("notification queued", extra={"trade_status": accepted.trade_status})
    # Exactly these 7 bytes: anything else makes Alipay send the notification again.
    return Response(body="success", status_code=200, headers=TEXT)
