"""Least privilege: one role per function, no wildcard actions, and a key only the orders role can sign with."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import CSR_SIGNER_ARN, READER_ARN, Synthesized, as_list, dump, statements

FUNCTIONS = {
    "APIHandler": "ApiRole",
    "ApplyNotifications": "ConsumerRole",
    "RelayOrderEvents": "RelayRole",
    "ReconcileWaitingOrders": "ReconcilerRole",
}


def all_statements(stack: Synthesized) -> list[tuple[str, dict[str, Any]]]:
    """Every policy statement in the template, with the logical id of the resource holding it."""
    found: list[tuple[str, dict[str, Any]]] = []

    def walk(owner: str, value: Any) -> None:
        if isinstance(value, dict):
            if "Statement" in value and "Version" in value:
                found.extend((owner, s) for s in statements(value))
            for item in value.values():
                walk(owner, item)
        elif isinstance(value, list):
            for item in value:
                walk(owner, item)

    for logical_id, resource in stack.json["Resources"].items():
        walk(logical_id, resource.get("Properties", {}))
    return found


def role_of(stack: Synthesized, function: str) -> str:
    properties = stack.json["Resources"][function]["Properties"]
    return properties["Role"]["Fn::GetAtt"][0]


def webhook_id(stack: Synthesized) -> str:
    return stack.logical_id("AWS::Lambda::Function", "Webhook")


def role_actions(stack: Synthesized, role: str) -> dict[str, list[Any]]:
    """Action -> the resources it is allowed on, over the role's inline policies."""
    actions: dict[str, list[Any]] = {}
    for policy in stack.json["Resources"][role]["Properties"]["Policies"]:
        for statement in statements(policy["PolicyDocument"]):
            assert statement["Effect"] == "Allow"
            for action in as_list(statement["Action"]):
                actions.setdefault(action, []).extend(as_list(statement["Resource"]))
    return actions


def test_no_policy_anywhere_uses_a_wildcard_action(every_stack: Synthesized) -> None:
    found = all_statements(every_stack)
    assert len(found) > 20
    for owner, statement in found:
        assert "NotAction" not in statement, owner
        for action in as_list(statement.get("Action", [])):
            assert "*" not in action, f"{owner}: {action}"


def test_wildcard_resources_only_where_iam_has_no_narrower_one(every_stack: Synthesized) -> None:
    for owner, statement in all_statements(every_stack):
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        if every_stack.json["Resources"][owner]["Type"] == "AWS::KMS::Key":
            continue  # in a key policy "*" is the key itself
        # ListStreams lists stream ARNs (no data) and supports no resource-level permission.
        assert as_list(statement["Action"]) == ["dynamodb:ListStreams"], owner


def route_function(stack: Synthesized, name: str) -> str:
    return stack.logical_id("AWS::Lambda::Function", name)


def test_each_function_has_its_own_role_and_chalice_made_none(every_stack: Synthesized) -> None:
    own = {route_function(every_stack, name): f"{name}Role" for name in ("Webhook", "ReturnPage", "ClientResult")}
    roles = {function: role_of(every_stack, function) for function in [*FUNCTIONS, *own]}
    assert len(set(roles.values())) == 7
    assert set(roles.values()) == set(every_stack.function_roles())
    for function, prefix in {**FUNCTIONS, **own}.items():
        assert roles[function].startswith(prefix)
    assert "DefaultRole" not in every_stack.json["Resources"]


def test_the_webhook_can_only_enqueue(every_stack: Synthesized) -> None:
    actions = role_actions(every_stack, role_of(every_stack, webhook_id(every_stack)))
    queue = every_stack.logical_id("AWS::SQS::Queue", "NotificationsQueue")
    assert actions.pop("sqs:SendMessage") == [{"Fn::GetAtt": [queue, "Arn"]}]
    assert set(actions) == {"logs:CreateLogStream", "logs:PutLogEvents", "ssm:GetParameters"}


def test_only_the_api_and_the_reconciler_sign_and_the_consumer_cannot(every_stack: Synthesized) -> None:
    data_key = every_stack.logical_id("AWS::KMS::Key", "DataKey")
    for role in every_stack.function_roles():
        for action, resources in role_actions(every_stack, role).items():
            if action.startswith("kms:"):
                # Only the data key (the table, its stream) and only to read or write data, never to sign.
                assert action in ("kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey",
                                  "kms:ReEncryptFrom", "kms:ReEncryptTo"), (role, action)
                assert resources == [{"Fn::GetAtt": [data_key, "Arn"]}], (role, action)
    key = every_stack.signing_key()
    signers = [
        s
        for s in statements(key["Properties"]["KeyPolicy"])
        if "kms:Sign" in as_list(s["Action"]) and s["Sid"] != "SignCertificateRequest"  # csr_signers: the next test
    ]
    own = [route_function(every_stack, name) for name in ("ReturnPage", "ClientResult")]
    signing = ["APIHandler", "ReconcileWaitingOrders", *own]
    assert [s["Principal"] for s in signers] == [
        {"AWS": [{"Fn::GetAtt": [role_of(every_stack, f), "Arn"]} for f in signing]}
    ]
    assert signers[0]["Condition"] == {"StringEquals": {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}}
    assert role_of(every_stack, "ApplyNotifications") not in dump(key["Properties"]["KeyPolicy"])


