"""Creating orders over fakes: validation at the edge, concurrent store and sign, rollback, idempotency."""

from __future__ import annotations

import json
import re
import threading
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, unquote

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from chalicelib.alipay.openapi import request_signed_content
from chalicelib.alipay.signing import SignType, decode_signature
from chalicelib.orders.model import Order, OrderStatus
from chalicelib.services.commands import CreateOrder
from chalicelib.services.errors import (
    BadRequest,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    OrderNotFound,
    ValidationError,
)
from chalicelib.services.ports import OrderExists, Unavailable
from chalicelib.services.views import order_view
from tests.alipay_fixtures import APP_ID, PARTNER
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, StreamingOrderRepository, ThrottledSigner, make_kit, merchant_signer

ORDER = {"subject": "Coffee beans", "total_amount": "12.34", "currency": "USD", "out_trade_no": "ORDER-1"}


def command(**overrides: Any) -> CreateOrder:
    return CreateOrder.from_json({k: v for k, v in {**ORDER, **overrides}.items() if v is not None})


def openapi_params(order_info: str) -> dict[str, str]:
    """The order string's parameters, its signature checked with the merchant's public key (SHA256withRSA)."""
    params = dict(parse_qsl(order_info, keep_blank_values=True, strict_parsing=True))
    signature = decode_signature(params.pop("sign"))
    content = request_signed_content(params).encode("utf-8")
    rsa_key("merchant").public_key().verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    return params


@pytest.fixture
def kit() -> Kit:
    return make_kit()


# --- the stored order and its order string ----------------------------------------------------------------------


def test_stores_the_order_waiting_for_payment_and_returns_201_with_a_signed_order_string(kit: Kit) -> None:
    created = kit.services.orders.create(command())
    assert created.status_code == 201
    assert not created.replayed
    body = dict(created.body)
    assert {k: body[k] for k in ("out_trade_no", "status", "total_amount", "currency")} == {
        "out_trade_no": "ORDER-1",
        "status": "WAIT_BUYER_PAY",
        "total_amount": "12.34",
        "currency": "USD",
    }
    stored = kit.order("ORDER-1")
    assert (stored.status, stored.total_amount, stored.version) == (OrderStatus.WAIT_BUYER_PAY, Decimal("12.34"), 1)
    assert stored.created_at == "2026-11-26T16:30:05.000Z"
    assert kit.metrics.counts["OrdersCreated"] == 1


def test_the_open_platform_order_string_is_signed_rsa2_with_a_beijing_timestamp_from_the_clock(kit: Kit) -> None:
    params = openapi_params(kit.services.orders.create(command(timeout="2h", body="Two bags")).body["order_info"])
    assert params["app_id"] == APP_ID
    assert params["method"] == "alipay.trade.app.pay"
    assert params["sign_type"] == "RSA2"
    assert params["timestamp"] == "2026-11-27 00:30:05"  # 16:30:05 UTC is past midnight in Beijing
    assert params["notify_url"] == "https://pay.example.com/alipay/notify"
    biz = json.loads(params["biz_content"])
    assert biz == {
        "out_trade_no": "ORDER-1",
        "total_amount": "12.34",
        "subject": "Coffee beans",
        "product_code": "QUICK_MSECURITY_PAY",
        "body": "Two bags",
        "timeout_express": "2h",
        "trans_currency": "USD",
        # Absolute expiry (issue 15 #1): the order's pay_by in Beijing time, so Alipay refuses a later payment.
        "time_expire": "2026-11-27 02:30:05",
    }
    assert kit.order("ORDER-1").pay_by == "2026-11-26T18:30:05.000Z"


def test_a_cny_order_is_priced_in_cny_without_trans_currency_and_uses_the_default_timeout(kit: Kit) -> None:
    params = openapi_params(kit.services.orders.create(command(currency="CNY")).body["order_info"])
    biz = json.loads(params["biz_content"])
    assert "trans_currency" not in biz
    assert biz["timeout_express"] == "30m"


