"""Operator routes (AWS IAM, under ``/merchant/``): quarantine, event replay, DLQ redrive, the audit log.

Merchant callers only (API Gateway's IAM authorizer, as every ``/merchant/`` route); each action needs a reason and is
recorded with the caller's identity (chalicelib/services/operations.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from chalice import Blueprint, Response

from chalicelib.bootstrap import services
from chalicelib.http_errors import json_errors
from chalicelib.routes.requests import ANY_CONTENT_TYPE, json_body, limit_param

if TYPE_CHECKING:
    from chalicelib.services.operations import OperatorRequest

operator_api = Blueprint(__name__)


def _merchant() -> str:
    from chalicelib.routes.callers import merchant

    return merchant(operator_api.current_request)


def _operator_request() -> OperatorRequest:
    """The caller (a merchant ARN) and the body's ``{"reason"}``, as every operator action takes them."""
    from chalicelib.services.operations import OperatorRequest

    return OperatorRequest.from_json(_merchant(), json_body(operator_api.current_request))


@operator_api.route("/merchant/quarantine", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def list_quarantine() -> Response:
    from chalicelib.services.errors import ValidationError
    from chalicelib.services.operations import quarantine_view

    _merchant()
    query: dict[str, str] = dict(operator_api.current_request.query_params or {})
    state = query.get("state", "open")
    if state not in ("open", "resolved"):
        raise ValidationError("state", "open or resolved")
    records, cursor = services().operations.list_quarantine(
        resolved=state == "resolved", limit=limit_param(query), cursor=query.get("cursor")
    )
    return Response(body={"entries": [quarantine_view(r) for r in records], "next_cursor": cursor})


@operator_api.route("/merchant/quarantine/{entry}", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def get_quarantined(entry: str) -> Response:
    from chalicelib.services.operations import quarantine_view

    _merchant()
    return Response(body=quarantine_view(services().operations.entry(entry)))


@operator_api.route("/merchant/quarantine/{entry}/replay", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def replay_quarantined(entry: str) -> Response:
    request = _operator_request()
    return Response(body=services().operations.replay(entry, request))


@operator_api.route("/merchant/quarantine/{entry}/dismiss", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def dismiss_quarantined(entry: str) -> Response:
    request = _operator_request()
    return Response(body=services().operations.dismiss(entry, request))


@operator_api.route("/merchant/orders/{out_trade_no}/events/replay", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def replay_order_events(out_trade_no: str) -> Response:
    request = _operator_request()
    return Response(body=services().operations.replay_events(out_trade_no, request))


@operator_api.route("/merchant/redrive", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def redrive() -> Response:
    from chalicelib.services.errors import ValidationError
    from chalicelib.services.operations import DEFAULT_REDRIVE_BATCH, MAX_REDRIVE_BATCH, OperatorRequest

    body = json_body(operator_api.current_request)
    request = OperatorRequest.from_json(_merchant(), body, allowed=frozenset({"max_messages"}))
    assert isinstance(body, dict)  # from_json accepted it as an object
    wanted = body.get("max_messages", DEFAULT_REDRIVE_BATCH)
    if isinstance(wanted, bool) or not isinstance(wanted, int) or not 1 <= wanted <= MAX_REDRIVE_BATCH:
        raise ValidationError("max_messages", f"a whole number from 1 to {MAX_REDRIVE_BATCH}")
    return Response(body=services().operations.redrive(request, wanted))


@operator_api.route("/merchant/audit", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def audit_log() -> Response:
    from chalicelib.services.operations import audit_view

    _merchant()
    query: dict[str, str] = dict(operator_api.current_request.query_params or {})
    entries, cursor = services().operations.audit_log(limit_param(query), query.get("cursor"))
    return Response(body={"entries": [audit_view(e) for e in entries], "next_cursor": cursor})


@operator_api.route("/merchant/quarantine/{entry}/return", methods=["POST"], content_types=ANY_CONTENT_TYPE)
@json_errors
def return_quarantined_money(entry: str) -> Response:
    request = _operator_request()
    return Response(body=services().operations.return_money(entry, request))


@operator_api.route("/merchant/refunds/pending", methods=["GET"], content_types=ANY_CONTENT_TYPE)
@json_errors
def pending_refunds() -> Response:
    _merchant()
    query: dict[str, str] = dict(operator_api.current_request.query_params or {})
    return Response(body={"refunds": services().operations.pending_refunds(limit_param(query))})


@operator_api.route(
    "/merchant/orders/{out_trade_no}/refunds/{out_request_no}/settle", methods=["POST"], content_types=ANY_CONTENT_TYPE
)
@json_errors
def settle_refund(out_trade_no: str, out_request_no: str) -> Response:
    request = _operator_request()
    return Response(body=services().operations.settle_refund(out_trade_no, out_request_no, request))
