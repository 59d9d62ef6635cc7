"""How the AWS adapters read botocore's errors and turn them into the ports' errors."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from chalicelib.services.ports import Unavailable

CONDITION_FAILED = "ConditionalCheckFailedException"

# Codes AWS uses for "slow down" across DynamoDB, SQS, KMS and EventBridge: the caller should back off.
THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "KMS.ThrottlingException",  # SQS, when encrypting the message with KMS is throttled
    }
)

# Codes that mean the service failed on its side (a 5xx, or a 4xx that AWS documents as retryable).
SERVER_SIDE_CODES = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "InternalError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "KMSInternalException",
        "DependencyTimeoutException",
        "KeyUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "AWS.SimpleQueueService.InternalError",
    }
)

THROTTLED_RETRY_AFTER = 2  # seconds; a throttled dependency needs longer than a blip
FAILED_RETRY_AFTER = 1


@cache
def aws_errors() -> tuple[type[Exception], ...]:
    """botocore's error bases, for ``except``; imported on first use, when the client raising them has loaded them."""
    from botocore.exceptions import BotoCoreError, ClientError

    # All of botocore's errors, not only the transient ones: services must never see a vendor error, and
    # a misconfiguration (missing table, denied key) is better retried into a DLQ than turned into a 500.
    return (ClientError, BotoCoreError)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ``ClientError``; None for transport errors (connection, timeout) and others."""
    code = _error(exc).get("Code")
    return code if isinstance(code, str) else None


def error_response(exc: BaseException) -> Mapping[str, Any]:
    """The parsed error response of a ``ClientError`` (empty for other errors)."""
    response = getattr(exc, "response", None)
    return response if isinstance(response, Mapping) else {}


def is_throttling(exc: BaseException) -> bool:
    """Whether AWS asked us to slow down."""
    return error_code(exc) in THROTTLING_CODES


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same call soon can succeed: throttling, a 5xx, or no answer at all."""
    code = error_code(exc)
    if code is None:
        # Not a ClientError: the request never got an AWS answer (endpoint unreachable, timed out, connection reset).
        return True
    return code in THROTTLING_CODES or code in SERVER_SIDE_CODES or _http_status(exc) >= 500


def unavailable(exc: BaseException, operation: str) -> Unavailable:
    """The ``Unavailable`` to raise ``from exc`` when ``operation`` failed."""
    code = error_code(exc) or type(exc).__name__
    if is_throttling(exc):
        return Unavailable(f"{operation} throttled ({code})", retry_after=THROTTLED_RETRY_AFTER)
    kind = "failed transiently" if is_transient(exc) else "failed"
    return Unavailable(f"{operation} {kind} ({code})", retry_after=FAILED_RETRY_AFTER)


def _error(exc: BaseException) -> Mapping[str, Any]:
    error = error_response(exc).get("Error")
    return error if isinstance(error, Mapping) else {}


def _http_status(exc: BaseException) -> int:
    metadata = error_response(exc).get("ResponseMetadata")
    status = metadata.get("HTTPStatusCode") if isinstance(metadata, Mapping) else None
    return status if isinstance(status, int) else 0
