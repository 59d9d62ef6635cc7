"""A stage's deployment settings: CDK context (``-c stage=prod``, ``-c user_pool_arn=...``) and the Chalice config."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from stacks import topology

APP_NAME = topology.APP_NAME
# Stages whose data outlives a mistaken `cdk destroy`: deletion protection, retained table, user pool and logs.
PRODUCTION_STAGES = frozenset({"prod"})
ORDERS_AUTH_MODES = ("cognito", "none")
# Who sets the region's API Gateway logging role (AWS::ApiGateway::Account, one per account and region): this stack,
# or another stack or an administrator before it (stacks/perimeter.py api_gateway_account).
API_GATEWAY_ACCOUNT_ROLE_MODES = ("create", "existing")
# WAF's bounds for a rate-based rule's limit (requests per address per evaluation window).
WAF_RATE_LIMIT_RANGE = (10, 2_000_000_000)
# SQS event sources scale to at most this many concurrent consumers (AWS: 2 to 1000).
MAX_CONCURRENCY_RANGE = (2, 1000)
# CloudWatch Logs accepts only these retention periods (days).
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922)

_STAGE = re.compile(r"[a-z][a-z0-9]{0,15}")
_ARN = re.compile(r"arn:aws[a-z-]*:[a-z0-9-]+:[a-z0-9-]*:\d{12}:\S+")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
_HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+")
_ACCOUNT_ID = re.compile(r"\d{12}")
# A hosted sign-in callback: https, an app's own scheme (myapp://...), or http on localhost for development.
_CALLBACK_URL = re.compile(r"https://\S+|http://localhost(:\d+)?(/\S*)?|(?!https?://)[a-z][a-z0-9+.-]*://\S+")
# return_url (chalicelib/alipay/params.py check_return_url): Alipay appends its signed query, so none of its own.
_RETURN_URL = re.compile(r"https://[^\s?#\x00-\x1f\x7f]+")
MAX_RETURN_URL_LENGTH = 256

# The wire protocols a stage may run (ALIPAY_PROTOCOL in .chalice/config.json; one per stage).
PROTOCOLS = ("openapi", "mapi", "antom")
ANTOM = "antom"
# Antom's client id as its dashboard shows it (SANDBOX_5Y036S2Y1W4D03493 in test mode): sent in every request's
# client-id header and checked in every notification's, so it is a setting, not a secret.
_ANTOM_CLIENT_ID = re.compile(r"[A-Za-z0-9_]{1,64}")
# Antom's gateways are base URLs (the /ams/api/v1/... paths are appended): https://open-sea-global.alipay.com (Asia,
# the default), open-na-global (North America), open-de-global (Europe). No path, query or fragment.
_ANTOM_GATEWAY = re.compile(r"https://open-[a-z0-9-]+\.alipay\.com/?")
# Antom's paymentMethodType values (ALIPAY_CN, ALIPAY_HK, Alipay+ wallets): what ANTOM_PAYMENT_METHODS may list.
_ANTOM_PAYMENT_METHOD = re.compile(r"[A-Z][A-Z0-9_]{1,63}")


class SettingsError(ValueError):
    """A context value or the Chalice config is wrong for a deployment; the message names what to fix."""


@dataclass(frozen=True)
class StageSettings:
    """Everything a stage's stack is configured with; ``from_context`` validates it as a whole."""

    stage: str
    production: bool
    # "cognito": a Cognito user pool authorizer on the buyer routes; "none": none (never on a production stage)
    orders_auth: str
    user_pool_arn: str | None  # the app's existing user pool; None creates one in the stack
    user_pool_client_ids: tuple[str, ...]  # with user_pool_arn: its app clients (the function checks the audience)
    throttle_rate: int  # API stage steady-state requests per second
    throttle_burst: int
    log_retention_days: int
    alarm_email: str | None
    public_key_readers: tuple[str, ...]  # IAM principals allowed kms:GetPublicKey (never kms:Sign)
    notify_url: str | None  # None: the deployed webhook URL (a custom domain sets it)
    return_url: str | None  # web checkout's default return_url; None: the deployed GET /alipay/return
    # Hosts a web order's own return_url may name (RETURN_URL_HOSTS); none: a request may not send one at all, only the
    # default is used. Deployed stages always run with STRICT_RETURN_URLS (https only, listed hosts only).
    return_url_hosts: tuple[str, ...]
    # Other accounts (12-digit ids) or their roles (ARNs) the API's resource policy admits to the merchant routes;
    # same-account roles need only the MerchantInvokePolicy output. Empty: the API has no resource policy.
    merchant_principals: tuple[str, ...]
    # IAM roles that may move notifications from the DLQ back to the queue (`python -m ops redrive`, run with the
    # operator's own credentials); no one else may read the DLQ or send to the queue but the webhook.
    redrive_roles: tuple[str, ...]
    # IAM roles the signing key's policy lets call kms:Sign for `python -m ops csr` (certificate mode). Whoever may sign
    # a CSR may sign anything with the merchant key: empty by default, set for the occasion and deployed away after
    # (docs/deploy.md, "Certificate mode").
    csr_signers: tuple[str, ...]
    # The perimeter (stacks/perimeter.py). Per-address limits over WAF's 5-minute window: Alipay's paths are sized from
    # peak payment volume (Alipay posts from few addresses), buyers' from carrier NAT (many buyers per address).
    waf_alipay_rate_limit: int
    waf_buyer_rate_limit: int
    waf_merchant_rate_limit: int
    # API Gateway's per-route throttles (requests per second, burst twice that): each caller has its own budget.
    alipay_throttle_rate: int
    buyer_throttle_rate: int
    merchant_throttle_rate: int
    api_gateway_account_role: str  # "create": this stack sets the region's API Gateway logging role; "existing": not
    webhook_reserved_concurrency: int  # 0: none (an account whose concurrency quota is 10 cannot reserve any)
    consumer_max_concurrency: int  # the SQS event source's ceiling, instead of reserved concurrency
    cognito_callback_urls: tuple[str, ...]  # hosted sign-in (code flow only); none: the client has no OAuth at all
    cognito_threat_protection: bool  # Cognito's threat protection (enforced); needs the user pool's Plus plan

    @property
    def stack_name(self) -> str:
        return f"{APP_NAME}-{self.stage}"

    @property
    def parameter_path(self) -> str:
        """The SSM path of the stage's Alipay settings (ids, Alipay's public keys, notify and return URLs)."""
        return f"/{APP_NAME}/{self.stage}"

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> StageSettings:
        """Read and check the context; ``SettingsError`` names the first bad value."""
        stage = _text(context, "stage") or "dev"
        if not _STAGE.fullmatch(stage):
            raise SettingsError(f"stage: {stage!r} must be lowercase letters and digits, at most 16, e.g. prod")
        production = _flag(context, "production", default=stage in PRODUCTION_STAGES)

        orders_auth = _text(context, "orders_auth") or "cognito"
        if orders_auth not in ORDERS_AUTH_MODES:
            raise SettingsError(f"orders_auth: {orders_auth!r} must be one of {', '.join(ORDERS_AUTH_MODES)}")
        user_pool_arn = _text(context, "user_pool_arn")
        if user_pool_arn is not None and not (_ARN.fullmatch(user_pool_arn) and ":userpool/" in user_pool_arn):
            raise SettingsError(f"user_pool_arn: {user_pool_arn!r} is not a Cognito user pool ARN")
        if user_pool_arn is not None and orders_auth != "cognito":
            raise SettingsError("user_pool_arn: only with orders_auth=cognito")
        client_ids = _list(context, "user_pool_client_ids")
        if user_pool_arn is not None and not client_ids:
            raise SettingsError(
                "user_pool_client_ids: required with user_pool_arn: the app clients whose ID tokens buyers call with"
            )
        if user_pool_arn is None and client_ids:
            raise SettingsError("user_pool_client_ids: only with user_pool_arn (a pool made here has its own client)")
        if production and orders_auth == "none":
            raise SettingsError(
                f"orders_auth: 'none' is refused on the production stage {stage!r}: every buyer route "
                f"({topology.BUYER_PREFIX}...) would be open to anyone; use cognito (the default)"
            )

        readers = _list(context, "public_key_readers")
        for reader in readers:
            if not _ARN.fullmatch(reader) or ":iam::" not in reader:
                raise SettingsError(f"public_key_readers: {reader!r} is not an IAM role or user ARN")

        merchant_principals = _list(context, "merchant_principals")
        for principal in merchant_principals:
            if not (_ACCOUNT_ID.fullmatch(principal) or _ROLE_ARN.fullmatch(principal)):
                raise SettingsError(
                    f"merchant_principals: {principal!r} is neither a 12-digit account id nor an IAM role ARN"
                )
        redrive_roles = _list(context, "redrive_roles")
        for role in redrive_roles:
            if not _ROLE_ARN.fullmatch(role):
                raise SettingsError(f"redrive_roles: {role!r} is not an IAM role ARN")

        csr_signers = _list(context, "csr_signers")
        for role in csr_signers:
            if not _ROLE_ARN.fullmatch(role):
                raise SettingsError(f"csr_signers: {role!r} is not an IAM role ARN")

        retention = _number(context, "log_retention_days", 365 if production else 30)
        if retention not in LOG_RETENTION_DAYS:
            raise SettingsError(f"log_retention_days: {retention} is not one CloudWatch Logs accepts")

        notify_url = _text(context, "notify_url")
        if notify_url is not None and not notify_url.startswith("https://"):
            raise SettingsError("notify_url: must be an https:// URL (Alipay posts notifications there)")
        return_url = _text(context, "return_url")
        if return_url is not None and not (
            _RETURN_URL.fullmatch(return_url) and len(return_url) <= MAX_RETURN_URL_LENGTH
        ):
            raise SettingsError(
                f"return_url: must be an https:// URL of at most {MAX_RETURN_URL_LENGTH} characters without a query"
                " or fragment (Alipay appends its signed parameters to it)"
            )

        api_gateway_account_role = _text(context, "api_gateway_account_role") or "create"
        if api_gateway_account_role not in API_GATEWAY_ACCOUNT_ROLE_MODES:
            raise SettingsError(
                f"api_gateway_account_role: {api_gateway_account_role!r} must be one of "
                f"{', '.join(API_GATEWAY_ACCOUNT_ROLE_MODES)}"
            )
        callbacks = _list(context, "cognito_callback_urls")
        for url in callbacks:
            if not _CALLBACK_URL.fullmatch(url):
                raise SettingsError(
                    f"cognito_callback_urls: {url!r} must be https:// (or the app's own scheme, e.g. myapp://callback);"
                    " plain http only for localhost"
                )
        if callbacks and (orders_auth != "cognito" or user_pool_arn is not None):
            raise SettingsError(
                "cognito_callback_urls: only for the user pool the stack creates "
                "(orders_auth=cognito, no user_pool_arn)"
            )
        consumer_max_concurrency = _number(context, "consumer_max_concurrency", 5)
        if not MAX_CONCURRENCY_RANGE[0] <= consumer_max_concurrency <= MAX_CONCURRENCY_RANGE[1]:
            raise SettingsError(
                f"consumer_max_concurrency: {consumer_max_concurrency} must be {MAX_CONCURRENCY_RANGE[0]} to "
                f"{MAX_CONCURRENCY_RANGE[1]}"
            )
        waf_limits = {
            name: _number(context, name, default)
            for name, default in (
                ("waf_alipay_rate_limit", 10_000),
                ("waf_buyer_rate_limit", 2_000),
                ("waf_merchant_rate_limit", 20_000),
            )
        }
        for name, limit in waf_limits.items():
            if not WAF_RATE_LIMIT_RANGE[0] <= limit <= WAF_RATE_LIMIT_RANGE[1]:
                raise SettingsError(f"{name}: {limit} must be at least {WAF_RATE_LIMIT_RANGE[0]} (WAF's minimum)")

        return_url_hosts = tuple(h.lower() for h in _list(context, "return_url_hosts"))
        for host in return_url_hosts:
            if not _HOST_NAME.fullmatch(host):
                raise SettingsError(f"return_url_hosts: {host!r} is not a host name (no scheme, port or path)")

        return cls(
            stage=stage,
            production=production,
            orders_auth=orders_auth,
            user_pool_arn=user_pool_arn,
            user_pool_client_ids=client_ids,
            throttle_rate=_number(context, "throttle_rate", 50),
            throttle_burst=_number(context, "throttle_burst", 100),
            log_retention_days=retention,
            alarm_email=_text(context, "alarm_email"),
            public_key_readers=readers,
            notify_url=notify_url,
            return_url=return_url,
            return_url_hosts=return_url_hosts,
            merchant_principals=merchant_principals,
            redrive_roles=redrive_roles,
            csr_signers=csr_signers,
            waf_alipay_rate_limit=waf_limits["waf_alipay_rate_limit"],
            waf_buyer_rate_limit=waf_limits["waf_buyer_rate_limit"],
            waf_merchant_rate_limit=waf_limits["waf_merchant_rate_limit"],
            alipay_throttle_rate=_number(context, "alipay_throttle_rate", 50),
            buyer_throttle_rate=_number(context, "buyer_throttle_rate", 25),
            merchant_throttle_rate=_number(context, "merchant_throttle_rate", 50),
            api_gateway_account_role=api_gateway_account_role,
            # Production keeps the webhook 5 instances nothing else can take; 0 turns it off (a small account quota).
            webhook_reserved_concurrency=_number(
                context, "webhook_reserved_concurrency", 5 if production else 0, allow_zero=True
            ),
            consumer_max_concurrency=consumer_max_concurrency,
            cognito_callback_urls=callbacks,
            cognito_threat_protection=_flag(context, "cognito_threat_protection", default=False),
        )


