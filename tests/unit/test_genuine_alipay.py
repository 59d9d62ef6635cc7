"""Alipay as it really answers (issue 16): known answers from messages Alipay itself signed, one section per item.

The samples and Alipay's public keys are in ``tests/vectors/genuine_samples.json``; each entry there names its public
source. Where no genuinely signed sample is public (a legacy web return, a GBK ``forex_refund`` reply), the field set
Alipay sends is reproduced and signed with a test key, and the test says so.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from chalicelib.alipay.errors import OrderMismatch
from chalicelib.alipay.keys import load_public_key
from chalicelib.alipay.signing import AlipayPublicKeys, SignType
from chalicelib.orders.model import OrderStatus
from chalicelib.services.errors import NotificationRejected
from chalicelib.services.notifications import Outcome
from chalicelib.services.ports import Unavailable
from chalicelib.services.protocols import LegacyGlobal, Merchant
from tests.alipay_fixtures import form_body
from tests.unit.services_kit import Kit, make_kit

SAMPLES = Path(__file__).resolve().parents[1] / "vectors" / "genuine_samples.json"
FORM = "application/x-www-form-urlencoded"
# Any partner: a genuine legacy notification names none, which is the point of item 1.
OUR_PARTNER = "2088000000000003"


@cache
def samples() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(SAMPLES.read_text(encoding="utf-8"))
    return data


def legacy_alipay_keys() -> AlipayPublicKeys:
    return AlipayPublicKeys.of(load_public_key(samples()["alipay_legacy_public_key"]["key"]))


def genuine_notification() -> dict[str, str]:
    return dict(samples()["legacy_cross_border_notification"]["fields_in_order"])


def genuine_notification_body(**changes: str) -> bytes:
    """The notification as Alipay POSTs it: form-encoded, in the order recorded."""
    return form_body({**genuine_notification(), **changes})


def legacy_merchant(seller_id: str | None = None) -> LegacyGlobal:
    return LegacyGlobal(Merchant(SignType.RSA, "https://pay.example.com/alipay/notify", partner_id=OUR_PARTNER,
                                 seller_id=seller_id))


# --- 1. genuine legacy notifications carry no seller_id or partner -----------------------------------------------


def test_a_genuine_legacy_notification_without_seller_id_or_partner_is_verified_and_addressed_to_us() -> None:
    sample = samples()["legacy_cross_border_notification"]
    assert {"seller_id", "partner"}.isdisjoint(genuine_notification())
    notification = legacy_merchant().verify_notification(genuine_notification_body(), legacy_alipay_keys())
    assert (notification.out_trade_no, str(notification.total_amount), notification.currency) == (
        sample["out_trade_no"],
        sample["total_fee"],
        sample["currency"],
    )
    assert notification.trade_status == "TRADE_FINISHED"
    assert notification.seller_id is None


def test_a_seller_id_or_partner_that_is_present_and_not_ours_is_still_refused() -> None:
    # Alipay's key signs for every merchant: these are signed by a test key standing in for it, with the fields added.
    from tests.alipay_fixtures import alipay_key, sign_fields

    key = alipay_key()
    keys = AlipayPublicKeys.of(key.public_key())
    for field, value in (("seller_id", "2088999999999999"), ("partner", "2088999999999999")):
        fields = {k: v for k, v in genuine_notification().items() if k not in ("sign", "sign_type")}
        body = form_body(sign_fields({**fields, field: value}, key, sign_type=SignType.RSA))
        with pytest.raises(OrderMismatch) as caught:
            legacy_merchant().verify_notification(body, keys)
        assert caught.value.field == field
    # A configured seller id other than the partner is compared when the notification names one.
    fields = {k: v for k, v in genuine_notification().items() if k not in ("sign", "sign_type")}
    body = form_body(sign_fields({**fields, "seller_id": OUR_PARTNER}, key, sign_type=SignType.RSA))
    with pytest.raises(OrderMismatch):
        legacy_merchant(seller_id="2088000000000009").verify_notification(body, keys)


def test_a_tampered_genuine_notification_is_refused() -> None:
    from chalicelib.alipay.errors import SignatureMismatch

    with pytest.raises(SignatureMismatch):
        legacy_merchant().verify_notification(genuine_notification_body(total_fee="2042.00"), legacy_alipay_keys())


@pytest.fixture
def genuine_kit() -> Kit:
    sample = samples()["legacy_cross_border_notification"]
    kit = make_kit("mapi", ALIPAY_PUBLIC_KEYS=samples()["alipay_legacy_public_key"]["key"])
    kit.add_order(sample["out_trade_no"], amount=sample["total_fee"], currency=sample["currency"])
    return kit


def test_the_webhook_accepts_a_genuine_legacy_notification_only_once_notify_verify_confirms_it(
    genuine_kit: Kit,
) -> None:
    notify_id = genuine_notification()["notify_id"]
    with pytest.raises(NotificationRejected) as caught:
        genuine_kit.services.intake.accept(genuine_notification_body(), FORM)
    assert caught.value.reason == "notify_verify"
    assert genuine_kit.queue.messages == []

    genuine_kit.gateway.verified_notify_ids.add(notify_id)
    genuine_kit.services.intake.accept(genuine_notification_body(), FORM)
    assert genuine_kit.gateway.calls == 2
    sample = samples()["legacy_cross_border_notification"]
    assert genuine_kit.services.consumer.apply(genuine_kit.queue.messages[-1]) is Outcome.APPLIED
    assert genuine_kit.order(sample["out_trade_no"]).status is OrderStatus.TRADE_FINISHED


def test_a_notify_verify_outage_fails_closed_so_alipay_delivers_again(genuine_kit: Kit) -> None:
    genuine_kit.gateway.fail_with(Unavailable("gateway timed out"))
    with pytest.raises(Unavailable):
        genuine_kit.services.intake.accept(genuine_notification_body(), FORM)
    assert genuine_kit.queue.messages == []


# --- 2. genuine legacy web returns carry no is_success (nor notify_id) ---------------------------------------------


def test_a_legacy_return_with_the_genuine_field_set_is_verified_and_shows_the_order() -> None:
    # No RSA-signed genuine return is public (those recorded are MD5-signed with a merchant secret): the genuine field
    # set, in its recorded order, is signed here by the test key that stands in for Alipay's.
    from tests.alipay_fixtures import alipay_key, sign_fields

    names = samples()["legacy_web_return_field_set"]["fields"]
    assert {"is_success", "notify_id"}.isdisjoint(names)
    kit = make_kit("mapi")
    order = kit.add_order(amount="20.42", currency="USD")
    values = {"out_trade_no": order.out_trade_no, "total_fee": "20.42", "trade_status": "TRADE_FINISHED",
              "trade_no": "2016051221001003190252818476", "currency": "USD"}  # fmt: skip
    signed = sign_fields(values, alipay_key(), sign_type=SignType.RSA)
    assert set(signed) == set(names)
    query = {name: [signed[name]] for name in names}

    shown = kit.services.web_returns.handle(query)

    assert shown.out_trade_no == order.out_trade_no
    assert kit.gateway.queries == [order.out_trade_no]  # a return only says "look now"
    assert kit.order(order.out_trade_no).status is OrderStatus.WAIT_BUYER_PAY


# --- 3. legacy XML replies may declare encoding="GBK" -------------------------------------------------------------


def test_a_forex_refund_success_reply_declaring_gbk_is_a_refund() -> None:
    # The recorded shape of forex_refund's success reply (issue 16): unsigned, declaring GBK.
    from chalicelib.alipay.mapi_replies import parse_forex_refund

    xml = b'<?xml version="1.0" encoding="GBK"?>\n<alipay><is_success>T</is_success></alipay>'
    reply = parse_forex_refund(xml, "R1")
    assert (reply.out_request_no, reply.fund_change, reply.refund_fee) == ("R1", True, None)


def test_gbk_text_in_a_legacy_reply_is_decoded_by_its_declaration() -> None:
    from chalicelib.alipay.errors import ErrorReply
    from chalicelib.alipay.mapi_replies import parse_forex_refund

    xml = '<?xml version="1.0" encoding="gbk"?><alipay><is_success>F</is_success><error>退款失败</error></alipay>'
    with pytest.raises(ErrorReply) as caught:
        parse_forex_refund(xml.encode("gbk"), "R1")
    assert caught.value.code == "退款失败"


@pytest.mark.parametrize(
    ("data", "check"),
    [
        (b'<?xml version="1.0" encoding="ISO-2022-JP"?><alipay/>', "charset"),  # not a charset Alipay uses
        ('<?xml version="1.0" encoding="utf-8"?><alipay>\u9000</alipay>'.encode("gbk"), "charset"),
        (b'<?xml version="1.0" encoding="GBK"?><alipay><is_success>T</is_success>', "malformed"),
        (b"\x00\x01garbage", "malformed"),
    ],
)
def test_a_legacy_reply_that_cannot_be_read_is_a_typed_verification_error(data: bytes, check: str) -> None:
    from chalicelib.alipay.errors import VerificationError
    from chalicelib.alipay.mapi_replies import parse_forex_refund

    with pytest.raises(VerificationError) as caught:
        parse_forex_refund(data, "R1")
    assert caught.value.check == check


# --- 4. single_trade_query replies are signed; "not found" comes under two names ------------------------------------


def sandbox_alipay_keys() -> AlipayPublicKeys:
    return AlipayPublicKeys.of(load_public_key(samples()["alipay_sandbox_public_key"]["key"]))


def genuine_query_reply() -> tuple[bytes, str, SignType]:
    sample = samples()["single_trade_query_signed_reply"]
    return sample["xml"].encode("utf-8"), sample["out_trade_no"], SignType(sample["sign_type"])


def test_a_genuine_single_trade_query_reply_verifies_over_the_sorted_trade_leaves() -> None:
    from decimal import Decimal

    from chalicelib.alipay.mapi_replies import parse_single_trade_query

    xml, out_trade_no, sign_type = genuine_query_reply()
    reply = parse_single_trade_query(xml, out_trade_no, keys=sandbox_alipay_keys(), sign_type=sign_type)
    assert (reply.found, reply.trade_status, reply.total_amount) == (True, "TRADE_FINISHED", Decimal("73.82"))
    assert reply.trade_no == "2020011622001381441000075584"


@pytest.mark.parametrize(
    ("change", "check"),
    [
        ((b"<total_fee>73.82</total_fee>", b"<total_fee>0.01</total_fee>"), "signature"),
        ((b"<trade_status>TRADE_FINISHED</trade_status>", b"<trade_status>TRADE_SUCCESS</trade_status>"), "signature"),
        ((b"<sign>", b"<unsigned>"), "malformed"),  # the element renamed: the XML no longer closes
        ((b"<sign_type>RSA2</sign_type>", b"<sign_type>MD5</sign_type>"), "sign_type"),
    ],
    ids=["amount", "status", "sign-element", "sign-type-downgrade"],
)
def test_a_single_trade_query_reply_that_alipay_did_not_sign_is_never_read(
    change: tuple[bytes, bytes], check: str
) -> None:
    from chalicelib.alipay.errors import VerificationError
    from chalicelib.alipay.mapi_replies import parse_single_trade_query

    xml, out_trade_no, sign_type = genuine_query_reply()
    with pytest.raises(VerificationError) as caught:
        parse_single_trade_query(
            xml.replace(*change), out_trade_no, keys=sandbox_alipay_keys(), sign_type=sign_type
        )
    assert caught.value.check == check


def test_a_single_trade_query_reply_without_its_signature_is_refused() -> None:
    import re

    from chalicelib.alipay.errors import MissingSignature, SignatureMismatch
    from chalicelib.alipay.mapi_replies import parse_single_trade_query

    xml, out_trade_no, sign_type = genuine_query_reply()
    unsigned = re.sub(rb"<sign>[^<]*</sign><sign_type>[^<]*</sign_type>", b"", xml)
    with pytest.raises(MissingSignature):
        parse_single_trade_query(unsigned, out_trade_no, keys=sandbox_alipay_keys(), sign_type=sign_type)
    # Alipay's legacy production key is not the sandbox's: the reply does not verify under it.
    with pytest.raises(SignatureMismatch):
        parse_single_trade_query(xml, out_trade_no, keys=legacy_alipay_keys(), sign_type=sign_type)


@pytest.mark.parametrize("error", ["TRADE_NOT_EXIST", "TRADE_IS_NOT_EXIST"])
def test_not_found_comes_under_both_names(error: str) -> None:
    from chalicelib.alipay.mapi_replies import parse_single_trade_query

    xml = f'<?xml version="1.0" encoding="utf-8"?><alipay><is_success>F</is_success><error>{error}</error></alipay>'
    reply = parse_single_trade_query(xml.encode(), "ORDER-1", keys=sandbox_alipay_keys(), sign_type=SignType.RSA)
    assert reply.found is False


# --- 5. forex_refund names the product paid with, and gmt_return as Alipay's pages and Global SDK give it ---------


@pytest.mark.parametrize(
    ("channel", "product_code"),
    [("page", "NEW_OVERSEAS_SELLER"), ("wap", "NEW_WAP_OVERSEAS_SELLER"), ("app", "NEW_WAP_OVERSEAS_SELLER")],
)
def test_a_legacy_refund_names_the_product_its_order_was_paid_with(channel: str, product_code: str) -> None:
    from dataclasses import replace
    from decimal import Decimal

    from chalicelib.alipay.mapi_replies import forex_refund_product_code
    from chalicelib.services.ports import TradeQueryResult

    kit = make_kit("mapi")
    order = kit.add_order(amount="20.00", currency="USD")
    kit.orders.orders[order.out_trade_no] = replace(order, status=OrderStatus.TRADE_FINISHED, channel=channel,
                                                    version=2)  # fmt: skip
    kit.gateway.legacy = True
    kit.gateway.trades[order.out_trade_no] = TradeQueryResult(True, "TRADE_FINISHED", "2026", Decimal("20.00"), "USD")

    kit.services.refunds.refund(order.out_trade_no, {"amount": "5.00", "out_request_no": "r1"})

    assert kit.gateway.refund_channels == [channel]
    assert forex_refund_product_code(kit.gateway.refund_channels[0]) == product_code


def test_gmt_return_is_beijing_time_as_alipay_global_documents_it_by_default() -> None:
    from datetime import UTC, datetime

    from chalicelib.alipay.mapi_replies import gmt_return

    now = datetime(2024, 3, 9, 16, 30, 5, tzinfo=UTC)  # 00:30:05 the next day in Beijing
    assert gmt_return(now) == "2024-03-10 00:30:05"
    assert gmt_return(now, "yyyyMMddHHmmss") == "20240310003005"
    with pytest.raises(ValueError, match="gmt_return format"):
        gmt_return(now, "yyyy/MM/dd")


# --- 6. timeout_rule: Alipay takes only 12h unless it enabled others for the merchant ---------------------------


LEGACY_WEB_ORDER = {"subject": "T-shirt", "total_amount": "20.42", "currency": "USD", "channel": "page",
                    "return_url": "https://shop.example.com/alipay/return"}  # fmt: skip


def web_order_timeout_rule(kit: Kit, body: dict[str, str]) -> tuple[str, str]:
    """The signed request's timeout_rule, and how long the stored order waits before it is closed."""
    from datetime import datetime
    from urllib.parse import parse_qsl, urlsplit

    from chalicelib.services.commands import CreateOrder

    created = kit.services.orders.create(CreateOrder.from_json(body))
    params = dict(parse_qsl(urlsplit(str(created.body["payment_url"])).query))
    order = kit.order(str(created.body["out_trade_no"]))
    assert order.pay_by is not None
    waits = datetime.fromisoformat(order.pay_by) - datetime.fromisoformat(order.created_at)
    return params["timeout_rule"], str(waits)


