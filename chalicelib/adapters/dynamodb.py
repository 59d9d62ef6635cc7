"""DynamoDB adapters: orders, idempotency records and quarantined notifications in one table keyed by ``pk``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from chalicelib.adapters._aws_errors import CONDITION_FAILED, aws_errors, error_code, error_response, unavailable
from chalicelib.orders.catalogue import Product
from chalicelib.orders.model import (
    Change,
    ClosedReason,
    Order,
    OrderItem,
    OrderStatus,
    Refund,
    RefundKind,
    RefundStatus,
    TransitionPlan,
)
from chalicelib.services.ports import (
    AuditEntry,
    ConditionFailed,
    IdempotencyRecord,
    OrderExists,
    QuarantineRecord,
    QueuedNotification,
    Resolution,
    Unavailable,
)
from chalicelib.topology import (
    LISTING_INDEX,
    LISTING_KEY,
    LISTING_SORT,
    PARTITION_KEY,
    REFUND_PENDING_KEY,
    STREAM_VIEW_TYPE,
    TTL_ATTRIBUTE,
    WAITING_INDEX,
    WAITING_KEY,
    WAITING_SINCE,
)

if TYPE_CHECKING:
    from typing import TypeAlias

    from mypy_boto3_dynamodb.client import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef

    Item: TypeAlias = dict[str, AttributeValueTypeDef]

WAITING_PAGE_SIZE = 50

ORDER_TYPE = "order"
PRODUCT_TYPE = "product"
CATALOGUE_LISTING = "catalogue"
IDEMPOTENCY_TYPE = "idempotency"
QUARANTINE_TYPE = "quarantine"
AUDIT_TYPE = "audit"
# The listing index's keys of quarantined entries (open, resolved) and of the operators' audit log: fixed keys on the
# existing sparse index, so listing them is a Query and the table gains no index (docs/operations.md).
QUARANTINE_OPEN_LISTING = "quarantine#open"
QUARANTINE_RESOLVED_LISTING = "quarantine#resolved"
AUDIT_LISTING = "audit"
# A listing position: the sort key, "<ISO time>#<id>" (the id may hold anything, even "#").
_POSITION = re.compile(r"(\d{4}-\d{2}-\d{2}T[0-9:.]+Z)#(.+)", re.DOTALL)


def order_key(out_trade_no: str) -> str:
    """The partition key of an order."""
    return f"order#{out_trade_no}"


def idempotency_key(key: str) -> str:
    """The partition key of an ``Idempotency-Key`` record."""
    return f"idempotency#{key}"


def product_key(sku: str) -> str:
    """The partition key of a catalogue product."""
    return f"product#{sku}"


def buyer_listing(buyer: str) -> str:
    """The listing index's key of one buyer's orders."""
    return f"buyer#{buyer}"


def quarantine_key(notify_id: str) -> str:
    """The partition key of a quarantined notification."""
    return f"quarantine#{notify_id}"


def audit_key(entry_id: str) -> str:
    """The partition key of an operator's audit entry."""
    return f"audit#{entry_id}"


def split_position(position: str) -> tuple[str, str]:
    """A listing position's time and id; ``ValueError`` for anything no listing handed out."""
    match = _POSITION.fullmatch(position)
    if match is None:
        raise ValueError("not a listing position")
    return match.group(1), match.group(2)


# --- item format -------------------------------------------------------------------------------------------


def _s(value: str) -> AttributeValueTypeDef:
    return {"S": value}


def _n(value: Decimal | int) -> AttributeValueTypeDef:
    if isinstance(value, Decimal):
        # DynamoDB trims leading and trailing zeros (12.30 reads back as 12.3); writing numbers trimmed makes moto
        # and the local stack return exactly what AWS returns. Fixed-point text: never a float, never 1E+2.
        return {"N": format(value.normalize(), "f")}
    return {"N": str(value)}


def _opt_s(item: Mapping[str, Any], name: str) -> str | None:
    value = item.get(name)
    return value.get("S") if isinstance(value, Mapping) else None


def _req_s(item: Mapping[str, Any], name: str) -> str:
    value = _opt_s(item, name)
    if value is None:
        raise ValueError(f"item has no string attribute {name!r}")
    return value


def _opt_n(item: Mapping[str, Any], name: str) -> Decimal | None:
    value = item.get(name)
    text = value.get("N") if isinstance(value, Mapping) else None
    return Decimal(text) if text is not None else None


def _req_n(item: Mapping[str, Any], name: str) -> Decimal:
    value = _opt_n(item, name)
    if value is None:
        raise ValueError(f"item has no number attribute {name!r}")
    return value


