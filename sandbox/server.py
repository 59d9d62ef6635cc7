"""The local stack's Alipay sandbox: an HTTP server that plays Alipay for the configured merchant.

Run by the local stack as::

    python -m sandbox.server --stack-file .local/stack.json --host 127.0.0.1 --port 8001 [--time-scale S]

Endpoints (JSON unless said otherwise):

- ``GET /sandbox/health`` → ``{"status": "ok", "protocol": ...}``
- ``POST /sandbox/pay`` ``{"order_info", "outcome": "success"|"cancel"|"pending", "duplicates"?, "reorder"?,
  "finish"?, "charset"?, "notify_delay"?}`` → what the mobile SDK returns: ``{"resultStatus", "result", "memo"}``
- ``GET /sandbox/trades/<out_trade_no>`` → the trade and every notification delivery attempt
- ``POST /sandbox/trades/<out_trade_no>/notify`` ``{"trade_status", "refund_fee"?, "duplicates"?, "charset"?,
  "notify_delay"?}`` → ``{"notify_id", "trade_status"}``: one more notification, with the same retries
- ``POST /sandbox/trades/<out_trade_no>/refunds`` ``{"lose_replies"?: n, "slow"?: bool, "notify"?: bool}`` → the
  trade's refund edges: the next ``n`` refund replies lost (504) after the refund is done; refunds accepted with
  ``fund_change=N`` and carried out only on ``.../refunds/settle``; refund notifications held back
- ``POST /sandbox/trades/<out_trade_no>/refunds/settle`` → ``{"settled": [out_request_no, ...]}``
- ``POST /sandbox/trades/<out_trade_no>/expire`` → ``{"status"}``: Alipay's own timeout closes a waiting trade
  (no notification); a later ``.../notify`` of a payment then plays money captured after expiry
- ``POST /sandbox/trades/<out_trade_no>/late-payment`` → ``{"notify_id", "trade_status"}``: the buyer pays the
  expired or closed trade anyway; Alipay captures and notifies (money the merchant must give back)
- ``POST /sandbox/trades/<out_trade_no>/answer-status`` ``{"trade_status": "..."|null}`` → the trade queries answer
  that status (e.g. one the product does not know) until set back to null
- ``POST /sandbox/stop-retries`` → ``{"dropped": n}``
- ``/gateway.do``: Alipay's gateway in its own wire format (see ``sandbox_gateway``); a web payment request (page or
  wap pay, ``create_forex_trade[_wap]``) opens the web cashier instead (see ``sandbox_cashier``)
- ``POST /sandbox/cashier/<token>/pay`` | ``/cancel``: the shopper's choice at the web cashier (HTML, 302 on pay)

Antom (``"protocol": "antom"`` in stack.json; ``sandbox/antom.py``): ``POST /ams/api/v1/payments/pay`` |
``inquiryPayment`` | ``cancel`` | ``refund`` | ``inquiryRefund`` instead of ``/gateway.do``; the checkout page
``/sandbox/antom/checkout/<paymentId>`` (``GET``; ``POST .../pay`` | ``.../cancel``); ``POST /sandbox/pay``
takes ``{"out_trade_no", "outcome": "success"|"fail"|"cancel"|"pending", "duplicates"?, "reorder"?,
"pending_first"?, "notify_delay"?}``; the ``/sandbox/trades/<out_trade_no>/...`` controls work on Antom's payments
(``.../refunds/settle`` takes ``{"outcome": "SUCCESS"|"FAIL"}``, ``.../cancel-paid`` ``{"cancel_paid":
"refund"|"refuse"}``); ``POST /sandbox/lose-replies`` ``{"api": "pay"|..., "count"}`` loses an API's next replies.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import certs
from chalicelib.alipay import params as p
from chalicelib.alipay.certs import CertSns
from chalicelib.alipay.errors import AlipayError, OrderError
from chalicelib.alipay.keys import load_private_key, load_public_key
from chalicelib.alipay.notifications import AlipayProtocol

from .antom import API_PREFIX, CANCEL_PAID, CHECKOUT_PREFIX, SANDBOX_API_PREFIX, AntomSandbox, Refused
from .cashier import CASHIER_PREFIX, Cashier
from .gateway import handle_gateway
from .notify import NotificationSender
from .trades import (
    DEFAULT_TIME_SCALE,
    MAX_DUPLICATES,
    NOTIFY_CHARSETS,
    AlipaySandbox,
    PayControls,
    RefundEdges,
    SandboxSettings,
)

log = logging.getLogger("sandbox.server")

ALIPAY_KEY_FILE = "alipay_sandbox_private_key.pem"
ANTOM_KEY_FILE = "antom_sandbox_private_key.pem"  # antom: the sandbox's Antom key (replies and notifications)
# Certificate mode (stack.json "key_mode": "cert"): the certificates the local stack issued beside the keys.
ALIPAY_CERT_FILE = "alipay_sandbox_cert.pem"
APP_CERT_FILE = "app_cert.pem"
ROOT_CERT_FILE = "alipay_root_cert.pem"
MERCHANT_KEY_FILE = "merchant_private_key.pem"  # mapi only: the legacy RSA key is held locally, not in KMS
TIME_SCALE_ENV = "SANDBOX_TIME_SCALE"
MAX_BODY_BYTES = 1024 * 1024
_JSON = "application/json; charset=utf-8"


class SandboxStartError(Exception):
    """The sandbox cannot start: the stack file, a key, or KMS is missing or wrong."""


class BadRequest(Exception):
    """A sandbox endpoint was called with a body it cannot use (HTTP 400)."""


# --- settings from the local stack ------------------------------------------------------------------------------


def resolve_time_scale(option: float | None, environ: Mapping[str, str]) -> float:
    """The ``--time-scale`` option, else ``SANDBOX_TIME_SCALE``, else the fast default; always positive."""
    scale = option
    if scale is None:
        text = environ.get(TIME_SCALE_ENV, "").strip()
        try:
            scale = float(text) if text else DEFAULT_TIME_SCALE
        except ValueError as exc:
            raise SandboxStartError(f"{TIME_SCALE_ENV} must be a number, not {text!r}") from exc
    if not scale > 0:
        raise SandboxStartError(f"the time scale must be positive, not {scale}")
    return scale


def kms_public_key(*, endpoint_url: str, region: str, key_id: str) -> rsa.RSAPublicKey:
    """The merchant's public key from (emulated) KMS: what the merchant registered on Alipay's portal."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "kms",
        endpoint_url=endpoint_url,
        region_name=region,
        # The local stack's emulator takes any credentials; these never reach a real account.
        aws_access_key_id="testing",
        aws_secret_access_key="testing",  # noqa: S106 - the emulator's dummy credentials
    )
    try:
        der = client.get_public_key(KeyId=key_id)["PublicKey"]
    except (BotoCoreError, ClientError) as exc:
        raise SandboxStartError(f"cannot read the merchant public key from KMS at {endpoint_url}: {exc}") from exc
    import binascii

    return load_public_key(binascii.b2a_base64(der, newline=False))


