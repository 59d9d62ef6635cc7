"""The one place that reads the environment: a frozen ``Config`` built on first use, never at import."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from chalicelib.alipay.notifications import AlipayProtocol
    from chalicelib.alipay.signing import SignType

# Alipay's production gateways; a stage sets ALIPAY_GATEWAY_URL for the sandbox or the local stack.
DEFAULT_GATEWAY_URL = {
    "openapi": "https://openapi.alipay.com/gateway.do",
    "mapi": "https://intlmapi.alipay.com/gateway.do",
    # Antom's base URL (the /ams/api/v1/... paths are appended): its Asia endpoint; open-na-global and open-de-global
    # serve North America and Europe.
    "antom": "https://open-sea-global.alipay.com",
}
# Antom's cashier payment methods for Alipay and Alipay+ wallets: what ANTOM_PAYMENT_METHODS may name.
ANTOM_PAYMENT_METHOD = re.compile(r"[A-Z][A-Z0-9_]{1,63}")
DEFAULT_QUEUE_NAME = "alipay-global-notifications"
# Reconciliation, as deployed: every 5 minutes, orders waiting at least 5 minutes (Alipay's first notification retry
# comes after 4). The local stack keeps these ratios on its scaled clock, so it never beats the webhook.
DEFAULT_RECONCILE_MIN_AGE_SECONDS = 300
DEFAULT_RECONCILE_RATE_MINUTES = 5
# Chalice needs a stream ARN to register the relay; deployments set ORDERS_STREAM_ARN to the table's stream.
DEFAULT_STREAM_ARN = "arn:aws:dynamodb:us-east-1:000000000000:table/alipay-global-orders/stream/unset"

# A deployed stage's Alipay settings in SSM Parameter Store (parameter name -> variable): chalicelib/topology.py.

KEY_MODES = ("key", "cert")
# Certificate mode's settings: the PEM text (an SSM parameter when deployed) -> the variable naming files instead.
_CERT_SETTINGS = {
    "ALIPAY_APP_CERT": "ALIPAY_APP_CERT_FILE",
    "ALIPAY_CERTS": "ALIPAY_CERT_FILES",
    "ALIPAY_ROOT_CERT": "ALIPAY_ROOT_CERT_FILE",
}
_CERT_ROLES = {
    "ALIPAY_APP_CERT": "the app's public-key certificate (appCertPublicKey_<app_id>.crt, issued for the KMS key)",
    "ALIPAY_CERTS": "Alipay's public-key certificate(s) (alipayCertPublicKey_RSA2.crt; several during a rotation)",
    "ALIPAY_ROOT_CERT": "Alipay's root certificate bundle (alipayRootCert.crt)",
}

_CURRENCY = re.compile(r"[A-Z]{3}")
_PARTNER = re.compile(r"2088[0-9]{12}")
_HOST_NAME = re.compile(r"(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*")


class ConfigError(ValueError):
    """A setting is missing or invalid; ``variable`` names the environment variable to fix."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable


