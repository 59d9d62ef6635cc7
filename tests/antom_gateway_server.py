"""A fake Antom on 127.0.0.1: it checks the merchant's signature as Antom does and answers, signed, like Antom.

Served at ``<url>/ams/api/v1/payments/{pay,inquiryPayment,cancel,refund,inquiryRefund}`` (any path prefix of the
URL is part of what is signed, as behind a gateway). The request signature is checked with the merchant's public key
over ``POST <path as received>\\n<client-id>.<request-time>.<raw body>``; replies are signed with the fake's "Antom"
key over ``POST <same path>\\n<client-id>.<response-time>.<raw reply>``. Written from the protocol text with the
standard library and ``cryptography``, not with the product's ``antom`` module, so a bug there cannot hide itself.
Faults are scripted per request (``fail_next``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa


class Fault(Enum):
    """What the fake does to the next request instead of (or on top of) answering it normally."""

    HTTP_500 = "http_500"
    HTTP_400 = "http_400"
    SLOW = "slow"  # sleep ``slow_seconds`` first
    UNKNOWN = "unknown"  # a signed U UNKNOWN_EXCEPTION
    TAMPER = "tamper"  # sign the reply, then change a byte of it
    UNSIGNED = "unsigned"  # no signature header
    OTHER_KEY = "other_key"  # signed by a key that is not Antom's
    REPLAY = "replay"  # the last genuine reply to the same API, as sent then: signed by Antom, naming another request


@dataclass
class FakePayment:
    payment_request_id: str
    payment_id: str
    currency: str
    value: str
    status: str = "PROCESSING"


@dataclass(frozen=True)
class ReceivedRequest:
    path: str
    headers: dict[str, str]
    body: bytes
    signature_valid: bool


@dataclass
class FakeAntom:
    """The fake; use ``with FakeAntom(...).running() as antom``."""

    antom_key: rsa.RSAPrivateKey
    merchant_public_key: rsa.RSAPublicKey
    client_id: str
    other_key: rsa.RSAPrivateKey | None = None
    prefix: str = ""
    slow_seconds: float = 0.5
    refund_answer: str = "S"  # S: refunded at once; U: REFUND_IN_PROCESS
    requests: list[ReceivedRequest] = field(default_factory=list)
    payments: dict[str, FakePayment] = field(default_factory=dict)
    refunds: dict[str, dict[str, str]] = field(default_factory=dict)
    _faults: deque[Fault] = field(default_factory=deque)
    _sent: dict[str, tuple[bytes, str, str]] = field(default_factory=dict)  # by API: (body, response-time, signature)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}{self.prefix}"

    def fail_next(self, *faults: Fault) -> None:
        self._faults.extend(faults)

    def add_payment(self, payment: FakePayment) -> None:
        self.payments[payment.payment_request_id] = payment

    @contextmanager
    def running(self) -> Iterator[FakeAntom]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                fake._handle(self, body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    # --- one request -----------------------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        headers = {k.lower(): v for k, v in handler.headers.items()}
        path = handler.path
        valid = self._merchant_signed(path, headers, body)
        self.requests.append(ReceivedRequest(path, headers, body, valid))
        fault = self._faults.popleft() if self._faults else None
        if fault is Fault.SLOW:
            time.sleep(self.slow_seconds)
        if fault in (Fault.HTTP_500, Fault.HTTP_400):
            handler.send_response(500 if fault is Fault.HTTP_500 else 400)
            handler.send_header("Content-Length", "0")
            handler.end_headers()
            return
        api = path.removeprefix(self.prefix).rsplit("/", 1)[-1]
        if fault is Fault.REPLAY:
            self._reply(handler, *self._sent[api])
            return
        if not valid:
            answer: dict[str, Any] = {"result": _result("F", "INVALID_SIGNATURE", "signature is invalid")}
        elif fault is Fault.UNKNOWN:
            answer = {"result": _result("U", "UNKNOWN_EXCEPTION", "unknown")}
        else:
            answer = self._answer(path.removeprefix(self.prefix), json.loads(body))
        raw = json.dumps(answer, separators=(",", ":")).encode()
        response_time = "2026-12-05T18:30:00+08:00"
        key = self.other_key if fault is Fault.OTHER_KEY and self.other_key is not None else self.antom_key
        signature = key.sign(_content(path, self.client_id, response_time, raw), padding.PKCS1v15(), hashes.SHA256())
        header = f"algorithm=RSA256,keyVersion=1,signature={quote(base64.b64encode(signature).decode(), safe='')}"
        if fault is None and valid:
            self._sent[api] = (raw, response_time, header)
        if fault is Fault.TAMPER:
            raw = raw.replace(b'"S"', b'"F"', 1) if b'"S"' in raw else raw + b" "
        self._reply(handler, raw, response_time, None if fault is Fault.UNSIGNED else header)

    def _reply(self, handler: BaseHTTPRequestHandler, raw: bytes, response_time: str, signature: str | None) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json; charset=UTF-8")
        handler.send_header("Content-Length", str(len(raw)))
        handler.send_header("client-id", self.client_id)
        handler.send_header("response-time", response_time)
        if signature is not None:
            handler.send_header("signature", signature)
        handler.end_headers()
        handler.wfile.write(raw)

    def _merchant_signed(self, path: str, headers: dict[str, str], body: bytes) -> bool:
        header = headers.get("signature", "")
        if "signature=" not in header or headers.get("client-id") != self.client_id:
            return False
        signature = base64.b64decode(unquote(header.split("signature=", 1)[1]))
        content = _content(path, self.client_id, headers.get("request-time", ""), body)
        try:
            self.merchant_public_key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def _answer(self, api: str, request: dict[str, Any]) -> dict[str, Any]:
        name = api.rsplit("/", 1)[-1]
        ok = _result("S", "SUCCESS", "success")
        if name == "pay":
            number = request["paymentRequestId"]
            amount = request["paymentAmount"]
            payment = self.payments.setdefault(
                number, FakePayment(number, f"P-{number}", amount["currency"], amount["value"])
            )
            return {
                "result": _result("U", "PAYMENT_IN_PROCESS", "payment in process"),
                "paymentRequestId": number,
                "paymentId": payment.payment_id,
                "paymentAmount": amount,
                "normalUrl": f"https://cashier.example/{number}",
                "schemeUrl": f"alipays://pay?{number}",
            }
        if name == "inquiryPayment":
            found = self.payments.get(request["paymentRequestId"])
            if found is None:
                return {"result": _result("F", "ORDER_NOT_EXIST", "order not exist")}
            return {
                "result": ok,
                "paymentStatus": found.status,
                "paymentRequestId": found.payment_request_id,
                "paymentId": found.payment_id,
                "paymentAmount": {"currency": found.currency, "value": found.value},
            }
        if name == "cancel":
            found = self.payments.get(request["paymentRequestId"])
            if found is None:
                return {"result": _result("F", "ORDER_NOT_EXIST", "order not exist")}
            if found.status == "SUCCESS":
                return {"result": _result("F", "ORDER_STATUS_INVALID", "order status invalid")}
            found.status = "CANCELLED"
            return {"result": ok, "paymentRequestId": found.payment_request_id, "paymentId": found.payment_id}
        if name == "refund":
            paid = next((x for x in self.payments.values() if x.payment_id == request["paymentId"]), None)
            if paid is None or paid.status != "SUCCESS":
                return {"result": _result("F", "ORDER_STATUS_INVALID", "not refundable")}
            number = request["refundRequestId"]
            done = self.refunds.setdefault(
                number, {"status": "SUCCESS" if self.refund_answer == "S" else "PROCESSING", **request["refundAmount"]}
            )
            if done["status"] != "SUCCESS":
                return {"result": _result("U", "REFUND_IN_PROCESS", "refund in process")}
            return {
                "result": ok,
                "refundRequestId": number,
                "refundId": f"RF-{number}",
                "paymentId": paid.payment_id,
                "refundAmount": request["refundAmount"],
            }
        if name == "inquiryRefund":
            refund = self.refunds.get(request["refundRequestId"])
            if refund is None:
                return {"result": _result("F", "REFUND_NOT_EXIST", "refund not exist")}
            return {
                "result": ok,
                "refundRequestId": request["refundRequestId"],
                "refundId": f"RF-{request['refundRequestId']}",
                "refundStatus": refund["status"],
                "refundAmount": {"currency": refund["currency"], "value": refund["value"]},
            }
        return {"result": _result("F", "NO_INTERFACE_DEF", "no such API")}


def _result(status: str, code: str, message: str) -> dict[str, str]:
    return {"resultCode": code, "resultStatus": status, "resultMessage": message}


def _content(path: str, client_id: str, time_text: str, body: bytes) -> bytes:
    return f"POST {path}\n{client_id}.{time_text}.".encode() + body
