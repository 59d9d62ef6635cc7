"""The composition root: use cases built from adapters, lazily, once per container; or from fakes, for tests.

Nothing heavy happens at import. ``services()`` reads the config on first use (a deployed stage's Alipay settings
from SSM Parameter Store, too); each use case, adapter and boto3 client is then built the first time something
needs it, so the webhook's cold start creates an SQS client and never a KMS or EventBridge one. Tests build the
same ``Services`` from in-memory fakes with ``build_services(...)`` and install them with ``use(...)``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from functools import cache, cached_property
from typing import TYPE_CHECKING, NamedTuple, TypeAlias, cast

from chalicelib.services.clock import Clock, utc_now

if TYPE_CHECKING:
    from boto3.session import Session
    from botocore.config import Config as BotoConfig
    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_sqs.client import SQSClient

    from chalicelib.adapters.ssm import SsmClient
    from chalicelib.alipay.certs import CertificateMode
    from chalicelib.alipay.signing import AlipayPublicKeys, Signer
    from chalicelib.config import Config
    from chalicelib.services.catalogue import CatalogueService
    from chalicelib.services.certificates import CertificateWatch
    from chalicelib.services.client_result import ClientResultService
    from chalicelib.services.events import EventRelay, OrderDecoder
    from chalicelib.services.notifications import NotificationIntake, OrderUpdater, QueueConsumer
    from chalicelib.services.operations import OperatorService
    from chalicelib.services.orders import OrderService
    from chalicelib.services.ports import (
        AlipayGateway,
        AuditLog,
        Catalogue,
        DeadLetters,
        EventPublisher,
        Gauges,
        IdempotencyStore,
        Metrics,
        NotificationQueue,
        OrderRepository,
        QuarantineStore,
    )
    from chalicelib.services.protocols import AlipayFlavour, Merchant
    from chalicelib.services.reconciliation import Reconciler
    from chalicelib.services.refunds import RefundService
    from chalicelib.services.web_return import WebReturnService


class GivenPorts(NamedTuple):
    """The adapters the use cases need, handed in ready-made: in-memory fakes in tests, tools."""

    orders: OrderRepository
    catalogue: Catalogue
    idempotency: IdempotencyStore
    queue: NotificationQueue
    quarantine: QuarantineStore
    publisher: EventPublisher
    gateway: AlipayGateway
    signer: Signer
    metrics: Metrics
    decode_order: OrderDecoder
    audit: AuditLog
    dead_letters: DeadLetters | None  # None: no DLQ configured
    gauges: Gauges | None = None  # None: levels (certificate expiry) are reported, not emitted as metrics


class AwsPorts:
    """The real adapters of ``GivenPorts``, each built (with its client) on first use and reused while warm."""

    def __init__(self, config: Config) -> None:
        self._config = config

    @cached_property
    def orders(self) -> OrderRepository:
        from chalicelib.adapters.dynamodb import DynamoDBOrderRepository

        return DynamoDBOrderRepository(self._dynamodb, self._config.orders_table)

    @cached_property
    def catalogue(self) -> Catalogue:
        from chalicelib.adapters.dynamodb import DynamoDBCatalogue

        return DynamoDBCatalogue(self._dynamodb, self._config.orders_table)

    @cached_property
    def idempotency(self) -> IdempotencyStore:
        from chalicelib.adapters.dynamodb import DynamoDBIdempotencyStore

        return DynamoDBIdempotencyStore(self._dynamodb, self._config.orders_table)

    @cached_property
    def quarantine(self) -> QuarantineStore:
        from chalicelib.adapters.dynamodb import DynamoDBQuarantineStore

        return DynamoDBQuarantineStore(self._dynamodb, self._config.orders_table)

    @cached_property
    def audit(self) -> AuditLog:
        from chalicelib.adapters.dynamodb import DynamoDBAuditLog

        return DynamoDBAuditLog(self._dynamodb, self._config.orders_table)

    @cached_property
    def queue(self) -> NotificationQueue:
        from chalicelib.adapters.sqs import SqsNotificationQueue

        return SqsNotificationQueue(self._sqs, self._config.notifications_queue_url)

    @cached_property
    def dead_letters(self) -> DeadLetters | None:
        from chalicelib.adapters.sqs import SqsDeadLetters

        dlq_url = self._config.notifications_dlq_url
        if not dlq_url:
            return None
        return SqsDeadLetters(self._sqs, dlq_url=dlq_url, queue_url=self._config.notifications_queue_url)

    @cached_property
    def _sqs(self) -> SQSClient:
        return self._session.client("sqs", config=boto_config())

    @cached_property
    def publisher(self) -> EventPublisher:
        from chalicelib.adapters.eventbridge import EventBridgePublisher

        client = self._session.client("events", config=boto_config())
        return EventBridgePublisher(client, self._config.event_bus_name)

    @cached_property
    def signer(self) -> Signer:
        if self._config.merchant_private_key_file is not None:
            return load_local_signer(self._config)
        if self._config.merchant_private_key_secret is not None:
            from chalicelib.adapters.secrets import SecretKeySigner, SecretsClient

            secrets = cast("SecretsClient", self._session.client("secretsmanager", config=boto_config()))
            # Read on the first signature only: the webhook's notify_verify gateway never signs, so never reads it.
            return SecretKeySigner(secrets, self._config.merchant_private_key_secret, self._config.sign_type)
        from chalicelib.adapters.kms import KmsSigner

        client = self._session.client("kms", config=boto_config())
        return KmsSigner(client, self._config.signing_key_id or "", self.metrics)

    @cached_property
    def gateway(self) -> AlipayGateway:
        return build_gateway(self._config, self.signer, load_alipay_keys(self._config))

    @cached_property
    def gauges(self) -> Gauges:
        from chalicelib.observability import EmfMetrics

        return EmfMetrics(self._config.metrics_namespace, self._config.stage)

    @cached_property
    def metrics(self) -> Metrics:
        from chalicelib.observability import EmfMetrics

        return EmfMetrics(self._config.metrics_namespace, self._config.stage)

    @cached_property
    def decode_order(self) -> OrderDecoder:
        from chalicelib.adapters.dynamodb import order_from_item

        return order_from_item

    @cached_property
    def _session(self) -> Session:
        import boto3  # ~300 ms: paid by the first request that needs AWS, never by `import app`

        return boto3.session.Session()

    @cached_property
    def _dynamodb(self) -> DynamoDBClient:
        return self._session.client("dynamodb", config=boto_config())


# What the use cases are built over: the same adapters, given ready-made or built lazily.
Ports: TypeAlias = GivenPorts | AwsPorts


@cache
def boto_config() -> BotoConfig:
    """One botocore config for every client: short timeouts (API Gateway gives up after 29 s), standard retries."""
    from botocore.config import Config as BotoConfig

    return BotoConfig(
        connect_timeout=2,
        read_timeout=5,
        retries={"mode": "standard", "max_attempts": 3},
        tcp_keepalive=True,
    )


def build_gateway(config: Config, signer: Signer, alipay_keys: AlipayPublicKeys) -> AlipayGateway:
    """Alipay's gateway over HTTPS (trade queries; the legacy protocol's ``notify_verify``)."""
    if config.protocol == "antom":
        from chalicelib.adapters.antom_gateway import HttpAntomGateway

        return HttpAntomGateway.from_config(config, signer, alipay_keys)
    from chalicelib.adapters.alipay_gateway import HttpAlipayGateway

    mode = load_certificate_mode(config)
    return HttpAlipayGateway.from_config(config, signer, alipay_keys, cert_sns=mode.sns if mode else None)


@cache
def load_certificate_mode(config: Config) -> CertificateMode | None:
    """Certificate mode's certificates, read (from the settings' text or files) and checked once per container;
    None in public-key mode. ``ConfigError`` names the setting that is wrong."""
    if not config.cert_mode:
        return None
    from chalicelib.alipay import certs
    from chalicelib.alipay.errors import AlipayError
    from chalicelib.config import ConfigError
    from chalicelib.topology import SSM_PARAMETERS

    app = _text_or_files("ALIPAY_APP_CERT", config.app_cert, (config.app_cert_file,))[0]
    alipay = _text_or_files("ALIPAY_CERTS", config.alipay_certs, config.alipay_cert_files)
    root = _text_or_files("ALIPAY_ROOT_CERT", config.alipay_root_cert, (config.alipay_root_cert_file,))[0]

    def error(variable: str, exc: AlipayError) -> ConfigError:
        # Deployed, the operator puts parameters, not variables: name both.
        parameter = next(name for name, v in SSM_PARAMETERS.items() if v == variable)
        return ConfigError(variable, f"{exc} (deployed: the SSM parameter {parameter})")

    # The app certificate and the root bundle first, each on its own: an error then names the setting to fix.
    for variable, check in (("ALIPAY_APP_CERT", certs.app_cert_sn), ("ALIPAY_ROOT_CERT", certs.alipay_root_cert_sn)):
        try:
            check(app if variable == "ALIPAY_APP_CERT" else root)
        except AlipayError as exc:
            raise error(variable, exc) from exc
    try:
        return certs.load_certificate_mode(app, alipay, root)
    except AlipayError as exc:
        raise error("ALIPAY_CERTS", exc) from exc


def _text_or_files(variable: str, text: str | None, paths: tuple[str | None, ...]) -> list[str]:
    from chalicelib.config import ConfigError

    if text:
        return [text]
    out = []
    for path in paths:
        if not path:
            continue
        try:
            with open(path, encoding="utf-8") as handle:
                out.append(handle.read())
        except OSError as exc:
            raise ConfigError(variable, f"{path}: {exc}") from exc
    if not out:
        raise ConfigError(variable, "is required in certificate mode")
    return out


def load_alipay_keys(config: Config, now: Clock = utc_now) -> AlipayPublicKeys:
    """Alipay's public keys from ALIPAY_PUBLIC_KEYS and ALIPAY_PUBLIC_KEY_FILES (several during a rotation); in
    certificate mode, from Alipay's certificates (ALIPAY_CERTS), each used while valid by ``now``."""
    from chalicelib.alipay.errors import KeyFormatError
    from chalicelib.alipay.keys import load_public_key
    from chalicelib.alipay.signing import AlipayPublicKeys
    from chalicelib.config import ConfigError

    mode = load_certificate_mode(config)
    if mode is not None:
        return AlipayPublicKeys((), certificates=mode.alipay_certificates, clock=now)
    keys = []
    for number, text in enumerate(config.alipay_public_keys, start=1):
        try:
            keys.append(load_public_key(text))
        except KeyFormatError as exc:
            raise ConfigError("ALIPAY_PUBLIC_KEYS", f"key {number}: {exc}") from exc
    for path in config.alipay_public_key_files:
        try:
            with open(path, "rb") as handle:
                keys.append(load_public_key(handle.read()))
        except (OSError, KeyFormatError) as exc:
            raise ConfigError("ALIPAY_PUBLIC_KEY_FILES", f"{path}: {exc}") from exc
    return AlipayPublicKeys(keys)


