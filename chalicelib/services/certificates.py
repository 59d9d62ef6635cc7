"""Certificate mode's expiry watch: how many days the first configured certificate to expire has left.

Run with every scheduled reconciliation (``routes/consumers.py``): it emits ``CertificateDaysLeft`` (the minimum
over the app's certificate, each of Alipay's and the RSA roots), and infra/ alarms when it falls below
``topology.CERTIFICATE_EXPIRY_WARNING_DAYS``. Alipay rotates its certificate before the old one expires: add the new
one beside the old (docs/deploy.md, "Certificate mode"), and drop the old once it has expired.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from chalicelib.topology import CERTIFICATE_DAYS_LEFT_METRIC, CERTIFICATE_EXPIRY_WARNING_DAYS

from .clock import Clock
from .ports import Gauges

_DAY_SECONDS = 86400


@dataclass(frozen=True, slots=True)
class ExpiryReport:
    """The certificate that expires first and its days left (negative once expired); None in public-key mode."""

    first: str | None
    days_left: float | None
    expiring: tuple[str, ...]  # every certificate with fewer than the warning's days left

    def as_json(self) -> dict[str, Any]:
        return {"first": self.first, "days_left": self.days_left, "expiring": list(self.expiring)}


class CertificateWatch:
    """Reports the configured certificates' expiry as a level metric."""

    def __init__(self, expiries: Sequence[tuple[str, datetime]], gauges: Gauges | None, now: Clock) -> None:
        self._expiries = tuple(expiries)
        self._gauges = gauges
        self._now = now

    def report(self) -> ExpiryReport:
        if not self._expiries:
            return ExpiryReport(None, None, ())
        now = self._now()
        left = [(what, (not_after - now).total_seconds() / _DAY_SECONDS) for what, not_after in self._expiries]
        first, days = min(left, key=lambda item: item[1])
        days = round(days, 2)
        if self._gauges is not None:
            self._gauges.gauge(CERTIFICATE_DAYS_LEFT_METRIC, days)
        expiring = tuple(what for what, d in left if d < CERTIFICATE_EXPIRY_WARNING_DAYS)
        return ExpiryReport(first, days, expiring)