def load_settings(stack_file: Path, time_scale: float) -> SandboxSettings:
    """Settings from ``.local/stack.json`` and the key files beside it (openapi: the merchant key from KMS)."""
    try:
        stack = json.loads(stack_file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SandboxStartError(f"cannot read the stack file {stack_file}: {exc}") from exc
    if not isinstance(stack, dict):
        raise SandboxStartError(f"{stack_file} is not a JSON object")

    def text(name: str) -> str:
        value = stack.get(name)
        return value if isinstance(value, str) else ""

    try:
        protocol = AlipayProtocol(text("protocol"))
    except ValueError as exc:
        raise SandboxStartError(
            f"{stack_file}: protocol must be openapi, mapi or antom, not {text('protocol')!r}"
        ) from exc
    folder = stack_file.parent
    alipay_key = _private_key(folder / (ANTOM_KEY_FILE if protocol is AlipayProtocol.ANTOM else ALIPAY_KEY_FILE))
    cert_sns, alipay_cert_sn, app_cert_key = None, "", None
    if text("key_mode") == "cert":
        cert_sns, alipay_cert_sn, app_cert_key = _certificates(folder)
    if app_cert_key is not None:
        # Certificate mode: Alipay verifies the merchant with the key of the app certificate the request names.
        merchant = app_cert_key
    elif protocol in (AlipayProtocol.OPENAPI, AlipayProtocol.ANTOM):
        # Antom: signing_key_id is the merchant's Antom key, a KMS key of its own.
        missing = [n for n in ("aws_endpoint_url", "region", "signing_key_id") if not text(n)]
        if missing:
            raise SandboxStartError(f"{stack_file}: missing {', '.join(missing)} (needed to read the key from KMS)")
        merchant = kms_public_key(
            endpoint_url=text("aws_endpoint_url"), region=text("region"), key_id=text("signing_key_id")
        )
    else:
        merchant = _private_key(folder / MERCHANT_KEY_FILE).public_key()
    try:
        return SandboxSettings(
            protocol=protocol,
            alipay_key=alipay_key,
            merchant_public_key=merchant,
            app_id=text("app_id"),
            seller_id=text("seller_id"),
            partner_id=text("partner_id"),
            time_scale=time_scale,
            cert_sns=cert_sns,
            alipay_cert_sn=alipay_cert_sn,
            antom_client_id=text("antom_client_id"),
        )
    except ValueError as exc:
        raise SandboxStartError(f"{stack_file}: {exc}") from exc


def _certificates(folder: Path) -> tuple[CertSns, str, rsa.RSAPublicKey]:
    """The request SNs, the sandbox certificate's SN and the app certificate's key, from the state directory."""
    try:
        app_pem = (folder / APP_CERT_FILE).read_bytes()
        sns = CertSns(certs.app_cert_sn(app_pem), certs.alipay_root_cert_sn((folder / ROOT_CERT_FILE).read_bytes()))
        alipay_cert_sn, _ = certs.public_key_from_certificate((folder / ALIPAY_CERT_FILE).read_bytes())
        _, app_key = certs.public_key_from_certificate(app_pem)
    except (OSError, AlipayError) as exc:
        raise SandboxStartError(f"certificate mode: cannot load the certificates in {folder}: {exc}") from exc
    return sns, alipay_cert_sn, app_key


def _private_key(path: Path) -> rsa.RSAPrivateKey:
    try:
        return load_private_key(path.read_bytes())
    except (OSError, AlipayError) as exc:
        raise SandboxStartError(f"cannot load {path}: {exc}") from exc


# --- HTTP -------------------------------------------------------------------------------------------------------


def _controls(data: Mapping[str, Any], *, allow_order: bool) -> PayControls:
    duplicates = data.get("duplicates", 0)
    if isinstance(duplicates, bool) or not isinstance(duplicates, int) or not 0 <= duplicates <= MAX_DUPLICATES:
        raise BadRequest(f"duplicates must be a whole number from 0 to {MAX_DUPLICATES}")
    flags = {}
    for name in ("reorder", "finish") if allow_order else ():
        value = data.get(name, False)
        if not isinstance(value, bool):
            raise BadRequest(f"{name} must be true or false")
        flags[name] = value
    charset = data.get("charset")
    if charset is not None and (not isinstance(charset, str) or charset.lower() not in NOTIFY_CHARSETS):
        raise BadRequest(f"charset must be one of {', '.join(NOTIFY_CHARSETS)}")
    delay = data.get("notify_delay")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= 3600):
        raise BadRequest("notify_delay must be a number of seconds from 0 to 3600")
    return PayControls(
        duplicates=duplicates,
        charset=charset.lower() if isinstance(charset, str) else None,
        notify_delay=float(delay) if delay is not None else None,
        **flags,
    )


