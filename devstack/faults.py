"""Fault injection for the soak (``tests/soak``): a fault-injecting proxy in front of the AWS emulator, and a
consumer that crashes mid-batch. Harness only: nothing here runs unless a fault plan is given.

The proxy sits between the stack's functions (API, SQS and stream workers) and the emulator: the supervisor
points their ``AWS_ENDPOINT_URL`` at it when ``LOCAL_FAULT_PROXY_URL`` is set (``function_overrides``). It
forwards every call and, once armed, fails a share of three of them with the bodies and status codes AWS uses:

- ``SQS SendMessage`` (the webhook's enqueue): ``ThrottlingException`` (400, retried by botocore) or
  ``QueueDoesNotExist`` (400, not retried);
- ``DynamoDB UpdateItem`` on an order (the consumer's one conditional write): ``ProvisionedThroughputExceeded
  Exception`` (400);
- ``EventBridge PutEvents`` (the relay): a 200 with ``FailedEntryCount > 0``, the chosen entries marked
  ``InternalFailure`` and the others really put on the bus.

botocore retries throttles and 5xx itself (standard mode, 3 attempts), so a fault that hit one attempt only
would never reach the product's code. A chosen call therefore fails as an *episode*: every attempt of the same
request (same body; for PutEvents the same ``event_id``) fails a number of times, then passes. Every SendMessage
episode reaches the webhook, which must answer 503 (a throttle on all 4 SDK attempts, or a missing queue, which
botocore does not retry). UpdateItem episodes alternate between one throttle (absorbed by botocore's retry) and a
throttle on all 4 attempts (the consumer reports the record in ``batchItemFailures``). PutEvents episodes
alternate between one failure (absorbed by the adapter's own retry of failed entries) and three (the adapter gives
up, the stream record is reported and the mapping retries it).

The crash (``consumer_handler``) lives in the SQS worker processes (each execution environment its own gate): the
gate runs over the records at positions k >= 1 of the batches delivered for the first time; when it picks record k
of a batch of n, the first k records run through the real handler, then the invocation raises, as a function that
died at record k would. Lambda's mapping then fails the whole batch: nothing is deleted, every message comes back
after the visibility timeout, and the k already applied must be absorbed. (Killing the worker process instead
would stop the whole stack: the supervisor treats a child that exits as fatal.)

The crash is transient, an environment that died once: a batch holding a redelivered message never crashes, so
no message is crashed twice. Were redelivered batches candidates too, the ten messages of a crashed batch, which
come back together, would crash again at nine chances in ten at a rate of 0.1 and reach the DLQ after five
receives (two soak runs out of two did); a message that fails every time is the poison message of scenario 18,
tested on its own (``tests/e2e/test_openapi_payments.py``: the DLQ, then ``redrive``).

Rates are exact, not Bernoulli: each gate fires once in every window of ``1 / rate`` candidates, at a random
place in the window, so a short run still sees every kind of fault.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PROXY_URL_ENV = "LOCAL_FAULT_PROXY_URL"
PLAN_ENV = "LOCAL_FAULT_PLAN"
CONTROL_PATH = "/__faults__"
READY_TEXT = "fault proxy listening on"
CRASH_LOG = "consumer-crashes.jsonl"

SEND_MESSAGE = "AmazonSQS.SendMessage"
UPDATE_ITEM = "DynamoDB_20120810.UpdateItem"
PUT_EVENTS = "AWSEvents.PutEvents"
ORDER_KEY_PREFIX = "order#"  # chalicelib.adapters.dynamodb.order_key: only the consumer updates orders
# chalicelib.bootstrap.boto_config: standard retries with max_attempts=3, which botocore reads as 3 *retries*
# (``total_max_attempts`` would count the first call): 4 attempts in all.
SDK_ATTEMPTS = 4
PUBLISHER_ATTEMPTS = 3  # chalicelib.adapters.eventbridge.EventBridgePublisher's default max_attempts
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


def _seeded(seed: float) -> random.Random:
    """A reproducible generator: it places faults, it guards no secret."""
    return random.Random(seed)  # noqa: S311


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """What to inject, how often; ``log_dir`` is where injectors in other processes record what they did."""

    log_dir: str
    seed: int = 1
    send_message_rate: float = 0.05
    update_item_throttle_rate: float = 0.05
    put_events_entry_rate: float = 0.02
    consumer_crash_rate: float = 0.01

    def write(self, path: Path) -> None:
        """Save the plan as JSON (the processes read it from ``LOCAL_FAULT_PLAN``)."""
        path.write_text(json.dumps(asdict(self)), encoding="utf-8")

    @classmethod
    def read(cls, path: str | Path) -> FaultPlan:
        """The plan saved by ``write``."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(**data)


