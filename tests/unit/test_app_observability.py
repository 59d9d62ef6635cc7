"""What the app emits for operators: EMF metrics with a reason dimension, JSON logs with correlation keys."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aws_lambda_powertools.metrics import MetricValueError

from chalicelib.observability import EmfMetrics, correlation, logger

ROOT = Path(__file__).parent.parent.parent


def emf_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{") and '"_aws"' in line]


def test_a_count_is_one_emf_line_with_the_service_and_stage_dimensions(capsys: pytest.CaptureFixture[str]) -> None:
    EmfMetrics("AlipayGlobal", "test").count("NotificationsAccepted")
    (line,) = emf_lines(capsys.readouterr().out)
    assert line["NotificationsAccepted"] == [1.0]
    (directive,) = line["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert directive["Namespace"] == "AlipayGlobal"
    assert set(directive["Dimensions"][0]) == {"service", "stage"}
    assert (line["service"], line["stage"]) == ("alipay-global", "test")


def test_a_name_with_a_reason_suffix_is_the_base_metric_with_a_reason_dimension(
    capsys: pytest.CaptureFixture[str],
) -> None:
    EmfMetrics("AlipayGlobal", "test").count("NotificationsRejected.signature")
    (line,) = emf_lines(capsys.readouterr().out)
    assert (line["NotificationsRejected"], line["reason"]) == ([1.0], "signature")
    (directive,) = line["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert directive["Metrics"][0]["Name"] == "NotificationsRejected"
    assert "reason" in directive["Dimensions"][0]


def test_a_count_after_one_that_failed_half_way_is_written_whole_and_alone(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The adapter keeps one Powertools SingleMetric per thread: no count may carry what an earlier one left in it.
    from aws_lambda_powertools.metrics import base

    metrics = EmfMetrics("AlipayGlobal", "test")
    with pytest.raises(MetricValueError):
        metrics.count("Broken", value="many")  # type: ignore[arg-type]

    def closed_stdout(*args: object, **kwargs: object) -> None:
        raise BrokenPipeError("stdout closed")

    monkeypatch.setattr(base, "print", closed_stdout, raising=False)  # fails after the metric was added
    with pytest.raises(BrokenPipeError):
        metrics.count("NotificationsRejected.signature")
    monkeypatch.undo()
    metrics.count("NotificationsAccepted")
    (line,) = emf_lines(capsys.readouterr().out)
    assert set(line) & {"Broken", "reason", "NotificationsRejected"} == set()
    (directive,) = line["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert directive["Dimensions"] == [["service", "stage"]]
    assert directive["Metrics"] == [{"Name": "NotificationsAccepted", "Unit": "Count"}]


def test_counts_from_several_threads_are_each_their_own_line(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = EmfMetrics("AlipayGlobal", "test")
    start = threading.Barrier(4)

    def count(thread: int) -> None:
        start.wait()
        for index in range(100):
            metrics.count(f"Count{thread}.r{index}")

    threads = [threading.Thread(target=count, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = emf_lines(capsys.readouterr().out)
    seen = set()
    for line in lines:
        (directive,) = line["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
        (metric,) = directive["Metrics"]
        assert line[metric["Name"]] == [1.0]
        seen.add((metric["Name"], line["reason"]))
    assert seen == {(f"Count{n}", f"r{i}") for n in range(4) for i in range(100)}
    assert len(lines) == 400


def test_a_gauge_is_one_emf_line_of_a_level_with_the_same_dimensions_and_no_reason(
    capsys: pytest.CaptureFixture[str],
) -> None:
    metrics = EmfMetrics("AlipayGlobal", "test")
    metrics.count("NotificationsRejected.signature")
    metrics.gauge("CertificateDaysLeft", 12.5)
    _, line = emf_lines(capsys.readouterr().out)
    (directive,) = line["_aws"]["CloudWatchMetrics"]  # type: ignore[index]
    assert directive["Metrics"] == [{"Name": "CertificateDaysLeft", "Unit": "None"}]
    assert directive["Dimensions"] == [["service", "stage"]]
    assert (line["CertificateDaysLeft"], line["stage"]) == ([12.5], "test")


def test_log_lines_inside_a_correlation_block_carry_the_ids_and_lose_them_after() -> None:
    log = logger()
    with correlation(notify_id="n-1", out_trade_no="o-1", trade_no=None):
        inside = dict(log.get_current_keys())
    outside = dict(log.get_current_keys())
    assert (inside["notify_id"], inside["out_trade_no"], inside["service"]) == ("n-1", "o-1", "alipay-global")
    assert "trade_no" not in inside
    assert "notify_id" not in outside
    assert "out_trade_no" not in outside


def test_importing_the_app_loads_neither_boto3_nor_powertools() -> None:
    heavy = "{'boto3', 'botocore', 'aws_lambda_powertools'}"
    loaded = "{name.split('.')[0] for name in sys.modules}"
    code = f"import json, sys; import app; print(json.dumps(sorted({loaded} & {heavy})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
