"""Run a peer SDK's runner script in a subprocess whose PYTHONPATH is that peer's ``.peer/<name>/`` folder.

Both peers install a top-level package named ``alipay``, so neither ever enters our venv nor this test
process: the Makefile installs each with ``pip install --target .peer/<name>``, and tests only run it. A
runner serves JSON lines (one batch of commands per line) until its stdin closes, so a test module starts
it once. A missing peer folder is a test failure (never a skip) that says which make target installs it.

The runners import this module too (``serve``, their side of the protocol), in the peer's subprocess: it imports
nothing beyond the standard library at module level (pytest only where a test fails).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
PEERS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Peer:
    """One isolated peer SDK: its folder under ``.peer/``, pinned version, runner and make target."""

    name: str
    distribution: str
    version: str
    runner: str
    make_target: str

    @property
    def folder(self) -> Path:
        return ROOT / ".peer" / self.name

    def require_installed(self) -> None:
        import pytest

        if not (self.folder / ".installed").is_file():
            pytest.fail(
                f"peer SDK {self.distribution}=={self.version} is not installed in {self.folder}: "
                f"run `make {self.make_target}` (it installs the peer there, outside the venv)",
                pytrace=False,
            )

    def session(self, timeout: float = 120) -> PeerSession:
        return PeerSession(self, timeout)


class PeerSession:
    """A peer runner subprocess, started on first use (so a missing peer fails the test that needs it)."""

    def __init__(self, peer: Peer, timeout: float) -> None:
        self.peer = peer
        self.timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        self.peer.require_installed()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env.update(PYTHONPATH=str(self.peer.folder), PYTHONDONTWRITEBYTECODE="1", PYTHONIOENCODING="utf-8")
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the process; closed in close()
        return subprocess.Popen(
            [sys.executable, str(PEERS / self.peer.runner)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=self.peer.folder,
        )

    def _died(self, why: str) -> None:
        import pytest

        detail = ""
        if self._stderr is not None:
            self._stderr.seek(0)
            detail = self._stderr.read().decode("utf-8", "replace")[-4000:]
        self.close()
        pytest.fail(f"{self.peer.runner} {why} (is `make {self.peer.make_target}` done?):\n{detail}", pytrace=False)

    def start(self) -> subprocess.Popen[bytes]:
        """Start the runner unless it is running (a property test calls this first, to fail before generating)."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        return self._proc

    def run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run one batch; return one ``{"ok": value}`` or ``{"error": "..."}`` per command, in order."""
        proc = self.start()
        assert proc.stdin is not None
        assert proc.stdout is not None
        try:
            proc.stdin.write(json.dumps({"commands": commands}).encode("utf-8") + b"\n")
            proc.stdin.flush()
        except BrokenPipeError:
            self._died("exited")
        ready, _, _ = select.select([proc.stdout], [], [], self.timeout)
        line = proc.stdout.readline() if ready else b""
        if not line:
            self._died("exited" if ready else f"gave no answer in {self.timeout} s")
        out = json.loads(line)
        module = Path(out["peer"]["module"]).resolve()
        assert module.is_relative_to(self.peer.folder.resolve()), f"peer imported from {module}"
        assert out["peer"]["version"] == self.peer.version, (
            f"{self.peer.folder} holds {self.peer.distribution} {out['peer']['version']}, not "
            f"{self.peer.version}: rm -rf {self.peer.folder} and run `make {self.peer.make_target}`"
        )
        results: list[dict[str, Any]] = out["results"]
        assert len(results) == len(commands)
        return results

    def ok(self, commands: list[dict[str, Any]]) -> list[Any]:
        """Like ``run``, but every command must have succeeded; return their values."""
        results = self.run(commands)
        errors = [(i, r["error"]) for i, r in enumerate(results) if "error" in r]
        assert not errors, f"peer raised on commands {errors[:5]}"
        return [r["ok"] for r in results]

    def close(self) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


def serve(ops: Mapping[str, Callable[[dict[str, Any]], Any]], peer: Mapping[str, str]) -> None:
    """A runner's side (in the peer's subprocess): answer each JSON line on stdin until it closes.

    ``{"commands": [...]}`` in, ``{"peer": peer, "results": [...]}`` out, one result per command in order:
    ``{"ok": value}`` or ``{"error": "ExceptionName: message"}`` (a failing command never stops the batch).
    """
    for line in sys.stdin.buffer:
        results: list[dict[str, Any]] = []
        for cmd in json.loads(line.decode("utf-8"))["commands"]:
            try:
                results.append({"ok": ops[cmd["op"]](cmd)})
            except Exception as exc:  # every failure is reported back, per command
                results.append({"error": f"{type(exc).__name__}: {exc}"})
        sys.stdout.write(json.dumps({"peer": dict(peer), "results": results}, ensure_ascii=True) + "\n")
        sys.stdout.flush()


PYTHON_ALIPAY_SDK = Peer(
    name="python-alipay-sdk",
    distribution="python-alipay-sdk",
    version="3.4.0",
    runner="python_alipay_sdk_runner.py",
    make_target="test",
)

OFFICIAL_SDK = Peer(
    name="alipay-sdk-python",
    distribution="alipay-sdk-python",
    version="3.7.1411",
    runner="official_sdk_runner.py",
    make_target="interop",
)
