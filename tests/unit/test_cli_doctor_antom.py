"""`verify-notification` for Antom: the notification verified from its headers, and each usual mistake named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ops.cli import cli
from tests.antom_kit import CLIENT_ID, NOTIFY_URL, antom_key, sign
from tests.keygen import rsa_key

BODY = json.dumps(
    {
        "notifyType": "PAYMENT_RESULT",
        "result": {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"},
        "paymentRequestId": "ORDER-1",
        "paymentId": "P-1",
        "paymentAmount": {"currency": "USD", "value": "1234"},
    },
    indent=1,  # not compact: a re-serialization would show
).encode()


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    paths = {"key": tmp_path / "antom.pem", "own": tmp_path / "own.pem", "body": tmp_path / "body.json"}
    paths["key"].write_bytes(_pem(antom_key()))
    paths["own"].write_bytes(_pem(rsa_key("merchant")))
    paths["body"].write_bytes(BODY + b"\n")  # a saved body gains a newline that was never POSTed
    return paths


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def run(files: dict[str, Path], headers: dict[str, str], *extra: str, url: str = NOTIFY_URL) -> tuple[int, str]:
    args = ["verify-notification", "--alipay-public-key", str(files["key"]), "--notify-url", url]
    args += ["--client-id", CLIENT_ID, *extra]
    for name, value in headers.items():
        args += ["--header", f"{name}: {value}"]
    result = CliRunner().invoke(cli, [*args, str(files["body"])])
    return result.exit_code, result.output


def test_a_genuine_notification_prints_its_fields_and_notify_id(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY))
    assert code == 0, out
    fields: dict[str, Any] = json.loads(out)
    assert fields["paymentRequestId"] == "ORDER-1"
    assert fields["paymentAmount.value"] == "1234"
    assert fields["_notify_id"] == "PAYMENT_RESULT:P-1:S"


def test_headers_can_come_from_a_log_excerpt(files: dict[str, Path], tmp_path: Path) -> None:
    log = tmp_path / "headers.txt"
    lines = [f"{name.title()}: {value}" for name, value in sign(BODY).items()]
    log.write_text("POST /prod/antom/notify HTTP/1.1\nHost: pay.example.com\n" + "\n".join(lines) + "\n\n")
    code, out = run(files, {}, "--headers-file", str(log))
    assert code == 0, out


def test_headers_can_come_from_a_json_file(files: dict[str, Path], tmp_path: Path) -> None:
    headers = tmp_path / "headers.json"
    headers.write_text(json.dumps(sign(BODY)))
    code, out = run(files, {}, "--headers-file", str(headers))
    assert code == 0, out


def test_a_missing_header_is_named(files: dict[str, Path]) -> None:
    headers = sign(BODY)
    del headers["request-time"]
    code, out = run(files, headers)
    assert code == 1
    assert out.startswith("missing_header: no request-time header")


def test_another_client_id_is_named(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY, client_id="2188120000000999"))
    assert code == 1
    assert out.startswith("client_id: client-id '2188120000000999', expected")


def test_a_signature_for_the_path_without_the_stage_says_so(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY, path="/antom/notify"))
    assert code == 1
    assert "signature: signed for the path '/antom/notify' (without its first segment (a stage prefix))" in out
    assert "expected signed content: 'POST /prod/antom/notify\\n2188120000000001.1764930640000.{" in out


def test_a_signature_for_the_whole_url_says_so(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY, path=NOTIFY_URL))
    assert code == 1
    assert "as the whole URL instead of its path" in out


def test_a_signature_over_re_serialized_json_says_so(files: dict[str, Path]) -> None:
    compact = json.dumps(json.loads(BODY), separators=(",", ":")).encode()
    code, out = run(files, sign(compact, path="/prod/antom/notify"))
    assert code == 1
    assert "re-serialized JSON" in out


def test_a_changed_body_is_told_apart_from_a_wrong_key(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY.replace(b"1234", b"1")))
    assert code == 1
    assert "the signature is genuine" in out
    code, out = run(files, sign(BODY, key=rsa_key("other")))
    assert code == 1
    assert "was not made by the configured" in out


def test_a_notification_signed_with_the_merchants_own_key_says_so(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY, key=rsa_key("merchant")), "--app-public-key", str(files["own"]))
    assert code == 1
    assert "signed with your app's own private key" in out


def test_an_algorithm_other_than_rsa256_is_named(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY, algorithm="RSA"))
    assert code == 1
    assert out.startswith("algorithm: signature algorithm 'RSA'")


def test_a_malformed_signature_header_is_named(files: dict[str, Path]) -> None:
    code, out = run(files, sign(BODY) | {"signature": "algorithm=RSA256,keyVersion=1"})
    assert code == 1
    assert out.startswith("malformed_signature:")


def test_antom_mode_needs_the_notify_url_and_client_id(files: dict[str, Path]) -> None:
    args = ["verify-notification", "--alipay-public-key", str(files["key"]), "--header", "client-id: x"]
    result = CliRunner().invoke(cli, [*args, str(files["body"])])
    assert result.exit_code == 2
    assert "--notify-url and --client-id" in result.output
