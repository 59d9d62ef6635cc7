"""``HttpAlipayGateway`` against the fake Alipay gateway on 127.0.0.1 (real HTTP, real signatures, no internet)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
import urllib3

from chalicelib.adapters.alipay_gateway import GatewayConfigError, GatewayError, HttpAlipayGateway, UnverifiedReply
from chalicelib.alipay.errors import (
    ErrorReply,
    MalformedMessage,
    MissingSignature,
    RefundRefusal,
    SignatureMismatch,
)
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType
from chalicelib.services.ports import AlipayGateway, RefundRefused, TradeQueryResult, Unavailable
from tests.gateway_server import FakeAlipayGateway, FakeTrade, Fault
from tests.keygen import rsa_key

APP_ID = "2021000123456789"
PARTNER = "2088102177649450"
ORDER = "ORDER-20240310-0001"
# 16:30:05 UTC is 00:30:05 the next day in Beijing: a UTC timestamp would show.
NOW = datetime(2024, 3, 9, 16, 30, 5, tzinfo=UTC)


@pytest.fixture
def fake() -> Iterator[FakeAlipayGateway]:
    server = FakeAlipayGateway(
        alipay_key=rsa_key("alipay"),
        merchant_public_key=rsa_key("merchant").public_key(),
        app_id=APP_ID,
        partner=PARTNER,
        slow_seconds=0.6,
    )
    with server.running():
        yield server


@pytest.fixture
def pool() -> Iterator[urllib3.PoolManager]:
    manager = urllib3.PoolManager(retries=False)
    yield manager
    manager.clear()


def openapi_gateway(fake: FakeAlipayGateway, pool: urllib3.PoolManager | None, **options: Any) -> HttpAlipayGateway:
    settings: dict[str, Any] = {
        "protocol": "openapi",
        "gateway_url": fake.url,
        "app_id": APP_ID,
        "signer": LocalKeySigner(rsa_key("merchant"), SignType.RSA2),
        "alipay_keys": AlipayPublicKeys.of(rsa_key("alipay").public_key()),
        "sign_type": SignType.RSA2,
        "pool": pool,
        "clock": lambda: NOW,
        "backoff": 0.0,
        "read_timeout": 2.0,
    }
    settings.update(options)
    return HttpAlipayGateway(**settings)


def mapi_gateway(fake: FakeAlipayGateway, pool: urllib3.PoolManager | None, **options: Any) -> HttpAlipayGateway:
    settings: dict[str, Any] = {
        "protocol": "mapi",
        "gateway_url": fake.url,
        "partner_id": PARTNER,
        "signer": LocalKeySigner(rsa_key("merchant"), SignType.RSA),
        "alipay_keys": AlipayPublicKeys.of(rsa_key("alipay").public_key()),
        "sign_type": SignType.RSA,
        "pool": pool,
        "backoff": 0.0,
        "read_timeout": 2.0,
    }
    settings.update(options)
    return HttpAlipayGateway(**settings)


# --- Open Platform: alipay.trade.query ------------------------------------------------------------------------


def test_query_is_a_signed_form_post_that_the_gateway_verifies_with_the_merchant_public_key(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    openapi_gateway(fake, pool).query_trade(ORDER)

    [request] = fake.requests
    assert request.method == "POST"
    assert request.signature_valid is True
    assert request.params["method"] == "alipay.trade.query"
    assert request.params["biz_content"] == '{"out_trade_no":"ORDER-20240310-0001"}'
    assert request.params["timestamp"] == "2024-03-10 00:30:05"  # Beijing time
    assert request.params["sign_type"] == "RSA2"
    assert request.params["app_id"] == APP_ID


def test_query_returns_the_verified_trade(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34", trade_status="TRADE_SUCCESS", currency="USD"))

    result = openapi_gateway(fake, pool).query_trade(ORDER)

    assert result.found is True
    assert result.trade_status == "TRADE_SUCCESS"
    assert result.trade_no == "2024031022001400000000000001"
    assert result.total_amount == Decimal("12.34")
    assert result.currency == "USD"
    assert result.raw["out_trade_no"] == ORDER
    assert result.raw["fund_bill_list"].startswith("[{")  # nested values kept as JSON text


def test_query_of_a_trade_alipay_does_not_know_is_not_found(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    result = openapi_gateway(fake, pool).query_trade(ORDER)

    assert result == TradeQueryResult(found=False, raw=result.raw)
    assert result.raw["sub_code"] == "ACQ.TRADE_NOT_EXIST"


def test_service_unavailable_code_20000_is_retried_until_the_query_succeeds(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    fake.fail_next(Fault.SERVICE_UNAVAILABLE)

    result = openapi_gateway(fake, pool, max_attempts=3).query_trade(ORDER)

    assert result.found is True
    assert len(fake.requests) == 2


def test_server_errors_that_persist_give_unavailable_after_max_attempts(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.fail_next(Fault.HTTP_502, Fault.HTTP_500, Fault.HTTP_502, Fault.HTTP_500)
    sleeps: list[float] = []

    with pytest.raises(Unavailable, match="3 attempt"):
        openapi_gateway(fake, pool, max_attempts=3, backoff=0.01, sleep=sleeps.append).query_trade(ORDER)

    assert len(fake.requests) == 3
    assert len(sleeps) == 2  # no sleep after the last attempt
    assert 0.005 <= sleeps[0] <= 0.01  # exponential backoff, jittered down by at most half
    assert 0.01 <= sleeps[1] <= 0.02


def test_a_gateway_slower_than_the_read_timeout_gives_unavailable(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.fail_next(Fault.SLOW, Fault.SLOW)
    started = time.monotonic()

    with pytest.raises(Unavailable, match="ReadTimeoutError"):
        openapi_gateway(fake, pool, read_timeout=0.2, max_attempts=2).query_trade(ORDER)

    assert time.monotonic() - started < 1.0


def test_the_total_timeout_bounds_all_attempts_together(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.fail_next(Fault.SLOW, Fault.SLOW, Fault.SLOW)
    started = time.monotonic()

    with pytest.raises(Unavailable):
        openapi_gateway(fake, pool, read_timeout=0.3, total_timeout=0.35, max_attempts=3).query_trade(ORDER)

    assert time.monotonic() - started < 0.5  # three full attempts would take 0.9 s
    assert fake.connections < 3  # each timed-out attempt drops its connection


def test_a_refused_connection_gives_unavailable(pool: urllib3.PoolManager) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago, with nothing listening
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = openapi_gateway(SimpleNamespace(url=f"http://127.0.0.1:{port}/gateway.do"), pool, max_attempts=2)  # type: ignore[arg-type]

    with pytest.raises(Unavailable, match="2 attempt"):
        gateway.query_trade(ORDER)


def test_a_reply_with_a_tampered_amount_is_rejected_and_not_retried(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    fake.fail_next(Fault.TAMPER_AMOUNT)

    with pytest.raises(UnverifiedReply) as caught:
        openapi_gateway(fake, pool).query_trade(ORDER)

    assert isinstance(caught.value.__cause__, SignatureMismatch)
    assert caught.value.check == "signature"
    assert len(fake.requests) == 1


def test_an_unsigned_reply_is_never_trusted_and_its_code_is_reported_unverified(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.fail_next(Fault.UNSIGNED)

    with pytest.raises(UnverifiedReply, match=r"unverified: 40004 ACQ\.TRADE_NOT_EXIST") as caught:
        openapi_gateway(fake, pool).query_trade(ORDER)
    assert isinstance(caught.value.__cause__, MissingSignature)


def test_an_unsigned_refund_reply_is_a_gateway_error_neither_refused_nor_done(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    fake.fail_next(Fault.UNSIGNED)

    with pytest.raises(UnverifiedReply) as caught:
        openapi_gateway(fake, pool).refund(ORDER, Decimal("1.00"), "r-1", None)

    assert caught.value.check == "missing_sign"
    assert not isinstance(caught.value, (RefundRefused, Unavailable))
    assert len(fake.requests) == 1


def test_a_reply_signed_by_a_key_that_is_not_alipays_is_rejected(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    gateway = openapi_gateway(fake, pool, alipay_keys=AlipayPublicKeys.of(rsa_key("other").public_key()))

    with pytest.raises(UnverifiedReply) as caught:
        gateway.query_trade(ORDER)
    assert isinstance(caught.value.__cause__, SignatureMismatch)


def test_a_request_signed_with_the_wrong_merchant_key_is_refused_by_the_gateway(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    gateway = openapi_gateway(fake, pool, signer=LocalKeySigner(rsa_key("other"), SignType.RSA2))

    with pytest.raises(GatewayError, match=r"isv\.invalid-signature") as caught:
        gateway.query_trade(ORDER)

    assert (caught.value.code, caught.value.sub_code) == ("40002", "isv.invalid-signature")
    assert isinstance(caught.value.__cause__, ErrorReply)  # the protocol's answer, translated with `from`
    assert fake.requests[0].signature_valid is False


def test_an_unknown_app_id_is_reported_though_alipay_cannot_sign_that_reply(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    with pytest.raises(UnverifiedReply, match=r"isv\.invalid-app-id") as caught:
        openapi_gateway(fake, pool, app_id="2021000000000000").query_trade(ORDER)
    assert isinstance(caught.value.__cause__, MissingSignature)


def test_a_client_error_status_is_a_gateway_error_and_not_retried(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.fail_next(Fault.HTTP_404)

    with pytest.raises(GatewayError, match="HTTP 404"):
        openapi_gateway(fake, pool).query_trade(ORDER)

    assert len(fake.requests) == 1


def test_a_reply_that_is_not_json_is_malformed(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.fail_next(Fault.GARBAGE)

    with pytest.raises(UnverifiedReply) as caught:
        openapi_gateway(fake, pool).query_trade(ORDER)
    assert isinstance(caught.value.__cause__, MalformedMessage)


# --- connections ---------------------------------------------------------------------------------------------


def test_several_calls_reuse_one_tcp_connection(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    fake.notify_answers["n-1"] = "true"
    openapi: AlipayGateway = openapi_gateway(fake, pool)  # the port, as the services see it
    legacy: AlipayGateway = mapi_gateway(fake, pool)

    for _ in range(3):
        openapi.query_trade(ORDER)
    legacy.query_trade(ORDER)
    assert legacy.notify_verify("n-1") is True

    assert len(fake.requests) == 5
    assert fake.connections == 1


def test_gateways_built_without_a_pool_share_the_module_pool_and_its_connection(fake: FakeAlipayGateway) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))

    openapi_gateway(fake, None).query_trade(ORDER)
    openapi_gateway(fake, None).query_trade(ORDER)  # as a later invocation in a warm container would

    assert fake.connections == 1


def test_a_timed_out_connection_is_not_reused_for_the_next_reply(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    fake.fail_next(Fault.SLOW)
    gateway = openapi_gateway(fake, pool, read_timeout=0.2, max_attempts=1)
    with pytest.raises(Unavailable):
        gateway.query_trade(ORDER)

    # The late reply to the first request must not be read as the answer to the second one.
    assert gateway.query_trade(ORDER).total_amount == Decimal("12.34")
    assert fake.connections == 2


# --- legacy: single_trade_query and notify_verify -----------------------------------------------------------


def test_legacy_query_is_signed_over_the_sorted_unquoted_content_and_verified_by_the_gateway(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    mapi_gateway(fake, pool).query_trade(ORDER)

    [request] = fake.requests
    assert request.method == "GET"
    assert request.signature_valid is True
    assert {k: v for k, v in request.params.items() if k != "sign"} == {
        "service": "single_trade_query",
        "partner": PARTNER,
        "_input_charset": "utf-8",
        "out_trade_no": ORDER,
        "sign_type": "RSA",
    }


def test_legacy_query_returns_the_trade(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="30.00", trade_status="TRADE_FINISHED", currency="HKD"))

    result = mapi_gateway(fake, pool).query_trade(ORDER)

    assert (result.found, result.trade_status, result.total_amount, result.currency) == (
        True,
        "TRADE_FINISHED",
        Decimal("30.00"),
        "HKD",
    )
    assert result.raw["seller_id"] == PARTNER


def test_a_legacy_query_reply_alipay_did_not_sign_is_never_acted_on(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="30.00", trade_status="TRADE_FINISHED"))
    fake.fail_next(Fault.TAMPER_AMOUNT)
    with pytest.raises(UnverifiedReply) as caught:
        mapi_gateway(fake, pool).query_trade(ORDER)
    assert caught.value.check == "signature"
    assert len(fake.requests) == 1  # not retried: the same bytes would fail the same way

    other_key = AlipayPublicKeys.of(rsa_key("other").public_key())
    with pytest.raises(UnverifiedReply, match="signature"):
        mapi_gateway(fake, pool, alipay_keys=other_key).query_trade(ORDER)


def test_legacy_query_of_an_unknown_trade_is_not_found(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    assert mapi_gateway(fake, pool).query_trade(ORDER).found is False


def test_legacy_query_signed_with_the_wrong_key_is_illegal_sign(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    gateway = mapi_gateway(fake, pool, signer=LocalKeySigner(rsa_key("other"), SignType.RSA))

    with pytest.raises(GatewayError, match="ILLEGAL_SIGN") as caught:
        gateway.query_trade(ORDER)

    assert caught.value.code == "ILLEGAL_SIGN"


def test_legacy_query_retries_server_errors(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="30.00"))
    fake.fail_next(Fault.HTTP_500)

    assert mapi_gateway(fake, pool).query_trade(ORDER).found is True
    assert len(fake.requests) == 2


@pytest.mark.parametrize(("answer", "expected"), [("true", True), ("false", False), ("invalid", False), ("", False)])
def test_notify_verify_is_true_only_for_exactly_true(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager, answer: str, expected: bool
) -> None:
    fake.notify_answers["n-1"] = answer

    assert mapi_gateway(fake, pool).notify_verify("n-1") is expected
    assert fake.requests[0].params == {"service": "notify_verify", "partner": PARTNER, "notify_id": "n-1"}


def test_notify_verify_of_a_garbage_page_is_false(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.fail_next(Fault.GARBAGE)

    assert mapi_gateway(fake, pool).notify_verify("n-1") is False


def test_notify_verify_retries_then_gives_unavailable(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.notify_answers["n-1"] = "true"
    fake.fail_next(Fault.HTTP_502)
    assert mapi_gateway(fake, pool).notify_verify("n-1") is True

    fake.fail_next(Fault.HTTP_502, Fault.HTTP_502)
    with pytest.raises(Unavailable):
        mapi_gateway(fake, pool, max_attempts=2).notify_verify("n-1")


def test_notify_verify_is_a_legacy_service(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    with pytest.raises(GatewayConfigError):
        openapi_gateway(fake, pool).notify_verify("n-1")
    assert fake.requests == []


# --- legacy: forex_refund (synchronous, is_sync=Y); error replies recorded as integrations report them ----------


def test_forex_refund_is_a_signed_get_with_the_documented_parameters_in_beijing_time(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    result = mapi_gateway(fake, pool, clock=lambda: NOW).refund(ORDER, Decimal("5"), "RF-1", 'too "big"', "USD")

    assert (result.out_request_no, result.refund_fee, result.fund_change) == ("RF-1", None, True)
    [request] = fake.requests
    assert (request.method, request.signature_valid) == ("GET", True)
    assert {k: v for k, v in request.params.items() if k != "sign"} == {
        "service": "forex_refund",
        "partner": PARTNER,
        "_input_charset": "utf-8",
        "out_return_no": "RF-1",
        "out_trade_no": ORDER,
        "return_amount": "5.00",
        "currency": "USD",
        "gmt_return": "2024-03-10 00:30:05",  # Beijing time: 16:30:05 UTC is 00:30:05 the next day there
        "reason": "too 'big'",  # Alipay's pages: no '"' in any value
        "product_code": "NEW_WAP_OVERSEAS_SELLER",
        "is_sync": "Y",
        "sign_type": "RSA",
    }


@pytest.mark.parametrize(
    ("channel", "product_code"),
    [("page", "NEW_OVERSEAS_SELLER"), ("wap", "NEW_WAP_OVERSEAS_SELLER"), ("app", "NEW_WAP_OVERSEAS_SELLER"),
     (None, "NEW_WAP_OVERSEAS_SELLER")],
)  # fmt: skip
def test_forex_refund_names_the_product_the_trade_was_paid_with(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager, channel: str | None, product_code: str
) -> None:
    mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD", channel=channel)
    assert fake.requests[0].params["product_code"] == product_code


def test_gmt_return_takes_the_chinese_pages_form_when_configured(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    gateway = mapi_gateway(fake, pool, clock=lambda: NOW, gmt_return_format="yyyyMMddHHmmss")
    gateway.refund(ORDER, Decimal("5"), "RF-1", None, "USD")
    assert fake.requests[0].params["gmt_return"] == "20240310003005"
    with pytest.raises(GatewayConfigError, match="gmt_return_format"):
        mapi_gateway(fake, pool, gmt_return_format="dd/MM/yyyy")


def test_forex_refund_needs_the_currency(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    with pytest.raises(ValueError, match="currency"):
        mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None)
    assert fake.requests == []


@pytest.mark.parametrize(
    "error",
    ["RETURN_AMOUNT_EXCEED", "PURCHASE_TRADE_NOT_EXIST", "REFUNDMENT_VALID_DATE_EXCEED", "CURRENCY_NOT_SAME"],
)
def test_a_forex_refund_alipay_refuses_is_a_typed_refusal_naming_its_error(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager, error: str
) -> None:
    fake.refund_errors.append(error)
    with pytest.raises(RefundRefused) as refused:
        mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD")
    assert refused.value.sub_code == error
    assert isinstance(refused.value.__cause__, RefundRefusal)
    assert len(fake.requests) == 1


@pytest.mark.parametrize("error", ["REPEATED_REFUNDMENT_REQUEST", "ILLEGAL_ARGUMENT", "SOMETHING_NEW"])
def test_a_forex_refund_error_that_says_nothing_about_the_money_is_neither_refused_nor_done(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager, error: str
) -> None:
    fake.refund_errors.append(error)
    with pytest.raises(GatewayError) as failed:
        mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD")
    assert failed.value.code == error
    assert not isinstance(failed.value, RefundRefused)


def test_a_forex_refund_system_exception_is_retried_with_the_same_out_return_no(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.refund_errors.append("SYSTEM_EXCEPTION")
    assert mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD").fund_change is True
    assert [r.params["out_return_no"] for r in fake.requests] == ["RF-1", "RF-1"]

    fake.refund_errors.extend(["SYSTEM_EXCEPTION"] * 2)
    with pytest.raises(Unavailable):
        mapi_gateway(fake, pool, max_attempts=2).refund(ORDER, Decimal("5"), "RF-2", None, "USD")


def test_a_forex_refund_reply_declaring_gbk_is_read_as_the_refund_it_reports(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    # Recorded forex_refund replies declare encoding="GBK"; expat parses no multi-byte encoding but UTF-8 (issue 16).
    fake.xml_encoding = "GBK"
    assert mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD").fund_change is True
    fake.refund_errors.append("RETURN_AMOUNT_EXCEED")
    with pytest.raises(RefundRefused, match="RETURN_AMOUNT_EXCEED"):
        mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-2", None, "USD")


def test_a_malformed_forex_refund_reply_is_a_typed_gateway_error_never_a_bare_one(
    fake: FakeAlipayGateway, pool: urllib3.PoolManager
) -> None:
    fake.fail_next(Fault.GARBAGE)
    with pytest.raises(UnverifiedReply) as caught:
        mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD")
    # A PortError that is neither a refusal nor transient: the refund service leaves the refund pending.
    assert isinstance(caught.value, GatewayError)
    assert not isinstance(caught.value, (RefundRefused, Unavailable))
    assert caught.value.check == "malformed"
    fake.xml_encoding = "utf-16"  # not a charset Alipay uses
    with pytest.raises(UnverifiedReply, match="charset"):
        mapi_gateway(fake, pool).refund(ORDER, Decimal("5"), "RF-1", None, "USD")


# --- configuration -------------------------------------------------------------------------------------------


def test_from_config_reads_the_documented_attributes(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    fake.add_trade(FakeTrade(ORDER, total_amount="12.34"))
    config = SimpleNamespace(protocol="openapi", gateway_url=fake.url, app_id=APP_ID, partner_id=None, sign_type="RSA2")

    gateway = HttpAlipayGateway.from_config(
        config,
        LocalKeySigner(rsa_key("merchant"), SignType.RSA2),
        AlipayPublicKeys.of(rsa_key("alipay").public_key()),
        pool=pool,
    )

    assert gateway.query_trade(ORDER).found is True


def test_from_config_accepts_the_products_config(fake: FakeAlipayGateway, pool: urllib3.PoolManager) -> None:
    from chalicelib.config import Config

    config = Config.from_env(
        {
            "ALIPAY_PROTOCOL": "mapi",
            "ALIPAY_PARTNER_ID": PARTNER,
            "ALIPAY_GATEWAY_URL": fake.url,
            "ALIPAY_PUBLIC_KEYS": "unused-here",
            "MERCHANT_PRIVATE_KEY_FILE": "/unused/merchant.pem",
            "CURRENCIES": "USD",
            "NOTIFY_URL": "https://pay.example.com/alipay/notify",
            "ORDERS_TABLE": "orders",
            "NOTIFICATIONS_QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/notifications",
            "EVENT_BUS_NAME": "bus",
            "FOREX_REFUND_GMT_RETURN_FORMAT": "yyyyMMddHHmmss",
        }
    )
    fake.notify_answers["n-1"] = "true"

    gateway = HttpAlipayGateway.from_config(
        config,
        LocalKeySigner(rsa_key("merchant"), SignType.RSA),
        AlipayPublicKeys.of(rsa_key("alipay").public_key()),
        pool=pool,
    )

    assert gateway.notify_verify("n-1") is True
    gateway.refund(ORDER, Decimal("5"), "RF-1", None, "USD")
    assert len(fake.requests[-1].params["gmt_return"]) == 14  # the configured form


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://openapi.alipay.com/gateway.do", "https"),
        ("ftp://127.0.0.1/gateway.do", "https"),
        ("https://openapi.alipay.com/gateway.do?charset=utf-8", "query"),
    ],
)
def test_gateway_url_must_be_https_except_to_a_loopback_sandbox(url: str, problem: str) -> None:
    with pytest.raises(GatewayConfigError, match=problem):
        openapi_gateway(SimpleNamespace(url=url), None)  # type: ignore[arg-type]


def test_the_signer_must_sign_the_configured_sign_type() -> None:
    with pytest.raises(GatewayConfigError, match="signer"):
        openapi_gateway(
            SimpleNamespace(url="https://openapi.alipay.com/gateway.do"),  # type: ignore[arg-type]
            None,
            signer=LocalKeySigner(rsa_key("merchant"), SignType.RSA),
        )
