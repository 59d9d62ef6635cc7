"""The Alipay sandbox over real HTTP: what it answers, signs and sends is what the product's own verifiers accept.

Every check uses the product's code from the outside: results through ``verify_app_pay_result`` and
``verify_securitypay_result``, notifications through ``verify_notification``, gateway replies through
``HttpAlipayGateway``, all with the sandbox's *public* key only. A local receiver stands in for the webhook.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import pytest
import urllib3
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.adapters.alipay_gateway import GatewayError, HttpAlipayGateway
from chalicelib.alipay.keys import same_public_key
from chalicelib.alipay.mapi import (
    check_securitypay_result,
    securitypay_order_params,
    sign_securitypay_order,
    verify_securitypay_result,
)
from chalicelib.alipay.notifications import AlipayProtocol, Notification, check_addressee, verify_notification
from chalicelib.alipay.openapi import (
    SignedResponse,
    beijing_timestamp,
    build_app_pay_order_string,
    check_app_pay_result,
    dump_biz_content,
    encode_params,
    request_params,
    sign_request,
    verify_app_pay_result,
    verify_response,
)
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, Signer, SignType
from sandbox.server import (
    ALIPAY_KEY_FILE,
    MERCHANT_KEY_FILE,
    RunningSandbox,
    SandboxStartError,
    load_settings,
    resolve_time_scale,
    start_sandbox,
)
from sandbox.trades import SandboxSettings
from tests.keygen import rsa_key

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000002"
PARTNER = "2088000000000003"
# Alipay's 4m becomes 0.12 s, its 10m 0.3 s: three deliveries take under half a second.
SCALE = 0.0005
TRADE_NO = re.compile(r"20[0-9]{6}22001[0-9]{15}")
ROOT = Path(__file__).resolve().parents[2]
HTTP = urllib3.PoolManager(retries=False, timeout=5.0)


def alipay_private_key() -> rsa.RSAPrivateKey:
    return rsa_key("sandbox-alipay")


def merchant_private_key() -> rsa.RSAPrivateKey:
    return rsa_key("merchant")


def alipay_keys() -> AlipayPublicKeys:
    """What the merchant configures: the sandbox's public key, nothing else."""
    return AlipayPublicKeys((alipay_private_key().public_key(),))


# --- a webhook stand-in ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    content_type: str
    body: bytes


class Receiver:
    """Records every POST and answers from a script (then ``success``)."""

    def __init__(self) -> None:
        self.answers: deque[tuple[int, bytes]] = deque()
        self.deliveries: list[Delivery] = []
        self.changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.changed:
                    receiver.deliveries.append(Delivery(self.headers.get("Content-Type", ""), body))
                    status, reply = receiver.answers.popleft() if receiver.answers else (200, b"success")
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alipay/notify"

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Delivery]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.deliveries) >= count, timeout)
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _settings(protocol: AlipayProtocol) -> SandboxSettings:
    return SandboxSettings(
        protocol=protocol,
        alipay_key=alipay_private_key(),
        merchant_public_key=merchant_private_key().public_key(),
        app_id=APP_ID,
        seller_id=SELLER_ID if protocol is AlipayProtocol.OPENAPI else PARTNER,
        partner_id=PARTNER,
        time_scale=SCALE,
    )


@pytest.fixture
def openapi_sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(_settings(AlipayProtocol.OPENAPI)) as running:
        yield running


@pytest.fixture
def mapi_sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(_settings(AlipayProtocol.MAPI)) as running:
        yield running


# --- helpers -----------------------------------------------------------------------------------------------------

_counter = iter(range(1, 10**6))


def order_no() -> str:
    return f"SANDBOX-{os.getpid()}-{next(_counter):04d}"


def openapi_order(
    notify_url: str,
    out_trade_no: str,
    *,
    amount: str = "9.90",
    subject: str = "Coffee beans",
    app_id: str = APP_ID,
    signer: Signer | None = None,
) -> str:
    return build_app_pay_order_string(
        signer or LocalKeySigner(merchant_private_key(), SignType.RSA2),
        app_id=app_id,
        notify_url=notify_url,
        now=datetime.now(UTC),
        out_trade_no=out_trade_no,
        subject=subject,
        total_amount=amount,
        timeout_express="30m",
        extra_biz={"trans_currency": "USD"},
    )


