"""Antom's merchant APIs over HTTPS: ``ports.AlipayGateway`` (inquiryPayment, cancel, refund, inquiryRefund) and pay.

Transport only, with the same discipline as ``HttpAlipayGateway`` (``alipay_gateway.Transport``: pooled urllib3,
bounded retries with jitter, one deadline per call, transient failures as ``Unavailable``). Each request is signed
once (a KMS call) and resent as is on a retry: every one of these calls is idempotent by our number
(``paymentRequestId``, ``refundRequestId``). Each reply is verified with Antom's public key over its raw bytes
(``response-time``) before any field is read (``chalicelib.alipay.antom``); docs/protocols.md §7.

Antom's answers, mapped to the port's values:

- ``query_trade``: inquiryPayment's ``paymentStatus`` SUCCESS -> ``TRADE_SUCCESS``; FAIL, CANCELLED ->
  ``TRADE_CLOSED``; PROCESSING, PENDING -> ``WAIT_BUYER_PAY``; ``ORDER_NOT_EXIST`` -> not found. ``trade_no`` is
  Antom's ``paymentId``.
- ``close_trade``: cancel ``S`` -> closed; ``F`` + ``ORDER_NOT_EXIST`` -> not found; another ``F`` -> not closed,
  ``sub_code`` = the result code (``ORDER_STATUS_INVALID``: most often paid meanwhile; a query tells).
- ``refund``: ``S`` -> the money moved (``fund_change``); ``U`` -> accepted, not known yet (``fund_change`` False
  with a ``refund_fee`` of 0, so that the services ask ``query_refund`` before believing it); ``F`` ->
  ``RefundRefused`` (the result code).
- ``query_refund``: SUCCESS -> refunded; PROCESSING -> not yet; FAIL -> ``failed``; ``REFUND_NOT_EXIST`` -> not found.
- A ``U`` answer to a read (or ``UNKNOWN_EXCEPTION`` to pay) is asked again, then ``Unavailable``; any other ``F``
  is a ``GatewayError`` naming the result code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from typing import Protocol, TypeVar

import urllib3

from chalicelib.alipay import antom
from chalicelib.alipay import params as p
from chalicelib.alipay.errors import ErrorReply, RefundRefusal, RetryableReply
from chalicelib.alipay.signing import AlipayPublicKeys, Signer, SignType
from chalicelib.services.ports import (
    CashierPayment,
    NotSupported,
    PaymentPage,
    PaymentRefused,
    RefundQueryResult,
    RefundRefused,
    RefundResult,
    TradeCloseResult,
    TradeQueryResult,
)

from .alipay_gateway import GatewayConfigError, Transport, check_gateway_url

DEFAULT_GATEWAY_URL = "https://open-sea-global.alipay.com"
TRADE_STATUS_OF = {
    "SUCCESS": "TRADE_SUCCESS",
    "FAIL": "TRADE_CLOSED",
    "CANCELLED": "TRADE_CLOSED",
    "PROCESSING": "WAIT_BUYER_PAY",
    "PENDING": "WAIT_BUYER_PAY",
}
# Nothing refunded is confirmed by a U answer: the services confirm a refund_fee-bearing fund_change=False reply only
# through query_refund (chalicelib/services/refunds.py), never by itself.
_NOT_CONFIRMED = Decimal("0.00")

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
T = TypeVar("T")


class _Reader(Protocol[R_co]):
    """One of ``antom.read_*`` with its echo (our number) bound: verifies a reply and reads it."""

    def __call__(
        self, headers: Mapping[str, str], body: bytes, *, client_id: str, keys: AlipayPublicKeys, path: str
    ) -> R_co: ...


class _Answer(Protocol):
    """What every verified Antom reply says first: its ``result``."""

    @property
    def result_status(self) -> str: ...

    @property
    def result_code(self) -> str: ...

    @property
    def message(self) -> str: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


def request_time(now: datetime) -> str:
    """``request-time`` as Antom's Java SDK sends it: milliseconds since the epoch."""
    return str(int(now.timestamp() * 1000))


