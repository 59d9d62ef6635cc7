"""An Antom stage (ALIPAY_PROTOCOL=antom): a merchant key of its own that only the signing functions may use, the
public route POST /antom/notify on the enqueue-only webhook behind the same perimeter, and its settings in every
function's environment. Settings an Antom stage cannot run with stop the synth."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ANTOM_CLIENT_ID, ANTOM_STAGE, READER_ARN, Synthesized, as_list, dump, statements
from stacks import perimeter, scanner, topology
from stacks.settings import (
    SettingsError,
    StageSettings,
    check_antom_stage,
    check_open_platform_only,
    notify_path,
    stage_protocol,
)

ANTOM_PATH = topology.ANTOM_NOTIFY_PATH
SIGNING = ("APIHandler", "ReconcileWaitingOrders", "ReturnPage", "ClientResult")
NEVER_SIGNING = ("Webhook", "ApplyNotifications", "RelayOrderEvents")
FUNCTIONS = (*SIGNING, *NEVER_SIGNING)


def function_id(stack: Synthesized, name: str) -> str:
    if name in stack.json["Resources"]:  # Chalice's own functions keep their names
        return name
    return stack.logical_id("AWS::Lambda::Function", name)


def role_arn(stack: Synthesized, name: str) -> dict[str, Any]:
    role = stack.json["Resources"][function_id(stack, name)]["Properties"]["Role"]["Fn::GetAtt"][0]
    return {"Fn::GetAtt": [role, "Arn"]}


def key_statements(stack: Synthesized, prefix: str) -> dict[str, dict[str, Any]]:
    key = stack.json["Resources"][stack.logical_id("AWS::KMS::Key", prefix)]
    return {s["Sid"]: s for s in statements(key["Properties"]["KeyPolicy"])}


def variables(stack: Synthesized, name: str) -> dict[str, Any]:
    found: dict[str, Any] = stack.json["Resources"][function_id(stack, name)]["Properties"]["Environment"]["Variables"]
    return found


def test_the_antom_key_is_an_rsa_signing_key_of_its_own_kept_on_delete(antom: Synthesized) -> None:
    antom_id = antom.logical_id("AWS::KMS::Key", "AntomSigningKey")
    open_platform_id = antom.logical_id("AWS::KMS::Key", "SigningKey")
    assert antom_id != open_platform_id
    key = antom.json["Resources"][antom_id]
    assert (key["Properties"]["KeySpec"], key["Properties"]["KeyUsage"]) == (
        topology.SIGNING_KEY_SPEC,
        "SIGN_VERIFY",
    )
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert key["Properties"]["PendingWindowInDays"] == 30
    aliases = {
        a["Properties"]["AliasName"]: a["Properties"]["TargetKeyId"]
        for a in antom.resources("AWS::KMS::Alias").values()
    }
    assert aliases["alias/alipay-global-antom-antom-merchant"] == {"Fn::GetAtt": [antom_id, "Arn"]}
    assert aliases["alias/alipay-global-antom-merchant"] == {"Fn::GetAtt": [open_platform_id, "Arn"]}


def test_only_the_signing_functions_may_sign_with_the_antom_key(antom: Synthesized) -> None:
    by_sid = key_statements(antom, "AntomSigningKey")
    sign = by_sid["SignAntomRequests"]
    assert as_list(sign["Action"]) == ["kms:Sign"]
    assert sign["Principal"] == {"AWS": [role_arn(antom, name) for name in SIGNING]}
    assert sign["Condition"] == {"StringEquals": {"kms:SigningAlgorithm": topology.SIGNING_ALGORITHM}}
    signers = [s for s in by_sid.values() if "kms:Sign" in as_list(s["Action"])]
    assert signers == [sign]
    # The public half: the API's role and the operators of public_key_readers (for Antom's dashboard), nothing more.
    readers = [s["Principal"]["AWS"] for s in by_sid.values() if "kms:GetPublicKey" in as_list(s["Action"])]
    assert readers == [role_arn(antom, "APIHandler"), READER_ARN]
    admin = as_list(by_sid["KeyAdministration"]["Action"])
    assert not {"kms:Sign", "kms:GetPublicKey", "kms:CreateGrant"} & set(admin)
    policy = dump(by_sid)
    for name in NEVER_SIGNING:
        assert dump(role_arn(antom, name)) not in policy, name


def test_the_open_platform_key_stays_but_nothing_on_an_antom_stage_uses_it(
    antom: Synthesized, prod: Synthesized
) -> None:
    by_sid = key_statements(antom, "SigningKey")
    assert set(by_sid) == {"KeyAdministration", "OperatorsReadPublicKey"}
    assert not [s for s in by_sid.values() if "kms:Sign" in as_list(s["Action"])]
    # An Open Platform stage has no Antom key, and its own key is as before.
    assert not [k for k in prod.resources("AWS::KMS::Key") if k.startswith("AntomSigningKey")]
    assert "SignOrderStrings" in key_statements(prod, "SigningKey")


def test_no_role_policy_grants_any_use_of_a_merchant_key(antom: Synthesized) -> None:
    # Signing goes through the key policies alone: no IAM policy of a function names either RSA key.
    rsa_keys = [antom.logical_id("AWS::KMS::Key", p) for p in ("AntomSigningKey", "SigningKey")]
    for role in antom.function_roles().values():
        text = dump(role["Properties"]["Policies"])
        for key in rsa_keys:
            assert key not in text


@pytest.mark.parametrize("name", FUNCTIONS)
def test_every_function_gets_the_antom_settings_and_signs_with_the_antom_key(antom: Synthesized, name: str) -> None:
    found = variables(antom, name)
    antom_key = antom.logical_id("AWS::KMS::Key", "AntomSigningKey")
    assert found["SIGNING_KEY_ID"] == {"Fn::GetAtt": [antom_key, "Arn"]}
    settings = ANTOM_STAGE["environment_variables"]
    assert found["ALIPAY_PROTOCOL"] == "antom"
    assert found["ANTOM_CLIENT_ID"] == ANTOM_CLIENT_ID
    assert found["ALIPAY_GATEWAY_URL"] == settings["ALIPAY_GATEWAY_URL"]
    assert found["ANTOM_PAYMENT_METHODS"] == settings["ANTOM_PAYMENT_METHODS"]
    assert found["SSM_PARAMETER_PATH"] == "/alipay-global/antom"
    assert "MERCHANT_PRIVATE_KEY_SECRET" not in found
    assert "ALIPAY_APP_ID" not in found


def test_the_signing_key_output_is_the_antom_key(antom: Synthesized) -> None:
    outputs = antom.json["Outputs"]
    antom_key = antom.logical_id("AWS::KMS::Key", "AntomSigningKey")
    assert outputs["SigningKeyArn"]["Value"] == {"Fn::GetAtt": [antom_key, "Arn"]}
    assert "Antom" in outputs["SigningKeyArn"]["Description"]
    open_platform = antom.logical_id("AWS::KMS::Key", "SigningKey")
    assert outputs["OpenPlatformSigningKeyArn"]["Value"] == {"Fn::GetAtt": [open_platform, "Arn"]}


def test_antom_notifications_reach_the_enqueue_only_webhook_on_a_public_route(antom: Synthesized) -> None:
    webhook = function_id(antom, "Webhook")
    paths = antom.json["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    operation = paths[ANTOM_PATH]["post"]
    uri = dump(operation["x-amazon-apigateway-integration"]["uri"])
    assert webhook in uri
    assert "APIHandler" not in uri
    assert "security" not in operation  # public: Antom signs, API Gateway asks for nothing
    permissions = [
        p["Properties"]
        for p in antom.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": webhook}
    ]
    sources = sorted(dump(p["SourceArn"]).rsplit('"', 2)[-2] for p in permissions)
    assert sources == ["/*/POST/alipay/notify", "/*/POST/antom/notify"]
    for permission in permissions:
        assert (permission["Action"], permission["Principal"]) == ("lambda:InvokeFunction", "apigateway.amazonaws.com")


def test_the_stack_writes_the_antom_route_as_the_notify_url(antom: Synthesized) -> None:
    (value,) = [
        p["Properties"]["Value"]
        for p in antom.resources("AWS::SSM::Parameter").values()
        if p["Properties"]["Name"] == "/alipay-global/antom/notify-url"
    ]
    # https://<api>.execute-api.<region>.<suffix>/api/antom/notify: the stage prefix is part of the path Antom signs.
    assert value["Fn::Join"][1][-1].endswith(f"/api{ANTOM_PATH}")
    assert dump(antom.json["Outputs"]["NotifyUrl"]["Value"]) == dump(value)


def test_the_perimeter_treats_antoms_route_as_alipays(antom: Synthesized, prod: Synthesized) -> None:
    assert ANTOM_PATH in perimeter.ALIPAY_PATHS
    for stack in (antom, prod):
        rules = {
            rule["Name"]: rule
            for rule in stack.json["Resources"][stack.logical_id("AWS::WAFv2::WebACL", "PerimeterWebAcl")][
                "Properties"
            ]["Rules"]
        }
        # Rate-limited per address as Alipay's notifications are, and never body-inspected by the managed rules.
        rate = dump(rules[perimeter.ALIPAY_RATE_RULE]["Statement"])
        assert dump({"SearchString": ANTOM_PATH}).strip("{}") in rate
        for name in perimeter.MANAGED_RULE_GROUPS:
            excluded = rules[name]["Statement"]["ManagedRuleGroupStatement"]["ScopeDownStatement"]["NotStatement"]
            assert dump({"SearchString": ANTOM_PATH}).strip("{}") in dump(excluded)
    # The webhook's own throttle (Alipay's budget), which no flood of buyer calls can spend.
    settings = {
        (s["ResourcePath"], s["HttpMethod"]): s
        for s in antom.json["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    }
    route = settings[("/~1antom~1notify", "POST")]
    assert (route["ThrottlingRateLimit"], route["ThrottlingBurstLimit"]) == (50, 100)
    # The alarm on blocked notifications keeps its name and rule.
    (alarm,) = [
        a["Properties"]
        for a in antom.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"].endswith("-AlipayTrafficBlocked")
    ]
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]}["Rule"] == perimeter.ALIPAY_RATE_RULE


CHECKOV = Path(__file__).resolve().parents[1] / ".checkov-venv" / "bin" / "checkov"


def test_the_scanner_finds_nothing_on_the_antom_stage(antom: Synthesized) -> None:
    # `make infra-check` scans the repository's stages (Open Platform); the Antom stage's template is scanned here,
    # with the same options, so its key and route need no suppression of their own.
    assert CHECKOV.exists(), "checkov's venv is missing: run `make infra-check`, which builds it"
    (template,) = antom.assembly_dir.glob("*.template.json")
    command = [str(CHECKOV), "--compact", "--skip-download", "--framework", "cloudformation", "-o", "json"]
    env = {**os.environ, "BC_SKIP_MAPPING": "TRUE"}
    done = subprocess.run([*command, "-f", str(template)], env=env, capture_output=True, text=True, check=False)  # noqa: S603
    report = json.loads(done.stdout)
    results = report["results"]
    assert results["failed_checks"] == [], done.stdout[:2000]
    assert done.returncode == 0
    scanned = {check["resource"].split(".")[0] for check in results["passed_checks"]}
    assert {"AWS::KMS::Key", "AWS::WAFv2::WebACL", "AWS::Lambda::Function"} <= scanned
    skipped = {check["check_id"] for check in results["skipped_checks"]}
    assert skipped <= set(scanner.ACCEPTED)


# --- settings an Antom stage cannot run with ----------------------------------------------------------------------


def antom_settings(**overrides: Any) -> StageSettings:
    return dataclasses.replace(StageSettings.from_context({"stage": "antom"}), **overrides)


def antom_environment(**overrides: str) -> dict[str, str]:
    environment = dict(ANTOM_STAGE["environment_variables"])
    environment.update(overrides)
    return {k: v for k, v in environment.items() if v}


def test_the_stage_protocol_picks_the_notify_route() -> None:
    assert stage_protocol({}) == "openapi"
    assert stage_protocol({"ALIPAY_PROTOCOL": "antom"}) == "antom"
    assert notify_path("antom") == ANTOM_PATH
    assert notify_path("openapi") == notify_path("mapi") == topology.WEBHOOK_PATH
    with pytest.raises(SettingsError, match="ALIPAY_PROTOCOL 'ams'"):
        stage_protocol({"ALIPAY_PROTOCOL": "ams"})


@pytest.mark.parametrize("protocol", ["antom", "mapi"])
def test_require_trans_currency_is_refused_at_synthesis_on_a_stage_that_is_not_open_platform(protocol: str) -> None:
    with pytest.raises(SettingsError, match="REQUIRE_TRANS_CURRENCY"):
        check_open_platform_only({"REQUIRE_TRANS_CURRENCY": "true"}, protocol, "global")
    check_open_platform_only({"REQUIRE_TRANS_CURRENCY": "false"}, protocol, "global")
    check_open_platform_only({"REQUIRE_TRANS_CURRENCY": "true"}, "openapi", "prod")


def test_a_complete_antom_stage_passes() -> None:
    check_antom_stage(antom_environment(), antom_settings())
    check_antom_stage(antom_environment(ALIPAY_GATEWAY_URL=""), antom_settings())  # the default gateway
    check_antom_stage(
        antom_environment(ALIPAY_SIGN_TYPE="RSA2", ALIPAY_GATEWAY_URL="https://open-de-global.alipay.com/"),
        antom_settings(notify_url="https://pay.example.com/antom/notify"),
    )


@pytest.mark.parametrize(
    ("environment", "settings", "message"),
    [
        ({"ANTOM_CLIENT_ID": ""}, {}, "needs ANTOM_CLIENT_ID"),
        ({"ANTOM_CLIENT_ID": "SANDBOX 5Y03"}, {}, "is not a client id"),
        ({"ALIPAY_SIGN_TYPE": "RSA"}, {}, "RSA256"),
        ({"MERCHANT_PRIVATE_KEY_FILE": "merchant.pem"}, {}, "MERCHANT_PRIVATE_KEY_FILE"),
        ({"ALIPAY_KEY_MODE": "cert"}, {}, "certificate mode"),
        ({}, {"csr_signers": ("arn:aws:iam::123456789012:role/Csr",)}, "csr_signers"),
        # Open Platform's gateway, a path, plain http: Antom's base URL takes its /ams/api/v1/... paths.
        ({"ALIPAY_GATEWAY_URL": "https://openapi.alipay.com/gateway.do"}, {}, "ALIPAY_GATEWAY_URL"),
        ({"ALIPAY_GATEWAY_URL": "https://open-sea-global.alipay.com/ams/api/v1"}, {}, "ALIPAY_GATEWAY_URL"),
        ({"ALIPAY_GATEWAY_URL": "http://open-sea-global.alipay.com"}, {}, "ALIPAY_GATEWAY_URL"),
        ({"ANTOM_PAYMENT_METHODS": "ALIPAY_CN,alipay_hk"}, {}, "alipay_hk"),
        # The registered URL's path is what Antom signs: a custom domain's URL must still be the Antom route's.
        ({}, {"notify_url": "https://pay.example.com/alipay/notify"}, "notify_url"),
        ({}, {"notify_url": "https://pay.example.com/antom/notify#x"}, "notify_url"),
    ],
)
def test_an_antom_stage_refuses_what_it_cannot_run_with(
    environment: dict[str, str], settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        check_antom_stage(antom_environment(**environment), antom_settings(**settings))
