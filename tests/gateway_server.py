"""A fake Alipay gateway on 127.0.0.1: it checks the merchant's signature as Alipay does and answers like Alipay.

Served at ``<url>`` (``/gateway.do``), dispatched by parameter like the real gateway:

- Open Platform ``alipay.trade.query`` (form POST): the request signature is checked with the merchant's public key
  over the sorted ``k=v`` content of every parameter but ``sign`` (``sign_type`` included); the JSON reply is
  signed with the fake's "Alipay" key over the exact ``alipay_trade_query_response`` text.
- Legacy ``single_trade_query`` (GET): signature over the sorted, unquoted ``k=v`` content without ``sign`` and
  ``sign_type``; XML reply ``<alipay><is_success>T</is_success>...<response><trade>...``. Its ``<sign>`` is a
  stand-in (which bytes Alipay signs there is UNCONFIRMED; the product does not verify it).
- Legacy ``notify_verify`` (GET): ``notify_answers[notify_id]``, else ``false``.

The signature checks are written here from the protocol text with the standard library and ``cryptography``,
not with the product's canonicalisation, so a bug there cannot hide itself. Faults are scripted per request
(``fail_next``); ``connections`` counts TCP connections so tests can see keep-alive reuse.
"""

from __future__ import annotations

import binascii
import json
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit
from xml.sax.saxutils import escape

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"RSA2": hashes.SHA256, "RSA": hashes.SHA1}


class Fault(Enum):
    """What the fake does to the next request instead of (or on top of) answering it normally."""

    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_404 = "http_404"
    SERVICE_UNAVAILABLE = "code_20000"  # a signed reply with code 20000 (openapi)
    SLOW = "slow"  # sleep ``slow_seconds`` before answering normally
    TAMPER_AMOUNT = "tamper_amount"  # sign the reply, then change total_amount in the text
    UNSIGNED = "unsigned"  # a reply without sign
    GARBAGE = "garbage"  # a 200 reply that is not what the service returns


