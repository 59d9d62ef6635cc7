"""The soak's money orders: merchant refunds and late payments, driven while the notifications flow.

Unlike the notification orders (whose notifications the harness forges), these are real trades at the sandbox, so
that the product's refunds and returns reach an Alipay that keeps its own record of the money moved:

- **refund orders** are paid at the sandbox, then refunded by the merchant (``POST /merchant/orders/{no}/refunds``)
  in one of the plans of ``REFUND_PLANS``: a partial refund; a partial then the rest; a full refund; a refund whose
  replies Alipay loses (the API answers ``503`` naming the ``out_request_no`` it made, and the retry with it must
  refund once); two refunds at once that together exceed the total plus a double submission of one of them (only
  what is left may be refunded, one ``out_request_no`` once); a slow refund (``202 REFUND_PENDING``, no refund
  notification: only the scheduled sweep's refund query can confirm it).
- **late orders** are left unpaid at the sandbox, aged past their timeout in the table (as the e2e tier does), closed
  by the stack's reconciler, then paid late at the sandbox: the product must give the money back once.

How the sandbox's shopper pays differs by protocol (``Checkout``): Alipay's app pays the signed ``order_info`` the
order was answered with; Antom's shopper pays the payment the product opened at Antom, by its ``out_trade_no``.

Every request the merchant makes is retried as a merchant would, with the same ``out_request_no`` (or
``Idempotency-Key``), through the API's restart and the injected faults. The figures are read at the end from the
sandbox's own records (``GET /sandbox/trades/<no>``: each refund it carried out), the merchant's order view and the
events tap.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

import urllib3

from ops.client import ApiAnswer, MerchantClient

PARTIAL, PARTIAL_FULL, FULL = "partial", "partial+full", "full"
LOST, CONCURRENT, SLOW = "lost-reply", "concurrent", "slow"
REFUND_PLANS = (PARTIAL, PARTIAL_FULL, FULL, LOST, CONCURRENT, SLOW)
LATE = "late"
REFUND_ORDERS_PER_NOTIFICATION = 1 / 50  # 40 refund orders in the CI soak's 2,000 notifications
LATE_ORDERS_PER_NOTIFICATION = 1 / 100  # 20 late payments in the CI soak
MONEY_THREADS = 4
WAIT_SECONDS = 90.0  # for one order to reach a state the stack must bring it to (paid, closed)
ANSWERED = (201, 202)  # a refund accepted: done, or pending until Alipay confirms it
REFUSED = (409, 422)  # not refundable, or above what is left
CENT = Decimal("0.01")


class Checkout(Protocol):
    """How an order is created for, and paid by, the sandbox's shopper: what the protocols do differently here."""

    @property
    def order_fields(self) -> Mapping[str, str]:
        """Further fields of ``POST /merchant/orders``."""

    @property
    def late_status(self) -> str:
        """The trade status the sandbox's ``.../late-payment`` control answers."""

    def pay(self, money: MoneyDriver, created: Mapping[str, Any]) -> None:
        """The shopper pays the order now (the sandbox notifies the stack)."""

    def leave_unpaid(self, money: MoneyDriver, created: Mapping[str, Any]) -> None:
        """The shopper does not pay (yet): the order waits at the sandbox until the stack closes it."""


@dataclass(frozen=True)
class AlipayCheckout:
    """Open Platform: the app pays the ``order_info`` string the order was answered with (``POST /sandbox/pay``)."""

    order_fields: Mapping[str, str] = field(default_factory=dict)
    late_status: str = "TRADE_SUCCESS"

    def pay(self, money: MoneyDriver, created: Mapping[str, Any]) -> None:
        body = {"order_info": created["order_info"], "outcome": "success"}
        money.sandbox("/sandbox/pay", body, expect={"resultStatus": "9000"})

    def leave_unpaid(self, money: MoneyDriver, created: Mapping[str, Any]) -> None:
        # Paying, but the buyer's payment would only come in an hour: the trade exists at Alipay, unpaid.
        pay = {"order_info": created["order_info"], "outcome": "pending", "notify_delay": 3600}
        money.sandbox("/sandbox/pay", pay, expect={"resultStatus": "8000"})