def mapi_order(notify_url: str, out_trade_no: str, *, amount: str = "12.50", subject: str = "Coffee beans") -> str:
    pairs = securitypay_order_params(
        partner=PARTNER,
        notify_url=notify_url,
        out_trade_no=out_trade_no,
        subject=subject,
        body=subject,
        currency="USD",
        total_fee=amount,
        it_b_pay="30m",
    )
    return sign_securitypay_order(pairs, LocalKeySigner(merchant_private_key(), SignType.RSA))


def call(url: str, data: dict[str, Any] | None = None) -> tuple[int, Any]:
    """GET (no data) or POST JSON; the status and the decoded JSON reply."""
    if data is None:
        response = HTTP.request("GET", url)
    else:
        response = HTTP.request("POST", url, body=json.dumps(data), headers={"Content-Type": "application/json"})
    return response.status, json.loads(response.data)


def pay(running: RunningSandbox, order_info: str, outcome: str = "success", **controls: Any) -> dict[str, str]:
    status, result = call(f"{running.url}/sandbox/pay", {"order_info": order_info, "outcome": outcome, **controls})
    assert status == 200, result
    return dict(result)


def trade(running: RunningSandbox, out_trade_no: str) -> dict[str, Any]:
    status, view = call(f"{running.url}/sandbox/trades/{quote(out_trade_no)}")
    assert status == 200, view
    return dict(view)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def verify(delivery: Delivery, protocol: AlipayProtocol) -> Notification:
    """Verify a delivery as the product's webhook does: the header's charset is the fallback."""
    header_charset = delivery.content_type.partition("charset=")[2] or None
    return verify_notification(
        delivery.body,
        protocol=protocol,
        keys=alipay_keys(),
        sign_type=SignType.RSA2 if protocol is AlipayProtocol.OPENAPI else SignType.RSA,
        default_charset=header_charset,
    )


def gateway(running: RunningSandbox, protocol: AlipayProtocol, signer: Signer | None = None) -> HttpAlipayGateway:
    if protocol is AlipayProtocol.OPENAPI:
        options: dict[str, Any] = {"app_id": APP_ID, "sign_type": "RSA2"}
        signer = signer or LocalKeySigner(merchant_private_key(), SignType.RSA2)
    else:
        options = {"partner_id": PARTNER, "sign_type": "RSA"}
        signer = signer or LocalKeySigner(merchant_private_key(), SignType.RSA)
    return HttpAlipayGateway(
        protocol=str(protocol),
        gateway_url=running.gateway_url,
        signer=signer,
        alipay_keys=alipay_keys(),
        pool=urllib3.PoolManager(retries=False),
        max_attempts=1,
        **options,
    )


