"""The sandbox playing Antom, over real HTTP, checked from the merchant's side of the wire.

The merchant here is written in the test from Antom's published rule (RSA PKCS#1 v1.5 SHA-256 over
``<METHOD> <path>\\n<client-id>.<time>.<body>``, header ``algorithm=RSA256,keyVersion=1,signature=<URL-encoded
base64>``), with ``cryptography`` directly: neither the sandbox's code nor the product's signs or verifies for it.
Every reply and notification is verified with the sandbox's public key only. A local receiver stands in for the
product's ``POST /antom/notify``.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import urllib3
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chalicelib.alipay.notifications import AlipayProtocol
from sandbox import antom
from sandbox.notify import NotificationSender
from sandbox.server import RunningSandbox, start_sandbox
from sandbox.trades import SandboxSettings
from tests.keygen import rsa_key

CLIENT_ID = "SANDBOX_5YTEST2Q2Z01000"
SCALE = 0.0005  # Antom's 2 min becomes 0.06 s, its 10 min 0.3 s
HTTP = urllib3.PoolManager(retries=False, timeout=5.0)
ACK = b'{"result":{"resultCode":"SUCCESS","resultStatus":"S","resultMessage":"success"}}'
# What the product's notify URL looks like behind API Gateway: a stage prefix, and a query for good measure.
NOTIFY_PATH = "/prod/antom/notify?merchant=local"


def antom_key() -> rsa.RSAPrivateKey:
    return rsa_key("sandbox-antom")


def merchant_key() -> rsa.RSAPrivateKey:
    return rsa_key("merchant-antom")


def settings() -> SandboxSettings:
    return SandboxSettings(
        protocol=AlipayProtocol.ANTOM,
        alipay_key=antom_key(),
        merchant_public_key=merchant_key().public_key(),
        antom_client_id=CLIENT_ID,
        time_scale=SCALE,
    )


# --- the merchant's side, written independently ----------------------------------------------------------------


def content(method: str, path: str, client_id: str, moment: str, body: bytes) -> bytes:
    return f"{method} {path}\n{client_id}.{moment}.".encode() + body


def signature_header(key: rsa.RSAPrivateKey, signed: bytes, algorithm: str = "RSA256") -> str:
    raw = key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
    return f"algorithm={algorithm},keyVersion=1,signature={quote(base64.b64encode(raw).decode(), safe='')}"


def verified(headers: Any, body: bytes, path: str, time_header: str) -> bool:
    """Whether ``body`` carries a valid signature of the sandbox's Antom key (its public half only)."""
    value = headers.get("signature") or ""
    encoded = value.split("signature=", 1)[1] if "signature=" in value else ""
    signed = content("POST", path, headers.get("client-id") or "", headers.get(time_header) or "", body)
    try:
        antom_key().public_key().verify(base64.b64decode(unquote(encoded)), signed, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data

    @property
    def result(self) -> dict[str, str]:
        return dict(self.json["result"])


def call(
    running: RunningSandbox,
    path: str,
    request: dict[str, Any],
    *,
    key: rsa.RSAPrivateKey | None = None,
    client_id: str = CLIENT_ID,
    signed_path: str | None = None,
    tamper: Callable[[bytes], bytes] | None = None,
    algorithm: str = "RSA256",
    drop: str | None = None,
) -> Answer:
    """POST a signed request, as the merchant's backend does."""
    body = json.dumps(request, separators=(",", ":")).encode()
    moment = str(int(time.time() * 1000))
    signed = content("POST", signed_path or path, client_id, moment, body)
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "Client-Id": client_id,  # header names are case-insensitive
        "request-time": moment,
        "signature": signature_header(key or merchant_key(), signed, algorithm),
    }
    if drop:
        del headers[drop]
    sent = tamper(body) if tamper else body
    response = HTTP.request("POST", running.url + path, body=sent, headers=headers)
    return Answer(response.status, response.headers, response.data)


# --- a webhook stand-in ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> dict[str, Any]:
        data = json.loads(self.body)
        assert isinstance(data, dict)
        return data


