"""The one seam between Alipay's protocols: Open Platform (``openapi``), legacy Global MAPI (``mapi``) and Antom.

``bootstrap`` picks one ``AlipayFlavour`` for the configured protocol, once, and hands it to the use cases; they ask it
how to build and sign an order, how to verify and address-check what Alipay sends, and what the protocol allows (which
statuses are refundable, whether a trade can be closed at Alipay). No use case branches on the protocol. The pure
protocol functions stay in ``chalicelib.alipay``; this module only says which of them each protocol uses, and with
which of the merchant's ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

from chalicelib.alipay import params
from chalicelib.alipay.notifications import AlipayProtocol, Notification, check_addressee, verify_notification
from chalicelib.alipay.signing import AlipayPublicKeys, Signer, SignType
from chalicelib.orders.model import LEGACY_REFUNDABLE_STATUSES, REFUNDABLE_STATUSES, Order, OrderStatus

from .commands import APP_CHANNEL, OrderDraft

if TYPE_CHECKING:
    from chalicelib.alipay.antom import AntomNotification
    from chalicelib.alipay.certs import CertSns
    from chalicelib.alipay.web import WebPayment, WebReturn
    from chalicelib.config import Config

    from .ports import AlipayGateway, CashierPayments, QueuedNotification

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"
JSON_MEDIA_TYPE = "application/json"


@dataclass(frozen=True, slots=True)
class Merchant:
    """The merchant as Alipay knows it: the ids its messages are addressed to, its sign type, its callback URL."""

    sign_type: SignType
    notify_url: str
    app_id: str | None = None  # Open Platform's application
    seller_id: str | None = None
    partner_id: str | None = None  # the legacy protocol's PID (2088...)
    gateway_url: str = ""  # where web payments go (production or sandbox gateway)
    # Legacy web payments: the timeout_rule values Alipay enabled for this merchant (only 12h unless it enabled more).
    forex_timeout_rules: tuple[str, ...] = ("12h",)
    # Open Platform's certificate mode: the SNs every signed request carries (None: public-key mode).
    cert_sns: CertSns | None = None
    # Antom: the client id its messages are addressed to, and the payment method types orders may name (first: default).
    client_id: str | None = None
    payment_methods: tuple[str, ...] = ("ALIPAY_CN",)
    return_url: str | None = None  # Antom: the default paymentRedirectUrl (RETURN_URL)
    # The currency money naming none is read in, for an order still waiting (Open Platform with REQUIRE_TRANS_CURRENCY:
    # CNY, Alipay's reading of an amount without trans_currency); None: it is checked on its amount alone.
    unstated_currency: str | None = None

    @classmethod
    def from_config(cls, config: Config, cert_sns: CertSns | None = None) -> Merchant:
        return cls(
            sign_type=config.sign_type,
            notify_url=config.notify_url,
            app_id=config.app_id,
            seller_id=config.seller_id,
            partner_id=config.partner_id,
            gateway_url=config.gateway_url,
            forex_timeout_rules=config.forex_timeout_rules,
            cert_sns=cert_sns,
            client_id=config.antom_client_id,
            payment_methods=config.antom_payment_methods,
            return_url=config.return_url,
            unstated_currency="CNY" if config.require_trans_currency else None,
        )


class OrderStrings(Protocol):
    """Makes what a buyer pays an order with, for one protocol: the signed ``orderInfo`` (app) or web payment (page,
    wap), or Antom's payment page; ``check`` only validates."""

    def check(self, draft: OrderDraft) -> None: ...

    def payment(self, draft: OrderDraft, now: datetime) -> dict[str, str]:
        """What ``POST /orders`` answers for the buyer to pay with: the signed ``order_info`` (app), the web payment
        (``payment_url``, ``payment_form``), or Antom's answer (``normal_url``, ``scheme_url``, ``applink_url``)."""

    def default_timeout(self, channel: str, configured: str) -> str:
        """The timeout of an order of ``channel`` naming none: ``configured``, unless the protocol cannot take it."""


