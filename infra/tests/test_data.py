"""The data resources: the signing key, the orders table, the queues and the event bus with its archive, and the
resource policies that keep each queue's messages and the bus's events to their own roles."""

from __future__ import annotations

from typing import Any

from aws_cdk.assertions import Match

from conftest import REDRIVE_ROLE_ARN, Synthesized, as_list, dump, statements

VISIBILITY_TIMEOUT_FACTOR = 6


def test_the_signing_key_is_an_rsa_2048_sign_verify_key_kept_when_the_stack_goes(every_stack: Synthesized) -> None:
    every_stack.template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": Match.object_like(
                {"KeySpec": "RSA_2048", "KeyUsage": "SIGN_VERIFY", "PendingWindowInDays": 30}
            ),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    stage = every_stack.settings.stage
    every_stack.template.has_resource_properties(
        "AWS::KMS::Alias", {"AliasName": f"alias/alipay-global-{stage}-merchant"}
    )


def test_the_orders_table_is_on_demand_with_pitr_a_two_image_stream_and_ttl(every_stack: Synthesized) -> None:
    every_stack.template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "waiting", "AttributeType": "S"},
                {"AttributeName": "waiting_since", "AttributeType": "S"},
                {"AttributeName": "listing", "AttributeType": "S"},
                {"AttributeName": "listing_sort", "AttributeType": "S"},
            ],
            "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            "StreamSpecification": {"StreamViewType": "NEW_AND_OLD_IMAGES"},
            "TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True},
        },
    )


def test_production_tables_are_deletion_protected_and_retained(prod: Synthesized) -> None:
    prod.template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": Match.object_like({"DeletionProtectionEnabled": True}),
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_a_dev_table_can_be_torn_down(dev: Synthesized) -> None:
    _, table = dev.resource("AWS::DynamoDB::Table")
    assert table["Properties"].get("DeletionProtectionEnabled") in (None, False)
    assert table["DeletionPolicy"] == "Delete"


def test_the_notifications_queue_sends_poison_messages_to_the_dlq_after_five_receives(prod: Synthesized) -> None:
    dlq = prod.logical_id("AWS::SQS::Queue", "NotificationsDlq")
    prod.template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            "QueueName": "alipay-global-prod-notifications",
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": [dlq, "Arn"]}, "maxReceiveCount": 5},
        },
    )
    prod.template.has_resource_properties(
        "AWS::SQS::Queue", {"MessageRetentionPeriod": 14 * 24 * 3600, "QueueName": Match.absent()}
    )


def test_the_visibility_timeout_is_at_least_six_times_the_consumers_timeout(every_stack: Synthesized) -> None:
    consumer_timeout = every_stack.json["Resources"]["ApplyNotifications"]["Properties"]["Timeout"]
    queue = every_stack.json["Resources"][every_stack.logical_id("AWS::SQS::Queue", "NotificationsQueue")]
    assert queue["Properties"]["VisibilityTimeout"] >= VISIBILITY_TIMEOUT_FACTOR * consumer_timeout


def test_every_queue_is_encrypted_and_refuses_plain_http(every_stack: Synthesized) -> None:
    queues = every_stack.resources("AWS::SQS::Queue")
    assert len(queues) == 3
    for queue in queues.values():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True
    policies = every_stack.resources("AWS::SQS::QueuePolicy").values()
    guarded = {policy["Properties"]["Queues"][0]["Ref"] for policy in policies}
    assert guarded == set(queues)
    for policy in policies:
        by_sid = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
        deny = by_sid["DenyWithoutTls"]
        assert (deny["Effect"], deny["Principal"]) == ("Deny", {"AWS": "*"})
        assert deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_the_event_bus_archives_every_order_event(every_stack: Synthesized) -> None:
    stage = every_stack.settings.stage
    every_stack.template.has_resource_properties("AWS::Events::EventBus", {"Name": f"alipay-global-{stage}"})
    bus = every_stack.logical_id("AWS::Events::EventBus", "EventBus")
    every_stack.template.has_resource_properties(
        "AWS::Events::Archive",
        {
            "SourceArn": {"Fn::GetAtt": [bus, "Arn"]},
            "EventPattern": {"source": ["alipay-global"]},
            "RetentionDays": 365,
        },
    )


