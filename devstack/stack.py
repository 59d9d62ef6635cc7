"""``make run``: the whole product on one machine, each part a child process of one supervisor.

The supervisor starts the AWS emulator, creates the resources, writes the state directory (``stack.json`` and
the key files), then starts the API, the two event-source workers and the Alipay sandbox, each in its own
process group and prefixed in the output. Ctrl-C or SIGTERM stops them all (SIGKILL after a grace period);
on Linux each child is also told by the kernel to stop if the supervisor itself dies. SIGUSR1 takes the API
down and, the next time, brings it back: Alipay's retries then deliver what failed meanwhile.

Settings come from the environment: ``AWS_EMULATOR_PORT`` (5000), ``API_PORT`` (8000), ``SANDBOX_PORT``
(8001) -- 0 picks a free port --, ``ALIPAY_PROTOCOL`` (openapi|mapi|antom), ``SANDBOX_TIME_SCALE``,
``LOCAL_STATE_DIR`` (``.local``), ``API_CONCURRENCY`` (4: the API's concurrent execution environments) and
``LOCAL_SQS_VISIBILITY_TIMEOUT`` (3 seconds).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from chalicelib.topology import ANTOM_NOTIFY_PATH
from devstack import certs, faults, resources
from devstack.lambda_runtime import REGION, stop_with_parent
from devstack.resources import PROTOCOLS, StackFile

PROJECT_DIR = Path(__file__).resolve().parents[1]  # where app.py and .chalice/ are
HOST = "127.0.0.1"
STAGE = "local"
READY_LINE = "local stack ready"
PID_FILE = "run.pid"
LOG_DIR = "logs"
START_TIMEOUT_SECONDS = 30.0
STOP_GRACE_SECONDS = 5.0
# Lambda runs concurrent requests in separate execution environments; locally, separate API processes.
DEFAULT_API_CONCURRENCY = 4
MAX_API_CONCURRENCY = 32
MAX_VISIBILITY_TIMEOUT = 43200  # SQS's own maximum (12 hours)
PROCESS_ESSENTIALS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"})


class StackError(Exception):
    """The stack cannot start; the message says what to do about it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What ``make run`` is asked for, from the environment."""

    state_dir: Path
    emulator_port: int = 5000
    api_port: int = 8000
    sandbox_port: int = 8001
    identity_port: int = 8002
    protocol: str = "openapi"
    key_mode: str = "key"  # ALIPAY_KEY_MODE: "cert" runs Open Platform's certificate mode (devstack/certs.py)
    time_scale: str | None = None
    api_concurrency: int = DEFAULT_API_CONCURRENCY
    sqs_visibility_timeout: int = resources.VISIBILITY_TIMEOUT_SECONDS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings; ``StackError`` names the variable that is wrong."""
        env = os.environ if environ is None else environ
        protocol = env.get("ALIPAY_PROTOCOL") or "openapi"
        if protocol not in PROTOCOLS:
            raise StackError(f"ALIPAY_PROTOCOL must be openapi, mapi or antom, not {protocol!r}")
        key_mode = env.get("ALIPAY_KEY_MODE") or "key"
        if key_mode not in ("key", "cert"):
            raise StackError(f"ALIPAY_KEY_MODE must be key or cert, not {key_mode!r}")
        if key_mode == "cert" and protocol != "openapi":
            raise StackError("ALIPAY_KEY_MODE=cert is Open Platform's certificate mode: ALIPAY_PROTOCOL=openapi")
        time_scale = env.get("SANDBOX_TIME_SCALE") or None
        if time_scale is not None:
            try:
                if not float(time_scale) > 0:
                    raise ValueError
            except ValueError:
                raise StackError(f"SANDBOX_TIME_SCALE must be a positive number, not {time_scale!r}") from None
        concurrency = env.get("API_CONCURRENCY") or str(DEFAULT_API_CONCURRENCY)
        if not concurrency.isdigit() or not 1 <= int(concurrency) <= MAX_API_CONCURRENCY:
            raise StackError(f"API_CONCURRENCY must be a number from 1 to {MAX_API_CONCURRENCY}, not {concurrency!r}")
        visibility = env.get("LOCAL_SQS_VISIBILITY_TIMEOUT") or str(resources.VISIBILITY_TIMEOUT_SECONDS)
        if not visibility.isdigit() or not 1 <= int(visibility) <= MAX_VISIBILITY_TIMEOUT:
            raise StackError(
                f"LOCAL_SQS_VISIBILITY_TIMEOUT must be seconds from 1 to {MAX_VISIBILITY_TIMEOUT}, not {visibility!r}"
            )
        return cls(
            state_dir=Path(env.get("LOCAL_STATE_DIR") or ".local").resolve(),
            emulator_port=_port(env, "AWS_EMULATOR_PORT", 5000),
            api_port=_port(env, "API_PORT", 8000),
            sandbox_port=_port(env, "SANDBOX_PORT", 8001),
            identity_port=_port(env, "IDENTITY_PORT", 8002),
            protocol=protocol,
            key_mode=key_mode,
            time_scale=time_scale,
            api_concurrency=int(concurrency),
            sqs_visibility_timeout=int(visibility),
        )


