"""Structured logs and EMF metrics (Powertools), imported on first use so ``import app`` stays cheap.

Never log keys, signatures, whole bodies or buyer data: log ids (``out_trade_no``, ``notify_id``) and reasons.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.metrics import MetricUnit
    from aws_lambda_powertools.metrics.base import SingleMetric

SERVICE = "alipay-global"


@cache
def logger() -> Logger:
    """The JSON logger; the services' stdlib loggers (``chalicelib.*``) are routed through it too."""
    from aws_lambda_powertools.logging import Logger
    from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers

    log = Logger(service=SERVICE)
    logging.getLogger("chalicelib")  # registered, so that its configuration can be copied
    copy_config_to_registered_loggers(source_logger=log, include={"chalicelib"})
    return log


@contextmanager
def correlation(**keys: str | None) -> Iterator[None]:
    """Add correlation keys (``out_trade_no``, ``notify_id``) to every log line inside the block."""
    present = {name: value for name, value in keys.items() if value}
    log = logger()
    log.append_keys(**present)
    try:
        yield
    finally:
        log.remove_keys(present)


class EmfMetrics:
    """``ports.Metrics`` as CloudWatch EMF lines: one per count, flushed at once (no per-invocation flush).

    A name ``Base.reason`` is counted as metric ``Base`` with a ``reason`` dimension.

    Each thread writes its counts and gauges through one Powertools ``SingleMetric`` of its own, flushed line by line:
    the line is ``single_metric``'s, but a new ``SingleMetric`` lists every unit and resolution in its constructor,
    which is half of a count's ~57 us (every notification the webhook accepts is counted).
    """

    def __init__(self, namespace: str, stage: str) -> None:
        self._namespace = namespace
        self._stage = stage
        self._threads = threading.local()

    def count(self, name: str, value: int = 1) -> None:
        from aws_lambda_powertools.metrics import MetricUnit

        metric, _, reason = name.partition(".")
        self._write(metric, MetricUnit.Count, value, reason)

    def gauge(self, name: str, value: float) -> None:
        """``ports.Gauges``: one EMF line of a level (unit None: days, for instance), same dimensions as counts."""
        from aws_lambda_powertools.metrics import MetricUnit

        self._write(name, MetricUnit.NoUnit, value)

    def _write(self, name: str, unit: MetricUnit, value: float, reason: str = "") -> None:
        emf = self._single_metric()
        emf.clear_metrics()  # whatever a line that raised half-way left behind
        emf.add_metric(name=name, unit=unit, value=value)
        emf.add_dimension(name="service", value=SERVICE)
        emf.add_dimension(name="stage", value=self._stage)
        if reason:
            emf.add_dimension(name="reason", value=reason)
        emf.flush_metrics(raise_on_empty_metrics=True)  # one line, as single_metric prints it; then cleared

    def _single_metric(self) -> SingleMetric:
        emf: SingleMetric | None = getattr(self._threads, "emf", None)
        if emf is None:
            from aws_lambda_powertools.metrics.base import SingleMetric

            emf = self._threads.emf = SingleMetric(namespace=self._namespace)
        return emf
