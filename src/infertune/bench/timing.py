"""Warm-up, then timed runs; and the interleaved A/B comparison."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from infertune.bench.stats import Comparison, LatencyStats, compare, summarize


def _shape_key(batch: dict[str, np.ndarray]) -> tuple:
    return tuple(sorted((name, array.shape) for name, array in batch.items()))


def warm_up(session, batches: list[dict[str, np.ndarray]], extra: int = 3) -> None:
    """Tell the session the batches will repeat (a session that adapts to shapes adapts now), run every distinct
    shape once (the first call at a shape compiles or plans: it is warm-up, never p99), then `extra` more calls."""
    expect = getattr(session, "expect", None)
    if expect is not None:
        expect(batches)
    seen: set[tuple] = set()
    for batch in batches:
        key = _shape_key(batch)
        if key not in seen:
            seen.add(key)
            session.run(batch)
    for i in range(extra):
        session.run(batches[i % len(batches)])


def time_runs(session, batches: list[dict[str, np.ndarray]], *, min_runs: int = 50, min_seconds: float = 2.0,
              max_runs: int = 5000, max_seconds: float = 30.0, start: int = 0) -> list[float]:
    """Seconds per call, cycling through `batches`, until both minimums are met or a maximum is hit."""
    timings: list[float] = []
    clock = time.perf_counter
    began = clock()
    i = start
    while True:
        batch = batches[i % len(batches)]
        t0 = clock()
        session.run(batch)
        timings.append(clock() - t0)
        i += 1
        elapsed = clock() - began
        if len(timings) >= max_runs or (elapsed >= max_seconds and len(timings) >= 3):
            return timings
        if len(timings) >= min_runs and elapsed >= min_seconds:
            return timings


def measure(session, workload, *, warmup: int = 3, min_runs: int = 50, min_seconds: float = 2.0,
            max_runs: int = 5000, max_seconds: float = 30.0,
            progress: Callable[[str], None] | None = None) -> list[LatencyStats]:
    stats = []
    for batch, batches in workload.batches.items():
        if progress:
            progress(f"warm-up b{batch}")
        warm_up(session, batches, extra=warmup)
        if progress:
            progress(f"timing b{batch}")
        seconds = time_runs(session, batches, min_runs=min_runs, min_seconds=min_seconds,
                            max_runs=max_runs, max_seconds=max_seconds)
        stats.append(summarize(batch, seconds))
    return stats


def compare_ab(session_a, session_b, batches: list[dict[str, np.ndarray]], *, rounds: int = 10,
               runs_per_round: int = 20, warmup: int = 3) -> Comparison:
    """Time A and B in alternating blocks (ABBA...) on the same inputs, so machine drift cancels.

    The speed-up of B over A is the median of the per-round ratios; its 10th-90th percentile is the spread.
    """
    warm_up(session_a, batches, extra=warmup)
    warm_up(session_b, batches, extra=warmup)
    a_rounds: list[list[float]] = []
    b_rounds: list[list[float]] = []
    for r in range(rounds):
        order = [(session_a, a_rounds), (session_b, b_rounds)]
        for session, sink in (order if r % 2 == 0 else order[::-1]):
            sink.append(time_runs(session, batches, min_runs=runs_per_round, min_seconds=0.0,
                                  max_runs=runs_per_round, start=r * runs_per_round))
    batch = len(next(iter(batches[0].values())))
    return compare(batch, a_rounds, b_rounds)