def openapi_call(running: RunningSandbox, method: str, biz: dict[str, Any]) -> SignedResponse:
    """A signed Open Platform gateway call, its reply verified with the sandbox's public key."""
    params = request_params(
        app_id=APP_ID,
        method=method,
        biz_content=dump_biz_content(biz),
        timestamp=beijing_timestamp(datetime.now(UTC)),
        sign_type=SignType.RSA2,
    )
    body = encode_params(params, sign_request(params, LocalKeySigner(merchant_private_key(), SignType.RSA2)))
    response = HTTP.request(
        "POST", running.gateway_url, body=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return verify_response(response.data.decode("utf-8"), alipay_keys(), name=method.replace(".", "_") + "_response")


# --- the endpoints -----------------------------------------------------------------------------------------------


def test_health_names_the_protocol(openapi_sandbox: RunningSandbox, mapi_sandbox: RunningSandbox) -> None:
    assert call(f"{openapi_sandbox.url}/sandbox/health") == (200, {"status": "ok", "protocol": "openapi"})
    assert call(f"{mapi_sandbox.url}/sandbox/health") == (200, {"status": "ok", "protocol": "mapi"})


def test_rejects_an_unusable_pay_request(openapi_sandbox: RunningSandbox) -> None:
    url = f"{openapi_sandbox.url}/sandbox/pay"
    assert call(url, {"outcome": "success"})[0] == 400
    assert call(url, {"order_info": "x", "outcome": "maybe"})[0] == 400
    assert call(url, {"order_info": "x", "duplicates": -1})[0] == 400
    assert call(url, {"order_info": "x", "surprise": True})[0] == 400


# --- Open Platform -----------------------------------------------------------------------------------------------


def test_openapi_payment_returns_a_result_signed_as_alipay_signs_it(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    out_trade_no = order_no()
    answer = pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no))

    assert answer["resultStatus"] == "9000"
    assert answer["memo"] == ""
    result = verify_app_pay_result(answer["result"], alipay_keys())
    check_app_pay_result(
        result, app_id=APP_ID, out_trade_no=out_trade_no, total_amount=Decimal("9.90"), seller_id=SELLER_ID
    )
    assert TRADE_NO.fullmatch(result.trade_no)
    assert json.loads(answer["result"])["sign_type"] == "RSA2"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", result.body["timestamp"])
    assert trade(openapi_sandbox, out_trade_no)["trade_no"] == result.trade_no


def test_openapi_notification_verifies_with_the_sandbox_public_key(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no))

    [delivery] = receiver.wait_for(1)
    assert delivery.content_type == "application/x-www-form-urlencoded; charset=utf-8"
    notification = verify(delivery, AlipayProtocol.OPENAPI)
    check_addressee(notification, app_id=APP_ID, seller_id=SELLER_ID)
    assert notification.trade_status == "TRADE_SUCCESS"
    assert notification.out_trade_no == out_trade_no
    assert notification.total_amount == Decimal("9.90")
    assert notification.fields["sign_type"] == "RSA2"
    assert notification.fields["notify_type"] == "trade_status_sync"
    assert "" not in notification.fields.values()
    wait_until(lambda: trade(openapi_sandbox, out_trade_no)["attempts"] != [])
    [attempt] = trade(openapi_sandbox, out_trade_no)["attempts"]
    assert attempt["status"] == 200
    assert attempt["body"] == "success"
    assert attempt["acknowledged"] is True
    assert attempt["notify_id"] == notification.notify_id


