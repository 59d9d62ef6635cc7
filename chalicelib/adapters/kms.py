"""KMS adapter: signs order strings with the merchant's RSA key, which never leaves KMS."""

from __future__ import annotations

import binascii
import hashlib
from typing import TYPE_CHECKING

from chalicelib.adapters._aws_errors import aws_errors, is_throttling, unavailable
from chalicelib.alipay.keys import RSAPublicKey, load_public_key, public_key_base64
from chalicelib.alipay.signing import SignType
from chalicelib.topology import SIGNING_ALGORITHM

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_kms.literals import MessageTypeType

    from chalicelib.services.ports import Metrics

KMS_RAW_MESSAGE_LIMIT = 4096  # bytes: KMS rejects longer RAW messages
# KMS publishes no throttling metric of its own: each call KMS throttled is counted here (the stage's dashboard,
# infra/stacks/dashboard.py), by operation (the ``reason`` dimension). Orders cannot be signed while it lasts.
THROTTLED_METRIC = "KmsThrottled"


class KmsSigner:
    """A ``Signer`` (RSA2) whose private key is an asymmetric ``RSA_2048`` ``SIGN_VERIFY`` KMS key."""

    def __init__(self, client: KMSClient, key_id: str, metrics: Metrics | None = None) -> None:
        # Without metrics (an operator's `python -m ops public-key`), a throttled call is only the error it raises.
        self._client = client
        self._key_id = key_id
        self._metrics = metrics
        self._public_key: RSAPublicKey | None = None

    @property
    def sign_type(self) -> SignType:
        return SignType.RSA2

    def sign(self, message: bytes) -> bytes:
        """The PKCS#1 v1.5 SHA-256 signature of ``message``; ``Unavailable`` if KMS cannot sign now."""
        message_type: MessageTypeType = "RAW"
        if len(message) > KMS_RAW_MESSAGE_LIMIT:
            # KMS hashes RAW messages itself, up to 4 KiB. A longer one (a long order body) is hashed here and
            # sent as a DIGEST: PKCS#1 v1.5 signs the hash either way, so the signature is the same.
            message, message_type = hashlib.sha256(message).digest(), "DIGEST"
        try:
            response = self._client.sign(
                KeyId=self._key_id, Message=message, MessageType=message_type, SigningAlgorithm=SIGNING_ALGORITHM
            )
        except aws_errors() as exc:
            self._count_throttling(exc, "Sign")
            raise unavailable(exc, "KMS Sign") from exc
        return response["Signature"]

    def public_key(self) -> RSAPublicKey:
        """The key's public half, fetched once per container (it cannot change under the same key id)."""
        if self._public_key is None:
            try:
                response = self._client.get_public_key(KeyId=self._key_id)
            except aws_errors() as exc:
                self._count_throttling(exc, "GetPublicKey")
                raise unavailable(exc, "KMS GetPublicKey") from exc
            # KMS returns DER SubjectPublicKeyInfo; load_public_key also checks it is RSA and large enough.
            self._public_key = load_public_key(binascii.b2a_base64(response["PublicKey"], newline=False))
        return self._public_key

    def public_key_base64(self) -> str:
        """The public key as the bare single-line base64 SPKI that Alipay's portal takes."""
        return public_key_base64(self.public_key())

    def _count_throttling(self, exc: BaseException, operation: str) -> None:
        if self._metrics is not None and is_throttling(exc):
            # The total (what the dashboard graphs) and the same count by operation (a ``reason`` dimension).
            self._metrics.count(THROTTLED_METRIC)
            self._metrics.count(f"{THROTTLED_METRIC}.{operation}")