def order_to_item(order: Order) -> Item:
    """The order as a low-level DynamoDB item (``{"S": ...}``, ``{"N": ...}``); absent optional fields are omitted."""
    item: Item = {
        PARTITION_KEY: _s(order_key(order.out_trade_no)),
        "type": _s(ORDER_TYPE),
        "out_trade_no": _s(order.out_trade_no),
        "total_amount": _n(order.total_amount),
        "currency": _s(order.currency),
        "subject": _s(order.subject),
        "status": _s(order.status.value),
        "created_at": _s(order.created_at),
        "updated_at": _s(order.updated_at),
        "version": _n(order.version),
    }
    if order.body is not None:
        item["body"] = _s(order.body)
    if order.trade_no is not None:
        item["trade_no"] = _s(order.trade_no)
    if order.refund_fee is not None:
        item["refund_fee"] = _n(order.refund_fee)
    if order.notify_id is not None:
        item["notify_id"] = _s(order.notify_id)
    if order.closed_reason is not None:
        item["closed_reason"] = _s(order.closed_reason.value)
    if order.pay_by is not None:
        item["pay_by"] = _s(order.pay_by)
    if order.channel is not None:
        item["channel"] = _s(order.channel)
    if order.return_url is not None:
        item["return_url"] = _s(order.return_url)
    if order.next_check_at is not None:
        item["next_check_at"] = _s(order.next_check_at)
    if order.checks:
        item["checks"] = _n(order.checks)
    if order.parked is not None:
        item["parked"] = _s(order.parked)
    if order.created_by is not None:
        item["created_by"] = _s(order.created_by)
    if order.items:
        item["items"] = {
            "L": [
                {"M": {"sku": _s(i.sku), "quantity": _n(i.quantity), "unit_price": _n(i.unit_price)}}
                for i in order.items
            ]
        }
    if order.history:
        item["history"] = {"L": [{"M": _change_to_item(c)} for c in order.history]}
    if order.buyer is not None:
        item["buyer"] = _s(order.buyer)
        # Never changes after creation, so no transition write touches it: the buyer's listing, newest first.
        item[LISTING_KEY] = _s(buyer_listing(order.buyer))
        item[LISTING_SORT] = _s(f"{order.created_at}#{order.out_trade_no}")
    if order.refunds:
        item["refunds"] = {"M": {no: {"M": _refund_to_item(r)} for no, r in order.refunds.items()}}
    if order.status is OrderStatus.WAIT_BUYER_PAY:
        # PutItem replaces the whole item: an order written in any other status drops out of the index.
        item[WAITING_KEY] = _s(OrderStatus.WAIT_BUYER_PAY.value)
        # The sort key is when the order is next due for a check (its creation until the reconciler schedules one), so
        # the index hands the reconciler the most overdue orders first and never those it set aside for later.
        item[WAITING_SINCE] = _s(order.next_check_at or order.created_at)
    elif order.pending_refunds:
        # A paid order with a refund Alipay has not confirmed waits in the same sparse index under its own partition
        # (no new index, no new key): the refund sweep queries it, oldest refund first. Every refund write is a full
        # PutItem, so the entry goes once the last pending refund is settled.
        item[WAITING_KEY] = _s(REFUND_PENDING_KEY)
        item[WAITING_SINCE] = _s(order.pending_refunds[0].requested_at)
    return item


def _refund_to_item(refund: Refund) -> Item:
    item: Item = {
        "amount": _n(refund.amount),
        "status": _s(refund.status.value),
        "requested_at": _s(refund.requested_at),
    }
    if refund.reason is not None:
        item["reason"] = _s(refund.reason)
    if refund.refund_fee is not None:
        item["refund_fee"] = _n(refund.refund_fee)
    if refund.requested_by is not None:
        item["requested_by"] = _s(refund.requested_by)
    if refund.kind is not RefundKind.REFUND:
        item["kind"] = _s(refund.kind.value)
    if refund.attempts:
        item["attempts"] = _n(refund.attempts)
    return item


def _refunds_from_item(item: Mapping[str, Any]) -> Mapping[str, Refund]:
    value = item.get("refunds")
    refunds = value.get("M", {}) if isinstance(value, Mapping) else {}
    return MappingProxyType(
        {
            no: Refund(
                out_request_no=no,
                amount=_req_n(r["M"], "amount"),
                status=RefundStatus(_req_s(r["M"], "status")),
                requested_at=_req_s(r["M"], "requested_at"),
                reason=_opt_s(r["M"], "reason"),
                refund_fee=_opt_n(r["M"], "refund_fee"),
                requested_by=_opt_s(r["M"], "requested_by"),
                kind=RefundKind(_opt_s(r["M"], "kind") or RefundKind.REFUND.value),
                attempts=int(_opt_n(r["M"], "attempts") or 0),
            )
            for no, r in refunds.items()
        }
    )


def order_from_item(item: Mapping[str, Any]) -> Order | None:
    """The order in a low-level item (a GetItem result or a stream image); None when the item is not an order."""
    if _opt_s(item, "type") != ORDER_TYPE:
        return None
    closed_reason = _opt_s(item, "closed_reason")
    return Order(
        out_trade_no=_req_s(item, "out_trade_no"),
        total_amount=_req_n(item, "total_amount"),
        currency=_req_s(item, "currency"),
        subject=_req_s(item, "subject"),
        body=_opt_s(item, "body"),
        status=OrderStatus(_req_s(item, "status")),
        created_at=_req_s(item, "created_at"),
        updated_at=_req_s(item, "updated_at"),
        trade_no=_opt_s(item, "trade_no"),
        refund_fee=_opt_n(item, "refund_fee"),
        notify_id=_opt_s(item, "notify_id"),
        closed_reason=ClosedReason(closed_reason) if closed_reason is not None else None,
        version=int(_req_n(item, "version")),
        pay_by=_opt_s(item, "pay_by"),
        refunds=_refunds_from_item(item),
        channel=_opt_s(item, "channel"),
        return_url=_opt_s(item, "return_url"),
        buyer=_opt_s(item, "buyer"),
        items=_items_from_item(item),
        created_by=_opt_s(item, "created_by"),
        next_check_at=_opt_s(item, "next_check_at"),
        checks=int(_opt_n(item, "checks") or 0),
        parked=_opt_s(item, "parked"),
        history=_history_from_item(item),
    )


def _change_to_item(change: Change) -> Item:
    item: Item = {"at": _s(change.at), "status": _s(change.status.value), "applied_by": _s(change.applied_by)}
    if change.notify_id is not None:
        item["notify_id"] = _s(change.notify_id)
    if change.refund_fee is not None:
        item["refund_fee"] = _n(change.refund_fee)
    if change.out_request_no is not None:
        item["out_request_no"] = _s(change.out_request_no)
    return item