@dataclass
class FakeTrade:
    """A trade as the fake gateway knows it."""

    out_trade_no: str
    total_amount: str
    trade_status: str = "TRADE_SUCCESS"
    trade_no: str = "2024031022001400000000000001"
    currency: str = "USD"


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the fake saw it; ``signature_valid`` is None where no signature is expected."""

    method: str
    params: Mapping[str, str]
    signature_valid: bool | None


@dataclass
class FakeAlipayGateway:
    """The fake gateway; use ``with FakeAlipayGateway(...).running() as gateway``."""

    alipay_key: rsa.RSAPrivateKey
    merchant_public_key: rsa.RSAPublicKey
    app_id: str = "2021000123456789"
    partner: str = "2088102177649450"
    sign_type: str = "RSA2"  # the openapi app's sign type; legacy requests use their own sign_type
    slow_seconds: float = 1.0
    trades: dict[str, FakeTrade] = field(default_factory=dict)
    notify_answers: dict[str, str] = field(default_factory=dict)
    # forex_refund: the error of each next reply, in order (recorded replies for codes the sandbox never gives);
    # once empty, the refund succeeds.
    refund_errors: deque[str] = field(default_factory=deque)
    # The encoding legacy XML replies declare and are written in (recorded forex_refund replies declare GBK).
    xml_encoding: str = "utf-8"
    requests: list[ReceivedRequest] = field(default_factory=list)
    connections: int = 0
    _faults: deque[Fault] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not running"
        return f"http://127.0.0.1:{self._server.server_address[1]}/gateway.do"

    def fail_next(self, *faults: Fault) -> None:
        """Apply these faults to the next requests, one each, in order."""
        with self._lock:
            self._faults.extend(faults)

    def add_trade(self, trade: FakeTrade) -> FakeTrade:
        self.trades[trade.out_trade_no] = trade
        return trade

    @contextmanager
    def running(self) -> Iterator[FakeAlipayGateway]:
        server = _Server(("127.0.0.1", 0), _handler_for(self))
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._server = server
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
            self._server = None

    # --- called by the handler -----------------------------------------------------------------------------

    def _connected(self) -> None:
        with self._lock:
            self.connections += 1

    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _record(self, method: str, params: Mapping[str, str], valid: bool | None) -> None:
        with self._lock:
            self.requests.append(ReceivedRequest(method, dict(params), valid))

    def answer(self, method: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        fault = self._next_fault()
        if fault is Fault.SLOW:
            time.sleep(self.slow_seconds)
        elif fault in (Fault.HTTP_500, Fault.HTTP_502, Fault.HTTP_404):
            self._record(method, params, None)
            status = int(fault.value.removeprefix("http_"))
            return status, "text/html", b"<html><body>gateway error</body></html>"
        elif fault is Fault.GARBAGE:
            self._record(method, params, None)
            return 200, "text/html;charset=utf-8", b"<html>maintenance</html>"
        if params.get("service") == "notify_verify":
            self._record(method, params, None)
            answer = self.notify_answers.get(params.get("notify_id", ""), "false")
            if params.get("partner") != self.partner:
                answer = "false"
            return 200, "text/plain", answer.encode("utf-8")
        if params.get("service") == "single_trade_query":
            return self._single_trade_query(method, params, fault)
        if params.get("service") == "forex_refund":
            return self._forex_refund(method, params)
        return self._openapi(method, params, fault)

    def _forex_refund(self, method: str, params: dict[str, str]) -> tuple[int, str, bytes]:
        sign_type = params.get("sign_type", "")
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type") and v != "")
        valid = self._verify(content, params.get("sign", ""), sign_type)
        self._record(method, params, valid)
        if not valid:
            return self._xml_error("ILLEGAL_SIGN")
        with self._lock:
            error = self.refund_errors.popleft() if self.refund_errors else None
        if error:
            return self._xml_error(error)
        return self._xml("<alipay><is_success>T</is_success></alipay>")

    def _openapi(self, method: str, params: dict[str, str], fault: Fault | None) -> tuple[int, str, bytes]:
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v != "")
        valid = params.get("sign_type") == self.sign_type and self._verify(
            content, params.get("sign", ""), params.get("sign_type", "")
        )
        self._record(method, params, valid)
        name = params.get("method", "").replace(".", "_") + "_response"
        if params.get("app_id") != self.app_id:
            # Alipay cannot know which key to sign with for an app it does not know.
            return self._json(name, _failure("40002", "isv.invalid-app-id", "无效的AppID参数"), fault, signed=False)
        if not valid:
            return self._json(name, _failure("40002", "isv.invalid-signature", "验签出错"), fault)
        if fault is Fault.SERVICE_UNAVAILABLE:
            return self._json(name, _failure("20000", "isp.unknow-error", "系统繁忙"), fault)
        if params.get("method") != "alipay.trade.query":
            return self._json("error_response", _failure("40002", "isv.invalid-method", "不存在的方法名"), fault)
        out_trade_no = json.loads(params.get("biz_content", "{}")).get("out_trade_no", "")
        trade = self.trades.get(out_trade_no)
        if trade is None:
            reply = {
                "code": "40004",
                "msg": "Business Failed",
                "sub_code": "ACQ.TRADE_NOT_EXIST",
                "sub_msg": "交易不存在",
                "out_trade_no": out_trade_no,
                "buyer_pay_amount": "0.00",
                "point_amount": "0.00",
                "invoice_amount": "0.00",
                "receipt_amount": "0.00",
            }
            return self._json(name, reply, fault)
        reply = {
            "code": "10000",
            "msg": "Success",
            "buyer_logon_id": "159****5620",
            "buyer_pay_amount": "0.00",
            "buyer_user_id": "2088101117955611",
            "fund_bill_list": [{"amount": trade.total_amount, "fund_channel": "ALIPAYACCOUNT"}],
            "invoice_amount": "0.00",
            "out_trade_no": trade.out_trade_no,
            "point_amount": "0.00",
            "receipt_amount": "0.00",
            "send_pay_date": "2024-03-10 00:31:02",
            "total_amount": trade.total_amount,
            "trade_no": trade.trade_no,
            "trade_status": trade.trade_status,
            "trans_currency": trade.currency,
        }
        return self._json(name, reply, fault)

    def _json(
        self, name: str, reply: dict[str, Any], fault: Fault | None, signed: bool = True
    ) -> tuple[int, str, bytes]:
        inner = json.dumps(reply, ensure_ascii=False, separators=(",", ":"))
        text = f'{{"{name}":{inner}'
        if signed and fault is not Fault.UNSIGNED:
            text += f',"sign":"{self._sign(inner, self.sign_type)}"'
        text += "}"
        if fault is Fault.TAMPER_AMOUNT:
            amount = reply.get("total_amount", "")
            text = text.replace(f'"total_amount":"{amount}"', '"total_amount":"0.01"')
        return 200, "text/html;charset=utf-8", text.encode("utf-8")

    def _single_trade_query(self, method: str, params: dict[str, str], fault: Fault | None) -> tuple[int, str, bytes]:
        sign_type = params.get("sign_type", "")
        content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k not in ("sign", "sign_type") and v != "")
        valid = sign_type in _HASHES and self._verify(content, params.get("sign", ""), sign_type)
        self._record(method, params, valid)
        if params.get("partner") != self.partner:
            return self._xml_error("ILLEGAL_PARTNER")
        if not valid:
            return self._xml_error("ILLEGAL_SIGN")
        trade = self.trades.get(params.get("out_trade_no", ""))
        if trade is None:
            return self._xml_error("TRADE_NOT_EXIST")
        fields = {
            "body": "order body",
            "buyer_email": "buyer@example.com",
            "buyer_id": "2088002007274897",
            "currency": trade.currency,
            "gmt_create": "2024-03-10 00:30:05",
            "gmt_payment": "2024-03-10 00:31:02",
            "out_trade_no": trade.out_trade_no,
            "seller_id": self.partner,
            "subject": "order subject",
            "total_fee": trade.total_amount,
            "trade_no": trade.trade_no,
            "trade_status": trade.trade_status,
        }
        request = "".join(
            f'<param name="{escape(k)}">{escape(v)}</param>'
            for k, v in params.items()
            if k not in ("sign", "sign_type")
        )
        trade_xml = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
        sign = self._sign("&".join(f"{k}={v}" for k, v in sorted(fields.items())), sign_type)
        if fault is Fault.TAMPER_AMOUNT:
            trade_xml = trade_xml.replace(f"<total_fee>{trade.total_amount}</total_fee>", "<total_fee>0.01</total_fee>")
        return self._xml(
            f"<alipay><is_success>T</is_success><request>{request}</request>"
            f"<response><trade>{trade_xml}</trade></response>"
            f"<sign>{sign}</sign><sign_type>{escape(sign_type)}</sign_type></alipay>"
        )

    def _xml_error(self, error: str) -> tuple[int, str, bytes]:
        return self._xml(f"<alipay><is_success>F</is_success><error>{error}</error></alipay>")

    def _xml(self, document: str) -> tuple[int, str, bytes]:
        xml = f'<?xml version="1.0" encoding="{self.xml_encoding}"?>\n{document}'
        return 200, f"text/xml;charset={self.xml_encoding}", xml.encode(self.xml_encoding)

    def _sign(self, content: str, sign_type: str) -> str:
        algorithm = _HASHES.get(sign_type, hashes.SHA256)()
        signature = self.alipay_key.sign(content.encode("utf-8"), padding.PKCS1v15(), algorithm)
        return binascii.b2a_base64(signature, newline=False).decode("ascii")

    def _verify(self, content: str, sign: str, sign_type: str) -> bool:
        if sign_type not in _HASHES:
            return False
        try:
            signature = binascii.a2b_base64(sign.encode("ascii"), strict_mode=True)
            algorithm = _HASHES[sign_type]()
            self.merchant_public_key.verify(signature, content.encode("utf-8"), padding.PKCS1v15(), algorithm)
        except (binascii.Error, UnicodeEncodeError, InvalidSignature):
            return False
        return True


def _failure(code: str, sub_code: str, sub_msg: str) -> dict[str, Any]:
    messages = {"20000": "Service Currently Unavailable", "40002": "Invalid Arguments", "40004": "Business Failed"}
    return {"code": code, "msg": messages[code], "sub_code": sub_code, "sub_msg": sub_msg}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (read timeout) leaves a handler writing to a closed socket: expected here.
        pass


def _handler_for(gateway: FakeAlipayGateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Alipay's gateway does
        timeout = 5  # an idle keep-alive connection is dropped after this many seconds

        def setup(self) -> None:
            super().setup()
            gateway._connected()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve("GET", urlsplit(self.path).query)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("ascii")
            query = urlsplit(self.path).query
            self._serve("POST", f"{query}&{body}" if query else body)

        def _serve(self, method: str, query: str) -> None:
            pairs = parse_qsl(query, keep_blank_values=True, encoding="utf-8")
            params = dict(pairs)
            if len(params) != len(pairs):
                status, content_type, body = 400, "text/plain", b"duplicate parameter"
            else:
                status, content_type, body = gateway.answer(method, params)
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
