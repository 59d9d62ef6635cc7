"""``HttpAntomGateway`` against a fake Antom on 127.0.0.1 (real HTTP, real signatures both ways, no internet)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3

from chalicelib.adapters.alipay_gateway import GatewayConfigError, GatewayError, UnverifiedReply
from chalicelib.adapters.antom_gateway import DEFAULT_GATEWAY_URL, HttpAntomGateway
from chalicelib.alipay import antom
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType
from chalicelib.services.ports import NotSupported, RefundRefused, Unavailable
from tests.antom_gateway_server import FakeAntom, FakePayment, Fault
from tests.keygen import rsa_key

CLIENT_ID = "2188120000000001"
NOTIFY_URL = "https://pay.example.com/prod/antom/notify"
NOW = datetime(2026, 12, 5, 10, 30, tzinfo=UTC)
ORDER = "ORDER-20261205-0001"


@pytest.fixture
def fake() -> Iterator[FakeAntom]:
    server = FakeAntom(
        antom_key=rsa_key("antom"),
        merchant_public_key=rsa_key("merchant").public_key(),
        client_id=CLIENT_ID,
        other_key=rsa_key("other"),
    )
    with server.running():
        yield server


@pytest.fixture
def pool() -> Iterator[urllib3.PoolManager]:
    manager = urllib3.PoolManager(retries=False)
    yield manager
    manager.clear()


def gateway(fake: FakeAntom, pool: urllib3.PoolManager, **options: Any) -> HttpAntomGateway:
    settings: dict[str, Any] = {
        "gateway_url": fake.url,
        "client_id": CLIENT_ID,
        "signer": LocalKeySigner(rsa_key("merchant")),
        "antom_keys": AlipayPublicKeys.of(rsa_key("antom").public_key()),
        "notify_url": NOTIFY_URL,
        "pool": pool,
        "clock": lambda: NOW,
        "backoff": 0.0,
        "read_timeout": 2.0,
    }
    settings.update(options)
    return HttpAntomGateway(**settings)


def pay(gw: HttpAntomGateway, **overrides: Any) -> antom.PayReply:
    options: dict[str, Any] = {
        "out_trade_no": ORDER,
        "subject": "Tea",
        "amount": Decimal("12.34"),
        "currency": "USD",
        "payment_method_type": "ALIPAY_CN",
        "redirect_url": "https://shop.example.com/paid",
        "expiry": NOW + timedelta(minutes=30),
        "terminal_type": "WAP",
        "os_type": "IOS",
    }
    options.update(overrides)
    return gw.pay_request(**options)


def paid(fake: FakeAntom, status: str = "SUCCESS", value: str = "1234", currency: str = "USD") -> None:
    fake.add_payment(FakePayment(ORDER, "P-1", currency, value, status))


# --- pay ----------------------------------------------------------------------------------------------------


def test_pay_is_a_signed_post_antom_verifies_and_its_answer_is_read(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    reply = pay(gateway(fake, pool))

    [request] = fake.requests
    assert request.signature_valid is True
    assert request.path == antom.PAY_PATH
    assert request.headers["request-time"] == "1796466600000"  # milliseconds, as the Java SDK sends
    assert request.headers["content-type"] == "application/json; charset=UTF-8"
    body = json.loads(request.body)
    assert body["paymentNotifyUrl"] == NOTIFY_URL
    assert body["paymentAmount"] == {"currency": "USD", "value": "1234"}
    assert body["paymentExpiryTime"] == "2026-12-05T11:00:00+00:00"
    assert reply.accepted is True
    assert reply.payment_id == f"P-{ORDER}"
    assert reply.normal_url == f"https://cashier.example/{ORDER}"
    assert reply.scheme_url == f"alipays://pay?{ORDER}"


def test_pay_refused_by_antom_comes_back_with_its_code(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    reply = pay(gateway(fake, pool, signer=LocalKeySigner(rsa_key("other"))))
    assert reply.accepted is False
    assert (reply.result_status, reply.result_code) == ("F", "INVALID_SIGNATURE")


def test_pay_with_an_unknown_answer_is_asked_again_with_the_same_signed_request(
    fake: FakeAntom, pool: urllib3.PoolManager
) -> None:
    fake.fail_next(Fault.UNKNOWN)
    reply = pay(gateway(fake, pool))
    assert reply.accepted
    first, second = fake.requests
    assert (first.body, first.headers["signature"]) == (second.body, second.headers["signature"])


# --- inquiryPayment -------------------------------------------------------------------------------------------


def test_query_of_a_payment_antom_does_not_know_is_not_found(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    result = gateway(fake, pool).query_trade(ORDER)
    assert result.found is False
    assert result.raw["result.resultCode"] == "ORDER_NOT_EXIST"


@pytest.mark.parametrize(
    ("status", "trade_status"),
    [("SUCCESS", "TRADE_SUCCESS"), ("FAIL", "TRADE_CLOSED"), ("CANCELLED", "TRADE_CLOSED"),
     ("PROCESSING", "WAIT_BUYER_PAY"), ("PENDING", "WAIT_BUYER_PAY")],
)  # fmt: skip
def test_query_maps_antoms_payment_status(
    fake: FakeAntom, pool: urllib3.PoolManager, status: str, trade_status: str
) -> None:
    paid(fake, status)
    result = gateway(fake, pool).query_trade(ORDER)
    assert (result.found, result.trade_status, result.trade_no) == (True, trade_status, "P-1")
    assert (result.total_amount, result.currency) == (Decimal("12.34"), "USD")


def test_query_amounts_are_read_in_the_currencys_minor_unit(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake, value="1234", currency="JPY")
    assert gateway(fake, pool).query_trade(ORDER).total_amount == Decimal(1234)


def test_an_unknown_inquiry_answer_is_retried(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake)
    fake.fail_next(Fault.UNKNOWN)
    assert gateway(fake, pool).query_trade(ORDER).trade_status == "TRADE_SUCCESS"
    assert len(fake.requests) == 2


# --- cancel ---------------------------------------------------------------------------------------------------


def test_cancel_of_an_unpaid_payment_closes_it(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake, "PROCESSING")
    result = gateway(fake, pool).close_trade(ORDER)
    assert (result.closed, result.found, result.sub_code) == (True, True, None)
    assert fake.payments[ORDER].status == "CANCELLED"


def test_cancel_of_a_paid_payment_is_not_closed_and_says_why(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake, "SUCCESS")
    result = gateway(fake, pool).close_trade(ORDER)
    assert (result.closed, result.found, result.sub_code) == (False, True, "ORDER_STATUS_INVALID")


def test_cancel_of_a_payment_antom_does_not_know_is_not_found(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    result = gateway(fake, pool).close_trade(ORDER)
    assert (result.closed, result.found) == (False, False)


# --- refund ---------------------------------------------------------------------------------------------------


def test_a_refund_antom_made_moved_the_money(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake)
    result = gateway(fake, pool).refund(ORDER, Decimal("5.00"), "R-1", "damaged", "USD", trade_no="P-1")
    assert (result.out_request_no, result.fund_change, result.refund_fee) == ("R-1", True, None)
    [request] = fake.requests
    body = json.loads(request.body)
    assert body == {
        "refundRequestId": "R-1",
        "paymentId": "P-1",
        "refundAmount": {"currency": "USD", "value": "500"},
        "refundReason": "damaged",
        "refundNotifyUrl": NOTIFY_URL,
        "metadata": ORDER,  # returned in notifyRefund, which names no payment: how its order is found
    }


def test_a_refund_in_process_is_not_confirmed(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    # The services believe a refund_fee-bearing fund_change=False answer only once query_refund says SUCCESS.
    paid(fake)
    fake.refund_answer = "U"
    result = gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, "USD", trade_no="P-1")
    assert (result.fund_change, result.refund_fee) == (False, Decimal(0))
    assert gateway(fake, pool).query_refund(ORDER, "R-1").refunded is False


def test_a_refund_antom_refuses_is_refused_for_good(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake, "PROCESSING")
    with pytest.raises(RefundRefused) as caught:
        gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, "USD", trade_no="P-1")
    assert caught.value.sub_code == "ORDER_STATUS_INVALID"


def test_a_refund_without_the_payment_id_asks_antom_for_it_first(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake)
    assert gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, "USD").fund_change is True
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == ["inquiryPayment", "refund"]


def test_a_refund_of_a_payment_antom_does_not_know_is_refused(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    with pytest.raises(RefundRefused) as caught:
        gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, "USD")
    assert caught.value.sub_code == "ORDER_NOT_EXIST"


def test_a_refund_needs_the_currency(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    with pytest.raises(ValueError, match="currency"):
        gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, None, trade_no="P-1")
    assert fake.requests == []


def test_a_refund_resent_after_a_server_error_is_the_same_request(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake)
    fake.fail_next(Fault.HTTP_500)
    assert gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, "USD", trade_no="P-1").fund_change
    first, second = fake.requests
    assert (first.body, first.headers["signature"]) == (second.body, second.headers["signature"])
    assert len(fake.refunds) == 1


# --- inquiryRefund --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "refunded", "failed"), [("SUCCESS", True, False), ("PROCESSING", False, False), ("FAIL", False, True)]
)
def test_refund_query_maps_each_status(
    fake: FakeAntom, pool: urllib3.PoolManager, status: str, refunded: bool, failed: bool
) -> None:
    fake.refunds["R-1"] = {"status": status, "currency": "KRW", "value": "15000"}
    result = gateway(fake, pool).query_refund(ORDER, "R-1")
    assert (result.found, result.refunded, result.failed) == (True, refunded, failed)
    assert result.refund_amount == Decimal(15000)


def test_refund_query_of_a_refund_antom_does_not_know_is_neither_done_nor_failed(
    fake: FakeAntom, pool: urllib3.PoolManager
) -> None:
    """Antom's "no such refund" speaks of the refund, not the payment: ``found`` (the trade's) stays True so that the
    services may ask for a refund that never reached Antom (refunds.py: ``resend and query.found``)."""
    result = gateway(fake, pool).query_refund(ORDER, "R-9")
    assert (result.found, result.refunded, result.failed) == (True, False, False)


@pytest.mark.parametrize("api", ["inquiryPayment", "inquiryRefund"])
def test_a_read_antom_refuses_is_a_gateway_error_naming_its_code_not_retried(
    fake: FakeAntom, pool: urllib3.PoolManager, api: str
) -> None:
    paid(fake)
    gw = gateway(fake, pool, signer=LocalKeySigner(rsa_key("other")))  # Antom answers F INVALID_SIGNATURE
    reads: dict[str, Callable[[], object]] = {
        "inquiryPayment": lambda: gw.query_trade(ORDER),
        "inquiryRefund": lambda: gw.query_refund(ORDER, "R-1"),
    }
    with pytest.raises(GatewayError) as caught:
        reads[api]()
    assert caught.value.code == "INVALID_SIGNATURE"
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests] == [api]


# --- transport and verification --------------------------------------------------------------------------------


def test_server_errors_that_persist_give_unavailable(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    fake.fail_next(Fault.HTTP_500, Fault.HTTP_500, Fault.HTTP_500)
    with pytest.raises(Unavailable):
        gateway(fake, pool, max_attempts=3).query_trade(ORDER)
    assert len(fake.requests) == 3


def test_a_slow_answer_is_retried_within_the_deadline(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    paid(fake)
    fake.fail_next(Fault.SLOW)
    assert gateway(fake, pool, read_timeout=0.2).query_trade(ORDER).found is True


def test_an_http_client_error_is_a_gateway_error_not_retried(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    fake.fail_next(Fault.HTTP_400)
    with pytest.raises(GatewayError):
        gateway(fake, pool).query_trade(ORDER)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("fault", "check"),
    [(Fault.TAMPER, "signature"), (Fault.UNSIGNED, "missing_header"), (Fault.OTHER_KEY, "signature")],
)
def test_a_reply_that_fails_verification_is_never_acted_on(
    fake: FakeAntom, pool: urllib3.PoolManager, fault: Fault, check: str
) -> None:
    paid(fake, "PROCESSING")
    fake.fail_next(fault)
    with pytest.raises(UnverifiedReply) as caught:
        gateway(fake, pool).close_trade(ORDER)
    assert caught.value.check == check
    assert len(fake.requests) == 1


# A genuine reply, signed by Antom, replayed to another request: its signature verifies, what it names does not.
OTHER_ORDER = "ORDER-20261205-0002"


def test_a_replayed_inquiry_reply_naming_another_paid_order_never_reads_as_ours(
    fake: FakeAntom, pool: urllib3.PoolManager
) -> None:
    paid(fake, "PROCESSING")
    fake.add_payment(FakePayment(OTHER_ORDER, "P-2", "USD", "1234", "SUCCESS"))
    gw = gateway(fake, pool)
    assert gw.query_trade(OTHER_ORDER).trade_status == "TRADE_SUCCESS"
    fake.fail_next(Fault.REPLAY)
    with pytest.raises(UnverifiedReply) as caught:
        gw.query_trade(ORDER)
    assert (caught.value.check, len(fake.requests)) == ("mismatch", 2)  # refused, not retried
    assert gw.query_trade(ORDER).trade_status == "WAIT_BUYER_PAY"  # the order's own answer


def test_a_replayed_cancel_success_for_another_order_does_not_close_ours(
    fake: FakeAntom, pool: urllib3.PoolManager
) -> None:
    paid(fake, "PROCESSING")
    fake.add_payment(FakePayment(OTHER_ORDER, "P-2", "USD", "1234", "PROCESSING"))
    gw = gateway(fake, pool)
    assert gw.close_trade(OTHER_ORDER).closed
    fake.fail_next(Fault.REPLAY)
    with pytest.raises(UnverifiedReply) as caught:
        gw.close_trade(ORDER)
    assert caught.value.check == "mismatch"
    assert fake.payments[ORDER].status == "PROCESSING"


def test_a_replayed_refund_success_for_another_refund_does_not_confirm_ours(
    fake: FakeAntom, pool: urllib3.PoolManager
) -> None:
    paid(fake)
    gw = gateway(fake, pool)
    assert gw.refund(ORDER, Decimal(5), "R-2", None, "USD", trade_no="P-1").out_request_no == "R-2"
    fake.fail_next(Fault.REPLAY)
    with pytest.raises(UnverifiedReply) as caught:
        gw.refund(ORDER, Decimal(5), "R-1", None, "USD", trade_no="P-1")
    assert caught.value.check == "mismatch"  # our refund stays unknown (the sweep asks again), never confirmed


def test_a_tampered_refund_reply_leaves_the_refund_unknown_not_refused(
    fake: FakeAntom, pool: urllib3.PoolManager
) -> None:
    paid(fake)
    fake.fail_next(Fault.TAMPER)
    with pytest.raises(UnverifiedReply):
        gateway(fake, pool).refund(ORDER, Decimal(5), "R-1", None, "USD", trade_no="P-1")


def test_a_sandbox_client_calls_antoms_sandbox_paths(pool: urllib3.PoolManager) -> None:
    server = FakeAntom(rsa_key("antom"), rsa_key("merchant").public_key(), client_id="SANDBOX_5YEZ0A2ZMTEST0001")
    with server.running():
        gw = gateway(server, pool, client_id="SANDBOX_5YEZ0A2ZMTEST0001")
        assert gw.query_trade(ORDER).found is False
    [request] = server.requests
    assert request.path == "/ams/sandbox/api/v1/payments/inquiryPayment"
    assert request.signature_valid is True


def test_a_base_url_path_prefix_is_part_of_what_is_signed_both_ways(pool: urllib3.PoolManager) -> None:
    server = FakeAntom(rsa_key("antom"), rsa_key("merchant").public_key(), client_id=CLIENT_ID, prefix="/gw")
    server.add_payment(FakePayment(ORDER, "P-1", "USD", "100", "SUCCESS"))
    with server.running():
        assert gateway(server, pool).query_trade(ORDER).total_amount == Decimal("1.00")
    [request] = server.requests
    assert request.path == "/gw/ams/api/v1/payments/inquiryPayment"
    assert request.signature_valid is True


def test_notify_verify_is_not_an_antom_call(fake: FakeAntom, pool: urllib3.PoolManager) -> None:
    with pytest.raises(NotSupported):
        gateway(fake, pool).notify_verify("x")


# --- configuration ----------------------------------------------------------------------------------------------


def test_from_config_defaults_to_antoms_asia_gateway() -> None:
    config = SimpleNamespace(gateway_url=None, antom_client_id=CLIENT_ID, notify_url=NOTIFY_URL)
    gw = HttpAntomGateway.from_config(
        config, LocalKeySigner(rsa_key("merchant")), AlipayPublicKeys.of(rsa_key("antom").public_key())
    )
    assert gw._endpoint(antom.PAY_PATH) == (DEFAULT_GATEWAY_URL + antom.PAY_PATH, antom.PAY_PATH)


@pytest.mark.parametrize(
    "options",
    [{"client_id": ""}, {"signer": LocalKeySigner(rsa_key("merchant"), SignType.RSA)},
     {"gateway_url": "http://antom.example.com"}, {"notify_url": "/antom/notify"}, {"max_attempts": 0},
     {"gateway_url": "https://openapi.alipay.com/gateway.do"}],
)  # fmt: skip
def test_a_gateway_that_cannot_work_is_refused_at_construction(options: dict[str, Any]) -> None:
    settings: dict[str, Any] = {
        "gateway_url": DEFAULT_GATEWAY_URL,
        "client_id": CLIENT_ID,
        "signer": LocalKeySigner(rsa_key("merchant")),
        "antom_keys": AlipayPublicKeys.of(rsa_key("antom").public_key()),
    } | options
    with pytest.raises(GatewayConfigError):
        HttpAntomGateway(**settings)
