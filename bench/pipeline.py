"""Pipeline: AWS calls per paid notification, cold start (import app; each function's import and first invocation),
webhook CPU, the merchant's and the buyer's order creation latency.

The AWS calls run against moto (in-process for the call count, a moto server over HTTP for latency), so
the figures are ratios within one run, never absolute claims about AWS.
"""

from __future__ import annotations

import io
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stdout
from datetime import UTC, datetime
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from cryptography.hazmat.primitives.asymmetric import rsa

from bench.common import ROOT, import_seconds_interleaved, interleaved, row
from chalicelib.alipay.keys import public_key_base64
from chalicelib.alipay.notifications import AlipayProtocol, notification_content, verify_notification
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.type_defs import KeysAndAttributesTypeDef

APP_ID = "2021000000000001"
SELLER_ID = "2088000000000001"
REGION = "us-east-1"
N_ORDERS = 100


def _environment(alipay_key: rsa.RSAPrivateKey, **names: str) -> dict[str, str]:
    return {
        "ALIPAY_PROTOCOL": "openapi",
        "ALIPAY_APP_ID": APP_ID,
        "ALIPAY_SELLER_ID": SELLER_ID,
        "ALIPAY_PUBLIC_KEYS": public_key_base64(alipay_key.public_key()),
        "NOTIFY_URL": "https://api.example.com/alipay/notify",
        "CURRENCIES": "USD,CNY",
        **names,
    }


def _notification(alipay_key: rsa.RSAPrivateKey, out_trade_no: str, amount: str) -> bytes:
    fields = {
        "notify_time": "2026-11-26 16:00:01",
        "notify_type": "trade_status_sync",
        "notify_id": uuid.uuid4().hex,
        "app_id": APP_ID,
        "charset": "utf-8",
        "version": "1.0",
        "trade_no": "20261126220014" + uuid.uuid4().hex[:14],
        "out_trade_no": out_trade_no,
        "seller_id": SELLER_ID,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": amount,
        "receipt_amount": amount,
        "buyer_pay_amount": amount,
        "subject": "Order - 2 items",
        "gmt_create": "2026-11-26 15:59:58",
        "gmt_payment": "2026-11-26 16:00:00",
        "buyer_id": "2088102116773037",
        "fund_bill_list": '[{"amount":"12.34","fundChannel":"ALIPAYACCOUNT"}]',
    }
    sign = LocalKeySigner(alipay_key).sign(notification_content(fields).encode())
    from chalicelib.alipay.signing import b64encode

    return urlencode({**fields, "sign_type": "RSA2", "sign": b64encode(sign)}).encode()


# The caller API Gateway's IAM authorization puts in the request context of a merchant route (a SigV4-signed request).
MERCHANT_ARN = "arn:aws:iam::000000000000:user/bench-merchant"


# A buyer's ID token claims, as the user pool authorizer puts them in the request context (buyer routes).
BUYER_CLIENT_ID = "bench-app-client"
BUYER_CLAIMS = {"sub": "bench-buyer", "aud": BUYER_CLIENT_ID}


def _product() -> Any:
    from chalicelib.orders.catalogue import Product

    return Product(sku="COFFEE-500G", subject="Coffee beans 500g", prices={"USD": Decimal("6.17")})


# What else an edge-optimized API's proxy event carries from a request (values as AWS's examples show them): every
# request's headers are read, so the bench's events carry as many as a deployed function sees.
GATEWAY_HEADERS = {
    "Accept": "*/*",
    "CloudFront-Forwarded-Proto": "https",
    "CloudFront-Is-Desktop-Viewer": "true",
    "CloudFront-Is-Mobile-Viewer": "false",
    "CloudFront-Is-SmartTV-Viewer": "false",
    "CloudFront-Is-Tablet-Viewer": "false",
    "CloudFront-Viewer-ASN": "37963",
    "CloudFront-Viewer-Country": "CN",
    "Host": "abcdefghij.execute-api.us-east-1.amazonaws.com",
    "User-Agent": "Mozilla/4.0",
    "Via": "1.1 0123456789abcdef0123456789abcdef.cloudfront.net (CloudFront)",
    "X-Amz-Cf-Id": "cDehVQoZnx43VYQb9j2-nvCh-9z396Uhbp027Y2JvkCPNLmGJHqlaA==",
    "X-Amzn-Trace-Id": "Root=1-5e66d96f-7491f09xmpl79d18acf3d050",
    "X-Forwarded-For": "110.75.143.1, 130.176.0.1",
    "X-Forwarded-Port": "443",
    "X-Forwarded-Proto": "https",
}


