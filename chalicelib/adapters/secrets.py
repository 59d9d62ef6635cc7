"""Secrets Manager adapter: the legacy RSA (SHA1withRSA) merchant key, which KMS cannot hold, read when first needed.

Only functions that sign legacy requests may read the secret (infra grants it to them alone). The key is fetched on
the first signature, never at construction: the webhook builds a gateway only for ``notify_verify``, which is not
signed, so its cold start never asks for the key.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.adapters._aws_errors import aws_errors, error_code, unavailable
from chalicelib.alipay.errors import KeyFormatError
from chalicelib.alipay.keys import load_private_key
from chalicelib.alipay.signing import LocalKeySigner, SignType
from chalicelib.config import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import rsa

# What Secrets Manager answers when the secret, or its value, is not there: a deployment mistake, not an outage.
_MISSING = frozenset({"ResourceNotFoundException", "AccessDeniedException", "DecryptionFailure"})


class SecretsClient(Protocol):
    """The part of boto3's Secrets Manager client this adapter uses."""

    def get_secret_value(self, *, SecretId: str) -> Mapping[str, Any]: ...


KEY_SETTING = "MERCHANT_PRIVATE_KEY_SECRET"


class SecretKeySigner:
    """A ``Signer`` over the merchant's private key kept in Secrets Manager (PEM, PKCS#1 or PKCS#8)."""

    def __init__(self, client: SecretsClient, secret_id: str, sign_type: SignType) -> None:
        self._client = client
        self._secret_id = secret_id
        self._sign_type = SignType(sign_type)
        self._signer: LocalKeySigner | None = None
        self._lock = threading.Lock()

    @property
    def sign_type(self) -> SignType:
        return self._sign_type

    def sign(self, message: bytes) -> bytes:
        return self._loaded().sign(message)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._loaded().public_key()

    def _loaded(self) -> LocalKeySigner:
        with self._lock:
            if self._signer is None:
                self._signer = LocalKeySigner(self._read(), self._sign_type)
            return self._signer

    def _read(self) -> rsa.RSAPrivateKey:
        try:
            response = self._client.get_secret_value(SecretId=self._secret_id)
        except aws_errors() as exc:
            if error_code(exc) in _MISSING:
                raise ConfigError(
                    KEY_SETTING,
                    f"{self._secret_id} cannot be read ({error_code(exc)}): put the PEM with "
                    "`aws secretsmanager put-secret-value` (docs/deploy.md) and check the function's role"
                ) from exc
            raise unavailable(exc, "Secrets Manager GetSecretValue") from exc
        text = response.get("SecretString")
        if not isinstance(text, str):
            raise ConfigError(KEY_SETTING, f"{self._secret_id} holds no text: put the merchant key's PEM")
        try:
            return load_private_key(text)
        except KeyFormatError as exc:
            raise ConfigError(
                KEY_SETTING, f"{self._secret_id} holds no RSA private key ({exc}): put the merchant key's PEM"
            ) from exc
