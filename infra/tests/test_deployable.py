"""What CloudFormation will run: the SAM transform (done here offline) and cfn-lint, and no account or secret."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
from cfnlint.api import lint
from samtranslator.translator.transform import transform

from conftest import Synthesized


class NoManagedPolicies:
    """The transform looks managed policies up only for roles it creates; every function here has its own role."""

    def load(self) -> dict[str, str]:
        return {}


def translated(stack: Synthesized) -> dict[str, Any]:
    result: dict[str, Any] = transform(copy.deepcopy(stack.json), {}, NoManagedPolicies())
    return result


@pytest.fixture(scope="module")
def prod_cloudformation(prod: Synthesized) -> dict[str, Any]:
    return translated(prod)


def test_the_sam_transform_makes_the_mappings_with_their_settings(prod_cloudformation: dict[str, Any]) -> None:
    mappings = {
        v["Properties"]["FunctionName"]["Ref"]: v["Properties"]
        for v in prod_cloudformation["Resources"].values()
        if v["Type"] == "AWS::Lambda::EventSourceMapping"
    }
    assert set(mappings) == {"ApplyNotifications", "RelayOrderEvents"}
    assert mappings["ApplyNotifications"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    relay = mappings["RelayOrderEvents"]
    assert relay["BisectBatchOnFunctionError"] is True
    assert relay["MaximumRetryAttempts"] == 10
    assert relay["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert "OrderEventsFailed" in json.dumps(relay["DestinationConfig"])


def test_the_sam_transform_throttles_the_stage_and_adds_no_role(
    prod: Synthesized, prod_cloudformation: dict[str, Any]
) -> None:
    resources = prod_cloudformation["Resources"]
    (stage,) = [v["Properties"] for v in resources.values() if v["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["StageName"] == "api"
    assert stage["MethodSettings"][0]["ThrottlingRateLimit"] == 50
    roles = {k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role"}
    assert roles == set(prod.resources("AWS::IAM::Role"))
    assert len(roles - set(prod.function_roles())) == 1  # API Gateway's account-wide logs role


@pytest.mark.parametrize("name", ["prod", "dev", "prod_configured", "unauthenticated", "antom"])
def test_cfn_lint_passes_on_the_transformed_template(request: pytest.FixtureRequest, name: str) -> None:
    stack: Synthesized = request.getfixturevalue(name)
    matches = lint(json.dumps(translated(stack)), regions=["us-east-1", "eu-west-1", "ap-southeast-1"])
    assert [str(m) for m in matches] == []


def test_the_assembly_names_no_account_and_holds_no_credentials(every_stack: Synthesized) -> None:
    texts = [path.read_text(encoding="utf-8") for path in every_stack.assembly_dir.rglob("*.json")]
    assert texts
    # The tests' own ARNs, and the placeholder stream ARN of chalicelib/config.py (replaced in the template).
    placeholders = ("123456789012", "000000000000")
    for text in texts:
        # Environment-agnostic: the account comes from ${AWS::AccountId} at deploy time, in ARNs and environments.
        accounts = set(re.findall(r"arn:aws[a-z-]*:[a-z0-9-]*:[a-z0-9-]*:([0-9]{12}):", text))
        accounts |= set(re.findall(r"aws://([0-9]{12})/", text))
        accounts |= set(re.findall(r'"account(?:Id)?":\s*"([0-9]{12})"', text))
        assert accounts <= set(placeholders)
        assert not re.search(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b", text)
        assert "aws_secret_access_key" not in text.lower()


def test_synthesis_needs_no_lookup_in_any_account(every_stack: Synthesized) -> None:
    manifest = json.loads((every_stack.assembly_dir / "manifest.json").read_text(encoding="utf-8"))
    # A context lookup (VPC, AMI, hosted zone...) would show here as missing context for the CLI to fetch from AWS.
    assert "missing" not in manifest
    (stack,) = [a for a in manifest["artifacts"].values() if a["type"] == "aws:cloudformation:stack"]
    assert stack["environment"] == "aws://unknown-account/unknown-region"
