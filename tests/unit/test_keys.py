"""Keys in every format merchants hold them, and clear errors for the ones that cannot work."""

from __future__ import annotations

import base64
import textwrap
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from chalicelib.alipay.errors import KeyFormatError
from chalicelib.alipay.keys import load_private_key, load_public_key, public_key_base64, same_public_key
from tests.alipay_fixtures import certificate
from tests.keygen import rsa_key

Encoding = serialization.Encoding
PrivateFormat = serialization.PrivateFormat
PublicFormat = serialization.PublicFormat
NO_PASSWORD = serialization.NoEncryption()


def key() -> rsa.RSAPrivateKey:
    return rsa_key("merchant-formats", 1024)


def pem_private(fmt: serialization.PrivateFormat) -> bytes:
    return key().private_bytes(Encoding.PEM, fmt, NO_PASSWORD)


def der_private(fmt: serialization.PrivateFormat) -> bytes:
    return key().private_bytes(Encoding.DER, fmt, NO_PASSWORD)


def pem_public(fmt: serialization.PublicFormat) -> bytes:
    return key().public_key().public_bytes(Encoding.PEM, fmt)


def der_public(fmt: serialization.PublicFormat) -> bytes:
    return key().public_key().public_bytes(Encoding.DER, fmt)


def bare(der: bytes) -> str:
    """The key tool's form: the DER as one line of base64, no PEM armour."""
    return base64.b64encode(der).decode("ascii")


def small_rsa_private_key() -> rsa.RSAPrivateKey:
    """A 512-bit key (cryptography no longer generates one) from two known primes just below 2**256."""
    p, q, e = 2**256 - 189, 2**256 - 357, 65537
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(e, p * q),
    )
    return numbers.private_key()


# --- private keys ---------------------------------------------------------------------------------------

PRIVATE_FORMS: dict[str, Callable[[], str | bytes]] = {
    "pkcs1-pem": lambda: pem_private(PrivateFormat.TraditionalOpenSSL),
    "pkcs8-pem": lambda: pem_private(PrivateFormat.PKCS8),
    "pkcs8-pem-as-str": lambda: pem_private(PrivateFormat.PKCS8).decode("ascii"),
    "pkcs8-bare-base64": lambda: bare(der_private(PrivateFormat.PKCS8)),
    "pkcs1-bare-base64": lambda: bare(der_private(PrivateFormat.TraditionalOpenSSL)),
    "pkcs8-base64-wrapped-at-64": lambda: "\n".join(textwrap.wrap(bare(der_private(PrivateFormat.PKCS8)), 64)),
    "pkcs8-bare-base64-with-surrounding-whitespace": lambda: "  " + bare(der_private(PrivateFormat.PKCS8)) + "\r\n",
    "pkcs1-pem-crlf": lambda: pem_private(PrivateFormat.TraditionalOpenSSL).replace(b"\n", b"\r\n"),
}


@pytest.mark.parametrize("form", PRIVATE_FORMS)
def test_loads_a_private_key_in_every_format_merchants_hold(form: str) -> None:
    loaded = load_private_key(PRIVATE_FORMS[form]())
    assert loaded.private_numbers() == key().private_numbers()


def test_loads_the_published_1024_bit_test_key(merchant_private_key: rsa.RSAPrivateKey) -> None:
    assert merchant_private_key.key_size == 1024


@pytest.mark.parametrize(
    "public", [pem_public(PublicFormat.SubjectPublicKeyInfo), pem_public(PublicFormat.PKCS1)], ids=["spki", "pkcs1"]
)
def test_rejects_a_public_key_where_the_private_key_belongs(public: bytes) -> None:
    with pytest.raises(KeyFormatError, match="expected a private key but found a public key"):
        load_private_key(public)


def test_rejects_a_certificate_where_the_private_key_belongs() -> None:
    with pytest.raises(KeyFormatError, match="expected a private key but found a public key or certificate"):
        load_private_key(certificate(key()))


def test_rejects_an_encrypted_private_key_with_advice() -> None:
    encrypted = key().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"secret"))
    with pytest.raises(KeyFormatError, match="encrypted private keys are not supported"):
        load_private_key(encrypted)


def test_rejects_an_ec_private_key() -> None:
    ec_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NO_PASSWORD)
    with pytest.raises(KeyFormatError, match="expected an RSA private key, got EC"):
        load_private_key(ec_pem)


