"""The app's SDK callback over fakes: verified with Alipay's keys, advisory only; Alipay's query decides."""

from __future__ import annotations

from decimal import Decimal

import pytest

from chalicelib.orders.model import OrderStatus
from chalicelib.services.commands import CreateOrder
from chalicelib.services.errors import BadRequest, OrderNotFound, ValidationError
from chalicelib.services.ports import PortError, TradeQueryResult, Unavailable
from tests.alipay_fixtures import (
    OUT_TRADE_NO,
    TRADE_NO,
    alipay_key,
    app_pay_response,
    securitypay_result,
    signed_json_response,
)
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, make_kit


def app_pay_result(**overrides: str | None) -> str:
    return signed_json_response("alipay_trade_app_pay_response", app_pay_response(**overrides), alipay_key())


def paid(amount: str = "88.88", status: str = "TRADE_SUCCESS") -> TradeQueryResult:
    return TradeQueryResult(
        found=True, trade_status=status, trade_no=TRADE_NO, total_amount=Decimal(amount), raw={"trade_status": status}
    )


@pytest.fixture
def kit() -> Kit:
    kit = make_kit()
    kit.add_order()
    return kit


def test_a_verified_9000_for_a_waiting_order_asks_alipay_and_applies_what_it_confirms(kit: Kit) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = paid()
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "9000", "result": app_pay_result()})
    kit.relay_stream()
    assert result.to_json() == {"verified": True, "status": "TRADE_SUCCESS"}
    assert kit.gateway.queries == [OUT_TRADE_NO]
    order = kit.order()
    assert (order.status, order.trade_no, order.notify_id) == (OrderStatus.TRADE_SUCCESS, TRADE_NO, None)
    (event,) = kit.publisher.events
    assert (event.event_id, event.notify_id) == (f"{OUT_TRADE_NO}:OrderPaid", None)


def test_a_verified_9000_never_marks_the_order_paid_on_its_own_word(kit: Kit) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = TradeQueryResult(found=False)
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "9000", "result": app_pay_result()})
    assert result.to_json() == {"verified": True, "status": "WAIT_BUYER_PAY"}
    assert kit.order().version == 1


def test_a_forged_9000_is_not_verified_and_leaves_the_order_unchanged(kit: Kit) -> None:
    forged = signed_json_response("alipay_trade_app_pay_response", app_pay_response(), rsa_key("other"))
    kit.gateway.trades[OUT_TRADE_NO] = paid()
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "9000", "result": forged, "memo": ""})
    assert result.to_json() == {"verified": False, "status": "WAIT_BUYER_PAY", "reason": "signature"}
    assert kit.gateway.queries == []  # a forged report does not even earn a query
    assert kit.order().version == 1


def test_a_bare_9000_without_a_result_is_not_verified(kit: Kit) -> None:
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "9000"})
    assert (result.verified, result.reason) == (False, "malformed")
    assert kit.order().version == 1


@pytest.mark.parametrize(
    "overrides",
    [{"total_amount": "0.01"}, {"out_trade_no": "ANOTHER-ORDER"}, {"app_id": "2021000000009999"}],
)
def test_a_genuine_result_for_another_order_or_amount_is_not_verified(kit: Kit, overrides: dict[str, str]) -> None:
    result = kit.services.client_results.check(
        OUT_TRADE_NO, {"resultStatus": "9000", "result": app_pay_result(**overrides)}
    )
    assert (result.verified, result.reason) == (False, "mismatch")
    assert kit.gateway.queries == []


@pytest.mark.parametrize("status", ["8000", "6002", "6004", 6004])
def test_an_unknown_outcome_triggers_an_active_query(kit: Kit, status: str | int) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = paid(status="TRADE_FINISHED")
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": status, "result": ""})
    assert result.to_json() == {"verified": False, "status": "TRADE_FINISHED", "reason": f"result_status_{status}"}
    assert kit.order().status is OrderStatus.TRADE_FINISHED


def test_a_cancelled_payment_is_reported_without_a_query(kit: Kit) -> None:
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "6001", "result": "", "memo": "cancel"})
    assert result.to_json() == {"verified": False, "status": "WAIT_BUYER_PAY", "reason": "result_status_6001"}
    assert kit.gateway.queries == []


def test_an_order_already_paid_is_not_queried_again(kit: Kit) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = paid()
    kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "9000", "result": app_pay_result()})
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "9000", "result": app_pay_result()})
    assert result.to_json() == {"verified": True, "status": "TRADE_SUCCESS"}
    assert kit.gateway.queries == [OUT_TRADE_NO]


def test_a_query_outage_answers_with_the_stored_status(kit: Kit) -> None:
    kit.gateway.fail_with(Unavailable("gateway timed out"))
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "6004", "result": ""})
    assert result.status == "WAIT_BUYER_PAY"


