"""Fuzzing POST /alipay/notify from raw bytes through the real Lambda entry point, ``app.app(event, context)``.

Every case is judged against the oracle (``tests/fuzz/oracle.py``), an independent reading of the documented
rules: the status must be exactly the oracle's (200 only for genuine signed content, else 400/413/415, never
5xx), the body exactly ``success`` or ``fail``, and the queue must hold exactly the accepted notification's
fields or nothing. An accepted mutant must carry the genuine signed fields and facts; the two ways it can
differ (K1, K2, found by this fuzzing) are fixed; their reproducers stay in test_fuzz_findings.
"""

from __future__ import annotations

from functools import cache
from urllib.parse import quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.alipay.errors import OrderError
from chalicelib.alipay.params import INJECTED_FIELD, check_text
from chalicelib.services.ports import QueuedNotification
from tests.fuzz import oracle
from tests.fuzz.genuine import GenuineNotification, genuine_notifications
from tests.fuzz.harness import (
    fuzz_settings,
    invoke,
    make_fuzz_kit,
    measure,
    merchant_of,
    notify_event,
    outcome,
    queued_facts,
)
from tests.fuzz.strategies import (
    FORM,
    Mutant,
    RawRequest,
    huge_requests,
    mutants,
    random_requests,
    raw_requests,
)
from tests.unit.services_kit import Kit

PROTOCOLS = ("openapi", "mapi")
ANSWERS = {200, 400, 413, 415}


@cache
def kit_for(protocol: str) -> Kit:
    """The protocol's kit, warmed up: the first request imports the logger and metrics (a cold start's cost,
    not a request's), so it is made here, outside the measurements."""
    kit = make_fuzz_kit(protocol)
    original = genuine_notifications(protocol)[0]
    for body in (original.body(), b"x"):
        invoke(kit, notify_event(body, original.content_type))
    kit.queue.messages.clear()
    return kit


def genuine_of(protocol: str) -> list[oracle.Genuine]:
    return [n.genuine for n in genuine_notifications(protocol)]


def post_and_judge(
    target: str,
    kit: Kit,
    request: RawRequest,
    genuine: list[oracle.Genuine],
    context: str = "",
) -> oracle.Verdict:
    """Send one request, then check the answer and the queue against the oracle's verdict."""
    kit.queue.messages.clear()
    event = notify_event(request.body, request.content_type, as_base64=request.as_base64, header=request.header)
    size = len(request.body or b"")
    limit = kit.config.max_notification_bytes
    call = measure(target, lambda: invoke(kit, event), body_size=size, size_limit=limit, reset=kit.queue.messages.clear)
    assert call.error is None, f"the Lambda entry point raised {call.error!r}"
    reply = call.value
    verdict = oracle.notification_verdict(request.body or b"", request.content_type, merchant_of(kit), genuine)
    where = f"{context}\nbody[:300]={(request.body or b'')[:300]!r}\ncontent type={request.content_type!r}"
    assert reply.status in ANSWERS, f"answered {reply.status} {reply.body!r}{where}"
    assert reply.body == ("success" if reply.status == 200 else "fail"), f"{reply.status} {reply.body!r}{where}"
    assert reply.status == verdict.status, f"answered {reply.status}, the oracle says {verdict}{where}"
    if verdict.accepted:
        assert len(kit.queue.messages) == 1, where
        # What the consumer applies: the fields its own verification of the kept body yields.
        assert dict(kit.services.consumer.verified(kit.queue.messages[0]).fields) == verdict.fields, where
    else:
        assert kit.queue.messages == [], f"a refused notification was queued{where}"
    outcome(target, f"{verdict.status} {verdict.why}")
    return verdict


@fuzz_settings()
@given(protocol=st.sampled_from(PROTOCOLS), request=random_requests())
def test_form_bodies_built_from_random_fields_are_refused_with_fail_and_never_queued(
    protocol: str, request: RawRequest
) -> None:
    verdict = post_and_judge("webhook.random_form", kit_for(protocol), request, genuine_of(protocol))
    assert not verdict.accepted


@fuzz_settings()
@given(protocol=st.sampled_from(PROTOCOLS), request=raw_requests())
def test_arbitrary_bytes_as_the_body_are_refused_with_fail_and_never_queued(protocol: str, request: RawRequest) -> None:
    verdict = post_and_judge("webhook.raw_bytes", kit_for(protocol), request, genuine_of(protocol))
    assert not verdict.accepted


# --- bodies near and over the size limit --------------------------------------------------------------------------


@fuzz_settings(weight=0.2)
@given(data=st.data())
def test_bodies_near_and_over_the_size_limit_are_bounded_and_judged_by_their_size(data: st.DataObject) -> None:
    kit = kit_for("openapi")
    limit = kit.config.max_notification_bytes
    huge = data.draw(huge_requests(limit))
    request = RawRequest(huge.body, f"{FORM}; charset=utf-8", data.draw(st.booleans()), "Content-Type")
    genuine = [huge.genuine] if huge.genuine else []
    verdict = post_and_judge("webhook.huge", kit, request, genuine, huge.description)
    if huge.genuine:
        # A genuine notification is accepted up to the limit and refused with 413 past it, before any crypto.
        assert verdict.status == (200 if len(huge.body) <= limit else 413), huge.description


