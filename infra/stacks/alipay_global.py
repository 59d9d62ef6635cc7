"""The product on AWS, one stack per stage: the Chalice app (``chalice.cdk.Chalice``) and everything around it.

Chalice packages ``app.py`` into one API handler function (every route), the queue consumer and the stream relay.
The stack gives each its own least-privilege role (``manage_iam_role: false``), and routes ``POST /alipay/notify``
to a fourth function built from the same code package, so that the public webhook runs with a role that can only
send to the queue: it cannot read the table, and it cannot sign.

API Gateway tells the three kinds of caller apart before any function runs (stacks/api_access.py): a Cognito user
pool authorizer on the buyer routes, AWS IAM (SigV4) on the merchant routes, the rest public; its own refusals come
in the product's error shape. Resource policies keep each queue's messages and the bus's events to the roles that
own them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sam as sam
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_ssm as ssm
from chalice.cdk import Chalice
from constructs import Construct

from stacks import api_access, perimeter, scanner, topology
from stacks.bytecode import compile_chalice_output
from stacks.dashboard import Dashboard, DashboardResources
from stacks.monitoring import MonitoredResources, Monitoring
from stacks.settings import (
    ANTOM,
    APP_NAME,
    SettingsError,
    StageSettings,
    chalice_environment,
    chalice_timeout,
    check_antom_stage,
    check_legacy_key,
    check_open_platform_only,
    notify_path,
    signs_legacy,
    stage_protocol,
)

# What `chalice package` names the app's resources (app.py's function names, CamelCased) and event sources.
API_HANDLER = "APIHandler"
CONSUMER = "ApplyNotifications"
CONSUMER_FUNCTION = "apply_notifications"  # its name in app.py, which keys its settings in .chalice/config.json
RELAY = "RelayOrderEvents"
RECONCILER = "ReconcileWaitingOrders"  # @app.schedule: lost notifications and unpaid orders past their timeout
REST_API = "RestAPI"
CONSUMER_SQS_EVENT = f"{CONSUMER}SqsEventSource"
RELAY_STREAM_EVENT = f"{RELAY}DynamodbEventSource"
CHALICE_CODE_ASSET = "ChaliceAppCode"

WEBHOOK_PATH = topology.WEBHOOK_PATH
ANTOM_NOTIFY_PATH = topology.ANTOM_NOTIFY_PATH  # Antom's notifications: the same enqueue-only webhook function
RETURN_PATH = topology.RETURN_PATH  # web checkout: Alipay sends the shopper back here (public, its own function)
CLIENT_RESULT_PATH = topology.CLIENT_RESULT_PATH  # a buyer's SDK result (its own function)
# Who may call what, by path prefix (a prefix and everything under it; every other route is public):
BUYER_PREFIX = topology.BUYER_PREFIX  # a Cognito user pool authorizer (orders_auth=cognito)
MERCHANT_PREFIX = topology.MERCHANT_PREFIX  # AWS IAM (SigV4): the merchant's backend and operators

# Shared with the Lambda code and the local stack, from one source (chalicelib/topology.py): the single table's key
# and TTL attribute; the sparse index of orders still waiting for payment (only those carry its keys), which
# reconciliation queries; the source of every event the relay publishes; the Alipay settings the functions read
# from SSM at cold start.
PARTITION_KEY = topology.PARTITION_KEY
TTL_ATTRIBUTE = topology.TTL_ATTRIBUTE
WAITING_INDEX = topology.WAITING_INDEX
WAITING_KEY = topology.WAITING_KEY
WAITING_SINCE = topology.WAITING_SINCE
EVENT_SOURCE = topology.EVENT_SOURCE
ALIPAY_PARAMETERS = tuple(topology.SSM_PARAMETERS)

# AWS: an SQS event source's visibility timeout should be at least 6x the function's timeout, so that a batch
# still being retried by Lambda's poller is not handed to a second invocation.
VISIBILITY_TIMEOUT_FACTOR = 6
MAX_RECEIVE_COUNT = topology.MAX_RECEIVE_COUNT  # then poison: to the DLQ, alarm, `python -m ops redrive` once fixed
STREAM_MAX_RETRY_ATTEMPTS = 10  # bisecting halves a failing batch on each retry: 100 records need 7 to isolate one
STREAM_MAX_RECORD_AGE = cdk.Duration.days(1)  # the stream keeps records 24 h; older ones go to the failure queue
EVENT_ARCHIVE_RETENTION = cdk.Duration.days(365)
SIGNING_ALGORITHM = topology.SIGNING_ALGORITHM  # Alipay's RSA2; chalicelib/adapters/kms.py signs with nothing else

# Key administration without any cryptographic use: enumerated, because kms:Get* would include kms:GetPublicKey
# and kms:Create* would include kms:CreateGrant (a grant could hand kms:Sign to anyone).
KEY_ADMIN_ACTIONS = (
    "kms:CancelKeyDeletion",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:DescribeKey",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:GetKeyPolicy",
    "kms:GetKeyRotationStatus",
    "kms:ListGrants",
    "kms:ListKeyPolicies",
    "kms:ListResourceTags",
    "kms:PutKeyPolicy",
    "kms:RevokeGrant",
    "kms:ScheduleKeyDeletion",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:UpdateAlias",
    "kms:UpdateKeyDescription",
)
# What only a queue's owning roles may do with its messages (the data plane). Everything else stays with the account:
# GetQueueAttributes (metrics, the console), SetQueueAttributes and the policy itself, so administrators keep managing
# the queue through IAM and CloudFormation; they cannot read, inject or throw away notifications.
SQS_SEND = ("sqs:SendMessage",)
SQS_CONSUME = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:PurgeQueue")
# What chalicelib/adapters/sqs.py redrive_messages does on the DLQ (it sends to the queue with SQS_SEND).
REDRIVE_FROM_DLQ = ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes")
# Every SQS data-plane action, denied without TLS (listed: no wildcard actions in any policy of this stack).
SQS_ACTIONS = (
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:PurgeQueue",
    "sqs:ReceiveMessage",
    "sqs:SendMessage",
)


class CompiledChalice(Chalice):
    """Chalice's construct, its package given compiled bytecode before it becomes the code asset (stacks/bytecode.py).

    ``_package_app`` is where the construct runs ``chalice package``; the asset is made from its output right after.
    A private hook of the pinned chalice (requirements.txt): infra/tests/test_functions.py reads the synthesized
    asset, so a chalice that stops calling it fails there, not in Lambda's cold starts.
    """

    def _package_app(self) -> None:
        super()._package_app()
        compile_chalice_output(Path(self._sam_package_dir))


@dataclass(frozen=True)
class Roles:
    """One execution role per function."""

    api: iam.Role
    webhook: iam.Role
    consumer: iam.Role
    relay: iam.Role
    reconciler: iam.Role
    return_page: iam.Role
    client_result: iam.Role


class AlipayGlobalStack(cdk.Stack):
    """Alipay app payments for one stage (``-c stage=prod``)."""

    def __init__(self, scope: Construct, settings: StageSettings, *, project_dir: Path, **kwargs: Any) -> None:
        # The Chalice construct packages the Chalice stage named by its scope's path: the stack's id is the stage.
        super().__init__(scope, settings.stage, stack_name=settings.stack_name, **kwargs)
        self.settings = settings
        removal = cdk.RemovalPolicy.RETAIN if settings.production else cdk.RemovalPolicy.DESTROY

        # Named, because app.py's @on_sqs_message needs the queue's name when Chalice packages it.
        self.notifications_queue_name = f"{settings.stack_name}-notifications"
        self.data_key = perimeter.data_key(self, settings, removal, KEY_ADMIN_ACTIONS)
        self.table = self._orders_table(removal)
        self.dlq, self.queue = self._notification_queues(
            consumer_timeout=chalice_timeout(project_dir, settings.stage, CONSUMER_FUNCTION)
        )
        self.stream_failures = self._queue(
            "OrderEventsFailed", retention=cdk.Duration.days(14), description="stream records the relay gave up on"
        )
        self.bus = events.EventBus(self, "EventBus", event_bus_name=settings.stack_name)
        self.archive = self.bus.archive(
            "EventArchive",
            archive_name=f"{settings.stack_name}-events",
            description="Every order event, for downstream services to replay",
            event_pattern=events.EventPattern(source=[EVENT_SOURCE]),
            retention=EVENT_ARCHIVE_RETENTION,
        )
        self.log_groups = {
            name: logs.LogGroup(
                self,
                f"{name}Logs",
                log_group_name=f"/{APP_NAME}/{settings.stage}/{name.lower()}",
                retention=_retention(settings.log_retention_days),
                encryption_key=self.data_key,
                removal_policy=removal,
            )
            # Access: API Gateway's access log, one line per request with the caller's identity.
            for name in ("Api", "Webhook", "Consumer", "Relay", "Reconciler", "ReturnPage", "ClientResult", "Access")
        }
        self.events_log = self._events_log(removal)
        self.parameter_arns = [
            self.format_arn(service="ssm", resource="parameter", resource_name=f"{settings.parameter_path[1:]}/{p}")
            for p in ALIPAY_PARAMETERS
        ]
        stage_environment = chalice_environment(project_dir, settings.stage)
        # One wire protocol per stage (docs/deploy.md): its notify route, and for Antom a merchant key of its own.
        self.protocol = stage_protocol(stage_environment)
        if self.protocol == ANTOM:
            check_antom_stage(stage_environment, settings)
        check_open_platform_only(stage_environment, self.protocol, settings.stage)
        check_legacy_key(stage_environment, settings.stage, settings.production)
        # The legacy RSA merchant key (KMS cannot sign SHA-1): a secret only the signing functions may read.
        self.legacy_key = self._legacy_key_secret(removal) if signs_legacy(stage_environment) else None
        self.roles = self._roles()
        # Open Platform's (and legacy) merchant key: on every stage, so that its identity, which Alipay's portal
        # trusts, never depends on the protocol; an Antom stage grants no use of it.
        self.signing_key = self._signing_key()
        # Antom's merchant key: a resource of its own, never the Open Platform key under another protocol.
        self.antom_key = self._antom_key() if self.protocol == ANTOM else None
        # The key SIGNING_KEY_ID names: the one the stage's protocol signs with.
        self.merchant_key = self.antom_key or self.signing_key

        # Packaging imports app.py with the stage's variables put into os.environ; put it back afterwards, so that
        # nothing of this stack (tokens) leaks into another synthesized in the same process.
        with _environ_restored():
            self.chalice = CompiledChalice(
                self,
                "App",
                source_dir=str(project_dir),
                stage_config={
                    # Belt and braces with .chalice/config.json: never let Chalice generate its wildcard role.
                    "manage_iam_role": False,
                    # Chalice gives every function this role; the consumer's and the relay's are replaced below.
                    "iam_role_arn": self.roles.api.role_arn,
                    "environment_variables": self._environment(),
                },
            )
        self.api_handler = self._function(API_HANDLER, self.roles.api, "Api")
        self.consumer = self._function(CONSUMER, self.roles.consumer, "Consumer")
        self.relay = self._function(RELAY, self.roles.relay, "Relay")
        self.reconciler = self._function(RECONCILER, self.roles.reconciler, "Reconciler")
        self.rest_api: sam.CfnApi = self.chalice.get_resource(REST_API)
        self._connect_event_sources()
        # Antom's route, where the app has it: never served by the API handler's role, whatever the stage's protocol.
        antom_route = "post" in self._definition().get("paths", {}).get(ANTOM_NOTIFY_PATH, {})
        if self.protocol == ANTOM and not antom_route:
            raise SettingsError(
                f"stage {settings.stage!r} runs ALIPAY_PROTOCOL=antom, but app.py has no POST {ANTOM_NOTIFY_PATH} route"
            )
        self.webhook = self._route_function(
            "Webhook",
            WEBHOOK_PATH,
            "post",
            self.roles.webhook,
            f"POST {WEBHOOK_PATH} and POST {ANTOM_NOTIFY_PATH}: verifies notifications and enqueues them"
            if antom_route
            else f"POST {WEBHOOK_PATH}: verifies Alipay's notifications and enqueues them",
            # Instances no flood of other calls can take from Alipay's notifications (0: none, for a small quota).
            reserved_concurrency=self.settings.webhook_reserved_concurrency,
        )
        if antom_route:
            self._route_to(self.webhook, "WebhookAntom", ANTOM_NOTIFY_PATH, "post")
        self.return_page = self._route_function(
            "ReturnPage",
            RETURN_PATH,
            "get",
            self.roles.return_page,
            "GET /alipay/return: verifies the shopper's return from Alipay's cashier",
        )
        self.client_result = self._route_function(
            "ClientResult",
            CLIENT_RESULT_PATH,
            "post",
            self.roles.client_result,
            "POST /orders/{out_trade_no}/client-result: verifies a buyer's SDK result",
        )
        self.user_pool_arn = self._user_pool(removal) if settings.orders_auth == "cognito" else None
        self._authorize_routes()
        self._api_settings()
        self._guard_queues_and_bus()
        self.perimeter = perimeter.Perimeter(
            self,
            "Perimeter",
            settings=settings,
            api=perimeter.ApiTarget(REST_API, self._api_stage()),
            access_logs=self.log_groups["Access"],
        )
        self.rest_api.add_property_override("AccessLogSetting", self.perimeter.access_log_setting)
        perimeter.api_gateway_account(self, settings)

        api_url = f"https://{self.rest_api.ref}.execute-api.{self.region}.{self.url_suffix}/{self.rest_api.stage_name}"
        # The path of this URL is what Antom signs its notifications over: the webhook verifies against it.
        self.webhook_url = settings.notify_url or f"{api_url}{notify_path(self.protocol)}"
        self.return_url = settings.return_url or f"{api_url}{RETURN_PATH}"
        # The Alipay settings the stack knows, the API's own URLs: the operator's ids, Alipay's keys and the
        # merchant's result page (result-page-url) are put in by hand (docs/deploy.md, "Connect Alipay").
        ssm.StringParameter(
            self,
            "NotifyUrlParameter",
            parameter_name=f"{settings.parameter_path}/notify-url",
            string_value=self.webhook_url,
            description="NOTIFY_URL: where Alipay (Antom: paymentNotifyUrl, refundNotifyUrl) posts its notifications",
        )
        ssm.StringParameter(
            self,
            "ReturnUrlParameter",
            parameter_name=f"{settings.parameter_path}/return-url",
            string_value=self.return_url,
            description="RETURN_URL: the return_url of web (page, wap) orders that do not send one",
        )

        self.monitoring = Monitoring(
            self,
            "Monitoring",
            settings=settings,
            resources=MonitoredResources(
                dlq=self.dlq,
                stream_failures=self.stream_failures,
                webhook=self.webhook,
                consumer_name=self.consumer.ref,
                relay_name=self.relay.ref,
                reconciler_name=self.reconciler.ref,
                metrics_namespace=self._app_environment()["POWERTOOLS_METRICS_NAMESPACE"],
                service=self._app_environment()["POWERTOOLS_SERVICE_NAME"],
            ),
            topic_key=self.data_key,
        )
        self.monitoring.add_alarm(
            "AlipayTrafficBlocked",
            self.perimeter.alipay_blocks,
            threshold=1,
            description=(
                "The web ACL blocked requests to Alipay's paths (webhook, return): a blocked notification is retried "
                "for about 25 h, then only reconciliation finds the payment. Raise waf_alipay_rate_limit if genuine."
            ),
        )
        self._watch_alipay_settings()
        self.dashboard = self._dashboard()
        self.merchant_invoke_policy = self._merchant_invoke_policy()
        self.settings_writer_policy = self._settings_writer_policy()
        self._outputs(api_url)

    def _dashboard(self) -> Dashboard:
        """The stage's dashboard (stacks/dashboard.py), after every alarm: its first row is their state."""
        environment = self._app_environment()
        return Dashboard(
            self,
            "Operations",
            stack_name=self.settings.stack_name,
            stage=self.settings.stage,
            resources=DashboardResources(
                metrics_namespace=environment["POWERTOOLS_METRICS_NAMESPACE"],
                service=environment["POWERTOOLS_SERVICE_NAME"],
                functions={
                    "api": self.api_handler.ref,
                    "webhook": self.webhook.function_name,
                    "return page": self.return_page.function_name,
                    "client result": self.client_result.function_name,
                    "consumer": self.consumer.ref,
                    "relay": self.relay.ref,
                    "reconciler": self.reconciler.ref,
                },
                webhook_name=self.webhook.function_name,
                reconciler_name=self.reconciler.ref,
                relay_name=self.relay.ref,
                dlq=self.dlq,
                stream_failures=self.stream_failures,
                table_name=self.table.table_name,
                web_acl_name=self.perimeter.web_acl_name,
                alipay_rate_rule=perimeter.ALIPAY_RATE_RULE,
                alarms=list(self.monitoring.alarms.values()),
            ),
        )

    # --- data ------------------------------------------------------------------------------------------------

    def _orders_table(self, removal: cdk.RemovalPolicy) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            "OrdersTable",
            partition_key=dynamodb.Attribute(name=PARTITION_KEY, type=dynamodb.AttributeType.STRING),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The stream is the outbox: events are derived from both images of each change.
            stream=dynamodb.StreamViewType(topology.STREAM_VIEW_TYPE),
            # The stage's own key (stacks/perimeter.py): orders, buyers and the stream under a key the account controls.
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.data_key,
            # Idempotency records and quarantined notifications expire; orders carry no TTL.
            time_to_live_attribute=TTL_ATTRIBUTE,
            deletion_protection=self.settings.production,
            removal_policy=removal,
        )
        # Sparse: only an order in WAIT_BUYER_PAY carries these keys (chalicelib/adapters/dynamodb.py removes them
        # on every write that moves it on), so reconciliation reads the waiting orders without a scan.
        table.add_global_secondary_index(
            index_name=WAITING_INDEX,
            partition_key=dynamodb.Attribute(name=WAITING_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=WAITING_SINCE, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # Sparse too: a buyer's orders newest first (buyer#<sub>) and the catalogue (catalogue). Added to a deployed
        # table as one index change in its own deploy (docs/deploy.md, "Changing the table").
        table.add_global_secondary_index(
            index_name=topology.LISTING_INDEX,
            partition_key=dynamodb.Attribute(name=topology.LISTING_KEY, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=topology.LISTING_SORT, type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        return table

    def _queue(self, name: str, *, retention: cdk.Duration, description: str, **kwargs: Any) -> sqs.Queue:
        queue = sqs.Queue(self, name, encryption=sqs.QueueEncryption.SQS_MANAGED, retention_period=retention, **kwargs)
        queue_resource = queue.node.default_child
        assert isinstance(queue_resource, cdk.CfnResource)
        scanner.accept(queue_resource, "CKV_AWS_27")
        queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid="DenyWithoutTls",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(SQS_ACTIONS),
                resources=[queue.queue_arn],
                conditions={"Bool": {"aws:SecureTransport": "false"}},
            )
        )
        cdk.Tags.of(queue).add("purpose", description)
        return queue

    def _notification_queues(self, *, consumer_timeout: int) -> tuple[sqs.Queue, sqs.Queue]:
        dlq = self._queue(
            "NotificationsDlq",
            retention=cdk.Duration.days(14),
            description="notifications the consumer could not apply",
            # Only the notifications queue may dead-letter here; named by its ARN, since the queue refers to the DLQ.
            redrive_allow_policy=sqs.RedriveAllowPolicy(
                redrive_permission=sqs.RedrivePermission.BY_QUEUE,
                source_queues=[
                    sqs.Queue.from_queue_arn(
                        self,
                        "NotificationsQueueByName",
                        self.format_arn(service="sqs", resource=self.notifications_queue_name),
                    )
                ],
            ),
        )
        queue = self._queue(
            "NotificationsQueue",
            queue_name=self.notifications_queue_name,
            # Alipay retries for about a day; four days leaves room to fix a consumer before anything expires.
            retention=cdk.Duration.days(4),
            description="verified Alipay notifications waiting to be applied",
            visibility_timeout=cdk.Duration.seconds(VISIBILITY_TIMEOUT_FACTOR * consumer_timeout),
            dead_letter_queue=sqs.DeadLetterQueue(queue=dlq, max_receive_count=MAX_RECEIVE_COUNT),
        )
        return dlq, queue

    def _guard_queues_and_bus(self) -> None:
        """Least trust between resources: each queue's messages and the bus's events belong to their own roles.

        Resource policies deny the data plane to every principal but the owning roles, by ``aws:PrincipalArn`` (a
        role's sessions carry the role's ARN), the account root and administrators included: they keep managing the
        queues and the bus (attributes, policies, deletion) but cannot inject, read or drop a notification or
        publish an order event. AWS services acting themselves are not principals of this account and are left out
        of the denies (``aws:PrincipalIsAWSService``), so nothing here stands in the way of SQS moving a poison
        message to the DLQ or of EventBridge replaying its archive; the denies grant nothing to them.

        Redrive (DLQ -> queue) runs in the API function, behind the merchant operator route ``POST /merchant/redrive``
        (``python -m ops redrive`` calls it signed, and it is audited): the API's role is the only principal that
        may read the DLQ and, besides the webhook, send to the queue. Roles named in ``redrive_roles`` may do the
        same with their own credentials (a break-glass path, e.g. the SQS console's redrive); none by default.
        The API also publishes to the bus, for ``POST /merchant/orders/{out_trade_no}/events/replay`` (audited).
        """
        roles = self.roles
        redrive = [roles.api.role_arn, *self.settings.redrive_roles]
        self._only(self.queue, "OnlyTheWebhookAndRedriveSend", SQS_SEND, [roles.webhook.role_arn, *redrive])
        self._only(self.queue, "OnlyTheConsumerReceives", SQS_CONSUME, [roles.consumer.role_arn])
        # SQS itself moves poison messages here (RedriveAllowPolicy: from the notifications queue only); no role sends.
        self._only(self.dlq, "OnlySqsMovesMessagesIn", SQS_SEND, [])
        self._only(self.dlq, "OnlyRedriveReceives", SQS_CONSUME, redrive)
        redrive = list(self.settings.redrive_roles)  # the API's role has its IAM policy; the named ones need these
        if redrive:
            # Same-account roles would need an IAM policy of their own otherwise; the queue policies are enough.
            principals = [iam.ArnPrincipal(arn) for arn in redrive]
            for queue, sid, actions in (
                (self.dlq, "RedriveTakesFromTheDlq", REDRIVE_FROM_DLQ),
                (self.queue, "RedriveSendsBack", SQS_SEND),
            ):
                queue.add_to_resource_policy(
                    iam.PolicyStatement(
                        sid=sid, principals=principals, actions=list(actions), resources=[queue.queue_arn]
                    )
                )
        self.bus.add_to_resource_policy(
            iam.PolicyStatement(
                sid="OnlyTheRelayAndOperatorReplayPublish",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=["events:PutEvents"],
                resources=[self.bus.event_bus_arn],
                conditions=_all_principals_but([roles.relay.role_arn, roles.api.role_arn]),
            )
        )

    @staticmethod
    def _only(queue: sqs.Queue, sid: str, actions: tuple[str, ...], role_arns: list[str]) -> None:
        """Deny ``actions`` on ``queue`` to every principal but the roles ``role_arns`` (none: to every principal)."""
        queue.add_to_resource_policy(
            iam.PolicyStatement(
                sid=sid,
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(actions),
                resources=[queue.queue_arn],
                conditions=_all_principals_but(role_arns),
            )
        )

    def _watch_alipay_settings(self) -> None:
        """Any change to the stage's Alipay settings (ids, Alipay's public keys) notifies the alarm topic.

        Whoever can write those parameters can make forged notifications verify: a change nobody planned is an
        incident. The stack owns the names and the permissions; the values are put by hand (docs/deploy.md).
        """
        topic = self.monitoring.topic
        # A plain rule and topic policy: CDK's SnsTopic target would also add kms:GenerateDataKey* to the key policy,
        # where the data key already lets EventBridge publish (stacks/perimeter.py data_key).
        rule = events.CfnRule(
            self,
            "AlipaySettingsChanged",
            description=f"{self.settings.stack_name}: a change to {self.settings.parameter_path}/*",
            event_pattern={
                "source": ["aws.ssm"],
                "detail-type": ["Parameter Store Change"],
                "detail": {"name": [{"prefix": f"{self.settings.parameter_path}/"}]},
            },
            targets=[
                events.CfnRule.TargetProperty(
                    id="AlarmTopic",
                    arn=topic.topic_arn,
                    input_transformer=events.CfnRule.InputTransformerProperty(
                        input_paths_map={"name": "$.detail.name", "operation": "$.detail.operation"},
                        input_template=f'"Alipay setting <name>: <operation> in {self.settings.stack_name}"',
                    ),
                )
            ],
        )
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlipaySettingsChangesPublish",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={"ArnEquals": {"aws:SourceArn": rule.attr_arn}},
            )
        )

    def _events_log(self, removal: cdk.RemovalPolicy) -> logs.LogGroup:
        """Every order event on the bus, also written to a log group: what ``python -m ops events --follow`` tails.

        A rule on the bus targets the log group; CloudWatch Logs' resource policy lets EventBridge (and nothing else
        new) write to it. Written directly (CfnRule, CfnResourcePolicy) rather than with the CDK's log-group target,
        which would add a custom-resource function with its own role to the stack.
        """
        name = topology.EVENTS_LOG_GROUP.format(stage=self.settings.stage)
        group = logs.LogGroup(
            self,
            "EventsLog",
            log_group_name=name,
            retention=_retention(self.settings.log_retention_days),
            encryption_key=self.data_key,
            removal_policy=removal,
        )
        group_arn = self.format_arn(
            service="logs", resource="log-group", resource_name=name, arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME
        )
        policy = logs.CfnResourcePolicy(
            self,
            "EventsLogPolicy",
            policy_name=f"{self.settings.stack_name}-events-to-logs",
            policy_document=cdk.Stack.of(self).to_json_string(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "EventBridgeWritesOrderEvents",
                            "Effect": "Allow",
                            "Principal": {"Service": ["events.amazonaws.com", "delivery.logs.amazonaws.com"]},
                            "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                            "Resource": f"{group_arn}:*",
                        }
                    ],
                }
            ),
        )
        rule = events.CfnRule(
            self,
            "EventsToLog",
            description="every order event, to the events log group (python -m ops events --follow)",
            event_bus_name=self.bus.event_bus_name,
            event_pattern={"source": [EVENT_SOURCE]},
            targets=[events.CfnRule.TargetProperty(id="events-log", arn=group_arn)],
        )
        rule.node.add_dependency(policy, group)
        return group

    # --- identity and keys -----------------------------------------------------------------------------------

    def _roles(self) -> Roles:
        table_arn = self.table.table_arn
        stream_arn = self.table.table_stream_arn or ""
        table_key = perimeter.table_key_statements(self.data_key, write=True)

        def active_query(name: str, purpose: str) -> iam.Role:
            # Read the order, ask Alipay (signed through the key policy), apply its answer, keep the cooldown claim:
            # no DeleteItem, no index, no refund, no catalogue.
            return role(
                name,
                purpose,
                iam.PolicyStatement(
                    sid="OrdersTable",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                    resources=[table_arn],
                ),
                *table_key,
                *legacy_key_reader(),
            )

        def legacy_key_reader() -> list[iam.PolicyStatement]:
            # Only for the functions that sign (API, reconciler, return page, client results): never the webhook.
            if self.legacy_key is None:
                return []
            return [
                iam.PolicyStatement(
                    sid="ReadLegacyMerchantKey",
                    actions=["secretsmanager:GetSecretValue"],
                    resources=[self.legacy_key.secret_arn],
                ),
                iam.PolicyStatement(
                    sid="DecryptLegacyMerchantKey",
                    actions=["kms:Decrypt"],
                    resources=[self.data_key.key_arn],
                    conditions={"StringEquals": {"kms:ViaService": f"secretsmanager.{self.region}.{self.url_suffix}"}},
                ),
            ]

        def role(name: str, purpose: str, *statements: iam.PolicyStatement) -> iam.Role:
            logs_group = self.log_groups[name]
            common = [
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[logs_group.log_group_arn],
                ),
                iam.PolicyStatement(
                    sid="ReadAlipaySettings",
                    actions=["ssm:GetParameters"],
                    resources=self.parameter_arns,
                ),
            ]
            return iam.Role(
                self,
                f"{name}Role",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description=f"{self.settings.stack_name}: {purpose}",
                # Inline, so that a function is never created before its permissions (event source mappings
                # check the role when they are created).
                inline_policies={"least-privilege": iam.PolicyDocument(statements=[*common, *statements])},
            )

        return Roles(
            api=role(
                "Api",
                "buyer and merchant routes (orders, catalogue, refunds); signs with the KMS key through the key policy",
                iam.PolicyStatement(
                    sid="OrdersTable",
                    actions=[
                        "dynamodb:BatchGetItem",
                        "dynamodb:GetItem",
                        "dynamodb:PutItem",
                        "dynamodb:UpdateItem",
                        "dynamodb:DeleteItem",
                    ],
                    resources=[table_arn],
                ),
                iam.PolicyStatement(
                    sid="ListBuyersOrdersAndCatalogue",
                    actions=["dynamodb:Query"],
                    resources=[f"{table_arn}/index/{topology.LISTING_INDEX}"],
                ),
                # GET /merchant/refunds/pending reads the refund partition of the sweep's own index.
                iam.PolicyStatement(
                    sid="ListPendingRefunds",
                    actions=["dynamodb:Query"],
                    resources=[f"{table_arn}/index/{WAITING_INDEX}"],
                ),
                *table_key,
                *legacy_key_reader(),
                # Operator routes (chalicelib/routes/operator.py): POST /merchant/redrive moves the DLQ back to the
                # queue (chalicelib/adapters/sqs.py: receive, send, then delete; counts what still waits), and
                # POST /merchant/orders/{out_trade_no}/events/replay publishes an order's events again.
                iam.PolicyStatement(
                    sid="RedriveTakesFromTheDlq", actions=list(REDRIVE_FROM_DLQ), resources=[self.dlq.queue_arn]
                ),
                iam.PolicyStatement(
                    sid="RedriveSendsBack", actions=list(SQS_SEND), resources=[self.queue.queue_arn]
                ),
                iam.PolicyStatement(
                    sid="ReplayOrderEvents", actions=["events:PutEvents"], resources=[self.bus.event_bus_arn]
                ),
            ),
            webhook=role(
                "Webhook",
                "POST /alipay/notify: verifies and enqueues; no table, no key",
                iam.PolicyStatement(
                    sid="EnqueueNotifications", actions=["sqs:SendMessage"], resources=[self.queue.queue_arn]
                ),
            ),
            consumer=role(
                "Consumer",
                "applies queued notifications to orders; cannot sign",
                iam.PolicyStatement(
                    sid="OrdersTable",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                    resources=[table_arn],
                ),
                iam.PolicyStatement(
                    sid="PollNotifications",
                    actions=["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                    resources=[self.queue.queue_arn],
                ),
                *table_key,
            ),
            relay=role(
                "Relay",
                "publishes order events from the table's stream; cannot read or write the table",
                iam.PolicyStatement(
                    sid="ReadOrdersStream",
                    actions=["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],
                    resources=[stream_arn],
                ),
                # ListStreams has no resource-level permissions (it only lists stream ARNs, no data); Lambda's
                # stream poller may call it.
                iam.PolicyStatement(sid="ListStreams", actions=["dynamodb:ListStreams"], resources=["*"]),
                iam.PolicyStatement(
                    sid="PublishEvents", actions=["events:PutEvents"], resources=[self.bus.event_bus_arn]
                ),
                iam.PolicyStatement(
                    sid="StreamFailureDestination",
                    actions=["sqs:SendMessage"],
                    resources=[self.stream_failures.queue_arn],
                ),
                # The stream's records are under the table's key: decrypt only (no kms:ViaService condition, which
                # the stream's own endpoint may not carry).
                iam.PolicyStatement(
                    sid="OrdersStreamKey", actions=["kms:Decrypt", "kms:DescribeKey"], resources=[self.data_key.key_arn]
                ),
            ),
            reconciler=role(
                "Reconciler",
                "scheduled: queries waiting orders at Alipay and applies what it confirms; signs its gateway requests",
                iam.PolicyStatement(
                    sid="QueryWaitingOrders",
                    actions=["dynamodb:Query"],
                    resources=[f"{table_arn}/index/{WAITING_INDEX}"],
                ),
                iam.PolicyStatement(
                    sid="OrdersTable",
                    actions=["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"],
                    resources=[table_arn],
                ),
                *table_key,
                *legacy_key_reader(),
            ),
            return_page=active_query(
                "ReturnPage", "GET /alipay/return: verifies a return, may ask Alipay about its order; signs that query"
            ),
            client_result=active_query(
                "ClientResult", "a buyer's SDK result: verifies it, may ask Alipay about the order; signs that query"
            ),
        )

    def _legacy_key_secret(self, removal: cdk.RemovalPolicy) -> secretsmanager.Secret:
        """The secret for the legacy RSA merchant key. The stack owns its name and who may read it, never its value:
        it is created with a placeholder and the operator puts the PEM (docs/deploy.md); until then a signature
        fails with a configuration error naming the secret."""
        secret = secretsmanager.Secret(
            self,
            "LegacyMerchantKey",
            secret_name=f"{self.settings.stack_name}/legacy-merchant-key",
            description="the merchant RSA (SHA1withRSA) private key as PEM: aws secretsmanager put-secret-value",
            encryption_key=self.data_key,
            removal_policy=cdk.RemovalPolicy.RETAIN if self.settings.production else removal,
        )
        return secret

    def _signing_roles(self) -> tuple[iam.Role, ...]:
        roles = self.roles
        return (roles.api, roles.reconciler, roles.return_page, roles.client_result)

    def _key_use(self, sign_sid: str) -> list[iam.PolicyStatement]:
        """Administration through IAM (and so CloudFormation), never use: without it the key could be locked; then
        ``kms:Sign`` for the signing functions' roles (``sign_sid``), with the key's one algorithm, and the public key
        for the API's role."""
        account = iam.AccountRootPrincipal()
        return [
            iam.PolicyStatement(
                sid="KeyAdministration", principals=[account], actions=list(KEY_ADMIN_ACTIONS), resources=["*"]
            ),
            iam.PolicyStatement(
                sid=sign_sid,
                # The reconciler signs its queries and closes with the same merchant key, and the return page and
                # client results their active query.
                principals=[iam.ArnPrincipal(role.role_arn) for role in self._signing_roles()],
                actions=["kms:Sign"],
                resources=["*"],
                conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}},
            ),
            iam.PolicyStatement(
                sid="ReadPublicKey",
                principals=[iam.ArnPrincipal(self.roles.api.role_arn)],
                actions=["kms:GetPublicKey"],
                resources=["*"],
            ),
        ]

    def _public_key_readers(self) -> list[iam.PolicyStatement]:
        if not self.settings.public_key_readers:
            return []
        # Operators running `python -m ops public-key` for Alipay's portal or Antom's dashboard: the public half only.
        return [
            iam.PolicyStatement(
                sid="OperatorsReadPublicKey",
                principals=[iam.ArnPrincipal(arn) for arn in self.settings.public_key_readers],
                actions=["kms:GetPublicKey"],
                resources=["*"],
            )
        ]

    def _signing_key(self) -> kms.Key:
        statements = self._key_use("SignOrderStrings")
        if self.protocol == ANTOM:
            # Kept (its identity is the one Alipay's portal trusts, should the stage return to Open Platform), but no
            # function of an Antom stage signs with it or reads it: administration (and public_key_readers) only.
            statements = statements[:1]
        if self.settings.csr_signers:
            # Certificate mode's CSR (`python -m ops csr`): a signature by the merchant key, the same power as signing
            # any request Alipay accepts. Only while -c csr_signers=... is deployed; deploying without takes it back.
            signers = [iam.ArnPrincipal(arn) for arn in self.settings.csr_signers]
            statements.append(
                iam.PolicyStatement(
                    sid="SignCertificateRequest",
                    principals=signers,
                    actions=["kms:Sign"],
                    resources=["*"],
                    conditions={"StringEquals": {"kms:SigningAlgorithm": SIGNING_ALGORITHM}},
                )
            )
            statements.append(
                iam.PolicyStatement(
                    sid="CertificateRequestPublicKey",
                    principals=signers,
                    actions=["kms:GetPublicKey"],
                    resources=["*"],
                )
            )
        statements += self._public_key_readers()
        return kms.Key(
            self,
            "SigningKey",
            description=f"{self.settings.stack_name}: the merchant's Alipay RSA2 key; never leaves KMS",
            key_spec=kms.KeySpec.RSA_2048,
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            alias=f"alias/{self.settings.stack_name}-merchant",
            # The key Alipay trusts for this app: losing it means re-registering a key in Alipay's portal.
            removal_policy=cdk.RemovalPolicy.RETAIN,
            pending_window=cdk.Duration.days(30),
            policy=iam.PolicyDocument(statements=statements),
        )

    def _antom_key(self) -> kms.Key:
        """Antom's merchant key (ALIPAY_PROTOCOL=antom): RSA_2048 for RSA256 (SHA256withRSA, PKCS#1 v1.5) request
        signatures, the same policy shape as the Open Platform key's, and its own resource and alias, so neither key
        ever takes the other's place. Its public half is what Antom's dashboard is given (docs/deploy.md)."""
        return kms.Key(
            self,
            "AntomSigningKey",
            description=f"{self.settings.stack_name}: the merchant's Antom RSA256 key; never leaves KMS",
            key_spec=kms.KeySpec.RSA_2048,
            key_usage=kms.KeyUsage.SIGN_VERIFY,
            alias=f"alias/{self.settings.stack_name}-antom-merchant",
            # The key Antom trusts for this client id: losing it means uploading a new public key to Antom.
            removal_policy=cdk.RemovalPolicy.RETAIN,
            pending_window=cdk.Duration.days(30),
            policy=iam.PolicyDocument(statements=[*self._key_use("SignAntomRequests"), *self._public_key_readers()]),
        )

    # --- the Chalice app -------------------------------------------------------------------------------------

    def _environment(self) -> dict[str, str]:
        """What every function's ``Config.from_env`` needs besides the stage's own settings in .chalice/config.json."""
        return {
            "ORDERS_TABLE": self.table.table_name,
            "NOTIFICATIONS_QUEUE_URL": self.queue.queue_url,
            "NOTIFICATIONS_DLQ_URL": self.dlq.queue_url,
            "EVENT_BUS_NAME": self.bus.event_bus_name,
            "SIGNING_KEY_ID": self.merchant_key.key_arn,
            "SSM_PARAMETER_PATH": self.settings.parameter_path,
            # What app.py's decorators read while Chalice packages it: a name, not the URL's unresolved token.
            "NOTIFICATIONS_QUEUE_NAME": self.notifications_queue_name,
            # Web checkout: https return URLs only, and a request's own only on these hosts (none: only the default).
            "STRICT_RETURN_URLS": "true",
            "RETURN_URL_HOSTS": ",".join(self.settings.return_url_hosts),
            **({"MERCHANT_PRIVATE_KEY_SECRET": self.legacy_key.secret_arn} if self.legacy_key is not None else {}),
        }

    def _app_environment(self) -> dict[str, str]:
        environment = self.api_handler.environment
        assert isinstance(environment, sam.CfnFunction.FunctionEnvironmentProperty)
        return dict(environment.variables or {})

    def _function(self, logical_id: str, role: iam.Role, logs_name: str) -> sam.CfnFunction:
        function: sam.CfnFunction = self.chalice.get_resource(logical_id)
        function.role = role.role_arn
        function.add_property_override("LoggingConfig", {"LogGroup": self.log_groups[logs_name].log_group_name})
        scanner.accept(function, "CKV_AWS_115", "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173")
        return function

    def _connect_event_sources(self) -> None:
        # Chalice knows the queue and stream by name only and sets neither ReportBatchItemFailures nor any stream
        # error handling: the stack points its mappings at the real resources and adds the settings.
        sqs_event = f"Events.{CONSUMER_SQS_EVENT}.Properties"
        self.consumer.add_property_override(f"{sqs_event}.Queue", self.queue.queue_arn)
        # The handler answers batchItemFailures: only the failed notifications are retried.
        self.consumer.add_property_override(f"{sqs_event}.FunctionResponseTypes", ["ReportBatchItemFailures"])
        # A ceiling on concurrent consumers without reserved concurrency: a throttled function would still have its
        # poller receive messages, counting receives towards the DLQ; the event source's own limit never does.
        self.consumer.add_property_override(
            f"{sqs_event}.ScalingConfig", {"MaximumConcurrency": self.settings.consumer_max_concurrency}
        )

        stream_event = f"Events.{RELAY_STREAM_EVENT}.Properties"
        for name, value in {
            "Stream": self.table.table_stream_arn,
            # The stream is the outbox: a mapping (re)created later must not skip changes already recorded.
            "StartingPosition": "TRIM_HORIZON",
            "BisectBatchOnFunctionError": True,
            "MaximumRetryAttempts": STREAM_MAX_RETRY_ATTEMPTS,
            "MaximumRecordAgeInSeconds": int(STREAM_MAX_RECORD_AGE.to_seconds()),
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "DestinationConfig": {"OnFailure": {"Destination": self.stream_failures.queue_arn}},
        }.items():
            self.relay.add_property_override(f"{stream_event}.{name}", value)

    def _route_function(
        self,
        name: str,
        path: str,
        method: str,
        role: iam.Role,
        description: str,
        *,
        reserved_concurrency: int = 0,
    ) -> lambda_.Function:
        """One route in a function of its own: the same code package, handler and environment, the route's own role.

        The Chalice app routes the request by its resource path as usual; API Gateway sends this route here instead
        of to the API handler, so the role of the API handler (which may refund and delete) never serves it.
        """
        asset = self.chalice.node.find_child(CHALICE_CODE_ASSET)
        assert isinstance(asset, s3_assets.Asset)
        api = self.api_handler
        function = lambda_.Function(
            self,
            name,
            description=description,
            code=lambda_.Code.from_bucket(asset.bucket, asset.s3_object_key),
            # The Chalice app itself: it routes the request by its resource path, here always this route's.
            handler=api.handler or "app.app",
            runtime=lambda_.Runtime(api.runtime or "python3.11", lambda_.RuntimeFamily.PYTHON),
            architecture=lambda_.Architecture.X86_64,
            memory_size=int(api.memory_size or 128),
            timeout=cdk.Duration.seconds(int(api.timeout or 60)),
            environment=self._app_environment(),
            role=role,
            log_group=self.log_groups[name],
            reserved_concurrent_executions=reserved_concurrency or None,
        )
        resource = function.node.default_child
        assert isinstance(resource, lambda_.CfnFunction)
        # CDK's Function also lists its role in DependsOn, which the GetAtt of Role already implies.
        resource.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
        scanner.accept(resource, "CKV_AWS_116", "CKV_AWS_117", "CKV_AWS_173")
        if not reserved_concurrency:
            scanner.accept(resource, "CKV_AWS_115")
        # The asset's key is the hash of its content: new code is a new key, so no object version is needed.
        cdk.Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-lambda:codeFromBucketObjectVersionNotSpecified", "the asset key changes with the code"
        )
        self._route_to(function, name, path, method)
        return function

    def _route_to(self, function: lambda_.Function, name: str, path: str, method: str) -> None:
        """API Gateway sends ``method path`` to ``function`` (its integration and ``{name}InvokePermission``)."""
        self.rest_api.add_property_override(
            f"DefinitionBody.paths.{path}.{method}.x-amazon-apigateway-integration.uri",
            cdk.Fn.sub(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${Arn}/invocations",
                {"Arn": function.function_arn},
            ),
        )
        lambda_.CfnPermission(
            self,
            f"{name}InvokePermission",
            action="lambda:InvokeFunction",
            function_name=function.function_name,
            principal="apigateway.amazonaws.com",
            source_arn=self.format_arn(
                service="execute-api",
                resource=self.rest_api.ref,
                resource_name=f"*/{method.upper()}{_permission_path(path)}",
                arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
            ),
        )

    # --- the API ---------------------------------------------------------------------------------------------

    def _user_pool(self, removal: cdk.RemovalPolicy) -> str:
        """The buyers' Cognito user pool: the app's own (``user_pool_arn``) or one created here, with its client."""
        pool_arn = self.settings.user_pool_arn
        if pool_arn is None:
            pool = cognito.UserPool(
                self,
                "UserPool",
                user_pool_name=f"{self.settings.stack_name}-users",
                self_sign_up_enabled=True,
                sign_in_aliases=cognito.SignInAliases(email=True),
                auto_verify=cognito.AutoVerifiedAttrs(email=True),
                account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
                password_policy=cognito.PasswordPolicy(min_length=12),
                # Buyers may add an authenticator app; never required of them.
                mfa=cognito.Mfa.OPTIONAL,
                mfa_second_factor=cognito.MfaSecondFactor(otp=True, sms=False),
                # Threat protection (compromised credentials, adaptive authentication) needs the Plus plan.
                feature_plan=cognito.FeaturePlan.PLUS
                if self.settings.cognito_threat_protection
                else cognito.FeaturePlan.ESSENTIALS,
                standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION
                if self.settings.cognito_threat_protection
                else None,
                deletion_protection=self.settings.production,
                removal_policy=removal,
            )
            # A public client, as a mobile app is: no secret, SRP sign-in, refresh tokens.
            callbacks = list(self.settings.cognito_callback_urls)
            client = pool.add_client(
                "MobileClient",
                generate_secret=False,
                auth_flows=cognito.AuthFlow(user_srp=True),
                prevent_user_existence_errors=True,
                # Hosted sign-in only where the app names its callbacks, and then the code flow (with PKCE) only:
                # CDK's default would allow the implicit flow to https://example.com.
                disable_o_auth=not callbacks,
                o_auth=cognito.OAuthSettings(
                    flows=cognito.OAuthFlows(authorization_code_grant=True),
                    callback_urls=callbacks,
                    scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                )
                if callbacks
                else None,
            )
            cdk.CfnOutput(self, "UserPoolId", value=pool.user_pool_id)
            cdk.CfnOutput(self, "UserPoolClientId", value=client.user_pool_client_id)
            pool_arn = pool.user_pool_arn
            client_ids = client.user_pool_client_id
        else:
            client_ids = ",".join(self.settings.user_pool_client_ids)
        # API Gateway's authorizer does not check a token's audience: the API function does, against these.
        self.api_handler.add_property_override("Environment.Variables.COGNITO_CLIENT_IDS", client_ids)
        return pool_arn

    def _authorize_routes(self) -> None:
        """One authorizer per path prefix over every route the app has (stacks/api_access.py), and who else may call.

        Buyer routes: the Cognito user pool authorizer (none with ``orders_auth=none``, never in production).
        Merchant routes: AWS IAM (SigV4), whatever ``orders_auth`` says. Every other route public. With
        ``merchant_principals`` the API gets a resource policy admitting those accounts' roles to the merchant routes.
        """
        buyer = api_access.cognito_authorizer(self.user_pool_arn) if self.user_pool_arn is not None else None
        body = api_access.authorize_by_prefix(
            self._definition(), {BUYER_PREFIX: buyer, MERCHANT_PREFIX: api_access.SIGV4_AUTHORIZER}
        )
        if self.settings.merchant_principals:
            body["x-amazon-apigateway-policy"] = api_access.resource_policy(
                body,
                stage=self._api_stage(),
                merchant_prefix=MERCHANT_PREFIX,
                merchant_principals=[self._principal(p) for p in self.settings.merchant_principals],
            )
        # The property overrides made so far (the webhook's integration) are applied on top of this at synthesis.
        self.rest_api.definition_body = body

    def _principal(self, account_or_role: str) -> str:
        """A ``merchant_principals`` entry as a policy names it: a role ARN as given, an account id as its root."""
        if account_or_role.isdigit():
            return self.format_arn(service="iam", region="", account=account_or_role, resource="root")
        return account_or_role

    def _api_stage(self) -> str:
        stage = self.rest_api.stage_name
        assert isinstance(stage, str)
        return stage

    def _definition(self) -> dict[str, Any]:
        body = self.rest_api.definition_body
        assert isinstance(body, dict)
        return body

    def _api_settings(self) -> None:
        # Stage-wide throttling: protects KMS, DynamoDB and the bill from a flood; API Gateway answers 429.
        # Then each route's own budget by its caller (stacks/perimeter.py), so a flood of buyer calls cannot spend the
        # webhook's.
        self.rest_api.add_property_override(
            "MethodSettings", perimeter.method_throttles(self.settings, self._definition())
        )
        # X-Ray traces of each request through API Gateway (sampled; the functions' own tracing stays off).
        self.rest_api.tracing_enabled = True
        scanner.accept(self.rest_api, "CKV_AWS_120")
        # API Gateway's own refusals in this API's error format ({"code", "message"}) instead of {"message"}.
        self.rest_api.add_property_override(
            "DefinitionBody.x-amazon-apigateway-gateway-responses", api_access.gateway_responses()
        )

    def _merchant_invoke_policy(self) -> iam.ManagedPolicy:
        """``execute-api:Invoke`` on the merchant routes and nothing else, for the merchant's backend and operators."""
        routes = [
            self.format_arn(
                service="execute-api",
                resource=self.rest_api.ref,
                resource_name=f"{self._api_stage()}/{relative}",
                arn_format=cdk.ArnFormat.SLASH_RESOURCE_NAME,
            )
            for relative in api_access.prefix_resources(MERCHANT_PREFIX)
        ]
        return iam.ManagedPolicy(
            self,
            "MerchantInvokePolicy",
            description=f"{self.settings.stack_name}: call the merchant routes ({MERCHANT_PREFIX}/...), SigV4-signed",
            statements=[
                iam.PolicyStatement(sid="InvokeMerchantRoutes", actions=[api_access.INVOKE], resources=routes)
            ],
        )

    def _settings_writer_policy(self) -> iam.ManagedPolicy:
        """Who may put the Alipay settings the stack does not write (ids, Alipay's public keys, the result page).

        The stack owns their names, who may read them (each function's role) and the alarm on any change; never their
        values, which a deploy must not overwrite. Attach this to the few operators who connect Alipay: whoever can
        write ``alipay-public-keys`` can make forged notifications verify.
        """
        stack_written = topology.STACK_WRITTEN_PARAMETERS  # the stack's own URLs: template values
        arns = [
            arn for name, arn in zip(ALIPAY_PARAMETERS, self.parameter_arns, strict=True) if name not in stack_written
        ]
        return iam.ManagedPolicy(
            self,
            "AlipaySettingsWriterPolicy",
            description=f"{self.settings.stack_name}: put the Alipay settings (ids, Alipay's public keys, result page)",
            statements=[
                iam.PolicyStatement(
                    sid="PutAlipaySettings",
                    actions=["ssm:PutParameter", "ssm:GetParameters", "ssm:GetParameterHistory"],
                    resources=arns,
                )
            ],
        )

    def _outputs(self, api_url: str) -> None:
        outputs = {
            "ApiUrl": (f"{api_url}/", "the orders API"),
            "MerchantInvokePolicyArn": (
                self.merchant_invoke_policy.managed_policy_arn,
                "attach to the merchant's backend and operator roles: execute-api:Invoke on the merchant routes",
            ),
            "AlipaySettingsWriterPolicyArn": (
                self.settings_writer_policy.managed_policy_arn,
                "attach to the operators who put the Alipay settings (ids, Alipay's public keys) in SSM",
            ),
            "NotifyUrl": (
                self.webhook_url,
                "NOTIFY_URL: the webhook notifications are posted to (register it in Antom's dashboard as it is)"
                if self.protocol == ANTOM
                else "notify_url: the webhook Alipay posts notifications to",
            ),
            "ReturnUrl": (self.return_url, "RETURN_URL: the default return_url of web orders"),
            "SigningKeyArn": (
                self.merchant_key.key_arn,
                f"SIGNING_KEY_ID ({'Antom' if self.antom_key else 'Open Platform'}) for `python -m ops public-key`",
            ),
            "ParameterPath": (self.settings.parameter_path, "SSM path of the Alipay ids and public keys"),
            "OrdersTableName": (self.table.table_name, "the orders table"),
            "NotificationsQueueUrl": (self.queue.queue_url, "NOTIFICATIONS_QUEUE_URL for `redrive`"),
            "NotificationsDlqUrl": (self.dlq.queue_url, "NOTIFICATIONS_DLQ_URL for `redrive`"),
            "EventsLogGroup": (self.events_log.log_group_name, "every order event: `python -m ops events --follow`"),
            "OrderEventsFailedQueueUrl": (self.stream_failures.queue_url, "stream records the relay gave up on"),
            "EventBusName": (self.bus.event_bus_name, "where OrderPaid/OrderFinished/OrderClosed/OrderRefunded go"),
            "EventBusArn": (self.bus.event_bus_arn, "for rules in other stacks"),
            "EventArchiveName": (self.archive.archive_name, "replay source for downstream services"),
            "WebhookFunctionName": (self.webhook.function_name, "the Lambda function behind the notify routes"),
            "ReturnPageFunctionName": (self.return_page.function_name, "the Lambda function behind GET /alipay/return"),
            "ClientResultFunctionName": (self.client_result.function_name, "the Lambda behind client-result"),
            "ConsumerFunctionName": (self.consumer.ref, "the Lambda function applying queued notifications"),
            "RelayFunctionName": (self.relay.ref, "the Lambda function publishing order events"),
            "DashboardName": (self.dashboard.dashboard.dashboard_name, "the stage's CloudWatch dashboard"),
        }
        if self.antom_key is not None:
            outputs["OpenPlatformSigningKeyArn"] = (
                self.signing_key.key_arn,
                "the Open Platform merchant key, kept but unused on an Antom stage",
            )
        for name, (value, description) in outputs.items():
            cdk.CfnOutput(self, name, value=value, description=description)