def test_a_legacy_web_order_without_a_timeout_takes_12h_and_the_order_waits_as_long_as_the_trade() -> None:
    kit = make_kit("mapi")  # ORDER_TIMEOUT defaults to 30m, which Alipay refuses for most merchants
    assert web_order_timeout_rule(kit, LEGACY_WEB_ORDER) == ("12h", "12:00:00")


def test_a_timeout_rule_alipay_has_not_enabled_is_refused_before_anything_is_stored() -> None:
    from chalicelib.services.commands import CreateOrder
    from chalicelib.services.errors import ValidationError

    kit = make_kit("mapi")
    with pytest.raises(ValidationError, match="FOREX_TIMEOUT_RULES") as caught:
        kit.services.orders.create(CreateOrder.from_json({**LEGACY_WEB_ORDER, "timeout": "30m"}))
    assert caught.value.field == "timeout"
    assert kit.orders.orders == {}


def test_rules_alipay_enabled_for_the_merchant_are_taken() -> None:
    kit = make_kit("mapi", FOREX_TIMEOUT_RULES="30m,12h", ORDER_TIMEOUT="30m")
    assert web_order_timeout_rule(kit, LEGACY_WEB_ORDER) == ("30m", "0:30:00")
    assert web_order_timeout_rule(kit, {**LEGACY_WEB_ORDER, "timeout": "12h"}) == ("12h", "12:00:00")