def _known(data: Mapping[str, Any], names: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")


_PAY_FIELDS = ("order_info", "outcome", "duplicates", "reorder", "finish", "charset", "notify_delay")
_NOTIFY_FIELDS = ("trade_status", "refund_fee", "duplicates", "charset", "notify_delay")
_ANTOM_PAY_FIELDS = ("out_trade_no", "outcome", "duplicates", "reorder", "pending_first", "notify_delay")


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not keep the process alive
    allow_reuse_address = True
    sandbox: AlipaySandbox | AntomSandbox
    cashier: Cashier | None  # Alipay's web cashier (None for Antom, whose checkout is sandbox/antom.py's)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive, as the product's pooled gateway client expects
    timeout = 30  # seconds an idle keep-alive connection is kept

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        try:
            body = self._body() if method == "POST" else b""
            sandbox = self.server.sandbox
            if isinstance(sandbox, AntomSandbox):
                if url.path.startswith((API_PREFIX, SANDBOX_API_PREFIX)) and method == "POST":
                    # Signed over the path as sent (query included), as Antom verifies it.
                    status, headers, reply = sandbox.answer_api(
                        self.path, dict(self.headers.items()), body, self._base()
                    )
                    self._send(status, headers.pop("Content-Type"), reply, headers)
                    return
                if url.path.startswith(CHECKOUT_PREFIX):
                    status, content_type, reply, headers = sandbox.answer_checkout(method, url.path)
                    self._send(status, content_type, reply, headers)
                    return
            elif url.path == "/gateway.do" and self.server.cashier is not None:
                # http.server decoded the request line as Latin-1: encoding it back restores the bytes sent.
                query = url.query.encode("latin-1")
                # A web payment (page/wap pay, create_forex_trade[_wap]) opens the cashier; anything else is an API.
                web = self.server.cashier.answer_gateway(query, body)
                if web is not None:
                    self._send(web[0], web[1], web[2], web[3])
                    return
                status, content_type, reply = handle_gateway(sandbox, query, body)
                self._send(status, content_type, reply)
                return
            if url.path.startswith(CASHIER_PREFIX) and self.server.cashier is not None:
                status, content_type, reply, headers = self.server.cashier.answer(method, url.path)
                self._send(status, content_type, reply, headers)
                return
            status, payload = self._route(method, url.path, body)
        except BadRequest as exc:
            status, payload = 400, {"error": str(exc)}
        except Exception as exc:  # a bug must answer 500 (and be logged), not drop the connection
            log.exception("sandbox error on %s %s", method, url.path)
            status, payload = 500, {"error": f"{type(exc).__name__}: {exc}"}
        self._send(status, _JSON, json.dumps(payload, ensure_ascii=False).encode("utf-8"))

    def _base(self) -> str:
        """The sandbox's own base URL as the caller reached it (where the checkout page is)."""
        host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address[:2])
        return f"http://{host}"

    def _route(self, method: str, path: str, body: bytes) -> tuple[int, Any]:
        sandbox = self.server.sandbox
        if path == "/sandbox/health" and method == "GET":
            return 200, {"status": "ok", "protocol": str(sandbox.protocol)}
        if isinstance(sandbox, AntomSandbox):
            return self._antom_route(sandbox, method, path, body)
        if path == "/sandbox/pay" and method == "POST":
            data = _json_object(body)
            _known(data, _PAY_FIELDS)
            order_info, outcome = data.get("order_info"), data.get("outcome", "success")
            if not isinstance(order_info, str) or not order_info:
                raise BadRequest("order_info (the string from POST /orders) is required")
            if not isinstance(outcome, str):
                raise BadRequest("outcome must be a string")
            try:
                return 200, sandbox.pay(order_info, outcome, _controls(data, allow_order=True))
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
        if path == "/sandbox/reply-cert-sn" and method == "POST":
            data = _json_object(body)
            _known(data, ("alipay_cert_sn",))
            sn = data.get("alipay_cert_sn")
            if sn is not None and (not isinstance(sn, str) or not sn.isalnum() or len(sn) > 128):
                raise BadRequest("alipay_cert_sn must be an SN (letters and digits) or null (the sandbox's own)")
            sandbox.reply_cert_sn = sn
            return 200, {"alipay_cert_sn": sn or sandbox.settings.alipay_cert_sn}
        if path == "/sandbox/stop-retries" and method == "POST":
            return 200, {"dropped": sandbox.stop_retries()}
        prefix = "/sandbox/trades/"
        if path.startswith(prefix):
            out_trade_no, _, action = unquote(path[len(prefix) :]).partition("/")
            if method == "GET" and not action:
                view = sandbox.trade_view(out_trade_no)
                return (200, view) if view is not None else (404, {"error": f"no trade {out_trade_no!r}"})
            if method == "POST" and action == "notify":
                return self._notify(out_trade_no, _json_object(body))
            if method == "POST" and action == "refunds":
                return self._refund_edges(out_trade_no, _json_object(body))
            if method == "POST" and action == "expire":
                expired = sandbox.expire(out_trade_no)
                return (200, {"status": expired}) if expired is not None else (404, {"error": "no such trade"})
            if method == "POST" and action == "late-payment":
                late = sandbox.pay_late(out_trade_no)
                return (200, late) if late is not None else (404, {"error": "no such trade"})
            if method == "POST" and action == "answer-status":
                data = _json_object(body)
                _known(data, ("trade_status",))
                status = data.get("trade_status")
                if status is not None and not (isinstance(status, str) and 0 < len(status) <= 32):
                    raise BadRequest("trade_status must be a string of at most 32 characters, or null")
                if not sandbox.set_answer_status(out_trade_no, status):
                    return 404, {"error": "no such trade"}
                return 200, {"trade_status": status}
            if method == "POST" and action == "refunds/settle":
                settled = sandbox.settle_refunds(out_trade_no)
                return (200, {"settled": settled}) if settled is not None else (404, {"error": "no such trade"})
        return 404, {"error": f"no route {method} {path}"}

    def _antom_route(self, sandbox: AntomSandbox, method: str, path: str, body: bytes) -> tuple[int, Any]:
        """The controls on an Antom sandbox: the same endpoints as Alipay's, on Antom's payments."""
        if path == "/sandbox/pay" and method == "POST":
            data = _json_object(body)
            _known(data, _ANTOM_PAY_FIELDS)
            key, outcome = data.get("out_trade_no"), data.get("outcome", "success")
            pending_first = data.get("pending_first", False)
            if not isinstance(key, str) or not key:
                raise BadRequest("out_trade_no (the paymentRequestId, or the paymentId) is required")
            if not isinstance(outcome, str) or not isinstance(pending_first, bool):
                raise BadRequest("outcome must be a string, pending_first true or false")
            try:
                status = sandbox.shopper_pays(
                    key, outcome, _controls(data, allow_order=True), pending_first=pending_first
                )
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
            except Refused as exc:
                return 409, {"error": f"{exc.code}: {exc.message}", "resultCode": exc.code}
            return 200, {"out_trade_no": key, "status": status}
        if path == "/sandbox/stop-retries" and method == "POST":
            return 200, {"dropped": sandbox.stop_retries()}
        if path == "/sandbox/lose-replies" and method == "POST":
            data = _json_object(body)
            _known(data, ("api", "count"))
            api, count = data.get("api"), data.get("count", 1)
            if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_DUPLICATES:
                raise BadRequest(f"count must be a whole number from 0 to {MAX_DUPLICATES}")
            try:
                sandbox.lose_replies(str(api), count)
            except ValueError as exc:
                raise BadRequest(str(exc)) from exc
            return 200, {"api": api, "count": count}
        prefix = "/sandbox/trades/"
        if not path.startswith(prefix):
            return 404, {"error": f"no route {method} {path}"}
        out_trade_no, _, action = unquote(path[len(prefix) :]).partition("/")
        missing = (404, {"error": f"no payment {out_trade_no!r}"})
        if method == "GET" and not action:
            view = sandbox.trade_view(out_trade_no)
            return (200, view) if view is not None else missing
        if method != "POST":
            return 404, {"error": f"no route {method} {path}"}
        data = _json_object(body)
        if action == "notify":
            return self._notify(out_trade_no, data)
        if action == "refunds":
            return self._refund_edges(out_trade_no, data)
        if action == "refunds/settle":
            _known(data, ("outcome",))
            outcome = data.get("outcome", "SUCCESS")
            if outcome not in ("SUCCESS", "FAIL"):
                raise BadRequest("outcome must be SUCCESS or FAIL")
            settled = sandbox.settle_refunds(out_trade_no, outcome=outcome)
            return (200, {"settled": settled}) if settled is not None else missing
        if action == "expire":
            expired = sandbox.expire(out_trade_no)
            return (200, {"status": expired}) if expired is not None else missing
        if action == "late-payment":
            late = sandbox.pay_late(out_trade_no)
            return (200, late) if late is not None else missing
        if action == "answer-status":
            _known(data, ("trade_status",))
            answer = data.get("trade_status")
            if answer is not None and not (isinstance(answer, str) and 0 < len(answer) <= 32):
                raise BadRequest("trade_status must be a string of at most 32 characters, or null")
            return (200, {"trade_status": answer}) if sandbox.set_answer_status(out_trade_no, answer) else missing
        if action == "cancel-paid":
            _known(data, ("cancel_paid",))
            behaviour = data.get("cancel_paid")
            if behaviour not in CANCEL_PAID:
                raise BadRequest(f"cancel_paid must be one of {', '.join(CANCEL_PAID)}")
            return (200, {"cancel_paid": behaviour}) if sandbox.set_cancel_paid(out_trade_no, behaviour) else missing
        return 404, {"error": f"no route {method} {path}"}

    def _notify(self, out_trade_no: str, data: dict[str, Any]) -> tuple[int, Any]:
        _known(data, _NOTIFY_FIELDS)
        status, refund_fee = data.get("trade_status"), data.get("refund_fee")
        if not isinstance(status, str):
            raise BadRequest("trade_status is required")
        if refund_fee is not None:
            try:
                refund_fee = p.format_amount(str(refund_fee), "refund_fee")
            except OrderError as exc:
                raise BadRequest(str(exc)) from exc
        try:
            sent = self.server.sandbox.notify(
                out_trade_no, status, refund_fee=refund_fee, controls=_controls(data, allow_order=False)
            )
        except ValueError as exc:
            raise BadRequest(str(exc)) from exc
        return (200, sent) if sent is not None else (404, {"error": f"no trade {out_trade_no!r}"})

    def _refund_edges(self, out_trade_no: str, data: dict[str, Any]) -> tuple[int, Any]:
        _known(data, ("lose_replies", "slow", "notify"))
        lose, slow, notify = data.get("lose_replies", 0), data.get("slow", False), data.get("notify", True)
        if not isinstance(lose, int) or isinstance(lose, bool) or not 0 <= lose <= MAX_DUPLICATES:
            raise BadRequest(f"lose_replies must be an integer from 0 to {MAX_DUPLICATES}")
        if not isinstance(slow, bool) or not isinstance(notify, bool):
            raise BadRequest("slow and notify must be true or false")
        if not self.server.sandbox.set_refund_edges(out_trade_no, RefundEdges(lose, slow, notify)):
            return 404, {"error": f"no trade {out_trade_no!r}"}
        return 200, {"lose_replies": lose, "slow": slow, "notify": notify}

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            raise BadRequest("Content-Length is required")
        if int(length) > MAX_BODY_BYTES:
            raise BadRequest(f"body over {MAX_BODY_BYTES} bytes")
        return self.rfile.read(int(length))

    def _send(self, status: int, content_type: str, body: bytes, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body or b"{}")
    except ValueError as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    return data


