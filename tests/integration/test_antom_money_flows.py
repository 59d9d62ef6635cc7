"""Money through the Antom gateway: today's refund service and reconciler over ``HttpAntomGateway`` and a fake Antom.

Antom's ``U`` answer to a refund (``REFUND_IN_PROCESS``) must never be taken for a refund that moved the money: the
order's refunded total changes only once Antom's ``inquiryRefund`` says ``SUCCESS`` (docs/protocols.md §7.4).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal

import pytest
import urllib3

from chalicelib.adapters.antom_gateway import HttpAntomGateway
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner
from chalicelib.orders.model import ClosedReason, OrderStatus, Refund, RefundKind, RefundStatus, return_request_no
from chalicelib.services.clock import iso_utc
from chalicelib.services.errors import AlreadyResolved
from chalicelib.services.operations import OperatorRequest, entry_id
from chalicelib.services.ports import Unavailable
from tests.alipay_fixtures import OUT_TRADE_NO, alipay_key
from tests.antom_gateway_server import FakeAntom, FakePayment, Fault
from tests.antom_kit import refund_notification, sign
from tests.keygen import rsa_key
from tests.unit.services_kit import ANTOM_CLIENT_ID, Kit, LaggingPendingIndex, make_kit

CLIENT_ID = "2188120000000001"


@pytest.fixture
def fake() -> Iterator[FakeAntom]:
    server = FakeAntom(rsa_key("antom"), rsa_key("merchant").public_key(), client_id=CLIENT_ID)
    server.add_payment(FakePayment(OUT_TRADE_NO, "P-1", "USD", "8888", "SUCCESS"))
    with server.running():
        yield server


def _gateway(fake: FakeAntom, pool: urllib3.PoolManager) -> HttpAntomGateway:
    return HttpAntomGateway(
        gateway_url=fake.url,
        client_id=CLIENT_ID,
        signer=LocalKeySigner(rsa_key("merchant")),
        antom_keys=AlipayPublicKeys.of(rsa_key("antom").public_key()),
        notify_url="https://pay.example.com/prod/antom/notify",
        pool=pool,
        backoff=0.0,
    )


@pytest.fixture
def kit(fake: FakeAntom) -> Iterator[Kit]:
    pool = urllib3.PoolManager(retries=False)
    kit = make_kit()
    kit.gateway = _gateway(fake, pool)  # type: ignore[assignment] - the kit's field is typed for its own fake
    kit.__post_init__()  # rebuild the services over the Antom gateway
    kit.add_order(amount="88.88")
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.TRADE_SUCCESS, version=2)
    yield kit
    pool.clear()


def test_a_refund_antom_made_at_once_is_confirmed(kit: Kit, fake: FakeAntom) -> None:
    answer = kit.services.refunds.refund(OUT_TRADE_NO, {"amount": "10.00", "out_request_no": "R-1"})
    assert answer["status"] == "REFUND_SUCCESS"
    assert kit.order().refund_fee == Decimal("10.00")
    assert fake.refunds["R-1"]["value"] == "1000"


def test_a_refund_in_process_stays_pending_until_antom_says_success(kit: Kit, fake: FakeAntom) -> None:
    fake.refund_answer = "U"
    answer = kit.services.refunds.refund(OUT_TRADE_NO, {"amount": "10.00", "out_request_no": "R-1"})

    assert answer["status"] != "REFUND_SUCCESS"
    assert kit.order().refunds["R-1"].status is RefundStatus.PENDING
    assert not kit.order().refund_fee  # nothing refunded yet

    fake.refunds["R-1"]["status"] = "SUCCESS"  # Antom finishes the refund
    kit.clock.advance(minutes=10)  # past the sweep's minimum age
    kit.services.reconciler.run()

    assert kit.order().refunds["R-1"].status is RefundStatus.SUCCEEDED
    assert kit.order().refund_fee == Decimal("10.00")
    assert len(fake.refunds) == 1  # refunded once at Antom


def test_reconciliation_pays_an_order_antom_says_is_paid_in_minor_units(kit: Kit, fake: FakeAntom) -> None:
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.WAIT_BUYER_PAY, version=1)
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    assert kit.order().status is OrderStatus.TRADE_SUCCESS
    assert kit.order().trade_no == "P-1"


def test_reconciliation_never_pays_an_order_for_another_amount(kit: Kit, fake: FakeAntom) -> None:
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.WAIT_BUYER_PAY, version=1)
    fake.payments[OUT_TRADE_NO].value = "888"  # 8.88, not 88.88
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    assert kit.order().status is OrderStatus.WAIT_BUYER_PAY


def test_a_late_payment_antoms_cancel_refunded_already_is_recorded_returned_without_a_refund(
    kit: Kit, fake: FakeAntom
) -> None:
    """The close on expiry crossed the payment: ``payments/cancel`` of a payment that had just succeeded refunds it at
    Antom (documented), and its notifyPayment S arrives after. The return the product then asks for is refused (the
    payment is CANCELLED); ``inquiryPayment`` says so, and the return is recorded done: no second refund, no alarm."""
    now = iso_utc(kit.clock())
    number = return_request_no(OUT_TRADE_NO, "P-1")
    closed = replace(
        kit.order(), status=OrderStatus.TRADE_CLOSED, closed_reason=ClosedReason.TIMEOUT, trade_no="P-1", version=3
    )
    give_back = Refund(
        number, Decimal("88.88"), RefundStatus.PENDING, now, "paid after the order closed", kind=RefundKind.RETURN
    )
    kit.orders.orders[OUT_TRADE_NO] = closed.with_refund(give_back, now)
    fake.payments[OUT_TRADE_NO].status = "CANCELLED"  # paid, then cancelled: Antom gave the money back

    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()

    assert kit.order().refunds[number].status is RefundStatus.SUCCEEDED
    assert fake.refunds == {}  # Antom refused the second return; nothing was refunded twice
    assert kit.metrics.counts["PaymentsReturned"] == 1
    assert kit.metrics.counts.get("PaymentReturnsRefused", 0) == 0


def test_a_refund_that_never_reached_antom_is_asked_again_by_the_sweep_and_made_once(kit: Kit, fake: FakeAntom) -> None:
    """Antom's gateway fails every attempt of the merchant's refund (none reached it): the refund stays pending, and
    the sweep, finding that Antom knows no such refund, asks for it again under the same refundRequestId."""
    fake.fail_next(Fault.HTTP_500, Fault.HTTP_500, Fault.HTTP_500)
    with pytest.raises(Unavailable):
        kit.services.refunds.refund(OUT_TRADE_NO, {"amount": "10.00", "out_request_no": "R-1"})
    assert kit.order().refunds["R-1"].status is RefundStatus.PENDING
    assert fake.refunds == {}

    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    kit.services.reconciler.run()

    assert kit.order().refunds["R-1"].status is RefundStatus.SUCCEEDED
    assert kit.order().refund_fee == Decimal("10.00")
    assert list(fake.refunds) == ["R-1"]  # made once


# --- an operator's replay of a quarantined notifyRefund --------------------------------------------------------


@pytest.fixture
def antom_stage(fake: FakeAntom) -> Iterator[tuple[Kit, LaggingPendingIndex]]:
    """An Antom stage (its flavour, its consumer of notifyRefund) over the Antom gateway, with a lagging index."""
    pool = urllib3.PoolManager(retries=False)
    orders = LaggingPendingIndex()
    kit = make_kit("antom", orders=orders)
    kit.gateway = _gateway(fake, pool)  # type: ignore[assignment] - the kit's field is typed for its own fake
    kit.__post_init__()
    kit.add_order(amount="88.88")
    kit.orders.orders[OUT_TRADE_NO] = replace(kit.order(), status=OrderStatus.TRADE_SUCCESS, trade_no="P-1", version=2)
    yield kit, orders
    pool.clear()


def test_a_replayed_refund_notification_settles_the_refund_once_and_antom_refunds_once(
    antom_stage: tuple[Kit, LaggingPendingIndex], fake: FakeAntom
) -> None:
    """Antom answers U; its notifyRefund (naming no order) arrives while the pending-refunds index lags, and is
    quarantined. The operator's replay records the refund done; the sweep afterwards asks Antom nothing more, and a
    second replay is refused: the money is counted once, and Antom was asked for it once."""
    kit, orders = antom_stage
    fake.refund_answer = "U"
    kit.services.refunds.refund(OUT_TRADE_NO, {"amount": "10.00", "out_request_no": "R-1"})
    assert kit.order().refunds["R-1"].status is RefundStatus.PENDING
    fake.refunds["R-1"]["status"] = "SUCCESS"  # Antom finishes the refund and notifies it
    body = refund_notification("R-1", value="1000")
    orders.lagging = True
    kit.services.intake.accept(body, "application/json", sign(body, key=alipay_key(), client_id=ANTOM_CLIENT_ID))
    kit.services.consumer.apply(kit.queue.messages[-1])
    orders.lagging = False
    entry = entry_id("REFUND_RESULT:R-1:SUCCESS")
    assert kit.quarantine.records["REFUND_RESULT:R-1:SUCCESS"].resolution is None
    assert not kit.order().refund_fee

    operator = OperatorRequest(by="arn:aws:iam::000000000000:user/ops", reason="index caught up")
    result = kit.services.operations.replay(entry, operator)

    assert (result["outcome"], result["resolved"]) == ("applied", True)
    assert kit.order().refunds["R-1"].status is RefundStatus.SUCCEEDED
    kit.clock.advance(minutes=10)
    kit.services.reconciler.run()
    with pytest.raises(AlreadyResolved):
        kit.services.operations.replay(entry, operator)
    assert kit.order().refund_fee == Decimal("10.00")
    assert kit.metrics.counts["RefundsConfirmed"] == 1
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests].count("refund") == 1
    assert list(fake.refunds) == ["R-1"]