def test_tampered_openapi_order_is_refused_and_nothing_happens(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    out_trade_no = order_no()
    order = openapi_order(receiver.url, out_trade_no, amount="9.90")
    tampered = order.replace("9.90", "0.01")
    assert tampered != order

    answer = pay(openapi_sandbox, tampered)

    assert answer["resultStatus"] == "4000"
    assert answer["result"] == ""
    assert "invalid-signature" in answer["memo"]
    assert call(f"{openapi_sandbox.url}/sandbox/trades/{out_trade_no}")[0] == 404
    time.sleep(0.2)
    assert receiver.deliveries == []


@pytest.mark.parametrize(
    ("order_options", "reason"),
    [
        ({"app_id": "2021000000009999"}, "invalid-app-id"),
        ({"signer": LocalKeySigner(rsa_key("other"), SignType.RSA2)}, "invalid-signature"),
        ({"amount": "100000001"}, "total_amount"),
    ],
    ids=["another-app", "another-key", "amount-out-of-range"],
)
def test_openapi_order_alipay_would_refuse_gives_4000(
    openapi_sandbox: RunningSandbox, receiver: Receiver, order_options: dict[str, Any], reason: str
) -> None:
    if "amount" in order_options:
        # The product's builder refuses such an amount itself: sign one by hand with the value in biz_content.
        params = request_params(
            app_id=APP_ID,
            method="alipay.trade.app.pay",
            biz_content=dump_biz_content({"out_trade_no": order_no(), "subject": "x", "total_amount": "100000001"}),
            timestamp=beijing_timestamp(datetime.now(UTC)),
            sign_type=SignType.RSA2,
            notify_url=receiver.url,
        )
        order = encode_params(params, sign_request(params, LocalKeySigner(merchant_private_key(), SignType.RSA2)))
    else:
        order = openapi_order(receiver.url, order_no(), **order_options)

    answer = pay(openapi_sandbox, order)

    assert answer["resultStatus"] == "4000"
    assert reason in answer["memo"]


def test_an_order_already_paid_cannot_be_paid_again(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    order = openapi_order(receiver.url, order_no())
    assert pay(openapi_sandbox, order)["resultStatus"] == "9000"
    again = pay(openapi_sandbox, order)
    assert again["resultStatus"] == "4000"
    assert "ACQ.TRADE_HAS_SUCCESS" in again["memo"]


# --- legacy Global (MAPI) ------------------------------------------------------------------------------------------


def test_mapi_payment_returns_a_result_signed_as_alipay_signs_it(
    mapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    out_trade_no = order_no()
    order = mapi_order(receiver.url, out_trade_no)
    answer = pay(mapi_sandbox, order)

    assert answer["resultStatus"] == "9000"
    result = verify_securitypay_result(answer["result"], alipay_keys())
    check_securitypay_result(
        result, partner=PARTNER, out_trade_no=out_trade_no, total_amount=Decimal("12.50"), currency="USD"
    )
    # The merchant's signed part verbatim, then success, then Alipay's plain (not URL-encoded) signature.
    assert answer["result"].startswith(order.split("&sign=")[0] + '&success="true"&sign_type="RSA"&sign="')
    assert "%" not in answer["result"].rsplit('&sign="', 1)[1]


def test_mapi_notification_verifies_and_notify_verify_confirms_only_its_id(
    mapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    out_trade_no = order_no()
    pay(mapi_sandbox, mapi_order(receiver.url, out_trade_no))

    [delivery] = receiver.wait_for(1)
    notification = verify(delivery, AlipayProtocol.MAPI)
    check_addressee(notification, seller_id=PARTNER, partner=PARTNER)
    assert notification.trade_status == "TRADE_FINISHED"
    assert notification.total_amount == Decimal("12.50")
    assert notification.currency == "USD"
    assert notification.fields["sign_type"] == "RSA"
    # Exactly what genuine cross-border notifications carry: no seller_id, no partner (docs/protocols.md §2.2).
    assert sorted(notification.fields) == [
        "currency",
        "notify_id",
        "notify_time",
        "notify_type",
        "out_trade_no",
        "sign",
        "sign_type",
        "total_fee",
        "trade_no",
        "trade_status",
    ]
    legacy = gateway(mapi_sandbox, AlipayProtocol.MAPI)
    assert legacy.notify_verify(notification.notify_id) is True
    assert legacy.notify_verify("0" * 35) is False


def test_tampered_mapi_order_is_refused(mapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    tampered = mapi_order(receiver.url, out_trade_no).replace('total_fee="12.50"', 'total_fee="0.01"')

    answer = pay(mapi_sandbox, tampered)

    assert answer["resultStatus"] == "4000"
    assert "invalid-signature" in answer["memo"]
    assert call(f"{mapi_sandbox.url}/sandbox/trades/{out_trade_no}")[0] == 404


# --- notification delivery ---------------------------------------------------------------------------------------


# A legacy notification carries no free text (no subject), so only the Open Platform's shows GBK bytes.
@pytest.mark.parametrize("protocol", [AlipayProtocol.OPENAPI])
def test_gbk_notifications_verify(receiver: Receiver, protocol: AlipayProtocol) -> None:
    subject = "咖啡豆 (云南)"
    with start_sandbox(_settings(protocol)) as running:
        out_trade_no = order_no()
        if protocol is AlipayProtocol.OPENAPI:
            order = openapi_order(receiver.url, out_trade_no, subject=subject)
        else:
            order = mapi_order(receiver.url, out_trade_no, subject=subject)
        assert pay(running, order, charset="gbk")["resultStatus"] == "9000"
        [delivery] = receiver.wait_for(1)

    assert delivery.content_type.endswith("charset=gbk")
    assert subject.encode("gbk") in unquote_to_bytes(delivery.body.replace(b"+", b" "))
    notification = verify(delivery, protocol)
    assert notification.fields["subject"] == subject
    assert notification.charset == "gbk"


@pytest.mark.parametrize("outcome", ["success", "pending"])
def test_an_order_its_notification_charset_cannot_write_is_refused_before_any_trade(
    openapi_sandbox: RunningSandbox, receiver: Receiver, outcome: str
) -> None:
    # GBK has no bytes for an emoji: Alipay could neither sign nor send this notification, so the payment is
    # refused up front (4000, saying why) instead of a trade left paid with no notification.
    out_trade_no = order_no()
    order = openapi_order(receiver.url, out_trade_no, subject="Coffee \u2615 \U0001f600")

    answer = pay(openapi_sandbox, order, outcome, charset="gbk")

    assert answer["resultStatus"] == "4000"
    assert "subject has a character gbk cannot encode" in answer["memo"]
    assert call(f"{openapi_sandbox.url}/sandbox/trades/{out_trade_no}")[0] == 404
    time.sleep(0.3)
    assert receiver.deliveries == []


def test_the_same_order_in_utf8_is_paid_and_notified(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    subject = "Coffee \u2615 \U0001f600"
    assert pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no, subject=subject))["resultStatus"] == "9000"
    [delivery] = receiver.wait_for(1)
    assert verify(delivery, AlipayProtocol.OPENAPI).fields["subject"] == subject
    assert trade(openapi_sandbox, out_trade_no)["status"] == "TRADE_SUCCESS"


def test_a_further_notification_its_charset_cannot_write_is_refused_and_the_trade_stays(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no, subject="Tea \U0001f375"))
    receiver.wait_for(1)

    status, answer = call(
        f"{openapi_sandbox.url}/sandbox/trades/{out_trade_no}/notify",
        {"trade_status": "TRADE_FINISHED", "charset": "gbk"},
    )

    assert status == 400
    assert "subject has a character gbk cannot encode" in answer["error"]
    assert trade(openapi_sandbox, out_trade_no)["status"] == "TRADE_SUCCESS"
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1


def test_retries_until_the_reply_is_exactly_success(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    receiver.answers.extend([(500, b"oops"), (200, b"fail"), (200, b"success")])
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no))

    deliveries = receiver.wait_for(3)
    wait_until(lambda: len(trade(openapi_sandbox, out_trade_no)["attempts"]) == 3)
    # The next interval (1h, 1.8 s here) would be long past; 10m (0.3 s) is enough to see nothing more comes.
    time.sleep(0.5)

    view = trade(openapi_sandbox, out_trade_no)
    assert [(a["attempt"], a["status"], a["body"]) for a in view["attempts"]] == [
        (1, 500, "oops"),
        (2, 200, "fail"),
        (3, 200, "success"),
    ]
    assert [a["acknowledged"] for a in view["attempts"]] == [False, False, True]
    assert len(receiver.deliveries) == 3
    assert len({d.body for d in deliveries}) == 1  # every retry sends the same notification
    assert view["notifications"] == [
        {
            "notify_id": view["attempts"][0]["notify_id"],
            "trade_status": "TRADE_SUCCESS",
            "deliveries": 3,
            "acknowledged": True,
        }
    ]
    times = [datetime.fromisoformat(a["at"]) for a in view["attempts"]]
    assert (times[1] - times[0]).total_seconds() >= 240 * SCALE * 0.9
    assert (times[2] - times[1]).total_seconds() >= 600 * SCALE * 0.9


def test_a_reply_that_is_almost_success_is_not_an_acknowledgement(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    receiver.answers.extend([(200, b"success\n"), (200, b"SUCCESS"), (201, b"success")])
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no))

    wait_until(lambda: len(trade(openapi_sandbox, out_trade_no)["attempts"]) == 4)
    assert [a["acknowledged"] for a in trade(openapi_sandbox, out_trade_no)["attempts"]] == [False] * 3 + [True]


def test_an_unreachable_webhook_is_retried_until_stopped(openapi_sandbox: RunningSandbox) -> None:
    closed = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = closed.server_address[1]
    closed.server_close()
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(f"http://127.0.0.1:{port}/alipay/notify", out_trade_no))

    wait_until(lambda: len(trade(openapi_sandbox, out_trade_no)["attempts"]) >= 2)
    status, dropped = call(f"{openapi_sandbox.url}/sandbox/stop-retries", {})
    assert status == 200
    assert dropped["dropped"] >= 1
    attempts = trade(openapi_sandbox, out_trade_no)["attempts"]
    assert all(a["status"] is None and a["error"] for a in attempts)
    time.sleep(0.4)
    assert len(trade(openapi_sandbox, out_trade_no)["attempts"]) == len(attempts)


