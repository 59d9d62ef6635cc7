"""The operator CLI: where its settings come from, and the one-line errors when one is missing.

These stop before any AWS call; the commands against AWS (moto) are in ``tests/integration/test_cli_ops.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ops.cli import cli

_SETTINGS = ("SIGNING_KEY_ID", "API_URL", "LOCAL_STATE_DIR")


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
    for command in (
        "public-key",
        "redrive",
        "verify-notification",
        "verify-result",
        "order",
        "quarantine",
        "events",
        "audit",
        "backfill-quarantine",
        "csr",
        "verify-reply",
    ):
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


def test_the_local_stack_file_is_found_in_local_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path))
    (tmp_path / "stack.json").write_text(json.dumps({"protocol": "mapi"}), encoding="utf-8")

    result = run("public-key")

    assert result.exit_code == 2
    assert "legacy protocol (mapi)" in result.output  # it read the stack in LOCAL_STATE_DIR, not .local/


def test_public_key_on_a_legacy_stack_names_the_merchant_key_file_instead_of_kms(tmp_path: Path) -> None:
    stack = stack_file(tmp_path, protocol="mapi", aws_endpoint_url="http://127.0.0.1:5000", region="us-east-1")

    result = run("public-key", "--stack-file", stack)

    assert result.exit_code == 2
    assert str(tmp_path / "merchant_private_key.pem") in result.output
    assert "openssl rsa -in" in result.output
    assert "start the local stack" not in result.output  # it is running: the old hint was wrong


@pytest.mark.parametrize(
    "args",
    [
        ("redrive",),
        ("order", "o-1"),
        ("quarantine", "list"),
        ("quarantine", "replay", "eA", "--reason", "fixed"),
        ("events", "replay", "o-1", "--reason", "lost"),
        ("audit",),
    ],
)
def test_signed_commands_without_a_local_stack_say_to_start_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...]
) -> None:
    monkeypatch.setenv("LOCAL_STATE_DIR", str(tmp_path))

    result = run(*args)

    assert result.exit_code == 2
    assert f"{tmp_path / 'stack.json'} is missing; start the local stack (make run)" in result.output


def test_a_signed_command_on_a_deployed_stage_needs_the_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("API_URL", raising=False)

    result = run("redrive", "--stage", "prod")

    assert result.exit_code == 2
    assert "no API URL: pass --api-url or set API_URL" in result.output


def test_replay_and_dismiss_need_a_reason() -> None:
    for command in ("replay", "dismiss"):
        result = run("quarantine", command, "eA")
        assert result.exit_code == 2
        assert "--reason" in result.output


def test_redrive_takes_at_least_one_message() -> None:
    result = run("redrive", "--max-messages", "0")

    assert result.exit_code == 2
    assert "--max-messages" in result.output
