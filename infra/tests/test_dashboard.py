"""The stage's dashboard: the money flow and what can stop it, every graph on a metric that exists."""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import PROJECT_DIR, Synthesized
from stacks.dashboard import (
    BY_REASON,
    FUNNEL,
    KMS_THROTTLED,
    LATE_MONEY,
    NOTIFICATION_OUTCOMES,
    RECONCILER,
    RECONCILER_WARNINGS,
    REFUNDS,
    REFUNDS_OVERDUE,
)

# The detail-types of chalicelib/orders/events.py the dashboard graphs (the relay counts each published event by them).
DETAIL_TYPES = ("OrderPaid", "OrderFinished", "OrderClosed", "OrderRefunded", "PaymentReturned")
# Each business metric the dashboard reads, and the source that emits it (chalicelib/observability.py turns each
# ``Metrics.count`` into an EMF line in the namespace AlipayGlobal, dimensions service and stage, and a ``Base.reason``
# name into ``Base`` with a ``reason`` dimension). Every snippet must be in the file's code, comments left out: a
# metric renamed or no longer emitted fails here instead of leaving a graph that stays empty.
EMITTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "OrdersCreated": ("chalicelib/services/orders.py", ('self.metrics.count("OrdersCreated")',)),
    # The relay counts each published event under its detail-type (an EventType of chalicelib/orders/events.py).
    **dict.fromkeys(
        DETAIL_TYPES,
        (
            "chalicelib/services/events.py",
            ("counts[event.detail_type] = counts.get(event.detail_type, 0) + 1", "self.metrics.count(name, value)"),
        ),
    ),
    "NotificationsAccepted": ("chalicelib/services/notifications.py", ('self.metrics.count("NotificationsAccepted")',)),
    "NotificationsApplied": ("chalicelib/services/notifications.py", ('self.metrics.count("NotificationsApplied")',)),
    "NotificationsDuplicate": (
        "chalicelib/services/notifications.py",
        ('self.metrics.count("NotificationsDuplicate")',),
    ),
    **{
        name: ("chalicelib/services/notifications.py", (f'count_by_reason(self.metrics, "{name}",',))
        for name in ("NotificationsRejected", "NotificationsQuarantined", "QueueMessagesRefused")
    },
    "ReconciliationExamined": (
        "chalicelib/services/reconciliation.py",
        ('self.metrics.count("ReconciliationExamined", report.examined)',),
    ),
    **{
        name: ("chalicelib/services/reconciliation.py", (f'self.metrics.count("{name}")',))
        for name in ("ReconciliationStarved",)
    },
    "RefundsSettled": (
        "chalicelib/services/reconciliation.py",
        ('self.metrics.count("RefundsSettled", report.refunds_settled)',),
    ),
    "RefundsPendingTooLong": (
        "chalicelib/services/reconciliation.py",
        ('self.metrics.count("RefundsPendingTooLong", report.refunds_overdue)',),
    ),
    "LatePaymentsCaptured": ("chalicelib/services/notifications.py", ('self.metrics.count("LatePaymentsCaptured")',)),
    **{
        name: ("chalicelib/services/refunds.py", (snippet, "self.metrics.count(name)"))
        for name, snippet in (
            ("PaymentReturnsRefused", 'self._count("PaymentReturnsRefused")'),
            ("RefundAnswersRejected", 'self._count("RefundAnswersRejected")'),
            (
                "RefundsConfirmed",
                'self._count("PaymentsReturned" if recorded.kind is RefundKind.RETURN else "RefundsConfirmed")',
            ),
        )
    },
    **{
        f"Reconciliation{name}": (
            "chalicelib/services/reconciliation.py",
            (f'("{name}", report.{field})', 'self.metrics.count(f"Reconciliation{name}", value)'),
        )
        for name, field in (
            ("Applied", "applied"),
            ("Closed", "closed"),
            ("Failed", "failed"),
            ("UnknownStatus", "unknown_status"),
            ("WaitingPastExpiry", "past_expiry"),
        )
    },
    "CertificateDaysLeft": (
        "chalicelib/services/certificates.py",
        ("self._gauges.gauge(CERTIFICATE_DAYS_LEFT_METRIC, days)",),
    ),
    KMS_THROTTLED: (
        "chalicelib/adapters/kms.py",
        ('THROTTLED_METRIC = "KmsThrottled"', "self._metrics.count(THROTTLED_METRIC)"),
    ),
}
# What AWS publishes itself, by namespace: the only AWS metrics a graph may read.
AWS_METRICS = {
    "AWS/Lambda": {"Errors", "Throttles", "Duration", "IteratorAge", "Invocations"},
    "AWS/SQS": {"ApproximateNumberOfMessagesVisible", "ApproximateAgeOfOldestMessage"},
    "AWS/DynamoDB": {"ReadThrottleEvents", "WriteThrottleEvents"},
    "AWS/WAFV2": {"BlockedRequests"},
}