def _permission_path(path: str) -> str:
    """A route's path as an ``execute-api`` source ARN names it: each ``{parameter}`` a ``*``."""
    return "/".join("*" if part.startswith("{") else part for part in path.split("/"))


def _all_principals_but(role_arns: list[str]) -> dict[str, Any]:
    """The condition of a deny that spares ``role_arns`` and AWS services acting themselves (never the account)."""
    conditions: dict[str, Any] = {"Bool": {"aws:PrincipalIsAWSService": "false"}}
    if role_arns:
        conditions["ArnNotEquals"] = {"aws:PrincipalArn": role_arns}
    return conditions


@contextmanager
def _environ_restored() -> Iterator[None]:
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _retention(days: int) -> logs.RetentionDays:
    by_days = {
        1: logs.RetentionDays.ONE_DAY,
        3: logs.RetentionDays.THREE_DAYS,
        5: logs.RetentionDays.FIVE_DAYS,
        7: logs.RetentionDays.ONE_WEEK,
        14: logs.RetentionDays.TWO_WEEKS,
        30: logs.RetentionDays.ONE_MONTH,
        60: logs.RetentionDays.TWO_MONTHS,
        90: logs.RetentionDays.THREE_MONTHS,
        120: logs.RetentionDays.FOUR_MONTHS,
        150: logs.RetentionDays.FIVE_MONTHS,
        180: logs.RetentionDays.SIX_MONTHS,
        365: logs.RetentionDays.ONE_YEAR,
        400: logs.RetentionDays.THIRTEEN_MONTHS,
        545: logs.RetentionDays.EIGHTEEN_MONTHS,
        731: logs.RetentionDays.TWO_YEARS,
        1096: logs.RetentionDays.THREE_YEARS,
        1827: logs.RetentionDays.FIVE_YEARS,
        2192: logs.RetentionDays.SIX_YEARS,
        2557: logs.RetentionDays.SEVEN_YEARS,
        2922: logs.RetentionDays.EIGHT_YEARS,
    }
    return by_days[days]