def test_duplicates_deliver_the_same_notification_again(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    pay(openapi_sandbox, openapi_order(receiver.url, order_no()), duplicates=2)

    deliveries = receiver.wait_for(3)
    time.sleep(0.2)
    assert len(receiver.deliveries) == 3
    notifications = [verify(d, AlipayProtocol.OPENAPI) for d in deliveries]
    assert len({n.notify_id for n in notifications}) == 1
    assert len({d.body for d in deliveries}) == 1


@pytest.mark.parametrize(
    ("controls", "statuses"),
    [
        ({"reorder": True}, ["TRADE_FINISHED", "TRADE_SUCCESS"]),
        ({"finish": True}, ["TRADE_SUCCESS", "TRADE_FINISHED"]),
    ],
    ids=["reorder", "finish"],
)
def test_openapi_finished_notification_order(
    openapi_sandbox: RunningSandbox, receiver: Receiver, controls: dict[str, Any], statuses: list[str]
) -> None:
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no), **controls)

    deliveries = receiver.wait_for(2)
    assert [verify(d, AlipayProtocol.OPENAPI).trade_status for d in deliveries] == statuses
    assert trade(openapi_sandbox, out_trade_no)["status"] == "TRADE_FINISHED"


def test_cancel_creates_no_trade_and_sends_nothing(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    answer = pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no), "cancel")

    assert answer == {"resultStatus": "6001", "result": "", "memo": "用户中途取消"}
    assert call(f"{openapi_sandbox.url}/sandbox/trades/{out_trade_no}")[0] == 404
    assert gateway(openapi_sandbox, AlipayProtocol.OPENAPI).query_trade(out_trade_no).found is False
    time.sleep(0.2)
    assert receiver.deliveries == []


