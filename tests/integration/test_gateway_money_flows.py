"""``HttpAlipayGateway.close_trade`` and ``refund`` (both protocols) against the in-process sandbox, in Alipay's wire
format."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal

import pytest

from chalicelib.adapters.alipay_gateway import GatewayError
from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.alipay.signing import LocalKeySigner, SignType
from chalicelib.services.ports import NotSupported, RefundRefused
from sandbox.server import RunningSandbox, start_sandbox
from tests.integration.test_sandbox import (
    Receiver,
    _settings,
    gateway,
    mapi_order,
    openapi_order,
    order_no,
    pay,
    trade,
    verify,
)
from tests.keygen import rsa_key


@pytest.fixture
def sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(_settings(AlipayProtocol.OPENAPI)) as running:
        yield running


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    yield receiver
    receiver.close()


def paid_trade(sandbox: RunningSandbox, receiver: Receiver, amount: str = "9.90") -> str:
    number = order_no()
    assert pay(sandbox, openapi_order(receiver.url, number, amount=amount))["resultStatus"] == "9000"
    receiver.wait_for(1)
    return number


def test_a_partial_then_a_full_refund_report_the_running_total_and_notify_as_alipay_does(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = paid_trade(sandbox, receiver)
    alipay = gateway(sandbox, AlipayProtocol.OPENAPI)

    partial = alipay.refund(number, Decimal("2.00"), "r-1", "one cup")
    full = alipay.refund(number, Decimal("7.90"), "r-2", None)

    assert (partial.refund_fee, partial.fund_change, full.refund_fee) == (Decimal("2.00"), True, Decimal("9.90"))
    assert trade(sandbox, number)["status"] == "TRADE_CLOSED"
    notes = [verify(d, AlipayProtocol.OPENAPI) for d in receiver.wait_for(3)[1:]]
    # Two refunds' notifications leave at once: Alipay (and the sandbox) promise no order between them.
    assert sorted((n.fields["out_biz_no"], n.trade_status, n.refund_fee) for n in notes) == [
        ("r-1", "TRADE_SUCCESS", Decimal("2.00")),
        ("r-2", "TRADE_CLOSED", Decimal("9.90")),
    ]


def test_the_same_out_request_no_is_refunded_once(sandbox: RunningSandbox, receiver: Receiver) -> None:
    number = paid_trade(sandbox, receiver)
    alipay = gateway(sandbox, AlipayProtocol.OPENAPI)
    alipay.refund(number, Decimal("1.00"), "r-1", None)
    again = alipay.refund(number, Decimal("1.00"), "r-1", None)
    assert (again.refund_fee, again.fund_change) == (Decimal("1.00"), False)


@pytest.mark.parametrize(("amount", "sub_code"), [("9.91", "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL")], ids=["more than paid"])
def test_a_refund_alipay_refuses_is_a_typed_refusal(
    sandbox: RunningSandbox, receiver: Receiver, amount: str, sub_code: str
) -> None:
    number = paid_trade(sandbox, receiver)
    with pytest.raises(RefundRefused) as refused:
        gateway(sandbox, AlipayProtocol.OPENAPI).refund(number, Decimal(amount), "r-1", None)
    assert refused.value.sub_code == sub_code


def test_an_unpaid_trade_cannot_be_refunded(sandbox: RunningSandbox, receiver: Receiver) -> None:
    number = order_no()
    pay(sandbox, openapi_order(receiver.url, number), outcome="pending", notify_delay=30)
    with pytest.raises(RefundRefused) as refused:
        gateway(sandbox, AlipayProtocol.OPENAPI).refund(number, Decimal("1.00"), "r-1", None)
    assert refused.value.sub_code == "ACQ.TRADE_STATUS_ERROR"


def test_closing_a_waiting_trade_closes_it_and_alipay_notifies_the_close(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = order_no()
    pay(sandbox, openapi_order(receiver.url, number), outcome="pending", notify_delay=30)
    closed = gateway(sandbox, AlipayProtocol.OPENAPI).close_trade(number)
    assert (closed.closed, closed.found) == (True, True)
    assert trade(sandbox, number)["status"] == "TRADE_CLOSED"
    [note] = [verify(d, AlipayProtocol.OPENAPI) for d in receiver.wait_for(1)]
    assert note.trade_status == "TRADE_CLOSED"


def test_closing_a_paid_trade_is_refused_and_leaves_it_paid(sandbox: RunningSandbox, receiver: Receiver) -> None:
    number = paid_trade(sandbox, receiver)
    closed = gateway(sandbox, AlipayProtocol.OPENAPI).close_trade(number)
    assert (closed.closed, closed.sub_code) == (False, "ACQ.TRADE_STATUS_ERROR")
    assert trade(sandbox, number)["status"] == "TRADE_SUCCESS"


def test_closing_a_trade_alipay_never_saw_says_not_found(sandbox: RunningSandbox) -> None:
    closed = gateway(sandbox, AlipayProtocol.OPENAPI).close_trade(order_no())
    assert (closed.closed, closed.found, closed.sub_code) == (False, False, "ACQ.TRADE_NOT_EXIST")


def test_the_legacy_protocol_has_no_close() -> None:
    with start_sandbox(_settings(AlipayProtocol.MAPI)) as mapi, pytest.raises(NotSupported):
        gateway(mapi, AlipayProtocol.MAPI).close_trade("o-1")


# --- legacy forex_refund (synchronous: is_sync=Y) -----------------------------------------------------------------


@pytest.fixture
def mapi_sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(_settings(AlipayProtocol.MAPI)) as running:
        yield running


def paid_mapi_trade(sandbox: RunningSandbox, receiver: Receiver, amount: str = "12.50") -> str:
    number = order_no()
    assert pay(sandbox, mapi_order(receiver.url, number, amount=amount))["resultStatus"] == "9000"
    receiver.wait_for(1)
    return number


def test_forex_refund_partial_then_full_closes_the_finished_trade_and_notifies_nothing(
    mapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = paid_mapi_trade(mapi_sandbox, receiver)
    assert trade(mapi_sandbox, number)["status"] == "TRADE_FINISHED"  # cross-border payments end here (§2.2)
    alipay = gateway(mapi_sandbox, AlipayProtocol.MAPI)

    partial = alipay.refund(number, Decimal("2.50"), "r-1", 'one "cup"', "USD")
    assert (partial.out_request_no, partial.refund_fee, partial.fund_change) == ("r-1", None, True)
    after_partial = trade(mapi_sandbox, number)
    assert (after_partial["status"], after_partial["refund_fee"]) == ("TRADE_FINISHED", "2.50")
    alipay.refund(number, Decimal("10.00"), "r-2", None, "USD")

    shown = trade(mapi_sandbox, number)
    assert (shown["status"], shown["refund_fee"]) == ("TRADE_CLOSED", "12.50")
    time.sleep(0.5)  # a synchronous refund sends no notification: only the payment's was delivered
    assert len(receiver.deliveries) == 1
    queried = alipay.query_trade(number)
    assert queried.trade_status == "TRADE_CLOSED"


@pytest.mark.parametrize(
    ("amount", "currency", "error"),
    [("12.51", "USD", "RETURN_AMOUNT_EXCEED"), ("1.00", "HKD", "CURRENCY_NOT_SAME")],
    ids=["more than paid", "another currency"],
)
def test_a_forex_refund_alipay_refuses_is_a_typed_refusal(
    mapi_sandbox: RunningSandbox, receiver: Receiver, amount: str, currency: str, error: str
) -> None:
    number = paid_mapi_trade(mapi_sandbox, receiver)
    with pytest.raises(RefundRefused) as refused:
        gateway(mapi_sandbox, AlipayProtocol.MAPI).refund(number, Decimal(amount), "r-1", None, currency)
    assert refused.value.sub_code == error
    assert trade(mapi_sandbox, number)["refund_fee"] == "0.00"


def test_a_forex_refund_of_an_unpaid_or_unknown_trade_is_refused(
    mapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = order_no()
    pay(mapi_sandbox, mapi_order(receiver.url, number), outcome="pending", notify_delay=30)
    alipay = gateway(mapi_sandbox, AlipayProtocol.MAPI)
    for out_trade_no in (number, order_no()):
        with pytest.raises(RefundRefused) as refused:
            alipay.refund(out_trade_no, Decimal("1.00"), "r-1", None, "USD")
        assert refused.value.sub_code == "PURCHASE_TRADE_NOT_EXIST"


def test_a_repeated_out_return_no_is_neither_a_success_nor_a_refusal(
    mapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = paid_mapi_trade(mapi_sandbox, receiver)
    alipay = gateway(mapi_sandbox, AlipayProtocol.MAPI)
    alipay.refund(number, Decimal("1.00"), "r-1", None, "USD")
    with pytest.raises(GatewayError) as failed:
        alipay.refund(number, Decimal("1.00"), "r-1", None, "USD")
    assert not isinstance(failed.value, RefundRefused)
    assert failed.value.code == "REPEATED_REFUNDMENT_REQUEST"
    assert trade(mapi_sandbox, number)["refund_fee"] == "1.00"


def test_a_forex_refund_signed_with_another_key_is_illegal_sign_and_refunds_nothing(
    mapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = paid_mapi_trade(mapi_sandbox, receiver)
    stranger = LocalKeySigner(rsa_key("stranger"), SignType.RSA)
    with pytest.raises(GatewayError) as failed:
        gateway(mapi_sandbox, AlipayProtocol.MAPI, stranger).refund(number, Decimal("1.00"), "r-1", None, "USD")
    assert failed.value.code == "ILLEGAL_SIGN"
    assert trade(mapi_sandbox, number)["refund_fee"] == "0.00"


# --- the refund's money edges: fund_change=N, the refund query, a lost reply ------------------------------------


def post_json(url: str, body: object) -> dict[str, object]:
    import json

    import urllib3

    response = urllib3.PoolManager().request("POST", url, body=json.dumps(body).encode(), retries=False)
    assert response.status == 200, response.data
    answer = json.loads(response.data)
    assert isinstance(answer, dict)
    return answer


def test_a_slow_refund_is_fund_change_n_and_the_refund_query_says_refunded_only_once_settled(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = paid_trade(sandbox, receiver)
    post_json(f"{sandbox.url}/sandbox/trades/{number}/refunds", {"slow": True})
    alipay = gateway(sandbox, AlipayProtocol.OPENAPI)

    accepted = alipay.refund(number, Decimal("2.00"), "r-1", None)
    before = alipay.query_refund(number, "r-1")
    assert post_json(f"{sandbox.url}/sandbox/trades/{number}/refunds/settle", {}) == {"settled": ["r-1"]}
    after = alipay.query_refund(number, "r-1")

    assert (accepted.fund_change, accepted.refund_fee) == (False, Decimal("0.00"))
    assert (before.refunded, before.found, before.refund_amount) == (False, True, None)
    assert (after.refunded, after.refund_amount) == (True, Decimal("2.00"))
    assert alipay.query_refund(number, "r-unknown").refunded is False
    note = verify(receiver.wait_for(2)[1], AlipayProtocol.OPENAPI)  # the refund's notification, once settled
    assert (note.refund_fee, note.fields["out_biz_no"]) == (Decimal("2.00"), "r-1")


def test_a_lost_refund_reply_is_unavailable_and_the_refund_was_made_once(
    sandbox: RunningSandbox, receiver: Receiver
) -> None:
    from chalicelib.services.ports import Unavailable

    number = paid_trade(sandbox, receiver)
    post_json(f"{sandbox.url}/sandbox/trades/{number}/refunds", {"lose_replies": 1})
    alipay = gateway(sandbox, AlipayProtocol.OPENAPI)

    with pytest.raises(Unavailable):
        alipay.refund(number, Decimal("2.00"), "r-1", None)
    again = alipay.refund(number, Decimal("2.00"), "r-1", None)

    assert (again.fund_change, again.refund_fee) == (False, Decimal("2.00"))
    assert alipay.query_refund(number, "r-1").refunded
    assert trade(sandbox, number)["refund_fee"] == "2.00"


def test_the_refund_query_of_an_unknown_trade_is_not_found(sandbox: RunningSandbox) -> None:
    answer = gateway(sandbox, AlipayProtocol.OPENAPI).query_refund(order_no(), "r-1")
    assert (answer.found, answer.refunded) == (False, False)


def test_the_legacy_protocol_has_no_refund_query() -> None:
    with start_sandbox(_settings(AlipayProtocol.MAPI)) as legacy, pytest.raises(NotSupported):
        gateway(legacy, AlipayProtocol.MAPI).query_refund(order_no(), "r-1")
