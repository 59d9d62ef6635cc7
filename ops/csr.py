"""A certificate signing request (PKCS #10) for the merchant key in KMS, signed through KMS.

Alipay issues the app's public-key certificate (certificate mode) from a CSR. The private key never leaves KMS, so
the CSR cannot be made by a library that wants the private key: its ``CertificationRequestInfo`` is encoded here (DER,
RFC 2986 section 4.1), signed by ``kms:Sign`` (RSASSA-PKCS1-v1_5 with SHA-256, the key's only algorithm), and wrapped.
The result is checked with ``cryptography`` before it is returned: a CSR that does not verify is never printed.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from chalicelib.alipay.signing import Signer, SignType

# sha256WithRSAEncryption (1.2.840.113549.1.1.11) with NULL parameters, as DER.
_SHA256_WITH_RSA = bytes.fromhex("300d06092a864886f70d01010b0500")


def _length(size: int) -> bytes:
    if size < 0x80:
        return bytes([size])
    raw = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def subject_name(
    common_name: str, organization: str | None = None, unit: str | None = None, country: str = "CN"
) -> x509.Name:
    """The CSR's subject: what Alipay's key tool asks for (Alipay replaces it with its own in the certificate)."""
    attributes = [x509.NameAttribute(NameOID.COUNTRY_NAME, country)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attributes)


def build_csr(subject: x509.Name, public_key: rsa.RSAPublicKey, signer: Signer) -> x509.CertificateSigningRequest:
    """A CSR for ``public_key`` signed by ``signer`` (the KMS key whose public half ``public_key`` is)."""
    if signer.sign_type is not SignType.RSA2:
        raise ValueError("the CSR is signed SHA256withRSA: the signer must sign RSA2")
    spki = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    info = _tlv(
        0x30,
        _tlv(0x02, b"\x00")  # version 0
        + subject.public_bytes()
        + spki
        + b"\xa0\x00",  # attributes [0]: none
    )
    signature = signer.sign(info)
    der = _tlv(0x30, info + _SHA256_WITH_RSA + _tlv(0x03, b"\x00" + signature))
    csr = x509.load_der_x509_csr(der)
    if not csr.is_signature_valid:
        raise ValueError("the signature does not match the public key: the key id and the public key disagree")
    return csr