def test_pending_payment_is_queryable_then_completes(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    answer = pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no), "pending", notify_delay=0.4)

    assert answer["resultStatus"] == "8000"
    assert answer["result"] == ""
    client = gateway(openapi_sandbox, AlipayProtocol.OPENAPI)
    waiting = client.query_trade(out_trade_no)
    assert (waiting.found, waiting.trade_status) == (True, "WAIT_BUYER_PAY")
    [delivery] = receiver.wait_for(1)
    assert verify(delivery, AlipayProtocol.OPENAPI).trade_status == "TRADE_SUCCESS"
    paid = client.query_trade(out_trade_no)
    assert (paid.trade_status, paid.total_amount, paid.currency) == ("TRADE_SUCCESS", Decimal("9.90"), "USD")
    assert paid.trade_no == waiting.trade_no


def test_a_further_notification_can_be_requested(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no))
    receiver.wait_for(1)

    status, sent = call(
        f"{openapi_sandbox.url}/sandbox/trades/{out_trade_no}/notify", {"trade_status": "TRADE_FINISHED"}
    )

    assert status == 200
    second = verify(receiver.wait_for(2)[1], AlipayProtocol.OPENAPI)
    assert (second.trade_status, second.notify_id) == ("TRADE_FINISHED", sent["notify_id"])
    assert trade(openapi_sandbox, out_trade_no)["status"] == "TRADE_FINISHED"
    assert call(f"{openapi_sandbox.url}/sandbox/trades/NOPE/notify", {"trade_status": "TRADE_CLOSED"})[0] == 404


