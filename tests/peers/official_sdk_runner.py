"""Runs inside a subprocess with PYTHONPATH=.peer/alipay-sdk-python: drives the official ``alipay-sdk-python``.

Same protocol as ``python_alipay_sdk_runner``: one JSON request per stdin line, ``{"commands": [...]}``, one
JSON answer per stdout line, ``{"peer": {...}, "results": [{"ok": ...} | {"error": "..."}]}``. Keys are passed
as the SDK's docs ask: bare base64 bodies, PKCS#1 for the app private key and SPKI for Alipay's public key.

This file imports the official ``alipay`` package, so the test process must never import it: it only runs it.
"""

from __future__ import annotations

import datetime as _datetime
import types
from importlib import metadata
from typing import Any

import alipay  # the official SDK's package, from PYTHONPATH
import rsa  # the official SDK's own dependency, installed beside it
from alipay.aop.api import DefaultAlipayClient as client_module
from alipay.aop.api.AlipayClientConfig import AlipayClientConfig
from alipay.aop.api.constant.CommonConstants import THREAD_LOCAL
from alipay.aop.api.DefaultAlipayClient import DefaultAlipayClient
from alipay.aop.api.domain.AlipayTradeAppPayModel import AlipayTradeAppPayModel
from alipay.aop.api.request.AlipayTradeAppPayRequest import AlipayTradeAppPayRequest
from alipay.aop.api.util.SignatureUtils import get_sign_content, sign_with_rsa, sign_with_rsa2, verify_with_rsa
from harness import serve  # tests/peers/harness.py: this script's own folder is on sys.path


def op_sign_content(cmd: dict[str, Any]) -> str:
    """``get_sign_content(params)``: the SDK sorts and joins whatever it is given (the caller excludes)."""
    return get_sign_content(dict(cmd["params"]))


def op_sign(cmd: dict[str, Any]) -> str:
    """``sign_with_rsa2`` / ``sign_with_rsa`` over ``content`` encoded with ``charset``."""
    sign = sign_with_rsa2 if cmd.get("sign_type", "RSA2") == "RSA2" else sign_with_rsa
    return sign(cmd["private_key"], cmd["content"], cmd.get("charset", "utf-8"))


def op_verify(cmd: dict[str, Any]) -> bool:
    """``verify_with_rsa(public_key, message_bytes, sign)``; its VerificationError is a plain ``False``."""
    try:
        return verify_with_rsa(cmd["public_key"], cmd["content"].encode(cmd.get("charset", "utf-8")), cmd["sign"])
    except rsa.pkcs1.VerificationError:
        return False


def op_verify_notification(cmd: dict[str, Any]) -> bool:
    """The SDK's documented notification check: pop sign and sign_type, get_sign_content, verify_with_rsa."""
    params = dict(cmd["params"])
    sign = params.pop("sign")
    params.pop("sign_type", None)
    content = get_sign_content(params)
    try:
        return verify_with_rsa(cmd["public_key"], content.encode(params.get("charset", "utf-8")), sign)
    except rsa.pkcs1.VerificationError:
        return False


def op_sign_notification(cmd: dict[str, Any]) -> dict[str, str]:
    """Sign a notification's fields with the SDK: get_sign_content without sign/sign_type, sign_with_rsa2."""
    params = {k: v for k, v in cmd["params"].items() if k not in ("sign", "sign_type")}
    content = get_sign_content(params)
    sign = sign_with_rsa2 if cmd.get("sign_type", "RSA2") == "RSA2" else sign_with_rsa
    return {"content": content, "sign": sign(cmd["private_key"], content, params.get("charset", "utf-8"))}


def _client(cmd: dict[str, Any]) -> DefaultAlipayClient:
    config = AlipayClientConfig()
    config.app_id = cmd["appid"]
    config.app_private_key = cmd.get("private_key", "")
    config.alipay_public_key = cmd.get("public_key", "")
    config.sign_type = cmd.get("sign_type", "RSA2")
    config.format = cmd.get("format", "json")
    return DefaultAlipayClient(config)


def op_sdk_execute(cmd: dict[str, Any]) -> str:
    """``DefaultAlipayClient.sdk_execute(AlipayTradeAppPayRequest)``: the app-pay order string, clock pinned.

    ``biz_model`` (a dict) goes through ``AlipayTradeAppPayModel``; ``biz_content`` (a JSON string) is sent as is.
    """
    request = AlipayTradeAppPayRequest()
    if "biz_model" in cmd:
        request.biz_model = AlipayTradeAppPayModel.from_alipay_dict(cmd["biz_model"])
    if "biz_content" in cmd:
        request.add_other_text_param("biz_content", cmd["biz_content"])
    request.notify_url = cmd.get("notify_url")
    frozen = _datetime.datetime.strptime(cmd["now"], "%Y-%m-%d %H:%M:%S")

    class FrozenDatetime(_datetime.datetime):
        @classmethod
        def now(cls, tz: Any = None) -> _datetime.datetime:
            return frozen

    real = client_module.datetime
    client_module.datetime = types.SimpleNamespace(datetime=FrozenDatetime)  # the SDK calls datetime.datetime.now()
    try:
        return _client(cmd).sdk_execute(request)
    finally:
        client_module.datetime = real


def op_parse_response(cmd: dict[str, Any]) -> str:
    """The SDK's signed-response check (``__parse_response``): returns the verified response text."""
    THREAD_LOCAL.uuid, THREAD_LOCAL.logger = "interop", None  # what execute() sets before parsing
    client = _client(cmd)
    return client._DefaultAlipayClient__parse_response(cmd["raw"].encode("utf-8"))


OPS = {name[3:]: fn for name, fn in globals().items() if name.startswith("op_")}


def main() -> None:
    serve(OPS, {"module": alipay.__file__, "version": metadata.version("alipay-sdk-python")})


if __name__ == "__main__":
    main()
