"""The use cases wired to in-memory fakes, plus a fake change stream, for the service and app tests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from chalicelib.adapters.dynamodb import order_from_item, order_to_item
from chalicelib.alipay.keys import public_key_base64
from chalicelib.alipay.signing import LocalKeySigner, Signer, SignType
from chalicelib.bootstrap import GivenPorts, Services, build_services
from chalicelib.config import Config
from chalicelib.orders.model import Order, TransitionPlan
from chalicelib.services.events import StreamRecord
from chalicelib.services.ports import ConditionFailed, Unavailable
from tests.alipay_fixtures import APP_ID, OUT_TRADE_NO, PARTNER, SELLER_ID, alipay_key
from tests.fakes import (
    CountingMetrics,
    FakeAlipayGateway,
    FakeAntomGateway,
    InMemoryAuditLog,
    InMemoryCatalogue,
    InMemoryDeadLetters,
    InMemoryEventPublisher,
    InMemoryIdempotencyStore,
    InMemoryNotificationQueue,
    InMemoryQuarantineStore,
)
from tests.fakes import InMemoryOrderRepository as _InMemoryOrderRepository
from tests.keygen import rsa_key

ANTOM_CLIENT_ID = "SANDBOX_5YEZ2N2ZBS7D06024"

# 16:30:05 UTC is 00:30:05 the next day in Beijing, so a UTC timestamp in an order string would show.
NOW = datetime(2026, 11, 26, 16, 30, 5, tzinfo=UTC)


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, now: datetime = NOW) -> None:
        self.current = now

    def __call__(self) -> datetime:
        return self.current

    def advance(self, **delta: float) -> None:
        self.current += timedelta(**delta)


class StreamingOrderRepository(_InMemoryOrderRepository):
    """The in-memory repository plus what DynamoDB Streams would carry: one record per stored change."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[Order | None, Order | None]] = []
        self._stream_lock = threading.Lock()

    def add(self, order: Order) -> None:
        super().add(order)
        self._record(None, order)

    def remove_unsigned(self, out_trade_no: str) -> None:
        before = self.orders.get(out_trade_no)
        super().remove_unsigned(out_trade_no)
        if before is not None and out_trade_no not in self.orders:
            self._record(before, None)

    def apply_plan(self, plan: TransitionPlan) -> Order | ConditionFailed:
        before = self.orders.get(plan.out_trade_no)
        result = super().apply_plan(plan)
        if isinstance(result, Order):
            self._record(before, result)
        return result

    def replace(self, order: Order, *, expected_version: int) -> bool:
        before = self.orders.get(order.out_trade_no)
        replaced = super().replace(order, expected_version=expected_version)
        if replaced:
            self._record(before, order)
        return replaced

    def _record(self, old: Order | None, new: Order | None) -> None:
        with self._stream_lock:
            self.changes.append((old, new))

    def writes_of(self, out_trade_no: str) -> int:
        """How many stored changes moved this order after it was created."""
        return sum(1 for old, new in self.changes if old and new and new.out_trade_no == out_trade_no)


class LaggingPendingIndex(StreamingOrderRepository):
    """The orders table whose pending-refunds index (a GSI, eventually consistent) shows nothing while ``lagging``."""

    def __init__(self) -> None:
        super().__init__()
        self.lagging = False

    def with_pending_refunds(self, requested_before: str) -> Iterator[Order]:
        if self.lagging:
            return iter(())
        return super().with_pending_refunds(requested_before)


def stream_record(sequence_number: str, old: Order | None, new: Order | None) -> dict[str, Any]:
    """A record of Lambda's DynamoDB stream event (NEW_AND_OLD_IMAGES) in the adapter's item format."""
    subject = new or old
    assert subject is not None
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": 1795000000,
        "Keys": {"pk": {"S": f"order#{subject.out_trade_no}"}},
        "SequenceNumber": sequence_number,
        "SizeBytes": 512,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        change["OldImage"] = order_to_item(old)
    if new is not None:
        change["NewImage"] = order_to_item(new)
    return {
        "eventID": f"event-{sequence_number}",
        "eventName": "INSERT" if old is None else "REMOVE" if new is None else "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:000000000000:table/alipay-global-orders/stream/2026-11-26",
        "dynamodb": change,
    }


def env(protocol: str = "openapi", **overrides: str) -> dict[str, str]:
    """A complete environment for ``Config.from_env``; ``NAME=""`` unsets a variable."""
    values = {
        "STAGE": "test",
        "ALIPAY_PROTOCOL": protocol,
        "ALIPAY_PUBLIC_KEYS": public_key_base64(alipay_key().public_key()),
        "NOTIFY_URL": "https://pay.example.com/alipay/notify",
        "CURRENCIES": "USD,HKD,CNY",
        "ORDERS_TABLE": "alipay-global-orders",
        "NOTIFICATIONS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/000000000000/alipay-global-notifications",
        "EVENT_BUS_NAME": "alipay-global",
        "COGNITO_CLIENT_IDS": "test-buyer-app",
    }
    if protocol == "openapi":
        values |= {"ALIPAY_APP_ID": APP_ID, "ALIPAY_SELLER_ID": SELLER_ID, "SIGNING_KEY_ID": "alias/alipay-merchant"}
    elif protocol == "antom":
        values |= {
            "ANTOM_CLIENT_ID": ANTOM_CLIENT_ID,
            "SIGNING_KEY_ID": "alias/antom-merchant",
            "NOTIFY_URL": "https://pay.example.com/prod/antom/notify",
            "RETURN_URL": "https://shop.example.com/paid",
            "ANTOM_PAYMENT_METHODS": "ALIPAY_CN,ALIPAY_HK",
        }
    else:
        values |= {"ALIPAY_PARTNER_ID": PARTNER, "MERCHANT_PRIVATE_KEY_FILE": "/run/secrets/merchant.pem"}
    values |= overrides
    return {k: v for k, v in values.items() if v != ""}


