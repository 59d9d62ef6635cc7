"""Alarms on what needs an operator, all notifying one topic."""

from __future__ import annotations

import re
from typing import Any

from test_dashboard import graphs

from conftest import PROJECT_DIR, Synthesized, dump


def alarms(stack: Synthesized) -> dict[str, dict[str, Any]]:
    return {
        alarm["Properties"]["AlarmName"].removeprefix(f"alipay-global-{stack.settings.stage}-"): alarm["Properties"]
        for alarm in stack.resources("AWS::CloudWatch::Alarm").values()
    }


def dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def test_the_alarms_and_their_metrics(prod: Synthesized) -> None:
    found = alarms(prod)
    assert set(found) == {
        "NotificationsDlqNotEmpty",
        "OrderEventsFailedNotEmpty",
        "NotificationsQuarantined",
        "NotificationsRejected",
        "QueueMessagesRefused",
        "ConsumerErrors",
        "RelayErrors",
        "ReconcilerErrors",
        "ReconciliationFailed",
        "ReconciliationStarved",
        "ReconciliationWaitingPastExpiry",
        "ReconciliationUnknownStatus",
        "LatePaymentsCaptured",
        "PaymentReturnsRefused",
        "RefundsPendingTooLong",
        "RefundAnswersRejected",
        "WebhookErrors",
        "StreamIteratorAge",
        "AlipayTrafficBlocked",
        "CertificateExpiring",
    }
    dlq = prod.logical_id("AWS::SQS::Queue", "NotificationsDlq")
    assert (found["NotificationsDlqNotEmpty"]["MetricName"], found["NotificationsDlqNotEmpty"]["Threshold"]) == (
        "ApproximateNumberOfMessagesVisible",
        1,
    )
    assert dimensions(found["NotificationsDlqNotEmpty"]) == {"QueueName": {"Fn::GetAtt": [dlq, "QueueName"]}}
    for name in ("NotificationsQuarantined", "NotificationsRejected", "QueueMessagesRefused"):
        assert found[name]["Namespace"] == "AlipayGlobal"
        assert found[name]["MetricName"] == name
        assert dimensions(found[name]) == {"service": "alipay-global", "stage": "prod"}
    assert found["NotificationsQuarantined"]["Threshold"] == 1
    # What the queue's consumer counts when a message fails its own re-verification (chalicelib/services/
    # notifications.py, QueueConsumer): one is already news, since only the webhook may send to the queue.
    assert (found["QueueMessagesRefused"]["Statistic"], found["QueueMessagesRefused"]["Threshold"]) == ("Sum", 1)
    assert "docs/operations.md" in found["QueueMessagesRefused"]["AlarmDescription"]
    assert (found["ConsumerErrors"]["Namespace"], found["ConsumerErrors"]["MetricName"]) == ("AWS/Lambda", "Errors")
    assert dimensions(found["ConsumerErrors"]) == {"FunctionName": {"Ref": "ApplyNotifications"}}
    assert (found["ReconcilerErrors"]["Namespace"], found["ReconcilerErrors"]["MetricName"]) == ("AWS/Lambda", "Errors")
    assert dimensions(found["ReconcilerErrors"]) == {"FunctionName": {"Ref": "ReconcileWaitingOrders"}}
    assert (found["ReconcilerErrors"]["Statistic"], found["ReconcilerErrors"]["Threshold"]) == ("Sum", 1)
    # The failure count the Reconciler emits as EMF (chalicelib/services/reconciliation.py, "ReconciliationFailed").
    failed = found["ReconciliationFailed"]
    assert (failed["Namespace"], failed["MetricName"], failed["Statistic"]) == (
        "AlipayGlobal",
        "ReconciliationFailed",
        "Sum",
    )
    assert dimensions(failed) == {"service": "alipay-global", "stage": "prod"}
    assert failed["Threshold"] == 3
    assert found["StreamIteratorAge"]["MetricName"] == "IteratorAge"
    # The counts the refund sweep and the refund service emit (chalicelib/services/reconciliation.py, refunds.py).
    names = (
        "ReconciliationStarved",
        "ReconciliationUnknownStatus",
        "LatePaymentsCaptured",
        "PaymentReturnsRefused",
        "RefundsPendingTooLong",
        "RefundAnswersRejected",
    )
    for name in names:
        assert (found[name]["Namespace"], found[name]["MetricName"], found[name]["Statistic"]) == (
            "AlipayGlobal",
            name,
            "Sum",
        )
        assert dimensions(found[name]) == {"service": "alipay-global", "stage": "prod"}
        assert found[name]["Threshold"] == 1
    waiting = found["ReconciliationWaitingPastExpiry"]
    assert (waiting["MetricName"], waiting["Threshold"]) == ("ReconciliationWaitingPastExpiry", 3)
    assert found["StreamIteratorAge"]["Statistic"] == "Maximum"
    assert dimensions(found["StreamIteratorAge"]) == {"FunctionName": {"Ref": "RelayOrderEvents"}}


