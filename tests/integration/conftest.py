"""AWS in process (moto's ``mock_aws``): fake credentials, one region, clients and resources per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.adapters.dynamodb import create_table
from devstack.emulator import make_kms_sign_like_aws

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_sqs.client import SQSClient

REGION = "us-east-1"
TABLE = "alipay-orders"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A fresh in-process AWS; nothing can reach a real account (fake credentials, no endpoint overrides)."""
    from moto import mock_aws

    # A local stack's endpoint overrides would send these clients to a real emulator process instead.
    for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL")] + ["AWS_PROFILE"]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield


@cache
def _session() -> Any:
    """One boto3 session for the whole run: moto resets the default one per test, which reloads every model."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", aws_session_token="testing", region_name=REGION
    )


def _client(service: str) -> Any:
    # A new client per test, so the hooks a test registers on it die with the test.
    return _session().client(service)


@pytest.fixture
def dynamodb(aws: None) -> DynamoDBClient:
    client: DynamoDBClient = _client("dynamodb")
    return client


@pytest.fixture
def table(dynamodb: DynamoDBClient) -> str:
    create_table(dynamodb, TABLE)
    return TABLE


@pytest.fixture
def dynamodbstreams(aws: None) -> Any:
    from botocore.config import Config

    # botocore 1.44 sends GetRecords & co. to account endpoints (<account>.streams-ddb.<region>.amazonaws.com),
    # which moto 5.2.5 does not route ("404 Not yet implemented"): use the regional endpoint instead.
    return _session().client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled"))


@pytest.fixture
def sqs(aws: None) -> SQSClient:
    client: SQSClient = _client("sqs")
    return client


@pytest.fixture
def events(aws: None) -> EventBridgeClient:
    client: EventBridgeClient = _client("events")
    return client


@pytest.fixture
def kms(aws: None, monkeypatch: pytest.MonkeyPatch) -> KMSClient:
    # moto 5.2.5's Sign ignores ``MessageType`` and takes RAW messages over 4096 bytes: the emulator's fix.
    make_kms_sign_like_aws(patch=monkeypatch.setattr)
    client: KMSClient = _client("kms")
    return client


@pytest.fixture
def signing_key_id(kms: KMSClient) -> str:
    return kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]


def queue_arn(sqs: SQSClient, queue_url: str) -> str:
    """The ARN of the queue at ``queue_url``."""
    return sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def client_error(operation: str, code: str, status: int = 400) -> Exception:
    """A ``ClientError`` as botocore raises it for ``code``."""
    from botocore.exceptions import ClientError

    response: Any = {
        "Error": {"Code": code, "Message": f"injected {code}"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def fail_calls(client: Any, operation: str, exc: Exception, times: int | None = None) -> list[dict[str, Any]]:
    """Make ``operation`` on ``client`` raise ``exc`` (the next ``times`` calls, or all); the failed calls' params.

    The hook raises before any request is built or sent, so botocore's own retries never see it: the adapter
    gets exactly the error AWS would have returned after botocore gave up.
    """
    failed: list[dict[str, Any]] = []

    def raise_error(params: dict[str, Any], **_: Any) -> None:
        if times is None or len(failed) < times:
            failed.append(dict(params))
            raise exc

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-parameter-build.{service}.{operation}", raise_error)
    return failed


def record_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    """The API parameters of every ``operation`` call made on ``client`` from now on."""
    calls: list[dict[str, Any]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        calls.append(dict(params))

    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"before-parameter-build.{service}.{operation}", record)
    return calls


def connection_error() -> Exception:
    """What botocore raises when the endpoint cannot be reached at all."""
    from botocore.exceptions import EndpointConnectionError

    return EndpointConnectionError(endpoint_url="https://aws.invalid")
