"""The operator commands that call the API as the merchant (SigV4-signed): the functions do the writes, audited.

``order``, ``quarantine list|show|replay|dismiss``, ``events replay``, ``events --follow``, ``redrive``, ``audit``;
and ``backfill-quarantine``, the one-off migration of docs/operations.md ("Changing the table").
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, NoReturn
from urllib.parse import quote, urlencode

import click

from ops.client import MerchantClient
from ops.stack import (
    LOCAL_STAGE,
    api_url_option,
    aws_client,
    merchant_client,
    read_stack,
    required,
    stack_file_option,
    stage_option,
)

REDRIVE_CALLS = 1000  # a bound on one `redrive` run: 1000 calls of up to 500 messages
LIST_PAGE = 100


def _fail(line: str) -> NoReturn:
    click.echo(line, err=True)
    sys.exit(1)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, sort_keys=True, indent=2))


def _call(client: MerchantClient, method: str, path: str, body: object | None = None) -> Any:
    """The JSON answer of a signed request; a refusal or failure is one line on stderr and exit 1."""
    try:
        answer = client.request(method, path, body)
    except Exception as exc:  # urllib3's connection errors: the API is not reachable at all
        _fail(f"api: {client.api_url}: {exc}")
    try:
        data = answer.json() if answer.body else None
    except ValueError:
        _fail(f"{answer.status}: not a JSON answer: {answer.body[:200]!r}")
    if answer.status >= 400:
        if isinstance(data, Mapping) and "code" in data:
            _fail(f"{answer.status} {data['code']}: {data.get('message', '')}")
        _fail(f"{answer.status}: {answer.body[:200]!r}")
    return data


def _client(stage: str, stack_file: str, api_url: str | None) -> MerchantClient:
    return merchant_client(stage, stack_file, api_url)


def signed(command: Any) -> Any:
    """The options every signed command takes: the stage, the stack file, a deployed API's URL."""
    return stage_option(stack_file_option(api_url_option(command)))


def _path(value: str) -> str:
    return quote(value, safe="")


# --- ops order -------------------------------------------------------------------------------------------------


