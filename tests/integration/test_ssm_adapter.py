"""The SSM settings reader against moto: names under a path, absent ones skipped, failures as ``Unavailable``."""

from __future__ import annotations

from typing import Any

import pytest

from chalicelib import bootstrap
from chalicelib.adapters.ssm import read_parameters
from chalicelib.alipay.keys import public_key_base64
from chalicelib.services.ports import Unavailable
from chalicelib.topology import SSM_PARAMETERS
from tests.alipay_fixtures import APP_ID, alipay_key
from tests.integration.conftest import _client, client_error, connection_error, fail_calls
from tests.unit.services_kit import env

PATH = "/alipay-global/prod"


@pytest.fixture
def ssm(aws: None) -> Any:
    return _client("ssm")


def test_the_parameters_under_the_path_set_their_variables(ssm: Any) -> None:
    ssm.put_parameter(Name=f"{PATH}/app-id", Value=APP_ID, Type="String")
    ssm.put_parameter(Name=f"{PATH}/alipay-public-keys", Value="key-one,key-two", Type="StringList")
    ssm.put_parameter(Name="/alipay-global/dev/app-id", Value="2021000000000999", Type="String")
    assert read_parameters(ssm, PATH, SSM_PARAMETERS) == {
        "ALIPAY_APP_ID": APP_ID,
        "ALIPAY_PUBLIC_KEYS": "key-one,key-two",
    }


def test_a_deployed_config_loads_through_the_real_client(ssm: Any) -> None:
    ssm.put_parameter(Name=f"{PATH}/app-id", Value=APP_ID, Type="String")
    ssm.put_parameter(
        Name=f"{PATH}/alipay-public-keys", Value=public_key_base64(alipay_key().public_key()), Type="String"
    )
    ssm.put_parameter(Name=f"{PATH}/notify-url", Value="https://x.example.com/api/alipay/notify", Type="String")
    environ = env(ALIPAY_APP_ID="", ALIPAY_PUBLIC_KEYS="", NOTIFY_URL="") | {"SSM_PARAMETER_PATH": PATH}
    config = bootstrap.load_config(environ, ssm)
    assert (config.app_id, config.notify_url) == (APP_ID, "https://x.example.com/api/alipay/notify")


@pytest.mark.parametrize("error", [client_error("GetParameters", "ThrottlingException"), connection_error()])
def test_ssm_failing_is_unavailable(ssm: Any, error: Exception) -> None:
    fail_calls(ssm, "GetParameters", error)
    with pytest.raises(Unavailable, match="SSM GetParameters"):
        read_parameters(ssm, PATH, SSM_PARAMETERS)


def test_the_web_checkout_urls_load_through_the_real_client(ssm: Any) -> None:
    ssm.put_parameter(Name=f"{PATH}/app-id", Value=APP_ID, Type="String")
    ssm.put_parameter(
        Name=f"{PATH}/alipay-public-keys", Value=public_key_base64(alipay_key().public_key()), Type="String"
    )
    ssm.put_parameter(Name=f"{PATH}/notify-url", Value="https://x.example.com/api/alipay/notify", Type="String")
    ssm.put_parameter(Name=f"{PATH}/return-url", Value="https://x.example.com/api/alipay/return", Type="String")
    ssm.put_parameter(Name=f"{PATH}/result-page-url", Value="https://shop.example.com/paid?via=alipay", Type="String")
    environ = env(ALIPAY_APP_ID="", ALIPAY_PUBLIC_KEYS="", NOTIFY_URL="") | {"SSM_PARAMETER_PATH": PATH}
    config = bootstrap.load_config(environ, ssm)
    assert (config.return_url, config.result_page_url) == (
        "https://x.example.com/api/alipay/return",
        "https://shop.example.com/paid?via=alipay",
    )
