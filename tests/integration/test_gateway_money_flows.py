"""``HttpAlipayGateway.close_trade`` and ``refund`` against the in-process sandbox, in Alipay's wire format."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from chalicelib.alipay.notifications import AlipayProtocol
from chalicelib.local.sandbox import RunningSandbox, start_sandbox
from chalicelib.services.ports import NotSupported, RefundRefused
from tests.integration.test_sandbox import (
    Receiver,
    _settings,
    gateway,
    openapi_order,
    order_no,
    pay,
    trade,
    verify,
)


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
    assert [(n.trade_status, n.refund_fee, n.fields["out_biz_no"]) for n in notes] == [
        ("TRADE_SUCCESS", Decimal("2.00"), "r-1"),
        ("TRADE_CLOSED", Decimal("9.90"), "r-2"),
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


def test_the_legacy_protocol_has_no_close_and_no_refund_here() -> None:
    with start_sandbox(_settings(AlipayProtocol.MAPI)) as mapi:
        alipay = gateway(mapi, AlipayProtocol.MAPI)
        with pytest.raises(NotSupported):
            alipay.close_trade("o-1")
        with pytest.raises(NotSupported):
            alipay.refund("o-1", Decimal("1.00"), "r-1", None)
