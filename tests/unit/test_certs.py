"""Certificate mode: certificate SNs, the root SN, keys from certificates, and verification by SN."""

from __future__ import annotations

import hashlib
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from chalicelib.alipay import certs, openapi
from chalicelib.alipay.errors import KeyFormatError, SignatureMismatch, UnknownCertificate
from chalicelib.alipay.keys import same_public_key
from chalicelib.alipay.signing import AlipayPublicKeys
from tests.alipay_fixtures import app_pay_response, certificate, signed_json_response
from tests.keygen import rsa_key

VECTOR_SN = "28d1147972121b91734da59aa10f3c16"  # spec 1.4: issuer CN=Test,OU=Test,O=Test,C=BE, serial 0


def load(pem: bytes) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem)


def md5_hex(text: str) -> str:
    return hashlib.md5(text.encode("utf-8"), usedforsecurity=False).hexdigest()


def self_signed_with_serial_zero(key: rsa.RSAPrivateKey) -> x509.Certificate:
    """The vector's certificate. cryptography refuses to *build* serial 0 (RFC 5280 wants it positive), so
    build serial 1, patch the one-byte INTEGER to 0 in the DER, and re-sign the patched TBS."""
    der = load(certificate(key, serial=1)).public_bytes(serialization.Encoding.DER)
    version_and_serial = b"\xa0\x03\x02\x01\x02" + b"\x02\x01\x01"  # [0] v3, then INTEGER 1
    assert der.count(version_and_serial) == 1
    der = der.replace(version_and_serial, version_and_serial[:-1] + b"\x00")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            patched = x509.load_der_x509_certificate(der)
            signature = key.sign(patched.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
            cert = x509.load_der_x509_certificate(der[: -len(signature)] + signature)
            serial = cert.serial_number
        except ValueError as exc:  # a future cryptography may refuse to parse it at all
            pytest.skip(f"cryptography no longer loads a serial-0 certificate ({exc}); see the hashlib test")
    assert serial == 0
    key.public_key().verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), hashes.SHA256())
    return cert


def test_the_issuer_renders_as_the_vector_spells_it() -> None:
    assert load(certificate(rsa_key("cert", 1024))).issuer.rfc4514_string() == "CN=Test,OU=Test,O=Test,C=BE"


def test_the_vector_sn_is_md5_of_the_rfc4514_issuer_and_the_decimal_serial() -> None:
    assert md5_hex("CN=Test,OU=Test,O=Test,C=BE" + "0") == VECTOR_SN


def test_cert_sn_of_the_serial_zero_test_certificate_matches_the_vector() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        assert certs.cert_sn(self_signed_with_serial_zero(rsa_key("cert", 1024))) == VECTOR_SN


@pytest.mark.parametrize("serial", [1, 4242, 2**158 + 12345], ids=["one", "small", "159-bit"])
def test_cert_sn_follows_the_rule_for_any_serial(serial: int) -> None:
    cert = load(certificate(rsa_key("cert", 1024), serial=serial))
    assert certs.cert_sn(cert) == md5_hex(f"CN=Test,OU=Test,O=Test,C=BE{serial}")


def test_cert_sn_escapes_special_characters_in_the_issuer_as_rfc4514_does() -> None:
    issuer = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ant Financial, Inc."),
            x509.NameAttribute(NameOID.COMMON_NAME, "Alipay Root"),
        ]
    )
    cert = load(certificate(rsa_key("cert", 1024), issuer=issuer, serial=7))
    assert certs.cert_sn(cert) == md5_hex("CN=Alipay Root,O=Ant Financial\\, Inc.,C=CN7")


def test_app_cert_sn_is_the_sn_of_the_first_certificate() -> None:
    first = certificate(rsa_key("cert", 1024), serial=5)
    second = certificate(rsa_key("cert", 1024), serial=6)
    assert certs.app_cert_sn(first + second) == md5_hex("CN=Test,OU=Test,O=Test,C=BE5")


def test_root_sn_joins_only_the_rsa_signed_certificates_of_the_bundle() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_root = certificate(rsa_key("root-a", 1024), serial=11)
    ec_root = certificate(ec_key, serial=12)  # ECDSA-signed, like the bundle's SM2/ECC roots
    rsa_intermediate = certificate(rsa_key("root-b", 1024), issuer_key=rsa_key("root-a", 1024), serial=13)
    assert load(ec_root).signature_algorithm_oid.dotted_string == "1.2.840.10045.4.3.2"
    bundle = rsa_root + b"\n" + ec_root + b"Bag Attributes: junk between blocks\n" + rsa_intermediate
    expected = "_".join(md5_hex(f"CN=Test,OU=Test,O=Test,C=BE{serial}") for serial in (11, 13))
    assert certs.alipay_root_cert_sn(bundle) == expected


