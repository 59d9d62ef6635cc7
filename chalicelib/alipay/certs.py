"""Certificate mode (Open Platform): certificate serial numbers and keys taken from Alipay certificates."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import KeyFormatError, UntrustedCertificate

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)
# PKCS#1 signature algorithms (sha1/sha256/...WithRSAEncryption) share this OID arc; Alipay's root SN
# covers only RSA-signed certificates in the bundle (the SM2/ECC ones are skipped). Alipay's Java SDK keeps a
# certificate when its signature algorithm OID starts with "1.2.840.113549.1.1" and joins the MD5s with "_"
# (docs/protocols.md, "Certificate SNs").
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
    sns = [cert_sn(c) for c in certs if _rsa_signed(c)]
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


@dataclass(frozen=True, slots=True)
class AlipayCertificate:
    """One configured Alipay public-key certificate that chains to the root: its SN, its key, when it is usable.

    ``not_before``/``not_after`` are the narrowest window of the whole path to the root: a certificate is only
    as valid as the certificates that vouch for it.
    """

    sn: str
    key: rsa.RSAPublicKey
    subject: str
    not_before: datetime
    not_after: datetime

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


_MAX_PATH = 6  # leaf, a few intermediates, the root: Alipay's paths have three certificates


def certification_path(
    chain: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> list[x509.Certificate]:
    """The path from ``chain[0]`` up to one of ``roots``, through the other certificates of ``chain``.

    Each step is checked by signature (the issuer's key signed the certificate: ``verify_directly_issued_by``), not
    only by name; validity dates are the caller's (``AlipayCertificate``). ``UntrustedCertificate`` when no path
    reaches a root. A certificate of ``roots`` is trusted as is: the root bundle is what the merchant configured.
    """
    root_ders = {root.public_bytes(serialization.Encoding.DER) for root in roots}
    path = [chain[0]]
    while len(path) <= _MAX_PATH:
        current = path[-1]
        if current.public_bytes(serialization.Encoding.DER) in root_ders:
            return path
        issuer = _issuer_of(current, [*roots, *chain[1:]])
        if issuer is None:
            raise UntrustedCertificate(
                f"the certificate {current.subject.rfc4514_string()!r} does not chain to the configured root bundle "
                f"(no certificate named {current.issuer.rfc4514_string()!r} signed it)"
            )
        path.append(issuer)
    raise UntrustedCertificate(f"no path to the root within {_MAX_PATH} certificates")


def _issuer_of(cert: x509.Certificate, pool: Sequence[x509.Certificate]) -> x509.Certificate | None:
    for candidate in pool:
        if candidate.subject != cert.issuer or candidate is cert:
            continue
        try:
            cert.verify_directly_issued_by(candidate)
        except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
            continue  # same name, another key (a renewed CA), or an algorithm we cannot check (SM2)
        return candidate
    return None


def alipay_certificate(
    data: str | bytes, roots: Sequence[x509.Certificate], intermediates: Sequence[x509.Certificate] = ()
) -> AlipayCertificate:
    """An Alipay public-key certificate (the first in ``data``; the others, and ``intermediates``, may complete its
    path, as Alipay ships its certificate followed by its issuer) checked against the root bundle: its SN, its RSA
    key and the validity window of its path to the root."""
    chain = load_certificates(data)
    return _checked_leaf(chain[0], [*chain[1:], *intermediates], roots)


def _checked_leaf(
    leaf: x509.Certificate, others: Sequence[x509.Certificate], roots: Sequence[x509.Certificate]
) -> AlipayCertificate:
    key = leaf.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise KeyFormatError("the certificate's key is not RSA")
    path = certification_path([leaf, *others], roots)
    return AlipayCertificate(
        sn=cert_sn(leaf),
        key=key,
        subject=leaf.subject.rfc4514_string(),
        not_before=max(c.not_valid_before_utc for c in path),
        not_after=min(c.not_valid_after_utc for c in path),
    )


def _issued(issuer: x509.Certificate, cert: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``cert`` (by name and by signature)."""
    return _issuer_of(cert, [issuer]) is not None


def leaves_and_intermediates(data: Sequence[str | bytes]) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """Alipay's certificates configured in one or more texts (a rotation: several, each followed by its issuer):
    the leaves (certificates that issued none of the others) and the intermediates (those that did), each once.

    Not told by extensions: Alipay's intermediate carries no basicConstraints (tests/vectors/certs/).
    """
    unique: dict[bytes, x509.Certificate] = {}
    for text in data:
        for cert in load_certificates(text):
            unique.setdefault(cert.public_bytes(serialization.Encoding.DER), cert)
    certs = list(unique.values())
    intermediates = [c for c in certs if any(other is not c and _issued(c, other) for other in certs)]
    leaves = [c for c in certs if not any(c is i for i in intermediates)]
    return leaves, intermediates


@dataclass(frozen=True, slots=True)
class CertSns:
    """What every request carries in certificate mode (inside the signed content): which app certificate the
    merchant signs under, and which of Alipay's roots it trusts."""

    app_cert_sn: str
    alipay_root_cert_sn: str


@dataclass(frozen=True, slots=True)
class CertificateMode:
    """Certificate mode, loaded and checked: the request SNs, Alipay's certificates, and every expiry to watch."""

    sns: CertSns
    alipay_certificates: tuple[AlipayCertificate, ...]
    # (what, notAfter) of every configured certificate: the app's, each of Alipay's (and its intermediates), each
    # RSA root. The expiry alarm watches the earliest.
    expiries: tuple[tuple[str, datetime], ...]


def load_certificate_mode(
    app_cert: str | bytes, alipay_certs: Sequence[str | bytes], root_bundle: str | bytes
) -> CertificateMode:
    """Check the three settings of certificate mode together; ``KeyFormatError`` or ``UntrustedCertificate``.

    The same certificate given twice counts once. Every Alipay certificate must chain, by signature, to an RSA root
    of the bundle. Its dates are not checked here:
    an expired certificate stays configured (a reply naming it is refused as expired, not as unknown, and the expiry
    alarm shows it), and ``AlipayPublicKeys`` uses a certificate only while it is valid.
    """
    roots = [c for c in load_certificates(root_bundle) if _rsa_signed(c)]
    if not roots:
        raise KeyFormatError("the root bundle holds no RSA-signed certificate")
    app = load_certificates(app_cert)[0]
    leaves, intermediates = leaves_and_intermediates(alipay_certs)
    alipay = tuple(_checked_leaf(leaf, intermediates, roots) for leaf in leaves)
    expiries = [(f"app certificate {cert_sn(app)}", app.not_valid_after_utc)]
    expiries.extend((f"Alipay certificate {cert_sn(c)}", c.not_valid_after_utc) for c in leaves)
    expiries.extend((f"Alipay intermediate certificate {cert_sn(c)}", c.not_valid_after_utc) for c in intermediates)
    expiries.extend((f"root certificate {cert_sn(root)}", root.not_valid_after_utc) for root in roots)
    return CertificateMode(
        sns=CertSns(app_cert_sn=cert_sn(app), alipay_root_cert_sn=alipay_root_cert_sn(root_bundle)),
        alipay_certificates=alipay,
        expiries=tuple(expiries),
    )


def _rsa_signed(cert: x509.Certificate) -> bool:
    return cert.signature_algorithm_oid.dotted_string.startswith(_RSA_SIGNATURE_ARC)
