"""The local stack's AWS resources, key files and ``stack.json``: created idempotently, named as in a deployment."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chalicelib.adapters.dynamodb import create_table
from chalicelib.topology import APP_NAME, EVENT_SOURCE, MAX_RECEIVE_COUNT, SIGNING_KEY_SPEC
from devstack.lambda_runtime import LOCAL_ACCOUNT_ID, REGION

if TYPE_CHECKING:
    from boto3.session import Session
    from cryptography.hazmat.primitives.asymmetric import rsa
    from mypy_boto3_events.client import EventBridgeClient
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_sqs.client import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

PROTOCOLS = ("openapi", "mapi", "antom")

# The emulator accepts any credentials; these keep a developer's real ones from ever being sent anywhere.
EMULATOR_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}

# Made-up merchant identities in Alipay's formats (a PID is 2088 and 12 digits).
APP_ID = "9021000000000001"
PARTNER_ID = "2088000000000001"
SELLER_ID = PARTNER_ID  # a merchant usually sells on its own account
CURRENCIES = "CNY,USD,HKD,EUR,GBP,JPY,SGD,AUD,CAD"
# Antom: a made-up client id in the form of Antom's sandbox ones, and the payment methods orders may use.
ANTOM_CLIENT_ID = "SANDBOX_5YAN2Q2ZLOCAL01000"
ANTOM_PAYMENT_METHODS = "ALIPAY_CN,ALIPAY_HK"

# Named as a deployment names them (the shared names and keys come from chalicelib/topology.py).
ORDERS_TABLE = f"{APP_NAME}-orders"
NOTIFICATIONS_QUEUE = f"{APP_NAME}-notifications"
NOTIFICATIONS_DLQ = f"{APP_NAME}-notifications-dlq"
EVENT_BUS = APP_NAME
EVENTS_TAP_QUEUE = f"{APP_NAME}-events-tap"
EVENTS_TAP_RULE = f"{APP_NAME}-events-tap"
SIGNING_KEY_ALIAS = f"alias/{APP_NAME}-merchant"
ANTOM_SIGNING_KEY_ALIAS = f"alias/{APP_NAME}-antom-merchant"  # Antom's merchant key is a KMS key of its own
# Lambda's SQS mapping leaves a failed message invisible for this long before it is retried. Deployed, six times the
# function's timeout; locally short, so that a failure reaches the DLQ in seconds rather than in a quarter of an hour.
# Lambda refuses a mapping whose queue's visibility timeout is shorter than the function's timeout: a batch still
# running when it expires is received again by another poller. Where batches can take longer (the soak's throttling
# keeps botocore backing off for seconds), LOCAL_SQS_VISIBILITY_TIMEOUT sets a longer one.
VISIBILITY_TIMEOUT_SECONDS = 3
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # SQS's maximum: the DLQ keeps what failed for as long as it can

# Who may call: the local user pool's app client (the audience of buyers' tokens), and the merchant's IAM identity
# (a role, as the merchant's backend would assume; its access key is made once per state directory).
COGNITO_CLIENT_ID = "localbuyerapp0000000000000"
MERCHANT_ARN = f"arn:aws:iam::{LOCAL_ACCOUNT_ID}:role/{APP_NAME}-merchant-backend"
MERCHANT_CREDENTIALS_FILE = "merchant_credentials.json"
IDENTITY_PRIVATE_KEY_FILE = "identity_private_key.pem"
IDENTITY_PUBLIC_KEY_FILE = "identity_public_key.pem"

STACK_FILE = "stack.json"
ALIPAY_PRIVATE_KEY_FILE = "alipay_sandbox_private_key.pem"
ALIPAY_PUBLIC_KEY_FILE = "alipay_sandbox_public_key.pem"
MERCHANT_PRIVATE_KEY_FILE = "merchant_private_key.pem"
ANTOM_PRIVATE_KEY_FILE = "antom_sandbox_private_key.pem"
ANTOM_PUBLIC_KEY_FILE = "antom_sandbox_public_key.pem"


@dataclass(frozen=True, slots=True)
class Resources:
    """What was created in the emulator."""

    orders_table: str
    orders_stream_arn: str
    notifications_queue_url: str
    notifications_dlq_url: str
    event_bus_name: str
    events_tap_queue_url: str
    signing_key_id: str | None  # the KMS key the merchant signs with (Open Platform; Antom: the Antom key)


@dataclass(frozen=True, slots=True)
class StackFile:
    """``stack.json``: exactly the fields of the contract (docs: "The local stack")."""

    api_url: str
    sandbox_url: str
    aws_endpoint_url: str
    region: str
    protocol: str
    app_id: str
    seller_id: str
    partner_id: str
    orders_table: str
    notifications_queue_url: str
    notifications_dlq_url: str
    event_bus_name: str
    events_tap_queue_url: str
    signing_key_id: str | None
    identity_url: str = ""
    identity_issuer: str = ""
    cognito_client_id: str = ""
    merchant_arn: str = ""
    merchant_credentials: dict[str, str] = field(default_factory=dict)  # access_key_id, secret_access_key
    key_mode: str | None = None  # "cert" in certificate mode (ALIPAY_KEY_MODE=cert); absent from stack.json otherwise
    antom_client_id: str | None = None  # the merchant's Antom client id (protocol antom); absent otherwise

    def write(self, state_dir: Path) -> Path:
        """Write ``stack.json`` atomically: a reader never sees half a file."""
        path = state_dir / STACK_FILE
        temporary = path.with_suffix(".json.tmp")
        optional = ("key_mode", "antom_client_id")
        fields = {name: value for name, value in asdict(self).items() if not (name in optional and value is None)}
        temporary.write_text(json.dumps(fields, indent=2) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        return path


def emulator_session() -> Session:
    """A boto3 session for the emulator (dummy credentials, the stack's region); clients get the endpoint URL."""
    import boto3

    return boto3.session.Session(
        aws_access_key_id=EMULATOR_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=EMULATOR_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        region_name=REGION,
    )


def create_resources(
    session: Session, endpoint_url: str, protocol: str, visibility_timeout: int = VISIBILITY_TIMEOUT_SECONDS
) -> Resources:
    """Create (or find) every resource of the stack; safe to run again against the same emulator."""
    dynamodb = session.client("dynamodb", endpoint_url=endpoint_url)
    sqs = session.client("sqs", endpoint_url=endpoint_url)
    events = session.client("events", endpoint_url=endpoint_url)
    stream_arn = create_table(dynamodb, ORDERS_TABLE)
    dlq_url = _queue(sqs, NOTIFICATIONS_DLQ, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    queue_url = _queue(
        sqs,
        NOTIFICATIONS_QUEUE,
        {
            "VisibilityTimeout": str(visibility_timeout),
            "RedrivePolicy": json.dumps(
                {"deadLetterTargetArn": _queue_arn(sqs, dlq_url), "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
            ),
        },
    )
    tap_url = _events_tap(events, sqs)
    kms = session.client("kms", endpoint_url=endpoint_url)
    signing_key_id = None
    if protocol == "openapi":
        signing_key_id = _signing_key(kms, SIGNING_KEY_ALIAS, "Alipay merchant key (local stack)")
    elif protocol == "antom":
        signing_key_id = _signing_key(kms, ANTOM_SIGNING_KEY_ALIAS, "Antom merchant key (local stack)")
    return Resources(
        orders_table=ORDERS_TABLE,
        orders_stream_arn=stream_arn,
        notifications_queue_url=queue_url,
        notifications_dlq_url=dlq_url,
        event_bus_name=EVENT_BUS,
        events_tap_queue_url=tap_url,
        signing_key_id=signing_key_id,
    )


def _queue(sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]) -> str:
    # CreateQueue fails when an existing queue has other attributes: create plain, then set them (idempotent).
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.set_queue_attributes(QueueUrl=url, Attributes=dict(attributes))
    return url


def _queue_arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def _events_tap(events: EventBridgeClient, sqs: SQSClient) -> str:
    """The bus, and a queue that receives a copy of every event the product puts on it (to watch them)."""
    with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
        events.create_event_bus(Name=EVENT_BUS)
    tap_url = _queue(sqs, EVENTS_TAP_QUEUE, {})
    tap_arn = _queue_arn(sqs, tap_url)
    rule_arn = events.put_rule(
        Name=EVENTS_TAP_RULE,
        EventBusName=EVENT_BUS,
        EventPattern=json.dumps({"source": [EVENT_SOURCE]}),
        Description="Every event of the product, copied to a queue a developer or a test can read",
    )["RuleArn"]
    # What AWS requires for EventBridge to deliver to the queue (moto does not check; AWS would drop the events).
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": tap_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": rule_arn}},
            }
        ],
    }
    sqs.set_queue_attributes(QueueUrl=tap_url, Attributes={"Policy": json.dumps(policy)})
    events.put_targets(Rule=EVENTS_TAP_RULE, EventBusName=EVENT_BUS, Targets=[{"Id": "tap", "Arn": tap_arn}])
    return tap_url


