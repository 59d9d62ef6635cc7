"""`verify-notification` / `verify-result` and the signature doctor: each usual mistake is named."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote_plus, urlencode

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chalicelib.alipay.forms import signed_content
from chalicelib.alipay.signing import b64encode
from ops.cli import cli
from tests.keygen import rsa_key

ROOT = Path(__file__).resolve().parents[2]


def _sign(key: rsa.RSAPrivateKey, content: bytes, algorithm: hashes.HashAlgorithm | None = None) -> str:
    return b64encode(key.sign(content, padding.PKCS1v15(), algorithm or hashes.SHA256()))


def _fields(**extra: str) -> dict[str, str]:
    fields = {
        "notify_time": "2026-11-26 16:00:00",
        "notify_type": "trade_status_sync",
        "notify_id": "ac05099524730693a8b330c5ecf72da9786",
        "app_id": "2021000000000001",
        "charset": "utf-8",
        "version": "1.0",
        "sign_type": "RSA2",
        "trade_no": "2026112622001400000000000001",
        "out_trade_no": "order-1",
        "seller_id": "2088000000000001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "12.34",
        "subject": "A & B = {C} \"D\"",
    }
    fields.update(extra)
    return fields


def _content(fields: dict[str, str], exclude: tuple[str, ...] = ("sign", "sign_type")) -> str:
    return signed_content(fields, exclude)


def _body(fields: dict[str, str], sign: str, charset: str = "utf-8") -> bytes:
    return urlencode({**fields, "sign": sign}, encoding=charset).encode("ascii")


def _pem(key: rsa.RSAPublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture
def run(tmp_path: Path) -> Callable[..., tuple[int, str]]:
    alipay_key = tmp_path / "alipay.pem"
    alipay_key.write_bytes(_pem(rsa_key("alipay").public_key()))

    def invoke(command: str, payload: bytes, *args: str) -> tuple[int, str]:
        data = tmp_path / "in.txt"
        data.write_bytes(payload)
        result = CliRunner().invoke(cli, [command, "--alipay-public-key", str(alipay_key), *args, str(data)])
        return result.exit_code, result.output

    return invoke


def test_prints_verified_notification_as_json(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    code, out = run("verify-notification", _body(fields, _sign(rsa_key("alipay"), _content(fields).encode())))
    assert code == 0, out
    assert json.loads(out)["subject"] == fields["subject"]


def test_names_the_apps_own_key_configured_instead_of_alipays(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    code, out = run("verify-notification", _body(fields, _sign(rsa_key("alipay"), _content(fields).encode())))
    assert code == 0
    merchant = rsa_key("merchant")
    code, out = run("verify-notification", _body(fields, _sign(merchant, _content(fields).encode())))
    assert code == 1
    assert out.count("\n") == 1
    assert "not made by the configured Alipay public key" in out
    assert "app's own public key" in out


def test_names_sign_type_wrongly_included(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    sign = _sign(rsa_key("alipay"), _content(fields, ("sign",)).encode())
    code, out = run("verify-notification", _body(fields, sign))
    assert code == 1
    assert "sign_type was included" in out


def test_names_wrong_hash_when_sha1_signature_is_labelled_rsa2(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    sign = _sign(rsa_key("alipay"), _content(fields).encode(), hashes.SHA1())  # noqa: S303 - the mistake under test
    code, out = run("verify-notification", _body(fields, sign))
    assert code == 1
    assert "wrong hash: signed with SHA1 (sign_type RSA)" in out


def test_names_the_wrong_charset(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields(charset="gbk", subject="测试商品")
    # Signed over UTF-8 bytes, but the body is GBK-encoded and says so: a sender mixing charsets.
    sign = _sign(rsa_key("alipay"), _content(fields).encode("utf-8"))
    code, out = run("verify-notification", _body(fields, sign, charset="gbk"))
    assert code == 1
    assert "charset" in out
    assert "utf-8" in out


def test_names_values_url_encoded_before_signing(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    encoded = {k: quote_plus(v, safe="") for k, v in fields.items()}
    sign = _sign(rsa_key("alipay"), _content(encoded).encode())
    code, out = run("verify-notification", _body(fields, sign))
    assert code == 1
    assert "URL-encoded" in out


def test_names_a_tampered_field_when_the_signature_is_genuine(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    sign = _sign(rsa_key("alipay"), _content(fields).encode())
    code, out = run("verify-notification", _body({**fields, "total_amount": "0.01"}, sign))
    assert code == 1
    assert out.startswith("signature: the signature is genuine")
    assert "altered" in out


def test_names_a_field_added_after_signing(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    sign = _sign(rsa_key("alipay"), _content(fields).encode())
    code, out = run("verify-notification", _body({**fields, "passback_params": "x"}, sign))
    assert code == 1
    assert "'passback_params' was added after signing" in out


def test_names_plus_signs_that_arrived_as_spaces(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields()
    sign = _sign(rsa_key("alipay"), _content(fields).encode())
    while "+" not in sign:  # make sure the signature has a '+' to lose
        fields["notify_id"] += "0"
        sign = _sign(rsa_key("alipay"), _content(fields).encode())
    body = _body(fields, "SIGN").replace(b"sign=SIGN", b"sign=" + sign.encode())  # '+' not URL-encoded
    code, out = run("verify-notification", body)
    assert code == 1
    assert "arrived as spaces" in out


def test_sign_type_downgrade_is_reported_as_such(run: Callable[..., tuple[int, str]]) -> None:
    fields = _fields(sign_type="RSA")
    sign = _sign(rsa_key("alipay"), _content(fields).encode(), hashes.SHA1())  # noqa: S303
    code, out = run("verify-notification", _body(fields, sign))
    assert (code, out.split(":")[0]) == (1, "sign_type")


def test_malformed_body_exits_1_with_one_line(run: Callable[..., tuple[int, str]]) -> None:
    code, out = run("verify-notification", b"a=1&a=2")
    assert (code, out) == (1, "malformed: duplicate field 'a'\n")


def _openapi_result(response: str, key: rsa.RSAPrivateKey, content: str | None = None) -> str:
    sign = _sign(key, (content or response).encode())
    return f'{{"alipay_trade_app_pay_response":{response},"sign":"{sign}","sign_type":"RSA2"}}'


RESPONSE = (
    '{"code":"10000","msg":"Success","app_id":"2021000000000001","out_trade_no":"order-1",'
    '"trade_no":"2026112622001400000000000001","total_amount":"12.34","seller_id":"2088000000000001",'
    '"charset":"utf-8","timestamp":"2026-11-26 16:00:00","subject":"a } \\"quoted\\" {"}'
)


def test_verifies_an_openapi_result_given_as_the_whole_sdk_callback(run: Callable[..., tuple[int, str]]) -> None:
    callback = {"resultStatus": "9000", "result": _openapi_result(RESPONSE, rsa_key("alipay")), "memo": ""}
    code, out = run("verify-result", json.dumps(callback).encode())
    assert code == 0, out
    assert json.loads(out)["subject"] == 'a } "quoted" {'


def test_names_a_reserialized_json_response(run: Callable[..., tuple[int, str]]) -> None:
    reserialized = json.dumps(json.loads(RESPONSE), ensure_ascii=False, separators=(",", ":"))
    spaced = RESPONSE.replace(",", ", ")
    result = _openapi_result(spaced, rsa_key("alipay"), content=reserialized)
    code, out = run("verify-result", result.encode())
    assert code == 1
    assert "re-serialized JSON" in out


def _mapi_result(key: rsa.RSAPrivateKey, *, include_success_in_content: bool = True) -> str:
    order = 'partner="2088000000000001"&seller_id="2088000000000001"&out_trade_no="order-1"&total_fee="12.34"'
    order += '&currency="USD"&body="b"&subject="s"'
    content = order + '&success="true"'
    signed = content if include_success_in_content else order
    sign = _sign(key, signed.encode(), hashes.SHA1())  # noqa: S303 - legacy RSA
    return f'{content}&sign_type="RSA"&sign="{sign}"'


def test_verifies_a_legacy_result(run: Callable[..., tuple[int, str]]) -> None:
    code, out = run("verify-result", _mapi_result(rsa_key("alipay")).encode())
    assert code == 0, out
    assert json.loads(out)["success"] == "true"


def test_names_success_left_out_of_a_legacy_result(run: Callable[..., tuple[int, str]]) -> None:
    code, out = run("verify-result", _mapi_result(rsa_key("alipay"), include_success_in_content=False).encode())
    assert code == 1
    assert 'success="true" was left out' in out


def test_says_the_configured_key_is_the_apps_own_when_given_both(tmp_path: Path) -> None:
    merchant = rsa_key("merchant")
    own = tmp_path / "own.pem"
    own.write_bytes(_pem(merchant.public_key()))
    fields = _fields()
    body = tmp_path / "body"
    body.write_bytes(_body(fields, _sign(rsa_key("alipay"), _content(fields).encode())))
    result = CliRunner().invoke(
        cli,
        ["verify-notification", "--alipay-public-key", str(own), "--app-public-key", str(own), str(body)],
    )
    assert result.exit_code == 1
    assert "is your app's own public key" in result.output


def test_module_entry_point_reads_stdin(tmp_path: Path) -> None:
    key = tmp_path / "alipay.txt"
    der = rsa_key("alipay").public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key.write_text(b64encode(der))  # the key tool's bare base64 form
    fields = _fields()
    proc = subprocess.run(
        [sys.executable, "-m", "ops", "verify-notification", "--alipay-public-key", str(key), "-"],
        input=_body(fields, _sign(rsa_key("alipay"), _content(fields).encode())) + b"\n",
        capture_output=True,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["out_trade_no"] == "order-1"
