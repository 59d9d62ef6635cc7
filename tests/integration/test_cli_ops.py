"""`public-key` and `redrive` against AWS: in process (moto's ``mock_aws``) and through the local emulator."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result

from chalicelib.alipay.keys import load_public_key
from ops.cli import cli

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_sqs.client import SQSClient

_SETTINGS = ("SIGNING_KEY_ID", "NOTIFICATIONS_QUEUE_URL", "NOTIFICATIONS_DLQ_URL")
EMULATOR_REGION = "eu-west-1"


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def spki_base64(kms: KMSClient, key_id: str) -> str:
    return base64.b64encode(kms.get_public_key(KeyId=key_id)["PublicKey"]).decode("ascii")


def queues(sqs: SQSClient) -> tuple[str, str]:
    dlq = sqs.create_queue(QueueName="notifications-dlq")["QueueUrl"]
    queue = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    return queue, dlq


def bodies(sqs: SQSClient, queue_url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
    return sorted(m["Body"] for m in messages)


# --- in process (mock_aws) -----------------------------------------------------------------------------------


def test_public_key_prints_the_kms_key_as_the_bare_base64_spki_alipay_takes(
    kms: KMSClient, signing_key_id: str
) -> None:
    result = run("public-key", "--stage", "dev", "--key-id", signing_key_id)

    assert result.exit_code == 0, result.output
    assert result.output == spki_base64(kms, signing_key_id) + "\n"
    assert load_public_key(result.output.strip()).key_size == 2048


def test_public_key_takes_the_key_id_from_signing_key_id(
    kms: KMSClient, signing_key_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIGNING_KEY_ID", signing_key_id)

    result = run("public-key", "--stage", "prod")

    assert result.exit_code == 0, result.output
    assert result.output.strip() == spki_base64(kms, signing_key_id)


def test_public_key_of_an_unknown_key_fails_with_one_line(kms: KMSClient) -> None:
    result = run("public-key", "--stage", "dev", "--key-id", "11111111-2222-3333-4444-555555555555")

    assert result.exit_code == 1
    assert result.output.startswith("aws: ")
    assert result.output.count("\n") == 1


def test_redrive_moves_every_dlq_message_back_to_the_queue(sqs: SQSClient) -> None:
    queue, dlq = queues(sqs)
    for n in range(3):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"notification-{n}")

    result = run("redrive", "--stage", "dev", "--queue-url", queue, "--dlq-url", dlq)

    assert result.exit_code == 0, result.output
    assert result.output == "moved 3, failed 0\n"
    assert bodies(sqs, queue) == ["notification-0", "notification-1", "notification-2"]
    assert bodies(sqs, dlq) == []


def test_redrive_takes_the_queue_urls_from_the_environment_and_stops_at_max_messages(
    sqs: SQSClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue, dlq = queues(sqs)
    monkeypatch.setenv("NOTIFICATIONS_QUEUE_URL", queue)
    monkeypatch.setenv("NOTIFICATIONS_DLQ_URL", dlq)
    for n in range(3):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"notification-{n}")

    result = run("redrive", "--stage", "prod", "--max-messages", "2")

    assert result.exit_code == 0, result.output
    assert result.output == "moved 2, failed 0\n"


def test_redrive_into_a_missing_queue_reports_the_failure_and_exits_1(sqs: SQSClient) -> None:
    _, dlq = queues(sqs)
    sqs.send_message(QueueUrl=dlq, MessageBody="notification")
    missing = dlq.replace("notifications-dlq", "no-such-queue")

    result = run("redrive", "--stage", "dev", "--queue-url", missing, "--dlq-url", dlq)

    assert result.exit_code == 1
    assert "moved 0, failed 1" in result.output.splitlines()
    # Still in the DLQ (invisible until the redrive's receive times out), not lost.
    attributes = sqs.get_queue_attributes(
        QueueUrl=dlq, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    assert sum(int(n) for n in attributes.values()) == 1


# --- the local stack: an emulator process and .local/stack.json ----------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[str]:
    """A moto server on a free loopback port, as `make run` starts one."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def local_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing in the environment: every AWS setting must come from the stack file."""
    for name in ("AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)


def emulator_kms(endpoint: str) -> KMSClient:
    import boto3

    return boto3.client(
        "kms",
        endpoint_url=endpoint,
        region_name=EMULATOR_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def emulator_sqs(endpoint: str) -> SQSClient:
    import boto3

    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name=EMULATOR_REGION,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def write_stack(tmp_path: Path, **settings: str) -> str:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    return str(path)


def test_local_public_key_comes_from_the_emulator_named_in_the_stack_file(
    emulator: str, local_env: None, tmp_path: Path
) -> None:
    kms = emulator_kms(emulator)
    key_id = kms.create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    stack = write_stack(tmp_path, aws_endpoint_url=emulator, region=EMULATOR_REGION, signing_key_id=key_id)

    result = run("public-key", "--stack-file", stack)

    assert result.exit_code == 0, result.output
    assert result.output.strip() == spki_base64(kms, key_id)


def test_local_redrive_uses_the_queues_named_in_the_stack_file(emulator: str, local_env: None, tmp_path: Path) -> None:
    sqs = emulator_sqs(emulator)
    queue, dlq = queues(sqs)
    sqs.send_message(QueueUrl=dlq, MessageBody="notification")
    stack = write_stack(
        tmp_path,
        aws_endpoint_url=emulator,
        region=EMULATOR_REGION,
        notifications_queue_url=queue,
        notifications_dlq_url=dlq,
    )

    result = run("redrive", "--stack-file", stack)

    assert result.exit_code == 0, result.output
    assert result.output == "moved 1, failed 0\n"
    assert bodies(sqs, queue) == ["notification"]
