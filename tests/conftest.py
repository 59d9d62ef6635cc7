"""Shared fixtures: the published test key pair and known-answer vectors (tests/vectors/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay.keys import load_private_key, load_public_key

VECTORS = Path(__file__).parent / "vectors"


@pytest.fixture(scope="session")
def vectors() -> dict[str, Any]:
    return json.loads((VECTORS / "vectors.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def merchant_private_key() -> rsa.RSAPrivateKey:
    return load_private_key((VECTORS / "test_merchant_private_key.pem").read_bytes())


@pytest.fixture(scope="session")
def merchant_public_key() -> rsa.RSAPublicKey:
    return load_public_key((VECTORS / "test_merchant_public_key.pem").read_bytes())
