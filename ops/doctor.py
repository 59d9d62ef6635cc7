"""The signature doctor: when a signature does not verify, find which common mistake explains it.

RSA PKCS#1 v1.5 lets the holder of the public key recover what was signed: the hash algorithm and the
digest. So instead of guessing, the doctor (1) tells whether the key made the signature at all (if not,
the wrong key is configured: most often the app's own public key instead of Alipay's), (2) reads which
hash was used (SHA-1 ``RSA`` vs SHA-256 ``RSA2``), and (3) hashes the content as each usual mistake would
have built it, to see which one the signer actually signed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote_plus, unquote

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from chalicelib.alipay.antom import signed_content as antom_content
from chalicelib.alipay.errors import AlipayError
from chalicelib.alipay.forms import parse_form, signed_content
from chalicelib.alipay.keys import same_public_key
from chalicelib.alipay.mapi import securitypay_result_content
from chalicelib.alipay.notifications import NOTIFICATION_UNSIGNED
from chalicelib.alipay.openapi import extract_response
from chalicelib.alipay.signing import SignType, decode_signature

if TYPE_CHECKING:
    from datetime import datetime

    from chalicelib.alipay.certs import CertificateMode

# DER DigestInfo prefixes (RFC 8017 section 9.2, note 1): what a PKCS#1 v1.5 signature wraps the digest in.
_DIGEST_INFO = {
    bytes.fromhex("3021300906052b0e03021a05000414"): "sha1",
    bytes.fromhex("3031300d060960864801650304020105000420"): "sha256",
    bytes.fromhex("3051300d060960864801650304020305000440"): "sha512",
    bytes.fromhex("3020300c06082a864886f70d020505000410"): "md5",
}
_SIGN_TYPE_OF_HASH = {"sha1": "RSA", "sha256": "RSA2"}
_OTHER_CHARSETS = ("utf-8", "gbk")


@dataclass(frozen=True, slots=True)
class Candidate:
    """A way the signer may have built the signed content, and what it means if it matches."""

    content: bytes
    finding: str


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """The doctor's verdict: ``finding`` is one line a merchant can act on."""

    finding: str
    key_made_signature: bool
    hash_name: str | None = None


def _recover(key: rsa.RSAPublicKey, signature: bytes) -> tuple[str, bytes] | None:
    """(hash name, digest) if ``key`` made ``signature`` over some content with a known hash, else None."""
    try:
        digest_info = key.recover_data_from_signature(signature, padding.PKCS1v15(), None)
    except (InvalidSignature, ValueError):
        return None
    for prefix, name in _DIGEST_INFO.items():
        if digest_info.startswith(prefix):
            return name, digest_info[len(prefix) :]
    return None


def diagnose(
    signature: bytes,
    keys: Sequence[rsa.RSAPublicKey],
    sign_type: SignType,
    candidates: Iterable[Candidate],
    *,
    app_public_key: rsa.RSAPublicKey | None = None,
) -> Diagnosis:
    """Explain why ``signature`` does not verify, from the key, the hash and the content actually signed."""
    if app_public_key is not None and any(same_public_key(app_public_key, k) for k in keys):
        return Diagnosis(
            "the key given as Alipay's public key is your app's own public key: use the Alipay public key "
            "shown in Alipay's portal next to the one you uploaded",
            key_made_signature=False,
        )
    recovered = next((r for r in (_recover(k, signature) for k in keys) if r is not None), None)
    if recovered is None:
        if app_public_key is not None and _recover(app_public_key, signature) is not None:
            return Diagnosis(
                "signed with your app's own private key, not by Alipay: this did not come from Alipay",
                key_made_signature=False,
            )
        return Diagnosis(
            "the signature was not made by the configured Alipay public key: most often the app's own public "
            "key (or another app's, or the sandbox's) is configured instead of Alipay's public key for this app",
            key_made_signature=False,
        )
    hash_name, digest = recovered
    expected_hash = "sha256" if sign_type is SignType.RSA2 else "sha1"
    candidates = list(candidates)
    for candidate in candidates:
        if hashlib.new(hash_name, candidate.content).digest() == digest:
            finding = candidate.finding
            if hash_name != expected_hash:
                label = _SIGN_TYPE_OF_HASH.get(hash_name, hash_name)
                finding = (
                    f"wrong hash: signed with {hash_name.upper()} (sign_type {label}) but the merchant is "
                    f"configured for {sign_type.value} ({expected_hash.upper()})"
                    + ("" if candidate is candidates[0] else f"; also {finding}")
                )
            return Diagnosis(finding, key_made_signature=True, hash_name=hash_name)
    return Diagnosis(
        f"the signature is genuine (made by the configured Alipay key with {hash_name.upper()}) but over other "
        "content: a field was altered, added or removed after signing",
        key_made_signature=True,
        hash_name=hash_name,
    )


