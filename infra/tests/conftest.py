"""Synthesized stacks, one per configuration, shared by the whole session (each synth packages the Chalice app)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from stacks.alipay_global import AlipayGlobalStack
from stacks.settings import StageSettings

PROJECT_DIR = Path(__file__).resolve().parents[2]
READER_ARN = "arn:aws:iam::123456789012:role/Operators"
POOL_ARN = "arn:aws:cognito-idp:eu-west-1:123456789012:userpool/eu-west-1_AbCdEf123"
RETURN_URL = "https://pay.example.com/alipay/return"
MERCHANT_ACCOUNT = "123456789012"  # another account's merchant backend, admitted by the API's resource policy
MERCHANT_ROLE_ARN = "arn:aws:iam::123456789012:role/MerchantBackend"
REDRIVE_ROLE_ARN = "arn:aws:iam::123456789012:role/Redrive"
CSR_SIGNER_ARN = "arn:aws:iam::123456789012:role/CertificateRequest"

# No AWS anywhere: `chalice package` only needs a region name, and nothing may look for credentials on the network.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


@dataclass(frozen=True)
class Synthesized:
    """A synthesized stack: the assertions' view of its template, the plain JSON, and its cloud assembly."""

    template: Template
    json: dict[str, Any]
    settings: StageSettings
    assembly_dir: Path

    def resources(self, resource_type: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.json["Resources"].items() if v["Type"] == resource_type}

    def resource(self, resource_type: str) -> tuple[str, dict[str, Any]]:
        (found,) = self.resources(resource_type).items()
        return found

    def function_roles(self) -> dict[str, dict[str, Any]]:
        """The functions' execution roles (each with its inline least-privilege policy); not API Gateway's logs role."""
        return {k: v for k, v in self.resources("AWS::IAM::Role").items() if "Policies" in v["Properties"]}

    def signing_key(self) -> dict[str, Any]:
        """The merchant's RSA signing key (the other key, DataKey, encrypts data at rest)."""
        return self.json["Resources"][self.logical_id("AWS::KMS::Key", "SigningKey")]

    def logical_id(self, resource_type: str, prefix: str) -> str:
        (found,) = [k for k in self.resources(resource_type) if k.startswith(prefix)]
        return found


def synthesize(workdir: Path, context: Mapping[str, Any], project_dir: Path = PROJECT_DIR) -> Synthesized:
    settings = StageSettings.from_context(context)
    outdir = workdir / "cdk.out"
    app = cdk.App(outdir=str(outdir), analytics_reporting=False)
    here = Path.cwd()
    # The Chalice construct packages into ./chalice.out: keep each synth's copy out of the source tree.
    os.chdir(workdir)
    try:
        stack = AlipayGlobalStack(app, settings, project_dir=project_dir)
        template = Template.from_stack(stack)
    finally:
        os.chdir(here)
    return Synthesized(template, template.to_json(), settings, outdir)


@pytest.fixture(scope="session")
def prod(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Production as documented: a user pool created in the stack, nothing optional set."""
    return synthesize(tmp_path_factory.mktemp("prod"), {"stage": "prod"})


@pytest.fixture(scope="session")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("dev"), {"stage": "dev"})


@pytest.fixture(scope="session")
def prod_configured(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Every option set: the app's own user pool, an operator role reading the public key, alarms, a return URL,
    another account's merchant roles admitted to the merchant routes, an operator role that may redrive the DLQ, an
    operator role that may sign a CSR with the merchant key (certificate mode)."""
    return synthesize(
        tmp_path_factory.mktemp("prod-configured"),
        {
            "stage": "prod",
            "user_pool_arn": POOL_ARN,
            "user_pool_client_ids": "1example23456789,2example98765432",
            "public_key_readers": READER_ARN,
            "alarm_email": "ops@example.com",
            "throttle_rate": "20",
            "throttle_burst": "40",
            "log_retention_days": "90",
            "return_url": RETURN_URL,
            "merchant_principals": f"{MERCHANT_ACCOUNT}, {MERCHANT_ROLE_ARN}",
            "redrive_roles": REDRIVE_ROLE_ARN,
            "csr_signers": CSR_SIGNER_ARN,
        },
    )


@pytest.fixture(scope="session")
def unauthenticated(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    return synthesize(tmp_path_factory.mktemp("no-auth"), {"stage": "dev", "orders_auth": "none"})


@pytest.fixture(params=["prod", "dev", "prod_configured", "unauthenticated"])
def every_stack(request: pytest.FixtureRequest) -> Synthesized:
    stack: Synthesized = request.getfixturevalue(request.param)
    return stack


def statements(document: Any) -> list[dict[str, Any]]:
    statement = document["Statement"]
    return statement if isinstance(statement, list) else [statement]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def dump(value: Any) -> str:
    return json.dumps(value, sort_keys=True)
