"""``python -m ops stats``: the dashboard's funnel and backlog, computed from the orders table for a time window.

The funnel counts the same facts the relay publishes and counts (chalicelib/services/events.py, OrderPaid and the
rest): each order's events are derived from its stored history exactly as the relay derived them from the stream
(``events_from_history``), and counted when their ``occurred_at`` falls in the window. So duplicated notifications,
retried writes and replays count once, as on the dashboard. The backlog (open quarantine entries, refunds still
pending) is the table's state now, whatever the window.

It reads the whole table (a Scan, filtered to orders and quarantine entries) with the caller's own AWS credentials,
as ``backfill-quarantine`` does: an operator's occasional question, never something the functions do.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import click

from chalicelib.adapters.dynamodb import ORDER_TYPE, QUARANTINE_TYPE, order_from_item, quarantine_from_item
from chalicelib.orders.events import EventType, events_from_history
from chalicelib.orders.model import RefundKind, RefundStatus
from chalicelib.services.views import amount_text
from ops.stack import aws_client, read_stack, required, stack_file_option, stage_option

DEFAULT_WINDOW = timedelta(hours=24)
FUNNEL = {
    EventType.ORDER_PAID: "paid",
    EventType.ORDER_FINISHED: "finished",
    EventType.ORDER_CLOSED: "closed",
    EventType.ORDER_REFUNDED: "refunded",
    EventType.PAYMENT_RETURNED: "returned",  # money captured for an order closed unpaid, given back
}


@dataclass
class Stats:
    """What ``stats`` reports: the window's funnel and money, and the backlog now."""

    since: datetime
    until: datetime
    now: datetime
    created: int = 0
    funnel: Counter[str] = field(default_factory=Counter)
    money_paid: dict[str, Decimal] = field(default_factory=dict)  # by currency
    money_refunded: dict[str, Decimal] = field(default_factory=dict)
    money_returned: dict[str, Decimal] = field(default_factory=dict)
    late_payments: int = 0  # payments captured in the window for orders already closed unpaid
    quarantined: int = 0  # entries recorded in the window
    open_quarantine: Counter[str] = field(default_factory=Counter)  # by reason
    pending_refunds: int = 0
    oldest_pending: str | None = None  # its requested_at

    def in_window(self, at: str) -> bool:
        return self.since <= _parse(at) < self.until

    def as_json(self) -> dict[str, Any]:
        oldest_age = None
        if self.oldest_pending is not None:
            oldest_age = int((self.now - _parse(self.oldest_pending)).total_seconds())
        return {
            "window": {"since": _text(self.since), "until": _text(self.until)},
            # The funnel's own steps always; any other detail-type (a later kind of fact) under its own name.
            "funnel": {"created": self.created, **{name: self.funnel[name] for name in FUNNEL.values()}}
            | dict(sorted(self.funnel.items())),
            "money": {
                "paid": {currency: amount_text(v) for currency, v in sorted(self.money_paid.items())},
                "refunded": {currency: amount_text(v) for currency, v in sorted(self.money_refunded.items())},
                "returned": {currency: amount_text(v) for currency, v in sorted(self.money_returned.items())},
            },
            "late_payments": self.late_payments,
            "backlog": {
                "quarantine_open": sum(self.open_quarantine.values()),
                "quarantine_open_by_reason": dict(sorted(self.open_quarantine.items())),
                "refunds_pending": self.pending_refunds,
                "oldest_pending_refund_requested_at": self.oldest_pending,
                "oldest_pending_refund_age_seconds": oldest_age,
            },
            "quarantined": self.quarantined,
        }


def compute(client: Any, table_name: str, since: datetime, until: datetime, now: datetime) -> Stats:
    """The figures for ``[since, until)`` from every order and quarantine entry of the table."""
    stats = Stats(since, until, now)
    for item in _scan(client, table_name):
        if item["type"]["S"] == QUARANTINE_TYPE:
            entry = quarantine_from_item(item)
            stats.quarantined += stats.in_window(entry.recorded_at)
            if entry.resolution is None:
                stats.open_quarantine[entry.reason] += 1
            continue
        order = order_from_item(item)
        if order is None:
            continue
        stats.created += stats.in_window(order.created_at)
        for event in events_from_history(order):
            if not stats.in_window(event.occurred_at):
                continue
            stats.funnel[FUNNEL.get(event.detail_type, event.detail_type)] += 1
            if event.detail_type is EventType.ORDER_PAID:
                _add(stats.money_paid, event.currency, event.total_amount)
            elif event.detail_type is EventType.ORDER_REFUNDED and event.refund_amount is not None:
                _add(stats.money_refunded, event.currency, event.refund_amount)
            elif event.detail_type is EventType.PAYMENT_RETURNED and event.refund_amount is not None:
                _add(stats.money_returned, event.currency, event.refund_amount)
        for refund in order.refunds.values():
            # A late payment is recorded as the return it calls for, when it was captured (chalicelib/orders/model.py).
            stats.late_payments += refund.kind is RefundKind.RETURN and stats.in_window(refund.requested_at)
            if refund.status is RefundStatus.PENDING:
                stats.pending_refunds += 1
                if stats.oldest_pending is None or refund.requested_at < stats.oldest_pending:
                    stats.oldest_pending = refund.requested_at
    return stats


