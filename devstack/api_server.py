"""The API on loopback: HTTP requests become API Gateway (REST, Lambda proxy) events for the Chalice app.

What the app sees is what API Gateway hands a Lambda: ``body`` a string (UTF-8 text) unless the request's media
type is one of the API's binary types (then base64 with ``isBase64Encoded``), header and query maps both single-
and multi-valued, path parameters decoded, and a request context. What a client sees is what API Gateway
answers: ``403 Missing Authentication Token`` for a route or method the API does not have, ``502`` when the
function fails or answers malformed, ``413`` over API Gateway's 10 MB payload limit, ``application/json`` when
the function names no content type. Each process runs one request at a time, as one warm Lambda execution
environment does; ``API_CONCURRENCY`` of them (default 4) serve side by side, as Lambda scales out.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from chalice import Chalice

from devstack.authorizers import Authorizers, MerchantCredential, Refused, caller_kind, forbidden
from devstack.lambda_runtime import LOCAL_ACCOUNT_ID, LambdaContext, fork_environments, stop_environments

log = logging.getLogger("api")

STAGE = "api"  # .chalice/config.json: api_gateway_stage
MAX_PAYLOAD_BYTES = 10 * 1024 * 1024  # API Gateway's request payload limit
FUNCTION_NAME = "alipay-global-local-api"


@dataclass(frozen=True, slots=True)
class ProxyResponse:
    """What API Gateway sends back to the client."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _gateway_error(status: int, code: str, message: str, request_id: str) -> ProxyResponse:
    """API Gateway's own error (not the function's), in the product's error shape as infra/ configures it."""
    headers = [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id)]
    return ProxyResponse(status, headers, json.dumps({"code": code, "message": message}).encode())


def _too_large(request_id: str) -> ProxyResponse:
    message = f"Request Too Long: the body is over API Gateway's {MAX_PAYLOAD_BYTES // (1024 * 1024)} MB limit"
    return _gateway_error(413, "payload_too_large", message, request_id)


def _function_failed(request_id: str) -> ProxyResponse:
    return _gateway_error(502, "internal_error", "Internal server error", request_id)


def _refusal(refused: Refused, request_id: str, error_type: str) -> ProxyResponse:
    """API Gateway's own refusal, in the product's error shape (infra/ sets the same gateway responses)."""
    headers = [
        ("Content-Type", "application/json"),
        ("x-amzn-RequestId", request_id),
        ("x-amzn-ErrorType", error_type),
    ]
    body = {"code": refused.code, "message": refused.message}
    return ProxyResponse(refused.status, headers, json.dumps(body).encode())


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";")[0].strip().lower()


def _is_binary(media_type: str, binary_types: list[str]) -> bool:
    for binary in binary_types:
        binary = binary.lower()
        if binary == "*/*" or binary == media_type:
            return True
        if binary.endswith("/*") and media_type.startswith(binary[:-1]):
            return True
    return False