def _port(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name) or str(default)
    if not value.isdigit() or int(value) > 65535:
        raise StackError(f"{name} must be a port number (0 for any free port), not {value!r}")
    return int(value)


def reconcile_min_age(time_scale: str | None) -> int:
    """The reconciler's minimum order age on a clock ``time_scale`` times as fast as real time (whole seconds).

    At least 3 s: on a fast clock a busy machine can take over a second to create, pay and deliver, and the reconciler
    must not apply what the webhook is about to (as deployed, its wait is longer than Alipay's first retry).
    """
    from chalicelib.config import DEFAULT_RECONCILE_MIN_AGE_SECONDS

    return max(3, round(DEFAULT_RECONCILE_MIN_AGE_SECONDS * float(time_scale or 1)))


def reconcile_interval(time_scale: str | None) -> float:
    """How often the reconciler runs, on the same clock (at least every 0.2 s)."""
    from chalicelib.config import DEFAULT_RECONCILE_RATE_MINUTES

    return max(0.2, DEFAULT_RECONCILE_RATE_MINUTES * 60 * float(time_scale or 1))


def free_port() -> int:
    """A port nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def check_port_free(port: int, variable: str) -> None:
    """``StackError`` if something already listens on ``port`` (the servers reuse TIME_WAIT addresses too)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            raise StackError(
                f"port {port} ({variable}) is already in use, perhaps by another local stack: stop it, or set "
                f"{variable} to another port (0 picks a free one)"
            ) from None


# --- the functions' environment ----------------------------------------------------------------------------


def isolate_from_aws_accounts(environ: MutableMapping[str, str]) -> None:
    """Drop the developer's AWS settings (profile, credentials, endpoints, config files) from ``environ``."""
    # Everything the stack starts talks to the emulator only; a profile or credential left in the environment
    # could otherwise be picked up by some client and sent to a real account.
    for name in [name for name in environ if name.startswith("AWS_")]:
        del environ[name]
    environ.update(
        AWS_CONFIG_FILE=os.devnull,
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_EC2_METADATA_DISABLED="true",
        **resources.EMULATOR_CREDENTIALS,
    )


def chalice_environment(stage: str = STAGE) -> dict[str, str]:
    """The environment ``.chalice/config.json`` gives the functions of ``stage`` (top level, then the stage)."""
    from chalice.config import Config

    config_file = PROJECT_DIR / ".chalice" / "config.json"
    data = json.loads(config_file.read_text(encoding="utf-8"))
    return dict(Config(chalice_stage=stage, config_from_disk=data).environment_variables)


