"""docs/openapi.yaml as a contract, tested against a running local stack: property-based requests (schemathesis)
to every operation it lists, each sent as the caller the route admits (a buyer with the identity provider's ID
token, the merchant signing with SigV4, the public routes as they are): no answer is a 5xx, and every answer's
status, content type, headers and body are ones the spec documents for that operation.

Half the generated ``out_trade_no`` and ``sku`` values are swapped for ones that exist (an order made out to the
buyer, paid; a catalogue product), so that the success answers are exercised too, not only the 404s. Both valid
requests (``positive``) and requests that break the spec (``negative``: wrong types, missing fields, values out of
range) are generated. ``API_CONTRACT_EXAMPLES`` sets the examples per operation and mode (default 25, the
``make test`` tier, about a minute); the long tier (``make test-long``, marker ``long_contract``) runs 150, unseeded.
"""

from __future__ import annotations

import json
import os
import uuid
from collections import defaultdict
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, settings
from schemathesis import Case, GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.stack import PROJECT_DIR
from tests.e2e.conftest import BUYER, LocalStack, wait_for

SPEC = PROJECT_DIR / "docs" / "openapi.yaml"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
QUICK_EXAMPLES = 25
LONG_EXAMPLES = 150


def load_schema(max_examples: int) -> Any:
    schema = schemathesis.openapi.from_path(SPEC)
    # The caller's credentials come from CallerAuth below, never from generated Authorization headers.
    schema.config.generation.update(
        modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        max_examples=max_examples,
        with_security_parameters=False,
        database="none",
    )
    return schema


QUICK = load_schema(int(os.environ.get("API_CONTRACT_EXAMPLES", QUICK_EXAMPLES)))
LONG = load_schema(LONG_EXAMPLES)


class CallerAuth(requests.auth.AuthBase):
    """Sends each request as the caller its route admits: buyer routes with the ID token, merchant routes signed."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        path = urlsplit(request.url or "").path
        request.headers.pop("Authorization", None)
        if path == "/orders" or path.startswith("/orders/"):
            request.headers["Authorization"] = f"Bearer {self._stack.buyer_token(BUYER)}"
        elif path.startswith("/merchant/"):
            body = request.body.encode() if isinstance(request.body, str) else (request.body or b"")
            headers = {"Host": urlsplit(self._stack.api).netloc, **request.headers}
            signed = AWSRequest(method=request.method, url=request.url, data=body, headers=headers)
            keys = self._stack.info["merchant_credentials"]
            credentials = Credentials(keys["access_key_id"], keys["secret_access_key"])
            SigV4Auth(credentials, "execute-api", self._stack.info["region"]).add_auth(signed)
            request.headers.update(dict(signed.headers.items()))
        return request


SEEN: dict[str, list[int]] = {}


TSHIRT = "contract-tshirt"  # in the catalogue throughout: buyers order it, GET finds it
SPARE = "contract-spare"  # what generated PUTs and DELETEs address: created and deleted over and over
# Operations whose success needs Alipay's signature: generated requests can only be refused.
SIGNED_BY_ALIPAY = {"POST /alipay/notify", "GET /alipay/return"}
# Antom's webhook on this (Open Platform) stage: nothing listens there, whatever is sent.
OTHER_PROTOCOLS = {"POST /antom/notify"}
DOCUMENT = yaml.safe_load(SPEC.read_text(encoding="utf-8"))
OPERATIONS = [(m.upper(), p) for p, item in DOCUMENT["paths"].items() for m in item if m != "parameters"]
ERROR_CODES = set(DOCUMENT["components"]["schemas"]["Error"]["properties"]["code"]["enum"])
# What each operation answered, by status: to show that the cases reached its success answers too.
ANSWERED: dict[str, set[int]] = defaultdict(set)


class Known:
    """What exists on the stack, for generated cases to address now and then."""

    order = ""
    entry = ""  # a quarantined notification's entry id
    money_entry = ""  # another, holding captured money: for the return route (a dismiss would resolve the first)
    refund = "rq-contract"  # a refund of the paid order


@pytest.fixture(scope="module")
def contract_stack(openapi_stack: LocalStack) -> LocalStack:
    """The stack with a catalogue product and a paid order of the buyer's, made through the API."""
    stack = openapi_stack
    product = {"subject": "Contract T-shirt", "prices": {"USD": "12.50", "HKD": "98.00"}}
    answer = stack.merchant.request("PUT", f"/merchant/products/{TSHIRT}", product)
    assert answer.status in (200, 201), answer.body
    order = stack.create_order("30.00", buyer=BUYER)
    stack.pay(order["order_info"])
    stack.wait_for_status(order["out_trade_no"], "TRADE_SUCCESS")
    Known.order = order["out_trade_no"]
    refunded = stack.refund(Known.order, {"amount": "1.00", "out_request_no": Known.refund})
    assert refunded.status in (201, 202), refunded.body
    # Payments for orders the shop lost: acknowledged to Alipay and kept in quarantine, for the operator routes.
    Known.entry = quarantined_payment_for_a_lost_order(stack)
    Known.money_entry = quarantined_payment_for_a_lost_order(stack)
    return stack