def test_root_sn_skips_an_ec_signed_certificate_even_when_its_key_is_rsa() -> None:
    signed_by_ec = certificate(rsa_key("root-a", 1024), issuer_key=ec.generate_private_key(ec.SECP256R1()), serial=3)
    rsa_root = certificate(rsa_key("root-b", 1024), serial=4)
    assert certs.alipay_root_cert_sn(signed_by_ec + rsa_root) == md5_hex("CN=Test,OU=Test,O=Test,C=BE4")


def test_root_sn_of_a_bundle_without_rsa_signed_certificates_is_an_error() -> None:
    with pytest.raises(KeyFormatError, match="no RSA-signed certificate"):
        certs.alipay_root_cert_sn(certificate(ec.generate_private_key(ec.SECP256R1())))


def test_public_key_from_certificate_gives_the_sn_and_the_rsa_key() -> None:
    key = rsa_key("alipay-cert", 1024)
    sn, public = certs.public_key_from_certificate(certificate(key, serial=99).decode("ascii"))
    assert sn == md5_hex("CN=Test,OU=Test,O=Test,C=BE99")
    assert same_public_key(public, key.public_key())


def test_public_key_from_an_ec_certificate_is_an_error() -> None:
    with pytest.raises(KeyFormatError, match="not RSA"):
        certs.public_key_from_certificate(certificate(ec.generate_private_key(ec.SECP256R1())))


def test_a_certificate_file_with_non_ascii_text_around_the_block_loads() -> None:
    text = "Bag Attributes\n    friendlyName: 支付宝公钥证书\n" + certificate(rsa_key("cert", 1024), serial=8).decode()
    assert [c.serial_number for c in certs.load_certificates(text)] == [8]


@pytest.mark.parametrize("data", [b"", b"no certificate here", b"-----BEGIN CERTIFICATE-----\n"], ids=repr)
def test_loading_data_without_a_pem_certificate_is_an_error(data: bytes) -> None:
    with pytest.raises(KeyFormatError, match="no PEM certificate found"):
        certs.load_certificates(data)


def test_loading_a_broken_certificate_is_an_error() -> None:
    broken = b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END CERTIFICATE-----\n"
    with pytest.raises(KeyFormatError, match="invalid certificate"):
        certs.load_certificates(broken)


# --- verification by alipay_cert_sn ----------------------------------------------------------------------


def cert_mode_keys() -> tuple[AlipayPublicKeys, str, str]:
    """Keys configured from two Alipay certificates (a rotation), and their SNs."""
    sn_old, old = certs.public_key_from_certificate(certificate(rsa_key("alipay-cert-old", 1024), serial=21))
    sn_new, new = certs.public_key_from_certificate(certificate(rsa_key("alipay-cert-new", 1024), serial=22))
    return AlipayPublicKeys((), {sn_old: old, sn_new: new}), sn_old, sn_new


def test_verify_response_picks_the_key_named_by_alipay_cert_sn() -> None:
    keys, sn_old, sn_new = cert_mode_keys()
    for name, sn in (("alipay-cert-old", sn_old), ("alipay-cert-new", sn_new)):
        text = signed_json_response(openapi.APP_PAY_RESPONSE, app_pay_response(), rsa_key(name, 1024), cert_sn=sn)
        assert openapi.verify_response(text, keys).cert_sn == sn


def test_verify_response_does_not_fall_back_to_another_certificate() -> None:
    keys, sn_old, _ = cert_mode_keys()
    text = signed_json_response(
        openapi.APP_PAY_RESPONSE, app_pay_response(), rsa_key("alipay-cert-new", 1024), cert_sn=sn_old
    )
    with pytest.raises(SignatureMismatch):
        openapi.verify_response(text, keys)


def test_verify_response_rejects_an_unknown_alipay_cert_sn() -> None:
    keys, _, _ = cert_mode_keys()
    text = signed_json_response(
        openapi.APP_PAY_RESPONSE, app_pay_response(), rsa_key("alipay-cert-new", 1024), cert_sn=VECTOR_SN
    )
    with pytest.raises(UnknownCertificate, match=VECTOR_SN):
        openapi.verify_response(text, keys)


def test_verify_response_without_alipay_cert_sn_tries_every_configured_certificate() -> None:
    keys, _, _ = cert_mode_keys()
    text = signed_json_response(openapi.APP_PAY_RESPONSE, app_pay_response(), rsa_key("alipay-cert-new", 1024))
    assert openapi.verify_response(text, keys).cert_sn is None
