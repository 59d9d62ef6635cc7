"""The sandbox's Alipay: trades, payments, refunds and closes, and the signed notifications each one sends."""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay.certs import CertSns
from chalicelib.alipay.forms import codec_for
from chalicelib.alipay.notifications import AlipayProtocol, notification_content
from chalicelib.alipay.openapi import beijing_timestamp
from chalicelib.alipay.signing import LocalKeySigner, SignType, b64encode

from .notify import Notification, NotificationSender, form_body
from .orders import (
    MerchantOrder,
    OrderRejected,
    app_pay_result,
    merchant_keys,
    parse_mapi_order,
    parse_openapi_order,
    securitypay_result,
)

DEFAULT_TIME_SCALE = 0.001
# A payment the SDK reported as 8000 ("processing") completes this many Alipay seconds later (1 s at 0.001).
PENDING_SECONDS = 1000
OUTCOMES = ("success", "cancel", "pending")
NOTIFY_CHARSETS = ("utf-8", "gbk")
MAX_DUPLICATES = 10
PENDING_MEMO = "正在处理中，支付结果未知（有可能已经支付成功），请查询商户订单列表中订单的支付状态"

WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
TRADE_CLOSED = "TRADE_CLOSED"
PAID = frozenset({TRADE_SUCCESS, TRADE_FINISHED})
# Where a trade may go from each status; Alipay never moves a trade backwards.
FORWARD = {
    WAIT_BUYER_PAY: frozenset({TRADE_SUCCESS, TRADE_FINISHED, TRADE_CLOSED}),
    TRADE_SUCCESS: frozenset({TRADE_FINISHED, TRADE_CLOSED}),
    TRADE_FINISHED: frozenset(),
    TRADE_CLOSED: frozenset(),
}

# The sandbox's one buyer.
BUYER_ID = "2088102177846875"
BUYER_LOGON_ID = "buy***@sandbox.example"
_BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
_CENT = Decimal("0.01")


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class SandboxSettings:
    """Who the sandbox plays Alipay for: the merchant's ids and public key, Alipay's key pair, the time scale."""

    protocol: AlipayProtocol
    alipay_key: rsa.RSAPrivateKey
    merchant_public_key: rsa.RSAPublicKey
    app_id: str = ""
    seller_id: str = ""
    partner_id: str = ""
    time_scale: float = DEFAULT_TIME_SCALE
    # create_forex_trade(_wap): the timeout_rule values enabled for the partner; Alipay enables only 12h by default.
    timeout_rules: tuple[str, ...] = ("12h",)
    # Certificate mode (Open Platform): the SNs a request must carry, and the SN of the certificate of alipay_key,
    # which every gateway reply names (alipay_cert_sn). merchant_public_key is then the app certificate's key.
    cert_sns: CertSns | None = None
    alipay_cert_sn: str = ""
    # Antom (sandbox/antom.py): the merchant's client id. alipay_key is then the sandbox's Antom key, and
    # merchant_public_key the public half of the merchant's Antom key (a KMS key of its own).
    antom_client_id: str = ""

    def __post_init__(self) -> None:
        if self.protocol is AlipayProtocol.OPENAPI and not (self.app_id and self.seller_id):
            raise ValueError("the openapi sandbox needs app_id and seller_id")
        if self.protocol is AlipayProtocol.MAPI and not self.partner_id:
            raise ValueError("the mapi sandbox needs partner_id")
        if self.protocol is AlipayProtocol.ANTOM and not self.antom_client_id:
            raise ValueError("the antom sandbox needs antom_client_id")
        if self.cert_sns is not None and (self.protocol is not AlipayProtocol.OPENAPI or not self.alipay_cert_sn):
            raise ValueError("certificate mode is Open Platform's, and needs the sandbox certificate's SN")
        if not self.time_scale > 0:
            raise ValueError("time_scale must be positive")

    @property
    def sign_type(self) -> SignType:
        """What Alipay signs with: RSA2 for the Open Platform app, SHA1withRSA for the legacy service."""
        return SignType.RSA2 if self.protocol is AlipayProtocol.OPENAPI else SignType.RSA


