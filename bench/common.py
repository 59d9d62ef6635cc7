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


def _import_once(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    return float(out.stdout)


def import_seconds_interleaved(a: str, b: str, *, runs: int = 21) -> tuple[float, float]:
    """Median wall time of the imports ``a`` and ``b``, each in fresh interpreters (interpreter start excluded),
    run in alternation so that load from other processes hits both sides of the ratio alike.

    Bytecode caching is on (a deployment ships compiled modules, as site-packages has them); the first run of
    each writes the cache and is discarded.
    """
    _import_once(a)
    _import_once(b)
    samples_a, samples_b = [], []
    for _ in range(runs):
        samples_a.append(_import_once(a))
        samples_b.append(_import_once(b))
    return statistics.median(samples_a), statistics.median(samples_b)


def row(name: str, value: float, baseline_name: str, baseline: float, target: str) -> str:
    """One printed line: figure, baseline, ratio and target."""
    return (
        f"{name:<46} {value * 1e6:>9.1f} us | {baseline_name:<30} {baseline * 1e6:>9.1f} us | "
        f"ratio {value / baseline:5.2f}x (target {target})"
    )
