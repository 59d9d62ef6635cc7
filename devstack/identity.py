"""The local identity provider: stands in for the Cognito user pool and issues buyers' ID tokens.

``POST /token {"sub": "alice", "aud"?: "...", "expires_in"?: seconds}`` -> ``{"id_token": "..."}``: an RS256 JWT
shaped as Cognito's ID tokens are (``iss``, ``sub``, ``aud``, ``token_use=id``, ``auth_time``, ``iat``, ``exp``,
``cognito:username``), signed with the pool's key (``identity_private_key.pem`` in the state directory).
``GET /.well-known/jwks.json`` publishes the public half, as Cognito does. There is no password: whoever can reach
this loopback port is whoever they say, which is what a developer's machine needs and nothing more.
"""

from __future__ import annotations

import json
import logging
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("identity")

DEFAULT_EXPIRES_IN = 3600  # Cognito's default ID token validity: one hour
MAX_EXPIRES_IN = 24 * 3600
KEY_ID = "local-user-pool-1"


def issue_token(private_key_pem: bytes, issuer: str, sub: str, audience: str, expires_in: int, now: float) -> str:
    """A Cognito-style ID token for ``sub``."""
    import jwt

    issued = int(now)
    claims: dict[str, Any] = {
        "sub": sub,
        "aud": audience,
        "iss": issuer,
        "token_use": "id",
        "cognito:username": sub,
        "auth_time": issued,
        "iat": issued,
        "exp": issued + expires_in,
    }
    return jwt.encode(claims, private_key_pem, algorithm="RS256", headers={"kid": KEY_ID})


def jwks(public_key_pem: bytes) -> dict[str, Any]:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from jwt.algorithms import RSAAlgorithm

    key = json.loads(RSAAlgorithm.to_jwk(load_pem_public_key(public_key_pem)))  # type: ignore[arg-type]
    key.update({"kid": KEY_ID, "alg": "RS256", "use": "sig"})
    return {"keys": [key]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: IdentityServer

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/.well-known/jwks.json":
            self._answer(200, jwks(self.server.public_key_pem))
        else:
            self._answer(404, {"code": "not_found", "message": f"no such path {self.path!r}"})

    def do_POST(self) -> None:
        if self.path != "/token":
            self._answer(404, {"code": "not_found", "message": f"no such path {self.path!r}"})
            return
        try:
            request = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:
            self._answer(400, {"code": "bad_request", "message": "the body is not valid JSON"})
            return
        problem = _check(request)
        if problem:
            self._answer(400, {"code": "invalid_field", "message": problem[1], "field": problem[0]})
            return
        token = issue_token(
            self.server.private_key_pem,
            self.server.issuer,
            request["sub"],
            request.get("aud") or self.server.client_id,
            int(request.get("expires_in", DEFAULT_EXPIRES_IN)),
            time.time(),
        )
        self._answer(200, {"id_token": token, "token_type": "Bearer", "expires_in": request.get("expires_in", 3600)})

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


def _check(request: object) -> tuple[str, str] | None:
    if not isinstance(request, dict):
        return "body", "must be a JSON object"
    sub = request.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 128:
        return "sub", "is required: the buyer's id, 1 to 128 characters"
    if "aud" in request and not isinstance(request["aud"], str):
        return "aud", "must be a string"
    expires_in = request.get("expires_in", DEFAULT_EXPIRES_IN)
    # A negative lifetime is allowed on purpose: it mints an already-expired token, for trying the refusal.
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in > MAX_EXPIRES_IN:
        return "expires_in", f"must be whole seconds, at most {MAX_EXPIRES_IN}"
    return None


class IdentityServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, address: tuple[str, int], private_key_pem: bytes, public_key_pem: bytes, issuer: str, client_id: str
    ) -> None:
        super().__init__(address, _Handler)
        self.private_key_pem = private_key_pem
        self.public_key_pem = public_key_pem
        self.issuer = issuer
        self.client_id = client_id


def serve(host: str, port: int, state_dir: Path, issuer: str, client_id: str) -> None:
    from devstack.resources import IDENTITY_PRIVATE_KEY_FILE, IDENTITY_PUBLIC_KEY_FILE

    server = IdentityServer(
        (host, port),
        (state_dir / IDENTITY_PRIVATE_KEY_FILE).read_bytes(),
        (state_dir / IDENTITY_PUBLIC_KEY_FILE).read_bytes(),
        issuer,
        client_id,
    )
    print(f"identity listening on http://{host}:{server.server_port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
