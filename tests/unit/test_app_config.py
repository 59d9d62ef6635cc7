"""Configuration from the environment, and the composition root built from it (no network, no AWS calls)."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from chalicelib import bootstrap
from chalicelib.alipay.keys import public_key_base64
from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.signing import LocalKeySigner, SignType
from chalicelib.config import DEFAULT_STREAM_ARN, Config, ConfigError, event_sources
from tests.alipay_fixtures import alipay_key
from tests.keygen import rsa_key
from tests.unit.services_kit import env


def test_a_complete_open_platform_environment_gets_the_documented_defaults() -> None:
    config = Config.from_env(env())
    assert config.protocol is AlipayProtocol.OPENAPI
    assert config.sign_type is SignType.RSA2
    assert config.uses_kms
    assert config.gateway_url == "https://openapi.alipay.com/gateway.do"
    assert (config.order_timeout, config.max_notification_bytes) == ("30m", 65536)
    assert config.idempotency_ttl_seconds == 86400
    assert config.currencies == {"USD", "HKD", "CNY"}


def test_the_legacy_protocol_defaults_to_rsa_with_the_local_key() -> None:
    config = Config.from_env(env("mapi"))
    assert (config.sign_type, config.uses_kms) == (SignType.RSA, False)
    assert config.gateway_url == "https://intlmapi.alipay.com/gateway.do"


@pytest.mark.parametrize(
    "variable",
    ["ALIPAY_APP_ID", "NOTIFY_URL", "ORDERS_TABLE", "NOTIFICATIONS_QUEUE_URL", "EVENT_BUS_NAME", "SIGNING_KEY_ID"],
)
def test_a_missing_required_variable_is_named(variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(**{variable: ""}))
    assert caught.value.variable == variable
    assert variable in str(caught.value)


def test_without_any_alipay_public_key_the_error_names_both_ways_to_give_one() -> None:
    with pytest.raises(ConfigError, match="ALIPAY_PUBLIC_KEY_FILES") as caught:
        Config.from_env(env(ALIPAY_PUBLIC_KEYS=""))
    assert caught.value.variable == "ALIPAY_PUBLIC_KEYS"


def test_a_legacy_config_without_the_merchant_key_file_fails_clearly_instead_of_falling_back_to_kms() -> None:
    with pytest.raises(ConfigError, match="KMS cannot sign SHA-1") as caught:
        Config.from_env(env("mapi", MERCHANT_PRIVATE_KEY_FILE="", SIGNING_KEY_ID="alias/merchant"))
    assert caught.value.variable == "MERCHANT_PRIVATE_KEY_FILE"


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"ALIPAY_PROTOCOL": "alipay+"}, "ALIPAY_PROTOCOL"),
        ({"ALIPAY_SIGN_TYPE": "MD5"}, "ALIPAY_SIGN_TYPE"),
        ({"MERCHANT_PRIVATE_KEY_FILE": "/key.pem"}, "MERCHANT_PRIVATE_KEY_FILE"),
        ({"ALIPAY_SIGN_TYPE": "RSA"}, "MERCHANT_PRIVATE_KEY_FILE"),
        ({"CURRENCIES": ""}, "CURRENCIES"),
        ({"CURRENCIES": "USD,dollar"}, "CURRENCIES"),
        ({"ORDER_TIMEOUT": "16d"}, "ORDER_TIMEOUT"),
        ({"MAX_NOTIFICATION_BYTES": "64k"}, "MAX_NOTIFICATION_BYTES"),
        ({"IDEMPOTENCY_TTL_SECONDS": "0"}, "IDEMPOTENCY_TTL_SECONDS"),
        ({"RESULT_PAGE_URL": "https://shop.example.com/paid?x=1#top"}, "RESULT_PAGE_URL"),
        ({"RETURN_URL_HOSTS": "shop.example.com,https://evil.example"}, "RETURN_URL_HOSTS"),
        ({"MERCHANT_PRIVATE_KEY_SECRET": "arn:aws:secretsmanager:us-east-1:1:secret:k"}, "MERCHANT_PRIVATE_KEY_SECRET"),
        ({"STRICT_RETURN_URLS": "yes"}, "STRICT_RETURN_URLS"),
        ({"REQUIRE_TRANS_CURRENCY": "yes"}, "REQUIRE_TRANS_CURRENCY"),
    ],
)
def test_an_invalid_open_platform_setting_is_named(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env(**overrides))
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"ALIPAY_SIGN_TYPE": "RSA2"}, "ALIPAY_SIGN_TYPE"),
        ({"ALIPAY_PARTNER_ID": ""}, "ALIPAY_PARTNER_ID"),
        ({"ALIPAY_PARTNER_ID": "1234"}, "ALIPAY_PARTNER_ID"),
        ({"FOREX_REFUND_GMT_RETURN_FORMAT": "yyyy/MM/dd"}, "FOREX_REFUND_GMT_RETURN_FORMAT"),
    ],
)
def test_an_invalid_legacy_setting_is_named(overrides: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env("mapi", **overrides))
    assert caught.value.variable == variable


def test_an_open_platform_merchant_on_the_legacy_rsa_sign_type_chooses_the_key_file_explicitly() -> None:
    config = Config.from_env(env(ALIPAY_SIGN_TYPE="RSA", MERCHANT_PRIVATE_KEY_FILE="/key.pem", SIGNING_KEY_ID=""))
    assert (config.sign_type, config.uses_kms) == (SignType.RSA, False)


# --- Alipay's keys: strings and files, several during a rotation -----------------------------------------------


def write_public_pem(path: Path, name: str) -> str:
    pem = rsa_key(name).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    path.write_bytes(pem)
    return str(path)


def test_alipay_keys_load_from_bare_base64_and_from_pem_and_base64_files(tmp_path: Path) -> None:
    pem_file = write_public_pem(tmp_path / "new.pem", "alipay-rotated")
    b64_file = tmp_path / "old.txt"
    b64_file.write_text(public_key_base64(rsa_key("alipay-old").public_key()) + "\n")
    config = Config.from_env(env(ALIPAY_PUBLIC_KEY_FILES=os.pathsep.join([pem_file, str(b64_file)])))
    keys = bootstrap.load_alipay_keys(config)
    expected = [alipay_key(), rsa_key("alipay-rotated"), rsa_key("alipay-old")]
    assert [k.public_numbers() for k in keys.keys] == [k.public_key().public_numbers() for k in expected]


def test_an_unreadable_key_file_is_named(tmp_path: Path) -> None:
    config = Config.from_env(env(ALIPAY_PUBLIC_KEY_FILES=str(tmp_path / "missing.pem")))
    with pytest.raises(ConfigError) as caught:
        bootstrap.load_alipay_keys(config)
    assert caught.value.variable == "ALIPAY_PUBLIC_KEY_FILES"


def test_a_private_key_given_as_alipays_public_key_is_named() -> None:
    der = rsa_key("merchant").private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    config = Config.from_env(env(ALIPAY_PUBLIC_KEYS=base64.b64encode(der).decode()))
    with pytest.raises(ConfigError, match="key 1") as caught:
        bootstrap.load_alipay_keys(config)
    assert caught.value.variable == "ALIPAY_PUBLIC_KEYS"


# --- the composition root with the real adapters (built, never called) -------------------------------------------


@pytest.fixture
def aws_region(monkeypatch: pytest.MonkeyPatch) -> None:
    # Building a boto3 client needs a region and nothing else; no request is ever sent here.
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def test_the_aws_ports_wire_the_real_adapters_for_the_open_platform(aws_region: None) -> None:
    from chalicelib.adapters.alipay_gateway import HttpAlipayGateway
    from chalicelib.adapters.dynamodb import DynamoDBIdempotencyStore, DynamoDBOrderRepository, DynamoDBQuarantineStore
    from chalicelib.adapters.eventbridge import EventBridgePublisher
    from chalicelib.adapters.kms import KmsSigner
    from chalicelib.adapters.sqs import SqsNotificationQueue
    from chalicelib.observability import EmfMetrics

    ports = bootstrap.AwsPorts(Config.from_env(env()))
    assert isinstance(ports.orders, DynamoDBOrderRepository)
    assert isinstance(ports.idempotency, DynamoDBIdempotencyStore)
    assert isinstance(ports.quarantine, DynamoDBQuarantineStore)
    assert isinstance(ports.queue, SqsNotificationQueue)
    assert isinstance(ports.publisher, EventBridgePublisher)
    assert isinstance(ports.signer, KmsSigner)
    assert isinstance(ports.gateway, HttpAlipayGateway)
    assert isinstance(ports.metrics, EmfMetrics)
    assert ports.signer._metrics is ports.metrics  # KMS throttling is counted: KMS itself publishes no such metric
    assert ports.decode_order({"type": {"S": "idempotency"}}) is None


def test_the_aws_ports_sign_legacy_orders_with_the_local_key_file(aws_region: None, tmp_path: Path) -> None:
    key_file = tmp_path / "merchant.pem"
    key_file.write_bytes(
        rsa_key("merchant").private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    ports = bootstrap.AwsPorts(Config.from_env(env("mapi", MERCHANT_PRIVATE_KEY_FILE=str(key_file))))
    assert isinstance(ports.signer, LocalKeySigner)
    assert ports.signer.sign_type is SignType.RSA
    assert ports.gateway is not None


def test_a_deployed_legacy_stage_signs_with_the_key_secret_read_on_first_use(aws_region: None) -> None:
    from chalicelib.adapters.secrets import SecretKeySigner

    secret = "arn:aws:secretsmanager:us-east-1:123456789012:secret:alipay-global-prod-legacy-key"
    config = Config.from_env(env("mapi", MERCHANT_PRIVATE_KEY_FILE="", MERCHANT_PRIVATE_KEY_SECRET=secret))
    assert (config.merchant_private_key_secret, config.uses_kms) == (secret, False)
    ports = bootstrap.AwsPorts(config)
    assert isinstance(ports.signer, SecretKeySigner)
    assert ports.signer.sign_type is SignType.RSA
    assert ports.gateway is not None  # built without reading the secret (no AWS here: a read would fail)
    with pytest.raises(ConfigError, match="MERCHANT_PRIVATE_KEY_SECRET"):
        Config.from_env(env("mapi", MERCHANT_PRIVATE_KEY_FILE="/key.pem", MERCHANT_PRIVATE_KEY_SECRET=secret))


def test_an_unreadable_merchant_key_file_is_named(aws_region: None, tmp_path: Path) -> None:
    ports = bootstrap.AwsPorts(Config.from_env(env("mapi", MERCHANT_PRIVATE_KEY_FILE=str(tmp_path / "none.pem"))))
    with pytest.raises(ConfigError) as caught:
        _ = ports.signer
    assert caught.value.variable == "MERCHANT_PRIVATE_KEY_FILE"


@pytest.fixture
def forget_services() -> Iterator[None]:
    bootstrap.use(None)
    yield
    bootstrap.use(None)


def test_services_are_built_from_the_environment_once_per_container(
    monkeypatch: pytest.MonkeyPatch, forget_services: None
) -> None:
    for name, value in env().items():
        monkeypatch.setenv(name, value)
    first = bootstrap.services()
    assert first is bootstrap.services()
    assert isinstance(first.ports, bootstrap.AwsPorts)
    assert first.config.app_id == env()["ALIPAY_APP_ID"]


def test_a_missing_variable_surfaces_on_first_use_not_at_import(
    monkeypatch: pytest.MonkeyPatch, forget_services: None
) -> None:
    monkeypatch.delenv("ORDERS_TABLE", raising=False)
    for name, value in env(ORDERS_TABLE="").items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match="ORDERS_TABLE"):
        bootstrap.services()


# --- what the decorators need at import --------------------------------------------------------------------------


def test_the_event_sources_come_from_the_queue_url_and_the_stream_arn() -> None:
    sources = event_sources(
        {
            "NOTIFICATIONS_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/alipay-notifications-prod",
            "ORDERS_STREAM_ARN": "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-26T00:00:00.000",
        }
    )
    assert sources.queue_name == "alipay-notifications-prod"
    assert sources.stream_arn.endswith("stream/2026-11-26T00:00:00.000")


def test_the_event_sources_have_defaults_so_the_app_imports_anywhere() -> None:
    sources = event_sources({})
    assert (sources.queue_name, sources.stream_arn) == ("alipay-global-notifications", DEFAULT_STREAM_ARN)
