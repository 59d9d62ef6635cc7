"""Fuzzing GET /alipay/return (web checkout's return page) through the real Lambda entry point, ``app.app(event,
context)``, both protocols, with and without ``RESULT_PAGE_URL``.

Query strings come from raw bytes percent-encoded, random parameter maps, genuine returns signed with Alipay's test
key as the sandbox's cashier signs them, their mutants and huge ones. Every case is judged against the oracle
(``oracle.return_verdict``): never a 500; anything but a genuine return for a known order of this merchant with its
amount gets the HTML error page (``id="error"``) with 400, never the result page (``id="order-status"``) nor the
redirect to the merchant's; a genuine one shows the status the server holds after the active query (or redirects
with the order only), never the status the query claims; the order store changes only by that query's state-machine
transition.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from functools import cache
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from chalicelib.config import Config
from chalicelib.orders.model import Order, OrderStatus
from chalicelib.services.ports import TradeQueryResult
from tests.alipay_fixtures import TRADE_NO
from tests.fuzz import oracle
from tests.fuzz.genuine import RETURN_ORDERS, WAITING, GenuineReturn, genuine_returns
from tests.fuzz.harness import (
    ConfirmingGateway,
    Reply,
    fuzz_settings,
    invoke,
    measure,
    merchant_of,
    outcome,
    return_event,
)
from tests.fuzz.strategies import ReturnQuery, genuine_return_query, return_queries
from tests.unit.services_kit import Kit, env, merchant_signer

PROTOCOLS = ("openapi", "mapi")
RESULT_PAGE = "https://shop.example.com/orders/result?shop=1"
KNOWN_ORDERS = {no: oracle.KnownOrder(Decimal(a), currency) for no, (a, currency, _, _) in RETURN_ORDERS.items()}


@dataclass(frozen=True)
class Baseline:
    """The kit's state before any case: every case starts from it (and ``measure``'s second run too)."""

    orders: dict[str, Order]
    changes: int


@cache
def kit_for(protocol: str, redirect: bool) -> tuple[Kit, Baseline]:
    """The protocol's kit holding ``RETURN_ORDERS`` (the closed one closed through the state machine), Alipay's
    gateway knowing the trades they name, warmed up (a cold start's imports are not a request's cost)."""
    config = Config.from_env(env(protocol, **({"RESULT_PAGE_URL": RESULT_PAGE} if redirect else {})))
    kit = Kit(config=config, signer=merchant_signer(protocol), gateway=ConfirmingGateway())
    for i, (out_trade_no, (amount, currency, status, at_alipay)) in enumerate(RETURN_ORDERS.items()):
        kit.add_order(out_trade_no, amount, currency)
        if at_alipay:
            trade = TradeQueryResult(True, at_alipay, f"{TRADE_NO}{i}", Decimal(amount), currency, {"x": "1"})
            kit.gateway.trades[out_trade_no] = trade
        if status != "WAIT_BUYER_PAY":
            kit.services.client_results.confirm_with_alipay(kit.order(out_trade_no))
        assert str(kit.order(out_trade_no).status) == status, out_trade_no
    baseline = Baseline(dict(kit.orders.orders), len(kit.orders.changes))
    for query in (genuine_returns(protocol)[0].query(), "x=1", ""):
        invoke(kit, return_event(query))
    reset(kit, baseline)
    return kit, baseline


def reset(kit: Kit, baseline: Baseline) -> None:
    kit.orders.orders.clear()
    kit.orders.orders.update(baseline.orders)
    del kit.orders.changes[baseline.changes :]
    kit.gateway.queries.clear()
    kit.queue.messages.clear()
    kit.idempotency.claims.clear()  # the per-order query cooldown: each case starts cool


def expected_status_after(baseline: Baseline, out_trade_no: str) -> str:
    """The order's status after a genuine return: Alipay's answer to the active query if it still waited and
    Alipay knows the trade, else as held. Never what the return's own ``trade_status`` says."""
    before = baseline.orders[out_trade_no]
    at_alipay = RETURN_ORDERS[out_trade_no][3]
    return at_alipay if before.status is OrderStatus.WAIT_BUYER_PAY and at_alipay else str(before.status)


def check_page(reply: Reply, verdict: oracle.Verdict, redirect: bool, kit: Kit, where: str) -> str:
    """The answer's shape: the error page for a refusal, else the result page or the redirect, showing the status
    stored now. Returns the status shown ("" for the error page)."""
    content_type = str(reply.headers.get("Content-Type", ""))
    if not verdict.accepted:
        assert reply.status == 400, f"answered {reply.status}, the oracle says {verdict}{where}"
        assert content_type.startswith("text/html"), where
        assert 'id="error"' in reply.body, where
        assert "order-status" not in reply.body, where
        assert "Location" not in reply.headers, f"a refused return redirects: {reply.headers}{where}"
        return ""
    assert verdict.fields is not None
    out_trade_no = verdict.fields["out_trade_no"]
    stored = str(kit.order(out_trade_no).status)
    if redirect:
        assert reply.status == 302, f"answered {reply.status}, the oracle says {verdict}{where}"
        location = urlsplit(str(reply.headers["Location"]))
        expected = urlsplit(RESULT_PAGE)
        assert location[:3] == expected[:3], f"{location}{where}"
        assert not location.fragment, f"{location}{where}"
        query = parse_qs(location.query, keep_blank_values=True, strict_parsing=True)
        # The order only: the link is unsigned, so the merchant's page asks its backend for the status.
        assert query == {"shop": ["1"], "out_trade_no": [out_trade_no]}, f"{query}{where}"
        assert reply.body == "", where
        return stored
    assert reply.status == 200, f"answered {reply.status}, the oracle says {verdict}{where}"
    assert content_type.startswith("text/html"), where
    assert f'<strong id="order-status" data-status="{stored}">{stored}</strong>' in reply.body, where
    assert f'<code id="out-trade-no">{out_trade_no}</code>' in reply.body, where
    assert 'id="error"' not in reply.body, where
    return stored


