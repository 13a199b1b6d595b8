"""Measurement: warm-up, timed runs, latency percentiles, throughput, size, peak memory, hardware.

`run_job` measures one configuration of a loaded model (`infertune.benchmark` resolves a spec, then calls it);
`bench_backends` runs several side by side; `compare_ab` interleaves two sessions so machine drift cancels.
"""

from __future__ import annotations

from infertune.bench.job import BenchJob, Timing, run_job
from infertune.bench.result import BenchResult
from infertune.bench.stats import Comparison, LatencyStats
from infertune.bench.suite import bench_backends
from infertune.bench.timing import compare_ab

__all__ = ["BenchJob", "BenchResult", "Comparison", "LatencyStats", "Timing", "bench_backends", "compare_ab",
           "run_job"]
