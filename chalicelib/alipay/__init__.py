"""The Alipay app-pay protocols, both of them: pure functions over bytes and strings (no AWS, clock or I/O).

Open Platform ``alipay.trade.app.pay`` (RSA2) lives in ``openapi``; legacy Alipay Global
``mobile.securitypay.pay`` in ``mapi``; notifications of both in ``notifications``.
"""

from __future__ import annotations

from .errors import (
    AlipayError,
    CharsetError,
    InvalidField,
    KeyFormatError,
    MalformedMessage,
    MissingSignature,
    NotSuccessful,
    OrderError,
    OrderMismatch,
    SignatureEncodingError,
    SignatureMismatch,
    SignTypeMismatch,
    UnknownCertificate,
    VerificationError,
)
from .keys import load_private_key, load_public_key, public_key_base64
from .notifications import AlipayProtocol, Notification, check_addressee, verify_notification
from .signing import AlipayPublicKeys, LocalKeySigner, Signer, SignType

__all__ = [
    "AlipayError",
    "AlipayProtocol",
    "AlipayPublicKeys",
    "CharsetError",
    "InvalidField",
    "KeyFormatError",
    "LocalKeySigner",
    "MalformedMessage",
    "MissingSignature",
    "NotSuccessful",
    "Notification",
    "OrderError",
    "OrderMismatch",
    "SignType",
    "SignTypeMismatch",
    "SignatureEncodingError",
    "SignatureMismatch",
    "Signer",
    "UnknownCertificate",
    "VerificationError",
    "check_addressee",
    "load_private_key",
    "load_public_key",
    "public_key_base64",
    "verify_notification",
]
