"""Where the operator CLI finds the stack: the local stack's state file, or a deployed stage's API and credentials."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from ops.client import MerchantClient

LOCAL_STAGE = "local"
DEFAULT_STATE_DIR = ".local"
STACK_FILE = "stack.json"
# The local emulator accepts any credentials; these keep a developer's real ones from being sent to it.
EMULATOR_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}
# https://abcdef1234.execute-api.eu-west-1.amazonaws.com/api: the region SigV4 must sign for.
_EXECUTE_API_REGION = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def default_stack_file() -> str:
    """``<LOCAL_STATE_DIR>/stack.json``: where `make run` writes the local stack's settings (``.local`` by default)."""
    return str(Path(os.environ.get("LOCAL_STATE_DIR") or DEFAULT_STATE_DIR) / STACK_FILE)


stage_option = click.option(
    "--stage",
    default=LOCAL_STAGE,
    show_default=True,
    help="Chalice stage. For 'local', values not given otherwise come from the local stack's state file.",
)
stack_file_option = click.option(
    "--stack-file",
    default=default_stack_file,
    show_default="<LOCAL_STATE_DIR>/stack.json",
    type=click.Path(dir_okay=False),
    help="The local stack's state file (written by `make run`; LOCAL_STATE_DIR defaults to .local); read only with "
    "--stage local.",
)
api_url_option = click.option(
    "--api-url",
    envvar="API_URL",
    help="A deployed stage's API URL (env API_URL; the stack output ApiUrl). Local: the stack file's api_url.",
)


def read_stack(stage: str, stack_file: str) -> dict[str, Any]:
    """The local stack's settings (``--stage local``), or nothing for a deployed stage."""
    if stage != LOCAL_STAGE:
        return {}
    path = Path(stack_file)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise click.UsageError(f"{path}: not a readable stack file ({exc})") from exc
    if not isinstance(data, dict):
        raise click.UsageError(f"{path}: not a JSON object")
    return data


def aws_client_options(stack: Mapping[str, Any]) -> dict[str, str | None]:
    """Endpoint, region and credentials: the environment first, then the local stack's emulator."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or stack.get("aws_endpoint_url") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or stack.get("region") or None
    options: dict[str, str | None] = {"endpoint_url": endpoint, "region_name": region}
    if stack.get("aws_endpoint_url") and endpoint == stack["aws_endpoint_url"]:
        options.update(EMULATOR_CREDENTIALS)
    return options


def aws_client(service: str, stack: Mapping[str, Any]) -> Any:
    """A boto3 client for ``service``: the local emulator for the local stack, else the caller's own AWS."""
    import boto3

    o = aws_client_options(stack)
    return boto3.client(
        service,  # type: ignore[call-overload]  # one of boto3's literal service names, chosen by the caller
        endpoint_url=o["endpoint_url"],
        region_name=o["region_name"],
        aws_access_key_id=o.get("aws_access_key_id"),
        aws_secret_access_key=o.get("aws_secret_access_key"),
    )


def required(value: str | None, what: str, how: str, stage: str) -> str:
    if value:
        return value
    hint = " or start the local stack (make run)" if stage == LOCAL_STAGE else ""
    raise click.UsageError(f"no {what}: {how}{hint}")


def merchant_client(stage: str, stack_file: str, api_url: str | None) -> MerchantClient:
    """The merchant's signed client: the local stack's merchant credentials, or the operator's own AWS identity.

    Deployed, the requests are signed with whatever credentials boto3 finds (profile, environment, SSO, instance
    role): the operator's role needs ``execute-api:Invoke`` on the merchant routes (the stack's merchant policy).
    """
    stack = read_stack(stage, stack_file)
    if stage == LOCAL_STAGE and not api_url:
        if not stack:
            raise click.UsageError(f"no local stack: {stack_file} is missing; start the local stack (make run)")
        return MerchantClient.from_stack(stack)
    url = required(api_url or stack.get("api_url"), "API URL", "pass --api-url or set API_URL", stage)
    if stack.get("merchant_credentials"):
        return MerchantClient.from_stack({**stack, "api_url": url})
    import boto3

    session = boto3.session.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise click.UsageError("no AWS credentials: sign in (aws sso login, a profile, or the environment)")
    frozen = credentials.get_frozen_credentials()
    match = _EXECUTE_API_REGION.search(url)
    region = required((match.group(1) if match else None) or session.region_name, "region", "set AWS_REGION", stage)
    return MerchantClient(url, region, str(frozen.access_key), str(frozen.secret_key), frozen.token)
