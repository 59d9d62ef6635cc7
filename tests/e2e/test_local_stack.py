"""The local stack as processes: one at a time per state dir, clear refusals, and nothing left behind."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from devstack.stack import PROJECT_DIR, StackProcess
from tests.e2e.conftest import wait_for


def run_stack(state_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m devstack run`` in the foreground, as ``make run`` runs it."""
    environ = {**os.environ, "LOCAL_STATE_DIR": str(state_dir), "AWS_EMULATOR_PORT": "0", "API_PORT": "0"}
    environ.update(SANDBOX_PORT="0", IDENTITY_PORT="0", **env)
    return subprocess.run(
        [sys.executable, "-m", "devstack", "run"],
        cwd=PROJECT_DIR,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def children_of(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.add(int(entry.name))
    return children


def command_line(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def accepts_connections(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as probe:
        probe.settimeout(1)
        return probe.connect_ex((host, int(port))) == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the process table from /proc")
def test_a_second_run_is_refused_clearly_and_sigterm_leaves_nothing_behind(tmp_path: Path) -> None:
    stack = StackProcess(tmp_path / "state")
    info = stack.start()
    assert stack.process is not None
    supervisor = stack.process.pid
    children = children_of(supervisor)
    assert len(children) == 7  # emulator, API, three workers (sqs, stream, schedule), sandbox, identity provider
    # Lambda's concurrency: the API runs as 4 execution environments (API_CONCURRENCY), the SQS mapping as 5
    # pollers (LOCAL_SQS_POLLERS), each a process forked by the one the supervisor started.
    api_environments = next(children_of(pid) for pid in children if " devstack api " in command_line(pid))
    sqs_pollers = next(children_of(pid) for pid in children if " devstack worker sqs" in command_line(pid))
    assert len(api_environments) == 3
    assert len(sqs_pollers) == 4

    second = run_stack(tmp_path / "state")

    assert second.returncode == 1
    assert "a local stack is already running with this state directory" in second.stderr
    assert f"pid {supervisor}" in second.stderr
    assert accepts_connections(info["api_url"])  # the running stack was not disturbed

    stack.process.send_signal(signal.SIGTERM)
    assert stack.process.wait(timeout=20) == 0
    assert "local stack: stopped" in stack.output()
    for pid in children | api_environments | sqs_pollers:
        wait_for(f"process {pid} to be gone", lambda pid=pid: not Path(f"/proc/{pid}").exists(), timeout=5)
    for name in ("api_url", "sandbox_url", "identity_url", "aws_endpoint_url"):
        assert not accepts_connections(info[name]), f"{name} still answers"


def test_a_port_in_use_is_named_with_the_variable_that_moves_it(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = run_stack(tmp_path, API_PORT=str(port))

    assert result.returncode == 1
    assert f"port {port} (API_PORT) is already in use" in result.stderr


def test_an_unknown_protocol_is_refused_before_anything_starts(tmp_path: Path) -> None:
    result = run_stack(tmp_path, ALIPAY_PROTOCOL="soap")

    assert result.returncode == 2
    assert "ALIPAY_PROTOCOL must be openapi, mapi or antom, not 'soap'" in result.stderr


def test_an_api_concurrency_that_is_not_a_small_whole_number_is_refused(tmp_path: Path) -> None:
    result = run_stack(tmp_path, API_CONCURRENCY="0")

    assert result.returncode == 2
    assert "API_CONCURRENCY must be a number from 1 to 32, not '0'" in result.stderr


def test_a_visibility_timeout_that_is_not_whole_seconds_is_refused(tmp_path: Path) -> None:
    result = run_stack(tmp_path, LOCAL_SQS_VISIBILITY_TIMEOUT="2.5")

    assert result.returncode == 2
    assert "LOCAL_SQS_VISIBILITY_TIMEOUT must be seconds from 1 to 43200, not '2.5'" in result.stderr
