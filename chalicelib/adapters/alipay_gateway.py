"""Alipay's gateway over HTTPS with urllib3: signed trade queries and ``notify_verify``, for both protocols.

Open Platform (``openapi``): ``alipay.trade.query`` is a form POST of the signed request parameters; the JSON
reply is verified with Alipay's public key over the exact raw ``alipay_trade_query_response`` text before any
field is read. Legacy Global (``mapi``): ``single_trade_query``, ``forex_refund`` and ``notify_verify`` are GETs; the
request is signed over the sorted, unquoted ``k=v`` content.

UNCONFIRMED (legacy only): the XML reply of ``single_trade_query`` carries ``<sign>``/``<sign_type>`` (MD5 in
Alipay's own examples), but no text we found says which bytes that signature covers, Alipay publishes no SDK for
this protocol (its official SDKs verify Open Platform replies only), and the integrations we found parse the XML
and ignore the signature. So that reply, and ``forex_refund``'s (``is_success``/``error``, signed or not), are **not**
signature-verified here. What protects them: TLS to Alipay's gateway with certificate and hostname verification
(plain ``http`` is refused except to a loopback sandbox), the echoed ``out_trade_no`` must match the query, and
callers must still compare the amount with the stored order.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit
from xml.etree import ElementTree
from xml.parsers import expat

import urllib3

from chalicelib.alipay import mapi, openapi
from chalicelib.alipay import params as p
from chalicelib.alipay.errors import (
    InvalidField,
    MalformedMessage,
    MissingSignature,
    OrderError,
    OrderMismatch,
    VerificationError,
)
from chalicelib.alipay.forms import signed_content
from chalicelib.alipay.signing import AlipayPublicKeys, Signer, SignType, b64encode
from chalicelib.services.ports import (
    NotSupported,
    PortError,
    RefundRefused,
    RefundResult,
    TradeCloseResult,
    TradeQueryResult,
    Unavailable,
)

OPENAPI = "openapi"
MAPI = "mapi"

TRADE_QUERY_METHOD = "alipay.trade.query"
TRADE_QUERY_RESPONSE = "alipay_trade_query_response"
SINGLE_TRADE_QUERY_SERVICE = "single_trade_query"
FOREX_REFUND_SERVICE = "forex_refund"
TRADE_CLOSE_METHOD = "alipay.trade.close"
TRADE_CLOSE_RESPONSE = "alipay_trade_close_response"
TRADE_REFUND_METHOD = "alipay.trade.refund"
TRADE_REFUND_RESPONSE = "alipay_trade_refund_response"

CODE_SUCCESS = "10000"
CODE_SERVICE_UNAVAILABLE = "20000"  # Alipay: "service currently unavailable", retry later
CODE_BUSINESS_FAILED = "40004"
SUB_CODE_TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
# alipay.trade.query documents ACQ.SYSTEM_ERROR as "system error: send the request again".
_RETRYABLE_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR"})
MAPI_TRADE_NOT_EXIST = "TRADE_NOT_EXIST"

# forex_refund, legacy cross-border refunds (docs/protocols.md §2.4). What Alipay's pages say, and what they do not:
# - is_sync=Y: the synchronous reply carries the refund's own result and no notification follows (Alipay's refund
#   guide; with N, the reply only acknowledges the request and a notification with refund_status follows).
# - product_code: required by the Chinese page (NEW_WAP_OVERSEAS_SELLER for wallet payments), absent from the English
#   one; sent, as the order string sends it.
# - gmt_return: the Chinese page says yyyyMMddHHmmss, Beijing time, String(14); the English page says String(14)
#   but "yyyy-MM-dd HH:mm:ss". UNCONFIRMED which Alipay accepts; the 14-character form is sent.
# - reason: String(100) (bytes, per the Chinese page), and no '"' in any value (English page).
# - Error codes: none is in the pages we could read; the names below are those published integrations handle.
#   UNCONFIRMED, and so is what a second request with the same out_return_no gets (REPEATED_REFUNDMENT_REQUEST
#   by those integrations): it is never taken as a success or a refusal, and the refund stays pending for an operator.
FOREX_REFUND_PRODUCT_CODE = "NEW_WAP_OVERSEAS_SELLER"
FOREX_REFUND_REASON_BYTES = 100
MAPI_REFUND_REFUSALS = frozenset(
    {
        "PURCHASE_TRADE_NOT_EXIST",  # no such (paid) trade
        "RETURN_AMOUNT_EXCEED",  # more than what is left to refund
        "REFUNDMENT_VALID_DATE_EXCEED",  # the refund period is over
        "CURRENCY_NOT_SAME",  # not the trade's currency
        "TRADE_HAS_CLOSE",
        "TRADE_STATUS_ERROR",
    }
)
MAPI_REFUND_REPEATED = "REPEATED_REFUNDMENT_REQUEST"
_MAPI_RETRYABLE_ERRORS = frozenset({"SYSTEM_EXCEPTION", "SYSTEM_ERROR"})

# A trade-query reply is a few KB; anything far larger is not Alipay and is not worth parsing.
MAX_RESPONSE_BYTES = 256 * 1024
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
_CHARSET = "utf-8"
_PARTNER_LENGTH = 16
_MAX_NOTIFY_ID_LENGTH = 128

T = TypeVar("T")


class GatewayError(PortError):
    """Alipay answered with a failure that is neither a result nor transient; ``code``/``sub_code`` name it."""

    def __init__(self, code: str, sub_code: str | None = None, message: str = "") -> None:
        detail = f"{code} {sub_code}" if sub_code else code
        super().__init__(f"Alipay gateway error {detail}" + (f": {message}" if message else ""))
        self.code = code
        self.sub_code = sub_code


class GatewayConfigError(ValueError):
    """The gateway is configured in a way that cannot work (bad URL, missing id, signer/sign type mismatch)."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying (network, timeout, HTTP 5xx/429, code 20000)."""