def test_the_legacy_order_string_is_signed_sha1_with_the_local_key_and_carries_currency_and_timeout() -> None:
    kit = make_kit("mapi")
    order_info = kit.services.orders.create(command(timeout="1d")).body["order_info"]
    content, _, tail = order_info.partition('&sign="')
    signature = decode_signature(unquote(tail.split('"', 1)[0]))
    rsa_key("merchant").public_key().verify(signature, content.encode(), padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    assert order_info.endswith('&sign_type="RSA"')
    for part in (f'partner="{PARTNER}"', 'total_fee="12.34"', 'currency="USD"', 'it_b_pay="1d"', 'body="Coffee beans"'):
        assert part in content


def test_generates_a_time_ordered_random_out_trade_no_when_the_client_sends_none(kit: Kit) -> None:
    first = kit.services.orders.create(command(out_trade_no=None)).body["out_trade_no"]
    second = kit.services.orders.create(command(out_trade_no=None)).body["out_trade_no"]
    kit.clock.advance(milliseconds=1)
    later = kit.services.orders.create(command(out_trade_no=None)).body["out_trade_no"]
    assert re.fullmatch(r"20261126163005000[0-9a-f]{12}", first)
    assert first != second
    assert max(first, second) < later
    assert kit.order(first).status is OrderStatus.WAIT_BUYER_PAY


# --- validation at the edge --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("total_amount", {"total_amount": "0"}),
        ("total_amount", {"total_amount": "-1.00"}),
        ("total_amount", {"total_amount": "1.234"}),
        ("total_amount", {"total_amount": "100000000.01"}),
        ("total_amount", {"total_amount": "12,34"}),
        ("total_amount", {"total_amount": 12.34}),
        ("currency", {"currency": "EUR"}),
        ("currency", {"currency": "usd"}),
        ("subject", {"subject": ""}),
        ("subject", {"subject": "x" * 257}),
        ("subject", {"subject": "line\nbreak"}),
        ("body", {"body": "x" * 129}),
        ("out_trade_no", {"out_trade_no": "has/slash"}),
        ("out_trade_no", {"out_trade_no": "x" * 65}),
        ("timeout", {"timeout": "0m"}),
        ("timeout", {"timeout": "16d"}),
        ("timeout", {"timeout": "30s"}),
        ("amount", {"amount": "12.34"}),
        ("subject", {"subject": None}),
        ("currency", {"currency": ["USD"]}),
    ],
)
def test_an_invalid_field_is_named_and_nothing_is_stored(kit: Kit, field: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        kit.services.orders.create(command(**overrides))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert kit.orders.orders == {}


@pytest.mark.parametrize("body", [[], "order", None, 3])
def test_a_body_that_is_not_a_json_object_is_a_bad_request(body: object) -> None:
    with pytest.raises(BadRequest):
        CreateOrder.from_json(body)


def test_the_legacy_protocol_refuses_a_double_quote_it_cannot_carry_before_storing_anything() -> None:
    kit = make_kit("mapi")
    with pytest.raises(ValidationError) as caught:
        kit.services.orders.create(command(subject='The "best" beans'))
    assert caught.value.field == "subject"
    assert kit.orders.orders == {}


def test_an_existing_out_trade_no_is_a_conflict_and_the_stored_order_is_untouched(kit: Kit) -> None:
    kit.services.orders.create(command())
    with pytest.raises(OrderExists):
        kit.services.orders.create(command(total_amount="99.00"))
    assert kit.order("ORDER-1").total_amount == Decimal("12.34")
    assert kit.metrics.counts["OrdersCreated"] == 1


# --- store and sign, concurrently; rollback -----------------------------------------------------------------------


class PutThatWaitsForTheSigner(StreamingOrderRepository):
    """A put that does not finish until the signature is being made: only concurrency can satisfy both."""

    def __init__(self) -> None:
        super().__init__()
        self.put_started = threading.Event()
        self.signing = threading.Event()

    def add(self, order: Order) -> None:
        self.put_started.set()
        assert self.signing.wait(timeout=5), "the order was stored before signing began"
        super().add(order)


class SignerThatWaitsForThePut:
    def __init__(self, orders: PutThatWaitsForTheSigner) -> None:
        self._orders = orders
        self.saw_put_in_flight = False
        self._signer = merchant_signer()

    @property
    def sign_type(self) -> SignType:
        return SignType.RSA2

    def sign(self, message: bytes) -> bytes:
        self._orders.signing.set()
        self.saw_put_in_flight = self._orders.put_started.wait(timeout=5)
        return self._signer.sign(message)


def test_the_put_and_the_signature_run_concurrently() -> None:
    orders = PutThatWaitsForTheSigner()
    signer = SignerThatWaitsForThePut(orders)
    kit = make_kit(orders=orders, signer=signer)
    kit.services.orders.create(command())
    assert signer.saw_put_in_flight
    assert "ORDER-1" in orders.orders


def test_kms_throttling_answers_unavailable_with_retry_after_and_leaves_no_order_behind() -> None:
    kit = make_kit(signer=ThrottledSigner(times=1))
    with pytest.raises(Unavailable) as caught:
        kit.services.orders.create(command())
    assert caught.value.retry_after == 2
    assert kit.orders.orders == {}
    assert "OrdersCreated" not in kit.metrics.counts
    # The retry finds the number free again and succeeds.
    assert kit.services.orders.create(command()).status_code == 201


class RollbackFails(StreamingOrderRepository):
    def remove_unsigned(self, out_trade_no: str) -> None:
        raise Unavailable("DynamoDB throttled")


def test_a_failed_rollback_still_reports_the_signing_failure() -> None:
    kit = make_kit(orders=RollbackFails(), signer=ThrottledSigner(times=1))
    with pytest.raises(Unavailable, match="KMS"):
        kit.services.orders.create(command())
    assert kit.order("ORDER-1").version == 1  # left unsigned and logged: nobody holds an order string for it


def test_a_failed_put_discards_the_signature_and_stores_nothing(kit: Kit) -> None:
    kit.orders.fail_with(Unavailable("DynamoDB throttled"))
    with pytest.raises(Unavailable):
        kit.services.orders.create(command())
    assert kit.orders.orders == {}


# --- Idempotency-Key ----------------------------------------------------------------------------------------------


def test_the_same_key_and_body_get_the_same_response_and_create_one_order(kit: Kit) -> None:
    first = kit.services.orders.create(command(out_trade_no=None), "key-1")
    again = kit.services.orders.create(command(out_trade_no=None), "key-1")
    assert again.replayed
    assert (again.status_code, dict(again.body)) == (first.status_code, dict(first.body))
    assert len(kit.orders.orders) == 1
    assert kit.metrics.counts["OrdersCreated"] == 1


def test_the_same_key_with_a_different_body_is_a_conflict(kit: Kit) -> None:
    kit.services.orders.create(command(), "key-1")
    with pytest.raises(IdempotencyKeyReused):
        kit.services.orders.create(command(total_amount="99.99"), "key-1")


def test_the_same_key_while_the_first_request_is_in_progress_is_a_conflict_saying_so(kit: Kit) -> None:
    kit.idempotency.claim("key-1", command().request_hash(), now=int(kit.clock().timestamp()), ttl=60, lock_seconds=60)
    with pytest.raises(IdempotencyKeyInProgress, match="in progress"):
        kit.services.orders.create(command(), "key-1")
    assert kit.orders.orders == {}


def test_a_failed_request_releases_its_key_so_the_retry_runs() -> None:
    kit = make_kit(signer=ThrottledSigner(times=1))
    with pytest.raises(Unavailable):
        kit.services.orders.create(command(), "key-1")
    assert kit.services.orders.create(command(), "key-1").status_code == 201


def test_the_request_hash_ignores_key_order_but_not_values() -> None:
    a = CreateOrder.from_json({"subject": "s", "total_amount": "1.00", "currency": "USD"})
    b = CreateOrder.from_json({"currency": "USD", "total_amount": "1.00", "subject": "s"})
    c = CreateOrder.from_json({"currency": "USD", "total_amount": "1.0", "subject": "s"})
    assert a.request_hash() == b.request_hash() != c.request_hash()


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "ключ"])
def test_an_unusable_idempotency_key_is_named(kit: Kit, key: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kit.services.orders.create(command(), key)
    assert caught.value.field == "Idempotency-Key"


def test_an_idempotency_store_outage_before_the_claim_creates_nothing(kit: Kit) -> None:
    kit.idempotency.fail_with(Unavailable("DynamoDB throttled"))
    with pytest.raises(Unavailable):
        kit.services.orders.create(command(), "key-1")
    assert kit.orders.orders == {}


# --- reading ------------------------------------------------------------------------------------------------------


def test_reads_an_order_back_with_its_public_fields(kit: Kit) -> None:
    kit.services.orders.create(command())
    view = order_view(kit.services.orders.get("ORDER-1"))
    assert view == {
        "out_trade_no": "ORDER-1",
        "status": "WAIT_BUYER_PAY",
        "total_amount": "12.34",
        "currency": "USD",
        "updated_at": "2026-11-26T16:30:05.000Z",
    }


def test_an_unknown_order_is_not_found(kit: Kit) -> None:
    with pytest.raises(OrderNotFound):
        kit.services.orders.get("NOPE")


def test_a_number_no_order_could_have_is_not_found_without_reading_the_table(kit: Kit) -> None:
    with pytest.raises(OrderNotFound):
        kit.services.orders.get("x" * 2000)
    assert kit.orders.calls == 0


def test_amounts_read_back_are_shown_with_two_places_whatever_the_store_returns(kit: Kit) -> None:
    kit.add_order("ORDER-2", amount="12.3")
    kit.add_order("ORDER-3", amount="1E+2")
    assert order_view(kit.services.orders.get("ORDER-2"))["total_amount"] == "12.30"
    assert order_view(kit.services.orders.get("ORDER-3"))["total_amount"] == "100.00"
