"""Deterministic-enough RSA keys for tests, generated once per process."""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives.asymmetric import rsa


@cache
def rsa_key(name: str, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A fresh private key per ``name`` (cached, so a test run generates each only once)."""
    del name  # the name only keys the cache: "alipay", "merchant", "other" are different keys
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)