def function_environment(stack: StackFile, stream_arn: str, state_dir: Path, base: Mapping[str, str]) -> dict[str, str]:
    """What the functions run with, as in Lambda: ``config.json`` for the stage, then the stack's outputs."""
    # Nothing else of the developer's shell, as none of it reaches a deployed function: only what a process needs,
    # and POWERTOOLS_* so that logging can be turned up (POWERTOOLS_LOG_LEVEL=DEBUG make run).
    env = {name: value for name, value in base.items() if name in PROCESS_ESSENTIALS or name.startswith("POWERTOOLS_")}
    isolate_from_aws_accounts(env)
    env.update(chalice_environment())
    env.update(
        {
            "ALIPAY_PROTOCOL": stack.protocol,
            "ALIPAY_PUBLIC_KEY_FILES": str(state_dir / resources.ALIPAY_PUBLIC_KEY_FILE),
            "ALIPAY_GATEWAY_URL": f"{stack.sandbox_url}/gateway.do",
            "ALIPAY_SELLER_ID": stack.seller_id,
            "NOTIFY_URL": f"{stack.api_url}/alipay/notify",
            "COGNITO_CLIENT_IDS": stack.cognito_client_id,
            "CURRENCIES": resources.CURRENCIES,
            "ORDERS_TABLE": stack.orders_table,
            "ORDERS_STREAM_ARN": stream_arn,
            "NOTIFICATIONS_QUEUE_URL": stack.notifications_queue_url,
            "NOTIFICATIONS_DLQ_URL": stack.notifications_dlq_url,
            "EVENT_BUS_NAME": stack.event_bus_name,
            "AWS_ENDPOINT_URL": stack.aws_endpoint_url,
            "AWS_DEFAULT_REGION": stack.region,
            "AWS_REGION": stack.region,
            "PYTHONUNBUFFERED": "1",
        }
    )
    if stack.protocol == "openapi":
        env["ALIPAY_APP_ID"] = stack.app_id
        env["SIGNING_KEY_ID"] = stack.signing_key_id or ""
    elif stack.protocol == "antom":
        notify_url = f"{stack.api_url}{ANTOM_NOTIFY_PATH}"
        env.update(
            {
                "ANTOM_CLIENT_ID": stack.antom_client_id or "",
                "ALIPAY_PUBLIC_KEY_FILES": str(state_dir / resources.ANTOM_PUBLIC_KEY_FILE),
                "SIGNING_KEY_ID": stack.signing_key_id or "",  # the Antom key, a KMS key of its own
                "ALIPAY_GATEWAY_URL": stack.sandbox_url,  # Antom's base URL: the product appends /ams/api/v1/...
                "NOTIFY_URL": notify_url,
                "ANTOM_PAYMENT_METHODS": resources.ANTOM_PAYMENT_METHODS,
                # Antom sends every buyer (app orders too) back to a paymentRedirectUrl: the stack's own return page,
                # which asks Antom about the order it names, as a deployed stage's default RETURN_URL is.
                "RETURN_URL": f"{stack.api_url}/alipay/return",
            }
        )
    else:
        env["ALIPAY_PARTNER_ID"] = stack.partner_id
        env["MERCHANT_PRIVATE_KEY_FILE"] = str(state_dir / resources.MERCHANT_PRIVATE_KEY_FILE)
    if stack.key_mode == "cert":
        # Alipay's key then comes from its certificate, checked against the root bundle: no bare key beside it.
        del env["ALIPAY_PUBLIC_KEY_FILES"]
        env["ALIPAY_KEY_MODE"] = "cert"
        env["ALIPAY_APP_CERT_FILE"] = str(state_dir / certs.APP_CERT_FILE)
        env["ALIPAY_CERT_FILES"] = str(state_dir / certs.ALIPAY_CERT_FILE)
        env["ALIPAY_ROOT_CERT_FILE"] = str(state_dir / certs.ROOT_CERT_FILE)
    return env


# --- child processes ---------------------------------------------------------------------------------------