def quarantined_payment_for_a_lost_order(stack: LocalStack) -> str:
    """A payment for an order the shop's table lost (deleted while the buyer paid): its quarantine entry's id."""
    lost = stack.create_order("23.00", "USD", out_trade_no=f"lost-{uuid.uuid4().hex[:12]}")
    stack.dynamodb.delete_item(TableName=stack.info["orders_table"], Key={"pk": {"S": f"order#{lost['out_trade_no']}"}})
    stack.pay(lost["order_info"])

    def quarantined() -> str | None:
        listed = stack.merchant.get("/merchant/quarantine").json()
        return next((e["id"] for e in listed["entries"] if e["out_trade_no"] == lost["out_trade_no"]), None)

    return wait_for("the lost order's payment in quarantine", quarantined)


def _even(value: object) -> bool:
    # Deterministic in the generated value, so that hypothesis can replay and shrink a failing case.
    return isinstance(value, str) and len(value) % 2 == 0


def address_known_things(case: Case) -> None:
    """Every other generated ``out_trade_no``, ``sku`` and ordered line is replaced by one that exists, so that
    both the found and the not-found answers are checked."""
    method = case.operation.method.upper()
    parameters = case.path_parameters or {}
    if _even(parameters.get("out_trade_no")):
        parameters["out_trade_no"] = Known.order
    if _even(parameters.get("sku")):
        parameters["sku"] = TSHIRT if method == "GET" else SPARE
    if _even(parameters.get("entry")):
        parameters["entry"] = Known.money_entry if case.operation.path.endswith("/return") else Known.entry
    if _even(parameters.get("out_request_no")):
        parameters["out_request_no"] = Known.refund
    if case.operation.path == "/orders" and isinstance(case.body, dict) and isinstance(case.body.get("items"), list):
        for line in case.body["items"]:
            if isinstance(line, dict) and _even(line.get("sku")):
                line["sku"] = TSHIRT
        if _even(case.body.get("currency")):
            case.body["currency"] = "USD"


def check_documented(case: Case, response: requests.Response) -> None:
    """Stricter than schemathesis's own checks, which let a case that breaks the spec on purpose get any 4xx: the
    status is one the operation lists (API Gateway's 403 for a method the route does not have), and every JSON
    error is exactly ``{"code", "message", "field"?}`` with a listed code (``field`` always for invalid_field)."""
    operation = DOCUMENT["paths"][case.operation.path][case.operation.method.lower()]
    sent = (response.request.method or "").upper()
    documented = {403} if sent != case.operation.method.upper() else {int(status) for status in operation["responses"]}
    assert response.status_code in documented, (
        f"{sent} {case.operation.path} answered {response.status_code}, not one of {sorted(documented)}: "
        f"{response.text[:300]}"
    )
    if response.status_code >= 400 and response.headers.get("Content-Type", "").startswith("application/json"):
        error = response.json()
        assert isinstance(error, dict), response.text
        assert {"code", "message"} <= set(error) <= {"code", "message", "field"}, error
        assert error["code"] in ERROR_CODES, error
        assert isinstance(error["message"], str), error
        assert error["message"], error
        if error["code"] == "invalid_field":
            assert isinstance(error.get("field"), str), error


