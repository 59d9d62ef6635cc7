"""What only the DynamoDB adapter can show: the table, the item format, the stream, and error translation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import pytest

from chalicelib.adapters.dynamodb import (
    DynamoDBAuditLog,
    DynamoDBIdempotencyStore,
    DynamoDBOrderRepository,
    DynamoDBQuarantineStore,
    backfill_quarantine_listing,
    create_table,
    order_from_item,
    order_to_item,
)
from chalicelib.orders.model import (
    ClosedReason,
    Order,
    OrderStatus,
    PaymentUpdate,
    Refund,
    RefundStatus,
    plan_transition,
)
from chalicelib.services.ports import (
    AuditEntry,
    ConditionFailed,
    QuarantineRecord,
    QueuedNotification,
    Resolution,
    Unavailable,
)
from tests.integration.conftest import client_error, connection_error, fail_calls, record_calls

if TYPE_CHECKING:
    from mypy_boto3_dynamodb.client import DynamoDBClient

NOW = "2026-11-26T08:00:00Z"
LATER = "2026-11-26T09:00:00Z"
ORDER = Order.create(out_trade_no="o-1", total_amount=Decimal("12.30"), currency="USD", subject="咖啡", now=NOW)
PAID = PaymentUpdate("o-1", OrderStatus.TRADE_SUCCESS, Decimal("12.3"), "USD", "t-1", "n-1", None, LATER)


# --- table -------------------------------------------------------------------------------------------------


def test_creates_an_on_demand_table_with_a_stream_of_both_images_and_ttl(dynamodb: DynamoDBClient) -> None:
    stream_arn = create_table(dynamodb, "orders")
    table = dynamodb.describe_table(TableName="orders")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert table["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    assert stream_arn == table["LatestStreamArn"]
    ttl = dynamodb.describe_time_to_live(TableName="orders")["TimeToLiveDescription"]
    assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires_at")


def test_creating_the_table_twice_is_harmless(dynamodb: DynamoDBClient) -> None:
    first = create_table(dynamodb, "orders")
    assert create_table(dynamodb, "orders") == first


# --- item format -------------------------------------------------------------------------------------------


def test_an_order_item_uses_numbers_for_money_and_version_and_omits_absent_fields() -> None:
    item = order_to_item(ORDER)
    assert item["pk"] == {"S": "order#o-1"}
    assert item["type"] == {"S": "order"}
    assert item["total_amount"] == {"N": "12.3"}  # trimmed as DynamoDB itself stores it
    assert item["version"] == {"N": "1"}
    assert not {"body", "trade_no", "refund_fee", "notify_id", "closed_reason"} & item.keys()


def test_an_order_survives_the_item_format_with_every_field_set() -> None:
    order = Order(
        out_trade_no="o-2",
        total_amount=Decimal("1E+2"),
        currency="CNY",
        subject="s",
        body="",
        status=OrderStatus.TRADE_CLOSED,
        created_at=NOW,
        updated_at=LATER,
        trade_no="t-2",
        refund_fee=Decimal("0.01"),
        notify_id="n-2",
        closed_reason=ClosedReason.REFUNDED,
        version=7,
    )
    item = order_to_item(order)
    assert item["total_amount"] == {"N": "100"}
    assert order_from_item(item) == order


def test_money_reads_back_as_dynamodb_returns_it_equal_in_value_with_trailing_zeros_trimmed(
    dynamodb: DynamoDBClient, table: str
) -> None:
    repo = DynamoDBOrderRepository(dynamodb, table)
    repo.add(ORDER)
    stored = repo.get("o-1")
    assert stored is not None
    assert stored.total_amount == Decimal("12.30")
    assert str(stored.total_amount) == "12.3"  # whoever shows an amount formats it (two places for Alipay)


def test_items_that_are_not_orders_read_as_none() -> None:
    assert order_from_item({"pk": {"S": "idempotency#k"}, "type": {"S": "idempotency"}}) is None
    assert order_from_item({}) is None


# --- stream ------------------------------------------------------------------------------------------------


def _stream_records(streams: Any, stream_arn: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator)["Records"]
    return records


def test_an_order_change_reaches_the_stream_with_both_images_readable_as_orders(
    dynamodb: DynamoDBClient, dynamodbstreams: Any
) -> None:
    stream_arn = create_table(dynamodb, "orders")
    repo = DynamoDBOrderRepository(dynamodb, "orders")
    repo.add(ORDER)
    paid = repo.apply_plan(plan_transition(PAID, LATER))

    records = _stream_records(dynamodbstreams, stream_arn)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY"]
    insert, modify = (r["dynamodb"] for r in records)
    assert "OldImage" not in insert
    assert order_from_item(insert["NewImage"]) == ORDER
    assert order_from_item(modify["OldImage"]) == ORDER
    assert order_from_item(modify["NewImage"]) == paid


def test_idempotency_and_quarantine_items_in_the_stream_are_not_orders(
    dynamodb: DynamoDBClient, dynamodbstreams: Any
) -> None:
    stream_arn = create_table(dynamodb, "orders")
    DynamoDBIdempotencyStore(dynamodb, "orders").claim("k", "h", now=1, ttl=10, lock_seconds=5)
    message = QueuedNotification("openapi", "n-9", "o-9", {}, NOW)
    DynamoDBQuarantineStore(dynamodb, "orders").put(QuarantineRecord("n-9", "o-9", "unknown_order", "", message, NOW))
    images = [r["dynamodb"]["NewImage"] for r in _stream_records(dynamodbstreams, stream_arn)]
    assert len(images) == 2
    assert [order_from_item(image) for image in images] == [None, None]


# --- what is sent ------------------------------------------------------------------------------------------


def test_apply_plan_is_a_single_update_with_named_conditions_and_no_read(dynamodb: DynamoDBClient, table: str) -> None:
    repo = DynamoDBOrderRepository(dynamodb, table)
    repo.add(ORDER)
    updates = record_calls(dynamodb, "UpdateItem")
    reads = record_calls(dynamodb, "GetItem")
    repo.apply_plan(plan_transition(PAID, LATER))
    repo.apply_plan(plan_transition(PAID, LATER))  # the duplicate fails its condition
    assert (len(updates), len(reads)) == (2, 0)
    condition = updates[0]["ConditionExpression"]
    assert condition == (
        "(attribute_exists(#pk)) AND (#total_amount = :total_amount) AND (#currency = :currency)"
        " AND (attribute_not_exists(#waiting) OR #waiting <> :refund_pending) AND (#status IN (:from_0))"
    )
    assert updates[0]["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


def test_the_condition_failure_carries_the_stored_order(dynamodb: DynamoDBClient, table: str) -> None:
    repo = DynamoDBOrderRepository(dynamodb, table)
    repo.add(ORDER)
    wrong_amount = PaymentUpdate("o-1", OrderStatus.TRADE_SUCCESS, Decimal("1.00"), None, "t-1", "n-1", None, LATER)
    assert repo.apply_plan(plan_transition(wrong_amount, LATER)) == ConditionFailed(ORDER)


def test_a_quarantined_notification_that_holds_money_never_expires(dynamodb: DynamoDBClient, table: str) -> None:
    store = DynamoDBQuarantineStore(dynamodb, table)
    message = QueuedNotification("openapi", "n-8", "o-8", {"trade_status": "TRADE_SUCCESS"}, NOW)
    store.put(QuarantineRecord("n-8", "o-8", "unknown_order", "", message, NOW, holds_money=True))
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "quarantine#n-8"}})["Item"]
    assert "expires_at" not in item
    kept = store.get("n-8")
    assert kept is not None
    assert kept.holds_money


def test_a_taken_idempotency_key_is_answered_from_the_failed_write_alone(dynamodb: DynamoDBClient, table: str) -> None:
    store = DynamoDBIdempotencyStore(dynamodb, table)
    store.claim("k", "h1", now=100, ttl=1000, lock_seconds=30)
    store.complete("k", {"out_trade_no": "o-1"}, 201)
    reads = record_calls(dynamodb, "GetItem")
    record = store.claim("k", "h2", now=110, ttl=1000, lock_seconds=30)
    assert record is not None
    assert (record.request_hash, record.response, record.status_code) == ("h1", {"out_trade_no": "o-1"}, 201)
    assert reads == []


def test_a_quarantined_notification_stays_until_resolved_and_is_listed_through_the_listing_index(
    dynamodb: DynamoDBClient, table: str
) -> None:
    store = DynamoDBQuarantineStore(dynamodb, table)
    message = QueuedNotification("openapi", "n-9", "o-9", {}, NOW)
    store.put(QuarantineRecord("n-9", "o-9", "unknown_order", "", message, NOW))
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "quarantine#n-9"}})["Item"]
    assert "expires_at" not in item
    assert (item["type"], item["listing"], item["listing_sort"]) == (
        {"S": "quarantine"},
        {"S": "quarantine#open"},
        {"S": f"{NOW}#n-9"},
    )
    queries = record_calls(dynamodb, "Query")
    scans = record_calls(dynamodb, "Scan")
    assert [r.notify_id for r in store.listing(resolved=False, limit=10)[0]] == ["n-9"]
    assert [q["IndexName"] for q in queries] == ["listing"]
    assert scans == []


def test_backfill_gives_entries_written_before_the_listing_keys_their_keys_and_drops_their_expiry(
    dynamodb: DynamoDBClient, table: str
) -> None:
    store = DynamoDBQuarantineStore(dynamodb, table)
    message = QueuedNotification("openapi", "n-old", "o-9", {}, NOW)
    # As the previous release wrote it: no listing keys, a 90-day expiry.
    old = {
        "pk": {"S": "quarantine#n-old"},
        "type": {"S": "quarantine"},
        "notify_id": {"S": "n-old"},
        "out_trade_no": {"S": "o-9"},
        "reason": {"S": "unknown_order"},
        "detail": {"S": ""},
        "message": {"S": message.to_json()},
        "recorded_at": {"S": NOW},
        "expires_at": {"N": "1000"},
    }
    dynamodb.put_item(TableName=table, Item=old)
    DynamoDBOrderRepository(dynamodb, table).add(ORDER)
    store.put(QuarantineRecord("n-new", "o-9", "unknown_order", "", replace(message, notify_id="n-new"), LATER))
    assert [r.notify_id for r in store.listing(resolved=False, limit=10)[0]] == ["n-new"]

    assert backfill_quarantine_listing(dynamodb, table) == 1
    assert backfill_quarantine_listing(dynamodb, table) == 0  # safe to run again

    assert [r.notify_id for r in store.listing(resolved=False, limit=10)[0]] == ["n-new", "n-old"]
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": "quarantine#n-old"}})["Item"]
    assert "expires_at" not in item
    assert DynamoDBOrderRepository(dynamodb, table).get("o-1") == ORDER  # orders untouched


def test_the_audit_log_keeps_each_action_and_lists_them_newest_first(dynamodb: DynamoDBClient, table: str) -> None:
    log = DynamoDBAuditLog(dynamodb, table)
    first = AuditEntry("a1", NOW, "arn:aws:iam::1:role/ops", "redrive", "notifications-dlq", "why", {"moved": 2})
    second = replace(first, entry_id="a2", at=LATER, action="events.replay", result={"event_ids": ["o-1:OrderPaid"]})
    log.record(first)
    log.record(second)
    page, after = log.listing(1)
    assert page == [second]
    rest, end = log.listing(1, after)
    assert (rest, log.listing(1, end)[0] if end else []) == ([first], [])
    with pytest.raises(Unavailable):
        log.record(first)  # never overwritten


# --- error translation -------------------------------------------------------------------------------------

Call = Callable[[Any, str], object]
MESSAGE = QueuedNotification("openapi", "n-9", "o-9", {}, NOW)
OPERATIONS: list[tuple[str, str, Call]] = [
    ("order add", "PutItem", lambda c, t: DynamoDBOrderRepository(c, t).add(ORDER)),
    ("order get", "GetItem", lambda c, t: DynamoDBOrderRepository(c, t).get("o-1")),
    (
        "order apply_plan",
        "UpdateItem",
        lambda c, t: DynamoDBOrderRepository(c, t).apply_plan(plan_transition(PAID, NOW)),
    ),
    ("order replace", "PutItem", lambda c, t: DynamoDBOrderRepository(c, t).replace(ORDER, expected_version=1)),
    ("order remove_unsigned", "DeleteItem", lambda c, t: DynamoDBOrderRepository(c, t).remove_unsigned("o-1")),
    ("claim", "PutItem", lambda c, t: DynamoDBIdempotencyStore(c, t).claim("k", "h", now=1, ttl=9, lock_seconds=3)),
    ("complete", "UpdateItem", lambda c, t: DynamoDBIdempotencyStore(c, t).complete("k", {}, 201)),
    ("release", "DeleteItem", lambda c, t: DynamoDBIdempotencyStore(c, t).release("k")),
    (
        "quarantine put",
        "PutItem",
        lambda c, t: DynamoDBQuarantineStore(c, t).put(QuarantineRecord("n-9", "o-9", "r", "", MESSAGE, NOW)),
    ),
    ("quarantine get", "GetItem", lambda c, t: DynamoDBQuarantineStore(c, t).get("n-9")),
    ("quarantine listing", "Query", lambda c, t: DynamoDBQuarantineStore(c, t).listing(resolved=False, limit=5)),
    (
        "quarantine resolve",
        "UpdateItem",
        lambda c, t: DynamoDBQuarantineStore(c, t).resolve("n-9", Resolution("dismissed", "arn", NOW, "why")),
    ),
    ("audit listing", "Query", lambda c, t: DynamoDBAuditLog(c, t).listing(5)),
]


@pytest.mark.parametrize(("operation", "api", "call"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
@pytest.mark.parametrize(
    "code", ["ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"]
)
def test_throttling_becomes_unavailable_with_a_longer_retry_after(
    dynamodb: DynamoDBClient, table: str, operation: str, api: str, call: Call, code: str
) -> None:
    throttled = client_error(api, code)
    fail_calls(dynamodb, api, throttled)
    with pytest.raises(Unavailable) as raised:
        call(dynamodb, table)
    assert raised.value.retry_after == 2
    assert raised.value.__cause__ is throttled


@pytest.mark.parametrize(("operation", "api", "call"), OPERATIONS, ids=[o[0] for o in OPERATIONS])
def test_server_errors_and_unreachable_endpoints_become_unavailable(
    dynamodb: DynamoDBClient, table: str, operation: str, api: str, call: Call
) -> None:
    fail_calls(dynamodb, api, client_error(api, "InternalServerError", 500), times=1)
    with pytest.raises(Unavailable):
        call(dynamodb, table)
    fail_calls(dynamodb, api, connection_error(), times=1)
    with pytest.raises(Unavailable) as raised:
        call(dynamodb, table)
    assert raised.value.retry_after == 1


def test_a_missing_table_becomes_unavailable_rather_than_a_vendor_error(dynamodb: DynamoDBClient) -> None:
    with pytest.raises(Unavailable, match="ResourceNotFoundException"):
        DynamoDBOrderRepository(dynamodb, "no-such-table").get("o-1")


# --- the waiting index and refunds --------------------------------------------------------------------------


def _waiting(repository: DynamoDBOrderRepository, before: str = "9999") -> list[str]:
    return [order.out_trade_no for order in repository.waiting(before)]


def test_the_table_has_the_sparse_waiting_index(dynamodb: DynamoDBClient, table: str) -> None:
    indexes = {i["IndexName"]: i for i in dynamodb.describe_table(TableName=table)["Table"]["GlobalSecondaryIndexes"]}
    assert set(indexes) == {"waiting", "listing"}
    assert [k["AttributeName"] for k in indexes["waiting"]["KeySchema"]] == ["waiting", "waiting_since"]
    assert [k["AttributeName"] for k in indexes["listing"]["KeySchema"]] == ["listing", "listing_sort"]


def test_waiting_orders_are_listed_oldest_first_across_pages(
    dynamodb: DynamoDBClient, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import chalicelib.adapters.dynamodb as adapter

    monkeypatch.setattr(adapter, "WAITING_PAGE_SIZE", 2)
    repository = DynamoDBOrderRepository(dynamodb, table)
    for i in (3, 1, 4, 2, 5):
        repository.add(
            Order.create(
                out_trade_no=f"o-{i}",
                total_amount=Decimal(1),
                currency="USD",
                subject="s",
                now=f"2026-11-26T08:0{i}:00Z",
            )
        )
    assert _waiting(repository) == ["o-1", "o-2", "o-3", "o-4", "o-5"]
    assert _waiting(repository, before="2026-11-26T08:03:00Z") == ["o-1", "o-2"]


def test_an_order_leaves_the_waiting_index_on_every_write_that_moves_it_on(
    dynamodb: DynamoDBClient, table: str
) -> None:
    repository = DynamoDBOrderRepository(dynamodb, table)
    repository.add(ORDER)
    repository.add(Order.create(out_trade_no="o-2", total_amount=Decimal(1), currency="USD", subject="s", now=NOW))
    assert _waiting(repository) == ["o-1", "o-2"]
    # The one-write path (UpdateItem) ...
    assert isinstance(repository.apply_plan(plan_transition(PAID, LATER)), Order)
    assert _waiting(repository) == ["o-2"]
    # ... and the read-decide-replace path (PutItem).
    stored = repository.get("o-2")
    assert stored is not None
    closed = replace(stored, status=OrderStatus.TRADE_CLOSED, closed_reason=ClosedReason.TIMEOUT, version=2)
    assert repository.replace(closed, expected_version=1)
    assert _waiting(repository) == []


def test_refunds_are_stored_on_the_order_and_a_stale_writer_cannot_lose_one(
    dynamodb: DynamoDBClient, table: str
) -> None:
    from chalicelib.orders.model import Refund, RefundStatus

    repository = DynamoDBOrderRepository(dynamodb, table)
    repository.add(ORDER)
    order = repository.get("o-1")
    assert order is not None
    first = order.with_refund(Refund("r-1", Decimal("1.00"), RefundStatus.PENDING, LATER, "why"), LATER)
    second = order.with_refund(Refund("r-2", Decimal("2.00"), RefundStatus.PENDING, LATER), LATER)
    assert repository.replace(first, expected_version=order.version)
    assert not repository.replace(second, expected_version=order.version)  # read before r-1 was written
    stored = repository.get("o-1")
    assert stored == first
    assert stored.refunds["r-1"].reason == "why"


def test_a_refund_notice_is_never_written_unread(dynamodb: DynamoDBClient, table: str) -> None:
    """A refund confirms one refund of the order's map by its number: it is decided on the order as read."""
    repository = DynamoDBOrderRepository(dynamodb, table)
    repository.add(ORDER)
    repository.apply_plan(plan_transition(PAID, LATER))
    eight = PaymentUpdate("o-1", OrderStatus.TRADE_CLOSED, Decimal("12.3"), None, None, "n-2", Decimal("8"), LATER)
    stored = repository.get("o-1")
    updates = record_calls(dynamodb, "UpdateItem")
    assert repository.apply_plan(plan_transition(eight, LATER)) == ConditionFailed(stored)
    assert updates == []