def test_every_alarm_notifies_the_topic_and_quiet_metrics_are_not_trouble(every_stack: Synthesized) -> None:
    topic = every_stack.logical_id("AWS::SNS::Topic", "MonitoringAlarmTopic")
    for name, alarm in alarms(every_stack).items():
        assert alarm["AlarmActions"] == [{"Ref": topic}], name
        assert alarm["TreatMissingData"] == "notBreaching", name
        # Trouble is a count reaching its threshold; only the certificates' days left alarm by falling below one.
        expected = "LessThanThreshold" if name == "CertificateExpiring" else "GreaterThanOrEqualToThreshold"
        assert alarm["ComparisonOperator"] == expected, name


def test_an_alarm_address_subscribes_to_the_topic(prod_configured: Synthesized, prod: Synthesized) -> None:
    prod_configured.template.has_resource_properties(
        "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.com"}
    )
    assert not prod.resources("AWS::SNS::Subscription")
    assert "ops@example.com" not in dump(prod.json)


def test_an_alarm_fires_30_days_before_any_configured_certificate_expires(prod: Synthesized) -> None:
    expiring = alarms(prod)["CertificateExpiring"]
    # What the reconciler emits each run in certificate mode (chalicelib/services/certificates.py): the days the
    # first certificate to expire has left; its minimum over the hour below 30 alarms.
    assert (expiring["Namespace"], expiring["MetricName"], expiring["Statistic"]) == (
        "AlipayGlobal",
        "CertificateDaysLeft",
        "Minimum",
    )
    assert dimensions(expiring) == {"service": "alipay-global", "stage": "prod"}
    assert (expiring["ComparisonOperator"], expiring["Threshold"]) == ("LessThanThreshold", 30)
    assert expiring["TreatMissingData"] == "notBreaching"  # a public-key stage never reports it
    assert "docs/deploy.md" in expiring["AlarmDescription"]


def github_anchors(markdown: str) -> dict[str, str]:
    """Each heading's anchor as GitHub makes it (lower case, punctuation dropped, spaces to hyphens) -> its section."""
    text = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)
    sections: dict[str, str] = {}
    parts = re.split(r"^#{1,6} +(.+?) *$", text, flags=re.MULTILINE)
    for heading, section in zip(parts[1::2], parts[2::2], strict=True):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        sections.setdefault(slug, section)
    return sections


def test_every_alarm_links_its_runbook_and_the_runbook_says_what_to_do(every_stack: Synthesized) -> None:
    runbooks = github_anchors((PROJECT_DIR / "docs" / "operations.md").read_text(encoding="utf-8"))
    for name, alarm in alarms(every_stack).items():
        description = alarm["AlarmDescription"]
        assert len(description) <= 1024, name  # CloudWatch's limit
        link = re.search(r"Runbook: docs/operations\.md#([\w-]+)$", description)
        assert link, f"{name}: no runbook link in {description!r}"
        anchor = link[1]
        assert anchor == name.lower()
        assert anchor in runbooks, f"{name}: docs/operations.md has no heading #{anchor}"
        # What it means for money, how to look (a widget, a command), what to do, how to know it is fixed.
        section = runbooks[anchor]
        for part in ("**Money.**", "**Look.**", "**Do.**", "**Fixed when.**"):
            assert part in section, f"{name}: its runbook has no {part}"
        assert "python -m ops" in section, f"{name}: its runbook names no ops command"
        # Every quoted name in its prose (code spans aside) is a widget of the dashboard, as titled there.
        prose = re.sub(r"`[^`]*`", "", section)
        widgets = {" ".join(title.split()) for title in re.findall(r'"([^"]+)"', prose)}
        assert widgets, f"{name}: its runbook names no dashboard widget"
        assert widgets <= {*graphs(every_stack), "Alarms"}, f"{name}: a widget the dashboard does not have"