def check_chalice_stage(project_dir: Path, stage: str) -> None:
    """The stage must be a deployable stage of ``.chalice/config.json`` whose IAM roles the stack owns."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text(encoding="utf-8"))
    stages = config.get("stages", {})
    if stage == "local" or stage not in stages:
        deployable = sorted(name for name in stages if name != "local")
        raise SettingsError(f"stage: {stage!r} is not a deployable stage of .chalice/config.json ({deployable})")
    if stages[stage].get("manage_iam_role", config.get("manage_iam_role", True)) is not False:
        # Chalice would otherwise generate one shared role with wildcard resources for every function.
        raise SettingsError(f'.chalice/config.json: stage {stage!r} needs "manage_iam_role": false')


def chalice_environment(project_dir: Path, stage: str) -> dict[str, str]:
    """The stage's ``environment_variables`` (.chalice/config.json) over the global ones, as Chalice merges them."""
    config = json.loads((project_dir / ".chalice" / "config.json").read_text(encoding="utf-8"))
    merged = dict(config.get("environment_variables", {}))
    merged.update(config.get("stages", {}).get(stage, {}).get("environment_variables", {}))
    return {str(k): str(v) for k, v in merged.items()}


def signs_legacy(environment: Mapping[str, str]) -> bool:
    """Whether the stage signs with the legacy RSA (SHA1withRSA) key, which KMS cannot hold (the legacy protocol's
    default, or an Open Platform merchant on RSA): that key then lives in Secrets Manager."""
    protocol = environment.get("ALIPAY_PROTOCOL", "openapi")
    return environment.get("ALIPAY_SIGN_TYPE", "RSA" if protocol == "mapi" else "RSA2") == "RSA"


