"""The JSON API for the app: create and read orders, and report the SDK's callback."""

from __future__ import annotations

import json

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.http_errors import json_errors

api = Blueprint(__name__)

# Every content type reaches the view, so that a wrong one is answered in this API's error format (415).
ANY_CONTENT_TYPE = ["application/json", "*/*"]


def _json_body() -> object:
    from chalicelib.services.errors import BadRequest, UnsupportedMediaType

    request = api.current_request
    content_type = request.headers.get("content-type")
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        raise UnsupportedMediaType(f"expected application/json, got {content_type[:80]!r}")
    try:
        return json.loads(request.raw_body or b"")
    except (ValueError, RecursionError):  # RecursionError: json's answer to absurdly deep nesting
        raise BadRequest("the body is not valid JSON") from None


@api.route("/orders", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def create_order() -> Response:
    from chalicelib.services.commands import CreateOrder

    command = CreateOrder.from_json(_json_body())
    created = services().orders.create(command, api.current_request.headers.get("idempotency-key"))
    headers: dict[str, str | list[str]] = {"Idempotent-Replayed": "true"} if created.replayed else {}
    return Response(body=dict(created.body), status_code=created.status_code, headers=headers)


@api.route("/orders/{out_trade_no}", methods=["GET"])
@json_errors
def get_order(out_trade_no: str) -> Response:
    from chalicelib.services.views import order_view

    return Response(body=order_view(services().orders.get(out_trade_no)))


@api.route("/orders/{out_trade_no}/client-result", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def report_client_result(out_trade_no: str) -> Response:
    result = services().client_results.check(out_trade_no, _json_body())
    return Response(body=result.to_json())


@api.route("/orders/{out_trade_no}/refunds", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def refund_order(out_trade_no: str) -> Response:
    return Response(body=services().refunds.refund(out_trade_no, _json_body()), status_code=201)
