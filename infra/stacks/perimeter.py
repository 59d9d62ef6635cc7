"""The deployed perimeter: a web ACL in front of the API, per-caller limits, access logs, and customer-managed keys.

Alipay's traffic is treated apart from everyone else's. Its notifications carry free text (subjects, bodies, buyer
names) that body-inspection rules mistake for attacks, and a notification the firewall blocks is retried by Alipay
for about 25 hours and then only reconciliation finds the payment. So the managed rule groups never look at the
webhook (``POST /alipay/notify``, and Antom's ``POST /antom/notify``, JSON) or the return path; those paths get only
a per-address rate limit sized from peak payment volume, and every block there raises an alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_apigateway as apigateway
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_wafv2 as wafv2
from constructs import Construct

from stacks import topology
from stacks.settings import StageSettings

# AWS managed rule groups for every route but Alipay's: the common rule set (OWASP top ten), known bad inputs
# (Log4j, request smuggling) and Amazon's IP reputation list. Free of charge beyond the web ACL's own.
MANAGED_RULE_GROUPS = (
    "AWSManagedRulesAmazonIpReputationList",
    "AWSManagedRulesCommonRuleSet",
    "AWSManagedRulesKnownBadInputsRuleSet",
)
# The paths Alipay (or the shopper's browser coming back from Alipay's cashier) calls: never body-inspected. Antom's
# notifications too: JSON with the same free text, resent 8 times over 24 h and then only found by reconciliation.
# No rule admits or refuses them by source address: Antom's documentation publishes no list of the addresses it posts
# from (nor does this stack rely on one for Alipay): a notification is trusted for its signature, which the webhook
# checks.
ALIPAY_PATHS = (topology.WEBHOOK_PATH, topology.ANTOM_NOTIFY_PATH, topology.RETURN_PATH)
# The rule whose blocks the alarm watches: a block there is a lost notification until reconciliation finds it.
ALIPAY_RATE_RULE = "AlipayPathsRatePerIp"
RATE_WINDOW_SECONDS = 300  # WAF counts rate-based rules over this window (60, 120, 300 or 600 s)

# One line per request, JSON, with who called: the merchant's IAM ARN or the buyer's Cognito sub, never a token.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTime",
    "httpMethod": "$context.httpMethod",
    "resourcePath": "$context.resourcePath",
    "path": "$context.path",
    "status": "$context.status",
    "responseLength": "$context.responseLength",
    "latencyMs": "$context.responseLatency",
    "sourceIp": "$context.identity.sourceIp",
    "userAgent": "$context.identity.userAgent",
    "callerArn": "$context.identity.userArn",
    "buyer": "$context.authorizer.claims.sub",
    "errorType": "$context.error.responseType",
    "wafStatus": "$context.waf.status",
}


@dataclass(frozen=True)
class ApiTarget:
    """The API the perimeter guards: its ``AWS::Serverless::Api`` logical id and the stage's name."""

    rest_api_logical_id: str
    stage_name: str


# What the account's principals may do with the data key through their IAM policies (functions' roles, through
# DynamoDB only): enumerated, never kms:*, and never kms:CreateGrant except DynamoDB's own grants for the table.
DATA_KEY_USE_ACTIONS = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)
LOGS_KEY_ACTIONS = (
    "kms:Decrypt",
    "kms:DescribeKey",
    "kms:Encrypt",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
)
PUBLISHER_KEY_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")