# --- candidates for a notification --------------------------------------------------------------------


def notification_candidates(body: bytes, codec: str) -> list[Candidate]:
    """The usual ways a notification's content gets built; the first is the correct one."""
    form = parse_form(body)
    fields = form.decode(codec)
    raw_values = dict(_raw_pairs(body))
    standard = signed_content(fields, NOTIFICATION_UNSIGNED)
    out = [Candidate(standard.encode(codec), "the content verifies as is (this should not happen)")]
    out.append(
        Candidate(
            signed_content(fields, ("sign",)).encode(codec),
            "sign_type was included in the signed content; notifications exclude both sign and sign_type",
        )
    )
    for other in _OTHER_CHARSETS:
        if other != codec:
            try:
                out.append(
                    Candidate(
                        standard.encode(other),
                        f"charset: the content was signed as {other} bytes but the body declares {codec}",
                    )
                )
                other_fields = form.decode(other)
                out.append(
                    Candidate(
                        signed_content(other_fields, NOTIFICATION_UNSIGNED).encode(other),
                        f"charset: the body is {other}, not {codec}: decode it with its real charset",
                    )
                )
            except (UnicodeError, AlipayError):
                continue
    encoded = {k: raw_values.get(k, v) for k, v in fields.items()}
    out.append(
        Candidate(
            signed_content(encoded, NOTIFICATION_UNSIGNED).encode(codec),
            "values were URL-encoded when signed; Alipay signs the decoded values",
        )
    )
    quoted = {k: quote_plus(v, safe="", encoding=codec) for k, v in fields.items()}
    out.append(
        Candidate(
            signed_content(quoted, NOTIFICATION_UNSIGNED).encode(codec),
            "values were URL-encoded before signing; Alipay signs the raw values",
        )
    )
    with_empty = "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k not in NOTIFICATION_UNSIGNED)
    out.append(Candidate(with_empty.encode(codec), "empty values were kept in the signed content; drop them"))
    in_order = "&".join(f"{k}={v}" for k, v in fields.items() if k not in NOTIFICATION_UNSIGNED and v)
    out.append(Candidate(in_order.encode(codec), "parameters were signed unsorted; sort them by key"))
    for key in fields:
        if key not in NOTIFICATION_UNSIGNED:
            rest = {k: v for k, v in fields.items() if k != key}
            out.append(
                Candidate(
                    signed_content(rest, NOTIFICATION_UNSIGNED).encode(codec),
                    f"field {key!r} was added after signing (it is not covered by the signature)",
                )
            )
    return out


def _raw_pairs(body: bytes) -> Iterable[tuple[str, str]]:
    for part in body.split(b"&"):
        key, _, value = part.partition(b"=")
        try:
            yield unquote(key.decode("ascii")), value.decode("ascii")
        except UnicodeDecodeError:
            continue


# --- candidates for synchronous results ---------------------------------------------------------------


def openapi_result_candidates(result: str, charset: str = "utf-8") -> list[Candidate]:
    """The usual ways the signed part of an Open Platform result gets taken."""
    response = extract_response(result)
    body = response.body
    candidates = [
        Candidate(response.content.encode(charset), "the content verifies as is (this should not happen)"),
        Candidate(
            json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(charset),
            "the response was re-serialized JSON; sign the raw substring of the response exactly as received",
        ),
        Candidate(
            json.dumps(body).encode(charset),
            "the response was re-serialized JSON; sign the raw substring of the response exactly as received",
        ),
        Candidate(result.encode(charset), "the whole result was signed instead of the *_response value"),
    ]
    naive = _naive_brace_span(result, response.name)
    if naive is not None and naive != response.content:
        candidates.append(Candidate(naive.encode(charset), "the response was cut at a brace inside a string value"))
    return candidates


def _naive_brace_span(text: str, name: str) -> str | None:
    start = text.find("{", text.find(f'"{name}"'))
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start : i + 1]
    return None


def mapi_result_candidates(result: str, charset: str = "utf-8") -> list[Candidate]:
    """The usual ways the signed part of a legacy result gets taken."""
    content = securitypay_result_content(result)
    candidates = [Candidate(content.encode(charset), "the content verifies as is (this should not happen)")]
    before_success = content.split('&success="', 1)[0]
    candidates.append(
        Candidate(
            before_success.encode(charset),
            'success="true" was left out of the signed content; Alipay signs everything before &sign_type=',
        )
    )
    before_sign = result.split("&sign=", 1)[0]
    if before_sign != content:
        candidates.append(
            Candidate(before_sign.encode(charset), "the content was cut at &sign= instead of at &sign_type=")
        )
    unquoted = content.replace('="', "=").replace('"&', "&").rstrip('"')
    candidates.append(
        Candidate(unquoted.encode(charset), "quotes were stripped from the values; sign the string verbatim")
    )
    return candidates


