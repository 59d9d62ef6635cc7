"""The operator CLI against AWS (moto in process, and the local emulator) and against the API (signed, over HTTP)."""

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
from tests.unit.services_kit import Kit, make_kit

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_sqs.client import SQSClient

_SETTINGS = ("SIGNING_KEY_ID", "API_URL", "LOCAL_STATE_DIR")
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


def test_local_events_prints_each_event_on_the_tap_once(emulator: str, local_env: None, tmp_path: Path) -> None:
    sqs = emulator_sqs(emulator)
    tap = sqs.create_queue(QueueName="events-tap")["QueueUrl"]
    for detail_type, status in (("OrderPaid", "TRADE_SUCCESS"), ("OrderFinished", "TRADE_FINISHED")):
        event = {
            "detail-type": detail_type,
            "source": "alipay-global",
            "detail": {
                "event_id": f"o-1:{detail_type}",
                "status": status,
                "previous_status": "WAIT_BUYER_PAY",
                "occurred_at": "2026-11-26T16:00:01.000Z",
            },
        }
        sqs.send_message(QueueUrl=tap, MessageBody=json.dumps(event))
    stack = write_stack(tmp_path, aws_endpoint_url=emulator, region=EMULATOR_REGION, events_tap_queue_url=tap)

    first = run("events", "--stack-file", stack)
    again = run("events", "--follow", "--timeout", "0", "--stack-file", stack)

    assert first.exit_code == 0, first.output
    assert sorted(line.split("  ")[2] for line in first.output.splitlines()) == ["o-1:OrderFinished", "o-1:OrderPaid"]
    assert "WAIT_BUYER_PAY -> TRADE_SUCCESS" in first.output
    assert (again.exit_code, again.output) == (0, "")