def test_rejects_a_private_key_that_is_too_small() -> None:
    small = small_rsa_private_key().private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NO_PASSWORD)
    with pytest.raises(KeyFormatError, match="RSA key of 512 bits is too small"):
        load_private_key(small)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "empty key"),
        ("   \n", "empty key"),
        ("hello world!", "not valid base64"),
        ("aGVsbG8gd29ybGQ=", "not an RSA private key"),
        ("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n", "not an RSA private key"),
        ("私钥", "not ASCII"),
    ],
    ids=["empty", "blank", "not-base64", "base64-not-der", "broken-pem", "non-ascii"],
)
def test_rejects_garbage_as_a_private_key(data: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        load_private_key(data)


# --- public keys ----------------------------------------------------------------------------------------

PUBLIC_FORMS: dict[str, Callable[[], str | bytes]] = {
    "spki-pem": lambda: pem_public(PublicFormat.SubjectPublicKeyInfo),
    "pkcs1-pem": lambda: pem_public(PublicFormat.PKCS1),
    "spki-bare-base64": lambda: bare(der_public(PublicFormat.SubjectPublicKeyInfo)),
    "pkcs1-bare-base64": lambda: bare(der_public(PublicFormat.PKCS1)),
    "spki-base64-wrapped-at-76": lambda: "\n".join(
        textwrap.wrap(bare(der_public(PublicFormat.SubjectPublicKeyInfo)), 76)
    ),
    "certificate-pem": lambda: certificate(key()),
    "public_key_base64-output": lambda: public_key_base64(key().public_key()),
}


@pytest.mark.parametrize("form", PUBLIC_FORMS)
def test_loads_a_public_key_in_every_format_merchants_hold(form: str) -> None:
    assert same_public_key(load_public_key(PUBLIC_FORMS[form]()), key().public_key())


def test_public_key_base64_is_the_single_line_spki_the_portal_accepts() -> None:
    text = public_key_base64(key().public_key())
    assert "\n" not in text
    assert text == bare(der_public(PublicFormat.SubjectPublicKeyInfo))
    assert text.startswith("MIGfMA0GCSqGSIb3DQEBAQUAA4GN")  # SPKI header of a 1024-bit RSA key


@pytest.mark.parametrize(
    "private",
    [pem_private(PrivateFormat.TraditionalOpenSSL), pem_private(PrivateFormat.PKCS8)],
    ids=["pkcs1-pem", "pkcs8-pem"],
)
def test_a_private_pem_key_passed_as_the_alipay_public_key_gets_a_clear_error(private: bytes) -> None:
    with pytest.raises(KeyFormatError, match=r"found a private key \(Alipay's public key is needed here"):
        load_public_key(private)


@pytest.mark.parametrize(
    "private",
    [bare(der_private(PrivateFormat.PKCS8)), bare(der_private(PrivateFormat.TraditionalOpenSSL))],
    ids=["pkcs8-bare-base64", "pkcs1-bare-base64"],
)
def test_a_bare_base64_private_key_passed_as_the_alipay_public_key_gets_a_clear_error(private: str) -> None:
    with pytest.raises(KeyFormatError, match=r"found a private key \(Alipay's public key is needed here"):
        load_public_key(private)


def test_rejects_an_ec_public_key() -> None:
    ec_pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(KeyFormatError, match="expected an RSA public key, got EC"):
        load_public_key(ec_pem)


def test_rejects_a_certificate_for_an_ec_key() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(KeyFormatError, match="expected an RSA public key"):
        load_public_key(certificate(ec_key))


def test_rejects_a_public_key_that_is_too_small() -> None:
    small = small_rsa_private_key().public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyFormatError, match="RSA key of 512 bits is too small"):
        load_public_key(bare(small))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("", "empty key"),
        ("not base64 at all", "not valid base64"),
        ("aGVsbG8gd29ybGQ=", "not an RSA public key"),
        ("-----BEGIN PUBLIC KEY-----\nZ2FyYmFnZQ==\n-----END PUBLIC KEY-----\n", "not an RSA public key"),
        ("-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n", "not an RSA public key"),
        ("公钥", "not ASCII"),
    ],
    ids=["empty", "not-base64", "base64-not-der", "broken-pem", "broken-certificate", "non-ascii"],
)
def test_rejects_garbage_as_a_public_key(data: str, message: str) -> None:
    with pytest.raises(KeyFormatError, match=message):
        load_public_key(data)


def test_same_public_key_compares_the_key_not_the_object() -> None:
    assert same_public_key(load_public_key(PUBLIC_FORMS["spki-pem"]()), load_public_key(PUBLIC_FORMS["pkcs1-pem"]()))
    assert not same_public_key(key().public_key(), rsa_key("someone-else", 1024).public_key())