class AlipayFlavour(Protocol):
    """Everything the use cases need to know that differs between the two protocols."""

    @property
    def name(self) -> AlipayProtocol:
        """The protocol's name, as queued notifications and quarantine records carry it."""

    @property
    def merchant(self) -> Merchant: ...

    @property
    def refundable(self) -> frozenset[OrderStatus]:
        """The paid statuses a refund may start from."""

    @property
    def can_close(self) -> bool:
        """Whether an unpaid trade can be closed at Alipay (else it only expires there)."""

    @property
    def confirms_notify_id(self) -> bool:
        """Whether the webhook must ask Alipay to confirm a notification's ``notify_id`` (a gateway call)."""

    @property
    def media_type(self) -> str:
        """The media type of the protocol's notifications."""

    @property
    def signs_app_result(self) -> bool:
        """Whether the app's payment result is signed by Alipay (Antom's is not: it only prompts an inquiry)."""

    def order_strings(self, signer: Signer, gateway: Callable[[], AlipayGateway] | None = None) -> OrderStrings:
        """How orders are built and signed by ``signer`` (Antom's are created at Antom, through ``gateway()``)."""

    def verify_notification(
        self,
        body: bytes,
        keys: AlipayPublicKeys,
        default_charset: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Notification:
        """A notification verified from its raw bytes (and, for Antom, its signed headers) and addressed to this
        merchant; else a ``VerificationError``."""

    def verify_app_result(self, result: str, keys: AlipayPublicKeys, order: Order) -> None:
        """The app SDK's ``result`` is Alipay's, for this merchant, order and amount; else a ``VerificationError``."""

    def return_query(self, query: Mapping[str, Sequence[str]]) -> bytes:
        """A web return's decoded query rebuilt as bytes, in the charset it declares."""

    def verify_return(self, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
        """A web return's query verified; else a ``VerificationError``."""

    def check_return(self, verified: WebReturn, order: Order) -> None:
        """A verified return is addressed to this merchant and carries ``order``'s amount; else ``OrderMismatch``."""


@dataclass(frozen=True, slots=True)
class _SignedForms:
    """What Open Platform and the legacy protocol do alike: their notifications and web returns are forms Alipay
    signs with the merchant's sign type, checked against the flavour's own ids (``_check_addressee``, ``_seller_id``).
    """

    merchant: Merchant
    name: ClassVar[AlipayProtocol]
    media_type: ClassVar[str] = FORM_MEDIA_TYPE
    signs_app_result: ClassVar[bool] = True

    def verify_notification(
        self,
        body: bytes,
        keys: AlipayPublicKeys,
        default_charset: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Notification:
        notification = verify_notification(
            body, protocol=self.name, keys=keys, sign_type=self.merchant.sign_type, default_charset=default_charset
        )
        self._check_addressee(notification)
        return notification

    def return_query(self, query: Mapping[str, Sequence[str]]) -> bytes:
        from chalicelib.alipay.web import encode_query

        return encode_query(query, self.name)

    def verify_return(self, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
        from chalicelib.alipay.web import verify_return

        return verify_return(raw, protocol=self.name, keys=keys, sign_type=self.merchant.sign_type)

    def check_return(self, verified: WebReturn, order: Order) -> None:
        from chalicelib.alipay.web import check_return

        check_return(
            verified,
            total_amount=order.total_amount,
            currency=order.currency,
            app_id=self.merchant.app_id,
            seller_id=self._seller_id,
            partner=self.merchant.partner_id,
        )

    def _check_addressee(self, notification: Notification) -> None:
        """A verified notification names this merchant; else ``OrderMismatch``."""
        raise NotImplementedError

    @property
    def _seller_id(self) -> str | None:
        """The seller a notification or a return must name."""
        return self.merchant.seller_id


@dataclass(frozen=True, slots=True)
class OpenPlatform(_SignedForms):
    """Open Platform: ``alipay.trade.*`` requests by ``app_id``, signed RSA2 (by KMS)."""

    name: ClassVar[AlipayProtocol] = AlipayProtocol.OPENAPI
    refundable: ClassVar[frozenset[OrderStatus]] = REFUNDABLE_STATUSES
    can_close: ClassVar[bool] = True  # alipay.trade.close
    confirms_notify_id: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.merchant.app_id:
            raise ValueError("Open Platform notifications are checked against the app_id")

    def order_strings(self, signer: Signer, gateway: Callable[[], AlipayGateway] | None = None) -> OrderStrings:
        return OpenPlatformOrderStrings(signer, self.merchant)

    def verify_app_result(self, result: str, keys: AlipayPublicKeys, order: Order) -> None:
        from chalicelib.alipay.openapi import check_app_pay_result, verify_app_pay_result

        verified = verify_app_pay_result(result, keys, sign_type=self.merchant.sign_type)
        check_app_pay_result(
            verified,
            app_id=self.merchant.app_id or "",
            out_trade_no=order.out_trade_no,
            total_amount=order.total_amount,
            seller_id=self.merchant.seller_id,
        )

    def _check_addressee(self, notification: Notification) -> None:
        check_addressee(notification, app_id=self.merchant.app_id, seller_id=self._seller_id)


@dataclass(frozen=True, slots=True)
class LegacyGlobal(_SignedForms):
    """Legacy Global MAPI: ``mobile.securitypay.pay``, ``create_forex_trade(_wap)`` by partner, signed SHA1withRSA."""

    name: ClassVar[AlipayProtocol] = AlipayProtocol.MAPI
    # A cross-border payment is notified as TRADE_FINISHED and forex_refund still refunds it (orders/model.py).
    refundable: ClassVar[frozenset[OrderStatus]] = LEGACY_REFUNDABLE_STATUSES
    can_close: ClassVar[bool] = False  # no close API: a trade expires by it_b_pay
    confirms_notify_id: ClassVar[bool] = True  # notify_verify

    def __post_init__(self) -> None:
        if not self.merchant.partner_id:
            raise ValueError("the legacy protocol needs the partner id (notify_verify, addressee checks)")

    def order_strings(self, signer: Signer, gateway: Callable[[], AlipayGateway] | None = None) -> OrderStrings:
        return LegacyOrderStrings(signer, self.merchant)

    def verify_app_result(self, result: str, keys: AlipayPublicKeys, order: Order) -> None:
        from chalicelib.alipay.mapi import check_securitypay_result, verify_securitypay_result

        verified = verify_securitypay_result(result, keys, sign_type=self.merchant.sign_type)
        check_securitypay_result(
            verified,
            partner=self.merchant.partner_id or "",
            out_trade_no=order.out_trade_no,
            total_amount=order.total_amount,
            currency=order.currency,
            seller_id=self.merchant.seller_id,
        )

    def _check_addressee(self, notification: Notification) -> None:
        check_addressee(notification, seller_id=self._seller_id, partner=self.merchant.partner_id)

    @property
    def _seller_id(self) -> str | None:
        # In notifications and returns alike the seller is the partner unless one is configured (else a return Alipay
        # signed for another seller, same order number and amount, would show this order).
        return self.merchant.seller_id or self.merchant.partner_id


@dataclass(frozen=True, slots=True)
class Antom:
    """Antom (``/ams/api/v1``): JSON requests by ``client-id``, signed RSA256 in headers by the merchant key in KMS.

    An order is created at Antom (``payments/pay``) and answered with where the buyer pays; notifications are JSON,
    signed over the path of the configured notify URL (never the request's own); the app's result and the browser's
    return carry no signature, so they only prompt an inquiry. Cancel closes an unpaid payment; refunds need Antom's
    ``paymentId`` (the order's ``trade_no``).
    """

    merchant: Merchant
    name: ClassVar[AlipayProtocol] = AlipayProtocol.ANTOM
    refundable: ClassVar[frozenset[OrderStatus]] = REFUNDABLE_STATUSES
    can_close: ClassVar[bool] = True  # payments/cancel
    confirms_notify_id: ClassVar[bool] = False
    media_type: ClassVar[str] = JSON_MEDIA_TYPE
    signs_app_result: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.merchant.client_id:
            raise ValueError("Antom's messages are checked against the client id (ANTOM_CLIENT_ID)")

    def order_strings(self, signer: Signer, gateway: Callable[[], AlipayGateway] | None = None) -> OrderStrings:
        if gateway is None:
            raise ValueError("Antom's orders are created at Antom: a gateway is needed")
        return AntomPayments(self.merchant, cast("Callable[[], CashierPayments]", gateway))

    def verify_notification(
        self,
        body: bytes,
        keys: AlipayPublicKeys,
        default_charset: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Notification:
        from chalicelib.alipay import antom
        from chalicelib.alipay.errors import MissingSignature

        if headers is None:
            raise MissingSignature("an Antom notification is verified with its headers, and none were kept")
        verified = antom.verify_notification(
            headers,
            body,
            path=antom.path_of(self.merchant.notify_url),
            client_id=self.merchant.client_id or "",
            keys=keys,
        )
        return antom_notification(verified)

    def verify_app_result(self, result: str, keys: AlipayPublicKeys, order: Order) -> None:
        from chalicelib.alipay.errors import MissingSignature

        raise MissingSignature("Antom's app result is not signed: only an inquiry can confirm a payment")

    def return_query(self, query: Mapping[str, Sequence[str]]) -> bytes:
        from urllib.parse import urlencode

        # Antom sends the shopper to paymentRedirectUrl as given: the order's number is all the query holds (ours).
        return urlencode([(k, v) for k, values in sorted(query.items()) for v in values]).encode("ascii", "replace")

    def verify_return(self, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
        """Not a verification: the return is unsigned, so it only names which order to ask Antom about."""
        from urllib.parse import parse_qs

        from chalicelib.alipay.errors import InvalidField, OrderError
        from chalicelib.alipay.web import WebReturn

        numbers = parse_qs(raw.decode("ascii", "replace")).get("out_trade_no") or []
        if len(numbers) != 1:
            raise InvalidField("the return names no single out_trade_no")
        try:
            out_trade_no = params.check_out_trade_no(numbers[0])
        except OrderError as exc:
            raise InvalidField(str(exc)) from exc
        fields = {"out_trade_no": out_trade_no}
        return WebReturn(self.name, out_trade_no, "", Decimal(0), None, None, None, None, fields)

    def check_return(self, verified: WebReturn, order: Order) -> None:
        return None  # nothing was signed to compare: the active query asks Antom itself


# What an Antom notification says of the payment, as the trade statuses the state machine speaks: a payment result S
# is paid, F is final (the payment failed or was closed: nothing can be paid on it any more), a pending one waits.
# A refund's notification says nothing of the payment's status (the consumer reads it as a refund's outcome).
ANTOM_REFUND_NOTIFICATION = "REFUND"


def antom_trade_status(notify_type: str, result_status: str) -> str:
    """The trade status an Antom notification stands for (``REFUND`` for a refund's outcome)."""
    if notify_type == "REFUND_RESULT":
        return ANTOM_REFUND_NOTIFICATION
    if notify_type == "PAYMENT_RESULT":
        return {"S": "TRADE_SUCCESS", "F": "TRADE_CLOSED"}.get(result_status, "WAIT_BUYER_PAY")
    return "WAIT_BUYER_PAY"


def refund_notice(message: QueuedNotification) -> tuple[str, bool] | None:
    """An Antom refund notification's refund (its ``refundRequestId``, our ``out_request_no``) and whether it
    succeeded; None for any other notification."""
    if message.protocol != AlipayProtocol.ANTOM or message.fields.get("notifyType") != "REFUND_RESULT":
        return None
    return message.fields.get("refundRequestId", ""), message.fields.get("refundStatus") == "SUCCESS"


def antom_notification(verified: AntomNotification) -> Notification:
    """An Antom notification in the shape the webhook and the consumer share (its JSON kept, flattened)."""
    return Notification(
        protocol=AlipayProtocol.ANTOM,
        notify_id=verified.notify_id,
        notify_type=verified.notify_type,
        notify_time=verified.occurred_at,
        trade_status=antom_trade_status(verified.notify_type, verified.result_status),
        out_trade_no=verified.out_trade_no,
        trade_no=verified.payment_id or "",
        total_amount=verified.amount,
        currency=verified.currency,
        refund_fee=None,
        app_id=None,
        seller_id=None,
        charset="utf-8",
        fields=verified.fields,
    )


FLAVOURS: Mapping[AlipayProtocol, type[OpenPlatform] | type[LegacyGlobal] | type[Antom]] = {
    AlipayProtocol.OPENAPI: OpenPlatform,
    AlipayProtocol.MAPI: LegacyGlobal,
    AlipayProtocol.ANTOM: Antom,
}


def flavour_for(protocol: AlipayProtocol, merchant: Merchant) -> AlipayFlavour:
    """The configured protocol's flavour, for ``merchant``: chosen here, once, by ``bootstrap``."""
    return FLAVOURS[AlipayProtocol(protocol)](merchant)


# --- order strings ------------------------------------------------------------------------------------------------


def _beijing(moment: datetime) -> str:
    from chalicelib.alipay.openapi import beijing_timestamp

    return beijing_timestamp(moment)


def _no_antom_options(draft: OrderDraft) -> None:
    """Open Platform and legacy orders name no payment method or OS: a client sending one means another protocol."""
    from chalicelib.alipay.errors import OrderError

    for name in ("payment_method", "os_type"):
        if getattr(draft, name) is not None:
            raise OrderError(name, "is an Antom order's option (ALIPAY_PROTOCOL=antom), not this stage's protocol's")


def _signed_payment(
    strings: OpenPlatformOrderStrings | LegacyOrderStrings, draft: OrderDraft, now: datetime
) -> dict[str, str]:
    """The signed order string of an app order, or the web payment of a page or wap order."""
    if draft.web:
        payment = strings.sign_web(draft, now)
        return {"channel": draft.channel, "payment_url": payment.payment_url, "payment_form": payment.form_html()}
    return {"order_info": strings.sign(draft, now)}


@dataclass(frozen=True, slots=True)
class OpenPlatformOrderStrings:
    """``alipay.trade.app.pay`` order strings and page/wap payments, signed by the merchant key (KMS, RSA2)."""

    signer: Signer
    merchant: Merchant

    def check(self, draft: OrderDraft) -> None:
        _no_antom_options(draft)
        if draft.web:
            from chalicelib.alipay.web import WebChannel, web_pay_biz_content

            web_pay_biz_content(WebChannel(draft.channel), **self._biz(draft))
            params.check_return_url(draft.return_url or "")
            return
        from chalicelib.alipay.openapi import app_pay_biz_content

        app_pay_biz_content(**self._biz(draft))

    def default_timeout(self, channel: str, configured: str) -> str:
        return configured

    def payment(self, draft: OrderDraft, now: datetime) -> dict[str, str]:
        return _signed_payment(self, draft, now)

    def sign_web(self, draft: OrderDraft, now: datetime) -> WebPayment:
        from chalicelib.alipay.web import WebChannel, build_openapi_web_payment

        biz = self._biz(draft, now)
        extra = biz.pop("extra")
        return build_openapi_web_payment(
            self.signer,
            WebChannel(draft.channel),
            gateway_url=self.merchant.gateway_url,
            app_id=self.merchant.app_id or "",
            notify_url=self.merchant.notify_url,
            return_url=draft.return_url or "",
            now=now,
            extra_biz=extra,
            **self._cert_sns(),
            **biz,
        )

    def sign(self, draft: OrderDraft, now: datetime) -> str:
        from chalicelib.alipay.openapi import build_app_pay_order_string

        biz = self._biz(draft, now)
        extra = biz.pop("extra")
        return build_app_pay_order_string(
            self.signer,
            app_id=self.merchant.app_id or "",
            notify_url=self.merchant.notify_url,
            now=now,
            extra_biz=extra,
            **self._cert_sns(),
            **biz,
        )

    def _cert_sns(self) -> dict[str, str]:
        sns = self.merchant.cert_sns
        if sns is None:
            return {}
        return {"app_cert_sn": sns.app_cert_sn, "alipay_root_cert_sn": sns.alipay_root_cert_sn}

    @staticmethod
    def _biz(draft: OrderDraft, now: datetime | None = None) -> dict[str, Any]:
        # A price in a foreign currency is sent as trans_currency (the currency of total_amount); without it
        # Alipay would read the amount as CNY and charge the buyer a different sum.
        extra: dict[str, Any] = {} if draft.currency == "CNY" else {"trans_currency": draft.currency}
        if now is not None:
            # time_expire: the absolute end of the trade, the order's pay_by in Beijing time. timeout_express alone
            # counts from when Alipay creates the trade (the buyer opening the cashier, maybe much later), so an order
            # closed here at pay_by could still be paid there; with time_expire Alipay itself refuses the payment.
            extra["time_expire"] = _beijing(now + timedelta(minutes=params.timeout_minutes(draft.timeout, "timeout")))
        return {
            "out_trade_no": draft.out_trade_no,
            "subject": draft.subject,
            "total_amount": draft.total_amount,
            "body": draft.body,
            "timeout_express": draft.timeout,
            "extra": extra,
        }


@dataclass(frozen=True, slots=True)
class LegacyOrderStrings:
    """Legacy ``mobile.securitypay.pay`` order strings and forex web payments, signed SHA1withRSA by a local key."""

    signer: Signer
    merchant: Merchant

    def check(self, draft: OrderDraft) -> None:
        _no_antom_options(draft)
        if draft.web:
            self._forex_params(draft)
            return
        from chalicelib.alipay.mapi import securitypay_signed_content

        securitypay_signed_content(self._params(draft))

    def default_timeout(self, channel: str, configured: str) -> str:
        # create_forex_trade(_wap) takes only the timeout_rule values Alipay enabled for the merchant (12h unless it
        # enabled more; anything else is INVALID_PARAMETER). An order must not outlive, nor be closed before, its trade
        # at Alipay, so a web order's default is an enabled rule: the configured timeout if enabled, else 12h.
        if channel == APP_CHANNEL or configured in self.merchant.forex_timeout_rules:
            return configured
        rules = self.merchant.forex_timeout_rules
        return "12h" if "12h" in rules else rules[0]

    def payment(self, draft: OrderDraft, now: datetime) -> dict[str, str]:
        return _signed_payment(self, draft, now)

    def sign_web(self, draft: OrderDraft, now: datetime) -> WebPayment:
        from chalicelib.alipay.web import sign_forex_trade

        return sign_forex_trade(self._forex_params(draft), self.signer, gateway_url=self.merchant.gateway_url)

    def sign(self, draft: OrderDraft, now: datetime) -> str:
        from chalicelib.alipay.mapi import sign_securitypay_order

        return sign_securitypay_order(self._params(draft), self.signer)

    def _forex_params(self, draft: OrderDraft) -> dict[str, str]:
        from chalicelib.alipay.errors import OrderError
        from chalicelib.alipay.web import WebChannel, forex_trade_params

        params = forex_trade_params(
            WebChannel(draft.channel),
            partner=self.merchant.partner_id or "",
            notify_url=self.merchant.notify_url,
            return_url=draft.return_url or "",
            out_trade_no=draft.out_trade_no,
            subject=draft.subject,
            body=draft.body,
            currency=draft.currency,
            total_fee=draft.total_amount,
            timeout_rule=draft.timeout,
        )
        rules = self.merchant.forex_timeout_rules
        if draft.timeout not in rules:
            raise OrderError(
                "timeout_rule",
                f"Alipay takes only {', '.join(rules)} for this merchant (FOREX_TIMEOUT_RULES lists what it enabled)",
            )
        return params

    def _params(self, draft: OrderDraft) -> list[tuple[str, str]]:
        from chalicelib.alipay.mapi import securitypay_order_params

        return securitypay_order_params(
            partner=self.merchant.partner_id or "",
            notify_url=self.merchant.notify_url,
            out_trade_no=draft.out_trade_no,
            subject=draft.subject,
            # The legacy service requires a body; the subject is the natural one when the client sent none.
            body=draft.body or draft.subject,
            currency=draft.currency,
            total_fee=draft.total_amount,
            it_b_pay=draft.timeout,
            seller_id=self.merchant.seller_id,
        )


# Antom's terminal types by the order's channel.
_TERMINAL_TYPES = {"app": "APP", "page": "WEB", "wap": "WAP"}
OS_TYPES = ("IOS", "ANDROID")


@dataclass(frozen=True, slots=True)
class AntomPayments:
    """Antom's cashier payments: the order is created at Antom (``payments/pay``, signed by the merchant key in KMS)
    and ``POST /orders`` answers where the buyer pays (``normal_url``, ``scheme_url``, ``applink_url``)."""

    merchant: Merchant
    gateway: Callable[[], CashierPayments]

    def check(self, draft: OrderDraft) -> None:
        from chalicelib.alipay.errors import OrderError

        methods = self.merchant.payment_methods
        if draft.payment_method is not None and draft.payment_method not in methods:
            raise OrderError("payment_method", f"must be one of {', '.join(methods)} (ANTOM_PAYMENT_METHODS)")
        if draft.os_type is not None and draft.os_type not in OS_TYPES:
            raise OrderError("os_type", f"must be one of {', '.join(OS_TYPES)}")
        if draft.channel == APP_CHANNEL and draft.os_type is None:
            raise OrderError(
                "os_type", "is required for an app order on Antom (IOS or ANDROID): Antom picks the app to open by it"
            )
        self._redirect_url(draft)

    def default_timeout(self, channel: str, configured: str) -> str:
        return configured

    def payment(self, draft: OrderDraft, now: datetime) -> dict[str, str]:
        from .ports import CashierPayment

        page = self.gateway().pay(
            CashierPayment(
                out_trade_no=draft.out_trade_no,
                subject=draft.subject,
                amount=draft.total_amount,
                currency=draft.currency,
                payment_method_type=draft.payment_method or self.merchant.payment_methods[0],
                redirect_url=self._redirect_url(draft),
                # paymentExpiryTime is absolute: Antom refuses the payment after the order's own pay_by.
                expiry=now + timedelta(minutes=params.timeout_minutes(draft.timeout, "timeout")),
                terminal_type=_TERMINAL_TYPES[draft.channel],
                os_type=draft.os_type,
            )
        )
        answer = {"normal_url": page.normal_url, "scheme_url": page.scheme_url, "applink_url": page.applink_url}
        found = {name: url for name, url in answer.items() if url}
        if draft.web and page.normal_url:
            found |= {"channel": draft.channel, "payment_url": page.normal_url}
        if page.payment_id:
            found["payment_id"] = page.payment_id
        return found

    def _redirect_url(self, draft: OrderDraft) -> str:
        """paymentRedirectUrl: the order's return_url (else the configured one), naming the order (Antom adds
        nothing to it, signed or not)."""
        from urllib.parse import urlencode

        from chalicelib.alipay.errors import OrderError

        url = draft.return_url or self.merchant.return_url
        if not url:
            raise OrderError("return_url", "Antom sends the buyer back to a paymentRedirectUrl: set RETURN_URL")
        separator = "&" if "?" in url else "?"
        return url + separator + urlencode({"out_trade_no": draft.out_trade_no})
