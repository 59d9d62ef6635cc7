"""Alarms on what needs an operator: parked messages, quarantined or rejected notifications, failing functions."""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from stacks import topology
from stacks.settings import StageSettings

FIVE_MINUTES = cdk.Duration.minutes(5)
# A few rejections are the internet knocking on a public URL; a burst is a wrong Alipay key or app id.
REJECTIONS_THRESHOLD = 5
# Orders the reconciler could not ask Alipay about in five minutes (each is looked at again next run): one is a
# blip, a few mean Alipay's gateway or the merchant key is failing, and lost payments stay unfound.
RECONCILIATION_FAILURES_THRESHOLD = 3
# The relay is behind by more than this: events reach downstream services late (stream records live 24 h).
ITERATOR_AGE_THRESHOLD_MS = 5 * 60 * 1000
# Every alarm's description ends with its runbook: a section of this file named after the alarm (its heading is the
# alarm's name, so GitHub's anchor is the name in lower case). infra/tests/test_alarms.py checks each one exists.
RUNBOOKS = "docs/operations.md"


# Business alarms on the reconciler's and the refunds' EMF counts (chalicelib/services/reconciliation.py, refunds.py,
# notifications.py): the metric is the alarm's name; threshold in 5 minutes; what it means (the runbook has the rest).
RECONCILIATION_AND_MONEY_ALARMS: tuple[tuple[str, int, str], ...] = (
    (
        "ReconciliationFailed",
        RECONCILIATION_FAILURES_THRESHOLD,
        "Reconciliation cannot query or close orders at Alipay (gateway down, wrong key or app id).",
    ),
    (
        "ReconciliationStarved",
        1,
        "A reconciliation run spent its budget with due orders left over: raise RECONCILE_MAX_QUERIES.",
    ),
    (
        "ReconciliationWaitingPastExpiry",
        3,
        "Legacy: Alipay still holds trades open an hour past their orders' deadlines: look at them.",
    ),
    (
        "ReconciliationUnknownStatus",
        1,
        "Alipay answered a trade status the product does not know; the order is left waiting: look.",
    ),
    (
        "LatePaymentsCaptured",
        1,
        "Alipay captured money for an order closed here; the reconciler returns it (PaymentReturned).",
    ),
    (
        "PaymentReturnsRefused",
        1,
        "Alipay refused to return money captured for a closed order: return it by hand.",
    ),
    (
        "RefundsPendingTooLong",
        1,
        "A refund Alipay has not confirmed for over an hour (legacy: no refund query): settle it.",
    ),
    (
        "RefundAnswersRejected",
        1,
        "Alipay reported more refunded than an order's total: the refund is held pending; look at it.",
    ),
)


@dataclass(frozen=True)
class MonitoredResources:
    """What the alarms watch."""

    dlq: sqs.IQueue
    stream_failures: sqs.IQueue
    webhook: lambda_.IFunction
    consumer_name: str  # the packaged functions' names (Ref of their AWS::Serverless::Function)
    relay_name: str
    reconciler_name: str
    metrics_namespace: str  # the app's EMF namespace and service dimension (.chalice/config.json)
    service: str