def test_the_key_policy_administers_through_iam_but_grants_no_use_to_the_account(every_stack: Synthesized) -> None:
    key = every_stack.signing_key()
    policy = statements(key["Properties"]["KeyPolicy"])
    by_sid = {s["Sid"]: s for s in policy}
    admin = as_list(by_sid["KeyAdministration"]["Action"])
    assert "kms:PutKeyPolicy" in admin  # without it the key could be locked for good
    for use in ("kms:Sign", "kms:GetPublicKey", "kms:CreateGrant", "kms:Verify", "kms:Decrypt"):
        assert use not in admin
    api_role = {"AWS": {"Fn::GetAtt": [role_of(every_stack, "APIHandler"), "Arn"]}}
    public_key_readers = [s["Principal"] for s in policy if "kms:GetPublicKey" in as_list(s["Action"])]
    assert public_key_readers[0] == api_role


def test_a_csr_signer_may_sign_with_the_merchant_key_only_while_configured(
    prod_configured: Synthesized, prod: Synthesized
) -> None:
    # Signing a CSR is signing with the merchant key: the same power as signing an order, so it is given only to the
    # roles named in -c csr_signers, only with the key's one algorithm, and deploying without it takes it back.
    by_sid = {s["Sid"]: s for s in statements(prod_configured.signing_key()["Properties"]["KeyPolicy"])}
    sign = by_sid["SignCertificateRequest"]
    assert (sign["Principal"], sign["Action"]) == ({"AWS": CSR_SIGNER_ARN}, "kms:Sign")
    assert sign["Condition"] == {"StringEquals": {"kms:SigningAlgorithm": "RSASSA_PKCS1_V1_5_SHA_256"}}
    public = by_sid["CertificateRequestPublicKey"]
    assert (public["Principal"], public["Action"]) == ({"AWS": CSR_SIGNER_ARN}, "kms:GetPublicKey")
    assert CSR_SIGNER_ARN not in dump(prod.signing_key())
    assert "SignCertificateRequest" not in dump(prod.signing_key())


def test_operators_may_read_the_public_key_and_nothing_else(prod_configured: Synthesized, prod: Synthesized) -> None:
    key = prod_configured.signing_key()
    by_sid = {s["Sid"]: s for s in statements(key["Properties"]["KeyPolicy"])}
    assert by_sid["OperatorsReadPublicKey"]["Principal"] == {"AWS": READER_ARN}
    assert by_sid["OperatorsReadPublicKey"]["Action"] == "kms:GetPublicKey"
    default_key = prod.signing_key()
    assert "OperatorsReadPublicKey" not in dump(default_key)


@pytest.mark.parametrize(
    ("function", "table_actions"),
    [
        (
            "APIHandler",
            {
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
                "dynamodb:DeleteItem",
            },
        ),
        ("ApplyNotifications", {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}),
        ("RelayOrderEvents", set()),
        ("ReconcileWaitingOrders", {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}),
    ],
)
def test_table_access_per_function(prod: Synthesized, function: str, table_actions: set[str]) -> None:
    table = prod.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    actions = role_actions(prod, role_of(prod, function))
    on_table = {a for a, resources in actions.items() if {"Fn::GetAtt": [table, "Arn"]} in resources}
    assert on_table == table_actions


def test_the_relay_reads_the_stream_publishes_to_the_bus_and_parks_failures(prod: Synthesized) -> None:
    actions = role_actions(prod, role_of(prod, "RelayOrderEvents"))
    table = prod.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    for action in ("dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"):
        assert actions[action] == [{"Fn::GetAtt": [table, "StreamArn"]}]
    bus = prod.logical_id("AWS::Events::EventBus", "EventBus")
    assert actions["events:PutEvents"] == [{"Fn::GetAtt": [bus, "Arn"]}]
    failures = prod.logical_id("AWS::SQS::Queue", "OrderEventsFailed")
    assert actions["sqs:SendMessage"] == [{"Fn::GetAtt": [failures, "Arn"]}]


def test_the_consumer_polls_only_the_notifications_queue(prod: Synthesized) -> None:
    actions = role_actions(prod, role_of(prod, "ApplyNotifications"))
    queue = prod.logical_id("AWS::SQS::Queue", "NotificationsQueue")
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert actions[action] == [{"Fn::GetAtt": [queue, "Arn"]}]
    assert "sqs:SendMessage" not in actions