def test_an_order_with_a_pending_refund_waits_in_the_refund_partition_until_it_is_settled(
    dynamodb: DynamoDBClient, table: str
) -> None:
    repository = DynamoDBOrderRepository(dynamodb, table)
    repository.add(ORDER)
    repository.apply_plan(plan_transition(PAID, LATER))
    paid = repository.get("o-1")
    assert paid is not None
    asked = paid.with_refund(Refund("r-1", Decimal("2"), RefundStatus.PENDING, LATER), LATER)
    assert repository.replace(asked, expected_version=paid.version)
    assert [o.out_trade_no for o in repository.with_pending_refunds("2099-01-01T00:00:00Z")] == ["o-1"]
    assert list(repository.with_pending_refunds(LATER)) == []  # only refunds asked before the given time
    assert list(repository.waiting("2099-01-01T00:00:00Z")) == []  # not among the orders waiting for payment
    # A payment notice written unread would drop the order from the index: its condition refuses, decide() writes.
    finished = PaymentUpdate("o-1", OrderStatus.TRADE_FINISHED, Decimal("12.3"), None, None, "n-3", None, LATER)
    assert isinstance(repository.apply_plan(plan_transition(finished, LATER)), ConditionFailed)
    done = asked.with_refund_confirmed("r-1", LATER, applied_by="refund", reported_fee=Decimal("2"))
    assert repository.replace(done, expected_version=asked.version)
    assert list(repository.with_pending_refunds("2099-01-01T00:00:00Z")) == []