def call_and_check(case: Case, stack: LocalStack) -> None:
    address_known_things(case)
    if case.operation.method.upper() == "POST" and case.operation.path in ("/orders", "/merchant/orders"):
        case.headers = {**(case.headers or {}), "Idempotency-Key": uuid.uuid4().hex}
    response = case.call(base_url=stack.api, auth=CallerAuth(stack), timeout=30, allow_redirects=False)
    if (response.request.method or "").upper() == case.operation.method.upper():
        ANSWERED[f"{case.operation.method.upper()} {case.operation.path}"].add(response.status_code)
    case.validate_response(response, checks=CHECKS)
    check_documented(case, response)


COMMON = settings(
    deadline=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
    suppress_health_check=list(HealthCheck),
)


def run_operation(schema: Any, method: str, path: str, stack: LocalStack, given: settings) -> None:
    """Every phase schemathesis has (explicit examples, coverage: the edges and the deliberate breaches of the spec,
    fuzzing) for one operation, each case called and checked. Built with the builder ``schema.parametrize()`` uses:
    that decorator gives every operation's pytest item the same node id, so pytest-xdist (make test) would run
    only one of them; parametrized here, each operation is an item of its own."""
    from schemathesis.generation.feedback import FeedbackSources
    from schemathesis.pytest._test_builder import build_operation_test

    def check(case: Case) -> None:
        call_and_check(case, stack)

    test = build_operation_test(
        config=schema.config,
        operation=schema[path][method],
        test_func=check,
        given_kwargs={},
        feedback=FeedbackSources(),
        explicit_settings=given,
    )
    test()


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_of_every_operation_is_one_the_spec_documents(
    contract_stack: LocalStack, method: str, path: str
) -> None:
    run_operation(QUICK, method, path, contract_stack, COMMON)


@pytest.mark.long_contract
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_every_answer_matches_the_spec_over_many_more_random_cases(
    contract_stack: LocalStack, method: str, path: str
) -> None:
    run_operation(LONG, method, path, contract_stack, settings(COMMON, derandomize=False))


@pytest.mark.parametrize("method", ["TRACE", "PROPFIND", "CONNECT"])
def test_a_method_no_route_has_is_the_gateways_403_in_the_error_shape(contract_stack: LocalStack, method: str) -> None:
    # The schemathesis run found http.server's 501 HTML page here: the local gateway now answers every method.
    answer = contract_stack.http.request(method, f"{contract_stack.api}/health", timeout=10)
    assert answer.status_code == 403, answer.text
    assert answer.json() == {"code": "forbidden", "message": f"Missing Authentication Token: no route {method} /health"}


@pytest.mark.parametrize(
    "request_bytes",
    [b"GARBAGE\r\n\r\n", b"POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: lots\r\n\r\n"],
    ids=["request line", "Content-Length"],
)
def test_a_malformed_http_request_is_400_in_the_error_shape(contract_stack: LocalStack, request_bytes: bytes) -> None:
    import socket

    address = urlsplit(contract_stack.api)
    with socket.create_connection((address.hostname, address.port), timeout=10) as connection:
        connection.sendall(request_bytes)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0].split(b" ")[1] == b"400", answer
    assert b"Content-Type: application/json" in head, answer
    error = json.loads(body)
    assert error["code"] == "bad_request"
    assert error["message"]


def test_the_cases_reached_every_operation_and_its_success_answers() -> None:
    """The property above is only as good as its cases: each operation was called, and each one whose success
    does not need Alipay's signature answered a 2xx at least once (not only refusals)."""
    operations = {f"{method.upper()} {path}" for path, item in DOCUMENT["paths"].items() for method in item}
    operations = {name for name in operations if not name.startswith("PARAMETERS ")}  # path-level parameters
    assert set(ANSWERED) == operations, f"never called: {sorted(operations - set(ANSWERED))}"
    for name in sorted(operations - SIGNED_BY_ALIPAY - OTHER_PROTOCOLS):
        assert any(200 <= status < 300 for status in ANSWERED[name]), f"{name}: only {sorted(ANSWERED[name])}"
    for name in sorted(OTHER_PROTOCOLS):
        assert ANSWERED[name] <= {404, 415}, f"{name}: answered {sorted(ANSWERED[name])} on another protocol's stage"
    for name in sorted(SIGNED_BY_ALIPAY):
        assert ANSWERED[name] <= {400, 415}, f"{name}: a forged request was answered {sorted(ANSWERED[name])}"