def load_local_signer(config: Config) -> Signer:
    """The legacy RSA (SHA1withRSA) signer over the merchant key file: KMS cannot sign SHA-1."""
    from chalicelib.alipay.errors import KeyFormatError
    from chalicelib.alipay.keys import load_private_key
    from chalicelib.alipay.signing import LocalKeySigner
    from chalicelib.config import ConfigError

    path = config.merchant_private_key_file or ""
    try:
        with open(path, "rb") as handle:
            key = load_private_key(handle.read())
    except (OSError, KeyFormatError) as exc:
        raise ConfigError("MERCHANT_PRIVATE_KEY_FILE", f"{path}: {exc}") from exc
    return LocalKeySigner(key, config.sign_type)


class Services:
    """The use cases, each built on first use from the config and the ports."""

    def __init__(
        self,
        config: Config,
        ports: Ports,
        *,
        now: Clock = utc_now,
        alipay_keys: AlipayPublicKeys | None = None,
    ) -> None:
        self.config = config
        self.ports = ports
        self.now = now
        self._given_keys = alipay_keys

    @cached_property
    def alipay_keys(self) -> AlipayPublicKeys:
        return self._given_keys if self._given_keys is not None else load_alipay_keys(self.config, self.now)

    @cached_property
    def merchant(self) -> Merchant:
        from chalicelib.services.protocols import Merchant

        mode = load_certificate_mode(self.config)
        return Merchant.from_config(self.config, cert_sns=mode.sns if mode else None)

    @cached_property
    def certificates(self) -> CertificateWatch:
        from chalicelib.services.certificates import CertificateWatch

        mode = load_certificate_mode(self.config)
        return CertificateWatch(mode.expiries if mode else (), self.ports.gauges, self.now)

    @cached_property
    def flavour(self) -> AlipayFlavour:
        """The configured protocol's rules: the one place the protocol is chosen."""
        from chalicelib.services.protocols import flavour_for

        return flavour_for(self.config.protocol, self.merchant)

    @cached_property
    def orders(self) -> OrderService:
        from chalicelib.services.orders import OrderService

        config = self.config
        return OrderService(
            orders=self.ports.orders,
            idempotency=self.ports.idempotency,
            # Antom creates its orders through the gateway: built on the first order, never for a signed string.
            order_strings=self.flavour.order_strings(self.ports.signer, lambda: self.ports.gateway),
            metrics=self.ports.metrics,
            currencies=config.currencies,
            now=self.now,
            catalogue=self.ports.catalogue,
            default_currency=config.default_currency,
            default_timeout=config.order_timeout,
            idempotency_ttl_seconds=config.idempotency_ttl_seconds,
            default_return_url=config.return_url,
            return_url_hosts=config.return_url_hosts,
            strict_return_urls=config.strict_return_urls,
        )

    @cached_property
    def catalogue(self) -> CatalogueService:
        from chalicelib.services.catalogue import CatalogueService

        return CatalogueService(self.ports.catalogue, self.config.currencies, self.now)

    @cached_property
    def intake(self) -> NotificationIntake:
        from chalicelib.services.notifications import NotificationIntake

        flavour = self.flavour
        return NotificationIntake(
            flavour=flavour,
            alipay_keys=self.alipay_keys,
            queue=self.ports.queue,
            metrics=self.ports.metrics,
            now=self.now,
            max_bytes=self.config.max_notification_bytes,
            # Built only when the webhook calls Alipay (legacy notify_verify): else its cold start creates no client.
            gateway=self.ports.gateway if flavour.confirms_notify_id else None,
        )

    @cached_property
    def updater(self) -> OrderUpdater:
        from chalicelib.services.notifications import OrderUpdater

        return OrderUpdater(
            orders=self.ports.orders,
            quarantine=self.ports.quarantine,
            metrics=self.ports.metrics,
            now=self.now,
            flavour=self.flavour,
        )

    @cached_property
    def consumer(self) -> QueueConsumer:
        from chalicelib.services.notifications import QueueConsumer

        return QueueConsumer(
            flavour=self.flavour,
            alipay_keys=self.alipay_keys,
            updater=self.updater,
            quarantine=self.ports.quarantine,
            metrics=self.ports.metrics,
            now=self.now,
            # Antom notifies a refund's outcome on its own (notifyRefund); the other protocols' refund notifications
            # carry the trade's running total and go through the state machine.
            refunds=self.refunds if self.config.protocol == "antom" else None,
        )

    @cached_property
    def relay(self) -> EventRelay:
        from chalicelib.services.events import EventRelay

        return EventRelay(
            publisher=self.ports.publisher, decode_order=self.ports.decode_order, metrics=self.ports.metrics
        )

    @cached_property
    def client_results(self) -> ClientResultService:
        from chalicelib.services.client_result import ClientResultService

        return ClientResultService(
            flavour=self.flavour,
            alipay_keys=self.alipay_keys,
            orders=self.ports.orders,
            updater=self.updater,
            gateway=self.ports.gateway,
            cooldown=self.ports.idempotency,
            cooldown_seconds=self.config.active_query_cooldown_seconds,
            now=self.now,
        )

    @cached_property
    def web_returns(self) -> WebReturnService:
        from chalicelib.services.web_return import WebReturnService

        return WebReturnService(
            flavour=self.flavour,
            alipay_keys=self.alipay_keys,
            orders=self.ports.orders,
            client_results=self.client_results,
        )

    @cached_property
    def refunds(self) -> RefundService:
        from chalicelib.services.refunds import RefundService

        return RefundService(
            orders=self.ports.orders,
            gateway=self.ports.gateway,
            refundable=self.flavour.refundable,
            now=self.now,
            metrics=self.ports.metrics,
        )

    @cached_property
    def operations(self) -> OperatorService:
        from chalicelib.services.operations import OperatorService

        return OperatorService(
            orders=self.ports.orders,
            quarantine=self.ports.quarantine,
            audit=self.ports.audit,
            consumer=self.consumer,
            updater=self.updater,
            gateway=self.ports.gateway,
            publisher=self.ports.publisher,
            flavour=self.flavour,
            now=self.now,
            dead_letters=self.ports.dead_letters,
            refunds=self.refunds,
        )

    @cached_property
    def reconciler(self) -> Reconciler:
        from datetime import timedelta

        from chalicelib.alipay import params
        from chalicelib.services.reconciliation import Reconciler

        config = self.config
        return Reconciler(
            orders=self.ports.orders,
            gateway=self.ports.gateway,
            updater=self.updater,
            metrics=self.ports.metrics,
            now=self.now,
            can_close=self.flavour.can_close,
            refunds=self.refunds,
            min_age=timedelta(seconds=config.reconcile_min_age_seconds),
            refund_min_age=timedelta(seconds=config.reconcile_min_age_seconds),
            close_grace=timedelta(seconds=config.reconcile_close_grace_seconds),
            max_queries=config.reconcile_max_queries,
            min_interval=config.reconcile_interval_ms / 1000,
            default_timeout=timedelta(minutes=params.timeout_minutes(config.order_timeout, "ORDER_TIMEOUT")),
        )