class Receiver:
    """Records every POST; answers from a script, then Antom's ack."""

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
                    receiver.deliveries.append(Delivery(self.path, dict(self.headers.items()), body))
                    status, reply = receiver.answers.popleft() if receiver.answers else (200, ACK)
                    receiver.changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{NOTIFY_PATH}"

    def wait(self, count: int, timeout: float = 10.0) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while len(self.deliveries) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(f"{len(self.deliveries)} deliveries, expected {count}")
                self.changed.wait(left)
            return list(self.deliveries)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def running() -> Iterator[RunningSandbox]:
    with start_sandbox(settings()) as r:
        yield r


_numbers = iter(range(10**6))


def pay_request(receiver: Receiver | None, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "productCode": "CASHIER_PAYMENT",
        "paymentRequestId": f"T{next(_numbers):06d}{int(time.time())}",
        "order": {
            "referenceOrderId": "ref-1",
            "orderDescription": "T-shirt",
            "orderAmount": {"currency": "USD", "value": "1234"},
        },
        "paymentAmount": {"currency": "USD", "value": "1234"},
        "paymentMethod": {"paymentMethodType": "ALIPAY_CN"},
        "paymentRedirectUrl": "https://shop.example/return?order=1",
        "paymentExpiryTime": (datetime.now(UTC) + timedelta(minutes=15)).astimezone().isoformat(timespec="seconds"),
        "env": {"terminalType": "WAP", "osType": "IOS"},
    }
    if receiver is not None:
        request["paymentNotifyUrl"] = receiver.url
    request.update(changes)
    return request


def paid(running: RunningSandbox, receiver: Receiver, **changes: Any) -> tuple[dict[str, Any], str]:
    """A payment the shopper paid at the cashier (its notification acknowledged); (pay request, paymentId)."""
    request = pay_request(receiver, **changes)
    payment_id = call(running, antom.PAY_PATH, request).json["paymentId"]
    page = HTTP.request("POST", f"{running.url}{antom.CHECKOUT_PREFIX}{payment_id}/pay", redirect=False)
    assert page.status == 302
    receiver.wait(1)
    return request, payment_id


# --- the wire ------------------------------------------------------------------------------------------------------


def test_pay_answers_in_process_with_where_to_pay_and_a_reply_signed_by_antoms_key(
    running: RunningSandbox, receiver: Receiver
) -> None:
    answer = call(running, antom.PAY_PATH, pay_request(receiver))
    assert answer.status == 200
    assert answer.result == {
        "resultCode": "PAYMENT_IN_PROCESS",
        "resultStatus": "U",
        "resultMessage": "payment in process",
    }
    assert answer.headers["client-id"] == CLIENT_ID
    assert verified(answer.headers, answer.body, antom.PAY_PATH, "response-time")
    # The same bytes over another path, or with a changed byte, do not verify: the check is real.
    assert not verified(answer.headers, answer.body, antom.INQUIRY_PAYMENT_PATH, "response-time")
    assert not verified(answer.headers, answer.body.replace(b"1234", b"1235"), antom.PAY_PATH, "response-time")
    data = answer.json
    assert data["paymentAmount"] == {"currency": "USD", "value": "1234"}
    assert data["normalUrl"] == f"{running.url}{antom.CHECKOUT_PREFIX}{data['paymentId']}"
    assert data["schemeUrl"].startswith("alipays://")
    assert data["applinkUrl"].startswith(running.url)
    page = HTTP.request("GET", data["normalUrl"])
    assert page.status == 200
    assert b'id="cashier-amount">12.34 USD<' in page.data
    assert b'id="pay"' in page.data


def test_a_web_payment_gets_only_the_normal_url(running: RunningSandbox) -> None:
    data = call(running, antom.PAY_PATH, pay_request(None, env={"terminalType": "WEB"})).json
    assert "normalUrl" in data
    assert "schemeUrl" not in data
    assert "applinkUrl" not in data


