"""Who the soak plays: Alipay's Open Platform or Antom. The one seam between the soak's two protocols.

A player knows what its protocol's notifications say for each kind of order (``Kinds``), signs them as that
protocol signs them, knows where they go and which answer ends their retries, and on what schedule they are sent
again; with its ``Checkout`` (``money.py``) it knows how the sandbox's shopper pays. Everything else (the plan,
the deliveries, the faults, the restart, the figures read from the emulator and the sandbox) is the harness's,
the same for both.

- ``OpenPlatformPlayer``: form-encoded ``trade_status_sync`` notifications signed RSA2 with the sandbox's Alipay
  key; acked by exactly ``success``; Alipay's 8 deliveries.
- ``AntomPlayer``: JSON ``notifyPayment`` bodies signed with the sandbox's Antom key in Antom's headers, over
  ``POST <the notify URL's path>\\n<client-id>.<request-time>.<body>``; acked by HTTP 200 and Antom's ``resultStatus
  S`` body; Antom's 8 deliveries.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Protocol

from chalicelib.alipay import antom
from chalicelib.alipay.forms import form_quote
from chalicelib.alipay.keys import load_private_key
from chalicelib.alipay.notifications import notification_content
from chalicelib.alipay.signing import LocalKeySigner, SignType, b64encode
from chalicelib.topology import ANTOM_NOTIFY_PATH
from devstack.resources import ALIPAY_PRIVATE_KEY_FILE, ANTOM_PRIVATE_KEY_FILE
from sandbox import antom as antom_sandbox
from sandbox.notify import RETRY_INTERVALS
from tests.soak.money import AlipayCheckout, AntomCheckout, Checkout

PAID, FINISHED, REORDERED, CLOSED, PENDING_FIRST = "paid", "finished", "reordered", "closed", "pending-first"


@dataclass
class Order:
    out_trade_no: str
    total_amount: str
    kind: str
    trade_no: str  # Alipay's trade number, or Antom's paymentId


@dataclass(frozen=True)
class Kinds:
    """The kinds of notification orders: what each is sent, in intended order, and what it must end as."""

    statuses: Mapping[str, list[str]]  # the notifications, as the player's statuses
    final: Mapping[str, str]  # the order's status at the end
    events: Mapping[str, set[str]]  # the facts (detail-types) it must produce, once each
    reordered_share: float  # of the orders, the share of REORDERED
    other_weights: Mapping[str, float]  # the shares of the other kinds
    reordered_means: str  # what REORDERED is, as the figures name it


class Player(Protocol):
    """One protocol's side of the soak."""

    @property
    def protocol(self) -> str:
        """The stack's ``ALIPAY_PROTOCOL``."""

    @property
    def sender(self) -> str:
        """Who sends the notifications, as the figures name it."""

    @property
    def consumer_crash_rate(self) -> float:
        """How often the SQS worker crashes mid-batch (per record after the first, in first deliveries only)."""

    @property
    def ack(self) -> str:
        """The answer that ends a notification's retries, as the figures name it."""

    @property
    def kinds(self) -> Kinds: ...

    @property
    def checkout(self) -> Checkout: ...

    @property
    def retry_intervals(self) -> tuple[int, ...]:
        """Seconds between one failed delivery and the next (unscaled); one delivery more than these in all."""

    def load(self, state_dir: Path, info: Mapping[str, Any]) -> None:
        """Take the sandbox's key from the state dir and what else the messages need from ``stack.json``."""

    def notify_url(self, info: Mapping[str, Any]) -> str: ...

    def trade_no(self, created: Mapping[str, Any], index: int) -> str:
        """The trade number the order's notifications carry (``created``: the answer to the order's creation)."""

    def sign(self, order: Order, status: str, notify_id: str) -> tuple[bytes, dict[str, str]]:
        """A notification's body and headers, signed."""

    def acknowledged(self, status: int, data: bytes) -> bool: ...


# --- Open Platform ---------------------------------------------------------------------------------------------

