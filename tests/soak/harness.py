"""The soak: N signed notifications for M orders through a running local stack, with injected faults.

The stack is started as ``make run`` starts it (``StackProcess``), with its functions reaching the emulator
through the fault-injecting proxy of ``devstack.faults`` and the SQS worker crashing mid-batch at the
plan's rate. The driver here plays Alipay (Open Platform), or Antom on a stack started with ``ALIPAY_PROTOCOL=antom``
(``players.py``): it signs each notification with the sandbox's key from the state dir (the webhook verifies it with
the public half, as for the sandbox's own), delivers them interleaved across orders from several threads,
duplicates and reorders a share of them, and retries every delivery not acknowledged (``success``; Antom's
``resultStatus S``) on the protocol's schedule, time-scaled. Midway it takes the API down and brings it back
(``kill -USR1``, as a user would). Beside the notifications, through the same faults and restart, ``money.py`` plays
the money orders: merchant refunds of orders paid at the sandbox, and late payments of orders the stack closed.

Nothing is taken on trust from the product: the end state is read from the emulator directly (the table, its
stream, the queues, the events tap), the money moved from the sandbox's own records, the faults are counted by the
injectors, and every figure is asserted.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
from botocore.config import Config

from devstack import faults
from devstack.resources import STACK_FILE
from devstack.stack import PROJECT_DIR, StackProcess, free_port
from ops.client import MerchantClient
from tests.soak.money import MoneyDriver, plan_money
from tests.soak.players import CLOSED, PAID, REORDERED, Kinds, OpenPlatformPlayer, Order, Player

TIME_SCALE = 0.001  # Alipay's 4 min, 10 min, ... become 0.24 s, 0.6 s, ... (as in the e2e tier)
DUPLICATE_SHARE = 0.30  # of the N deliveries, the share that repeat an earlier notify_id
DRIVER_THREADS = 8
BASELINE_SECONDS = 3.0
CONSUMER_TIMEOUT_SECONDS = 30  # .chalice/config.json: lambda_timeout
STALL_SECONDS = 90.0  # longer than any retry path: Alipay's 54 s interval, 10 stream retries, 5 receives x 3 s
ACKED = "acked"  # the answers counted: this, or what the answer was


class SoakFailed(AssertionError):
    """A figure that must hold did not."""


@dataclass
class Note:
    """One notification (one notify_id) and its signed bytes (and headers: Antom signs in them)."""

    order: Order
    status: str
    notify_id: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(order=True)
class Delivery:
    """One planned delivery of a notification; retried until answered ``success``."""

    due: float
    seq: int
    note: Note = field(compare=False)
    duplicate: bool = field(compare=False, default=False)
    attempts: int = field(compare=False, default=0)
    acked: bool = field(compare=False, default=False)


@dataclass
class Figures:
    lines: list[tuple[str, str]] = field(default_factory=list)

    def add(self, name: str, value: object) -> None:
        self.lines.append((name, str(value)))

    def render(self) -> str:
        width = max(len(name) for name, _ in self.lines)
        return "\n".join(f"  {name:<{width}}  {value}" for name, value in self.lines)


# --- the plan --------------------------------------------------------------------------------------------------


def plan_orders(n: int, rng: random.Random, kinds: Kinds) -> tuple[list[str], int]:
    """The kinds of the orders and the number of duplicate deliveries, so that deliveries total exactly ``n``."""
    distinct_wanted = n - round(n * DUPLICATE_SHARE)
    planned: list[str] = []
    distinct = 0
    others, weights = zip(*kinds.other_weights.items(), strict=True)
    while distinct < distinct_wanted:
        kind = REORDERED if rng.random() < kinds.reordered_share else rng.choices(others, weights)[0]
        if distinct + len(kinds.statuses[kind]) > distinct_wanted:
            kind = PAID  # the last order takes what is left (one notification)
        planned.append(kind)
        distinct += len(kinds.statuses[kind])
    return planned, n - distinct


def interleave(per_order: list[list[tuple[Note, bool]]], rng: random.Random) -> list[tuple[Note, bool]]:
    """A uniformly random merge of the orders' sequences that keeps each order's own sequence."""
    slots = [i for i, sequence in enumerate(per_order) for _ in sequence]
    rng.shuffle(slots)
    cursors = [0] * len(per_order)
    merged = []
    for i in slots:
        merged.append(per_order[i][cursors[i]])
        cursors[i] += 1
    return merged


# --- the run ---------------------------------------------------------------------------------------------------


class Soak:
    """One soak run; ``run()`` returns the printed figures and raises ``SoakFailed`` if one does not hold."""

    def __init__(
        self,
        n: int,
        work_dir: Path,
        *,
        seed: int = 20240601,
        player: Player | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.n = n
        self.player: Player = player or OpenPlatformPlayer()
        self.kinds = self.player.kinds
        self.deliveries_per_notification = 1 + len(self.player.retry_intervals)  # both give up after 8 deliveries
        self.work_dir = work_dir.resolve()
        self.seed = seed
        self.say = out
        self.rng = random.Random(seed)
        self.http = urllib3.PoolManager(maxsize=DRIVER_THREADS * 2, retries=False, timeout=urllib3.Timeout(10, 30))
        self.answers: Counter[str] = Counter()
        self.deliveries_made = 0
        self.gave_up: list[Delivery] = []
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._heap: list[Delivery] = []
        self._cond = threading.Condition(self._lock)
        self._outstanding = 0
        self._seq = itertools.count()

    # -- set-up --

    def _start(self) -> None:
        state_dir = self.work_dir / "state"
        fault_dir = self.work_dir / "faults"
        state_dir.mkdir(parents=True, exist_ok=True)
        fault_dir.mkdir(exist_ok=True)
        for stale in fault_dir.glob("*"):
            stale.unlink()
        self.fault_dir = fault_dir
        plan_file = fault_dir / "plan.json"
        faults.FaultPlan(
            log_dir=str(fault_dir), seed=self.seed, consumer_crash_rate=self.player.consumer_crash_rate
        ).write(plan_file)
        proxy_port = free_port()
        self.proxy_url = f"http://127.0.0.1:{proxy_port}"
        self.proxy_log = (self.work_dir / "proxy.out").open("wb")
        self.proxy = subprocess.Popen(
            [sys.executable, "-m", "devstack.faults", "--port", str(proxy_port), "--plan", str(plan_file),
             "--stack-file", str(state_dir / STACK_FILE)],
            cwd=PROJECT_DIR,
            stdout=self.proxy_log,
            stderr=subprocess.STDOUT,
        )
        environ = {
            **_without_aws(),
            faults.PROXY_URL_ENV: self.proxy_url,
            faults.PLAN_ENV: str(plan_file),
            # What Lambda requires of a deployed mapping: a visibility timeout no shorter than the consumer's own
            # timeout. The stack's 3 s default is shorter than a batch kept in botocore's backoff by the throttling
            # injected here; a batch still running when it expires is received again by another poller, and the
            # receives that add up send a message that never failed 5 times to the DLQ.
            "LOCAL_SQS_VISIBILITY_TIMEOUT": str(CONSUMER_TIMEOUT_SECONDS),
        }
        self.stack = StackProcess(
            state_dir, protocol=self.player.protocol, time_scale=str(TIME_SCALE), environ=environ
        )
        self.info = self.stack.start(timeout=90)
        self.merchant = MerchantClient.from_stack(self.info)  # the merchant's backend: it creates the orders
        import boto3

        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=self.info["region"]
        )
        endpoint = self.info["aws_endpoint_url"]  # the emulator itself: the harness's own reads are never faulted
        self.sqs = session.client("sqs", endpoint_url=endpoint)
        self.dynamodb = session.client("dynamodb", endpoint_url=endpoint)
        self.streams = session.client(
            "dynamodbstreams", endpoint_url=endpoint, config=Config(account_id_endpoint_mode="disabled")
        )
        self.player.load(state_dir, self.info)

    def _stop(self) -> None:
        self.stack.stop()
        if self.proxy.poll() is None:
            self.proxy.terminate()
            try:
                self.proxy.wait(10)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
        self.proxy_log.close()

    def _proxy(self, action: str = "") -> dict[str, Any]:
        method = "POST" if action else "GET"
        response = self.http.request(method, f"{self.proxy_url}{faults.CONTROL_PATH}{action}")
        return dict(json.loads(response.data))

    def _create_orders(self, kinds: list[str]) -> list[Order]:
        orders: list[Order | None] = [None] * len(kinds)
        counter = itertools.count()

        def create() -> None:
            while (i := next(counter)) < len(kinds):
                amount = f"{self.rng.randrange(100, 100000) / 100:.2f}"
                body = {"subject": "Soak order", "total_amount": amount, "currency": "USD"}
                body.update(self.player.checkout.order_fields)
                answer = self.merchant.post("/merchant/orders", body)
                if answer.status != 201:
                    raise SoakFailed(f"POST /merchant/orders answered {answer.status}: {answer.body[:300]!r}")
                created = answer.json()
                orders[i] = Order(created["out_trade_no"], amount, kinds[i], self.player.trade_no(created, i))

        _run_threads(create, 4)
        return [order for order in orders if order is not None]

    # -- driving --

    def _schedule(self, delivery: Delivery) -> None:
        with self._cond:
            heapq.heappush(self._heap, delivery)
            self._cond.notify()

    def _next_due(self) -> Delivery | None:
        with self._cond:
            while True:
                if not self._heap:
                    if self._outstanding == 0:
                        return None
                    self._cond.wait(0.5)
                    continue
                wait = self._heap[0].due - time.monotonic()
                if wait <= 0:
                    return heapq.heappop(self._heap)
                self._cond.wait(min(wait, 0.5))

    def _drive(self) -> None:
        url = self.player.notify_url(self.info)
        intervals = self.player.retry_intervals
        while (delivery := self._next_due()) is not None:
            delivery.attempts += 1
            try:
                response = self.http.request("POST", url, body=delivery.note.body, headers=delivery.note.headers)
                status, data = response.status, response.data
                answer = f"{status} {data[:20].decode('utf-8', 'replace')}"
            except urllib3.exceptions.HTTPError as exc:
                status, data, answer = 0, b"", f"no answer ({type(exc).__name__})"
            ok = self.player.acknowledged(status, data)
            with self._cond:
                self.deliveries_made += 1
                self.answers[answer if not ok else ACKED] += 1
                if ok:
                    delivery.acked = True
                    self._outstanding -= 1
                elif delivery.attempts >= self.deliveries_per_notification:
                    self.gave_up.append(delivery)
                    self._outstanding -= 1
                else:
                    delivery.due = time.monotonic() + intervals[delivery.attempts - 1] * TIME_SCALE
                    heapq.heappush(self._heap, delivery)
                self._cond.notify_all()

    def _drain_tap(self, stop: threading.Event) -> None:
        queue_url = self.info["events_tap_queue_url"]
        while not stop.is_set():
            try:
                messages = self.sqs.receive_message(
                    QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1
                ).get("Messages", [])
            except Exception:  # the emulator is going away at the end of a failed run: nothing left to read
                return
            if not messages:
                continue
            with self._lock:
                self.events.extend(json.loads(m["Body"]) for m in messages)
            self.sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )

    def _restart_api(self, at_delivery: int, done: threading.Event) -> None:
        """Once ``at_delivery`` deliveries were made: the API down (USR1), a second, back up (USR1 again)."""
        while self.deliveries_made < at_delivery:
            time.sleep(0.05)
        before = self.stack.output().count("api stopped")
        self.stack.toggle_api()
        _wait(lambda: self.stack.output().count("api stopped") > before, 30, "the API to stop")
        self.api_down_at = time.monotonic()
        time.sleep(1.0)  # Alipay's retries meet a closed port meanwhile
        before = self.stack.output().count("api started again")
        self.stack.toggle_api()
        _wait(lambda: self.stack.output().count("api started again") > before, 60, "the API to start again")
        self.api_down_seconds = time.monotonic() - self.api_down_at
        done.set()

    def _queue_depth(self, url: str) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def _tapped_ids(self) -> set[str]:
        """The ``event_id`` of every event on the tap so far."""
        with self._lock:
            return {e["detail"]["event_id"] for e in self.events}

    def _where_missing(self, expected_ids: set[str]) -> str:
        """Where the events still missing stand: their orders' rows, the queues, the crashes (for a stall's message)."""
        missing = sorted(expected_ids - self._tapped_ids())
        table = self._orders_table()
        rows = []
        for event_id in missing[:5]:
            row = table.get(event_id.split(":", 1)[0], {})
            rows.append(f"{event_id} (row {row.get('status', {}).get('S')} v{row.get('version', {}).get('N')})")
        queue = self._queue_depth(self.info["notifications_queue_url"])
        dlq = self._queue_depth(self.info["notifications_dlq_url"])
        crashes = faults.crashes_recorded(self.fault_dir)
        return f"missing {', '.join(rows)}; queue {queue}, DLQ {dlq}, consumer crashes {crashes}"

    # -- reading the end state from the emulator --

    def _orders_table(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.info["orders_table"]):
            for item in page["Items"]:
                if item["pk"]["S"].startswith("order#"):
                    items[item["out_trade_no"]["S"]] = item
        return items

    def _stream_changes(self) -> dict[str, list[tuple[str, str, int, int]]]:
        """Per order, every MODIFY of the table's stream: (old status, new status, old version, new version)."""
        arn = self.dynamodb.describe_table(TableName=self.info["orders_table"])["Table"]["LatestStreamArn"]
        changes: dict[str, list[tuple[str, str, int, int]]] = defaultdict(list)
        shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        for shard in shards:
            iterator = self.streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            while iterator:
                response = self.streams.get_records(ShardIterator=iterator, Limit=1000)
                records = response.get("Records", [])
                for record in records:
                    change = record["dynamodb"]
                    new, old = change.get("NewImage"), change.get("OldImage")
                    if record["eventName"] != "MODIFY" or not new or not old:
                        continue
                    if not new["pk"]["S"].startswith("order#"):
                        continue
                    if new["version"]["N"] == old["version"]["N"]:
                        continue  # the reconciler's schedule of a waiting order: bookkeeping that keeps the version
                    changes[new["out_trade_no"]["S"]].append(
                        (old["status"]["S"], new["status"]["S"], int(old["version"]["N"]), int(new["version"]["N"]))
                    )
                if not records:
                    break
                iterator = response.get("NextShardIterator")
        return changes

    def _emulator_calls_per_second(self) -> float:
        """A plain SendMessage loop, one client, straight at the same emulator: its own pace on this machine."""
        url = self.sqs.create_queue(QueueName="soak-baseline")["QueueUrl"]
        calls = 0
        started = time.monotonic()
        while time.monotonic() - started < BASELINE_SECONDS:
            self.sqs.send_message(QueueUrl=url, MessageBody="baseline")
            calls += 1
        return calls / (time.monotonic() - started)

    # -- the whole run --

    def run(self) -> Figures:
        wall_started = time.monotonic()
        kinds, duplicate_count = plan_orders(self.n, self.rng, self.kinds)
        self._start()
        try:
            return self._run(kinds, duplicate_count, wall_started)
        finally:
            self._stop()

    def _run(self, kinds: list[str], duplicate_count: int, wall_started: float) -> Figures:
        self.say(f"soak: creating {len(kinds)} orders")
        orders = self._create_orders(kinds)
        notes_by_order = [
            [Note(order, status, f"soak{i:07d}{j}") for j, status in enumerate(self.kinds.statuses[order.kind])]
            for i, order in enumerate(orders)
        ]
        notes = [note for per_order in notes_by_order for note in per_order]
        self.say(f"soak: signing {len(notes)} notifications")
        for note in notes:
            note.body, note.headers = self.player.sign(note.order, note.status, note.notify_id)
        # Alipay's at-least-once delivery: a duplicate is the same bytes again, later in the same order's sequence.
        sequences: list[list[tuple[Note, bool]]] = [[(note, False) for note in per] for per in notes_by_order]
        for _ in range(duplicate_count):
            index = self.rng.randrange(len(sequences))
            sequence = sequences[index]
            note = self.rng.choice([n for n, dup in sequence if not dup])
            first = next(i for i, (n, dup) in enumerate(sequence) if n is note and not dup)
            sequence.insert(self.rng.randint(first + 1, len(sequence)), (note, True))
        schedule = interleave(sequences, self.rng)
        assert len(schedule) == self.n

        self._proxy("/arm")
        stop_tap = threading.Event()
        tap = threading.Thread(target=self._drain_tap, args=(stop_tap,), daemon=True)
        tap.start()
        restarted = threading.Event()
        self.api_down_seconds = 0.0
        restarter = threading.Thread(target=self._restart_api, args=(self.n // 2, restarted), daemon=True)
        # The money orders (refunds, late payments) run beside the notifications, through the same faults and restart;
        # their own random stream, so the notification plan of a seed stays what it was.
        self.money = MoneyDriver(
            plan_money(self.n, random.Random(self.seed + 1)),
            random.Random(self.seed + 2),
            merchant=self.merchant,
            sandbox_url=self.info["sandbox_url"],
            dynamodb=self.dynamodb,
            table=self.info["orders_table"],
            say=self.say,
            checkout=self.player.checkout,
        )
        money = threading.Thread(target=self.money.run, daemon=True)
        self.say(f"soak: {len(self.money.plans)} money orders (refunds, late payments) beside the notifications")
        self.say(f"soak: sending {self.n} notifications for {len(orders)} orders")
        started = time.monotonic()
        with self._cond:
            # Planned deliveries go out in schedule order, spaced only by the drivers' own pace.
            for position, (note, duplicate) in enumerate(schedule):
                self._heap.append(Delivery(started + position * 1e-6, next(self._seq), note, duplicate))
            heapq.heapify(self._heap)
            self._outstanding = len(schedule)
        restarter.start()
        money.start()
        drivers = [threading.Thread(target=self._drive, daemon=True) for _ in range(DRIVER_THREADS)]
        for driver in drivers:
            driver.start()
        for driver in drivers:
            driver.join()
        all_acked = time.monotonic()

        expected_ids = {f"{o.out_trade_no}:{t}" for o in orders for t in self.kinds.events[o.kind]}

        def facts_published() -> int:
            return len(expected_ids & self._tapped_ids())

        # The relay may lag the acks by minutes on a slow machine: wait while it makes progress, fail if it stalls.
        try:
            _wait_progress(facts_published, len(expected_ids), STALL_SECONDS, "every expected event on the tap")
        except SoakFailed as exc:
            raise SoakFailed(f"{exc}; {self._where_missing(expected_ids)}") from exc
        finished = time.monotonic()
        restarted.wait(60)
        elapsed = finished - started

        # The money orders: every story told, every refund settled (the sweep confirms the slow ones), every late
        # payment returned, then their events on the tap.
        money.join()
        try:
            _wait_progress(self.money.settled, len(self.money.orders), STALL_SECONDS, "the money orders to settle")
            money_ids = {i for ids in self.money.expected_events().values() for i in ids}

            def money_published() -> int:
                return len(money_ids & self._tapped_ids())

            _wait_progress(money_published, len(money_ids), STALL_SECONDS, "every money event on the tap")
        except SoakFailed as exc:
            self.money.errors.append(str(exc))  # the money figures show what is missing
        self.money_seconds = time.monotonic() - started

        # Settle: redeliveries of crashed or throttled batches, and stream retries, may still be in flight.
        _wait(lambda: self._queue_depth(self.info["notifications_queue_url"]) == 0, 120, "the queue to empty")
        time.sleep(3.0)
        stop_tap.set()
        tap.join()
        proxy = self._proxy("/disarm")
        return self._figures(orders, notes, schedule, proxy, elapsed, all_acked - started, wall_started)

    def _figures(
        self,
        orders: list[Order],
        notes: list[Note],
        schedule: list[tuple[Note, bool]],
        proxy: dict[str, Any],
        elapsed: float,
        acked_after: float,
        wall_started: float,
    ) -> Figures:
        with (self.work_dir / "events.jsonl").open("w", encoding="utf-8") as dump:
            dump.writelines(json.dumps(event) + "\n" for event in self.events)
        table = self._orders_table()
        changes = self._stream_changes()
        dlq = self._queue_depth(self.info["notifications_dlq_url"])
        queue = self._queue_depth(self.info["notifications_queue_url"])
        crashes = faults.crashes_recorded(self.fault_dir)
        baseline = self._emulator_calls_per_second()
        injected: dict[str, int] = proxy["faults"]

        applied = lost = double_applied = transitions = 0
        anomalies: list[dict[str, Any]] = []  # what explains a lost or double-applied order, kept in the work dir
        for order in orders:
            item = table.get(order.out_trade_no)
            status = item["status"]["S"] if item else None
            history = changes.get(order.out_trade_no, [])
            status_changes = [(old, new) for old, new, _, _ in history if old != new]
            transitions += len(status_changes)
            right = status == self.kinds.final[order.kind]
            if order.kind == CLOSED and item is not None:
                right = right and item.get("closed_reason", {}).get("S") == "timeout"
            applied += right
            lost += not right
            if not right:
                anomalies.append({"out_trade_no": order.out_trade_no, "kind": order.kind, "problem": "lost",
                                  "status": status, "history": history})
            # Exactly once: every write moved the order to a status it had never had, and the version counts
            # exactly those moves (a re-application would add a write, or a version, that moved nothing).
            reached = [new for _, new in status_changes]
            version = int(item["version"]["N"]) if item else 0
            if len(status_changes) != len(history) or len(set(reached)) != len(reached) or (
                version != 1 + len(status_changes)
            ):
                double_applied += 1
                anomalies.append({"out_trade_no": order.out_trade_no, "kind": order.kind, "problem": "double-applied",
                                  "status": status, "version": version, "history": history})
        with (self.work_dir / "anomalies.json").open("w", encoding="utf-8") as dump:
            json.dump(anomalies, dump, indent=1)

        by_id: Counter[str] = Counter(e["detail"]["event_id"] for e in self.events)
        expected_ids = {f"{o.out_trade_no}:{t}" for o in orders for t in self.kinds.events[o.kind]}
        money_numbers = {o.out_trade_no for o in self.money.orders}  # checked with the money figures below
        notification_ids = {i for i in by_id if i.split(":")[0] not in money_numbers}
        missing_events = len(expected_ids - notification_ids)
        unexpected_events = len(notification_ids - expected_ids)
        money_lines, money_problems = self.money.figures(self.events)
        redelivered_events = sum(count - 1 for count in by_id.values())
        calls = proxy["calls"]
        send_calls = calls.get(faults.SEND_MESSAGE, 0)
        enqueued = send_calls - injected.get("send_message_failed_attempts", 0)
        acked = self.answers[ACKED]
        non_success = {a: c for a, c in sorted(self.answers.items()) if a != ACKED}
        player = self.player

        f = Figures()
        f.add("notifications sent (planned deliveries)", self.n)
        f.add("  distinct notifications (notify_id)", len(notes))
        f.add("  duplicate deliveries", sum(dup for _, dup in schedule))
        f.add(
            f"  orders / reordered ({self.kinds.reordered_means})",
            f"{len(orders)} / {sum(o.kind == REORDERED for o in orders)}",
        )
        f.add(f"deliveries made (with {player.sender}'s retries)", self.deliveries_made)
        f.add(f"  answered other than {player.ack}", ", ".join(f"{a}: {c}" for a, c in non_success.items()) or "none")
        f.add(f"acked {player.ack}", acked)
        f.add(f"gave up after {self.deliveries_per_notification} deliveries", len(self.gave_up))
        f.add("enqueued (SendMessage that succeeded)", enqueued)
        f.add("applied (orders at their expected end state)", f"{applied} of {len(orders)}")
        f.add("state transitions (from the table's stream)", transitions)
        f.add("duplicates absorbed (enqueued - transitions)", enqueued - transitions)
        f.add(
            "faults injected: SendMessage failed",
            f"{injected.get('send_message_failed_calls', 0)} calls "
            f"({injected.get('send_message_failed_calls_throttled', 0)} throttled on all 4 SDK attempts, "
            f"{injected.get('send_message_failed_calls_queue_missing', 0)} queue missing)",
        )
        f.add(
            "faults injected: UpdateItem throttled",
            f"{injected.get('update_item_throttled_calls', 0)} calls, "
            f"{injected.get('update_item_throttled_attempts', 0)} attempts "
            f"({injected.get('update_item_episodes_past_sdk_retries', 0)} past the SDK's retries)",
        )
        f.add(
            "faults injected: PutEvents partial",
            f"{injected.get('put_events_failed_entries', 0)} failed entries in "
            f"{injected.get('put_events_partial_responses', 0)} responses "
            f"({injected.get('put_events_episodes_past_publisher_retries', 0)} past the publisher's retries)",
        )
        f.add("faults injected: consumer crashes mid-batch", crashes)
        f.add("faults injected: API restarts", f"1 (down {self.api_down_seconds:.1f} s)")
        f.add("lost", lost + missing_events)
        f.add("double-applied", double_applied)
        f.add("events: expected facts / distinct event_ids", f"{len(expected_ids)} / {len(notification_ids)}")
        f.add("events per transition fact (by event_id)", "exactly 1" if not (missing_events or unexpected_events)
              else f"{missing_events} missing, {unexpected_events} unexpected")
        f.add("  redelivered events (same event_id)", redelivered_events)
        f.add("DLQ / queue left", f"{dlq} / {queue}")
        for name, value in money_lines:
            f.add(name, value)
        f.add("throughput end to end", f"{self.n / elapsed:.1f} notifications/s ({elapsed:.1f} s; all acked at "
              f"{acked_after:.1f} s)")
        f.add("AWS calls through the proxy", f"{proxy['calls_total']} ({proxy['calls_total'] / elapsed:.0f}/s)")
        busiest = sorted(calls.items(), key=lambda item: -item[1])[:6]
        f.add("  by operation", ", ".join(f"{name.split('.')[-1]} {count}" for name, count in busiest))
        f.add("emulator alone (SendMessage loop)", f"{baseline:.0f} calls/s")
        f.add("money orders settled, events on the tap at", f"{self.money_seconds:.1f} s")
        f.add("wall time (stack start to figures)", f"{time.monotonic() - wall_started:.1f} s")

        problems = []
        if acked != self.n or self.gave_up:
            problems.append(f"acked {acked} of {self.n}, {len(self.gave_up)} given up")
        if lost or missing_events:
            problems.append(f"lost {lost} orders, {missing_events} events")
        if double_applied:
            problems.append(f"double-applied {double_applied}")
        if unexpected_events:
            problems.append(f"{unexpected_events} unexpected event ids")
        if dlq or queue:
            problems.append(f"DLQ {dlq}, queue {queue}")
        for kind in ("send_message_failed_calls", "update_item_throttled_calls", "put_events_failed_entries"):
            if not injected.get(kind):
                problems.append(f"no {kind} injected")
        if not crashes:
            problems.append("no consumer crash injected")
        if not self.api_down_seconds:
            problems.append("the API was not restarted")
        problems.extend(money_problems)
        self.problems = problems
        return f


def _without_aws() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}


def _wait(probe: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise SoakFailed(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _wait_progress(probe: Callable[[], int], goal: int, stall: float, what: str) -> None:
    seen, since = probe(), time.monotonic()
    while seen < goal:
        time.sleep(0.5)
        now = probe()
        if now > seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > stall:
            raise SoakFailed(f"no progress for {stall:.0f} s waiting for {what} ({seen} of {goal})")


def _run_threads(target: Callable[[], None], count: int) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, daemon=True) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def run_soak(
    n: int, work_dir: Path, *, player: Player | None = None, out: Callable[[str], None] = print
) -> Figures:
    """Run the soak, print its figures, and raise ``SoakFailed`` if any figure that must hold does not."""
    soak = Soak(n, work_dir, player=player, out=out)
    figures = soak.run()
    out(f"soak ({soak.player.protocol}): {n} notifications\n{figures.render()}")
    if soak.problems:
        raise SoakFailed("; ".join(soak.problems))
    return figures
