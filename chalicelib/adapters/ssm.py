"""SSM Parameter Store adapter: a deployed stage's Alipay settings (ids, Alipay's public keys), read at cold start."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from chalicelib.adapters._aws_errors import aws_errors, unavailable

# GetParameters takes at most 10 names a call.
SSM_BATCH_LIMIT = 10


class SsmClient(Protocol):
    """The part of boto3's SSM client this adapter uses."""

    def get_parameters(self, *, Names: Sequence[str], WithDecryption: bool) -> Mapping[str, Any]: ...


def read_parameters(client: SsmClient, path: str, variables: Mapping[str, str]) -> dict[str, str]:
    """The variables set by the parameters ``<path>/<name>`` of ``variables`` (name -> variable).

    A parameter that does not exist sets nothing (optional ones, such as a seller id); ``Unavailable`` if SSM cannot
    answer. A StringList parameter reads as its comma-separated value, the format of ALIPAY_PUBLIC_KEYS.
    """
    wanted = {f"{path.rstrip('/')}/{name}": variable for name, variable in variables.items()}
    names = list(wanted)
    found: dict[str, str] = {}
    for start in range(0, len(names), SSM_BATCH_LIMIT):
        try:
            # Plain String parameters: these settings are not secret (Alipay publishes its public keys to the app).
            response = client.get_parameters(Names=names[start : start + SSM_BATCH_LIMIT], WithDecryption=False)
        except aws_errors() as exc:
            raise unavailable(exc, "SSM GetParameters") from exc
        for parameter in response.get("Parameters", []):
            variable = wanted.get(parameter.get("Name", ""))
            value = parameter.get("Value")
            if variable is not None and isinstance(value, str):
                found[variable] = value
    return found
