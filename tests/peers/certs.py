"""Throwaway certificates shaped like Alipay's: an app cert and a root bundle with an RSA- and an EC-signed cert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from tests.keygen import rsa_key


def _name(cn: str, ou: str, o: str, c: str) -> x509.Name:
    # Encoded C, O, OU, CN: its RFC 4514 string reads CN=...,OU=...,O=...,C=... like Alipay's issuers.
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, c),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, o),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def _cert(subject: x509.Name, issuer: x509.Name, serial: int, key: rsa.RSAPrivateKey,
          signer: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(signer, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


@cache
def alipay_style_bundle() -> tuple[str, str]:
    """``(app_cert_pem, root_bundle_pem)``; the bundle's certs are separated by a blank line."""
    ca = _name("Ant Financial Certification Authority Class 1 R1", "Certification Authority", "Ant Financial", "CN")
    app = _cert(_name("2021000123456789", "Alipay Open Platform", "Merchant", "CN"), ca,
                4010023400051234567890123456789, rsa_key("merchant"), rsa_key("alipay"))
    root_rsa = _cert(ca, ca, 6274294519396829237, rsa_key("alipay"), rsa_key("alipay"))
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_issuer = _name("Ant Financial Certification Authority E1", "Certification Authority", "Ant Financial", "CN")
    root_ec = _cert(ec_issuer, ec_issuer, 1234567890, rsa_key("other"), ec_key)
    sub = _name("Ant Financial Certification Authority Class 2 R1", "Certification Authority", "Ant Financial", "CN")
    intermediate = _cert(sub, ca, 4010023400050000000000000000001, rsa_key("other"), rsa_key("alipay"))
    return app, "\n".join([root_rsa, root_ec, intermediate])