class RateGate:
    """Fires for exactly one candidate in each window of ``round(1 / rate)``, at a seeded random place."""

    def __init__(self, rate: float, rng: random.Random) -> None:
        self._window = max(1, round(1 / rate)) if rate > 0 else 0
        self._rng = rng
        self._seen = 0
        self._target = self._next_target(0)
        self._lock = threading.Lock()

    def _next_target(self, window_start: int) -> int:
        return window_start + self._rng.randrange(self._window) if self._window else -1

    def fire(self) -> bool:
        """Whether this candidate is the one the window fails."""
        if not self._window:
            return False
        with self._lock:
            hit = self._seen == self._target
            self._seen += 1
            if self._seen % self._window == 0:
                self._target = self._next_target(self._seen)
            return hit


def function_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """What the supervisor adds to the functions' environment when the harness runs the stack with faults."""
    overrides: dict[str, str] = {}
    proxy = environ.get(PROXY_URL_ENV)
    if proxy:
        overrides["AWS_ENDPOINT_URL"] = proxy
    plan = environ.get(PLAN_ENV)
    if plan:
        overrides[PLAN_ENV] = plan
    return overrides


# --- the consumer crash (in the SQS worker process) -------------------------------------------------------------


class ConsumerCrashed(Exception):
    """The injected crash: the function died at record k of its batch."""


Handler = Callable[[dict[str, Any], Any], Any]


def consumer_handler(handler: Handler, environ: Mapping[str, str] | None = None) -> Handler:
    """``handler`` itself, or, when a fault plan is given, ``handler`` crashing mid-batch at the plan's rate."""
    env = os.environ if environ is None else environ
    plan_file = env.get(PLAN_ENV)
    if not plan_file:
        return handler
    plan = FaultPlan.read(plan_file)
    # The concurrent environments are forked copies of one process: the pid keeps their gates from firing in step.
    gate = RateGate(plan.consumer_crash_rate, _seeded(plan.seed * 7919 + 1 + os.getpid()))
    log_path = Path(plan.log_dir) / CRASH_LOG

    def crashing(event: dict[str, Any], context: Any) -> Any:
        records = event.get("Records") or []
        # Candidates are the records after the first (a crash at record 0 would not be mid-batch), in batches
        # delivered for the first time only (the crash is transient: no message is crashed twice).
        first_delivery = all(_receive_count(record) == 1 for record in records)
        k = next((k for k in range(1, len(records)) if gate.fire()), None) if first_delivery else None
        if k is None:
            return handler(event, context)
        handler({**event, "Records": records[:k]}, context)  # records 0..k-1 really run (and are applied)
        with log_path.open("a", encoding="utf-8") as log_file:
            log_file.write(json.dumps({"at_record": k, "batch": len(records)}) + "\n")
        print(f"fault injected: consumer crashed at record {k} of {len(records)}", flush=True)
        raise ConsumerCrashed(f"injected crash at record {k} of {len(records)}")

    return crashing


def _receive_count(record: Mapping[str, Any]) -> int:
    """The record's ``ApproximateReceiveCount`` (Lambda's SQS event carries it among the record's attributes)."""
    return int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))


def crashes_recorded(log_dir: Path) -> int:
    """How many crashes the consumer's injector recorded."""
    try:
        return sum(1 for line in (log_dir / CRASH_LOG).read_text(encoding="utf-8").splitlines() if line.strip())
    except FileNotFoundError:
        return 0


# --- the proxy ----------------------------------------------------------------------------------------------------


class Episodes:
    """Which logical calls are failing, and how many more attempts of each must fail."""

    def __init__(self, gate: RateGate) -> None:
        self._gate = gate
        self._remaining: dict[str, int] = {}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def fails(self, key: str, length: Callable[[], int]) -> tuple[bool, bool]:
        """``(fail this attempt, a new episode started)``; a key is a candidate only the first time it is seen."""
        with self._lock:
            remaining = self._remaining.get(key, 0)
            if remaining:
                self._remaining[key] = remaining - 1
                return True, False
            if key in self._seen:
                return False, False
            self._seen.add(key)
        if not self._gate.fire():
            return False, False
        with self._lock:
            self._remaining[key] = length() - 1
        return True, True


