"""The one seam between Alipay's two protocols: Open Platform (``openapi``) and legacy Global MAPI (``mapi``).

``bootstrap`` picks one ``AlipayFlavour`` for the configured protocol, once, and hands it to the use cases; they ask it
how to build and sign an order, how to verify and address-check what Alipay sends, and what the protocol allows (which
statuses are refundable, whether a trade can be closed at Alipay). No use case branches on the protocol. The pure
protocol functions stay in ``chalicelib.alipay``; this module only says which of them each protocol uses, and with
which of the merchant's ids.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from chalicelib.alipay import params
from chalicelib.alipay.notifications import AlipayProtocol, Notification, check_addressee, verify_notification
from chalicelib.alipay.signing import AlipayPublicKeys, Signer, SignType
from chalicelib.orders.model import LEGACY_REFUNDABLE_STATUSES, REFUNDABLE_STATUSES, Order, OrderStatus

from .commands import APP_CHANNEL, OrderDraft

if TYPE_CHECKING:
    from chalicelib.alipay.certs import CertSns
    from chalicelib.alipay.web import WebPayment, WebReturn
    from chalicelib.config import Config


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
        )


class OrderStrings(Protocol):
    """Builds the signed ``orderInfo`` (app) or web payment (page, wap) for one protocol; ``check`` only validates."""

    def check(self, draft: OrderDraft) -> None: ...

    def default_timeout(self, channel: str, configured: str) -> str:
        """The timeout of an order of ``channel`` naming none: ``configured``, unless the protocol cannot take it."""

    def sign(self, draft: OrderDraft, now: datetime) -> str: ...

    def sign_web(self, draft: OrderDraft, now: datetime) -> WebPayment: ...


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

    def order_strings(self, signer: Signer) -> OrderStrings:
        """How orders are built and signed by ``signer``."""

    def verify_notification(
        self, body: bytes, keys: AlipayPublicKeys, default_charset: str | None = None
    ) -> Notification:
        """A notification verified from its raw bytes and addressed to this merchant; else a ``VerificationError``."""

    def verify_app_result(self, result: str, keys: AlipayPublicKeys, order: Order) -> None:
        """The app SDK's ``result`` is Alipay's, for this merchant, order and amount; else a ``VerificationError``."""

    def return_query(self, query: Mapping[str, Sequence[str]]) -> bytes:
        """A web return's decoded query rebuilt as bytes, in the charset it declares."""

    def verify_return(self, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
        """A web return's query verified; else a ``VerificationError``."""

    def check_return(self, verified: WebReturn, order: Order) -> None:
        """A verified return is addressed to this merchant and carries ``order``'s amount; else ``OrderMismatch``."""


@dataclass(frozen=True, slots=True)
class OpenPlatform:
    """Open Platform: ``alipay.trade.*`` requests by ``app_id``, signed RSA2 (by KMS)."""

    merchant: Merchant
    name: ClassVar[AlipayProtocol] = AlipayProtocol.OPENAPI
    refundable: ClassVar[frozenset[OrderStatus]] = REFUNDABLE_STATUSES
    can_close: ClassVar[bool] = True  # alipay.trade.close
    confirms_notify_id: ClassVar[bool] = False

    def __post_init__(self) -> None:
        if not self.merchant.app_id:
            raise ValueError("Open Platform notifications are checked against the app_id")

    def order_strings(self, signer: Signer) -> OrderStrings:
        return OpenPlatformOrderStrings(signer, self.merchant)

    def verify_notification(
        self, body: bytes, keys: AlipayPublicKeys, default_charset: str | None = None
    ) -> Notification:
        notification = _verified(self, body, keys, default_charset)
        check_addressee(notification, app_id=self.merchant.app_id, seller_id=self.merchant.seller_id)
        return notification

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

    def return_query(self, query: Mapping[str, Sequence[str]]) -> bytes:
        return _return_query(self, query)

    def verify_return(self, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
        return _verified_return(self, raw, keys)

    def check_return(self, verified: WebReturn, order: Order) -> None:
        _check_return(verified, order, self.merchant, seller_id=self.merchant.seller_id)


@dataclass(frozen=True, slots=True)
class LegacyGlobal:
    """Legacy Global MAPI: ``mobile.securitypay.pay``, ``create_forex_trade(_wap)`` by partner, signed SHA1withRSA."""

    merchant: Merchant
    name: ClassVar[AlipayProtocol] = AlipayProtocol.MAPI
    # A cross-border payment is notified as TRADE_FINISHED and forex_refund still refunds it (orders/model.py).
    refundable: ClassVar[frozenset[OrderStatus]] = LEGACY_REFUNDABLE_STATUSES
    can_close: ClassVar[bool] = False  # no close API: a trade expires by it_b_pay
    confirms_notify_id: ClassVar[bool] = True  # notify_verify

    def __post_init__(self) -> None:
        if not self.merchant.partner_id:
            raise ValueError("the legacy protocol needs the partner id (notify_verify, addressee checks)")

    def order_strings(self, signer: Signer) -> OrderStrings:
        return LegacyOrderStrings(signer, self.merchant)

    def verify_notification(
        self, body: bytes, keys: AlipayPublicKeys, default_charset: str | None = None
    ) -> Notification:
        notification = _verified(self, body, keys, default_charset)
        check_addressee(notification, seller_id=self._seller_id, partner=self.merchant.partner_id)
        return notification

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

    def return_query(self, query: Mapping[str, Sequence[str]]) -> bytes:
        return _return_query(self, query)

    def verify_return(self, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
        return _verified_return(self, raw, keys)

    def check_return(self, verified: WebReturn, order: Order) -> None:
        # As for notifications: the seller is the partner unless one is configured (else a return Alipay signed for
        # another seller, same order number and amount, would show this order).
        _check_return(verified, order, self.merchant, seller_id=self._seller_id)

    @property
    def _seller_id(self) -> str | None:
        return self.merchant.seller_id or self.merchant.partner_id


FLAVOURS: Mapping[AlipayProtocol, type[OpenPlatform] | type[LegacyGlobal]] = {
    AlipayProtocol.OPENAPI: OpenPlatform,
    AlipayProtocol.MAPI: LegacyGlobal,
}


def flavour_for(protocol: AlipayProtocol, merchant: Merchant) -> AlipayFlavour:
    """The configured protocol's flavour, for ``merchant``: chosen here, once, by ``bootstrap``."""
    return FLAVOURS[AlipayProtocol(protocol)](merchant)


# --- what both protocols do alike, with their own tables -------------------------------------------------------------


def _verified(flavour: AlipayFlavour, body: bytes, keys: AlipayPublicKeys, charset: str | None) -> Notification:
    return verify_notification(
        body, protocol=flavour.name, keys=keys, sign_type=flavour.merchant.sign_type, default_charset=charset
    )


def _return_query(flavour: AlipayFlavour, query: Mapping[str, Sequence[str]]) -> bytes:
    from chalicelib.alipay.web import encode_query

    return encode_query(query, flavour.name)


def _verified_return(flavour: AlipayFlavour, raw: bytes, keys: AlipayPublicKeys) -> WebReturn:
    from chalicelib.alipay.web import verify_return

    return verify_return(raw, protocol=flavour.name, keys=keys, sign_type=flavour.merchant.sign_type)


def _check_return(verified: WebReturn, order: Order, merchant: Merchant, *, seller_id: str | None) -> None:
    from chalicelib.alipay.web import check_return

    check_return(
        verified,
        total_amount=order.total_amount,
        currency=order.currency,
        app_id=merchant.app_id,
        seller_id=seller_id,
        partner=merchant.partner_id,
    )


def _beijing(moment: datetime) -> str:
    from chalicelib.alipay.openapi import beijing_timestamp

    return beijing_timestamp(moment)


# --- order strings ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenPlatformOrderStrings:
    """``alipay.trade.app.pay`` order strings and page/wap payments, signed by the merchant key (KMS, RSA2)."""

    signer: Signer
    merchant: Merchant

    def check(self, draft: OrderDraft) -> None:
        if draft.web:
            from chalicelib.alipay.web import WebChannel, web_pay_biz_content

            web_pay_biz_content(WebChannel(draft.channel), **self._biz(draft))
            params.check_return_url(draft.return_url or "")
            return
        from chalicelib.alipay.openapi import app_pay_biz_content

        app_pay_biz_content(**self._biz(draft))

    def default_timeout(self, channel: str, configured: str) -> str:
        return configured

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