def unwritable_text(order: MerchantOrder, charset: str) -> str | None:
    """What in the order's text ``charset`` cannot encode (results and notifications are signed as bytes in it),
    said for the memo; None when it can encode it all. An emoji or a rare character has no GBK bytes, yet reaches
    a GBK order through biz_content's JSON escapes (``\\ud83d\\ude00``)."""
    codec = codec_for(charset)
    for name, value in (("subject", order.subject), ("body", order.body), ("passback_params", order.passback_params)):
        try:
            value.encode(codec)
        except UnicodeEncodeError as exc:
            return f"{name} has a character {charset} cannot encode ({value[exc.start : exc.end]!r}); use utf-8"
    return None


@dataclass(frozen=True, slots=True)
class PayControls:
    """Test controls of ``POST /sandbox/pay``: how the notifications of this payment are delivered."""

    duplicates: int = 0  # extra deliveries of each notification, as Alipay's at-least-once delivery does
    reorder: bool = False  # openapi: TRADE_FINISHED is delivered before TRADE_SUCCESS
    finish: bool = False  # openapi: TRADE_FINISHED follows TRADE_SUCCESS
    charset: str | None = None  # the notification's charset (default: the order's)
    notify_delay: float | None = None  # real seconds before the first delivery (pending: before the payment)


@dataclass
class RefundEdges:
    """Test controls of ``POST /sandbox/trades/<out_trade_no>/refunds``: the money edges of this trade's refunds."""

    lose_replies: int = 0  # the next refund replies are lost (504) after the refund is carried out
    slow: bool = False  # refunds are accepted with fund_change=N and carried out only on .../refunds/settle
    notify: bool = True  # send the refund notification (trade_status with refund_fee and out_biz_no)


@dataclass(frozen=True, slots=True)
class Refund:
    """One ``alipay.trade.refund`` request, kept so that its ``out_request_no`` answers the same again."""

    out_request_no: str
    amount: Decimal
    refunded_total: Decimal
    gmt_refund: str


@dataclass
class Trade:
    """A trade as Alipay holds it."""

    order: MerchantOrder
    trade_no: str
    status: str
    gmt_create: str
    gmt_payment: str = ""
    gmt_close: str = ""
    refunds: dict[str, Refund] = field(default_factory=dict)
    refund_edges: RefundEdges = field(default_factory=lambda: RefundEdges())
    processing: dict[str, Decimal] = field(default_factory=dict)  # slow refunds accepted, money not moved yet
    answer_status: str | None = None  # a status the trade queries answer instead of the real one (an unknown one)

    @property
    def queried_status(self) -> str:
        """The status the trade queries answer."""
        return self.answer_status or self.status

    @property
    def refunded(self) -> Decimal:
        return sum((r.amount for r in self.refunds.values()), Decimal(0))


class TradeError(Exception):
    """A gateway call Alipay answers with code 40004 and this ``sub_code``."""

    def __init__(self, sub_code: str, sub_msg: str) -> None:
        super().__init__(f"{sub_code}: {sub_msg}")
        self.sub_code = sub_code
        self.sub_msg = sub_msg


def sdk_result(status: str, result: str = "", memo: str = "") -> dict[str, str]:
    """What the mobile SDK hands the app."""
    return {"resultStatus": status, "result": result, "memo": memo}


