"""The client examples of docs/clients.md use the API as docs/openapi.yaml documents it: every route each one calls
(method and path), every field it sends or reads, every order status it compares with, and the SDK's result codes,
each handled. The Kotlin and Swift examples are not compiled or run here; this is how far they are checked. The
JavaScript ones also run against a local stack (tests/e2e/test_client_examples.py)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
APPS = {
    "apicloud": EXAMPLES / "apicloud" / "checkout.js",
    "android": EXAMPLES / "android" / "AlipayCheckout.kt",
    "ios": EXAMPLES / "ios" / "AlipayCheckout.swift",
}
WEB = EXAMPLES / "web" / "checkout.js"
RESULT_CODES = {"9000", "8000", "6001", "6002", "6004", "5000", "4000"}
APP_CALLS = {("POST", "/orders"), ("POST", "/orders/{out_trade_no}/client-result"), ("GET", "/orders/{out_trade_no}")}
WEB_CALLS = {("POST", "/orders"), ("GET", "/orders/{out_trade_no}")}

# A call: the method as a literal, then the path: literals, interpolations (Kotlin $x, Swift \(x)) and, in
# JavaScript, `+ encodeURIComponent(x) +` between literals.
CALL = re.compile(r'"(GET|POST|PUT|DELETE)",\s*("[^"]*"(?:\s*\+\s*encodeURIComponent\(\w+\)(?:\s*\+\s*"[^"]*")?)*)')
STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"')


@cache
def spec() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8")))


def schema(name: str) -> dict[str, Any]:
    return dict(spec()["components"]["schemas"][name])


def properties(name: str) -> set[str]:
    return set(schema(name)["properties"])


@cache
def every_property() -> frozenset[str]:
    """Every property name any schema of the spec has, at any depth."""
    found: set[str] = set()

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("properties"), dict):
                found.update(node["properties"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec())
    return frozenset(found)


def calls(source: str) -> set[tuple[str, str]]:
    """The (method, path template) pairs a source calls the API with."""
    found = set()
    for method, expression in CALL.findall(source):
        path = re.sub(r'"\s*\+\s*encodeURIComponent\(\w+\)\s*(\+\s*")?', "{out_trade_no}", expression).strip('"')
        path = re.sub(r"\$\{?\w+\}?|\\\(\w+\)", "{out_trade_no}", path)
        found.add((method, path))
    return found


def literals(path: Path) -> set[str]:
    """The names a source spells: string literals, and in JavaScript also object keys and property accesses (a JSON
    body is an object literal there, and an answer's fields are read as properties)."""
    source = path.read_text(encoding="utf-8")
    found = set(STRING.findall(source))
    if path.suffix == ".js":
        found |= set(re.findall(r"\b([A-Za-z_]\w*)\s*:(?!/)", source)) | set(re.findall(r"\.([A-Za-z_]\w*)\b", source))
    return found


def documented(method: str, path: str) -> bool:
    return method.lower() in spec()["paths"].get(path, {})


@pytest.mark.parametrize("name", sorted(APPS))
def test_an_app_example_calls_exactly_the_buyer_routes_the_spec_documents(name: str) -> None:
    used = calls(APPS[name].read_text(encoding="utf-8"))
    assert used == APP_CALLS
    assert all(documented(method, path) for method, path in used)


def test_the_web_example_calls_the_buyer_routes_the_spec_documents() -> None:
    used = calls(WEB.read_text(encoding="utf-8"))
    assert used == WEB_CALLS
    assert all(documented(method, path) for method, path in used)


@pytest.mark.parametrize("name", sorted(APPS))
def test_an_app_example_sends_and_reads_the_fields_the_spec_names(name: str) -> None:
    used = literals(APPS[name])
    sent_and_read = {
        "BuyerOrderRequest": {"items", "currency"},
        "LineRequest": {"sku", "quantity"},
        "CreatedOrder": {"out_trade_no", "order_info"},
        "ClientResultRequest": {"resultStatus", "result", "memo"},
        "ClientResult": {"status"},
        "BuyerOrder": {"status"},
    }
    for schema_name, fields in sent_and_read.items():
        assert fields <= properties(schema_name), schema_name
        assert fields <= used, f"{name} does not use {sorted(fields - used)} of {schema_name}"


def test_the_web_example_sends_and_reads_the_fields_the_spec_names() -> None:
    used = literals(WEB)
    assert {"items", "channel", "return_url", "currency"} <= properties("BuyerOrderRequest") & used
    assert {"out_trade_no", "payment_url", "payment_form"} <= properties("CreatedOrder") & used
    assert {"page", "wap"} == set(schema("Channel")["enum"]) - {"app"}
    assert "status" in used


@pytest.mark.parametrize("path", [*APPS.values(), WEB], ids=lambda p: p.name)
def test_every_field_like_name_and_status_an_example_spells_is_one_the_spec_has(path: Path) -> None:
    used = literals(path)
    snake = {word for word in used if re.fullmatch(r"[a-z]+(_[a-z]+)+", word)}
    assert snake <= every_property(), f"not in openapi.yaml: {sorted(snake - every_property())}"
    statuses = {word for word in used if re.fullmatch(r"(WAIT|TRADE)_[A-Z_]+", word)}
    assert statuses
    assert statuses <= set(schema("OrderStatus")["enum"])


@pytest.mark.parametrize("name", sorted(APPS))
def test_an_app_example_handles_every_result_code(name: str) -> None:
    used = literals(APPS[name])
    assert {word for word in used if re.fullmatch(r"[0-9]{4}", word)} == RESULT_CODES


def test_the_guide_tells_what_to_do_for_every_result_code_and_links_every_example() -> None:
    guide = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    table = guide.split("## The SDK's result codes", 1)[1].split("\n\n", 2)[1]
    rows = re.findall(r"^\| `([0-9]{4})` \|", table, re.MULTILINE)
    assert sorted(rows) == sorted(RESULT_CODES)
    for path in [*APPS.values(), WEB]:
        assert f"(examples/{path.relative_to(EXAMPLES).as_posix()})" in guide


def test_the_spec_says_which_codes_the_server_queries_alipay_for_as_the_guide_does() -> None:
    from chalicelib.services.client_result import UNKNOWN_OUTCOMES

    guide = (ROOT / "docs" / "clients.md").read_text(encoding="utf-8")
    queried = set(re.findall(r"inconclusive \(`(\d{4})`, `(\d{4})`, `(\d{4})`\)", guide)[0])
    assert queried == set(UNKNOWN_OUTCOMES)
