"""The operator's certificate-mode tools: the CSR signed by the merchant key (``python -m ops csr``, here over a local
signer; tests/e2e/test_cert_mode.py runs it against KMS) and the doctor's account of a reply that fails in
certificate mode (``python -m ops verify-reply``)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import certs
from chalicelib.alipay.keys import same_public_key
from chalicelib.alipay.openapi_replies import TRADE_QUERY_RESPONSE
from chalicelib.alipay.signing import LocalKeySigner, SignType
from devstack.certs import LocalCa
from ops.cli import cli
from ops.csr import build_csr, subject_name
from tests.alipay_fixtures import APP_ID, signed_json_response
from tests.keygen import rsa_key

NOW = datetime.now(UTC)


def test_the_csr_carries_the_public_key_and_verifies_with_it() -> None:
    key = rsa_key("merchant")
    csr = build_csr(subject_name(APP_ID, "Example Ltd", None, "SG"), key.public_key(), LocalKeySigner(key))
    assert csr.is_signature_valid
    public = csr.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    assert same_public_key(public, key.public_key())
    assert csr.subject.rfc4514_string() == f"CN={APP_ID},O=Example Ltd,C=SG"


def test_a_csr_signed_by_another_key_than_the_one_it_names_is_refused() -> None:
    with pytest.raises(ValueError, match="disagree"):
        build_csr(subject_name(APP_ID), rsa_key("merchant").public_key(), LocalKeySigner(rsa_key("other")))


def test_the_csr_is_signed_sha256_with_rsa_only() -> None:
    key = rsa_key("merchant")
    with pytest.raises(ValueError, match="RSA2"):
        build_csr(subject_name(APP_ID), key.public_key(), LocalKeySigner(key, SignType.RSA))


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    ca = LocalCa(now=NOW)
    folder = tmp_path_factory.mktemp("certs")
    out = {
        "alipay": ca.alipay_cert(rsa_key("alipay").public_key()),
        "root": ca.root_bundle,
        "app": ca.app_cert(rsa_key("merchant").public_key(), APP_ID),
    }
    paths = {}
    for name, text in out.items():
        paths[name] = folder / f"{name}.pem"
        paths[name].write_text(text)
    return paths


def verify_reply(files: dict[str, Path], reply: str) -> tuple[int, str]:
    args = ["verify-reply", "--alipay-cert", str(files["alipay"]), "--root-cert", str(files["root"])]
    result = CliRunner().invoke(cli, [*args, "--app-cert", str(files["app"]), "-"], input=reply)
    return result.exit_code, result.output


def reply(sn: str) -> str:
    body = {"code": "10000", "msg": "Success"}
    return signed_json_response(TRADE_QUERY_RESPONSE, body, rsa_key("alipay"), cert_sn=sn)


def test_verify_reply_prints_a_reply_signed_under_the_certificate_it_names(files: dict[str, Path]) -> None:
    sn = certs.app_cert_sn(files["alipay"].read_text())
    code, output = verify_reply(files, reply(sn))
    assert code == 0, output
    assert '"code": "10000"' in output


def test_the_doctor_explains_an_unknown_alipay_cert_sn_and_what_to_do(files: dict[str, Path]) -> None:
    code, output = verify_reply(files, reply("0123456789abcdef0123456789abcdef"))
    assert code == 1
    assert output.startswith("cert_sn: the reply names alipay_cert_sn 0123456789abcdef0123456789abcdef")
    assert "if it rotated" in output
    assert certs.app_cert_sn(files["alipay"].read_text()) in output  # the configured one is listed


def test_the_doctor_recognises_the_app_certificate_configured_as_alipays(files: dict[str, Path]) -> None:
    code, output = verify_reply(files, reply(certs.app_cert_sn(files["app"].read_text())))
    assert code == 1
    assert "is your app certificate's SN" in output