class ApiGateway:
    """API Gateway in front of one Chalice app: request in, proxy event, function, response out."""

    def __init__(self, app: Chalice, authorizers: Authorizers, function_name: str = FUNCTION_NAME) -> None:
        self._app = app
        self._authorizers = authorizers
        self._function_name = function_name
        # Concrete segments before captures, as API Gateway prefers /orders/new over /orders/{id}.
        self._routes = sorted(app.routes, key=lambda route: [part.startswith("{") for part in route.split("/")])
        self._invoking = threading.Lock()

    def _match(self, path: str) -> tuple[str, dict[str, str]] | None:
        parts = path.split("/")
        for route in self._routes:
            template = route.split("/")
            if len(template) != len(parts):
                continue
            captured: dict[str, str] = {}
            for segment, pattern in zip(parts, template, strict=True):
                if pattern.startswith("{") and pattern.endswith("}"):
                    if not segment:
                        break
                    captured[pattern[1:-1]] = unquote(segment)
                elif segment != pattern:
                    break
            else:
                return route, captured
        return None

    def handle(
        self, method: str, target: str, headers: list[tuple[str, str]], body: bytes, source_ip: str
    ) -> ProxyResponse:
        """Answer one HTTP request as API Gateway would."""
        request_id = str(uuid.uuid4())
        if len(body) > MAX_PAYLOAD_BYTES:
            return _too_large(request_id)
        url = urlsplit(target)
        path = url.path if url.path == "/" else url.path.rstrip("/")
        matched = self._match(path)
        if matched is None or method not in self._app.routes[matched[0]]:
            # API Gateway's answer to a resource or method that is not in the API.
            refused = forbidden(f"Missing Authentication Token: no route {method} {path}")
            return _refusal(refused, request_id, "MissingAuthenticationTokenException")
        route, captured = matched
        event = self._event(method, path, url.query, route, captured, headers, body, source_ip, request_id)
        try:
            self._authorize(event, method, url.path, url.query, headers, body)
        except Refused as refused:
            kind = "UnauthorizedException" if refused.status == 401 else "AccessDeniedException"
            return _refusal(refused, request_id, kind)
        context = LambdaContext(function_name=self._function_name, aws_request_id=request_id)
        try:
            with self._invoking:
                response = self._app(event, context)
            return self._response(response, request_id)
        except Exception:
            log.exception("the function failed (API Gateway answers 502)")
            return _function_failed(request_id)

    def _authorize(
        self, event: dict[str, Any], method: str, raw_path: str, query: str, headers: list[tuple[str, str]], body: bytes
    ) -> None:
        """The route's authorizer, as API Gateway runs it before the function: fills the request context."""
        from datetime import UTC, datetime

        kind = caller_kind(event["path"])
        if kind == "public":
            return
        now = datetime.now(UTC)
        single = dict(headers)
        context = event["requestContext"]
        if kind == "buyer":
            context["authorizer"] = {"claims": self._authorizers.buyer_claims(single, now)}
        else:
            context["identity"].update(
                self._authorizers.merchant_identity(method, raw_path, query, single, body, now)
            )

    def _event(
        self,
        method: str,
        path: str,
        query: str,
        route: str,
        captured: Mapping[str, str],
        headers: list[tuple[str, str]],
        body: bytes,
        source_ip: str,
        request_id: str,
    ) -> dict[str, Any]:
        single: dict[str, str] = {}
        multi: dict[str, list[str]] = {}
        for name, value in headers:
            single[name] = value
            multi.setdefault(name, []).append(value)
        parsed_query = parse_qs(query, keep_blank_values=True)
        content_type = next((value for name, value in headers if name.lower() == "content-type"), None)
        binary = _is_binary(_media_type(content_type), self._app.api.binary_types)
        if not body and method in ("GET", "HEAD", "DELETE", "OPTIONS"):
            text: str | None = None
        elif binary:
            text = base64.b64encode(body).decode("ascii")
        else:
            # A text payload is UTF-8 to API Gateway: bytes that are not become U+FFFD, as they would in AWS.
            text = body.decode("utf-8", errors="replace")
        return {
            "resource": route,
            "path": path,
            "httpMethod": method,
            "headers": single,
            "multiValueHeaders": multi,
            "queryStringParameters": {k: v[-1] for k, v in parsed_query.items()} or None,
            "multiValueQueryStringParameters": parsed_query or None,
            "pathParameters": dict(captured) or None,
            "stageVariables": None,
            "requestContext": {
                "resourcePath": route,
                "httpMethod": method,
                "path": f"/{STAGE}{path}",
                "stage": STAGE,
                "requestId": request_id,
                "requestTimeEpoch": int(time.time() * 1000),
                "protocol": "HTTP/1.1",
                "accountId": LOCAL_ACCOUNT_ID,
                "apiId": "local",
                "identity": {"sourceIp": source_ip, "userAgent": single.get("User-Agent")},
            },
            "body": text,
            "isBase64Encoded": binary and text is not None,
        }

    @staticmethod
    def _response(response: Any, request_id: str) -> ProxyResponse:
        if not isinstance(response, Mapping) or not isinstance(response.get("statusCode"), int):
            log.error("malformed Lambda proxy response (API Gateway answers 502): %.200r", response)
            return _function_failed(request_id)
        headers: list[tuple[str, str]] = []
        for name, value in (response.get("headers") or {}).items():
            headers.append((str(name), str(value)))
        for name, values in (response.get("multiValueHeaders") or {}).items():
            headers.extend((str(name), str(value)) for value in values)
        if not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        headers.append(("x-amzn-RequestId", request_id))
        body = response.get("body")
        if body is None:
            data = b""
        elif response.get("isBase64Encoded"):
            data = base64.b64decode(body)
        else:
            data = body.encode("utf-8") if isinstance(body, str) else bytes(body)
        return ProxyResponse(response["statusCode"], headers, data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ApiServer

    def _serve(self) -> None:
        started = time.monotonic()
        body = self._read_body()
        if body is None:
            return
        response = self.server.gateway.handle(
            self.command, self.path, list(self.headers.items()), body, self.client_address[0]
        )
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
        log.info("%s %s %d (%.0f ms)", self.command, self.path, response.status, (time.monotonic() - started) * 1000)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self.send_error(400, "bad Content-Length")
            return None
        if length > MAX_PAYLOAD_BYTES:
            self.close_connection = True
            response = _too_large(str(uuid.uuid4()))
            self.send_response(413)
            for name, value in response.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(response.body)))
            self.end_headers()
            self.wfile.write(response.body)
            return None
        return self.rfile.read(length) if length else b""

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve

    def __getattr__(self, name: str) -> Any:
        # Any other method (TRACE, PROPFIND, ...) goes to the gateway too, which refuses it as a method the API
        # does not have (403 forbidden, in the error shape), not http.server's 501 HTML page.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # http.server's own refusals (a malformed request line, a header too long, a bad Content-Length) in the
        # API's error shape, as API Gateway's front door answers them in JSON, not http.server's HTML page.
        from http import HTTPStatus

        phrase = HTTPStatus(code).phrase if code in HTTPStatus._value2member_map_ else "Error"
        self.log_error("code %d, message %s", code, message)
        # A request too broken to name its version is taken for HTTP/0.9, which has no status line or headers;
        # API Gateway answers it with both, as to any other.
        self.request_version = "HTTP/1.1"
        body = json.dumps({"code": "bad_request" if code < 500 else "internal_error", "message": message or phrase})
        data = body.encode()
        self.send_response(code, message)
        self.send_header("Connection", "close")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Requests are logged once, with their timing, by _serve; errors of the HTTP layer itself still show.
        if args and isinstance(args[0], str) and args[0].startswith(("code ", "Request timed out")):
            log.warning(format, *args)


