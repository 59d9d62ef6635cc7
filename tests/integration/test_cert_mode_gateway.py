"""The gateway adapter in certificate mode against the sandbox over real HTTP: the gateway built by ``bootstrap``
from a certificate-mode config sends the SNs the sandbox checks, and verifies each reply by the certificate it
names; a reply naming an unconfigured certificate is refused unverified and never acted on."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from chalicelib import bootstrap
from chalicelib.adapters.alipay_gateway import GatewayError, UnverifiedReply
from chalicelib.alipay import certs
from chalicelib.alipay.certs import CertSns
from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.signing import LocalKeySigner
from chalicelib.config import Config
from devstack.certs import LocalCa
from sandbox.server import RunningSandbox, start_sandbox
from sandbox.trades import SandboxSettings
from tests.keygen import rsa_key
from tests.unit.services_kit import env

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000002"
UNKNOWN_SN = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def pki() -> dict[str, str]:
    ca = LocalCa()
    return {
        "app": ca.app_cert(rsa_key("merchant").public_key(), APP_ID),
        "alipay": ca.alipay_cert(rsa_key("sandbox-alipay").public_key()),
        "root": ca.root_bundle,
    }


@pytest.fixture(scope="module")
def sandbox(pki: dict[str, str]) -> Iterator[RunningSandbox]:
    settings = SandboxSettings(
        protocol=AlipayProtocol.OPENAPI,
        alipay_key=rsa_key("sandbox-alipay"),
        merchant_public_key=certs.public_key_from_certificate(pki["app"])[1],
        app_id=APP_ID,
        seller_id=SELLER_ID,
        cert_sns=CertSns(certs.app_cert_sn(pki["app"]), certs.alipay_root_cert_sn(pki["root"])),
        alipay_cert_sn=certs.app_cert_sn(pki["alipay"]),
    )
    running = start_sandbox(settings)
    yield running
    running.stop()


def gateway(sandbox: RunningSandbox, pki: dict[str, str], **overrides: str) -> object:
    values = {
        "ALIPAY_PUBLIC_KEYS": "",
        "ALIPAY_KEY_MODE": "cert",
        "ALIPAY_APP_CERT": pki["app"],
        "ALIPAY_CERTS": pki["alipay"],
        "ALIPAY_ROOT_CERT": pki["root"],
        "ALIPAY_GATEWAY_URL": f"{sandbox.url}/gateway.do",
        "ALIPAY_APP_ID": APP_ID,
    }
    config = Config.from_env(env(**(values | overrides)))
    keys = bootstrap.load_alipay_keys(config)
    return bootstrap.build_gateway(config, LocalKeySigner(rsa_key("merchant")), keys)


def test_a_query_carries_the_sns_and_its_reply_verifies_by_the_certificate_it_names(
    sandbox: RunningSandbox, pki: dict[str, str]
) -> None:
    result = gateway(sandbox, pki).query_trade("NO-SUCH-ORDER-1")  # type: ignore[attr-defined]
    assert result.found is False  # ACQ.TRADE_NOT_EXIST, signed and verified: the sandbox accepted the SNs


def test_a_wrong_app_certificate_sn_is_refused_by_the_sandbox(sandbox: RunningSandbox, pki: dict[str, str]) -> None:
    # The same key, certified by another CA: another SN, which Alipay does not know for this app.
    stranger_app = LocalCa().app_cert(rsa_key("merchant").public_key(), APP_ID)
    assert certs.app_cert_sn(stranger_app) != certs.app_cert_sn(pki["app"])
    with pytest.raises(GatewayError, match="invalid-app-cert-sn"):
        gateway(sandbox, pki, ALIPAY_APP_CERT=stranger_app).query_trade("NO-SUCH-ORDER-2")  # type: ignore[attr-defined]


def test_a_reply_naming_an_unknown_certificate_is_unverified(sandbox: RunningSandbox, pki: dict[str, str]) -> None:
    sandbox.sandbox.reply_cert_sn = UNKNOWN_SN
    try:
        with pytest.raises(UnverifiedReply) as caught:
            gateway(sandbox, pki).query_trade("NO-SUCH-ORDER-3")  # type: ignore[attr-defined]
    finally:
        sandbox.sandbox.reply_cert_sn = None
    assert caught.value.check == "cert_sn"
    assert UNKNOWN_SN in str(caught.value)