def test_a_query_answer_that_disagrees_about_the_amount_is_quarantined_not_applied(kit: Kit) -> None:
    kit.gateway.trades[OUT_TRADE_NO] = paid(amount="1.00")
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "8000", "result": ""})
    assert result.status == "WAIT_BUYER_PAY"
    record = kit.quarantine.records[f"query:{OUT_TRADE_NO}:TRADE_SUCCESS"]
    assert record.reason == "amount_mismatch"
    assert kit.metrics.counts["NotificationsQuarantined.amount_mismatch"] == 1


def test_an_unknown_order_is_not_found(kit: Kit) -> None:
    with pytest.raises(OrderNotFound):
        kit.services.client_results.check("NO-SUCH-ORDER", {"resultStatus": "9000", "result": app_pay_result()})


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "resultStatus"),
        ({"resultStatus": "paid"}, "resultStatus"),
        ({"resultStatus": "9000", "result": {}}, "result"),
    ],
)
def test_a_malformed_callback_names_the_field(kit: Kit, payload: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        kit.services.client_results.check(OUT_TRADE_NO, payload)
    assert caught.value.field == field


def test_a_callback_that_is_not_an_object_is_a_bad_request(kit: Kit) -> None:
    with pytest.raises(BadRequest):
        kit.services.client_results.check(OUT_TRADE_NO, ["9000"])


# --- the legacy protocol ----------------------------------------------------------------------------------------


def test_a_legacy_result_signed_by_alipay_over_our_order_string_is_verified() -> None:
    kit = make_kit("mapi")
    created = kit.services.orders.create(
        CreateOrder.from_json({"subject": "Coffee", "total_amount": "12.50", "currency": "USD", "out_trade_no": "L-1"})
    )
    kit.gateway.trades["L-1"] = TradeQueryResult(
        found=True, trade_status="TRADE_FINISHED", trade_no=TRADE_NO, total_amount=Decimal("12.50"), currency="USD"
    )
    result = securitypay_result(created.body["order_info"], alipay_key())
    answer = kit.services.client_results.check("L-1", {"resultStatus": "9000", "result": result})
    assert answer.to_json() == {"verified": True, "status": "TRADE_FINISHED"}


def test_a_legacy_result_saying_success_false_is_not_verified() -> None:
    kit = make_kit("mapi")
    created = kit.services.orders.create(
        CreateOrder.from_json({"subject": "Coffee", "total_amount": "12.50", "currency": "USD", "out_trade_no": "L-1"})
    )
    result = securitypay_result(created.body["order_info"], alipay_key(), success="false")
    answer = kit.services.client_results.check("L-1", {"resultStatus": "9000", "result": result})
    assert (answer.verified, answer.reason, answer.status) == (False, "not_successful", "WAIT_BUYER_PAY")


def test_a_query_alipay_refuses_answers_with_the_stored_status(kit: Kit) -> None:
    kit.gateway.fail_with(PortError("Alipay gateway error 40004 ACQ.INVALID_PARAMETER"))
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "8000", "result": ""})
    assert result.status == "WAIT_BUYER_PAY"


def test_replayed_reports_ask_alipay_at_most_once_per_cooldown_for_an_order(kit: Kit) -> None:
    """Each active query costs a KMS signature and a call to Alipay: a replayed report is answered from the table."""
    inconclusive = {"resultStatus": "6004", "result": ""}
    for _ in range(5):
        assert kit.services.client_results.check(OUT_TRADE_NO, inconclusive).status == "WAIT_BUYER_PAY"
    assert kit.gateway.queries == [OUT_TRADE_NO]
    kit.clock.advance(seconds=4)
    kit.services.client_results.check(OUT_TRADE_NO, inconclusive)
    assert kit.gateway.queries == [OUT_TRADE_NO]
    # Past the cooldown the next report asks again, and what Alipay then confirms is applied.
    kit.clock.advance(seconds=1)
    kit.gateway.trades[OUT_TRADE_NO] = paid()
    assert kit.services.client_results.check(OUT_TRADE_NO, inconclusive).status == "TRADE_SUCCESS"
    assert kit.gateway.queries == [OUT_TRADE_NO, OUT_TRADE_NO]


def test_the_cooldown_is_per_order(kit: Kit) -> None:
    kit.add_order("ORDER-2")
    kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "8000", "result": ""})
    kit.services.client_results.check("ORDER-2", {"resultStatus": "8000", "result": ""})
    assert kit.gateway.queries == [OUT_TRADE_NO, "ORDER-2"]


def test_without_the_cooldown_store_no_query_is_made_and_the_stored_status_answers(kit: Kit) -> None:
    kit.idempotency.fail_with(Unavailable("DynamoDB throttled"))
    result = kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "6004", "result": ""})
    assert result.status == "WAIT_BUYER_PAY"
    assert kit.gateway.queries == []


def test_no_idempotency_key_a_client_can_send_names_the_cooldown_record(kit: Kit) -> None:
    kit.services.client_results.check(OUT_TRADE_NO, {"resultStatus": "6004", "result": ""})
    (key,) = kit.idempotency.claims
    assert not key.isprintable()