def check_legacy_key(environment: Mapping[str, str], stage: str, production: bool) -> None:
    """A production stage never takes the legacy key as a file: it would ride in the Lambda package."""
    if production and environment.get("MERCHANT_PRIVATE_KEY_FILE"):
        raise SettingsError(
            f".chalice/config.json: stage {stage!r} sets MERCHANT_PRIVATE_KEY_FILE: a production stage keeps the "
            "legacy merchant key in the stack's Secrets Manager secret (docs/deploy.md), never in the package"
        )


def stage_protocol(environment: Mapping[str, str]) -> str:
    """The stage's wire protocol, ``ALIPAY_PROTOCOL`` of its Chalice environment (openapi when unset)."""
    protocol = environment.get("ALIPAY_PROTOCOL", "").strip() or "openapi"
    if protocol not in PROTOCOLS:
        raise SettingsError(f".chalice/config.json: ALIPAY_PROTOCOL {protocol!r} must be one of {', '.join(PROTOCOLS)}")
    return protocol


def check_open_platform_only(environment: Mapping[str, str], protocol: str, stage: str) -> None:
    """Settings that only Open Platform's functions read: refused at synthesis on another protocol's stage, as the
    functions would refuse them at every cold start."""
    if protocol != "openapi" and environment.get("REQUIRE_TRANS_CURRENCY", "").strip().lower() == "true":
        raise SettingsError(
            f".chalice/config.json: stage {stage!r} (ALIPAY_PROTOCOL={protocol}) sets REQUIRE_TRANS_CURRENCY: "
            "it applies to Open Platform stages only (trans_currency is an Open Platform field)"
        )