@dataclass(frozen=True)
class AntomCheckout:
    """Antom: the order is an app payment opened at Antom when it is created; the shopper pays it by its number."""

    order_fields: Mapping[str, str] = field(default_factory=lambda: {"os_type": "IOS"})
    late_status: str = "SUCCESS"

    def pay(self, money: MoneyDriver, created: Mapping[str, Any]) -> None:
        body = {"out_trade_no": created["out_trade_no"], "outcome": "success"}
        money.sandbox("/sandbox/pay", body, expect={"status": "SUCCESS"})

    def leave_unpaid(self, money: MoneyDriver, created: Mapping[str, Any]) -> None:
        return None  # the payment waits at Antom (PROCESSING) from its creation; the reconciler cancels it


class MoneyFailed(AssertionError):
    """The stack did not bring a money order where it must (the soak reports it)."""


class Unanswered(MoneyFailed):
    """A request that may have arrived was not answered (the API went down mid-request)."""


@dataclass
class MoneyOrder:
    out_trade_no: str
    total: Decimal
    plan: str
    asked: dict[str, Decimal] = field(default_factory=dict)  # out_request_no -> amount, every refund accepted
    deviations: list[str] = field(default_factory=list)  # answers the plan did not expect
    failed: bool = False  # the stack did not bring it where its story needed it (in deviations): not waited for
    resumed: int = 0  # refunds sent without a number and not answered, found again on the merchant's order view


def plan_money(n: int, rng: random.Random) -> list[str]:
    """The plans of the money orders for a soak of ``n`` notifications: refund plans in turn, then late ones."""
    refunds = max(len(REFUND_PLANS), round(n * REFUND_ORDERS_PER_NOTIFICATION))
    late = max(4, round(n * LATE_ORDERS_PER_NOTIFICATION))
    plans = [REFUND_PLANS[i % len(REFUND_PLANS)] for i in range(refunds)] + [LATE] * late
    rng.shuffle(plans)
    return plans


def cents(amount: Decimal) -> str:
    return str(amount.quantize(CENT))