def _api_event(
    method: str,
    path: str,
    body: bytes,
    content_type: str,
    *,
    caller_arn: str | None = None,
    buyer: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An API Gateway (REST, proxy) event, as Lambda hands it to the Chalice app; ``caller_arn``: the IAM caller
    API Gateway verified (merchant routes); ``buyer``: the ID token's claims (buyer routes)."""
    context: dict[str, Any] = {"resourcePath": path, "httpMethod": method, "stage": "api", "requestId": "bench"}
    if caller_arn is not None:
        context["identity"] = {"userArn": caller_arn, "accountId": caller_arn.split(":")[4]}
    if buyer is not None:
        context["authorizer"] = {"claims": buyer}
    headers = dict(sorted({**GATEWAY_HEADERS, "Content-Type": content_type}.items()))  # in the order AWS shows them
    return {
        "resource": path,
        "path": path,
        "httpMethod": method,
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": context,
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


class _LambdaContext:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    aws_request_id = "bench"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@contextmanager
def _aws_env(endpoint: str | None = None, **service_endpoints: str) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION,
            "POWERTOOLS_METRICS_NAMESPACE": "AlipayGlobal",
            "POWERTOOLS_SERVICE_NAME": "alipay-global",
            "LOG_LEVEL": "ERROR",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }
    )
    if endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    for service, url in service_endpoints.items():
        os.environ[f"AWS_ENDPOINT_URL_{service.upper()}"] = url
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _resources(session: Any) -> dict[str, str]:
    """Table with stream, queue, KMS signing key, bus: what `make run` creates."""
    from chalicelib.adapters.dynamodb import create_table

    table = "orders"
    stream_arn = create_table(session.client("dynamodb"), table)
    queue_url = session.client("sqs").create_queue(QueueName="notifications")["QueueUrl"]
    key_id = session.client("kms").create_key(KeySpec="RSA_2048", KeyUsage="SIGN_VERIFY")["KeyMetadata"]["KeyId"]
    session.client("events").create_event_bus(Name="orders-bus")
    return {
        "ORDERS_TABLE": table,
        "ORDERS_STREAM_ARN": stream_arn,
        "NOTIFICATIONS_QUEUE_URL": queue_url,
        "SIGNING_KEY_ID": key_id,
        "EVENT_BUS_NAME": "orders-bus",
    }


