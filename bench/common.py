"""Timing helpers: best-of-N medians, so a noisy shared machine skews both sides of a ratio alike."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def per_call(fn: Callable[[], object], *, number: int = 200, repeat: int = 15) -> float:
    """Median seconds per call over ``repeat`` rounds of ``number`` calls."""
    rounds = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - start) / number)
    return statistics.median(rounds)


def interleaved(a: Callable[[], object], b: Callable[[], object], **kw: int) -> tuple[float, float]:
    """Time ``a`` and ``b`` in alternating rounds so that load changes hit both alike."""
    times_a, times_b = [], []
    for _ in range(kw.pop("rounds", 7)):
        times_a.append(per_call(a, repeat=3, **kw))
        times_b.append(per_call(b, repeat=3, **kw))
    return statistics.median(times_a), statistics.median(times_b)


def import_seconds(statement: str, *, runs: int = 15) -> float:
    """Median wall time of ``statement`` (an import) in a fresh interpreter, interpreter start excluded.

    Bytecode caching is on (a deployment ships compiled modules, as site-packages has them); the first run
    writes the cache and is discarded.
    """
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    samples = []
    for _ in range(runs + 1):
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env
        ).stdout
        samples.append(float(out))
    return statistics.median(samples[1:])


def row(name: str, value: float, baseline_name: str, baseline: float, target: str) -> str:
    """One printed line: figure, baseline, ratio and target."""
    return (
        f"{name:<46} {value * 1e6:>9.1f} us | {baseline_name:<30} {baseline * 1e6:>9.1f} us | "
        f"ratio {value / baseline:5.2f}x (target {target})"
    )
