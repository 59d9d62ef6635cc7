"""Timing helpers: alternating rounds, so that a noisy shared machine skews both sides of a ratio alike."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Paired:
    """Seconds per call of two functions timed in alternating rounds: each one's lowest round, and the medians."""

    a: float
    b: float
    a_median: float
    b_median: float

    def median_ratio(self) -> str:
        return f"medians {self.a_median / self.b_median:.2f}x"


def interleaved(
    a: Callable[[], object],
    b: Callable[[], object],
    *,
    number: int = 200,
    rounds: int = 21,
    clock: Callable[[], float] = time.perf_counter,
) -> Paired:
    """Time ``a`` and ``b`` in alternating rounds of ``number`` calls, so that load changes hit both alike.

    The figure is each one's lowest round, as ``timeit`` recommends: on a shared machine other processes only ever add
    time, so the lowest round is the closest to the code's own cost, for both sides of a ratio alike. The medians are
    kept for printing beside it (on this project's 2 shared cores they move by a tenth of a ratio between runs).
    """
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(rounds):
        times_a.append(_round(a, number, clock))
        times_b.append(_round(b, number, clock))
    return Paired(min(times_a), min(times_b), statistics.median(times_a), statistics.median(times_b))


def _round(fn: Callable[[], object], number: int, clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(number):
        fn()
    return (clock() - start) / number


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


def row(name: str, pair: Paired, baseline_name: str, target: str) -> str:
    """One printed line: figure, baseline, ratio and target (lowest rounds), and the ratio of the medians."""
    return (
        f"{name:<46} {pair.a * 1e6:>9.1f} us | {baseline_name:<30} {pair.b * 1e6:>9.1f} us | "
        f"ratio {pair.a / pair.b:5.2f}x (target {target}; {pair.median_ratio()})"
    )
