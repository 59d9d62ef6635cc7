"""Certificate mode (Open Platform): certificate serial numbers and keys taken from Alipay certificates."""

from __future__ import annotations

import hashlib
import re

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import KeyFormatError

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
# PKCS#1 signature algorithms (sha1/sha256/...WithRSAEncryption) share this OID arc; Alipay's root SN
# covers only RSA-signed certificates in the bundle (the SM2/ECC ones are skipped).
_RSA_SIGNATURE_ARC = "1.2.840.113549.1.1."


def load_certificates(data: str | bytes) -> list[x509.Certificate]:
    """Every PEM certificate in ``data``, in order."""
    # UTF-8, not ASCII: text outside the PEM blocks (e.g. a "Bag Attributes" friendlyName) may be non-ASCII.
    raw = data.encode("utf-8") if isinstance(data, str) else data
    blocks = _PEM_CERT.findall(raw)
    if not blocks:
        raise KeyFormatError("no PEM certificate found")
    try:
        return [x509.load_pem_x509_certificate(block) for block in blocks]
    except ValueError as exc:
        raise KeyFormatError(f"invalid certificate: {exc}") from exc


def cert_sn(cert: x509.Certificate) -> str:
    """``md5_hex(issuer_DN_rfc4514 + decimal(serial))``: the SN Alipay uses to name a certificate."""
    material = cert.issuer.rfc4514_string() + str(cert.serial_number)
    return hashlib.md5(material.encode("utf-8"), usedforsecurity=False).hexdigest()


def app_cert_sn(data: str | bytes) -> str:
    """``app_cert_sn`` of the merchant's application public-key certificate (the first in ``data``)."""
    return cert_sn(load_certificates(data)[0])


def alipay_root_cert_sn(data: str | bytes) -> str:
    """``alipay_root_cert_sn``: the SNs of the bundle's RSA-signed certificates, joined with ``_``."""
    certs = load_certificates(data)
    sns = [cert_sn(c) for c in certs if c.signature_algorithm_oid.dotted_string.startswith(_RSA_SIGNATURE_ARC)]
    if not sns:
        raise KeyFormatError("the root bundle holds no RSA-signed certificate")
    return "_".join(sns)


def public_key_from_certificate(data: str | bytes) -> tuple[str, rsa.RSAPublicKey]:
    """The SN and RSA public key of an Alipay public-key certificate (the first in ``data``)."""
    cert = load_certificates(data)[0]
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError("the certificate's key is not RSA")
    return cert_sn(cert), key