def data_key(
    scope: Construct, settings: StageSettings, removal: cdk.RemovalPolicy, admin_actions: Sequence[str]
) -> kms.Key:
    """The stage's customer-managed key for data at rest: the table (and its stream), the logs, the alarm topic.

    Symmetric and rotated yearly. The key policy admits the account to administer it (``admin_actions``) and to use
    it through IAM policies (the functions' roles, through DynamoDB only: stacks/perimeter.py
    table_key_statements), DynamoDB's grants for the table, CloudWatch Logs for this stage's log groups only (by
    encryption context), and CloudWatch alarms and EventBridge publishing to the encrypted alarm topic (neither
    can use the AWS-managed SNS key).
    """
    stack = cdk.Stack.of(scope)
    account = iam.AccountRootPrincipal()
    source_account = {"StringEquals": {"aws:SourceAccount": stack.account}}
    log_groups = stack.format_arn(
        service="logs",
        resource="log-group",
        resource_name=f"/{topology.APP_NAME}/{settings.stage}/*",
        arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
    )
    statements = [
        iam.PolicyStatement(
            sid="KeyAdministration", principals=[account], actions=list(admin_actions), resources=["*"]
        ),
        iam.PolicyStatement(
            sid="UseThroughIamPolicies", principals=[account], actions=list(DATA_KEY_USE_ACTIONS), resources=["*"]
        ),
        iam.PolicyStatement(
            sid="DynamoDbGrantsForTheTable",
            principals=[account],
            actions=["kms:CreateGrant"],
            resources=["*"],
            conditions={
                "StringEquals": {"kms:ViaService": f"dynamodb.{stack.region}.{stack.url_suffix}"},
                "Bool": {"kms:GrantIsForAWSResource": "true"},
            },
        ),
        iam.PolicyStatement(
            sid="LogsOfThisStage",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.{stack.url_suffix}")],
            actions=list(LOGS_KEY_ACTIONS),
            resources=["*"],
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_groups}},
        ),
        iam.PolicyStatement(
            sid="AlarmsAndRulesPublishToTheEncryptedTopic",
            principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com"), iam.ServicePrincipal("events.amazonaws.com")],
            actions=list(PUBLISHER_KEY_ACTIONS),
            resources=["*"],
            conditions=source_account,
        ),
    ]
    return kms.Key(
        scope,
        "DataKey",
        description=f"{settings.stack_name}: orders table, stream, logs and alarm topic at rest",
        enable_key_rotation=True,
        alias=f"alias/{settings.stack_name}-data",
        removal_policy=removal,
        pending_window=cdk.Duration.days(30),
        policy=iam.PolicyDocument(statements=statements),
    )


def table_key_statements(key: kms.IKey, *, write: bool) -> list[iam.PolicyStatement]:
    """What a role reading (and writing) the encrypted table or its stream needs of the data key: through DynamoDB."""
    stack = cdk.Stack.of(key)
    actions = ["kms:Decrypt", "kms:DescribeKey"]
    if write:
        actions += ["kms:Encrypt", "kms:GenerateDataKey", "kms:ReEncryptFrom", "kms:ReEncryptTo"]
    return [
        iam.PolicyStatement(
            sid="OrdersTableKey",
            actions=sorted(actions),
            resources=[key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"dynamodb.{stack.region}.{stack.url_suffix}"}},
        )
    ]