@cache
def shared_pool() -> urllib3.PoolManager:
    """One connection pool per process: a warm Lambda container reuses its TLS connection to Alipay."""
    # Retries and redirects are decided by the gateway below, never silently by urllib3.
    return urllib3.PoolManager(num_pools=4, maxsize=4, retries=False)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def check_gateway_url(url: str) -> str:
    """HTTPS, or plain HTTP only to a loopback host (the local sandbox); no query or fragment."""
    parts = urlsplit(url)
    secure = parts.scheme == "https" and bool(parts.hostname)
    # Replies are trusted partly because of TLS (the legacy XML entirely so): plain HTTP only to this machine.
    local = parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS
    if not (secure or local):
        raise GatewayConfigError(f"gateway_url must be https:// (http:// only to a loopback sandbox): {url!r}")
    if parts.query or parts.fragment:
        raise GatewayConfigError(f"gateway_url must not carry a query or fragment: {url!r}")
    return url


class HttpAlipayGateway:
    """``ports.AlipayGateway`` over urllib3: signed requests, verified replies, bounded retries, pooled connections."""

    def __init__(
        self,
        *,
        protocol: str,
        gateway_url: str,
        signer: Signer,
        alipay_keys: AlipayPublicKeys,
        sign_type: SignType | str,
        app_id: str | None = None,
        partner_id: str | None = None,
        app_cert_sn: str | None = None,
        alipay_root_cert_sn: str | None = None,
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
        if protocol not in (OPENAPI, MAPI):
            raise GatewayConfigError(f"protocol must be {OPENAPI!r} or {MAPI!r}, not {protocol!r}")
        self._protocol = str(protocol)
        self._url = check_gateway_url(gateway_url)
        try:
            self._sign_type = SignType(sign_type)
        except ValueError as exc:
            raise GatewayConfigError(f"unsupported sign_type {sign_type!r}") from exc
        if signer.sign_type is not self._sign_type:
            raise GatewayConfigError(f"sign_type is {self._sign_type} but the signer signs {signer.sign_type}")
        if self._protocol == OPENAPI and not app_id:
            raise GatewayConfigError("app_id is required for the openapi protocol")
        if self._protocol == MAPI and not (partner_id and partner_id.isdigit() and len(partner_id) == _PARTNER_LENGTH):
            raise GatewayConfigError("partner_id (the 16-digit PID) is required for the mapi protocol")
        if min(connect_timeout, read_timeout, total_timeout) <= 0 or backoff < 0:
            raise GatewayConfigError("timeouts must be positive and backoff non-negative")
        if not 1 <= max_attempts <= 10:
            raise GatewayConfigError("max_attempts must be between 1 and 10")
        self._signer = signer
        self._keys = alipay_keys
        self._app_id = app_id or ""
        self._partner = partner_id or ""
        self._app_cert_sn = app_cert_sn
        self._alipay_root_cert_sn = alipay_root_cert_sn
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._pool = pool if pool is not None else shared_pool()
        self._clock = clock
        self._sleep = sleep
        self._monotonic = monotonic

    @classmethod
    def from_config(
        cls,
        config: object,
        signer: Signer,
        alipay_keys: AlipayPublicKeys,
        *,
        pool: urllib3.PoolManager | None = None,
    ) -> HttpAlipayGateway:
        """Build from a config object, reading these attributes by name.

        Required: ``protocol`` (``"openapi"``/``"mapi"``, a str or StrEnum), ``gateway_url``, ``sign_type``
        (``"RSA2"``/``"RSA"``), and ``app_id`` (openapi) or ``partner_id`` (mapi). Optional, None when absent:
        ``app_cert_sn`` and ``alipay_root_cert_sn`` (certificate mode). Timeouts and attempts keep their defaults.
        """
        return cls(
            protocol=_config_text(config, "protocol") or "",
            gateway_url=_config_text(config, "gateway_url") or "",
            sign_type=_config_text(config, "sign_type") or "",
            app_id=_config_text(config, "app_id"),
            partner_id=_config_text(config, "partner_id"),
            app_cert_sn=_config_text(config, "app_cert_sn"),
            alipay_root_cert_sn=_config_text(config, "alipay_root_cert_sn"),
            signer=signer,
            alipay_keys=alipay_keys,
            pool=pool,
        )

    # --- the port ----------------------------------------------------------------------------------------

    def query_trade(self, out_trade_no: str) -> TradeQueryResult:
        """``alipay.trade.query`` (openapi) or ``single_trade_query`` (mapi) by merchant order number."""
        p.check_out_trade_no(out_trade_no)
        if self._protocol == OPENAPI:
            return self._query_openapi(out_trade_no)
        return self._query_mapi(out_trade_no)

    def close_trade(self, out_trade_no: str) -> TradeCloseResult:
        """``alipay.trade.close`` (openapi). The legacy service has none: its unpaid trades expire by ``it_b_pay``."""
        p.check_out_trade_no(out_trade_no)
        if self._protocol != OPENAPI:
            raise NotSupported("cross-border app pay (mapi) has no close API; the trade expires by it_b_pay")
        body = self._openapi_request(TRADE_CLOSE_METHOD, {"out_trade_no": out_trade_no})

        def attempt(timeout: urllib3.Timeout) -> TradeCloseResult:
            reply = self._send("POST", self._url, body=body, headers=_FORM_HEADERS, timeout=timeout)
            response = self._openapi_reply(reply, TRADE_CLOSE_RESPONSE)
            code, sub_code = _field(response, "code"), _field(response, "sub_code") or None
            if code == CODE_SUCCESS:
                _echoed(response, out_trade_no)
                return TradeCloseResult(closed=True, raw=_flat(response))
            if code == CODE_BUSINESS_FAILED and sub_code == SUB_CODE_TRADE_NOT_EXIST:
                return TradeCloseResult(closed=False, found=False, sub_code=sub_code, raw=_flat(response))
            if code == CODE_BUSINESS_FAILED and sub_code:
                # Most often ACQ.TRADE_STATUS_ERROR: the buyer paid (or it closed) meanwhile; a query tells which.
                return TradeCloseResult(closed=False, sub_code=sub_code, raw=_flat(response))
            raise GatewayError(code or "?", sub_code, _field(response, "sub_msg") or _field(response, "msg"))

        return self._retrying(TRADE_CLOSE_METHOD, attempt)

    def refund(
        self,
        out_trade_no: str,
        refund_amount: Decimal,
        out_request_no: str,
        reason: str | None,
        currency: str | None = None,
    ) -> RefundResult:
        """``alipay.trade.refund`` (openapi) or ``forex_refund`` (mapi, ``out_return_no`` = ``out_request_no``)."""
        p.check_out_trade_no(out_trade_no)
        p.check_out_trade_no(out_request_no)  # the same alphabet and length limit as out_trade_no
        if self._protocol == MAPI:
            if not currency:
                raise ValueError("forex_refund needs the trade's currency")
            return self._refund_mapi(out_trade_no, refund_amount, out_request_no, reason, currency)
        biz: dict[str, str] = {
            "out_trade_no": out_trade_no,
            "refund_amount": p.format_amount(str(refund_amount), "refund_amount"),
            "out_request_no": out_request_no,
        }
        if reason:
            biz["refund_reason"] = reason
        body = self._openapi_request(TRADE_REFUND_METHOD, biz)

        # Resent as is on a transient failure: Alipay refunds an out_request_no once, however often it is sent.
        def attempt(timeout: urllib3.Timeout) -> RefundResult:
            reply = self._send("POST", self._url, body=body, headers=_FORM_HEADERS, timeout=timeout)
            response = self._openapi_reply(reply, TRADE_REFUND_RESPONSE)
            code, sub_code = _field(response, "code"), _field(response, "sub_code") or None
            if code == CODE_SUCCESS:
                _echoed(response, out_trade_no)
                return RefundResult(
                    out_request_no=out_request_no,
                    refund_fee=_amount(_field(response, "refund_fee"), "refund_fee"),
                    fund_change=_field(response, "fund_change") == "Y",
                    raw=_flat(response),
                )
            if code == CODE_BUSINESS_FAILED and sub_code:
                raise RefundRefused(sub_code, _field(response, "sub_msg"))
            raise GatewayError(code or "?", sub_code, _field(response, "sub_msg") or _field(response, "msg"))

        return self._retrying(TRADE_REFUND_METHOD, attempt)

    def notify_verify(self, notify_id: str) -> bool:
        """Legacy ``notify_verify``: True only when Alipay answers exactly ``true`` for this partner and id."""
        if self._protocol != MAPI:
            raise GatewayConfigError("notify_verify is a legacy (mapi) gateway service; this gateway is openapi")
        if not notify_id or len(notify_id) > _MAX_NOTIFY_ID_LENGTH or not notify_id.isprintable():
            raise ValueError("notify_id must be 1-128 printable characters")
        url = mapi.notify_verify_url(self._url, partner=self._partner, notify_id=notify_id)

        def attempt(timeout: urllib3.Timeout) -> bool:
            body = self._send("GET", url, timeout=timeout)
            return mapi.parse_notify_verify(body.decode(_CHARSET, "replace"))

        return self._retrying("notify_verify", attempt)

    # --- openapi -----------------------------------------------------------------------------------------

    def _openapi_request(self, method: str, biz: Mapping[str, str]) -> bytes:
        """The signed form body of one gateway call: signed once (a KMS call), then resent as is on retries."""
        params = openapi.request_params(
            app_id=self._app_id,
            method=method,
            biz_content=openapi.dump_biz_content(dict(biz)),
            timestamp=openapi.beijing_timestamp(self._clock()),
            sign_type=self._sign_type,
            charset=_CHARSET,
            app_cert_sn=self._app_cert_sn,
            alipay_root_cert_sn=self._alipay_root_cert_sn,
        )
        return openapi.encode_params(params, openapi.sign_request(params, self._signer)).encode("ascii")

    def _openapi_reply(self, reply: bytes, name: str) -> Mapping[str, Any]:
        """The verified ``*_response`` body; ``_Transient`` for the codes a retry may fix."""
        text = _decode(reply)
        try:
            response = openapi.verify_response(text, self._keys, sign_type=self._sign_type, name=name)
        except MissingSignature as exc:
            raise MissingSignature(f"{exc}{_unverified_summary(text, name)}") from exc
        body = response.body
        code, sub_code = _field(body, "code"), _field(body, "sub_code") or None
        if code == CODE_SERVICE_UNAVAILABLE or sub_code in _RETRYABLE_SUB_CODES:
            raise _Transient(f"code {code} {sub_code or ''}".strip())
        if code == CODE_SUCCESS and response.name != name:
            raise MalformedMessage(f"expected {name}, got {response.name}")
        return body

    def _query_openapi(self, out_trade_no: str) -> TradeQueryResult:
        params = openapi.request_params(
            app_id=self._app_id,
            method=TRADE_QUERY_METHOD,
            biz_content=openapi.dump_biz_content({"out_trade_no": out_trade_no}),
            timestamp=openapi.beijing_timestamp(self._clock()),
            sign_type=self._sign_type,
            charset=_CHARSET,
            app_cert_sn=self._app_cert_sn,
            alipay_root_cert_sn=self._alipay_root_cert_sn,
        )
        # Signed once (a KMS call), then resent as is: the query is a read, so a retry cannot double anything.
        body = openapi.encode_params(params, openapi.sign_request(params, self._signer)).encode("ascii")

        def attempt(timeout: urllib3.Timeout) -> TradeQueryResult:
            reply = self._send("POST", self._url, body=body, headers=_FORM_HEADERS, timeout=timeout)
            return self._openapi_query_result(reply, out_trade_no)

        return self._retrying(TRADE_QUERY_METHOD, attempt)

    def _openapi_query_result(self, reply: bytes, out_trade_no: str) -> TradeQueryResult:
        text = _decode(reply)
        try:
            response = openapi.verify_response(text, self._keys, sign_type=self._sign_type, name=TRADE_QUERY_RESPONSE)
        except MissingSignature as exc:
            # Never acted on, but the unverified code tells an operator why (e.g. isv.invalid-app-id).
            raise MissingSignature(f"{exc}{_unverified_summary(text)}") from exc
        body = response.body
        code = _field(body, "code")
        sub_code = _field(body, "sub_code") or None
        if code == CODE_SUCCESS and response.name == TRADE_QUERY_RESPONSE:
            return _openapi_trade(body, out_trade_no)
        if code == CODE_SERVICE_UNAVAILABLE or sub_code in _RETRYABLE_SUB_CODES:
            raise _Transient(f"code {code} {sub_code or ''}".strip())
        if code == CODE_BUSINESS_FAILED and sub_code == SUB_CODE_TRADE_NOT_EXIST:
            return TradeQueryResult(found=False, raw=_flat(body))
        raise GatewayError(code or "?", sub_code, _field(body, "sub_msg") or _field(body, "msg"))

    # --- mapi --------------------------------------------------------------------------------------------

    def _query_mapi(self, out_trade_no: str) -> TradeQueryResult:
        params = {
            "service": SINGLE_TRADE_QUERY_SERVICE,
            "partner": self._partner,
            "_input_charset": _CHARSET,
            "out_trade_no": out_trade_no,
        }
        url = self._signed_mapi_url(params)

        def attempt(timeout: urllib3.Timeout) -> TradeQueryResult:
            return parse_single_trade_query(self._send("GET", url, timeout=timeout), out_trade_no)

        return self._retrying(SINGLE_TRADE_QUERY_SERVICE, attempt)

    def _refund_mapi(
        self, out_trade_no: str, amount: Decimal, out_return_no: str, reason: str | None, currency: str
    ) -> RefundResult:
        params = {
            "service": FOREX_REFUND_SERVICE,
            "partner": self._partner,
            "_input_charset": _CHARSET,
            "out_return_no": out_return_no,
            "out_trade_no": out_trade_no,
            # The product's legacy orders carry total_fee in their own currency, so the refund does too.
            "return_amount": p.format_amount(str(amount), "return_amount"),
            "currency": currency,
            "gmt_return": beijing_compact_timestamp(self._clock()),
            "product_code": FOREX_REFUND_PRODUCT_CODE,
            "is_sync": "Y",
        }
        if reason:
            params["reason"] = forex_refund_reason(reason)
        url = self._signed_mapi_url(params)

        def attempt(timeout: urllib3.Timeout) -> RefundResult:
            return parse_forex_refund(self._send("GET", url, timeout=timeout), out_return_no)

        return self._retrying(FOREX_REFUND_SERVICE, attempt)

    def _signed_mapi_url(self, params: Mapping[str, str]) -> str:
        """The GET URL of a legacy gateway request, signed once (a retry resends the same request)."""
        # Gateway requests sign the sorted, unquoted k=v content (the quoted form is the app order string only).
        content = signed_content(params, ("sign", "sign_type"))
        sign = b64encode(self._signer.sign(content.encode(_CHARSET)))
        return f"{self._url}?{urlencode({**params, 'sign': sign, 'sign_type': self._sign_type.value})}"

    # --- HTTP and retries ----------------------------------------------------------------------------------

    def _retrying(self, what: str, attempt_once: Callable[[urllib3.Timeout], T]) -> T:
        """Run ``attempt_once`` until it returns, at most ``max_attempts`` times and within ``total_timeout``."""
        deadline = self._monotonic() + self._total_timeout
        last: _Transient | None = None
        attempts = 0
        while attempts < self._max_attempts:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                break
            attempts += 1
            timeout = urllib3.Timeout(
                connect=min(self._connect_timeout, remaining), read=min(self._read_timeout, remaining)
            )
            try:
                return attempt_once(timeout)
            except _Transient as exc:
                last = exc
            delay = self._delay(attempts)
            if attempts >= self._max_attempts or self._monotonic() + delay >= deadline:
                break
            self._sleep(delay)
        raise Unavailable(f"{what}: Alipay's gateway failed {attempts} attempt(s), last: {last}") from last

    def _delay(self, attempt: int) -> float:
        # Exponential backoff with jitter, so that many containers retrying together do not stay in step.
        return self._backoff * 2.0 ** (attempt - 1) * (0.5 + random.random() / 2)  # noqa: S311 - not security

    def _send(
        self,
        method: str,
        url: str,
        *,
        timeout: urllib3.Timeout,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One HTTP exchange: the body of a 200 reply; ``_Transient`` for what a retry may fix."""
        try:
            response = self._pool.urlopen(
                method,
                url,
                body=body,
                headers=headers,
                timeout=timeout,
                retries=False,
                redirect=False,
                preload_content=False,
            )
        except urllib3.exceptions.HTTPError as exc:  # connect/read timeout, refused, reset, TLS failure
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        # Only a fully read body lets the connection go back to the pool for reuse; on any failure to read it,
        # the connection is closed first so that no half-read reply can ever be taken for the next one.
        try:
            data = response.read(MAX_RESPONSE_BYTES + 1)
            if len(data) > MAX_RESPONSE_BYTES:
                raise MalformedMessage(f"gateway reply larger than {MAX_RESPONSE_BYTES} bytes")
        except urllib3.exceptions.HTTPError as exc:
            response.close()
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        except MalformedMessage:
            response.close()
            raise
        finally:
            response.release_conn()
        status = response.status
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status != 200:
            raise GatewayError(f"HTTP {status}")
        return data


# --- replies -------------------------------------------------------------------------------------------------


def _config_text(config: object, name: str) -> str | None:
    value = getattr(config, name, None)
    return None if value is None or value == "" else str(value)


def _decode(reply: bytes) -> str:
    try:
        return reply.decode(_CHARSET)
    except UnicodeDecodeError as exc:
        raise MalformedMessage(f"gateway reply is not {_CHARSET}") from exc


def _field(body: Mapping[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise InvalidField(f"{key} is not a string")
    return value


def _flat(body: Mapping[str, Any]) -> dict[str, str]:
    """The reply's fields as strings; nested values (e.g. ``fund_bill_list``) as compact JSON."""
    return {
        k: v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, separators=(",", ":"))
        for k, v in body.items()
    }


def _amount(value: str, field: str) -> Decimal:
    try:
        return p.parse_amount(value, field)
    except OrderError as exc:
        raise InvalidField(str(exc)) from exc


def _echoed(body: Mapping[str, Any], out_trade_no: str) -> None:
    echoed = _field(body, "out_trade_no")
    if echoed and echoed != out_trade_no:
        raise OrderMismatch("out_trade_no", out_trade_no, echoed)


def _unverified_summary(text: str, name: str = TRADE_QUERY_RESPONSE) -> str:
    try:
        body = openapi.extract_response(text, name).body
    except VerificationError:
        return ""
    codes = " ".join(str(body[k]) for k in ("code", "sub_code") if body.get(k))
    return f" (unverified: {codes})" if codes else ""


def _openapi_trade(body: Mapping[str, Any], out_trade_no: str) -> TradeQueryResult:
    echoed = _field(body, "out_trade_no")
    if echoed != out_trade_no:
        raise OrderMismatch("out_trade_no", out_trade_no, echoed)
    status = _field(body, "trade_status")
    if not status:
        raise InvalidField("trade_status is missing")
    return TradeQueryResult(
        found=True,
        trade_status=status,
        trade_no=_field(body, "trade_no") or None,
        total_amount=_amount(_field(body, "total_amount"), "total_amount"),
        currency=_field(body, "trans_currency") or None,
        raw=_flat(body),
    )


def parse_xml(data: bytes) -> ElementTree.Element:
    """Parse a small XML reply with expat, refusing any DTD.

    Alipay's replies never carry a DTD. Refusing one up front means no entity can be declared, so neither
    entity expansion ("billion laughs") nor external entities can occur; only XML's five predefined entities
    and character references remain. The size is bounded before parsing (``MAX_RESPONSE_BYTES``).
    """
    if len(data) > MAX_RESPONSE_BYTES:
        raise MalformedMessage(f"XML reply larger than {MAX_RESPONSE_BYTES} bytes")
    builder = ElementTree.TreeBuilder()
    parser = expat.ParserCreate()

    def refuse_dtd(*_: object) -> None:
        raise MalformedMessage("XML reply declares a DTD; Alipay's replies have none")

    def start(tag: str, attrs: Any) -> None:
        builder.start(tag, dict(attrs))

    def end(tag: str) -> None:
        builder.end(tag)

    parser.StartDoctypeDeclHandler = refuse_dtd
    parser.EntityDeclHandler = refuse_dtd
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = builder.data
    try:
        parser.Parse(data, True)
    except expat.ExpatError as exc:
        raise MalformedMessage(f"gateway reply is not well-formed XML: {exc}") from exc
    return builder.close()


def _leaf_texts(element: ElementTree.Element) -> dict[str, str]:
    """Text of each childless child element; a name twice is refused (which one would be meant?)."""
    out: dict[str, str] = {}
    for child in element:
        if len(child):
            continue
        if child.tag in out:
            raise MalformedMessage(f"duplicate <{child.tag}> in gateway reply")
        out[child.tag] = (child.text or "").strip()
    return out


def _only_child(element: ElementTree.Element, tag: str) -> ElementTree.Element:
    found = element.findall(tag)
    if len(found) != 1:
        raise MalformedMessage(f"expected exactly one <{tag}> in gateway reply, found {len(found)}")
    return found[0]


def parse_single_trade_query(data: bytes, out_trade_no: str) -> TradeQueryResult:
    """The legacy ``single_trade_query`` XML reply (not signature-verified: see the module docstring)."""
    root = parse_xml(data)
    if root.tag != "alipay":
        raise MalformedMessage(f"expected <alipay>, got <{root.tag}>")
    top = _leaf_texts(root)
    is_success = top.get("is_success")
    if is_success == "F":
        error = top.get("error") or "UNKNOWN"
        if error == MAPI_TRADE_NOT_EXIST:
            return TradeQueryResult(found=False, raw=top)
        raise GatewayError(error)
    if is_success != "T":
        raise MalformedMessage(f"is_success is {is_success!r}, not T or F")
    trade = _leaf_texts(_only_child(_only_child(root, "response"), "trade"))
    echoed = trade.get("out_trade_no", "")
    if echoed != out_trade_no:
        raise OrderMismatch("out_trade_no", out_trade_no, echoed)
    status = trade.get("trade_status")
    if not status:
        raise InvalidField("trade_status is missing")
    total_fee = trade.get("total_fee")
    return TradeQueryResult(
        found=True,
        trade_status=status,
        trade_no=trade.get("trade_no") or None,
        # UNCONFIRMED for forex trades: whether total_fee is in the order currency or in CNY; raw keeps all.
        total_amount=_amount(total_fee, "total_fee") if total_fee else None,
        currency=trade.get("currency") or None,
        raw=trade,
    )


def beijing_compact_timestamp(now: datetime) -> str:
    """``yyyyMMddHHmmss`` in Beijing time (UTC+8): forex_refund's ``gmt_return`` (see FOREX_REFUND_* above)."""
    return openapi.beijing_timestamp(now).replace("-", "").replace(" ", "").replace(":", "")


def forex_refund_reason(reason: str) -> str:
    """The reason as forex_refund takes it: no '"', at most 100 bytes of UTF-8 (cut on a character boundary)."""
    text = reason.replace('"', "'")
    return text.encode(_CHARSET)[:FOREX_REFUND_REASON_BYTES].decode(_CHARSET, "ignore")


def parse_forex_refund(data: bytes, out_return_no: str) -> RefundResult:
    """The synchronous ``forex_refund`` XML reply (``is_sync=Y``), not signature-verified (see the module docstring).

    ``T``: refunded. ``F``: a refusal (``RefundRefused``), a transient failure, or an error that says nothing
    about the money (``GatewayError``: the refund stays pending). Alipay does not report its running total here.
    """
    root = parse_xml(data)
    if root.tag != "alipay":
        raise MalformedMessage(f"expected <alipay>, got <{root.tag}>")
    top = _leaf_texts(root)
    is_success = top.get("is_success")
    if is_success == "T":
        return RefundResult(out_request_no=out_return_no, refund_fee=None, fund_change=True, raw=top)
    if is_success != "F":
        raise MalformedMessage(f"is_success is {is_success!r}, not T or F")
    error = top.get("error") or "UNKNOWN"
    if error in _MAPI_RETRYABLE_ERRORS:
        raise _Transient(f"forex_refund error {error}")
    if error in MAPI_REFUND_REFUSALS:
        raise RefundRefused(error)
    # Signature, partner or argument errors, REPEATED_REFUNDMENT_REQUEST, anything unknown: not a refusal we could
    # record as failed (the money may have moved), not a success either.
    raise GatewayError(error)