@dataclass
class Child:
    """One process of the stack: how to start it, the line that says it is ready, its recent output."""

    name: str
    argv: list[str]
    ready_text: str
    env: dict[str, str]
    echo: Callable[[str, str], None]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=30))

    def start(self) -> None:
        """Start the process in its own process group, its output read line by line."""
        self.ready.clear()
        preexec = stop_with_parent if sys.platform.startswith("linux") else None
        self.process = subprocess.Popen(  # noqa: S603 - our own interpreter and modules
            self.argv,
            cwd=PROJECT_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # a terminal's Ctrl-C reaches the supervisor only, which stops children in order
            preexec_fn=preexec,  # only a prctl call between fork and exec
        )
        reader = threading.Thread(target=self._read, args=(self.process.stdout,), name=f"{self.name}-out", daemon=True)
        reader.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        with self.log_path.open("ab") as log_file:
            for raw in iter(stream.readline, b""):
                log_file.write(raw)
                log_file.flush()
                line = raw.decode("utf-8", errors="replace").rstrip()
                self.tail.append(line)
                if self.ready_text in line:
                    self.ready.set()
                # Keep draining even if our own output is gone (a closed pipe): a child blocked on a full pipe hangs.
                with contextlib.suppress(OSError, ValueError):
                    self.echo(self.name, line)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the child's whole process group (anything it started goes too)."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def wait(self, deadline: float) -> bool:
        """Wait until the child exits or ``deadline`` (monotonic) passes; whether it exited."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True


def stop_children(children: list[Child], grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every child's process group, then SIGKILL those still there after ``grace`` seconds."""
    for child in children:
        child.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in children:
        if not child.wait(deadline):
            child.signal(signal.SIGKILL)
            child.wait(time.monotonic() + grace)


# --- the supervisor ----------------------------------------------------------------------------------------