def check_store(kit: Kit, baseline: Baseline, verdict: oracle.Verdict, where: str) -> None:
    """Nothing is marked paid by the return itself: only a genuine return for a waiting order asks Alipay (once),
    and only Alipay's answer, applied as one state-machine transition, moves that order."""
    assert kit.queue.messages == [], where
    assert kit.publisher.events == [], where
    changes = kit.orders.changes[baseline.changes :]
    if not verdict.accepted:
        assert kit.gateway.queries == [], f"asked Alipay on a refused return's word{where}"
        assert kit.orders.orders == baseline.orders, f"a refused return changed an order{where}"
        assert changes == [], f"a refused return changed an order{where}"
        return
    assert verdict.fields is not None
    out_trade_no = verdict.fields["out_trade_no"]
    before = baseline.orders[out_trade_no]
    waiting = before.status is OrderStatus.WAIT_BUYER_PAY
    assert kit.gateway.queries == ([out_trade_no] if waiting else []), f"queries {kit.gateway.queries}{where}"
    after = kit.order(out_trade_no)
    assert str(after.status) == expected_status_after(baseline, out_trade_no), f"{after}{where}"
    others = {k: v for k, v in kit.orders.orders.items() if k != out_trade_no}
    assert others == {k: v for k, v in baseline.orders.items() if k != out_trade_no}, where
    if after == before:
        assert changes == [], where
    else:
        assert changes == [(before, after)], f"{changes}{where}"
        assert after.version == before.version + 1, f"{changes}{where}"


def fuzz_return(target: str, protocol: str, redirect: bool, request: ReturnQuery) -> oracle.Verdict:
    """Send one return, then check the answer and the order store against the oracle's verdict."""
    kit, baseline = kit_for(protocol, redirect)
    reset(kit, baseline)
    event = return_event(request.query)
    call = measure(
        target,
        lambda: invoke(kit, event),
        body_size=len(request.query),
        size_limit=oracle.RETURN_MAX_BYTES,
        reset=lambda: reset(kit, baseline),
    )
    where = (
        f"\nkind={request.kind} original={request.original.name if request.original else None} "
        f"steps={request.steps} redirect={redirect}\nquery[:400]={request.query[:400]!r}"
    )
    assert call.error is None, f"the Lambda entry point raised {call.error!r}{where}"
    reply = call.value
    assert reply.status in (200, 302, 400), f"answered {reply.status} {reply.body[:300]!r}{where}"
    params = parse_qs(request.query, keep_blank_values=True)  # what API Gateway hands over (see return_event)
    pool = [g.genuine for g in genuine_returns(protocol)] + ([request.signed] if request.signed else [])
    verdict = oracle.return_verdict(params, merchant_of(kit), pool, KNOWN_ORDERS)
    shown = check_page(reply, verdict, redirect, kit, where)
    check_store(kit, baseline, verdict, where)
    if not verdict.accepted:
        outcome(target, f"400 {verdict.why}")
        return verdict
    assert verdict.fields is not None
    claimed = verdict.fields.get("trade_status")
    said = f" (claimed {claimed})" if claimed and claimed != shown else ""
    outcome(target, f"{reply.status} shows {shown}{said}")
    return verdict


@cache
def queries_of(protocol: str) -> st.SearchStrategy[ReturnQuery]:
    return return_queries(genuine_returns(protocol), oracle.RETURN_MAX_BYTES)


@fuzz_settings()
@given(redirect=st.booleans(), request=queries_of("openapi"))
def test_the_open_platform_return_page_shows_only_a_genuine_returns_server_side_status(
    redirect: bool, request: ReturnQuery
) -> None:
    fuzz_return("route.return.openapi", "openapi", redirect, request)


@fuzz_settings()
@given(redirect=st.booleans(), request=queries_of("mapi"))
def test_the_legacy_return_page_shows_only_a_genuine_returns_server_side_status(
    redirect: bool, request: ReturnQuery
) -> None:
    fuzz_return("route.return.mapi", "mapi", redirect, request)


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("redirect", [False, True], ids=["result-page", "redirect"])
def test_every_genuine_return_of_the_pool_is_judged_as_the_pool_says(protocol: str, redirect: bool) -> None:
    """Each return as the sandbox sends it: the merchant's own are shown (their server-side status), the foreign
    ones are refused; the oracle agrees with the pool on which is which."""
    original: GenuineReturn
    for original in genuine_returns(protocol):
        verdict = fuzz_return(f"route.return.{protocol}", protocol, redirect, genuine_return_query(original))
        assert verdict.accepted is not original.foreign, (original.name, verdict)


def test_a_return_claiming_success_for_an_order_alipay_does_not_know_leaves_it_waiting() -> None:
    kit, baseline = kit_for("mapi", False)
    original = next(g for g in genuine_returns("mapi") if g.fields["out_trade_no"] == WAITING and not g.foreign)
    assert original.fields["trade_status"] == "TRADE_FINISHED"
    fuzz_return("route.return.mapi", "mapi", False, genuine_return_query(original))
    order = kit.order(WAITING)
    assert (order.status, order.version) == (OrderStatus.WAIT_BUYER_PAY, baseline.orders[WAITING].version)