def calls_per_notification() -> list[str]:
    """Count our AWS calls for N paid notifications: webhook, consumer, stream relay (Lambda's own polling excluded)."""
    import boto3
    from botocore.config import Config as BotoConfig
    from moto import mock_aws

    import app
    from chalicelib import bootstrap
    from chalicelib.config import Config
    from chalicelib.services.commands import CreateOrder

    calls: Counter[str] = Counter()

    class CountingPorts(bootstrap.AwsPorts):
        @cached_property
        def _session(self) -> Any:
            session = boto3.session.Session()
            session.events.register("before-call", lambda model, **_: calls.update([model.name]))
            return session

    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with _aws_env(), mock_aws():
        session = boto3.session.Session()
        names = _resources(session)
        config = Config.from_env(_environment(alipay_key, **names))
        services = bootstrap.Services(config, CountingPorts(config))
        bootstrap.use(services)
        try:
            orders = [
                services.orders.create(
                    CreateOrder.from_json({"subject": f"Order {i}", "total_amount": "12.34", "currency": "USD"}),
                    None,
                ).body["out_trade_no"]
                for i in range(N_ORDERS)
            ]
            created = dict(calls)
            calls.clear()
            for out_trade_no in orders:
                body = _notification(alipay_key, out_trade_no, "12.34")
                services.intake.accept(body, "application/x-www-form-urlencoded")
            sqs = session.client("sqs")
            for _ in range(N_ORDERS):  # Lambda's SQS poller, not ours: receive and build the event
                received = sqs.receive_message(QueueUrl=names["NOTIFICATIONS_QUEUE_URL"], MaxNumberOfMessages=10)
                messages = received.get("Messages", [])
                if not messages:
                    break
                event = {"Records": [_sqs_record(m) for m in messages]}
                response = app.handle_sqs_event(event, _LambdaContext())
                assert not response.get("batchItemFailures"), response
                sqs.delete_message_batch(
                    QueueUrl=names["NOTIFICATIONS_QUEUE_URL"],
                    Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                )
            streams = session.client("dynamodbstreams", config=BotoConfig(account_id_endpoint_mode="disabled"))
            records = _stream_records(streams, names["ORDERS_STREAM_ARN"])
            for start in range(0, len(records), 100):  # Lambda's stream poller: batches of 100 records
                response = app.handle_stream_event({"Records": records[start : start + 100]}, _LambdaContext())
                assert not response.get("batchItemFailures"), response
        finally:
            bootstrap.use(None)
    per = {name: count / N_ORDERS for name, count in sorted(calls.items())}
    total = sum(per.values())
    breakdown = ", ".join(f"{name} {value:.2f}" for name, value in per.items())
    return [
        f"{'AWS calls per paid notification':<46} {total:>9.2f}    | {breakdown} (target <= 2.1: "
        f"1 SendMessage + 1 UpdateItem + <= 0.1 PutEvents)",
        f"{'  (order creation, per order, not counted)':<46} "
        + ", ".join(f"{name} {count / N_ORDERS:.2f}" for name, count in sorted(created.items())),
    ]


def _sqs_record(message: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": "1"},
        "messageAttributes": {},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:000000000000:notifications",
        "awsRegion": REGION,
    }


def _stream_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    out: list[dict[str, Any]] = []
    for shard in shards:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            for record in page["Records"]:
                change = dict(record["dynamodb"])
                created = change.get("ApproximateCreationDateTime")
                if isinstance(created, datetime):
                    change["ApproximateCreationDateTime"] = created.timestamp()
                out.append({**record, "dynamodb": change, "eventSourceARN": stream_arn})
            if not page["Records"]:
                break
            iterator = page.get("NextShardIterator")
    return out


def cold_start() -> list[str]:
    """``import app`` against ``import boto3`` alone, each in fresh interpreters."""
    ours, boto = import_seconds_interleaved("import app", "import boto3")
    return [
        f"{'cold start: import app.py':<46} {ours * 1e3:>9.1f} ms | {'import boto3 alone':<30} "
        f"{boto * 1e3:>9.1f} ms | ratio {ours / boto:5.2f}x (target <= 0.25x)"
    ]


# One Lambda cold start in a fresh interpreter: ``import app``, then one invocation of ``handler`` with the event in
# the file argv[2] (the first request builds the services and the boto3 clients it needs).
_COLD_START = """
import json, sys, time
start = time.perf_counter()
import app
imported = time.perf_counter()
class Context:
    function_name = "bench"
    memory_limit_in_mb = 1024
    invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:bench"
    aws_request_id = "bench"
    def get_remaining_time_in_millis(self):
        return 30000
with open(sys.argv[2]) as file:
    event = json.load(file)
answer = getattr(app, sys.argv[1])(event, Context())
done = time.perf_counter()
print(json.dumps({"import": imported - start, "first": done - imported, "answer": answer}, default=str))
"""