OPEN_PLATFORM_KINDS = Kinds(
    statuses={
        PAID: ["TRADE_SUCCESS"],
        FINISHED: ["TRADE_SUCCESS", "TRADE_FINISHED"],
        REORDERED: ["TRADE_FINISHED", "TRADE_SUCCESS"],
        CLOSED: ["TRADE_CLOSED"],  # never paid: the trade timed out
    },
    final={PAID: "TRADE_SUCCESS", FINISHED: "TRADE_FINISHED", REORDERED: "TRADE_FINISHED", CLOSED: "TRADE_CLOSED"},
    events={
        PAID: {"OrderPaid"},
        FINISHED: {"OrderPaid", "OrderFinished"},
        REORDERED: {"OrderPaid", "OrderFinished"},
        CLOSED: {"OrderClosed"},
    },
    reordered_share=0.20,  # TRADE_FINISHED sent before TRADE_SUCCESS
    other_weights={PAID: 0.25, FINISHED: 0.6, CLOSED: 0.15},
    reordered_means="FINISHED first",
)


class OpenPlatformPlayer:
    """Alipay's Open Platform: ``trade_status_sync`` forms, signed RSA2 with the sandbox's Alipay key."""

    protocol = "openapi"
    sender = "Alipay"
    consumer_crash_rate = 0.01
    ack = "success"
    kinds = OPEN_PLATFORM_KINDS
    retry_intervals = RETRY_INTERVALS

    def __init__(self) -> None:
        self.checkout: Checkout = AlipayCheckout()
        self._signer: LocalKeySigner | None = None
        self._app_id = self._seller_id = ""

    def load(self, state_dir: Path, info: Mapping[str, Any]) -> None:
        key = load_private_key((state_dir / ALIPAY_PRIVATE_KEY_FILE).read_bytes())
        self._signer = LocalKeySigner(key, SignType.RSA2)
        self._app_id, self._seller_id = str(info["app_id"]), str(info["seller_id"])

    def notify_url(self, info: Mapping[str, Any]) -> str:
        return f"{info['api_url']}/alipay/notify"

    def trade_no(self, created: Mapping[str, Any], index: int) -> str:
        return f"2024060122001{index:015d}"  # Alipay's, made up: the trade exists at no sandbox

    def sign(self, order: Order, status: str, notify_id: str) -> tuple[bytes, dict[str, str]]:
        """The notification's body, signed as Alipay signs (every field but sign/sign_type, sorted, RSA2)."""
        assert self._signer is not None, "load() first"
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        fields = {
            "gmt_create": now,
            "charset": "utf-8",
            "gmt_payment": now,
            "notify_time": now,
            "subject": "Soak order",
            "buyer_id": "2088102177846875",
            "invoice_amount": order.total_amount,
            "version": "1.0",
            "notify_id": notify_id,
            "notify_type": "trade_status_sync",
            "out_trade_no": order.out_trade_no,
            "total_amount": order.total_amount,
            "trade_status": status,
            "trade_no": order.trade_no,
            "auth_app_id": self._app_id,
            "receipt_amount": order.total_amount,
            "buyer_pay_amount": order.total_amount,
            "app_id": self._app_id,
            "seller_id": self._seller_id,
        }
        if status in ("TRADE_FINISHED", "TRADE_CLOSED"):
            fields["gmt_close"] = now
        if status == "TRADE_CLOSED":
            for unpaid in ("gmt_payment", "invoice_amount", "receipt_amount", "buyer_pay_amount"):
                del fields[unpaid]
        fields["sign_type"] = self._signer.sign_type.value
        fields["sign"] = b64encode(self._signer.sign(notification_content(fields).encode("utf-8")))
        body = "&".join(f"{k}={form_quote(v, 'utf-8')}" for k, v in fields.items()).encode("ascii")
        return body, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}

    def acknowledged(self, status: int, data: bytes) -> bool:
        return status == 200 and data == b"success"  # Alipay's rule: exactly these 7 bytes


# --- Antom -----------------------------------------------------------------------------------------------------