class Perimeter(Construct):
    """The web ACL on the API's stage, its access logs, and the alarm on blocked Alipay traffic."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        api: ApiTarget,
        access_logs: logs.ILogGroup,
    ) -> None:
        super().__init__(scope, construct_id)
        self._settings = settings
        self._stage_name = api.stage_name
        stack = cdk.Stack.of(self)
        self.web_acl_name = f"{settings.stack_name}-api"
        self.web_acl = wafv2.CfnWebACL(
            self,
            "WebAcl",
            name=self.web_acl_name,
            scope="REGIONAL",
            default_action=wafv2.CfnWebACL.DefaultActionProperty(allow={}),
            visibility_config=_visibility(self.web_acl_name),
            rules=self._rules(),
            description="AWS managed rules on the buyer and merchant routes, rate limits only on the Alipay paths",
        )
        # ${RestAPI.Stage}: SAM's reference to the stage it generates, so the association waits for the stage.
        api_id = api.rest_api_logical_id
        stage_arn = cdk.Fn.sub(
            "arn:${AWS::Partition}:apigateway:${AWS::Region}::/restapis/"
            + f"${{{api_id}}}/stages/${{{api_id}.Stage}}"
        )
        wafv2.CfnWebACLAssociation(
            self, "WebAclOnApiStage", resource_arn=stage_arn, web_acl_arn=self.web_acl.attr_arn
        )
        self.alipay_blocks = cloudwatch.Metric(
            namespace="AWS/WAFV2",
            metric_name="BlockedRequests",
            dimensions_map={"WebACL": self.web_acl_name, "Rule": ALIPAY_RATE_RULE, "Region": stack.region},
            statistic="Sum",
            period=cdk.Duration.minutes(5),
        )
        self.access_log_setting = {
            "DestinationArn": access_logs.log_group_arn,
            "Format": cdk.Stack.of(self).to_json_string(ACCESS_LOG_FORMAT),
        }

    def _rules(self) -> list[wafv2.CfnWebACL.RuleProperty]:
        settings = self._settings
        not_alipay = wafv2.CfnWebACL.StatementProperty(
            not_statement=wafv2.CfnWebACL.NotStatementProperty(statement=_any_path(ALIPAY_PATHS))
        )
        rules = [
            _rate_rule(ALIPAY_RATE_RULE, settings.waf_alipay_rate_limit, _any_path(ALIPAY_PATHS)),
            _rate_rule("BuyerRoutesRatePerIp", settings.waf_buyer_rate_limit, self._under(topology.BUYER_PREFIX)),
            _rate_rule(
                "MerchantRoutesRatePerIp", settings.waf_merchant_rate_limit, self._under(topology.MERCHANT_PREFIX)
            ),
        ]
        for name in MANAGED_RULE_GROUPS:
            rules.append(
                wafv2.CfnWebACL.RuleProperty(
                    name=name,
                    priority=len(rules),
                    override_action=wafv2.CfnWebACL.OverrideActionProperty(none={}),
                    statement=wafv2.CfnWebACL.StatementProperty(
                        managed_rule_group_statement=wafv2.CfnWebACL.ManagedRuleGroupStatementProperty(
                            vendor_name="AWS", name=name, scope_down_statement=not_alipay
                        )
                    ),
                    visibility_config=_visibility(name),
                )
            )
        return [_with_priority(rule, priority) for priority, rule in enumerate(rules)]

    def _under(self, prefix: str) -> wafv2.CfnWebACL.StatementProperty:
        """The request's path is under ``prefix``: after the stage's name on the execute-api URL, or first of all
        behind a custom domain's base path mapping (WAF sees the URI as the client sent it)."""
        return wafv2.CfnWebACL.StatementProperty(
            or_statement=wafv2.CfnWebACL.OrStatementProperty(
                statements=[
                    _path_match(f"/{self._stage_name}{prefix}", "STARTS_WITH"),
                    _path_match(prefix, "STARTS_WITH"),
                ]
            )
        )


