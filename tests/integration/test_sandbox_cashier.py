"""The sandbox's web cashier over real HTTP, checked with the product's own verifiers and Alipay's public key only.

A page/wap payment (or create_forex_trade[_wap]) built by ``chalicelib.alipay.web`` opens the cashier by GET
(``payment_url``) or POST (``payment_form``); Pay redirects to ``return_url`` with a query that ``verify_return``
accepts and sends the notification; Cancel sends nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import urllib3

from chalicelib.alipay import web
from chalicelib.alipay.notifications import AlipayProtocol, verify_notification
from chalicelib.alipay.signing import AlipayPublicKeys, LocalKeySigner, SignType
from chalicelib.alipay.web import WebChannel
from sandbox.server import RunningSandbox, start_sandbox
from sandbox.trades import SandboxSettings
from tests.integration.test_sandbox import APP_ID, PARTNER, SELLER_ID, Receiver, order_no
from tests.keygen import rsa_key

HTTP = urllib3.PoolManager(retries=False, timeout=5.0)
RETURN_URL = "https://shop.example.com/alipay/return"
SCALE = 0.0005


def alipay_keys() -> AlipayPublicKeys:
    return AlipayPublicKeys((rsa_key("sandbox-alipay").public_key(),))


def settings(protocol: AlipayProtocol) -> SandboxSettings:
    return SandboxSettings(
        protocol=protocol,
        alipay_key=rsa_key("sandbox-alipay"),
        merchant_public_key=rsa_key("merchant").public_key(),
        app_id=APP_ID,
        seller_id=SELLER_ID if protocol is AlipayProtocol.OPENAPI else PARTNER,
        partner_id=PARTNER,
        time_scale=SCALE,
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def openapi_sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(settings(AlipayProtocol.OPENAPI)) as running:
        yield running


@pytest.fixture
def mapi_sandbox() -> Iterator[RunningSandbox]:
    with start_sandbox(settings(AlipayProtocol.MAPI)) as running:
        yield running


def page_payment(sandbox: RunningSandbox, notify_url: str, out_trade_no: str, channel: WebChannel) -> web.WebPayment:
    return web.build_openapi_web_payment(
        LocalKeySigner(rsa_key("merchant"), SignType.RSA2),
        channel,
        gateway_url=sandbox.gateway_url,
        app_id=APP_ID,
        notify_url=notify_url,
        return_url=RETURN_URL,
        now=datetime.now(UTC),
        out_trade_no=out_trade_no,
        subject="T-shirt <XL> & socks",
        total_amount="12.34",
        extra_biz={"trans_currency": "USD"},
    )


def forex_payment(sandbox: RunningSandbox, notify_url: str, out_trade_no: str, channel: WebChannel) -> web.WebPayment:
    params = web.forex_trade_params(
        channel,
        partner=PARTNER,
        notify_url=notify_url,
        return_url=RETURN_URL,
        out_trade_no=out_trade_no,
        subject="T-shirt",
        currency="USD",
        total_fee="12.34",
        timeout_rule="12h",
    )
    signer = LocalKeySigner(rsa_key("merchant"), SignType.RSA)
    return web.sign_forex_trade(params, signer, gateway_url=sandbox.gateway_url)


class Page(HTMLParser):
    """The ids and forms of an HTML page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.texts: dict[str, str] = {}
        self.forms: list[tuple[str, list[str]]] = []
        self.inputs: list[tuple[str, str]] = []
        self._open: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form":
            self.forms.append((values.get("action") or "", []))
        if tag == "button" and self.forms:
            self.forms[-1][1].append(values.get("id") or "")
        if tag == "input":
            self.inputs.append((values.get("name") or "", values.get("value") or ""))
        if values.get("id"):
            self._open.append(values["id"] or "")
            self.texts[values["id"] or ""] = ""

    def handle_data(self, data: str) -> None:
        for element in self._open:
            self.texts[element] += data

    def handle_endtag(self, tag: str) -> None:
        if self._open and tag in ("p", "h1", "button", "code", "strong", "a"):
            self._open.pop()

    def action_of(self, button: str) -> str:
        return next(action for action, buttons in self.forms if button in buttons)


def post(url: str, fields: list[tuple[str, str]] | None = None) -> Any:
    body = urlencode(fields or []).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return HTTP.request("POST", url, body=body, headers=headers, redirect=False)