@dataclass
class Injector:
    """The decisions and the counts of the proxy."""

    plan: FaultPlan

    def __post_init__(self) -> None:
        rng = _seeded(self.plan.seed)
        self.armed = threading.Event()
        self.counts: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.first_call: float | None = None
        self.last_call: float | None = None
        self._lock = threading.Lock()
        self._send = Episodes(RateGate(self.plan.send_message_rate, _seeded(rng.random())))
        self._update = Episodes(RateGate(self.plan.update_item_throttle_rate, _seeded(rng.random())))
        self._put = Episodes(RateGate(self.plan.put_events_entry_rate, _seeded(rng.random())))
        self._put_episodes = 0
        self._update_episodes = 0

    def count(self, name: str, by: int = 1) -> None:
        with self._lock:
            self.counts[name] += by

    def record_call(self, operation: str) -> None:
        now = time.monotonic()
        with self._lock:
            self.calls[operation] += 1
            self.first_call = self.first_call if self.first_call is not None else now
            self.last_call = now

    def send_message_fault(self, body: bytes) -> tuple[int, dict[str, str]] | None:
        """The error for this SendMessage attempt, or None to forward it."""
        key = hashlib.sha256(body).hexdigest()
        # Alternate by key: a throttle that outlasts botocore's retries, or a missing queue (never retried).
        throttle = int(key[:2], 16) % 2 == 0
        fail, new = self._send.fails(key, lambda: SDK_ATTEMPTS if throttle else 1)
        if not fail:
            return None
        kind = "throttled" if throttle else "queue_missing"
        self.count("send_message_failed_attempts")
        if new:
            self.count("send_message_failed_calls")
            self.count(f"send_message_failed_calls_{kind}")
        if throttle:
            return 400, {"__type": "com.amazon.coral.availability#ThrottlingException", "message": "Rate exceeded"}
        return 400, {
            "__type": "com.amazonaws.sqs#QueueDoesNotExist",
            "message": "The specified queue does not exist.",
        }

    def update_item_fault(self, body: bytes) -> tuple[int, dict[str, str]] | None:
        """The throttle for this UpdateItem attempt on an order, or None to forward it."""
        try:
            key = json.loads(body)["Key"]["pk"]["S"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(key, str) or not key.startswith(ORDER_KEY_PREFIX):
            return None
        fail, new = self._update.fails(hashlib.sha256(body).hexdigest(), self._update_episode_length)
        if not fail:
            return None
        self.count("update_item_throttled_attempts")
        if new:
            self.count("update_item_throttled_calls")
        return 400, {
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded. Consider "
            "increasing your provisioning level with the UpdateTable API.",
        }

    def put_events_failures(self, entries: list[Mapping[str, Any]]) -> set[int]:
        """The indexes of the entries this PutEvents attempt fails."""
        failed: set[int] = set()
        for index, entry in enumerate(entries):
            try:
                event_id = str(json.loads(entry.get("Detail", "{}"))["event_id"])
            except (ValueError, KeyError, TypeError):
                continue
            fail, new = self._put.fails(event_id, self._put_episode_length)
            if fail:
                failed.add(index)
                if new:
                    self.count("put_events_failed_entries_episodes")
        if failed:
            self.count("put_events_partial_responses")
            self.count("put_events_failed_entries", len(failed))
        return failed

    def _update_episode_length(self) -> int:
        with self._lock:
            self._update_episodes += 1
            long_episode = self._update_episodes % 2 == 0
        if long_episode:
            self.count("update_item_episodes_past_sdk_retries")
            return SDK_ATTEMPTS
        return 1

    def _put_episode_length(self) -> int:
        with self._lock:
            self._put_episodes += 1
            long_episode = self._put_episodes % 2 == 0
        if long_episode:
            self.count("put_events_episodes_past_publisher_retries")
            return PUBLISHER_ATTEMPTS
        return 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            span = (self.last_call - self.first_call) if self.first_call and self.last_call else 0.0
            return {
                "armed": self.armed.is_set(),
                "faults": dict(self.counts),
                "calls": dict(self.calls),
                "calls_total": sum(self.calls.values()),
                "calls_span_seconds": span,
            }


class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    injector: Injector
    stack_file: Path
    _upstream: tuple[str, int] | None = None

    @property
    def upstream(self) -> tuple[str, int]:
        """The emulator's address, from ``stack.json``: the proxy starts before the stack has picked its port,
        and the supervisor writes the file before it starts the functions, the proxy's only clients."""
        if self._upstream is None:
            url = urlsplit(json.loads(self.stack_file.read_text(encoding="utf-8"))["aws_endpoint_url"])
            self._upstream = (url.hostname or "127.0.0.1", url.port or 80)
        return self._upstream


class _ProxyHandler(BaseHTTPRequestHandler):
    server: _ProxyServer
    protocol_version = "HTTP/1.1"
    _upstream: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one line per AWS call would be noise; faults are counted instead

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    do_PUT = do_DELETE = do_HEAD = do_POST

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith(CONTROL_PATH):
            self._control(self.path[len(CONTROL_PATH) :])
            return
        injector = self.server.injector
        target = self.headers.get("X-Amz-Target", "")
        injector.record_call(target or f"{self.command} {urlsplit(self.path).path}")
        if injector.armed.is_set():
            fault = None
            if target == SEND_MESSAGE:
                fault = injector.send_message_fault(body)
            elif target == UPDATE_ITEM:
                fault = injector.update_item_fault(body)
            elif target == PUT_EVENTS:
                self._put_events(body)
                return
            if fault is not None:
                extra = []
                if fault[1]["__type"].endswith("#QueueDoesNotExist"):
                    # SQS's JSON protocol also names the query-protocol code, which botocore reports.
                    extra = [("x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender")]
                self._reply(fault[0], json.dumps(fault[1]).encode(), "application/x-amz-json-1.0", extra)
                return
        status, headers, reply = self._forward(body)
        self._reply(status, reply, headers=headers)

    def _put_events(self, body: bytes) -> None:
        request = json.loads(body)
        entries: list[Mapping[str, Any]] = list(request.get("Entries") or [])
        failed = self.server.injector.put_events_failures(entries)
        if not failed:
            status, headers, reply = self._forward(body)
            self._reply(status, reply, headers=headers)
            return
        passed = [entry for index, entry in enumerate(entries) if index not in failed]
        upstream_entries: list[Any] = []
        upstream_failed = 0
        if passed:
            status, headers, reply = self._forward(json.dumps({**request, "Entries": passed}).encode())
            if status != 200:
                self._reply(status, reply, headers=headers)
                return
            answer = json.loads(reply)
            upstream_entries = list(answer.get("Entries") or [])
            upstream_failed = int(answer.get("FailedEntryCount") or 0)
        # Entries come back in request order: the chosen ones marked failed, the others as the bus answered.
        merged: list[Any] = []
        forwarded = iter(upstream_entries)
        for index in range(len(entries)):
            if index in failed:
                merged.append({"ErrorCode": "InternalFailure", "ErrorMessage": "Internal Service Failure"})
            else:
                merged.append(next(forwarded, {}))
        result = {"FailedEntryCount": len(failed) + upstream_failed, "Entries": merged}
        self._reply(200, json.dumps(result).encode(), "application/x-amz-json-1.1")

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes]:
        headers = {name: value for name, value in self.headers.items() if name.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        for attempt in range(2):
            if self._upstream is None:
                host, port = self.server.upstream
                self._upstream = http.client.HTTPConnection(host, port, timeout=30)
            try:
                self._upstream.request(self.command, self.path, body=body, headers=headers)
                response = self._upstream.getresponse()
                data = response.read()
                return response.status, list(response.getheaders()), data
            except (OSError, http.client.HTTPException):
                # A kept-alive connection the emulator closed: reconnect once, then let the caller see the failure.
                self._upstream.close()
                self._upstream = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _reply(
        self, status: int, body: bytes, content_type: str | None = None, headers: list[tuple[str, str]] | None = None
    ) -> None:
        self.send_response(status)
        for name, value in headers or []:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "date" and name.lower() != "server":
                self.send_header(name, value)
        if content_type:
            self.send_header("Content-Type", content_type)
            self.send_header("x-amzn-RequestId", os.urandom(8).hex())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _control(self, action: str) -> None:
        injector = self.server.injector
        if action == "/arm" and self.command == "POST":
            injector.armed.set()
        elif action == "/disarm" and self.command == "POST":
            injector.armed.clear()
        elif action not in ("", "/"):
            self._reply(404, b'{"error": "unknown control"}', "application/json")
            return
        self._reply(200, json.dumps(injector.stats()).encode(), "application/json")


def serve(stack_file: Path, host: str, port: int, plan: FaultPlan) -> None:
    """Serve the proxy until SIGTERM or SIGINT; the emulator is the one named in ``stack_file``."""
    import signal

    server = _ProxyServer((host, port), _ProxyHandler)
    server.injector = Injector(plan)
    server.stack_file = stack_file

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"{READY_TEXT} http://{host}:{server.server_port} (the emulator of {stack_file})", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> int:
    """``python -m devstack.faults --stack-file .local/stack.json --port P --plan FILE``."""
    parser = argparse.ArgumentParser(prog="python -m devstack.faults", description=__doc__.split("\n")[0])
    parser.add_argument("--stack-file", type=Path, required=True, help="stack.json: where the emulator is")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    args = parser.parse_args(argv)
    serve(args.stack_file, args.host, args.port, FaultPlan.read(args.plan))
    return 0


if __name__ == "__main__":
    sys.exit(main())