class AlipaySandbox:
    """Plays Alipay for one merchant: accepts orders, keeps trades, and notifies ``notify_url`` like Alipay."""

    def __init__(
        self,
        settings: SandboxSettings,
        *,
        sender: NotificationSender | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.settings = settings
        self.signer = LocalKeySigner(settings.alipay_key, settings.sign_type)
        self.sender = sender or NotificationSender(settings.time_scale)
        self._clock = clock
        self._merchant = merchant_keys(settings.merchant_public_key)
        self._lock = threading.RLock()
        self._trades: dict[str, Trade] = {}
        self._trade_nos: dict[str, str] = {}
        self._notify_ids: set[str] = set()
        # A control (POST /sandbox/reply-cert-sn): gateway replies name this SN instead of the sandbox certificate's,
        # as a reply signed under a certificate the merchant has not configured (Alipay rotated) would.
        self.reply_cert_sn: str | None = None

    @property
    def protocol(self) -> AlipayProtocol:
        return self.settings.protocol

    def close(self) -> None:
        """Stop sending; nothing scheduled runs afterwards."""
        self.sender.close()

    # --- the app pays ------------------------------------------------------------------------------------------

    def pay(self, order_info: str, outcome: str, controls: PayControls) -> dict[str, str]:
        """What the SDK returns to the app for ``order_info`` when the buyer's outcome is ``outcome``."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}")
        try:
            order = self._parse(order_info)
        except OrderRejected as exc:
            # A rejected order never reaches the cashier: no trade, no notification.
            return sdk_result("4000", memo=f"订单支付失败 (order rejected): {exc}")
        # Checked before anything changes: a trade is paid only if its result and notifications can be written.
        unwritable = unwritable_text(order, order.charset) or unwritable_text(order, controls.charset or order.charset)
        if unwritable:
            return sdk_result("4000", memo=f"订单支付失败 (order rejected): {unwritable}")
        if outcome == "cancel":
            return sdk_result("6001", memo="用户中途取消")
        with self._lock:
            try:
                trade = self._open_trade(order)
            except TradeError as exc:
                return sdk_result("4000", memo=f"订单支付失败 ({exc.sub_code}): {exc.sub_msg}")
            if outcome == "pending":
                delay = PENDING_SECONDS * self.settings.time_scale
                if controls.notify_delay is not None:
                    delay = controls.notify_delay
                self.sender.call_later(delay, lambda: self._complete_pending(trade.order.out_trade_no, controls))
                return sdk_result("8000", memo=PENDING_MEMO)
            notifications = self._settle(trade, controls)
            result = self._result(trade)
        self.sender.send(notifications, duplicates=controls.duplicates, delay=controls.notify_delay or 0.0)
        return sdk_result("9000", result=result)

    def _parse(self, order_info: str) -> MerchantOrder:
        s = self.settings
        if s.protocol is AlipayProtocol.OPENAPI:
            return parse_openapi_order(
                order_info, app_id=s.app_id, seller_id=s.seller_id, merchant=self._merchant, cert_sns=s.cert_sns
            )
        sellers = frozenset(x for x in (s.partner_id, s.seller_id) if x)
        return parse_mapi_order(order_info, partner=s.partner_id, seller_ids=sellers, merchant=self._merchant)

    def _open_trade(self, order: MerchantOrder) -> Trade:
        """The waiting trade for this order: a new one, or the earlier unpaid one for the same ``out_trade_no``."""
        existing = self._trades.get(order.out_trade_no)
        if existing is None:
            trade = Trade(order=order, trade_no=self._new_trade_no(), status=WAIT_BUYER_PAY, gmt_create=self._now())
            self._trades[order.out_trade_no] = trade
            self._trade_nos[trade.trade_no] = order.out_trade_no
            return trade
        if existing.status in PAID:
            raise TradeError("ACQ.TRADE_HAS_SUCCESS", "交易已被支付 (the trade is already paid)")
        if existing.status == TRADE_CLOSED:
            raise TradeError("ACQ.TRADE_HAS_CLOSE", "交易已经关闭 (the trade is closed)")
        if (existing.order.total_amount, existing.order.currency) != (order.total_amount, order.currency):
            raise TradeError("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改 (same out_trade_no, different amount)")
        return existing

    def _complete_pending(self, out_trade_no: str, controls: PayControls) -> None:
        with self._lock:
            trade = self._trades[out_trade_no]
            if trade.status != WAIT_BUYER_PAY:  # closed (or paid by a later attempt) in the meantime
                return
            notifications = self._settle(trade, controls)
        self.sender.send(notifications, duplicates=controls.duplicates)

    def _settle(self, trade: Trade, controls: PayControls) -> list[Notification]:
        """Mark the trade paid; the notifications Alipay sends for it, in delivery order."""
        trade.gmt_payment = self._now()
        if self.protocol is AlipayProtocol.MAPI:
            # Cross-border legacy payments are notified as TRADE_FINISHED (§2.2); there is no later status.
            statuses = [TRADE_FINISHED]
        elif controls.reorder:
            statuses = [TRADE_FINISHED, TRADE_SUCCESS]
        elif controls.finish:
            statuses = [TRADE_SUCCESS, TRADE_FINISHED]
        else:
            statuses = [TRADE_SUCCESS]
        trade.status = TRADE_FINISHED if TRADE_FINISHED in statuses else TRADE_SUCCESS
        if trade.status == TRADE_FINISHED:
            trade.gmt_close = trade.gmt_payment
        return [self._notification(trade, status, charset=controls.charset) for status in statuses]

    def _result(self, trade: Trade) -> str:
        if self.protocol is AlipayProtocol.OPENAPI:
            return app_pay_result(
                trade.order,
                app_id=self.settings.app_id,
                trade_no=trade.trade_no,
                timestamp=beijing_timestamp(self._clock()),
                signer=self.signer,
            )
        return securitypay_result(trade.order, self.signer)

    # --- the web cashier (page and wap pay, create_forex_trade[_wap]) ------------------------------------------

    def open_web_trade(self, order: MerchantOrder) -> Trade:
        """The waiting trade a web payment request opens (or the earlier unpaid one); ``TradeError`` if it cannot."""
        unwritable = unwritable_text(order, order.charset)
        if unwritable:
            raise TradeError("ACQ.PARAM_ERROR", f"参数有误 (invalid parameter): {unwritable}")
        with self._lock:
            return self._open_trade(order)

    def pay_web_trade(self, out_trade_no: str) -> Trade:
        """The shopper pays at the cashier: the trade is paid and its notifications go out with Alipay's retries.

        ``TradeError`` unless the trade is waiting (a second click on Pay finds it paid: the caller decides).
        """
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                raise TradeError("ACQ.TRADE_NOT_EXIST", "交易不存在 (no such trade)")
            if trade.status != WAIT_BUYER_PAY:
                raise TradeError("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法 (the trade is {trade.status})")
            notifications = self._settle(trade, PayControls())
        self.sender.send(notifications)
        return trade

    def beijing_now(self) -> str:
        """The sandbox's clock as Alipay writes times: ``yyyy-MM-dd HH:mm:ss``, Beijing time."""
        return self._now()

    def new_notify_id(self) -> str:
        """A notify_id Alipay vouches for (``notify_verify`` says true), as the legacy return carries one."""
        with self._lock:
            notify_id = secrets.token_hex(18)[:35]
            self._notify_ids.add(notify_id)
            return notify_id

    # --- trades, for the gateway and the control endpoints ---------------------------------------------------

    def find(self, *, out_trade_no: str | None = None, trade_no: str | None = None) -> Trade | None:
        """The trade by merchant order number or by Alipay trade number."""
        with self._lock:
            key = out_trade_no or self._trade_nos.get(trade_no or "")
            trade = self._trades.get(key or "")
            if trade is not None and trade_no and trade.trade_no != trade_no:
                return None
            return trade

    @property
    def lock(self) -> threading.RLock:
        """Held while reading a trade's fields, so that they are consistent with each other."""
        return self._lock

    def trade_view(self, out_trade_no: str) -> dict[str, Any] | None:
        """``GET /sandbox/trades/<out_trade_no>``: the trade and every delivery made for it."""
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return None
            view: dict[str, Any] = {
                "out_trade_no": trade.order.out_trade_no,
                "trade_no": trade.trade_no,
                "status": trade.status,
                "total_amount": trade.order.total_amount,
                "currency": trade.order.currency,
                "refund_fee": str(trade.refunded.quantize(_CENT)),
                "notify_url": trade.order.notify_url,
                "gmt_create": trade.gmt_create,
                "gmt_payment": trade.gmt_payment or None,
                "gmt_close": trade.gmt_close or None,
                # Alipay's own record of the money moved back, one entry per out_request_no it carried out (the soak
                # checks that no merchant refund was carried out twice), and the slow ones accepted but not yet moved.
                "refunds": [
                    {
                        "out_request_no": r.out_request_no,
                        "refund_amount": str(r.amount.quantize(_CENT)),
                        "refund_fee": str(r.refunded_total.quantize(_CENT)),
                        "gmt_refund": r.gmt_refund,
                    }
                    for r in trade.refunds.values()
                ],
                "refunds_processing": sorted(trade.processing),
            }
        view["notifications"] = self.sender.notifications(out_trade_no)
        view["attempts"] = [a.as_json() for a in self.sender.attempts(out_trade_no)]
        return view

    def notify(
        self,
        out_trade_no: str,
        trade_status: str,
        *,
        refund_fee: str | None = None,
        controls: PayControls | None = None,
    ) -> dict[str, str] | None:
        """Send a further notification for a trade (None if unknown); a forward status also moves the trade."""
        if trade_status not in FORWARD:
            raise ValueError(f"trade_status must be one of {', '.join(FORWARD)}")
        controls = controls or PayControls()
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return None
            unwritable = unwritable_text(trade.order, controls.charset or trade.order.charset)
            if unwritable:  # refused before the trade moves: no status without its notification
                raise ValueError(f"cannot notify: {unwritable}")
            # A backwards or repeated status is still sent (that is how a late notification looks) but the
            # trade stays where it is.
            if trade_status in FORWARD[trade.status]:
                now = self._now()
                if trade_status in PAID and not trade.gmt_payment:
                    trade.gmt_payment = now
                if trade_status in (TRADE_FINISHED, TRADE_CLOSED):
                    trade.gmt_close = now
                trade.status = trade_status
            extra = {"refund_fee": refund_fee, "gmt_refund": self._now()} if refund_fee else {}
            note = self._notification(trade, trade_status, charset=controls.charset, extra=extra)
        self.sender.send([note], duplicates=controls.duplicates, delay=controls.notify_delay or 0.0)
        return {"notify_id": note.notify_id, "trade_status": trade_status}

    def notify_id_sent(self, notify_id: str) -> bool:
        """Whether the sandbox sent a notification with this ``notify_id`` (the legacy ``notify_verify``)."""
        with self._lock:
            return notify_id in self._notify_ids

    # --- gateway operations (alipay.trade.close / alipay.trade.refund) ---------------------------------------

    def close_trade(self, trade: Trade) -> None:
        """Close a waiting trade: TRADE_CLOSED, and its notification. ``TradeError`` unless it is waiting."""
        with self._lock:
            if trade.status != WAIT_BUYER_PAY:
                raise TradeError("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法 (the trade is {trade.status})")
            trade.status = TRADE_CLOSED
            trade.gmt_close = self._now()
            note = self._notification(trade, TRADE_CLOSED)
        self.sender.send([note])

    def expire(self, out_trade_no: str) -> str | None:
        """Alipay's own timeout (``it_b_pay``, ``timeout_express``, ``time_expire``) closes a waiting trade, unnotified.

        Its status afterwards (None: no such trade). A later ``notify`` of a payment plays money captured late.
        """
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return None
            if trade.status == WAIT_BUYER_PAY:
                trade.status = TRADE_CLOSED
                trade.gmt_close = self._now()
            return trade.status

    def pay_late(self, out_trade_no: str) -> dict[str, str] | None:
        """The buyer pays a trade that expired or was closed (Alipay's trade outlived the merchant's order): Alipay
        captures the money and notifies the payment (None: no such trade)."""
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return None
            status = TRADE_SUCCESS if self.protocol is AlipayProtocol.OPENAPI else TRADE_FINISHED
            trade.status, trade.gmt_payment, trade.gmt_close = status, self._now(), ""
            note = self._notification(trade, status)
        self.sender.send([note])
        return {"notify_id": note.notify_id, "trade_status": status}

    def set_answer_status(self, out_trade_no: str, status: str | None) -> bool:
        """Make the trade queries answer ``status`` (None: the real one); False when there is no such trade."""
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return False
            trade.answer_status = status
            return True

    def refund(self, trade: Trade, amount: Decimal, out_request_no: str) -> tuple[Refund, bool]:
        """Refund ``amount``; ``(refund, fund_change)``. The same ``out_request_no`` again changes nothing.

        A slow trade (``RefundEdges.slow``) accepts the refund with ``fund_change=N`` and moves no money until
        ``settle_refunds``: meanwhile the refund query does not say ``REFUND_SUCCESS``.
        """
        with self._lock:
            done = trade.refunds.get(out_request_no)
            if done is not None:
                return done, False
            if out_request_no in trade.processing:
                return Refund(out_request_no, trade.processing[out_request_no], trade.refunded, self._now()), False
            if trade.status != TRADE_SUCCESS:
                # Only a paid, still refundable trade: not waiting, not closed, not finished.
                raise TradeError("ACQ.TRADE_STATUS_ERROR", f"交易状态不合法 (the trade is {trade.status})")
            exceeded = TradeError("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限 (more than the unrefunded amount)")
            if trade.refund_edges.slow:
                if amount > Decimal(trade.order.total_amount) - trade.refunded - sum(trade.processing.values()):
                    raise exceeded
                trade.processing[out_request_no] = amount
                return Refund(out_request_no, amount, trade.refunded, self._now()), False
            # A partial refund is notified as TRADE_SUCCESS; the refund that empties the trade closes it (§1.2).
            refund = self._record_refund(trade, out_request_no, amount, exceeded)
            notes = self._refund_notification(trade, refund)
        self.sender.send(notes)
        return refund, True

    def set_refund_edges(self, out_trade_no: str, edges: RefundEdges) -> bool:
        """Set the money edges of a trade's refunds; False when there is no such trade."""
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return False
            trade.refund_edges = edges
            return True

    def settle_refunds(self, out_trade_no: str) -> list[str] | None:
        """Carry out a slow trade's accepted refunds (money moves, notifications go); their numbers (None: no trade)."""
        notes = []
        with self._lock:
            trade = self._trades.get(out_trade_no)
            if trade is None:
                return None
            settled = list(trade.processing)
            for out_request_no, amount in trade.processing.items():
                exceeded = TradeError("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
                refund = self._record_refund(trade, out_request_no, amount, exceeded)
                notes.extend(self._refund_notification(trade, refund))
            trade.processing.clear()
        self.sender.send(notes)
        return settled

    def take_lost_reply(self, trade: Trade) -> bool:
        """Whether this refund's reply is to be lost (counting it down)."""
        with self._lock:
            if trade.refund_edges.lose_replies <= 0:
                return False
            trade.refund_edges.lose_replies -= 1
            return True

    def refund_query(self, trade: Trade, out_request_no: str) -> Refund | None:
        """``alipay.trade.fastpay.refund.query``: the refund once its money moved; None before (or never asked)."""
        with self._lock:
            return trade.refunds.get(out_request_no)

    def _refund_notification(self, trade: Trade, refund: Refund) -> list[Notification]:
        """The refund's notification, unless the trade's edges hold it back (the caller holds the lock)."""
        if not trade.refund_edges.notify:
            return []
        extra = {
            "refund_fee": str(refund.refunded_total.quantize(_CENT)),
            "gmt_refund": refund.gmt_refund,
            "out_biz_no": refund.out_request_no,
        }
        return [self._notification(trade, trade.status, extra=extra)]

    def forex_refund(self, trade: Trade, amount: Decimal, out_return_no: str, currency: str) -> Refund:
        """Legacy ``forex_refund`` with ``is_sync=Y``: refunded now; ``TradeError(error)`` (``sub_code``) otherwise.

        Simulated from documentation, not observed: Alipay's refund guide says a synchronous refund sends no
        notification, so none is sent; the error names are those published integrations handle; a repeated
        ``out_return_no`` is refused as REPEATED_REFUNDMENT_REQUEST (what it really gets is UNCONFIRMED); the refund
        that empties the trade closes it, as on Open Platform (UNCONFIRMED for the legacy query's trade_status).
        """
        with self._lock:
            if out_return_no in trade.refunds:
                raise TradeError("REPEATED_REFUNDMENT_REQUEST", "重复的退款请求 (out_return_no used before)")
            if trade.status == TRADE_CLOSED:
                raise TradeError("TRADE_HAS_CLOSE", "交易已关闭 (the trade is closed)")
            if trade.status not in PAID:
                raise TradeError("PURCHASE_TRADE_NOT_EXIST", "交易不存在 (no paid trade)")
            if currency != trade.order.currency:
                raise TradeError("CURRENCY_NOT_SAME", "币种不一致 (not the trade's currency)")
            exceeded = TradeError("RETURN_AMOUNT_EXCEED", "退款金额超限 (more than the unrefunded amount)")
            return self._record_refund(trade, out_return_no, amount, exceeded)

    def _record_refund(self, trade: Trade, out_no: str, amount: Decimal, exceeded: TradeError) -> Refund:
        """Record a refund of ``amount`` (``exceeded`` above what is left); the one that empties the trade closes it.

        The caller holds the lock.
        """
        total = Decimal(trade.order.total_amount)
        if amount > total - trade.refunded:
            raise exceeded
        now = self._now()
        refund = Refund(out_no, amount, trade.refunded + amount, now)
        trade.refunds[out_no] = refund
        if refund.refunded_total == total:
            trade.status = TRADE_CLOSED
            trade.gmt_close = now
        return refund

    def stop_retries(self) -> int:
        """Drop everything scheduled (retries, pending payments); return how many."""
        return self.sender.stop_retries()

    # --- notifications -----------------------------------------------------------------------------------------

    def _notification(
        self, trade: Trade, status: str, *, charset: str | None = None, extra: dict[str, str] | None = None
    ) -> Notification:
        """A notification signed as Alipay signs it; registered for ``notify_verify`` (the caller holds the lock)."""
        order = trade.order
        charset_name = charset or order.charset
        codec = codec_for(charset_name)
        notify_id = secrets.token_hex(18)[:35]
        if self.protocol is AlipayProtocol.OPENAPI:
            fields = self._openapi_fields(trade, status, notify_id, charset_name)
        else:
            fields = self._mapi_fields(trade, status, notify_id)
        fields.update(extra or {})
        if self.protocol is AlipayProtocol.OPENAPI and status in (TRADE_FINISHED, TRADE_CLOSED) and trade.gmt_close:
            fields["gmt_close"] = trade.gmt_close
        fields = {k: v for k, v in fields.items() if v}  # Alipay does not send empty parameters
        # Signed: every field but sign and sign_type, sorted, k=v, in the notification's charset (§1.2, §2.2).
        fields["sign_type"] = self.signer.sign_type.value
        fields["sign"] = b64encode(self.signer.sign(notification_content(fields).encode(codec)))
        self._notify_ids.add(notify_id)
        return Notification(
            out_trade_no=order.out_trade_no,
            notify_id=notify_id,
            trade_status=status,
            url=order.notify_url or "",
            body=form_body(fields, codec),
            content_type=f"application/x-www-form-urlencoded; charset={charset_name}",
        )

    def _openapi_fields(self, trade: Trade, status: str, notify_id: str, charset: str) -> dict[str, str]:
        order = trade.order
        paid = bool(trade.gmt_payment)
        amount = order.total_amount if paid else ""
        fund_bills = [{"amount": order.total_amount, "fundChannel": "ALIPAYACCOUNT"}]
        return {
            "gmt_create": trade.gmt_create,
            "charset": charset,
            "gmt_payment": trade.gmt_payment,
            "notify_time": self._now(),
            "subject": order.subject,
            "buyer_id": BUYER_ID,
            "body": order.body,
            "invoice_amount": amount,
            "version": "1.0",
            "notify_id": notify_id,
            "fund_bill_list": json.dumps(fund_bills, separators=(",", ":")) if paid else "",
            "notify_type": "trade_status_sync",
            "out_trade_no": order.out_trade_no,
            "total_amount": order.total_amount,
            "trade_status": status,
            "trade_no": trade.trade_no,
            "auth_app_id": self.settings.app_id,
            "receipt_amount": amount,
            "point_amount": "0.00" if paid else "",
            "buyer_pay_amount": amount,
            "app_id": self.settings.app_id,
            "seller_id": order.seller_id,
            "buyer_logon_id": BUYER_LOGON_ID,
            "passback_params": order.passback_params,
        }

    def _mapi_fields(self, trade: Trade, status: str, notify_id: str) -> dict[str, str]:
        # Exactly the fields of genuine cross-border notifications (docs/protocols.md §2.2): no seller_id, no partner,
        # no subject or dates. Only notify_verify ties such a notification to the partner.
        order = trade.order
        return {
            "currency": order.currency or "",
            "notify_id": notify_id,
            "notify_time": self._now(),
            "notify_type": "trade_status_sync",
            "out_trade_no": order.out_trade_no,
            order.amount_field: order.total_amount,
            "trade_no": trade.trade_no,
            "trade_status": status,
        }

    # --- helpers -----------------------------------------------------------------------------------------------

    def _now(self) -> str:
        return beijing_timestamp(self._clock())

    def _new_trade_no(self) -> str:
        """``yyyyMMdd`` (Beijing) + ``22001`` + 15 digits, like Alipay's trade numbers; unique in this sandbox."""
        day = self._clock().astimezone(_BEIJING).strftime("%Y%m%d")
        while True:
            trade_no = f"{day}22001{secrets.randbelow(10**15):015d}"
            if trade_no not in self._trade_nos:
                return trade_no