def _history_from_item(item: Mapping[str, Any]) -> tuple[Change, ...]:
    stored = item.get("history")
    if not isinstance(stored, Mapping):
        return ()
    return tuple(
        Change(
            at=_req_s(entry["M"], "at"),
            status=OrderStatus(_req_s(entry["M"], "status")),
            applied_by=_req_s(entry["M"], "applied_by"),
            notify_id=_opt_s(entry["M"], "notify_id"),
            refund_fee=_opt_n(entry["M"], "refund_fee"),
            out_request_no=_opt_s(entry["M"], "out_request_no"),
        )
        for entry in stored.get("L", [])
    )


def _items_from_item(item: Mapping[str, Any]) -> tuple[OrderItem, ...]:
    stored = item.get("items")
    if not isinstance(stored, Mapping):
        return ()
    return tuple(
        OrderItem(
            sku=_req_s(line["M"], "sku"),
            quantity=int(_req_n(line["M"], "quantity")),
            unit_price=_req_n(line["M"], "unit_price"),
        )
        for line in stored.get("L", [])
    )


def _stored_order(item: Mapping[str, Any]) -> Order:
    order = order_from_item(item)
    if order is None:
        # Only order items live under order#... keys; anything else there is corruption, not a missing order.
        raise ValueError(f"item {item.get(PARTITION_KEY)!r} is not an order")
    return order


def _item_on_condition_failure(exc: BaseException) -> Mapping[str, Any] | None:
    """The item DynamoDB returns with a failed condition when asked for ``ALL_OLD`` (None: there was none)."""
    item = error_response(exc).get("Item")
    return item if isinstance(item, Mapping) else None


class _Expression:
    """The placeholders of one request: DynamoDB rejects unused names and values, so only used ones are added."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: Item = {}

    def name(self, attribute: str) -> str:
        self.names[f"#{attribute}"] = attribute
        return f"#{attribute}"

    def value(self, key: str, value: AttributeValueTypeDef) -> str:
        self.values[f":{key}"] = value
        return f":{key}"


def _plan_condition(plan: TransitionPlan, e: _Expression) -> str:
    """The plan's condition, one named fragment per reason the write must not happen."""
    fragments = {
        # UpdateItem creates missing items: without this a notification for an unknown order would invent one.
        "order_exists": f"attribute_exists({e.name(PARTITION_KEY)})",
        # A Number comparison, so 12.3 == 12.30; a notification for another amount never moves the order.
        "amount_matches": f"{e.name('total_amount')} = {e.value('total_amount', _n(plan.total_amount))}",
    }
    if plan.currency is not None:
        # Only when the update carries a currency: Open Platform notifications may not.
        fragments["currency_matches"] = f"{e.name('currency')} = {e.value('currency', _s(plan.currency))}"
    predecessors = [e.value(f"from_{i}", _s(status.value)) for i, status in enumerate(sorted(plan.predecessors))]
    # An order with a pending refund is in the waiting index under REFUND_PENDING_KEY, which this write would remove:
    # such an order is decided and written whole instead (TransitionPlan.admits says the same).
    waiting = e.name(WAITING_KEY)
    fragments["no_pending_refund"] = (
        f"attribute_not_exists({waiting}) OR {waiting} <> {e.value('refund_pending', _s(REFUND_PENDING_KEY))}"
    )
    # Status never moves backwards, and of two consumers applying the same update only one succeeds.
    fragments["status_is_predecessor"] = f"{e.name('status')} IN ({', '.join(predecessors)})"
    if plan.refund_fee is not None:
        # refund_fee is Alipay's running total: a late notice of an earlier refund must not lower it.
        refund_fee = e.name("refund_fee")
        fragments["refund_not_lowered"] = (
            f"attribute_not_exists({refund_fee}) OR {refund_fee} <= {e.value('refund_fee', _n(plan.refund_fee))}"
        )
    return " AND ".join(f"({fragment})" for fragment in fragments.values())


def _plan_update(plan: TransitionPlan, e: _Expression) -> str:
    """The plan's changes, field by field as ``TransitionPlan.applied_to`` makes them."""
    sets = [
        f"{e.name('status')} = {e.value('status', _s(plan.status.value))}",
        f"{e.name('updated_at')} = {e.value('updated_at', _s(plan.updated_at))}",
        f"{e.name('version')} = {e.name('version')} + {e.value('one', _n(1))}",
    ]
    # A plan never moves an order into WAIT_BUYER_PAY (nothing precedes it): the order leaves the waiting index.
    removes = [e.name(WAITING_KEY), e.name(WAITING_SINCE)]
    # notify_id and closed_reason are always overwritten (None removes them); trade_no and refund_fee only
    # change when the plan carries them.
    if plan.notify_id is not None:
        sets.append(f"{e.name('notify_id')} = {e.value('notify_id', _s(plan.notify_id))}")
    else:
        removes.append(e.name("notify_id"))
    if plan.closed_reason is not None:
        sets.append(f"{e.name('closed_reason')} = {e.value('closed_reason', _s(plan.closed_reason.value))}")
    else:
        removes.append(e.name("closed_reason"))
    if plan.trade_no:
        sets.append(f"{e.name('trade_no')} = {e.value('trade_no', _s(plan.trade_no))}")
    if plan.refund_fee is not None:
        sets.append(f"{e.name('refund_fee')} = {e.value('refund_fee', _n(plan.refund_fee))}")
    # The same write appends the change to the order's history: which path applied it is never a second write.
    history, entry = e.name("history"), e.value("change", {"L": [{"M": _change_to_item(plan.change)}]})
    sets.append(f"{history} = list_append(if_not_exists({history}, {e.value('no_history', {'L': []})}), {entry})")
    return "SET " + ", ".join(sets) + (" REMOVE " + ", ".join(removes) if removes else "")


