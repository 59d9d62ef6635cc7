"""The functions: event-source mappings, the webhook's own function, configuration from SSM, logs."""

from __future__ import annotations

import importlib.util
import zipfile
from typing import Any

import pytest
from aws_cdk.assertions import Match

from conftest import RETURN_URL, Synthesized, dump, statements
from stacks import topology

SSM_PARAMETERS = (
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


def event(stack: Synthesized, function: str) -> dict[str, Any]:
    (source,) = stack.json["Resources"][function]["Properties"]["Events"].values()
    return source


def test_the_queue_mapping_reports_batch_item_failures(every_stack: Synthesized) -> None:
    source = event(every_stack, "ApplyNotifications")
    queue = every_stack.logical_id("AWS::SQS::Queue", "NotificationsQueue")
    assert source["Type"] == "SQS"
    assert source["Properties"]["Queue"] == {"Fn::GetAtt": [queue, "Arn"]}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert source["Properties"]["BatchSize"] == 10  # app.py's @on_sqs_message


def test_the_stream_mapping_bisects_retries_a_bounded_number_of_times_and_parks_failures(
    every_stack: Synthesized,
) -> None:
    source = event(every_stack, "RelayOrderEvents")
    table = every_stack.logical_id("AWS::DynamoDB::Table", "OrdersTable")
    failures = every_stack.logical_id("AWS::SQS::Queue", "OrderEventsFailed")
    properties = source["Properties"]
    assert source["Type"] == "DynamoDB"
    assert properties["Stream"] == {"Fn::GetAtt": [table, "StreamArn"]}
    assert properties["BisectBatchOnFunctionError"] is True
    assert 0 <= properties["MaximumRetryAttempts"] <= 10
    assert properties["MaximumRecordAgeInSeconds"] == 86400
    assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert properties["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": [failures, "Arn"]}}}
    assert properties["StartingPosition"] == "TRIM_HORIZON"


def test_the_webhook_runs_the_same_code_package_with_its_own_role(every_stack: Synthesized) -> None:
    resources = every_stack.json["Resources"]
    webhook_id = every_stack.logical_id("AWS::Lambda::Function", "Webhook")
    webhook = resources[webhook_id]["Properties"]
    api = resources["APIHandler"]["Properties"]
    assert webhook["Code"] == {"S3Bucket": api["CodeUri"]["Bucket"], "S3Key": api["CodeUri"]["Key"]}
    assert (webhook["Handler"], webhook["Runtime"]) == (api["Handler"], api["Runtime"]) == ("app.app", "python3.11")
    assert (webhook["MemorySize"], webhook["Timeout"]) == (api["MemorySize"], api["Timeout"])
    # The same settings, but the buyers' app clients: only the API function checks a token's audience.
    api_variables = dict(api["Environment"]["Variables"])
    assert api_variables.pop("COGNITO_CLIENT_IDS", None) is not None or every_stack.settings.orders_auth == "none"
    assert webhook["Environment"]["Variables"] == api_variables
    assert webhook["Role"] != api["Role"]


def test_the_code_package_ships_the_bytecode_of_every_module(dev: Synthesized) -> None:
    """The code asset is Chalice's package with a pyc beside each module (stacks/bytecode.py): Lambda's read-only
    /var/task would otherwise have every cold start compile all it imports. tests/package proves the app loads from it.
    """
    code = dev.json["Resources"]["APIHandler"]["Properties"]["CodeUri"]
    with zipfile.ZipFile(dev.assembly_dir / f"asset.{code['Key']}") as package:
        names = set(package.namelist())
        sources = {n for n in names if n.endswith(".py")}
        assert {"app.py", "chalicelib/bootstrap.py", "boto3/__init__.py"} <= sources
        assert {importlib.util.cache_from_source(n, optimization="") for n in sources} <= names
        header = package.read(importlib.util.cache_from_source("chalicelib/bootstrap.py", optimization=""))[:8]
        assert header == importlib.util.MAGIC_NUMBER + (0b01).to_bytes(4, "little")  # unchecked hash-based