def body(stack: Synthesized) -> dict[str, Any]:
    """The dashboard's JSON, each CloudFormation reference in it written as ``<Ref X>`` / ``<GetAtt X.Y>``."""
    (dashboard,) = stack.resources("AWS::CloudWatch::Dashboard").values()
    source = dashboard["Properties"]["DashboardBody"]
    parts = source["Fn::Join"][1] if isinstance(source, dict) else [source]
    text = "".join(part if isinstance(part, str) else _reference(part) for part in parts)
    found: dict[str, Any] = json.loads(text)
    return found


def _reference(token: dict[str, Any]) -> str:
    if "Ref" in token:
        return f"<Ref {token['Ref']}>"
    logical_id, attribute = token["Fn::GetAtt"]
    return f"<GetAtt {logical_id}.{attribute}>"


def graphs(stack: Synthesized) -> dict[str, list[Any]]:
    """Each graph's title and its metric rows (``[namespace, name, dim, value, ..., {options}]`` or an expression)."""
    return {
        widget["properties"]["title"]: widget["properties"]["metrics"]
        for widget in body(stack)["widgets"]
        if widget["type"] == "metric"
    }


def rows(stack: Synthesized) -> list[list[Any]]:
    return [row for metrics in graphs(stack).values() for row in metrics if isinstance(row[0], str)]


def searches(stack: Synthesized) -> list[str]:
    return [row[0]["expression"] for metrics in graphs(stack).values() for row in metrics if isinstance(row[0], dict)]


def dimensions(row: list[Any]) -> dict[str, Any]:
    pairs = [value for value in row[2:] if not isinstance(value, dict)]
    return dict(zip(pairs[::2], pairs[1::2], strict=True))


def code_of(relative: str) -> str:
    """A source file without its comments (a name in a comment emits nothing)."""
    text = (PROJECT_DIR / relative).read_text(encoding="utf-8")
    return "\n".join(line.split("  #")[0] for line in text.splitlines() if not line.lstrip().startswith("#"))


def test_one_dashboard_per_stage_named_after_the_stack(prod: Synthesized, dev: Synthesized) -> None:
    for stack in (prod, dev):
        (dashboard,) = stack.resources("AWS::CloudWatch::Dashboard").values()
        assert dashboard["Properties"]["DashboardName"] == f"alipay-global-{stack.settings.stage}"
        assert stack.json["Outputs"]["DashboardName"]["Value"] == {
            "Ref": stack.logical_id("AWS::CloudWatch::Dashboard", "OperationsDashboard")
        }


def test_every_business_metric_graphed_is_one_the_code_emits(every_stack: Synthesized) -> None:
    graphed: set[str] = set()
    for row in rows(every_stack):
        if row[0] == "AlipayGlobal":
            graphed.add(row[1])
            assert dimensions(row) == {"service": "alipay-global", "stage": every_stack.settings.stage}, row
    for search in searches(every_stack):
        match = re.fullmatch(
            r"SEARCH\('\{AlipayGlobal,reason,service,stage\} MetricName=\"(\w+)\" service=\"alipay-global\" "
            rf"stage=\"{every_stack.settings.stage}\"', 'Sum', 300\)",
            search,
        )
        assert match, search
        graphed.add(match[1])
    assert graphed == set(EMITTERS)
    # The gauge's name is chalicelib/topology.py's, shared with the alarm.
    assert 'CERTIFICATE_DAYS_LEFT_METRIC: Final = "CertificateDaysLeft"' in code_of("chalicelib/topology.py")
    detail_types = code_of("chalicelib/orders/events.py")
    for name in DETAIL_TYPES:
        assert f' = "{name}"' in detail_types, f"{name} is no detail-type of chalicelib/orders/events.py"
    for name, (path, snippets) in EMITTERS.items():
        code = code_of(path)
        for snippet in snippets:
            assert snippet in code, f"{name}: {path} no longer has {snippet!r}"


def test_every_aws_metric_graphed_is_one_aws_publishes(every_stack: Synthesized) -> None:
    for row in rows(every_stack):
        if row[0] != "AlipayGlobal":
            assert row[1] in AWS_METRICS[row[0]], row


