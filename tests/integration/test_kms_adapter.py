"""The KMS signer against moto: signatures verify with the exported key, long messages go as digests."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from chalicelib.adapters.kms import KmsSigner
from chalicelib.alipay.keys import load_public_key, same_public_key
from chalicelib.alipay.signing import Signer, SignType
from chalicelib.services.ports import Unavailable
from tests.fakes import CountingMetrics
from tests.integration.conftest import client_error, connection_error, fail_calls, record_calls

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient

ORDER_STRING = 'app_id=2021000000000000&biz_content={"subject":"咖啡","total_amount":"12.30"}&charset=utf-8'


@pytest.fixture
def signer(kms: KMSClient, signing_key_id: str) -> KmsSigner:
    return KmsSigner(kms, signing_key_id)


def _verify(signer: KmsSigner, signature: bytes, message: bytes) -> None:
    signer.public_key().verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_is_an_rsa2_signer(signer: KmsSigner) -> None:
    assert isinstance(signer, Signer)
    assert signer.sign_type is SignType.RSA2


def test_signs_an_order_string_so_that_the_exported_public_key_verifies_it(kms: KMSClient, signer: KmsSigner) -> None:
    sent = record_calls(kms, "Sign")
    message = ORDER_STRING.encode()
    _verify(signer, signer.sign(message), message)
    assert (sent[0]["MessageType"], sent[0]["SigningAlgorithm"]) == ("RAW", "RSASSA_PKCS1_V1_5_SHA_256")


def test_a_signature_does_not_verify_another_message(signer: KmsSigner) -> None:
    signature = signer.sign(b"total_amount=12.30")
    with pytest.raises(InvalidSignature):
        _verify(signer, signature, b"total_amount=99.30")


def test_signs_a_message_of_exactly_4096_bytes_raw(kms: KMSClient, signer: KmsSigner) -> None:
    sent = record_calls(kms, "Sign")
    message = b"a" * 4096
    _verify(signer, signer.sign(message), message)
    assert sent[0]["MessageType"] == "RAW"


def test_signs_a_longer_message_as_its_sha256_digest_with_the_same_signature(
    kms: KMSClient, signing_key_id: str, signer: KmsSigner
) -> None:
    sent = record_calls(kms, "Sign")
    message = (ORDER_STRING * 100).encode()
    assert len(message) > 4096
    signature = signer.sign(message)
    _verify(signer, signature, message)
    assert (sent[0]["MessageType"], sent[0]["Message"]) == ("DIGEST", hashlib.sha256(message).digest())
    # PKCS#1 v1.5 is deterministic: a RAW signature of the same bytes (were KMS to accept them) is identical,
    # shown here on a message short enough for both forms.
    short = message[:4096]
    raw = kms.sign(KeyId=signing_key_id, Message=short, MessageType="RAW", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256")
    digest = kms.sign(
        KeyId=signing_key_id,
        Message=hashlib.sha256(short).digest(),
        MessageType="DIGEST",
        SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256",
    )
    assert raw["Signature"] == digest["Signature"] == signer.sign(short)


def test_exports_the_public_key_as_the_bare_base64_alipay_takes(signer: KmsSigner) -> None:
    exported = signer.public_key_base64()
    assert "\n" not in exported
    assert "BEGIN" not in exported
    assert same_public_key(load_public_key(exported), signer.public_key())
    assert signer.public_key().key_size == 2048


def test_fetches_the_public_key_from_kms_once(kms: KMSClient, signer: KmsSigner) -> None:
    calls = record_calls(kms, "GetPublicKey")
    signer.public_key()
    signer.public_key_base64()
    signer.public_key()
    assert len(calls) == 1


@pytest.mark.parametrize(("code", "retry_after"), [("ThrottlingException", 2), ("KMSInternalException", 1)])
def test_throttling_and_kms_failures_become_unavailable(
    kms: KMSClient, signer: KmsSigner, code: str, retry_after: int
) -> None:
    injected = client_error("Sign", code)
    fail_calls(kms, "Sign", injected)
    with pytest.raises(Unavailable) as raised:
        signer.sign(b"m")
    assert raised.value.retry_after == retry_after
    assert raised.value.__cause__ is injected


def test_each_call_kms_throttles_is_counted_by_operation_and_nothing_else_is(
    kms: KMSClient, signing_key_id: str
) -> None:
    # KMS publishes no throttling metric: this count is the dashboard's only view of it (infra/stacks/dashboard.py).
    metrics = CountingMetrics()
    signer = KmsSigner(kms, signing_key_id, metrics)
    signer.sign(b"fine")
    fail_calls(kms, "Sign", client_error("Sign", "ThrottlingException"), times=2)
    fail_calls(kms, "GetPublicKey", client_error("GetPublicKey", "ThrottlingException"), times=1)
    for _ in range(2):
        with pytest.raises(Unavailable, match="throttled"):
            signer.sign(b"m")
    with pytest.raises(Unavailable, match="throttled"):
        signer.public_key()
    fail_calls(kms, "Sign", client_error("Sign", "KMSInternalException", 500), times=1)
    with pytest.raises(Unavailable):
        signer.sign(b"m")
    fail_calls(kms, "Sign", connection_error(), times=1)
    with pytest.raises(Unavailable):
        signer.sign(b"m")
    assert metrics.counts == {"KmsThrottled": 3, "KmsThrottled.Sign": 2, "KmsThrottled.GetPublicKey": 1}


def test_an_unreachable_kms_becomes_unavailable(kms: KMSClient, signer: KmsSigner) -> None:
    fail_calls(kms, "Sign", connection_error())
    fail_calls(kms, "GetPublicKey", connection_error())
    with pytest.raises(Unavailable):
        signer.sign(b"m")
    with pytest.raises(Unavailable):
        signer.public_key()


def test_an_unknown_key_becomes_unavailable(kms: KMSClient) -> None:
    with pytest.raises(Unavailable, match="NotFoundException"):
        KmsSigner(kms, "alias/no-such-key").sign(b"m")


def test_kms_rejects_raw_messages_over_4096_bytes_which_is_why_long_ones_go_as_digests(
    kms: KMSClient, signing_key_id: str
) -> None:
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError, match="ValidationException"):
        kms.sign(
            KeyId=signing_key_id, Message=b"a" * 4097, MessageType="RAW", SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256"
        )