class Config(NamedTuple):
    """Everything the product is configured with, validated as a whole (a NamedTuple, like the other records on
    ``import app``'s path: ``dataclasses`` would add ``inspect``, a fifth of the import)."""

    stage: str
    protocol: AlipayProtocol
    app_id: str | None
    seller_id: str | None
    partner_id: str | None
    sign_type: SignType
    alipay_public_keys: tuple[str, ...]  # bare base64 SPKI strings
    alipay_public_key_files: tuple[str, ...]  # PEM or bare base64 files; several keys during a rotation
    merchant_private_key_file: str | None  # legacy RSA only: KMS cannot sign SHA1withRSA
    gateway_url: str
    notify_url: str
    currencies: frozenset[str]
    order_timeout: str
    orders_table: str
    notifications_queue_url: str
    notifications_dlq_url: str | None
    signing_key_id: str | None
    event_bus_name: str
    max_notification_bytes: int = 65536
    idempotency_ttl_seconds: int = 86400
    metrics_namespace: str = "AlipayGlobal"
    reconcile_min_age_seconds: int = 300  # how long an order may wait before Alipay is asked about it
    reconcile_max_queries: int = 50  # gateway calls per scheduled run, so a backlog cannot flood Alipay
    reconcile_interval_ms: int = 100  # at least this long between two gateway calls of a run
    reconcile_close_grace_seconds: int = 60  # after the order's timeout, before it is closed
    return_url: str | None = None  # web checkout: the default return_url of page and wap orders
    result_page_url: str | None = None  # web checkout: where GET /alipay/return sends the shopper (else its own page)
    return_url_hosts: frozenset[str] = frozenset()  # web checkout: hosts a request's return_url may name (empty: any)
    # Deployed stages: every return_url https, and a request's own only on a RETURN_URL_HOSTS host (none listed: only
    # the default); the local stack serves plain http and leaves it off.
    strict_return_urls: bool = False
    # Open Platform: money Alipay reports without trans_currency for an order still waiting (a payment, or a refund's
    # figures) is read as CNY (a foreign-currency order charged as CNY is quarantined as currency_mismatch, never
    # paid). Off: such a payment is checked on its amount alone.
    require_trans_currency: bool = False
    active_query_cooldown_seconds: int = 5  # client results and returns ask Alipay about an order at most this often
    default_currency: str = "USD"  # a buyer's order without a currency
    cognito_client_ids: frozenset[str] = frozenset()  # buyers' ID tokens must be for one of these (empty: none is)
    # Legacy RSA, deployed: the merchant key in Secrets Manager (its ARN), instead of MERCHANT_PRIVATE_KEY_FILE.
    merchant_private_key_secret: str | None = None
    # forex_refund's gmt_return form: Alipay's English page and Global SDK, or its Chinese page (protocols.md §2.4).
    forex_refund_gmt_return_format: str = "yyyy-MM-dd HH:mm:ss"
    # Legacy web payments: the timeout_rule values Alipay has enabled for the merchant; only 12h unless it enabled more.
    forex_timeout_rules: tuple[str, ...] = ("12h",)
    # Open Platform's public-key-certificate mode (ALIPAY_KEY_MODE=cert): each certificate as PEM text (deployed: SSM
    # parameters, chalicelib/topology.py) or as files (the local stack, tools). Alipay's certificates: several during
    # a rotation, each a leaf followed by its intermediates, concatenated.
    key_mode: str = "key"
    app_cert: str | None = None
    app_cert_file: str | None = None
    alipay_certs: str | None = None
    alipay_cert_files: tuple[str, ...] = ()
    alipay_root_cert: str | None = None
    alipay_root_cert_file: str | None = None
    # Antom (ALIPAY_PROTOCOL=antom): the client id Antom assigned the merchant's application, and the payment method
    # types orders may name (the first is the default).
    antom_client_id: str | None = None
    antom_payment_methods: tuple[str, ...] = ("ALIPAY_CN",)

    @property
    def cert_mode(self) -> bool:
        """Whether requests carry certificate SNs and replies are verified by Alipay's certificates."""
        return self.key_mode == "cert"

    @property
    def uses_kms(self) -> bool:
        """Whether the merchant key lives in KMS (RSA2) rather than in a local key file (legacy RSA)."""
        return self.merchant_private_key_file is None and self.merchant_private_key_secret is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Read and validate the settings; ``ConfigError`` names the first variable that is wrong."""
        from chalicelib.alipay import params
        from chalicelib.alipay.errors import OrderError
        from chalicelib.alipay.notifications import AlipayProtocol
        from chalicelib.alipay.signing import SignType

        env = _Env(os.environ if environ is None else environ)
        protocol_name = env.optional("ALIPAY_PROTOCOL") or "openapi"
        if protocol_name not in DEFAULT_GATEWAY_URL:
            raise ConfigError("ALIPAY_PROTOCOL", f"must be openapi, mapi or antom, not {protocol_name!r}")
        protocol = AlipayProtocol(protocol_name)
        legacy = protocol is AlipayProtocol.MAPI
        antom = protocol is AlipayProtocol.ANTOM

        sign_type_name = env.optional("ALIPAY_SIGN_TYPE") or ("RSA" if legacy else "RSA2")
        if sign_type_name not in SignType.__members__:
            raise ConfigError("ALIPAY_SIGN_TYPE", f"must be RSA2 or RSA, not {sign_type_name!r}")
        sign_type = SignType(sign_type_name)
        if legacy and sign_type is not SignType.RSA:
            raise ConfigError("ALIPAY_SIGN_TYPE", "mobile.securitypay.pay (mapi) signs and verifies with RSA only")
        if antom and sign_type is not SignType.RSA2:
            raise ConfigError("ALIPAY_SIGN_TYPE", "Antom signs and verifies with RSA256 (SHA256withRSA, RSA2) only")

        app_id = env.optional("ALIPAY_APP_ID")
        partner_id = env.optional("ALIPAY_PARTNER_ID")
        if legacy:
            partner_id = env.required("ALIPAY_PARTNER_ID")
            if not _PARTNER.fullmatch(partner_id):
                raise ConfigError("ALIPAY_PARTNER_ID", "must be the 16-digit PID starting with 2088")
        elif not antom:
            app_id = env.required("ALIPAY_APP_ID")
        antom_client_id = env.required("ANTOM_CLIENT_ID") if antom else None
        antom_methods = env.split("ANTOM_PAYMENT_METHODS", ",") or ("ALIPAY_CN",)
        bad_methods = sorted(m for m in antom_methods if not ANTOM_PAYMENT_METHOD.fullmatch(m))
        if bad_methods:
            raise ConfigError("ANTOM_PAYMENT_METHODS", f"not payment method types: {', '.join(bad_methods)}")

        keys = env.split("ALIPAY_PUBLIC_KEYS", ",")
        key_files = env.split("ALIPAY_PUBLIC_KEY_FILES", os.pathsep)
        key_mode = env.optional("ALIPAY_KEY_MODE") or "key"
        if key_mode not in KEY_MODES:
            raise ConfigError("ALIPAY_KEY_MODE", f"must be key or cert, not {key_mode!r}")
        certs = {name: env.optional(name) for name in ("ALIPAY_APP_CERT", "ALIPAY_CERTS", "ALIPAY_ROOT_CERT")}
        cert_files: dict[str, tuple[str, ...]] = {
            "ALIPAY_APP_CERT_FILE": tuple(filter(None, [env.optional("ALIPAY_APP_CERT_FILE")])),
            "ALIPAY_CERT_FILES": env.split("ALIPAY_CERT_FILES", os.pathsep),
            "ALIPAY_ROOT_CERT_FILE": tuple(filter(None, [env.optional("ALIPAY_ROOT_CERT_FILE")])),
        }
        if key_mode == "cert":
            if legacy or antom:
                raise ConfigError("ALIPAY_KEY_MODE", f"certificate mode is Open Platform's (openapi), not {protocol}'s")
            for variable, file_variable in _CERT_SETTINGS.items():
                if certs[variable] and cert_files[file_variable]:
                    raise ConfigError(variable, f"set it or {file_variable}, not both")
                if not (certs[variable] or cert_files[file_variable]):
                    raise ConfigError(
                        variable, f"certificate mode needs it (or {file_variable}): {_CERT_ROLES[variable]}"
                    )
            # Alipay's key comes from its certificate, checked against the root: a bare key would bypass that check.
            for variable, bare in (("ALIPAY_PUBLIC_KEYS", keys), ("ALIPAY_PUBLIC_KEY_FILES", key_files)):
                if bare:
                    raise ConfigError(variable, "not in certificate mode: Alipay's key comes from ALIPAY_CERTS")
        else:
            given = [name for name, value in certs.items() if value] + [name for name, v in cert_files.items() if v]
            if given:
                # Requests without app_cert_sn would be refused by Alipay: a half-configured stage is an error now.
                raise ConfigError(given[0], "is a certificate-mode setting: set ALIPAY_KEY_MODE=cert to use it")
            if not keys and not key_files:
                raise ConfigError("ALIPAY_PUBLIC_KEYS", "set it or ALIPAY_PUBLIC_KEY_FILES to Alipay's public key(s)")

        # KMS signs SHA256withRSA only. The legacy SHA1withRSA sign type needs a locally held key: a choice the
        # stage states by setting MERCHANT_PRIVATE_KEY_FILE, never a fallback taken when KMS is missing.
        # Deployed, the key is a secret (MERCHANT_PRIVATE_KEY_SECRET) only the signing functions may read; a file is for
        # the local stack and tools.
        private_key_file = env.optional("MERCHANT_PRIVATE_KEY_FILE")
        private_key_secret = env.optional("MERCHANT_PRIVATE_KEY_SECRET")
        signing_key_id = env.optional("SIGNING_KEY_ID")
        if private_key_file is not None and private_key_secret is not None:
            raise ConfigError("MERCHANT_PRIVATE_KEY_SECRET", "set it or MERCHANT_PRIVATE_KEY_FILE, not both")
        if sign_type is SignType.RSA and private_key_file is None and private_key_secret is None:
            raise ConfigError(
                "MERCHANT_PRIVATE_KEY_FILE",
                "the RSA (SHA1withRSA) sign type needs the merchant private key (this file, or deployed the secret "
                "MERCHANT_PRIVATE_KEY_SECRET): KMS cannot sign SHA-1",
            )
        if sign_type is SignType.RSA2:
            for variable, value in (
                ("MERCHANT_PRIVATE_KEY_FILE", private_key_file),
                ("MERCHANT_PRIVATE_KEY_SECRET", private_key_secret),
            ):
                if value is not None:
                    raise ConfigError(variable, "only for the legacy RSA sign type; RSA2 signs in KMS")
            signing_key_id = env.required("SIGNING_KEY_ID")

        currencies = frozenset(env.split("CURRENCIES", ","))
        if not currencies:
            raise ConfigError("CURRENCIES", "is required: the ISO 4217 codes orders may use, e.g. USD,HKD")
        bad = sorted(c for c in currencies if not _CURRENCY.fullmatch(c))
        if bad:
            raise ConfigError("CURRENCIES", f"not ISO 4217 codes: {', '.join(bad)}")

        default_currency = env.optional("DEFAULT_CURRENCY") or ("USD" if "USD" in currencies else min(currencies))
        if default_currency not in currencies:
            raise ConfigError("DEFAULT_CURRENCY", f"must be one of CURRENCIES ({', '.join(sorted(currencies))})")
        # The user pool's app clients whose ID tokens a buyer may call with: API Gateway's authorizer checks a token's
        # signature, issuer and expiry, not its audience, so the function does.
        client_ids = frozenset(c.strip() for c in (env.optional("COGNITO_CLIENT_IDS") or "").split(",") if c.strip())

        order_timeout = env.optional("ORDER_TIMEOUT") or "30m"
        try:
            params.check_timeout(order_timeout, "ORDER_TIMEOUT")
        except OrderError as exc:
            raise ConfigError("ORDER_TIMEOUT", str(exc)) from exc

        return_url = env.optional("RETURN_URL")
        result_page_url = env.optional("RESULT_PAGE_URL")
        for variable, url in (("RETURN_URL", return_url), ("RESULT_PAGE_URL", result_page_url)):
            if url is None:
                continue
            if variable == "RESULT_PAGE_URL" and "#" in url:
                # out_trade_no and status are appended to the query: after a fragment they would never be sent.
                raise ConfigError(variable, "must not carry a fragment")
            try:
                # The result page may carry a query of its own (out_trade_no and status are appended to it).
                params.check_return_url(url.split("?", 1)[0] if variable == "RESULT_PAGE_URL" else url, variable)
            except OrderError as exc:
                raise ConfigError(variable, str(exc).removeprefix(f"{variable}: ")) from exc
        strict_return_urls = env.flag("STRICT_RETURN_URLS")
        require_trans_currency = env.flag("REQUIRE_TRANS_CURRENCY")
        if require_trans_currency and protocol is not AlipayProtocol.OPENAPI:
            raise ConfigError("REQUIRE_TRANS_CURRENCY", "applies to Open Platform only (ALIPAY_PROTOCOL=openapi)")
        if strict_return_urls and return_url is not None and not return_url.startswith("https://"):
            raise ConfigError("RETURN_URL", "must be an https:// URL (STRICT_RETURN_URLS is set)")
        hosts = frozenset(h.strip().lower() for h in (env.optional("RETURN_URL_HOSTS") or "").split(",") if h.strip())
        bad_hosts = sorted(h for h in hosts if not _HOST_NAME.fullmatch(h))
        if bad_hosts:
            raise ConfigError("RETURN_URL_HOSTS", f"not host names: {', '.join(bad_hosts)}")

        gmt_return_format = env.optional("FOREX_REFUND_GMT_RETURN_FORMAT") or "yyyy-MM-dd HH:mm:ss"
        if gmt_return_format != "yyyy-MM-dd HH:mm:ss":
            from chalicelib.alipay.mapi_replies import GMT_RETURN_FORMATS

            if gmt_return_format not in GMT_RETURN_FORMATS:
                raise ConfigError("FOREX_REFUND_GMT_RETURN_FORMAT", f"must be one of: {', '.join(GMT_RETURN_FORMATS)}")

        forex_timeout_rules = env.split("FOREX_TIMEOUT_RULES", ",") or ("12h",)
        if forex_timeout_rules != ("12h",):
            from chalicelib.alipay.web import FOREX_TIMEOUT_RULES

            unknown = sorted(set(forex_timeout_rules) - set(FOREX_TIMEOUT_RULES))
            if unknown:
                raise ConfigError("FOREX_TIMEOUT_RULES", f"not timeout_rule values: {', '.join(unknown)}")

        return cls(
            stage=env.optional("STAGE") or "dev",
            protocol=protocol,
            app_id=app_id,
            seller_id=env.optional("ALIPAY_SELLER_ID"),
            partner_id=partner_id,
            sign_type=sign_type,
            alipay_public_keys=keys,
            alipay_public_key_files=key_files,
            merchant_private_key_file=private_key_file,
            merchant_private_key_secret=private_key_secret,
            gateway_url=env.optional("ALIPAY_GATEWAY_URL") or DEFAULT_GATEWAY_URL[protocol_name],
            notify_url=env.required("NOTIFY_URL"),
            currencies=currencies,
            order_timeout=order_timeout,
            orders_table=env.required("ORDERS_TABLE"),
            notifications_queue_url=env.required("NOTIFICATIONS_QUEUE_URL"),
            notifications_dlq_url=env.optional("NOTIFICATIONS_DLQ_URL"),
            signing_key_id=signing_key_id,
            event_bus_name=env.required("EVENT_BUS_NAME"),
            max_notification_bytes=env.positive_int("MAX_NOTIFICATION_BYTES", 65536),
            idempotency_ttl_seconds=env.positive_int("IDEMPOTENCY_TTL_SECONDS", 86400),
            metrics_namespace=env.optional("POWERTOOLS_METRICS_NAMESPACE") or "AlipayGlobal",
            reconcile_min_age_seconds=env.positive_int("RECONCILE_MIN_AGE_SECONDS", DEFAULT_RECONCILE_MIN_AGE_SECONDS),
            reconcile_max_queries=env.positive_int("RECONCILE_MAX_QUERIES", 50),
            reconcile_interval_ms=env.positive_int("RECONCILE_INTERVAL_MS", 100),
            reconcile_close_grace_seconds=env.positive_int("RECONCILE_CLOSE_GRACE_SECONDS", 60),
            return_url=return_url,
            result_page_url=result_page_url,
            return_url_hosts=hosts,
            strict_return_urls=strict_return_urls,
            require_trans_currency=require_trans_currency,
            active_query_cooldown_seconds=env.positive_int("ACTIVE_QUERY_COOLDOWN_SECONDS", 5),
            default_currency=default_currency,
            cognito_client_ids=client_ids,
            forex_refund_gmt_return_format=gmt_return_format,
            forex_timeout_rules=forex_timeout_rules,
            key_mode=key_mode,
            app_cert=certs["ALIPAY_APP_CERT"],
            app_cert_file=next(iter(cert_files["ALIPAY_APP_CERT_FILE"]), None),
            alipay_certs=certs["ALIPAY_CERTS"],
            alipay_cert_files=cert_files["ALIPAY_CERT_FILES"],
            alipay_root_cert=certs["ALIPAY_ROOT_CERT"],
            alipay_root_cert_file=next(iter(cert_files["ALIPAY_ROOT_CERT_FILE"]), None),
            antom_client_id=antom_client_id,
            antom_payment_methods=antom_methods,
        )


class EventSources(NamedTuple):
    """What Chalice's event-source decorators need when ``app.py`` is imported (and packaged)."""

    queue_name: str
    stream_arn: str
    reconcile_rate_minutes: int = 5


