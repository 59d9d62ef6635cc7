"""Alipay's gateway over HTTPS with urllib3: signed trade queries, closes, refunds and ``notify_verify``.

Transport only: this module builds and signs the requests, sends them, retries and bounds them in time, and turns
the protocol package's answers into the service ports' results and errors. Reading the replies is pure protocol
code: ``chalicelib.alipay.openapi_replies`` verifies each Open Platform JSON reply with Alipay's public key over its
exact raw ``*_response`` text before any field is read; ``chalicelib.alipay.mapi_replies`` parses the legacy XML.

Open Platform (``openapi``): every call is a form POST of the signed request parameters. Legacy Global (``mapi``):
``single_trade_query``, ``forex_refund`` and ``notify_verify`` are GETs; the request is signed over the sorted,
unquoted ``k=v`` content. A ``single_trade_query`` answer is verified with Alipay's key before it is read; the
unsigned legacy replies (failures, ``forex_refund``) rely on TLS: plain ``http`` is refused except to a loopback
sandbox (see ``mapi_replies``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import TypeVar
from urllib.parse import urlencode, urlsplit

import urllib3

from chalicelib.alipay import mapi, openapi
from chalicelib.alipay import params as p
from chalicelib.alipay.certs import CertSns
from chalicelib.alipay.errors import ErrorReply, MalformedMessage, RefundRefusal, RetryableReply, VerificationError
from chalicelib.alipay.forms import signed_content
from chalicelib.alipay.mapi_replies import (
    FOREX_REFUND_SERVICE,
    GMT_RETURN_FORMATS,
    SINGLE_TRADE_QUERY_SERVICE,
    forex_refund_product_code,
    forex_refund_reason,
    gmt_return,
    parse_forex_refund,
    parse_single_trade_query,
)
from chalicelib.alipay.openapi_replies import (
    REFUND_QUERY_METHOD,
    TRADE_CLOSE_METHOD,
    TRADE_QUERY_METHOD,
    TRADE_REFUND_METHOD,
    parse_refund_query,
    parse_trade_close,
    parse_trade_query,
    parse_trade_refund,
)
from chalicelib.alipay.replies import (
    CHARSET,
    MAX_REPLY_BYTES,
    RefundQueryReply,
    RefundReply,
    TradeCloseReply,
    TradeQueryReply,
)
from chalicelib.alipay.signing import AlipayPublicKeys, Signer, SignType, b64encode
from chalicelib.services.ports import (
    NotSupported,
    PortError,
    RefundQueryResult,
    RefundRefused,
    RefundResult,
    TradeCloseResult,
    TradeQueryResult,
    Unavailable,
)

OPENAPI = "openapi"
MAPI = "mapi"

_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_FORM_HEADERS = {"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"}
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


class UnverifiedReply(GatewayError):
    """A reply that failed a check (not signed by Alipay, tampered, malformed, another order's): never acted on.

    ``check`` names the failed check (``chalicelib.alipay.errors``). A refund whose reply is unverified stays
    pending: whether the money moved is unknown until Alipay is asked again.
    """

    def __init__(self, check: str, message: str) -> None:
        super().__init__("unverified_reply", check, message)
        self.check = check


class GatewayConfigError(ValueError):
    """The gateway is configured in a way that cannot work (bad URL, missing id, signer/sign type mismatch)."""


class _Transient(Exception):
    """One attempt failed in a way worth retrying (network, timeout, HTTP 5xx/429)."""


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


class Transport:
    """How every gateway adapter talks to Alipay: bounded retries with jittered backoff, one deadline, pooled HTTP.

    ``retrying`` is also where the protocol package's answers become the port's errors, once, ``from exc``: a reply
    asking for the request again is retried like a network failure; a refusal, an error reply and a failed check are
    not. Shared by ``HttpAlipayGateway`` and ``chalicelib.adapters.antom_gateway.HttpAntomGateway``.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 3.0,
        read_timeout: float = 5.0,
        total_timeout: float = 12.0,
        max_attempts: int = 3,
        backoff: float = 0.2,
        pool: urllib3.PoolManager | None = None,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if min(connect_timeout, read_timeout, total_timeout) <= 0 or backoff < 0:
            raise GatewayConfigError("timeouts must be positive and backoff non-negative")
        if not 1 <= max_attempts <= 10:
            raise GatewayConfigError("max_attempts must be between 1 and 10")
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._total_timeout = total_timeout
        self._max_attempts = max_attempts
        self._backoff = backoff
        self._pool = pool if pool is not None else shared_pool()
        self._sleep = sleep
        self._monotonic = monotonic

    def retrying(self, what: str, attempt_once: Callable[[urllib3.Timeout], T]) -> T:
        """Run ``attempt_once`` until it returns, at most ``max_attempts`` times and within ``total_timeout``."""
        deadline = self._monotonic() + self._total_timeout
        last: _Transient | RetryableReply | None = None
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
            except (_Transient, RetryableReply) as exc:
                last = exc
            except ErrorReply as exc:
                raise GatewayError(exc.code, exc.sub_code, exc.message) from exc
            except RefundRefusal as exc:
                raise RefundRefused(exc.sub_code, exc.message) from exc
            except VerificationError as exc:
                # Not retried: the same bytes would fail the same way. Typed, so that no caller meets a bare error.
                raise UnverifiedReply(exc.check, str(exc)) from exc
            delay = self._delay(attempts)
            if attempts >= self._max_attempts or self._monotonic() + delay >= deadline:
                break
            self._sleep(delay)
        raise Unavailable(f"{what}: Alipay's gateway failed {attempts} attempt(s), last: {last}") from last

    def _delay(self, attempt: int) -> float:
        # Exponential backoff with jitter, so that many containers retrying together do not stay in step.
        return self._backoff * 2.0 ** (attempt - 1) * (0.5 + random.random() / 2)  # noqa: S311 - not security

    def send(
        self,
        method: str,
        url: str,
        *,
        timeout: urllib3.Timeout,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> bytes:
        """One HTTP exchange: the body of a 200 reply; ``_Transient`` for what a retry may fix."""
        return self.exchange(method, url, timeout=timeout, body=body, headers=headers)[0]

    def exchange(
        self,
        method: str,
        url: str,
        *,
        timeout: urllib3.Timeout,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """One HTTP exchange: the body and headers (names lower-cased) of a 200 reply; ``_Transient`` for what a
        retry may fix."""
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
            data = response.read(MAX_REPLY_BYTES + 1)
            if len(data) > MAX_REPLY_BYTES:
                raise MalformedMessage(f"gateway reply larger than {MAX_REPLY_BYTES} bytes")
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
        reply_headers: dict[str, str] = {}
        for name, value in response.headers.items():
            key = name.lower()
            # A header sent twice is kept as both values joined, so that a check of it sees the disagreement.
            reply_headers[key] = f"{reply_headers[key]}, {value}" if key in reply_headers else value
        return data, reply_headers


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
        gmt_return_format: str = GMT_RETURN_FORMATS[0],
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
        if gmt_return_format not in GMT_RETURN_FORMATS:
            raise GatewayConfigError(f"gmt_return_format must be one of {', '.join(GMT_RETURN_FORMATS)}")
        self._gmt_return_format = gmt_return_format
        self._signer = signer
        self._keys = alipay_keys
        self._app_id = app_id or ""
        self._partner = partner_id or ""
        self._app_cert_sn = app_cert_sn
        self._alipay_root_cert_sn = alipay_root_cert_sn
        self._clock = clock

    @classmethod
    def from_config(
        cls,
        config: object,
        signer: Signer,
        alipay_keys: AlipayPublicKeys,
        *,
        pool: urllib3.PoolManager | None = None,
        cert_sns: CertSns | None = None,
    ) -> HttpAlipayGateway:
        """Build from a config object, reading these attributes by name; ``cert_sns`` (certificate mode) wins over
        the attributes below.

        Required: ``protocol`` (``"openapi"``/``"mapi"``, a str or StrEnum), ``gateway_url``, ``sign_type``
        (``"RSA2"``/``"RSA"``), and ``app_id`` (openapi) or ``partner_id`` (mapi). Optional, None when absent:
        ``app_cert_sn`` and ``alipay_root_cert_sn`` (certificate mode), ``forex_refund_gmt_return_format`` (the
        first of ``GMT_RETURN_FORMATS``). Timeouts and attempts keep their defaults.
        """
        return cls(
            protocol=_config_text(config, "protocol") or "",
            gateway_url=_config_text(config, "gateway_url") or "",
            sign_type=_config_text(config, "sign_type") or "",
            app_id=_config_text(config, "app_id"),
            partner_id=_config_text(config, "partner_id"),
            app_cert_sn=cert_sns.app_cert_sn if cert_sns else _config_text(config, "app_cert_sn"),
            alipay_root_cert_sn=(
                cert_sns.alipay_root_cert_sn if cert_sns else _config_text(config, "alipay_root_cert_sn")
            ),
            gmt_return_format=_config_text(config, "forex_refund_gmt_return_format") or GMT_RETURN_FORMATS[0],
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
            return _close_result(parse_trade_close(reply, out_trade_no, keys=self._keys, sign_type=self._sign_type))

        return self._retrying(TRADE_CLOSE_METHOD, attempt)

    def refund(
        self,
        out_trade_no: str,
        refund_amount: Decimal,
        out_request_no: str,
        reason: str | None,
        currency: str | None = None,
        channel: str | None = None,
        trade_no: str | None = None,  # Antom's paymentId: not sent here (these protocols refund by out_trade_no)
    ) -> RefundResult:
        """``alipay.trade.refund`` (openapi) or ``forex_refund`` (mapi, ``out_return_no`` = ``out_request_no``).

        ``forex_refund`` names the trade's currency and the product it was paid with (the order's ``channel``).
        ``trade_no`` is not needed here: both protocols refund by ``out_trade_no`` (Antom needs its paymentId).
        """
        del trade_no
        p.check_out_trade_no(out_trade_no)
        p.check_out_trade_no(out_request_no)  # the same alphabet and length limit as out_trade_no
        if self._protocol == MAPI:
            if not currency:
                raise ValueError("forex_refund needs the trade's currency")
            product_code = forex_refund_product_code(channel)
            return self._refund_mapi(out_trade_no, refund_amount, out_request_no, reason, currency, product_code)
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
            return _refund_result(
                parse_trade_refund(reply, out_trade_no, out_request_no, keys=self._keys, sign_type=self._sign_type)
            )

        return self._retrying(TRADE_REFUND_METHOD, attempt)

    def query_refund(self, out_trade_no: str, out_request_no: str) -> RefundQueryResult:
        """``alipay.trade.fastpay.refund.query`` (openapi); the legacy service has none (docs/protocols.md)."""
        p.check_out_trade_no(out_trade_no)
        p.check_out_trade_no(out_request_no)
        if self._protocol != OPENAPI:
            raise NotSupported("the legacy cross-border service has no refund query; forex_compare_file settles it")
        body = self._openapi_request(
            REFUND_QUERY_METHOD, {"out_trade_no": out_trade_no, "out_request_no": out_request_no}
        )

        def attempt(timeout: urllib3.Timeout) -> RefundQueryResult:
            reply = self._send("POST", self._url, body=body, headers=_FORM_HEADERS, timeout=timeout)
            return _refund_query_result(
                parse_refund_query(reply, out_trade_no, out_request_no, keys=self._keys, sign_type=self._sign_type)
            )

        return self._retrying(REFUND_QUERY_METHOD, attempt)

    def notify_verify(self, notify_id: str) -> bool:
        """Legacy ``notify_verify``: True only when Alipay answers exactly ``true`` for this partner and id."""
        if self._protocol != MAPI:
            raise GatewayConfigError("notify_verify is a legacy (mapi) gateway service; this gateway is openapi")
        if not notify_id or len(notify_id) > _MAX_NOTIFY_ID_LENGTH or not notify_id.isprintable():
            raise ValueError("notify_id must be 1-128 printable characters")
        url = mapi.notify_verify_url(self._url, partner=self._partner, notify_id=notify_id)

        def attempt(timeout: urllib3.Timeout) -> bool:
            body = self._send("GET", url, timeout=timeout)
            return mapi.parse_notify_verify(body.decode(CHARSET, "replace"))

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
            charset=CHARSET,
            app_cert_sn=self._app_cert_sn,
            alipay_root_cert_sn=self._alipay_root_cert_sn,
        )
        return openapi.encode_params(params, openapi.sign_request(params, self._signer)).encode("ascii")

    def _query_openapi(self, out_trade_no: str) -> TradeQueryResult:
        # Signed once (a KMS call), then resent as is: the query is a read, so a retry cannot double anything.
        body = self._openapi_request(TRADE_QUERY_METHOD, {"out_trade_no": out_trade_no})

        def attempt(timeout: urllib3.Timeout) -> TradeQueryResult:
            reply = self._send("POST", self._url, body=body, headers=_FORM_HEADERS, timeout=timeout)
            return _query_result(parse_trade_query(reply, out_trade_no, keys=self._keys, sign_type=self._sign_type))

        return self._retrying(TRADE_QUERY_METHOD, attempt)

    # --- mapi --------------------------------------------------------------------------------------------

    def _query_mapi(self, out_trade_no: str) -> TradeQueryResult:
        params = {
            "service": SINGLE_TRADE_QUERY_SERVICE,
            "partner": self._partner,
            "_input_charset": CHARSET,
            "out_trade_no": out_trade_no,
        }
        url = self._signed_mapi_url(params)

        def attempt(timeout: urllib3.Timeout) -> TradeQueryResult:
            reply = self._send("GET", url, timeout=timeout)
            return _query_result(
                parse_single_trade_query(reply, out_trade_no, keys=self._keys, sign_type=self._sign_type)
            )

        return self._retrying(SINGLE_TRADE_QUERY_SERVICE, attempt)

    def _refund_mapi(
        self,
        out_trade_no: str,
        amount: Decimal,
        out_return_no: str,
        reason: str | None,
        currency: str,
        product_code: str,
    ) -> RefundResult:
        params = {
            "service": FOREX_REFUND_SERVICE,
            "partner": self._partner,
            "_input_charset": CHARSET,
            "out_return_no": out_return_no,
            "out_trade_no": out_trade_no,
            # The product's legacy orders carry total_fee in their own currency, so the refund does too.
            "return_amount": p.format_amount(str(amount), "return_amount"),
            "currency": currency,
            "gmt_return": gmt_return(self._clock(), self._gmt_return_format),
            "product_code": product_code,
            "is_sync": "Y",
        }
        if reason:
            params["reason"] = forex_refund_reason(reason)
        url = self._signed_mapi_url(params)

        def attempt(timeout: urllib3.Timeout) -> RefundResult:
            return _refund_result(parse_forex_refund(self._send("GET", url, timeout=timeout), out_return_no))

        return self._retrying(FOREX_REFUND_SERVICE, attempt)

    def _signed_mapi_url(self, params: Mapping[str, str]) -> str:
        """The GET URL of a legacy gateway request, signed once (a retry resends the same request)."""
        # Gateway requests sign the sorted, unquoted k=v content (the quoted form is the app order string only).
        content = signed_content(params, ("sign", "sign_type"))
        sign = b64encode(self._signer.sign(content.encode(CHARSET)))
        return f"{self._url}?{urlencode({**params, 'sign': sign, 'sign_type': self._sign_type.value})}"

    # --- HTTP and retries ----------------------------------------------------------------------------------

    def _retrying(self, what: str, attempt_once: Callable[[urllib3.Timeout], T]) -> T:
        """Every exchange with Alipay runs here (``Transport.retrying``): retries, deadline, errors translated once."""
        return self._transport.retrying(what, attempt_once)

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
        return self._transport.send(method, url, timeout=timeout, body=body, headers=headers)


# --- from the protocol's values to the port's --------------------------------------------------------------


def _query_result(reply: TradeQueryReply) -> TradeQueryResult:
    return TradeQueryResult(
        found=reply.found,
        trade_status=reply.trade_status,
        trade_no=reply.trade_no,
        total_amount=reply.total_amount,
        currency=reply.currency,
        raw=reply.raw,
    )


def _close_result(reply: TradeCloseReply) -> TradeCloseResult:
    return TradeCloseResult(closed=reply.closed, found=reply.found, sub_code=reply.sub_code, raw=reply.raw)


def _refund_result(reply: RefundReply) -> RefundResult:
    return RefundResult(
        out_request_no=reply.out_request_no,
        refund_fee=reply.refund_fee,
        fund_change=reply.fund_change,
        raw=reply.raw,
    )


def _refund_query_result(reply: RefundQueryReply) -> RefundQueryResult:
    return RefundQueryResult(
        refunded=reply.refunded, refund_amount=reply.refund_amount, found=reply.found, raw=reply.raw
    )


def _config_text(config: object, name: str) -> str | None:
    value = getattr(config, name, None)
    return None if value is None or value == "" else str(value)