# --- the gateway ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", [AlipayProtocol.OPENAPI, AlipayProtocol.MAPI])
def test_gateway_query_answers_what_the_product_verifies(receiver: Receiver, protocol: AlipayProtocol) -> None:
    with start_sandbox(_settings(protocol)) as running:
        out_trade_no = order_no()
        make = openapi_order if protocol is AlipayProtocol.OPENAPI else mapi_order
        pay(running, make(receiver.url, out_trade_no))
        client = gateway(running, protocol)

        found = client.query_trade(out_trade_no)
        missing = client.query_trade(order_no())

    expected = ("TRADE_SUCCESS", "9.90") if protocol is AlipayProtocol.OPENAPI else ("TRADE_FINISHED", "12.50")
    assert found.found is True
    assert (found.trade_status, found.total_amount, found.currency) == (expected[0], Decimal(expected[1]), "USD")
    assert found.trade_no is not None
    assert TRADE_NO.fullmatch(found.trade_no)
    assert missing.found is False


def test_gateway_refuses_a_request_signed_with_another_key(openapi_sandbox: RunningSandbox) -> None:
    client = gateway(openapi_sandbox, AlipayProtocol.OPENAPI, LocalKeySigner(rsa_key("other"), SignType.RSA2))
    with pytest.raises(GatewayError) as error:
        client.query_trade(order_no())
    assert (error.value.code, error.value.sub_code) == ("40002", "isv.invalid-signature")


def test_close_a_waiting_trade_notifies_trade_closed(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no), "pending", notify_delay=60)

    closed = openapi_call(openapi_sandbox, "alipay.trade.close", {"out_trade_no": out_trade_no})
    again = openapi_call(openapi_sandbox, "alipay.trade.close", {"out_trade_no": out_trade_no})

    assert closed.body["code"] == "10000"
    assert (again.body["code"], again.body["sub_code"]) == ("40004", "ACQ.TRADE_STATUS_ERROR")
    notification = verify(receiver.wait_for(1)[0], AlipayProtocol.OPENAPI)
    assert notification.trade_status == "TRADE_CLOSED"
    assert notification.fields["gmt_close"]
    assert trade(openapi_sandbox, out_trade_no)["status"] == "TRADE_CLOSED"


def test_refunds_partial_idempotent_then_full(openapi_sandbox: RunningSandbox, receiver: Receiver) -> None:
    out_trade_no = order_no()
    pay(openapi_sandbox, openapi_order(receiver.url, out_trade_no))
    receiver.wait_for(1)

    def refund(amount: str, request_no: str) -> dict[str, Any]:
        biz = {"out_trade_no": out_trade_no, "refund_amount": amount, "out_request_no": request_no}
        return openapi_call(openapi_sandbox, "alipay.trade.refund", biz).body

    first = refund("3.00", "R1")
    repeated = refund("3.00", "R1")
    too_much = refund("7.00", "R2")
    rest = refund("6.90", "R3")

    assert (first["code"], first["fund_change"], first["refund_fee"]) == ("10000", "Y", "3.00")
    assert (repeated["code"], repeated["fund_change"], repeated["refund_fee"]) == ("10000", "N", "3.00")
    assert too_much["sub_code"] == "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
    assert (rest["fund_change"], rest["refund_fee"]) == ("Y", "9.90")
    partial, full = (verify(d, AlipayProtocol.OPENAPI) for d in receiver.wait_for(3)[1:3])
    assert (partial.trade_status, partial.refund_fee, partial.fields["out_biz_no"]) == (
        "TRADE_SUCCESS",
        Decimal("3.00"),
        "R1",
    )
    assert partial.fields["gmt_refund"]
    assert (full.trade_status, full.refund_fee, full.fields["out_biz_no"]) == ("TRADE_CLOSED", Decimal("9.90"), "R3")
    assert trade(openapi_sandbox, out_trade_no)["status"] == "TRADE_CLOSED"