def open_cashier(sandbox: RunningSandbox, payment: web.WebPayment, *, by_form: bool = False) -> Page:
    if by_form:
        form = Page(payment.form_html())
        response = post(sandbox.gateway_url, form.inputs)
    else:
        response = HTTP.request("GET", payment.payment_url, redirect=False)
    assert response.status == 200, response.data[:500]
    assert response.headers["Content-Type"].startswith("text/html")
    return Page(response.data.decode())


def trade_status(sandbox: RunningSandbox, out_trade_no: str) -> str | None:
    response = HTTP.request("GET", f"{sandbox.url}/sandbox/trades/{out_trade_no}")
    return None if response.status == 404 else response.json()["status"]


@pytest.mark.parametrize("channel", [WebChannel.PAGE, WebChannel.WAP])
@pytest.mark.parametrize("by_form", [False, True])
def test_paying_at_the_open_platform_cashier_redirects_with_a_verifiable_return_and_notifies(
    openapi_sandbox: RunningSandbox, receiver: Receiver, channel: WebChannel, by_form: bool
) -> None:
    number = order_no()
    payment = page_payment(openapi_sandbox, receiver.url, number, channel)
    cashier = open_cashier(openapi_sandbox, payment, by_form=by_form)
    assert cashier.texts["cashier-subject"] == "T-shirt <XL> & socks"
    assert cashier.texts["cashier-amount"] == "12.34 USD"
    assert {"pay", "cancel"} <= set(cashier.texts)
    assert trade_status(openapi_sandbox, number) == "WAIT_BUYER_PAY"

    response = post(openapi_sandbox.url + cashier.action_of("pay"))
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == RETURN_URL
    verified = web.verify_return(
        location.query.encode(), protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2
    )
    assert (verified.out_trade_no, str(verified.total_amount), verified.app_id) == (number, "12.34", APP_ID)
    assert verified.fields["method"] == f"{web.OPENAPI_METHODS[channel]}.return"
    web.check_return(verified, total_amount=verified.total_amount, currency="USD", app_id=APP_ID, seller_id=SELLER_ID)

    (delivery,) = receiver.wait_for(1)
    note = verify_notification(
        delivery.body, protocol=AlipayProtocol.OPENAPI, keys=alipay_keys(), sign_type=SignType.RSA2
    )
    assert (note.out_trade_no, note.trade_status, note.trade_no) == (number, "TRADE_SUCCESS", verified.trade_no)
    assert trade_status(openapi_sandbox, number) == "TRADE_SUCCESS"


