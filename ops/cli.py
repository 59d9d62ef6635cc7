"""Operator CLI: ``python -m ops`` (verify notifications and results, KMS public key, DLQ redrive)."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay.errors import (
    AlipayError,
    KeyFormatError,
    SignatureEncodingError,
    SignatureMismatch,
    VerificationError,
)
from chalicelib.alipay.forms import parse_form, parse_form_text
from chalicelib.alipay.keys import load_public_key
from chalicelib.alipay.mapi import verify_securitypay_result
from chalicelib.alipay.notifications import AlipayProtocol, verify_notification
from chalicelib.alipay.openapi import verify_app_pay_result
from chalicelib.alipay.signing import AlipayPublicKeys, SignType
from ops import doctor

if TYPE_CHECKING:
    from mypy_boto3_kms.client import KMSClient
    from mypy_boto3_sqs.client import SQSClient

_KEY_HELP = "PEM (PKCS#1, PKCS#8, SPKI), a certificate, or the bare base64 line Alipay's key tool writes."


def _fail(line: str) -> NoReturn:
    click.echo(line)
    sys.exit(1)


def _print_json(data: Mapping[str, Any]) -> None:
    click.echo(json.dumps(dict(data), ensure_ascii=False, sort_keys=True, indent=2, default=str))


def _load_keys(paths: tuple[str, ...]) -> list[rsa.RSAPublicKey]:
    keys = []
    for path in paths:
        try:
            with open(path, "rb") as handle:
                keys.append(load_public_key(handle.read()))
        except KeyFormatError as exc:
            raise click.BadParameter(f"{path}: {exc}", param_hint="--alipay-public-key") from exc
    return keys


def _load_optional_key(path: str | None) -> rsa.RSAPublicKey | None:
    if path is None:
        return None
    try:
        with open(path, "rb") as handle:
            return load_public_key(handle.read())
    except KeyFormatError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--app-public-key") from exc


def _read(stream: IO[bytes]) -> bytes:
    # A body saved to a file usually gains a final newline that was never POSTed; nothing Alipay sends ends in one.
    return stream.read().rstrip(b"\r\n")


@click.group()
def cli() -> None:
    """Alipay app payments on AWS: operator commands."""


key_option = click.option(
    "--alipay-public-key",
    "key_files",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help=f"Alipay's public key (repeat during a key rotation). {_KEY_HELP}",
)
sign_type_option = click.option(
    "--sign-type",
    type=click.Choice([t.value for t in SignType]),
    help="The merchant's configured sign type (default: RSA2 for Open Platform, RSA for legacy).",
)
app_key_option = click.option(
    "--app-public-key",
    type=click.Path(exists=True, dir_okay=False),
    help="Your app's own public key, so the doctor can tell when it was configured instead of Alipay's.",
)


@cli.command("verify-notification")
@key_option
@sign_type_option
@click.option("--charset", help="Charset when the body has no charset field (default UTF-8).")
@app_key_option
@click.argument("body_file", type=click.File("rb"), default="-")
def verify_notification_command(
    key_files: tuple[str, ...],
    sign_type: str | None,
    charset: str | None,
    app_public_key: str | None,
    body_file: IO[bytes],
) -> None:
    """Verify a raw notification body exactly as POSTed; print its parameters, or say which check failed."""
    keys = _load_keys(key_files)
    app_key = _load_optional_key(app_public_key)
    body = _read(body_file)
    try:
        protocol = AlipayProtocol.OPENAPI if parse_form(body).get("app_id") else AlipayProtocol.MAPI
    except AlipayError as exc:
        _fail(f"malformed: {exc}")
    configured = SignType(sign_type) if sign_type else _default_sign_type(protocol)
    try:
        notification = verify_notification(
            body,
            protocol=protocol,
            keys=AlipayPublicKeys.of(keys),
            sign_type=configured,
            default_charset=charset or "utf-8",
        )
    except (SignatureMismatch, SignatureEncodingError) as exc:
        _fail(f"{exc.check}: {_diagnose_notification(body, keys, configured, charset, app_key) or exc}")
    except VerificationError as exc:
        _fail(f"{exc.check}: {exc}")
    _print_json(notification.fields)


def _default_sign_type(protocol: AlipayProtocol) -> SignType:
    return SignType.RSA2 if protocol is AlipayProtocol.OPENAPI else SignType.RSA


def _diagnose_notification(
    body: bytes,
    keys: list[rsa.RSAPublicKey],
    sign_type: SignType,
    charset: str | None,
    app_key: rsa.RSAPublicKey | None,
) -> str | None:
    protocol_field = "charset" if parse_form(body).get("app_id") else "_input_charset"
    fields, codec = parse_form_text(body, charset_field=protocol_field, default_charset=charset or "utf-8")
    signature, problem = doctor.signature_of(fields.get("sign", ""))
    if signature is None:
        return problem
    candidates = doctor.notification_candidates(body, codec)
    return doctor.diagnose(signature, keys, sign_type, candidates, app_public_key=app_key).finding


@cli.command("verify-result")
@key_option
@sign_type_option
@app_key_option
@click.argument("result_file", type=click.File("rb"), default="-")
def verify_result_command(
    key_files: tuple[str, ...], sign_type: str | None, app_public_key: str | None, result_file: IO[bytes]
) -> None:
    """Verify the SDK callback's ``result`` (either protocol, detected); print it, or say which check failed.

    The file may hold the ``result`` string itself or the whole callback JSON ``{"resultStatus", "result", ...}``.
    """
    keys = _load_keys(key_files)
    app_key = _load_optional_key(app_public_key)
    try:
        result = _result_text(_read(result_file).decode("utf-8"))
    except UnicodeDecodeError:
        _fail("malformed: the result is not UTF-8 text")
    protocol = AlipayProtocol.OPENAPI if result.lstrip().startswith("{") else AlipayProtocol.MAPI
    configured = SignType(sign_type) if sign_type else _default_sign_type(protocol)
    key_set = AlipayPublicKeys.of(keys)
    try:
        if protocol is AlipayProtocol.OPENAPI:
            verified: Mapping[str, Any] = verify_app_pay_result(result, key_set, sign_type=configured).body
        else:
            verified = verify_securitypay_result(result, key_set, sign_type=configured).fields
    except SignatureMismatch as exc:
        candidates = (
            doctor.openapi_result_candidates(result)
            if protocol is AlipayProtocol.OPENAPI
            else doctor.mapi_result_candidates(result)
        )
        signature = _result_signature(result, protocol)
        finding = (
            doctor.diagnose(signature, keys, configured, candidates, app_public_key=app_key).finding
            if signature
            else str(exc)
        )
        _fail(f"{exc.check}: {finding}")
    except VerificationError as exc:
        _fail(f"{exc.check}: {exc}")
    _print_json(verified)


def _result_text(text: str) -> str:
    """The ``result`` string, whether given alone or inside the whole SDK callback JSON."""
    if text.lstrip().startswith("{"):
        try:
            callback = json.loads(text)
        except json.JSONDecodeError:
            return text
        if isinstance(callback, dict) and "resultStatus" in callback and isinstance(callback.get("result"), str):
            return str(callback["result"])
    return text


def _result_signature(result: str, protocol: AlipayProtocol) -> bytes | None:
    from chalicelib.alipay.mapi import parse_quoted
    from chalicelib.alipay.openapi import extract_response

    sign = extract_response(result).sign if protocol is AlipayProtocol.OPENAPI else parse_quoted(result).get("sign")
    if not sign:
        return None
    signature, _ = doctor.signature_of(sign.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))
    return signature


# --- operations on the deployed (or local) stack: boto3 and the adapters load only when these run ------------

LOCAL_STAGE = "local"
DEFAULT_STACK_FILE = ".local/stack.json"
# The local emulator accepts any credentials; these keep a developer's real ones from being sent to it.
_EMULATOR_CREDENTIALS = {"aws_access_key_id": "local", "aws_secret_access_key": "local"}

stage_option = click.option(
    "--stage",
    default=LOCAL_STAGE,
    show_default=True,
    help="Chalice stage. For 'local', values not given otherwise come from the local stack's state file.",
)
stack_file_option = click.option(
    "--stack-file",
    default=DEFAULT_STACK_FILE,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The local stack's state file (written by `make run`); read only with --stage local.",
)


def _stack(stage: str, stack_file: str) -> dict[str, Any]:
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


def _aws_client_options(stack: Mapping[str, Any]) -> dict[str, str | None]:
    """Endpoint, region and credentials: the environment first, then the local stack's emulator."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or stack.get("aws_endpoint_url") or None
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or stack.get("region") or None
    options: dict[str, str | None] = {"endpoint_url": endpoint, "region_name": region}
    if stack.get("aws_endpoint_url") and endpoint == stack["aws_endpoint_url"]:
        options.update(_EMULATOR_CREDENTIALS)
    return options


