"""A deployed stage's Alipay settings come from SSM Parameter Store, once per container (fake SSM, no network)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.alipay.keys import public_key_base64
from chalicelib.config import ConfigError
from chalicelib.topology import SSM_PARAMETERS
from tests.alipay_fixtures import APP_ID, SELLER_ID, alipay_key
from tests.keygen import rsa_key
from tests.unit.services_kit import env

PATH = "/alipay-global/prod"
NOTIFY_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api/alipay/notify"


class FakeSsm:
    """GetParameters over a dict of parameter name -> value; records the names asked for."""

    def __init__(self, parameters: Mapping[str, str]) -> None:
        self.parameters = dict(parameters)
        self.calls: list[list[str]] = []

    def get_parameters(self, *, Names: Sequence[str], WithDecryption: bool) -> Mapping[str, Any]:
        self.calls.append(list(Names))
        found = [n for n in Names if n in self.parameters]
        return {
            "Parameters": [{"Name": n, "Type": "String", "Value": self.parameters[n]} for n in found],
            "InvalidParameters": [n for n in Names if n not in found],
        }


class NoSsm:
    def get_parameters(self, *, Names: Sequence[str], WithDecryption: bool) -> Mapping[str, Any]:
        raise AssertionError("SSM must not be asked without SSM_PARAMETER_PATH")


def stored(**overrides: str) -> dict[str, str]:
    """The parameters an operator puts for an Open Platform app; ``name=""`` leaves one out."""
    values = {
        "app-id": APP_ID,
        "seller-id": SELLER_ID,
        "alipay-public-keys": public_key_base64(alipay_key().public_key()),
        "notify-url": NOTIFY_URL,
    } | {name.replace("_", "-"): value for name, value in overrides.items()}
    return {f"{PATH}/{name}": value for name, value in values.items() if value}


def deployed_env(**overrides: str) -> dict[str, str]:
    """What the stack sets on a function: no Alipay ids, keys or notify URL, only where to find them."""
    unset = {"ALIPAY_APP_ID": "", "ALIPAY_SELLER_ID": "", "ALIPAY_PUBLIC_KEYS": "", "NOTIFY_URL": ""}
    return env(**(unset | overrides)) | {"SSM_PARAMETER_PATH": PATH}


def test_a_deployed_stage_reads_its_alipay_settings_from_ssm_in_one_call() -> None:
    ssm = FakeSsm(stored())
    config = bootstrap.load_config(deployed_env(), ssm)
    assert (config.app_id, config.seller_id, config.notify_url) == (APP_ID, SELLER_ID, NOTIFY_URL)
    assert len(bootstrap.load_alipay_keys(config).keys) == 1
    assert ssm.calls == [[f"{PATH}/{name}" for name in SSM_PARAMETERS]]


def test_without_a_parameter_path_everything_comes_from_the_environment() -> None:
    config = bootstrap.load_config(env(), NoSsm())
    assert config.app_id == APP_ID


def test_a_trailing_slash_on_the_path_names_the_same_parameters() -> None:
    ssm = FakeSsm(stored())
    bootstrap.load_config(deployed_env() | {"SSM_PARAMETER_PATH": f"{PATH}/"}, ssm)
    assert ssm.calls[0][0] == f"{PATH}/app-id"


def test_a_variable_set_in_the_environment_wins_over_its_parameter() -> None:
    config = bootstrap.load_config(deployed_env(NOTIFY_URL="https://pay.example.com/alipay/notify"), FakeSsm(stored()))
    assert config.notify_url == "https://pay.example.com/alipay/notify"


def test_an_optional_parameter_may_be_absent() -> None:
    config = bootstrap.load_config(deployed_env(), FakeSsm(stored(seller_id="")))
    assert config.seller_id is None


def test_several_alipay_keys_in_one_parameter_during_a_rotation() -> None:
    keys = ",".join(public_key_base64(k.public_key()) for k in (alipay_key(), rsa_key("alipay-rotated")))
    config = bootstrap.load_config(deployed_env(), FakeSsm(stored(alipay_public_keys=keys)))
    assert len(bootstrap.load_alipay_keys(config).keys) == 2


@pytest.mark.parametrize(("parameter", "variable"), [("app-id", "ALIPAY_APP_ID"), ("notify-url", "NOTIFY_URL")])
def test_a_missing_required_parameter_is_named_with_its_variable(parameter: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=f"SSM parameter {PATH}/{parameter}") as caught:
        bootstrap.load_config(deployed_env(), FakeSsm(stored(**{parameter.replace("-", "_"): ""})))
    assert caught.value.variable == variable


def test_an_error_in_a_variable_ssm_does_not_set_is_left_as_it_is() -> None:
    with pytest.raises(ConfigError) as caught:
        bootstrap.load_config(deployed_env(ORDERS_TABLE=""), FakeSsm(stored()))
    assert caught.value.variable == "ORDERS_TABLE"
    assert "SSM parameter" not in str(caught.value)


def test_a_relative_parameter_path_is_named() -> None:
    with pytest.raises(ConfigError) as caught:
        bootstrap.load_config(deployed_env() | {"SSM_PARAMETER_PATH": "alipay-global/prod"}, NoSsm())
    assert caught.value.variable == "SSM_PARAMETER_PATH"


RETURN_URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api/alipay/return"
RESULT_PAGE = "https://shop.example.com/paid"


def test_the_web_checkout_urls_come_from_ssm_in_the_same_call() -> None:
    ssm = FakeSsm(stored(return_url=RETURN_URL, result_page_url=RESULT_PAGE))
    config = bootstrap.load_config(deployed_env(), ssm)
    assert (config.return_url, config.result_page_url) == (RETURN_URL, RESULT_PAGE)
    (names,) = ssm.calls
    assert {f"{PATH}/return-url", f"{PATH}/result-page-url"} <= set(names)


def test_the_web_checkout_parameters_are_optional() -> None:
    config = bootstrap.load_config(deployed_env(), FakeSsm(stored()))
    assert (config.return_url, config.result_page_url) == (None, None)


def test_every_parameter_fits_in_one_get_parameters_call() -> None:
    from chalicelib.adapters.ssm import SSM_BATCH_LIMIT

    assert len(SSM_PARAMETERS) <= SSM_BATCH_LIMIT


@pytest.mark.parametrize(
    ("parameter", "variable", "value"),
    [
        ("return-url", "RETURN_URL", RETURN_URL + "?shop=1"),
        ("result-page-url", "RESULT_PAGE_URL", "shop.example.com/paid"),
    ],
)
def test_a_bad_web_checkout_parameter_is_named_with_its_variable(parameter: str, variable: str, value: str) -> None:
    ssm = FakeSsm(stored(**{parameter.replace("-", "_"): value}))
    with pytest.raises(ConfigError, match=f"SSM parameter {PATH}/{parameter}") as caught:
        bootstrap.load_config(deployed_env(), ssm)
    assert caught.value.variable == variable


def test_a_certificate_mode_stage_reads_its_three_certificates_in_the_same_single_call() -> None:
    from devstack.certs import LocalCa

    ca = LocalCa()
    parameters = stored(
        alipay_public_keys="",
        app_cert=ca.app_cert(rsa_key("merchant").public_key(), APP_ID),
        alipay_certs=ca.alipay_cert(alipay_key().public_key()) + ca.alipay_cert(rsa_key("alipay-rotated").public_key()),
        alipay_root_cert=ca.root_bundle,
    )
    ssm = FakeSsm(parameters)
    config = bootstrap.load_config(deployed_env(ALIPAY_KEY_MODE="cert"), ssm)
    assert len(ssm.calls) == 1  # ten names: GetParameters' limit, one call per cold start
    assert len(ssm.calls[0]) == len(SSM_PARAMETERS) == 10
    mode = bootstrap.load_certificate_mode(config)
    assert mode is not None
    assert len(mode.alipay_certificates) == 2  # a rotation: both certificates in one parameter
    assert len(bootstrap.load_alipay_keys(config).candidates()) == 2


def test_a_certificate_mode_stage_without_its_certificate_parameter_names_it() -> None:
    from devstack.certs import LocalCa

    ca = LocalCa()
    app_cert = ca.app_cert(rsa_key("merchant").public_key(), APP_ID)
    parameters = stored(alipay_public_keys="", app_cert=app_cert, alipay_root_cert=ca.root_bundle)
    with pytest.raises(ConfigError, match=f"SSM parameter {PATH}/alipay-certs"):
        bootstrap.load_config(deployed_env(ALIPAY_KEY_MODE="cert"), FakeSsm(parameters))


def test_a_certificate_that_does_not_chain_names_its_parameter() -> None:
    from devstack.certs import LocalCa

    ca, stranger = LocalCa(), LocalCa()
    parameters = stored(
        alipay_public_keys="",
        app_cert=ca.app_cert(rsa_key("merchant").public_key(), APP_ID),
        alipay_certs=stranger.alipay_cert(alipay_key().public_key()),
        alipay_root_cert=ca.root_bundle,
    )
    config = bootstrap.load_config(deployed_env(ALIPAY_KEY_MODE="cert"), FakeSsm(parameters))
    with pytest.raises(ConfigError, match="does not chain to the configured root bundle") as caught:
        bootstrap.load_certificate_mode(config)
    assert caught.value.variable == "ALIPAY_CERTS"
    assert "the SSM parameter alipay-certs" in str(caught.value)
