"""Operator CLI: ``python -m ops`` (verify notifications and results, the KMS public key, and the operator commands
of ``ops/operator_commands.py`` that call the API signed)."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, NoReturn

import click
from cryptography.hazmat.primitives.asymmetric import rsa

from chalicelib.alipay import antom
from chalicelib.alipay.errors import (
    AlipayError,
    KeyFormatError,
    MissingHeader,
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
from ops.operator_commands import COMMANDS
from ops.stack import LOCAL_STAGE, aws_client, read_stack, required, stack_file_option, stage_option
from ops.stats import stats_command

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
@click.option(
    "--header",
    "headers",
    multiple=True,
    help="Antom: one header of the notification, 'Name: value' (repeat for client-id, request-time, signature).",
)
@click.option(
    "--headers-file",
    type=click.File("r"),
    help="Antom: the notification's headers, one 'Name: value' per line (as a log shows them) or a JSON object.",
)
@click.option("--notify-url", help="Antom: the notify URL as registered with Antom (its path is what is signed).")
@click.option("--client-id", help="Antom: your client ID.")
@click.argument("body_file", type=click.File("rb"), default="-")
def verify_notification_command(
    key_files: tuple[str, ...],
    sign_type: str | None,
    charset: str | None,
    app_public_key: str | None,
    headers: tuple[str, ...],
    headers_file: IO[str] | None,
    notify_url: str | None,
    client_id: str | None,
    body_file: IO[bytes],
) -> None:
    """Verify a raw notification body exactly as POSTed; print its parameters, or say which check failed.

    An Antom notification (given its headers, the notify URL and the client ID) is verified as Antom signs it:
    ``POST <path of the notify URL>`` then ``<client-id>.<request-time>.<body>``, with the Antom public key.
    """
    keys = _load_keys(key_files)
    app_key = _load_optional_key(app_public_key)
    body = _read(body_file)
    if headers or headers_file or notify_url or client_id:
        _verify_antom_notification(keys, app_key, headers, headers_file, notify_url, client_id, body)
        return
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


def _verify_antom_notification(
    keys: list[rsa.RSAPublicKey],
    app_key: rsa.RSAPublicKey | None,
    header_lines: tuple[str, ...],
    headers_file: IO[str] | None,
    notify_url: str | None,
    client_id: str | None,
    body: bytes,
) -> None:
    if not notify_url or not client_id:
        raise click.UsageError("an Antom notification needs --notify-url and --client-id (and its headers)")
    try:
        path = antom.path_of(notify_url)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--notify-url") from exc
    headers = _antom_headers(header_lines, headers_file)
    try:
        notification = antom.verify_notification(
            headers, body, path=path, client_id=client_id, keys=AlipayPublicKeys.of(keys)
        )
    except MissingHeader as exc:
        _fail(f"{exc.check}: no {exc.header} header was given (got: {', '.join(sorted(headers)) or 'none'})")
    except SignatureMismatch as exc:
        lowered = {k.lower(): v for k, v in headers.items()}
        time = lowered.get(antom.REQUEST_TIME_HEADER, "")
        signature = antom.parse_signature_header(lowered.get(antom.SIGNATURE_HEADER, "")).signature
        candidates = doctor.antom_notification_candidates(
            notify_url=notify_url, path=path, client_id=client_id, time=time, body=body
        )
        finding = doctor.diagnose(signature, keys, SignType.RSA2, candidates, app_public_key=app_key).finding
        expected = doctor.antom_signed_content_summary(path=path, client_id=client_id, time=time, body=body)
        _fail(f"{exc.check}: {finding}\nexpected signed content: {expected!r}")
    except VerificationError as exc:
        _fail(f"{exc.check}: {exc}")
    _print_json({**notification.fields, "_notify_id": notification.notify_id})


def _antom_headers(lines: tuple[str, ...], headers_file: IO[str] | None) -> dict[str, str]:
    """Headers from ``--header`` lines and a headers file (``Name: value`` lines, or a JSON object)."""
    texts = list(lines)
    if headers_file is not None:
        text = headers_file.read()
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise click.BadParameter(f"not JSON: {exc}", param_hint="--headers-file") from exc
            if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
                raise click.BadParameter("must be a JSON object of strings", param_hint="--headers-file")
            texts.extend(f"{name}: {value}" for name, value in data.items())
        else:
            # A request line ("POST /path HTTP/1.1") or blank lines, as a log shows them, are skipped.
            texts.extend(line for line in text.splitlines() if ":" in line and not line.startswith(("POST ", "GET ")))
    headers: dict[str, str] = {}
    for text in texts:
        name, colon, value = text.partition(":")
        if not colon or not name.strip():
            raise click.BadParameter(f"{text[:40]!r} is not 'Name: value'", param_hint="--header")
        headers[name.strip()] = value.strip()
    return headers


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


# --- the merchant key ----------------------------------------------------------------------------------------


@cli.command("public-key")
@stage_option
@click.option("--key-id", envvar="SIGNING_KEY_ID", help="The KMS key id or ARN (env SIGNING_KEY_ID).")
@stack_file_option
def public_key_command(stage: str, key_id: str | None, stack_file: str) -> None:
    """Print the merchant public key held in KMS as the bare base64 SPKI string Alipay's portal takes."""
    from botocore.exceptions import BotoCoreError, ClientError

    from chalicelib.adapters.kms import KmsSigner
    from chalicelib.services.ports import PortError

    stack = read_stack(stage, stack_file)
    if not key_id and stage == LOCAL_STAGE and stack.get("protocol") == "mapi":
        # The legacy protocol signs with RSA (SHA1withRSA), which KMS cannot: its merchant key is a local file.
        key_file = Path(stack_file).parent / "merchant_private_key.pem"
        raise click.UsageError(
            "this local stack runs the legacy protocol (mapi), whose merchant key is not in KMS (KMS cannot sign "
            f"SHA1withRSA): it is the file {key_file}; its public key: openssl rsa -in {key_file} -pubout"
        )
    key = required(key_id or stack.get("signing_key_id"), "KMS key", "pass --key-id or set SIGNING_KEY_ID", stage)
    try:
        click.echo(KmsSigner(aws_client("kms", stack), key).public_key_base64())
    except (PortError, BotoCoreError, ClientError) as exc:
        _fail(f"aws: {exc}")