def notify_path(protocol: str) -> str:
    """The path of the route the stage's notifications arrive at (the stack writes its URL into ``notify-url``)."""
    return topology.ANTOM_NOTIFY_PATH if protocol == ANTOM else topology.WEBHOOK_PATH


def check_antom_stage(environment: Mapping[str, str], settings: StageSettings) -> None:
    """An Antom stage's settings, checked at synthesis rather than at every cold start of a deployed function.

    ``ANTOM_CLIENT_ID`` is required (a stage variable: the one ``GetParameters`` call already reads its ten names);
    Antom signs RSA256 only, so neither the legacy key nor Open Platform's certificate mode applies; the gateway is one
    of Antom's regional base URLs; a ``notify_url`` (custom domain) must end with the Antom route, since the path of
    the registered URL is what Antom signs.
    """
    stage = settings.stage
    where = f".chalice/config.json: stage {stage!r} (ALIPAY_PROTOCOL=antom)"
    client_id = environment.get("ANTOM_CLIENT_ID", "").strip()
    if not client_id:
        raise SettingsError(f"{where} needs ANTOM_CLIENT_ID: the client id of Antom Dashboard > Developer")
    if not _ANTOM_CLIENT_ID.fullmatch(client_id):
        raise SettingsError(f"{where}: ANTOM_CLIENT_ID {client_id!r} is not a client id (letters, digits, _)")
    sign_type = environment.get("ALIPAY_SIGN_TYPE", "").strip()
    if sign_type and sign_type != "RSA2":
        raise SettingsError(f"{where}: ALIPAY_SIGN_TYPE {sign_type!r}: Antom signs RSA256 (RSA2) only")
    for variable in ("MERCHANT_PRIVATE_KEY_FILE", "MERCHANT_PRIVATE_KEY_SECRET"):
        if environment.get(variable, "").strip():
            raise SettingsError(f"{where} sets {variable}: Antom's merchant key is the stack's KMS key")
    if environment.get("ALIPAY_KEY_MODE", "key").strip() not in ("", "key"):
        raise SettingsError(f"{where}: ALIPAY_KEY_MODE: certificate mode is Open Platform's, not Antom's")
    if settings.csr_signers:
        raise SettingsError("csr_signers: certificate mode (a CSR for the merchant key) is Open Platform's only")
    gateway = environment.get("ALIPAY_GATEWAY_URL", "").strip()
    if gateway and not _ANTOM_GATEWAY.fullmatch(gateway):
        raise SettingsError(
            f"{where}: ALIPAY_GATEWAY_URL {gateway!r} must be an Antom base URL without a path, e.g. "
            "https://open-sea-global.alipay.com (or open-na-global, open-de-global)"
        )
    methods = [m.strip() for m in environment.get("ANTOM_PAYMENT_METHODS", "").split(",") if m.strip()]
    bad = [m for m in methods if not _ANTOM_PAYMENT_METHOD.fullmatch(m)]
    if bad:
        raise SettingsError(f"{where}: ANTOM_PAYMENT_METHODS: not payment method types: {', '.join(bad)}")
    if settings.notify_url is not None:
        url = urlsplit(settings.notify_url)
        if url.fragment or not url.path.endswith(topology.ANTOM_NOTIFY_PATH):
            raise SettingsError(
                f"notify_url: {settings.notify_url!r} must be the URL of POST {topology.ANTOM_NOTIFY_PATH} on this "
                "stage (its path is what Antom signs), without a fragment"
            )


