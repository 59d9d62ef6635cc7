"""Cross-checks of our protocol core against the peer SDK ``python-alipay-sdk`` (module ``alipay``, ``AliPay``).

The peer lives in ``.peer/python-alipay-sdk`` (``make test`` installs it there, outside the venv) and runs
in a subprocess (``tests/peers/python_alipay_sdk_runner.py``), batched so a test starts it once. Keys:
``merchant`` signs order strings; ``alipay`` stands in for Alipay's key on notifications and responses.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.alipay import certs, openapi
from chalicelib.alipay.errors import SignatureMismatch, SignTypeMismatch
from chalicelib.alipay.notifications import AlipayProtocol, notification_content, verify_notification
from chalicelib.alipay.params import format_amount, injected_field
from chalicelib.alipay.signing import LocalKeySigner, SignType, b64encode
from tests.keygen import rsa_key
from tests.peers.cases import (
    APP_ID,
    BEIJING_NOW,
    NOTIFY_URL,
    ORDER_CASES,
    alipay_key,
    alipay_keys,
    form_body,
    mapi_notification_fields,
    merchant_key,
    notification_fields,
    other_key,
    our_order,
    parse_order_string,
    private_pem,
    public_pem,
    sorted_order_string,
    we_sign_notification,
    we_verify_request,
)
from tests.peers.certs import alipay_style_bundle
from tests.peers.harness import PYTHON_ALIPAY_SDK, PeerSession


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerSession]:
    """One peer process for the module, started by the first test that sends it a batch."""
    session = PYTHON_ALIPAY_SDK.session()
    yield session
    session.close()


def verify_request_cmd(params: dict[str, str], key: rsa.RSAPrivateKey | None = None) -> dict[str, Any]:
    return {"op": "verify_request", "public_key": public_pem(key or merchant_key()), "params": params}


def verify_notification_cmd(fields: dict[str, str], key: rsa.RSAPrivateKey | None = None,
                            sign_type: str = "RSA2") -> dict[str, Any]:
    return {"op": "verify_notification", "public_key": public_pem(key or alipay_key()), "params": fields,
            "sign_type": sign_type}


def sign_notification_cmd(fields: dict[str, str], sign_type: str = "RSA2") -> dict[str, Any]:
    return {"op": "sign_notification", "private_key": private_pem(alipay_key()), "params": fields,
            "sign_type": sign_type}


def test_the_peer_runs_from_its_own_folder_and_is_never_importable_in_the_test_process(peer: PeerSession) -> None:
    assert "alipay" not in sys.modules
    assert importlib.util.find_spec("alipay") is None, "a peer SDK leaked into the venv"
    # The harness checks that the subprocess imported ``alipay`` from .peer/python-alipay-sdk, version 3.4.0.
    assert peer.ok([{"op": "sign_content", "private_key": private_pem(merchant_key()), "content": "a=1"}])


def test_our_app_pay_order_strings_with_json_and_form_metacharacters_verify_in_the_peer(peer: PeerSession) -> None:
    params = [parse_order_string(our_order(case)) for case in ORDER_CASES]
    commands: list[dict[str, Any]] = []
    for p in params:
        commands += [verify_request_cmd(p), {"op": "request_content", "params": p,
                                             "public_key": public_pem(merchant_key())}]
    results = peer.ok(commands)
    for p, verified, peer_content in zip(params, results[::2], results[1::2], strict=True):
        assert verified is True, p
        assert peer_content == openapi.request_signed_content(p)
        assert (p["timestamp"], p["format"], p["sign_type"]) == (BEIJING_NOW, "JSON", "RSA2")


def test_the_peer_signs_the_same_parameters_and_timestamp_into_the_same_order_string_as_ours(peer: PeerSession) -> None:
    # PKCS#1 v1.5 is deterministic: same content and key give the same sign. Ours emits our parameter order,
    # the peer emits sorted order; with ours re-sorted the two strings are byte for byte equal.
    ours = [our_order(case) for case in ORDER_CASES]
    commands = []
    for order in ours:
        p = parse_order_string(order)
        commands.append({
            "op": "client_api", "private_key": private_pem(merchant_key()), "appid": APP_ID,
            "method": p["method"], "biz_content": p["biz_content"],
            "kwargs": {"timestamp": p["timestamp"], "format": p["format"], "notify_url": p["notify_url"]},
        })
    for order, peer_order in zip(ours, peer.ok(commands), strict=True):
        assert peer_order == sorted_order_string(order)
        assert parse_order_string(peer_order)["sign"] == parse_order_string(order)["sign"]


def test_the_peers_own_app_pay_order_string_verifies_under_our_request_rule(peer: PeerSession) -> None:
    # The peer's api_alipay_trade_app_pay differs in form, not in rule: no ``format`` parameter, biz_content
    # with its own key order and \uXXXX escapes, and a naive local-clock timestamp (pinned here to Beijing time).
    cases = [{**c, "total_amount": format_amount(c["total_amount"])} for c in ORDER_CASES]
    commands = [{
        "op": "app_pay", "private_key": private_pem(merchant_key()), "appid": APP_ID, "now": BEIJING_NOW,
        "subject": c["subject"], "out_trade_no": c["out_trade_no"], "total_amount": c["total_amount"],
        "notify_url": NOTIFY_URL,
        "extra_biz": {**{k: c[k] for k in ("body", "timeout_express", "passback_params") if c.get(k)},
                      **c.get("extra_biz", {})},
    } for c in cases]
    for case, peer_order in zip(cases, peer.ok(commands), strict=True):
        p = parse_order_string(peer_order)
        we_verify_request(p, merchant_key())
        ours = parse_order_string(our_order(case))
        assert json.loads(p["biz_content"]) == json.loads(ours["biz_content"])  # the same business content
        assert {k: v for k, v in ours.items() if k not in ("biz_content", "sign", "format")} == {
            k: v for k, v in p.items() if k not in ("biz_content", "sign")
        }
        assert "format" not in p


def test_notifications_the_peer_signs_verify_with_our_verify_notification(peer: PeerSession) -> None:
    notifications = [
        notification_fields(),
        notification_fields(subject="Äpfel & Birnen", new_field_from_alipay="unknown={kept}&signed"),
        notification_fields(trade_status="TRADE_FINISHED", body=None, passback_params=None, fund_bill_list=None),
        # No charset sent: we decode with the default GBK, identical to UTF-8 for ASCII values.
        notification_fields(charset=None, subject="ascii only & = {}", body="plain"),
    ]
    signed = peer.ok([sign_notification_cmd(f) for f in notifications])
    for fields, out in zip(notifications, signed, strict=True):
        assert out["content"] == notification_content(fields)
        body = form_body({**fields, "sign": out["sign"], "sign_type": "RSA2"})
        verified = verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(),
                                       sign_type=SignType.RSA2)
        assert dict(verified.fields) == {**fields, "sign": out["sign"], "sign_type": "RSA2"}
        assert verified.total_amount == Decimal(fields["total_amount"])


def test_notifications_we_sign_verify_in_the_peer(peer: PeerSession) -> None:
    notifications = [
        notification_fields(),
        notification_fields(subject="Äpfel & Birnen", new_field_from_alipay="unknown={kept}&signed"),
        notification_fields(refund_fee="10.00", gmt_refund="2024-03-11 09:00:00.123", out_biz_no="R1"),
    ]
    signed = [we_sign_notification(f, alipay_key()) for f in notifications]
    assert peer.ok([verify_notification_cmd(s) for s in signed]) == [True] * len(signed)


def test_legacy_mapi_notifications_agree_both_ways_with_sha1_rsa(peer: PeerSession) -> None:
    ours = we_sign_notification(mapi_notification_fields(), alipay_key(), SignType.RSA)
    peer_verified, peer_signed = peer.ok([
        verify_notification_cmd(ours, sign_type="RSA"), sign_notification_cmd(mapi_notification_fields(), "RSA"),
    ])
    assert peer_verified is True
    body = form_body({**mapi_notification_fields(), "sign": peer_signed["sign"], "sign_type": "RSA"})
    verified = verify_notification(body, protocol=AlipayProtocol.MAPI, keys=alipay_keys(), sign_type=SignType.RSA)
    assert (verified.total_amount, verified.currency) == (Decimal("12.34"), "USD")


def test_a_tampered_order_string_field_is_rejected_by_both(peer: PeerSession) -> None:
    p = parse_order_string(our_order(ORDER_CASES[0]))
    biz = json.loads(p["biz_content"])
    tampered = [
        {**p, "biz_content": openapi.dump_biz_content({**biz, "total_amount": "0.01"})},
        {**p, "notify_url": "https://attacker.example/notify"},
        {**p, "timestamp": "2024-03-10 00:30:06"},
        {**p, "sign_type": "RSA"},  # sign_type is inside a request's signed content
    ]
    wrong_key = parse_order_string(our_order(ORDER_CASES[0], other_key()))
    results = peer.ok([verify_request_cmd(t) for t in [*tampered, wrong_key]])
    assert results == [False] * (len(tampered) + 1)
    for t in [*tampered, wrong_key]:
        with pytest.raises(SignatureMismatch):
            we_verify_request(t, merchant_key())


def test_a_tampered_notification_field_is_rejected_by_both(peer: PeerSession) -> None:
    fields = notification_fields()
    [peer_signed] = peer.ok([sign_notification_cmd(fields)])
    ours = we_sign_notification(fields, alipay_key())
    edits: list[dict[str, str]] = [
        {"total_amount": "0.01"}, {"trade_status": "TRADE_CLOSED"}, {"out_trade_no": "ORDER-2024_0002"},
        {"subject": fields["subject"] + " "}, {"extra_unsigned_field": "x"},
    ]
    for edit in edits:
        body = form_body({**fields, **edit, "sign": peer_signed["sign"], "sign_type": "RSA2"})
        with pytest.raises(SignatureMismatch):
            verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2)
    peer_results = peer.ok(
        [verify_notification_cmd({**ours, **edit}) for edit in edits]
        + [verify_notification_cmd(ours, key=other_key())]  # the wrong Alipay public key
    )
    assert peer_results == [False] * (len(edits) + 1)


def test_a_sha1_downgrade_is_refused_by_both_for_an_rsa2_merchant(peer: PeerSession) -> None:
    fields = notification_fields()
    [sha1_signed] = peer.ok([sign_notification_cmd(fields, "RSA")])
    body = form_body({**fields, "sign": sha1_signed["sign"], "sign_type": "RSA"})
    with pytest.raises(SignTypeMismatch):
        verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2)
    without_sign_type = form_body({**fields, "sign": sha1_signed["sign"]})
    with pytest.raises(SignatureMismatch):
        verify_notification(without_sign_type, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(),
                            sign_type=SignType.RSA2)
    [answer] = peer.run([verify_notification_cmd({**fields, "sign": sha1_signed["sign"], "sign_type": "RSA"})])
    assert "Unknown sign type" in answer["error"]


def test_a_gbk_notification_verifies_with_us_while_the_peer_hashes_only_utf8(peer: PeerSession) -> None:
    # Alipay signs a GBK notification's content as GBK bytes. We verify those bytes; the peer always hashes
    # UTF-8, so it rejects any GBK notification carrying non-ASCII text (a peer limitation, pinned here).
    fields = notification_fields(charset="gbk", subject="大乐透2.1", body="中文 body")
    signed = we_sign_notification(fields, alipay_key(), charset="gbk")
    verified = verify_notification(form_body(signed, "gbk"), protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(),
                                   sign_type=SignType.RSA2)
    assert verified.fields["subject"] == "大乐透2.1"
    assert peer.ok([verify_notification_cmd(signed)]) == [False]


def test_a_notification_with_an_empty_field_signed_by_the_peer_verifies_with_us(peer: PeerSession) -> None:
    # Alipay is documented not to send empty fields; if it ever does, every peer keeps "gmt_close=" in the
    # signed content while the signing rule drops it: we accept a signature over either form.
    fields = notification_fields(gmt_close="")
    [signed] = peer.ok([sign_notification_cmd(fields)])
    assert "&gmt_close=&" in signed["content"]
    assert "gmt_close" not in notification_content(fields)
    body = form_body({**fields, "sign": signed["sign"], "sign_type": "RSA2"})
    verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2)


def _signed_app_pay_result(response: str) -> str:
    sign = b64encode(LocalKeySigner(alipay_key()).sign(response.encode()))
    return f'{{"{openapi.APP_PAY_RESPONSE}":{response},"sign":"{sign}","sign_type":"RSA2"}}'


def test_a_sync_app_pay_result_verifies_in_both_and_braces_in_values_break_only_the_peer(peer: PeerSession) -> None:
    plain = json.dumps({"code": "10000", "msg": "Success", "app_id": APP_ID, "out_trade_no": "ORDER-2024_0001",
                        "trade_no": "2024031022001446880512345678", "total_amount": "88.88",
                        "seller_id": "2088102177649450", "charset": "utf-8", "timestamp": BEIJING_NOW},
                       separators=(",", ":"))
    braces = plain.replace('"msg":"Success"', '"msg":"Success } {\\"x\\":1}"')
    results = [_signed_app_pay_result(r) for r in (plain, braces)]
    for result in results:
        assert openapi.verify_app_pay_result(result, alipay_keys()).total_amount == Decimal("88.88")
    cmd = {"op": "verify_sync_response", "public_key": public_pem(alipay_key()),
           "response_type": openapi.APP_PAY_RESPONSE}
    peer_plain, peer_braces = peer.run([{**cmd, "raw": results[0]}, {**cmd, "raw": results[1]}])
    assert peer_plain["ok"] == json.loads(plain)
    # The peer counts braces without regard to strings, cuts the content short and fails to verify.
    assert "AliPayValidationError" in peer_braces["error"]


def test_certificate_serial_numbers_match_the_peers_for_alipay_shaped_issuers(peer: PeerSession) -> None:
    app_cert, bundle = alipay_style_bundle()
    peer_app, peer_root = peer.ok([{"op": "cert_sn", "cert": app_cert}, {"op": "root_cert_sn", "bundle": bundle}])
    assert peer_app == certs.app_cert_sn(app_cert)
    assert peer_root == certs.alipay_root_cert_sn(bundle)
    assert peer_root.count("_") == 1  # two RSA-signed certificates; the ECDSA-signed one is skipped by both


def test_certificate_serial_numbers_match_the_peers_on_public_alipay_certificates(peer: PeerSession) -> None:
    # tests/vectors/certs/: public Alipay sandbox certificates (README.md there says where from).
    vectors = Path(__file__).resolve().parents[1] / "vectors" / "certs"
    for name, expected in (
        ("gopay_alipayPublicCert.crt", "b09baa7d1d5b198c713b230c5a6ec8e7"),
        ("gopay_appPublicCert.crt", "f5476a255774929671073404f7af2b90"),
    ):
        text = (vectors / name).read_text()
        (peer_sn,) = peer.ok([{"op": "cert_sn", "cert": text}])
        assert peer_sn == certs.app_cert_sn(text) == expected, name


def test_the_local_stacks_certificates_have_the_sns_the_peer_computes(peer: PeerSession) -> None:
    from devstack.certs import LocalCa

    ca = LocalCa()
    app = ca.app_cert(rsa_key("merchant").public_key(), "2021000000000001")
    peer_app, peer_root = peer.ok([{"op": "cert_sn", "cert": app}, {"op": "root_cert_sn", "bundle": ca.root_bundle}])
    loaded = certs.load_certificate_mode(app, [ca.alipay_cert(rsa_key("alipay").public_key())], ca.root_bundle)
    assert (peer_app, peer_root) == (loaded.sns.app_cert_sn, loaded.sns.alipay_root_cert_sn)
    assert "_" not in peer_root  # the bundle's ECDSA-signed root is skipped by both


# --- property: random orders and notifications round-trip both ways, one peer batch per example ----------

_CONTROL = [chr(c) for c in range(0x20)] + ["\x7f"]
_TEXT = st.text(
    alphabet=st.one_of(
        st.characters(exclude_categories=("Cs",), exclude_characters=_CONTROL),
        st.sampled_from(list('{}[]&="+%\\ ,:')),
    ),
    min_size=1,
    max_size=24,
).filter(lambda text: text.strip() and not injected_field().search(text))  # '&name=' is refused at our edge
_CASE = st.fixed_dictionaries(
    {
        "out_trade_no": st.from_regex(r"[A-Za-z0-9_\-]{1,64}", fullmatch=True),
        "subject": _TEXT,
        "total_amount": st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000000"), places=2),
    },
    optional={"body": _TEXT, "passback_params": _TEXT, "extra_biz": st.fixed_dictionaries({"memo": _TEXT})},
)


@settings(max_examples=10, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(cases=st.lists(_CASE, min_size=12, max_size=12))
def _round_trip(peer: PeerSession, cases: list[dict[str, Any]]) -> None:
    """Ours -> peer: order strings and notifications verify; peer -> ours: its signed notifications verify."""
    orders = [parse_order_string(our_order(c)) for c in cases]
    notes = [notification_fields(subject=c["subject"], body=c.get("body"), passback_params=c.get("passback_params"),
                                 out_trade_no=c["out_trade_no"], total_amount=str(c["total_amount"]))
             for c in cases]
    ours = [we_sign_notification(n, alipay_key()) for n in notes]
    commands = [verify_request_cmd(o) for o in orders]
    commands += [verify_notification_cmd(s) for s in ours]
    commands += [sign_notification_cmd(n) for n in notes]
    results = peer.ok(commands)
    n = len(cases)
    assert results[: 2 * n] == [True] * (2 * n)
    for fields, signed in zip(notes, results[2 * n :], strict=True):
        assert signed["content"] == notification_content(fields)
        body = form_body({**fields, "sign": signed["sign"], "sign_type": "RSA2"})
        verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2)


def test_random_orders_and_notifications_round_trip_between_us_and_the_peer(peer: PeerSession) -> None:
    peer.start()  # a missing peer fails here at once, not after hypothesis has shrunk a failing example
    _round_trip(peer)