@pytest.mark.parametrize(
    ("how", "code"),
    [
        ({"key": rsa_key("another-merchant")}, "INVALID_SIGNATURE"),
        ({"tamper": lambda body: body.replace(b"1234", b"1")}, "INVALID_SIGNATURE"),
        ({"signed_path": antom.REFUND_PATH}, "INVALID_SIGNATURE"),
        ({"algorithm": "RSA"}, "INVALID_SIGNATURE"),
        ({"drop": "signature"}, "INVALID_SIGNATURE"),
        ({"drop": "request-time"}, "PARAM_ILLEGAL"),
    ],
    ids=["other-key", "body-changed", "other-path", "algorithm", "no-signature", "no-request-time"],
)
def test_a_request_that_does_not_verify_is_refused_and_opens_nothing(
    running: RunningSandbox, how: dict[str, Any], code: str
) -> None:
    request = pay_request(None)
    answer = call(running, antom.PAY_PATH, request, **how)
    assert answer.status == 200
    assert answer.result["resultStatus"] == "F"
    assert answer.result["resultCode"] == code
    assert verified(answer.headers, answer.body, antom.PAY_PATH, "response-time")
    inquiry = call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentRequestId": request["paymentRequestId"]})
    assert inquiry.result["resultCode"] == "ORDER_NOT_EXIST"


def test_a_query_in_the_request_path_is_signed_and_routed_without_it(running: RunningSandbox) -> None:
    path = antom.INQUIRY_PAYMENT_PATH + "?trace=1"
    answer = call(running, path, {"paymentRequestId": "NO-SUCH-PAYMENT"})
    assert answer.result["resultCode"] == "ORDER_NOT_EXIST"  # routed: verified over the path with its query
    assert verified(answer.headers, answer.body, path, "response-time")
    unsigned_query = call(
        running, path, {"paymentRequestId": "NO-SUCH-PAYMENT"}, signed_path=antom.INQUIRY_PAYMENT_PATH
    )
    assert unsigned_query.result["resultCode"] == "INVALID_SIGNATURE"


def test_the_sdks_sandbox_path_is_answered_too_and_signed_over_it(running: RunningSandbox) -> None:
    # The official SDKs send a SANDBOX_ client's requests to /ams/sandbox/api/... (adjust_sandbox_url).
    path = antom.PAY_PATH.replace("/ams/api/", "/ams/sandbox/api/")
    answer = call(running, path, pay_request(None))
    assert answer.result["resultCode"] == "PAYMENT_IN_PROCESS"
    assert verified(answer.headers, answer.body, path, "response-time")
    assert not verified(answer.headers, answer.body, antom.PAY_PATH, "response-time")


def test_another_client_id_is_refused_unsigned(running: RunningSandbox) -> None:
    answer = call(running, antom.PAY_PATH, pay_request(None), client_id="SANDBOX_SOMEONE_ELSE")
    assert answer.result == {
        "resultCode": "KEY_NOT_FOUND",
        "resultStatus": "F",
        "resultMessage": "The key is not found.",
    }
    assert "signature" not in answer.headers


@pytest.mark.parametrize(
    "changes",
    [
        {"productCode": "AGREEMENT_PAYMENT"},
        {"paymentAmount": {"currency": "USD", "value": "12.34"}},
        {"paymentAmount": {"currency": "USD", "value": 1234}},
        {"paymentMethod": {"paymentMethodType": "CARD"}},
        {"paymentRedirectUrl": "javascript:alert(1)"},
        {"env": {"terminalType": "APP"}},
        {"paymentExpiryTime": "2030-01-01T00:00:00"},
        {"paymentExpiryTime": "2001-01-01T00:00:00+08:00"},
    ],
    ids=["product", "decimal-value", "number-value", "method", "redirect", "os-type", "naive-expiry", "past-expiry"],
)
def test_a_bad_pay_request_is_refused_param_illegal(running: RunningSandbox, changes: dict[str, Any]) -> None:
    answer = call(running, antom.PAY_PATH, pay_request(None, **changes))
    assert answer.result["resultStatus"] == "F"
    assert answer.result["resultCode"] == "PARAM_ILLEGAL"