def _signing_key(kms: KMSClient, alias: str, description: str) -> str:
    """A merchant's RSA_2048 signing key, found by its alias or created with it."""
    try:
        return kms.describe_key(KeyId=alias)["KeyMetadata"]["KeyId"]
    except kms.exceptions.NotFoundException:
        pass
    key_id = kms.create_key(KeySpec=SIGNING_KEY_SPEC, KeyUsage="SIGN_VERIFY", Description=description)["KeyMetadata"][
        "KeyId"
    ]
    kms.create_alias(AliasName=alias, TargetKeyId=key_id)
    return key_id


# --- key files -------------------------------------------------------------------------------------------


def kms_public_key(session: Session, endpoint_url: str, key_id: str) -> rsa.RSAPublicKey:
    """The emulated KMS key's public half: what the app certificate is issued for."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    der = session.client("kms", endpoint_url=endpoint_url).get_public_key(KeyId=key_id)["PublicKey"]
    key = serialization.load_der_public_key(der)
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("the signing key is not RSA")
    return key


def ensure_key_pair(private_path: Path, public_path: Path | None = None) -> rsa.RSAPrivateKey:
    """An RSA 2048 key in ``private_path`` (PKCS#8 PEM), kept across runs; its public half (SPKI PEM) beside it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from chalicelib.alipay.errors import KeyFormatError
    from chalicelib.alipay.keys import load_private_key

    key: rsa.RSAPrivateKey | None = None
    if private_path.is_file():
        try:
            key = load_private_key(private_path.read_bytes())
        except KeyFormatError:
            key = None  # unreadable (a hand edit gone wrong): make a new one
    if key is None:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        _write_private(private_path, pem)
    if public_path is not None:
        public_pem = key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if not public_path.is_file() or public_path.read_bytes() != public_pem:
            public_path.write_bytes(public_pem)
    return key


def ensure_merchant_credentials(path: Path) -> dict[str, str]:
    """The merchant's local IAM access key, kept across runs (readable by the owner only, like ~/.aws/credentials)."""
    import secrets

    if path.is_file():
        with contextlib.suppress(ValueError):
            data = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(data, dict) and set(data) == {"access_key_id", "secret_access_key"}:
                return {str(k): str(v) for k, v in data.items()}
    credentials = {
        "access_key_id": "AKIALOCAL" + secrets.token_hex(6).upper(),
        "secret_access_key": secrets.token_urlsafe(30),
    }
    _write_private(path, json.dumps(credentials, indent=2).encode() + b"\n")
    return credentials


def _write_private(path: Path, data: bytes) -> None:
    # Readable by the owner only, from the moment it exists: even a throwaway key is handled as a key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def read_stack_file(state_dir: Path) -> dict[str, Any]:
    """The ``stack.json`` of a running (or the last) local stack."""
    data = json.loads((state_dir / STACK_FILE).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{state_dir / STACK_FILE}: not a JSON object")
    return data