def event_sources(environ: Mapping[str, str] | None = None) -> EventSources:
    """The notifications queue's name and the orders table's stream ARN, for the decorators in ``app.py``."""
    env = _Env(os.environ if environ is None else environ)
    queue_url = env.optional("NOTIFICATIONS_QUEUE_URL")
    # A queue URL ends with the queue's name, which is all Chalice's on_sqs_message takes.
    queue_name = env.optional("NOTIFICATIONS_QUEUE_NAME") or (
        queue_url.rstrip("/").rsplit("/", 1)[-1] if queue_url else DEFAULT_QUEUE_NAME
    )
    return EventSources(
        queue_name=queue_name,
        stream_arn=env.optional("ORDERS_STREAM_ARN") or DEFAULT_STREAM_ARN,
        reconcile_rate_minutes=env.positive_int("RECONCILE_RATE_MINUTES", DEFAULT_RECONCILE_RATE_MINUTES),
    )


def ssm_parameter_path(environ: Mapping[str, str] | None = None) -> str | None:
    """SSM_PARAMETER_PATH without its trailing slash; None when every setting comes from the environment."""
    path = _Env(os.environ if environ is None else environ).optional("SSM_PARAMETER_PATH")
    if path is None:
        return None
    if not path.startswith("/"):
        raise ConfigError("SSM_PARAMETER_PATH", f"must be an absolute path like /alipay-global/prod, not {path!r}")
    return path.rstrip("/")


class _Env:
    """Typed reads of an environment mapping; blank counts as unset."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(name, "is required but not set")
        return value

    def split(self, name: str, separator: str) -> tuple[str, ...]:
        return tuple(part.strip() for part in (self.optional(name) or "").split(separator) if part.strip())

    def flag(self, name: str) -> bool:
        """``true`` or ``false`` (any case); unset is false."""
        value = (self.optional(name) or "false").lower()
        if value not in ("true", "false"):
            raise ConfigError(name, f"must be true or false, not {value!r}")
        return value == "true"

    def positive_int(self, name: str, default: int) -> int:
        value = self.optional(name)
        if value is None:
            return default
        try:
            number = int(value)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, not {value!r}") from None
        if number <= 0:
            raise ConfigError(name, "must be positive")
        return number