def test_the_funnel_notifications_quarantine_and_reconciler(prod: Synthesized) -> None:
    found = graphs(prod)
    funnel = found["Payment funnel per hour: created, paid, finished, closed, refunded"]
    assert [(row[1], row[-1]["period"], row[-1]["stat"]) for row in funnel] == [(n, 3600, "Sum") for n in FUNNEL]
    assert [row[1] for row in found["Notifications by outcome"]] == list(NOTIFICATION_OUTCOMES)
    for name, title in BY_REASON.items():
        (search,) = found[title]
        assert f'MetricName="{name}"' in search[0]["expression"]
    assert [row[1] for row in found["Late payments and money returned"]] == list(LATE_MONEY)
    assert [row[1] for row in found["Refunds: confirmed, settled by the sweep, answers rejected"]] == list(REFUNDS)
    (overdue,) = found["Refunds pending over an hour (each run)"]
    assert (overdue[1], overdue[-1]["stat"]) == (REFUNDS_OVERDUE, "Maximum")
    warnings = found["Reconciler: starved runs, unknown statuses, waiting past expiry"]
    assert [row[1] for row in warnings] == list(RECONCILER_WARNINGS)
    reconciler = found["Reconciler runs"]
    assert [(row[0], row[1], row[-1]["stat"]) for row in reconciler] == [
        ("AWS/Lambda", "Invocations", "Sum"),
        *(("AlipayGlobal", name, "Sum") for name in RECONCILER),
    ]


def test_errors_and_throttles_of_every_function_of_the_stack(every_stack: Synthesized) -> None:
    functions = {
        **{name: {"Ref": name} for name in every_stack.resources("AWS::Serverless::Function")},
        **{name: {"Ref": name} for name in every_stack.resources("AWS::Lambda::Function")},
    }
    assert len(functions) == 7
    found = graphs(every_stack)
    for title, metric in (("Lambda errors per function", "Errors"), ("Lambda throttles per function", "Throttles")):
        graphed = {dimensions(row)["FunctionName"] for row in found[title] if row[1] == metric}
        assert graphed == {f"<Ref {name}>" for name in functions}, title


def test_dead_letters_webhook_dynamodb_kms_and_waf(prod: Synthesized) -> None:
    found = graphs(prod)
    dlq = prod.logical_id("AWS::SQS::Queue", "NotificationsDlq")
    failures = prod.logical_id("AWS::SQS::Queue", "OrderEventsFailed")
    for title, metric in (
        ("Dead letters: depth", "ApproximateNumberOfMessagesVisible"),
        ("Dead letters: age of the oldest (s)", "ApproximateAgeOfOldestMessage"),
    ):
        assert [(row[1], dimensions(row)["QueueName"]) for row in found[title]] == [
            (metric, f"<GetAtt {dlq}.QueueName>"),
            (metric, f"<GetAtt {failures}.QueueName>"),
        ]
    webhook = prod.logical_id("AWS::Lambda::Function", "Webhook")
    latency = found["Webhook latency (ms): p50, p99"]
    assert [(row[1], row[-1]["stat"], dimensions(row)["FunctionName"]) for row in latency] == [
        ("Duration", "p50", f"<Ref {webhook}>"),
        ("Duration", "p99", f"<Ref {webhook}>"),
    ]
    assert [row[1] for row in found["Webhook errors: crashes and rejected notifications"]] == [
        "Errors",
        "NotificationsRejected",
    ]
    table = prod.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    throttles = found["DynamoDB throttles (orders table)"]
    assert [(row[1], dimensions(row)["TableName"]) for row in throttles] == [
        ("ReadThrottleEvents", f"<Ref {table}>"),
        ("WriteThrottleEvents", f"<Ref {table}>"),
    ]
    assert [row[1] for row in found["KMS throttling (signing)"]] == [KMS_THROTTLED]
    (days_left,) = found["Certificates: days left (certificate mode)"]
    assert (days_left[1], days_left[-1]["stat"], days_left[-1]["period"]) == ("CertificateDaysLeft", "Minimum", 3600)
    waf = found["WAF blocks"]
    assert [(dimensions(row)["WebACL"], dimensions(row)["Rule"]) for row in waf] == [
        ("alipay-global-prod-api", "ALL"),
        ("alipay-global-prod-api", "AlipayPathsRatePerIp"),
    ]


def test_the_first_row_is_every_alarms_state(every_stack: Synthesized) -> None:
    (status,) = [w for w in body(every_stack)["widgets"] if w["type"] == "alarm"]
    alarms = every_stack.resources("AWS::CloudWatch::Alarm")
    assert sorted(status["properties"]["alarms"]) == sorted(f"<GetAtt {name}.Arn>" for name in alarms)
    assert status["y"] == 0


def test_every_widget_fits_the_grid(prod: Synthesized) -> None:
    for widget in body(prod)["widgets"]:
        assert widget["x"] + widget["width"] <= 24, widget.get("properties", {}).get("title")