# --- starting it as the local stack does ---------------------------------------------------------------------------


def _write_pem(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def test_time_scale_comes_from_the_option_then_the_environment() -> None:
    assert resolve_time_scale(0.5, {"SANDBOX_TIME_SCALE": "0.01"}) == 0.5
    assert resolve_time_scale(None, {"SANDBOX_TIME_SCALE": "0.01"}) == 0.01
    assert resolve_time_scale(None, {}) == 0.001
    with pytest.raises(SandboxStartError):
        resolve_time_scale(None, {"SANDBOX_TIME_SCALE": "fast"})
    with pytest.raises(SandboxStartError):
        resolve_time_scale(0, {})


def test_loads_a_mapi_stack_with_the_local_merchant_key(tmp_path: Path) -> None:
    stack = {"protocol": "mapi", "partner_id": PARTNER, "seller_id": PARTNER, "app_id": "", "region": "us-east-1"}
    (tmp_path / "stack.json").write_text(json.dumps(stack))
    _write_pem(tmp_path / ALIPAY_KEY_FILE, alipay_private_key())
    _write_pem(tmp_path / MERCHANT_KEY_FILE, merchant_private_key())

    settings = load_settings(tmp_path / "stack.json", 0.25)

    assert settings.protocol is AlipayProtocol.MAPI
    assert (settings.partner_id, settings.time_scale, settings.sign_type) == (PARTNER, 0.25, SignType.RSA)
    assert same_public_key(settings.merchant_public_key, merchant_private_key().public_key())
    assert same_public_key(settings.alipay_key.public_key(), alipay_private_key().public_key())
    (tmp_path / MERCHANT_KEY_FILE).unlink()
    with pytest.raises(SandboxStartError, match=MERCHANT_KEY_FILE):
        load_settings(tmp_path / "stack.json", 0.25)


def test_cli_reads_the_merchant_key_from_kms_and_stops_on_sigterm(tmp_path: Path, receiver: Receiver) -> None:
    import boto3
    from moto.server import ThreadedMotoServer

    from chalicelib.adapters.kms import KmsSigner

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    try:
        host, port = moto.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        kms = boto3.client(
            "kms",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
        stack = {
            "protocol": "openapi",
            "app_id": APP_ID,
            "seller_id": SELLER_ID,
            "partner_id": "",
            "aws_endpoint_url": endpoint,
            "region": "us-east-1",
            "signing_key_id": key_id,
        }
        (tmp_path / "stack.json").write_text(json.dumps(stack))
        _write_pem(tmp_path / ALIPAY_KEY_FILE, alipay_private_key())
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | {"SANDBOX_TIME_SCALE": "0.0005"}
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sandbox.server",
                "--stack-file",
                str(tmp_path / "stack.json"),
                "--host",
                "127.0.0.1",
                "--port",
                "0",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert process.stdout is not None
            line = process.stdout.readline().strip()
            match = re.fullmatch(r"sandbox listening on (http://127\.0\.0\.1:\d+)", line)
            assert match, (line, process.stderr.read() if process.poll() is not None and process.stderr else "")
            url = match.group(1)
            assert call(f"{url}/sandbox/health") == (200, {"status": "ok", "protocol": "openapi"})

            out_trade_no = order_no()
            signed = openapi_order(receiver.url, out_trade_no, signer=KmsSigner(kms, key_id))
            status, answer = call(f"{url}/sandbox/pay", {"order_info": signed, "outcome": "success"})
            assert (status, answer["resultStatus"]) == (200, "9000")
            verify_app_pay_result(answer["result"], alipay_keys())
            assert verify(receiver.wait_for(1)[0], AlipayProtocol.OPENAPI).out_trade_no == out_trade_no
            other = openapi_order(receiver.url, order_no())  # signed with a key KMS does not hold
            assert call(f"{url}/sandbox/pay", {"order_info": other})[1]["resultStatus"] == "4000"

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=5) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    finally:
        moto.stop()
