"""Web checkout cross-checked against the peer SDK ``python-alipay-sdk`` (``api_alipay_trade_page_pay``/``wap_pay``).

Same inputs and timestamp: the peer's signed page/wap pay string and our ``payment_url`` query are byte for byte the
same (PKCS#1 v1.5 is deterministic), and each side verifies the other's signature. The peer runs in a subprocess
from ``.peer/python-alipay-sdk`` (see ``tests/peers/harness.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from chalicelib.alipay import web
from chalicelib.alipay.params import format_amount
from chalicelib.alipay.signing import LocalKeySigner, SignType
from chalicelib.alipay.web import WebChannel
from tests.peers.cases import (
    APP_ID,
    BEIJING_NOW,
    NOTIFY_URL,
    NOW,
    ORDER_CASES,
    merchant_key,
    parse_order_string,
    private_pem,
    public_pem,
    we_verify_request,
)
from tests.peers.harness import PYTHON_ALIPAY_SDK, PeerSession

RETURN_URL = "https://pay.example.com/alipay/return"
GATEWAY = "https://openapi.alipay.com/gateway.do"
# ASCII inputs: the peer writes biz_content with json.dumps' default \uXXXX escapes, we keep UTF-8 as is.
ASCII_CASES: list[dict[str, Any]] = [
    {"out_trade_no": "WEB-0001", "subject": "T-shirt", "total_amount": "12.34"},
    {
        "out_trade_no": "WEB_0002-x",
        "subject": 'Tee & socks = 100% "cotton" {XL} + /slash\\',
        "total_amount": "100000000.00",
        "body": "a+b c%20d",
        "timeout_express": "30m",
        "extra_biz": {"trans_currency": "USD"},
    },
]
_OPS = {WebChannel.PAGE: "page_pay", WebChannel.WAP: "wap_pay"}


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerSession]:
    session = PYTHON_ALIPAY_SDK.session()
    yield session
    session.close()


def ours(case: dict[str, Any], channel: WebChannel) -> web.WebPayment:
    return web.build_openapi_web_payment(
        LocalKeySigner(merchant_key(), SignType.RSA2),
        channel,
        gateway_url=GATEWAY,
        app_id=APP_ID,
        notify_url=NOTIFY_URL,
        return_url=RETURN_URL,
        now=NOW,
        out_trade_no=case["out_trade_no"],
        subject=case["subject"],
        total_amount=case["total_amount"],
        body=case.get("body"),
        timeout_express=case.get("timeout_express"),
        extra_biz=case.get("extra_biz"),
    )


def peer_cmd(case: dict[str, Any], channel: WebChannel) -> dict[str, Any]:
    # The same biz_content keys in the same order as ours (the peer puts its four first, then these).
    extra = {k: case[k] for k in ("body", "timeout_express") if case.get(k)}
    extra.update(case.get("extra_biz", {}))
    if channel is WebChannel.WAP:
        extra["product_code"] = "QUICK_WAP_WAY"  # the peer's default, QUICK_WAP_PAY, is not Alipay's product code
    return {
        "op": _OPS[channel], "private_key": private_pem(merchant_key()), "appid": APP_ID, "now": BEIJING_NOW,
        "subject": case["subject"], "out_trade_no": case["out_trade_no"],
        "total_amount": format_amount(case["total_amount"]), "return_url": RETURN_URL, "notify_url": NOTIFY_URL,
        "extra_biz": extra,
    }


@pytest.mark.parametrize("channel", [WebChannel.PAGE, WebChannel.WAP])
def test_the_peers_page_and_wap_pay_strings_are_byte_identical_to_our_payment_url_query(
    peer: PeerSession, channel: WebChannel
) -> None:
    results = peer.ok([peer_cmd(case, channel) for case in ASCII_CASES])
    for case, peer_string in zip(ASCII_CASES, results, strict=True):
        payment = ours(case, channel)
        assert peer_string == payment.query
        assert payment.payment_url == f"{GATEWAY}?{peer_string}"


@pytest.mark.parametrize("channel", [WebChannel.PAGE, WebChannel.WAP])
def test_our_web_payments_verify_in_the_peer_and_the_peers_verify_with_us_whatever_the_text(
    peer: PeerSession, channel: WebChannel
) -> None:
    cases = [{k: v for k, v in c.items() if k != "passback_params"} for c in ORDER_CASES + ASCII_CASES]
    payments = [ours(case, channel) for case in cases]
    commands: list[dict[str, Any]] = [
        {"op": "verify_request", "public_key": public_pem(merchant_key()), "params": dict(p.params)} for p in payments
    ]
    commands += [peer_cmd(case, channel) for case in cases]
    results = peer.ok(commands)
    assert results[: len(cases)] == [True] * len(cases)
    for case, peer_string in zip(cases, results[len(cases) :], strict=True):
        params = parse_order_string(peer_string)
        we_verify_request(params, merchant_key())
        assert params["method"] == web.OPENAPI_METHODS[channel]
        ours_biz = json.loads(dict(ours(case, channel).params)["biz_content"])
        assert json.loads(params["biz_content"]) == ours_biz  # the same business content, escapes aside


def test_a_tampered_web_payment_fails_in_the_peer_too(peer: PeerSession) -> None:
    params = dict(ours(ASCII_CASES[0], WebChannel.PAGE).params)
    tampered = {**params, "return_url": "https://evil.example.com/"}
    results = peer.ok([
        {"op": "verify_request", "public_key": public_pem(merchant_key()), "params": params},
        {"op": "verify_request", "public_key": public_pem(merchant_key()), "params": tampered},
    ])
    assert results == [True, False]
