"""The notification routes answered straight from API Gateway's event (``app.AlipayGlobal``), without Chalice's
generic request handling: for every kind of request the webhook sees, the very answer Chalice gives, and the very
messages queued."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from chalice import Chalice
from chalice.app import RestAPIEventHandler

from app import app
from chalicelib import bootstrap
from chalicelib.routes.notify import DIRECT_ROUTES, answer_directly
from chalicelib.services.ports import Unavailable
from devstack.lambda_runtime import LambdaContext
from tests import antom_kit
from tests.alipay_fixtures import alipay_key, notification_body, openapi_notification_fields
from tests.unit.services_kit import ANTOM_CLIENT_ID, NOW, Kit, make_kit

FORM = "application/x-www-form-urlencoded; charset=utf-8"


def genuine() -> str:
    return notification_body(openapi_notification_fields(), alipay_key()).decode()


def antom_refund() -> tuple[str, dict[str, str]]:
    body = antom_kit.refund_notification("rf-1")
    sent_at = str(int(NOW.timestamp() * 1000))
    return body.decode(), antom_kit.sign(body, key=alipay_key(), client_id=ANTOM_CLIENT_ID, time=sent_at)


@dataclass(frozen=True)
class Case:
    path: str
    body: str | None
    headers: dict[str, str] | None
    protocol: str = "openapi"
    base64_encoded: bool = False
    method: str = "POST"
    prepare: Callable[[Kit], None] = field(default=lambda kit: None)

    def event(self) -> dict[str, Any]:
        """A REST API proxy event as API Gateway hands it to the function."""
        headers = None if self.headers is None else {"Host": "pay.example.com", **self.headers}
        return {
            "resource": self.path,
            "path": self.path,
            "httpMethod": self.method,
            "headers": headers,
            "multiValueHeaders": None if headers is None else {name: [value] for name, value in headers.items()},
            "queryStringParameters": None,
            "multiValueQueryStringParameters": None,
            "pathParameters": None,
            "stageVariables": None,
            "requestContext": {"resourcePath": self.path, "httpMethod": self.method, "stage": "api"},
            "body": self.body,
            "isBase64Encoded": self.base64_encoded,
        }


def _failing_queue(kit: Kit) -> None:
    kit.queue.fail_with(Unavailable("SQS throttled", retry_after=3))


REFUND, REFUND_HEADERS = antom_refund()
CASES = {
    "genuine": Case("/alipay/notify", genuine(), {"Content-Type": FORM}),
    "header-name-in-capitals": Case("/alipay/notify", genuine(), {"CONTENT-TYPE": FORM}),
    "two-content-types-the-last-a-form": Case(
        "/alipay/notify", genuine(), {"content-type": "application/json", "Content-Type": FORM}
    ),
    "two-content-types-the-last-json": Case(
        "/alipay/notify", genuine(), {"Content-Type": FORM, "CONTENT-TYPE": "application/json"}
    ),
    "tampered": Case("/alipay/notify", genuine().replace("TRADE_SUCCESS", "TRADE_FINISHED"), {"Content-Type": FORM}),
    "malformed": Case("/alipay/notify", "a=1&a=2", {"Content-Type": FORM}),
    "wrong-content-type": Case("/alipay/notify", genuine(), {"Content-Type": "application/json"}),
    "no-content-type": Case("/alipay/notify", genuine(), {}),
    "no-headers-at-all": Case("/alipay/notify", genuine(), None),
    "no-body": Case("/alipay/notify", None, {"Content-Type": FORM}),
    "empty-body": Case("/alipay/notify", "", {"Content-Type": FORM}),
    "oversized": Case("/alipay/notify", "a=" + "b" * 70_000, {"Content-Type": FORM}),
    "base64-body": Case(
        "/alipay/notify", base64.b64encode(genuine().encode()).decode(), {"Content-Type": FORM}, base64_encoded=True
    ),
    "base64-body-that-is-not": Case("/alipay/notify", "abc", {"Content-Type": FORM}, base64_encoded=True),
    "queue-outage": Case("/alipay/notify", genuine(), {"Content-Type": FORM}, prepare=_failing_queue),
    "alipay-route-on-an-antom-stage": Case("/alipay/notify", genuine(), {"Content-Type": FORM}, protocol="antom"),
    "antom-genuine": Case("/antom/notify", REFUND, {"Content-Type": "application/json", **REFUND_HEADERS}, "antom"),
    "antom-unsigned": Case("/antom/notify", REFUND, {"Content-Type": "application/json"}, protocol="antom"),
    "antom-form": Case("/antom/notify", "a=b", {"Content-Type": FORM}, protocol="antom"),
    "antom-route-on-an-openapi-stage": Case("/antom/notify", REFUND, {"Content-Type": "application/json"}),
}


def answered(case: Case, handler: Callable[[dict[str, Any], Any], Any]) -> tuple[Any, list[str]]:
    """``handler``'s answer to ``case`` over services of their own, and the messages it queued."""
    kit = make_kit(case.protocol)
    case.prepare(kit)
    bootstrap.use(kit.services)
    try:
        answer = handler(case.event(), LambdaContext("api_handler"))
    finally:
        bootstrap.use(None)
    return answer, [message.to_json() for message in kit.queue.messages]