def build_services(
    config: Config,
    ports: GivenPorts,
    *,
    alipay_keys: AlipayPublicKeys | None = None,
    now: Clock = utc_now,
) -> Services:
    """The same use cases over ports given ready-made (fakes in tests, tools)."""
    return Services(config, ports, now=now, alipay_keys=alipay_keys)


def load_config(environ: Mapping[str, str], ssm: SsmClient | None = None) -> Config:
    """The config from the environment plus, when SSM_PARAMETER_PATH is set, the stage's parameters in SSM.

    A deployed stage keeps its Alipay ids and Alipay's public keys in SSM Parameter Store (a key rotation needs no
    deployment); they are read here, once per container. A variable set in the environment wins over its parameter.
    """
    from chalicelib.config import Config, ConfigError, ssm_parameter_path
    from chalicelib.topology import SSM_PARAMETERS

    path = ssm_parameter_path(environ)
    if path is None:
        return Config.from_env(environ)
    from chalicelib.adapters.ssm import read_parameters

    if ssm is None:
        import boto3

        ssm = cast("SsmClient", boto3.session.Session().client("ssm", config=boto_config()))
    settings = read_parameters(ssm, path, SSM_PARAMETERS)
    settings.update((name, value) for name, value in environ.items() if value.strip())
    try:
        return Config.from_env(settings)
    except ConfigError as exc:
        parameter = next((name for name, variable in SSM_PARAMETERS.items() if variable == exc.variable), None)
        if parameter is None:
            raise
        # The operator never sets these variables on a deployed stage: name the parameter to put.
        message = str(exc).removeprefix(f"{exc.variable}: ")
        raise ConfigError(exc.variable, f"{message} (SSM parameter {path}/{parameter})") from exc


def build_aws_services(config: Config) -> Services:
    """The use cases over the real AWS adapters and Alipay's gateway."""
    return Services(config, AwsPorts(config))


_lock = threading.Lock()
_current: Services | None = None


def services() -> Services:
    """This container's services: built from the environment on first use, then reused while warm."""
    global _current
    current = _current
    if current is None:
        with _lock:
            if _current is None:
                _current = build_aws_services(load_config(os.environ))
            current = _current
    return current


def use(installed: Services | None) -> None:
    """Install ``installed`` as this process's services (tests, local tools); None forgets them."""
    global _current
    with _lock:
        _current = installed
