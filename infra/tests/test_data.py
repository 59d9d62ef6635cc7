"""The data resources: the signing key, the orders table, the queues and the event bus with its archive."""

from __future__ import annotations

from aws_cdk.assertions import Match

from conftest import Synthesized

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
        (deny,) = policy["Properties"]["PolicyDocument"]["Statement"]
        assert deny["Effect"] == "Deny"
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
    [index] = table["Properties"]["GlobalSecondaryIndexes"]
    assert index == {
        "IndexName": "waiting",
        "KeySchema": [
            {"AttributeName": "waiting", "KeyType": "HASH"},
            {"AttributeName": "waiting_since", "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