def test_pay_is_idempotent_by_payment_request_id(running: RunningSandbox) -> None:
    request = pay_request(None)
    first = call(running, antom.PAY_PATH, request).json
    again = call(running, antom.PAY_PATH, request).json
    assert again["paymentId"] == first["paymentId"]
    other = call(running, antom.PAY_PATH, {**request, "paymentAmount": {"currency": "USD", "value": "1"}})
    assert other.result["resultCode"] == "REPEAT_REQ_INCONSISTENT"


# --- paying and notifications ----------------------------------------------------------------------------------------


def test_the_shopper_pays_at_the_cashier_and_antom_notifies_signed_over_the_notify_urls_path(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request, payment_id = paid(running, receiver)
    page_back = receiver.deliveries[0]
    assert page_back.path == NOTIFY_PATH
    headers = {k.lower(): v for k, v in page_back.headers.items()}
    assert headers["client-id"] == CLIENT_ID
    assert headers["content-type"].startswith("application/json")
    assert verified(headers, page_back.body, NOTIFY_PATH, "request-time")
    assert not verified(headers, page_back.body, "/antom/notify", "request-time")  # the stage prefix is signed
    note = page_back.json
    assert note["notifyType"] == "PAYMENT_RESULT"
    assert note["result"] == {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}
    assert note["paymentRequestId"] == request["paymentRequestId"]
    assert note["paymentId"] == payment_id
    assert note["paymentAmount"] == {"currency": "USD", "value": "1234"}
    assert note["paymentTime"]
    inquiry = call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentRequestId": request["paymentRequestId"]})
    assert verified(inquiry.headers, inquiry.body, antom.INQUIRY_PAYMENT_PATH, "response-time")
    assert inquiry.json["paymentStatus"] == "SUCCESS"
    assert inquiry.json["paymentId"] == payment_id
    # Paying twice moves no more money: the second Pay finds it paid and sends the shopper back, nothing else.
    again = HTTP.request("POST", f"{running.url}{antom.CHECKOUT_PREFIX}{payment_id}/pay", redirect=False)
    assert again.status == 302
    assert again.headers["Location"] == request["paymentRedirectUrl"]
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1


def test_a_notification_is_retried_until_the_answer_is_antoms_ack_as_json(
    running: RunningSandbox, receiver: Receiver
) -> None:
    # A 500, Alipay's "success" (not Antom's ack), a 200 with another result: all failed deliveries; the ack with
    # other spacing and member order is JSON-equal, and ends the retries.
    receiver.answers.extend(
        [
            (500, b"oops"),
            (200, b"success"),
            (200, b'{"result":{"resultCode":"FAIL","resultStatus":"F","resultMessage":"no"}}'),
            (200, b'{ "result": {"resultStatus": "S", "resultMessage": "success", "resultCode": "SUCCESS"} }'),
        ]
    )
    request = pay_request(receiver)
    call(running, antom.PAY_PATH, request)
    reply = HTTP.request(
        "POST", f"{running.url}/sandbox/pay", json={"out_trade_no": request["paymentRequestId"], "outcome": "success"}
    )
    assert reply.status == 200
    deliveries = receiver.wait(4)
    assert len({d.body for d in deliveries}) == 1  # the same notification each time
    time.sleep(0.5)
    assert len(receiver.deliveries) == 4
    view = json.loads(HTTP.request("GET", f"{running.url}/sandbox/trades/{request['paymentRequestId']}").data)
    assert [a["acknowledged"] for a in view["attempts"]] == [False, False, False, True]
    assert view["notifications"][0]["acknowledged"] is True


def test_duplicates_and_a_stale_pending_notice_delivered_after_the_result(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request = pay_request(receiver)
    call(running, antom.PAY_PATH, request)
    controls = {"out_trade_no": request["paymentRequestId"], "duplicates": 2, "reorder": True}
    assert HTTP.request("POST", f"{running.url}/sandbox/pay", json=controls).status == 200
    deliveries = receiver.wait(6)
    kinds = [(d.json["notifyType"], d.json["result"]["resultStatus"]) for d in deliveries]
    assert kinds == [("PAYMENT_RESULT", "S")] * 3 + [("PAYMENT_PENDING", "U")] * 3


def test_a_pending_notice_first_then_the_result(running: RunningSandbox, receiver: Receiver) -> None:
    request = pay_request(receiver)
    call(running, antom.PAY_PATH, request)
    controls = {"out_trade_no": request["paymentRequestId"], "pending_first": True}
    assert HTTP.request("POST", f"{running.url}/sandbox/pay", json=controls).status == 200
    kinds = [d.json["notifyType"] for d in receiver.wait(2)]
    assert kinds == ["PAYMENT_PENDING", "PAYMENT_RESULT"]


def test_a_failed_payment_is_notified_f_and_inquired_fail(running: RunningSandbox, receiver: Receiver) -> None:
    request = pay_request(receiver)
    call(running, antom.PAY_PATH, request)
    controls = {"out_trade_no": request["paymentRequestId"], "outcome": "fail"}
    assert HTTP.request("POST", f"{running.url}/sandbox/pay", json=controls).status == 200
    note = receiver.wait(1)[0].json
    assert note["notifyType"] == "PAYMENT_RESULT"
    assert note["result"]["resultStatus"] == "F"
    assert "paymentTime" not in note
    inquiry = call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentRequestId": request["paymentRequestId"]})
    assert inquiry.json["paymentStatus"] == "FAIL"


def test_an_expired_payment_cannot_be_paid_until_a_late_payment_is_played(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request = pay_request(receiver)
    payment_id = call(running, antom.PAY_PATH, request).json["paymentId"]
    number = request["paymentRequestId"]
    assert json.loads(HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/expire").data) == {"status": "FAIL"}
    page = HTTP.request("POST", f"{running.url}{antom.CHECKOUT_PREFIX}{payment_id}/pay", redirect=False)
    assert page.status == 409
    assert call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentId": payment_id}).json["paymentStatus"] == "FAIL"
    assert receiver.deliveries == []  # expiry is not notified
    late = HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/late-payment")
    assert json.loads(late.data)["trade_status"] == "SUCCESS"
    assert receiver.wait(1)[0].json["result"]["resultStatus"] == "S"
    assert call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentId": payment_id}).json["paymentStatus"] == "SUCCESS"


def test_payment_expiry_time_is_absolute() -> None:
    now = [datetime(2026, 1, 1, 12, 0, tzinfo=UTC)]
    sandbox = antom.AntomSandbox(settings(), clock=lambda: now[0])
    try:
        request = pay_request(None, paymentExpiryTime="2026-01-01T20:05:00+08:00")  # 12:05 UTC
        sandbox.pay(request, "http://sandbox")
        now[0] += timedelta(minutes=4, seconds=59)
        assert (
            sandbox.inquiry_payment({"paymentRequestId": request["paymentRequestId"]})["paymentStatus"] == "PROCESSING"
        )
        now[0] += timedelta(seconds=1)
        assert sandbox.inquiry_payment({"paymentRequestId": request["paymentRequestId"]})["paymentStatus"] == "FAIL"
        with pytest.raises(antom.Refused, match="ORDER_IS_CLOSED"):
            sandbox.shopper_pays(request["paymentRequestId"], "success", antom.PayControls())
    finally:
        sandbox.close()


def test_the_retry_schedule_is_antoms_scaled() -> None:
    delays: list[float] = []

    class Recording(NotificationSender):
        def call_later(self, delay: float, run: Callable[[], None]) -> None:
            delays.append(delay)
            run()

    def refuse(url: str, body: bytes, content_type: str, timeout: float, headers: Any) -> tuple[int, bytes, None]:
        return 503, b"", None

    sender = Recording(0.01, post=refuse)
    sandbox = antom.AntomSandbox(settings(), sender=sender)
    try:
        request = pay_request(None, paymentNotifyUrl="http://127.0.0.1:9/antom/notify")
        sandbox.pay(request, "http://sandbox")
        sandbox.shopper_pays(request["paymentRequestId"], "success", antom.PayControls())
        # The first delivery at once, then 2 min, 10 min, 10 min, 1 h, 2 h, 6 h, 15 h: 8 deliveries in all.
        assert delays == pytest.approx([0.0, 1.2, 6.0, 6.0, 36.0, 72.0, 216.0, 540.0])
        assert len(sender.attempts(request["paymentRequestId"])) == 8
    finally:
        sandbox.close()


# --- cancel --------------------------------------------------------------------------------------------------------


def test_cancel_closes_a_waiting_payment(running: RunningSandbox) -> None:
    request = pay_request(None)
    payment_id = call(running, antom.PAY_PATH, request).json["paymentId"]
    answer = call(running, antom.CANCEL_PATH, {"paymentRequestId": request["paymentRequestId"]})
    assert verified(answer.headers, answer.body, antom.CANCEL_PATH, "response-time")
    assert answer.result["resultStatus"] == "S"
    assert answer.json["paymentId"] == payment_id
    assert answer.json["cancelTime"]
    assert call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentId": payment_id}).json["paymentStatus"] == "CANCELLED"
    page = HTTP.request("POST", f"{running.url}{antom.CHECKOUT_PREFIX}{payment_id}/pay", redirect=False)
    assert page.status == 409
    unknown = call(running, antom.CANCEL_PATH, {"paymentRequestId": "NO-SUCH-PAYMENT"})
    assert unknown.result["resultCode"] == "ORDER_NOT_EXIST"


def test_cancel_of_a_paid_payment_refunds_it_in_full_or_is_refused_past_the_window(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request, payment_id = paid(running, receiver)
    number = request["paymentRequestId"]
    control = HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/cancel-paid", json={"cancel_paid": "refuse"})
    assert control.status == 200
    refused = call(running, antom.CANCEL_PATH, {"paymentRequestId": number})
    assert refused.result["resultCode"] == "ORDER_STATUS_INVALID"
    assert call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentId": payment_id}).json["paymentStatus"] == "SUCCESS"
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/cancel-paid", json={"cancel_paid": "refund"})
    done = call(running, antom.CANCEL_PATH, {"paymentRequestId": number})
    assert done.result["resultStatus"] == "S"
    view = json.loads(HTTP.request("GET", f"{running.url}/sandbox/trades/{number}").data)
    assert (view["status"], view["refund_fee"]) == ("CANCELLED", "12.34")
    # Nothing is left to refund: the money went back with the cancel.
    refund = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-after-cancel", "100"))
    assert refund.result["resultCode"] == "ORDER_STATUS_INVALID"


def test_a_refunded_payment_cannot_be_cancelled(running: RunningSandbox, receiver: Receiver) -> None:
    request, payment_id = paid(running, receiver)
    call(running, antom.REFUND_PATH, refund_request(payment_id, "R-partial", "100"))
    answer = call(running, antom.CANCEL_PATH, {"paymentRequestId": request["paymentRequestId"]})
    assert answer.result["resultCode"] == "PROCESS_FAIL"


# --- refunds -------------------------------------------------------------------------------------------------------


def refund_request(payment_id: str, number: str, value: str, notify_url: str | None = None) -> dict[str, Any]:
    request = {
        "refundRequestId": number,
        "paymentId": payment_id,
        "refundAmount": {"currency": "USD", "value": value},
        "refundReason": "returned",
    }
    if notify_url:
        request["refundNotifyUrl"] = notify_url
    return request


def test_a_refund_succeeds_once_per_refund_request_id_and_is_notified(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request, payment_id = paid(running, receiver)
    answer = call(running, antom.REFUND_PATH, refund_request(payment_id, "R1", "1000", receiver.url))
    assert verified(answer.headers, answer.body, antom.REFUND_PATH, "response-time")
    assert answer.result["resultStatus"] == "S"
    assert answer.json["refundAmount"] == {"currency": "USD", "value": "1000"}
    assert answer.json["refundTime"]
    note = receiver.wait(2)[1]
    assert verified({k.lower(): v for k, v in note.headers.items()}, note.body, NOTIFY_PATH, "request-time")
    assert note.json["notifyType"] == "REFUND_RESULT"
    assert note.json["refundStatus"] == "SUCCESS"
    assert note.json["refundRequestId"] == "R1"
    assert note.json["refundId"] == answer.json["refundId"]
    # The same request again: the same refund, no more money.
    again = call(running, antom.REFUND_PATH, refund_request(payment_id, "R1", "1000", receiver.url))
    assert again.json["refundId"] == answer.json["refundId"]
    changed = call(running, antom.REFUND_PATH, refund_request(payment_id, "R1", "999"))
    assert changed.result["resultCode"] == "REPEAT_REQ_INCONSISTENT"
    over = call(running, antom.REFUND_PATH, refund_request(payment_id, "R2", "235"))
    assert over.result["resultCode"] == "REFUND_AMOUNT_EXCEED"
    view = json.loads(HTTP.request("GET", f"{running.url}/sandbox/trades/{request['paymentRequestId']}").data)
    assert view["refund_fee"] == "10.00"
    assert [r["out_request_no"] for r in view["refunds"]] == ["R1"]
    inquiry = call(running, antom.INQUIRY_REFUND_PATH, {"refundRequestId": "R1"})
    assert (inquiry.json["refundStatus"], inquiry.json["refundId"]) == ("SUCCESS", answer.json["refundId"])


@pytest.mark.parametrize(
    ("request_for", "code"),
    [
        (lambda pid: {"refundRequestId": "R", "refundAmount": {"currency": "USD", "value": "1"}}, "PARAM_ILLEGAL"),
        (lambda pid: refund_request("2026000000NOSUCHPAYMENT", "R", "1"), "ORDER_NOT_EXIST"),
        (lambda pid: {**refund_request(pid, "R", "1"), "refundAmount": {"currency": "EUR", "value": "1"}}, None),
    ],
    ids=["no-payment-id", "unknown-payment", "other-currency"],
)
def test_a_refund_that_cannot_be_done_is_refused(
    running: RunningSandbox, receiver: Receiver, request_for: Callable[[str], dict[str, Any]], code: str | None
) -> None:
    _, payment_id = paid(running, receiver)
    answer = call(running, antom.REFUND_PATH, request_for(payment_id))
    assert answer.result["resultStatus"] == "F"
    if code:
        assert answer.result["resultCode"] == code


def test_a_refund_of_an_unpaid_payment_is_refused(running: RunningSandbox) -> None:
    payment_id = call(running, antom.PAY_PATH, pay_request(None)).json["paymentId"]
    answer = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-unpaid", "1"))
    assert answer.result["resultCode"] == "ORDER_STATUS_INVALID"


def test_a_slow_refund_answers_u_then_settles_by_inquiry_and_notification(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request, payment_id = paid(running, receiver)
    number = request["paymentRequestId"]
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/refunds", json={"slow": True})
    answer = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-slow", "500", receiver.url))
    assert answer.result == {
        "resultCode": "REFUND_IN_PROCESS",
        "resultStatus": "U",
        "resultMessage": "refund in process",
    }
    refund_id = answer.json["refundId"]
    assert call(running, antom.INQUIRY_REFUND_PATH, {"refundId": refund_id}).json["refundStatus"] == "PROCESSING"
    # Asked again meanwhile: still the one refund, still in process.
    again = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-slow", "500", receiver.url))
    assert (again.result["resultStatus"], again.json["refundId"]) == ("U", refund_id)
    settled = HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/refunds/settle")
    assert json.loads(settled.data) == {"settled": ["R-slow"]}
    note = receiver.wait(2)[1].json
    assert (note["refundStatus"], note["refundId"]) == ("SUCCESS", refund_id)
    assert call(running, antom.INQUIRY_REFUND_PATH, {"refundRequestId": "R-slow"}).json["refundStatus"] == "SUCCESS"
    view = json.loads(HTTP.request("GET", f"{running.url}/sandbox/trades/{number}").data)
    assert (view["refund_fee"], view["refunds_processing"]) == ("5.00", [])


def test_a_slow_refund_that_fails_gives_its_amount_back_to_refund(running: RunningSandbox, receiver: Receiver) -> None:
    request, payment_id = paid(running, receiver)
    number = request["paymentRequestId"]
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/refunds", json={"slow": True})
    call(running, antom.REFUND_PATH, refund_request(payment_id, "R-fails", "1234", receiver.url))
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/refunds/settle", json={"outcome": "FAIL"})
    note = receiver.wait(2)[1].json
    assert (note["refundStatus"], note["result"]["resultStatus"]) == ("FAIL", "F")
    assert call(running, antom.INQUIRY_REFUND_PATH, {"refundRequestId": "R-fails"}).json["refundStatus"] == "FAIL"
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/refunds", json={"slow": False})
    retry = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-again", "1234"))
    assert retry.result["resultStatus"] == "S"


def test_a_lost_refund_reply_is_answered_again_for_the_same_refund_request_id(
    running: RunningSandbox, receiver: Receiver
) -> None:
    request, payment_id = paid(running, receiver)
    number = request["paymentRequestId"]
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/refunds", json={"lose_replies": 1})
    lost = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-lost", "100"))
    assert lost.status == 504
    answer = call(running, antom.REFUND_PATH, refund_request(payment_id, "R-lost", "100"))
    assert answer.result["resultStatus"] == "S"
    view = json.loads(HTTP.request("GET", f"{running.url}/sandbox/trades/{number}").data)
    assert (view["refund_fee"], len(view["refunds"])) == ("1.00", 1)


def test_lost_pay_and_cancel_replies_leave_one_payment_answered_again(running: RunningSandbox) -> None:
    request = pay_request(None)
    HTTP.request("POST", f"{running.url}/sandbox/lose-replies", json={"api": "pay", "count": 1})
    assert call(running, antom.PAY_PATH, request).status == 504
    again = call(running, antom.PAY_PATH, request)
    assert again.result["resultCode"] == "PAYMENT_IN_PROCESS"
    view = json.loads(HTTP.request("GET", f"{running.url}/sandbox/trades/{request['paymentRequestId']}").data)
    assert view["payment_id"] == again.json["paymentId"]
    HTTP.request("POST", f"{running.url}/sandbox/lose-replies", json={"api": "cancel", "count": 1})
    assert call(running, antom.CANCEL_PATH, {"paymentRequestId": request["paymentRequestId"]}).status == 504
    status = call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentRequestId": request["paymentRequestId"]})
    assert status.json["paymentStatus"] == "CANCELLED"  # done, though its reply was lost
    bad = HTTP.request("POST", f"{running.url}/sandbox/lose-replies", json={"api": "gateway.do"})
    assert bad.status == 400


def test_an_unknown_refund_is_refund_not_exist(running: RunningSandbox) -> None:
    answer = call(running, antom.INQUIRY_REFUND_PATH, {"refundRequestId": "NEVER-ASKED"})
    assert answer.result["resultCode"] == "REFUND_NOT_EXIST"


def test_answer_status_and_notify_controls(running: RunningSandbox, receiver: Receiver) -> None:
    request = pay_request(receiver)
    call(running, antom.PAY_PATH, request)
    number = request["paymentRequestId"]
    HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/answer-status", json={"trade_status": "MYSTERY"})
    assert call(running, antom.INQUIRY_PAYMENT_PATH, {"paymentRequestId": number}).json["paymentStatus"] == "MYSTERY"
    sent = HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/notify", json={"trade_status": "SUCCESS"})
    assert json.loads(sent.data)["trade_status"] == "SUCCESS"
    assert receiver.wait(1)[0].json["result"]["resultStatus"] == "S"
    bad = HTTP.request("POST", f"{running.url}/sandbox/trades/{number}/notify", json={"trade_status": "TRADE_SUCCESS"})
    assert bad.status == 400
    assert urlsplit(receiver.url).path == "/prod/antom/notify"
