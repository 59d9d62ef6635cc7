"""The local stack as a user runs it: started like ``make run`` (a subprocess, free ports, its own state dir),
driven over HTTP; AWS is touched only where an operator would touch it (the DLQ, a broken record).

Each call goes in as the caller the API admits for it: the merchant's backend (SigV4 with the stack's
``merchant_credentials``) creates orders, reads them in full and refunds them; a buyer (an ID token from the
stack's identity provider) reports the SDK's result for an order made out to them; Alipay and the browser use
the public routes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from devstack.stack import PROJECT_DIR, StackProcess
from ops.client import ApiAnswer, MerchantClient

T = TypeVar("T")

# Alipay's retry intervals (4m, 10m, 10m, 1h, ...) times this: 0.24 s, 0.6 s, 0.6 s, 3.6 s, ...
TIME_SCALE = "0.001"
WAIT_SECONDS = 30.0
# After the events a test expects have arrived, how long it keeps watching for any that should not come.
SETTLE_SECONDS = 2.0
# The buyer a test's order is made out to when it acts as that buyer (a ``sub`` of the stack's user pool).
BUYER = "e2e-buyer"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll ``probe`` until it returns something other than None (or False); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class EventTap:
    """The events tap queue, drained into per-order lists (every event on the bus lands there)."""

    def __init__(self, sqs: Any, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._by_order: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def drain(self) -> None:
        """Move everything waiting on the queue into the lists."""
        while True:
            messages = self._sqs.receive_message(QueueUrl=self._queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not messages:
                return
            for message in messages:
                event = json.loads(message["Body"])
                self._by_order[event["detail"]["out_trade_no"]].append(event)
                self._sqs.delete_message(QueueUrl=self._queue_url, ReceiptHandle=message["ReceiptHandle"])

    def events(self, out_trade_no: str) -> list[dict[str, Any]]:
        """The events seen so far for one order, in arrival order."""
        self.drain()
        return list(self._by_order[out_trade_no])

    def settled(self, out_trade_no: str, expected: list[str]) -> list[dict[str, Any]]:
        """Wait until the ``expected`` detail-types have all arrived, then a little longer; every event seen."""

        def arrived() -> bool:
            types = [e["detail-type"] for e in self.events(out_trade_no)]
            return all(t in types for t in expected)

        wait_for(f"events {expected} for {out_trade_no}", arrived)
        time.sleep(SETTLE_SECONDS)  # duplicates, if the pipeline made any, would come now
        return self.events(out_trade_no)


class LocalStack:
    """A running stack and what a test drives it with."""

    def __init__(self, process: StackProcess) -> None:
        import boto3

        self.process = process
        self.info = process.stack
        self.state_dir = process.state_dir
        self.http = requests.Session()
        session = boto3.session.Session(
            aws_access_key_id="local", aws_secret_access_key="local", region_name=self.info["region"]
        )
        self.sqs = session.client("sqs", endpoint_url=self.info["aws_endpoint_url"])
        self.dynamodb = session.client("dynamodb", endpoint_url=self.info["aws_endpoint_url"])
        self.tap = EventTap(self.sqs, self.info["events_tap_queue_url"])
        self.merchant = MerchantClient.from_stack(self.info)
        self._tokens: dict[str, str] = {}

    @property
    def api(self) -> str:
        return str(self.info["api_url"])

    @property
    def sandbox(self) -> str:
        return str(self.info["sandbox_url"])

    @property
    def identity(self) -> str:
        return str(self.info["identity_url"])

    def buyer_token(self, sub: str = BUYER) -> str:
        """An ID token for ``sub`` from the stack's identity provider (the user pool's stand-in), kept for reuse."""
        if sub not in self._tokens:
            response = self.http.post(f"{self.identity}/token", json={"sub": sub})
            assert response.status_code == 200, response.text
            self._tokens[sub] = str(response.json()["id_token"])
        return self._tokens[sub]

    def buyer_headers(self, sub: str = BUYER) -> dict[str, str]:
        """What a signed-in buyer's app sends: the ID token in ``Authorization``."""
        return {"Authorization": f"Bearer {self.buyer_token(sub)}"}

    def create_order(
        self, total_amount: str = "12.34", currency: str = "USD", *, buyer: str | None = None, **fields: str
    ) -> dict[str, Any]:
        """``POST /merchant/orders`` as the merchant's backend (signed, with an ``Idempotency-Key``); ``buyer``
        makes it that buyer's order; ``fields`` are further body fields (``channel``, ``return_url``, ...)."""
        body: dict[str, str] = {"subject": "E2E order", "total_amount": total_amount, "currency": currency, **fields}
        if buyer is not None:
            body["buyer"] = buyer
        answer = self.merchant.post("/merchant/orders", body, {"Idempotency-Key": uuid.uuid4().hex})
        assert answer.status == 201, answer.body
        return dict(answer.json())

    def order(self, out_trade_no: str) -> dict[str, Any]:
        """The full order, as the merchant reads it (``GET /merchant/orders/{out_trade_no}``, signed)."""
        answer = self.merchant.get(f"/merchant/orders/{out_trade_no}")
        assert answer.status == 200, answer.body
        return dict(answer.json())

    def refund(self, out_trade_no: str, body: dict[str, str]) -> ApiAnswer:
        """``POST /merchant/orders/{out_trade_no}/refunds`` as the merchant; the answer whatever its status."""
        return self.merchant.post(f"/merchant/orders/{out_trade_no}/refunds", body)

    def client_result(self, out_trade_no: str, result: dict[str, Any], sub: str = BUYER) -> requests.Response:
        """``POST /orders/{out_trade_no}/client-result`` as the buyer ``sub``: what their app reports after payOrder."""
        return self.http.post(
            f"{self.api}/orders/{out_trade_no}/client-result", json=result, headers=self.buyer_headers(sub)
        )

    def wait_for_status(self, out_trade_no: str, status: str) -> dict[str, Any]:
        return wait_for(f"{out_trade_no} to be {status}", lambda: self._order_in(out_trade_no, status))

    def _order_in(self, out_trade_no: str, status: str) -> dict[str, Any] | None:
        order = self.order(out_trade_no)
        return order if order["status"] == status else None

    def pay(self, order_info: str, outcome: str = "success", **controls: Any) -> dict[str, Any]:
        response = self.http.post(
            f"{self.sandbox}/sandbox/pay", json={"order_info": order_info, "outcome": outcome, **controls}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def notify(self, out_trade_no: str, trade_status: str, **controls: Any) -> dict[str, Any]:
        response = self.http.post(
            f"{self.sandbox}/sandbox/trades/{out_trade_no}/notify", json={"trade_status": trade_status, **controls}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    def trade(self, out_trade_no: str) -> dict[str, Any]:
        response = self.http.get(f"{self.sandbox}/sandbox/trades/{out_trade_no}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_for_acknowledged(self, out_trade_no: str, deliveries: int = 1) -> list[dict[str, Any]]:
        """Wait until ``deliveries`` deliveries were answered ``success``; every attempt so far."""

        def acknowledged() -> list[dict[str, Any]] | None:
            attempts: list[dict[str, Any]] = self.trade(out_trade_no)["attempts"]
            return attempts if sum(a["acknowledged"] for a in attempts) >= deliveries else None

        return wait_for(f"{deliveries} acknowledged deliveries for {out_trade_no}", acknowledged)

    def api_is_up(self) -> bool:
        try:
            return self.http.get(f"{self.api}/health", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def queue_depth(self, queue_url: str) -> int:
        """Messages in a queue, visible or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``python -m ops ... --stack-file <this stack>``, as an operator runs it."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return subprocess.run(
            [sys.executable, "-m", "ops", *args, "--stack-file", str(self.state_dir / "stack.json")],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


def start_stack(state_dir: Path, protocol: str) -> Iterator[LocalStack]:
    """Start a stack for a module, stop it afterwards; its output is printed if a test failed."""
    process = StackProcess(state_dir, protocol=protocol, time_scale=TIME_SCALE)
    process.start()
    try:
        yield LocalStack(process)
    finally:
        status = process.stop()
        assert status == 0, f"the stack did not stop cleanly ({status}):\n{process.output()[-3000:]}"


@pytest.fixture(scope="module")
def openapi_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from start_stack(tmp_path_factory.mktemp("openapi-stack"), "openapi")


@pytest.fixture(scope="module")
def mapi_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    yield from start_stack(tmp_path_factory.mktemp("mapi-stack"), "mapi")


@pytest.fixture(scope="module")
def antom_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack with ALIPAY_PROTOCOL=antom: the sandbox plays Antom (docs/local-stack.md, "Antom")."""
    yield from start_stack(tmp_path_factory.mktemp("antom-stack"), "antom")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """On a failure, attach the end of the stack's output: what the processes logged is the best clue."""
    report: Any = yield
    if report.failed and call.when == "call":
        for name in ("openapi_stack", "mapi_stack", "antom_stack", "stack"):
            stack = getattr(item, "funcargs", {}).get(name)
            if isinstance(stack, LocalStack):
                lines = stack.process.output().splitlines()[-80:]
                report.sections.append(("local stack output (last 80 lines)", "\n".join(lines)))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test through the legacy protocol's stack is the second variant: `make test-long`, not `make test`. A test
    through an Antom stack is marked antom_stack (`make test-antom` runs them alone)."""
    here = Path(__file__).parent
    for item in items:
        if here not in item.path.parents:
            continue  # pytest hands this hook every item of the session
        callspec = getattr(item, "callspec", None)
        protocol = callspec.params.get("protocol") if callspec is not None else None
        if "mapi_stack" in getattr(item, "fixturenames", ()) or protocol == "mapi":
            item.add_marker(pytest.mark.legacy_stack)
        if "antom_stack" in getattr(item, "fixturenames", ()) or protocol == "antom":
            item.add_marker(pytest.mark.antom_stack)
