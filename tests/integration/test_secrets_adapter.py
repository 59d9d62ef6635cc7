"""The legacy merchant key in Secrets Manager (moto): read on the first signature only, and clear when it is missing."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib.adapters.secrets import SecretKeySigner
from chalicelib.alipay.signing import AlipayPublicKeys, SignType, verify_signature
from chalicelib.config import ConfigError
from tests.integration.conftest import _client
from tests.keygen import rsa_key

SECRET = "alipay-global/prod/legacy-merchant-key"


class CountingClient:
    """The real (moto) client, counting GetSecretValue calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.reads = 0

    def get_secret_value(self, *, SecretId: str) -> Any:
        self.reads += 1
        return self._client.get_secret_value(SecretId=SecretId)


@pytest.fixture
def secrets(aws: None) -> CountingClient:
    return CountingClient(_client("secretsmanager"))


def pem() -> str:
    return (
        rsa_key("merchant")
        .private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        .decode()
    )


def test_the_key_is_read_once_on_the_first_signature_and_signs_sha1_with_rsa(secrets: CountingClient) -> None:
    text = pem()
    secrets._client.create_secret(Name=SECRET, SecretString=text)
    signer = SecretKeySigner(secrets, SECRET, SignType.RSA)
    assert signer.sign_type is SignType.RSA
    assert secrets.reads == 0  # constructing it (the webhook's gateway does) reads nothing
    message = b"partner=2088101122136241&service=mobile.securitypay.pay"
    signature = signer.sign(message)
    signer.sign(b"again")
    assert secrets.reads == 1
    private = serialization.load_pem_private_key(text.encode(), None)
    assert signer.public_key().public_numbers() == private.public_key().public_numbers()
    # SHA1withRSA over the message, as the legacy protocol signs: raises unless it verifies.
    verify_signature(AlipayPublicKeys([signer.public_key()]), message, signature, SignType.RSA)


@pytest.mark.parametrize(
    ("value", "reason"),
    [(None, "ResourceNotFoundException"), ("a generated password", "no RSA private key")],
)
def test_a_missing_or_unset_secret_is_a_configuration_error_naming_what_to_do(
    secrets: CountingClient, value: str | None, reason: str
) -> None:
    if value is not None:
        secrets._client.create_secret(Name=SECRET, SecretString=value)  # as the stack creates it, before the PEM
    signer = SecretKeySigner(secrets, SECRET, SignType.RSA)
    with pytest.raises(ConfigError, match=reason) as raised:
        signer.sign(b"x")
    assert "MERCHANT_PRIVATE_KEY_SECRET" in str(raised.value)
    assert "put" in str(raised.value)
