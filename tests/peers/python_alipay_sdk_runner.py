"""Runs inside a subprocess with PYTHONPATH=.peer/python-alipay-sdk: drives the peer SDK's public API.

Reads one JSON request per line on stdin, ``{"commands": [...]}``, and answers each with one JSON line on
stdout, ``{"peer": {...}, "results": [...]}``: one result per command, in order, ``{"ok": value}`` or
``{"error": "ExceptionName: message"}``. It serves until stdin closes, so a test module starts it once and
batches many cases per request (one interpreter start, one key import per key).

This file imports the peer's ``alipay`` package, so the test process must never import it: it only runs it.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from importlib import metadata
from typing import Any

import alipay  # the peer's package, from PYTHONPATH
from alipay import AliPay, DCAliPay
from harness import serve  # tests/peers/harness.py: this script's own folder is on sys.path


@cache
def _client(sign_type: str, private_pem: str, public_pem: str, appid: str) -> AliPay:
    # The peer loads both keys in its constructor; a command that needs only one passes it for both.
    return AliPay(
        appid=appid,
        app_notify_url=None,
        app_private_key_string=private_pem or public_pem,
        alipay_public_key_string=public_pem or private_pem,
        sign_type=sign_type,
    )


def _client_for(cmd: dict[str, Any]) -> AliPay:
    return _client(
        cmd.get("sign_type", "RSA2"),
        cmd.get("private_key", ""),
        cmd.get("public_key", ""),
        cmd.get("appid", "2021000000000000"),
    )


def _peer_content(client: AliPay, data: dict[str, Any]) -> str:
    """The peer's own string-to-sign: exactly what ``sign_data`` and ``verify`` join."""
    return "&".join(f"{k}={v}" for k, v in client._ordered_data(dict(data)))


class _FrozenDatetime(datetime):
    frozen: datetime

    @classmethod
    def now(cls, tz: Any = None) -> datetime:
        return cls.frozen


def op_verify_notification(cmd: dict[str, Any]) -> bool:
    """The peer's documented notification check: ``data = POST dict; sign = data.pop("sign"); verify()``."""
    data = dict(cmd["params"])
    sign = data.pop("sign")
    return bool(_client_for(cmd).verify(data, sign))


def op_verify_request(cmd: dict[str, Any]) -> bool:
    """Verify a request's sign over the peer's own request content rule (``sign_data``: sign_type kept)."""
    data = dict(cmd["params"])
    sign = data.pop("sign")
    client = _client_for(cmd)
    return bool(client._verify(_peer_content(client, data), sign))


def op_request_content(cmd: dict[str, Any]) -> str:
    """The string the peer would sign for these request parameters (``sign`` removed)."""
    data = dict(cmd["params"])
    data.pop("sign", None)
    return _peer_content(_client_for(cmd), data)


def op_sign_content(cmd: dict[str, Any]) -> str:
    return _client_for(cmd)._sign(cmd["content"])


def op_sign_notification(cmd: dict[str, Any]) -> dict[str, str]:
    """Sign a notification's fields with the peer's ``_sign`` over the content its ``verify`` checks."""
    data = {k: v for k, v in cmd["params"].items() if k not in ("sign", "sign_type")}
    client = _client_for(cmd)
    content = _peer_content(client, data)
    return {"content": content, "sign": client._sign(content)}


def op_client_api(cmd: dict[str, Any]) -> str:
    """``AliPay.client_api(method, biz_content, **kwargs)``: the peer's signed order string."""
    return _client_for(cmd).client_api(cmd["method"], cmd["biz_content"], **cmd.get("kwargs", {}))


def op_app_pay(cmd: dict[str, Any]) -> str:
    """``AliPay.api_alipay_trade_app_pay(...)`` with the peer's clock pinned to ``now`` (naive, as it uses)."""
    _FrozenDatetime.frozen = datetime.strptime(cmd["now"], "%Y-%m-%d %H:%M:%S")
    real = alipay.datetime
    alipay.datetime = _FrozenDatetime  # the peer reads datetime.now() from its module namespace
    try:
        return _client_for(cmd).api_alipay_trade_app_pay(
            cmd["subject"], cmd["out_trade_no"], cmd["total_amount"], notify_url=cmd.get("notify_url"),
            **cmd.get("extra_biz", {}),
        )
    finally:
        alipay.datetime = real


def _web_pay(cmd: dict[str, Any], api: str) -> str:
    """``AliPay.api_alipay_trade_page_pay`` / ``..._wap_pay(...)`` with the peer's clock pinned to ``now``."""
    _FrozenDatetime.frozen = datetime.strptime(cmd["now"], "%Y-%m-%d %H:%M:%S")
    real = alipay.datetime
    alipay.datetime = _FrozenDatetime
    try:
        return str(getattr(_client_for(cmd), api)(
            cmd["subject"], cmd["out_trade_no"], cmd["total_amount"], return_url=cmd.get("return_url"),
            notify_url=cmd.get("notify_url"), **cmd.get("extra_biz", {}),
        ))
    finally:
        alipay.datetime = real


def op_page_pay(cmd: dict[str, Any]) -> str:
    return _web_pay(cmd, "api_alipay_trade_page_pay")


def op_wap_pay(cmd: dict[str, Any]) -> str:
    return _web_pay(cmd, "api_alipay_trade_wap_pay")


def op_verify_sync_response(cmd: dict[str, Any]) -> Any:
    """``_verify_and_return_sync_response``: the peer's extraction and check of a signed JSON reply."""
    return _client_for(cmd)._verify_and_return_sync_response(cmd["raw"], cmd["response_type"])


def op_sync_response_content(cmd: dict[str, Any]) -> str:
    return _client_for(cmd)._get_string_to_be_signed(cmd["raw"], cmd["response_type"])


def op_cert_sn(cmd: dict[str, Any]) -> str:
    return DCAliPay.get_cert_sn(cmd["cert"])


def op_root_cert_sn(cmd: dict[str, Any]) -> str | None:
    return DCAliPay.get_root_cert_sn(cmd["bundle"])


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    serve(OPS, {"module": alipay.__file__, "version": metadata.version("python-alipay-sdk")})


if __name__ == "__main__":
    main()