def api_gateway_account(scope: Construct, settings: StageSettings) -> None:
    """The region's API Gateway logging role, which access logs need, when this stack is the one to set it.

    ``AWS::ApiGateway::Account`` is one setting per account and region, shared by every API there: the stack that
    sets it (``api_gateway_account_role=create``) keeps its role on deletion, so removing that stack never breaks
    another API's logs; every other stack in the region says ``existing`` and leaves the setting alone.
    """
    if settings.api_gateway_account_role != "create":
        return
    role = iam.Role(
        scope,
        "ApiGatewayLogsRole",
        assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
        description="API Gateway's account-wide CloudWatch Logs role (access and execution logs) for this region",
        managed_policies=[
            iam.ManagedPolicy.from_aws_managed_policy_name("service-role/AmazonAPIGatewayPushToCloudWatchLogs")
        ],
    )
    role.apply_removal_policy(cdk.RemovalPolicy.RETAIN)
    account = apigateway.CfnAccount(scope, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
    account.apply_removal_policy(cdk.RemovalPolicy.RETAIN)


def method_throttles(settings: StageSettings, definition: dict[str, Any]) -> list[dict[str, Any]]:
    """The stage's ``MethodSettings``: the stage-wide limit, then each route's own by the caller it serves.

    Alipay's webhook gets a budget no flood of buyer calls can spend; buyers share theirs; the merchant's backend has
    its own. API Gateway answers ``429`` past a limit (Alipay then retries the notification later).
    """
    entries: list[dict[str, Any]] = [
        {
            "ResourcePath": "/*",
            "HttpMethod": "*",
            "ThrottlingRateLimit": settings.throttle_rate,
            "ThrottlingBurstLimit": settings.throttle_burst,
            "MetricsEnabled": True,
        }
    ]
    for path, methods in sorted(definition.get("paths", {}).items()):
        rate = _route_rate(settings, path)
        if rate is None:
            continue
        for method in sorted(m for m in methods if m.lower() in _HTTP_METHODS):
            entries.append(
                {
                    # MethodSettings name a route as "/" and its path with every slash written ~1: /~1orders.
                    "ResourcePath": "/" + path.replace("~", "~0").replace("/", "~1"),
                    "HttpMethod": method.upper(),
                    "ThrottlingRateLimit": rate,
                    "ThrottlingBurstLimit": max(2 * rate, 1),
                    "MetricsEnabled": True,
                }
            )
    return entries


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})


def _route_rate(settings: StageSettings, path: str) -> int | None:
    if path in ALIPAY_PATHS:
        return settings.alipay_throttle_rate
    if path == topology.BUYER_PREFIX or path.startswith(f"{topology.BUYER_PREFIX}/"):
        return settings.buyer_throttle_rate
    if path == topology.MERCHANT_PREFIX or path.startswith(f"{topology.MERCHANT_PREFIX}/"):
        return settings.merchant_throttle_rate
    return None


def _visibility(name: str) -> wafv2.CfnWebACL.VisibilityConfigProperty:
    return wafv2.CfnWebACL.VisibilityConfigProperty(
        cloud_watch_metrics_enabled=True, metric_name=name, sampled_requests_enabled=True
    )


def _rate_rule(name: str, limit: int, scope: wafv2.CfnWebACL.StatementProperty) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=name,
        priority=0,
        action=wafv2.CfnWebACL.RuleActionProperty(block={}),
        statement=wafv2.CfnWebACL.StatementProperty(
            rate_based_statement=wafv2.CfnWebACL.RateBasedStatementProperty(
                aggregate_key_type="IP",
                limit=limit,
                evaluation_window_sec=RATE_WINDOW_SECONDS,
                scope_down_statement=scope,
            )
        ),
        visibility_config=_visibility(name),
    )


def _with_priority(rule: wafv2.CfnWebACL.RuleProperty, priority: int) -> wafv2.CfnWebACL.RuleProperty:
    return wafv2.CfnWebACL.RuleProperty(
        name=rule.name,
        priority=priority,
        action=rule.action,
        override_action=rule.override_action,
        statement=rule.statement,
        visibility_config=rule.visibility_config,
    )


def _path_match(path: str, constraint: str) -> wafv2.CfnWebACL.StatementProperty:
    return wafv2.CfnWebACL.StatementProperty(
        byte_match_statement=wafv2.CfnWebACL.ByteMatchStatementProperty(
            field_to_match=wafv2.CfnWebACL.FieldToMatchProperty(uri_path={}),
            positional_constraint=constraint,
            search_string=path,
            text_transformations=[wafv2.CfnWebACL.TextTransformationProperty(priority=0, type="NONE")],
        )
    )


def _any_path(paths: Sequence[str]) -> wafv2.CfnWebACL.StatementProperty:
    """The request's path ends with one of ``paths`` (the stage prefix comes first in the URI WAF sees)."""
    statements = [_path_match(path, "ENDS_WITH") for path in paths]
    if len(statements) == 1:
        return statements[0]
    return wafv2.CfnWebACL.StatementProperty(or_statement=wafv2.CfnWebACL.OrStatementProperty(statements=statements))
