"""RSA keys in every format merchants hold them: PEM PKCS#1, PKCS#8, SPKI, and the key tool's bare base64."""

from __future__ import annotations

import binascii
import re

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import KeyFormatError

RSAPrivateKey = rsa.RSAPrivateKey
RSAPublicKey = rsa.RSAPublicKey

_MIN_BITS = 1024  # the published test vectors use 1024-bit keys; real merchant keys are 2048
_WHITESPACE = re.compile(rb"\s+")


def _as_bytes(data: str | bytes) -> bytes:
    raw = data.encode("ascii", "strict") if isinstance(data, str) else data
    return raw.strip()


def _bare_der(raw: bytes) -> bytes:
    """Decode the key tool's single-line (or wrapped) base64 body, strictly."""
    try:
        return binascii.a2b_base64(_WHITESPACE.sub(b"", raw), strict_mode=True)
    except binascii.Error as exc:
        raise KeyFormatError("not a PEM key and not valid base64 DER") from exc


def _check_rsa_size(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> None:
    if key.key_size < _MIN_BITS:
        raise KeyFormatError(f"RSA key of {key.key_size} bits is too small (minimum {_MIN_BITS})")


def load_private_key(data: str | bytes) -> rsa.RSAPrivateKey:
    """Load an RSA private key: PEM (PKCS#1 or PKCS#8, unencrypted) or bare base64 DER (PKCS#8 or PKCS#1)."""
    try:
        raw = _as_bytes(data)
    except UnicodeEncodeError as exc:
        raise KeyFormatError("key text is not ASCII") from exc
    if not raw:
        raise KeyFormatError("empty key")
    from cryptography.hazmat.primitives import serialization  # ~30 ms to import: paid once, when a key loads

    key: object
    try:
        if raw.startswith(b"-----BEGIN"):
            if b"PUBLIC KEY" in raw or b"CERTIFICATE" in raw:
                raise KeyFormatError("expected a private key but found a public key or certificate")
            key = serialization.load_pem_private_key(raw, password=None)
        else:
            key = serialization.load_der_private_key(_bare_der(raw), password=None)
    except KeyFormatError:
        raise
    except TypeError as exc:
        raise KeyFormatError("encrypted private keys are not supported; export it unencrypted") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not an RSA private key in PEM or base64 DER: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise KeyFormatError(f"expected an RSA private key, got {type(key).__name__}")
    _check_rsa_size(key)
    return key


_PRIVATE_AS_PUBLIC = (
    "expected a public key but found a private key (Alipay's public key is needed here, not your own key)"
)


def _is_private_der(der: bytes) -> bool:
    """Whether DER that is no public key is a private key: in bare base64 the two look alike to a human."""
    from cryptography.hazmat.primitives import serialization

    try:
        serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        return False
    return True


def load_public_key(data: str | bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key: PEM SPKI or PKCS#1, a PEM certificate, or bare base64 DER (SPKI or PKCS#1)."""
    try:
        raw = _as_bytes(data)
    except UnicodeEncodeError as exc:
        raise KeyFormatError("key text is not ASCII") from exc
    if not raw:
        raise KeyFormatError("empty key")
    if b"PRIVATE KEY" in raw[:64]:
        raise KeyFormatError(_PRIVATE_AS_PUBLIC)
    from cryptography.hazmat.primitives import serialization

    key: object
    try:
        if raw.startswith(b"-----BEGIN CERTIFICATE"):
            from cryptography import x509

            key = x509.load_pem_x509_certificate(raw).public_key()
        elif raw.startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(raw)
        else:
            der = _bare_der(raw)
            try:
                key = serialization.load_der_public_key(der)
            except (ValueError, UnsupportedAlgorithm):
                if _is_private_der(der):
                    raise KeyFormatError(_PRIVATE_AS_PUBLIC) from None
                raise
    except KeyFormatError:
        raise
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise KeyFormatError(f"not an RSA public key in PEM or base64 DER: {exc}") from exc
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError(f"expected an RSA public key, got {type(key).__name__}")
    _check_rsa_size(key)
    return key


def public_key_spki_der(key: rsa.RSAPublicKey) -> bytes:
    """DER SubjectPublicKeyInfo of ``key``."""
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def public_key_base64(key: rsa.RSAPublicKey) -> str:
    """The bare single-line base64 SPKI string that Alipay's portal accepts."""
    return binascii.b2a_base64(public_key_spki_der(key), newline=False).decode("ascii")


def same_public_key(a: rsa.RSAPublicKey, b: rsa.RSAPublicKey) -> bool:
    """Whether two public keys are the same key."""
    return a.public_numbers() == b.public_numbers()
