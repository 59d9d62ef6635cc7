"""`ops stats`'s figures from a table (moto): the window's edges, currencies apart, history-less orders, backlog now."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING

from chalicelib.adapters.dynamodb import DynamoDBQuarantineStore, order_to_item
from chalicelib.orders.model import Change, ClosedReason, Order, OrderStatus, Refund, RefundKind, RefundStatus
from chalicelib.services.ports import QuarantineRecord, QueuedNotification, Resolution
from ops.stats import compute, table_lines

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

SINCE = datetime.fromisoformat("2026-12-01T09:00:00Z")
UNTIL = datetime.fromisoformat("2026-12-01T10:00:00Z")
NOW = datetime.fromisoformat("2026-12-01T12:00:00Z")


def order(number: str, total: str, currency: str, created_at: str, *changes: Change, **fields: object) -> Order:
    created = Order.create(
        out_trade_no=number, total_amount=Decimal(total), currency=currency, subject="s", now=created_at
    )
    if not changes:
        return replace(created, **fields)  # type: ignore[arg-type]
    last = changes[-1]
    refund_fee = next((c.refund_fee for c in reversed(changes) if c.refund_fee is not None), None)
    return replace(
        created,
        status=last.status,
        history=changes,
        trade_no=f"t-{number}",
        refund_fee=refund_fee,
        updated_at=last.at,
        **fields,  # type: ignore[arg-type]
    )


def paid_at(at: str) -> Change:
    return Change(at=at, status=OrderStatus.TRADE_SUCCESS, applied_by="notification", notify_id=f"n-{at}")


def refund(at: str, status: OrderStatus, total: str) -> Change:
    return Change(at=at, status=status, applied_by="refund", refund_fee=Decimal(total))


def quarantined(notify_id: str, reason: str, at: str, resolution: Resolution | None = None) -> QuarantineRecord:
    message = QueuedNotification(protocol="openapi", notify_id=notify_id, out_trade_no="o-x", fields={}, received_at=at)
    return QuarantineRecord(notify_id, "o-x", reason, "kept", message, at, resolution)


def test_the_figures_of_a_window_edges_included_and_excluded(dynamodb: DynamoDBClient, table: str) -> None:
    orders = [
        # Created at the window's start (included) and paid in it, in yen.
        order("jpy", "1000", "JPY", "2026-12-01T09:00:00.000Z", paid_at("2026-12-01T09:10:00.000Z")),
        # Created before the window, paid in it: paid, not created.
        order("early", "12.30", "USD", "2026-12-01T08:59:59.999Z", paid_at("2026-12-01T09:01:00.000Z")),
        # Paid, partly refunded in the window, the rest refunded at the window's end (excluded): one refund counted.
        order(
            "refunded",
            "20.00",
            "USD",
            "2026-12-01T09:20:00.000Z",
            paid_at("2026-12-01T09:21:00.000Z"),
            refund("2026-12-01T09:30:00.000Z", OrderStatus.TRADE_SUCCESS, "5.00"),
            refund("2026-12-01T10:00:00.000Z", OrderStatus.TRADE_CLOSED, "20.00"),
            closed_reason=ClosedReason.REFUNDED,
        ),
        # Stored before orders kept a history: created, nothing else can be told.
        order("old", "7.00", "USD", "2026-12-01T09:40:00.000Z", status=OrderStatus.TRADE_SUCCESS, trade_no="t-old"),
        # Never paid, closed on timeout in the window, in euros.
        order(
            "closed",
            "3.00",
            "EUR",
            "2026-12-01T09:05:00.000Z",
            Change(at="2026-12-01T09:50:00.000Z", status=OrderStatus.TRADE_CLOSED, applied_by="reconciliation"),
            closed_reason=ClosedReason.TIMEOUT,
        ),
        # Closed unpaid before the window, then paid anyway in it: a late payment, given back (recorded as a return,
        # confirmed by the change that names it again): no sale, money returned.
        order(
            "late",
            "3.00",
            "USD",
            "2026-12-01T08:00:00.000Z",
            Change(at="2026-12-01T08:30:00.000Z", status=OrderStatus.TRADE_CLOSED, applied_by="reconciliation"),
            Change("2026-12-01T09:40:00.000Z", OrderStatus.TRADE_CLOSED, "notification", "n-late", None, "return-t"),
            Change("2026-12-01T09:50:00.000Z", OrderStatus.TRADE_CLOSED, "reconciliation", None, None, "return-t"),
            closed_reason=ClosedReason.TIMEOUT,
            refunds=MappingProxyType(
                {
                    "return-t": Refund(
                        "return-t",
                        Decimal("3.00"),
                        RefundStatus.SUCCEEDED,
                        "2026-12-01T09:40:00.000Z",
                        "paid after the order closed",
                        kind=RefundKind.RETURN,
                    )
                }
            ),
        ),
        # After the window: nothing of it counts; its pending refunds are the backlog (now).
        order(
            "later",
            "9.00",
            "USD",
            "2026-12-01T11:00:00.000Z",
            paid_at("2026-12-01T11:01:00.000Z"),
            refunds=MappingProxyType(
                {
                    "p2": Refund("p2", Decimal("1.00"), RefundStatus.PENDING, "2026-12-01T11:30:00.000Z"),
                    "p1": Refund("p1", Decimal("2.00"), RefundStatus.PENDING, "2026-12-01T11:10:00.000Z"),
                    "ok": Refund("ok", Decimal("1.00"), RefundStatus.SUCCEEDED, "2026-12-01T11:05:00.000Z"),
                }
            ),
        ),
    ]
    for o in orders:
        dynamodb.put_item(TableName=table, Item=order_to_item(o))
    store = DynamoDBQuarantineStore(dynamodb, table)
    store.put(quarantined("q-open", "amount_mismatch", "2026-12-01T09:15:00Z"))
    store.put(quarantined("q-open-before", "unknown_order", "2026-12-01T08:00:00Z"))
    resolution = Resolution(action="dismiss", by="ops", at="2026-12-01T09:45:00Z", reason="test payment")
    store.put(quarantined("q-resolved", "unknown_order", "2026-12-01T09:30:00Z", resolution))

    report = compute(dynamodb, table, SINCE, UNTIL, NOW).as_json()

    assert report["window"] == {"since": "2026-12-01T09:00:00Z", "until": "2026-12-01T10:00:00Z"}
    assert report["funnel"] == {"created": 4, "paid": 3, "finished": 0, "closed": 1, "refunded": 1, "returned": 1}
    assert report["money"] == {
        "paid": {"JPY": "1000.00", "USD": "32.30"},
        "refunded": {"USD": "5.00"},
        "returned": {"USD": "3.00"},
    }
    assert report["late_payments"] == 1
    assert report["quarantined"] == 2
    assert report["backlog"] == {
        "quarantine_open": 2,
        "quarantine_open_by_reason": {"amount_mismatch": 1, "unknown_order": 1},
        "refunds_pending": 2,
        "oldest_pending_refund_requested_at": "2026-12-01T11:10:00.000Z",
        "oldest_pending_refund_age_seconds": 50 * 60,
    }
    lines = [" ".join(line.split()) for line in table_lines(report)]
    assert lines == [
        "window 2026-12-01T09:00:00Z .. 2026-12-01T10:00:00Z",
        "orders created 4",
        "orders paid 3 1000.00 JPY, 32.30 USD",
        "orders finished 0",
        "orders closed 1",
        "orders refunded 1 5.00 USD",
        "orders returned 1 3.00 USD",
        "backlog now",
        "quarantine open 2 amount_mismatch 1, unknown_order 1",
        "refunds pending 2 oldest 0:50:00 (since 2026-12-01T11:10:00.000Z)",
        "late payments in the window (each returned automatically): 1",
        "quarantined in the window: 2",
    ]


def test_an_empty_table_says_zero_and_nothing_pending(dynamodb: DynamoDBClient, table: str) -> None:
    report = compute(dynamodb, table, SINCE, UNTIL, NOW).as_json()
    assert report["funnel"] == {"created": 0, "paid": 0, "finished": 0, "closed": 0, "refunded": 0, "returned": 0}
    assert (report["late_payments"], report["backlog"]["refunds_pending"]) == (0, 0)
    assert report["backlog"]["oldest_pending_refund_age_seconds"] is None