@click.command("order")
@click.argument("out_trade_no")
@signed
def order_command(out_trade_no: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """Print an order's timeline: each change (when, status, who applied it, notify_id, refunds), then its refunds."""
    order = _call(_client(stage, stack_file, api_url), "GET", f"/merchant/orders/{_path(out_trade_no)}")
    for line in timeline(order):
        click.echo(line)


def timeline(order: Mapping[str, Any]) -> Iterator[str]:
    """The lines of ``ops order``: a heading, the history oldest first, then the refunds."""
    heading = f"{order['out_trade_no']}  {order['status']}  {order['total_amount']} {order['currency']}"
    if order.get("closed_reason"):
        heading += f"  ({order['closed_reason']})"
    yield heading
    yield f"{order['created_at']}  WAIT_BUYER_PAY  created" + (
        f" by {order['created_by']}" if order.get("created_by") else ""
    )
    for change in order.get("history", []):
        line = f"{change['at']}  {change['status']}  {change['applied_by']}"
        if change.get("notify_id"):
            line += f"  notify_id={change['notify_id']}"
        if change.get("refund_fee"):
            line += f"  refunded={change['refund_fee']}"
        yield line
    refunds = order.get("refunds", [])
    yield f"refunds: {len(refunds)}" if refunds else "refunds: none"
    for refund in refunds:
        line = f"  {refund['out_request_no']}  {refund['refund_amount']}  {refund['status']}"
        if refund.get("refund_fee"):
            line += f"  total={refund['refund_fee']}"
        if refund.get("requested_by"):
            line += f"  by {refund['requested_by']}"
        if refund.get("reason"):
            line += f"  ({refund['reason']})"
        yield line


# --- ops quarantine ----------------------------------------------------------------------------------------------


@click.group("quarantine")
def quarantine_group() -> None:
    """Quarantined notifications and Alipay answers: list, show, replay once fixed, or dismiss (audited)."""


@quarantine_group.command("list")
@click.option("--state", type=click.Choice(["open", "resolved"]), default="open", show_default=True)
@click.option("--max", "most", type=click.IntRange(min=1), default=100, show_default=True, help="At most this many.")
@signed
def quarantine_list(state: str, most: int, stage: str, stack_file: str, api_url: str | None) -> None:
    """One line per entry, newest first: id, recorded_at, reason, out_trade_no, notify_id (and its resolution)."""
    client = _client(stage, stack_file, api_url)
    shown = 0
    cursor: str | None = None
    while shown < most:
        query = {"state": state, "limit": str(min(LIST_PAGE, most - shown))} | ({"cursor": cursor} if cursor else {})
        page = _call(client, "GET", f"/merchant/quarantine?{urlencode(query)}")
        for entry in page["entries"]:
            line = f"{entry['id']}  {entry['recorded_at']}  {entry['reason']}  {entry['out_trade_no']}"
            line += f"  notify_id={entry['notify_id']}"
            resolution = entry.get("resolution")
            if resolution:
                line += f"  {resolution['action']} by {resolution['by']} at {resolution['at']}"
            click.echo(line)
            shown += 1
        cursor = page.get("next_cursor")
        if not cursor:
            break
    if shown == 0:
        click.echo(f"no {state} entries")


@quarantine_group.command("show")
@click.argument("entry")
@signed
def quarantine_show(entry: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """The whole entry as JSON: why it was kept, what Alipay said, how it was resolved."""
    _print_json(_call(_client(stage, stack_file, api_url), "GET", f"/merchant/quarantine/{_path(entry)}"))


def _resolve(entry: str, action: str, reason: str, client: MerchantClient) -> None:
    """``POST /merchant/quarantine/<entry>/<action>``; print the answer; exit 1 unless the entry is resolved."""
    result = _call(client, "POST", f"/merchant/quarantine/{_path(entry)}/{action}", {"reason": reason})
    _print_json(result)
    if not result.get("resolved"):
        sys.exit(1)


reason_option = click.option("--reason", required=True, help="Why: recorded with your identity in the audit log.")


@quarantine_group.command("replay")
@click.argument("entry")
@reason_option
@signed
def quarantine_replay(entry: str, reason: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """Apply the entry again through the verified path (once its cause is fixed); exit 1 unless it is resolved."""
    _resolve(entry, "replay", reason, _client(stage, stack_file, api_url))


@quarantine_group.command("dismiss")
@click.argument("entry")
@reason_option
@signed
def quarantine_dismiss(entry: str, reason: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """Resolve the entry without applying it; it stays readable with your identity and reason."""
    client = _client(stage, stack_file, api_url)
    _print_json(_call(client, "POST", f"/merchant/quarantine/{_path(entry)}/dismiss", {"reason": reason}))


@quarantine_group.command("return")
@click.argument("entry")
@reason_option
@signed
def quarantine_return(entry: str, reason: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """Give back money Alipay captured for an order we have no record of (never automatic); exit 1 unless Alipay
    confirmed the return (REFUND_PENDING: run it again later, it never returns twice)."""
    _resolve(entry, "return", reason, _client(stage, stack_file, api_url))


# --- ops refunds --------------------------------------------------------------------------------------------------


@click.group("refunds")
def refunds_group() -> None:
    """Refunds and returns Alipay has not confirmed yet."""


@refunds_group.command("pending")
@click.option("--max", "most", type=click.IntRange(min=1, max=100), default=100, show_default=True)
@signed
def refunds_pending(most: int, stage: str, stack_file: str, api_url: str | None) -> None:
    """List them, oldest first: order, out_request_no, kind, amount, asked at, by whom."""
    client = _client(stage, stack_file, api_url)
    for refund in _call(client, "GET", f"/merchant/refunds/pending?limit={most}")["refunds"]:
        click.echo(
            "  ".join(
                [
                    refund["out_trade_no"],
                    refund["out_request_no"],
                    refund["kind"],
                    f"{refund['amount']} {refund['currency']}",
                    refund["requested_at"],
                    refund.get("requested_by", "-"),
                ]
            )
        )


@refunds_group.command("settle")
@click.argument("out_trade_no")
@click.argument("out_request_no")
@reason_option
@signed
def refunds_settle(
    out_trade_no: str, out_request_no: str, reason: str, stage: str, stack_file: str, api_url: str | None
) -> None:
    """Ask Alipay about one pending refund now, as the sweep would; exit 1 while it is still pending."""
    client = _client(stage, stack_file, api_url)
    path = f"/merchant/orders/{_path(out_trade_no)}/refunds/{_path(out_request_no)}/settle"
    result = _call(client, "POST", path, {"reason": reason})
    _print_json(result)
    if result.get("status") != "REFUND_SUCCESS":
        sys.exit(1)


# --- ops events ---------------------------------------------------------------------------------------------------


@click.group("events", invoke_without_command=True)
@click.option("--follow", is_flag=True, help="Keep printing events as they arrive (Ctrl-C stops).")
@click.option("--timeout", type=click.FloatRange(min=0), help="With --follow: stop after this many seconds.")
@stage_option
@stack_file_option
@click.pass_context
def events_group(ctx: click.Context, follow: bool, timeout: float | None, stage: str, stack_file: str) -> None:
    """Business events: `events --follow` tails them; `events replay` publishes an order's again.

    Locally the events come from the stack's tap queue (every event on the bus; each is printed once). A deployed
    stage's bus also delivers every event to the log group /alipay-global/<stage>/events, read with your own AWS
    credentials. Without --follow, prints what is waiting and exits.
    """
    if ctx.invoked_subcommand is not None:
        return
    stop_at = time.monotonic() + timeout if timeout is not None else None
    lines = _local_events(stage, stack_file) if stage == LOCAL_STAGE else _logged_events(stage)
    for line in lines(follow, stop_at):
        click.echo(line)


def _event_line(event: Mapping[str, Any]) -> str:
    detail = event.get("detail") or {}
    line = f"{detail.get('occurred_at', event.get('time', ''))}  {event.get('detail-type')}  {detail.get('event_id')}"
    line += f"  {detail.get('previous_status')} -> {detail.get('status')}"
    if detail.get("refund_amount"):
        line += f"  refund={detail['refund_amount']}"
    return line


def _local_events(stage: str, stack_file: str) -> Any:
    stack = read_stack(stage, stack_file)
    queue_url = required(stack.get("events_tap_queue_url"), "events tap", "the stack file names none", stage)
    sqs = aws_client("sqs", stack)

    def lines(follow: bool, stop_at: float | None) -> Iterator[str]:
        while True:
            wait = 1 if follow else 0
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait).get(
                "Messages", []
            )
            for message in messages:
                yield _event_line(json.loads(message["Body"]))
                # Printed, then taken off the tap: each event is shown once.
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
            if (not messages and not follow) or (stop_at is not None and time.monotonic() >= stop_at):
                return

    return lines


def events_log_group(stage: str) -> str:
    """The log group a deployed stage's bus writes every event to (infra/stacks/alipay_global.py)."""
    from chalicelib.topology import EVENTS_LOG_GROUP

    return EVENTS_LOG_GROUP.format(stage=stage)


def _logged_events(stage: str) -> Any:
    logs = aws_client("logs", {})
    group = events_log_group(stage)

    def lines(follow: bool, stop_at: float | None) -> Iterator[str]:
        start = int((time.time() - 3600) * 1000)  # the last hour, then as they come
        seen: set[str] = set()
        while True:
            token: str | None = None
            newest = start
            while True:
                request: dict[str, Any] = {"logGroupName": group, "startTime": start}
                if token:
                    request["nextToken"] = token
                page = logs.filter_log_events(**request)
                for record in page.get("events", []):
                    if record["eventId"] in seen:
                        continue
                    seen.add(record["eventId"])
                    newest = max(newest, record["timestamp"])
                    yield _event_line(json.loads(record["message"]))
                token = page.get("nextToken")
                if not token:
                    break
            start = newest
            if not follow or (stop_at is not None and time.monotonic() >= stop_at):
                return
            time.sleep(2)

    return lines


@events_group.command("replay")
@click.argument("out_trade_no")
@reason_option
@signed
def events_replay(out_trade_no: str, reason: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """Publish the order's events again with their original ids and times; print the ids."""
    client = _client(stage, stack_file, api_url)
    result = _call(client, "POST", f"/merchant/orders/{_path(out_trade_no)}/events/replay", {"reason": reason})
    for event_id in result["event_ids"]:
        click.echo(event_id)
    if not result["event_ids"]:
        click.echo("no events: the order has not changed since it was created")


# --- ops redrive --------------------------------------------------------------------------------------------------


@click.command("redrive")
@click.option("--max-messages", type=click.IntRange(min=1), help="Stop after this many messages (default: all).")
@click.option(
    "--reason", default="redrive after fixing the cause", show_default=True, help="Recorded in the audit log."
)
@signed
def redrive_command(max_messages: int | None, reason: str, stage: str, stack_file: str, api_url: str | None) -> None:
    """Move the notifications DLQ back to the queue through the API (audited); print `moved N, failed M`.

    Each call moves at most 500 (received, sent, then deleted: none is lost); calls repeat until the DLQ is empty.
    Exit 1 if any message failed to move (it stays in the DLQ).
    """
    client = _client(stage, stack_file, api_url)
    moved = failed = 0
    for _ in range(REDRIVE_CALLS):
        left = None if max_messages is None else max_messages - moved - failed
        if left is not None and left <= 0:
            break
        batch = min(500, left) if left is not None else 500
        result = _call(client, "POST", "/merchant/redrive", {"reason": reason, "max_messages": batch})
        moved += result["moved"]
        failed += result["failed"]
        if result["failed"] or not result["moved"] or not result["remaining"]:
            break
    click.echo(f"moved {moved}, failed {failed}")
    if failed:
        sys.exit(1)


# --- ops audit ----------------------------------------------------------------------------------------------------


@click.command("audit")
@click.option("--max", "most", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@signed
def audit_command(most: int, stage: str, stack_file: str, api_url: str | None) -> None:
    """Operator actions, newest first: when, who, what, on what, why."""
    client = _client(stage, stack_file, api_url)
    shown = 0
    cursor: str | None = None
    while shown < most:
        query = {"limit": str(min(LIST_PAGE, most - shown))} | ({"cursor": cursor} if cursor else {})
        page = _call(client, "GET", f"/merchant/audit?{urlencode(query)}")
        for entry in page["entries"]:
            click.echo(f"{entry['at']}  {entry['action']}  {entry['target']}  by {entry['by']}  ({entry['reason']})")
            shown += 1
        cursor = page.get("next_cursor")
        if not cursor:
            break


# --- the one-off migration ------------------------------------------------------------------------------------


@click.command("backfill-quarantine")
@click.option("--table", envvar="ORDERS_TABLE", help="The orders table (env ORDERS_TABLE; the stack output).")
@stage_option
@stack_file_option
def backfill_quarantine_command(table: str | None, stage: str, stack_file: str) -> None:
    """Give quarantine entries stored before this release the listing keys (one-off; safe to run again).

    Runs with your own AWS credentials (a role that may Scan and UpdateItem the table): a migration, not an operator
    action. Prints how many entries it changed.
    """
    from chalicelib.adapters.dynamodb import backfill_quarantine_listing

    stack = read_stack(stage, stack_file)
    name = required(table or stack.get("orders_table"), "table", "pass --table or set ORDERS_TABLE", stage)
    try:
        fixed = backfill_quarantine_listing(aws_client("dynamodb", stack), name)
    except Exception as exc:  # botocore's errors, as the operator should read them
        _fail(f"aws: {exc}")
    click.echo(f"backfilled {fixed} quarantine entries")


COMMANDS = (
    order_command,
    quarantine_group,
    refunds_group,
    events_group,
    redrive_command,
    audit_command,
    backfill_quarantine_command,
)
