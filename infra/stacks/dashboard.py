"""The stage's CloudWatch dashboard: the money flow first, then what can stop it.

Every graph reads a metric that exists: one the Lambda code emits as EMF (namespace and dimensions from
chalicelib/observability.py; ``infra/tests/test_dashboard.py`` ties each name to the line of chalicelib that emits
it) or one AWS publishes itself (Lambda, SQS, DynamoDB, WAF). docs/operations.md's runbooks name the widgets.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_sqs as sqs
from constructs import Construct

HOUR = cdk.Duration.hours(1)
FIVE_MINUTES = cdk.Duration.minutes(5)
WIDTH = 24  # the dashboard's grid is 24 columns wide
HEIGHT = 6

# The payment funnel, per hour: orders created (chalicelib/services/orders.py), then each business fact as the relay
# published it, counted under its detail-type (chalicelib/services/events.py).
FUNNEL = ("OrdersCreated", "OrderPaid", "OrderFinished", "OrderClosed", "OrderRefunded")
# What became of each notification (chalicelib/services/notifications.py): the webhook accepts or rejects it, the
# consumer applies it, finds it a duplicate, or quarantines it.
NOTIFICATION_OUTCOMES = (
    "NotificationsAccepted",
    "NotificationsRejected",
    "NotificationsApplied",
    "NotificationsDuplicate",
    "NotificationsQuarantined",
)
# Counted with a ``reason`` dimension too (``count_by_reason``): graphed per reason, whatever reasons appear.
BY_REASON = {
    "NotificationsRejected": "Notifications rejected by the webhook, by reason",
    "NotificationsQuarantined": "Quarantined (kept for an operator), by reason",
    "QueueMessagesRefused": "Queued messages refused by the consumer, by check",
}
# chalicelib/services/reconciliation.py: per run.
RECONCILER = ("ReconciliationExamined", "ReconciliationApplied", "ReconciliationClosed", "ReconciliationFailed")
# The reconciler's warnings (each has an alarm): a run out of budget, a status it does not know, legacy trades Alipay
# keeps open past their orders' deadlines.
RECONCILER_WARNINGS = ("ReconciliationStarved", "ReconciliationUnknownStatus", "ReconciliationWaitingPastExpiry")
# Money at the edges: a payment for an order closed unpaid (chalicelib/services/notifications.py), its return as the
# relay published it (the PaymentReturned event), a return Alipay refused (chalicelib/services/refunds.py).
LATE_MONEY = ("LatePaymentsCaptured", "PaymentReturned", "PaymentReturnsRefused")
# Refunds confirmed (chalicelib/services/refunds.py), settled by the reconciler's sweep, answers over the total.
REFUNDS = ("RefundsConfirmed", "RefundsSettled", "RefundAnswersRejected")
# Emitted by every sweep, 0 included: the refunds (and returns) still pending an hour after they were asked.
REFUNDS_OVERDUE = "RefundsPendingTooLong"
KMS_THROTTLED = "KmsThrottled"  # chalicelib/adapters/kms.py: KMS itself publishes no throttling metric
# Certificate mode: each reconciliation run reports the days the first certificate to expire has left
# (chalicelib/services/certificates.py); a public-key stage never does, and the graph stays empty.
CERTIFICATE_DAYS_LEFT = "CertificateDaysLeft"


@dataclass(frozen=True)
class DashboardResources:
    """What the dashboard graphs."""

    metrics_namespace: str  # the app's EMF namespace and service dimension (.chalice/config.json)
    service: str
    functions: Mapping[str, str]  # every function of the stack: a short label -> its name (a token at synthesis)
    webhook_name: str
    reconciler_name: str
    relay_name: str
    dlq: sqs.IQueue
    stream_failures: sqs.IQueue
    table_name: str
    web_acl_name: str
    alipay_rate_rule: str  # the web ACL's rule on Alipay's paths (stacks/perimeter.py)
    alarms: Sequence[cloudwatch.IAlarm]


class Dashboard(Construct):
    """One dashboard per stage, named after the stack (output ``DashboardName``)."""

    def __init__(
        self, scope: Construct, construct_id: str, *, stack_name: str, stage: str, resources: DashboardResources
    ) -> None:
        super().__init__(scope, construct_id)
        self._r = resources
        self._stage = stage
        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=stack_name,
            default_interval=cdk.Duration.days(1),
            period_override=cloudwatch.PeriodOverride.INHERIT,
        )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(title="Alarms", alarms=list(resources.alarms), width=WIDTH, height=3)
        )
        self.dashboard.add_widgets(
            self._graph(
                "Payment funnel per hour: created, paid, finished, closed, refunded",
                [self._business(name, period=HOUR) for name in FUNNEL],
                width=WIDTH,
            )
        )
        self.dashboard.add_widgets(
            self._graph("Notifications by outcome", [self._business(name) for name in NOTIFICATION_OUTCOMES]),
            *(self._graph(title, [self._by_reason(name)]) for title, name in _titled(BY_REASON)),
        )
        self.dashboard.add_widgets(
            self._graph("Late payments and money returned", [self._business(name) for name in LATE_MONEY]),
            self._graph(
                "Refunds: confirmed, settled by the sweep, answers rejected",
                [self._business(name) for name in REFUNDS],
            ),
            self._graph(
                "Refunds pending over an hour (each run)",
                [self._business(REFUNDS_OVERDUE, statistic="Maximum", label="pending over an hour")],
            ),
        )
        runs = self._lambda(resources.reconciler_name, "Invocations", "Sum", "runs")
        self.dashboard.add_widgets(
            self._graph("Reconciler runs", [runs, *(self._business(name) for name in RECONCILER)]),
            self._graph(
                "Reconciler: starved runs, unknown statuses, waiting past expiry",
                [self._business(name) for name in RECONCILER_WARNINGS],
            ),
            self._graph(
                "Reconciler function: errors and duration (ms)",
                [self._lambda(resources.reconciler_name, "Errors", "Sum", "errors")],
                right=[self._lambda(resources.reconciler_name, "Duration", "Maximum", "duration max")],
            ),
        )
        self.dashboard.add_widgets(
            self._graph(
                "Dead letters: depth",
                [
                    resources.dlq.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", period=FIVE_MINUTES, label="notifications DLQ"
                    ),
                    resources.stream_failures.metric_approximate_number_of_messages_visible(
                        statistic="Maximum", period=FIVE_MINUTES, label="order events failed"
                    ),
                ],
            ),
            self._graph(
                "Dead letters: age of the oldest (s)",
                [
                    resources.dlq.metric_approximate_age_of_oldest_message(
                        statistic="Maximum", period=FIVE_MINUTES, label="notifications DLQ"
                    ),
                    resources.stream_failures.metric_approximate_age_of_oldest_message(
                        statistic="Maximum", period=FIVE_MINUTES, label="order events failed"
                    ),
                ],
            ),
            self._graph(
                "Relay: stream iterator age (ms)",
                [self._lambda(resources.relay_name, "IteratorAge", "Maximum", "iterator age max")],
            ),
        )
        self.dashboard.add_widgets(
            self._graph(
                "Webhook latency (ms): p50, p99",
                [
                    self._lambda(resources.webhook_name, "Duration", "p50", "p50"),
                    self._lambda(resources.webhook_name, "Duration", "p99", "p99"),
                ],
                width=12,
            ),
            self._graph(
                "Webhook errors: crashes and rejected notifications",
                [
                    self._lambda(resources.webhook_name, "Errors", "Sum", "crashed"),
                    self._business("NotificationsRejected", label="rejected"),
                ],
                width=12,
            ),
        )
        self.dashboard.add_widgets(
            self._graph(
                "Lambda errors per function",
                [self._lambda(name, "Errors", "Sum", label) for label, name in resources.functions.items()],
                width=12,
            ),
            self._graph(
                "Lambda throttles per function",
                [self._lambda(name, "Throttles", "Sum", label) for label, name in resources.functions.items()],
                width=12,
            ),
        )
        quarter = WIDTH // 4
        self.dashboard.add_widgets(
            self._graph(
                "DynamoDB throttles (orders table)",
                [
                    self._table("ReadThrottleEvents", "reads throttled"),
                    self._table("WriteThrottleEvents", "writes throttled"),
                ],
                width=quarter,
            ),
            self._graph(
                "KMS throttling (signing)", [self._business(KMS_THROTTLED, label="calls throttled")], width=quarter
            ),
            self._graph(
                "Certificates: days left (certificate mode)",
                [self._business(CERTIFICATE_DAYS_LEFT, period=HOUR, statistic="Minimum", label="days left")],
                width=quarter,
            ),
            self._graph(
                "WAF blocks",
                [
                    self._waf("ALL", "all rules"),
                    self._waf(resources.alipay_rate_rule, "Alipay's paths (notifications, returns)"),
                ],
                width=quarter,
            ),
        )

    # --- metrics -------------------------------------------------------------------------------------------------

    def _business(
        self, name: str, *, period: cdk.Duration = FIVE_MINUTES, statistic: str = "Sum", label: str | None = None
    ) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace=self._r.metrics_namespace,
            metric_name=name,
            dimensions_map={"service": self._r.service, "stage": self._stage},
            statistic=statistic,
            period=period,
            label=label or name,
        )

    def _by_reason(self, name: str) -> cloudwatch.MathExpression:
        """Every ``reason`` of ``name`` this stage emitted, one line each (a search: reasons are open-ended)."""
        namespace, service = self._r.metrics_namespace, self._r.service
        search = (
            f'SEARCH(\'{{{namespace},reason,service,stage}} MetricName="{name}" '
            f'service="{service}" stage="{self._stage}"\', \'Sum\', {int(FIVE_MINUTES.to_seconds())})'
        )
        return cloudwatch.MathExpression(expression=search, using_metrics={}, label="", period=FIVE_MINUTES)

    def _lambda(self, function_name: str, metric: str, statistic: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/Lambda",
            metric_name=metric,
            dimensions_map={"FunctionName": function_name},
            statistic=statistic,
            period=FIVE_MINUTES,
            label=label,
        )

    def _table(self, metric: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/DynamoDB",
            metric_name=metric,
            dimensions_map={"TableName": self._r.table_name},
            statistic="Sum",
            period=FIVE_MINUTES,
            label=label,
        )

    def _waf(self, rule: str, label: str) -> cloudwatch.Metric:
        return cloudwatch.Metric(
            namespace="AWS/WAFV2",
            metric_name="BlockedRequests",
            dimensions_map={"WebACL": self._r.web_acl_name, "Rule": rule, "Region": cdk.Stack.of(self).region},
            statistic="Sum",
            period=FIVE_MINUTES,
            label=label,
        )

    @staticmethod
    def _graph(
        title: str,
        left: Sequence[cloudwatch.IMetric],
        *,
        right: Sequence[cloudwatch.IMetric] = (),
        width: int = 8,
    ) -> cloudwatch.GraphWidget:
        return cloudwatch.GraphWidget(
            title=title,
            left=list(left),
            right=list(right),
            width=width,
            height=HEIGHT,
            left_y_axis=cloudwatch.YAxisProps(min=0),
        )


def _titled(by_reason: Mapping[str, str]) -> list[tuple[str, str]]:
    return [(title, name) for name, title in by_reason.items()]