def _kms_client(stack: Mapping[str, Any]) -> KMSClient:
    import boto3

    o = _aws_client_options(stack)
    return boto3.client(
        "kms",
        endpoint_url=o["endpoint_url"],
        region_name=o["region_name"],
        aws_access_key_id=o.get("aws_access_key_id"),
        aws_secret_access_key=o.get("aws_secret_access_key"),
    )


def _sqs_client(stack: Mapping[str, Any]) -> SQSClient:
    import boto3

    o = _aws_client_options(stack)
    return boto3.client(
        "sqs",
        endpoint_url=o["endpoint_url"],
        region_name=o["region_name"],
        aws_access_key_id=o.get("aws_access_key_id"),
        aws_secret_access_key=o.get("aws_secret_access_key"),
    )


def _aws_failure(exc: Exception) -> NoReturn:
    _fail(f"aws: {exc}")


def _required(value: str | None, what: str, how: str, stage: str) -> str:
    if value:
        return value
    hint = " or start the local stack (make run)" if stage == LOCAL_STAGE else ""
    raise click.UsageError(f"no {what}: {how}{hint}")


@cli.command("public-key")
@stage_option
@click.option("--key-id", envvar="SIGNING_KEY_ID", help="The KMS key id or ARN (env SIGNING_KEY_ID).")
@stack_file_option
def public_key_command(stage: str, key_id: str | None, stack_file: str) -> None:
    """Print the merchant public key held in KMS as the bare base64 SPKI string Alipay's portal takes."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.adapters.kms import KmsSigner
    from chalicelib.services.ports import PortError

    stack = _stack(stage, stack_file)
    key = _required(key_id or stack.get("signing_key_id"), "KMS key", "pass --key-id or set SIGNING_KEY_ID", stage)
    try:
        click.echo(KmsSigner(_kms_client(stack), key).public_key_base64())
    except (PortError, BotoCoreError, ClientError) as exc:
        _aws_failure(exc)


@cli.command("redrive")
@stage_option
@click.option("--queue-url", envvar="NOTIFICATIONS_QUEUE_URL", help="The queue (env NOTIFICATIONS_QUEUE_URL).")
@click.option("--dlq-url", envvar="NOTIFICATIONS_DLQ_URL", help="Its dead-letter queue (env NOTIFICATIONS_DLQ_URL).")
@click.option("--max-messages", type=click.IntRange(min=1), help="Stop after this many messages (default: all).")
@stack_file_option
def redrive_command(
    stage: str, queue_url: str | None, dlq_url: str | None, max_messages: int | None, stack_file: str
) -> None:
    """Move messages from the notifications DLQ back to the queue; print `moved N, failed M` (exit 1 if M > 0)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.adapters.sqs import redrive_messages
    from chalicelib.services.ports import PortError

    stack = _stack(stage, stack_file)
    target = _required(
        queue_url or stack.get("notifications_queue_url"),
        "queue",
        "pass --queue-url or set NOTIFICATIONS_QUEUE_URL",
        stage,
    )
    source = _required(
        dlq_url or stack.get("notifications_dlq_url"), "DLQ", "pass --dlq-url or set NOTIFICATIONS_DLQ_URL", stage
    )
    try:
        report = redrive_messages(
            _sqs_client(stack), source_queue_url=source, target_queue_url=target, max_messages=max_messages
        )
    except (PortError, BotoCoreError, ClientError) as exc:
        _aws_failure(exc)
    click.echo(f"moved {report.moved}, failed {report.failed}")
    if report.failed:
        sys.exit(1)


if __name__ == "__main__":
    cli()