def signature_of(sign: str) -> tuple[bytes | None, str | None]:
    """Decode ``sign``; when that fails, say whether it is the usual '+'-decoded-as-space mistake."""
    try:
        return decode_signature(sign), None
    except AlipayError:
        pass
    if " " in sign:
        try:
            decode_signature(sign.replace(" ", "+"))
        except AlipayError:
            pass
        else:
            return None, "sign's '+' characters arrived as spaces: the sender did not URL-encode the signature"
    return None, "sign is not valid base64"


# --- certificate mode ------------------------------------------------------------------------------------------


def explain_certificate(
    error: Exception, reply: str, mode: CertificateMode, now: datetime, *, app_cert_sn: str | None = None
) -> str:
    """Why a reply failed in certificate mode, in terms of the certificate it names and the ones configured."""
    from chalicelib.alipay.errors import ExpiredCertificate, UnknownCertificate

    named = extract_response(reply).cert_sn
    configured = ", ".join(
        f"{c.sn} ({c.subject}, valid {c.not_before:%Y-%m-%d} to {c.not_after:%Y-%m-%d})"
        for c in mode.alipay_certificates
    )
    if isinstance(error, UnknownCertificate):
        if named is not None and named == app_cert_sn:
            return (
                f"the reply names alipay_cert_sn {named}, which is your app certificate's SN: the certificate given as "
                "Alipay's is your own app certificate; configure alipayCertPublicKey_RSA2.crt instead"
            )
        if named is not None and named in mode.sns.alipay_root_cert_sn.split("_"):
            return f"the reply names alipay_cert_sn {named}, a root certificate's SN: configure Alipay's certificate"
        return (
            f"the reply names alipay_cert_sn {named}, and no configured Alipay certificate has that SN (configured: "
            f"{configured}). Alipay signs with its current certificate: if it rotated, download the new "
            "alipayCertPublicKey_RSA2.crt from the portal and add it beside the old one (alipay-certs), then drop the "
            "old one once it has expired"
        )
    if isinstance(error, ExpiredCertificate):
        return f"{error}; at {now:%Y-%m-%d %H:%M} UTC. Configured: {configured}"
    return str(error)


# --- Antom: the signed content of a notification ---------------------------------------------------------------


def antom_notification_candidates(
    *, notify_url: str, path: str, client_id: str, time: str, body: bytes
) -> list[Candidate]:
    """The usual ways an Antom notification's content gets built; the first is the correct one."""

    def content(method: str, signed_path: str, signed_body: bytes = body) -> bytes:
        return antom_content(method, signed_path, client_id, time, signed_body)

    out = [Candidate(content("POST", path), "the content verifies as is (this should not happen)")]
    bare, _, query = path.partition("?")
    segments = bare.split("/")
    others: list[tuple[str, str]] = []
    if len(segments) > 2:
        others.append(("/" + "/".join(segments[2:]), "without its first segment (a stage prefix)"))
    others.append((bare.rstrip("/") if bare.endswith("/") else bare + "/", "with its trailing slash changed"))
    if query:
        others.append((bare, "without its query"))
    others.append((notify_url, "as the whole URL instead of its path"))
    for other, how in others:
        if other and other != path:
            out.append(
                Candidate(
                    content("POST", other),
                    f"signed for the path {other!r} ({how}), not {path!r}: the path verified is the one of the notify "
                    "URL registered with Antom; configure ALIPAY_NOTIFY_URL as exactly that URL (custom domain and "
                    "stage included), or register this one",
                )
            )
    out.append(Candidate(content("post", path), "the method was signed in lower case; Antom signs 'POST'"))
    out.append(Candidate(content("POST", path, body + b"\n"), "the signed body ended with a newline the POST lacks"))
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if parsed is not None:
        for dumped in (
            json.dumps(parsed, ensure_ascii=False, separators=(",", ":")),
            json.dumps(parsed),
            json.dumps(parsed, ensure_ascii=False),
        ):
            out.append(
                Candidate(
                    content("POST", path, dumped.encode()),
                    "the body was re-serialized JSON when signed; the signature covers the raw bytes as POSTed",
                )
            )
    out.append(
        Candidate(
            f"{client_id}.{time}.".encode() + body,
            "the first line ('POST <path>') was left out of the signed content",
        )
    )
    return out


def antom_signed_content_summary(*, path: str, client_id: str, time: str, body: bytes) -> str:
    """What Antom must have signed, shown the way a person compares it with a sender's log."""
    shown = antom_content("POST", path, client_id, time, body).decode("utf-8", "replace")
    return shown if len(shown) <= 200 else shown[:200] + f"... ({len(body)} body bytes)"