def _cold(handler: str, event: dict[str, Any], workdir: Path) -> dict[str, Any]:
    path = workdir / f"{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(event, default=str))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run(
        [sys.executable, "-c", _COLD_START, handler, str(path)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env=env,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def cold_start_per_function(runs: int = 5) -> list[str]:
    """Each deployed function's cold start against a moto server, in fresh interpreters: ``import app`` and its
    first invocation apart (medians of ``runs``). The API function twice: the webhook and a merchant's order."""
    import tempfile

    import boto3

    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    samples: dict[str, list[tuple[float, float]]] = {}
    with (
        _moto_server() as endpoint,
        _aws_env(endpoint),
        tempfile.TemporaryDirectory() as tmp,
    ):
        session = boto3.session.Session()
        names = _resources(session)
        os.environ.update(_environment(alipay_key, **names))
        sqs = session.client("sqs")
        workdir = Path(tmp)
        for _ in range(runs):
            body = json.dumps({"subject": "Coffee", "total_amount": "12.34", "currency": "USD"}).encode()
            event = _api_event("POST", "/merchant/orders", body, "application/json", caller_arn=MERCHANT_ARN)
            created = _cold("app", event, workdir)
            assert created["answer"]["statusCode"] == 201, created
            out_trade_no = json.loads(created["answer"]["body"])["out_trade_no"]
            notification = _notification(alipay_key, out_trade_no, "12.34")
            event = _api_event("POST", "/alipay/notify", notification, "application/x-www-form-urlencoded")
            notified = _cold("app", event, workdir)
            assert notified["answer"]["body"] == "success", notified
            messages = sqs.receive_message(QueueUrl=names["NOTIFICATIONS_QUEUE_URL"], MaxNumberOfMessages=1)
            message = messages["Messages"][0]
            sqs.delete_message(QueueUrl=names["NOTIFICATIONS_QUEUE_URL"], ReceiptHandle=message["ReceiptHandle"])
            applied = _cold("apply_notifications", {"Records": [_sqs_record(message)]}, workdir)
            assert not applied["answer"].get("batchItemFailures"), applied
            samples.setdefault("API: POST /merchant/orders", []).append((created["import"], created["first"]))
            samples.setdefault("API: POST /alipay/notify", []).append((notified["import"], notified["first"]))
            samples.setdefault("apply_notifications (SQS)", []).append((applied["import"], applied["first"]))
        from botocore.config import Config as BotoConfig

        streams = session.client("dynamodbstreams", config=BotoConfig(account_id_endpoint_mode="disabled"))
        records = _stream_records(streams, names["ORDERS_STREAM_ARN"])
        scheduled = {
            "version": "0",
            "id": "bench",
            "detail-type": "Scheduled Event",
            "source": "aws.events",
            "account": "000000000000",
            "time": "2026-11-26T08:00:00Z",
            "region": REGION,
            "resources": [],
            "detail": {},
        }
        for _ in range(runs):
            relayed = _cold("relay_order_events", {"Records": records[-4:]}, workdir)
            assert not relayed["answer"].get("batchItemFailures"), relayed
            reconciled = _cold("reconcile_waiting_orders", scheduled, workdir)
            samples.setdefault("relay_order_events (stream)", []).append((relayed["import"], relayed["first"]))
            samples.setdefault("reconcile_waiting_orders (schedule)", []).append(
                (reconciled["import"], reconciled["first"])
            )
    lines = []
    for name, pairs in samples.items():
        imported = statistics.median(p[0] for p in pairs)
        first = statistics.median(p[1] for p in pairs)
        lines.append(
            f"{'cold start ' + name:<46} import app {imported * 1e3:6.1f} ms, first invocation {first * 1e3:6.1f} ms "
            f"(moto server; median of {len(pairs)})"
        )
    return lines


def webhook_cpu() -> list[str]:
    """CPU per notification through the Lambda entry point (in-memory queue) against the core's verify alone."""
    import app
    from chalicelib import bootstrap
    from chalicelib.config import Config
    from chalicelib.observability import EmfMetrics
    from tests.fakes import (
        CountingMetrics,
        FakeAlipayGateway,
        InMemoryAuditLog,
        InMemoryCatalogue,
        InMemoryEventPublisher,
        InMemoryIdempotencyStore,
        InMemoryOrderRepository,
        InMemoryQuarantineStore,
    )

    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    env = _environment(
        alipay_key,
        ORDERS_TABLE="t",
        NOTIFICATIONS_QUEUE_URL="q",
        SIGNING_KEY_ID="k",
        EVENT_BUS_NAME="b",
    )
    queue = _SerializingQueue()
    ports = bootstrap.GivenPorts(
        orders=InMemoryOrderRepository(),
        catalogue=InMemoryCatalogue(),
        idempotency=InMemoryIdempotencyStore(),
        queue=queue,
        quarantine=InMemoryQuarantineStore(),
        publisher=InMemoryEventPublisher(),
        gateway=FakeAlipayGateway(),
        signer=LocalKeySigner(alipay_key),
        metrics=CountingMetrics(),
        decode_order=lambda item: None,
        audit=InMemoryAuditLog(),
        dead_letters=None,
    )
    services = bootstrap.build_services(Config.from_env(env), ports)
    body = _notification(alipay_key, "order-1", "12.34")
    event = _api_event("POST", "/alipay/notify", body, "application/x-www-form-urlencoded")
    keys = AlipayPublicKeys.of(alipay_key.public_key())
    context = _LambdaContext()
    with _aws_env():
        import logging

        logging.disable(logging.INFO)  # the handler's info log line is I/O, not the CPU being measured
        bootstrap.use(services)
        try:
            assert app.app(event, context)["body"] == "success"

            def handler() -> None:
                app.app(event, context)

            def core() -> None:
                verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=keys, sign_type=SignType.RSA2)

            # CPU time: the handler's queue is in memory, so nothing in it waits.
            cpu = interleaved(handler, core, number=300, clock=time.process_time)
            # As deployed, the webhook also counts each notification as an EMF line (Powertools, to stdout: here
            # a buffer, which run() already puts in place of stdout).
            bootstrap.use(bootstrap.build_services(Config.from_env(env), ports._replace(metrics=EmfMetrics("B", "b"))))
            with_emf = interleaved(handler, core, number=300, clock=time.process_time)
        finally:
            bootstrap.use(None)
            logging.disable(logging.NOTSET)
    return [
        row("webhook handler CPU per notification", cpu, "protocol core verify alone", "<= 1.6x"),
        row("  with its EMF count (deployed, less its log)", with_emf, "protocol core verify alone", "none"),
    ]


