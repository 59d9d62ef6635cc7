"""A legacy-protocol stage: the SHA1withRSA merchant key in a Secrets Manager secret only the signing functions read."""

from __future__ import annotations

import json
import shutil
from typing import Any

import pytest

from conftest import PROJECT_DIR, Synthesized, as_list, statements, synthesize
from stacks.settings import SettingsError, check_legacy_key

LEGACY_STAGE = {
    "api_gateway_stage": "api",
    "manage_iam_role": False,
    "lambda_memory_size": 512,
    "lambda_timeout": 30,
    "environment_variables": {
        "STAGE": "legacy",
        "ALIPAY_PROTOCOL": "mapi",
        "ALIPAY_GATEWAY_URL": "https://intlmapi.alipay.com/gateway.do",
        "CURRENCIES": "USD,HKD",
        "ORDER_TIMEOUT": "30m",
    },
}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """The project with one more stage on the legacy protocol (a copy: the repository's stages are Open Platform)."""
    project = tmp_path_factory.mktemp("legacy-project")
    for name in ("app.py", "requirements.txt"):
        shutil.copy(PROJECT_DIR / name, project / name)
    shutil.copytree(PROJECT_DIR / "chalicelib", project / "chalicelib", ignore=shutil.ignore_patterns("__pycache__"))
    (project / ".chalice").mkdir()
    if (PROJECT_DIR / ".chalice" / "deployments").is_dir():  # the dependencies' zip an earlier synth built
        shutil.copytree(PROJECT_DIR / ".chalice" / "deployments", project / ".chalice" / "deployments")
    config = json.loads((PROJECT_DIR / ".chalice" / "config.json").read_text(encoding="utf-8"))
    config["stages"]["legacy"] = LEGACY_STAGE
    (project / ".chalice" / "config.json").write_text(json.dumps(config), encoding="utf-8")
    return synthesize(tmp_path_factory.mktemp("legacy"), {"stage": "legacy", "production": "true"}, project)


def readers_of(stack: Synthesized, action: str) -> dict[str, list[Any]]:
    """Role logical id -> the resources ``action`` is allowed on, over the functions' roles."""
    found: dict[str, list[Any]] = {}
    for role_id, role in stack.function_roles().items():
        for statement in statements(role["Properties"]["Policies"][0]["PolicyDocument"]):
            if action in as_list(statement["Action"]):
                found.setdefault(role_id, []).extend(as_list(statement["Resource"]))
    return found


def test_the_secret_is_readable_by_the_signing_functions_only(legacy: Synthesized) -> None:
    secret_id, secret = legacy.resource("AWS::SecretsManager::Secret")
    assert secret["Properties"]["Name"] == "alipay-global-legacy/legacy-merchant-key"
    assert secret["DeletionPolicy"] == "Retain"
    data_key = legacy.logical_id("AWS::KMS::Key", "DataKey")
    assert secret["Properties"]["KmsKeyId"] == {"Fn::GetAtt": [data_key, "Arn"]}
    readers = readers_of(legacy, "secretsmanager:GetSecretValue")
    assert {role.split("Role")[0] for role in readers} == {"Api", "Reconciler", "ReturnPage", "ClientResult"}
    for resources in readers.values():
        assert resources == [{"Ref": secret_id}]
    variables = legacy.json["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    assert variables["MERCHANT_PRIVATE_KEY_SECRET"] == {"Ref": secret_id}
    assert "MERCHANT_PRIVATE_KEY_FILE" not in variables


def test_an_open_platform_stage_has_no_legacy_secret(prod: Synthesized) -> None:
    assert not prod.resources("AWS::SecretsManager::Secret")
    assert not readers_of(prod, "secretsmanager:GetSecretValue")


def test_a_production_stage_refuses_the_legacy_key_as_a_file() -> None:
    with pytest.raises(SettingsError, match="MERCHANT_PRIVATE_KEY_FILE"):
        check_legacy_key({"MERCHANT_PRIVATE_KEY_FILE": "merchant.pem"}, "prod", production=True)
    check_legacy_key({"MERCHANT_PRIVATE_KEY_FILE": "merchant.pem"}, "dev", production=False)
