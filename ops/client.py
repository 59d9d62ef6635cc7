"""The merchant's side of the API: requests signed with SigV4 (AWS IAM), as a merchant's backend sends them.

Used by ``python -m ops`` for merchant and operator routes, by ``make demo`` and by the tests: the same signing a
merchant's backend does with its role's credentials (service ``execute-api``, the API's region).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

SERVICE = "execute-api"


@dataclass(frozen=True, slots=True)
class ApiAnswer:
    """One HTTP answer: status, headers (lower-case names) and body."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True, slots=True)
class MerchantClient:
    """Calls the API as the merchant: every request signed with the given IAM credentials."""

    api_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None
    timeout: float = 30.0

    @classmethod
    def from_stack(cls, stack: Mapping[str, Any]) -> MerchantClient:
        """The local stack's merchant, from its ``stack.json``."""
        credentials = stack["merchant_credentials"]
        return cls(
            api_url=str(stack["api_url"]),
            region=str(stack["region"]),
            access_key_id=str(credentials["access_key_id"]),
            secret_access_key=str(credentials["secret_access_key"]),
        )

    def request(
        self,
        method: str,
        path: str,
        body: object | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        raw_body: bytes | None = None,
    ) -> ApiAnswer:
        """Send ``method path`` signed; ``body`` is sent as JSON (or ``raw_body`` as it is)."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
        all_headers = {"Host": urlsplit(self.api_url).netloc, **(headers or {})}
        if data and not any(name.lower() == "content-type" for name in all_headers):
            all_headers["Content-Type"] = "application/json"
        request = AWSRequest(method=method, url=self.api_url.rstrip("/") + path, data=data, headers=all_headers)
        credentials = Credentials(self.access_key_id, self.secret_access_key, self.session_token)
        SigV4Auth(credentials, SERVICE, self.region).add_auth(request)
        prepared = request.prepare()
        response = _pool().request(
            method,
            prepared.url,
            body=data or None,
            headers=dict(prepared.headers.items()),
            timeout=self.timeout,
            retries=False,
            redirect=False,
        )
        return ApiAnswer(response.status, {k.lower(): v for k, v in response.headers.items()}, response.data)

    def get(self, path: str) -> ApiAnswer:
        return self.request("GET", path)

    def post(self, path: str, body: object, headers: Mapping[str, str] | None = None) -> ApiAnswer:
        return self.request("POST", path, body, headers)


def _pool() -> Any:
    import urllib3

    global _POOL
    if _POOL is None:
        _POOL = urllib3.PoolManager()
    return _POOL


_POOL: Any = None
