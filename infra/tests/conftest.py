"""Synthesized stacks, one per configuration, shared by the whole session (each synth packages the Chalice app)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
# An Antom stage as docs/deploy.md ("An Antom stage") writes it into .chalice/config.json; the client id is the shape of
# Antom's test-mode ids (its sandbox documentation's sample), not a real merchant's.
ANTOM_CLIENT_ID = "SANDBOX_5Y036S2Y1W4D03493"
ANTOM_STAGE = {
    "api_gateway_stage": "api",
    "manage_iam_role": False,
    "lambda_memory_size": 512,
    "lambda_timeout": 30,
    "environment_variables": {
        "STAGE": "antom",
        "ALIPAY_PROTOCOL": "antom",
        "ALIPAY_GATEWAY_URL": "https://open-na-global.alipay.com",
        "ANTOM_CLIENT_ID": ANTOM_CLIENT_ID,
        "ANTOM_PAYMENT_METHODS": "ALIPAY_CN,ALIPAY_HK",
        "CURRENCIES": "USD,HKD",
        "ORDER_TIMEOUT": "30m",
    },
}

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
        """The merchant's RSA key the stage signs with (SIGNING_KEY_ID): Antom's own on an Antom stage, else the Open
        Platform key (the other key, DataKey, encrypts data at rest)."""
        keys = self.resources("AWS::KMS::Key")
        name = "AntomSigningKey" if any(k.startswith("AntomSigningKey") for k in keys) else "SigningKey"
        return keys[self.logical_id("AWS::KMS::Key", name)]

    def logical_id(self, resource_type: str, prefix: str) -> str:
        (found,) = [k for k in self.resources(resource_type) if k.startswith(prefix)]
        return found


def _app_module(name: str) -> bool:
    return name == "app" or name == "chalicelib" or name.startswith("chalicelib.")


@contextmanager
def _own_app_modules() -> Iterator[None]:
    """Chalice's packaging imports ``app`` in this process (``chalice.cli.factory``, with the project put first on
    ``sys.path`` once): a copied project must not get the repository's cached modules, nor leave its own behind for
    the next synth."""
    saved_path = list(sys.path)
    saved = {name: module for name, module in sys.modules.items() if _app_module(name)}
    for name in saved:
        del sys.modules[name]
    try:
        yield
    finally:
        for name in [name for name in sys.modules if _app_module(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
        sys.path[:] = saved_path


def synthesize(workdir: Path, context: Mapping[str, Any], project_dir: Path = PROJECT_DIR) -> Synthesized:
    settings = StageSettings.from_context(context)
    outdir = workdir / "cdk.out"
    app = cdk.App(outdir=str(outdir), analytics_reporting=False)
    here = Path.cwd()
    # The Chalice construct packages into ./chalice.out: keep each synth's copy out of the source tree.
    os.chdir(workdir)
    try:
        if project_dir == PROJECT_DIR:
            stack = AlipayGlobalStack(app, settings, project_dir=project_dir)
        else:
            with _own_app_modules():
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


def project_with_stage(workdir: Path, name: str, stage: Mapping[str, Any]) -> Path:
    """A copy of the project whose .chalice/config.json has one more stage (the repository's are Open Platform)."""
    project = workdir / "project"
    project.mkdir()
    for file in ("app.py", "requirements.txt"):
        shutil.copy(PROJECT_DIR / file, project / file)
    shutil.copytree(PROJECT_DIR / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".chalice").mkdir()
    if (PROJECT_DIR / ".chalice" / "deployments").is_dir():  # the dependencies' zip an earlier synth built
        shutil.copytree(PROJECT_DIR / ".chalice" / "deployments", project / ".chalice" / "deployments")
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text(encoding="utf-8"))
    config["stages"][name] = stage
    (project / ".chalice" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return project


def app_routes(project: Path) -> dict[str, list[str]]:
    """The Chalice app's routes (path -> methods), from a fresh interpreter: infra has an app.py of its own."""
    script = "import json, app; print(json.dumps({p: sorted(m) for p, m in app.app.routes.items()}))"
    # Like `chalice package`, in the infra venv, with no AWS configuration.
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    # Our own interpreter and a constant script: no untrusted input.
    command = [sys.executable, "-c", script]
    out = subprocess.run(command, cwd=project, env=env, check=True, capture_output=True)  # noqa: S603
    routes: dict[str, list[str]] = json.loads(out.stdout)
    return routes


# Until app.py has Antom's notify route (the product's side of issue 19), the copy gets this stand-in, so that the
# stack's wiring of whatever route the app defines is what these tests check; once the app has it, the app's is used.
ANTOM_ROUTE_STAND_IN = """

@app.route("/antom/notify", methods=["POST"], content_types=["application/json"])
def antom_notify_stand_in() -> None:
    raise NotImplementedError("infra/tests stand-in for the app's POST /antom/notify")
"""


@pytest.fixture(scope="session")
def antom(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """A production stage on Antom (ALIPAY_PROTOCOL=antom), with an operator role reading the public key."""
    project = project_with_stage(tmp_path_factory.mktemp("antom-project"), "antom", ANTOM_STAGE)
    if "POST" not in app_routes(project).get("/antom/notify", []):
        with (project / "app.py").open("a", encoding="utf-8") as app_file:
            app_file.write(ANTOM_ROUTE_STAND_IN)
    context = {"stage": "antom", "production": "true", "public_key_readers": READER_ARN}
    return synthesize(tmp_path_factory.mktemp("antom"), context, project)


@pytest.fixture(params=["prod", "dev", "prod_configured", "unauthenticated", "antom"])
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