class ApiServer(ThreadingHTTPServer):
    """The HTTP side: a thread per connection, the app invoked one request at a time (``ApiGateway``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: ApiGateway) -> None:
        super().__init__(address, _Handler)
        self.gateway = gateway


def load_authorizers(stack_file: str) -> Authorizers:
    """The authorizers' settings from the local stack's ``stack.json`` and the identity provider's key file."""
    from pathlib import Path

    from devstack.resources import IDENTITY_PUBLIC_KEY_FILE

    path = Path(stack_file)
    stack = json.loads(path.read_text(encoding="utf-8"))
    credentials = stack["merchant_credentials"]
    return Authorizers(
        identity_public_key_pem=(path.parent / IDENTITY_PUBLIC_KEY_FILE).read_bytes(),
        issuer=stack["identity_issuer"],
        region=stack["region"],
        credentials={
            credentials["access_key_id"]: MerchantCredential(
                credentials["secret_access_key"], stack["merchant_arn"], LOCAL_ACCOUNT_ID
            )
        },
    )


def serve(host: str, port: int, concurrency: int = 1, stack_file: str = "") -> None:
    """Serve the Chalice app (``app.py``) on ``host:port`` until the process is told to stop.

    ``concurrency`` emulates Lambda's concurrent execution environments: that many processes, each with its own
    copy of the app invoked one request at a time, accept from one listening socket (forked once the app is
    imported and the socket bound, before any AWS client exists).
    """
    from app import app

    server = ApiServer((host, port), ApiGateway(app, load_authorizers(stack_file)))
    children = fork_environments(concurrency)
    is_parent = concurrency == 1 or bool(children)
    if is_parent:
        print(f"api listening on http://{host}:{server.server_port} ({concurrency} concurrent)", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        stop_environments(children)
        if not is_parent:
            os._exit(0)
