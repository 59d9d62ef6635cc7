"""Certificate mode on the local stack (``ALIPAY_KEY_MODE=cert``): a local root and the certificates it issues.

Shaped like Alipay's: a root bundle holding an RSA root and an ECDSA-signed one (Alipay's bundle also holds SM2 and
ECC roots, which the root SN skips); an intermediate CA under the RSA root that issues Alipay's public-key
certificate (for the sandbox's key pair, written leaf first, then the intermediate, as Alipay ships it) and the app's
certificate (for the KMS key's public key: the certificate Alipay would issue from ``python -m ops csr``'s CSR).
New certificates every run: the emulated KMS key is new every run. The CA keys are never written anywhere.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT_CERT_FILE = "alipay_root_cert.pem"
ALIPAY_CERT_FILE = "alipay_sandbox_cert.pem"
APP_CERT_FILE = "app_cert.pem"

_PEM = serialization.Encoding.PEM


def _name(common_name: str, unit: str = "Local Certification Authority") -> x509.Name:
    # Encoded C, O, OU, CN: RFC 4514 renders it CN=...,OU=...,O=...,C=..., as Alipay's issuers read.
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Alipay Sandbox (local)"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


@dataclass(frozen=True, slots=True)
class LocalPki:
    """PEM texts: the root bundle, Alipay's certificate (leaf + intermediate), the app's certificate."""

    root_bundle: str
    alipay_cert: str
    app_cert: str

    def write(self, state_dir: Path) -> None:
        for name, text in (
            (ROOT_CERT_FILE, self.root_bundle),
            (ALIPAY_CERT_FILE, self.alipay_cert),
            (APP_CERT_FILE, self.app_cert),
        ):
            (state_dir / name).write_text(text, encoding="ascii")


class LocalCa:
    """A root bundle (an RSA root and an ECDSA-signed one) and an intermediate CA under the RSA root that issues
    leaf certificates. Its keys live in this object only."""

    def __init__(self, *, now: datetime | None = None, serial_base: int | None = None) -> None:
        self.start = (now or datetime.now(UTC)) - timedelta(days=1)
        # Random, as a real CA's: an SN is md5(issuer + serial), and two local CAs share their names.
        self._serial = serial_base if serial_base is not None else secrets.randbits(62) << 8
        root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        root_name = _name("Alipay Sandbox Root CA R1")
        self.root = self._issue(root_name, root_key.public_key(), root_name, root_key, days=3650, ca=True)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        ec_name = _name("Alipay Sandbox Root CA E1")
        self.ec_root = self._issue(ec_name, ec_key.public_key(), ec_name, ec_key, days=3650, ca=True)
        self._ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._ca_name = _name("Alipay Sandbox Class 2 CA R1")
        self.intermediate = self._issue(
            self._ca_name, self._ca_key.public_key(), root_name, root_key, days=1825, ca=True
        )

    @property
    def root_bundle(self) -> str:
        return _pem(self.root, self.ec_root)

    def alipay_cert(self, public_key: rsa.RSAPublicKey, *, days: int = 365, start: datetime | None = None) -> str:
        """Alipay's public-key certificate for ``public_key``: the leaf, then the intermediate."""
        leaf = self._issue(
            _name("Alipay Sandbox Gateway", "Alipay"), public_key, self._ca_name, self._ca_key, days=days, start=start
        )
        return _pem(leaf, self.intermediate)

    def app_cert(self, public_key: rsa.RSAPublicKey, app_id: str, *, days: int = 365) -> str:
        """The app's public-key certificate for ``public_key`` (the KMS key's)."""
        return _pem(
            self._issue(_name(app_id, "Alipay Open Platform"), public_key, self._ca_name, self._ca_key, days=days)
        )

    def _issue(
        self,
        subject: x509.Name,
        public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        issuer: x509.Name,
        issuer_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
        *,
        days: int,
        ca: bool = False,
        start: datetime | None = None,
    ) -> x509.Certificate:
        self._serial += 1
        begin = start or self.start
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(self._serial)
            .not_valid_before(begin)
            .not_valid_after(begin + timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(issuer_key, hashes.SHA256())
        )


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(_PEM).decode("ascii") for c in certs)


def issue_local_pki(
    alipay_public_key: rsa.RSAPublicKey, app_public_key: rsa.RSAPublicKey, *, app_id: str, now: datetime | None = None
) -> LocalPki:
    """A fresh local PKI for the sandbox's key pair and the app's (KMS) key."""
    ca = LocalCa(now=now)
    return LocalPki(
        root_bundle=ca.root_bundle,
        alipay_cert=ca.alipay_cert(alipay_public_key),
        app_cert=ca.app_cert(app_public_key, app_id),
    )