def test_the_orders_table_has_the_sparse_waiting_index_reconciliation_queries(prod: Synthesized) -> None:
    _, table = prod.resource("AWS::DynamoDB::Table")
    # waiting first, then listing: a deployed stage gains listing as one index change (docs/operations.md).
    index, listing = table["Properties"]["GlobalSecondaryIndexes"]
    assert listing == {
        "IndexName": "listing",
        "KeySchema": [
            {"AttributeName": "listing", "KeyType": "HASH"},
            {"AttributeName": "listing_sort", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
    assert index == {
        "IndexName": "waiting",
        "KeySchema": [
            {"AttributeName": "waiting", "KeyType": "HASH"},
            {"AttributeName": "waiting_since", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }


# --- least trust between resources: the queues' messages and the bus's events belong to their own roles ---------

DATA_PLANE = {"sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"}
DELETES = {"sqs:DeleteMessage", "sqs:PurgeQueue"}


def queue_policy(stack: Synthesized, queue_prefix: str) -> dict[str, dict[str, Any]]:
    """The queue's policy statements by Sid."""
    queue = stack.logical_id("AWS::SQS::Queue", queue_prefix)
    policies = stack.resources("AWS::SQS::QueuePolicy").values()
    (policy,) = [p for p in policies if p["Properties"]["Queues"] == [{"Ref": queue}]]
    return {s["Sid"]: s for s in statements(policy["Properties"]["PolicyDocument"])}


def role_arn(stack: Synthesized, prefix: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [stack.logical_id("AWS::IAM::Role", prefix), "Arn"]}


def denied_to_all_but(statement: dict[str, Any]) -> list[Any] | None:
    """The principals a deny-to-everyone statement spares (None: it spares no principal); AWS services never."""
    assert (statement["Effect"], statement["Principal"]) == ("Deny", {"AWS": "*"})
    condition = statement["Condition"]
    assert condition["Bool"] == {"aws:PrincipalIsAWSService": "false"}
    assert set(condition) <= {"Bool", "ArnNotEquals"}
    return condition["ArnNotEquals"]["aws:PrincipalArn"] if "ArnNotEquals" in condition else None


def test_only_the_webhook_sends_to_the_notifications_queue_and_only_the_consumer_takes_from_it(
    prod: Synthesized,
) -> None:
    policy = queue_policy(prod, "NotificationsQueue")
    send = policy["OnlyTheWebhookAndRedriveSend"]
    assert as_list(send["Action"]) == ["sqs:SendMessage"]
    # The webhook, and the API for POST /merchant/redrive (the DLQ back to the queue).
    assert denied_to_all_but(send) == [role_arn(prod, "WebhookRole"), role_arn(prod, "ApiRole")]
    consume = policy["OnlyTheConsumerReceives"]
    assert set(as_list(consume["Action"])) == {"sqs:ReceiveMessage", "sqs:ChangeMessageVisibility"} | DELETES
    assert denied_to_all_but(consume) == [role_arn(prod, "ConsumerRole")]
    assert set(policy) == {"DenyWithoutTls", "OnlyTheWebhookAndRedriveSend", "OnlyTheConsumerReceives"}


def test_the_dlq_takes_messages_only_from_the_notifications_queue_and_only_the_api_reads_it_for_redrive(
    prod: Synthesized,
) -> None:
    policy = queue_policy(prod, "NotificationsDlq")
    send = policy["OnlySqsMovesMessagesIn"]
    assert as_list(send["Action"]) == ["sqs:SendMessage"]
    assert denied_to_all_but(send) is None  # no principal at all: SQS moves poison messages itself
    consume = policy["OnlyRedriveReceives"]
    assert DELETES | {"sqs:ReceiveMessage"} <= set(as_list(consume["Action"]))
    assert denied_to_all_but(consume) == [role_arn(prod, "ApiRole")]
    dlq = prod.json["Resources"][prod.logical_id("AWS::SQS::Queue", "NotificationsDlq")]
    assert dlq["Properties"]["RedriveAllowPolicy"] == {
        "redrivePermission": "byQueue",
        "sourceQueueArns": [
            {
                "Fn::Join": [
                    "",
                    [
                        "arn:",
                        {"Ref": "AWS::Partition"},
                        ":sqs:",
                        {"Ref": "AWS::Region"},
                        ":",
                        {"Ref": "AWS::AccountId"},
                        ":alipay-global-prod-notifications",
                    ],
                ]
            }
        ],
    }


def test_named_redrive_roles_move_the_dlq_back_to_the_queue(prod_configured: Synthesized) -> None:
    queue = queue_policy(prod_configured, "NotificationsQueue")
    assert denied_to_all_but(queue["OnlyTheWebhookAndRedriveSend"]) == [
        role_arn(prod_configured, "WebhookRole"),
        role_arn(prod_configured, "ApiRole"),
        REDRIVE_ROLE_ARN,
    ]
    assert queue["RedriveSendsBack"]["Principal"] == {"AWS": REDRIVE_ROLE_ARN}
    assert as_list(queue["RedriveSendsBack"]["Action"]) == ["sqs:SendMessage"]
    dlq = queue_policy(prod_configured, "NotificationsDlq")
    assert denied_to_all_but(dlq["OnlyRedriveReceives"]) == [role_arn(prod_configured, "ApiRole"), REDRIVE_ROLE_ARN]
    assert dlq["RedriveTakesFromTheDlq"]["Principal"] == {"AWS": REDRIVE_ROLE_ARN}
    # What chalicelib/adapters/sqs.py redrive_messages calls on the DLQ; it never sends there.
    assert set(as_list(dlq["RedriveTakesFromTheDlq"]["Action"])) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:GetQueueAttributes",
    }
    assert denied_to_all_but(dlq["OnlySqsMovesMessagesIn"]) is None
    for statement in (*queue.values(), *dlq.values()):
        if statement["Effect"] == "Allow":
            assert statement["Principal"] == {"AWS": REDRIVE_ROLE_ARN}


def test_the_denies_are_data_plane_only_so_administrators_keep_managing_the_queues(every_stack: Synthesized) -> None:
    for prefix in ("NotificationsQueue", "NotificationsDlq"):
        for sid, statement in queue_policy(every_stack, prefix).items():
            if sid == "DenyWithoutTls" or statement["Effect"] != "Deny":
                continue
            actions = set(as_list(statement["Action"]))
            assert actions <= DATA_PLANE | DELETES, sid
            assert not actions & {"sqs:GetQueueAttributes", "sqs:SetQueueAttributes", "sqs:DeleteQueue"}, sid


def test_only_the_relay_and_the_operators_event_replay_publish_to_the_event_bus(every_stack: Synthesized) -> None:
    bus = every_stack.logical_id("AWS::Events::EventBus", "EventBus")
    (policy,) = every_stack.resources("AWS::Events::EventBusPolicy").values()
    assert policy["Properties"]["EventBusName"] == {"Ref": bus}
    statement = policy["Properties"]["Statement"]
    assert statement["Action"] == "events:PutEvents"
    assert statement["Resource"] == {"Fn::GetAtt": [bus, "Arn"]}
    # Archive replays are EventBridge's own deliveries, which the deny leaves alone.
    # The API publishes only for POST /merchant/orders/{out_trade_no}/events/replay (a merchant operator route).
    assert denied_to_all_but(statement) == [role_arn(every_stack, "RelayRole"), role_arn(every_stack, "ApiRole")]


def test_every_order_event_is_also_written_to_the_events_log_group_for_ops_events_follow(
    every_stack: Synthesized,
) -> None:
    stage = every_stack.settings.stage
    name = f"/alipay-global/{stage}/events"
    groups = every_stack.resources("AWS::Logs::LogGroup").values()
    (group,) = [g for g in groups if g["Properties"]["LogGroupName"] == name]
    assert "RetentionInDays" in group["Properties"]
    bus = every_stack.logical_id("AWS::Events::EventBus", "EventBus")
    rules = [r for r in every_stack.resources("AWS::Events::Rule").values() if r["Properties"].get("EventBusName")]
    (rule,) = [r for r in rules if "events-log" in dump(r)]
    assert rule["Properties"]["EventBusName"] == {"Ref": bus}
    assert rule["Properties"]["EventPattern"] == {"source": ["alipay-global"]}
    (target,) = rule["Properties"]["Targets"]
    assert name in dump(target["Arn"])
    (policy,) = every_stack.resources("AWS::Logs::ResourcePolicy").values()
    document = dump(policy["Properties"]["PolicyDocument"])
    assert "events.amazonaws.com" in document
    assert "logs:PutLogEvents" in document
    assert name in document
