"""Fuzzing Antom's notifications: POST /antom/notify from raw bytes and headers through the real Lambda entry point on
an Antom stage, and the protocol's own reader and verifier (``antom.parse_notification``, ``antom.verify_message``).

Every webhook case is judged against the oracle (``tests/fuzz/oracle.py``, written from docs/protocols.md §7): the
status must be exactly the oracle's (200 only for a genuine signature over this exact content, else 400/413/415,
never 5xx), the answer Antom's acknowledgement or a JSON error, and the queue must hold exactly the accepted
notification (its raw body, its flattened fields) or nothing. What the webhook queued must verify again at the
queue's consumer, to the same facts: an acknowledged notification is never sent again, so one the consumer then
refused would be lost.
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.alipay import antom
from chalicelib.alipay.errors import VerificationError
from chalicelib.services.notifications import ANTOM_SIGNED_HEADERS
from tests.fuzz import oracle
from tests.fuzz.genuine import ANTOM_NOTIFY_PATH, GenuineAntom, genuine_antom_notifications
from tests.fuzz.harness import (
    alipay_public_keys,
    antom_notify_event,
    fuzz_settings,
    invoke,
    make_fuzz_kit,
    measure,
    outcome,
)
from tests.fuzz.strategies import (
    AntomRequest,
    antom_documents,
    antom_mutants,
    antom_random_requests,
    json_documents,
)
from tests.unit.services_kit import Kit

ANSWERS = {200, 400, 413, 415}
MAX_SETTLED_DEPTH = 500
SIGNATURE_REFUSALS = frozenset(
    {"missing client-id", "missing request-time", "missing signature", "client_id", "malformed_signature", "algorithm",
     "signature"}
)  # fmt: skip
ACK = json.loads(antom.ACK_BODY)


@cache
def kit() -> Kit:
    """The Antom kit, warmed up (the first request imports the logger and metrics: a cold start's cost)."""
    kit = make_fuzz_kit("antom")
    original = genuine()[0]
    for body in (original.body, b"x"):
        invoke(kit, antom_notify_event(body, original.content_type, dict(original.headers)))
    kit.queue.messages.clear()
    return kit


def client_id() -> str:
    client = kit().config.antom_client_id
    assert client is not None
    return client


@cache
def genuine() -> tuple[GenuineAntom, ...]:
    return genuine_antom_notifications(make_fuzz_kit("antom").config.antom_client_id or "")


def merchant() -> oracle.AntomMerchant:
    config = kit().config
    assert antom.path_of(config.notify_url) == ANTOM_NOTIFY_PATH
    return oracle.AntomMerchant(client_id(), ANTOM_NOTIFY_PATH, config.max_notification_bytes)


def post_and_judge(target: str, request: AntomRequest) -> oracle.Verdict:
    """Send one request, then check the answer, the queue and the consumer's reading against the oracle's verdict."""
    the_kit = kit()
    the_kit.queue.messages.clear()
    event = antom_notify_event(request.body, request.content_type, request.headers, as_base64=request.as_base64)
    body = request.body or b""
    limit = the_kit.config.max_notification_bytes
    reset = the_kit.queue.messages.clear
    call = measure(target, lambda: invoke(the_kit, event), body_size=len(body), size_limit=limit, reset=reset)
    assert call.error is None, f"the Lambda entry point raised {call.error!r}"
    reply = call.value
    pool = [g.genuine for g in genuine()]
    verdict = oracle.antom_verdict(body, request.content_type, request.headers, merchant(), pool)
    where = (
        f"\noriginal={request.original} steps={request.steps}\nbody[:300]={body[:300]!r}"
        f"\nheaders={ {k: v[:80] for k, v in request.headers.items()} }\ncontent type={request.content_type!r}"
    )
    assert reply.status in ANSWERS, f"answered {reply.status} {reply.body!r}{where}"
    answer = json.loads(reply.body)
    if reply.status == 200:
        assert answer == ACK, where
    else:
        assert answer.get("code") in ("rejected", "payload_too_large", "unsupported_media_type"), f"{answer}{where}"
    said = f"answered {reply.status} {reply.body[:200]!r}, the oracle says {verdict}"
    assert reply.status == verdict.status, f"{said}{where}"
    if verdict.accepted:
        assert len(the_kit.queue.messages) == 1, where
        queued = the_kit.queue.messages[0]
        assert queued.fields == {}, where  # the consumer reads the fields from what was kept, never from the message
        assert base64.b64decode(queued.body or "") == body, where
        assert set(queued.headers or {}) == set(ANTOM_SIGNED_HEADERS), where
        # The consumer verifies the queued message again, from what was kept: it must read the same notification.
        try:
            again = the_kit.services.consumer.verified(queued)
        except VerificationError as exc:
            raise AssertionError(f"accepted and acknowledged, yet the consumer refuses it: {exc!r}{where}") from exc
        assert (again.notify_id, again.out_trade_no) == (queued.notify_id, queued.out_trade_no), where
        assert dict(again.fields) == verdict.fields, where
    else:
        assert the_kit.queue.messages == [], f"a refused notification was queued{where}"
    outcome(target, f"{verdict.status} {verdict.why}")
    return verdict


# --- the webhook ------------------------------------------------------------------------------------------------


@fuzz_settings()
@given(data=st.data())
def test_arbitrary_bodies_and_headers_are_refused_and_never_queued(data: st.DataObject) -> None:
    verdict = post_and_judge("antom.webhook.random", data.draw(antom_random_requests(client_id())))
    assert not verdict.accepted


@fuzz_settings()
@given(data=st.data())
def test_a_mutated_antom_notification_is_accepted_only_with_its_genuine_signature_over_its_exact_bytes(
    data: st.DataObject,
) -> None:
    post_and_judge("antom.webhook.mutant", data.draw(antom_mutants(genuine(), client_id())))


def test_every_genuine_notification_of_the_pool_is_judged_as_sent() -> None:
    expected = {"antom-unknown-type": 400, "antom-major-units": 400}
    for original in genuine():
        request = AntomRequest(original.body, dict(original.headers), original.content_type, False, (), original.name)
        verdict = post_and_judge("antom.webhook.genuine", request)
        assert verdict.status == expected.get(original.name, 200), original.name


# --- the protocol's reader and verifier -------------------------------------------------------------------------


def judge_parse(target: str, body: bytes) -> None:
    """``parse_notification`` returns a reading the oracle agrees with, or raises a ``VerificationError``."""
    call = measure(target, lambda: antom.parse_notification(body))
    document = oracle.antom_document(body)
    reading = oracle.antom_reading(document) if document is not None else "not a JSON object"
    where = f"\nbody[:300]={body[:300]!r}"
    if call.error is not None:
        assert isinstance(call.error, VerificationError), f"raised {call.error!r}{where}"
        # How deep a JSON reader may nest depends on the stack it runs on: deeper than that, a refusal is right too.
        settled = oracle.nesting_depth(body.decode("utf-8", "replace")) <= MAX_SETTLED_DEPTH
        assert not (settled and isinstance(reading, oracle.AntomReading)), f"refused ({call.error}): {reading}{where}"
        outcome(target, f"refused {call.error.check}")
        return
    parsed: antom.AntomNotification = call.value
    assert document is not None, f"read a body the oracle cannot read as a strict JSON object{where}"
    assert not isinstance(reading, str), f"read, the oracle refuses ({reading}){where}"
    assert dict(parsed.fields) == oracle.antom_flatten(document), where
    if reading is not None:
        places = oracle.ANTOM_PLACES[reading.currency]
        got = (parsed.kind, parsed.out_trade_no, parsed.notify_id, parsed.currency, int(parsed.amount.scaleb(places)))
        assert got == (reading.kind, reading.out_trade_no, reading.notify_id, reading.currency, reading.value), where
    outcome(target, f"read {parsed.kind}")


@fuzz_settings()
@given(text=st.one_of(antom_documents(), json_documents()))
def test_the_notification_reader_reads_what_the_rules_read_and_refuses_the_rest_with_a_typed_error(text: str) -> None:
    judge_parse("antom.parse.documents", text.encode("utf-8", "surrogatepass"))


@fuzz_settings()
@given(data=st.data())
def test_the_notification_reader_on_mutated_genuine_bodies(data: st.DataObject) -> None:
    request = data.draw(antom_mutants(genuine(), client_id()))
    judge_parse("antom.parse.mutants", request.body or b"")


@fuzz_settings()
@given(data=st.data())
def test_verify_message_passes_only_a_genuine_signature_and_refuses_the_rest_with_a_typed_error(
    data: st.DataObject,
) -> None:
    request = data.draw(st.one_of(antom_mutants(genuine(), client_id()), antom_random_requests(client_id())))
    body = request.body or b""
    keys = alipay_public_keys()

    def verify() -> Any:
        return antom.verify_message(
            request.headers, body, method="POST", path=ANTOM_NOTIFY_PATH, client_id=client_id(), keys=keys
        )

    call = measure("antom.verify_message", verify)
    json_type = "application/json"
    unbounded = replace(merchant(), max_bytes=len(body))  # verify_message has no size limit: the webhook has
    pool = [g.genuine for g in genuine()]
    verdict = oracle.antom_verdict(body, json_type, request.headers, unbounded, pool, header_limit=None)
    # Past the signature, the oracle only refuses what cannot be read: the message itself is Antom's.
    signed = verdict.accepted or verdict.why not in SIGNATURE_REFUSALS
    where = f"\noriginal={request.original} steps={request.steps}\nheaders={request.headers}"
    if call.error is None:
        assert signed, f"verified, the oracle says {verdict}{where}"
        outcome("antom.verify_message", "verified")
    else:
        assert isinstance(call.error, VerificationError), f"raised {call.error!r}{where}"
        assert not signed, f"refused ({call.error!r}), the oracle says {verdict}{where}"
        outcome("antom.verify_message", f"refused {call.error.check}")


@pytest.mark.parametrize("depth", [1, 100, 500, 800, 900, 950, 990, 1000, 2000])
def test_a_notification_nested_deep_is_read_or_refused_with_a_typed_error_at_any_depth(depth: int) -> None:
    original = json.loads(genuine()[0].body)
    body = json.dumps(original)[:-1] + ',"deep":' + "[" * depth + "1" + "]" * depth + "}"
    judge_parse("antom.parse.deep", body.encode())