# --- table -------------------------------------------------------------------------------------------------


def create_table(client: DynamoDBClient, table_name: str) -> str:
    """Create the table if missing (on-demand, stream with both images, TTL on ``expires_at``); its stream ARN."""
    try:
        client.create_table(
            TableName=table_name,
            AttributeDefinitions=[
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": WAITING_KEY, "AttributeType": "S"},
                {"AttributeName": WAITING_SINCE, "AttributeType": "S"},
                {"AttributeName": LISTING_KEY, "AttributeType": "S"},
                {"AttributeName": LISTING_SORT, "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": WAITING_INDEX,
                    "KeySchema": [
                        {"AttributeName": WAITING_KEY, "KeyType": "HASH"},
                        {"AttributeName": WAITING_SINCE, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
                {
                    "IndexName": LISTING_INDEX,
                    "KeySchema": [
                        {"AttributeName": LISTING_KEY, "KeyType": "HASH"},
                        {"AttributeName": LISTING_SORT, "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                },
            ],
            BillingMode="PAY_PER_REQUEST",
            # The stream is the outbox: events are derived from old and new images, so both are needed.
            StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
        )
    except aws_errors() as exc:
        # Setup, not a service path: anything but "already exists" goes to the operator as botocore raised it.
        if error_code(exc) != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60})
    ttl = client.describe_time_to_live(TableName=table_name)["TimeToLiveDescription"]
    # UpdateTimeToLive fails when TTL is already on, so look first: create_table must be safe to run twice.
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE}
        )
    return client.describe_table(TableName=table_name)["Table"].get("LatestStreamArn", "")


# --- orders ------------------------------------------------------------------------------------------------


class DynamoDBOrderRepository:
    """``OrderRepository`` over one DynamoDB table; every write is conditional."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def add(self, order: Order) -> None:
        """Store a new order; ``OrderExists`` if the ``out_trade_no`` is taken."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=order_to_item(order),
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PARTITION_KEY},
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                raise OrderExists(order.out_trade_no) from exc
            raise unavailable(exc, "DynamoDB PutItem") from exc

    def get(self, out_trade_no: str) -> Order | None:
        """The stored order, or None (a consistent read: the caller is about to decide on it)."""
        try:
            response = self._client.get_item(
                TableName=self._table, Key={PARTITION_KEY: _s(order_key(out_trade_no))}, ConsistentRead=True
            )
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB GetItem") from exc
        item = response.get("Item")
        return _stored_order(item) if item is not None else None

    def remove_unsigned(self, out_trade_no: str) -> None:
        """Delete a just-created order only while it is untouched (version 1, still waiting)."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={PARTITION_KEY: _s(order_key(out_trade_no))},
                # A notification may already have moved it (the buyer paid with a string we signed earlier):
                # then it is no longer ours to roll back.
                ConditionExpression="#version = :one AND #status = :waiting",
                ExpressionAttributeNames={"#version": "version", "#status": "status"},
                ExpressionAttributeValues={":one": _n(1), ":waiting": _s(OrderStatus.WAIT_BUYER_PAY.value)},
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return  # gone already, or moved on: either way nothing to roll back
            raise unavailable(exc, "DynamoDB DeleteItem") from exc

    def apply_plan(self, plan: TransitionPlan) -> Order | ConditionFailed:
        """One conditional UpdateItem; on a failed condition the order as it was stored, without a second read."""
        if not plan.predecessors:
            # Nothing precedes this status (WAIT_BUYER_PAY): no write can apply, and "IN ()" is not valid syntax.
            return ConditionFailed(self.get(plan.out_trade_no))
        expression = _Expression()
        condition = _plan_condition(plan, expression)
        update = _plan_update(plan, expression)
        try:
            response = self._client.update_item(
                TableName=self._table,
                Key={PARTITION_KEY: _s(order_key(plan.out_trade_no))},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=expression.names,
                ExpressionAttributeValues=expression.values,
                ReturnValues="ALL_NEW",
                # The item the condition was checked against comes back with the failure: the caller decides on
                # exactly that state, with no second read and no window for it to change in between.
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                old = _item_on_condition_failure(exc)
                # No item with the failure means no order: DynamoDB returns ALL_OLD whenever the item exists.
                return ConditionFailed(_stored_order(old) if old is not None else None)
            raise unavailable(exc, "DynamoDB UpdateItem") from exc
        return _stored_order(response["Attributes"])

    def waiting(self, created_before: str) -> Iterator[Order]:
        """Orders still in WAIT_BUYER_PAY created before ``created_before``, oldest first, one index page at a time."""
        return self._waiting(OrderStatus.WAIT_BUYER_PAY.value, created_before)

    def with_pending_refunds(self, requested_before: str) -> Iterator[Order]:
        """Orders with a refund still pending that was asked before ``requested_before``, oldest refund first."""
        return self._waiting(REFUND_PENDING_KEY, requested_before)

    def _waiting(self, partition: str, before: str) -> Iterator[Order]:
        start: Item | None = None
        while True:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": WAITING_INDEX,
                "KeyConditionExpression": "#waiting = :waiting AND #since < :before",
                "ExpressionAttributeNames": {"#waiting": WAITING_KEY, "#since": WAITING_SINCE},
                "ExpressionAttributeValues": {
                    ":waiting": _s(partition),
                    ":before": _s(before),
                },
                "Limit": WAITING_PAGE_SIZE,
            }
            if start is not None:
                request["ExclusiveStartKey"] = start
            try:
                response = self._client.query(**request)
            except aws_errors() as exc:
                raise unavailable(exc, "DynamoDB Query") from exc
            for item in response.get("Items", []):
                yield _stored_order(item)
            start = response.get("LastEvaluatedKey")
            if not start:
                return

    def for_buyer(self, buyer: str, limit: int, after: str | None = None) -> tuple[list[Order], str | None]:
        """One page of ``buyer``'s orders, newest first; the position to continue from, or None at the end."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": LISTING_INDEX,
            "KeyConditionExpression": "#listing = :buyer",
            "ExpressionAttributeNames": {"#listing": LISTING_KEY},
            "ExpressionAttributeValues": {":buyer": _s(buyer_listing(buyer))},
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after is not None:
            # The position is this buyer's own sort key: a query never leaves the caller's partition of the index.
            out_trade_no = after.rsplit("#", 1)[-1]
            request["ExclusiveStartKey"] = {
                PARTITION_KEY: _s(order_key(out_trade_no)),
                LISTING_KEY: _s(buyer_listing(buyer)),
                LISTING_SORT: _s(after),
            }
        try:
            response = self._client.query(**request)
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB Query") from exc
        orders = [_stored_order(item) for item in response.get("Items", [])]
        last = response.get("LastEvaluatedKey")
        return orders, (_req_s(last, LISTING_SORT) if last else None)

    def replace(self, order: Order, *, expected_version: int) -> bool:
        """Write ``order`` if the stored version is still ``expected_version``; False if someone else moved it."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=order_to_item(order),
                # Optimistic lock: a missing order fails this too, so replace never creates one.
                ConditionExpression="#version = :expected",
                ExpressionAttributeNames={"#version": "version"},
                ExpressionAttributeValues={":expected": _n(expected_version)},
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise unavailable(exc, "DynamoDB PutItem") from exc
        return True

    def reschedule(self, order: Order) -> bool:
        """Write a waiting order's reconciliation schedule over the version it was read at, keeping that version."""
        names = {
            "#next": "next_check_at",
            "#checks": "checks",
            "#since": WAITING_SINCE,
            "#parked": "parked",
            "#version": "version",
            "#status": "status",
        }
        values: dict[str, AttributeValueTypeDef] = {
            ":next": _s(order.next_check_at or order.created_at),
            ":checks": _n(order.checks),
            ":version": _n(order.version),
            ":waiting": _s(OrderStatus.WAIT_BUYER_PAY.value),
        }
        update = "SET #next = :next, #checks = :checks, #since = :next"
        if order.parked is not None:
            update += ", #parked = :parked"
            values[":parked"] = _s(order.parked)
        else:
            update += " REMOVE #parked"
        try:
            self._client.update_item(
                TableName=self._table,
                Key={PARTITION_KEY: _s(order_key(order.out_trade_no))},
                UpdateExpression=update,
                # Only over the version read, and only while it still waits: a payment or a close applied meanwhile
                # wins, and the order leaves the index as its own write says.
                ConditionExpression="#version = :version AND #status = :waiting",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise unavailable(exc, "DynamoDB UpdateItem") from exc
        return True


# --- idempotency -------------------------------------------------------------------------------------------


# --- the catalogue -----------------------------------------------------------------------------------------


def product_to_item(product: Product) -> Item:
    item: Item = {
        PARTITION_KEY: _s(product_key(product.sku)),
        "type": _s(PRODUCT_TYPE),
        "sku": _s(product.sku),
        "subject": _s(product.subject),
        "prices": {"M": {currency: _n(price) for currency, price in product.prices.items()}},
        "updated_at": _s(product.updated_at),
        LISTING_KEY: _s(CATALOGUE_LISTING),
        LISTING_SORT: _s(product.sku),
    }
    if product.body is not None:
        item["body"] = _s(product.body)
    if product.updated_by is not None:
        item["updated_by"] = _s(product.updated_by)
    return item


def product_from_item(item: Mapping[str, Any]) -> Product:
    prices = item.get("prices", {}).get("M", {})
    return Product(
        sku=_req_s(item, "sku"),
        subject=_req_s(item, "subject"),
        prices=MappingProxyType({currency: _req_n(prices, currency) for currency in prices}),
        body=_opt_s(item, "body"),
        updated_at=_opt_s(item, "updated_at") or "",
        updated_by=_opt_s(item, "updated_by"),
    )


BATCH_GET_LIMIT = 100
BATCH_GET_ATTEMPTS = 5


class DynamoDBCatalogue:
    """The merchant's products, in the orders table under ``product#<sku>``, listed through the listing index."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, product: Product) -> bool:
        """Create or replace a product; True when it is new."""
        try:
            response = self._client.put_item(
                TableName=self._table, Item=product_to_item(product), ReturnValues="ALL_OLD"
            )
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB PutItem") from exc
        return not response.get("Attributes")

    def get(self, sku: str) -> Product | None:
        try:
            response = self._client.get_item(TableName=self._table, Key={PARTITION_KEY: _s(product_key(sku))})
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB GetItem") from exc
        item = response.get("Item")
        return product_from_item(item) if item is not None and _opt_s(item, "type") == PRODUCT_TYPE else None

    def get_many(self, skus: Iterable[str]) -> dict[str, Product]:
        """The products among ``skus`` that exist (one BatchGetItem per 100, unprocessed keys asked again)."""
        wanted = sorted(set(skus))
        found: dict[str, Product] = {}
        for start in range(0, len(wanted), BATCH_GET_LIMIT):
            keys: list[Any] = [{PARTITION_KEY: _s(product_key(sku))} for sku in wanted[start : start + BATCH_GET_LIMIT]]
            for _ in range(BATCH_GET_ATTEMPTS):
                try:
                    response = self._client.batch_get_item(RequestItems={self._table: {"Keys": keys}})
                except aws_errors() as exc:
                    raise unavailable(exc, "DynamoDB BatchGetItem") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    if _opt_s(item, "type") == PRODUCT_TYPE:
                        product = product_from_item(item)
                        found[product.sku] = product
                unprocessed: Any = response.get("UnprocessedKeys") or {}
                keys = list(unprocessed.get(self._table, {}).get("Keys", []))
                if not keys:
                    break
            else:
                raise Unavailable("DynamoDB BatchGetItem left keys unprocessed")
        return found

    def delete(self, sku: str) -> bool:
        """Remove a product; False when there was none. Orders already made keep their priced items."""
        try:
            response = self._client.delete_item(
                TableName=self._table, Key={PARTITION_KEY: _s(product_key(sku))}, ReturnValues="ALL_OLD"
            )
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB DeleteItem") from exc
        return bool(response.get("Attributes"))

    def all(self) -> list[Product]:
        """Every product, by sku."""
        products: list[Product] = []
        start: Any = None
        while True:
            request: dict[str, Any] = {
                "TableName": self._table,
                "IndexName": LISTING_INDEX,
                "KeyConditionExpression": "#listing = :catalogue",
                "ExpressionAttributeNames": {"#listing": LISTING_KEY},
                "ExpressionAttributeValues": {":catalogue": _s(CATALOGUE_LISTING)},
            }
            if start:
                request["ExclusiveStartKey"] = start
            try:
                response = self._client.query(**request)
            except aws_errors() as exc:
                raise unavailable(exc, "DynamoDB Query") from exc
            products.extend(product_from_item(item) for item in response.get("Items", []))
            start = response.get("LastEvaluatedKey")
            if not start:
                return products


def _idempotency_record(key: str, item: Mapping[str, Any]) -> IdempotencyRecord:
    response = _opt_s(item, "response")
    status_code = _opt_n(item, "status_code")
    return IdempotencyRecord(
        key=key,
        request_hash=_req_s(item, "request_hash"),
        response=json.loads(response) if response is not None else None,
        status_code=int(status_code) if status_code is not None else None,
    )


class DynamoDBIdempotencyStore:
    """``IdempotencyStore`` over the same table: one item per ``Idempotency-Key``, expired by TTL."""

    _CLAIM_ATTEMPTS = 3

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def claim(self, key: str, request_hash: str, *, now: int, ttl: int, lock_seconds: int) -> IdempotencyRecord | None:
        """Claim ``key`` for this request (None) or return the existing record."""
        item: Item = {
            PARTITION_KEY: _s(idempotency_key(key)),
            "type": _s(IDEMPOTENCY_TYPE),
            "request_hash": _s(request_hash),
            "claimed_at": _n(now),
            TTL_ATTRIBUTE: _n(now + ttl),
        }
        conditions = {
            # Nobody has used this key.
            "unclaimed": "attribute_not_exists(#pk)",
            # TTL deletes expired items up to days late: an expired record counts as gone.
            "expired": "#expires_at <= :now",
            # An in-progress claim older than lock_seconds belongs to a request that crashed: take it over.
            "stale_lock": "(attribute_not_exists(#response) AND #claimed_at <= :stale_before)",
        }
        for _ in range(self._CLAIM_ATTEMPTS):
            try:
                self._client.put_item(
                    TableName=self._table,
                    Item=item,
                    ConditionExpression=" OR ".join(conditions.values()),
                    ExpressionAttributeNames={
                        "#pk": PARTITION_KEY,
                        "#expires_at": TTL_ATTRIBUTE,
                        "#response": "response",
                        "#claimed_at": "claimed_at",
                    },
                    ExpressionAttributeValues={":now": _n(now), ":stale_before": _n(now - lock_seconds)},
                    # The record that beat us comes back with the failure: it is the answer, no second read needed.
                    ReturnValuesOnConditionCheckFailure="ALL_OLD",
                )
            except aws_errors() as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise unavailable(exc, "DynamoDB PutItem") from exc
                existing = _item_on_condition_failure(exc) or self._read(key)
                if existing is not None:
                    return _idempotency_record(key, existing)
                continue  # released between our write and our read: the key is free again, claim it
            return None
        raise Unavailable(f"idempotency key {key!r} kept changing while being claimed")

    def complete(self, key: str, response: Mapping[str, Any], status_code: int) -> None:
        """Record the response of the request that holds the claim."""
        try:
            self._client.update_item(
                TableName=self._table,
                Key={PARTITION_KEY: _s(idempotency_key(key))},
                UpdateExpression="SET #response = :response, #status_code = :status_code",
                # UpdateItem would otherwise create a record without request_hash or expiry: never keep one forever.
                ConditionExpression="attribute_exists(#pk)",
                ExpressionAttributeNames={"#pk": PARTITION_KEY, "#response": "response", "#status_code": "status_code"},
                ExpressionAttributeValues={
                    ":response": _s(json.dumps(dict(response), ensure_ascii=False, separators=(",", ":"))),
                    ":status_code": _n(status_code),
                },
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return  # the claim expired and was removed: the response went out, there is nothing left to record
            raise unavailable(exc, "DynamoDB UpdateItem") from exc

    def release(self, key: str) -> None:
        """Drop an in-progress claim after a failure, so that a retry can run."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key={PARTITION_KEY: _s(idempotency_key(key))},
                # Only while in progress: a completed response must keep answering retries until it expires.
                ConditionExpression="attribute_not_exists(#response)",
                ExpressionAttributeNames={"#response": "response"},
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return
            raise unavailable(exc, "DynamoDB DeleteItem") from exc

    def _read(self, key: str) -> Mapping[str, Any] | None:
        try:
            response = self._client.get_item(
                TableName=self._table, Key={PARTITION_KEY: _s(idempotency_key(key))}, ConsistentRead=True
            )
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB GetItem") from exc
        return response.get("Item")


# --- quarantine --------------------------------------------------------------------------------------------


def quarantine_to_item(record: QuarantineRecord) -> Item:
    """A quarantined entry as stored: no expiry (it waits for an operator), listed open or resolved, newest first."""
    item: Item = {
        PARTITION_KEY: _s(quarantine_key(record.notify_id)),
        "type": _s(QUARANTINE_TYPE),
        "notify_id": _s(record.notify_id),
        "out_trade_no": _s(record.out_trade_no),
        "reason": _s(record.reason),
        "detail": _s(record.detail),
        "message": _s(record.message.to_json()),
        "recorded_at": _s(record.recorded_at),
        LISTING_KEY: _s(QUARANTINE_RESOLVED_LISTING if record.resolution else QUARANTINE_OPEN_LISTING),
        LISTING_SORT: _s(f"{record.recorded_at}#{record.notify_id}"),
    }
    if record.holds_money:
        item["holds_money"] = {"BOOL": True}  # a paid status: money Alipay captured, for an operator to resolve
    if record.resolution is not None:
        item.update(_resolution_to_item(record.resolution))
    return item


def _resolution_to_item(resolution: Resolution) -> Item:
    item: Item = {
        "resolved_action": _s(resolution.action),
        "resolved_by": _s(resolution.by),
        "resolved_at": _s(resolution.at),
        "resolved_reason": _s(resolution.reason),
    }
    if resolution.outcome is not None:
        item["resolved_outcome"] = _s(resolution.outcome)
    return item


def quarantine_from_item(item: Mapping[str, Any]) -> QuarantineRecord:
    """The entry in a stored item (with its resolution, once resolved)."""
    resolved_at = _opt_s(item, "resolved_at")
    resolution = None
    if resolved_at is not None:
        resolution = Resolution(
            action=_req_s(item, "resolved_action"),
            by=_req_s(item, "resolved_by"),
            at=resolved_at,
            reason=_req_s(item, "resolved_reason"),
            outcome=_opt_s(item, "resolved_outcome"),
        )
    return QuarantineRecord(
        notify_id=_req_s(item, "notify_id"),
        out_trade_no=_req_s(item, "out_trade_no"),
        reason=_req_s(item, "reason"),
        detail=_req_s(item, "detail"),
        message=QueuedNotification.from_json(_req_s(item, "message")),
        recorded_at=_req_s(item, "recorded_at"),
        resolution=resolution,
        holds_money=bool(item.get("holds_money", {}).get("BOOL", False)),
    )


def _listing_page(
    client: DynamoDBClient, table: str, listing: str, limit: int, start: Item | None
) -> tuple[list[Mapping[str, Any]], str | None]:
    """One page of the listing index under ``listing``, newest first, and the sort key it ended at (None: the end)."""
    request: dict[str, Any] = {
        "TableName": table,
        "IndexName": LISTING_INDEX,
        "KeyConditionExpression": "#listing = :listing",
        "ExpressionAttributeNames": {"#listing": LISTING_KEY},
        "ExpressionAttributeValues": {":listing": _s(listing)},
        "ScanIndexForward": False,
        "Limit": limit,
    }
    if start is not None:
        request["ExclusiveStartKey"] = start
    try:
        response = client.query(**request)
    except aws_errors() as exc:
        raise unavailable(exc, "DynamoDB Query") from exc
    last = response.get("LastEvaluatedKey")
    return list(response.get("Items", [])), (_req_s(last, LISTING_SORT) if last else None)


class DynamoDBQuarantineStore:
    """``QuarantineStore`` over the same table: one item per ``notify_id``, listed through the listing index."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def put(self, record: QuarantineRecord) -> None:
        """Keep ``record``; a second record for the same ``notify_id`` changes nothing (Alipay retries)."""
        try:
            self._client.put_item(
                TableName=self._table,
                Item=quarantine_to_item(record),
                # The first record is the evidence; a retry of the same notification must not overwrite it.
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PARTITION_KEY},
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return  # already recorded
            raise unavailable(exc, "DynamoDB PutItem") from exc

    def get(self, notify_id: str) -> QuarantineRecord | None:
        """The quarantined notification with this ``notify_id`` (for operators), or None."""
        try:
            response = self._client.get_item(
                TableName=self._table, Key={PARTITION_KEY: _s(quarantine_key(notify_id))}, ConsistentRead=True
            )
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB GetItem") from exc
        item = response.get("Item")
        if item is None or _opt_s(item, "type") != QUARANTINE_TYPE:
            return None
        return quarantine_from_item(item)

    def listing(
        self, *, resolved: bool, limit: int, after: str | None = None
    ) -> tuple[list[QuarantineRecord], str | None]:
        """One page of open (or resolved) entries, newest first: a Query of the listing index, never a Scan."""
        listing = QUARANTINE_RESOLVED_LISTING if resolved else QUARANTINE_OPEN_LISTING
        start: Item | None = None
        if after is not None:
            _, notify_id = split_position(after)
            start = {
                PARTITION_KEY: _s(quarantine_key(notify_id)),
                LISTING_KEY: _s(listing),
                LISTING_SORT: _s(after),
            }
        items, last = _listing_page(self._client, self._table, listing, limit, start)
        return [quarantine_from_item(item) for item in items], last

    def resolve(self, notify_id: str, resolution: Resolution) -> bool:
        """One conditional write: resolved once, by one operator; the entry moves to the resolved listing."""
        e = _Expression()
        sets = [f"{e.name(LISTING_KEY)} = {e.value('resolved_listing', _s(QUARANTINE_RESOLVED_LISTING))}"]
        for name, value in _resolution_to_item(resolution).items():
            sets.append(f"{e.name(name)} = {e.value(name, value)}")
        # Entries written before quarantine entries stopped expiring carry a TTL: a resolved entry stays readable.
        update = "SET " + ", ".join(sets) + f" REMOVE {e.name(TTL_ATTRIBUTE)}"
        condition = (
            # UpdateItem creates missing items: resolving must never invent an entry.
            f"attribute_exists({e.name(PARTITION_KEY)})"
            # Two operators acting at once: the second is told, and the first one's record stands.
            f" AND attribute_not_exists({e.name('resolved_at')})"
        )
        try:
            self._client.update_item(
                TableName=self._table,
                Key={PARTITION_KEY: _s(quarantine_key(notify_id))},
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames=e.names,
                ExpressionAttributeValues=e.values,
            )
        except aws_errors() as exc:
            if error_code(exc) == CONDITION_FAILED:
                return False
            raise unavailable(exc, "DynamoDB UpdateItem") from exc
        return True


def backfill_quarantine_listing(client: DynamoDBClient, table_name: str) -> int:
    """Give quarantine entries written before the listing keys existed their keys, and drop their expiry.

    A one-off migration (docs/operations.md, "Changing the table"), run by an operator with table access: the only
    Scan in the product, filtered to the entries that lack the key. Safe to run again (it finds nothing then).
    """
    fixed = 0
    start: Any = None
    while True:
        request: dict[str, Any] = {
            "TableName": table_name,
            "FilterExpression": "#type = :quarantine AND attribute_not_exists(#listing)",
            "ExpressionAttributeNames": {"#type": "type", "#listing": LISTING_KEY},
            "ExpressionAttributeValues": {":quarantine": _s(QUARANTINE_TYPE)},
        }
        if start:
            request["ExclusiveStartKey"] = start
        response = client.scan(**request)
        for item in response.get("Items", []):
            record = quarantine_from_item(item)
            listing = QUARANTINE_RESOLVED_LISTING if record.resolution else QUARANTINE_OPEN_LISTING
            try:
                client.update_item(
                    TableName=table_name,
                    Key={PARTITION_KEY: item[PARTITION_KEY]},
                    UpdateExpression="SET #listing = :listing, #sort = :sort REMOVE #expires",
                    # Only while it still lacks the key: never undo a resolution written meanwhile.
                    ConditionExpression="attribute_exists(#pk) AND attribute_not_exists(#listing)",
                    ExpressionAttributeNames={
                        "#pk": PARTITION_KEY,
                        "#listing": LISTING_KEY,
                        "#sort": LISTING_SORT,
                        "#expires": TTL_ATTRIBUTE,
                    },
                    ExpressionAttributeValues={
                        ":listing": _s(listing),
                        ":sort": _s(f"{record.recorded_at}#{record.notify_id}"),
                    },
                )
            except aws_errors() as exc:
                if error_code(exc) != CONDITION_FAILED:
                    raise
                continue
            fixed += 1
        start = response.get("LastEvaluatedKey")
        if not start:
            return fixed


# --- the operators' audit log ------------------------------------------------------------------------------


def audit_to_item(entry: AuditEntry) -> Item:
    return {
        PARTITION_KEY: _s(audit_key(entry.entry_id)),
        "type": _s(AUDIT_TYPE),
        "entry_id": _s(entry.entry_id),
        "at": _s(entry.at),
        "by": _s(entry.by),
        "action": _s(entry.action),
        "target": _s(entry.target),
        "reason": _s(entry.reason),
        "result": _s(json.dumps(dict(entry.result), ensure_ascii=False, separators=(",", ":"), default=str)),
        LISTING_KEY: _s(AUDIT_LISTING),
        LISTING_SORT: _s(f"{entry.at}#{entry.entry_id}"),
    }


def audit_from_item(item: Mapping[str, Any]) -> AuditEntry:
    return AuditEntry(
        entry_id=_req_s(item, "entry_id"),
        at=_req_s(item, "at"),
        by=_req_s(item, "by"),
        action=_req_s(item, "action"),
        target=_req_s(item, "target"),
        reason=_req_s(item, "reason"),
        result=json.loads(_req_s(item, "result")),
    )


class DynamoDBAuditLog:
    """``AuditLog`` over the same table: one item per action, listed newest first through the listing index."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self._table = table_name

    def record(self, entry: AuditEntry) -> None:
        try:
            self._client.put_item(
                TableName=self._table,
                Item=audit_to_item(entry),
                # An entry is written once: a clash of ids must never overwrite another operator's record.
                ConditionExpression="attribute_not_exists(#pk)",
                ExpressionAttributeNames={"#pk": PARTITION_KEY},
            )
        except aws_errors() as exc:
            raise unavailable(exc, "DynamoDB PutItem") from exc

    def listing(self, limit: int, after: str | None = None) -> tuple[list[AuditEntry], str | None]:
        start: Item | None = None
        if after is not None:
            _, entry_id = split_position(after)
            start = {
                PARTITION_KEY: _s(audit_key(entry_id)),
                LISTING_KEY: _s(AUDIT_LISTING),
                LISTING_SORT: _s(after),
            }
        items, last = _listing_page(self._client, self._table, AUDIT_LISTING, limit, start)
        return [audit_from_item(item) for item in items], last