@dataclass
class Kit:
    """Services over fakes, and the fakes themselves to arrange and assert on."""

    config: Config
    signer: Signer
    clock: FakeClock = field(default_factory=FakeClock)
    orders: StreamingOrderRepository = field(default_factory=StreamingOrderRepository)
    catalogue: InMemoryCatalogue = field(default_factory=InMemoryCatalogue)
    idempotency: InMemoryIdempotencyStore = field(default_factory=InMemoryIdempotencyStore)
    queue: InMemoryNotificationQueue = field(default_factory=InMemoryNotificationQueue)
    quarantine: InMemoryQuarantineStore = field(default_factory=InMemoryQuarantineStore)
    publisher: InMemoryEventPublisher = field(default_factory=InMemoryEventPublisher)
    gateway: FakeAlipayGateway = field(default_factory=FakeAlipayGateway)
    metrics: CountingMetrics = field(default_factory=CountingMetrics)
    audit: InMemoryAuditLog = field(default_factory=InMemoryAuditLog)
    dead_letters: InMemoryDeadLetters = field(default_factory=InMemoryDeadLetters)
    _streamed: int = 0

    @property
    def services(self) -> Services:
        return self._services

    def __post_init__(self) -> None:
        ports = GivenPorts(
            orders=self.orders,
            catalogue=self.catalogue,
            idempotency=self.idempotency,
            queue=self.queue,
            quarantine=self.quarantine,
            publisher=self.publisher,
            gateway=self.gateway,
            signer=self.signer,
            metrics=self.metrics,
            decode_order=order_from_item,
            audit=self.audit,
            dead_letters=self.dead_letters,
        )
        self._services = build_services(self.config, ports, now=self.clock)

    def add_order(
        self,
        out_trade_no: str = OUT_TRADE_NO,
        amount: str = "88.88",
        currency: str = "USD",
        subject: str = "Coffee",
        buyer: str | None = None,
    ) -> Order:
        order = Order.create(
            out_trade_no=out_trade_no,
            total_amount=Decimal(amount),
            currency=currency,
            subject=subject,
            now="2026-11-26T16:00:00.000Z",
            buyer=buyer,
        )
        self.orders.add(order)
        return order

    def order(self, out_trade_no: str = OUT_TRADE_NO) -> Order:
        order = self.orders.orders.get(out_trade_no)
        assert order is not None
        return order

    def new_stream_records(self) -> list[dict[str, Any]]:
        """The stream records of every change since the last call, as Lambda would deliver them."""
        records = [
            stream_record(f"{self._streamed + i + 1:021d}", old, new)
            for i, (old, new) in enumerate(self.orders.changes[self._streamed :])
        ]
        self._streamed = len(self.orders.changes)
        return records

    def relay_stream(self) -> None:
        """Run the relay over the new stream records (the events land in ``publisher.events``)."""
        records = self.new_stream_records()
        self.services.relay.handle([StreamRecord.from_lambda(r) for r in records])

    def event_types(self) -> list[str]:
        return [str(event.detail_type) for event in self.publisher.events]


class ThrottledSigner:
    """KMS, throttled ``times`` times, then signing with the merchant key."""

    def __init__(self, times: int = 1) -> None:
        self.remaining = times
        self.calls = 0
        self._signer = merchant_signer()

    @property
    def sign_type(self) -> SignType:
        return SignType.RSA2

    def sign(self, message: bytes) -> bytes:
        self.calls += 1
        if self.remaining:
            self.remaining -= 1
            raise Unavailable("KMS Sign throttled (ThrottlingException)", retry_after=2)
        return self._signer.sign(message)


def merchant_signer(protocol: str = "openapi") -> LocalKeySigner:
    """The merchant's key (``rsa_key("merchant")``) with the protocol's algorithm: openapi and antom RSA2, mapi RSA."""
    return LocalKeySigner(rsa_key("merchant"), SignType.RSA if protocol == "mapi" else SignType.RSA2)


def make_kit(
    protocol: str = "openapi",
    *,
    orders: StreamingOrderRepository | None = None,
    signer: Signer | None = None,
    **env_overrides: str,
) -> Kit:
    """A ``Kit`` for ``protocol``, optionally over a given repository or signer."""
    config = Config.from_env(env(protocol, **env_overrides))
    return Kit(
        config=config,
        signer=signer or merchant_signer(protocol),
        orders=orders or StreamingOrderRepository(),
        gateway=FakeAntomGateway() if protocol == "antom" else FakeAlipayGateway(),
    )
