"""The perimeter: a web ACL that leaves Alipay's traffic alone but for a rate limit, per-caller throttles and
concurrency, access logs with the caller, customer-managed keys at rest, a hardened user pool, and an alarm when
anyone changes the Alipay settings."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import Synthesized, as_list, dump, statements, synthesize
from stacks import perimeter, topology
from stacks.settings import SettingsError, StageSettings

ALIPAY_PATHS = {topology.WEBHOOK_PATH, topology.ANTOM_NOTIFY_PATH, topology.RETURN_PATH}


@pytest.fixture(scope="module")
def hosted(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    """Production with hosted sign-in, threat protection, another stack owning API Gateway's logs role, no reserved
    concurrency (a small account) and sized limits."""
    return synthesize(
        tmp_path_factory.mktemp("hosted"),
        {
            "stage": "prod",
            "cognito_callback_urls": "https://shop.example.com/signin, myapp://signin",
            "cognito_threat_protection": "true",
            "api_gateway_account_role": "existing",
            "webhook_reserved_concurrency": "0",
            "consumer_max_concurrency": "10",
            "waf_alipay_rate_limit": "3000",
            "buyer_throttle_rate": "7",
        },
    )


def web_acl(stack: Synthesized) -> dict[str, Any]:
    _, acl = stack.resource("AWS::WAFv2::WebACL")
    properties: dict[str, Any] = acl["Properties"]
    return properties


def rules(stack: Synthesized) -> dict[str, dict[str, Any]]:
    return {rule["Name"]: rule for rule in web_acl(stack)["Rules"]}


def paths_matched(statement: dict[str, Any]) -> set[tuple[str, str]]:
    """The (constraint, path) pairs of a byte-match statement or an OR of them."""
    if "OrStatement" in statement:
        return {pair for s in statement["OrStatement"]["Statements"] for pair in paths_matched(s)}
    match = statement["ByteMatchStatement"]
    assert match["FieldToMatch"] == {"UriPath": {}}
    return {(match["PositionalConstraint"], match["SearchString"])}


def test_managed_rules_guard_every_route_but_alipays(every_stack: Synthesized) -> None:
    acl = web_acl(every_stack)
    assert (acl["Scope"], acl["DefaultAction"]) == ("REGIONAL", {"Allow": {}})
    found = rules(every_stack)
    for name in perimeter.MANAGED_RULE_GROUPS:
        rule = found[name]
        group = rule["Statement"]["ManagedRuleGroupStatement"]
        assert (group["VendorName"], group["Name"]) == ("AWS", name)
        assert rule["OverrideAction"] == {"None": {}}  # the group's own actions: it blocks
        # Never on the webhook or the return: Alipay's free-text fields look like attacks to body inspection.
        excluded = group["ScopeDownStatement"]["NotStatement"]["Statement"]
        assert paths_matched(excluded) == {("ENDS_WITH", path) for path in ALIPAY_PATHS}
    priorities = [rule["Priority"] for rule in acl["Rules"]]
    assert sorted(priorities) == list(range(len(priorities)))


def test_rate_limits_per_address_for_each_kind_of_caller(prod: Synthesized, hosted: Synthesized) -> None:
    for stack, alipay in ((prod, 10_000), (hosted, 3_000)):
        found = rules(stack)
        limits = {}
        for name in ("AlipayPathsRatePerIp", "BuyerRoutesRatePerIp", "MerchantRoutesRatePerIp"):
            rate = found[name]["Statement"]["RateBasedStatement"]
            assert (rate["AggregateKeyType"], rate["EvaluationWindowSec"]) == ("IP", 300)
            assert found[name]["Action"] == {"Block": {}}
            limits[name] = (rate["Limit"], paths_matched(rate["ScopeDownStatement"]))
        assert limits["AlipayPathsRatePerIp"] == (alipay, {("ENDS_WITH", p) for p in ALIPAY_PATHS})
        # Behind the stage's name on the execute-api URL, or first behind a custom domain.
        assert limits["BuyerRoutesRatePerIp"] == (2_000, {("STARTS_WITH", "/api/orders"), ("STARTS_WITH", "/orders")})
        assert limits["MerchantRoutesRatePerIp"][1] == {("STARTS_WITH", "/api/merchant"), ("STARTS_WITH", "/merchant")}


def test_the_web_acl_guards_the_apis_stage(every_stack: Synthesized) -> None:
    _, association = every_stack.resource("AWS::WAFv2::WebACLAssociation")
    acl = every_stack.logical_id("AWS::WAFv2::WebACL", "PerimeterWebAcl")
    assert association["Properties"]["WebACLArn"] == {"Fn::GetAtt": [acl, "Arn"]}
    # ${RestAPI.Stage}: SAM's reference to the stage it generates, so the association waits for the stage.
    assert association["Properties"]["ResourceArn"] == {
        "Fn::Sub": "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/${RestAPI}/stages/${RestAPI.Stage}"
    }


def test_every_block_of_alipays_traffic_raises_an_alarm(prod: Synthesized) -> None:
    (alarm,) = [
        a["Properties"]
        for a in prod.resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["AlarmName"].endswith("-AlipayTrafficBlocked")
    ]
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"], alarm["Threshold"]) == (
        "AWS/WAFV2",
        "BlockedRequests",
        "Sum",
        1,
    )
    dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
    assert dimensions["WebACL"] == "alipay-global-prod-api"
    assert dimensions["Rule"] == perimeter.ALIPAY_RATE_RULE
    assert dimensions["WebACL"] == web_acl(prod)["Name"]


def method_settings(stack: Synthesized) -> dict[tuple[str, str], dict[str, Any]]:
    found = stack.json["Resources"]["RestAPI"]["Properties"]["MethodSettings"]
    return {(s["ResourcePath"], s["HttpMethod"]): s for s in found}


def test_each_caller_has_its_own_throttle_per_route(prod: Synthesized, hosted: Synthesized) -> None:
    settings = method_settings(prod)
    assert settings[("/*", "*")]["ThrottlingRateLimit"] == 50
    assert settings[("/~1alipay~1notify", "POST")]["ThrottlingRateLimit"] == 50
    assert settings[("/~1orders", "POST")]["ThrottlingRateLimit"] == 25
    assert settings[("/~1merchant~1orders", "POST")]["ThrottlingRateLimit"] == 50
    assert settings[("/~1orders~1{out_trade_no}", "GET")]["ThrottlingBurstLimit"] == 50
    assert ("/~1health", "GET") not in settings  # public and cheap: the stage's limit
    assert method_settings(hosted)[("/~1orders", "POST")]["ThrottlingRateLimit"] == 7
    # Every route of the definition under a caller's prefix has its entry.
    paths = prod.json["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    for path, methods in paths.items():
        if path.startswith((topology.BUYER_PREFIX, topology.MERCHANT_PREFIX)) or path in ALIPAY_PATHS:
            for method in methods:
                if method != "options":
                    assert ("/" + path.replace("/", "~1"), method.upper()) in settings, (path, method)


def test_the_webhook_has_reserved_instances_and_the_consumer_a_ceiling(
    prod: Synthesized, dev: Synthesized, hosted: Synthesized
) -> None:
    for stack, reserved in ((prod, 5), (dev, None), (hosted, None)):
        webhook = stack.json["Resources"][stack.logical_id("AWS::Lambda::Function", "Webhook")]["Properties"]
        assert webhook.get("ReservedConcurrentExecutions") == reserved
    for stack, ceiling in ((prod, 5), (hosted, 10)):
        consumer = stack.json["Resources"]["ApplyNotifications"]["Properties"]
        (event,) = consumer["Events"].values()
        assert event["Properties"]["ScalingConfig"] == {"MaximumConcurrency": ceiling}
        # Never reserved concurrency: a throttled consumer's poller would count receives towards the DLQ.
        assert "ReservedConcurrentExecutions" not in consumer


def test_access_logs_name_the_caller_and_never_a_token(every_stack: Synthesized) -> None:
    setting = every_stack.json["Resources"]["RestAPI"]["Properties"]["AccessLogSetting"]
    group = every_stack.logical_id("AWS::Logs::LogGroup", "AccessLogs")
    assert setting["DestinationArn"] == {"Fn::GetAtt": [group, "Arn"]}
    text = dump(setting["Format"])
    for field in ("$context.identity.userArn", "$context.authorizer.claims.sub", "$context.identity.sourceIp"):
        assert field in text
    assert "Authorization" not in text
    assert "$input" not in text


def test_the_logging_role_is_set_once_per_region_and_outlives_the_stack(prod: Synthesized, hosted: Synthesized) -> None:
    (account,) = prod.resources("AWS::ApiGateway::Account").values()
    assert account["DeletionPolicy"] == "Retain"
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    role = prod.json["Resources"][role_id]
    assert role["DeletionPolicy"] == "Retain"
    assert "AmazonAPIGatewayPushToCloudWatchLogs" in dump(role["Properties"]["ManagedPolicyArns"])
    assert not hosted.resources("AWS::ApiGateway::Account")


def key_statements(stack: Synthesized) -> dict[str, dict[str, Any]]:
    key = stack.json["Resources"][stack.logical_id("AWS::KMS::Key", "DataKey")]
    assert key["Properties"]["EnableKeyRotation"] is True
    return {s["Sid"]: s for s in statements(key["Properties"]["KeyPolicy"])}


def test_data_at_rest_is_under_the_stages_own_key(every_stack: Synthesized) -> None:
    key = {"Fn::GetAtt": [every_stack.logical_id("AWS::KMS::Key", "DataKey"), "Arn"]}
    _, table = every_stack.resource("AWS::DynamoDB::Table")
    assert table["Properties"]["SSESpecification"] == {"KMSMasterKeyId": key, "SSEEnabled": True, "SSEType": "KMS"}
    for group in every_stack.resources("AWS::Logs::LogGroup").values():
        assert group["Properties"]["KmsKeyId"] == key
    _, topic = every_stack.resource("AWS::SNS::Topic")
    assert topic["Properties"]["KmsMasterKeyId"] == key
    by_sid = key_statements(every_stack)
    # Administration and use through IAM (no kms:*, no grant but DynamoDB's own for the table).
    assert "kms:*" not in dump(by_sid)
    grants = by_sid["DynamoDbGrantsForTheTable"]
    assert grants["Condition"]["Bool"] == {"kms:GrantIsForAWSResource": "true"}
    assert "dynamodb." in dump(grants["Condition"]["StringEquals"]["kms:ViaService"])
    # Logs only for this stage's groups; alarms and rules may publish to the encrypted topic.
    logs_context = dump(by_sid["LogsOfThisStage"]["Condition"])
    assert f"/alipay-global/{every_stack.settings.stage}/*" in logs_context
    publishers = by_sid["AlarmsAndRulesPublishToTheEncryptedTopic"]
    assert set(as_list(publishers["Principal"]["Service"])) == {"cloudwatch.amazonaws.com", "events.amazonaws.com"}
    assert as_list(publishers["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_the_user_pool_offers_mfa_and_no_implicit_flow(prod: Synthesized, hosted: Synthesized) -> None:
    for stack in (prod, hosted):
        _, pool = stack.resource("AWS::Cognito::UserPool")
        assert pool["Properties"]["MfaConfiguration"] == "OPTIONAL"
        assert pool["Properties"]["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]
        _, client = stack.resource("AWS::Cognito::UserPoolClient")
        assert "implicit" not in as_list(client["Properties"].get("AllowedOAuthFlows", []))
        assert "https://example.com" not in dump(client)
    _, client = prod.resource("AWS::Cognito::UserPoolClient")
    assert "AllowedOAuthFlows" not in client["Properties"]  # no hosted sign-in without named callbacks
    _, client = hosted.resource("AWS::Cognito::UserPoolClient")
    assert client["Properties"]["AllowedOAuthFlows"] == ["code"]
    assert client["Properties"]["CallbackURLs"] == ["https://shop.example.com/signin", "myapp://signin"]
    _, pool = hosted.resource("AWS::Cognito::UserPool")
    assert pool["Properties"]["UserPoolTier"] == "PLUS"
    assert "UserPoolAddOns" in pool["Properties"] or "StandardThreatProtectionMode" in dump(pool)


def test_a_change_to_the_alipay_settings_notifies_the_alarm_topic(every_stack: Synthesized) -> None:
    rule_id = every_stack.logical_id("AWS::Events::Rule", "AlipaySettingsChanged")
    rule = every_stack.json["Resources"][rule_id]
    pattern = rule["Properties"]["EventPattern"]
    stage = every_stack.settings.stage
    assert pattern == {
        "source": ["aws.ssm"],
        "detail-type": ["Parameter Store Change"],
        "detail": {"name": [{"prefix": f"/alipay-global/{stage}/"}]},
    }
    topic = every_stack.logical_id("AWS::SNS::Topic", "MonitoringAlarmTopic")
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Ref": topic}
    _, policy = every_stack.resource("AWS::SNS::TopicPolicy")
    document = policy["Properties"]["PolicyDocument"]
    (publish,) = [s for s in statements(document) if s.get("Sid") == "AlipaySettingsChangesPublish"]
    assert publish["Principal"] == {"Service": "events.amazonaws.com"}
    assert publish["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}}


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"cognito_callback_urls": "http://shop.example.com/cb"}, "cognito_callback_urls"),
        ({"cognito_callback_urls": "https://x.example/cb", "orders_auth": "none"}, "only for the user pool"),
        ({"waf_buyer_rate_limit": "5"}, "waf_buyer_rate_limit"),
        ({"consumer_max_concurrency": "1"}, "consumer_max_concurrency"),
        ({"api_gateway_account_role": "mine"}, "api_gateway_account_role"),
        ({"webhook_reserved_concurrency": "-1"}, "webhook_reserved_concurrency"),
    ],
)
def test_perimeter_settings_are_checked(context: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        StageSettings.from_context({"stage": "dev", **context})


def test_localhost_callbacks_are_allowed_for_development() -> None:
    settings = StageSettings.from_context({"stage": "dev", "cognito_callback_urls": "http://localhost:3000/cb"})
    assert settings.cognito_callback_urls == ("http://localhost:3000/cb",)


def test_every_accepted_scanner_finding_is_listed_with_its_reason_in_the_deploy_guide() -> None:
    from conftest import PROJECT_DIR
    from stacks.scanner import ACCEPTED

    guide = (PROJECT_DIR / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("### Scanner findings we accept", 1)[1].split("\n## ", 1)[0]
    listed = {
        line.split("|")[1].strip().strip("`"): line.split("|")[3].strip()
        for line in section.splitlines()
        if line.startswith("| `CKV_")
    }
    assert listed == ACCEPTED


def test_suppressions_carry_their_reason_in_the_template(every_stack: Synthesized) -> None:
    from stacks.scanner import ACCEPTED

    found = 0
    for resource in every_stack.json["Resources"].values():
        for skip in resource.get("Metadata", {}).get("checkov", {}).get("skip", []):
            assert skip["comment"] == ACCEPTED[skip["id"]]
            found += 1
    assert found >= 20


def app_environment(stack: Synthesized) -> dict[str, Any]:
    variables: dict[str, Any] = stack.json["Resources"]["APIHandler"]["Properties"]["Environment"]["Variables"]
    return variables


def test_deployed_stages_take_only_https_return_urls_on_listed_hosts(every_stack: Synthesized) -> None:
    variables = app_environment(every_stack)
    assert variables["STRICT_RETURN_URLS"] == "true"
    assert variables["RETURN_URL_HOSTS"] == ""  # none listed: a request may not send its own return_url
    settings = StageSettings.from_context({"stage": "prod", "return_url_hosts": "Shop.Example.com, pay.example.com"})
    assert settings.return_url_hosts == ("shop.example.com", "pay.example.com")
    with pytest.raises(SettingsError, match="return_url_hosts"):
        StageSettings.from_context({"stage": "prod", "return_url_hosts": "https://shop.example.com"})


def test_the_stack_grants_who_may_write_the_hand_put_alipay_settings_but_never_writes_them(
    every_stack: Synthesized,
) -> None:
    logical_id = every_stack.logical_id("AWS::IAM::ManagedPolicy", "AlipaySettingsWriterPolicy")
    (statement,) = statements(every_stack.json["Resources"][logical_id]["Properties"]["PolicyDocument"])
    assert statement["Action"] == ["ssm:PutParameter", "ssm:GetParameters", "ssm:GetParameterHistory"]
    stage = every_stack.settings.stage
    names = {dump(arn).split("parameter/")[1].split('"')[0] for arn in statement["Resource"]}
    assert names == {
        f"alipay-global/{stage}/{name}"
        for name in (
            "app-id",
            "seller-id",
            "partner-id",
            "alipay-public-keys",
            "result-page-url",
            "app-cert",
            "alipay-certs",
            "alipay-root-cert",
        )
    }
    # The stack writes only its own URLs; the Alipay ids and keys are never template values a deploy would restore.
    written = {
        p["Properties"]["Name"] for p in every_stack.resources("AWS::SSM::Parameter").values()
    }
    assert written == {f"/alipay-global/{stage}/notify-url", f"/alipay-global/{stage}/return-url"}
    outputs = every_stack.json["Outputs"]
    assert outputs["AlipaySettingsWriterPolicyArn"]["Value"] == {"Ref": logical_id}
