"""Sign types, the ``Signer`` interface, a local-key signer, and signature verification over key sets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa

from .errors import ExpiredCertificate, SignatureEncodingError, SignatureMismatch, UnknownCertificate

if TYPE_CHECKING:
    from datetime import datetime  # annotations only: datetime's module costs ~1 ms at every cold start

    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

    from .certs import AlipayCertificate


class SignType(StrEnum):
    """Alipay's ``sign_type`` values this product signs and verifies. MD5 is never accepted."""

    RSA2 = "RSA2"  # SHA256withRSA, PKCS#1 v1.5
    RSA = "RSA"  # SHA1withRSA, PKCS#1 v1.5 (legacy)

    def hash_algorithm(self) -> hashes.HashAlgorithm:
        return _HASHES[self]


_HASHES: dict[SignType, hashes.HashAlgorithm] = {
    SignType.RSA2: hashes.SHA256(),
    SignType.RSA: hashes.SHA1(),  # noqa: S303 - Alipay's legacy RSA sign type is SHA1withRSA
}


# binascii, cryptography's padding and exceptions (~0.45 ms together) are imported on first use, not at import.
@cache
def _pkcs1() -> PKCS1v15:
    from cryptography.hazmat.primitives.asymmetric.padding import PKCS1v15

    return PKCS1v15()


@cache
def _invalid_signature() -> type[Exception]:
    from cryptography.exceptions import InvalidSignature

    return InvalidSignature


@runtime_checkable
class Signer(Protocol):
    """Signs message bytes with the merchant's private key; ``sign_type`` names the algorithm it uses."""

    @property
    def sign_type(self) -> SignType: ...

    def sign(self, message: bytes) -> bytes: ...


class LocalKeySigner:
    """A ``Signer`` over a private key held in process (tests, the legacy RSA sign type, the sandbox)."""

    def __init__(self, private_key: rsa.RSAPrivateKey, sign_type: SignType = SignType.RSA2) -> None:
        self._key = private_key
        self._sign_type = SignType(sign_type)
        self._hash = self._sign_type.hash_algorithm()

    @property
    def sign_type(self) -> SignType:
        return self._sign_type

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message, _pkcs1(), self._hash)

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()


def b64encode(data: bytes) -> str:
    """Standard base64 without line breaks."""
    import binascii

    return binascii.b2a_base64(data, newline=False).decode("ascii")


def decode_signature(sign: str) -> bytes:
    """Decode a ``sign`` value as strict standard base64."""
    import binascii

    try:
        raw = binascii.a2b_base64(sign.encode("ascii"), strict_mode=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise SignatureEncodingError("sign is not valid base64") from exc
    if not raw:
        raise SignatureEncodingError("sign is empty")
    return raw


class AlipayPublicKeys:
    """The Alipay public keys a merchant trusts: several during a rotation; by cert SN in certificate mode.

    In certificate mode ``certificates`` are the configured Alipay certificates (each already checked to chain to
    the root bundle) and ``clock`` says what time it is: a certificate is used only inside its validity window, so
    a container that outlives a certificate stops trusting it then, not at its next cold start.
    """

    __slots__ = ("_clock", "by_cert_sn", "certificates", "keys")

    def __init__(
        self,
        keys: Iterable[rsa.RSAPublicKey],
        by_cert_sn: Mapping[str, rsa.RSAPublicKey] | None = None,
        *,
        certificates: Iterable[AlipayCertificate] = (),
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.keys = tuple(keys)
        self.certificates = tuple(certificates)
        self.by_cert_sn = dict(by_cert_sn or {})
        self.by_cert_sn.update((c.sn, c.key) for c in self.certificates)
        self._clock = clock
        if not self.keys and not self.by_cert_sn:
            raise ValueError("at least one Alipay public key is required")
        if self.certificates and clock is None:
            raise ValueError("certificates need a clock: each is used only while it is valid")

    @classmethod
    def of(cls, keys: AlipayPublicKeys | rsa.RSAPublicKey | Iterable[rsa.RSAPublicKey]) -> AlipayPublicKeys:
        if isinstance(keys, AlipayPublicKeys):
            return keys
        if isinstance(keys, rsa.RSAPublicKey):
            return cls((keys,))
        return cls(tuple(keys))

    def candidates(self, cert_sn: str | None = None) -> Sequence[rsa.RSAPublicKey]:
        """Keys to try: the one the certificate SN names, else every configured key (every valid certificate)."""
        if cert_sn:
            key = self.by_cert_sn.get(cert_sn)
            if key is None:
                raise UnknownCertificate(
                    f"no Alipay certificate configured for alipay_cert_sn {cert_sn} (configured: "
                    f"{', '.join(sorted(self.by_cert_sn)) or 'none'}); if Alipay rotated its certificate, add the "
                    "new one beside the old (docs/deploy.md, certificate mode)"
                )
            cert = next((c for c in self.certificates if c.sn == cert_sn), None)
            if cert is not None and not cert.valid_at(self._now()):
                raise ExpiredCertificate(
                    f"the Alipay certificate {cert_sn} is valid from {cert.not_before:%Y-%m-%d} to "
                    f"{cert.not_after:%Y-%m-%d} (its whole path to the root), not now"
                )
            return (key,)
        if self.keys or not self.certificates:
            return self.keys or tuple(self.by_cert_sn.values())
        now = self._now()
        valid = tuple(c.key for c in self.certificates if c.valid_at(now))
        if not valid:
            raise ExpiredCertificate("no configured Alipay certificate is valid now")
        return valid

    def _now(self) -> datetime:
        if self._clock is None:  # only certificates ask, and the constructor makes them bring a clock
            raise ValueError("certificates need a clock")
        return self._clock()


def verify_signature(
    keys: AlipayPublicKeys,
    content: bytes,
    signature: bytes,
    sign_type: SignType,
    cert_sn: str | None = None,
) -> rsa.RSAPublicKey:
    """Verify ``signature`` over ``content`` with the configured algorithm; return the key that matched."""
    algorithm = _HASHES[sign_type]
    pkcs1 = _pkcs1()
    for key in keys.candidates(cert_sn):
        try:
            key.verify(signature, content, pkcs1, algorithm)
        except _invalid_signature():  # an except clause is evaluated only once something was raised
            continue
        return key
    raise SignatureMismatch(f"signature does not verify ({sign_type.value}) with any configured Alipay key")