def through_chalice(event: dict[str, Any], context: Any) -> Any:
    return Chalice.__call__(app, event, context)


def refuse_notifications_in_chalice(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chalice's REST handling fails any notification it is handed: an answer given took the direct path."""
    handle = RestAPIEventHandler.__call__

    def handle_unless_notification(self: RestAPIEventHandler, event: dict[str, Any], context: Any) -> Any:
        assert event["requestContext"]["resourcePath"] not in DIRECT_ROUTES, "answered by Chalice, not directly"
        return handle(self, event, context)

    monkeypatch.setattr(RestAPIEventHandler, "__call__", handle_unless_notification)


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_direct_answer_is_chalices_answer(case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as only_direct:
        refuse_notifications_in_chalice(only_direct)
        direct = answered(case, app)
    assert direct == answered(case, through_chalice)


def test_the_notification_routes_are_declared_as_the_direct_path_reads_them() -> None:
    # Chalice would check a narrower content type, or add CORS headers, on its path alone.
    for path in DIRECT_ROUTES:
        route = app.routes[path]["POST"]
        assert "*/*" in route.content_types
        assert route.cors is None
    assert {path for path in app.routes if path.endswith("/notify")} == set(DIRECT_ROUTES)


def test_with_a_binary_media_type_notifications_go_through_chalice(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app.api, "binary_types", ["text/plain"])
    event = CASES["genuine"].event()
    assert answered(CASES["genuine"], app) == answered(CASES["genuine"], through_chalice)
    assert answer_directly(event) is not None  # the path itself would answer: app.AlipayGlobal did not take it


def test_with_http_middleware_notifications_go_through_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    def middleware(event: Any, get_response: Callable[[Any], Any]) -> Any:
        seen.append(event.path)
        return get_response(event)

    monkeypatch.setattr(app, "middleware_handlers", [(middleware, "http")])
    answer, queued = answered(CASES["genuine"], app)
    assert (answer["statusCode"], len(queued), seen) == (200, 1, ["/alipay/notify"])


def test_the_cases_cover_acceptance_and_each_kind_of_refusal() -> None:
    statuses = {answered(case, app)[0]["statusCode"] for case in CASES.values()}
    assert statuses == {200, 400, 404, 413, 415, 500, 503}
    assert answered(CASES["genuine"], app)[0]["body"] == "success"
    assert answered(CASES["antom-genuine"], app)[0]["statusCode"] == 200


@pytest.mark.parametrize(
    ("path", "method"), [("/alipay/notify", "GET"), ("/health", "GET"), ("/merchant/orders", "POST")]
)
def test_any_other_request_is_left_to_chalice(path: str, method: str) -> None:
    case = Case(path, None, {}, method=method)
    assert answer_directly(case.event()) is None
