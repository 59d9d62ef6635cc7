"""Merchant routes (AWS IAM): the catalogue, orders with an amount, any order in full, refunds.

For the merchant's backend and its operators; every change records the caller's IAM identity.
"""

from __future__ import annotations

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.http_errors import json_errors
from chalicelib.routes.requests import ANY_CONTENT_TYPE, json_body

merchant_api = Blueprint(__name__)


def _merchant() -> str:
    from chalicelib.routes.callers import merchant

    return merchant(merchant_api.current_request)


@merchant_api.route("/merchant/products", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def list_products() -> Response:
    from chalicelib.services.views import product_view

    _merchant()
    return Response(body={"products": [product_view(p) for p in services().catalogue.all()]})


@merchant_api.route("/merchant/products/{sku}", methods=["PUT"], content_types=ANY_CONTENT_TYPE)
@json_errors
def put_product(sku: str) -> Response:
    from chalicelib.services.views import product_view

    by = _merchant()
    product, created = services().catalogue.put(sku, json_body(merchant_api.current_request), by)
    return Response(body=product_view(product), status_code=201 if created else 200)


@merchant_api.route("/merchant/products/{sku}", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def get_product(sku: str) -> Response:
    from chalicelib.services.views import product_view

    _merchant()
    return Response(body=product_view(services().catalogue.get(sku)))


@merchant_api.route("/merchant/products/{sku}", methods=["DELETE"], content_types=ANY_CONTENT_TYPE)
@json_errors
def delete_product(sku: str) -> Response:
    _merchant()
    services().catalogue.delete(sku)
    return Response(body="", status_code=204)


@merchant_api.route("/merchant/orders", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def create_order() -> Response:
    from chalicelib.services.commands import CreateOrder

    by = _merchant()
    command = CreateOrder.from_json(json_body(merchant_api.current_request))
    key = merchant_api.current_request.headers.get("idempotency-key")
    created = services().orders.create(command, key, created_by=by)
    headers: dict[str, str | list[str]] = {"Idempotent-Replayed": "true"} if created.replayed else {}
    return Response(body=dict(created.body), status_code=created.status_code, headers=headers)


@merchant_api.route("/merchant/orders/{out_trade_no}", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def get_order(out_trade_no: str) -> Response:
    from chalicelib.services.views import merchant_order_view

    _merchant()
    return Response(body=merchant_order_view(services().orders.get(out_trade_no)))


@merchant_api.route("/merchant/orders/{out_trade_no}/refunds", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def refund_order(out_trade_no: str) -> Response:
    by = _merchant()
    body = json_body(merchant_api.current_request)
    view = services().refunds.refund(out_trade_no, body, requested_by=by)
    # 201 only when Alipay confirmed the money moved; 202 while the refund is pending (the sweep settles it).
    return Response(body=view, status_code=201 if view["status"] == "REFUND_SUCCESS" else 202)