ROUTE_FUNCTIONS = {
    ("/alipay/notify", "post"): ("Webhook", "/*/POST/alipay/notify"),
    # Antom's notifications (ALIPAY_PROTOCOL=antom), wherever the app defines the route: the same enqueue-only webhook.
    ("/antom/notify", "post"): ("Webhook", "/*/POST/antom/notify"),
    ("/alipay/return", "get"): ("ReturnPage", "/*/GET/alipay/return"),
    ("/orders/{out_trade_no}/client-result", "post"): ("ClientResult", "/*/POST/orders/*/client-result"),
}


@pytest.mark.parametrize("route", list(ROUTE_FUNCTIONS), ids=lambda route: route[0])
def test_api_gateway_sends_the_public_checks_to_functions_of_their_own(
    every_stack: Synthesized, route: tuple[str, str]
) -> None:
    name, source = ROUTE_FUNCTIONS[route]
    function_id = every_stack.logical_id("AWS::Lambda::Function", name)
    paths = every_stack.json["Resources"]["RestAPI"]["Properties"]["DefinitionBody"]["paths"]
    if route[1] not in paths.get(route[0], {}):
        # Only Antom's route may be missing, from an app without it (then an Antom stage refuses to synthesize).
        assert route[0] == topology.ANTOM_NOTIFY_PATH
        assert every_stack.settings.stage != "antom"
        return
    for path, operations in paths.items():
        for method, operation in operations.items():
            uri = dump(operation["x-amazon-apigateway-integration"]["uri"])
            if (path, method) == route:
                assert function_id in uri
                assert "APIHandler" not in uri
            elif (path, method) not in ROUTE_FUNCTIONS:
                assert "APIHandler.Arn" in uri
                assert function_id not in uri
    (permission,) = [
        p["Properties"]
        for p in every_stack.resources("AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": function_id}
        and dump(p["Properties"]["SourceArn"]).endswith(f'"{source}"]]}}')
    ]
    assert (permission["Action"], permission["Principal"]) == ("lambda:InvokeFunction", "apigateway.amazonaws.com")
    source_arn = dump(permission["SourceArn"])
    assert '{"Ref": "RestAPI"}' in source_arn
    assert source_arn.endswith(f'"{source}"]]}}')


def test_every_function_finds_its_resources_and_its_ssm_path_in_the_environment(every_stack: Synthesized) -> None:
    for function in ("APIHandler", "ApplyNotifications", "RelayOrderEvents", "ReconcileWaitingOrders"):
        variables = every_stack.json["Resources"][function]["Properties"]["Environment"]["Variables"]
        assert variables["STAGE"] == every_stack.settings.stage
        assert variables["SSM_PARAMETER_PATH"] == f"/alipay-global/{every_stack.settings.stage}"
        for name in ("ORDERS_TABLE", "NOTIFICATIONS_QUEUE_URL", "NOTIFICATIONS_DLQ_URL", "EVENT_BUS_NAME"):
            assert "Ref" in variables[name], name
        assert variables["SIGNING_KEY_ID"]["Fn::GetAtt"][1] == "Arn"
        # The Alipay settings come from SSM at cold start, never baked into the template.
        for name in ("ALIPAY_APP_ID", "ALIPAY_PUBLIC_KEYS", "NOTIFY_URL", "RETURN_URL", "RESULT_PAGE_URL"):
            assert name not in variables


def test_the_roles_read_exactly_the_stages_alipay_parameters(prod: Synthesized) -> None:
    for role in prod.function_roles().values():
        (policy,) = role["Properties"]["Policies"]
        (read,) = [s for s in statements(policy["PolicyDocument"]) if s["Action"] == "ssm:GetParameters"]
        names = [dump(arn).split("parameter/")[1].split('"')[0] for arn in read["Resource"]]
        assert names == [f"alipay-global/prod/{name}" for name in SSM_PARAMETERS]


def written_parameters(stack: Synthesized) -> dict[str, Any]:
    """Parameter name -> the value the stack writes into it."""
    return {p["Properties"]["Name"]: p["Properties"]["Value"] for p in stack.resources("AWS::SSM::Parameter").values()}


