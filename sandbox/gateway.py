"""The sandbox's ``/gateway.do``: Alipay's gateway APIs in their wire formats, for both protocols.

Open Platform (form POST, ``method=...``): the request signature is checked like Alipay checks it (every parameter
but ``sign``, ``sign_type`` included, sorted ``k=v``, RSA2, the merchant's public key); the JSON reply is signed with
the sandbox's Alipay key over the exact text of its ``*_response`` member. Implemented: ``alipay.trade.query``,
``alipay.trade.close``, ``alipay.trade.refund``, ``alipay.trade.fastpay.refund.query``; a trade's refund edges
(``RefundEdges``: lost replies, ``fund_change=N``) are played here. Legacy (GET, ``service=...``): ``notify_verify``,
``single_trade_query`` and ``forex_refund`` (synchronous, ``is_sync=Y``) (XML).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any
from xml.sax.saxutils import escape

from chalicelib.alipay import params as p
from chalicelib.alipay.errors import AlipayError, OrderError
from chalicelib.alipay.forms import codec_for, parse_form_text, signed_content
from chalicelib.alipay.notifications import NOTIFICATION_UNSIGNED
from chalicelib.alipay.openapi import ERROR_RESPONSE, request_signed_content
from chalicelib.alipay.signing import SignType, b64encode, decode_signature, verify_signature

from .orders import check_cert_sns, merchant_keys, signed_json
from .trades import BUYER_ID, BUYER_LOGON_ID, PAID, AlipaySandbox, Trade, TradeError

# (HTTP status, Content-Type, body)
Reply = tuple[int, str, bytes]

_JSON_TYPE = "text/html;charset=utf-8"  # what Alipay's gateway labels its JSON replies with
_XML_TYPE = "text/xml;charset=utf-8"
_TEXT_TYPE = "text/plain;charset=utf-8"
_MESSAGES = {"10000": "Success", "40002": "Invalid Arguments", "40004": "Business Failed"}
_ZERO = "0.00"
_CENT = Decimal("0.01")


def handle_gateway(sandbox: AlipaySandbox, query: bytes, body: bytes) -> Reply:
    """Answer one gateway request: its query string and (for a POST) its form body, as Alipay would."""
    raw = b"&".join(part for part in (query, body) if part)
    legacy = raw.startswith(b"service=") or b"&service=" in raw
    try:
        params, _ = parse_form_text(
            raw, charset_field="_input_charset" if legacy else "charset", default_charset="utf-8"
        )
    except AlipayError as exc:
        return 400, _TEXT_TYPE, f"malformed request: {exc}".encode()
    if legacy:
        return _Legacy(sandbox).answer(params)
    return _OpenApi(sandbox).answer(params)


def _failure(code: str, sub_code: str, sub_msg: str, **extra: str) -> dict[str, str]:
    return {"code": code, "msg": _MESSAGES[code], "sub_code": sub_code, "sub_msg": sub_msg, **extra}


class _OpenApi:
    """One Open Platform request."""

    def __init__(self, sandbox: AlipaySandbox) -> None:
        self.sandbox = sandbox
        self.handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "alipay.trade.query": self.query,
            "alipay.trade.close": self.close,
            "alipay.trade.refund": self.refund,
            "alipay.trade.fastpay.refund.query": self.refund_query,
        }

    def answer(self, params: Mapping[str, str]) -> Reply:
        settings = self.sandbox.settings
        method = params.get("method", "")
        if params.get("app_id") != settings.app_id:
            # Alipay cannot sign for an app it does not know (nor know whose Alipay key to use): unsigned.
            return self._reply(ERROR_RESPONSE, _failure("40002", "isv.invalid-app-id", "无效的AppID参数"), signed=False)
        wrong_sn = check_cert_sns(params, settings.cert_sns)
        if wrong_sn:
            sub_code, _, message = wrong_sn.partition(": ")
            return self._reply(ERROR_RESPONSE, _failure("40002", f"isv.{sub_code}", message))
        if not self._signature_valid(params):
            return self._reply(
                ERROR_RESPONSE,
                _failure("40002", "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配"),
            )
        handler = self.handlers.get(method)
        if handler is None:
            return self._reply(ERROR_RESPONSE, _failure("40002", "isv.invalid-method", "不存在的方法名"))
        name = method.replace(".", "_") + "_response"
        try:
            biz = json.loads(params.get("biz_content") or "{}")
        except ValueError:
            biz = None
        if not isinstance(biz, dict):
            return self._reply(name, _failure("40002", "isv.invalid-parameter", "biz_content 不是 JSON 对象"))
        try:
            return self._reply(name, handler(biz))
        except _LostReply:
            # The refund was carried out, but its reply never reaches the merchant (a timeout, a dropped connection).
            return 504, _TEXT_TYPE, b"gateway timeout (sandbox: the reply was lost)"

    def _signature_valid(self, params: Mapping[str, str]) -> bool:
        # The sandbox app is an RSA2 app: a request signed (or declared) otherwise does not verify.
        if params.get("sign_type") != SignType.RSA2.value or not params.get("sign"):
            return False
        try:
            codec = codec_for(params.get("charset") or "utf-8")
            content = request_signed_content(params).encode(codec)
            keys = merchant_keys(self.sandbox.settings.merchant_public_key)
            verify_signature(keys, content, decode_signature(params["sign"]), SignType.RSA2)
        except (AlipayError, UnicodeEncodeError):
            return False
        return True

    def _reply(self, name: str, response: Mapping[str, Any], *, signed: bool = True) -> Reply:
        signer = self.sandbox.signer if signed else None
        cert_sn = (self.sandbox.reply_cert_sn or self.sandbox.settings.alipay_cert_sn) if signed else None
        return 200, _JSON_TYPE, signed_json(name, response, signer, cert_sn=cert_sn).encode("utf-8")

    def _trade(self, biz: Mapping[str, Any]) -> Trade | dict[str, str]:
        out_trade_no, trade_no = biz.get("out_trade_no"), biz.get("trade_no")
        if not out_trade_no and not trade_no:
            return _failure("40004", "ACQ.INVALID_PARAMETER", "out_trade_no 和 trade_no 不能同时为空")
        trade = self.sandbox.find(
            out_trade_no=out_trade_no if isinstance(out_trade_no, str) else None,
            trade_no=trade_no if isinstance(trade_no, str) else None,
        )
        if trade is None:
            echo = {"out_trade_no": out_trade_no} if isinstance(out_trade_no, str) else {}
            return _failure("40004", "ACQ.TRADE_NOT_EXIST", "交易不存在", **echo)
        return trade

    def query(self, biz: dict[str, Any]) -> dict[str, Any]:
        """``alipay.trade.query``."""
        trade = self._trade(biz)
        if not isinstance(trade, Trade):
            if trade.get("sub_code") == "ACQ.TRADE_NOT_EXIST":
                trade.update(buyer_pay_amount=_ZERO, invoice_amount=_ZERO, point_amount=_ZERO, receipt_amount=_ZERO)
            return trade
        with self.sandbox.lock:
            order = trade.order
            paid = bool(trade.gmt_payment)
            amount = order.total_amount if paid else _ZERO
            reply: dict[str, Any] = {
                "code": "10000",
                "msg": "Success",
                "buyer_logon_id": BUYER_LOGON_ID,
                "buyer_pay_amount": amount,
                "buyer_user_id": BUYER_ID,
                "invoice_amount": amount,
                "out_trade_no": order.out_trade_no,
                "point_amount": _ZERO,
                "receipt_amount": amount,
                "total_amount": order.total_amount,
                "trade_no": trade.trade_no,
                "trade_status": trade.queried_status,
            }
            if paid:
                reply["send_pay_date"] = trade.gmt_payment
                reply["fund_bill_list"] = [{"amount": order.total_amount, "fund_channel": "ALIPAYACCOUNT"}]
            if order.currency:
                reply["trans_currency"] = order.currency
        return reply

    def close(self, biz: dict[str, Any]) -> dict[str, Any]:
        """``alipay.trade.close``: only a trade still waiting for the buyer can be closed."""
        trade = self._trade(biz)
        if not isinstance(trade, Trade):
            return trade
        try:
            self.sandbox.close_trade(trade)
        except TradeError as exc:
            return _failure("40004", exc.sub_code, exc.sub_msg)
        return {"code": "10000", "msg": "Success", "trade_no": trade.trade_no, "out_trade_no": trade.order.out_trade_no}

    def refund(self, biz: dict[str, Any]) -> dict[str, Any]:
        """``alipay.trade.refund``: partial or full; a repeated ``out_request_no`` is answered again, not redone."""
        trade = self._trade(biz)
        if not isinstance(trade, Trade):
            return trade
        raw_amount = biz.get("refund_amount")
        try:
            amount = p.parse_amount(str(raw_amount) if isinstance(raw_amount, int | float) else raw_amount or "")
        except OrderError:
            return _failure("40004", "ACQ.INVALID_PARAMETER", "refund_amount 不合法")
        # Without out_request_no, Alipay takes the trade number itself: one (full) refund per trade.
        out_request_no = biz.get("out_request_no") or trade.order.out_trade_no
        if not isinstance(out_request_no, str):
            return _failure("40004", "ACQ.INVALID_PARAMETER", "out_request_no 不合法")
        try:
            refund, fund_change = self.sandbox.refund(trade, amount, out_request_no)
        except TradeError as exc:
            return _failure("40004", exc.sub_code, exc.sub_msg)
        if self.sandbox.take_lost_reply(trade):
            raise _LostReply
        return {
            "code": "10000",
            "msg": "Success",
            "buyer_logon_id": BUYER_LOGON_ID,
            "buyer_user_id": BUYER_ID,
            "fund_change": "Y" if fund_change else "N",
            "gmt_refund_pay": refund.gmt_refund,
            "out_trade_no": trade.order.out_trade_no,
            "refund_fee": str(refund.refunded_total.quantize(_CENT)),
            "send_back_fee": str(refund.amount.quantize(_CENT)),
            "trade_no": trade.trade_no,
        }


    def refund_query(self, biz: dict[str, Any]) -> dict[str, Any]:
        """``alipay.trade.fastpay.refund.query``: ``refund_status`` ``REFUND_SUCCESS`` only once the money moved."""
        trade = self._trade(biz)
        if not isinstance(trade, Trade):
            return trade
        out_request_no = biz.get("out_request_no")
        if not isinstance(out_request_no, str) or not out_request_no:
            return _failure("40004", "ACQ.INVALID_PARAMETER", "out_request_no 不能为空")
        reply: dict[str, Any] = {
            "code": "10000",
            "msg": "Success",
            "out_trade_no": trade.order.out_trade_no,
            "trade_no": trade.trade_no,
        }
        refund = self.sandbox.refund_query(trade, out_request_no)
        if refund is not None:
            # Alipay answers an unknown or unfinished refund with 10000 and none of these fields.
            reply.update(
                out_request_no=out_request_no,
                refund_amount=str(refund.amount.quantize(_CENT)),
                total_amount=trade.order.total_amount,
                refund_status="REFUND_SUCCESS",
                gmt_refund_pay=refund.gmt_refund,
            )
        return reply


class _LostReply(Exception):
    """The sandbox drops this reply (a trade's ``RefundEdges.lose_replies``)."""


class _Legacy:
    """One legacy (MAPI) request."""

    def __init__(self, sandbox: AlipaySandbox) -> None:
        self.sandbox = sandbox

    def answer(self, params: Mapping[str, str]) -> Reply:
        service = params.get("service")
        if service == "notify_verify":
            # Alipay confirms only the notify_ids it sent itself, to the partner they were sent for.
            partner_ok = params.get("partner") == self.sandbox.settings.partner_id
            sent = partner_ok and self.sandbox.notify_id_sent(params.get("notify_id", ""))
            return 200, _TEXT_TYPE, b"true" if sent else b"false"
        if service == "single_trade_query":
            return self.single_trade_query(params)
        if service == "forex_refund":
            return self.forex_refund(params)
        return self._error("ILLEGAL_SERVICE")

    def _signature_valid(self, params: Mapping[str, str]) -> bool:
        # Gateway requests sign the sorted, unquoted k=v content without sign and sign_type (§2.4).
        if params.get("sign_type") != SignType.RSA.value or not params.get("sign"):
            return False
        try:
            codec = codec_for(params.get("_input_charset") or "utf-8")
            content = signed_content(params, NOTIFICATION_UNSIGNED).encode(codec)
            keys = merchant_keys(self.sandbox.settings.merchant_public_key)
            verify_signature(keys, content, decode_signature(params["sign"]), SignType.RSA)
        except (AlipayError, UnicodeEncodeError):
            return False
        return True

    def single_trade_query(self, params: Mapping[str, str]) -> Reply:
        """``single_trade_query``: ``<alipay><is_success>T</is_success>...<response><trade>...``."""
        if params.get("partner") != self.sandbox.settings.partner_id:
            return self._error("ILLEGAL_PARTNER")
        if not self._signature_valid(params):
            return self._error("ILLEGAL_SIGN")
        trade = self.sandbox.find(out_trade_no=params.get("out_trade_no"), trade_no=params.get("trade_no"))
        if trade is None:
            return self._error("TRADE_NOT_EXIST")
        with self.sandbox.lock:
            order = trade.order
            fields = {
                "body": order.body,
                "buyer_id": BUYER_ID,
                "currency": order.currency or "",
                "gmt_create": trade.gmt_create,
                "gmt_payment": trade.gmt_payment,
                "out_trade_no": order.out_trade_no,
                "seller_id": order.seller_id,
                "subject": order.subject,
                order.amount_field: order.total_amount,
                "trade_no": trade.trade_no,
                "trade_status": trade.queried_status,
            }
            if trade.status in PAID or trade.gmt_close:
                fields["gmt_close"] = trade.gmt_close
        fields = {k: v for k, v in sorted(fields.items()) if v}
        request = "".join(
            f'<param name="{escape(k)}">{escape(v)}</param>'
            for k, v in params.items()
            if k not in NOTIFICATION_UNSIGNED
        )
        trade_xml = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in fields.items())
        # As Alipay signs it (docs/protocols.md §2.4): the sorted k=v of the <trade> leaves, the request's sign type.
        sign = b64encode(self.sandbox.signer.sign(signed_content(fields, ()).encode("utf-8")))
        xml = (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            f"<alipay><is_success>T</is_success><request>{request}</request>"
            f"<response><trade>{trade_xml}</trade></response>"
            f"<sign>{sign}</sign><sign_type>{self.sandbox.signer.sign_type.value}</sign_type></alipay>"
        )
        return 200, _XML_TYPE, xml.encode("utf-8")

    def forex_refund(self, params: Mapping[str, str]) -> Reply:
        """``forex_refund``, synchronous mode only: ``<alipay><is_success>T</is_success></alipay>`` or ``F`` + error."""
        if params.get("partner") != self.sandbox.settings.partner_id:
            return self._error("ILLEGAL_PARTNER")
        if not self._signature_valid(params):
            return self._error("ILLEGAL_SIGN")
        if params.get("is_sync") != "Y":
            # Asynchronous refunds (a refund_status notification later) are not simulated.
            return 400, _TEXT_TYPE, b"the sandbox simulates forex_refund with is_sync=Y only"
        out_return_no, currency = params.get("out_return_no", ""), params.get("currency", "")
        if not (out_return_no and currency and _is_gmt_return(params.get("gmt_return", ""))):
            return self._error("ILLEGAL_ARGUMENT")
        if params.get("return_rmb_amount") or not params.get("return_amount"):
            return self._error("ILLEGAL_ARGUMENT")  # refunds in CNY of a foreign-currency trade are not simulated
        try:
            amount = p.parse_amount(params["return_amount"], "return_amount")
        except OrderError:
            return self._error("ILLEGAL_ARGUMENT")
        trade = self.sandbox.find(out_trade_no=params.get("out_trade_no"))
        if trade is None:
            return self._error("PURCHASE_TRADE_NOT_EXIST")
        if params.get("product_code") != trade.order.product_code:
            # The refund names the product the trade was paid with (docs/protocols.md §2.4).
            return self._error("ILLEGAL_ARGUMENT")
        try:
            self.sandbox.forex_refund(trade, amount, out_return_no, currency)
        except TradeError as exc:
            return self._error(exc.sub_code)
        # As recorded replies of Alipay's: this one declares GBK (docs/protocols.md §2.4).
        xml = '<?xml version="1.0" encoding="GBK"?>\n<alipay><is_success>T</is_success></alipay>'
        return 200, "text/xml; charset=GBK", xml.encode("gbk")

    @staticmethod
    def _error(error: str) -> Reply:
        xml = f'<?xml version="1.0" encoding="utf-8"?>\n<alipay><is_success>F</is_success><error>{error}</error>'
        xml += "</alipay>"
        return 200, _XML_TYPE, xml.encode("utf-8")


def _is_gmt_return(value: str) -> bool:
    """Beijing time in either form of Alipay's pages: ``yyyy-MM-dd HH:mm:ss`` or ``yyyyMMddHHmmss``."""
    for form in ("%Y-%m-%d %H:%M:%S", "%Y%m%d%H%M%S"):
        try:
            datetime.strptime(value, form)  # a Beijing wall-clock time, checked for its form only
        except ValueError:
            continue
        return len(value) in (14, 19)
    return False
