"""Errors the use cases raise for their callers; ``chalicelib.http_errors`` maps each type to HTTP once."""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the use cases' own errors (the ports' errors live in ``ports``)."""

    out_request_no: str | None = None  # the refund this error interrupted, when it has a number (ports.PortError)


class BadRequest(ServiceError):
    """The request cannot be read at all (not JSON, not an object)."""


class InvalidUtf8(ServiceError):
    """A text body that is not valid UTF-8 (API Gateway hands the function U+FFFD in place of each bad byte)."""


class ValidationError(ServiceError):
    """One field of a request is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class UnsupportedMediaType(ServiceError):
    """The request's content type is not the one the endpoint reads."""


class PayloadTooLarge(ServiceError):
    """The body is larger than the endpoint accepts."""


class NotificationRejected(ServiceError):
    """A notification failed verification or is addressed to someone else; ``reason`` names the check."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class ReturnRejected(ServiceError):
    """A web return (the shopper's redirect from Alipay) failed verification; ``reason`` names the check."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class OrderNotFound(ServiceError):
    """No order has this ``out_trade_no``."""


class ProductNotFound(ServiceError):
    """No product has this sku."""


class Unauthenticated(ServiceError):
    """The caller's identity is not one this API accepts (e.g. a token issued to another app client)."""


class IdempotencyKeyReused(ServiceError):
    """The ``Idempotency-Key`` was already used for a different request body."""


class IdempotencyKeyInProgress(ServiceError):
    """A request with this ``Idempotency-Key`` is still in progress."""


class PoisonMessage(ServiceError, ValueError):
    """A queued message cannot be read; retrying cannot help, so it goes to the DLQ for an operator."""


class NotRefundable(ServiceError):
    """The order is not in a paid, refundable state (only ``TRADE_SUCCESS`` is)."""


class RefundRequestConflict(ServiceError):
    """The ``out_request_no`` was already used for a different refund of this order."""


class QuarantineEntryNotFound(ServiceError):
    """No quarantined entry has this id."""


class AlreadyResolved(ServiceError):
    """The quarantined entry was resolved already (replayed or dismissed): nothing was done again."""


class NotReplayable(ServiceError):
    """The kept evidence cannot be applied again through the verified path (it no longer verifies, or Alipay confirms
    nothing about the trade now)."""


class NotConfigured(ServiceError):
    """The stage lacks a resource this action needs (e.g. no DLQ configured)."""


class RefundNotFound(ServiceError):
    """The order has no refund with this ``out_request_no``."""


class OtherProtocolsRoute(ServiceError):
    """A webhook of another protocol than the stage's: nothing is listening there (``404 not_found``)."""


class NothingToReturn(ServiceError):
    """A quarantined entry holds no money to give back, or its order exists (a replay applies it once its cause is
    fixed; money that disagrees with the order is refunded in Alipay's portal)."""