def test_an_app_order_keeps_its_it_b_pay_timeout() -> None:
    from chalicelib.services.commands import CreateOrder

    kit = make_kit("mapi")
    created = kit.services.orders.create(CreateOrder.from_json({"subject": "Coffee", "total_amount": "1.00",
                                                                "currency": "USD"}))  # fmt: skip
    assert 'it_b_pay="30m"' in str(created.body["order_info"])


def test_forex_timeout_rules_must_be_values_alipay_knows() -> None:
    from chalicelib.config import Config, ConfigError
    from tests.unit.services_kit import env

    with pytest.raises(ConfigError) as caught:
        Config.from_env(env("mapi", FOREX_TIMEOUT_RULES="12h,45m"))
    assert caught.value.variable == "FOREX_TIMEOUT_RULES"


# --- 7. Open Platform replies: "\/" read as "/" on a second attempt (Alipay's Java SDK); unsigned error replies ---


def test_a_genuine_reply_with_escaped_slashes_verifies_over_its_raw_text() -> None:
    from chalicelib.alipay.openapi import verify_response

    sample = samples()["open_platform_reply_with_escaped_slashes"]
    keys = AlipayPublicKeys.of(load_public_key(samples()["alipay_open_platform_rsa_public_key"]["key"]))
    assert "\\/" in sample["text"]
    reply = verify_response(sample["text"], keys, sign_type=SignType(sample["sign_type"]), name=sample["name"])
    assert reply.body["qr_code"] == "https://qr.alipay.com/bax03409rxj8k5rrcufw00fc"