# --- mutations of genuine notifications -----------------------------------------------------------------------------


def original_message(original: GenuineNotification) -> QueuedNotification:
    fields = original.fields
    return QueuedNotification(original.protocol, fields["notify_id"], fields["out_trade_no"], fields, "")


def encoded(texts: list[str], codec: str) -> set[bytes]:
    out = set()
    for text in texts:
        try:
            out.add(text.encode(codec))
        except UnicodeEncodeError:
            continue
    return out


def judge_accepted_mutant(target: str, kit: Kit, mutant: Mutant) -> None:
    """An accepted mutant must read as the genuine notification whose signed content it carries."""
    queued = kit.services.consumer.verified(kit.queue.messages[0])  # what the consumer applies
    readings = [content for content, _ in oracle.content_readings(dict(queued.fields))]
    pool = genuine_notifications(mutant.original.protocol)
    matches = [o for o in pool if o.genuine.content in encoded(readings, o.codec)]
    assert matches, f"accepted, yet no genuine content is among its readings: {mutant.steps}"
    original = matches[0]

    def signed(fields: dict[str, str]) -> dict[str, str]:
        return {k: v for k, v in fields.items() if k not in oracle.UNSIGNED and v.strip()}

    same_signed = signed(dict(queued.fields)) == signed(original.fields)
    mine, theirs = queued_facts(queued), queued_facts(original_message(original))
    where = f"\nsteps={mutant.steps}\nqueued={dict(queued.fields)}\nfacts {mine} != {theirs}"
    if same_signed and mine == theirs:
        outcome(target, "accepted: same signed fields")
        return
    # K2 (an unsigned blank currency read) is fixed: nothing outside the signature may change a fact.
    assert mine == theirs, f"accepted, and an unsigned field changed a fact{where}"
    # K1 is fixed in the one direction the webhook can see: a value holding "&name=" is refused. The other
    # direction, a genuine value holding "&name=" split into its own field, leaves nothing to see in the message
    # (the split fields are unambiguous on their own). It is prevented where such a value would be born: order
    # text refuses "&name=", so no genuine notification of ours can carry one (K1b).
    assert not any(INJECTED_FIELD.search(v) for k, v in queued.fields.items() if k not in oracle.UNSIGNED), where
    born_ambiguous = [k for k, v in original.fields.items() if k not in oracle.UNSIGNED and INJECTED_FIELD.search(v)]
    assert not same_signed, where
    assert born_ambiguous, f"accepted with altered signed fields{where}"
    for key in born_ambiguous:
        with pytest.raises(OrderError, match="must not contain '&'"):
            check_text(key, original.fields[key], 512)
    outcome(target, "accepted: K1b split of a genuine '&name=' value (such text is refused at order creation)")


def fuzz_mutants(target: str, protocol: str, mutant: Mutant) -> None:
    kit = kit_for(protocol)
    request = RawRequest(mutant.body, mutant.content_type, mutant.as_base64, "Content-Type")
    context = f"original={mutant.original.name} steps={mutant.steps}"
    verdict = post_and_judge(target, kit, request, genuine_of(protocol), context)
    if verdict.accepted:
        judge_accepted_mutant(target, kit, mutant)


@fuzz_settings()
@given(mutant=mutants(genuine_notifications("openapi")))
def test_a_mutated_open_platform_notification_is_accepted_only_when_its_signed_content_is_intact(
    mutant: Mutant,
) -> None:
    fuzz_mutants("webhook.mutant.openapi", "openapi", mutant)


@fuzz_settings()
@given(mutant=mutants(genuine_notifications("mapi")))
def test_a_mutated_legacy_notification_is_accepted_only_when_its_signed_content_is_intact(mutant: Mutant) -> None:
    fuzz_mutants("webhook.mutant.mapi", "mapi", mutant)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_genuine_notification_of_the_pool_is_accepted_as_sent(protocol: str) -> None:
    for original in genuine_notifications(protocol):
        mutant = Mutant(original, original.body(), original.content_type, False, ())
        fuzz_mutants(f"webhook.genuine.{protocol}", protocol, mutant)
        # The one whose subject holds "&t=" is genuine but ambiguous (K1): refused, as the oracle says too.
        expected = 0 if original.name == "openapi-subject-with-ampersand" else 1
        assert len(kit_for(protocol).queue.messages) == expected, original.name


def test_the_oracle_refuses_what_the_webhook_refuses_for_a_tampered_amount() -> None:
    original = genuine_notifications("openapi")[0]
    tampered = [(k, "0.01" if k == "total_amount" else v) for k, v in original.pairs]
    body = "&".join(f"{k}={quote_plus(v)}" for k, v in tampered).encode("ascii")
    merchant = merchant_of(kit_for("openapi"))
    verdict = oracle.notification_verdict(body, original.content_type, merchant, genuine_of("openapi"))
    assert (verdict.status, verdict.why) == (400, "signature")