# --- the signed operator commands, against the app behind API Gateway's emulation on a loopback port ------------


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[Kit, str]]:
    """The app (over fakes) behind the local API Gateway emulation on a free port; its stack file."""
    import threading

    from app import app
    from chalicelib import bootstrap
    from devstack.api_server import ApiGateway, ApiServer
    from tests.gateway_client import MERCHANT_ARN, MERCHANT_KEY, REGION, authorizers

    kit = make_kit()
    bootstrap.use(kit.services)
    server = ApiServer(("127.0.0.1", 0), ApiGateway(app, authorizers()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    credentials = {"access_key_id": MERCHANT_KEY[0], "secret_access_key": MERCHANT_KEY[1]}
    stack = tmp_path / "stack.json"
    stack.write_text(
        json.dumps(
            {
                "api_url": f"http://127.0.0.1:{server.server_address[1]}",
                "region": REGION,
                "merchant_credentials": credentials,
                "merchant_arn": MERCHANT_ARN,
            }
        ),
        encoding="utf-8",
    )
    yield kit, str(stack)
    server.shutdown()
    server.server_close()
    bootstrap.use(None)


def quarantine_a_payment_for_an_unknown_order(kit: Kit, out_trade_no: str = "o-lost-1") -> str:
    from chalicelib.services.operations import entry_id
    from tests.alipay_fixtures import alipay_key, notification_body, openapi_notification_fields

    fields = openapi_notification_fields(out_trade_no=out_trade_no, notify_id=f"n-{out_trade_no}", total_amount="5.00")
    kit.services.intake.accept(notification_body(fields, alipay_key()), "application/x-www-form-urlencoded")
    kit.services.consumer.apply(kit.queue.messages[-1])
    return entry_id(f"n-{out_trade_no}")


def test_order_prints_the_timeline_of_each_change_then_the_refunds(api: tuple[Kit, str]) -> None:
    from tests.alipay_fixtures import OUT_TRADE_NO, alipay_key, notification_body, openapi_notification_fields

    kit, stack = api
    kit.add_order()
    for notify_id, extra in (("n-paid", {}), ("n-refund", {"refund_fee": "8.88"})):
        fields = openapi_notification_fields(notify_id=notify_id, **extra)
        kit.services.intake.accept(notification_body(fields, alipay_key()), "application/x-www-form-urlencoded")
        kit.services.consumer.apply(kit.queue.messages[-1])
        kit.clock.advance(seconds=10)

    result = run("order", OUT_TRADE_NO, "--stack-file", stack)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"{OUT_TRADE_NO}  TRADE_SUCCESS  88.88 USD"
    assert lines[1] == "2026-11-26T16:00:00.000Z  WAIT_BUYER_PAY  created"
    assert lines[2] == "2026-11-26T16:30:05.000Z  TRADE_SUCCESS  notification  notify_id=n-paid"
    assert lines[3] == "2026-11-26T16:30:15.000Z  TRADE_SUCCESS  notification  notify_id=n-refund  refunded=8.88"
    assert lines[4] == "refunds: none"


def test_quarantine_list_show_and_replay_once_the_order_exists(api: tuple[Kit, str]) -> None:
    from decimal import Decimal

    from chalicelib.orders.model import Order, OrderStatus

    kit, stack = api
    entry = quarantine_a_payment_for_an_unknown_order(kit)

    listed = run("quarantine", "list", "--stack-file", stack)
    shown = run("quarantine", "show", entry, "--stack-file", stack)
    kit.orders.add(
        Order.create(out_trade_no="o-lost-1", total_amount=Decimal("5.00"), currency="USD", subject="x", now="t")
    )
    replayed = run("quarantine", "replay", entry, "--reason", "created the order", "--stack-file", stack)

    assert listed.exit_code == 0, listed.output
    assert listed.output.startswith(f"{entry}  2026-11-26T16:30:05.000Z  unknown_order  o-lost-1  notify_id=n-o-lost-1")
    assert json.loads(shown.output)["state"] == "open"
    assert replayed.exit_code == 0, replayed.output
    assert json.loads(replayed.output)["outcome"] == "applied"
    assert kit.order("o-lost-1").status is OrderStatus.TRADE_SUCCESS
    resolved = run("quarantine", "list", "--state", "resolved", "--stack-file", stack)
    assert "replayed by arn:aws:iam::123456789012:role/merchant-backend" in resolved.output


def test_a_replay_still_refused_exits_1_and_a_second_resolution_is_one_line_on_stderr(api: tuple[Kit, str]) -> None:
    kit, stack = api
    entry = quarantine_a_payment_for_an_unknown_order(kit)

    refused = run("quarantine", "replay", entry, "--reason", "not yet", "--stack-file", stack)
    dismissed = run("quarantine", "dismiss", entry, "--reason", "a sandbox test", "--stack-file", stack)
    again = run("quarantine", "dismiss", entry, "--reason", "again", "--stack-file", stack)

    assert (refused.exit_code, json.loads(refused.output)["still"]) == (1, "unknown_order")
    assert dismissed.exit_code == 0, dismissed.output
    assert again.exit_code == 1
    # stderr: the in-process API's own log lines go to this test's stdout, as a real server's would not.
    assert again.stderr.startswith("409 already_resolved: ")
    assert again.stderr.count("\n") == 1


def test_events_replay_prints_the_ids_it_published(api: tuple[Kit, str]) -> None:
    from tests.alipay_fixtures import OUT_TRADE_NO, alipay_key, notification_body, openapi_notification_fields

    kit, stack = api
    kit.add_order()
    body = notification_body(openapi_notification_fields(), alipay_key())
    kit.services.intake.accept(body, "application/x-www-form-urlencoded")
    kit.services.consumer.apply(kit.queue.messages[-1])

    result = run("events", "replay", OUT_TRADE_NO, "--reason", "the ERP lost it", "--stack-file", stack)

    assert result.exit_code == 0, result.output
    assert result.output == f"{OUT_TRADE_NO}:OrderPaid\n"
    assert [e.event_id for e in kit.publisher.events] == [f"{OUT_TRADE_NO}:OrderPaid"]


def test_redrive_calls_the_route_until_the_dlq_is_empty_and_each_call_is_audited(api: tuple[Kit, str]) -> None:
    kit, stack = api
    kit.dead_letters.dlq.extend(f"m{n}" for n in range(7))

    result = run("redrive", "--max-messages", "5", "--stack-file", stack)
    rest = run("redrive", "--stack-file", stack)

    assert (result.exit_code, result.output) == (0, "moved 5, failed 0\n")
    assert (rest.exit_code, rest.output) == (0, "moved 2, failed 0\n")
    assert kit.dead_letters.queue == [f"m{n}" for n in range(7)]
    assert [e.action for e in kit.audit.entries] == ["redrive", "redrive"]
    audit = run("audit", "--stack-file", stack)
    assert audit.output.count("redrive  notifications-dlq  by arn:aws:iam::123456789012:role/merchant-backend") == 2


def test_a_redrive_whose_messages_cannot_be_sent_exits_1_and_leaves_them_in_the_dlq(api: tuple[Kit, str]) -> None:
    kit, stack = api
    kit.dead_letters.dlq.extend(["m1", "m2"])
    kit.dead_letters.refuse_sends = True

    result = run("redrive", "--stack-file", stack)

    assert (result.exit_code, result.output) == (1, "moved 0, failed 2\n")
    assert kit.dead_letters.dlq == ["m1", "m2"]


def test_events_of_a_deployed_stage_come_from_its_events_log_group(aws: None) -> None:
    import time

    import boto3

    logs = boto3.client("logs", region_name="us-east-1")
    group = "/alipay-global/prod/events"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="eventbridge")
    event = {
        "detail-type": "OrderPaid",
        "detail": {
            "event_id": "o-9:OrderPaid",
            "status": "TRADE_SUCCESS",
            "previous_status": "WAIT_BUYER_PAY",
            "occurred_at": "2026-11-26T16:00:01.000Z",
        },
    }
    logs.put_log_events(
        logGroupName=group,
        logStreamName="eventbridge",
        logEvents=[{"timestamp": int(time.time() * 1000), "message": json.dumps(event)}],
    )

    result = run("events", "--stage", "prod")

    assert result.exit_code == 0, result.output
    assert result.output == "2026-11-26T16:00:01.000Z  OrderPaid  o-9:OrderPaid  WAIT_BUYER_PAY -> TRADE_SUCCESS\n"


def test_quarantine_return_gives_the_money_back_once_and_refunds_pending_and_settle(api: tuple[Kit, str]) -> None:
    from decimal import Decimal

    from chalicelib.orders.model import return_request_no
    from chalicelib.services.ports import TradeQueryResult

    kit, stack = api
    entry = quarantine_a_payment_for_an_unknown_order(kit)
    trade_no = kit.quarantine.records["n-o-lost-1"].message.fields["trade_no"]
    kit.gateway.trades["o-lost-1"] = TradeQueryResult(True, "TRADE_SUCCESS", trade_no, Decimal("5.00"), "USD")

    returned = run("quarantine", "return", entry, "--reason", "no such order in the shop", "--stack-file", stack)
    assert returned.exit_code == 0, returned.output
    assert json.loads(returned.output)["out_request_no"] == return_request_no("o-lost-1", trade_no)
    assert kit.gateway.refunds == {"o-lost-1": {return_request_no("o-lost-1", trade_no): Decimal("5.00")}}

    pending = run("refunds", "pending", "--stack-file", stack)
    assert (pending.exit_code, pending.output) == (0, "")
    unknown = run("refunds", "settle", "o-none", "r-none", "--reason", "checking", "--stack-file", stack)
    assert unknown.exit_code == 1
    assert unknown.stderr.startswith("404 not_found: ")