class HttpAntomGateway:
    """``ports.AlipayGateway`` for Antom, plus ``pay``: signed requests, verified replies, bounded retries."""

    def __init__(
        self,
        *,
        gateway_url: str,
        client_id: str,
        signer: Signer,
        antom_keys: AlipayPublicKeys,
        notify_url: str | None = None,
        key_version: str = "1",
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        total_timeout: float = 12.0,
        max_attempts: int = 3,
        backoff: float = 0.2,
        pool: urllib3.PoolManager | None = None,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._base = check_gateway_url(gateway_url).rstrip("/")
        if self._base.endswith(".do"):
            # Open Platform's gateway (…/gateway.do) is not Antom's: every call would be a 404.
            raise GatewayConfigError(
                f"gateway_url {gateway_url!r} is an Open Platform gateway; Antom's is a base URL such as "
                f"{DEFAULT_GATEWAY_URL} (the API paths are appended)"
            )
        if not client_id or not client_id.isprintable() or len(client_id) > 64:
            raise GatewayConfigError("client_id (Antom's client ID, 1-64 printable characters) is required")
        if signer.sign_type is not SignType.RSA2:
            raise GatewayConfigError(f"Antom signs with SHA256withRSA (RSA2); the signer signs {signer.sign_type}")
        if notify_url is not None:
            try:
                antom.path_of(notify_url)
            except ValueError as exc:
                raise GatewayConfigError(f"notify_url: {exc}") from exc
        self._client_id = client_id
        self._signer = signer
        self._keys = antom_keys
        self._notify_url = notify_url
        self._key_version = key_version
        self._clock = clock
        self._transport = Transport(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            total_timeout=total_timeout,
            max_attempts=max_attempts,
            backoff=backoff,
            pool=pool,
            sleep=sleep,
            monotonic=monotonic,
        )

    @classmethod
    def from_config(
        cls, config: object, signer: Signer, keys: AlipayPublicKeys, *, pool: urllib3.PoolManager | None = None
    ) -> HttpAntomGateway:
        """Build from a config object's ``gateway_url`` (Antom's base URL; default ``DEFAULT_GATEWAY_URL``),
        ``antom_client_id`` and ``notify_url`` (the public URL of ``POST /antom/notify``), read by name."""
        return cls(
            gateway_url=_config_text(config, "gateway_url") or DEFAULT_GATEWAY_URL,
            client_id=_config_text(config, "antom_client_id") or "",
            notify_url=_config_text(config, "notify_url"),
            signer=signer,
            antom_keys=keys,
            pool=pool,
        )

    # --- the port ----------------------------------------------------------------------------------------

    def query_trade(self, out_trade_no: str) -> TradeQueryResult:
        """``payments/inquiryPayment`` by ``paymentRequestId`` (our ``out_trade_no``)."""

        def answer(reply: antom.PaymentInquiry) -> TradeQueryResult:
            if not reply.found:
                return TradeQueryResult(found=False, raw=reply.raw)
            _require_success("inquiryPayment", reply)
            assert reply.payment_status is not None  # read_inquiry_payment requires it on S
            return TradeQueryResult(
                found=True,
                trade_status=TRADE_STATUS_OF[reply.payment_status],
                trade_no=reply.payment_id,
                total_amount=reply.amount,
                currency=reply.currency,
                raw=reply.raw,
            )

        read = partial(antom.read_inquiry_payment, out_trade_no=out_trade_no)
        body = antom.inquiry_payment_body(out_trade_no)
        return self._call("inquiryPayment", antom.INQUIRY_PAYMENT_PATH, body, read, answer)

    def close_trade(self, out_trade_no: str) -> TradeCloseResult:
        """``payments/cancel`` by ``paymentRequestId``."""

        def answer(reply: antom.CancelReply) -> TradeCloseResult:
            if reply.result_status == "U":
                raise RetryableReply(f"cancel answered U {reply.result_code}")
            sub_code = None if reply.cancelled else reply.result_code
            return TradeCloseResult(closed=reply.cancelled, found=reply.found, sub_code=sub_code, raw=reply.raw)

        read = partial(antom.read_cancel, out_trade_no=out_trade_no)
        return self._call("cancel", antom.CANCEL_PATH, antom.cancel_body(out_trade_no), read, answer)

    def refund(
        self,
        out_trade_no: str,
        refund_amount: Decimal,
        out_request_no: str,
        reason: str | None,
        currency: str | None = None,
        channel: str | None = None,
        trade_no: str | None = None,
    ) -> RefundResult:
        """``payments/refund`` of Antom's ``paymentId`` (``trade_no``; asked with inquiryPayment when not given)."""
        del channel  # Antom refunds the payment by its id, whatever method paid it
        p.check_out_trade_no(out_trade_no)
        if not currency:
            raise ValueError("Antom's refund needs the payment's currency")
        payment_id = trade_no or self._payment_id(out_trade_no)
        body = antom.refund_body(
            out_request_no=out_request_no,
            payment_id=payment_id,
            amount=refund_amount,
            currency=currency,
            reason=reason,
            notify_url=self._notify_url,
            out_trade_no=out_trade_no,
        )

        def answer(reply: antom.RefundReplyA) -> RefundResult:
            if reply.result_status == "S":
                return RefundResult(out_request_no=out_request_no, refund_fee=None, fund_change=True, raw=reply.raw)
            if reply.result_status == "U":
                return RefundResult(
                    out_request_no=out_request_no, refund_fee=_NOT_CONFIRMED, fund_change=False, raw=reply.raw
                )
            raise RefundRefusal(reply.result_code, reply.message)

        # Resent as is on a transient failure: Antom refunds a refundRequestId once, however often it is sent.
        read = partial(antom.read_refund, out_request_no=out_request_no)
        return self._call("refund", antom.REFUND_PATH, body, read, answer)

    def query_refund(self, out_trade_no: str, out_request_no: str) -> RefundQueryResult:
        """``payments/inquiryRefund`` by ``refundRequestId`` (our ``out_request_no``)."""
        p.check_out_trade_no(out_trade_no)

        def answer(reply: antom.RefundInquiry) -> RefundQueryResult:
            if not reply.found:
                # Antom knows no such refund: never made (the request was lost on its way, or a late payment's
                # return not yet asked). ``found`` speaks of the trade, so the service may ask for it: a repeat is
                # harmless (refundRequestId), and a payment Antom does not know has the refund refused.
                return RefundQueryResult(refunded=False, found=True, raw=reply.raw)
            _require_success("inquiryRefund", reply)
            return RefundQueryResult(
                refunded=reply.status == "SUCCESS",
                refund_amount=reply.amount,
                failed=reply.status == "FAIL",
                raw=reply.raw,
            )

        read = partial(antom.read_inquiry_refund, out_request_no=out_request_no)
        body = antom.inquiry_refund_body(out_request_no)
        return self._call("inquiryRefund", antom.INQUIRY_REFUND_PATH, body, read, answer)

    def notify_verify(self, notify_id: str) -> bool:
        """Legacy only: Antom's notifications are verified by their signature alone."""
        raise NotSupported("Antom has no notify_verify: its notifications are verified by their signature")

    # --- pay ---------------------------------------------------------------------------------------------

    def pay(self, payment: CashierPayment) -> PaymentPage:
        """``ports.CashierPayments``: the payment created at Antom and where the buyer pays it; ``PaymentRefused``
        for Antom's ``F``, ``Unavailable`` when it could not be told whether Antom created it."""
        reply = self.pay_request(
            out_trade_no=payment.out_trade_no,
            subject=payment.subject,
            amount=payment.amount,
            currency=payment.currency,
            payment_method_type=payment.payment_method_type,
            redirect_url=payment.redirect_url,
            expiry=payment.expiry,
            terminal_type=payment.terminal_type,
            os_type=payment.os_type,
        )
        if not reply.accepted:
            raise PaymentRefused(reply.result_code, reply.message)
        return PaymentPage(reply.payment_id, reply.normal_url, reply.scheme_url, reply.applink_url)

    def pay_request(
        self,
        *,
        out_trade_no: str,
        subject: str,
        amount: Decimal,
        currency: str,
        payment_method_type: str,
        redirect_url: str,
        expiry: datetime,
        terminal_type: str,
        os_type: str | None,
        notify_url: str | None = None,
        settlement_currency: str | None = None,
    ) -> antom.PayReply:
        """``payments/pay`` (``CASHIER_PAYMENT``): the verified answer, ``accepted`` for ``U`` + PAYMENT_IN_PROCESS.

        ``F`` (refused) comes back as the answer too, with its result code; any other ``U`` is asked again (the
        same ``paymentRequestId`` gets the same payment), then ``Unavailable``.
        """
        notify = notify_url or self._notify_url
        if not notify:
            raise GatewayConfigError("pay needs the notify URL (config.notify_url)")
        body = antom.pay_body(
            out_trade_no=out_trade_no,
            subject=subject,
            amount=amount,
            currency=currency,
            payment_method_type=payment_method_type,
            redirect_url=redirect_url,
            notify_url=notify,
            expiry=expiry,
            terminal_type=terminal_type,
            os_type=os_type,
            settlement_currency=settlement_currency,
        )

        def answer(reply: antom.PayReply) -> antom.PayReply:
            if reply.result_status == "U" and not reply.accepted:
                raise RetryableReply(f"pay answered U {reply.result_code}")
            return reply

        return self._call("pay", antom.PAY_PATH, body, partial(antom.read_pay, out_trade_no=out_trade_no), answer)

    # --- requests ----------------------------------------------------------------------------------------

    def _call(self, name: str, api: str, body: bytes, read: _Reader[R], answer: Callable[[R], T]) -> T:
        """POST ``body`` to ``api``, signed once, with the transport's bounded retries (``name`` in its errors).

        Each reply is verified and read by ``read`` (for the path the request was signed for), then mapped by
        ``answer``, which raises ``RetryableReply`` to have it asked again.
        """
        url, path = self._endpoint(api)
        headers = self._headers(path, body)

        def attempt(timeout: urllib3.Timeout) -> T:
            data, reply_headers = self._transport.exchange("POST", url, body=body, headers=headers, timeout=timeout)
            return answer(read(reply_headers, data, client_id=self._client_id, keys=self._keys, path=path))

        return self._transport.retrying(name, attempt)

    def _endpoint(self, api: str) -> tuple[str, str]:
        """The URL to POST to and the path Antom signs for it (the base URL's own path prefix included)."""
        url = self._base + antom.api_path(api, self._client_id)
        return url, antom.path_of(url)

    def _headers(self, path: str, body: bytes) -> dict[str, str]:
        """Signed once (a KMS call) per call; a retry resends the same bytes and headers."""
        return antom.request_headers(
            self._signer,
            path=path,
            client_id=self._client_id,
            body=body,
            request_time=request_time(self._clock()),
            key_version=self._key_version,
        )

    def _payment_id(self, out_trade_no: str) -> str:
        """Antom's paymentId of a paid order, asked of inquiryPayment when the caller does not hold it."""
        trade = self.query_trade(out_trade_no)
        if not trade.found or not trade.trade_no:
            raise RefundRefused("ORDER_NOT_EXIST", "Antom knows no payment for this order to refund")
        return trade.trade_no


def _require_success(api: str, reply: _Answer) -> None:
    """A read of what Antom knows: its ``U`` is asked again, its ``F`` is a ``GatewayError`` naming the result code."""
    if reply.result_status == "U":
        raise RetryableReply(f"{api} answered U {reply.result_code}")
    if reply.result_status == "F":
        raise ErrorReply(reply.result_code, None, reply.message)


def _config_text(config: object, name: str) -> str | None:
    value = getattr(config, name, None)
    return None if value is None or value == "" else str(value)
