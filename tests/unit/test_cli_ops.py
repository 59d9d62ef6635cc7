"""`public-key` and `redrive`: where their settings come from, and the one-line errors when one is missing.

These stop before any AWS call; the commands against AWS (moto) are in ``tests/integration/test_cli_ops.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ops.cli import cli

_SETTINGS = ("SIGNING_KEY_ID", "NOTIFICATIONS_QUEUE_URL", "NOTIFICATIONS_DLQ_URL")


@pytest.fixture(autouse=True)
def no_settings_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _SETTINGS:
        monkeypatch.delenv(name, raising=False)


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args))


def stack_file(tmp_path: Path, **settings: str) -> str:
    path = tmp_path / "stack.json"
    path.write_text(json.dumps(settings), encoding="utf-8")
    return str(path)


def test_help_lists_the_operator_commands() -> None:
    result = run("--help")

    assert result.exit_code == 0
    for command in ("public-key", "redrive", "verify-notification", "verify-result"):
        assert command in result.output


def test_public_key_of_a_deployed_stage_needs_a_key_id() -> None:
    result = run("public-key", "--stage", "prod")

    assert result.exit_code == 2
    assert "no KMS key: pass --key-id or set SIGNING_KEY_ID" in result.output
    assert "make run" not in result.output


def test_public_key_of_the_local_stage_without_a_running_stack_says_to_start_it(tmp_path: Path) -> None:
    result = run("public-key", "--stack-file", str(tmp_path / "missing.json"))

    assert result.exit_code == 2
    assert "start the local stack (make run)" in result.output


def test_a_deployed_stage_never_reads_the_local_stack_file(tmp_path: Path) -> None:
    result = run("public-key", "--stage", "dev", "--stack-file", stack_file(tmp_path, signing_key_id="local-key"))

    assert result.exit_code == 2
    assert "no KMS key" in result.output


def test_an_unreadable_stack_file_is_a_usage_error(tmp_path: Path) -> None:
    path = tmp_path / "stack.json"
    path.write_text("{not json", encoding="utf-8")

    result = run("public-key", "--stack-file", str(path))

    assert result.exit_code == 2
    assert "not a readable stack file" in result.output


def test_redrive_names_the_queue_url_it_lacks(tmp_path: Path) -> None:
    stack = stack_file(tmp_path, notifications_queue_url="http://127.0.0.1:5000/000000000000/notifications")

    result = run("redrive", "--stack-file", stack)

    assert result.exit_code == 2
    assert "no DLQ: pass --dlq-url or set NOTIFICATIONS_DLQ_URL" in result.output


def test_redrive_of_a_deployed_stage_needs_both_urls() -> None:
    result = run("redrive", "--stage", "prod", "--dlq-url", "https://sqs.us-east-1.amazonaws.com/1/dlq")

    assert result.exit_code == 2
    assert "no queue: pass --queue-url or set NOTIFICATIONS_QUEUE_URL" in result.output


def test_redrive_takes_at_least_one_message() -> None:
    result = run("redrive", "--max-messages", "0")

    assert result.exit_code == 2
    assert "--max-messages" in result.output