def test_pay_clicked_twice_redirects_again_but_notifies_once(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = order_no()
    cashier = open_cashier(openapi_sandbox, page_payment(openapi_sandbox, receiver.url, number, WebChannel.PAGE))
    pay = openapi_sandbox.url + cashier.action_of("pay")
    assert [post(pay).status, post(pay).status] == [302, 302]
    receiver.wait_for(1)
    time.sleep(0.3)
    assert len(receiver.deliveries) == 1


def test_a_payment_url_with_a_tampered_field_gets_an_error_page_and_no_trade(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = order_no()
    url = page_payment(openapi_sandbox, receiver.url, number, WebChannel.PAGE).payment_url
    response = HTTP.request("GET", re.sub(r"return_url=[^&]+", "return_url=https%3A%2F%2Fevil.example%2F", url))
    assert response.status == 400
    page = Page(response.data.decode())
    assert "error" in page.texts
    assert "pay" not in page.texts
    assert "invalid-signature" in response.data.decode()
    assert trade_status(openapi_sandbox, number) is None


def test_cancel_shows_a_cancelled_page_with_a_link_back_and_sends_nothing(
    openapi_sandbox: RunningSandbox, receiver: Receiver
) -> None:
    number = order_no()
    cashier = open_cashier(openapi_sandbox, page_payment(openapi_sandbox, receiver.url, number, WebChannel.PAGE))
    response = post(openapi_sandbox.url + cashier.action_of("cancel"))
    assert response.status == 200
    html = response.data.decode()
    assert "Payment cancelled" in html
    assert 'href="https://shop.example.com/"' in html
    time.sleep(0.3)
    assert receiver.deliveries == []
    assert trade_status(openapi_sandbox, number) == "WAIT_BUYER_PAY"


def test_the_gateway_apis_still_answer_beside_the_cashier(openapi_sandbox: RunningSandbox) -> None:
    response = HTTP.request("POST", openapi_sandbox.gateway_url, body=b"method=alipay.trade.query&app_id=x")
    assert response.status == 200
    assert b"isv.invalid-app-id" in response.data


@pytest.mark.parametrize("channel", [WebChannel.PAGE, WebChannel.WAP])
def test_paying_at_the_legacy_cashier_redirects_with_a_sha1_rsa_return_and_notifies_trade_finished(
    mapi_sandbox: RunningSandbox, receiver: Receiver, channel: WebChannel
) -> None:
    number = order_no()
    cashier = open_cashier(mapi_sandbox, forex_payment(mapi_sandbox, receiver.url, number, channel))
    assert cashier.texts["cashier-amount"] == "12.34 USD"
    response = post(mapi_sandbox.url + cashier.action_of("pay"))
    assert response.status == 302
    location = urlsplit(response.headers["Location"])
    verified = web.verify_return(
        location.query.encode(), protocol=AlipayProtocol.MAPI, keys=alipay_keys(), sign_type=SignType.RSA
    )
    assert (verified.out_trade_no, verified.trade_status, verified.currency) == (number, "TRADE_FINISHED", "USD")
    # Exactly what genuine create_forex_trade returns carry: no is_success, no notify_id (docs/protocols.md §5).
    assert sorted(verified.fields) == [
        "currency", "out_trade_no", "sign", "sign_type", "total_fee", "trade_no", "trade_status"
    ]
    (delivery,) = receiver.wait_for(1)
    note = verify_notification(delivery.body, protocol=AlipayProtocol.MAPI, keys=alipay_keys(), sign_type=SignType.RSA)
    assert (note.out_trade_no, note.trade_status) == (number, "TRADE_FINISHED")


def test_a_legacy_request_signed_by_another_key_gets_the_error_page(mapi_sandbox: RunningSandbox) -> None:
    params = web.forex_trade_params(
        WebChannel.PAGE,
        partner=PARTNER,
        notify_url="https://shop.example.com/notify",
        return_url=RETURN_URL,
        out_trade_no=order_no(),
        subject="T-shirt",
        currency="USD",
        total_fee="1.00",
    )
    forger = LocalKeySigner(rsa_key("forger"), SignType.RSA)
    forged = web.sign_forex_trade(params, forger, gateway_url=mapi_sandbox.gateway_url)
    response = HTTP.request("GET", forged.payment_url)
    assert response.status == 400
    assert 'id="error"' in response.data.decode()


def test_a_timeout_rule_not_enabled_for_the_partner_gets_invalid_parameter(mapi_sandbox: RunningSandbox) -> None:
    # 30m is a documented value, but Alipay enables only 12h unless the merchant asked for more.
    params = web.forex_trade_params(
        WebChannel.PAGE,
        partner=PARTNER,
        notify_url="https://shop.example.com/notify",
        return_url=RETURN_URL,
        out_trade_no=order_no(),
        subject="T-shirt",
        currency="USD",
        total_fee="1.00",
        timeout_rule="30m",
    )
    signer = LocalKeySigner(rsa_key("merchant"), SignType.RSA)
    payment = web.sign_forex_trade(params, signer, gateway_url=mapi_sandbox.gateway_url)
    response = HTTP.request("GET", payment.payment_url)
    assert response.status == 400
    assert "INVALID_PARAMETER" in response.data.decode()


@pytest.mark.parametrize("bad", ["\r\nSet-Cookie: sid=forged", "\nX-Injected: 1", "\tpath"])
def test_a_signed_return_url_with_control_characters_is_refused_not_put_in_a_location_header(
    mapi_sandbox: RunningSandbox, receiver: Receiver, bad: str
) -> None:
    # urlsplit drops CR, LF and TAB before parsing, so such a URL looks valid to it; sent on as Location, a CR LF
    # would start a header of the request's choosing. The product never signs one (check_return_url); a test might.
    number = order_no()
    params = web.forex_trade_params(
        WebChannel.PAGE,
        partner=PARTNER,
        notify_url=receiver.url,
        return_url=RETURN_URL,
        out_trade_no=number,
        subject="T-shirt",
        currency="USD",
        total_fee="1.00",
    )
    params["return_url"] = RETURN_URL + bad
    signer = LocalKeySigner(rsa_key("merchant"), SignType.RSA)
    payment = web.sign_forex_trade(params, signer, gateway_url=mapi_sandbox.gateway_url)
    response = post(mapi_sandbox.gateway_url, list(payment.params))
    assert response.status == 400
    assert 'id="error"' in response.data.decode()
    assert "return_url" in response.data.decode()
    assert trade_status(mapi_sandbox, number) is None