class MoneyDriver:
    """Drives the money orders through a running stack; ``run()`` in a thread, ``figures()`` at the end."""

    def __init__(
        self,
        plans: list[str],
        rng: random.Random,
        *,
        merchant: MerchantClient,
        sandbox_url: str,
        dynamodb: Any,
        table: str,
        say: Callable[[str], None],
        checkout: Checkout | None = None,
    ) -> None:
        self.plans = plans
        self.checkout: Checkout = checkout or AlipayCheckout()
        self.rng = rng
        self.merchant = merchant
        self.sandbox_url = sandbox_url.rstrip("/")
        self.dynamodb = dynamodb
        self.table = table
        self.say = say
        self.http = urllib3.PoolManager(maxsize=MONEY_THREADS * 3, retries=False, timeout=urllib3.Timeout(10, 30))
        self.orders: list[MoneyOrder] = []
        self.errors: list[str] = []
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.finished = threading.Event()
        self._settled: set[str] = set()  # the orders settled() found with nothing left in flight

    # -- the run --

    def run(self) -> None:
        """Every order's story, ``MONEY_THREADS`` at a time; an order the stack fails is recorded, not raised."""
        amounts = [Decimal(self.rng.randrange(1000, 100000)) / 100 for _ in self.plans]
        work = iter(list(zip(self.plans, amounts, strict=True)))
        lock = threading.Lock()

        def worker() -> None:
            while True:
                with lock:
                    item = next(work, None)
                if item is None:
                    return
                plan, total = item
                try:
                    self._story(plan, total)
                except (MoneyFailed, urllib3.exceptions.HTTPError, KeyError, ValueError) as exc:
                    with self._lock:
                        self.errors.append(f"{plan}: {exc}")

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(MONEY_THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        self.finished.set()

    def _story(self, plan: str, total: Decimal) -> None:
        created = self._create(total)
        order = MoneyOrder(created["out_trade_no"], total, plan)
        with self._lock:
            self.orders.append(order)
        try:
            self._play(order, created)
        except (MoneyFailed, urllib3.exceptions.HTTPError, KeyError, ValueError) as exc:
            order.failed = True
            order.deviations.append(f"failed: {exc}")

    def _play(self, order: MoneyOrder, created: Mapping[str, Any]) -> None:
        plan, total = order.plan, order.total
        if plan == LATE:
            self._late(order, created)
            return
        self.checkout.pay(self, created)
        self._wait_status(order, "TRADE_SUCCESS")
        partial = max(CENT, (total * Decimal("0.3")).quantize(CENT))
        name = order.out_trade_no[-12:]
        if plan == PARTIAL:
            self._expect(order, self._refund(order, partial, f"{name}-p1"), 201)
        elif plan == PARTIAL_FULL:
            self._expect(order, self._refund(order, partial, f"{name}-p1"), 201)
            self._expect(order, self._refund(order, total - partial, f"{name}-p2"), 201)
        elif plan == FULL:
            self._expect(order, self._refund(order, total, f"{name}-f1"), 201)
        elif plan == LOST:
            # The gateway adapter tries 3 times: 3 lost replies make the API answer 503 naming the out_request_no it
            # made for the refund (Alipay carried it out meanwhile); the merchant's retry with it refunds nothing twice.
            self.sandbox(f"/sandbox/trades/{order.out_trade_no}/refunds", {"lose_replies": 3})
            first = self._refund(order, partial, None, stop_at_503=True)
            number = _json(first).get("out_request_no")
            if order.resumed and first.status == 201:
                return  # the API went down mid-request: resumed from the order view, under its number, instead
            if first.status != 503 or not number:
                order.deviations.append(f"lost replies answered {first.status} {first.body[:200]!r}")
                return
            self._count("refunds retried after a lost reply")
            self._expect(order, self._refund(order, partial, number), 201)
        elif plan == CONCURRENT:
            self._concurrent(order, name)
        elif plan == SLOW:
            # Accepted with fund_change=N; no refund notification: only the sweep's refund query can confirm it.
            self.sandbox(f"/sandbox/trades/{order.out_trade_no}/refunds", {"slow": True, "notify": False})
            self._expect(order, self._refund(order, partial, f"{name}-s1"), 202)
            self.sandbox(f"/sandbox/trades/{order.out_trade_no}/refunds/settle", {})
            self._count("refunds left to the sweep")

    def _concurrent(self, order: MoneyOrder, name: str) -> None:
        """Two refunds of 60% each at once (only one fits), and the first submitted twice (one refund)."""
        share = (order.total * Decimal("0.6")).quantize(CENT)
        requests = [(share, f"{name}-c1"), (share, f"{name}-c2"), (share, f"{name}-c1")]
        answers: list[ApiAnswer | None] = [None] * len(requests)
        barrier = threading.Barrier(len(requests))

        def send(i: int) -> None:
            barrier.wait()
            answers[i] = self._refund(order, *requests[i])

        threads = [threading.Thread(target=send, args=(i,), daemon=True) for i in range(len(requests))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        statuses = [a.status if a else 0 for a in answers]
        accepted = {requests[i][1] for i, status in enumerate(statuses) if status in ANSWERED}
        if len(accepted) != 1 or any(s not in ANSWERED + REFUSED for s in statuses):
            order.deviations.append(f"concurrent refunds of 60% each answered {statuses}: not exactly one accepted")
        self._count("concurrent refund requests", len(requests))

    def _late(self, order: MoneyOrder, created: Mapping[str, Any]) -> None:
        """Unpaid at Alipay, closed past its timeout, then paid late."""
        self.checkout.leave_unpaid(self, created)
        self._age(order.out_trade_no)
        self._wait_status(order, "TRADE_CLOSED")
        late = self.sandbox(f"/sandbox/trades/{order.out_trade_no}/late-payment", {})
        if late.get("trade_status") != self.checkout.late_status:
            order.deviations.append(f"late payment answered {late}")

    # -- the calls --

    def _create(self, total: Decimal) -> dict[str, Any]:
        body = {"subject": "Soak money order", "total_amount": cents(total), "currency": "USD"}
        body.update(self.checkout.order_fields)
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        answer = self._merchant("POST", "/merchant/orders", body, headers)
        deadline = time.monotonic() + WAIT_SECONDS
        # A retry after a request that went unanswered may meet that request still running: as the API asks, wait
        # and send it again with the same key (it is answered the order the first one made, or makes it now).
        while answer.status == 409 and _json(answer).get("code") == "idempotency_key_in_progress":
            if time.monotonic() > deadline:
                break
            time.sleep(0.3)
            answer = self._merchant("POST", "/merchant/orders", body, headers)
        if answer.status != 201:
            raise MoneyFailed(f"POST /merchant/orders answered {answer.status}: {answer.body[:300]!r}")
        return dict(answer.json())

    def _refund(
        self, order: MoneyOrder, amount: Decimal, number: str | None, *, stop_at_503: bool = False
    ) -> ApiAnswer:
        """One refund as a merchant makes it: retried with the same (or the answer's) out_request_no until answered."""
        body: dict[str, str] = {"amount": cents(amount), "reason": "soak"}
        if number is not None:
            body["out_request_no"] = number
        path = f"/merchant/orders/{order.out_trade_no}/refunds"
        while True:
            self._count("refund calls (retries included)")
            try:
                answer = self._merchant("POST", path, body, retry_unanswered=number is not None)
            except Unanswered:
                # Sent without a number, and the API went down before answering: as a merchant would, look for it on
                # the order (a refund of this amount the merchant does not know); resend with its number, or afresh.
                number = self._find_refund(order, amount)
                order.resumed += 1
                if number is not None:
                    body["out_request_no"] = number
                continue
            named = _json(answer).get("out_request_no")
            if answer.status >= 500 and not (stop_at_503 and answer.status == 503):
                if named is None and number is None:
                    if answer.status not in (502, 504):  # API Gateway's own answers name nothing; the product's must
                        order.deviations.append(f"a refund answered {answer.status} without its out_request_no")
                    number = self._find_refund(order, amount)
                    order.resumed += 1
                    if number is not None:
                        body["out_request_no"] = number
                    continue
                number = str(named or number)
                body["out_request_no"] = number
                time.sleep(0.3)
                continue
            break
        number = body.get("out_request_no") or named
        if answer.status in ANSWERED and number:
            with self._lock:
                order.asked[number] = amount  # accepted: Alipay must carry it out once (after the sweep, if pending)
        return answer

    def _find_refund(self, order: MoneyOrder, amount: Decimal) -> str | None:
        """The number of a refund of ``amount`` on the merchant's order view that this order's story does not know."""
        view = self._merchant("GET", f"/merchant/orders/{order.out_trade_no}").json()
        with self._lock:
            known = set(order.asked)
        for refund in view.get("refunds", []):
            if refund["out_request_no"] not in known and Decimal(refund["refund_amount"]) == amount:
                return str(refund["out_request_no"])
        return None

    def _expect(self, order: MoneyOrder, answer: ApiAnswer, status: int) -> None:
        if answer.status != status:
            order.deviations.append(f"a refund answered {answer.status}, not {status}: {answer.body[:200]!r}")

    def _merchant(
        self,
        method: str,
        path: str,
        body: object = None,
        headers: dict[str, str] | None = None,
        *,
        retry_unanswered: bool = True,
    ) -> ApiAnswer:
        """A merchant call, retried while the API is down (connection refused, or API Gateway's 502/503/504 before the
        function answers): as a merchant's backend would. A request that may have arrived unanswered is retried only
        when it names itself (``retry_unanswered``)."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                return self.merchant.request(method, path, body, headers)
            except urllib3.exceptions.HTTPError as exc:
                refused = isinstance(exc, urllib3.exceptions.NewConnectionError) or isinstance(
                    getattr(exc, "reason", None), urllib3.exceptions.NewConnectionError
                )
                if time.monotonic() > deadline:
                    raise MoneyFailed(f"{method} {path}: no answer ({type(exc).__name__})") from exc
                if not (refused or retry_unanswered):
                    raise Unanswered(f"{method} {path}: no answer ({type(exc).__name__})") from exc
                time.sleep(0.3)

    def sandbox(self, path: str, body: dict[str, Any], *, expect: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A sandbox control; ``MoneyFailed`` unless answered 200 with the ``expect`` fields."""
        response = self.http.request("POST", self.sandbox_url + path, json=body)
        data = _json_bytes(response.data)
        if response.status != 200 or any(data.get(name) != value for name, value in (expect or {}).items()):
            raise MoneyFailed(f"sandbox {path} answered {response.status}: {response.data[:300]!r}")
        return data

    def trade(self, out_trade_no: str) -> dict[str, Any]:
        response = self.http.request("GET", f"{self.sandbox_url}/sandbox/trades/{out_trade_no}")
        if response.status != 200:
            raise MoneyFailed(f"the sandbox has no trade {out_trade_no}: {response.status}")
        return _json_bytes(response.data)

    def _item(self, out_trade_no: str) -> dict[str, Any]:
        item = self.dynamodb.get_item(
            TableName=self.table, Key={"pk": {"S": f"order#{out_trade_no}"}}, ConsistentRead=True
        ).get("Item")
        return dict(item or {})

    def _wait_status(self, order: MoneyOrder, status: str) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        while self._item(order.out_trade_no).get("status", {}).get("S") != status:
            if time.monotonic() > deadline:
                raise MoneyFailed(f"{order.out_trade_no} ({order.plan}) not {status} after {WAIT_SECONDS:.0f} s")
            time.sleep(0.2)

    def _age(self, out_trade_no: str) -> None:
        """Created two hours ago and past its own timeout, as an operator or a fixture would edit the table (the e2e
        tier's ``age_order``): Alipay's minimum timeout is a minute, longer than a soak should wait."""
        then = datetime.now(UTC) - timedelta(hours=2)
        stamp = f"{then.isoformat(timespec='milliseconds').removesuffix('+00:00')}Z"
        self.dynamodb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"order#{out_trade_no}"}},
            UpdateExpression="SET #created = :at, #pay_by = :at, #since = :at",
            ConditionExpression="#status = :waiting",
            ExpressionAttributeNames={
                "#created": "created_at",
                "#pay_by": "pay_by",
                "#since": "waiting_since",
                "#status": "status",
            },
            ExpressionAttributeValues={":at": {"S": stamp}, ":waiting": {"S": "WAIT_BUYER_PAY"}},
        )

    def _count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counts[name] += by

    # -- the end --

    def settled(self) -> int:
        """How many money orders have nothing left in flight: no refund pending, a late payment returned."""
        for order in list(self.orders):
            if order.out_trade_no in self._settled or order.failed:
                continue
            trade = self.trade(order.out_trade_no)
            if order.plan == LATE:
                done = bool(trade["gmt_payment"]) and bool(trade["refunds"])
            else:
                done = not trade["refunds_processing"] and self._product_settled(order)
            if done:
                self._settled.add(order.out_trade_no)
        return len(self._settled) + sum(o.failed for o in self.orders)

    def _product_settled(self, order: MoneyOrder) -> bool:
        answer = self._merchant("GET", f"/merchant/orders/{order.out_trade_no}")
        return answer.status == 200 and all(r["status"] != "REFUND_PENDING" for r in answer.json().get("refunds", []))

    def expected_events(self) -> dict[str, set[str]]:
        """Per money order, the event ids it must produce once each, from what the sandbox carried out."""
        expected: dict[str, set[str]] = {}
        for order in self.orders:
            no = order.out_trade_no
            trade = self.trade(no)
            refunds = [r["out_request_no"] for r in trade["refunds"]]
            if order.plan == LATE:
                ids = {f"{no}:OrderClosed"} | {f"{no}:PaymentReturned:{r}" for r in refunds}
            else:
                ids = {f"{no}:OrderPaid"} | {f"{no}:OrderRefunded:{r}" for r in refunds}
                if Decimal(trade["refund_fee"]) == order.total:
                    ids.add(f"{no}:OrderClosed")
            expected[no] = ids
        return expected

    def figures(self, events: list[dict[str, Any]]) -> tuple[list[tuple[str, str]], list[str]]:
        """The money figures (name, value) and the problems among them; the sandbox's records are the truth."""
        problems = list(self.errors)
        requested = confirmed = returned = double_refunded = unsettled = 0
        left_captured = Decimal(0)
        refunded_events = returned_events = 0
        expected_refunded = expected_returned = 0
        events_by_order: dict[str, Counter[str]] = {}
        for event in events:
            event_id = event["detail"]["event_id"]
            events_by_order.setdefault(event_id.split(":")[0], Counter())[event_id] += 1
        deviations: list[str] = []
        for order in self.orders:
            no = order.out_trade_no
            trade = self.trade(no)
            view = self._merchant("GET", f"/merchant/orders/{no}").json()
            at_alipay = {r["out_request_no"]: Decimal(r["refund_amount"]) for r in trade["refunds"]}
            refunded = sum(at_alipay.values(), Decimal(0))
            captured = order.total if trade["gmt_payment"] else Decimal(0)
            product_refunds = {r["out_request_no"]: r for r in view.get("refunds", [])}
            deviations.extend(f"{no} ({order.plan}): {d}" for d in order.deviations)
            if order.plan == LATE:
                returns = [r for r in at_alipay if r.startswith("return-")]
                returned += len(returns)
                # Returned exactly once, the whole amount, under the product's own number, and nothing else moved.
                if len(at_alipay) != 1 or len(returns) != 1 or refunded != captured:
                    double_refunded += len(at_alipay) > 1
                    deviations.append(f"{no} (late): captured {captured}, at Alipay {at_alipay}")
                expected_returned += len(returns)
            else:
                requested += len(order.asked)
                confirmed += sum(
                    1
                    for r in product_refunds.values()
                    if r.get("kind", "refund") == "refund" and r["status"] == "REFUND_SUCCESS"
                )
                # Every refund Alipay carried out is one the merchant asked for and was told was accepted, at its
                # amount; none above the total; every accepted one carried out (after the sweep).
                unknown = set(at_alipay) - set(order.asked)
                wrong = {r for r in at_alipay if r in order.asked and at_alipay[r] != order.asked[r]}
                if unknown or wrong or refunded > order.total:
                    double_refunded += 1
                    deviations.append(f"{no} ({order.plan}): asked {order.asked}, at Alipay {at_alipay}")
                missing = set(order.asked) - set(at_alipay)
                pending = [r for r, v in product_refunds.items() if v["status"] != "REFUND_SUCCESS"]
                if missing or pending or Decimal(view.get("refund_fee") or 0) != refunded:
                    unsettled += 1
                    deviations.append(
                        f"{no} ({order.plan}): asked {order.asked}, at Alipay {at_alipay}, "
                        f"product {product_refunds} refund_fee {view.get('refund_fee')}"
                    )
                expected_refunded += len(at_alipay)
            if view.get("status") == "TRADE_CLOSED":
                left_captured += captured - refunded
            seen = events_by_order.get(no, Counter())
            refunded_events += sum(1 for e in seen if ":OrderRefunded:" in e)
            returned_events += sum(1 for e in seen if ":PaymentReturned:" in e)
        expected = self.expected_events()
        missing_events = sum(len(ids - set(events_by_order.get(no, {}))) for no, ids in expected.items())
        unexpected = sum(len(set(events_by_order.get(no, {})) - ids) for no, ids in expected.items())
        plans = Counter(o.plan for o in self.orders)

        lines = [
            (
                "money orders: refund / late",
                f"{len(self.orders) - plans[LATE]} / {plans[LATE]} "
                f"({', '.join(f'{p} {plans[p]}' for p in REFUND_PLANS)})",
            ),
            ("refunds requested (accepted, by out_request_no)", str(requested)),
            ("  refund calls (retries included)", str(self.counts["refund calls (retries included)"])),
            ("  retried after a lost reply (503 naming it)", str(self.counts["refunds retried after a lost reply"])),
            ("  concurrent requests (60% + 60% + a double submit)", str(self.counts["concurrent refund requests"])),
            ("  left to the sweep (202, no notification)", str(self.counts["refunds left to the sweep"])),
            ("  resumed from the order view (unanswered)", str(sum(o.resumed for o in self.orders))),
            ("refunds confirmed (REFUND_SUCCESS)", str(confirmed)),
            ("double-refunded (at the sandbox)", str(double_refunded)),
            ("refunds left unsettled", str(unsettled)),
            ("late payments / returned at the sandbox", f"{plans[LATE]} / {returned}"),
            ("money left captured on closed orders", cents(left_captured)),
            (
                "OrderRefunded / PaymentReturned (by event_id)",
                f"{refunded_events} of {expected_refunded} / {returned_events} of {expected_returned}",
            ),
            ("  money events missing / unexpected", f"{missing_events} / {unexpected}"),
            ("money plan deviations", str(len(deviations))),
        ]
        if double_refunded:
            problems.append(f"double-refunded {double_refunded}")
        if unsettled:
            problems.append(f"{unsettled} orders with refunds left unsettled")
        if left_captured:
            problems.append(f"money left captured on closed orders: {cents(left_captured)}")
        if missing_events or unexpected:
            problems.append(f"money events: {missing_events} missing, {unexpected} unexpected")
        if returned != plans[LATE]:
            problems.append(f"{plans[LATE] - returned} late payments not returned")
        if not self.counts["refunds retried after a lost reply"] or not self.counts["refunds left to the sweep"]:
            problems.append("no lost refund reply, or no refund left to the sweep, was played")
        problems.extend(deviations[:20])
        return lines, problems


def _json(answer: ApiAnswer) -> dict[str, Any]:
    return _json_bytes(answer.body)


def _json_bytes(data: bytes) -> dict[str, Any]:
    import json

    try:
        value = json.loads(data or b"{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
