"""Stage settings from context, and the names the stack shares with the app (checked against its source)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import POOL_ARN, PROJECT_DIR, Synthesized
from stacks import alipay_global, topology
from stacks.settings import SettingsError, StageSettings, chalice_timeout, check_chalice_stage


def test_the_deployed_table_has_the_keys_index_stream_and_ttl_of_the_apps_topology(prod: Synthesized) -> None:
    # chalicelib/adapters/dynamodb.py creates the local table from the same names (tests/unit/test_topology.py
    # refuses any second spelling of them), so the local stack and AWS query one schema.
    _, table = prod.resource("AWS::DynamoDB::Table")
    deployed = table["Properties"]
    assert deployed["KeySchema"] == [{"AttributeName": topology.PARTITION_KEY, "KeyType": "HASH"}]
    indexes = {index["IndexName"]: index["KeySchema"] for index in deployed["GlobalSecondaryIndexes"]}
    assert indexes == {
        topology.WAITING_INDEX: [
            {"AttributeName": topology.WAITING_KEY, "KeyType": "HASH"},
            {"AttributeName": topology.WAITING_SINCE, "KeyType": "RANGE"},
        ],
        topology.LISTING_INDEX: [
            {"AttributeName": topology.LISTING_KEY, "KeyType": "HASH"},
            {"AttributeName": topology.LISTING_SORT, "KeyType": "RANGE"},
        ],
    }
    assert deployed["StreamSpecification"] == {"StreamViewType": topology.STREAM_VIEW_TYPE}
    assert deployed["TimeToLiveSpecification"] == {"AttributeName": topology.TTL_ATTRIBUTE, "Enabled": True}


def test_the_stack_takes_every_shared_name_from_the_apps_topology(prod: Synthesized) -> None:
    # The stack's module constants are the topology's (imported, not spelled again) ...
    assert (
        topology.PARTITION_KEY,
        topology.WAITING_INDEX,
        topology.EVENT_SOURCE,
        tuple(topology.SSM_PARAMETERS),
        topology.SIGNING_ALGORITHM,
        topology.MAX_RECEIVE_COUNT,
    ) == (
        alipay_global.PARTITION_KEY,
        alipay_global.WAITING_INDEX,
        alipay_global.EVENT_SOURCE,
        alipay_global.ALIPAY_PARAMETERS,
        alipay_global.SIGNING_ALGORITHM,
        alipay_global.MAX_RECEIVE_COUNT,
    )
    # ... and the synthesized template uses them where AWS reads them.
    [redrive] = [q["Properties"]["RedrivePolicy"] for q in prod.resources("AWS::SQS::Queue").values()
                 if "RedrivePolicy" in q["Properties"]]
    assert redrive["maxReceiveCount"] == topology.MAX_RECEIVE_COUNT
    [archive] = prod.resources("AWS::Events::Archive").values()
    assert archive["Properties"]["EventPattern"] == {"source": [topology.EVENT_SOURCE]}
    parameters = {p["Properties"]["Name"] for p in prod.resources("AWS::SSM::Parameter").values()}
    assert parameters
    assert parameters <= {f"{prod.settings.parameter_path}/{name}" for name in topology.SSM_PARAMETERS}


def test_the_defaults_are_a_dev_stage_with_a_cognito_authorizer() -> None:
    settings = StageSettings.from_context({})
    assert (settings.stage, settings.production, settings.orders_auth) == ("dev", False, "cognito")
    assert (settings.stack_name, settings.parameter_path) == ("alipay-global-dev", "/alipay-global/dev")


def test_a_return_url_in_context_is_kept_and_none_means_the_deployed_return_page() -> None:
    assert StageSettings.from_context({}).return_url is None
    url = "https://pay.example.com/" + "r" * 232  # 256 characters: the most Alipay takes
    assert StageSettings.from_context({"return_url": f" {url} "}).return_url == url


@pytest.mark.parametrize("context", [{"stage": "prod"}, {"stage": "live", "production": "true"}])
def test_a_production_stage_refuses_to_leave_the_buyer_routes_without_an_authorizer(context: dict[str, str]) -> None:
    with pytest.raises(SettingsError, match=r"^orders_auth: 'none' is refused on the production stage .*/orders"):
        StageSettings.from_context({**context, "orders_auth": "none"})
    assert StageSettings.from_context({"stage": "dev", "orders_auth": "none"}).orders_auth == "none"


def test_merchant_principals_and_redrive_roles_are_comma_separated_lists() -> None:
    role = "arn:aws:iam::123456789012:role/path/Backend"
    redrive = "arn:aws:iam::123456789012:role/Redrive"
    settings = StageSettings.from_context(
        {"merchant_principals": f" 210987654321 , {role},210987654321,", "redrive_roles": redrive}
    )
    assert settings.merchant_principals == ("210987654321", role)
    assert settings.redrive_roles == (redrive,)
    assert StageSettings.from_context({}).merchant_principals == StageSettings.from_context({}).redrive_roles == ()


def test_prod_is_a_production_stage_and_another_can_be_declared_one() -> None:
    assert StageSettings.from_context({"stage": "prod"}).production
    assert StageSettings.from_context({"stage": "dev", "production": "true"}).production


@pytest.mark.parametrize(
    ("context", "named"),
    [
        ({"stage": "Prod"}, "stage"),
        ({"stage": "prod-eu"}, "stage"),
        ({"orders_auth": "iam"}, "orders_auth"),
        ({"user_pool_arn": "eu-west-1_AbCdEf123"}, "user_pool_arn"),
        ({"orders_auth": "none", "user_pool_arn": POOL_ARN}, "user_pool_arn"),
        ({"public_key_readers": "arn:aws:iam::123456789012:role/A,alice"}, "public_key_readers"),
        ({"log_retention_days": "45"}, "log_retention_days"),
        ({"throttle_rate": "fast"}, "throttle_rate"),
        ({"throttle_burst": "0"}, "throttle_burst"),
        ({"production": "yes"}, "production"),
        ({"notify_url": "http://pay.example.com/alipay/notify"}, "notify_url"),
        ({"return_url": "http://pay.example.com/alipay/return"}, "return_url"),
        ({"return_url": "https://pay.example.com/alipay/return?shop=1"}, "return_url"),
        ({"return_url": "https://pay.example.com/alipay/return#top"}, "return_url"),
        ({"return_url": "https://pay.example.com/alipay return"}, "return_url"),
        ({"return_url": "https://pay.example.com/" + "r" * 233}, "return_url"),
        ({"stage": "prod", "orders_auth": "none"}, "orders_auth"),
        ({"merchant_principals": "12345678901"}, "merchant_principals"),
        ({"merchant_principals": "arn:aws:iam::123456789012:user/alice"}, "merchant_principals"),
        ({"merchant_principals": "*"}, "merchant_principals"),
        ({"redrive_roles": "123456789012"}, "redrive_roles"),
        ({"redrive_roles": "arn:aws:sts::123456789012:assumed-role/Redrive/session"}, "redrive_roles"),
        ({"csr_signers": "arn:aws:iam::123456789012:user/alice"}, "csr_signers"),
        ({"csr_signers": "*"}, "csr_signers"),
    ],
)
def test_a_bad_context_value_is_named(context: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=f"^{named}"):
        StageSettings.from_context(context)


def test_only_deployable_chalice_stages_with_stack_owned_roles_are_accepted(tmp_path: Path) -> None:
    check_chalice_stage(PROJECT_DIR, "prod")
    check_chalice_stage(PROJECT_DIR, "dev")
    for stage in ("local", "staging"):
        with pytest.raises(SettingsError, match="deployable stage"):
            check_chalice_stage(PROJECT_DIR, stage)
    (tmp_path / ".chalice").mkdir()
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps({"stages": {"prod": {}}}))
    with pytest.raises(SettingsError, match="manage_iam_role"):
        check_chalice_stage(tmp_path, "prod")


def test_the_consumer_timeout_is_looked_up_as_chalice_does(tmp_path: Path) -> None:
    (tmp_path / ".chalice").mkdir()
    config = {
        "lambda_timeout": 90,
        "stages": {"prod": {"lambda_timeout": 40, "lambda_functions": {"apply_notifications": {"lambda_timeout": 20}}}},
    }
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    assert chalice_timeout(tmp_path, "prod", "apply_notifications") == 20
    assert chalice_timeout(tmp_path, "prod", "relay_order_events") == 40
    assert chalice_timeout(tmp_path, "dev", "apply_notifications") == 90


def test_every_context_option_is_documented_in_the_deploy_guides_options_table() -> None:
    guide = (PROJECT_DIR / "docs" / "deploy.md").read_text(encoding="utf-8")
    options = guide.split("\n## Options\n", 1)[1].split("\n## ", 1)[0]
    # The first cell of each row of the table names the option(s) it documents.
    documented = {line.split("|")[1] for line in options.splitlines() if line.startswith("| `")}
    for option in StageSettings.__dataclass_fields__:
        assert any(f"`{option}`" in cell for cell in documented), option