# notifyPayment as the soak sends it: a result S (paid), F (failed: the order closes, chalicelib/services/protocols.py
# antom_trade_status), or a PAYMENT_PENDING (U: the payment in process, which moves nothing).
RESULT_S, RESULT_F, PENDING = "S", "F", "PENDING"
ANTOM_KINDS = Kinds(
    statuses={
        PAID: [RESULT_S],
        PENDING_FIRST: [PENDING, RESULT_S],
        REORDERED: [RESULT_S, PENDING],  # a stale PAYMENT_PENDING delivered after the result: changes nothing
        CLOSED: [RESULT_F],
    },
    final={PAID: "TRADE_SUCCESS", PENDING_FIRST: "TRADE_SUCCESS", REORDERED: "TRADE_SUCCESS", CLOSED: "TRADE_CLOSED"},
    events={PAID: {"OrderPaid"}, PENDING_FIRST: {"OrderPaid"}, REORDERED: {"OrderPaid"}, CLOSED: {"OrderClosed"}},
    reordered_share=0.20,
    other_weights={PAID: 0.45, PENDING_FIRST: 0.4, CLOSED: 0.15},
    reordered_means="stale PENDING after the result",
)
ANTOM_CURRENCY = "USD"  # the currency the soak's orders are created in
_RESULTS = {
    RESULT_S: ("PAYMENT_RESULT", {"resultCode": "SUCCESS", "resultStatus": "S", "resultMessage": "success"}),
    RESULT_F: ("PAYMENT_RESULT", {"resultCode": "USER_PAYMENT_FAILED", "resultStatus": "F", "resultMessage": "failed"}),
    PENDING: (
        "PAYMENT_PENDING",
        {"resultCode": "PAYMENT_IN_PROCESS", "resultStatus": "U", "resultMessage": "payment in process"},
    ),
}


class AntomPlayer:
    """Antom: ``notifyPayment`` JSON for the payments the product opened at the sandbox's Antom, signed with its key."""

    protocol = "antom"
    sender = "Antom"
    # Antom's soak sends half as many notifications, mostly in batches of one (a crash needs a second record): at
    # 0.01 a CI run injected no crash at all; 0.1 injects a few dozen (devstack/faults.py: first deliveries only).
    consumer_crash_rate = 0.1
    ack = "resultStatus S"
    kinds = ANTOM_KINDS
    retry_intervals = antom_sandbox.RETRY_INTERVALS

    def __init__(self) -> None:
        self.checkout: Checkout = AntomCheckout()
        self._signer: LocalKeySigner | None = None
        self._client_id = self._path = ""

    def load(self, state_dir: Path, info: Mapping[str, Any]) -> None:
        key = load_private_key((state_dir / ANTOM_PRIVATE_KEY_FILE).read_bytes())
        self._signer = LocalKeySigner(key, SignType.RSA2)
        self._client_id = str(info["antom_client_id"])
        self._path = antom.path_of(self.notify_url(info))  # Antom signs over the path of the notify URL it was given

    def notify_url(self, info: Mapping[str, Any]) -> str:
        return f"{info['api_url']}{ANTOM_NOTIFY_PATH}"

    def trade_no(self, created: Mapping[str, Any], index: int) -> str:
        return str(created["payment_id"])  # the payment the product opened at Antom when the order was created

    def sign(self, order: Order, status: str, notify_id: str) -> tuple[bytes, dict[str, str]]:
        """A notifyPayment as Antom sends one (sandbox/antom.py), for the order's payment, at the order's amount.

        It carries no notify id: the product derives one from the body (``<notifyType>:<paymentId>:<resultStatus>``),
        so ``notify_id`` only names the note here, and a duplicate is the same bytes and headers again."""
        assert self._signer is not None, "load() first"
        notify_type, result = _RESULTS[status]
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())
        data: dict[str, Any] = {
            "notifyType": notify_type,
            "result": result,
            "paymentRequestId": order.out_trade_no,
            "paymentId": order.trade_no,
            "paymentAmount": {
                "currency": ANTOM_CURRENCY,
                "value": antom.to_minor(Decimal(order.total_amount), ANTOM_CURRENCY),
            },
            "paymentCreateTime": now,
        }
        if status == RESULT_S:
            data["paymentTime"] = now
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        request_time = str(time.time_ns() // 1_000_000)  # as Antom's Java side writes it: milliseconds
        content = antom.signed_content("POST", self._path, self._client_id, request_time, body)
        return body, {
            "Content-Type": antom.CONTENT_TYPE,
            antom.CLIENT_ID_HEADER: self._client_id,
            antom.REQUEST_TIME_HEADER: request_time,
            antom.SIGNATURE_HEADER: antom.signature_header(self._signer.sign(content)),
        }

    def acknowledged(self, status: int, data: bytes) -> bool:
        return antom_sandbox.acknowledged(status, data)  # HTTP 200 and Antom's ACK (compared as JSON)


PLAYERS: Mapping[str, type[OpenPlatformPlayer] | type[AntomPlayer]] = {
    OpenPlatformPlayer.protocol: OpenPlatformPlayer,
    AntomPlayer.protocol: AntomPlayer,
}
