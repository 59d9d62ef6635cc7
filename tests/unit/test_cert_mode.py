"""Certificate mode end to end inside the process: settings, SNs on every signed request, replies verified by the
certificate they name (chained to the root, valid now), notifications by any valid certificate, the expiry watch."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qsl

import pytest

from chalicelib import bootstrap
from chalicelib.alipay import certs
from chalicelib.alipay.errors import (
    ExpiredCertificate,
    SignatureMismatch,
    UnknownCertificate,
    UntrustedCertificate,
)
from chalicelib.alipay.notifications import AlipayProtocol, verify_notification
from chalicelib.alipay.openapi_replies import TRADE_QUERY_RESPONSE, parse_trade_query
from chalicelib.alipay.signing import AlipayPublicKeys, SignType
from chalicelib.config import Config, ConfigError
from chalicelib.services.certificates import CertificateWatch
from devstack.certs import LocalCa
from tests.alipay_fixtures import (
    APP_ID,
    OUT_TRADE_NO,
    TRADE_NO,
    notification_body,
    openapi_notification_fields,
    signed_json_response,
)
from tests.keygen import rsa_key
from tests.unit.services_kit import Kit, env

VECTORS = Path(__file__).parent.parent / "vectors" / "certs"
NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


# --- known answers: public certificates (tests/vectors/certs/README.md says where from and how computed) -----------


def test_the_sn_of_a_public_alipay_certificate_is_the_known_answer() -> None:
    text = (VECTORS / "gopay_alipayPublicCert.crt").read_text()
    assert certs.app_cert_sn(text) == "b09baa7d1d5b198c713b230c5a6ec8e7"  # the leaf's, not the intermediate's


def test_the_sn_of_a_public_app_certificate_is_the_known_answer() -> None:
    assert certs.app_cert_sn((VECTORS / "gopay_appPublicCert.crt").read_text()) == "f5476a255774929671073404f7af2b90"


def test_a_public_alipay_certificate_chains_to_its_issuer_by_signature() -> None:
    chain = certs.load_certificates((VECTORS / "gopay_alipayPublicCert.crt").read_text())
    intermediate = chain[1]
    cert = certs.alipay_certificate(chain[0].public_bytes(certs.serialization.Encoding.PEM), [intermediate])
    assert cert.sn == "b09baa7d1d5b198c713b230c5a6ec8e7"
    assert cert.valid_at(datetime(2023, 12, 1, tzinfo=UTC))
    assert not cert.valid_at(NOW)  # expired in June 2024


def test_a_public_certificate_does_not_chain_to_an_unrelated_root() -> None:
    leaf = (VECTORS / "gopay_alipayPublicCert.crt").read_text().split("-----END CERTIFICATE-----")[0]
    with pytest.raises(UntrustedCertificate, match="does not chain"):
        certs.alipay_certificate(leaf + "-----END CERTIFICATE-----\n", [LocalCa(now=NOW).root])


# --- a local PKI (devstack/certs.py): Alipay's certificates, a rotation, the root ---------------------------------


@pytest.fixture(scope="module")
def ca() -> LocalCa:
    return LocalCa(now=NOW)


def alipay_pem(ca: LocalCa, name: str, **kw: object) -> str:
    return ca.alipay_cert(rsa_key(name).public_key(), **kw)  # type: ignore[arg-type]


def mode(ca: LocalCa, *alipay: str) -> certs.CertificateMode:
    return certs.load_certificate_mode(ca.app_cert(rsa_key("merchant").public_key(), APP_ID), alipay, ca.root_bundle)


def keys_at(loaded: certs.CertificateMode, now: datetime) -> AlipayPublicKeys:
    return AlipayPublicKeys((), certificates=loaded.alipay_certificates, clock=lambda: now)


def test_the_request_sns_are_the_app_certificates_and_the_rsa_roots_only(ca: LocalCa) -> None:
    app = ca.app_cert(rsa_key("merchant").public_key(), APP_ID)
    loaded = certs.load_certificate_mode(app, [alipay_pem(ca, "alipay")], ca.root_bundle)
    assert loaded.sns.app_cert_sn == certs.cert_sn(certs.load_certificates(app)[0])
    assert loaded.sns.alipay_root_cert_sn == certs.cert_sn(ca.root)  # the ECDSA-signed root is skipped
    assert "_" not in loaded.sns.alipay_root_cert_sn


def test_an_alipay_certificate_from_another_root_is_refused_at_load(ca: LocalCa) -> None:
    stranger = LocalCa(now=NOW).alipay_cert(rsa_key("alipay").public_key())
    with pytest.raises(UntrustedCertificate):
        mode(ca, stranger)


def test_an_alipay_certificate_without_its_intermediate_does_not_chain(ca: LocalCa) -> None:
    leaf_only = certs.load_certificates(alipay_pem(ca, "alipay"))[0].public_bytes(certs.serialization.Encoding.PEM)
    with pytest.raises(UntrustedCertificate):
        mode(ca, leaf_only.decode())


def test_a_name_match_without_the_issuers_signature_does_not_chain(ca: LocalCa) -> None:
    impostor = LocalCa(now=NOW)  # the same names, other keys: only the signature tells them apart
    with pytest.raises(UntrustedCertificate):
        mode(ca, impostor.alipay_cert(rsa_key("alipay").public_key()))


def test_a_reply_is_verified_with_the_certificate_it_names(ca: LocalCa) -> None:
    loaded = mode(ca, alipay_pem(ca, "alipay"))
    sn = loaded.alipay_certificates[0].sn
    reply = query_reply(rsa_key("alipay"), sn)
    verified = parse_trade_query(reply, OUT_TRADE_NO, keys=keys_at(loaded, NOW), sign_type=SignType.RSA2)
    assert verified.trade_status == "TRADE_SUCCESS"


def test_a_reply_naming_an_unknown_alipay_cert_sn_is_refused(ca: LocalCa) -> None:
    loaded = mode(ca, alipay_pem(ca, "alipay"))
    reply = query_reply(rsa_key("alipay"), "0123456789abcdef0123456789abcdef")
    with pytest.raises(UnknownCertificate, match="no Alipay certificate configured for alipay_cert_sn 0123"):
        parse_trade_query(reply, OUT_TRADE_NO, keys=keys_at(loaded, NOW), sign_type=SignType.RSA2)


def test_a_reply_naming_an_expired_certificate_is_refused(ca: LocalCa) -> None:
    loaded = mode(ca, alipay_pem(ca, "alipay", days=30))
    reply = query_reply(rsa_key("alipay"), loaded.alipay_certificates[0].sn)
    with pytest.raises(ExpiredCertificate):
        parse_trade_query(reply, OUT_TRADE_NO, keys=keys_at(loaded, NOW + timedelta(days=40)), sign_type=SignType.RSA2)


def test_a_notification_is_verified_during_a_rotation_by_either_certificate(ca: LocalCa) -> None:
    loaded = mode(ca, alipay_pem(ca, "alipay-old") + alipay_pem(ca, "alipay-new"))  # one text, two certificates
    assert len(loaded.alipay_certificates) == 2
    for name in ("alipay-old", "alipay-new"):
        body = notification_body(openapi_notification_fields(), rsa_key(name))
        notification = verify_notification(
            body, protocol=AlipayProtocol.OPENAPI, keys=keys_at(loaded, NOW), sign_type=SignType.RSA2
        )
        assert notification.out_trade_no == OUT_TRADE_NO


def test_a_notification_signed_under_an_expired_certificate_is_refused(ca: LocalCa) -> None:
    old = alipay_pem(ca, "alipay-old", days=30)
    loaded = mode(ca, old, alipay_pem(ca, "alipay-new", days=365))
    later = NOW + timedelta(days=40)
    body = notification_body(openapi_notification_fields(), rsa_key("alipay-old"))
    with pytest.raises(SignatureMismatch):
        verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=keys_at(loaded, later), sign_type=SignType.RSA2)
    fresh = notification_body(openapi_notification_fields(), rsa_key("alipay-new"))
    verify_notification(fresh, protocol=AlipayProtocol.OPENAPI, keys=keys_at(loaded, later), sign_type=SignType.RSA2)


def test_a_notification_when_every_certificate_has_expired_names_it(ca: LocalCa) -> None:
    loaded = mode(ca, alipay_pem(ca, "alipay", days=30))
    body = notification_body(openapi_notification_fields(), rsa_key("alipay"))
    later = keys_at(loaded, NOW + timedelta(days=40))
    with pytest.raises(ExpiredCertificate, match="no configured Alipay certificate is valid now"):
        verify_notification(body, protocol=AlipayProtocol.OPENAPI, keys=later, sign_type=SignType.RSA2)


def test_the_same_certificate_twice_counts_once(ca: LocalCa) -> None:
    same = alipay_pem(ca, "alipay")
    assert len(mode(ca, same, same).alipay_certificates) == 1


def test_alipays_real_certificate_file_is_one_certificate_and_its_issuer(ca: LocalCa) -> None:
    # Alipay's intermediate carries no basicConstraints: it is told apart by having issued the other certificate.
    text = (VECTORS / "gopay_alipayPublicCert.crt").read_text()
    leaves, intermediates = certs.leaves_and_intermediates([text])
    assert [certs.cert_sn(c) for c in leaves] == ["b09baa7d1d5b198c713b230c5a6ec8e7"]
    assert len(intermediates) == 1
    assert intermediates[0].subject.rfc4514_string().startswith("CN=Ant Financial Certification Authority Class 2")
    # With its issuer's issuer unavailable, trust the intermediate as the root: the leaf is the one certificate.
    root = intermediates[0].public_bytes(certs.serialization.Encoding.PEM).decode()
    app = (VECTORS / "gopay_appPublicCert.crt").read_text()
    loaded = certs.load_certificate_mode(app, [text], root)
    assert [c.sn for c in loaded.alipay_certificates] == ["b09baa7d1d5b198c713b230c5a6ec8e7"]
    assert loaded.sns.app_cert_sn == "f5476a255774929671073404f7af2b90"


def test_a_rotation_in_any_order_pairs_each_certificate_with_its_issuer(ca: LocalCa) -> None:
    old, new = alipay_pem(ca, "alipay-old"), alipay_pem(ca, "alipay-new")
    # Intermediates first, leaves after, repeated: still two Alipay certificates.
    parts = [p + "-----END CERTIFICATE-----\n" for p in (new + old).split("-----END CERTIFICATE-----")[:-1]]
    shuffled = "".join([parts[1], parts[3], parts[2], parts[0]])
    assert len(mode(ca, shuffled).alipay_certificates) == 2


def query_reply(key: object, cert_sn: str) -> bytes:
    body = {
        "code": "10000",
        "msg": "Success",
        "out_trade_no": OUT_TRADE_NO,
        "trade_no": TRADE_NO,
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "88.88",
    }
    return signed_json_response(TRADE_QUERY_RESPONSE, body, key, cert_sn=cert_sn).encode()  # type: ignore[arg-type]


# --- settings -------------------------------------------------------------------------------------------------


def cert_env(ca: LocalCa, **overrides: str) -> dict[str, str]:
    values = {
        "ALIPAY_PUBLIC_KEYS": "",
        "ALIPAY_KEY_MODE": "cert",
        "ALIPAY_APP_CERT": ca.app_cert(rsa_key("merchant").public_key(), APP_ID),
        "ALIPAY_CERTS": alipay_pem(ca, "alipay"),
        "ALIPAY_ROOT_CERT": ca.root_bundle,
    }
    return env(**(values | overrides))


def test_certificate_mode_needs_its_three_settings(ca: LocalCa) -> None:
    for variable in ("ALIPAY_APP_CERT", "ALIPAY_CERTS", "ALIPAY_ROOT_CERT"):
        with pytest.raises(ConfigError, match=rf"^{variable}: certificate mode needs it"):
            Config.from_env(cert_env(ca, **{variable: ""}))


def test_certificate_mode_refuses_a_bare_alipay_public_key_beside_the_certificates(ca: LocalCa) -> None:
    with pytest.raises(ConfigError, match=r"^ALIPAY_PUBLIC_KEYS: not in certificate mode"):
        Config.from_env(cert_env(ca, ALIPAY_PUBLIC_KEYS=env()["ALIPAY_PUBLIC_KEYS"]))


def test_certificates_without_certificate_mode_are_an_error(ca: LocalCa) -> None:
    with pytest.raises(ConfigError, match="ALIPAY_CERTS: is a certificate-mode setting"):
        Config.from_env(env(ALIPAY_CERTS=alipay_pem(ca, "alipay")))


def test_certificate_mode_is_open_platforms_only(ca: LocalCa) -> None:
    with pytest.raises(ConfigError, match=r"^ALIPAY_KEY_MODE: certificate mode is Open Platform's"):
        Config.from_env(env("mapi", ALIPAY_KEY_MODE="cert"))


def test_a_broken_root_bundle_names_its_setting(ca: LocalCa) -> None:
    config = Config.from_env(cert_env(ca, ALIPAY_ROOT_CERT="not a certificate"))
    with pytest.raises(ConfigError, match=r"^ALIPAY_ROOT_CERT: no PEM certificate"):
        bootstrap.load_certificate_mode(config)


def test_certificates_are_read_from_files_too(ca: LocalCa, tmp_path: Path) -> None:
    values = cert_env(ca)
    paths = {}
    for variable, file_variable in (
        ("ALIPAY_APP_CERT", "ALIPAY_APP_CERT_FILE"),
        ("ALIPAY_CERTS", "ALIPAY_CERT_FILES"),
        ("ALIPAY_ROOT_CERT", "ALIPAY_ROOT_CERT_FILE"),
    ):
        path = tmp_path / f"{variable}.pem"
        path.write_text(values.pop(variable))
        paths[file_variable] = str(path)
    loaded = bootstrap.load_certificate_mode(Config.from_env(values | paths))
    assert loaded is not None
    assert len(loaded.alipay_certificates) == 1


# --- the services: every signed request carries the SNs; the expiry watch -------------------------------------


def cert_kit(ca: LocalCa) -> Kit:
    return Kit(config=Config.from_env(cert_env(ca)), signer=bootstrap_signer())


def bootstrap_signer() -> object:
    from chalicelib.alipay.signing import LocalKeySigner

    return LocalKeySigner(rsa_key("merchant"))


@pytest.mark.parametrize("channel", ["app", "page", "wap"])
def test_every_order_carries_the_certificate_sns_inside_the_signed_content(ca: LocalCa, channel: str) -> None:
    from sandbox.orders import check_cert_sns

    kit = cert_kit(ca)
    sns = bootstrap.load_certificate_mode(kit.config)
    assert sns is not None
    merchant = kit.services.merchant
    assert merchant.cert_sns == sns.sns
    from chalicelib.services.commands import OrderDraft

    draft = OrderDraft(
        out_trade_no=OUT_TRADE_NO,
        subject="Coffee",
        body=None,
        total_amount=Decimal("88.88"),
        currency="USD",
        channel=channel,
        timeout="30m",
        return_url="https://shop.example.com/back" if channel != "app" else None,
    )
    strings = kit.services.flavour.order_strings(kit.signer)
    if channel == "app":
        params = dict(parse_qsl(strings.sign(draft, NOW)))
    else:
        params = dict(strings.sign_web(draft, NOW).params)
    assert params["app_cert_sn"] == sns.sns.app_cert_sn
    assert params["alipay_root_cert_sn"] == sns.sns.alipay_root_cert_sn
    assert check_cert_sns(params, sns.sns) is None
    from chalicelib.alipay.openapi import request_signed_content

    assert "app_cert_sn=" in request_signed_content(params)  # signed, so nobody can swap it in transit


def test_the_expiry_watch_reports_the_first_certificate_to_expire() -> None:
    class Gauges:
        def __init__(self) -> None:
            self.levels: list[tuple[str, float]] = []

        def gauge(self, name: str, value: float) -> None:
            self.levels.append((name, value))

    gauges = Gauges()
    watch = CertificateWatch(
        [("app certificate a", NOW + timedelta(days=300)), ("Alipay certificate b", NOW + timedelta(days=12))],
        gauges,
        lambda: NOW,
    )
    report = watch.report()
    assert gauges.levels == [("CertificateDaysLeft", 12.0)]
    assert report.first == "Alipay certificate b"
    assert report.expiring == ("Alipay certificate b",)


def test_the_expiry_watch_covers_the_app_alipay_intermediate_and_root_certificates(ca: LocalCa) -> None:
    loaded = mode(ca, alipay_pem(ca, "alipay", days=20))
    kinds = [what.split(" ")[0] + " " + what.split(" ")[1] for what, _ in loaded.expiries]
    assert kinds == ["app certificate", "Alipay certificate", "Alipay intermediate", "root certificate"]
    report = CertificateWatch(loaded.expiries, None, lambda: NOW).report()
    assert (report.first or "").startswith("Alipay certificate")
    assert 18 < (report.days_left or 0) < 20


def test_public_key_mode_watches_nothing() -> None:
    assert CertificateWatch((), None, lambda: NOW).report().days_left is None


def test_a_gateway_reply_json_is_what_the_sandbox_writes(ca: LocalCa) -> None:
    # The sandbox names its certificate beside the signature, as Alipay does.
    from chalicelib.alipay.signing import LocalKeySigner
    from sandbox.orders import signed_json

    signer = LocalKeySigner(rsa_key("alipay"))
    text = signed_json("alipay_trade_query_response", {"code": "10000"}, signer, cert_sn="ab12")
    assert json.loads(text)["alipay_cert_sn"] == "ab12"


def test_each_scheduled_run_reports_the_certificates_days_left(ca: LocalCa) -> None:
    from app import handle_schedule_event

    class Gauges:
        def __init__(self) -> None:
            self.levels: list[tuple[str, float]] = []

        def gauge(self, name: str, value: float) -> None:
            self.levels.append((name, value))

    kit = cert_kit(ca)
    gauges = Gauges()
    ports = kit.services.ports._replace(gauges=gauges)
    bootstrap.use(bootstrap.build_services(kit.config, ports, now=kit.clock))  # type: ignore[arg-type]
    try:
        handle_schedule_event({"detail-type": "Scheduled Event"}, None)
    finally:
        bootstrap.use(None)
    ((name, days),) = gauges.levels
    mode_now = bootstrap.load_certificate_mode(kit.config)
    assert mode_now is not None
    first = min(not_after for _, not_after in mode_now.expiries)
    assert name == "CertificateDaysLeft"
    assert days == round((first - kit.clock()).total_seconds() / 86400, 2)


# --- the local stack's functions: what each mode runs with ---------------------------------------------------


@pytest.mark.parametrize(
    ("protocol", "key_mode"), [("openapi", None), ("openapi", "cert"), ("mapi", None)], ids=["key", "cert", "mapi"]
)
def test_the_local_functions_run_with_their_modes_settings_only(protocol: str, key_mode: str | None) -> None:
    from devstack.resources import StackFile
    from devstack.stack import function_environment

    stack = StackFile(
        api_url="http://127.0.0.1:1",
        sandbox_url="http://127.0.0.1:2",
        aws_endpoint_url="http://127.0.0.1:3",
        region="us-east-1",
        protocol=protocol,
        app_id=APP_ID,
        seller_id="2088000000000002",
        partner_id="2088000000000003",
        orders_table="t",
        notifications_queue_url="q",
        notifications_dlq_url="d",
        event_bus_name="b",
        events_tap_queue_url="tap",
        signing_key_id="key" if protocol == "openapi" else None,
        key_mode=key_mode,
    )
    environment = function_environment(stack, "arn:stream", Path("/state"), {})
    assert ("SIGNING_KEY_ID" in environment) == (protocol == "openapi")
    assert ("MERCHANT_PRIVATE_KEY_FILE" in environment) == (protocol == "mapi")  # the legacy key, never beside KMS
    assert ("ALIPAY_PUBLIC_KEY_FILES" in environment) == (key_mode is None)
    assert environment.get("ALIPAY_KEY_MODE") == key_mode
    assert ("ALIPAY_CERT_FILES" in environment) == (key_mode == "cert")
