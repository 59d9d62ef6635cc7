"""Fuzzing the client-result verifiers (``verify_app_pay_result``, ``verify_securitypay_result``) and the route
POST /orders/{out_trade_no}/client-result through the real Lambda entry point.

The verifiers may only raise ``AlipayError`` subclasses, and verify only what the oracle says carries Alipay's
genuine signed text; the route never answers 500, never reports a forgery as verified, never queries Alipay
on a forgery's word, and never moves the order. The escapes it found (K3-K6) are fixed and now fail the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from chalicelib.alipay.errors import AlipayError
from chalicelib.alipay.mapi import verify_securitypay_result
from chalicelib.alipay.openapi import verify_app_pay_result
from chalicelib.alipay.signing import SignType
from chalicelib.orders.model import OrderStatus
from tests.alipay_fixtures import OUT_TRADE_NO
from tests.fuzz import oracle
from tests.fuzz.genuine import APP_PAY_RESPONSE, genuine_app_pay_results, genuine_securitypay_results
from tests.fuzz.harness import (
    alipay_public_keys,
    client_result_event,
    fuzz_settings,
    invoke,
    make_fuzz_kit,
    measure,
    outcome,
)
from tests.fuzz.strategies import (
    ResultMutant,
    deep,
    json_documents,
    one,
    quoted_texts,
    result_mutants,
    sdk_payloads,
    texts,
)
from tests.unit.services_kit import Kit

UNKNOWN_OUTCOMES = {"8000", "6002", "6004"}
ODD_INPUT_CHARSETS = ["bogus", "ascii", "gbk", "rot13", "utf-16", "hex", "latin-1", "UTF-8"]
SURROGATES = st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])


def verify_open_platform(text: str) -> Any:
    return verify_app_pay_result(text, alipay_public_keys(), sign_type=SignType.RSA2)


def verify_legacy(text: str) -> Any:
    return verify_securitypay_result(text, alipay_public_keys(), sign_type=SignType.RSA)


def open_platform_oracle(text: str) -> bool:
    return any(oracle.app_pay_result_accepted(text, APP_PAY_RESPONSE, g.genuine) for g in genuine_app_pay_results())


def legacy_oracle(text: str) -> bool:
    return any(oracle.securitypay_result_accepted(text, g.genuine) for g in genuine_securitypay_results())


def check_verifier(target: str, verify: Callable[[str], Any], text: str, *, genuine_says: bool, steps: Any = ()) -> Any:
    """Call a verifier once; it either verifies what the oracle accepts or raises an ``AlipayError``."""
    size = len(text.encode("utf-8", "surrogatepass"))
    call = measure(target, lambda: verify(text), body_size=size, size_limit=1 << 20)
    where = f"\nsteps={steps}\ntext[:400]={text[:400]!r}"
    # Only AlipayError may come out (K3-K5 once escaped as RecursionError, UnicodeEncodeError, LookupError).
    assert call.error is None or isinstance(call.error, AlipayError), (
        f"raised {type(call.error).__name__}: {call.error}{where}"
    )
    accepted = call.error is None
    assert accepted == genuine_says, f"verified={accepted}, the oracle says {genuine_says}: {call.error!r}{where}"
    outcome(target, "verified" if accepted else f"refused: {getattr(call.error, 'check', '?')}")
    return call.value


@cache
def verified_genuine(verify: Callable[[str], Any], text: str) -> Any:
    """What a verifier reads from a genuine result: an accepted mutant must read exactly the same."""
    return verify(text)


# --- the verifiers, directly -------------------------------------------------------------------------------------


@fuzz_settings()
@given(
    text=st.one_of(
        json_documents(),
        deep(),
        st.tuples(json_documents(), SURROGATES, st.integers(0, 400)).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]),
        st.tuples(st.sampled_from([g.text for g in genuine_app_pay_results()]), SURROGATES, st.integers(0, 700)).map(
            lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :]
        ),
        texts,
    )
)
def test_the_app_pay_result_verifier_raises_only_alipay_errors_on_json_ish_text(text: str) -> None:
    # A genuine result with a surrogate inserted outside its signed member is still genuine: ask the oracle.
    check_verifier("result.openapi.random", verify_open_platform, text, genuine_says=open_platform_oracle(text))


@fuzz_settings()
@given(mutant=result_mutants(genuine_app_pay_results(), structural=True))
def test_a_mutated_app_pay_result_verifies_only_while_alipays_signed_member_is_intact(mutant: ResultMutant) -> None:
    genuine_says = open_platform_oracle(mutant.text)
    verified = check_verifier(
        "result.openapi.mutant", verify_open_platform, mutant.text, genuine_says=genuine_says, steps=mutant.steps
    )
    if verified is not None:
        expected = verified_genuine(verify_open_platform, mutant.original.text)
        assert verified == expected, f"verified other facts: {mutant.steps}"


@fuzz_settings()
@given(
    text=st.one_of(
        quoted_texts(),
        st.tuples(quoted_texts(), SURROGATES).map("".join),
        st.builds(lambda t, cs: f'_input_charset="{cs}"&{t}', quoted_texts(), st.sampled_from(ODD_INPUT_CHARSETS)),
    )
)
def test_the_legacy_result_verifier_raises_only_alipay_errors_on_quoted_text(text: str) -> None:
    check_verifier("result.mapi.random", verify_legacy, text, genuine_says=legacy_oracle(text))


@fuzz_settings()
@given(mutant=result_mutants(genuine_securitypay_results(), structural=False))
def test_a_mutated_legacy_result_verifies_only_while_the_signed_text_is_intact(mutant: ResultMutant) -> None:
    genuine_says = legacy_oracle(mutant.text)
    verified = check_verifier(
        "result.mapi.mutant", verify_legacy, mutant.text, genuine_says=genuine_says, steps=mutant.steps
    )
    if verified is not None:
        expected = verified_genuine(verify_legacy, mutant.original.text)
        assert verified == expected, f"verified other facts: {mutant.steps}"


# --- the route, through the Lambda entry point ----------------------------------------------------------------


@cache
def kit_for(protocol: str) -> Kit:
    kit = make_fuzz_kit(protocol)
    # Warm up (a cold start's imports are not a request's cost): a refusal, an inconclusive status, a genuine 9000.
    genuine = (genuine_app_pay_results() if protocol == "openapi" else genuine_securitypay_results())[0].text
    for payload in ({"resultStatus": "6001"}, {"resultStatus": "8000"}, {"resultStatus": "9000", "result": genuine}):
        invoke(kit, client_result_event(OUT_TRADE_NO, json.dumps(payload).encode(), "application/json"))
    kit.gateway.queries.clear()
    kit.idempotency.claims.clear()
    return kit


JSON_TYPES = ["application/json; charset=utf-8", "APPLICATION/JSON", "text/plain", "", None, "application/jsonp",
              "application/x-www-form-urlencoded", " application/json ;"]  # fmt: skip
ODD_BODIES = st.one_of(
    json_documents().map(lambda t: t.encode("utf-8", "surrogatepass")),
    deep().map(str.encode),
    st.binary(max_size=200),
    st.sampled_from([b"", b"null", b"[]", b'"9000"', b"{}", b'{"resultStatus":"9000"}', b"\xef\xbb\xbf{}"]),
)
ORDER_IDS = ["NOPE", "", " ", f"{OUT_TRADE_NO} ", "../x", "中", "a" * 200]


@st.composite
def client_requests(draw: st.DrawFn, results: st.SearchStrategy[str]) -> tuple[str, bytes, str | None]:
    """(out_trade_no, body, content type): mostly the app's JSON with a fuzzed ``result``, sometimes any body."""
    apps_json = draw(st.integers(0, 7)) > 0
    body = json.dumps(sdk_payloads(draw, results)).encode("ascii") if apps_json else draw(ODD_BODIES)
    content_type = "application/json" if draw(st.integers(0, 7)) else one(draw, JSON_TYPES)
    out_trade_no = OUT_TRADE_NO if draw(st.integers(0, 9)) else one(draw, ORDER_IDS)
    return out_trade_no, body, content_type


