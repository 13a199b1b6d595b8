"""Order statistics of timings, and the A/B ratio with its spread."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyStats:
    batch: int
    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    items_per_s: float   # items in all timed runs / their total time


def summarize(batch: int, seconds: list[float]) -> LatencyStats:
    times = np.asarray(seconds, dtype=np.float64) * 1e3
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return LatencyStats(batch=batch, runs=len(times), p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                        mean_ms=float(times.mean()), min_ms=float(times.min()),
                        items_per_s=float(batch * len(times) / (times.sum() / 1e3)))


@dataclass(frozen=True)
class Comparison:
    """B against A, interleaved: `speedup` = A's median / B's median per round, median over rounds."""

    batch: int
    rounds: int
    a_p50_ms: float
    b_p50_ms: float
    speedup: float
    speedup_low: float    # 10th percentile of the per-round ratios
    speedup_high: float   # 90th percentile

    @property
    def b_is_faster(self) -> bool:
        """Faster beyond the spread: even the low end of the per-round ratios is above 1."""
        return self.speedup_low > 1.0

    @property
    def b_is_slower(self) -> bool:
        return self.speedup_high < 1.0


def compare(batch: int, a_rounds: list[list[float]], b_rounds: list[list[float]]) -> Comparison:
    a_medians = np.array([np.median(r) for r in a_rounds])
    b_medians = np.array([np.median(r) for r in b_rounds])
    ratios = a_medians / b_medians
    low, mid, high = np.percentile(ratios, [10, 50, 90])
    return Comparison(batch=batch, rounds=len(ratios), a_p50_ms=float(np.median(np.concatenate(a_rounds)) * 1e3),
                      b_p50_ms=float(np.median(np.concatenate(b_rounds)) * 1e3), speedup=float(mid),
                      speedup_low=float(low), speedup_high=float(high))