def test_the_stack_writes_the_webhook_url_as_the_notify_url_parameter(prod: Synthesized) -> None:
    prod.template.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": "/alipay-global/prod/notify-url", "Type": "String", "Value": Match.any_value()},
    )
    value = written_parameters(prod)["/alipay-global/prod/notify-url"]
    assert dump(value).endswith('/api/alipay/notify"]]}')
    assert "RestAPI" in dump(value)


def test_the_stack_writes_its_own_return_page_as_the_default_return_url(every_stack: Synthesized) -> None:
    stage = every_stack.settings.stage
    every_stack.template.has_resource_properties(
        "AWS::SSM::Parameter",
        {"Name": f"/alipay-global/{stage}/return-url", "Type": "String", "Value": Match.any_value()},
    )
    value = written_parameters(every_stack)[f"/alipay-global/{stage}/return-url"]
    if every_stack.settings.return_url is None:
        assert dump(value).endswith('/api/alipay/return"]]}')
        assert "RestAPI" in dump(value)
    else:
        assert value == every_stack.settings.return_url
    output = every_stack.json["Outputs"]["ReturnUrl"]
    assert output["Value"] == value


def test_a_return_url_from_context_replaces_the_default(prod_configured: Synthesized) -> None:
    assert written_parameters(prod_configured)["/alipay-global/prod/return-url"] == RETURN_URL


def test_the_merchants_result_page_is_read_but_never_written_by_the_stack(every_stack: Synthesized) -> None:
    # The operator puts result-page-url (docs/deploy.md, "Connect Alipay"): a stack-owned parameter would overwrite
    # it on every deploy.
    stage = every_stack.settings.stage
    assert set(written_parameters(every_stack)) == {
        f"/alipay-global/{stage}/notify-url",
        f"/alipay-global/{stage}/return-url",
    }


def test_every_function_logs_to_its_own_group_with_retention(every_stack: Synthesized) -> None:
    # Besides the functions' own: the access log and the bus's events (test_data.py), which no function writes.
    groups = {
        logical_id: group
        for logical_id, group in every_stack.resources("AWS::Logs::LogGroup").items()
        if not group["Properties"]["LogGroupName"].endswith("/events")
    }
    access = every_stack.logical_id("AWS::Logs::LogGroup", "AccessLogs")
    assert len(groups) == 8
    assert groups.pop(access)["Properties"]["RetentionInDays"] == every_stack.settings.log_retention_days
    days = every_stack.settings.log_retention_days
    for group in groups.values():
        assert group["Properties"]["RetentionInDays"] == days
    resources = every_stack.json["Resources"]
    own = [every_stack.logical_id("AWS::Lambda::Function", name) for name in ("Webhook", "ReturnPage", "ClientResult")]
    used = set()
    for function in ("APIHandler", "ApplyNotifications", "RelayOrderEvents", "ReconcileWaitingOrders", *own):
        group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        used.add(group)
        role = resources[resources[function]["Properties"]["Role"]["Fn::GetAtt"][0]]
        (policy,) = role["Properties"]["Policies"]
        (write,) = [s for s in statements(policy["PolicyDocument"]) if s["Sid"] == "WriteOwnLogs"]
        assert write["Resource"] == {"Fn::GetAtt": [group, "Arn"]}
    assert used == set(groups)


def test_log_retention_defaults_to_a_year_in_production_and_a_month_elsewhere(
    prod: Synthesized, dev: Synthesized, prod_configured: Synthesized
) -> None:
    assert (prod.settings.log_retention_days, dev.settings.log_retention_days) == (365, 30)
    assert prod_configured.settings.log_retention_days == 90
    for group in prod.resources("AWS::Logs::LogGroup").values():
        assert group["DeletionPolicy"] == "Retain"


def test_reconciliation_runs_on_a_schedule_rule(every_stack: Synthesized) -> None:
    function = every_stack.json["Resources"]["ReconcileWaitingOrders"]["Properties"]
    [schedule] = [e["Properties"] for e in function["Events"].values() if e["Type"] == "Schedule"]
    assert schedule["Schedule"] == "rate(5 minutes)"