class Monitoring(Construct):
    """The alarms, and the SNS topic they notify (``-c alarm_email=...`` subscribes an address)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        settings: StageSettings,
        resources: MonitoredResources,
        topic_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        # Under the stage's customer-managed key (stacks/perimeter.py data_key), whose policy lets CloudWatch alarms
        # and EventBridge publish: they cannot use the AWS-managed SNS key.
        self.topic = sns.Topic(
            self, "AlarmTopic", display_name=f"{settings.stack_name} alarms", master_key=topic_key
        )
        if settings.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(settings.alarm_email))
        cdk.CfnOutput(scope, "AlarmTopicArn", value=self.topic.topic_arn, description="subscribe to get alarms")
        self._settings = settings
        self.alarms: dict[str, cloudwatch.Alarm] = {}

        def business(metric_name: str) -> cloudwatch.Metric:
            # EMF metrics from chalicelib/observability.py: dimensions service and stage (and reason, per reason).
            return cloudwatch.Metric(
                namespace=resources.metrics_namespace,
                metric_name=metric_name,
                dimensions_map={"service": resources.service, "stage": settings.stage},
                statistic="Sum",
                period=FIVE_MINUTES,
            )

        def function_metric(function_name: str, metric_name: str, statistic: str) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace="AWS/Lambda",
                metric_name=metric_name,
                dimensions_map={"FunctionName": function_name},
                statistic=statistic,
                period=FIVE_MINUTES,
            )

        self._alarm(
            "NotificationsDlqNotEmpty",
            resources.dlq.metric_approximate_number_of_messages_visible(statistic="Maximum", period=FIVE_MINUTES),
            threshold=1,
            description="Notifications failed 5 times and wait in the DLQ: fix the cause, then `redrive`.",
        )
        self._alarm(
            "OrderEventsFailedNotEmpty",
            resources.stream_failures.metric_approximate_number_of_messages_visible(
                statistic="Maximum", period=FIVE_MINUTES
            ),
            threshold=1,
            description="The relay gave up on stream records: their order events were not published.",
        )
        self._alarm(
            "NotificationsQuarantined",
            business("NotificationsQuarantined"),
            threshold=1,
            description="Verified notifications that cannot apply (amount mismatch, unknown order): look at them.",
        )
        self._alarm(
            "QueueMessagesRefused",
            # chalicelib/services/notifications.py QueueConsumer: a queued message whose own raw body does not verify
            # against Alipay's keys. Only the webhook's role may send to the queue, so even one is news: a forged
            # message, a v1 message from before messages carried their body, or Alipay's keys changed under the queue.
            business("QueueMessagesRefused"),
            threshold=1,
            description=(
                "The queue's consumer refused a message that does not verify by itself (quarantined, no order moved): "
                "docs/operations.md, 'A queued message was refused'."
            ),
        )
        self._alarm(
            "NotificationsRejected",
            business("NotificationsRejected"),
            threshold=REJECTIONS_THRESHOLD,
            description="The webhook rejects notifications: a wrong Alipay public key or app id, or an attack.",
        )
        self._alarm(
            "ConsumerErrors",
            function_metric(resources.consumer_name, "Errors", "Sum"),
            threshold=1,
            description="The notifications consumer failed whole invocations.",
        )
        self._alarm(
            "RelayErrors",
            function_metric(resources.relay_name, "Errors", "Sum"),
            threshold=1,
            description="The order events relay failed whole invocations.",
        )
        self._alarm(
            "ReconcilerErrors",
            function_metric(resources.reconciler_name, "Errors", "Sum"),
            threshold=1,
            description="The scheduled reconciliation crashed: lost payments and unpaid orders are not being settled.",
        )
        for name, threshold, description in RECONCILIATION_AND_MONEY_ALARMS:
            self._alarm(name, business(name), threshold=threshold, description=description)
        self._alarm(
            "WebhookErrors",
            resources.webhook.metric_errors(statistic="Sum", period=FIVE_MINUTES),
            threshold=1,
            description="The webhook crashed: Alipay gets no answer and retries.",
        )
        self._alarm(
            "StreamIteratorAge",
            function_metric(resources.relay_name, "IteratorAge", "Maximum"),
            threshold=ITERATOR_AGE_THRESHOLD_MS,
            description="Order events are published more than 5 minutes late.",
        )

        # Certificate mode: the reconciler reports, every run, the days the first configured certificate to expire has
        # left (chalicelib/services/certificates.py). A public-key stage never emits it: no data, no alarm.
        days_left = cloudwatch.Metric(
            namespace=resources.metrics_namespace,
            metric_name=topology.CERTIFICATE_DAYS_LEFT_METRIC,
            dimensions_map={"service": resources.service, "stage": settings.stage},
            statistic="Minimum",
            period=cdk.Duration.hours(1),
        )
        self._alarm(
            "CertificateExpiring",
            days_left,
            threshold=topology.CERTIFICATE_EXPIRY_WARNING_DAYS,
            description=(
                f"A configured certificate (the app's, Alipay's, or a root) expires in under "
                f"{topology.CERTIFICATE_EXPIRY_WARNING_DAYS} days: renew it and add the new one beside the old "
                "(docs/deploy.md, 'Certificate mode'); the reconciler's log names it."
            ),
            comparison=cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        )

    def add_alarm(self, name: str, metric: cloudwatch.IMetric, *, threshold: float, description: str) -> None:
        """One more alarm on the topic (the perimeter's, for instance), in the same shape as this construct's own."""
        self._alarm(name, metric, threshold=threshold, description=description)

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        comparison: cloudwatch.ComparisonOperator = cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
    ) -> None:
        alarm = cloudwatch.Alarm(
            self,
            name,
            alarm_name=f"{self._settings.stack_name}-{name}",
            alarm_description=f"{description} Runbook: {RUNBOOKS}#{name.lower()}",
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=comparison,
            # No data is no trouble: these metrics are only emitted when something happens.
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(cloudwatch_actions.SnsAction(self.topic))
        alarm.add_ok_action(cloudwatch_actions.SnsAction(self.topic))
        self.alarms[name] = alarm