@cli.command("csr")
@stage_option
@click.option("--key-id", envvar="SIGNING_KEY_ID", help="The KMS key id or ARN (env SIGNING_KEY_ID).")
@click.option("--common-name", help="The CSR's CN (default: the app id of the local stack). Alipay sets its own.")
@click.option("--organization", help="The CSR's O: your company's name, as registered with Alipay.")
@click.option("--unit", help="The CSR's OU (optional).")
@click.option("--country", default="CN", show_default=True, help="The CSR's C (two letters).")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, writable=True), help="Write the PEM here.")
@stack_file_option
def csr_command(
    stage: str,
    key_id: str | None,
    common_name: str | None,
    organization: str | None,
    unit: str | None,
    country: str,
    out_file: str | None,
    stack_file: str,
) -> None:
    """A CSR (PKCS #10, PEM) for the merchant key in KMS, signed through KMS (kms:Sign): upload it to Alipay's
    portal to get the app's public-key certificate (certificate mode; docs/deploy.md)."""
    from botocore.exceptions import BotoCoreError, ClientError
    from cryptography.hazmat.primitives import serialization

    from chalicelib.adapters.kms import KmsSigner
    from chalicelib.services.ports import PortError
    from ops.csr import build_csr, subject_name

    stack = read_stack(stage, stack_file)
    key = required(key_id or stack.get("signing_key_id"), "KMS key", "pass --key-id or set SIGNING_KEY_ID", stage)
    name = required(common_name or stack.get("app_id"), "common name", "pass --common-name (e.g. the app id)", stage)
    if len(country) != 2 or not country.isalpha():
        raise click.BadParameter("two letters, e.g. CN", param_hint="--country")
    signer = KmsSigner(aws_client("kms", stack), key)
    try:
        csr = build_csr(subject_name(name, organization, unit, country.upper()), signer.public_key(), signer)
    except (PortError, BotoCoreError, ClientError) as exc:
        _fail(f"aws: {exc}")
    except ValueError as exc:
        _fail(f"csr: {exc}")
    pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
    if out_file:
        Path(out_file).write_text(pem, encoding="ascii")
        click.echo(f"wrote {out_file}")
    else:
        click.echo(pem, nl=False)


@cli.command("verify-reply")
@click.option(
    "--alipay-cert",
    "cert_files",
    required=True,
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Alipay's public-key certificate, leaf then intermediates (repeat during a rotation).",
)
@click.option("--root-cert", required=True, type=click.Path(exists=True, dir_okay=False), help="Alipay's root bundle.")
@click.option("--app-cert", type=click.Path(exists=True, dir_okay=False), help="The app's certificate (diagnosis).")
@click.argument("reply_file", type=click.File("rb"), default="-")
def verify_reply_command(
    cert_files: tuple[str, ...], root_cert: str, app_cert: str | None, reply_file: IO[bytes]
) -> None:
    """Verify a gateway reply in certificate mode (by the ``alipay_cert_sn`` it names); print its response, or say
    which check failed and why."""
    from datetime import UTC, datetime

    from chalicelib.alipay import certs
    from chalicelib.alipay.openapi import verify_response

    def now() -> datetime:
        return datetime.now(UTC)

    try:
        # Without --app-cert the first Alipay certificate stands in for it: only the Alipay ones verify a reply.
        mode = certs.load_certificate_mode(
            Path(app_cert).read_text() if app_cert else Path(cert_files[0]).read_text(),
            [Path(f).read_text() for f in cert_files],
            Path(root_cert).read_text(),
        )
    except AlipayError as exc:
        _fail(f"certificates: {exc}")
    keys = AlipayPublicKeys((), certificates=mode.alipay_certificates, clock=now)
    text = _read(reply_file).decode("utf-8", "replace")
    try:
        response = verify_response(text, keys)
    except VerificationError as exc:
        app_sn = mode.sns.app_cert_sn if app_cert else None
        _fail(f"{exc.check}: {doctor.explain_certificate(exc, text, mode, now(), app_cert_sn=app_sn)}")
    _print_json(json.loads(response.content))


for _command in COMMANDS:
    cli.add_command(_command)
cli.add_command(stats_command)


if __name__ == "__main__":
    cli()
