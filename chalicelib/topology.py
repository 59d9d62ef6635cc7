"""Names and keys the Lambda code, the CDK stack (``infra/``) and the local stack (``devstack/``) must agree on.

One source: ``infra/stacks/`` and ``devstack/`` import these, never spell them again. Renaming one here renames it
everywhere at once; for a deployed stage that is a migration (docs/operations.md, "Changing the table"), not a
rename. Pure constants: importing this module imports nothing else.
"""

from __future__ import annotations

from typing import Final

APP_NAME: Final = "alipay-global"

# --- the orders table (one table: orders, idempotency records, quarantined notifications) ---------------------
PARTITION_KEY: Final = "pk"
TTL_ATTRIBUTE: Final = "expires_at"
# The sparse index of orders still waiting for payment: only an order in WAIT_BUYER_PAY carries its two keys, and
# every write that moves the order on removes them, so reconciliation queries the waiting orders, never the table.
WAITING_INDEX: Final = "waiting"
WAITING_KEY: Final = "waiting"
WAITING_SINCE: Final = "waiting_since"
# The same index's second partition: a paid order with a refund Alipay has not confirmed yet carries WAITING_KEY =
# this value and WAITING_SINCE = its oldest pending refund's requested_at, so the refund sweep finds it with a Query.
REFUND_PENDING_KEY: Final = "REFUND_PENDING"
# The sparse listing index: a buyer's orders newest first (``buyer#<sub>``), and the catalogue (``catalogue``).
# Added after the waiting index: on a deployed table it is one index change, its own deploy (docs/deploy.md).
LISTING_INDEX: Final = "listing"
LISTING_KEY: Final = "listing"
LISTING_SORT: Final = "listing_sort"
# The stream is the outbox: events are derived from the old and the new image, so it must carry both.
STREAM_VIEW_TYPE: Final = "NEW_AND_OLD_IMAGES"

# --- the notifications queue ------------------------------------------------------------------------------
# A notification the consumer failed this many times is poison: to the DLQ, an alarm, `python -m ops redrive`.
MAX_RECEIVE_COUNT: Final = 5

# --- events --------------------------------------------------------------------------------------------------
EVENT_SOURCE: Final = "alipay-global"  # the ``source`` of every event the relay publishes
# A deployed stage's bus also writes every event to this log group (``.format(stage=...)``): `ops events --follow`.
EVENTS_LOG_GROUP: Final = "/alipay-global/{stage}/events"

# --- the merchant key --------------------------------------------------------------------------------------
# Alipay's RSA2 is SHA256withRSA, PKCS#1 v1.5: the only algorithm the KMS key is used with (and allowed to be).
SIGNING_ALGORITHM: Final = "RSASSA_PKCS1_V1_5_SHA_256"
SIGNING_KEY_SPEC: Final = "RSA_2048"

# --- a deployed stage's Alipay settings in SSM Parameter Store ---------------------------------------------
# Under the stage's path (/alipay-global/prod): parameter name -> the environment variable it sets. Read once per
# container, at cold start, in one GetParameters call: at most 10 names, and these are 10 (an eleventh costs every cold
# start a second call). infra/ creates notify-url and return-url. The three certificate parameters (certificate mode,
# ALIPAY_KEY_MODE=cert) are PEM text in the Advanced tier (up to 8 KB; a certificate chain outgrows the Standard
# tier's 4 KB): docs/deploy.md, "Certificate mode".
SSM_PARAMETERS: Final = {
    "app-id": "ALIPAY_APP_ID",
    "seller-id": "ALIPAY_SELLER_ID",
    "partner-id": "ALIPAY_PARTNER_ID",
    "alipay-public-keys": "ALIPAY_PUBLIC_KEYS",
    "notify-url": "NOTIFY_URL",
    "return-url": "RETURN_URL",
    "result-page-url": "RESULT_PAGE_URL",
    "app-cert": "ALIPAY_APP_CERT",
    "alipay-certs": "ALIPAY_CERTS",
    "alipay-root-cert": "ALIPAY_ROOT_CERT",
}
# Of those, the ones the stack writes itself (its own URLs); every other one the operator puts, and a deploy never does.
STACK_WRITTEN_PARAMETERS: Final = frozenset({"notify-url", "return-url"})
# An Antom stage (ALIPAY_PROTOCOL=antom) reads the same names: alipay-public-keys holds Antom's public key(s),
# notify-url the URL of ANTOM_NOTIFY_PATH; app-id, seller-id, partner-id and the certificates are unused there. Its
# client id is no parameter (there is no eleventh slot): ANTOM_CLIENT_ID is a stage environment variable (not secret:
# every request carries it in its client-id header), docs/deploy.md "An Antom stage".
# An alarm fires when any configured certificate (app, Alipay's, the root bundle's) has fewer days left than this.
CERTIFICATE_EXPIRY_WARNING_DAYS: Final = 30
CERTIFICATE_DAYS_LEFT_METRIC: Final = "CertificateDaysLeft"

# --- routes that infra wires by path ------------------------------------------------------------------------
WEBHOOK_PATH: Final = "/alipay/notify"  # public; infra routes it to its own function, whose role can only enqueue
# Antom's notifications (JSON): public, on the same enqueue-only function as WEBHOOK_PATH.
ANTOM_NOTIFY_PATH: Final = "/antom/notify"
RETURN_PATH: Final = "/alipay/return"  # public: the browser's return from Alipay's cashier; its own function and role
# A buyer's report of the SDK result: its own function and role too (it may query Alipay, never refund or delete).
CLIENT_RESULT_PATH: Final = "/orders/{out_trade_no}/client-result"

# --- who may call what: one authorizer per path prefix (infra/ wires these, the local stack emulates them) ---
BUYER_PREFIX: Final = "/orders"  # a Cognito user pool authorizer: the buyer's ID token; identity = its ``sub``
MERCHANT_PREFIX: Final = "/merchant"  # AWS IAM (SigV4): the merchant's backend and operators; identity = the ARN
