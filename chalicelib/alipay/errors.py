"""Typed errors of the protocol package: each names the check that failed."""

from __future__ import annotations


class AlipayError(Exception):
    """Base of every protocol error."""


class KeyFormatError(AlipayError, ValueError):
    """A key or certificate could not be loaded (wrong format, wrong kind, not RSA)."""


class OrderError(AlipayError, ValueError):
    """An order parameter is invalid; ``field`` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class VerificationError(AlipayError):
    """Something Alipay sent (notification, result, gateway response) failed a check.

    ``check`` is a stable machine-readable name of the failed check, used for metrics and HTTP mapping.
    """

    check = "verification"

    def __init__(self, message: str) -> None:
        super().__init__(message)


class MalformedMessage(VerificationError):
    """The body is not a well-formed message (form syntax, duplicates, percent-encoding, JSON)."""

    check = "malformed"


class CharsetError(VerificationError):
    """The declared charset is unknown, or the body does not decode in it."""

    check = "charset"


class MissingSignature(VerificationError):
    """No ``sign`` was sent."""

    check = "missing_sign"


class SignatureEncodingError(VerificationError):
    """``sign`` is not strict base64."""

    check = "sign_encoding"


class SignTypeMismatch(VerificationError):
    """The message's ``sign_type`` is not the one the merchant configured (downgrade guard)."""

    check = "sign_type"


class SignatureMismatch(VerificationError):
    """The signature does not verify with any configured Alipay public key."""

    check = "signature"


class UnknownCertificate(VerificationError):
    """A response names an ``alipay_cert_sn`` for which no certificate is configured."""

    check = "cert_sn"


class InvalidField(VerificationError):
    """A signed message lacks a required field or carries an unusable value."""

    check = "field"


class NotSuccessful(VerificationError):
    """A correctly signed result or response that reports failure (``success!="true"``, code != 10000)."""

    check = "not_successful"


class OrderMismatch(VerificationError):
    """A correctly signed message that does not belong to the expected order or merchant."""

    check = "mismatch"

    def __init__(self, field: str, expected: object, actual: object) -> None:
        super().__init__(f"{field} mismatch: expected {expected!r}, got {actual!r}")
        self.field = field
