"""Measurement: warm-up, timed runs, latency percentiles, throughput, size, peak memory, hardware.

`benchmark(model, backend=..., batch_sizes=(1, 32))` measures one configuration; `bench_backends` runs
several side by side; `compare_ab` interleaves two sessions so machine drift cancels.
"""

from __future__ import annotations

from typing import Any

from infertune.bench.job import BenchJob, Timing, run_job
from infertune.bench.result import BenchResult
from infertune.bench.stats import Comparison, LatencyStats
from infertune.bench.suite import bench_backends
from infertune.bench.timing import compare_ab

__all__ = ["BenchJob", "BenchResult", "Comparison", "LatencyStats", "Timing", "bench_backends", "benchmark",
           "compare_ab"]


def benchmark(model, *, backend: str = "torch", data: str | None = None, batch_sizes=(1, 32),
              isolate: bool = False, timing: Timing = Timing(), weights: str | None = None,
              timeout: float = 900.0, **options: Any) -> BenchResult:
    """Measure one model on one backend: latency p50/p90/p99 per batch size, throughput, size, peak memory.

    `model` is a spec (zoo name, .onnx path, `pkg.mod:fn`) or a loaded `Model`; `isolate=True` measures
    in a fresh process (needs a spec). Example: `benchmark("digits-cnn", backend="onnxruntime", threads=1)`.
    """
    from infertune.errors import ConfigError

    if isinstance(model, str):
        job = BenchJob(model=model, backend=backend, options=options, weights=weights, data=data,
                       batch_sizes=tuple(batch_sizes), timing=timing)
        if isolate:
            from infertune.bench.isolated import run_isolated

            result = run_isolated(job, timeout=timeout)
            if not result.ok:
                from infertune.errors import InfertuneError

                raise InfertuneError(f"benchmark of {model} on {backend} failed: {result.error}")
            return result
        return run_job(job)
    if isolate:
        raise ConfigError("isolate=True needs a model spec (zoo name, path or pkg.mod:fn) to reload in a fresh "
                          "process, not a loaded model")
    from infertune.data import load_dataset

    data_name = data or model.default_data
    split = None
    if data_name is not None:
        split = load_dataset(data_name, input_specs=model.input_specs).split("heldout")
    job = BenchJob(model=model.source, backend=backend, options=options, data=data_name,
                   batch_sizes=tuple(batch_sizes), timing=timing)
    return run_job(job, model=model, split=split, data_name=data_name)