class LocalStack:
    """``make run``: start everything, report, supervise, stop everything."""

    def __init__(self, settings: Settings, out: IO[str] | None = None) -> None:
        self.settings = settings
        self._out = out or sys.stdout
        self._print_lock = threading.Lock()
        self._stop_signal: int | None = None
        self._toggle_api = False
        self._children: dict[str, Child] = {}
        self._name_width = 8

    # -- output --

    def say(self, line: str = "") -> None:
        """A line of the supervisor's own."""
        with self._print_lock:
            print(line, file=self._out, flush=True)

    def _echo(self, name: str, line: str) -> None:
        with self._print_lock:
            print(f"{name:<{self._name_width}}| {line}", file=self._out, flush=True)

    # -- signals --

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self._stop_signal = signum

    def _on_toggle(self, _signum: int, _frame: Any) -> None:
        self._toggle_api = True

    def _check_stop(self) -> None:
        if self._stop_signal is not None:
            raise _Stopped(self._stop_signal)

    # -- run --

    def run(self) -> int:
        """Start the stack and supervise it until Ctrl-C or SIGTERM; the exit status."""
        state_dir = self.settings.state_dir
        state_dir.mkdir(parents=True, exist_ok=True)
        with _single_instance(state_dir / PID_FILE):
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, self._on_stop)
            signal.signal(signal.SIGUSR1, self._on_toggle)
            try:
                started = time.monotonic()
                self._start()
                self._report(time.monotonic() - started)
                return self._supervise()
            except _Stopped:
                return 0
            except StackError as exc:
                print(f"local stack: {exc}", file=sys.stderr, flush=True)
                return 1
            finally:
                self._stop_all()

    def _start(self) -> None:
        settings = self.settings
        ports = {
            "AWS_EMULATOR_PORT": settings.emulator_port,
            "API_PORT": settings.api_port,
            "SANDBOX_PORT": settings.sandbox_port,
            "IDENTITY_PORT": settings.identity_port,
        }
        for variable, port in ports.items():
            if port:
                check_port_free(port, variable)
        emulator_port, api_port, sandbox_port, identity_port = (port or free_port() for port in ports.values())
        state_dir = settings.state_dir
        logs = state_dir / LOG_DIR
        logs.mkdir(exist_ok=True)
        for old in logs.glob("*.log"):
            old.unlink()
        base_env = dict(os.environ)
        isolate_from_aws_accounts(base_env)
        base_env["PYTHONUNBUFFERED"] = "1"

        emulator_url = f"http://{HOST}:{emulator_port}"
        self._launch("emulator", ["emulator", "--port", str(emulator_port)], "emulator listening on", base_env)
        self._await_ready(["emulator"])

        self.say(f"creating resources in the emulator ({settings.protocol})")
        session = resources.emulator_session()
        created = resources.create_resources(
            session, emulator_url, settings.protocol, visibility_timeout=settings.sqs_visibility_timeout
        )
        if settings.protocol == "antom":
            # The sandbox's Antom key pair: it signs replies and notifications; the product verifies with the public.
            alipay_key = resources.ensure_key_pair(
                state_dir / resources.ANTOM_PRIVATE_KEY_FILE, state_dir / resources.ANTOM_PUBLIC_KEY_FILE
            )
        else:
            alipay_key = resources.ensure_key_pair(
                state_dir / resources.ALIPAY_PRIVATE_KEY_FILE, state_dir / resources.ALIPAY_PUBLIC_KEY_FILE
            )
        if settings.key_mode == "cert":
            self.say("issuing the local root, Alipay's and the app's certificates (certificate mode)")
            app_key = resources.kms_public_key(session, emulator_url, created.signing_key_id or "")
            pki = certs.issue_local_pki(alipay_key.public_key(), app_key, app_id=resources.APP_ID)
            pki.write(state_dir)
        if settings.protocol == "mapi":
            resources.ensure_key_pair(state_dir / resources.MERCHANT_PRIVATE_KEY_FILE)
        resources.ensure_key_pair(
            state_dir / resources.IDENTITY_PRIVATE_KEY_FILE, state_dir / resources.IDENTITY_PUBLIC_KEY_FILE
        )
        identity_url = f"http://{HOST}:{identity_port}"
        stack = StackFile(
            api_url=f"http://{HOST}:{api_port}",
            sandbox_url=f"http://{HOST}:{sandbox_port}",
            aws_endpoint_url=emulator_url,
            region=REGION,
            protocol=settings.protocol,
            app_id=resources.APP_ID,
            seller_id=resources.SELLER_ID,
            partner_id=resources.PARTNER_ID,
            orders_table=created.orders_table,
            notifications_queue_url=created.notifications_queue_url,
            notifications_dlq_url=created.notifications_dlq_url,
            event_bus_name=created.event_bus_name,
            events_tap_queue_url=created.events_tap_queue_url,
            signing_key_id=created.signing_key_id,
            identity_url=identity_url,
            identity_issuer=identity_url,
            cognito_client_id=resources.COGNITO_CLIENT_ID,
            merchant_arn=resources.MERCHANT_ARN,
            merchant_credentials=resources.ensure_merchant_credentials(state_dir / resources.MERCHANT_CREDENTIALS_FILE),
            key_mode="cert" if settings.key_mode == "cert" else None,
            antom_client_id=resources.ANTOM_CLIENT_ID if settings.protocol == "antom" else None,
        )
        self.stack_file = stack.write(state_dir)
        self.stack = stack
        self._check_stop()

        function_env = function_environment(stack, created.orders_stream_arn, state_dir, os.environ)
        # How old an order must be before the reconciler asks Alipay: the deployed wait, on the stack's clock. Longer
        # than Alipay's first retry, as deployed, so a notification that was only late is still applied by the webhook.
        function_env["RECONCILE_MIN_AGE_SECONDS"] = os.environ.get("RECONCILE_MIN_AGE_SECONDS") or str(
            reconcile_min_age(settings.time_scale)
        )
        # The soak harness only (LOCAL_FAULT_*): the functions reach AWS through its fault-injecting proxy.
        function_env.update(faults.function_overrides(os.environ))
        identity_args = ["identity", "--host", HOST, "--port", str(identity_port), "--state-dir", str(state_dir)]
        self._launch("identity", identity_args, "identity listening on", base_env)
        api_args = ["api", "--port", str(api_port), "--concurrency", str(settings.api_concurrency)]
        api_args += ["--stack-file", str(self.stack_file)]
        self._launch("api", api_args, "api listening on", function_env)
        # Lambda's concurrent SQS pollers (LOCAL_SQS_POLLERS, default 5), each batch in its own process.
        sqs_env = {**function_env, "LOCAL_SQS_POLLERS": os.environ.get("LOCAL_SQS_POLLERS", "")}
        self._launch("sqs", ["worker", "sqs"], "sqs mapping polling", sqs_env)
        self._launch("stream", ["worker", "stream"], "stream mapping polling", function_env)
        # EventBridge's schedule for reconciliation, at the deployed rate on the stack's clock (LOCAL_SCHEDULE_SECONDS
        # overrides): with SANDBOX_TIME_SCALE=0.001 every 0.3 s, with make run's real time every 5 minutes.
        schedule = os.environ.get("LOCAL_SCHEDULE_SECONDS") or f"{reconcile_interval(settings.time_scale):g}"
        schedule_env = {**function_env, "LOCAL_SCHEDULE_SECONDS": schedule}
        self._launch("schedule", ["worker", "schedule"], "schedule mapping polling", schedule_env)
        sandbox_args = ["--stack-file", str(self.stack_file), "--host", HOST, "--port", str(sandbox_port)]
        if settings.time_scale:
            sandbox_args += ["--time-scale", settings.time_scale]
        self._launch("sandbox", sandbox_args, "sandbox listening on", base_env, module="sandbox.server")
        self._await_ready(["identity", "api", "sqs", "stream", "schedule", "sandbox"])

    def _launch(
        self, name: str, args: list[str], ready_text: str, env: dict[str, str], module: str = "devstack"
    ) -> Child:
        child = Child(
            name=name,
            argv=[sys.executable, "-m", module, *args],
            ready_text=ready_text,
            env=env,
            echo=self._echo,
            log_path=self.settings.state_dir / LOG_DIR / f"{name}.log",
        )
        self._children[name] = child
        child.start()
        return child

    def _await_ready(self, names: list[str]) -> None:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        for name in names:
            child = self._children[name]
            while not child.ready.wait(0.1):
                self._check_stop()
                if not child.running:
                    child.ready.wait(0.5)  # the last lines may still be on their way
                    raise StackError(f"{name} exited while starting (see above, or {child.log_path})")
                if time.monotonic() > deadline:
                    raise StackError(f"{name} did not start in {START_TIMEOUT_SECONDS:.0f} s (see {child.log_path})")

    def _report(self, seconds: float) -> None:
        stack = self.stack
        state = _relative(self.settings.state_dir)
        self.say()
        self.say(f"{READY_LINE} in {seconds:.1f} s: protocol {stack.protocol}, state in {state}/")
        concurrency = self.settings.api_concurrency
        self.say(f"  API            {stack.api_url}   (Chalice app, stage {STAGE}, {concurrency} concurrent)")
        notify_path = ANTOM_NOTIFY_PATH if stack.protocol == "antom" else "/alipay/notify"
        sandbox_name = "Antom sandbox " if stack.protocol == "antom" else "Alipay sandbox"
        self.say(f"  {sandbox_name} {stack.sandbox_url}   (notifies {stack.api_url}{notify_path})")
        self.say(f"  AWS emulator   {stack.aws_endpoint_url}   (moto, region {stack.region})")
        self.say("  workers        SQS -> handle_sqs_event, DynamoDB stream -> handle_stream_event")
        self.say(f'  identity       {stack.identity_url}   (the buyers\' user pool: POST /token {{"sub": "alice"}})')
        self.say(f"  stack file     {_relative(self.stack_file)}")
        self.say()
        self.say("Try it (buyer routes take a token; /merchant routes need SigV4: docs/local-stack.md):")
        self.say(f'  TOKEN=$(curl -s -X POST {stack.identity_url}/token -d \'{{"sub": "alice"}}\' | python3 -c \\')
        self.say("          'import json,sys; print(json.load(sys.stdin)[\"id_token\"])')")
        self.say(f'  curl -s {stack.api_url}/orders -H "Authorization: $TOKEN"')
        self.say("  make demo   # merchant puts a product, buyer orders and pays it, merchant reads the full order")
        self.say()
        self.say(f"Ctrl-C stops everything. `kill -USR1 {os.getpid()}` takes the API down, and brings it back.")

    def _supervise(self) -> int:
        while True:
            self._check_stop()
            if self._toggle_api:
                self._toggle_api = False
                self._toggle("api")
            for child in self._children.values():
                if not child.running and child.ready.is_set():
                    code = child.process.returncode if child.process else None
                    self.say(f"local stack: {child.name} exited unexpectedly (status {code}); stopping everything")
                    return 1
            time.sleep(0.1)

    def _toggle(self, name: str) -> None:
        child = self._children[name]
        if child.running:
            stop_children([child])
            child.ready.clear()
            self.say(f"local stack: {name} stopped (SIGUSR1 again starts it)")
        else:
            child.start()
            self._await_ready([name])
            self.say(f"local stack: {name} started again")

    def _stop_all(self) -> None:
        children = list(self._children.values())
        if not children:
            return
        self.say("local stack: stopping")
        # The emulator goes last: the others may still be finishing a call to it.
        stop_children([c for c in children if c.name != "emulator"])
        stop_children([c for c in children if c.name == "emulator"])
        self.say("local stack: stopped")