def chalice_timeout(project_dir: Path, stage: str, function_name: str) -> int:
    """A function's Lambda timeout in seconds, looked up as Chalice does (function, stage, global, default)."""
    from chalice.config import Config
    from chalice.constants import DEFAULT_LAMBDA_TIMEOUT

    config = json.loads((project_dir / ".chalice" / "config.json").read_text(encoding="utf-8"))
    timeout = Config(chalice_stage=stage, function_name=function_name, config_from_disk=config).lambda_timeout
    return int(timeout or DEFAULT_LAMBDA_TIMEOUT)


def _text(context: Mapping[str, Any], name: str) -> str | None:
    value = context.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _list(context: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A comma-separated context value, without blanks or repeats, in its order."""
    items = (item.strip() for item in (_text(context, name) or "").split(","))
    return tuple(dict.fromkeys(item for item in items if item))


def _flag(context: Mapping[str, Any], name: str, *, default: bool) -> bool:
    value = context.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise SettingsError(f"{name}: {value!r} must be true or false")
    return text == "true"


def _number(context: Mapping[str, Any], name: str, default: int, *, allow_zero: bool = False) -> int:
    value = context.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise SettingsError(f"{name}: {value!r} must be a whole number") from None
    if number < 0 or (number == 0 and not allow_zero):
        raise SettingsError(f"{name}: must be {'zero or more' if allow_zero else 'positive'}")
    return number
