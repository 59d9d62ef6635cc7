"""``ALIPAY_PROTOCOL=antom``: the local stack's settings, ``stack.json`` and what the functions are given."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devstack import resources
from devstack.stack import Settings, StackError, function_environment


def stack_file(protocol: str, **changes: object) -> resources.StackFile:
    fields: dict[str, object] = {
        "api_url": "http://127.0.0.1:8000",
        "sandbox_url": "http://127.0.0.1:8001",
        "aws_endpoint_url": "http://127.0.0.1:5000",
        "region": "us-east-1",
        "protocol": protocol,
        "app_id": resources.APP_ID,
        "seller_id": resources.SELLER_ID,
        "partner_id": resources.PARTNER_ID,
        "orders_table": "orders",
        "notifications_queue_url": "http://127.0.0.1:5000/q",
        "notifications_dlq_url": "http://127.0.0.1:5000/dlq",
        "event_bus_name": "bus",
        "events_tap_queue_url": "http://127.0.0.1:5000/tap",
        "signing_key_id": "antom-kms-key-id",
    }
    fields.update(changes)
    return resources.StackFile(**fields)  # type: ignore[arg-type]


def test_antom_is_a_protocol_of_the_local_stack() -> None:
    assert Settings.from_env({"ALIPAY_PROTOCOL": "antom"}).protocol == "antom"
    with pytest.raises(StackError, match="openapi, mapi or antom"):
        Settings.from_env({"ALIPAY_PROTOCOL": "antom2"})
    with pytest.raises(StackError, match="certificate mode"):
        Settings.from_env({"ALIPAY_PROTOCOL": "antom", "ALIPAY_KEY_MODE": "cert"})


def test_stack_json_has_antom_client_id_only_on_an_antom_stack(tmp_path: Path) -> None:
    stack_file("antom", antom_client_id=resources.ANTOM_CLIENT_ID).write(tmp_path)
    written = json.loads((tmp_path / resources.STACK_FILE).read_text())
    assert (written["protocol"], written["antom_client_id"]) == ("antom", resources.ANTOM_CLIENT_ID)
    stack_file("openapi").write(tmp_path)
    assert "antom_client_id" not in json.loads((tmp_path / resources.STACK_FILE).read_text())


def test_the_functions_get_antoms_settings(tmp_path: Path) -> None:
    stack = stack_file("antom", antom_client_id=resources.ANTOM_CLIENT_ID)
    env = function_environment(stack, "arn:stream", tmp_path, {"PATH": "/usr/bin", "AWS_PROFILE": "mine"})
    assert env["ALIPAY_PROTOCOL"] == "antom"
    assert env["ANTOM_CLIENT_ID"] == resources.ANTOM_CLIENT_ID
    assert env["ALIPAY_PUBLIC_KEY_FILES"] == str(tmp_path / "antom_sandbox_public_key.pem")
    assert env["SIGNING_KEY_ID"] == "antom-kms-key-id"
    assert env["ALIPAY_GATEWAY_URL"] == "http://127.0.0.1:8001"  # Antom's base URL: no /gateway.do, no path
    assert env["NOTIFY_URL"] == "http://127.0.0.1:8000/antom/notify"
    assert env["ANTOM_PAYMENT_METHODS"] == "ALIPAY_CN,ALIPAY_HK"
    assert "ALIPAY_APP_ID" not in env
    assert "MERCHANT_PRIVATE_KEY_FILE" not in env
    assert "AWS_PROFILE" not in env


def test_an_open_platform_stack_is_unchanged(tmp_path: Path) -> None:
    env = function_environment(stack_file("openapi"), "arn:stream", tmp_path, {})
    assert env["NOTIFY_URL"] == "http://127.0.0.1:8000/alipay/notify"
    assert env["ALIPAY_GATEWAY_URL"] == "http://127.0.0.1:8001/gateway.do"
    assert env["ALIPAY_PUBLIC_KEY_FILES"] == str(tmp_path / "alipay_sandbox_public_key.pem")
    assert not any(name.startswith("ANTOM_") for name in env)