def test_the_api_queries_only_the_two_indexes_never_the_table(prod: Synthesized) -> None:
    table = prod.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    actions = role_actions(prod, role_of(prod, "APIHandler"))
    # listing: a buyer's orders, the catalogue, the quarantine, the audit log; waiting: the pending refunds.
    assert actions["dynamodb:Query"] == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/listing"]]},
        {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/waiting"]]},
    ]


def test_the_reconciler_queries_only_the_waiting_index_and_nothing_else_queries_or_scans(prod: Synthesized) -> None:
    table = prod.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    actions = role_actions(prod, role_of(prod, "ReconcileWaitingOrders"))
    assert actions["dynamodb:Query"] == [
        {"Fn::Join": ["", [{"Fn::GetAtt": [table, "Arn"]}, "/index/waiting"]]}
    ]
    assert {a for a in actions if not a.startswith("kms:")} == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameters",
    }
    for role in prod.function_roles():
        assert "dynamodb:Scan" not in role_actions(prod, role)
        if role not in (role_of(prod, "ReconcileWaitingOrders"), role_of(prod, "APIHandler")):
            assert "dynamodb:Query" not in role_actions(prod, role)


def parameter_arn(stage: str, name: str) -> dict[str, Any]:
    """The exact ARN of one of the stage's SSM parameters, as the template spells it."""
    return {
        "Fn::Join": [
            "",
            [
                "arn:",
                {"Ref": "AWS::Partition"},
                ":ssm:",
                {"Ref": "AWS::Region"},
                ":",
                {"Ref": "AWS::AccountId"},
                f":parameter/alipay-global/{stage}/{name}",
            ],
        ]
    }


def test_the_api_role_reads_the_web_checkout_parameters_by_their_exact_names(every_stack: Synthesized) -> None:
    stage = every_stack.settings.stage
    readable = role_actions(every_stack, role_of(every_stack, "APIHandler"))["ssm:GetParameters"]
    for name in ("return-url", "result-page-url"):
        assert parameter_arn(stage, name) in readable, name
    # Exact names under the stage's own path: no wildcard, nothing of another stage.
    assert readable == [
        parameter_arn(stage, name)
        for name in (
            "app-id",
            "seller-id",
            "partner-id",
            "alipay-public-keys",
            "notify-url",
            "return-url",
            "result-page-url",
            "app-cert",
            "alipay-certs",
            "alipay-root-cert",
        )
    ]


def test_the_consumer_reads_alipays_public_keys_from_the_stages_parameter_path(every_stack: Synthesized) -> None:
    # The consumer verifies each queued notification's signature itself, with Alipay's keys from SSM, as the API does.
    stage = every_stack.settings.stage
    consumer = role_actions(every_stack, role_of(every_stack, "ApplyNotifications"))["ssm:GetParameters"]
    assert parameter_arn(stage, "alipay-public-keys") in consumer
    assert consumer == role_actions(every_stack, role_of(every_stack, "APIHandler"))["ssm:GetParameters"]
    resources = every_stack.json["Resources"]
    consumer_env, api_env = (
        resources[f]["Properties"]["Environment"]["Variables"] for f in ("ApplyNotifications", "APIHandler")
    )
    assert consumer_env["SSM_PARAMETER_PATH"] == api_env["SSM_PARAMETER_PATH"] == f"/alipay-global/{stage}"


@pytest.mark.parametrize("name", ["ReturnPage", "ClientResult"])
def test_the_return_page_and_client_results_may_query_and_apply_but_never_delete_list_or_refund(
    every_stack: Synthesized, name: str
) -> None:
    actions = role_actions(every_stack, role_of(every_stack, route_function(every_stack, name)))
    table = every_stack.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"):
        assert actions.pop(action) == [{"Fn::GetAtt": [table, "Arn"]}]
    assert {a for a in actions if not a.startswith("kms:")} == {
        "logs:CreateLogStream",
        "logs:PutLogEvents",
        "ssm:GetParameters",
    }


def test_the_api_redrives_the_dlq_and_replays_events_with_exactly_what_that_needs(prod: Synthesized) -> None:
    """The operator routes: POST /merchant/redrive (receive, send, then delete) and the events replay."""
    actions = role_actions(prod, role_of(prod, "APIHandler"))
    dlq = {"Fn::GetAtt": [prod.logical_id("AWS::SQS::Queue", "NotificationsDlq"), "Arn"]}
    queue = {"Fn::GetAtt": [prod.logical_id("AWS::SQS::Queue", "NotificationsQueue"), "Arn"]}
    bus = {"Fn::GetAtt": [prod.logical_id("AWS::Events::EventBus", "EventBus"), "Arn"]}
    sqs = {action: resources for action, resources in actions.items() if action.startswith("sqs:")}
    assert sqs == {
        "sqs:ReceiveMessage": [dlq],
        "sqs:DeleteMessage": [dlq],
        "sqs:GetQueueAttributes": [dlq],
        "sqs:SendMessage": [queue],
    }
    assert actions["events:PutEvents"] == [bus]
