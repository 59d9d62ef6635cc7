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


class ExpiredCertificate(VerificationError):
    """The Alipay certificate a message is verified with (or, for a notification, every one) is not valid now."""

    check = "cert_validity"


class UntrustedCertificate(VerificationError):
    """An Alipay certificate does not chain, by signature, to the configured root bundle."""

    check = "cert_chain"


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


# --- Antom (docs/protocols.md §7): the checks of its signed headers ------------------------------------------


class MissingHeader(VerificationError):
    """An Antom message lacks a header its signature needs (``client-id``, the time, ``signature``)."""

    check = "missing_header"

    def __init__(self, header: str) -> None:
        super().__init__(f"missing header {header}")
        self.header = header


class ClientIdMismatch(VerificationError):
    """An Antom message names another merchant's ``client-id``."""

    check = "client_id"


class UnsupportedAlgorithm(VerificationError):
    """An Antom ``signature`` header names an algorithm other than ``RSA256`` (downgrade guard)."""

    check = "algorithm"


class MalformedSignature(VerificationError):
    """An Antom ``signature`` header that cannot be read (no ``signature=``, duplicates, not base64)."""

    check = "malformed_signature"


# --- gateway replies that report a failure: not a failed check, Alipay's own answer ----------------------------


class ErrorReply(AlipayError):
    """A gateway reply reporting an error that is neither a result nor worth retrying; ``code``/``sub_code`` name it."""

    def __init__(self, code: str, sub_code: str | None = None, message: str = "") -> None:
        detail = f"{code} {sub_code}" if sub_code else code
        super().__init__(f"Alipay answered {detail}" + (f": {message}" if message else ""))
        self.code = code
        self.sub_code = sub_code
        self.message = message


class RetryableReply(AlipayError):
    """A gateway reply asking for the same request again (``20000``, ``ACQ.SYSTEM_ERROR``, ``SYSTEM_EXCEPTION``)."""


class RefundRefusal(AlipayError):
    """Alipay refused a refund for good; ``sub_code`` names why (``40004`` + sub_code, or a legacy refusal error)."""

    def __init__(self, sub_code: str, message: str = "") -> None:
        super().__init__(f"Alipay refused the refund: {sub_code}" + (f": {message}" if message else ""))
        self.sub_code = sub_code
        self.message = message