def table_lines(report: Mapping[str, Any]) -> Iterator[str]:
    """The human table: the funnel with its money, then the backlog."""
    window = report["window"]
    yield f"window  {window['since']} .. {window['until']}"
    funnel, money = report["funnel"], report["money"]
    for name, count in funnel.items():
        line = f"  {'orders ' + name:<18}{count:>8}"
        amounts = money.get(name, {})
        if amounts:
            line += "   " + ", ".join(f"{value} {currency}" for currency, value in amounts.items())
        yield line
    backlog = report["backlog"]
    yield "backlog now"
    by_reason = ", ".join(f"{reason} {n}" for reason, n in backlog["quarantine_open_by_reason"].items())
    yield f"  {'quarantine open':<18}{backlog['quarantine_open']:>8}" + (f"   {by_reason}" if by_reason else "")
    line = f"  {'refunds pending':<18}{backlog['refunds_pending']:>8}"
    if backlog["oldest_pending_refund_requested_at"] is not None:
        age = timedelta(seconds=backlog["oldest_pending_refund_age_seconds"])
        line += f"   oldest {age} (since {backlog['oldest_pending_refund_requested_at']})"
    yield line
    yield f"late payments in the window (each returned automatically): {report['late_payments']}"
    yield f"quarantined in the window: {report['quarantined']}"


@click.command("stats")
@click.option("--since", help="Window start, ISO 8601 (UTC unless it names a zone). Default: 24 hours before --until.")
@click.option("--until", help="Window end (excluded), ISO 8601. Default: now.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of the table.")
@click.option("--table", envvar="ORDERS_TABLE", help="The orders table (env ORDERS_TABLE; the stack output).")
@stage_option
@stack_file_option
def stats_command(
    since: str | None, until: str | None, as_json: bool, table: str | None, stage: str, stack_file: str
) -> None:
    """The payment funnel and backlog from the orders table: orders created, paid, finished, closed, refunded, money
    returned in the window (with the amounts by currency), late payments; open quarantine entries and pending refunds
    (returns included) now.

    Runs with your own AWS credentials (a role that may Scan the table); locally, the stack's table.
    """
    now = datetime.now(UTC)
    end = _option(until, "--until") if until else now
    start = _option(since, "--since") if since else end - DEFAULT_WINDOW
    if start >= end:
        raise click.BadParameter("must be before --until", param_hint="--since")
    stack = read_stack(stage, stack_file)
    name = required(table or stack.get("orders_table"), "table", "pass --table or set ORDERS_TABLE", stage)
    try:
        report = compute(aws_client("dynamodb", stack), name, start, end, now).as_json()
    except Exception as exc:  # botocore's errors, as the operator should read them
        click.echo(f"aws: {exc}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True, indent=2))
        return
    for line in table_lines(report):
        click.echo(line)


def _scan(client: Any, table_name: str) -> Iterator[Mapping[str, Any]]:
    start: Any = None
    while True:
        request: dict[str, Any] = {
            "TableName": table_name,
            "FilterExpression": "#type IN (:order, :quarantine)",
            "ExpressionAttributeNames": {"#type": "type"},
            "ExpressionAttributeValues": {":order": {"S": ORDER_TYPE}, ":quarantine": {"S": QUARANTINE_TYPE}},
        }
        if start:
            request["ExclusiveStartKey"] = start
        response = client.scan(**request)
        yield from response.get("Items", [])
        start = response.get("LastEvaluatedKey")
        if not start:
            return


def _add(totals: dict[str, Decimal], currency: str, amount: Decimal) -> None:
    totals[currency] = totals.get(currency, Decimal(0)) + amount


def _parse(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _option(text: str, name: str) -> datetime:
    try:
        return _parse(text)
    except ValueError as exc:
        raise click.BadParameter(
            f"{text!r} is not an ISO 8601 time (e.g. 2026-12-01T00:00:00Z)", param_hint=name
        ) from exc


def _text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