def expected_reply(kit: Kit, out_trade_no: str, body: bytes, content_type: str | None, verifies: Callable[[str], bool]
                   ) -> tuple[int, bool | None, str]:  # fmt: skip
    """(status, verified, resultStatus) by the route's documented order: media type, JSON, order, shape."""
    if content_type and content_type.split(";")[0].strip().lower() != "application/json":
        return 415, None, ""
    try:
        payload = json.loads(body or b"")
    except (RecursionError, ValueError):  # absurd nesting is just bad JSON (K6 once answered it with a 500)
        return 400, None, ""
    if out_trade_no not in kit.orders.orders:
        return 404, None, ""
    if not isinstance(payload, dict):
        return 400, None, ""
    status = payload.get("resultStatus")
    if isinstance(status, int) and not isinstance(status, bool):
        status = str(status)
    if not isinstance(status, str) or not status.isdigit():
        return 422, None, ""
    if any(payload.get(k) is not None and not isinstance(payload.get(k), str) for k in ("result", "memo")):
        return 422, None, ""
    result = payload.get("result") or ""
    return 200, status == "9000" and bool(result) and verifies(result), status


def fuzz_route(target: str, protocol: str, request: tuple[str, bytes, str | None]) -> None:
    kit = kit_for(protocol)
    out_trade_no, body, content_type = request
    verifies = open_platform_oracle if protocol == "openapi" else legacy_oracle
    queries = len(kit.gateway.queries)
    kit.idempotency.claims.clear()  # each case starts cool: the per-order query cooldown is tested on its own
    event = client_result_event(out_trade_no, body, content_type)
    def reset() -> None:
        del kit.gateway.queries[queries:]
        kit.idempotency.claims.clear()

    call = measure(target, lambda: invoke(kit, event), body_size=len(body), size_limit=1 << 20, reset=reset)
    assert call.error is None, f"the Lambda entry point raised {call.error!r}"
    reply = call.value
    status, verified, result_status = expected_reply(kit, out_trade_no, body, content_type, verifies)
    where = f"\nbody[:400]={body[:400]!r}\ncontent type={content_type!r} order={out_trade_no!r}"
    # Only Alipay's word moves an order: nothing the app reports changes it, queues or publishes anything.
    order = kit.order()
    assert (order.version, order.status) == (1, OrderStatus.WAIT_BUYER_PAY), where
    assert kit.queue.messages == [], where
    assert kit.publisher.events == [], where
    assert reply.status == status, f"answered {reply.status} {reply.body!r}, expected {status}{where}"
    outcome(target, f"{status} verified" if verified else f"{status}")
    if status != 200:
        assert len(kit.gateway.queries) == queries, where
        return
    answer = json.loads(reply.body)
    assert answer["verified"] is verified, f"{answer}, the oracle says verified={verified}{where}"
    assert answer["status"] == "WAIT_BUYER_PAY", f"{answer}{where}"
    assert ("reason" in answer) == (not verified), f"{answer}{where}"
    # Alipay is asked only on a verified report or an inconclusive status, never on a forgery's word.
    asked = result_status in UNKNOWN_OUTCOMES or bool(verified)
    assert len(kit.gateway.queries) == queries + asked, f"{answer} queries={kit.gateway.queries}{where}"