def _signed_reply(signed_member: str, sent_member: str) -> str:
    """A trade-query reply Alipay signed over ``signed_member`` and that arrived as ``sent_member`` (test key)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from chalicelib.alipay.signing import b64encode
    from tests.alipay_fixtures import alipay_key

    sign = b64encode(alipay_key().sign(signed_member.encode(), padding.PKCS1v15(), hashes.SHA256()))
    return f'{{"alipay_trade_query_response":{sent_member},"sign":"{sign}"}}'


def test_a_reply_signed_before_its_slashes_were_escaped_verifies_on_the_second_reading() -> None:
    # No public genuine sample fails on its raw text; this is the case Alipay's Java SDK reads a second time.
    from chalicelib.alipay.openapi import verify_response
    from tests.alipay_fixtures import alipay_keys

    signed = '{"code":"10000","out_trade_no":"A/1","trade_status":"TRADE_SUCCESS","total_amount":"1.00"}'
    reply = _signed_reply(signed, signed.replace("/", "\\/"))
    verified = verify_response(reply, alipay_keys(), sign_type=SignType.RSA2, name="alipay_trade_query_response")
    assert verified.body["out_trade_no"] == "A/1"


def test_the_second_reading_is_refused_when_it_would_mean_something_else() -> None:
    # JSON "\\/" is a backslash then a slash; the blind replace reads it as "\/", a slash. Same signature, other value.
    from chalicelib.alipay.errors import SignatureMismatch
    from chalicelib.alipay.openapi import verify_response
    from tests.alipay_fixtures import alipay_keys

    signed = '{"code":"10000","out_trade_no":"A\\/1","total_amount":"1.00"}'  # out_trade_no "A/1"
    sent = '{"code":"10000","out_trade_no":"A\\\\/1","total_amount":"1.00"}'  # out_trade_no "A\\/1"
    with pytest.raises(SignatureMismatch, match="does not mean what the reply says"):
        verify_response(_signed_reply(signed, sent), alipay_keys(), sign_type=SignType.RSA2,
                        name="alipay_trade_query_response")  # fmt: skip


def test_an_unsigned_error_reply_is_never_acted_on_and_leaves_a_refund_pending() -> None:
    from decimal import Decimal

    from chalicelib.adapters.alipay_gateway import UnverifiedReply
    from chalicelib.alipay.errors import MissingSignature
    from chalicelib.alipay.openapi_replies import parse_trade_refund
    from chalicelib.services.ports import PortError
    from tests.alipay_fixtures import alipay_keys

    unsigned = '{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-app-id"}}'
    with pytest.raises(MissingSignature, match=r"unverified: 40002 isv\.invalid-app-id"):
        parse_trade_refund(unsigned.encode(), "O-1", "r1", keys=alipay_keys(), sign_type=SignType.RSA2)
    # The gateway reports it as a gateway error, which the refund service leaves pending (never failed, never done).
    kit = make_kit()
    order = kit.add_order(amount="10.00")
    from dataclasses import replace

    kit.orders.orders[order.out_trade_no] = replace(order, status=OrderStatus.TRADE_SUCCESS, version=2)
    kit.gateway.fail_with(UnverifiedReply("missing_sign", "error_response carries no sign"))
    with pytest.raises(PortError):
        kit.services.refunds.refund(order.out_trade_no, {"amount": "1.00", "out_request_no": "r1"})
    refund = kit.order(order.out_trade_no).refunds["r1"]
    assert (str(refund.status), refund.amount) == ("REFUND_PENDING", Decimal("1.00"))