class _SerializingQueue:
    """An in-memory queue doing what the SQS adapter does before its network call: serialise the message."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send(self, message: Any) -> None:
        self.bodies.append(message.to_json())
        del self.bodies[:-10]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _moto_server() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def create_order_latency() -> list[str]:
    """POST /merchant/orders (as API Gateway hands a SigV4-verified call to the function) through the Lambda entry
    point against a moto server, beside KMS Sign and PutItem alone."""
    import boto3

    import app
    from chalicelib import bootstrap
    from chalicelib.adapters.dynamodb import DynamoDBCatalogue, order_to_item, product_key
    from chalicelib.config import Config
    from chalicelib.orders.model import Order
    from chalicelib.topology import PARTITION_KEY

    alipay_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # KMS and DynamoDB are separate services: one emulator process each, or one emulator's lock would
    # serialise the two calls that the request makes concurrently.
    with _moto_server() as endpoint, _moto_server() as kms_endpoint, _aws_env(endpoint, kms=kms_endpoint):
        session = boto3.session.Session()
        names = _resources(session)
        config = Config.from_env(_environment(alipay_key, COGNITO_CLIENT_IDS=BUYER_CLIENT_ID, **names))
        bootstrap.use(bootstrap.build_aws_services(config))
        kms = session.client("kms")
        dynamodb = session.client("dynamodb")
        product = _product()
        DynamoDBCatalogue(dynamodb, names["ORDERS_TABLE"]).put(product)
        product_keys: dict[str, KeysAndAttributesTypeDef] = {
            names["ORDERS_TABLE"]: {"Keys": [{PARTITION_KEY: {"S": product_key(product.sku)}}]}
        }
        context = _LambdaContext()
        message = b"x" * 520  # about the length of an order string's signed content
        try:

            def post() -> None:
                body = json.dumps({"subject": "Coffee", "total_amount": "12.34", "currency": "USD"}).encode()
                event = _api_event("POST", "/merchant/orders", body, "application/json", caller_arn=MERCHANT_ARN)
                response = app.app(event, context)
                assert response["statusCode"] == 201, response

            def buyer_post() -> None:
                body = json.dumps({"items": [{"sku": product.sku, "quantity": 2}], "currency": "USD"}).encode()
                event = _api_event("POST", "/orders", body, "application/json", buyer=BUYER_CLAIMS)
                response = app.app(event, context)
                assert response["statusCode"] == 201, response

            def read() -> None:
                found = dynamodb.batch_get_item(RequestItems=product_keys)["Responses"][names["ORDERS_TABLE"]]
                assert len(found) == 1, found

            def sign() -> None:
                kms.sign(
                    KeyId=names["SIGNING_KEY_ID"],
                    Message=message,
                    MessageType="RAW",
                    SigningAlgorithm="RSASSA_PKCS1_V1_5_SHA_256",
                )

            def put() -> None:
                now = datetime.now(UTC).isoformat()
                order = Order.create(
                    out_trade_no=uuid.uuid4().hex,
                    total_amount=Decimal("12.34"),
                    currency="USD",
                    subject="Coffee",
                    now=now,
                )
                dynamodb.put_item(
                    TableName=names["ORDERS_TABLE"],
                    Item=order_to_item(order),
                    ConditionExpression="attribute_not_exists(pk)",
                )

            pool = ThreadPoolExecutor(max_workers=1)

            def both() -> None:
                # The emulators' own floor for the two calls made together: no product code, the put in a thread.
                stored = pool.submit(put)
                sign()
                stored.result()

            timed = {"post": post, "buyer": buyer_post, "read": read, "sign": sign, "put": put, "both": both}
            for fn in timed.values():  # warm: clients, connections, KMS key material
                for _ in range(3):
                    fn()
            samples: dict[str, list[float]] = {name: [] for name in timed}
            # This process's CPU (every thread: the put runs in the pool): the part of a request that is ours and
            # botocore's, apart from the emulators', which share this machine's cores with it.
            cpu: dict[str, list[float]] = {name: [] for name in timed}
            for _ in range(40):
                for name, fn in timed.items():
                    start, start_cpu = time.perf_counter(), time.process_time()
                    fn()
                    samples[name].append(time.perf_counter() - start)
                    cpu[name].append(time.process_time() - start_cpu)
        finally:
            bootstrap.use(None)
    post_s, buyer_s, read_s, sign_s, put_s, both_s = (statistics.median(samples[k]) for k in timed)
    post_cpu, sign_cpu, put_cpu = (statistics.median(cpu[k]) for k in ("post", "sign", "put"))
    slower = max(sign_s, put_s)
    return [
        f"{'POST /merchant/orders (moto server)':<46} {post_s * 1e3:>9.2f} ms | {'max(KMS Sign, PutItem) alone':<30} "
        f"{slower * 1e3:>9.2f} ms | ratio {post_s / slower:5.2f}x (target <= 1.25x); "
        f"Sign {sign_s * 1e3:.2f} ms, PutItem {put_s * 1e3:.2f} ms, sum {(sign_s + put_s) * 1e3:.2f} ms",
        f"{'buyer POST /orders (moto server)':<46} {buyer_s * 1e3:>9.2f} ms | {'read + max(Sign, PutItem)':<30} "
        f"{(read_s + slower) * 1e3:>9.2f} ms | ratio {buyer_s / (read_s + slower):5.2f}x (target <= 1.25x); "
        f"catalogue BatchGetItem {read_s * 1e3:.2f} ms",
        f"{'POST /merchant/orders, this process CPU':<46} {post_cpu * 1e3:>9.2f} ms | "
        f"{'Sign + PutItem client CPU':<30} {(sign_cpu + put_cpu) * 1e3:>9.2f} ms | "
        f"ratio {post_cpu / (sign_cpu + put_cpu):5.2f}x (no target: our work beyond botocore's)",
        f"{'POST /merchant/orders (moto server)':<46} {post_s * 1e3:>9.2f} ms | {'Sign and PutItem together':<30} "
        f"{both_s * 1e3:>9.2f} ms | ratio {post_s / both_s:5.2f}x (no target: the emulators' floor for the overlap, "
        f"itself {both_s / slower:4.2f}x the slower call)",
    ]


def run() -> list[str]:
    """Measure and return the printed lines (the functions' EMF metric lines go to a buffer, not the report)."""
    lines: list[str] = []
    for measure in (calls_per_notification, cold_start, webhook_cpu, create_order_latency, cold_start_per_function):
        with redirect_stdout(io.StringIO()):
            lines += measure()
    return lines