@cache
def open_platform_results() -> st.SearchStrategy[str]:
    mutated = result_mutants(genuine_app_pay_results(), structural=True).map(lambda m: m.text)
    genuine = st.sampled_from([g.text for g in genuine_app_pay_results()])
    surrogate = st.tuples(mutated, SURROGATES, st.integers(0, 400)).map(lambda t: t[0][: t[2]] + t[1] + t[0][t[2] :])
    return st.one_of(mutated, genuine, json_documents(), surrogate)


@cache
def legacy_results() -> st.SearchStrategy[str]:
    mutated = result_mutants(genuine_securitypay_results(), structural=False).map(lambda m: m.text)
    genuine = st.sampled_from([g.text for g in genuine_securitypay_results()])
    return st.one_of(mutated, genuine, quoted_texts(), st.tuples(quoted_texts(), SURROGATES).map("".join))


@fuzz_settings()
@given(request=client_requests(open_platform_results()))
def test_the_client_result_route_never_answers_500_nor_verifies_a_forged_app_pay_result(
    request: tuple[str, bytes, str | None],
) -> None:
    fuzz_route("route.client_result.openapi", "openapi", request)


@fuzz_settings()
@given(request=client_requests(legacy_results()))
def test_the_client_result_route_never_answers_500_nor_verifies_a_forged_legacy_result(
    request: tuple[str, bytes, str | None],
) -> None:
    fuzz_route("route.client_result.mapi", "mapi", request)


def test_the_genuine_results_verify_and_the_oracle_agrees() -> None:
    for g in genuine_app_pay_results():
        assert open_platform_oracle(g.text), g.name
        assert verify_open_platform(g.text).out_trade_no == OUT_TRADE_NO
    for g in genuine_securitypay_results():
        assert legacy_oracle(g.text), g.name
        assert verify_legacy(g.text).out_trade_no == OUT_TRADE_NO