@dataclass
class RunningSandbox:
    """A sandbox serving on a thread; ``stop()`` (or leaving the ``with`` block) shuts it down."""

    sandbox: AlipaySandbox | AntomSandbox
    server: _Server
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def gateway_url(self) -> str:
        return f"{self.url}/gateway.do"

    def stop(self) -> None:
        """Stop serving and sending; returns once the server thread has ended."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5.0)
        self.sandbox.close()

    def __enter__(self) -> RunningSandbox:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()


def start_sandbox(
    settings: SandboxSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    sender: NotificationSender | None = None,
) -> RunningSandbox:
    """Build the sandbox and serve it on ``host:port`` (0: a free port) from a daemon thread."""
    sandbox: AlipaySandbox | AntomSandbox
    if settings.protocol is AlipayProtocol.ANTOM:
        sandbox = AntomSandbox(settings, sender=sender)
    else:
        sandbox = AlipaySandbox(settings, sender=sender)
    try:
        server = _Server((host, port), _Handler)
    except OSError:
        sandbox.close()
        raise
    server.sandbox = sandbox
    server.cashier = Cashier(sandbox) if isinstance(sandbox, AlipaySandbox) else None
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, name="sandbox-http", daemon=True
    )
    thread.start()
    return RunningSandbox(sandbox, server, thread)


# --- CLI --------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; exit 0 then, 2 if the sandbox cannot start."""
    parser = argparse.ArgumentParser(prog="python -m sandbox.server", description=__doc__.split("\n")[0])
    parser.add_argument("--stack-file", type=Path, required=True, help="the local stack's stack.json")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument(
        "--time-scale",
        type=float,
        default=None,
        help=f"multiplies Alipay's intervals (default: ${TIME_SCALE_ENV}, else {DEFAULT_TIME_SCALE})",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="sandbox: %(message)s", stream=sys.stderr)
    try:
        scale = resolve_time_scale(args.time_scale, os.environ)
        settings = load_settings(args.stack_file, scale)
        running = start_sandbox(settings, host=args.host, port=args.port)
    except (SandboxStartError, OSError) as exc:
        print(f"sandbox: cannot start: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    print(f"sandbox listening on {running.url}", flush=True)
    log.info("protocol %s, time scale %g", settings.protocol, scale)
    while not stopping.wait(0.5):
        pass
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
