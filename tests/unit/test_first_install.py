"""The Makefile's first install (the venv target) tells what it is doing: one line per step, and in a terminal one
line per package pip collects; in CI (no terminal) only the step lines. A pip failure fails the target and leaves no
stamp. Run with a stand-in for ``python`` that records its calls and prints what pip prints, so nothing installs."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_PYTHON = """#!/bin/sh
# A stand-in for python3: `-m venv DIR` makes DIR/bin/python (this script); `-m pip install ...` prints what pip
# prints and exits with $FAKE_PIP_EXIT.
echo "$*" >> "$FAKE_LOG"
if [ "$1 $2" = "-m venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0; fi
if [ "$1 $2 $3" = "-m pip install" ]; then
  case " $* " in *" -qq "*) exit "${FAKE_PIP_EXIT:-0}" ;; esac  # pip -qq prints only errors
  echo "Collecting chalice==1.34.0 (from -r requirements-dev.txt (line 3))"
  echo "  Downloading chalice-1.34.0-py3-none-any.whl (300 kB)"
  echo "Collecting botocore<2.0.0,>=1.12.86 (from chalice==1.34.0)"
  echo "Installing collected packages: botocore, chalice"
  echo "Successfully installed botocore chalice"
  exit "${FAKE_PIP_EXIT:-0}"
fi
exit 2
"""
STEPS = [
    "==> [1/3] the virtual environment {venv} ({python})",
    "==> [2/3] pip itself",
    "==> [3/3] requirements-dev.txt: {pinned} pinned packages and what they need (a minute or two the first time)",
    "==> {venv} is ready",
]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def pinned() -> int:
    files = ("requirements.txt", "requirements-dev.txt")
    lines = [line for name in files for line in (ROOT / name).read_text().splitlines()]
    return sum(1 for line in lines if line[:1].isalpha() and "==" in line)


def install(tmp_path: Path, *, terminal: bool, pip_exit: int = 0) -> tuple[subprocess.CompletedProcess[str], Path]:
    """``make <venv>/.installed`` with the stand-in python, on a terminal (``script``) or not; the run and the venv."""
    python = tmp_path / "python3"
    python.write_text(FAKE_PYTHON)
    python.chmod(0o755)
    venv = tmp_path / "venv"
    make = ["make", "--no-print-directory", "-C", str(ROOT), f"VENV={venv}", f"PYTHON={python}", f"{venv}/.installed"]
    env = {**os.environ, "FAKE_LOG": str(tmp_path / "calls"), "FAKE_PIP_EXIT": str(pip_exit)}
    # script(1) gives make a pseudo-terminal, as a person's shell does.
    command = ["script", "-qec", " ".join(make), "/dev/null"] if terminal else make
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    return done, venv


def step_lines(venv: Path, python: Path) -> list[str]:
    return [line.format(venv=venv, python=python, pinned=pinned()) for line in STEPS]


def test_in_ci_the_first_install_prints_one_line_per_step_and_pip_stays_quiet(tmp_path: Path) -> None:
    done, venv = install(tmp_path, terminal=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == step_lines(venv, tmp_path / "python3")
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[0] == f"-m venv {venv}"
    assert calls[1:] == ["-m pip install -qq --upgrade pip", "-m pip install -qq -r requirements-dev.txt"]
    assert (venv / ".installed").exists()


@pytest.mark.skipif(shutil.which("script") is None, reason="script(1) is not installed")
def test_in_a_terminal_it_also_names_each_package_pip_collects(tmp_path: Path) -> None:
    done, venv = install(tmp_path, terminal=True)
    assert done.returncode == 0, done.stdout
    lines = [line.rstrip("\r") for line in done.stdout.splitlines()]
    steps = step_lines(venv, tmp_path / "python3")
    packages = ["      chalice==1.34.0", "      botocore<2.0.0,>=1.12.86"]
    assert lines == [steps[0], steps[1], *packages, steps[2], *packages, steps[3]]
    assert (venv / ".installed").exists()


@pytest.mark.parametrize("terminal", [False, True], ids=["ci", "terminal"])
def test_a_failing_pip_fails_the_install_and_leaves_no_stamp(tmp_path: Path, terminal: bool) -> None:
    if terminal and shutil.which("script") is None:
        pytest.skip("script(1) is not installed")
    done, venv = install(tmp_path, terminal=terminal, pip_exit=1)
    assert done.returncode != 0
    assert not (venv / ".installed").exists()
