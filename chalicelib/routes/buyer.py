"""Buyer routes (the user pool authorizer): order from the catalogue, read and list one's own orders, report results."""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.http_errors import json_errors
from chalicelib.routes.requests import ANY_CONTENT_TYPE, json_body, limit_param

buyer_api = Blueprint(__name__)


def _buyer() -> str:
    from chalicelib.routes.callers import buyer

    return buyer(buyer_api.current_request, services().config.cognito_client_ids)


@buyer_api.route("/orders", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def create_order() -> Response:
    from chalicelib.services.commands import BuyerOrder

    buyer = _buyer()
    command = BuyerOrder.from_json(json_body(buyer_api.current_request))
    key = buyer_api.current_request.headers.get("idempotency-key")
    created = services().orders.create_for_buyer(command, buyer, key)
    headers: dict[str, str | list[str]] = {"Idempotent-Replayed": "true"} if created.replayed else {}
    return Response(body=dict(created.body), status_code=created.status_code, headers=headers)


@buyer_api.route("/orders", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def list_orders() -> Response:
    from chalicelib.services.views import buyer_order_view

    buyer = _buyer()
    query: dict[str, str] = dict(buyer_api.current_request.query_params or {})
    orders, cursor = services().orders.list_for_buyer(buyer, limit_param(query), query.get("cursor"))
    return Response(body={"orders": [buyer_order_view(o) for o in orders], "next_cursor": cursor})


@buyer_api.route("/orders/{out_trade_no}", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def get_order(out_trade_no: str) -> Response:
    from chalicelib.services.views import buyer_order_view

    return Response(body=buyer_order_view(services().orders.get_for_buyer(out_trade_no, _buyer())))


@buyer_api.route("/orders/{out_trade_no}/client-result", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def report_client_result(out_trade_no: str) -> Response:
    buyer = _buyer()
    payload = json_body(buyer_api.current_request)
    result = services().client_results.check(out_trade_no, payload, buyer=buyer)
    return Response(body=result.to_json())
