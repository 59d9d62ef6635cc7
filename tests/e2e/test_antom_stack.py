"""``ALIPAY_PROTOCOL=antom make run``: the state directory, the Antom KMS key and the sandbox playing Antom.

The merchant's request is signed here as the product signs it: by the stack's Antom KMS key in the emulator
(``RSASSA_PKCS1_V1_5_SHA_256`` over Antom's signed content), so the sandbox's verification is checked against the
very key the product's functions are given; replies are verified with ``antom_sandbox_public_key.pem``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import quote, unquote

import boto3
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devstack import resources
from tests.e2e.conftest import LocalStack
from tests.keygen import rsa_key

PAY_PATH = "/ams/api/v1/payments/pay"


def kms(stack: LocalStack) -> Any:
    session = boto3.session.Session(
        aws_access_key_id="local", aws_secret_access_key="local", region_name=stack.info["region"]
    )
    return session.client("kms", endpoint_url=stack.info["aws_endpoint_url"])


def signed_content(path: str, client_id: str, moment: str, body: bytes) -> bytes:
    return f"POST {path}\n{client_id}.{moment}.".encode() + body


def post_signed(stack: LocalStack, body: bytes, sign: Any) -> requests.Response:
    client_id = stack.info["antom_client_id"]
    moment = str(int(time.time() * 1000))
    signature = base64.b64encode(sign(signed_content(PAY_PATH, client_id, moment, body))).decode()
    headers = {
        "Content-Type": "application/json; charset=UTF-8",
        "client-id": client_id,
        "request-time": moment,
        "signature": f"algorithm=RSA256,keyVersion=1,signature={quote(signature, safe='')}",
    }
    return requests.post(stack.sandbox + PAY_PATH, data=body, headers=headers, timeout=10)


def pay_body(number: str) -> bytes:
    request = {
        "productCode": "CASHIER_PAYMENT",
        "paymentRequestId": number,
        "order": {"referenceOrderId": number, "orderDescription": "T-shirt"},
        "paymentAmount": {"currency": "USD", "value": "1234"},
        "paymentMethod": {"paymentMethodType": "ALIPAY_CN"},
        "paymentRedirectUrl": "https://shop.example/done",
        "env": {"terminalType": "WEB"},
    }
    return json.dumps(request, separators=(",", ":")).encode()


def test_stack_json_names_the_antom_client_and_its_own_kms_key(antom_stack: LocalStack) -> None:
    info = antom_stack.info
    assert info["protocol"] == "antom"
    assert info["antom_client_id"] == resources.ANTOM_CLIENT_ID
    key = kms(antom_stack).describe_key(KeyId=resources.ANTOM_SIGNING_KEY_ALIAS)["KeyMetadata"]
    assert key["KeyId"] == info["signing_key_id"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("RSA_2048", "SIGN_VERIFY")
    private = serialization.load_pem_private_key(
        (antom_stack.state_dir / resources.ANTOM_PRIVATE_KEY_FILE).read_bytes(), password=None
    )
    public = serialization.load_pem_public_key((antom_stack.state_dir / resources.ANTOM_PUBLIC_KEY_FILE).read_bytes())
    assert isinstance(private, rsa.RSAPrivateKey)
    assert isinstance(public, rsa.RSAPublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()
    assert not (antom_stack.state_dir / resources.ALIPAY_PRIVATE_KEY_FILE).exists()  # Antom's pair, nothing else
    health = requests.get(f"{antom_stack.sandbox}/sandbox/health", timeout=10).json()
    assert health == {"status": "ok", "protocol": "antom"}


def test_the_sandbox_takes_a_request_signed_by_the_antom_kms_key_and_signs_its_reply(antom_stack: LocalStack) -> None:
    client = kms(antom_stack)

    def kms_sign(content: bytes) -> bytes:
        answer = client.sign(
            KeyId=antom_stack.info["signing_key_id"],
            Message=content,
            MessageType="RAW",
            SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256",
        )
        return bytes(answer["Signature"])

    number = f"E2E-ANTOM-{int(time.time() * 1000)}"
    reply = post_signed(antom_stack, pay_body(number), kms_sign)
    assert reply.status_code == 200
    assert reply.json()["result"]["resultCode"] == "PAYMENT_IN_PROCESS"
    public = serialization.load_pem_public_key((antom_stack.state_dir / resources.ANTOM_PUBLIC_KEY_FILE).read_bytes())
    assert isinstance(public, rsa.RSAPublicKey)
    header = reply.headers["signature"]
    signature = base64.b64decode(unquote(header.split("signature=", 1)[1]))
    content = signed_content(PAY_PATH, reply.headers["client-id"], reply.headers["response-time"], reply.content)
    public.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())  # raises if it does not verify
    assert antom_stack.trade(number)["status"] == "PROCESSING"

    # The same request signed by any other key is refused: the sandbox knows the merchant by the KMS key only.
    other = rsa_key("not-the-antom-kms-key")

    def local_sign(content: bytes) -> bytes:
        return other.sign(content, padding.PKCS1v15(), hashes.SHA256())

    refused = post_signed(antom_stack, pay_body(f"{number}-other"), local_sign)
    assert refused.json()["result"]["resultCode"] == "INVALID_SIGNATURE"