class _Stopped(Exception):
    """Ctrl-C or SIGTERM arrived."""


def _relative(path: Path) -> str:
    with contextlib.suppress(ValueError):
        return str(path.relative_to(Path.cwd()))
    return str(path)


@contextlib.contextmanager
def _single_instance(pid_file: Path) -> Iterator[None]:
    """Hold the state directory's lock for the stack's lifetime; ``StackError`` if another stack holds it."""
    import fcntl

    handle = pid_file.open("a+", encoding="utf-8")
    try:
        try:
            # Released by the kernel when the process ends, however it ends: a stale file never blocks a start.
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            pid = handle.read().strip() or "?"
            raise StackError(
                f"a local stack is already running with this state directory ({_relative(pid_file.parent)}/, "
                f"pid {pid}): stop it with Ctrl-C in its terminal or `kill {pid}`, or set LOCAL_STATE_DIR "
                "and the ports to run another one"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
    finally:
        handle.close()


def run(environ: Mapping[str, str] | None = None) -> int:
    """``python -m devstack run``: the exit status."""
    try:
        settings = Settings.from_env(environ)
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 2
    isolate_from_aws_accounts(os.environ)
    try:
        return LocalStack(settings).run()
    except StackError as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 1


# --- a stack in a subprocess (make demo, the end-to-end tests) ---------------------------------------------


class StackProcess:
    """A local stack started exactly as ``make run`` starts it, in a subprocess on free ports of its own."""

    def __init__(
        self,
        state_dir: Path,
        *,
        protocol: str = "openapi",
        time_scale: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.state_dir = state_dir.resolve()
        self.log_path = self.state_dir / "stack.out"
        self._env = dict(os.environ if environ is None else environ)
        self._env.update(
            LOCAL_STATE_DIR=str(self.state_dir),
            AWS_EMULATOR_PORT="0",
            API_PORT="0",
            SANDBOX_PORT="0",
            IDENTITY_PORT="0",
            ALIPAY_PROTOCOL=protocol,
            PYTHONUNBUFFERED="1",
        )
        if time_scale is not None:
            self._env["SANDBOX_TIME_SCALE"] = time_scale
        self.process: subprocess.Popen[bytes] | None = None
        self.stack: dict[str, Any] = {}

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        """Start the stack and wait until it is ready; its ``stack.json``. ``StackError`` with its output if not."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack", "run"],
                cwd=PROJECT_DIR,
                env=self._env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the caller's Ctrl-C goes to the caller, which then stops the stack
                preexec_fn=stop_with_parent if sys.platform.startswith("linux") else None,
            )
        deadline = time.monotonic() + timeout
        while READY_LINE not in self.output():
            if self.process.poll() is not None:
                raise StackError(f"the local stack exited ({self.process.returncode}):\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                self.stop()
                raise StackError(f"the local stack did not start in {timeout:.0f} s:\n{self.output()[-3000:]}")
            time.sleep(0.1)
        self.stack = resources.read_stack_file(self.state_dir)
        return self.stack

    def output(self) -> str:
        """Everything the stack has printed so far."""
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def toggle_api(self) -> None:
        """Take the API down, or bring it back (``kill -USR1`` on the supervisor)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGUSR1)

    def stop(self, timeout: float = 20.0) -> int | None:
        """Stop the stack as Ctrl-C does; its exit status (None if it had to be killed)."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            return None

    def __enter__(self) -> StackProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()
